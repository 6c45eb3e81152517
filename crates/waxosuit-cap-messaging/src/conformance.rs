//! The conformance suite of `wascc:messaging`: what every broker must do,
//! checked through a provider's calls and the deliveries it makes to
//! actors.
//!
//! The caller builds the provider, starts it with a [`Recorder`]'s
//! dispatcher (which records every `DeliverMessage` and answers with what
//! [`Recorder::answer`] set for the actor), and calls [`run`] with the
//! binding values every binding needs (a server's URL, say). Each check
//! uses actors and subjects of its own (`conformance.<check>.…`), binds
//! them, and removes them when done. Errors are compared as the actor reads
//! them: the error's text.
//!
//! ```
//! # async fn example(provider: std::sync::Arc<dyn waxosuit_provider::CapabilityProvider>) {
//! use waxosuit_cap_messaging::conformance::{self, Recorder};
//!
//! let recorder = Recorder::new();
//! provider.start(recorder.dispatcher()).await.unwrap();
//! conformance::run(&*provider, &recorder, &[]).await.assert_passed();
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use waxosuit_codec::messaging::{
    BrokerMessage, OP_DELIVER_MESSAGE, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE, RequestMessage,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
};

pub use waxosuit_provider::conformance::{Failure, Report};

use crate::{CAPABILITY_ID, MAX_SUBSCRIPTIONS, QUEUEGROUP_NAME, SUBSCRIPTION};

/// How long a check waits for a delivery that must come.
const ARRIVAL: Duration = Duration::from_secs(5);
/// How long a check waits before concluding a delivery will not come.
const SILENCE: Duration = Duration::from_millis(300);

/// One `DeliverMessage` an actor received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The actor it went to.
    pub actor: String,
    /// The message.
    pub message: BrokerMessage,
}

#[derive(Default)]
struct Recorded {
    deliveries: Vec<Delivery>,
    answers: HashMap<String, Vec<u8>>,
    other: Vec<String>,
}

/// Records what a provider dispatches to actors. See the [module
/// docs](self).
#[derive(Clone, Default)]
pub struct Recorder {
    recorded: Arc<Mutex<Recorded>>,
    arrived: Arc<Notify>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("deliveries", &self.deliveries().len())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder with nothing recorded and no answers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The dispatcher to start the provider with.
    pub fn dispatcher(&self) -> Arc<dyn ActorDispatcher> {
        Arc::new(self.clone())
    }

    /// Makes `actor` answer every delivery with `reply` (an empty reply
    /// means no answer).
    pub fn answer(&self, actor: &str, reply: &[u8]) {
        self.recorded
            .lock()
            .answers
            .insert(actor.to_string(), reply.to_vec());
    }

    /// Every delivery so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.recorded.lock().deliveries.clone()
    }

    /// The deliveries to `actor` so far.
    pub fn deliveries_to(&self, actor: &str) -> Vec<BrokerMessage> {
        self.recorded
            .lock()
            .deliveries
            .iter()
            .filter(|d| d.actor == actor)
            .map(|d| d.message.clone())
            .collect()
    }

    /// Waits up to `within` until `actor` has received `count` deliveries;
    /// returns what it has then.
    pub async fn wait_for(
        &self,
        actor: &str,
        count: usize,
        within: Duration,
    ) -> Vec<BrokerMessage> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            let got = self.deliveries_to(actor);
            if got.len() >= count {
                return got;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.deliveries_to(actor);
            }
        }
    }
}

