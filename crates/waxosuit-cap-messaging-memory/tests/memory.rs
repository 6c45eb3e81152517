//! The embedded broker driven the way the host drives it: bindings, actor
//! calls, and a dispatcher standing in for the actors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};
use waxosuit_cap_messaging_memory::{MemoryMessaging, QUEUEGROUP_NAME, SUBSCRIPTION};
use waxosuit_codec::messaging::{
    BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE,
    RequestMessage,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
    encode,
};

/// Upper bound for anything that should happen "soon".
const WAIT: Duration = Duration::from_secs(5);

/// What a fake actor does with a delivered message.
#[derive(Clone)]
enum Behaviour {
    /// Handles it and returns nothing.
    Quiet,
    /// Returns these bytes from the handler.
    Return(Vec<u8>),
    /// Publishes these bytes to `replyTo` through the provider, as a real
    /// actor's host call would, and returns nothing.
    PublishReply(Vec<u8>),
    /// Publishes a message to this subject, then returns nothing.
    Publish(String),
    /// Waits for a permit before returning.
    Block(Arc<Semaphore>),
    /// Fails the call.
    Fail,
}

#[derive(Debug)]
struct Event {
    actor: String,
    operation: String,
    message: BrokerMessage,
}

/// Stands in for the host's dispatcher: records each call and answers as
/// the actor's [`Behaviour`] says.
struct Actors {
    events: mpsc::UnboundedSender<Event>,
    behaviour: Mutex<HashMap<String, Behaviour>>,
    provider: OnceLock<Weak<MemoryMessaging>>,
}

#[async_trait]
impl ActorDispatcher for Actors {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let message: BrokerMessage = waxosuit_codec::deserialize(&payload).unwrap();
        let behaviour = self
            .behaviour
            .lock()
            .unwrap()
            .get(actor)
            .cloned()
            .unwrap_or(Behaviour::Quiet);
        self.events
            .send(Event {
                actor: actor.to_string(),
                operation: operation.to_string(),
                message: message.clone(),
            })
            .unwrap();
        let provider = || self.provider.get().unwrap().upgrade().unwrap();
        match behaviour {
            Behaviour::Quiet => Ok(Vec::new()),
            Behaviour::Return(bytes) => Ok(bytes),
            Behaviour::PublishReply(bytes) => {
                publish(&provider(), actor, &message.reply_to, &bytes)
                    .await
                    .unwrap();
                Ok(Vec::new())
            }
            Behaviour::Publish(subject) => {
                publish(&provider(), actor, &subject, b"again")
                    .await
                    .unwrap();
                Ok(Vec::new())
            }
            Behaviour::Block(gate) => {
                let _permit = gate.acquire().await.unwrap();
                Ok(Vec::new())
            }
            Behaviour::Fail => Err(DispatchError::Actor {
                actor: actor.to_string(),
                operation: operation.to_string(),
                message: "boom".into(),
            }),
        }
    }
}

struct Fixture {
    broker: Arc<MemoryMessaging>,
    actors: Arc<Actors>,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_broker(MemoryMessaging::new()).await
    }

    async fn with_broker(broker: MemoryMessaging) -> Fixture {
        let broker = Arc::new(broker);
        let (tx, events) = mpsc::unbounded_channel();
        let actors = Arc::new(Actors {
            events: tx,
            behaviour: Mutex::new(HashMap::new()),
            provider: OnceLock::new(),
        });
        actors.provider.set(Arc::downgrade(&broker)).ok().unwrap();
        broker.start(actors.clone()).await.unwrap();
        Fixture {
            broker,
            actors,
            events,
        }
    }

    fn behave(&self, actor: &str, behaviour: Behaviour) {
        self.actors
            .behaviour
            .lock()
            .unwrap()
            .insert(actor.to_string(), behaviour);
    }

    async fn bind(&self, actor: &str, subscription: &str, queue: Option<&str>) {
        bind(&self.broker, actor, subscription, queue)
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no delivery within the bounded wait")
            .unwrap()
    }

    /// The next `n` deliveries as (actor, subject, body) sorted, for
    /// assertions independent of cross-subscription ordering.
    async fn next_sorted(&mut self, n: usize) -> Vec<(String, String, Vec<u8>)> {
        let mut got = Vec::new();
        for _ in 0..n {
            let e = self.next().await;
            got.push((e.actor, e.message.subject, e.message.body));
        }
        got.sort();
        got
    }
}

