//! Drives `ExtrasProvider` through the provider trait and decodes every reply
//! with the codec's `GeneratorResult`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use waxosuit_cap_extras::ExtrasProvider;
use waxosuit_codec::capabilities::OperationDirection;
use waxosuit_codec::extras::*;
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};

const ALICE: &str = "MALICE";
const BOB: &str = "MBOB";
const DEFAULT: &str = "default";

async fn bind(extras: &ExtrasProvider, actor: &str, binding: &str) {
    extras
        .bind_actor(BindRequest {
            actor: actor.into(),
            binding: binding.into(),
            values: HashMap::new(),
        })
        .await
        .unwrap();
}

async fn provider() -> ExtrasProvider {
    let extras = ExtrasProvider::new();
    bind(&extras, ALICE, DEFAULT).await;
    bind(&extras, BOB, DEFAULT).await;
    extras
}

async fn raw(
    extras: &ExtrasProvider,
    actor: &str,
    binding: &str,
    operation: &str,
    payload: Vec<u8>,
) -> Result<GeneratorResult, ProviderError> {
    let reply = extras
        .handle_call(ProviderCall {
            actor: actor.into(),
            binding: binding.into(),
            operation: operation.into(),
            payload,
        })
        .await?;
    Ok(waxosuit_codec::deserialize(&reply).unwrap())
}

async fn call(
    extras: &ExtrasProvider,
    actor: &str,
    operation: &str,
    request: GeneratorRequest,
) -> Result<GeneratorResult, ProviderError> {
    raw(
        extras,
        actor,
        DEFAULT,
        operation,
        waxosuit_codec::serialize(&request).unwrap(),
    )
    .await
}

fn random(min: u32, max: u32) -> GeneratorRequest {
    GeneratorRequest {
        random: true,
        min,
        max,
        ..GeneratorRequest::default()
    }
}

async fn sequence(extras: &ExtrasProvider, actor: &str) -> u64 {
    let result = call(
        extras,
        actor,
        OP_REQUEST_SEQUENCE,
        GeneratorRequest {
            sequence: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(result.guid, None);
    assert_eq!(result.random_number, 0);
    result.sequence_number
}

/// Checks the canonical hyphenated v4 form: 8-4-4-4-12 lowercase hex,
/// version nibble 4, variant bits 10.
fn assert_uuid_v4(guid: &str) {
    let groups: Vec<&str> = guid.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{guid}"
    );
    assert!(
        guid.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{guid}"
    );
    assert!(groups[2].starts_with('4'), "version nibble: {guid}");
    assert!(
        groups[3].starts_with(['8', '9', 'a', 'b']),
        "variant bits: {guid}"
    );
}

#[test]
fn descriptor_lists_the_three_operations_as_actor_to_provider() {
    let descriptor = ExtrasProvider::new().descriptor();
    assert_eq!(descriptor.id, CAPABILITY_ID);
    let names: Vec<_> = descriptor
        .supported_operations
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        names,
        [OP_REQUEST_GUID, OP_REQUEST_RANDOM, OP_REQUEST_SEQUENCE]
    );
    assert!(
        descriptor
            .supported_operations
            .iter()
            .all(|o| o.direction == OperationDirection::ToProvider)
    );
}