#[async_trait]
impl ActorDispatcher for Recorder {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let reply = {
            let mut recorded = self.recorded.lock();
            if operation != OP_DELIVER_MESSAGE {
                recorded.other.push(format!("{operation} to {actor}"));
                return Err(DispatchError::Actor {
                    actor: actor.to_string(),
                    operation: operation.to_string(),
                    message: "the conformance recorder takes only DeliverMessage".into(),
                });
            }
            let message =
                waxosuit_codec::deserialize(&payload).map_err(|e| DispatchError::Actor {
                    actor: actor.to_string(),
                    operation: operation.to_string(),
                    message: format!("undecodable DeliverMessage: {e}"),
                })?;
            recorded.deliveries.push(Delivery {
                actor: actor.to_string(),
                message,
            });
            recorded.answers.get(actor).cloned().unwrap_or_default()
        };
        self.arrived.notify_waiters();
        Ok(reply)
    }
}

type Outcome = Result<(), String>;

/// Runs every check against `provider`, started with `recorder`'s
/// dispatcher; every binding gets `values` besides its own.
pub async fn run(
    provider: &dyn CapabilityProvider,
    recorder: &Recorder,
    values: &[(&str, &str)],
) -> Report {
    let s = Suite {
        provider,
        recorder,
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let mut report = Report::default();
    report.record("publish_reaches_matching_subscriptions", fan_out(&s).await);
    report.record("reply_to_is_delivered", reply_to(&s).await);
    report.record("queue_group_gets_each_message_once", queue_group(&s).await);
    report.record(
        "request_is_answered_by_the_returned_bytes",
        request_reply(&s).await,
    );
    report.record("request_without_responders_fails", no_responders(&s).await);
    report.record("request_times_out", timeout(&s).await);
    report.record("invalid_subjects_are_refused", invalid_subjects(&s).await);
    report.record(
        "invalid_binding_values_are_refused",
        invalid_values(&s).await,
    );
    report.record("unknown_operation_and_bad_payload", bad_calls(&s).await);
    report.record("unbound_callers_are_refused", unbound(&s).await);
    report.record("removing_a_binding_stops_delivery", removal(&s).await);
    report
}

struct Suite<'a> {
    provider: &'a dyn CapabilityProvider,
    recorder: &'a Recorder,
    values: Vec<(String, String)>,
}

impl Suite<'_> {
    /// Binds `actor` (binding `default`) with `extra` values.
    async fn bind(&self, actor: &str, extra: &[(&str, &str)]) -> Result<(), ProviderError> {
        let mut values: HashMap<String, String> = self.values.iter().cloned().collect();
        for (k, v) in extra {
            values.insert(k.to_string(), v.to_string());
        }
        self.provider
            .bind_actor(BindRequest {
                actor: actor.to_string(),
                binding: "default".to_string(),
                values,
            })
            .await
    }

    async fn must_bind(&self, actor: &str, extra: &[(&str, &str)]) -> Outcome {
        self.bind(actor, extra)
            .await
            .map_err(|e| format!("binding {actor} with {extra:?} failed: {e}"))
    }

    async fn unbind(&self, actors: &[&str]) {
        for actor in actors {
            let _ = self.provider.remove_actor(actor, "default").await;
        }
    }

    async fn call(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.provider
            .handle_call(ProviderCall {
                actor: actor.to_string(),
                binding: "default".to_string(),
                operation: operation.to_string(),
                payload,
            })
            .await
            .map_err(|e| e.to_string())
    }

    async fn publish(
        &self,
        actor: &str,
        subject: &str,
        reply_to: &str,
        body: &[u8],
    ) -> Result<(), String> {
        let message = BrokerMessage {
            subject: subject.to_string(),
            reply_to: reply_to.to_string(),
            body: body.to_vec(),
        };
        let payload = waxosuit_codec::serialize(&message).map_err(|e| e.to_string())?;
        self.call(actor, OP_PUBLISH_MESSAGE, payload)
            .await
            .map(drop)
    }

    async fn request(
        &self,
        actor: &str,
        subject: &str,
        body: &[u8],
        timeout_ms: i64,
    ) -> Result<Vec<u8>, String> {
        let request = RequestMessage {
            subject: subject.to_string(),
            body: body.to_vec(),
            timeout_ms,
        };
        let payload = waxosuit_codec::serialize(&request).map_err(|e| e.to_string())?;
        self.call(actor, OP_PERFORM_REQUEST, payload).await
    }

    /// Waits for `actor`'s `count` deliveries; fails with what came.
    async fn expect_deliveries(
        &self,
        actor: &str,
        count: usize,
    ) -> Result<Vec<BrokerMessage>, String> {
        let got = self.recorder.wait_for(actor, count, ARRIVAL).await;
        if got.len() != count {
            tokio::time::sleep(SILENCE).await;
        }
        let got = self.recorder.deliveries_to(actor);
        if got.len() == count {
            Ok(got)
        } else {
            Err(format!(
                "{actor} received {} messages, expected {count}: {got:?}",
                got.len()
            ))
        }
    }
}