async fn bind(
    broker: &MemoryMessaging,
    actor: &str,
    subscription: &str,
    queue: Option<&str>,
) -> Result<(), ProviderError> {
    let mut values = HashMap::new();
    if !subscription.is_empty() {
        values.insert("SUBSCRIPTION".to_string(), subscription.to_string());
    }
    if let Some(q) = queue {
        values.insert("QUEUEGROUP_NAME".to_string(), q.to_string());
    }
    broker
        .bind_actor(BindRequest {
            actor: actor.into(),
            binding: "default".into(),
            values,
        })
        .await
}

fn call(actor: &str, operation: &str, payload: Vec<u8>) -> ProviderCall {
    ProviderCall {
        actor: actor.into(),
        binding: "default".into(),
        operation: operation.into(),
        payload,
    }
}

async fn publish(
    broker: &MemoryMessaging,
    actor: &str,
    subject: &str,
    body: &[u8],
) -> Result<Vec<u8>, ProviderError> {
    let message = BrokerMessage {
        subject: subject.into(),
        reply_to: String::new(),
        body: body.to_vec(),
    };
    broker
        .handle_call(call(
            actor,
            OP_PUBLISH_MESSAGE,
            encode(CAPABILITY_ID, &message).unwrap(),
        ))
        .await
}

async fn request(
    broker: &MemoryMessaging,
    actor: &str,
    subject: &str,
    body: &[u8],
    timeout_ms: i64,
) -> Result<Vec<u8>, ProviderError> {
    let message = RequestMessage {
        subject: subject.into(),
        body: body.to_vec(),
        timeout_ms,
    };
    broker
        .handle_call(call(
            actor,
            OP_PERFORM_REQUEST,
            encode(CAPABILITY_ID, &message).unwrap(),
        ))
        .await
}

fn t(actor: &str, subject: &str, body: &[u8]) -> (String, String, Vec<u8>) {
    (actor.to_string(), subject.to_string(), body.to_vec())
}

#[tokio::test]
async fn publish_delivers_to_every_subscribed_actor() {
    let mut f = Fixture::new().await;
    f.bind("MA", "news", None).await;
    f.bind("MB", "sports, news", None).await;
    f.bind("MC", "weather", None).await;
    f.bind("MPUB", "", None).await;

    let reply = publish(&f.broker, "MPUB", "news", b"hello").await.unwrap();
    assert!(reply.is_empty());

    let first = f.next().await;
    assert_eq!(first.operation, OP_DELIVER_MESSAGE);
    assert_eq!(first.message.reply_to, "");
    let second = f.next().await;
    let mut got = vec![
        (first.actor, first.message.subject, first.message.body),
        (second.actor, second.message.subject, second.message.body),
    ];
    got.sort();
    assert_eq!(
        got,
        vec![t("MA", "news", b"hello"), t("MB", "news", b"hello")]
    );
    assert_eq!(f.broker.subscriber_count("news"), 2);
    assert_eq!(f.broker.subscriber_count("weather"), 1);
}

#[tokio::test]
async fn wildcards_follow_nats_rules() {
    let mut f = Fixture::new().await;
    f.bind("MSTAR", "a.*", None).await;
    f.bind("MTAIL", "a.>", None).await;
    f.bind("MMID", "*.x.y", None).await;
    f.bind("MPUB", "", None).await;

    publish(&f.broker, "MPUB", "a.b", b"1").await.unwrap();
    publish(&f.broker, "MPUB", "a.x.y", b"2").await.unwrap();
    publish(&f.broker, "MPUB", "b", b"3").await.unwrap();

    assert_eq!(
        f.next_sorted(4).await,
        vec![
            t("MMID", "a.x.y", b"2"),
            t("MSTAR", "a.b", b"1"),
            t("MTAIL", "a.b", b"1"),
            t("MTAIL", "a.x.y", b"2"),
        ]
    );
    assert_eq!(f.broker.subscriber_count("a"), 0);
    assert_eq!(f.broker.subscriber_count("b"), 0);
    assert_eq!(f.broker.subscriber_count("a.b.c"), 1);
}

