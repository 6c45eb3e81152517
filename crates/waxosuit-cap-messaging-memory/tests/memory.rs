//! The embedded broker driven the way the host drives it: bindings, actor
//! calls, and a dispatcher standing in for the actors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};
use waxosuit_cap_messaging_memory::MemoryMessaging;
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
    assert!(err.to_string().contains("wildcards"), "{err}");
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
    for body in [b"2", b"3", b"4"] {
        publish(&f.broker, "MPUB", "work", body).await.unwrap();
    }
    gate.add_permits(100);
    assert_eq!(f.next().await.message.body, b"2");
    publish(&f.broker, "MPUB", "work", b"5").await.unwrap();
    // One queue, delivered in order: had 3 or 4 been kept they would come
    // before 5.
    assert_eq!(f.next().await.message.body, b"5");
}

#[tokio::test]
async fn a_failing_subscriber_does_not_stop_its_subscription() {
    let mut f = Fixture::new().await;
    f.bind("MFLAKY", "flaky", None).await;
    f.bind("MPUB", "", None).await;
    f.behave("MFLAKY", Behaviour::Fail);
    publish(&f.broker, "MPUB", "flaky", b"1").await.unwrap();
    publish(&f.broker, "MPUB", "flaky", b"2").await.unwrap();
    assert_eq!(f.next().await.message.body, b"1");
    assert_eq!(f.next().await.message.body, b"2");
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
