//! `OpaEngine` against an HTTP server that speaks OPA's Data API, with the
//! decisions made by the embedded engine over the same policies the
//! embedded backend is tested with: both backends must decide alike.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use waxosuit_policy::{
    DecisionPoint, EngineErrorKind, InvokeKey, Outcome, Policy, PolicyConfig, PolicyDenied,
    PolicyEngine,
};
use waxosuit_policy_opa::{OpaEngine, OpaError};
use waxosuit_policy_rego::RegoEngine;

/// The embedded backend's test policies, byte for byte.
const POLICIES: [(&str, &str); 2] = [
    (
        "invoke.rego",
        include_str!("../../waxosuit-policy-rego/tests/fixtures/invoke.rego"),
    ),
    (
        "start.rego",
        include_str!("../../waxosuit-policy-rego/tests/fixtures/start.rego"),
    ),
];
const DATA: &str = include_str!("../../waxosuit-policy-rego/tests/fixtures/data.json");
const MAGIC: &str = "eyJhbGciOiJFZDI1NTE5In0.eyJtYWdpYyI6dHJ1ZX0.c2ln";

/// How the test server answers.
#[derive(Clone, Copy)]
enum Mode {
    /// Like OPA: decide with the embedded engine.
    Opa,
    /// 500 to everything.
    Fail,
    /// Like OPA, after a delay.
    Slow(Duration),
    /// 200 with a body over the client's limit.
    Huge,
    /// 200 with a body that is not JSON.
    NotJson,
}

/// A fake OPA on a loopback port.
struct FakeOpa {
    addr: SocketAddr,
    posts: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    /// The `input` of each request, in order.
    inputs: Arc<Mutex<Vec<Value>>>,
    /// Requests that broke the Data API's contract.
    violations: Arc<Mutex<Vec<String>>>,
}

