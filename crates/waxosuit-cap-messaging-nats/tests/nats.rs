//! The NATS provider against a real `nats-server` per test, with plain
//! async-nats clients on the other side and a dispatcher standing in for
//! the actors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use waxosuit_cap_messaging_nats::NatsMessaging;
use waxosuit_codec::messaging::{
    BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE,
    RequestMessage,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
    encode,
};
use waxosuit_test_servers::NatsServer;

/// Upper bound for anything that should happen "soon".
const WAIT: Duration = Duration::from_secs(10);
/// Upper bound for the client to notice a restarted server and resubscribe
/// (the provider's reconnect backoff is capped at 1 s per attempt; the
/// bound is generous for a loaded machine).
const RECONNECT_WAIT: Duration = Duration::from_secs(30);

#[derive(Clone)]
enum Behaviour {
    Quiet,
    Return(Vec<u8>),
    /// Publishes these bytes to `replyTo` through the provider, as the
    /// actor's host call would.
    PublishReply(Vec<u8>),
}

#[derive(Debug)]
struct Event {
    actor: String,
    operation: String,
    message: BrokerMessage,
}

struct Actors {
    events: mpsc::UnboundedSender<Event>,
    behaviour: Mutex<HashMap<String, Behaviour>>,
    provider: OnceLock<Weak<NatsMessaging>>,
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
        match behaviour {
            Behaviour::Quiet => Ok(Vec::new()),
            Behaviour::Return(bytes) => Ok(bytes),
            Behaviour::PublishReply(bytes) => {
                let provider = self.provider.get().unwrap().upgrade().unwrap();
                publish(&provider, actor, &message.reply_to, "", &bytes)
                    .await
                    .unwrap();
                Ok(Vec::new())
            }
        }
    }
}

struct Fixture {
    server: NatsServer,
    provider: Arc<NatsMessaging>,
    actors: Arc<Actors>,
    events: mpsc::UnboundedReceiver<Event>,
    client: async_nats::Client,
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture::with_provider(NatsMessaging::new()).await
    }

    async fn with_provider(provider: NatsMessaging) -> Fixture {
        let server = NatsServer::start().unwrap();
        let provider = Arc::new(provider);
        let (tx, events) = mpsc::unbounded_channel();
        let actors = Arc::new(Actors {
            events: tx,
            behaviour: Mutex::new(HashMap::new()),
            provider: OnceLock::new(),
        });
        actors.provider.set(Arc::downgrade(&provider)).ok().unwrap();
        provider.start(actors.clone()).await.unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        Fixture {
            server,
            provider,
            actors,
            events,
            client,
        }
    }

    fn behave(&self, actor: &str, behaviour: Behaviour) {
        self.actors
            .behaviour
            .lock()
            .unwrap()
            .insert(actor.to_string(), behaviour);
    }

    async fn bind(&self, actor: &str, values: &[(&str, &str)]) -> Result<(), ProviderError> {
        let mut values: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        values
            .entry("URL".to_string())
            .or_insert_with(|| self.server.url());
        self.provider
            .bind_actor(BindRequest {
                actor: actor.into(),
                binding: "default".into(),
                values,
            })
            .await
    }

    async fn next(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("no delivery within the bounded wait")
            .unwrap()
    }

    async fn publish_plain(&self, subject: &str, body: &str) {
        self.client
            .publish(subject.to_string(), body.to_string().into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }
}

/// Returns once the server has processed everything `client` sent (its
/// subscriptions included): `flush` alone only empties the socket buffer.
async fn settle(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    tokio::time::timeout(WAIT, echo.next())
        .await
        .expect("server did not echo")
        .unwrap();
}

