//! Drives `RedisEventStreams` through the provider trait the way the host
//! does, against a real `redis-server` each test starts for itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use waxosuit_cap_eventstreams_redis::{
    CONFIG_STREAM_PREFIX, CONFIG_STREAMS, CONFIG_URL, RedisEventStreams,
};
use waxosuit_codec::eventstreams::*;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
};
use waxosuit_test_servers::RedisServer;

const ALICE: &str = "MALICE";
const BOB: &str = "MBOB";
const CAROL: &str = "MCAROL";
const DEFAULT: &str = "default";

/// Records every call the provider makes to actors.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(String, String, Event)>>,
}

#[async_trait]
impl ActorDispatcher for Recorder {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let event: Event = waxosuit_codec::deserialize(&payload).unwrap();
        self.calls
            .lock()
            .unwrap()
            .push((actor.to_string(), operation.to_string(), event));
        Ok(Vec::new())
    }
}

impl Recorder {
    /// Events delivered to `actor`, checking each came as `DeliverEvent`.
    fn events_of(&self, actor: &str) -> Vec<Event> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _, _)| a == actor)
            .map(|(_, op, event)| {
                assert_eq!(op, OP_DELIVER_EVENT);
                event.clone()
            })
            .collect()
    }

    /// Waits (at most 10 s) until `actor` has received event `id` of
    /// `stream` (ids are only unique within a stream).
    async fn wait_for(&self, actor: &str, stream: &str, id: &str) {
        for _ in 0..200 {
            if self
                .events_of(actor)
                .iter()
                .any(|e| e.stream == stream && e.event_id == id)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "event {id} of {stream} never reached {actor}; got {:?}",
            self.events_of(actor)
        );
    }
}

