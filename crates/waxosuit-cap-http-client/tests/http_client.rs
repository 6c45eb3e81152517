//! `wascc:http_client` against a real hyper server on 127.0.0.1.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use waxosuit_cap_http_client::HttpClientProvider;
use waxosuit_codec::http::{CLIENT_CAPABILITY_ID, OP_PERFORM_REQUEST, Request, Response};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, encode};

const ACTOR: &str = "MACTOR";

/// A body of `remaining` bytes sent in 1 KiB frames with no length, so the
/// response is chunked and the client cannot know its size up front.
struct Unsized {
    remaining: usize,
}

impl Body for Unsized {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(1024);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; n])))))
    }
}

struct TestServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

impl TestServer {
    async fn start() -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (req_count, conn_count) = (requests.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conn_count.fetch_add(1, Ordering::SeqCst);
                let req_count = req_count.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        req_count.fetch_add(1, Ordering::SeqCst);
                        handle(req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TestServer {
            addr,
            requests,
            connections,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn full(body: impl Into<Bytes>) -> BoxBody<Bytes, Infallible> {
    http_body_util::Full::new(body.into()).boxed()
}

async fn handle(
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let response = hyper::Response::builder();
    let response = match segments.as_slice() {
        ["status", code] => response
            .status(code.parse::<u16>().unwrap())
            .body(full(format!("status {code}"))),
        ["headers"] => {
            let mut lines: Vec<String> = req
                .headers()
                .iter()
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap()))
                .collect();
            lines.sort();
            response
                .header("x-multi", "one")
                .header("x-multi", "two")
                .header("x-single", "only")
                .body(full(lines.join("\n")))
        }
        ["echo"] => {
            let method = req.method().to_string();
            let target = req.uri().path_and_query().unwrap().to_string();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut out = format!("{method} {target}\n").into_bytes();
            out.extend_from_slice(&body);
            response.body(full(out))
        }
        ["redirect", n] => {
            let n: u32 = n.parse().unwrap();
            if n == 0 {
                response.body(full("landed"))
            } else {
                response
                    .status(302)
                    .header("location", format!("/redirect/{}", n - 1))
                    .body(full(""))
            }
        }
        ["redirect-to"] => response
            .status(307)
            .header("location", query)
            .body(full("")),
        ["see-other"] => response
            .status(303)
            .header("location", "echo")
            .body(full("")),
        ["sleep", ms] => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap())).await;
            response.body(full("slept"))
        }
        ["sized", n] => response.body(full(vec![b'x'; n.parse().unwrap()])),
        // `kib` headers of 1 KiB each, then a body of `n` bytes.
        ["padded", kib, n] => {
            let mut response = response;
            for i in 0..kib.parse::<usize>().unwrap() {
                response = response.header(format!("x-pad-{i}"), "p".repeat(1000));
            }
            response.body(full(vec![b'x'; n.parse().unwrap()]))
        }
        ["unsized", n] => response.body(
            Unsized {
                remaining: n.parse().unwrap(),
            }
            .boxed(),
        ),
        _ => response.status(404).body(full("no such route")),
    };
    Ok(response.unwrap())
}

async fn provider(values: &[(&str, &str)]) -> HttpClientProvider {
    let provider = HttpClientProvider::new();
    bind(&provider, "default", values).await.unwrap();
    provider
}

async fn bind(
    provider: &HttpClientProvider,
    binding: &str,
    values: &[(&str, &str)],
) -> Result<(), ProviderError> {
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: binding.into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
}

async fn call_on(
    provider: &HttpClientProvider,
    binding: &str,
    request: Request,
) -> Result<Response, ProviderError> {
    let call = ProviderCall {
        actor: ACTOR.into(),
        binding: binding.into(),
        operation: OP_PERFORM_REQUEST.into(),
        payload: encode(CLIENT_CAPABILITY_ID, &request).unwrap(),
    };
    // Bounded wait: a provider bug must fail the test, not hang it.
    let reply = tokio::time::timeout(Duration::from_secs(20), provider.handle_call(call))
        .await
        .expect("the provider answered within 20 s")?;
    Ok(waxosuit_codec::deserialize(&reply).unwrap())
}