/// A request from a plain client with a short deadline, for polling loops.
async fn quick_request(
    client: &async_nats::Client,
    subject: &str,
) -> Result<async_nats::Message, async_nats::RequestError> {
    client
        .send_request(
            subject.to_string(),
            async_nats::Request::new().timeout(Some(Duration::from_millis(500))),
        )
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
    provider: &NatsMessaging,
    actor: &str,
    subject: &str,
    reply_to: &str,
    body: &[u8],
) -> Result<Vec<u8>, ProviderError> {
    let message = BrokerMessage {
        subject: subject.into(),
        reply_to: reply_to.into(),
        body: body.to_vec(),
    };
    provider
        .handle_call(call(
            actor,
            OP_PUBLISH_MESSAGE,
            encode(CAPABILITY_ID, &message).unwrap(),
        ))
        .await
}

async fn request(
    provider: &NatsMessaging,
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
    provider
        .handle_call(call(
            actor,
            OP_PERFORM_REQUEST,
            encode(CAPABILITY_ID, &message).unwrap(),
        ))
        .await
}

#[tokio::test]
async fn an_actor_receives_what_a_plain_client_publishes() {
    let mut f = Fixture::new().await;
    f.bind("MSUB", &[("SUBSCRIPTION", "greet.*, other")])
        .await
        .unwrap();

    f.publish_plain("greet.world", "hi").await;
    let e = f.next().await;
    assert_eq!(e.actor, "MSUB");
    assert_eq!(e.operation, OP_DELIVER_MESSAGE);
    assert_eq!(e.message.subject, "greet.world");
    assert_eq!(e.message.reply_to, "");
    assert_eq!(e.message.body, b"hi");

    f.publish_plain("other", "second subscription").await;
    assert_eq!(f.next().await.message.subject, "other");
}

#[tokio::test]
async fn an_actor_answers_plain_client_requests() {
    let mut f = Fixture::new().await;
    f.bind("MRET", &[("SUBSCRIPTION", "svc.returned")])
        .await
        .unwrap();
    f.bind("MPUB", &[("SUBSCRIPTION", "svc.published")])
        .await
        .unwrap();
    f.behave("MRET", Behaviour::Return(b"pong".to_vec()));
    f.behave("MPUB", Behaviour::PublishReply(b"explicit".to_vec()));

    let reply = f
        .client
        .request("svc.returned", "ping".into())
        .await
        .unwrap();
    assert_eq!(reply.payload.as_ref(), b"pong");
    let seen = f.next().await;
    assert_eq!(seen.message.body, b"ping");
    assert!(!seen.message.reply_to.is_empty(), "{seen:?}");

    let reply = f
        .client
        .request("svc.published", "ping".into())
        .await
        .unwrap();
    assert_eq!(reply.payload.as_ref(), b"explicit");
}

#[tokio::test]
async fn an_actor_requests_and_a_plain_client_responds() {
    let f = Fixture::new().await;
    f.bind("MCLIENT", &[]).await.unwrap();
    let mut requests = f.client.subscribe("time.now").await.unwrap();
    settle(&f.client).await;
    let responder = f.client.clone();
    let serve = tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let mut answer = b"noon for ".to_vec();
            answer.extend_from_slice(&m.payload);
            responder
                .publish(m.reply.unwrap(), answer.into())
                .await
                .unwrap();
        }
    });

    let reply = request(&f.provider, "MCLIENT", "time.now", b"me", 5_000)
        .await
        .unwrap();
    assert_eq!(reply, b"noon for me");
    // 0 means the default timeout, not "expire at once".
    let reply = request(&f.provider, "MCLIENT", "time.now", b"you", 0)
        .await
        .unwrap();
    assert_eq!(reply, b"noon for you");
    serve.abort();
}

#[tokio::test]
async fn an_actor_publish_carries_its_reply_subject() {
    let f = Fixture::new().await;
    f.bind("MPUB", &[]).await.unwrap();
    let mut watch = f.client.subscribe("events.>").await.unwrap();
    settle(&f.client).await;

    let reply = publish(&f.provider, "MPUB", "events.a", "", b"plain")
        .await
        .unwrap();
    assert!(reply.is_empty());
    publish(&f.provider, "MPUB", "events.b", "answers.here", b"asks")
        .await
        .unwrap();

    let first = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.subject.as_str(), "events.a");
    assert_eq!(first.reply, None);
    assert_eq!(first.payload.as_ref(), b"plain");
    let second = tokio::time::timeout(WAIT, watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.subject.as_str(), "events.b");
    assert_eq!(
        second.reply.as_ref().map(|s| s.as_str()),
        Some("answers.here")
    );
}

