//! Each call's exchange with Redis is a client span, the child of the span
//! the call runs in, named and described after the command sent. Spans are
//! collected by an OpenTelemetry layer over an in-memory exporter, as the
//! CLI's OTLP layer would export them.

use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use tracing::Instrument;
use waxosuit_cap_keyvalue_redis::{CONFIG_URL, RedisKeyValue};
use waxosuit_codec::keyvalue::*;
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};
use waxosuit_test_servers::CollectedSpans;
use waxosuit_test_servers::{RedisServer, collect_spans, span_attribute};
use waxosuit_trace::FinishedSpan;

const ACTOR: &str = "MTRACED";

fn finished(exporter: &CollectedSpans, name: &str) -> FinishedSpan {
    let spans = exporter.finished();
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| {
            let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
            panic!("no span {name:?} among {names:?}")
        })
        .clone()
}

async fn setup(redis: &RedisServer) -> RedisKeyValue {
    let kv = RedisKeyValue::new();
    kv.bind_actor(BindRequest {
        actor: ACTOR.into(),
        binding: "default".into(),
        values: [(CONFIG_URL.to_string(), redis.url())].into(),
    })
    .await
    .unwrap();
    kv
}

async fn call(
    kv: &RedisKeyValue,
    operation: &str,
    request: &impl serde::Serialize,
) -> Result<Vec<u8>, ProviderError> {
    kv.handle_call(ProviderCall {
        actor: ACTOR.into(),
        binding: "default".into(),
        operation: operation.into(),
        payload: waxosuit_codec::serialize(request).unwrap(),
    })
    .await
}

#[tokio::test]
async fn a_call_is_a_client_span_named_after_the_command_under_the_callers_span() {
    let redis = RedisServer::start().unwrap();
    let kv = setup(&redis).await;
    let (exporter, _guard) = collect_spans();

    let parent = tracing::info_span!("capability call");
    let parent_id = waxosuit_trace::span_context(&parent).unwrap().span_id();
    let trace_id = waxosuit_trace::span_context(&parent).unwrap().trace_id();
    call(
        &kv,
        OP_SET,
        &SetRequest {
            key: "k".into(),
            value: "v".into(),
            expires_s: 0,
        },
    )
    .instrument(parent.clone())
    .await
    .unwrap();
    call(
        &kv,
        OP_ADD,
        &AddRequest {
            key: "n".into(),
            value: 2,
        },
    )
    .instrument(parent)
    .await
    .unwrap();

    let set = finished(&exporter, "SET");
    assert_eq!(set.span_kind, SpanKind::Client);
    assert_eq!(set.parent_span_id, parent_id);
    assert_eq!(set.span_context.trace_id(), trace_id);
    assert_eq!(span_attribute(&set, "db.system.name"), Some("redis".into()));
    assert_eq!(
        span_attribute(&set, "db.operation.name"),
        Some("SET".into())
    );
    assert_eq!(
        span_attribute(&set, "server.address"),
        Some("127.0.0.1".into())
    );
    assert_eq!(
        span_attribute(&set, "server.port"),
        Some(Value::I64(i64::from(redis.port())))
    );
    assert_eq!(set.status, Status::Unset);
    // The scripts are named after the command that runs them.
    let add = finished(&exporter, "EVALSHA");
    assert_eq!(add.parent_span_id, parent_id);
    assert_eq!(
        span_attribute(&add, "db.operation.name"),
        Some("EVALSHA".into())
    );
}

#[tokio::test]
async fn a_refused_command_marks_its_span_as_an_error() {
    let redis = RedisServer::start().unwrap();
    let kv = setup(&redis).await;
    let (exporter, _guard) = collect_spans();

    call(
        &kv,
        OP_PUSH,
        &ListPushRequest {
            key: "list".into(),
            value: "v".into(),
        },
    )
    .await
    .unwrap();
    let error = call(&kv, OP_GET, &GetRequest { key: "list".into() })
        .await
        .unwrap_err();

    // `Get` runs as a script (its reply bounded in Redis).
    let get = finished(&exporter, "EVALSHA");
    let Status::Error { description } = &get.status else {
        panic!("Get on a list is not an error span: {:?}", get.status);
    };
    assert!(description.contains("WRONGTYPE"), "{description}");
    assert_eq!(description.as_ref(), error.to_string());
    assert_eq!(finished(&exporter, "LPUSH").status, Status::Unset);
}

#[tokio::test]
async fn an_unreachable_server_marks_its_span_as_an_error() {
    let mut redis = RedisServer::start().unwrap();
    let kv = setup(&redis).await;
    redis.stop();
    let (exporter, _guard) = collect_spans();

    let error = call(&kv, OP_GET, &GetRequest { key: "k".into() })
        .await
        .unwrap_err();

    assert!(
        matches!(error, ProviderError::Unavailable { .. }),
        "{error}"
    );
    let get = finished(&exporter, "EVALSHA");
    assert!(
        matches!(get.status, Status::Error { .. }),
        "{:?}",
        get.status
    );
}