fn bind_request(actor: &str, values: &[(&str, &str)]) -> BindRequest {
    BindRequest {
        actor: actor.into(),
        binding: DEFAULT.into(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A server and a started provider with BOB bound (no subscriptions), in
/// his own stream namespace.
async fn setup() -> (RedisServer, RedisEventStreams, Arc<Recorder>) {
    setup_with(&[]).await
}

/// The stream prefix of the tests about several actors on one stream: an
/// explicit opt-out of the per-actor namespaces.
const SHARED: (&str, &str) = (CONFIG_STREAM_PREFIX, "shared:");

/// [`setup`], BOB's binding also carrying `values`.
async fn setup_with(values: &[(&str, &str)]) -> (RedisServer, RedisEventStreams, Arc<Recorder>) {
    let redis = RedisServer::start().unwrap();
    let provider = RedisEventStreams::new();
    let recorder = Arc::new(Recorder::default());
    provider.start(recorder.clone()).await.unwrap();
    let url = redis.url();
    let mut bob = vec![(CONFIG_URL, url.as_str())];
    bob.extend_from_slice(values);
    provider.bind_actor(bind_request(BOB, &bob)).await.unwrap();
    (redis, provider, recorder)
}

/// BOB's default namespace, where his streams are stored.
const BOB_NS: &str = "wxs:es:MBOB:default:";

async fn direct(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn call(
    provider: &RedisEventStreams,
    actor: &str,
    operation: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ProviderError> {
    provider
        .handle_call(ProviderCall {
            actor: actor.into(),
            binding: DEFAULT.into(),
            operation: operation.into(),
            payload,
        })
        .await
}

fn event(stream: &str, values: &[(&str, &str)]) -> Event {
    Event {
        event_id: String::new(),
        stream: stream.into(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

async fn write(provider: &RedisEventStreams, event: &Event) -> Result<String, ProviderError> {
    let reply = call(
        provider,
        BOB,
        OP_WRITE_EVENT,
        waxosuit_codec::serialize(event).unwrap(),
    )
    .await?;
    let WriteResponse { event_id } = waxosuit_codec::deserialize(&reply).unwrap();
    Ok(event_id)
}

async fn query(
    provider: &RedisEventStreams,
    stream: &str,
    range: Option<(u64, u64)>,
    count: u64,
) -> Result<Vec<Event>, ProviderError> {
    let query = StreamQuery {
        stream_id: stream.into(),
        range: range.map(|(min_time, max_time)| TimeRange { min_time, max_time }),
        count,
    };
    let reply = call(
        provider,
        BOB,
        OP_QUERY_STREAM,
        waxosuit_codec::serialize(&query).unwrap(),
    )
    .await?;
    let StreamResults { events } = waxosuit_codec::deserialize(&reply).unwrap();
    Ok(events)
}

fn ids(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

/// Writes entries with chosen ids straight to Redis, under `key`.
async fn xadd_with_ids(redis: &RedisServer, key: &str, entries: &[&str]) {
    let mut conn = direct(redis).await;
    for id in entries {
        let _: String = redis::cmd("XADD")
            .arg(key)
            .arg(*id)
            .arg("id")
            .arg(*id)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn written_events_are_queried_back_in_order() {
    let (_redis, provider, _) = setup().await;
    let first = write(&provider, &event("orders", &[("sku", "A-1"), ("qty", "2")]))
        .await
        .unwrap();
    let second = write(&provider, &event("orders", &[("sku", "B-7")]))
        .await
        .unwrap();
    assert!(
        first.contains('-') && second.contains('-'),
        "{first} {second}"
    );
    assert_ne!(first, second);

    let events = query(&provider, "orders", None, 0).await.unwrap();
    assert_eq!(
        events,
        [
            Event {
                event_id: first.clone(),
                stream: "orders".into(),
                values: HashMap::from([
                    ("sku".to_string(), "A-1".to_string()),
                    ("qty".to_string(), "2".to_string())
                ]),
            },
            Event {
                event_id: second,
                stream: "orders".into(),
                values: HashMap::from([("sku".to_string(), "B-7".to_string())]),
            }
        ]
    );
    assert_eq!(
        ids(&query(&provider, "orders", None, 1).await.unwrap()),
        [first]
    );
    assert!(
        query(&provider, "missing", None, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn queries_select_by_time_in_milliseconds_and_count() {
    let (redis, provider, _) = setup().await;
    xadd_with_ids(
        &redis,
        &format!("{BOB_NS}s"),
        &["1000-0", "2000-0", "2000-1", "3000-0", "4000-0"],
    )
    .await;
    let q = |range, count| query(&provider, "s", range, count);
    assert_eq!(
        ids(&q(None, 0).await.unwrap()),
        ["1000-0", "2000-0", "2000-1", "3000-0", "4000-0"]
    );
    assert_eq!(
        ids(&q(Some((1500, 3000)), 0).await.unwrap()),
        ["2000-0", "2000-1", "3000-0"],
        "both bounds inclusive, every sequence number of the last millisecond"
    );
    assert_eq!(
        ids(&q(Some((2000, 2000)), 0).await.unwrap()),
        ["2000-0", "2000-1"]
    );
    assert_eq!(
        ids(&q(Some((1500, 4000)), 2).await.unwrap()),
        ["2000-0", "2000-1"]
    );
    assert!(q(Some((5000, 9000)), 0).await.unwrap().is_empty());
    assert!(q(Some((3000, 1000)), 0).await.unwrap().is_empty());
    let events = q(Some((4000, 4000)), 0).await.unwrap();
    assert_eq!(events[0].values["id"], "4000-0");
    assert_eq!(events[0].stream, "s");
}

#[tokio::test]
async fn bad_writes_and_type_errors_are_backend_errors() {
    let (redis, provider, _) = setup().await;
    let err = write(&provider, &event("s", &[])).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Backend { message, .. } if message.contains("at least one value")),
        "{err:?}"
    );
    let mut conn = direct(&redis).await;
    let () = redis::cmd("SET")
        .arg(format!("{BOB_NS}plain"))
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    for result in [
        write(&provider, &event("plain", &[("a", "1")]))
            .await
            .map(|_| ()),
        query(&provider, "plain", None, 0).await.map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(ProviderError::Backend { message, .. }) if message.starts_with("WRONGTYPE")),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn new_events_of_subscribed_streams_are_delivered_until_removal() {
    let (redis, provider, recorder) = setup_with(&[SHARED]).await;
    let before = write(&provider, &event("a", &[("n", "0")])).await.unwrap();
    provider
        .bind_actor(bind_request(
            ALICE,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "a, b"), SHARED],
        ))
        .await
        .unwrap();
    provider
        .bind_actor(bind_request(
            CAROL,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "a"), SHARED],
        ))
        .await
        .unwrap();

    let a1 = write(&provider, &event("a", &[("n", "1")])).await.unwrap();
    write(&provider, &event("c", &[("n", "x")])).await.unwrap();
    let b1 = write(&provider, &event("b", &[("n", "2")])).await.unwrap();
    let a2 = write(&provider, &event("a", &[("n", "3")])).await.unwrap();
    recorder.wait_for(ALICE, "a", &a2).await;
    recorder.wait_for(ALICE, "b", &b1).await;

    // Ids are per stream: two streams may hand out the same one.
    let delivered = recorder.events_of(ALICE);
    assert!(
        delivered.iter().all(|e| e.stream != "c"),
        "only subscribed streams: {delivered:?}"
    );
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    let of_a: Vec<&str> = delivered
        .iter()
        .filter(|e| e.stream == "a")
        .map(|e| e.event_id.as_str())
        .collect();
    assert!(!of_a.contains(&before.as_str()), "only new events");
    assert_eq!(of_a, [a1.as_str(), a2.as_str()], "in stream order");
    let b = delivered.iter().find(|e| e.stream == "b").unwrap();
    assert_eq!(b.event_id, b1);
    assert_eq!(b.stream, "b");
    assert_eq!(b.values["n"], "2");
    assert!(
        recorder.events_of(BOB).is_empty(),
        "BOB subscribed to nothing"
    );

    provider.remove_actor(ALICE, DEFAULT).await.unwrap();
    let a3 = write(&provider, &event("a", &[("n", "4")])).await.unwrap();
    // CAROL's delivery of the same event shows it was there to deliver.
    recorder.wait_for(CAROL, "a", &a3).await;
    assert_eq!(
        recorder.events_of(ALICE).len(),
        3,
        "nothing after remove_actor"
    );
    assert!(matches!(
        provider.remove_actor(ALICE, DEFAULT).await,
        Err(ProviderError::NotBound { .. })
    ));
    provider.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_survives_a_redis_restart() {
    let (mut redis, provider, recorder) = setup_with(&[SHARED]).await;
    provider
        .bind_actor(bind_request(
            ALICE,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "a"), SHARED],
        ))
        .await
        .unwrap();
    let a1 = write(&provider, &event("a", &[("n", "1")])).await.unwrap();
    recorder.wait_for(ALICE, "a", &a1).await;

    // Blocking the test's thread, not the workers: the provider notices
    // the connection closing, as it would in a host.
    tokio::task::block_in_place(|| redis.stop());
    for round in 0..3 {
        let started = std::time::Instant::now();
        let during = write(&provider, &event("a", &[("n", "lost")])).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a refused call took {:?}",
            started.elapsed()
        );
        // A call made the instant the server died may still meet its
        // connection (and say so); later ones find none and cannot connect.
        assert!(
            matches!(&during, Err(ProviderError::Unavailable { reason, .. })
                if reason.contains(&redis.url())
                    && (reason.contains("cannot connect")
                        || (round == 0 && reason.contains("in flight")))),
            "round {round}: {during:?}"
        );
    }
    assert!(!provider.health().await.healthy);
    tokio::task::block_in_place(|| redis.restart()).unwrap();

    // The first call after the restart succeeds: it connects within the
    // call rather than reporting the outage again.
    let a2 = write(&provider, &event("a", &[("n", "2")]))
        .await
        .expect("the first write after the restart");
    recorder.wait_for(ALICE, "a", &a2).await;
    assert!(provider.health().await.healthy);
    provider.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_delivery_and_drops_bindings() {
    let (redis, provider, recorder) = setup_with(&[SHARED]).await;
    provider
        .bind_actor(bind_request(
            ALICE,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "a"), SHARED],
        ))
        .await
        .unwrap();
    provider.shutdown().await;
    assert!(matches!(
        write(&provider, &event("a", &[("n", "1")])).await,
        Err(ProviderError::NotBound { .. })
    ));

    // A second provider proves the event was written and deliverable.
    let witness = RedisEventStreams::new();
    witness.start(recorder.clone()).await.unwrap();
    witness
        .bind_actor(bind_request(
            CAROL,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "a"), SHARED],
        ))
        .await
        .unwrap();
    witness
        .bind_actor(bind_request(BOB, &[(CONFIG_URL, &redis.url()), SHARED]))
        .await
        .unwrap();
    let a1 = write(&witness, &event("a", &[("n", "1")])).await.unwrap();
    recorder.wait_for(CAROL, "a", &a1).await;
    assert!(recorder.events_of(ALICE).is_empty());
    witness.shutdown().await;
}

#[tokio::test]
async fn configuration_and_binding_errors() {
    let provider = RedisEventStreams::new();
    for (values, key) in [
        (vec![(CONFIG_URL, "http://localhost/")], CONFIG_URL),
        (vec![(CONFIG_URL, "not a url")], CONFIG_URL),
        (
            vec![(CONFIG_URL, "redis://127.0.0.1/"), (CONFIG_STREAMS, " , ")],
            CONFIG_STREAMS,
        ),
    ] {
        let err = provider
            .bind_actor(bind_request(ALICE, &values))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key: k, .. } if k == key),
            "{values:?}: {err:?}"
        );
    }
    assert!(matches!(
        write(&provider, &event("a", &[("n", "1")])).await,
        Err(ProviderError::NotBound { .. })
    ));
}

#[tokio::test]
async fn an_unreachable_server_at_bind_time_is_not_fatal() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let provider = RedisEventStreams::new();
    let recorder = Arc::new(Recorder::default());
    provider.start(recorder.clone()).await.unwrap();
    provider
        .bind_actor(bind_request(BOB, &[(CONFIG_URL, &redis.url()), SHARED]))
        .await
        .unwrap();
    provider
        .bind_actor(bind_request(
            ALICE,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "a"), SHARED],
        ))
        .await
        .unwrap();
    assert!(matches!(
        query(&provider, "a", None, 0).await,
        Err(ProviderError::Unavailable { .. })
    ));
    redis.restart().unwrap();
    // Calls work at once; delivery starts once its task reaches the server
    // (it retries with a backoff), so keep writing until one event arrives.
    query(&provider, "a", None, 0)
        .await
        .expect("the first call after Redis started");
    for _ in 0..100 {
        write(&provider, &event("a", &[("n", "1")])).await.unwrap();
        if !recorder.events_of(ALICE).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !recorder.events_of(ALICE).is_empty(),
        "no event delivered within 10 s of Redis starting"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn unknown_operations_and_bad_payloads_are_refused() {
    let (_redis, provider, _) = setup().await;
    assert!(matches!(
        call(&provider, BOB, OP_DELIVER_EVENT, vec![]).await,
        Err(ProviderError::UnknownOperation { .. })
    ));
    assert!(matches!(
        call(&provider, BOB, OP_QUERY_STREAM, vec![0xc1]).await,
        Err(ProviderError::BadPayload { .. })
    ));
}

#[test]
fn descriptor_names_the_three_operations() {
    let descriptor = RedisEventStreams::new().descriptor();
    assert_eq!(descriptor.id, CAPABILITY_ID);
    let names: Vec<&str> = descriptor
        .supported_operations
        .iter()
        .map(|op| op.name.as_str())
        .collect();
    assert_eq!(names, [OP_WRITE_EVENT, OP_QUERY_STREAM, OP_DELIVER_EVENT]);
}

/// Writes `event` as `actor` (BOB's [`write`] for anyone).
async fn write_as(
    provider: &RedisEventStreams,
    actor: &str,
    event: &Event,
) -> Result<String, ProviderError> {
    let reply = call(
        provider,
        actor,
        OP_WRITE_EVENT,
        waxosuit_codec::serialize(event).unwrap(),
    )
    .await?;
    let WriteResponse { event_id } = waxosuit_codec::deserialize(&reply).unwrap();
    Ok(event_id)
}

async fn query_as(
    provider: &RedisEventStreams,
    actor: &str,
    stream: &str,
) -> Result<Vec<Event>, ProviderError> {
    let query = StreamQuery {
        stream_id: stream.into(),
        range: None,
        count: 0,
    };
    let reply = call(
        provider,
        actor,
        OP_QUERY_STREAM,
        waxosuit_codec::serialize(&query).unwrap(),
    )
    .await?;
    let StreamResults { events } = waxosuit_codec::deserialize(&reply).unwrap();
    Ok(events)
}

async fn keys_in(redis: &RedisServer) -> Vec<String> {
    let mut conn = direct(redis).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn two_actors_using_the_same_stream_name_do_not_see_each_others_events() {
    let (redis, provider, recorder) = setup().await;
    provider
        .bind_actor(bind_request(
            ALICE,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "orders")],
        ))
        .await
        .unwrap();
    let bobs = write_as(&provider, BOB, &event("orders", &[("by", "bob")]))
        .await
        .unwrap();
    let alices = write_as(&provider, ALICE, &event("orders", &[("by", "alice")]))
        .await
        .unwrap();
    recorder.wait_for(ALICE, "orders", &alices).await;

    // Each queries only its own stream, under the name it used.
    let of_bob = query_as(&provider, BOB, "orders").await.unwrap();
    assert_eq!(ids(&of_bob), [bobs.as_str()]);
    assert_eq!(of_bob[0].values["by"], "bob");
    let of_alice = query_as(&provider, ALICE, "orders").await.unwrap();
    assert_eq!(ids(&of_alice), [alices.as_str()]);
    assert_eq!(of_alice[0].stream, "orders");
    // Delivery too: ALICE's subscription never sees BOB's event.
    let delivered = recorder.events_of(ALICE);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].values["by"], "alice");
    assert_eq!(delivered[0].stream, "orders");
    assert_eq!(
        keys_in(&redis).await,
        ["wxs:es:MALICE:default:orders", "wxs:es:MBOB:default:orders"]
    );

    // A stream named like another actor's key-value key stays in the
    // writer's namespace and leaves that key alone.
    let mut conn = direct(&redis).await;
    let () = redis::cmd("SET")
        .arg("wxs:MBOB:default:counter")
        .arg("5")
        .query_async(&mut conn)
        .await
        .unwrap();
    write_as(
        &provider,
        ALICE,
        &event("wxs:MBOB:default:counter", &[("x", "1")]),
    )
    .await
    .unwrap();
    let counter: String = redis::cmd("GET")
        .arg("wxs:MBOB:default:counter")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(counter, "5");
    assert!(
        keys_in(&redis)
            .await
            .contains(&"wxs:es:MALICE:default:wxs:MBOB:default:counter".to_string())
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn shared_streams_are_an_explicit_opt_out() {
    let (redis, provider, recorder) = setup_with(&[(CONFIG_STREAM_PREFIX, "")]).await;
    provider
        .bind_actor(bind_request(
            ALICE,
            &[
                (CONFIG_URL, &redis.url()),
                (CONFIG_STREAMS, "orders"),
                (CONFIG_STREAM_PREFIX, ""),
            ],
        ))
        .await
        .unwrap();
    // CAROL keeps her own namespace and sees nothing of theirs.
    provider
        .bind_actor(bind_request(
            CAROL,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAMS, "orders")],
        ))
        .await
        .unwrap();
    let id = write_as(&provider, BOB, &event("orders", &[("by", "bob")]))
        .await
        .unwrap();
    recorder.wait_for(ALICE, "orders", &id).await;
    assert_eq!(
        ids(&query_as(&provider, ALICE, "orders").await.unwrap()),
        [id.as_str()]
    );
    assert!(
        query_as(&provider, CAROL, "orders")
            .await
            .unwrap()
            .is_empty()
    );
    // An empty prefix means the raw key, shared with other applications.
    assert_eq!(keys_in(&redis).await, ["orders"]);
    assert!(recorder.events_of(CAROL).is_empty());

    // Shared streams cannot reach into the per-actor namespaces.
    let err = write_as(
        &provider,
        BOB,
        &event("wxs:es:MCAROL:default:orders", &[("x", "1")]),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Backend { message, .. }
            if message.contains("per-actor namespaces") && message.contains("MBOB")),
        "{err:?}"
    );
    assert!(
        query_as(&provider, CAROL, "orders")
            .await
            .unwrap()
            .is_empty()
    );
    let err = provider
        .bind_actor(bind_request(
            ALICE,
            &[
                (CONFIG_URL, &redis.url()),
                (CONFIG_STREAMS, "wxs:MBOB:default:k"),
                (CONFIG_STREAM_PREFIX, ""),
            ],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == CONFIG_STREAMS),
        "{err:?}"
    );

    // A shared prefix groups the actors that name it.
    for actor in [ALICE, CAROL] {
        provider
            .bind_actor(bind_request(
                actor,
                &[(CONFIG_URL, &redis.url()), (CONFIG_STREAM_PREFIX, "team:")],
            ))
            .await
            .unwrap();
    }
    let id = write_as(&provider, ALICE, &event("tasks", &[("n", "1")]))
        .await
        .unwrap();
    assert_eq!(
        ids(&query_as(&provider, CAROL, "tasks").await.unwrap()),
        [id.as_str()]
    );
    assert!(keys_in(&redis).await.contains(&"team:tasks".to_string()));
    provider.shutdown().await;
}