#[tokio::test]
async fn a_queue_group_gets_each_message_once() {
    let mut f = Fixture::new().await;
    f.bind("MW1", "jobs", Some("workers")).await;
    f.bind("MW2", "jobs", Some("workers")).await;
    f.bind("MAUDIT", "jobs", None).await;
    f.bind("MPUB", "", None).await;
    assert_eq!(f.broker.subscriber_count("jobs"), 2);

    const N: usize = 20;
    for i in 0..N {
        publish(&f.broker, "MPUB", "jobs", i.to_string().as_bytes())
            .await
            .unwrap();
    }
    // Every delivery was queued before `publish` returned, so 2 × N events
    // are all there will be: N to the audit actor, N split among workers.
    let mut per_actor: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for _ in 0..2 * N {
        let e = f.next().await;
        per_actor.entry(e.actor).or_default().push(e.message.body);
    }
    assert_eq!(per_actor["MAUDIT"].len(), N);
    let w1 = per_actor.get("MW1").cloned().unwrap_or_default();
    let w2 = per_actor.get("MW2").cloned().unwrap_or_default();
    assert!(!w1.is_empty() && !w2.is_empty(), "{w1:?} / {w2:?}");
    let mut all: Vec<Vec<u8>> = w1.into_iter().chain(w2).collect();
    all.sort();
    let mut expected: Vec<Vec<u8>> = (0..N).map(|i| i.to_string().into_bytes()).collect();
    expected.sort();
    assert_eq!(all, expected, "each job exactly once among the workers");
}

#[tokio::test]
async fn a_responder_answers_by_returning_bytes() {
    let mut f = Fixture::new().await;
    f.bind("MSVC", "svc.echo", None).await;
    f.bind("MCLIENT", "", None).await;
    f.behave("MSVC", Behaviour::Return(b"pong".to_vec()));

    let reply = request(&f.broker, "MCLIENT", "svc.echo", b"ping", 2_000)
        .await
        .unwrap();
    assert_eq!(reply, b"pong");
    let seen = f.next().await;
    assert_eq!(seen.message.body, b"ping");
    assert!(seen.message.reply_to.starts_with("_INBOX."), "{seen:?}");
}

#[tokio::test]
async fn a_responder_answers_by_publishing_to_reply_to() {
    let f = Fixture::new().await;
    f.bind("MSVC", "svc.>", None).await;
    f.bind("MCLIENT", "", None).await;
    f.behave("MSVC", Behaviour::PublishReply(b"explicit".to_vec()));

    // The default timeout applies when the actor sends 0.
    let reply = request(&f.broker, "MCLIENT", "svc.upper", b"x", 0)
        .await
        .unwrap();
    assert_eq!(reply, b"explicit");
}

#[tokio::test]
async fn an_actor_not_handed_the_inbox_cannot_answer_in_the_responders_place() {
    // The responder is held until the forger has tried: the forger knows how
    // inboxes are named and has seen one of its own requests' inboxes.
    let mut f = Fixture::new().await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    f.bind("MSVC", "svc.slow", None).await;
    f.bind("MCLIENT", "", None).await;
    f.bind("MFORGER", "", None).await;
    f.behave("MSVC", Behaviour::Block(gate.clone()));

    let broker = f.broker.clone();
    let waiting =
        tokio::spawn(async move { request(&broker, "MCLIENT", "svc.slow", b"ping", 5_000).await });
    let seen = f.next().await;
    let inbox = seen.message.reply_to.clone();
    assert!(inbox.starts_with("_INBOX.WAXOSUIT."), "{seen:?}");
    let suffix = inbox.trim_start_matches("_INBOX.WAXOSUIT.");
    assert_eq!(suffix.len(), 32, "128 random bits: {inbox}");

    // Counters, neighbours of a seen inbox, and the plain prefix.
    let mut guesses: Vec<String> = (0..256).map(|n| format!("_INBOX.WAXOSUIT.{n}")).collect();
    if let Ok(n) = u128::from_str_radix(suffix, 16) {
        for d in 1..64u128 {
            guesses.push(format!("_INBOX.WAXOSUIT.{:032x}", n.wrapping_add(d)));
            guesses.push(format!("_INBOX.WAXOSUIT.{:032x}", n.wrapping_sub(d)));
        }
    }
    for guess in &guesses {
        publish(&f.broker, "MFORGER", guess, b"forged")
            .await
            .unwrap();
    }
    assert!(
        !waiting.is_finished(),
        "a guessed inbox answered the request"
    );

    // The real responder publishes to the inbox it was handed and wins.
    publish(&f.broker, "MSVC", &inbox, b"pong").await.unwrap();
    let reply = waiting.await.unwrap().unwrap();
    assert_eq!(reply, b"pong");
    gate.add_permits(1);

    // Two requests never share an inbox.
    f.behave("MSVC", Behaviour::Return(b"ok".to_vec()));
    request(&f.broker, "MCLIENT", "svc.slow", b"again", 2_000)
        .await
        .unwrap();
    let again = f.next().await;
    assert_ne!(again.message.reply_to, inbox);
}