async fn call(provider: &HttpClientProvider, request: Request) -> Result<Response, ProviderError> {
    call_on(provider, "default", request).await
}

fn get(url: &str) -> Request {
    Request {
        method: "GET".into(),
        path: url.into(),
        ..Request::default()
    }
}

fn backend_message(err: &ProviderError) -> &str {
    match err {
        ProviderError::Backend { message, .. } => message,
        other => panic!("expected a Backend error, got {other:?}"),
    }
}

const LOCAL: &[(&str, &str)] = &[("ALLOWED_HOSTS", "127.0.0.1")];

#[tokio::test]
async fn statuses_reasons_and_bodies() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    for (code, reason) in [
        (200, "OK"),
        (404, "Not Found"),
        (500, "Internal Server Error"),
    ] {
        let response = call(&client, get(&server.url(&format!("/status/{code}"))))
            .await
            .unwrap();
        assert_eq!(response.status_code, code);
        assert_eq!(response.status, reason);
        assert_eq!(response.body, format!("status {code}").into_bytes());
    }
}

#[tokio::test]
async fn request_and_multi_value_response_headers() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    let mut request = get(&server.url("/headers"));
    request.header = HashMap::from([
        ("X-Test".to_string(), "hello".to_string()),
        ("Host".to_string(), "spoofed.test".to_string()),
    ]);
    let response = call(&client, request).await.unwrap();
    let echoed = String::from_utf8(response.body).unwrap();
    assert!(echoed.contains("x-test: hello"), "{echoed}");
    // The Host header names the URL's host, not what the actor sent.
    assert!(
        echoed.contains(&format!("host: {}", server.addr)),
        "{echoed}"
    );
    assert_eq!(response.header["x-multi"], "one, two");
    assert_eq!(response.header["x-single"], "only");
}

#[tokio::test]
async fn post_body_and_query_string_are_sent() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    let request = Request {
        method: "POST".into(),
        path: server.url("/echo"),
        query_string: "a=1&b=two".into(),
        header: HashMap::new(),
        body: b"payload bytes".to_vec(),
    };
    let response = call(&client, request).await.unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(
        String::from_utf8(response.body).unwrap(),
        "POST /echo?a=1&b=two\npayload bytes"
    );
}

#[tokio::test]
async fn redirects_are_followed() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    let response = call(&client, get(&server.url("/redirect/3")))
        .await
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, b"landed");
    assert_eq!(server.requests(), 4);

    // 303 after a POST continues as a body-less GET.
    let request = Request {
        method: "POST".into(),
        path: server.url("/see-other"),
        body: b"dropped".to_vec(),
        ..Request::default()
    };
    let response = call(&client, request).await.unwrap();
    assert_eq!(String::from_utf8(response.body).unwrap(), "GET /echo\n");

    // 307 keeps the method and body.
    let request = Request {
        method: "PUT".into(),
        path: server.url("/redirect-to"),
        query_string: "/echo".into(),
        body: b"kept".to_vec(),
        ..Request::default()
    };
    let response = call(&client, request).await.unwrap();
    assert_eq!(String::from_utf8(response.body).unwrap(), "PUT /echo\nkept");
}

#[tokio::test]
async fn redirect_limit_is_enforced() {
    let server = TestServer::start().await;
    let client = provider(&[("ALLOWED_HOSTS", "127.0.0.1"), ("MAX_REDIRECTS", "2")]).await;
    let ok = call(&client, get(&server.url("/redirect/2")))
        .await
        .unwrap();
    assert_eq!(ok.body, b"landed");
    let err = call(&client, get(&server.url("/redirect/3")))
        .await
        .unwrap_err();
    assert!(
        backend_message(&err).contains("more than 2 redirects"),
        "{err}"
    );
    assert!(err.to_string().contains("MAX_REDIRECTS"), "{err}");
}