/// A shared prefix that is itself the start of `wxs:` (`w`, `wx`), joined
/// with the rest of a name, made the key of another actor's own stream:
/// the key as a whole is judged now. A prefix starting with `wxs:` is
/// refused at the bind.
#[tokio::test]
async fn a_shared_prefix_cannot_be_completed_into_another_actors_namespace() {
    let (redis, provider, _) = setup().await;
    let bobs = write(&provider, &event("orders", &[("by", "bob")]))
        .await
        .unwrap();
    for prefix in ["w", "wx"] {
        provider
            .bind_actor(bind_request(
                ALICE,
                &[(CONFIG_URL, &redis.url()), (CONFIG_STREAM_PREFIX, prefix)],
            ))
            .await
            .unwrap();
        let rest = &"wxs:es:MBOB:default:orders"[prefix.len()..];
        let err = query_as(&provider, ALICE, rest).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Backend { message, .. }
                if message.contains("per-actor namespaces") && message.contains(ALICE)),
            "{prefix}: {err:?}"
        );
        let err = write_as(&provider, ALICE, &event(rest, &[("by", "alice")]))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("per-actor namespaces"), "{err}");
        // Other names under the prefix are the shared streams they were.
        write_as(&provider, ALICE, &event("log", &[("n", "1")]))
            .await
            .unwrap();
    }
    let err = provider
        .bind_actor(bind_request(
            ALICE,
            &[(CONFIG_URL, &redis.url()), (CONFIG_STREAM_PREFIX, "wxs:")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == CONFIG_STREAM_PREFIX),
        "{err:?}"
    );
    // BOB's stream holds his event alone.
    let of_bob = query(&provider, "orders", None, 0).await.unwrap();
    assert_eq!(ids(&of_bob), [bobs.as_str()]);
    assert_eq!(
        keys_in(&redis).await,
        ["wlog", "wxlog", &format!("{BOB_NS}orders")]
    );
    provider.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_after_a_restart_between_calls_succeeds() {
    let (mut redis, provider, _) = setup().await;
    write(&provider, &event("s", &[("n", "1")])).await.unwrap();
    // No call during the outage; `WriteEvent` is never sent twice, so its
    // success shows the dead connection was not used at all.
    tokio::task::block_in_place(|| redis.restart()).unwrap();
    write(&provider, &event("s", &[("n", "2")]))
        .await
        .expect("the first write after the restart");
    assert_eq!(query(&provider, "s", None, 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn queries_larger_than_the_actor_accepts_are_refused_by_redis() {
    // BOB accepts 64 KiB and writes 200 events of 1 KiB.
    let (redis, provider, _) =
        setup_with(&[(waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "65536")]).await;
    let value = "x".repeat(1024);
    for _ in 0..200 {
        write(&provider, &event("log", &[("line", &value)]))
            .await
            .unwrap();
    }
    for count in [0, 200, 1000] {
        let err = query(&provider, "log", None, count).await.unwrap_err();
        assert!(
            err.to_string().contains(
                "the reply of `QueryStream` on stream `log` would be more than 65536 bytes"
            ),
            "count {count}: {err}"
        );
    }
    // Fewer events are read as before, oldest first, across pages of the
    // script's reads; nothing was lost.
    let some = query(&provider, "log", None, 40).await.unwrap();
    assert_eq!(some.len(), 40);
    let mut conn = direct(&redis).await;
    let len: i64 = redis::cmd("XLEN")
        .arg(format!("{BOB_NS}log"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 200);
}

#[tokio::test]
async fn a_query_of_all_reads_past_one_page_of_the_script() {
    let (_redis, provider, _) = setup().await;
    for i in 0..600 {
        write(&provider, &event("many", &[("i", &i.to_string())]))
            .await
            .unwrap();
    }
    let all = query(&provider, "many", None, 0).await.unwrap();
    assert_eq!(all.len(), 600);
    let order: Vec<&str> = all.iter().map(|e| e.values["i"].as_str()).collect();
    assert_eq!(order[0], "0");
    assert_eq!(order[599], "599");
    let counted = query(&provider, "many", None, 300).await.unwrap();
    assert_eq!(counted.len(), 300);
    assert_eq!(counted[299].values["i"], "299");
}

#[tokio::test]
async fn a_long_stream_name_counts_once_per_event() {
    // Every event of a reply repeats its stream's name: 100 tiny events of
    // a stream named with 2 KiB are 200 KiB for an actor accepting 64 KiB.
    let (_redis, provider, _) =
        setup_with(&[(waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "65536")]).await;
    let name = "n".repeat(2048);
    for _ in 0..100 {
        write(&provider, &event(&name, &[("a", "b")]))
            .await
            .unwrap();
    }
    let err = query(&provider, &name, None, 0).await.unwrap_err();
    assert!(
        err.to_string().contains("would be more than 65536 bytes"),
        "{err}"
    );
    let some = query(&provider, &name, None, 20).await.unwrap();
    assert_eq!(some.len(), 20);
    let encoded = waxosuit_codec::serialize(&StreamResults { events: some }).unwrap();
    assert!(encoded.len() < 65536, "{}", encoded.len());
}