fn expect_error(what: &str, result: Result<Vec<u8>, String>, says: &str) -> Outcome {
    match result {
        Ok(reply) => Err(format!(
            "{what} succeeded ({reply:?}); expected an error saying {says:?}"
        )),
        Err(text) if text.contains(says) => Ok(()),
        Err(text) => Err(format!(
            "{what} failed with {text:?}; expected it to say {says:?}"
        )),
    }
}

async fn fan_out(s: &Suite<'_>) -> Outcome {
    let (star, tail, other, publisher) = (
        "MCONF_FAN_STAR",
        "MCONF_FAN_TAIL",
        "MCONF_FAN_OTHER",
        "MCONF_FAN_PUB",
    );
    s.must_bind(star, &[(SUBSCRIPTION, "conformance.fan.*")])
        .await?;
    s.must_bind(tail, &[(SUBSCRIPTION, "conformance.fan.>")])
        .await?;
    s.must_bind(other, &[(SUBSCRIPTION, "conformance.elsewhere")])
        .await?;
    s.must_bind(publisher, &[]).await?;
    s.publish(publisher, "conformance.fan.one", "", b"first")
        .await?;
    s.publish(publisher, "conformance.fan.deep.two", "", b"second")
        .await?;
    s.publish(publisher, "conformance.nobody", "", b"lost")
        .await?;
    let to_star = s.expect_deliveries(star, 1).await?;
    let to_tail = s.expect_deliveries(tail, 2).await?;
    s.expect_deliveries(other, 0).await?;
    s.expect_deliveries(publisher, 0).await?;
    s.unbind(&[star, tail, other, publisher]).await;
    let first = &to_star[0];
    if first.subject != "conformance.fan.one"
        || first.body != b"first"
        || !first.reply_to.is_empty()
    {
        return Err(format!("`*` subscriber got {first:?}"));
    }
    let mut subjects: Vec<&str> = to_tail.iter().map(|m| m.subject.as_str()).collect();
    subjects.sort_unstable();
    if subjects != ["conformance.fan.deep.two", "conformance.fan.one"] {
        return Err(format!("`>` subscriber got {subjects:?}"));
    }
    Ok(())
}

async fn reply_to(s: &Suite<'_>) -> Outcome {
    let (sub, publisher) = ("MCONF_REPLYTO_SUB", "MCONF_REPLYTO_PUB");
    s.must_bind(sub, &[(SUBSCRIPTION, "conformance.replyto")])
        .await?;
    s.must_bind(publisher, &[]).await?;
    s.publish(
        publisher,
        "conformance.replyto",
        "conformance.replyto.inbox",
        b"x",
    )
    .await?;
    let got = s.expect_deliveries(sub, 1).await;
    s.unbind(&[sub, publisher]).await;
    let got = got?;
    if got[0].reply_to != "conformance.replyto.inbox" {
        return Err(format!("delivered {:?}", got[0]));
    }
    Ok(())
}