#[tokio::test]
async fn redirects_to_hosts_not_allowed_are_refused() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    let before = server.requests();
    let mut request = get(&server.url("/redirect-to"));
    request.query_string = "http://evil.test/steal".into();
    let err = call(&client, request).await.unwrap_err();
    let message = backend_message(&err);
    assert!(
        message.contains("`evil.test` is not in ALLOWED_HOSTS"),
        "{message}"
    );
    assert!(
        message.contains(ACTOR) && message.contains("`default`"),
        "{message}"
    );
    assert_eq!(server.requests(), before + 1, "only the first hop was sent");

    // The same server under another name is another host.
    let mut request = get(&server.url("/redirect-to"));
    request.query_string = format!("http://localhost:{}/status/200", server.addr.port());
    let err = call(&client, request).await.unwrap_err();
    assert!(
        backend_message(&err).contains("`localhost` is not in ALLOWED_HOSTS"),
        "{err}"
    );
}

#[tokio::test]
async fn slow_servers_time_out() {
    let server = TestServer::start().await;
    let client = provider(&[("ALLOWED_HOSTS", "127.0.0.1"), ("TIMEOUT_MS", "200")]).await;
    let err = call(&client, get(&server.url("/sleep/10000")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Unavailable { reason, .. } if reason.contains("within 200 ms")),
        "{err}"
    );
    assert!(err.to_string().contains("TIMEOUT_MS"), "{err}");
    // A fast answer under the same binding still succeeds.
    let ok = call(&client, get(&server.url("/sleep/1"))).await.unwrap();
    assert_eq!(ok.body, b"slept");
}

#[tokio::test]
async fn responses_over_the_size_limit_are_refused() {
    let server = TestServer::start().await;
    let client = provider(&[
        ("ALLOWED_HOSTS", "127.0.0.1"),
        ("MAX_RESPONSE_BYTES", "4096"),
    ])
    .await;
    for route in ["/sized/4097", "/unsized/5000", "/unsized/100000"] {
        let err = call(&client, get(&server.url(route))).await.unwrap_err();
        assert!(
            backend_message(&err).contains("exceeds 4096 bytes (MAX_RESPONSE_BYTES"),
            "{route}: {err}"
        );
    }
    for route in ["/sized/4096", "/unsized/4096"] {
        let ok = call(&client, get(&server.url(route))).await.unwrap();
        assert_eq!(ok.body.len(), 4096, "{route}");
    }
}

#[tokio::test]
async fn hosts_not_listed_are_refused_before_connecting() {
    let server = TestServer::start().await;
    let client = provider(&[("ALLOWED_HOSTS", "example.com")]).await;
    let err = call(&client, get(&server.url("/status/200")))
        .await
        .unwrap_err();
    let message = backend_message(&err);
    assert!(
        message.contains(
            "`127.0.0.1` is not in ALLOWED_HOSTS for this binding; add it to the binding's values"
        ),
        "{message}"
    );
    assert_eq!(server.requests(), 0);
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);

    let unconfigured = provider(&[]).await;
    let err = call(&unconfigured, get(&server.url("/status/200")))
        .await
        .unwrap_err();
    assert!(backend_message(&err).contains("denies all egress"), "{err}");
}

#[tokio::test]
async fn loopback_is_refused_unless_named_explicitly() {
    let server = TestServer::start().await;
    let port = server.addr.port();
    let star = provider(&[("ALLOWED_HOSTS", "*")]).await;
    // An IP literal is refused by the host check …
    let err = call(&star, get(&server.url("/status/200")))
        .await
        .unwrap_err();
    assert!(
        backend_message(&err).contains("a loopback address"),
        "{err}"
    );
    // … and a name by the check of what it resolves to.
    let err = call(&star, get(&format!("http://localhost:{port}/status/200")))
        .await
        .unwrap_err();
    assert!(
        backend_message(&err).contains("`localhost` resolves to"),
        "{err}"
    );
    assert!(backend_message(&err).contains("loopback"), "{err}");
    // Numeric forms the resolver understands are checked the same way.
    let err = call(&star, get(&format!("http://127.1:{port}/status/200")))
        .await
        .unwrap_err();
    assert!(backend_message(&err).contains("loopback"), "{err}");
    assert_eq!(server.requests(), 0);

    // Naming the host exactly is the operator's explicit consent.
    let named = provider(&[("ALLOWED_HOSTS", "localhost")]).await;
    let ok = call(&named, get(&format!("http://localhost:{port}/status/200")))
        .await
        .unwrap();
    assert_eq!(ok.status_code, 200);
    let cidr = provider(&[("ALLOWED_HOSTS", "127.0.0.0/8")]).await;
    let ok = call(&cidr, get(&server.url("/status/204"))).await.unwrap();
    assert_eq!(ok.status_code, 204);
}