#[tokio::test]
async fn request_failures_are_distinct_and_clear() {
    let f = Fixture::new().await;
    f.bind("MCLIENT", &[]).await.unwrap();

    let err = request(&f.provider, "MCLIENT", "nobody.home", b"", 5_000)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Backend { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no responders for nobody.home"),
        "{err}"
    );

    // Subscribed but silent: the request must time out.
    let _silent = f.client.subscribe("slow").await.unwrap();
    settle(&f.client).await;
    let err = request(&f.provider, "MCLIENT", "slow", b"", 200)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Backend { .. }), "{err:?}");
    assert!(
        err.to_string().contains("no reply on slow within 200 ms"),
        "{err}"
    );
}

#[tokio::test]
async fn a_queue_group_gets_each_message_once() {
    let mut f = Fixture::new().await;
    for actor in ["MW1", "MW2"] {
        f.bind(
            actor,
            &[("SUBSCRIPTION", "jobs"), ("QUEUEGROUP_NAME", "workers")],
        )
        .await
        .unwrap();
    }
    const N: usize = 20;
    for i in 0..N {
        f.publish_plain("jobs", &i.to_string()).await;
    }
    let mut per_actor: HashMap<String, Vec<String>> = HashMap::new();
    for _ in 0..N {
        let e = f.next().await;
        per_actor
            .entry(e.actor)
            .or_default()
            .push(String::from_utf8(e.message.body).unwrap());
    }
    // Both members served (the server picks at random: all 20 to one
    // member has probability 2^-19).
    assert_eq!(per_actor.len(), 2, "{per_actor:?}");
    let mut all: Vec<String> = per_actor.into_values().flatten().collect();
    all.sort();
    let mut expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    expected.sort();
    assert_eq!(all, expected, "each job exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_recovers_the_subscription() {
    let mut f = Fixture::new().await;
    f.bind("MSUB", &[("SUBSCRIPTION", "survives")])
        .await
        .unwrap();
    f.behave("MSUB", Behaviour::Return(b"still here".to_vec()));
    f.publish_plain("survives", "before").await;
    assert_eq!(f.next().await.message.body, b"before");
    assert!(f.provider.health().await.healthy);

    tokio::task::block_in_place(|| f.server.stop());
    // The provider notices the outage.
    let deadline = tokio::time::Instant::now() + WAIT;
    while f.provider.health().await.healthy {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = f.provider.health().await;
    assert!(health.message.contains(&f.server.url()), "{health:?}");

    tokio::task::block_in_place(|| f.server.restart()).unwrap();
    let client = async_nats::connect(f.server.url()).await.unwrap();
    // Publish until the provider has reconnected and resubscribed; a
    // message sent before that is lost, as NATS core does.
    let deadline = tokio::time::Instant::now() + RECONNECT_WAIT;
    let event = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription not recovered within {RECONNECT_WAIT:?}"
        );
        client.publish("survives", "after".into()).await.unwrap();
        client.flush().await.unwrap();
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(250), f.events.recv()).await
        {
            break e;
        }
    };
    assert_eq!(event.message.body, b"after");
    // Requests to the recovered subscription are answered too.
    let reply = client.request("survives", "ask".into()).await.unwrap();
    assert_eq!(reply.payload.as_ref(), b"still here");
    assert!(f.provider.health().await.healthy);
}