#[tokio::test]
async fn an_actor_can_answer_its_own_request() {
    // The request waits on the caller's stack while the answer comes from
    // the subscription's own task, so one actor can be both ends.
    let f = Fixture::new().await;
    f.bind("MBOTH", "svc.self", None).await;
    f.behave("MBOTH", Behaviour::Return(b"me".to_vec()));
    let reply = request(&f.broker, "MBOTH", "svc.self", b"", 1_000)
        .await
        .unwrap();
    assert_eq!(reply, b"me");
}

#[tokio::test]
async fn a_request_nobody_answers_times_out() {
    let mut f = Fixture::new().await;
    f.bind("MSILENT", "svc.slow", None).await;
    f.bind("MCLIENT", "", None).await;

    let err = request(&f.broker, "MCLIENT", "svc.slow", b"?", 100)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Backend { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("no reply on svc.slow within 100 ms"),
        "{err}"
    );
    // The responder did get the request; it just stayed silent.
    assert_eq!(f.next().await.actor, "MSILENT");
}

#[tokio::test]
async fn a_request_without_subscribers_fails_at_once() {
    let f = Fixture::new().await;
    f.bind("MCLIENT", "", None).await;
    // A long timeout: the test would hang if the broker waited for it.
    let err = tokio::time::timeout(
        WAIT,
        request(&f.broker, "MCLIENT", "nobody.home", b"", 60_000),
    )
    .await
    .expect("no-responders must not wait for the timeout")
    .unwrap_err();
    assert!(matches!(err, ProviderError::Backend { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no responders for nobody.home"),
        "{err}"
    );
}

#[tokio::test]
async fn unbound_actors_are_refused() {
    let f = Fixture::new().await;
    let err = publish(&f.broker, "MSTRANGER", "x", b"").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
    let err = request(&f.broker, "MSTRANGER", "x", b"", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
}

#[tokio::test]
async fn bad_payloads_and_operations_are_refused() {
    let f = Fixture::new().await;
    f.bind("MA", "", None).await;
    for op in [OP_PUBLISH_MESSAGE, OP_PERFORM_REQUEST] {
        let err = f
            .broker
            .handle_call(call("MA", op, vec![0xc1]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadPayload { operation, .. } if operation == op),
            "{err:?}"
        );
    }
    let err = f
        .broker
        .handle_call(call("MA", "Subscribe", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UnknownOperation { .. }),
        "{err:?}"
    );
    let err = publish(&f.broker, "MA", "a.*", b"").await.unwrap_err();
    assert!(err.to_string().contains("wildcard"), "{err}");
}

#[tokio::test]
async fn invalid_binding_configuration_is_a_config_error() {
    let f = Fixture::new().await;
    let err = bind(&f.broker, "MA", "ok, a..b", None).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "SUBSCRIPTION"),
        "{err:?}"
    );
    let err = bind(&f.broker, "MA", "ok", Some("two words"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "QUEUEGROUP_NAME"),
        "{err:?}"
    );
    // A failed bind leaves nothing behind.
    assert_eq!(f.broker.subscriber_count("ok"), 0);
}

#[tokio::test]
async fn remove_actor_stops_delivery() {
    let mut f = Fixture::new().await;
    f.bind("MGONE", "topic", None).await;
    f.bind("MSTAYS", "sentinel", None).await;
    f.bind("MPUB", "", None).await;

    f.broker.remove_actor("MGONE", "default").await.unwrap();
    assert_eq!(f.broker.subscriber_count("topic"), 0);
    let err = request(&f.broker, "MPUB", "topic", b"", 1_000)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no responders"), "{err}");
    let err = publish(&f.broker, "MGONE", "topic", b"").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");

    publish(&f.broker, "MPUB", "topic", b"lost").await.unwrap();
    publish(&f.broker, "MPUB", "sentinel", b"kept")
        .await
        .unwrap();
    let e = f.next().await;
    assert_eq!(
        (e.actor.as_str(), e.message.body.as_slice()),
        ("MSTAYS", &b"kept"[..])
    );
    assert!(
        f.events.try_recv().is_err(),
        "nothing for the removed actor"
    );

    let err = f.broker.remove_actor("MGONE", "default").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
}

#[tokio::test]
async fn an_actor_may_publish_to_its_own_subscription_from_its_handler() {
    let mut f = Fixture::new().await;
    f.bind("MLOOP", "loop.*", None).await;
    f.bind("MPUB", "", None).await;
    f.behave("MLOOP", Behaviour::Publish("loop.second".into()));

    publish(&f.broker, "MPUB", "loop.first", b"go")
        .await
        .unwrap();
    assert_eq!(f.next().await.message.subject, "loop.first");
    // Would never arrive if delivery ran on the publishing handler's stack.
    assert_eq!(f.next().await.message.subject, "loop.second");
}

#[tokio::test]
async fn a_slow_actor_loses_messages_beyond_its_queue() {
    let mut f = Fixture::with_broker(MemoryMessaging::with_queue_capacity(1)).await;
    let gate = Arc::new(Semaphore::new(0));
    f.bind("MSLOW", "work", None).await;
    f.bind("MPUB", "", None).await;
    f.behave("MSLOW", Behaviour::Block(gate.clone()));

    publish(&f.broker, "MPUB", "work", b"1").await.unwrap();
    // The task has taken "1" and is blocked in the actor: the queue is empty.
    assert_eq!(f.next().await.message.body, b"1");
    publish(&f.broker, "MPUB", "work", b"2").await.unwrap();
    // The only subscriber is full, so the publisher learns nothing arrives.
    for body in [b"3", b"4"] {
        let err = publish(&f.broker, "MPUB", "work", body).await.unwrap_err();
        assert!(err.to_string().contains("MAX_QUEUED_MESSAGES"), "{err}");
    }
    gate.add_permits(100);
    assert_eq!(f.next().await.message.body, b"2");
    publish(&f.broker, "MPUB", "work", b"5").await.unwrap();
    // One queue, delivered in order: had 3 or 4 been kept they would come
    // before 5.
    assert_eq!(f.next().await.message.body, b"5");
}

#[tokio::test]
async fn a_failing_subscriber_does_not_stop_its_subscription_and_costs_a_warning_a_second() {
    // The only test whose actor fails deliveries: the warning's callsite is
    // not raced by another test's thread without this subscriber.
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let mut f = Fixture::new().await;
    f.bind("MFLAKY", "flaky", None).await;
    f.bind("MPUB", "", None).await;
    f.behave("MFLAKY", Behaviour::Fail);
    let started = std::time::Instant::now();
    for n in 0..300 {
        publish(&f.broker, "MPUB", "flaky", format!("{n}").as_bytes())
            .await
            .unwrap();
    }
    // Every message is still delivered, in order, after failures.
    for n in 0..300 {
        assert_eq!(f.next().await.message.body, format!("{n}").as_bytes());
    }
    let failed = warnings
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.contains("message delivery failed"))
        .count();
    // One line a second at most (before: 300).
    let most = 1 + started.elapsed().as_secs() as usize;
    assert!(
        (1..=most).contains(&failed),
        "{failed} warnings for 300 failures in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn shutdown_ends_waiting_requests() {
    let mut f = Fixture::new().await;
    f.bind("MSILENT", "svc", None).await;
    f.bind("MCLIENT", "", None).await;
    let broker = f.broker.clone();
    let pending =
        tokio::spawn(async move { request(&broker, "MCLIENT", "svc", b"", 60_000).await });
    // Once the responder has the request, the inbox is registered.
    assert_eq!(f.next().await.actor, "MSILENT");
    f.broker.shutdown().await;
    let err = tokio::time::timeout(WAIT, pending)
        .await
        .expect("shutdown must wake the request")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert_eq!(f.broker.subscriber_count("svc"), 0);
}

// ---------------------------------------------------------------- quotas --

async fn bind_values(
    broker: &MemoryMessaging,
    actor: &str,
    values: &[(&str, &str)],
) -> Result<(), ProviderError> {
    broker
        .bind_actor(BindRequest {
            actor: actor.into(),
            binding: "default".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
}

/// Asserts the error a sender gets when every matching subscription is
/// full: it names the quota, the subscriber, its binding and the fix.
#[track_caller]
fn assert_queue_full(result: Result<Vec<u8>, ProviderError>, quota: &str, subscriber: &str) {
    match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            for needle in [
                "dropped: every matching subscription is full",
                &format!("actor {subscriber} (binding `default`) is at its {quota} quota"),
                "raise the named quota",
            ] {
                assert!(message.contains(needle), "`{needle}` not in: {message}");
            }
        }
        other => panic!("expected a {quota} error, got {other:?}"),
    }
}

/// Counts `tracing` warnings.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }
}