#[tokio::test]
async fn metadata_endpoints_are_refused() {
    let client = provider(&[("ALLOWED_HOSTS", "*")]).await;
    for (url, why) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "cloud metadata address",
        ),
        ("http://[fd00:ec2::254]/latest/", "cloud metadata address"),
        (
            "http://metadata.google.internal/computeMetadata/v1/",
            "is a cloud metadata endpoint",
        ),
    ] {
        let err = call(&client, get(url)).await.unwrap_err();
        assert!(backend_message(&err).contains(why), "{url}: {err}");
    }
}

#[tokio::test]
async fn connections_are_pooled_per_binding() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    bind(&client, "other", LOCAL).await.unwrap();
    for _ in 0..3 {
        call(&client, get(&server.url("/status/200")))
            .await
            .unwrap();
        // hyper returns a drained connection to the pool from a spawned
        // task; let it run so the next request finds the connection idle.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    call_on(&client, "other", get(&server.url("/status/200")))
        .await
        .unwrap();
    assert_eq!(server.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn malformed_requests_and_unbound_actors() {
    let client = provider(LOCAL).await;
    for (method, url) in [
        ("GET", "not a url"),
        ("GET", "/relative/path"),
        ("GET", "ftp://127.0.0.1/file"),
        ("BAD METHOD", "http://127.0.0.1/"),
        ("CONNECT", "http://127.0.0.1/"),
    ] {
        let mut request = get(url);
        request.method = method.into();
        let err = call(&client, request).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadPayload { operation, .. } if operation == OP_PERFORM_REQUEST),
            "{method} {url}: {err}"
        );
    }

    let err = call_on(&client, "unbound", get("http://127.0.0.1/"))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err}");

    client.remove_actor(ACTOR, "default").await.unwrap();
    let err = call(&client, get("http://127.0.0.1/")).await.unwrap_err();
    assert!(matches!(err, ProviderError::NotBound { .. }), "{err}");

    let garbage = ProviderCall {
        actor: ACTOR.into(),
        binding: "default".into(),
        operation: "Fly".into(),
        payload: vec![],
    };
    let err = client.handle_call(garbage).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::UnknownOperation { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_configuration_is_rejected_at_bind() {
    let client = HttpClientProvider::new();
    for (key, value) in [
        ("ALLOWED_HOSTS", "https://example.com/"),
        ("TIMEOUT_MS", "soon"),
        ("TIMEOUT_MS", "0"),
        ("MAX_REDIRECTS", "-1"),
        ("MAX_RESPONSE_BYTES", "lots"),
    ] {
        let err = bind(&client, "default", &[(key, value)]).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Config { key: k, .. } if k == key),
            "{key}={value}: {err}"
        );
    }
}

#[tokio::test]
async fn responses_are_bounded_by_what_the_actor_accepts() {
    let server = TestServer::start().await;
    // The actor accepts 1 MiB; nothing says MAX_RESPONSE_BYTES (16 MiB by
    // default), or it says more.
    for values in [
        vec![
            ("ALLOWED_HOSTS", "127.0.0.1"),
            (waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "1048576"),
        ],
        vec![
            ("ALLOWED_HOSTS", "127.0.0.1"),
            (waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "1048576"),
            ("MAX_RESPONSE_BYTES", "8000000"),
        ],
    ] {
        let client = provider(&values).await;
        let err = call(&client, get(&server.url("/unsized/2000000")))
            .await
            .unwrap_err();
        assert!(
            backend_message(&err).contains("exceeds 983040 bytes (MAX_RESPONSE_BYTES"),
            "{err}"
        );
        // A body that fits with its headers is read whole.
        let ok = call(&client, get(&server.url("/unsized/983040")))
            .await
            .unwrap();
        assert_eq!(ok.body.len(), 983_040);
    }
}