/// A plain client that reconnects within milliseconds, to watch what the
/// provider publishes across a server restart.
async fn quick_client(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .max_reconnects(None)
        .reconnect_delay_callback(|_| Duration::from_millis(10))
        .connect(url)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_works_again_at_once_after_a_nats_restart() {
    let mut f = Fixture::new().await;
    f.bind("MPUB", &[]).await.unwrap();
    let watcher = quick_client(&f.server.url()).await;
    let mut seen = watcher.subscribe("out").await.unwrap();
    settle(&watcher).await;
    publish(&f.provider, "MPUB", "out", "", b"before")
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, seen.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.payload.as_ref(), b"before");

    tokio::task::block_in_place(|| f.server.stop());
    let deadline = tokio::time::Instant::now() + WAIT;
    while f.provider.health().await.healthy {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never reported the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // During the outage a publish fails fast and says why, instead of being
    // queued silently (or hanging once the client's queue is full).
    for round in 0..3 {
        let started = std::time::Instant::now();
        let err = publish(&f.provider, "MPUB", "out", "", b"lost")
            .await
            .expect_err("nothing can be published while the server is down");
        let took = started.elapsed();
        assert!(
            took <= waxosuit_cap_messaging_nats::reconnect::RECONNECT_WAIT + Duration::from_secs(2),
            "round {round}: the refusal took {took:?}"
        );
        match &err {
            ProviderError::Unavailable { reason, .. } => {
                for needle in [
                    f.server.url().as_str(),
                    "MPUB",
                    "binding `default`",
                    "Nothing was sent",
                ] {
                    assert!(reason.contains(needle), "{needle:?} missing from: {reason}");
                }
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    tokio::task::block_in_place(|| f.server.restart()).unwrap();
    // The watcher is back (and subscribed again) once a round trip works.
    let back = tokio::time::Instant::now() + RECONNECT_WAIT;
    loop {
        assert!(
            tokio::time::Instant::now() < back,
            "the watcher never came back"
        );
        let inbox = watcher.new_inbox();
        if let Ok(mut echo) = watcher.subscribe(inbox.clone()).await
            && watcher.publish(inbox, "".into()).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_millis(200), echo.next()).await,
                Ok(Some(_))
            )
        {
            break;
        }
    }
    // The provider's first publish after the restart goes through, without
    // rebinding and without waiting out a reconnect backoff.
    publish(&f.provider, "MPUB", "out", "", b"after")
        .await
        .expect("the first publish after the restart");
    let after = tokio::time::timeout(WAIT, seen.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        after.payload.as_ref(),
        b"after",
        "nothing published during the outage was queued and sent late"
    );
    assert!(f.provider.health().await.healthy);
}

#[tokio::test]
async fn an_unreachable_server_fails_the_bind_naming_the_url() {
    let f = Fixture::new().await;
    let port = waxosuit_test_servers::free_port().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let err = f.bind("MA", &[("URL", &url)]).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    // Nothing was bound.
    let err = publish(&f.provider, "MA", "x", "", b"").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unparsable_url_is_a_config_error() {
    let f = Fixture::new().await;
    let err = f
        .bind("MA", &[("URL", "nats://127.0.0.1:notaport")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "URL"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_missing_creds_file_is_a_config_error() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.creds");
    let err = f
        .bind("MA", &[("CREDSFILE", path.to_str().unwrap())])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "CREDSFILE"),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.creds"), "{err}");
}

#[tokio::test]
async fn an_unparsable_creds_file_is_a_config_error() {
    let f = Fixture::new().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.creds");
    std::fs::write(&path, "not a credentials file").unwrap();
    let err = f
        .bind("MA", &[("CREDSFILE", path.to_str().unwrap())])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "CREDSFILE"),
        "{err:?}"
    );
}

#[tokio::test]
async fn invalid_subscriptions_are_config_errors() {
    let f = Fixture::new().await;
    let err = f
        .bind("MA", &[("SUBSCRIPTION", "fine, a..b")])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == "SUBSCRIPTION"),
        "{err:?}"
    );
}