#[tokio::test]
async fn a_flood_to_a_stuck_subscriber_is_bounded_by_its_queue_quota() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let mut f = Fixture::new().await;
    let gate = Arc::new(Semaphore::new(0));
    bind_values(
        &f.broker,
        "MSLOW",
        &[("SUBSCRIPTION", "work"), ("MAX_QUEUED_MESSAGES", "100")],
    )
    .await
    .unwrap();
    f.bind("MOTHER", "other", None).await;
    f.bind("MPUB", "", None).await;
    f.behave("MSLOW", Behaviour::Block(gate.clone()));

    publish(&f.broker, "MPUB", "work", b"first").await.unwrap();
    assert_eq!(f.next().await.message.body, b"first", "taken, now stuck");

    let mut accepted = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..10_000u32 {
        let body = i.to_string();
        match publish(&f.broker, "MPUB", "work", body.as_bytes()).await {
            Ok(_) => accepted.push(body.into_bytes()),
            refused => assert_queue_full(refused, "MAX_QUEUED_MESSAGES", "MSLOW"),
        }
    }
    assert_eq!(accepted.len(), 100);
    assert_eq!(f.broker.queued_messages(), 100, "the quota is the bound");
    // 9,900 drops: one warning line per second (the first at once), not
    // one per message.
    let seconds = started.elapsed().as_secs() as usize;
    let drops: Vec<String> = warnings.0.lock().unwrap().clone();
    assert!(
        (1..=1 + seconds).contains(&drops.len()),
        "{} warnings in {seconds} s",
        drops.len()
    );
    assert!(drops[0].contains("1 message(s) dropped"), "{drops:?}");
    assert!(
        drops[0].contains("MAX_QUEUED_MESSAGES quota (100)"),
        "{drops:?}"
    );

    // Other subscriptions are unaffected, and a publish some subscriber
    // takes succeeds even though the stuck one drops it.
    publish(&f.broker, "MPUB", "other", b"still flowing")
        .await
        .unwrap();
    let e = f.next().await;
    assert_eq!(
        (e.actor.as_str(), &e.message.body[..]),
        ("MOTHER", &b"still flowing"[..])
    );
    f.bind("MFAST", "work", None).await;
    publish(&f.broker, "MPUB", "work", b"partial")
        .await
        .unwrap();
    let e = f.next().await;
    assert_eq!(
        (e.actor.as_str(), &e.message.body[..]),
        ("MFAST", &b"partial"[..])
    );

    // Unblocked, the stuck actor gets exactly what was accepted, in order.
    gate.add_permits(10_000);
    let mut received = Vec::new();
    while received.len() < accepted.len() {
        let e = f.next().await;
        assert_eq!(e.actor, "MSLOW");
        received.push(e.message.body);
    }
    assert_eq!(received, accepted);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(f.events.try_recv().is_err(), "nothing beyond the quota");
    assert_eq!(f.broker.queued_messages(), 0);
    // With room again, publishing to it works.
    publish(&f.broker, "MPUB", "work", b"again").await.unwrap();
}