async fn queue_group(s: &Suite<'_>) -> Outcome {
    let (a, b, publisher) = ("MCONF_QUEUE_A", "MCONF_QUEUE_B", "MCONF_QUEUE_PUB");
    let group = [
        (SUBSCRIPTION, "conformance.queue"),
        (QUEUEGROUP_NAME, "workers"),
    ];
    s.must_bind(a, &group).await?;
    s.must_bind(b, &group).await?;
    s.must_bind(publisher, &[]).await?;
    for i in 0..20u8 {
        s.publish(publisher, "conformance.queue", "", &[i]).await?;
    }
    // Wait for all twenty, wherever they went.
    let deadline = tokio::time::Instant::now() + ARRIVAL;
    let total = || s.recorder.deliveries_to(a).len() + s.recorder.deliveries_to(b).len();
    while total() < 20 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(SILENCE).await;
    let mut bodies: Vec<Vec<u8>> = s
        .recorder
        .deliveries_to(a)
        .into_iter()
        .chain(s.recorder.deliveries_to(b))
        .map(|m| m.body)
        .collect();
    s.unbind(&[a, b, publisher]).await;
    bodies.sort();
    let expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i]).collect();
    if bodies != expected {
        return Err(format!(
            "the group received {} messages for 20 published (each must reach exactly one member): {bodies:?}",
            bodies.len()
        ));
    }
    Ok(())
}

async fn request_reply(s: &Suite<'_>) -> Outcome {
    let (responder, requester) = ("MCONF_REQ_RESPONDER", "MCONF_REQ_REQUESTER");
    s.recorder.answer(responder, b"pong");
    s.must_bind(responder, &[(SUBSCRIPTION, "conformance.req.svc")])
        .await?;
    s.must_bind(requester, &[]).await?;
    let reply = s
        .request(requester, "conformance.req.svc", b"ping", 5_000)
        .await;
    let delivered = s.recorder.deliveries_to(responder);
    s.unbind(&[responder, requester]).await;
    let reply = reply.map_err(|e| format!("the request failed: {e}"))?;
    if reply != b"pong" {
        return Err(format!("replied {reply:?}, expected b\"pong\""));
    }
    match delivered.first() {
        Some(m) if m.body == b"ping" && !m.reply_to.is_empty() => Ok(()),
        other => Err(format!(
            "the responder got {other:?}; expected the body with a reply subject"
        )),
    }
}

async fn no_responders(s: &Suite<'_>) -> Outcome {
    let requester = "MCONF_NORESP";
    s.must_bind(requester, &[]).await?;
    let result = s
        .request(requester, "conformance.nobody.home", b"?", 5_000)
        .await;
    s.unbind(&[requester]).await;
    expect_error(
        "a request nobody subscribes to",
        result,
        "no responders for conformance.nobody.home",
    )
}

async fn timeout(s: &Suite<'_>) -> Outcome {
    let (silent, requester) = ("MCONF_TIMEOUT_SILENT", "MCONF_TIMEOUT_REQ");
    s.recorder.answer(silent, b"");
    s.must_bind(silent, &[(SUBSCRIPTION, "conformance.slow")])
        .await?;
    s.must_bind(requester, &[]).await?;
    let result = s.request(requester, "conformance.slow", b"?", 200).await;
    s.unbind(&[silent, requester]).await;
    expect_error(
        "a request nobody answers",
        result,
        "no reply on conformance.slow within 200 ms",
    )
}

async fn invalid_subjects(s: &Suite<'_>) -> Outcome {
    let actor = "MCONF_INVALID";
    s.must_bind(actor, &[]).await?;
    let says = "is not a valid NATS subject";
    let mut outcome = Ok(());
    for subject in [
        "conformance.*",
        "conformance.>",
        "conformance..x",
        "conformance x",
        "",
        "a\u{0}b",
    ] {
        let published = s
            .publish(actor, subject, "", b"x")
            .await
            .map(|()| Vec::new());
        outcome = outcome.and(expect_error(
            &format!("`Publish` to {subject:?}"),
            published,
            says,
        ));
        let requested = s.request(actor, subject, b"x", 100).await;
        outcome = outcome.and(expect_error(
            &format!("`Request` to {subject:?}"),
            requested,
            says,
        ));
    }
    let bad_reply = s
        .publish(actor, "conformance.ok", "conformance.*", b"x")
        .await
        .map(|()| Vec::new());
    outcome = outcome.and(expect_error(
        "`Publish` with a wildcard `replyTo`",
        bad_reply,
        says,
    ));
    s.unbind(&[actor]).await;
    outcome
}

