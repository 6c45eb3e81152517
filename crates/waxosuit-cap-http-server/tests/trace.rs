//! Each request is a server span continuing the client's W3C trace, with
//! the actor call inside it. Spans are collected by an OpenTelemetry layer
//! over an in-memory exporter, as the CLI's OTLP layer would export them;
//! the provider serves on the test's current-thread runtime (no connection
//! threads), where the test's subscriber is the default.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use waxosuit_cap_http_server::HttpServerProvider;
use waxosuit_codec::http::Response;
use waxosuit_provider::{ActorDispatcher, BindRequest, CapabilityProvider, DispatchError};
use waxosuit_test_servers::CollectedSpans;
use waxosuit_test_servers::{collect_spans, span_attribute};
use waxosuit_trace::FinishedSpan;

const PATIENCE: Duration = Duration::from_secs(10);
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Stands in for the host: opens a span of its own for the actor call, as
/// the host does, and replies `200 hello` or fails.
struct Host {
    fail: bool,
}

#[async_trait]
impl ActorDispatcher for Host {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        _payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let _actor = tracing::info_span!("actor call").entered();
        if self.fail {
            return Err(DispatchError::Actor {
                actor: actor.to_string(),
                operation: operation.to_string(),
                message: "wasm trap: unreachable".to_string(),
            });
        }
        Ok(waxosuit_codec::serialize(&Response {
            body: b"hello".to_vec(),
            ..Response::ok()
        })
        .unwrap())
    }
}

async fn serve(actor: &str, fail: bool) -> (HttpServerProvider, SocketAddr) {
    let provider = HttpServerProvider::with_connection_threads(0);
    provider.start(Arc::new(Host { fail })).await.unwrap();
    provider
        .bind_actor(BindRequest {
            actor: actor.into(),
            binding: "default".into(),
            values: HashMap::from([
                ("ADDRESS".to_string(), "127.0.0.1".to_string()),
                ("PORT".to_string(), "0".to_string()),
            ]),
        })
        .await
        .unwrap();
    let addr = provider.bound_address(actor).unwrap();
    (provider, addr)
}

async fn send(
    addr: SocketAddr,
    method: Method,
    body: &'static [u8],
    headers: &[(&str, &str)],
) -> StatusCode {
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}/hello?name=x"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from_static(body))).unwrap();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(PATIENCE, client.request(request))
        .await
        .expect("no response in time")
        .expect("request failed");
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

/// The finished spans named `name`, waiting for them to end.
async fn finished(exporter: &CollectedSpans, name: &str, count: usize) -> Vec<FinishedSpan> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let spans: Vec<_> = exporter
            .finished()
            .into_iter()
            .filter(|s| s.name == name)
            .collect();
        if spans.len() >= count {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} span(s) {name:?} did not end in time; have {:?}",
            exporter.finished()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_request_continues_the_callers_trace_and_the_actor_call_is_its_child() {
    let (exporter, _guard) = collect_spans();
    let (provider, addr) = serve("MTRACED", false).await;

    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let status = send(
        addr,
        Method::POST,
        b"twelve bytes",
        &[("traceparent", &traceparent), ("tracestate", "congo=t61")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let server = finished(&exporter, "POST", 1).await.remove(0);
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(
        server.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(server.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    assert!(server.parent_span_is_remote);
    assert_eq!(server.span_context.trace_state().get("congo"), Some("t61"));
    for (key, value) in [
        ("http.request.method", Value::from("POST")),
        ("url.path", "/hello".into()),
        ("url.scheme", "http".into()),
        ("http.request.body.size", Value::I64(12)),
        ("http.response.status_code", Value::I64(200)),
        ("http.response.body.size", Value::I64(5)),
    ] {
        assert_eq!(span_attribute(&server, key), Some(value), "{key}");
    }
    assert_eq!(server.status, Status::Unset);

    let actor = finished(&exporter, "actor call", 1).await.remove(0);
    assert_eq!(actor.parent_span_id, server.span_context.span_id());
    assert_eq!(
        actor.span_context.trace_id(),
        server.span_context.trace_id()
    );
    provider.shutdown().await;
}

/// A method outside the standard ones names no span: the client's token
/// would otherwise become a span name (each a new entry in a collector's
/// index). The span is `HTTP`, its method `_OTHER`, as the semantic
/// conventions say.
#[tokio::test]
async fn a_made_up_method_names_no_span() {
    let (exporter, _guard) = collect_spans();
    let (provider, addr) = serve("MMETHOD", false).await;
    send(addr, Method::from_bytes(b"XYZZY123").unwrap(), b"", &[]).await;
    let server = finished(&exporter, "HTTP", 1).await.remove(0);
    assert_eq!(
        span_attribute(&server, "http.request.method"),
        Some(Value::from("_OTHER"))
    );
    assert!(
        exporter.finished().iter().all(|s| s.name != "XYZZY123"),
        "{:?}",
        exporter.finished()
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_malformed_or_missing_traceparent_starts_a_new_trace() {
    let (exporter, _guard) = collect_spans();
    let (provider, addr) = serve("MNEW", false).await;

    let upper = format!("00-{}-{PARENT}-01", TRACE.to_uppercase());
    let good = format!("00-{TRACE}-{PARENT}-01");
    let other = format!("00-{}-{PARENT}-01", "1".repeat(32));
    let cases = [
        &[("traceparent", "garbage")][..],
        &[("traceparent", upper.as_str())][..],
        &[][..],
        // Two parents, whatever their order: neither is continued.
        &[
            ("traceparent", good.as_str()),
            ("traceparent", other.as_str()),
        ][..],
        &[
            ("traceparent", other.as_str()),
            ("traceparent", good.as_str()),
        ][..],
    ];
    for headers in cases {
        assert_eq!(send(addr, Method::GET, b"", headers).await, StatusCode::OK);
    }

    let servers = finished(&exporter, "GET", cases.len()).await;
    for server in &servers {
        assert_eq!(server.parent_span_id, SpanId::INVALID);
        for foreign in [TRACE.to_string(), "1".repeat(32)] {
            assert_ne!(
                server.span_context.trace_id(),
                TraceId::from_hex(&foreign).unwrap()
            );
        }
        assert_eq!(span_attribute(server, "http.request.body.size"), None);
    }
    provider.shutdown().await;
}

#[tokio::test]
async fn several_tracestate_headers_are_combined_in_order() {
    let (exporter, _guard) = collect_spans();
    let (provider, addr) = serve("MSTATE", false).await;
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let headers = [
        ("traceparent", traceparent.as_str()),
        ("tracestate", "congo=t61"),
        ("tracestate", "rojo=00f067aa0ba902b7"),
    ];
    assert_eq!(send(addr, Method::GET, b"", &headers).await, StatusCode::OK);
    let server = finished(&exporter, "GET", 1).await.remove(0);
    assert_eq!(
        server.span_context.trace_state().header(),
        "congo=t61,rojo=00f067aa0ba902b7"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_failed_actor_call_is_an_error_span_with_the_reason() {
    let (exporter, _guard) = collect_spans();
    let (provider, addr) = serve("MFAIL", true).await;

    let status = send(addr, Method::GET, b"", &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let server = finished(&exporter, "GET", 1).await.remove(0);
    assert_eq!(
        span_attribute(&server, "http.response.status_code"),
        Some(Value::I64(500))
    );
    let Status::Error { description } = &server.status else {
        panic!("a failed call is not an error span: {:?}", server.status);
    };
    assert!(
        description.contains("wasm trap: unreachable"),
        "{description}"
    );
    provider.shutdown().await;
}