#[tokio::test]
async fn the_byte_quota_bounds_what_waits_in_bytes() {
    let mut f = Fixture::new().await;
    let gate = Arc::new(Semaphore::new(0));
    bind_values(
        &f.broker,
        "MSLOW",
        &[("SUBSCRIPTION", "blobs"), ("MAX_QUEUED_BYTES", "2000")],
    )
    .await
    .unwrap();
    f.bind("MPUB", "", None).await;
    f.behave("MSLOW", Behaviour::Block(gate.clone()));
    publish(&f.broker, "MPUB", "blobs", b"x").await.unwrap();
    f.next().await;

    let body = vec![7u8; 500];
    let mut accepted = 0;
    for _ in 0..100 {
        match publish(&f.broker, "MPUB", "blobs", &body).await {
            Ok(_) => accepted += 1,
            refused => assert_queue_full(refused, "MAX_QUEUED_BYTES", "MSLOW"),
        }
    }
    // Each waits as ~530 encoded bytes: three fit in 2,000, a fourth not.
    assert_eq!(accepted, 3);
    // A message too big for the quota on its own is refused even when the
    // queue is empty.
    gate.add_permits(100);
    for _ in 0..3 {
        f.next().await;
    }
    assert_queue_full(
        publish(&f.broker, "MPUB", "blobs", &vec![0u8; 2_000]).await,
        "MAX_QUEUED_BYTES",
        "MSLOW",
    );
}

