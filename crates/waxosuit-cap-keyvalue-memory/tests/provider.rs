//! Drives `MemoryKeyValue` through the provider trait the way the host does,
//! encoding requests and decoding replies with the codec's contract types.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_cap_keyvalue_memory::{DEFAULT_MAX_BYTES, MemoryBackend, MemoryKeyValue};
use waxosuit_codec::capabilities::OperationDirection;
use waxosuit_codec::keyvalue::*;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
};

const ALICE: &str = "MALICE";
const BOB: &str = "MBOB";
const DEFAULT: &str = "default";

/// Providers never call actors back here.
struct NoDispatch;

#[async_trait]
impl ActorDispatcher for NoDispatch {
    async fn dispatch(&self, actor: &str, _: &str, _: Vec<u8>) -> Result<Vec<u8>, DispatchError> {
        Err(DispatchError::ActorNotFound {
            actor: actor.to_string(),
        })
    }
}

async fn bind(kv: &MemoryKeyValue, actor: &str, binding: &str) {
    kv.bind_actor(BindRequest {
        actor: actor.into(),
        binding: binding.into(),
        values: HashMap::new(),
    })
    .await
    .unwrap();
}

/// A provider with ALICE and BOB bound under `default`.
async fn provider() -> MemoryKeyValue {
    let kv = MemoryKeyValue::new();
    bind(&kv, ALICE, DEFAULT).await;
    bind(&kv, BOB, DEFAULT).await;
    kv
}