async fn invalid_values(s: &Suite<'_>) -> Outcome {
    let actor = "MCONF_VALUES";
    let too_many = (0..65)
        .map(|i| format!("conformance.many.{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for (values, key) in [
        (vec![(SUBSCRIPTION, "conformance..bad")], SUBSCRIPTION),
        (vec![(SUBSCRIPTION, "conformance.>.x")], SUBSCRIPTION),
        (
            vec![
                (SUBSCRIPTION, "conformance.a"),
                (QUEUEGROUP_NAME, "two words"),
            ],
            QUEUEGROUP_NAME,
        ),
        (vec![(SUBSCRIPTION, too_many.as_str())], SUBSCRIPTION),
        (vec![(MAX_SUBSCRIPTIONS, "none")], MAX_SUBSCRIPTIONS),
    ] {
        match s.bind(actor, &values).await {
            Ok(()) => {
                s.unbind(&[actor]).await;
                return Err(format!("binding with {values:?} was accepted"));
            }
            Err(ProviderError::Config { key: k, .. }) if k == key => {}
            Err(other) => {
                return Err(format!(
                    "binding with {values:?} failed with {other}; expected a `{key}` configuration error"
                ));
            }
        }
    }
    Ok(())
}

async fn bad_calls(s: &Suite<'_>) -> Outcome {
    let actor = "MCONF_BADCALL";
    s.must_bind(actor, &[]).await?;
    let unknown = s.call(actor, "Subscribe", Vec::new()).await;
    let bad = s.call(actor, OP_PUBLISH_MESSAGE, vec![0xc1]).await;
    s.unbind(&[actor]).await;
    expect_error(
        "an unknown operation",
        unknown,
        &format!("{CAPABILITY_ID} does not support the operation `Subscribe`"),
    )?;
    expect_error("an undecodable `Publish`", bad, "bad payload")
}

async fn unbound(s: &Suite<'_>) -> Outcome {
    let result = s
        .publish("MCONF_NEVER_BOUND", "conformance.x", "", b"x")
        .await
        .map(|()| Vec::new());
    expect_error(
        "a call from an unbound actor",
        result,
        "is not bound to wascc:messaging",
    )
}

async fn removal(s: &Suite<'_>) -> Outcome {
    let (sub, publisher) = ("MCONF_REMOVED_SUB", "MCONF_REMOVED_PUB");
    s.recorder.answer(sub, b"still here");
    s.must_bind(sub, &[(SUBSCRIPTION, "conformance.removed")])
        .await?;
    s.must_bind(publisher, &[]).await?;
    s.provider
        .remove_actor(sub, "default")
        .await
        .map_err(|e| format!("removing the binding failed: {e}"))?;
    s.publish(publisher, "conformance.removed", "", b"x")
        .await?;
    let request = s.request(publisher, "conformance.removed", b"x", 500).await;
    tokio::time::sleep(SILENCE).await;
    let got = s.recorder.deliveries_to(sub);
    s.unbind(&[publisher]).await;
    if !got.is_empty() {
        return Err(format!("a removed binding still received {got:?}"));
    }
    match request {
        Ok(reply) => Err(format!(
            "a request to a removed subscriber was answered: {reply:?}"
        )),
        Err(text) if text.contains("no responders") || text.contains("no reply") => Ok(()),
        Err(text) => Err(format!(
            "a request to a removed subscriber failed with {text:?}"
        )),
    }
}