#[tokio::test]
async fn a_request_to_full_responders_fails_at_once_naming_the_quota() {
    let mut f = Fixture::new().await;
    let gate = Arc::new(Semaphore::new(0));
    bind_values(
        &f.broker,
        "MSVC",
        &[("SUBSCRIPTION", "svc"), ("MAX_QUEUED_MESSAGES", "1")],
    )
    .await
    .unwrap();
    f.bind("MCLIENT", "", None).await;
    f.behave("MSVC", Behaviour::Block(gate.clone()));
    publish(&f.broker, "MCLIENT", "svc", b"busy").await.unwrap();
    f.next().await;
    publish(&f.broker, "MCLIENT", "svc", b"queued")
        .await
        .unwrap();

    let result = tokio::time::timeout(WAIT, request(&f.broker, "MCLIENT", "svc", b"?", 60_000))
        .await
        .expect("a refused request must not wait for its timeout");
    assert_queue_full(result, "MAX_QUEUED_MESSAGES", "MSVC");
    gate.add_permits(10);
}

#[tokio::test]
async fn a_queue_group_passes_over_a_full_member() {
    let mut f = Fixture::new().await;
    let gate = Arc::new(Semaphore::new(0));
    for (actor, quota) in [("MW1", "1"), ("MW2", "1000")] {
        bind_values(
            &f.broker,
            actor,
            &[
                ("SUBSCRIPTION", "jobs"),
                ("QUEUEGROUP_NAME", "workers"),
                ("MAX_QUEUED_MESSAGES", quota),
            ],
        )
        .await
        .unwrap();
    }
    f.bind("MPUB", "", None).await;
    f.behave("MW1", Behaviour::Block(gate.clone()));
    for i in 0..200u32 {
        publish(&f.broker, "MPUB", "jobs", i.to_string().as_bytes())
            .await
            .unwrap();
    }
    let mut delivered = 0;
    while delivered < 199 {
        f.next().await;
        delivered += 1;
    }
    // Every publish succeeded: the stuck member holds one job in its
    // handler and at most one waiting, the other member took the rest.
    assert!(f.broker.queued_messages() <= 1);
    gate.add_permits(1_000);
}