async fn raw(
    kv: &MemoryKeyValue,
    actor: &str,
    binding: &str,
    operation: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ProviderError> {
    kv.handle_call(ProviderCall {
        actor: actor.into(),
        binding: binding.into(),
        operation: operation.into(),
        payload,
    })
    .await
}

async fn call_as<Req: Serialize, Resp: DeserializeOwned>(
    kv: &MemoryKeyValue,
    actor: &str,
    binding: &str,
    operation: &str,
    request: &Req,
) -> Result<Resp, ProviderError> {
    let payload = waxosuit_codec::serialize(request).unwrap();
    let reply = raw(kv, actor, binding, operation, payload).await?;
    Ok(waxosuit_codec::deserialize(&reply).unwrap())
}

async fn call<Req: Serialize, Resp: DeserializeOwned>(
    kv: &MemoryKeyValue,
    operation: &str,
    request: &Req,
) -> Result<Resp, ProviderError> {
    call_as(kv, ALICE, DEFAULT, operation, request).await
}

async fn get(kv: &MemoryKeyValue, actor: &str, key: &str) -> GetResponse {
    call_as(kv, actor, DEFAULT, OP_GET, &GetRequest { key: key.into() })
        .await
        .unwrap()
}

async fn set(kv: &MemoryKeyValue, actor: &str, key: &str, value: &str, expires_s: i32) {
    let reply: SetResponse = call_as(
        kv,
        actor,
        DEFAULT,
        OP_SET,
        &SetRequest {
            key: key.into(),
            value: value.into(),
            expires_s,
        },
    )
    .await
    .unwrap();
    assert_eq!(reply.value, value);
}

async fn add(kv: &MemoryKeyValue, key: &str, value: i32) -> Result<i32, ProviderError> {
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

async fn push(kv: &MemoryKeyValue, key: &str, value: &str) -> Result<i32, ProviderError> {
    call::<_, ListResponse>(
        kv,
        OP_PUSH,
        &ListPushRequest {
            key: key.into(),
            value: value.into(),
        },
    )
    .await
    .map(|r| r.new_count)
}

async fn range(
    kv: &MemoryKeyValue,
    key: &str,
    start: i32,
    stop: i32,
) -> Result<Vec<String>, ProviderError> {
    call::<_, ListRangeResponse>(
        kv,
        OP_RANGE,
        &ListRangeRequest {
            key: key.into(),
            start,
            stop,
        },
    )
    .await
    .map(|r| r.values)
}

async fn sadd(kv: &MemoryKeyValue, key: &str, value: &str) -> Result<i32, ProviderError> {
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

async fn members(kv: &MemoryKeyValue, key: &str) -> Result<Vec<String>, ProviderError> {
    call::<_, SetQueryResponse>(kv, OP_SET_QUERY, &SetQueryRequest { key: key.into() })
        .await
        .map(|r| r.values)
}

async fn exists(kv: &MemoryKeyValue, actor: &str, key: &str) -> bool {
    let reply: GetResponse = call_as(
        kv,
        actor,
        DEFAULT,
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

#[track_caller]
fn assert_wrongtype(result: Result<impl std::fmt::Debug, ProviderError>) {
    match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            assert!(message.contains("WRONGTYPE"), "{message}");
        }
        other => panic!("expected a WRONGTYPE backend error, got {other:?}"),
    }
}

#[test]
fn descriptor_lists_every_operation_as_actor_to_provider() {
    let descriptor = MemoryKeyValue::new().descriptor();
    assert_eq!(descriptor.id, CAPABILITY_ID);
    let names: Vec<_> = descriptor
        .supported_operations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
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
            OP_KEY_EXISTS
        ]
    );
    assert!(
        descriptor
            .supported_operations
            .iter()
            .all(|o| o.direction == OperationDirection::ToProvider)
    );
}

#[tokio::test]
async fn get_tells_a_missing_key_from_an_empty_value() {
    let kv = provider().await;
    assert_eq!(
        get(&kv, ALICE, "k").await,
        GetResponse {
            value: String::new(),
            exists: false
        }
    );
    set(&kv, ALICE, "k", "", 0).await;
    assert_eq!(
        get(&kv, ALICE, "k").await,
        GetResponse {
            value: String::new(),
            exists: true
        }
    );
    set(&kv, ALICE, "k", "v", 0).await;
    assert_eq!(
        get(&kv, ALICE, "k").await,
        GetResponse {
            value: "v".into(),
            exists: true
        }
    );
}

#[tokio::test]
async fn set_replaces_a_key_of_any_type() {
    let kv = provider().await;
    push(&kv, "k", "item").await.unwrap();
    set(&kv, ALICE, "k", "now a string", 0).await;
    assert_eq!(get(&kv, ALICE, "k").await.value, "now a string");
    sadd(&kv, "s", "m").await.unwrap();
    set(&kv, ALICE, "s", "also", 0).await;
    assert_eq!(get(&kv, ALICE, "s").await.value, "also");
}

#[tokio::test]
async fn add_counts_from_zero_and_accepts_negative_amounts() {
    let kv = provider().await;
    assert_eq!(add(&kv, "n", 5).await.unwrap(), 5);
    assert_eq!(add(&kv, "n", -7).await.unwrap(), -2);
    assert_eq!(get(&kv, ALICE, "n").await.value, "-2");
    set(&kv, ALICE, "m", "40", 0).await;
    assert_eq!(add(&kv, "m", 2).await.unwrap(), 42);
}

#[tokio::test]
async fn add_on_a_non_integer_fails_and_leaves_the_value() {
    let kv = provider().await;
    for bad in ["hello", "1.5", " 3", "+3", ""] {
        set(&kv, ALICE, "k", bad, 0).await;
        match add(&kv, "k", 1).await {
            Err(ProviderError::Backend { message, .. }) => {
                assert!(message.contains("not an integer"), "{message}")
            }
            other => panic!("Add on {bad:?}: {other:?}"),
        }
        assert_eq!(get(&kv, ALICE, "k").await.value, bad);
    }
    set(&kv, ALICE, "k", &i32::MAX.to_string(), 0).await;
    assert!(matches!(
        add(&kv, "k", 1).await,
        Err(ProviderError::Backend { .. })
    ));
    assert_eq!(get(&kv, ALICE, "k").await.value, i32::MAX.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_adds_on_one_key_give_the_exact_total() {
    let kv = Arc::new(provider().await);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move {
                for _ in 0..100 {
                    add(&kv, "counter", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(get(&kv, ALICE, "counter").await.value, "10000");
}

#[tokio::test]
async fn del_deletes_any_type_and_echoes_the_key() {
    let kv = provider().await;
    set(&kv, ALICE, "s", "v", 0).await;
    push(&kv, "l", "v").await.unwrap();
    sadd(&kv, "t", "v").await.unwrap();
    for key in ["s", "l", "t", "never-existed"] {
        let reply: DelResponse = call(&kv, OP_DEL, &DelRequest { key: key.into() })
            .await
            .unwrap();
        assert_eq!(reply.key, key);
        assert!(!exists(&kv, ALICE, key).await, "{key}");
    }
}

#[tokio::test]
async fn clear_deletes_a_list_but_refuses_other_types() {
    let kv = provider().await;
    push(&kv, "l", "a").await.unwrap();
    let reply: DelResponse = call(&kv, OP_CLEAR, &ListClearRequest { key: "l".into() })
        .await
        .unwrap();
    assert_eq!(reply.key, "l");
    assert!(!exists(&kv, ALICE, "l").await);
    let missing: DelResponse = call(&kv, OP_CLEAR, &ListClearRequest { key: "none".into() })
        .await
        .unwrap();
    assert_eq!(missing.key, "none");

    set(&kv, ALICE, "s", "v", 0).await;
    assert_wrongtype(
        call::<_, DelResponse>(&kv, OP_CLEAR, &ListClearRequest { key: "s".into() }).await,
    );
    assert!(exists(&kv, ALICE, "s").await);
}

#[tokio::test]
async fn push_prepends_and_range_follows_lrange() {
    let kv = provider().await;
    for (i, item) in ["c", "b", "a"].into_iter().enumerate() {
        assert_eq!(push(&kv, "l", item).await.unwrap(), i as i32 + 1);
    }
    assert_eq!(range(&kv, "l", 0, -1).await.unwrap(), ["a", "b", "c"]);
    assert_eq!(range(&kv, "l", 0, 0).await.unwrap(), ["a"]);
    assert_eq!(range(&kv, "l", 1, 2).await.unwrap(), ["b", "c"]);
    assert_eq!(range(&kv, "l", -2, -1).await.unwrap(), ["b", "c"]);
    assert_eq!(range(&kv, "l", -10, 10).await.unwrap(), ["a", "b", "c"]);
    assert!(range(&kv, "l", 2, 1).await.unwrap().is_empty());
    assert!(range(&kv, "l", 3, 5).await.unwrap().is_empty());
    assert!(range(&kv, "missing", 0, -1).await.unwrap().is_empty());
}

#[tokio::test]
async fn list_item_delete_removes_every_occurrence_and_replies_the_length_left() {
    let kv = provider().await;
    for item in ["x", "a", "x", "b", "x"] {
        push(&kv, "l", item).await.unwrap();
    }
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
            .unwrap()
            .new_count
        }
    };
    assert_eq!(del("x").await, 2);
    assert_eq!(range(&kv, "l", 0, -1).await.unwrap(), ["b", "a"]);
    assert_eq!(del("absent").await, 2);
    assert_eq!(del("a").await, 1);
    assert_eq!(del("b").await, 0);
    assert!(!exists(&kv, ALICE, "l").await, "an emptied list disappears");
}

#[tokio::test]
async fn list_operations_on_a_string_are_wrongtype_errors() {
    let kv = provider().await;
    set(&kv, ALICE, "s", "v", 0).await;
    assert_wrongtype(push(&kv, "s", "x").await);
    assert_wrongtype(range(&kv, "s", 0, -1).await);
    assert_wrongtype(
        call::<_, ListResponse>(
            &kv,
            OP_LIST_DEL,
            &ListDelItemRequest {
                key: "s".into(),
                value: "v".into(),
            },
        )
        .await,
    );
    assert_eq!(
        get(&kv, ALICE, "s").await.value,
        "v",
        "a refused call changes nothing"
    );
}

#[tokio::test]
async fn string_operations_on_a_list_or_set_are_wrongtype_errors() {
    let kv = provider().await;
    push(&kv, "l", "x").await.unwrap();
    sadd(&kv, "t", "x").await.unwrap();
    for key in ["l", "t"] {
        assert_wrongtype(
            call::<_, GetResponse>(&kv, OP_GET, &GetRequest { key: key.into() }).await,
        );
        assert_wrongtype(add(&kv, key, 1).await);
    }
    assert_wrongtype(push(&kv, "t", "x").await);
    assert_wrongtype(sadd(&kv, "l", "x").await);
}

#[tokio::test]
async fn set_add_and_remove_report_whether_a_member_changed() {
    let kv = provider().await;
    assert_eq!(sadd(&kv, "t", "b").await.unwrap(), 1);
    assert_eq!(sadd(&kv, "t", "a").await.unwrap(), 1);
    assert_eq!(sadd(&kv, "t", "a").await.unwrap(), 0);
    assert_eq!(members(&kv, "t").await.unwrap(), ["a", "b"]);
    let srem = |value: &'static str| {
        let kv = &kv;
        async move {
            call::<_, SetOperationResponse>(
                kv,
                OP_SET_REMOVE,
                &SetRemoveRequest {
                    key: "t".into(),
                    value: value.into(),
                },
            )
            .await
            .map(|r| r.new_count)
        }
    };
    assert_eq!(srem("a").await.unwrap(), 1);
    assert_eq!(srem("a").await.unwrap(), 0);
    assert_eq!(srem("b").await.unwrap(), 1);
    assert!(!exists(&kv, ALICE, "t").await, "an emptied set disappears");
    assert!(members(&kv, "t").await.unwrap().is_empty());

    set(&kv, ALICE, "s", "v", 0).await;
    assert_wrongtype(
        call::<_, SetOperationResponse>(
            &kv,
            OP_SET_REMOVE,
            &SetRemoveRequest {
                key: "s".into(),
                value: "v".into(),
            },
        )
        .await,
    );
    assert_wrongtype(sadd(&kv, "s", "x").await);
    assert_wrongtype(members(&kv, "s").await);
}

#[tokio::test]
async fn union_and_intersection_treat_missing_keys_as_empty_sets() {
    let kv = provider().await;
    for (key, items) in [("x", ["a", "b", "c"]), ("y", ["b", "c", "d"])] {
        for item in items {
            sadd(&kv, key, item).await.unwrap();
        }
    }
    let union = |k: Vec<String>| {
        let kv = &kv;
        async move {
            call::<_, SetQueryResponse>(kv, OP_SET_UNION, &SetUnionRequest { keys: k })
                .await
                .map(|r| r.values)
        }
    };
    let inter = |k: Vec<String>| {
        let kv = &kv;
        async move {
            call::<_, SetQueryResponse>(kv, OP_SET_INTERSECT, &SetIntersectionRequest { keys: k })
                .await
                .map(|r| r.values)
        }
    };
    assert_eq!(
        union(keys(&["x", "y"])).await.unwrap(),
        ["a", "b", "c", "d"]
    );
    assert_eq!(
        union(keys(&["x", "missing"])).await.unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(inter(keys(&["x", "y"])).await.unwrap(), ["b", "c"]);
    assert_eq!(inter(keys(&["y"])).await.unwrap(), ["b", "c", "d"]);
    assert!(
        inter(keys(&["x", "missing", "y"]))
            .await
            .unwrap()
            .is_empty()
    );

    for result in [union(Vec::new()).await, inter(Vec::new()).await] {
        assert!(
            matches!(&result, Err(ProviderError::Backend { message, .. }) if message.contains("at least one key")),
            "{result:?}"
        );
    }
    set(&kv, ALICE, "s", "v", 0).await;
    assert_wrongtype(union(keys(&["x", "s"])).await);
    assert_wrongtype(inter(keys(&["missing", "s"])).await);
}

#[tokio::test]
async fn key_exists_sees_every_type() {
    let kv = provider().await;
    assert!(!exists(&kv, ALICE, "s").await);
    set(&kv, ALICE, "s", "v", 0).await;
    push(&kv, "l", "v").await.unwrap();
    sadd(&kv, "t", "v").await.unwrap();
    for key in ["s", "l", "t"] {
        assert!(exists(&kv, ALICE, key).await, "{key}");
    }
}

#[tokio::test(start_paused = true)]
async fn set_with_expires_disappears_after_its_deadline() {
    let kv = provider().await;
    set(&kv, ALICE, "short", "v", 1).await;
    set(&kv, ALICE, "long", "v", 60).await;
    set(&kv, ALICE, "forever", "v", 0).await;
    assert!(get(&kv, ALICE, "short").await.exists);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&kv, ALICE, "short").await,
        GetResponse {
            value: String::new(),
            exists: false
        }
    );
    assert!(!exists(&kv, ALICE, "short").await);
    assert!(exists(&kv, ALICE, "long").await);
    assert!(exists(&kv, ALICE, "forever").await);
    // An expired counter restarts from zero.
    set(&kv, ALICE, "n", "10", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(add(&kv, "n", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn negative_expiry_is_refused() {
    let kv = provider().await;
    let result: Result<SetResponse, _> = call(
        &kv,
        OP_SET,
        &SetRequest {
            key: "k".into(),
            value: "v".into(),
            expires_s: -1,
        },
    )
    .await;
    assert!(
        matches!(&result, Err(ProviderError::Backend { message, .. }) if message.contains("expire")),
        "{result:?}"
    );
    assert!(!exists(&kv, ALICE, "k").await);
}

#[tokio::test(start_paused = true)]
async fn the_sweep_task_purges_untouched_expired_keys_until_shutdown() {
    let kv = MemoryKeyValue::with_backend(MemoryBackend::with_sweep_interval(
        Duration::from_millis(200),
    ));
    bind(&kv, ALICE, DEFAULT).await;

    // Not started: expired keys are only dropped when touched.
    set(&kv, ALICE, "a", "v", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kv.backend().stored_keys(), 1);

    kv.start(Arc::new(NoDispatch)).await.unwrap();
    set(&kv, ALICE, "keep", "v", 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        kv.backend().stored_keys(),
        1,
        "only the key without expiry is left"
    );

    kv.shutdown().await;
    assert_eq!(
        kv.backend().stored_keys(),
        0,
        "shutdown drops every binding"
    );
    bind(&kv, ALICE, DEFAULT).await;
    set(&kv, ALICE, "keep", "v", 0).await;
    set(&kv, ALICE, "b", "v", 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(kv.backend().stored_keys(), 2, "no sweeping after shutdown");
    assert!(
        !exists(&kv, ALICE, "b").await,
        "expiry stays exact without the sweeper"
    );
    assert_eq!(kv.backend().stored_keys(), 1);
    // A second shutdown has nothing to stop.
    kv.shutdown().await;
}

#[tokio::test]
async fn unbound_actors_and_bindings_are_refused() {
    let kv = provider().await;
    for (actor, binding) in [("MSTRANGER", DEFAULT), (ALICE, "other")] {
        let result = raw(
            &kv,
            actor,
            binding,
            OP_GET,
            waxosuit_codec::serialize(&GetRequest { key: "k".into() }).unwrap(),
        )
        .await;
        assert_eq!(
            result,
            Err(ProviderError::not_bound(CAPABILITY_ID, actor, binding))
        );
    }
}

#[tokio::test]
async fn undecodable_payloads_are_bad_payload_errors() {
    let kv = provider().await;
    for op in [
        OP_GET,
        OP_SET,
        OP_ADD,
        OP_RANGE,
        OP_SET_UNION,
        OP_KEY_EXISTS,
    ] {
        let result = raw(&kv, ALICE, DEFAULT, op, vec![0xc1, 0x00]).await;
        assert!(
            matches!(&result, Err(ProviderError::BadPayload { capid, operation, .. })
                if capid == CAPABILITY_ID && operation == op),
            "{op}: {result:?}"
        );
    }
    // The right shape with the wrong field type is just as bad.
    let wrong = waxosuit_codec::serialize(&GetRequest { key: "k".into() }).unwrap();
    assert!(matches!(
        raw(&kv, ALICE, DEFAULT, OP_ADD, wrong).await,
        Err(ProviderError::BadPayload { .. })
    ));
}

#[tokio::test]
async fn unknown_operations_are_refused() {
    let kv = provider().await;
    assert_eq!(
        raw(&kv, ALICE, DEFAULT, "Increment", Vec::new()).await,
        Err(ProviderError::unknown_operation(CAPABILITY_ID, "Increment"))
    );
}

#[tokio::test]
async fn actors_and_bindings_do_not_see_each_others_keys() {
    let kv = provider().await;
    bind(&kv, ALICE, "second").await;
    set(&kv, ALICE, "k", "alice", 0).await;
    assert!(!get(&kv, BOB, "k").await.exists);
    set(&kv, BOB, "k", "bob", 0).await;
    assert_eq!(get(&kv, ALICE, "k").await.value, "alice");
    assert_eq!(get(&kv, BOB, "k").await.value, "bob");

    let other: GetResponse = call_as(
        &kv,
        ALICE,
        "second",
        OP_GET,
        &GetRequest { key: "k".into() },
    )
    .await
    .unwrap();
    assert!(!other.exists, "a second binding is a second keyspace");
}

#[tokio::test]
async fn removing_a_binding_drops_its_data_and_only_its_data() {
    let kv = provider().await;
    set(&kv, ALICE, "k", "v", 0).await;
    set(&kv, BOB, "k", "v", 0).await;
    // Binding again keeps what is there.
    bind(&kv, ALICE, DEFAULT).await;
    assert!(exists(&kv, ALICE, "k").await);

    kv.remove_actor(ALICE, DEFAULT).await.unwrap();
    let gone = raw(
        &kv,
        ALICE,
        DEFAULT,
        OP_KEY_EXISTS,
        waxosuit_codec::serialize(&KeyExistsQuery { key: "k".into() }).unwrap(),
    )
    .await;
    assert_eq!(
        gone,
        Err(ProviderError::not_bound(CAPABILITY_ID, ALICE, DEFAULT))
    );
    assert_eq!(
        kv.remove_actor(ALICE, DEFAULT).await,
        Err(ProviderError::not_bound(CAPABILITY_ID, ALICE, DEFAULT))
    );

    bind(&kv, ALICE, DEFAULT).await;
    assert!(!exists(&kv, ALICE, "k").await, "a new binding starts empty");
    assert!(exists(&kv, BOB, "k").await);
    assert_eq!(kv.backend().stored_keys(), 1);
}

#[tokio::test]
async fn health_reports_the_keys_held() {
    let kv = provider().await;
    set(&kv, ALICE, "a", "1", 0).await;
    set(&kv, BOB, "b", "1", 0).await;
    let health = kv.health().await;
    assert!(health.healthy);
    assert_eq!(health.message, "2 keys held");
}

#[tokio::test]
async fn expiry_also_holds_on_the_real_clock() {
    let kv = provider().await;
    set(&kv, ALICE, "k", "v", 1).await;
    assert!(exists(&kv, ALICE, "k").await);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!get(&kv, ALICE, "k").await.exists);
}

#[tokio::test]
async fn replies_use_the_original_camel_case_field_names() {
    let kv = provider().await;
    let payload = waxosuit_codec::serialize(&ListPushRequest {
        key: "l".into(),
        value: "v".into(),
    })
    .unwrap();
    let reply = raw(&kv, ALICE, DEFAULT, OP_PUSH, payload).await.unwrap();
    let map: serde_json::Value = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(map, serde_json::json!({"newCount": 1}));

    let payload = waxosuit_codec::serialize(&KeyExistsQuery { key: "l".into() }).unwrap();
    let reply = raw(&kv, ALICE, DEFAULT, OP_KEY_EXISTS, payload)
        .await
        .unwrap();
    let map: serde_json::Value = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(map, serde_json::json!({"value": "", "exists": true}));
}

// ---------------------------------------------------------------- quotas --

async fn bind_with(kv: &MemoryKeyValue, actor: &str, values: &[(&str, &str)]) {
    kv.bind_actor(BindRequest {
        actor: actor.into(),
        binding: DEFAULT.into(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
    .await
    .unwrap();
}

async fn try_set(
    kv: &MemoryKeyValue,
    actor: &str,
    key: &str,
    value: &str,
) -> Result<(), ProviderError> {
    call_as::<_, SetResponse>(
        kv,
        actor,
        DEFAULT,
        OP_SET,
        &SetRequest {
            key: key.into(),
            value: value.into(),
            expires_s: 0,
        },
    )
    .await
    .map(drop)
}

/// Asserts a quota error naming the quota, the actor, the binding and the
/// fix.
#[track_caller]
fn assert_quota(result: Result<impl std::fmt::Debug, ProviderError>, quota: &str, actor: &str) {
    match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            for needle in [
                &format!("quota {quota} exceeded"),
                actor,
                "binding `default`",
                "nothing was changed",
                &format!("raise {quota} in this wascc:keyvalue binding's values"),
            ] {
                assert!(message.contains(needle), "`{needle}` not in: {message}");
            }
        }
        other => panic!("expected a {quota} quota error, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_past_the_byte_quota_fail_and_nothing_stored_is_lost() {
    let kv = MemoryKeyValue::new();
    bind_with(&kv, ALICE, &[("MAX_BYTES", "10000")]).await;
    bind(&kv, BOB, DEFAULT).await;

    let value = "v".repeat(100);
    let mut stored = Vec::new();
    let refused = loop {
        let key = format!("key-{}", stored.len());
        match try_set(&kv, ALICE, &key, &value).await {
            Ok(()) => stored.push(key),
            Err(e) => break e,
        }
        assert!(stored.len() < 1_000, "the quota never applied");
    };
    assert_quota(Err::<(), _>(refused), "MAX_BYTES", ALICE);
    // Each key costs 100 + 5 or 6 + 32 bytes, so about 72 fit in 10,000.
    assert!((60..80).contains(&stored.len()), "{}", stored.len());
    assert!(
        kv.backend().stored_bytes() <= 10_000,
        "{}",
        kv.backend().stored_bytes()
    );

    // Growing an existing value, a list or a set fails the same way ...
    let held = kv.backend().stored_bytes();
    assert_quota(
        try_set(&kv, ALICE, "key-0", &"w".repeat(5_000)).await,
        "MAX_BYTES",
        ALICE,
    );
    assert_quota(
        push(&kv, "key-list", &"w".repeat(5_000)).await,
        "MAX_BYTES",
        ALICE,
    );
    assert_quota(
        sadd(&kv, "key-set", &"w".repeat(5_000)).await,
        "MAX_BYTES",
        ALICE,
    );
    assert_eq!(
        kv.backend().stored_bytes(),
        held,
        "refused writes change nothing"
    );
    // ... and everything stored before is intact.
    for key in &stored {
        assert_eq!(get(&kv, ALICE, key).await.value, value, "{key}");
    }
    assert!(!exists(&kv, ALICE, "key-list").await);

    // Another binding has its own quota.
    try_set(&kv, BOB, "big", &"b".repeat(100_000))
        .await
        .unwrap();
    // Writes that do not grow the keyspace still pass, so it can be cleaned
    // up; then there is room again.
    try_set(&kv, ALICE, "key-0", "").await.unwrap();
    for key in &stored[1..20] {
        call::<_, DelResponse>(&kv, OP_DEL, &DelRequest { key: key.clone() })
            .await
            .unwrap();
    }
    try_set(&kv, ALICE, "fresh", &"f".repeat(2_000))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_new_keys_stop_exactly_at_the_key_quota() {
    let kv = Arc::new(MemoryKeyValue::new());
    bind_with(&kv, ALICE, &[("MAX_KEYS", "100")]).await;
    let tasks: Vec<_> = (0..10_000)
        .map(|i| {
            let kv = Arc::clone(&kv);
            tokio::spawn(async move {
                // Strings, lists and sets: every type takes a key.
                match i % 3 {
                    0 => try_set(&kv, ALICE, &format!("s{i}"), "v").await,
                    1 => push(&kv, &format!("l{i}"), "v").await.map(drop),
                    _ => sadd(&kv, &format!("t{i}"), "v").await.map(drop),
                }
            })
        })
        .collect();
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => accepted += 1,
            refused => assert_quota(refused, "MAX_KEYS", ALICE),
        }
    }
    assert_eq!(accepted, 100);
    assert_eq!(kv.backend().stored_keys(), 100);
}

#[tokio::test]
async fn the_default_byte_quota_bounds_a_flood_of_large_values() {
    let kv = provider().await;
    let value = "x".repeat(64 * 1024);
    let mut accepted = 0u64;
    for i in 0..1_100 {
        match try_set(&kv, ALICE, &format!("{i}"), &value).await {
            Ok(()) => accepted += 1,
            refused => assert_quota(refused, "MAX_BYTES", ALICE),
        }
    }
    assert!(kv.backend().stored_bytes() <= DEFAULT_MAX_BYTES);
    // 64 MiB of 64 KiB values, less the keys' own bytes.
    assert_eq!(accepted, DEFAULT_MAX_BYTES / (64 * 1024) - 1);
}

#[tokio::test]
async fn a_lowered_quota_keeps_the_data_and_refuses_only_growth() {
    let kv = provider().await;
    for key in ["a", "b", "c"] {
        set(&kv, ALICE, key, "1", 0).await;
    }
    bind_with(&kv, ALICE, &[("MAX_KEYS", "2")]).await;
    for key in ["a", "b", "c"] {
        assert!(exists(&kv, ALICE, key).await, "re-binding keeps {key}");
    }
    assert_quota(try_set(&kv, ALICE, "d", "1").await, "MAX_KEYS", ALICE);
    assert_eq!(add(&kv, "a", 41).await.unwrap(), 42, "no new key needed");
    for key in ["b", "c"] {
        call::<_, DelResponse>(&kv, OP_DEL, &DelRequest { key: key.into() })
            .await
            .unwrap();
    }
    try_set(&kv, ALICE, "d", "1").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn expired_keys_do_not_hold_the_quota() {
    let kv = MemoryKeyValue::new();
    bind_with(&kv, ALICE, &[("MAX_KEYS", "1")]).await;
    set(&kv, ALICE, "session", "v", 1).await;
    assert_quota(try_set(&kv, ALICE, "other", "v").await, "MAX_KEYS", ALICE);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Never swept (not started), never touched: still room for a new key.
    try_set(&kv, ALICE, "other", "v").await.unwrap();
    assert_eq!(kv.backend().stored_keys(), 1);
}

#[tokio::test]
async fn quota_values_must_be_positive_whole_numbers() {
    let kv = MemoryKeyValue::new();
    for (key, bad) in [
        ("MAX_KEYS", "0"),
        ("MAX_KEYS", "lots"),
        ("MAX_BYTES", "-5"),
        ("MAX_BYTES", "64MiB"),
    ] {
        let err = kv
            .bind_actor(BindRequest {
                actor: ALICE.into(),
                binding: DEFAULT.into(),
                values: HashMap::from([(key.to_string(), bad.to_string())]),
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key: k, reason, .. }
                if k == key && reason.contains(&format!("`{bad}`"))),
            "{err:?}"
        );
    }
    let refused = raw(
        &kv,
        ALICE,
        DEFAULT,
        OP_GET,
        waxosuit_codec::serialize(&GetRequest { key: "k".into() }).unwrap(),
    )
    .await;
    assert!(matches!(refused, Err(ProviderError::NotBound { .. })));
}

/// The contract's conformance suite, on this provider.
#[tokio::test]
async fn passes_the_keyvalue_conformance_suite() {
    let kv = MemoryKeyValue::new();
    let subject = waxosuit_cap_keyvalue::conformance::ProviderSubject::bind(&kv, ALICE, &[])
        .await
        .unwrap();
    waxosuit_cap_keyvalue::conformance::run(&subject)
        .await
        .assert_passed();
}

#[tokio::test]
async fn reads_larger_than_the_actor_accepts_are_refused_with_the_redis_backends_error() {
    // ALICE accepts 64 KiB and stores 200 items of 1 KiB in a list and two
    // sets (200 KiB each): what Redis refuses, this backend refuses alike.
    let kv = MemoryKeyValue::new();
    kv.bind_actor(BindRequest {
        actor: ALICE.into(),
        binding: DEFAULT.into(),
        values: HashMap::from([(
            waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD.to_string(),
            "65536".to_string(),
        )]),
    })
    .await
    .unwrap();
    for i in 0..200 {
        let value = format!("{i:04}{}", "x".repeat(1020));
        push(&kv, "big", &value).await.unwrap();
        sadd(&kv, "s1", &value).await.unwrap();
        sadd(&kv, "s2", &value).await.unwrap();
    }
    let refused = |result: Result<Vec<String>, ProviderError>, needle: &str| match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            assert!(message.contains(needle), "`{needle}` not in {message}");
            assert!(
                message.contains("raise the actor's max_payload_kib"),
                "{message}"
            );
        }
        other => panic!("expected the reply bound, got {other:?}"),
    };
    for (start, stop) in [(0, -1), (0, 199), (-100, -1), (10, 1000)] {
        refused(
            range(&kv, "big", start, stop).await,
            "the reply of `Range` on key `big` would be more than 65536 bytes",
        );
    }
    refused(
        members(&kv, "s1").await,
        "the reply of `SetQuery` on key `s1` would be more than 65536 bytes",
    );
    let algebra = |operation: &'static str| {
        let kv = &kv;
        async move {
            match operation {
                "union" => {
                    call::<_, SetQueryResponse>(
                        kv,
                        OP_SET_UNION,
                        &SetUnionRequest {
                            keys: keys(&["s1", "s2"]),
                        },
                    )
                    .await
                }
                _ => {
                    call::<_, SetQueryResponse>(
                        kv,
                        OP_SET_INTERSECT,
                        &SetIntersectionRequest {
                            keys: keys(&["s1", "s2"]),
                        },
                    )
                    .await
                }
            }
            .map(|r| r.values)
        }
    };
    refused(
        algebra("union").await,
        "the reply of `SetUnion` on key `s1` would be more than 65536 bytes",
    );
    refused(
        algebra("intersection").await,
        "the reply of `SetIntersection` on key `s1` would be more than 65536 bytes",
    );
    // Windows within the bound read normally, and nothing was lost.
    let window = range(&kv, "big", -3, -1).await.unwrap();
    assert_eq!(window.len(), 3);
    assert!(window[2].starts_with("0000"));
    assert!(range(&kv, "big", 5, 2).await.unwrap().is_empty());
    assert_eq!(range(&kv, "big", 0, 59).await.unwrap().len(), 60);
    let len = push(&kv, "big", "one more").await.unwrap();
    assert_eq!(len, 201);
}