#[tokio::test]
async fn errors_never_repeat_a_query_string() {
    let server = TestServer::start().await;
    let client = provider(&[
        ("ALLOWED_HOSTS", "127.0.0.1,example.com"),
        ("MAX_RESPONSE_BYTES", "4096"),
        ("TIMEOUT_MS", "300"),
    ])
    .await;
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("http://127.0.0.1:{closed}/unreachable?api_key=S3CRET"),
        server.url("/unsized/100000?api_key=S3CRET"),
        server.url("/sleep/2000?api_key=S3CRET#S3CRET"),
        "http://10.0.0.1/refused?api_key=S3CRET".to_string(),
        "ftp://127.0.0.1/unusable?api_key=S3CRET".to_string(),
    ] {
        let err = call(&client, get(&url)).await.unwrap_err().to_string();
        assert!(!err.contains("S3CRET"), "{url}: {err}");
        let path = url.split('?').next().unwrap();
        assert!(err.contains(path), "{url}: the error names {path}: {err}");
    }
}

#[tokio::test]
async fn a_password_in_a_url_is_refused_without_being_repeated() {
    let client = provider(&[("ALLOWED_HOSTS", "127.0.0.1")]).await;
    let err = call(&client, get("http://user:S3CRET@127.0.0.1/x?k=S3CRET"))
        .await
        .unwrap_err()
        .to_string();
    assert!(!err.contains("S3CRET"), "{err}");
    assert!(
        err.contains("user information in URLs is not supported"),
        "{err}"
    );
}

#[tokio::test]
async fn large_headers_count_against_what_the_actor_accepts() {
    let server = TestServer::start().await;
    let client = provider(&[
        ("ALLOWED_HOSTS", "127.0.0.1"),
        (waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD, "1048576"),
    ])
    .await;
    // 90 KiB of headers and a body that alone fits (983,040 bytes): the
    // reply would not, and the actor would get a failed call instead of
    // this error.
    let err = call(&client, get(&server.url("/padded/90/983040")))
        .await
        .unwrap_err();
    assert!(
        backend_message(&err).contains(
            "the response's headers and body come to more than the 1048576 bytes the actor \
             accepts"
        ),
        "{err}"
    );
    let ok = call(&client, get(&server.url("/padded/10/900000")))
        .await
        .unwrap();
    assert_eq!(ok.body.len(), 900_000);
    assert!(waxosuit_codec::serialize(&ok).unwrap().len() <= 1_048_576);
}

/// Every connection a binding holds, idle in its pool or not, takes one of
/// its `MAX_CONNECTIONS` places: an actor naming a new origin on every call
/// (a new port, a new subdomain) cannot leave an open descriptor behind
/// each time. Before the cap, each of the five servers below kept one.
#[tokio::test]
async fn a_binding_holds_at_most_max_connections_open() {
    let mut servers = Vec::new();
    for _ in 0..5 {
        servers.push(TestServer::start().await);
    }
    let client = provider(&[
        ("ALLOWED_HOSTS", "127.0.0.1"),
        ("MAX_CONNECTIONS", "4"),
        ("TIMEOUT_MS", "1000"),
    ])
    .await;
    for server in &servers[..4] {
        call(&client, get(&server.url("/status/200")))
            .await
            .unwrap();
    }
    let err = call(&client, get(&servers[4].url("/status/200")))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert!(
        text.contains("all 4 connections") && text.contains("MAX_CONNECTIONS"),
        "{text}"
    );
    let opened: usize = servers
        .iter()
        .map(|s| s.connections.load(Ordering::SeqCst))
        .sum();
    assert_eq!(opened, 4, "no fifth connection was made");
    assert_eq!(servers[4].requests(), 0);
    // The pooled connections still serve their origins.
    call(&client, get(&servers[0].url("/status/200")))
        .await
        .unwrap();
    assert_eq!(servers[0].connections.load(Ordering::SeqCst), 1);

    for bad in ["0", "4097", "many"] {
        let err = bind(
            &client,
            "bad",
            &[("ALLOWED_HOSTS", "127.0.0.1"), ("MAX_CONNECTIONS", bad)],
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("MAX_CONNECTIONS"), "{bad}: {err}");
    }
}