impl FakeOpa {
    async fn start(mode: Mode) -> FakeOpa {
        let engine = Arc::new(
            RegoEngine::from_sources(
                POLICIES
                    .iter()
                    .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                    .collect(),
                vec![serde_json::from_str(DATA).unwrap()],
            )
            .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = FakeOpa {
            addr: listener.local_addr().unwrap(),
            posts: Arc::default(),
            connections: Arc::default(),
            inputs: Arc::default(),
            violations: Arc::default(),
        };
        let (posts, connections, inputs, violations) = (
            Arc::clone(&server.posts),
            Arc::clone(&server.connections),
            Arc::clone(&server.inputs),
            Arc::clone(&server.violations),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                connections.fetch_add(1, Ordering::SeqCst);
                let (engine, posts, inputs, violations) = (
                    Arc::clone(&engine),
                    Arc::clone(&posts),
                    Arc::clone(&inputs),
                    Arc::clone(&violations),
                );
                let service = service_fn(move |request| {
                    let (engine, posts, inputs, violations) = (
                        Arc::clone(&engine),
                        Arc::clone(&posts),
                        Arc::clone(&inputs),
                        Arc::clone(&violations),
                    );
                    async move {
                        Ok::<_, Infallible>(
                            answer(mode, request, &engine, &posts, &inputs, &violations).await,
                        )
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    fn assert_contract_kept(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn answer(
    mode: Mode,
    request: Request<Incoming>,
    engine: &RegoEngine,
    posts: &AtomicUsize,
    inputs: &Mutex<Vec<Value>>,
    violations: &Mutex<Vec<String>>,
) -> Response<Full<Bytes>> {
    let violation = |what: String| {
        violations.lock().unwrap().push(what.clone());
        reply(StatusCode::BAD_REQUEST, what)
    };
    if request.method() != hyper::Method::POST {
        return violation(format!("method {}", request.method()));
    }
    posts.fetch_add(1, Ordering::SeqCst);
    let content_type = request.headers().get(hyper::header::CONTENT_TYPE).cloned();
    if content_type.as_ref().and_then(|v| v.to_str().ok()) != Some("application/json") {
        return violation(format!("content-type {content_type:?}"));
    }
    let path = request.uri().path().to_owned();
    let Some(point) = path
        .strip_prefix("/v1/data/")
        .and_then(DecisionPoint::from_data_path)
    else {
        return violation(format!("path {path}"));
    };
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&body) else {
        return violation(format!("body {}", String::from_utf8_lossy(&body)));
    };
    let Some(input) = body.remove("input") else {
        return violation("no input".to_owned());
    };
    inputs.lock().unwrap().push(input.clone());

    match mode {
        Mode::Fail => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"code":"internal_error","message":"storage unavailable"}"#,
            );
        }
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Huge => return reply(StatusCode::OK, vec![b' '; 2 * 1024 * 1024]),
        Mode::NotJson => return reply(StatusCode::OK, "<html>gateway</html>"),
        Mode::Opa => {}
    }
    // What OPA answers: the document's value under `result`, nothing when
    // it is undefined, 500 when the policy fails.
    match engine.evaluate(point, &input).await {
        Ok(Outcome::Allow) => reply(StatusCode::OK, r#"{"result":true}"#),
        Ok(Outcome::Deny) => reply(StatusCode::OK, r#"{"result":false}"#),
        Ok(Outcome::Undefined) => reply(StatusCode::OK, "{}"),
        Err(err) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({ "code": "internal_error", "message": err.to_string() }).to_string(),
        ),
    }
}

fn policy(url: &str, ttl: Duration) -> Policy {
    let engine = OpaEngine::new(url, Duration::from_secs(1)).unwrap();
    Policy::new(
        Arc::new(engine),
        PolicyConfig {
            cache_ttl: ttl,
            decision_log: None,
        },
    )
}

fn key(operation: &str) -> InvokeKey<'_> {
    InvokeKey {
        actor: "MACTOR",
        capability: "wascc:keyvalue",
        binding: "default",
        operation,
        direction: waxosuit_policy::input::Direction::Outbound,
    }
}

fn invoke(operation: &str) -> Value {
    json!({
        "actor": { "key": "MACTOR", "name": "kv", "issuer": "AISSUER", "caps": [], "tags": [] },
        "capability": "wascc:keyvalue",
        "binding": "default",
        "operation": operation,
        "direction": "outbound",
        "host": { "id": null, "labels": {} }
    })
}

fn start(tags: &[&str], token: &str) -> Value {
    json!({
        "token": token,
        "claims": { "iss": "AISSUER", "sub": "MACTOR", "wascap": { "name": "kv", "tags": tags } },
        "module": { "hash": "AB", "size": 1 },
        "source": "kv.wasm",
        "host": { "id": null, "labels": {} }
    })
}

#[track_caller]
fn assert_failed(
    result: Result<(), PolicyDenied>,
    point: DecisionPoint,
    kind: EngineErrorKind,
) -> String {
    match result {
        Err(denied @ PolicyDenied::Failed { .. }) => {
            let text = denied.to_string();
            assert!(text.contains(point.describe()), "{text}");
            assert!(text.contains("OPA at http://127.0.0.1:"), "{text}");
            let PolicyDenied::Failed { source, .. } = denied else {
                unreachable!()
            };
            assert_eq!(source.kind(), kind, "{source}");
            source.to_string()
        }
        other => panic!("expected a failure at {point}, got {other:?}"),
    }
}

#[tokio::test]
async fn allow_deny_undefined_and_errors_decide_as_embedded() {
    let opa = FakeOpa::start(Mode::Opa).await;
    let policy = policy(&opa.url(), Duration::ZERO);
    assert_eq!(policy.describe(), format!("OPA at {}", opa.url()));

    policy
        .check_invoke(key("Get"), || invoke("Get"))
        .await
        .unwrap();
    assert_eq!(opa.posts(), 1);

    let denied = policy
        .check_invoke(key("Set"), || invoke("Set"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            denied,
            PolicyDenied::Denied {
                point: DecisionPoint::Invoke,
                ..
            }
        ),
        "{denied:?}"
    );
    assert_eq!(opa.posts(), 2);

    policy
        .check(DecisionPoint::Start, start(&["approved"], "t"))
        .await
        .unwrap();
    let undefined = policy
        .check(DecisionPoint::Start, start(&[], "t"))
        .await
        .unwrap_err();
    assert!(matches!(
        undefined,
        PolicyDenied::Denied {
            point: DecisionPoint::Start,
            ..
        }
    ));
    assert!(undefined.to_string().contains("undefined"), "{undefined}");
    assert_eq!(opa.posts(), 4);

    // The embedded engine fails on the conflicting rule; OPA answers 500.
    let message = assert_failed(
        policy
            .check_invoke(key("Conflict"), || invoke("Conflict"))
            .await,
        DecisionPoint::Invoke,
        EngineErrorKind::BadResponse,
    );
    assert!(
        message.starts_with("OPA answered 500 Internal Server Error: internal_error: "),
        "{message}"
    );
    assert!(message.contains("conflict"), "{message}");
    assert_eq!(opa.posts(), 5, "exactly one POST per decision");

    // A remote engine governs every point: undefined denies everywhere.
    let denied = policy
        .check(DecisionPoint::Provider, json!({}))
        .await
        .unwrap_err();
    assert!(matches!(
        denied,
        PolicyDenied::Denied {
            point: DecisionPoint::Provider,
            ..
        }
    ));
    opa.assert_contract_kept();
}

#[tokio::test]
async fn cached_decisions_make_no_request() {
    let opa = FakeOpa::start(Mode::Opa).await;
    let cached = policy(&opa.url(), Duration::from_secs(60));
    cached
        .check_invoke(key("Get"), || invoke("Get"))
        .await
        .unwrap();
    cached
        .check_invoke(key("Get"), || invoke("Get"))
        .await
        .unwrap();
    assert!(
        cached
            .check_invoke(key("Set"), || invoke("Set"))
            .await
            .is_err()
    );
    assert!(
        cached
            .check_invoke(key("Set"), || invoke("Set"))
            .await
            .is_err()
    );
    assert_eq!(opa.posts(), 2, "one POST per key within the TTL");

    let uncached = policy(&opa.url(), Duration::ZERO);
    uncached
        .check_invoke(key("Get"), || invoke("Get"))
        .await
        .unwrap();
    uncached
        .check_invoke(key("Get"), || invoke("Get"))
        .await
        .unwrap();
    assert_eq!(opa.posts(), 4, "with TTL 0 every decision asks");
    opa.assert_contract_kept();
}

#[tokio::test]
async fn the_input_arrives_intact() {
    let opa = FakeOpa::start(Mode::Opa).await;
    let policy = policy(&opa.url(), Duration::ZERO);
    let odd = "eyJ0eXAiOiJqd3QifQ.\"quoted\\backslash\"\n\u{2028}é中.sig";
    let input = start(&["beta"], odd);
    let _ = policy.check(DecisionPoint::Start, input.clone()).await;
    // The policy allows exactly one token, so an allow proves OPA read it.
    policy
        .check(DecisionPoint::Start, start(&[], MAGIC))
        .await
        .unwrap();

    let inputs = opa.inputs.lock().unwrap().clone();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0], input, "the whole input");
    assert_eq!(
        inputs[0]["token"].as_str().unwrap().as_bytes(),
        odd.as_bytes()
    );
    assert_eq!(
        inputs[1]["token"].as_str().unwrap().as_bytes(),
        MAGIC.as_bytes()
    );
    opa.assert_contract_kept();
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let opa = FakeOpa::start(Mode::Opa).await;
    let policy = policy(&opa.url(), Duration::ZERO);
    for _ in 0..5 {
        policy
            .check_invoke(key("Get"), || invoke("Get"))
            .await
            .unwrap();
    }
    assert_eq!(opa.posts(), 5);
    assert_eq!(opa.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_refused_connection_denies() {
    // A port that was free a moment ago and has nothing listening now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policy = policy(&format!("http://127.0.0.1:{port}"), Duration::from_secs(60));
    for point in DecisionPoint::ALL {
        let message = assert_failed(
            policy.check(point, json!({})).await,
            point,
            EngineErrorKind::Unavailable,
        );
        assert!(message.contains("cannot connect"), "{message}");
    }
    // Failures are not cached: the next call tries again (and fails again).
    for _ in 0..2 {
        assert_failed(
            policy.check_invoke(key("Get"), || invoke("Get")).await,
            DecisionPoint::Invoke,
            EngineErrorKind::Unavailable,
        );
    }
}

#[tokio::test]
async fn an_error_status_denies() {
    let opa = FakeOpa::start(Mode::Fail).await;
    let policy = policy(&opa.url(), Duration::from_secs(60));
    let message = assert_failed(
        policy
            .check(DecisionPoint::Command, json!({ "signer": "N" }))
            .await,
        DecisionPoint::Command,
        EngineErrorKind::BadResponse,
    );
    assert_eq!(
        message,
        "OPA answered 500 Internal Server Error: internal_error: storage unavailable"
    );
    for _ in 0..2 {
        assert!(
            policy
                .check_invoke(key("Get"), || invoke("Get"))
                .await
                .is_err()
        );
    }
    assert_eq!(opa.posts(), 3, "errors are not cached");
    opa.assert_contract_kept();
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_denies() {
    let opa = FakeOpa::start(Mode::Slow(Duration::from_millis(800))).await;
    let engine = OpaEngine::new(&opa.url(), Duration::from_millis(100)).unwrap();
    let policy = Policy::new(Arc::new(engine), PolicyConfig::default());
    let started = Instant::now();
    let message = assert_failed(
        policy
            .check(DecisionPoint::Start, start(&["approved"], "t"))
            .await,
        DecisionPoint::Start,
        EngineErrorKind::Timeout,
    );
    assert_eq!(message, "no answer within 100 ms");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(600),
        "gave up after {elapsed:?}"
    );
    assert_eq!(opa.posts(), 1);
}

#[tokio::test]
async fn answers_that_are_not_decisions_deny() {
    let huge = FakeOpa::start(Mode::Huge).await;
    let message = assert_failed(
        policy(&huge.url(), Duration::ZERO)
            .check(DecisionPoint::Start, json!({}))
            .await,
        DecisionPoint::Start,
        EngineErrorKind::BadResponse,
    );
    assert!(message.contains("larger than 1048576 bytes"), "{message}");

    let html = FakeOpa::start(Mode::NotJson).await;
    let message = assert_failed(
        policy(&html.url(), Duration::ZERO)
            .check(DecisionPoint::Start, json!({}))
            .await,
        DecisionPoint::Start,
        EngineErrorKind::BadResponse,
    );
    assert!(
        message.contains("not JSON") && message.contains("<html>gateway</html>"),
        "{message}"
    );
}

#[test]
fn bad_urls_are_refused_at_construction() {
    for url in ["opa:8181", "unix:///run/opa.sock", ""] {
        let err = OpaEngine::new(url, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, OpaError::InvalidUrl { .. }), "{url}: {err:?}");
    }
}
