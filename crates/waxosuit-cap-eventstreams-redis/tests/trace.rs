//! `WriteEvent` and `QueryStream` are each one client span named after the
//! Redis command, the child of the span the call runs in. Spans are
//! collected by an OpenTelemetry layer over an in-memory exporter on the
//! test's current thread.

use std::collections::HashMap;

use opentelemetry::Value;
use opentelemetry::trace::SpanKind;
use tracing::Instrument;
use waxosuit_cap_eventstreams_redis::{CONFIG_URL, RedisEventStreams};
use waxosuit_codec::eventstreams::*;
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
use waxosuit_test_servers::{RedisServer, collect_spans, span_attribute};

const ACTOR: &str = "MTRACED";

async fn call(provider: &RedisEventStreams, operation: &str, payload: Vec<u8>) {
    provider
        .handle_call(ProviderCall {
            actor: ACTOR.into(),
            binding: "default".into(),
            operation: operation.into(),
            payload,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn each_call_is_a_client_span_named_after_its_command() {
    let (exporter, _guard) = collect_spans();

    let redis = RedisServer::start().unwrap();
    let provider = RedisEventStreams::new();
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values: HashMap::from([(CONFIG_URL.to_string(), redis.url())]),
        })
        .await
        .unwrap();

    let parent = tracing::info_span!("capability call");
    let parent_id = waxosuit_trace::span_context(&parent).unwrap().span_id();
    let event = Event {
        event_id: String::new(),
        stream: "orders".into(),
        values: HashMap::from([("sku".to_string(), "A-1".to_string())]),
    };
    let query = StreamQuery {
        stream_id: "orders".into(),
        range: None,
        count: 0,
    };
    async {
        call(
            &provider,
            OP_WRITE_EVENT,
            encode(CAPABILITY_ID, &event).unwrap(),
        )
        .await;
        call(
            &provider,
            OP_QUERY_STREAM,
            encode(CAPABILITY_ID, &query).unwrap(),
        )
        .await;
    }
    .instrument(parent)
    .await;

    let spans = exporter.finished();
    // A query reads through a script that bounds its reply (EVAL).
    for command in ["XADD", "EVAL"] {
        let span = spans
            .iter()
            .find(|s| s.name == command)
            .unwrap_or_else(|| panic!("no {command} span among {spans:?}"));
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.parent_span_id, parent_id);
        assert_eq!(span_attribute(span, "db.system.name"), Some("redis".into()));
        assert_eq!(
            span_attribute(span, "db.operation.name"),
            Some(command.into())
        );
        assert_eq!(
            span_attribute(span, "server.port"),
            Some(Value::I64(i64::from(redis.port())))
        );
    }
}