/// An idle pooled connection gives its place back after `IDLE_TIMEOUT_MS`,
/// whether or not its origin is used again: without the pool's timer it
/// stayed (the server keeping it open), and with `MAX_CONNECTIONS` taken
/// by idle connections to origins never used again, no new origin could be
/// reached at all.
#[tokio::test]
async fn idle_connections_close_and_free_their_place() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let client = provider(&[
        ("ALLOWED_HOSTS", "127.0.0.1"),
        ("MAX_CONNECTIONS", "1"),
        ("IDLE_TIMEOUT_MS", "200"),
        ("TIMEOUT_MS", "1000"),
    ])
    .await;
    call(&client, get(&first.url("/status/200"))).await.unwrap();
    // Past the idle timeout (the reaper looks every idle timeout).
    tokio::time::sleep(Duration::from_millis(700)).await;
    call(&client, get(&second.url("/status/200")))
        .await
        .expect("the idle connection's place was freed");
    let err = bind(
        &client,
        "bad",
        &[("ALLOWED_HOSTS", "127.0.0.1"), ("IDLE_TIMEOUT_MS", "0")],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("IDLE_TIMEOUT_MS"), "{err}");
}

/// A server that answers each connection's first request with `head`
/// verbatim, then closes it.
async fn raw_server(head: &'static str) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// A `HEAD` answer gives the length the `GET` would have, and a `304` may
/// too; neither has a body, so neither is refused as too large (sizing a
/// download with `HEAD` was refused whenever the object was large).
#[tokio::test]
async fn bodiless_answers_are_not_judged_by_their_length() {
    let ok = raw_server("HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n").await;
    let not_modified =
        raw_server("HTTP/1.1 304 Not Modified\r\ncontent-length: 100000000\r\n\r\n").await;
    let client = provider(&[
        ("ALLOWED_HOSTS", "127.0.0.1"),
        ("MAX_RESPONSE_BYTES", "1000"),
    ])
    .await;
    let head = Request {
        method: "HEAD".into(),
        path: format!("http://{ok}/big"),
        ..Request::default()
    };
    let response = call(&client, head).await.unwrap();
    assert_eq!(response.status_code, 200);
    assert!(response.body.is_empty());
    assert_eq!(response.header["content-length"], "100000000");
    let response = call(&client, get(&format!("http://{not_modified}/big")))
        .await
        .unwrap();
    assert_eq!(response.status_code, 304);
    assert!(response.body.is_empty());
    // A GET answered 200 with that length is still refused before reading.
    let err = call(&client, get(&format!("http://{ok}/big")))
        .await
        .unwrap_err();
    assert!(
        backend_message(&err).contains("exceeds 1000 bytes"),
        "{err}"
    );
}

/// A `Location` carrying user information is refused, and the error (which
/// reaches the actor, the span and the log) does not repeat its password.
#[tokio::test]
async fn a_redirect_to_a_url_with_a_password_does_not_repeat_it() {
    let server = TestServer::start().await;
    let client = provider(LOCAL).await;
    let request = Request {
        method: "GET".into(),
        path: server.url("/redirect-to"),
        query_string: "http://admin:S3CRET@127.0.0.1/x".into(),
        ..Request::default()
    };
    let err = call(&client, request).await.unwrap_err().to_string();
    assert!(err.contains("unusable Location"), "{err}");
    assert!(!err.contains("S3CRET"), "{err}");
}