#[tokio::test]
async fn subscriptions_per_binding_are_bounded() {
    let f = Fixture::new().await;
    let subjects = |n: usize| {
        (0..n)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let err = bind_values(&f.broker, "MA", &[("SUBSCRIPTION", &subjects(65))])
        .await
        .unwrap_err();
    match &err {
        ProviderError::Config { key, reason, .. } => {
            assert_eq!(key, "SUBSCRIPTION");
            for needle in [
                "65 subjects",
                "binding `default`",
                "MAX_SUBSCRIPTIONS quota (64)",
                "raise MAX_SUBSCRIPTIONS",
            ] {
                assert!(reason.contains(needle), "`{needle}` not in: {reason}");
            }
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.broker.subscriber_count("s0"),
        0,
        "a refused bind subscribes nothing"
    );
    bind_values(&f.broker, "MA", &[("SUBSCRIPTION", &subjects(64))])
        .await
        .unwrap();
    assert_eq!(f.broker.subscriber_count("s63"), 1);

    let err = bind_values(
        &f.broker,
        "MB",
        &[("SUBSCRIPTION", "a, b, c"), ("MAX_SUBSCRIPTIONS", "2")],
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("MAX_SUBSCRIPTIONS quota (2)"),
        "{err}"
    );
    bind_values(
        &f.broker,
        "MB",
        &[("SUBSCRIPTION", "a, b, c"), ("MAX_SUBSCRIPTIONS", "3")],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn quota_values_must_be_positive_whole_numbers() {
    let f = Fixture::new().await;
    for (key, bad) in [
        ("MAX_SUBSCRIPTIONS", "0"),
        ("MAX_QUEUED_MESSAGES", "many"),
        ("MAX_QUEUED_BYTES", "-1"),
    ] {
        let err = bind_values(&f.broker, "MA", &[("SUBSCRIPTION", "x"), (key, bad)])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key: k, reason, .. }
                if k == key && reason.contains(&format!("`{bad}`"))),
            "{err:?}"
        );
    }
    assert_eq!(f.broker.subscriber_count("x"), 0);
}

/// The contract's conformance suite, on the embedded broker.
#[tokio::test]
async fn passes_the_messaging_conformance_suite() {
    let broker = MemoryMessaging::new();
    let recorder = waxosuit_cap_messaging::conformance::Recorder::new();
    broker.start(recorder.dispatcher()).await.unwrap();
    waxosuit_cap_messaging::conformance::run(&broker, &recorder, &[])
        .await
        .assert_passed();
}

/// One way a broker can get the contract wrong, put in front of the
/// embedded broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Queue groups are ignored: every member gets every message.
    IgnoresQueueGroups,
    /// `remove_actor` keeps the subscriptions.
    KeepsRemovedBindings,
    /// `Publish` loses its `replyTo`.
    DropsReplyTo,
    /// An invalid `SUBSCRIPTION` is silently ignored.
    IgnoresBadSubscriptions,
}

struct Flawed {
    broker: MemoryMessaging,
    flaw: Flaw,
}

#[async_trait::async_trait]
impl CapabilityProvider for Flawed {
    fn descriptor(&self) -> waxosuit_codec::capabilities::CapabilityDescriptor {
        self.broker.descriptor()
    }
    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        self.broker.start(dispatcher).await
    }
    async fn bind_actor(&self, mut request: BindRequest) -> Result<(), ProviderError> {
        match self.flaw {
            Flaw::IgnoresQueueGroups => {
                request.values.remove(QUEUEGROUP_NAME);
            }
            Flaw::IgnoresBadSubscriptions => {
                let valid = request.values.get(SUBSCRIPTION).is_some_and(|list| {
                    list.split(',')
                        .all(|s| waxosuit_cap_messaging::subject::validate(s.trim()).is_ok())
                });
                if !valid {
                    request.values.remove(SUBSCRIPTION);
                }
            }
            _ => {}
        }
        self.broker.bind_actor(request).await
    }
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        if self.flaw == Flaw::KeepsRemovedBindings {
            return Ok(());
        }
        self.broker.remove_actor(actor, binding).await
    }
    async fn handle_call(&self, mut call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        if self.flaw == Flaw::DropsReplyTo
            && call.operation == OP_PUBLISH_MESSAGE
            && let Ok(mut message) = waxosuit_codec::deserialize::<BrokerMessage>(&call.payload)
        {
            message.reply_to.clear();
            call.payload = waxosuit_codec::serialize(&message).unwrap();
        }
        self.broker.handle_call(call).await
    }
}

/// The suite can fail: each flaw fails the check that covers it.
#[tokio::test]
async fn the_conformance_suite_catches_a_wrong_broker() {
    for (flaw, check) in [
        (
            Flaw::IgnoresQueueGroups,
            "queue_group_gets_each_message_once",
        ),
        (
            Flaw::KeepsRemovedBindings,
            "removing_a_binding_stops_delivery",
        ),
        (Flaw::DropsReplyTo, "reply_to_is_delivered"),
        (
            Flaw::IgnoresBadSubscriptions,
            "invalid_binding_values_are_refused",
        ),
    ] {
        let flawed = Flawed {
            broker: MemoryMessaging::new(),
            flaw,
        };
        let recorder = waxosuit_cap_messaging::conformance::Recorder::new();
        flawed.start(recorder.dispatcher()).await.unwrap();
        let report = waxosuit_cap_messaging::conformance::run(&flawed, &recorder, &[]).await;
        assert!(
            report.failed(check),
            "{flaw:?} was not caught by {check}:\n{report}"
        );
    }
}
