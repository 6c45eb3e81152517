//! Drives `RedisKeyValue` through the provider trait the way the host does,
//! against a real `redis-server` each test starts for itself.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_cap_keyvalue_memory::MemoryKeyValue;
use waxosuit_cap_keyvalue_redis::{CONFIG_KEY_PREFIX, CONFIG_URL, RedisBackend, RedisKeyValue};
use waxosuit_codec::keyvalue::*;
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};
use waxosuit_test_servers::RedisServer;

const ALICE: &str = "MALICE";
const BOB: &str = "MBOB";
const DEFAULT: &str = "default";

fn bind_request(actor: &str, binding: &str, values: &[(&str, &str)]) -> BindRequest {
    BindRequest {
        actor: actor.into(),
        binding: binding.into(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A server and a provider with ALICE and BOB bound to it under `default`.
async fn setup() -> (RedisServer, RedisKeyValue) {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKeyValue::new();
    for actor in [ALICE, BOB] {
        kv.bind_actor(bind_request(actor, DEFAULT, &[(CONFIG_URL, &redis.url())]))
            .await
            .unwrap();
    }
    (redis, kv)
}

async fn raw(
    kv: &dyn CapabilityProvider,
    actor: &str,
    operation: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ProviderError> {
    kv.handle_call(ProviderCall {
        actor: actor.into(),
        binding: DEFAULT.into(),
        operation: operation.into(),
        payload,
    })
    .await
}

async fn call_as<Req: Serialize, Resp: DeserializeOwned>(
    kv: &dyn CapabilityProvider,
    actor: &str,
    operation: &str,
    request: &Req,
) -> Result<Resp, ProviderError> {
    let payload = waxosuit_codec::serialize(request).unwrap();
    let reply = raw(kv, actor, operation, payload).await?;
    Ok(waxosuit_codec::deserialize(&reply).unwrap())
}

async fn call<Req: Serialize, Resp: DeserializeOwned>(
    kv: &dyn CapabilityProvider,
    operation: &str,
    request: &Req,
) -> Result<Resp, ProviderError> {
    call_as(kv, ALICE, operation, request).await
}

async fn get_as(kv: &dyn CapabilityProvider, actor: &str, key: &str) -> GetResponse {
    call_as(kv, actor, OP_GET, &GetRequest { key: key.into() })
        .await
        .unwrap()
}

fn set_req(key: &str, value: &str, expires_s: i32) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: value.into(),
        expires_s,
    }
}

async fn set_as(
    kv: &dyn CapabilityProvider,
    actor: &str,
    key: &str,
    value: &str,
    expires_s: i32,
) -> Result<SetResponse, ProviderError> {
    call_as(kv, actor, OP_SET, &set_req(key, value, expires_s)).await
}

async fn exists_as(kv: &dyn CapabilityProvider, actor: &str, key: &str) -> bool {
    let reply: GetResponse = call_as(
        kv,
        actor,
        OP_KEY_EXISTS,
        &KeyExistsQuery { key: key.into() },
    )
    .await
    .unwrap();
    assert_eq!(reply.value, "", "KeyExists never carries a value");
    reply.exists
}

fn keys(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn kv_req(key: &str, value: &str) -> ListPushRequest {
    ListPushRequest {
        key: key.into(),
        value: value.into(),
    }
}

#[track_caller]
fn assert_backend(result: Result<impl std::fmt::Debug, ProviderError>, needle: &str) {
    match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            assert!(message.contains(needle), "{message}");
        }
        other => panic!("expected a backend error with {needle:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_unavailable(result: Result<impl std::fmt::Debug, ProviderError>, url: &str) {
    match result {
        Err(ProviderError::Unavailable { capid, reason }) => {
            assert_eq!(capid, CAPABILITY_ID);
            assert!(reason.contains(url), "{reason} should name {url}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// A direct connection to the test server, to look behind the provider.
async fn direct(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn get_set_and_key_exists() {
    let (_redis, kv) = setup().await;
    assert_eq!(get_as(&kv, ALICE, "k").await, GetResponse::default());
    assert!(!exists_as(&kv, ALICE, "k").await);
    assert_eq!(set_as(&kv, ALICE, "k", "", 0).await.unwrap().value, "");
    assert_eq!(
        get_as(&kv, ALICE, "k").await,
        GetResponse {
            value: String::new(),
            exists: true
        },
        "an empty value still exists"
    );
    set_as(&kv, ALICE, "k", "v", 0).await.unwrap();
    assert_eq!(get_as(&kv, ALICE, "k").await.value, "v");
    assert!(exists_as(&kv, ALICE, "k").await);
    // Set replaces a key of any type, as SET does.
    let _: ListResponse = call(&kv, OP_PUSH, &kv_req("l", "x")).await.unwrap();
    set_as(&kv, ALICE, "l", "now a string", 0).await.unwrap();
    assert_eq!(get_as(&kv, ALICE, "l").await.value, "now a string");
}

#[tokio::test]
async fn add_counts_and_refuses_non_integers_and_overflow() {
    let (_redis, kv) = setup().await;
    let add = |key: &'static str, value: i32| {
        let kv = &kv;
        async move {
            call::<_, AddResponse>(
                kv,
                OP_ADD,
                &AddRequest {
                    key: key.into(),
                    value,
                },
            )
            .await
            .map(|r| r.value)
        }
    };
    assert_eq!(add("n", 5).await.unwrap(), 5);
    assert_eq!(add("n", -7).await.unwrap(), -2);
    set_as(&kv, ALICE, "s", "abc", 0).await.unwrap();
    assert_backend(add("s", 1).await, "not an integer");
    assert_eq!(get_as(&kv, ALICE, "s").await.value, "abc");

    assert_eq!(add("max", i32::MAX).await.unwrap(), i32::MAX);
    assert_backend(add("max", 1).await, "32-bit range");
    assert_eq!(get_as(&kv, ALICE, "max").await.value, "2147483647");
    assert_eq!(add("max", -1).await.unwrap(), i32::MAX - 1);

    let _: ListResponse = call(&kv, OP_PUSH, &kv_req("l", "x")).await.unwrap();
    assert_backend(add("l", 1).await, "WRONGTYPE");
}

#[tokio::test]
async fn concurrent_adds_give_the_exact_total() {
    let (_redis, kv) = setup().await;
    let request = AddRequest {
        key: "c".into(),
        value: 2,
    };
    let adds = (0..50).map(|_| call::<_, AddResponse>(&kv, OP_ADD, &request));
    for reply in futures_util::future::join_all(adds).await {
        reply.unwrap();
    }
    assert_eq!(get_as(&kv, ALICE, "c").await.value, "100");
}

#[tokio::test]
async fn del_and_clear() {
    let (_redis, kv) = setup().await;
    set_as(&kv, ALICE, "s", "v", 0).await.unwrap();
    let reply: DelResponse = call(&kv, OP_DEL, &DelRequest { key: "s".into() })
        .await
        .unwrap();
    assert_eq!(reply.key, "s");
    assert!(!exists_as(&kv, ALICE, "s").await);
    let reply: DelResponse = call(&kv, OP_DEL, &DelRequest { key: "none".into() })
        .await
        .unwrap();
    assert_eq!(reply.key, "none");

    let _: ListResponse = call(&kv, OP_PUSH, &kv_req("l", "x")).await.unwrap();
    let reply: DelResponse = call(&kv, OP_CLEAR, &ListClearRequest { key: "l".into() })
        .await
        .unwrap();
    assert_eq!(reply.key, "l");
    assert!(!exists_as(&kv, ALICE, "l").await);

    set_as(&kv, ALICE, "counter", "1", 0).await.unwrap();
    assert_backend(
        call::<_, DelResponse>(
            &kv,
            OP_CLEAR,
            &ListClearRequest {
                key: "counter".into(),
            },
        )
        .await,
        "WRONGTYPE",
    );
    assert_eq!(get_as(&kv, ALICE, "counter").await.value, "1");
}

#[tokio::test]
async fn lists_push_range_and_delete_items() {
    let (_redis, kv) = setup().await;
    for (i, item) in ["e", "d", "c", "d", "a"].into_iter().enumerate() {
        let reply: ListResponse = call(&kv, OP_PUSH, &kv_req("l", item)).await.unwrap();
        assert_eq!(reply.new_count, i32::try_from(i + 1).unwrap());
    }
    let range = |start, stop| {
        let kv = &kv;
        async move {
            call::<_, ListRangeResponse>(
                kv,
                OP_RANGE,
                &ListRangeRequest {
                    key: "l".into(),
                    start,
                    stop,
                },
            )
            .await
            .map(|r| r.values)
        }
    };
    assert_eq!(range(0, -1).await.unwrap(), ["a", "d", "c", "d", "e"]);
    assert_eq!(range(1, 2).await.unwrap(), ["d", "c"]);
    assert_eq!(range(-2, -1).await.unwrap(), ["d", "e"]);
    assert!(range(7, 9).await.unwrap().is_empty());

    let del = |value: &'static str| {
        let kv = &kv;
        async move {
            call::<_, ListResponse>(
                kv,
                OP_LIST_DEL,
                &ListDelItemRequest {
                    key: "l".into(),
                    value: value.into(),
                },
            )
            .await
            .map(|r| r.new_count)
        }
    };
    assert_eq!(del("d").await.unwrap(), 3, "every occurrence, length left");
    assert_eq!(del("zz").await.unwrap(), 3);
    assert_eq!(range(0, -1).await.unwrap(), ["a", "c", "e"]);

    set_as(&kv, ALICE, "s", "v", 0).await.unwrap();
    assert_backend(
        call::<_, ListResponse>(&kv, OP_PUSH, &kv_req("s", "x")).await,
        "WRONGTYPE",
    );
    assert_backend(
        call::<_, ListRangeResponse>(
            &kv,
            OP_RANGE,
            &ListRangeRequest {
                key: "s".into(),
                start: 0,
                stop: -1,
            },
        )
        .await,
        "WRONGTYPE",
    );
    assert_backend(
        call::<_, ListResponse>(
            &kv,
            OP_LIST_DEL,
            &ListDelItemRequest {
                key: "s".into(),
                value: "v".into(),
            },
        )
        .await,
        "WRONGTYPE",
    );
    assert_backend(
        call::<_, GetResponse>(&kv, OP_GET, &GetRequest { key: "l".into() }).await,
        "WRONGTYPE",
    );
}

#[tokio::test]
async fn sets_add_remove_query_union_and_intersect() {
    let (_redis, kv) = setup().await;
    let sadd = |key: &'static str, value: &'static str| {
        let kv = &kv;
        async move {
            call::<_, SetOperationResponse>(
                kv,
                OP_SET_ADD,
                &SetAddRequest {
                    key: key.into(),
                    value: value.into(),
                },
            )
            .await
            .map(|r| r.new_count)
        }
    };
    assert_eq!(sadd("a", "x").await.unwrap(), 1);
    assert_eq!(sadd("a", "x").await.unwrap(), 0);
    assert_eq!(sadd("a", "z").await.unwrap(), 1);
    assert_eq!(sadd("a", "y").await.unwrap(), 1);
    assert_eq!(sadd("b", "y").await.unwrap(), 1);
    assert_eq!(sadd("b", "w").await.unwrap(), 1);

    let query = |op: &'static str, ks: Vec<String>| {
        let kv = &kv;
        async move {
            let reply: Result<SetQueryResponse, _> = match op {
                OP_SET_UNION => call(kv, op, &SetUnionRequest { keys: ks }).await,
                _ => call(kv, op, &SetIntersectionRequest { keys: ks }).await,
            };
            reply.map(|r| r.values)
        }
    };
    let members: SetQueryResponse = call(&kv, OP_SET_QUERY, &SetQueryRequest { key: "a".into() })
        .await
        .unwrap();
    assert_eq!(members.values, ["x", "y", "z"], "sorted");
    assert_eq!(
        query(OP_SET_UNION, keys(&["a", "b", "missing"]))
            .await
            .unwrap(),
        ["w", "x", "y", "z"]
    );
    assert_eq!(
        query(OP_SET_INTERSECT, keys(&["a", "b"])).await.unwrap(),
        ["y"]
    );
    assert!(
        query(OP_SET_INTERSECT, keys(&["a", "missing"]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_backend(query(OP_SET_UNION, vec![]).await, "at least one key");
    assert_backend(query(OP_SET_INTERSECT, vec![]).await, "at least one key");

    let srem = |value: &'static str| {
        let kv = &kv;
        async move {
            call::<_, SetOperationResponse>(
                kv,
                OP_SET_REMOVE,
                &SetRemoveRequest {
                    key: "a".into(),
                    value: value.into(),
                },
            )
            .await
            .map(|r| r.new_count)
        }
    };
    assert_eq!(srem("x").await.unwrap(), 1);
    assert_eq!(srem("x").await.unwrap(), 0);
    let members: SetQueryResponse = call(&kv, OP_SET_QUERY, &SetQueryRequest { key: "a".into() })
        .await
        .unwrap();
    assert_eq!(members.values, ["y", "z"]);

    set_as(&kv, ALICE, "s", "v", 0).await.unwrap();
    assert_backend(sadd("s", "x").await, "WRONGTYPE");
    assert_backend(query(OP_SET_UNION, keys(&["a", "s"])).await, "WRONGTYPE");
    assert_backend(
        call::<_, SetQueryResponse>(&kv, OP_SET_QUERY, &SetQueryRequest { key: "s".into() }).await,
        "WRONGTYPE",
    );
}

/// Runs one sequence of calls, with type errors and edge cases, against
/// this provider and the memory provider: the replies must be the same
/// bytes, and a failure on one must be a failure of the same Redis error
/// class (`WRONGTYPE`, `ERR`) on the other.
#[tokio::test]
async fn replies_match_the_memory_provider_byte_for_byte() {
    fn p<T: Serialize>(op: &'static str, req: T) -> (&'static str, Vec<u8>) {
        (op, waxosuit_codec::serialize(&req).unwrap())
    }
    let key = |k: &str| GetRequest { key: k.into() };
    let add = |k: &str, value| AddRequest {
        key: k.into(),
        value,
    };
    let range = |k: &str, start, stop| ListRangeRequest {
        key: k.into(),
        start,
        stop,
    };
    let sadd = |k: &str, v: &str| SetAddRequest {
        key: k.into(),
        value: v.into(),
    };
    let script = vec![
        p(OP_GET, key("a")),
        p(OP_SET, set_req("a", "1", 0)),
        p(OP_GET, key("a")),
        p(OP_ADD, add("a", 5)),
        p(OP_ADD, add("fresh", -3)),
        p(OP_SET, set_req("s", "text", 0)),
        p(OP_ADD, add("s", 1)),
        p(OP_SET, set_req("neg", "x", -1)),
        p(OP_SET, set_req("big", "2147483647", 0)),
        p(OP_ADD, add("big", 1)),
        p(OP_GET, key("big")),
        p(OP_PUSH, kv_req("l", "a")),
        p(OP_PUSH, kv_req("l", "b")),
        p(OP_PUSH, kv_req("l", "a")),
        p(OP_PUSH, kv_req("l", "c")),
        p(OP_RANGE, range("l", 0, -1)),
        p(OP_RANGE, range("l", -2, -1)),
        p(OP_RANGE, range("l", 3, 1)),
        p(OP_RANGE, range("missing", 0, -1)),
        p(
            OP_LIST_DEL,
            ListDelItemRequest {
                key: "l".into(),
                value: "a".into(),
            },
        ),
        p(
            OP_LIST_DEL,
            ListDelItemRequest {
                key: "missing".into(),
                value: "a".into(),
            },
        ),
        p(OP_PUSH, kv_req("s", "x")),
        p(OP_GET, key("l")),
        p(OP_RANGE, range("s", 0, 1)),
        p(OP_SET_ADD, sadd("z", "x")),
        p(OP_SET_ADD, sadd("z", "x")),
        p(OP_SET_ADD, sadd("z", "m")),
        p(OP_SET_ADD, sadd("w", "m")),
        p(OP_SET_ADD, sadd("w", "b")),
        p(OP_SET_ADD, sadd("s", "b")),
        p(
            OP_SET_UNION,
            SetUnionRequest {
                keys: keys(&["z", "w", "missing"]),
            },
        ),
        p(
            OP_SET_INTERSECT,
            SetIntersectionRequest {
                keys: keys(&["z", "w"]),
            },
        ),
        p(
            OP_SET_INTERSECT,
            SetIntersectionRequest {
                keys: keys(&["z", "missing"]),
            },
        ),
        p(OP_SET_UNION, SetUnionRequest { keys: vec![] }),
        p(
            OP_SET_UNION,
            SetUnionRequest {
                keys: keys(&["z", "s"]),
            },
        ),
        p(
            OP_SET_REMOVE,
            SetRemoveRequest {
                key: "z".into(),
                value: "x".into(),
            },
        ),
        p(
            OP_SET_REMOVE,
            SetRemoveRequest {
                key: "z".into(),
                value: "x".into(),
            },
        ),
        p(OP_SET_QUERY, SetQueryRequest { key: "z".into() }),
        p(
            OP_SET_QUERY,
            SetQueryRequest {
                key: "missing".into(),
            },
        ),
        p(OP_SET_QUERY, SetQueryRequest { key: "l".into() }),
        p(OP_KEY_EXISTS, KeyExistsQuery { key: "a".into() }),
        p(OP_KEY_EXISTS, KeyExistsQuery { key: "l".into() }),
        p(OP_KEY_EXISTS, KeyExistsQuery { key: "z".into() }),
        p(
            OP_KEY_EXISTS,
            KeyExistsQuery {
                key: "missing".into(),
            },
        ),
        p(OP_DEL, DelRequest { key: "a".into() }),
        p(
            OP_DEL,
            DelRequest {
                key: "missing".into(),
            },
        ),
        p(OP_CLEAR, ListClearRequest { key: "s".into() }),
        p(OP_CLEAR, ListClearRequest { key: "l".into() }),
        p(
            OP_CLEAR,
            ListClearRequest {
                key: "missing".into(),
            },
        ),
        p(OP_KEY_EXISTS, KeyExistsQuery { key: "l".into() }),
        p(OP_GET, key("s")),
    ];

    let (_redis, redis_kv) = setup().await;
    let memory = MemoryKeyValue::new();
    memory
        .bind_actor(bind_request(ALICE, DEFAULT, &[]))
        .await
        .unwrap();
    let class = |message: &str| message.split_whitespace().next().unwrap_or("").to_string();
    for (i, (op, payload)) in script.into_iter().enumerate() {
        let on_redis = raw(&redis_kv, ALICE, op, payload.clone()).await;
        let in_memory = raw(&memory, ALICE, op, payload).await;
        match (&on_redis, &in_memory) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "step {i} ({op}) replies differ"),
            (
                Err(ProviderError::Backend { message: a, .. }),
                Err(ProviderError::Backend { message: b, .. }),
            ) => assert_eq!(
                class(a),
                class(b),
                "step {i} ({op}): redis said {a:?}, memory said {b:?}"
            ),
            _ => panic!("step {i} ({op}): redis {on_redis:?} vs memory {in_memory:?}"),
        }
    }
}

#[tokio::test]
async fn set_with_expires_is_gone_after_its_deadline() {
    let (redis, kv) = setup().await;
    set_as(&kv, ALICE, "short", "v", 1).await.unwrap();
    set_as(&kv, ALICE, "long", "v", 0).await.unwrap();
    // The TTL really is on the key, not emulated by the provider.
    let mut conn = direct(&redis).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("wxs:{ALICE}:{DEFAULT}:short"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((0..=1).contains(&ttl), "TTL {ttl}");
    let mut gone = false;
    for _ in 0..100 {
        if !get_as(&kv, ALICE, "short").await.exists {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "a key set with `expires: 1` was still there after 5 s"
    );
    assert!(get_as(&kv, ALICE, "long").await.exists);
}

#[tokio::test]
async fn actors_are_isolated_and_keys_are_namespaced() {
    let (redis, kv) = setup().await;
    set_as(&kv, ALICE, "k", "alice's", 0).await.unwrap();
    assert!(!get_as(&kv, BOB, "k").await.exists);
    assert!(!exists_as(&kv, BOB, "k").await);
    set_as(&kv, BOB, "k", "bob's", 0).await.unwrap();
    assert_eq!(get_as(&kv, ALICE, "k").await.value, "alice's");
    assert_eq!(get_as(&kv, BOB, "k").await.value, "bob's");
    // A set operation cannot reach into another actor's keyspace either.
    let _: SetOperationResponse = call_as(
        &kv,
        BOB,
        OP_SET_ADD,
        &SetAddRequest {
            key: "members".into(),
            value: "secret".into(),
        },
    )
    .await
    .unwrap();
    let union: SetQueryResponse = call(
        &kv,
        OP_SET_UNION,
        &SetUnionRequest {
            keys: keys(&["members", "../members", "wxs:MBOB:default:members"]),
        },
    )
    .await
    .unwrap();
    assert!(union.values.is_empty(), "{:?}", union.values);

    let mut conn = direct(&redis).await;
    let mut stored: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    stored.sort();
    assert_eq!(
        stored,
        [
            "wxs:MALICE:default:k",
            "wxs:MBOB:default:k",
            "wxs:MBOB:default:members"
        ]
    );
}

#[tokio::test]
async fn key_prefix_overrides_the_namespace_and_may_be_empty() {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKeyValue::new();
    kv.bind_actor(bind_request(
        ALICE,
        DEFAULT,
        &[(CONFIG_URL, &redis.url()), (CONFIG_KEY_PREFIX, "")],
    ))
    .await
    .unwrap();
    kv.bind_actor(bind_request(
        BOB,
        DEFAULT,
        &[(CONFIG_URL, &redis.url()), (CONFIG_KEY_PREFIX, "app:")],
    ))
    .await
    .unwrap();
    let mut conn = direct(&redis).await;
    let () = redis::cmd("SET")
        .arg("legacy")
        .arg("from another app")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(get_as(&kv, ALICE, "legacy").await.value, "from another app");
    set_as(&kv, BOB, "x", "1", 0).await.unwrap();
    let stored: Option<String> = redis::cmd("GET")
        .arg("app:x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some("1"));
    // The empty prefix sees everything, which is the point of it.
    assert_eq!(get_as(&kv, ALICE, "app:x").await.value, "1");
}

/// The raw keyspace of a shared prefix stops at the per-actor namespaces:
/// an empty or `w` prefix completed by the actor's key reached another
/// actor's keys (and event streams); the whole key is judged, and a
/// prefix starting with `wxs:` is refused at the bind.
#[tokio::test]
async fn a_shared_prefix_cannot_reach_the_per_actor_namespaces() {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKeyValue::new();
    kv.bind_actor(bind_request(BOB, DEFAULT, &[(CONFIG_URL, &redis.url())]))
        .await
        .unwrap();
    set_as(&kv, BOB, "balance", "100", 0).await.unwrap();
    for prefix in ["", "w", "wx"] {
        kv.bind_actor(bind_request(
            ALICE,
            DEFAULT,
            &[(CONFIG_URL, &redis.url()), (CONFIG_KEY_PREFIX, prefix)],
        ))
        .await
        .unwrap();
        let rest = &"wxs:MBOB:default:balance"[prefix.len()..];
        let err = set_as(&kv, ALICE, rest, "0", 0).await.unwrap_err();
        assert!(
            err.to_string().contains("per-actor namespaces"),
            "{prefix:?}: {err}"
        );
        let err = call_as::<_, GetResponse>(&kv, ALICE, OP_GET, &GetRequest { key: rest.into() })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("per-actor namespaces"), "{err}");
        // Other keys under the prefix are the shared ones they were.
        set_as(&kv, ALICE, "shared-key", "1", 0).await.unwrap();
    }
    let err = kv
        .bind_actor(bind_request(
            ALICE,
            DEFAULT,
            &[(CONFIG_URL, &redis.url()), (CONFIG_KEY_PREFIX, "wxs:")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, .. } if key == CONFIG_KEY_PREFIX),
        "{err:?}"
    );
    assert_eq!(get_as(&kv, BOB, "balance").await.value, "100");
}

/// Generous bound for a call during an outage: the server refuses
/// connections, so each call fails as soon as its own attempt does.
const FAIL_FAST: Duration = Duration::from_secs(2);

async fn add_as(kv: &RedisKeyValue, key: &str, value: i32) -> Result<i32, ProviderError> {
    call(
        kv,
        OP_ADD,
        &AddRequest {
            key: key.into(),
            value,
        },
    )
    .await
    .map(|r: AddResponse| r.value)
}

#[tokio::test]
async fn calls_during_an_outage_fail_fast_and_the_first_call_after_it_succeeds() {
    let (mut redis, kv) = setup().await;
    let url = redis.url();
    set_as(&kv, ALICE, "k", "before", 0).await.unwrap();

    redis.stop();
    for round in 0..3 {
        let started = Instant::now();
        let during = add_as(&kv, "hits", 1).await;
        let took = started.elapsed();
        assert!(
            took < FAIL_FAST,
            "round {round}: a refused call took {took:?}"
        );
        assert_unavailable(during.map(|_| ()), &url);
        let started = Instant::now();
        let during = get_as_result(&kv, "k").await;
        assert!(started.elapsed() < FAIL_FAST);
        match during {
            Err(ProviderError::Unavailable { reason, .. }) => {
                assert!(reason.contains("cannot connect"), "{reason}");
                assert!(reason.contains("nothing was sent"), "{reason}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(!kv.health().await.healthy);

    redis.restart().unwrap();
    // The very first call after the server is back succeeds: it connects
    // within the call instead of being answered with the outage's error.
    // (The server keeps no data across the restart.)
    assert_eq!(add_as(&kv, "hits", 5).await.unwrap(), 5);
    assert!(!get_as(&kv, ALICE, "k").await.exists);
    set_as(&kv, ALICE, "k", "after", 0).await.unwrap();
    assert_eq!(get_as(&kv, ALICE, "k").await.value, "after");
    assert!(kv.health().await.healthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_between_calls_does_not_fail_the_next_call() {
    let (mut redis, kv) = setup().await;
    assert_eq!(add_as(&kv, "hits", 1).await.unwrap(), 1);
    for _ in 0..2 {
        // No call during the outage: the provider learns that the server
        // closed its connection and does not use it again.
        tokio::task::block_in_place(|| redis.restart()).unwrap();
        // `Add` is never sent twice, so it succeeding first shows the dead
        // connection was not tried at all.
        assert_eq!(add_as(&kv, "hits", 2).await.unwrap(), 2);
        assert!(!get_as(&kv, BOB, "k").await.exists);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_found_dead_in_the_middle_of_a_call_is_replaced_within_it() {
    // On a current-thread runtime blocked by the restart, nothing has read
    // the server's goodbye when the next call sends: its command meets the
    // dead connection in flight.
    let (mut redis, kv) = setup().await;
    set_as(&kv, ALICE, "k", "v", 0).await.unwrap();
    redis.restart().unwrap();
    // A read is repeated on a new connection, within the same call.
    assert!(!get_as(&kv, ALICE, "k").await.exists);
    set_as(&kv, ALICE, "k", "again", 0).await.unwrap();

    redis.restart().unwrap();
    // `Add` may have been applied when its connection dropped, so it is not
    // repeated; the error says so, and the next call works.
    match add_as(&kv, "hits", 1).await {
        Err(ProviderError::Unavailable { reason, .. }) => {
            assert!(reason.contains("`Add` was in flight"), "{reason}");
            assert!(
                reason.contains("may or may not have applied it"),
                "{reason}"
            );
        }
        Ok(n) => panic!("the first Add after the restart should not have been retried, got {n}"),
        Err(other) => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(add_as(&kv, "hits", 1).await.unwrap(), 1);
}

async fn get_as_result(kv: &RedisKeyValue, key: &str) -> Result<GetResponse, ProviderError> {
    call(kv, OP_GET, &GetRequest { key: key.into() }).await
}

#[tokio::test]
async fn an_unreachable_server_at_bind_time_is_not_fatal() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let kv = RedisKeyValue::new();
    kv.bind_actor(bind_request(ALICE, DEFAULT, &[(CONFIG_URL, &redis.url())]))
        .await
        .unwrap();
    assert_unavailable(get_as_result(&kv, "k").await, &redis.url());

    redis.restart().unwrap();
    let restarted = Instant::now();
    let mut ok = false;
    while restarted.elapsed() <= Duration::from_secs(2) {
        if get_as_result(&kv, "k").await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "no successful call within 2 s of Redis starting");
}

#[tokio::test]
async fn unavailable_errors_never_show_the_password() {
    let mut redis = RedisServer::start().unwrap();
    redis.stop();
    let url = format!("redis://admin:hunter2@127.0.0.1:{}/", redis.port());
    let kv = RedisKeyValue::new();
    kv.bind_actor(bind_request(ALICE, DEFAULT, &[(CONFIG_URL, &url)]))
        .await
        .unwrap();
    let err = get_as_result(&kv, "k").await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", redis.port())),
        "{text}"
    );
    let health = kv.health().await;
    assert!(!health.healthy);
    assert!(!health.message.contains("hunter2"), "{}", health.message);
}

#[tokio::test]
async fn bad_urls_are_config_errors() {
    let kv = RedisKeyValue::new();
    for bad in [
        "not a url",
        "http://127.0.0.1:6379/",
        "redis://:secret@[::1/",
    ] {
        let err = kv
            .bind_actor(bind_request(ALICE, DEFAULT, &[(CONFIG_URL, bad)]))
            .await
            .unwrap_err();
        match &err {
            ProviderError::Config { key, capid, .. } => {
                assert_eq!(key, CONFIG_URL);
                assert_eq!(capid, CAPABILITY_ID);
            }
            other => panic!("{bad}: expected a Config error, got {other:?}"),
        }
        assert!(!err.to_string().contains("secret"), "{err}");
    }
    // Nothing was bound by the failed attempts.
    assert!(matches!(
        get_as_result(&kv, "k").await,
        Err(ProviderError::NotBound { .. })
    ));
}

#[tokio::test]
async fn unbound_actors_bindings_and_removed_actors_are_refused() {
    let (_redis, kv) = setup().await;
    let err = call_as::<_, GetResponse>(&kv, "MSTRANGER", OP_GET, &GetRequest { key: "k".into() })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::NotBound { actor, binding, .. } if actor == "MSTRANGER" && binding == DEFAULT),
        "{err:?}"
    );
    let other_binding = kv
        .handle_call(ProviderCall {
            actor: ALICE.into(),
            binding: "other".into(),
            operation: OP_GET.into(),
            payload: waxosuit_codec::serialize(&GetRequest { key: "k".into() }).unwrap(),
        })
        .await;
    assert!(matches!(other_binding, Err(ProviderError::NotBound { .. })));

    set_as(&kv, ALICE, "k", "kept", 0).await.unwrap();
    kv.remove_actor(ALICE, DEFAULT).await.unwrap();
    assert!(matches!(
        get_as_result(&kv, "k").await,
        Err(ProviderError::NotBound { .. })
    ));
    assert!(matches!(
        kv.remove_actor(ALICE, DEFAULT).await,
        Err(ProviderError::NotBound { .. })
    ));
    // BOB shares the connection and is unaffected; ALICE's data outlives
    // the binding, since it lives in Redis.
    assert!(!get_as(&kv, BOB, "k").await.exists);
    kv.bind_actor(bind_request(ALICE, DEFAULT, &[(CONFIG_URL, &_redis.url())]))
        .await
        .unwrap();
    assert_eq!(get_as(&kv, ALICE, "k").await.value, "kept");
}

#[tokio::test]
async fn bad_payloads_and_unknown_operations_are_refused() {
    let (_redis, kv) = setup().await;
    assert!(matches!(
        raw(&kv, ALICE, OP_GET, vec![0xc1]).await,
        Err(ProviderError::BadPayload { .. })
    ));
    assert!(matches!(
        raw(&kv, ALICE, "Frobnicate", vec![]).await,
        Err(ProviderError::UnknownOperation { .. })
    ));
}

#[tokio::test]
async fn health_pings_and_shutdown_drops_bindings() {
    let (_redis, kv) = setup().await;
    let health = kv.health().await;
    assert!(health.healthy, "{}", health.message);
    kv.shutdown().await;
    assert!(matches!(
        get_as_result(&kv, "k").await,
        Err(ProviderError::NotBound { .. })
    ));
}

#[test]
fn descriptor_lists_every_operation() {
    let descriptor = RedisKeyValue::new().descriptor();
    assert_eq!(descriptor.id, CAPABILITY_ID);
    let names: Vec<&str> = descriptor
        .supported_operations
        .iter()
        .map(|op| op.name.as_str())
        .collect();
    for op in [
        OP_GET,
        OP_SET,
        OP_ADD,
        OP_DEL,
        OP_CLEAR,
        OP_RANGE,
        OP_PUSH,
        OP_LIST_DEL,
        OP_SET_ADD,
        OP_SET_REMOVE,
        OP_SET_UNION,
        OP_SET_INTERSECT,
        OP_SET_QUERY,
        OP_KEY_EXISTS,
    ] {
        assert!(names.contains(&op), "{op} missing from {names:?}");
    }
}

/// A TCP relay to `target` whose connections can be turned into black
/// holes: after [`BlackHoleRelay::swallow_existing`], bytes on the
/// connections open at that moment go nowhere and the sockets stay open
/// (a server's machine gone without a reset, a partition), while new
/// connections are relayed normally (the server reachable again, e.g. at
/// its new address).
struct BlackHoleRelay {
    port: u16,
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHoleRelay {
    async fn start(target: u16) -> BlackHoleRelay {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let current = std::sync::Arc::clone(&generation);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let born = current.load(Ordering::SeqCst);
                let current = std::sync::Arc::clone(&current);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let alive = move || current.load(Ordering::SeqCst) == born;
                    let alive2 = alive.clone();
                    let up = async move {
                        let mut buf = vec![0; 16 * 1024];
                        while let Ok(n @ 1..) = cr.read(&mut buf).await {
                            if alive() {
                                let _ = sw.write_all(&buf[..n]).await;
                            }
                        }
                    };
                    let down = async move {
                        let mut buf = vec![0; 16 * 1024];
                        while let Ok(n @ 1..) = sr.read(&mut buf).await {
                            if alive2() {
                                let _ = cw.write_all(&buf[..n]).await;
                            }
                        }
                    };
                    tokio::join!(up, down);
                });
            }
        });
        BlackHoleRelay {
            port,
            generation,
            task,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn swallow_existing(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for BlackHoleRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_connection_that_stops_answering_is_replaced_after_one_timeout() {
    let redis = RedisServer::start().unwrap();
    let relay = BlackHoleRelay::start(redis.port()).await;
    let response = Duration::from_millis(300);
    let kv = RedisKeyValue::with_backend(RedisBackend::with_timeouts(
        Duration::from_secs(1),
        response,
    ));
    kv.bind_actor(bind_request(ALICE, DEFAULT, &[(CONFIG_URL, &relay.url())]))
        .await
        .unwrap();
    set_as(&kv, ALICE, "k", "v", 0).await.unwrap();

    // The connection in use turns into a black hole: no reset, no reply.
    relay.swallow_existing();
    let started = Instant::now();
    match get_as_result(&kv, "k").await {
        Err(ProviderError::Unavailable { .. } | ProviderError::Backend { .. }) => {}
        other => panic!("expected the call to fail on the silent connection, got {other:?}"),
    }
    assert!(started.elapsed() < FAIL_FAST, "{:?}", started.elapsed());

    // The next calls do not wait on the dead connection again: they
    // connect anew (the relay relays new connections) and succeed.
    for _ in 0..3 {
        assert_eq!(get_as(&kv, ALICE, "k").await.value, "v");
    }
    assert!(kv.health().await.healthy);
}

/// The contract's conformance suite on a real Redis, with the default
/// per-binding key prefixes (so the two bindings must not see each other).
#[tokio::test]
async fn passes_the_keyvalue_conformance_suite() {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKeyValue::new();
    let url = redis.url();
    let subject = waxosuit_cap_keyvalue::conformance::ProviderSubject::bind(
        &kv,
        ALICE,
        &[(CONFIG_URL, &url)],
    )
    .await
    .unwrap();
    waxosuit_cap_keyvalue::conformance::run(&subject)
        .await
        .assert_passed();
}

#[tokio::test]
async fn reads_larger_than_the_actor_accepts_are_refused_by_redis() {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKeyValue::new();
    // The actor accepts 64 KiB; it stores 200 items of 1 KiB in a list and
    // in two sets (200 KiB each).
    kv.bind_actor(bind_request(
        ALICE,
        DEFAULT,
        &[
            (CONFIG_URL, &redis.url()),
            (waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "65536"),
        ],
    ))
    .await
    .unwrap();
    for i in 0..200 {
        let value = format!("{i:04}{}", "x".repeat(1020));
        let _: ListResponse = call(&kv, OP_PUSH, &kv_req("big", &value)).await.unwrap();
        for set in ["s1", "s2"] {
            let _: SetOperationResponse = call(
                &kv,
                OP_SET_ADD,
                &SetAddRequest {
                    key: set.into(),
                    value: value.clone(),
                },
            )
            .await
            .unwrap();
        }
    }
    let range = |start, stop| ListRangeRequest {
        key: "big".into(),
        start,
        stop,
    };
    for (start, stop) in [(0, -1), (0, 199), (-100, -1), (10, 1000)] {
        assert_backend(
            call::<_, ListRangeResponse>(&kv, OP_RANGE, &range(start, stop)).await,
            "the reply of `Range` on key `big` would be more than 65536 bytes",
        );
    }
    // A window within the bound, negative indexes as Redis reads them.
    let window: ListRangeResponse = call(&kv, OP_RANGE, &range(-3, -1)).await.unwrap();
    assert_eq!(window.values.len(), 3);
    assert!(
        window.values[2].starts_with("0000"),
        "{:?}",
        &window.values[2][..4]
    );
    let empty: ListRangeResponse = call(&kv, OP_RANGE, &range(5, 2)).await.unwrap();
    assert!(empty.values.is_empty());
    assert_backend(
        call::<_, SetQueryResponse>(&kv, OP_SET_QUERY, &SetQueryRequest { key: "s1".into() }).await,
        "the reply of `SetQuery` on key `s1` would be more than 65536 bytes",
    );
    assert_backend(
        call::<_, SetQueryResponse>(
            &kv,
            OP_SET_UNION,
            &SetUnionRequest {
                keys: keys(&["s1", "s2"]),
            },
        )
        .await,
        "the reply of `SetUnion` on key `s1` would be more than 65536 bytes",
    );
    assert_backend(
        call::<_, SetQueryResponse>(
            &kv,
            OP_SET_INTERSECT,
            &SetIntersectionRequest {
                keys: keys(&["s1", "s2"]),
            },
        )
        .await,
        "`SetIntersection`",
    );
    // Nothing was lost: the data is all there, and small reads work.
    let mut conn = direct(&redis).await;
    let len: i64 = redis::cmd("LLEN")
        .arg(format!("wxs:{ALICE}:{DEFAULT}:big"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 200);
    let _: SetOperationResponse = call(
        &kv,
        OP_SET_ADD,
        &SetAddRequest {
            key: "small".into(),
            value: "a".into(),
        },
    )
    .await
    .unwrap();
    let small: SetQueryResponse = call(
        &kv,
        OP_SET_QUERY,
        &SetQueryRequest {
            key: "small".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(small.values, ["a"]);
}

#[tokio::test]
async fn values_and_tiny_items_past_what_the_actor_accepts_are_refused_in_redis() {
    let redis = RedisServer::start().unwrap();
    let kv = RedisKeyValue::new();
    // A shared namespace (another application writes there too), and an
    // actor that accepts 1 MiB.
    kv.bind_actor(bind_request(
        ALICE,
        DEFAULT,
        &[
            (CONFIG_URL, &redis.url()),
            (CONFIG_KEY_PREFIX, "shared:"),
            (waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "1048576"),
        ],
    ))
    .await
    .unwrap();
    let mut conn = direct(&redis).await;
    // A 2 MiB value the other writer stored: refused in Redis, not read
    // into the host first.
    let () = redis::cmd("SET")
        .arg("shared:huge")
        .arg("v".repeat(2 << 20))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_backend(
        get_as_result(&kv, "huge").await,
        "the reply of `Get` on key `huge` would be more than 1048576 bytes",
    );
    // 50,000 empty items: 50 KB as MessagePack, and each costs the host
    // a value to hold. Counted at 32 bytes each, 1.6 MB: refused.
    for _ in 0..50 {
        let mut push = redis::cmd("RPUSH");
        push.arg("shared:tiny");
        for _ in 0..1000 {
            push.arg("");
        }
        let _: i64 = push.query_async(&mut conn).await.unwrap();
    }
    assert_backend(
        call::<_, ListRangeResponse>(
            &kv,
            OP_RANGE,
            &ListRangeRequest {
                key: "tiny".into(),
                start: 0,
                stop: -1,
            },
        )
        .await,
        "the reply of `Range` on key `tiny` would be more than 1048576 bytes",
    );
    // Within the bound, both still read; nothing was removed.
    let () = redis::cmd("SET")
        .arg("shared:small")
        .arg("fine")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(get_as(&kv, ALICE, "small").await.value, "fine");
    assert!(!get_as(&kv, ALICE, "absent").await.exists);
    let window: ListRangeResponse = call(
        &kv,
        OP_RANGE,
        &ListRangeRequest {
            key: "tiny".into(),
            start: 0,
            stop: 999,
        },
    )
    .await
    .unwrap();
    assert_eq!(window.values.len(), 1000);
    let len: i64 = redis::cmd("STRLEN")
        .arg("shared:huge")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(len, 2 << 20);
}
