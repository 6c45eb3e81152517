//! The W3C trace context reaches the server the provider calls: a real
//! hyper server on 127.0.0.1 reports the `traceparent` it received. Spans
//! are collected by an OpenTelemetry layer over an in-memory exporter, as
//! the CLI's OTLP layer would export them, on the test's current thread.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use tracing::Instrument;
use waxosuit_cap_http_client::{ALLOWED_HOSTS, HttpClientProvider};
use waxosuit_codec::http::{CLIENT_CAPABILITY_ID, OP_PERFORM_REQUEST, Request, Response};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, encode};
use waxosuit_test_servers::CollectedSpans;
use waxosuit_test_servers::{collect_spans, span_attribute};
use waxosuit_trace::FinishedSpan;

const ACTOR: &str = "MTRACED";

/// A server answering every request with the trace headers it received
/// (`-` for none) and the status the path names (`/status/503`), or `200`.
async fn server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let seen = |name| {
                        let values: Vec<_> = req
                            .headers()
                            .get_all(name)
                            .iter()
                            .map(|v| v.to_str().unwrap().to_string())
                            .collect();
                        if values.is_empty() {
                            "-".to_string()
                        } else {
                            values.join(",")
                        }
                    };
                    let body = format!("{}\n{}", seen("traceparent"), seen("tracestate"));
                    let status = req
                        .uri()
                        .path()
                        .strip_prefix("/status/")
                        .map_or(200, |code| code.parse().unwrap());
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::from(body)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn provider() -> HttpClientProvider {
    let provider = HttpClientProvider::new();
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values: HashMap::from([(ALLOWED_HOSTS.to_string(), "127.0.0.1".to_string())]),
        })
        .await
        .unwrap();
    provider
}

/// The actor's call performing `request`.
async fn perform(
    provider: &HttpClientProvider,
    request: &Request,
) -> Result<Vec<u8>, ProviderError> {
    provider
        .handle_call(ProviderCall {
            actor: ACTOR.into(),
            binding: "default".into(),
            operation: OP_PERFORM_REQUEST.into(),
            payload: encode(CLIENT_CAPABILITY_ID, request).unwrap(),
        })
        .await
}

/// Performs a GET of `url` with the actor's `headers`; the server's report
/// of the trace headers it received, as (traceparent, tracestate).
async fn get(
    provider: &HttpClientProvider,
    url: String,
    headers: &[(&str, &str)],
) -> (u32, String, String) {
    let request = Request {
        method: "GET".into(),
        path: url,
        header: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Request::default()
    };
    let reply = perform(provider, &request).await.unwrap();
    let response: Response = waxosuit_codec::deserialize(&reply).unwrap();
    let body = String::from_utf8(response.body).unwrap();
    let (traceparent, tracestate) = body.split_once('\n').unwrap();
    (
        response.status_code,
        traceparent.to_string(),
        tracestate.to_string(),
    )
}

fn client_spans(exporter: &CollectedSpans) -> Vec<FinishedSpan> {
    exporter
        .finished()
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect()
}

#[tokio::test]
async fn the_server_receives_the_trace_of_the_span_the_call_was_made_in() {
    let (exporter, _guard) = collect_spans();
    let addr = server().await;
    let provider = provider().await;

    let call = tracing::info_span!("capability call");
    let trace_id = waxosuit_trace::span_context(&call).unwrap().trace_id();
    let call_id = waxosuit_trace::span_context(&call).unwrap().span_id();
    let (status, traceparent, tracestate) = get(
        &provider,
        format!("http://{addr}/things?secret=1"),
        // The actor's own values are replaced by the host's.
        &[
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "actor=value"),
        ],
    )
    .instrument(call)
    .await;
    assert_eq!(status, 200);
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "{traceparent}");
    assert_eq!(fields[1], trace_id.to_string());
    assert_eq!(fields[3], "01");
    assert_eq!(tracestate, "-");

    let spans = client_spans(&exporter);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    // The server's parent is the client span, itself the call's child.
    assert_eq!(fields[2], span.span_context.span_id().to_string());
    assert_eq!(span.parent_span_id, call_id);
    assert_eq!(span.name, "GET");
    for (key, value) in [
        ("http.request.method", Value::from("GET")),
        ("url.full", format!("http://{addr}/things").into()),
        ("server.address", "127.0.0.1".into()),
        ("server.port", Value::I64(i64::from(addr.port()))),
        ("http.response.status_code", Value::I64(200)),
    ] {
        assert_eq!(span_attribute(span, key), Some(value), "{key}");
    }
    assert_eq!(span.status, Status::Unset);
}

#[tokio::test]
async fn a_server_error_marks_the_client_span_as_an_error() {
    let (exporter, _guard) = collect_spans();
    let addr = server().await;
    let provider = provider().await;

    let (status, _, _) = get(&provider, format!("http://{addr}/status/503"), &[])
        .instrument(tracing::info_span!("capability call"))
        .await;
    assert_eq!(status, 503);
    let spans = client_spans(&exporter);
    assert_eq!(
        span_attribute(&spans[0], "http.response.status_code"),
        Some(Value::I64(503))
    );
    assert!(matches!(spans[0].status, Status::Error { .. }), "{spans:?}");
}

#[tokio::test]
async fn an_unreachable_server_marks_the_client_span_with_the_reason() {
    let (exporter, _guard) = collect_spans();
    let provider = provider().await;
    // A port nothing listens on: bound, then released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let request = Request {
        method: "GET".into(),
        path: format!("http://127.0.0.1:{port}/"),
        ..Request::default()
    };
    let error = perform(&provider, &request).await.unwrap_err();
    let spans = client_spans(&exporter);
    let Status::Error { description } = &spans[0].status else {
        panic!("not an error span: {spans:?}");
    };
    assert!(
        description.contains("cannot reach"),
        "{description} / {error}"
    );
}

#[tokio::test]
async fn without_a_tracing_layer_the_actors_headers_go_out_unchanged() {
    let addr = server().await;
    let provider = provider().await;

    let (_, traceparent, tracestate) = get(&provider, format!("http://{addr}/"), &[]).await;
    assert_eq!((traceparent.as_str(), tracestate.as_str()), ("-", "-"));

    let actors = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (_, traceparent, tracestate) = get(
        &provider,
        format!("http://{addr}/"),
        &[("traceparent", actors), ("tracestate", "actor=value")],
    )
    .await;
    assert_eq!(traceparent, actors);
    assert_eq!(tracestate, "actor=value");
}