#[tokio::test]
async fn unbound_actors_and_bad_payloads_are_refused() {
    let f = Fixture::new().await;
    let err = publish(&f.provider, "MSTRANGER", "x", "", b"")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
    let err = request(&f.provider, "MSTRANGER", "x", b"", 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");

    f.bind("MA", &[]).await.unwrap();
    for op in [OP_PUBLISH_MESSAGE, OP_PERFORM_REQUEST] {
        let err = f
            .provider
            .handle_call(call("MA", op, vec![0xc1]))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadPayload { operation, .. } if operation == op),
            "{err:?}"
        );
    }
    let err = f
        .provider
        .handle_call(call("MA", "Subscribe", Vec::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProviderError::UnknownOperation { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn remove_actor_unsubscribes() {
    let f = Fixture::new().await;
    f.bind("MGONE", &[("SUBSCRIPTION", "svc.gone")])
        .await
        .unwrap();
    f.behave("MGONE", Behaviour::Return(b"here".to_vec()));
    let reply = f.client.request("svc.gone", "".into()).await.unwrap();
    assert_eq!(reply.payload.as_ref(), b"here");

    f.provider.remove_actor("MGONE", "default").await.unwrap();
    // The unsubscription reaches the server shortly after `remove_actor`
    // returns; until then a request may go unanswered, so poll.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match quick_request(&f.client, "svc.gone").await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still subscribed after remove_actor: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let err = publish(&f.provider, "MGONE", "x", "", b"")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
    let err = f
        .provider
        .remove_actor("MGONE", "default")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
}

#[tokio::test]
async fn shutdown_closes_every_binding() {
    let f = Fixture::new().await;
    f.bind("MA", &[("SUBSCRIPTION", "svc.a")]).await.unwrap();
    f.behave("MA", Behaviour::Return(b"a".to_vec()));
    assert_eq!(
        f.client
            .request("svc.a", "".into())
            .await
            .unwrap()
            .payload
            .as_ref(),
        b"a"
    );
    f.provider.shutdown().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match quick_request(&f.client, "svc.a").await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => break,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still subscribed after shutdown: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let err = publish(&f.provider, "MA", "x", "", b"").await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
}

// --- Reserved subjects: actors cannot reach the lattice's planes ------------

/// A plain subscriber to every subject, to see what actually reached the
/// server.
struct Spy {
    all: async_nats::Subscriber,
}

impl Spy {
    async fn new(client: &async_nats::Client) -> Spy {
        let all = client.subscribe(">").await.unwrap();
        settle(client).await;
        Spy { all }
    }

    /// Every subject seen until (and without) `probe`. Messages from one
    /// connection reach a subscriber in the order they were sent, so once
    /// a probe sent after the refused operations arrives, anything those
    /// operations had sent would already have been seen.
    async fn until(&mut self, probe: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = tokio::time::timeout(WAIT, self.all.next())
                .await
                .expect("the probe never arrived")
                .unwrap();
            if message.subject.as_str() == probe {
                return seen;
            }
            seen.push(message.subject.to_string());
        }
    }
}

fn assert_refused(err: &ProviderError, action: &str, subject: &str, prefix: &str) {
    assert!(matches!(err, ProviderError::Backend { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "permission denied".to_string(),
        format!("may not {action} `{subject}`"),
        format!("reserved for the Waxosuit lattice (prefix `{prefix}`)"),
        "docs/nats-accounts.md".to_string(),
    ] {
        assert!(text.contains(&needle), "{needle:?} missing from: {text}");
    }
}

fn is_reserved(subject: &str, prefixes: &[&str]) -> bool {
    prefixes
        .iter()
        .any(|p| subject.starts_with(&format!("{p}.")))
}

#[tokio::test]
async fn publishes_and_requests_under_the_lattice_prefix_are_refused_and_never_sent() {
    let f = Fixture::new().await;
    f.bind("MROGUE", &[]).await.unwrap();
    let mut spy = Spy::new(&f.client).await;

    for subject in [
        "waxosuit.control.NHOST",
        "waxosuit.control.auction",
        "waxosuit.bindings",
        "waxosuit.actor.MVICTIM",
        "waxosuit._INBOX.abc.1",
        "*.control.NHOST",
        "waxosuit.*",
        "waxosuit.>",
        "*.>",
        ">",
    ] {
        let err = publish(&f.provider, "MROGUE", subject, "", b"stop")
            .await
            .unwrap_err();
        assert_refused(&err, "publish to", subject, "waxosuit");
        assert!(
            err.to_string().contains("actor MROGUE (binding `default`)"),
            "{err}"
        );
        let err = request(&f.provider, "MROGUE", subject, b"stop", 200)
            .await
            .unwrap_err();
        assert_refused(&err, "send requests to", subject, "waxosuit");
    }
    // An innocent subject with a reply subject in the lattice: whoever
    // answers would write into the lattice on the actor's behalf.
    let err = publish(
        &f.provider,
        "MROGUE",
        "jobs.new",
        "waxosuit.control.NHOST",
        b"",
    )
    .await
    .unwrap_err();
    assert_refused(
        &err,
        "send replies to",
        "waxosuit.control.NHOST",
        "waxosuit",
    );

    // Not valid subjects at all, reserved or not.
    for subject in ["waxosuit..control", "", "jobs.*", "jobs.>", "a b"] {
        let err = publish(&f.provider, "MROGUE", subject, "", b"")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("is not a valid NATS subject"),
            "{subject:?}: {err}"
        );
    }

    publish(&f.provider, "MROGUE", "probe.done", "", b"")
        .await
        .unwrap();
    let seen = spy.until("probe.done").await;
    assert!(
        seen.iter().all(|s| !is_reserved(s, &["waxosuit"])),
        "reached the server: {seen:?}"
    );
    // The refused `jobs.new` was not sent either.
    assert!(!seen.iter().any(|s| s == "jobs.new"), "{seen:?}");
}

#[tokio::test]
async fn reserved_subscriptions_fail_the_bind_and_subscribe_nothing() {
    let f = Fixture::new().await;
    let attempts: [&[(&str, &str)]; 6] = [
        &[("SUBSCRIPTION", "waxosuit.>")],
        &[("SUBSCRIPTION", "*.control.*")],
        &[("SUBSCRIPTION", ">")],
        &[("SUBSCRIPTION", "waxosuit._INBOX.>")],
        // One refused subject fails the whole binding.
        &[("SUBSCRIPTION", "mine.ok, waxosuit.control.NHOST")],
        &[
            ("SUBSCRIPTION", "mine.ok, *.>"),
            ("QUEUEGROUP_NAME", "snoopers"),
        ],
    ];
    for values in attempts {
        let err = f.bind("MSNOOP", values).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key, .. } if key == "SUBSCRIPTION"),
            "{values:?}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("actor MSNOOP"), "{text}");
        assert!(text.contains("permission denied"), "{text}");
        assert!(text.contains("may not subscribe to `"), "{text}");
        assert!(text.contains("reserved for the Waxosuit lattice"), "{text}");
        assert!(text.contains("docs/nats-accounts.md"), "{text}");
    }
    // No binding was made, so no connection and no subscription: the
    // server itself reports nobody listening on the reserved subjects or
    // on the allowed subject listed beside them.
    let err = publish(&f.provider, "MSNOOP", "x", "", b"")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err:?}");
    for subject in ["waxosuit.control.NHOST", "waxosuit._INBOX.x", "mine.ok"] {
        match quick_request(&f.client, subject).await {
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {}
            other => panic!("someone listens on {subject}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn replies_aimed_at_the_lattice_are_not_sent() {
    let mut f = Fixture::new().await;
    f.bind("MECHO", &[("SUBSCRIPTION", "svc.echo")])
        .await
        .unwrap();
    f.behave("MECHO", Behaviour::Return(b"answer".to_vec()));
    let mut spy = Spy::new(&f.client).await;

    // Any client can choose a message's reply subject; the actor's answer
    // must not be written there when it is a lattice subject.
    f.client
        .publish_with_reply("svc.echo", "waxosuit.control.NHOST", "one".into())
        .await
        .unwrap();
    f.client
        .publish_with_reply("svc.echo", "probe.reply", "two".into())
        .await
        .unwrap();
    assert_eq!(f.next().await.message.reply_to, "waxosuit.control.NHOST");
    assert_eq!(f.next().await.message.reply_to, "probe.reply");
    // One subscription's messages are handled in order, so the second
    // reply is sent after the first would have been.
    let seen = spy.until("probe.reply").await;
    assert!(
        !seen.iter().any(|s| is_reserved(s, &["waxosuit"])),
        "reached the server: {seen:?}"
    );
}

#[tokio::test]
async fn near_misses_and_the_bare_prefix_stay_usable() {
    let mut f = Fixture::new().await;
    f.bind(
        "MNEAR",
        &[("SUBSCRIPTION", "waxosuitx.>, waxosuit, *, foo.>")],
    )
    .await
    .unwrap();
    let mut spy = Spy::new(&f.client).await;
    for subject in [
        "waxosuitx.a",
        "waxosuit",
        "WAXOSUIT.control.x",
        "foo.bar.baz",
    ] {
        publish(&f.provider, "MNEAR", subject, "", b"ok")
            .await
            .unwrap();
    }
    publish(&f.provider, "MNEAR", "probe.near", "", b"")
        .await
        .unwrap();
    let seen = spy.until("probe.near").await;
    for subject in [
        "waxosuitx.a",
        "waxosuit",
        "WAXOSUIT.control.x",
        "foo.bar.baz",
    ] {
        assert!(
            seen.iter().any(|s| s == subject),
            "{subject} not sent: {seen:?}"
        );
    }
    // And the subscriptions deliver: `waxosuit` twice (to `waxosuit` and
    // to `*`), the upper-case subject to none (subjects are case-sensitive).
    let mut delivered = Vec::new();
    for _ in 0..4 {
        delivered.push(f.next().await.message.subject);
    }
    delivered.sort();
    assert_eq!(
        delivered,
        ["foo.bar.baz", "waxosuit", "waxosuit", "waxosuitx.a"]
    );
}

#[tokio::test]
async fn a_configured_lattice_prefix_is_reserved_too() {
    let f = Fixture::with_provider(
        NatsMessaging::new()
            .reserve_prefix("staging.waxosuit")
            .unwrap(),
    )
    .await;
    assert_eq!(
        f.provider.reserved_prefixes(),
        ["waxosuit", "staging.waxosuit"]
    );
    f.bind("MSTAGE", &[("SUBSCRIPTION", "staging.*, staging.other.>")])
        .await
        .unwrap();
    let mut spy = Spy::new(&f.client).await;

    for subject in [
        "staging.waxosuit.control.NHOST",
        "staging.*.events",
        "staging.waxosuit.*",
    ] {
        let err = publish(&f.provider, "MSTAGE", subject, "", b"")
            .await
            .unwrap_err();
        assert_refused(&err, "publish to", subject, "staging.waxosuit");
    }
    // The default prefix stays reserved, and is named first when a
    // pattern reaches both (`waxosuit.waxosuit.bindings` is under it).
    for subject in ["waxosuit.events", "*.waxosuit.bindings"] {
        let err = publish(&f.provider, "MSTAGE", subject, "", b"")
            .await
            .unwrap_err();
        assert_refused(&err, "publish to", subject, "waxosuit");
    }
    let err = f
        .bind("MSTAGE2", &[("SUBSCRIPTION", "staging.>")])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("(prefix `staging.waxosuit`)"),
        "{err}"
    );

    publish(&f.provider, "MSTAGE", "staging.other.x", "", b"")
        .await
        .unwrap();
    publish(&f.provider, "MSTAGE", "probe.stage", "", b"")
        .await
        .unwrap();
    let seen = spy.until("probe.stage").await;
    assert!(seen.iter().any(|s| s == "staging.other.x"), "{seen:?}");
    assert!(
        !seen
            .iter()
            .any(|s| is_reserved(s, &["waxosuit", "staging.waxosuit"])),
        "reached the server: {seen:?}"
    );
}

#[tokio::test]
async fn credentials_in_the_url_never_reach_the_actor() {
    let f = Fixture::new().await;
    let port = waxosuit_test_servers::free_port().unwrap();
    let url = format!("nats://someone:s3cret-pw@127.0.0.1:{port}");
    let err = f.bind("MA", &[("URL", &url)]).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(!text.contains("someone"), "{text}");
    assert!(
        text.contains(&format!("nats://***@127.0.0.1:{port}")),
        "{text}"
    );
}

/// The contract's conformance suite on a real nats-server.
#[tokio::test]
async fn passes_the_messaging_conformance_suite() {
    let server = NatsServer::start().unwrap();
    let nats = NatsMessaging::new();
    let recorder = waxosuit_cap_messaging::conformance::Recorder::new();
    nats.start(recorder.dispatcher()).await.unwrap();
    let url = server.url();
    waxosuit_cap_messaging::conformance::run(&nats, &recorder, &[("URL", &url)])
        .await
        .assert_passed();
}

/// Publishes a message with `headers` (the block after `NATS/1.0\r\n`,
/// without its final blank line) as a raw client would, byte for byte.
async fn publish_raw_headers(url: &str, subject: &str, headers: &str, body: &str) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let address = url.trim_start_matches("nats://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut stream = BufReader::new(stream);
    let mut info = String::new();
    stream.read_line(&mut info).await.unwrap();
    assert!(info.starts_with("INFO"), "{info}");
    let block = format!("NATS/1.0\r\n{headers}\r\n\r\n");
    let command = format!(
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true}}\r\n\
         HPUB {subject} {} {}\r\n{block}{body}\r\nPING\r\n",
        block.len(),
        block.len() + body.len()
    );
    stream
        .get_mut()
        .write_all(command.as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    while !answer.starts_with("PONG") {
        answer.clear();
        stream.read_line(&mut answer).await.unwrap();
        assert!(!answer.starts_with("-ERR"), "{answer}");
    }
}

#[tokio::test]
async fn a_header_value_with_a_lone_carriage_return_does_not_end_delivery() {
    // A value `str::lines` does not split: the client once panicked on it
    // in its connection task, which ended every subscription.
    let mut f = Fixture::new().await;
    f.bind("MSUB", &[("SUBSCRIPTION", "greet.*")])
        .await
        .unwrap();
    settle(&f.client).await;
    publish_raw_headers(&f.server.url(), "greet.raw", "tracestate: k=a\rb", "raw").await;
    f.publish_plain("greet.world", "after").await;
    let mut seen = Vec::new();
    while !seen.contains(&"greet.world".to_string()) {
        seen.push(f.next().await.message.subject);
    }
    // And the binding still publishes.
    publish(&f.provider, "MSUB", "greet.out", "", b"out")
        .await
        .unwrap();
}

#[tokio::test]
async fn an_over_long_subject_is_refused_and_the_connection_stays_up() {
    // Past the server's 4 KiB command line, a publish made the server close
    // the binding's connection, and publish still said `Ok`.
    let mut f = Fixture::new().await;
    f.bind("MSUB", &[("SUBSCRIPTION", "greet.*")])
        .await
        .unwrap();
    settle(&f.client).await;
    let long = format!("a.{}", "b".repeat(5000));
    let err = publish(&f.provider, "MSUB", &long, "", b"x")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("5002 bytes long, more than the 1024"), "{err}");
    assert!(
        err.len() < 1024,
        "the error repeats the whole subject: {} bytes",
        err.len()
    );
    let err = request(&f.provider, "MSUB", &long, b"x", 100)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the 1024"), "{err}");
    // The connection is the one it was: delivery and publishing go on.
    f.publish_plain("greet.world", "after").await;
    assert_eq!(f.next().await.message.subject, "greet.world");
    let mut plain = f.client.subscribe("out.check").await.unwrap();
    settle(&f.client).await;
    publish(&f.provider, "MSUB", "out.check", "", b"out")
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, plain.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"out");
}