#[tokio::test]
async fn request_guid_replies_distinct_v4_uuids_and_nothing_else() {
    let extras = provider().await;
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let result = call(
            &extras,
            ALICE,
            OP_REQUEST_GUID,
            GeneratorRequest {
                guid: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!((result.sequence_number, result.random_number), (0, 0));
        let guid = result.guid.unwrap();
        assert_uuid_v4(&guid);
        assert!(seen.insert(guid), "a GUID repeated");
    }
}

#[tokio::test]
async fn request_guid_ignores_its_payload_like_wascc() {
    let extras = provider().await;
    let result = raw(&extras, ALICE, DEFAULT, OP_REQUEST_GUID, Vec::new())
        .await
        .unwrap();
    assert_uuid_v4(&result.guid.unwrap());
}

#[tokio::test]
async fn request_random_stays_within_min_inclusive_max_exclusive() {
    let extras = provider().await;
    let mut seen = HashSet::new();
    for _ in 0..500 {
        let result = call(&extras, ALICE, OP_REQUEST_RANDOM, random(10, 15))
            .await
            .unwrap();
        assert_eq!(result.guid, None);
        assert_eq!(result.sequence_number, 0);
        assert!(
            (10..15).contains(&result.random_number),
            "{}",
            result.random_number
        );
        seen.insert(result.random_number);
    }
    // 500 uniform draws from 5 values miss one with probability ~5·0.8^500.
    assert_eq!(seen.len(), 5, "{seen:?}");

    let single = call(&extras, ALICE, OP_REQUEST_RANDOM, random(7, 8))
        .await
        .unwrap();
    assert_eq!(single.random_number, 7);
    let top = call(
        &extras,
        ALICE,
        OP_REQUEST_RANDOM,
        random(u32::MAX - 1, u32::MAX),
    )
    .await
    .unwrap();
    assert_eq!(top.random_number, u32::MAX - 1);
}

#[tokio::test]
async fn request_random_without_the_flag_replies_all_defaults() {
    let extras = provider().await;
    let request = GeneratorRequest {
        random: false,
        min: 1,
        max: 100,
        ..Default::default()
    };
    assert_eq!(
        call(&extras, ALICE, OP_REQUEST_RANDOM, request)
            .await
            .unwrap(),
        GeneratorResult::default()
    );
}

#[tokio::test]
async fn request_random_with_an_empty_range_is_an_error_not_a_panic() {
    let extras = provider().await;
    for (min, max) in [(5, 5), (6, 5), (u32::MAX, 0)] {
        match call(&extras, ALICE, OP_REQUEST_RANDOM, random(min, max)).await {
            Err(ProviderError::BadPayload {
                capid,
                operation,
                reason,
            }) => {
                assert_eq!(capid, CAPABILITY_ID);
                assert_eq!(operation, OP_REQUEST_RANDOM);
                assert!(reason.contains("less than max"), "{reason}");
            }
            other => panic!("[{min}, {max}): {other:?}"),
        }
    }
}

#[tokio::test]
async fn request_random_needs_a_decodable_payload() {
    let extras = provider().await;
    for payload in [Vec::new(), vec![0xc1], b"not msgpack".to_vec()] {
        let result = raw(&extras, ALICE, DEFAULT, OP_REQUEST_RANDOM, payload).await;
        assert!(
            matches!(&result, Err(ProviderError::BadPayload { operation, .. }) if operation == OP_REQUEST_RANDOM),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn sequences_count_from_zero_per_actor() {
    let extras = provider().await;
    for expected in 0..5 {
        assert_eq!(sequence(&extras, ALICE).await, expected);
    }
    assert_eq!(sequence(&extras, BOB).await, 0, "BOB has his own sequence");
    assert_eq!(sequence(&extras, ALICE).await, 5);
    // The payload is not read, as in waSCC.
    let empty = raw(&extras, BOB, DEFAULT, OP_REQUEST_SEQUENCE, Vec::new())
        .await
        .unwrap();
    assert_eq!(empty.sequence_number, 1);
}

#[tokio::test]
async fn a_sequence_is_shared_by_an_actors_bindings_and_dropped_with_the_last() {
    let extras = provider().await;
    bind(&extras, ALICE, "second").await;
    assert_eq!(sequence(&extras, ALICE).await, 0);
    let via_second = raw(&extras, ALICE, "second", OP_REQUEST_SEQUENCE, Vec::new())
        .await
        .unwrap();
    assert_eq!(via_second.sequence_number, 1);

    extras.remove_actor(ALICE, "second").await.unwrap();
    assert_eq!(
        sequence(&extras, ALICE).await,
        2,
        "one binding left keeps the sequence"
    );
    extras.remove_actor(ALICE, DEFAULT).await.unwrap();
    assert_eq!(
        call(
            &extras,
            ALICE,
            OP_REQUEST_SEQUENCE,
            GeneratorRequest::default()
        )
        .await,
        Err(ProviderError::not_bound(CAPABILITY_ID, ALICE, DEFAULT))
    );
    assert_eq!(
        extras.remove_actor(ALICE, DEFAULT).await,
        Err(ProviderError::not_bound(CAPABILITY_ID, ALICE, DEFAULT))
    );
    bind(&extras, ALICE, DEFAULT).await;
    assert_eq!(
        sequence(&extras, ALICE).await,
        0,
        "a re-bound actor starts again"
    );
    assert_eq!(sequence(&extras, BOB).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sequence_requests_never_repeat_a_number() {
    let extras = Arc::new(provider().await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let extras = Arc::clone(&extras);
            tokio::spawn(async move {
                let mut numbers = Vec::new();
                for _ in 0..40 {
                    numbers.push(sequence(&extras, ALICE).await);
                }
                numbers
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..2000).collect::<Vec<u64>>());
}

#[tokio::test]
async fn unbound_actors_are_refused_for_every_operation() {
    let extras = provider().await;
    for op in [
        OP_REQUEST_GUID,
        OP_REQUEST_RANDOM,
        OP_REQUEST_SEQUENCE,
        "Unknown",
    ] {
        assert_eq!(
            call(&extras, "MSTRANGER", op, random(0, 10)).await,
            Err(ProviderError::not_bound(
                CAPABILITY_ID,
                "MSTRANGER",
                DEFAULT
            )),
            "{op}"
        );
        assert_eq!(
            raw(&extras, ALICE, "other", op, Vec::new()).await,
            Err(ProviderError::not_bound(CAPABILITY_ID, ALICE, "other")),
            "{op}"
        );
    }
}

#[tokio::test]
async fn unknown_operations_are_refused() {
    let extras = provider().await;
    assert_eq!(
        call(&extras, ALICE, "RequestTime", GeneratorRequest::default()).await,
        Err(ProviderError::unknown_operation(
            CAPABILITY_ID,
            "RequestTime"
        ))
    );
}

#[tokio::test]
async fn replies_are_camel_case_maps_with_a_nil_guid_when_unasked() {
    let extras = provider().await;
    let reply = extras
        .handle_call(ProviderCall {
            actor: ALICE.into(),
            binding: DEFAULT.into(),
            operation: OP_REQUEST_SEQUENCE.into(),
            payload: Vec::new(),
        })
        .await
        .unwrap();
    let map: serde_json::Value = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(
        map,
        serde_json::json!({"guid": null, "sequenceNumber": 0, "randomNumber": 0})
    );
}
