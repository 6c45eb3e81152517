//! End-to-end tests of the HTTP server provider: a real HTTP client talks to
//! real listeners, and a test `ActorDispatcher` stands in for the host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use waxosuit_cap_http_server::HttpServerProvider;
use waxosuit_codec::http::{OP_HANDLE_REQUEST, Request, Response};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderError,
};

/// Every test gives up instead of hanging CI if something never happens.
const PATIENCE: Duration = Duration::from_secs(10);

/// One recorded dispatch: actor, operation, payload.
type Call = (String, String, Vec<u8>);
/// The calls a [`TestDispatcher`] received, in order.
type Calls = mpsc::UnboundedReceiver<Call>;

/// What the test dispatcher does with a call.
#[derive(Clone)]
enum Behaviour {
    /// Replies with this `Response`.
    Reply(Response),
    /// Replies with these raw bytes.
    Raw(Vec<u8>),
    /// Fails as a trapping actor would.
    Fail,
    /// Replies `200` with the actor key as body.
    EchoActor,
    /// Waits until released, then replies `200 slow`.
    Gate(Arc<Notify>),
    /// Never answers.
    Hang,
}

/// The host side as the provider sees it: records each call, answers per
/// the behaviour currently set.
struct TestDispatcher {
    behaviour: Mutex<Behaviour>,
    calls: mpsc::UnboundedSender<Call>,
}

impl TestDispatcher {
    fn new(behaviour: Behaviour) -> (Arc<Self>, Calls) {
        let (calls, rx) = mpsc::unbounded_channel();
        let dispatcher = Arc::new(TestDispatcher {
            behaviour: Mutex::new(behaviour),
            calls,
        });
        (dispatcher, rx)
    }

    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
}

#[async_trait]
impl ActorDispatcher for TestDispatcher {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let behaviour = self.behaviour.lock().unwrap().clone();
        let _ = self
            .calls
            .send((actor.to_string(), operation.to_string(), payload));
        match behaviour {
            Behaviour::Reply(response) => Ok(waxosuit_codec::serialize(&response).unwrap()),
            Behaviour::Raw(bytes) => Ok(bytes),
            Behaviour::Fail => Err(DispatchError::Actor {
                actor: actor.to_string(),
                operation: operation.to_string(),
                message: "wasm trap: unreachable".to_string(),
            }),
            Behaviour::EchoActor => Ok(waxosuit_codec::serialize(&Response {
                body: actor.as_bytes().to_vec(),
                ..Response::ok()
            })
            .unwrap()),
            Behaviour::Gate(gate) => {
                gate.notified().await;
                Ok(waxosuit_codec::serialize(&Response {
                    body: b"slow".to_vec(),
                    ..Response::ok()
                })
                .unwrap())
            }
            Behaviour::Hang => std::future::pending().await,
        }
    }
}

fn bind_request(actor: &str, values: &[(&str, &str)]) -> BindRequest {
    let mut map: HashMap<String, String> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("ADDRESS".into()).or_insert("127.0.0.1".into());
    map.entry("PORT".into()).or_insert("0".into());
    BindRequest {
        actor: actor.to_string(),
        binding: "default".to_string(),
        values: map,
    }
}

/// A started provider with `actor` bound on a free loopback port.
async fn serve(
    actor: &str,
    behaviour: Behaviour,
    values: &[(&str, &str)],
) -> (HttpServerProvider, Arc<TestDispatcher>, Calls, SocketAddr) {
    let (dispatcher, calls) = TestDispatcher::new(behaviour);
    let provider = HttpServerProvider::new();
    provider.start(dispatcher.clone()).await.unwrap();
    provider
        .bind_actor(bind_request(actor, values))
        .await
        .unwrap();
    let addr = provider.bound_address(actor).unwrap();
    assert_ne!(addr.port(), 0, "PORT=0 must report the port actually bound");
    (provider, dispatcher, calls, addr)
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(
    method: Method,
    addr: SocketAddr,
    path_and_query: &str,
    body: impl Into<Bytes>,
) -> hyper::Request<Full<Bytes>> {
    hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path_and_query}"))
        .body(Full::new(body.into()))
        .unwrap()
}

/// Sends `req` and returns status, headers and the whole body.
async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> (StatusCode, hyper::HeaderMap, Bytes) {
    let response = tokio::time::timeout(PATIENCE, client.request(req))
        .await
        .expect("no response in time")
        .expect("request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
}

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, hyper::HeaderMap, Bytes) {
    send(&client(), request(Method::GET, addr, path, Bytes::new())).await
}

async fn next_call(calls: &mut Calls) -> Call {
    tokio::time::timeout(PATIENCE, calls.recv())
        .await
        .expect("the dispatcher was not called in time")
        .expect("dispatcher dropped")
}

#[tokio::test]
async fn request_is_mapped_to_handle_request() {
    let (provider, _d, mut calls, addr) =
        serve("MREQ", Behaviour::Reply(Response::ok()), &[]).await;
    let req = hyper::Request::builder()
        .method(Method::PUT)
        .uri(format!("http://{addr}/things/42?a=1&b=two%20words"))
        .header("X-Single", "one")
        .header("Accept", "text/plain")
        .header("accept", "application/json")
        .body(Full::new(Bytes::from_static(b"\x00binary\xffbody")))
        .unwrap();
    let (status, _, _) = send(&client(), req).await;
    assert_eq!(status, StatusCode::OK);

    let (actor, operation, payload) = next_call(&mut calls).await;
    assert_eq!(actor, "MREQ");
    assert_eq!(operation, OP_HANDLE_REQUEST);
    let received: Request = waxosuit_codec::deserialize(&payload).unwrap();
    assert_eq!(received.method, "PUT");
    assert_eq!(received.path, "/things/42");
    assert_eq!(received.query_string, "a=1&b=two%20words");
    assert_eq!(received.header["x-single"], "one");
    assert_eq!(received.header["accept"], "text/plain, application/json");
    assert_eq!(received.header["content-length"], "12");
    assert!(received.header.contains_key("host"));
    assert!(
        received
            .header
            .keys()
            .all(|k| k.chars().all(|c| !c.is_ascii_uppercase())),
        "{:?}",
        received.header
    );
    assert_eq!(received.body, b"\x00binary\xffbody");
    provider.shutdown().await;
}

#[tokio::test]
async fn request_without_query_or_body_maps_to_empty_strings() {
    let (provider, _d, mut calls, addr) =
        serve("MEMPTY", Behaviour::Reply(Response::ok()), &[]).await;
    let (status, _, _) = get(addr, "/").await;
    assert_eq!(status, StatusCode::OK);
    let received: Request = waxosuit_codec::deserialize(&next_call(&mut calls).await.2).unwrap();
    assert_eq!(received.method, "GET");
    assert_eq!(received.path, "/");
    assert_eq!(received.query_string, "");
    assert!(received.body.is_empty());
    provider.shutdown().await;
}

#[tokio::test]
async fn response_is_mapped_to_http() {
    let reply = Response {
        status_code: 201,
        status: "Created".into(),
        header: HashMap::from([
            ("Content-Type".to_string(), "application/json".to_string()),
            ("x-trace".to_string(), "abc".to_string()),
        ]),
        body: br#"{"id":42}"#.to_vec(),
    };
    let (provider, _d, _calls, addr) = serve("MRESP", Behaviour::Reply(reply), &[]).await;
    let (status, headers, body) = get(addr, "/x").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-trace"], "abc");
    assert_eq!(headers["content-length"], "9");
    assert_eq!(&body[..], br#"{"id":42}"#);
    provider.shutdown().await;
}

#[tokio::test]
async fn actor_error_is_500_and_the_next_request_is_served() {
    let (provider, dispatcher, _calls, addr) = serve("MFAIL", Behaviour::Fail, &[]).await;
    let client = client();
    let (status, _, body) = send(&client, request(Method::GET, addr, "/", Bytes::new())).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(&body[..], b"Failed to handle request");
    assert!(
        !String::from_utf8_lossy(&body).contains("trap"),
        "actor internals must not reach the client"
    );

    dispatcher.set(Behaviour::Reply(Response {
        body: b"recovered".to_vec(),
        ..Response::ok()
    }));
    let (status, _, body) = send(&client, request(Method::GET, addr, "/", Bytes::new())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"recovered");
    provider.shutdown().await;
}

#[tokio::test]
async fn malformed_reply_is_500() {
    let (provider, dispatcher, _calls, addr) =
        serve("MBAD", Behaviour::Raw(b"\xc1not msgpack".to_vec()), &[]).await;
    let (status, _, body) = get(addr, "/").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(&body[..], b"Malformed response from actor");

    for status_code in [0, 99, 1000, 70_000] {
        dispatcher.set(Behaviour::Reply(Response {
            status_code,
            ..Response::default()
        }));
        let (status, _, body) = get(addr, "/").await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "status_code {status_code}"
        );
        assert_eq!(&body[..], b"Malformed response from actor");
    }
    provider.shutdown().await;
}

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let (provider, _d, mut calls, addr) = serve(
        "MBIG",
        Behaviour::Reply(Response::ok()),
        &[("MAX_BODY_BYTES", "1024")],
    )
    .await;
    let client = client();

    let (status, _, _) = send(&client, request(Method::POST, addr, "/", vec![7u8; 1024])).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a body of exactly the limit is accepted"
    );
    assert_eq!(next_call(&mut calls).await.0, "MBIG");

    // Declared length over the limit.
    let (status, _, _) = send(&client, request(Method::POST, addr, "/", vec![7u8; 2048])).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Chunked, so only counting the bytes can catch it.
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let chunk = vec![b'x'; 800];
    let mut raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..2 {
        raw.extend_from_slice(b"320\r\n");
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&raw).await.unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 413 "), "{head}");
    assert!(
        calls.try_recv().is_err(),
        "the actor must not see an oversized request"
    );
    provider.shutdown().await;
}

/// Reads from a raw connection until the end of a response head.
async fn read_head(stream: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("no response in time")
            .unwrap();
        assert_ne!(
            n,
            0,
            "connection closed after {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slow_actor_is_504() {
    let (provider, _d, _calls, addr) =
        serve("MHANG", Behaviour::Hang, &[("REQUEST_TIMEOUT_MS", "200")]).await;
    let (status, _, _) = get(addr, "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    provider.shutdown().await;
}

#[tokio::test]
async fn too_many_headers_are_refused() {
    let (provider, _d, mut calls, addr) = serve(
        "MHDR",
        Behaviour::Reply(Response::ok()),
        &[("MAX_HEADERS", "8")],
    )
    .await;
    let mut builder = hyper::Request::builder().uri(format!("http://{addr}/"));
    for i in 0..20 {
        builder = builder.header(format!("x-h{i}"), "v");
    }
    let req = builder.body(Full::new(Bytes::new())).unwrap();
    match tokio::time::timeout(PATIENCE, client().request(req))
        .await
        .unwrap()
    {
        Ok(response) => assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        ),
        // hyper may close the connection instead of answering.
        Err(e) => assert!(!e.is_connect(), "the server must accept, then refuse: {e}"),
    }
    assert!(
        calls.try_recv().is_err(),
        "the actor must not see the request"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn a_client_trickling_its_head_is_disconnected() {
    let (provider, _d, mut calls, addr) = serve(
        "MLORIS",
        Behaviour::Reply(Response::ok()),
        &[("HEADER_READ_TIMEOUT_MS", "200")],
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the server kept a half-sent request open")
        .unwrap();
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.is_empty() || rest.starts_with("HTTP/1.1 408"),
        "{rest}"
    );
    assert!(
        calls.try_recv().is_err(),
        "the actor must not see the request"
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_busy_one_is_not() {
    let (provider, _d, mut calls, addr) = serve(
        "MIDLE",
        Behaviour::Reply(Response::ok()),
        &[("HEADER_READ_TIMEOUT_MS", "300")],
    )
    .await;
    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    // A client that asks every 100 ms, 12 times (well past the timeout in
    // total): each head arrives in time, so every request is answered on
    // the same connection.
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..12 {
        busy.write_all(GET).await.unwrap();
        let mut answer = [0u8; 512];
        let n = tokio::time::timeout(PATIENCE, busy.read(&mut answer))
            .await
            .expect("no answer")
            .unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{n} bytes");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = 0;
    while calls.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 12, "every request must reach the actor");

    // One request, then silence: the server closes the connection once the
    // next head is overdue (300 ms plus at most one watchdog tick).
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, idle.read_to_end(&mut rest))
        .await
        .expect("the server kept an idle connection open")
        .unwrap();
    assert!(String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 200"));
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    provider.shutdown().await;
}

#[tokio::test]
async fn port_in_use_is_a_config_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (dispatcher, _calls) = TestDispatcher::new(Behaviour::Fail);
    let provider = HttpServerProvider::new();
    provider.start(dispatcher).await.unwrap();
    let err = provider
        .bind_actor(bind_request("MBUSY", &[("PORT", &port)]))
        .await
        .unwrap_err();
    let ProviderError::Config {
        actor, key, reason, ..
    } = &err
    else {
        panic!("expected a Config error, got {err:?}");
    };
    assert_eq!(actor, "MBUSY");
    assert_eq!(key, "PORT");
    assert!(reason.contains(&port), "{reason}");
    assert!(err.to_string().contains("MBUSY"), "{err}");
    assert_eq!(provider.bound_address("MBUSY"), None);
}

#[tokio::test]
async fn bad_port_value_is_a_config_error() {
    let (dispatcher, _calls) = TestDispatcher::new(Behaviour::Fail);
    let provider = HttpServerProvider::new();
    provider.start(dispatcher).await.unwrap();
    let err = provider
        .bind_actor(bind_request("MPORT", &[("PORT", "eighty")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::Config { key, actor, .. } if key == "PORT" && actor == "MPORT"),
        "{err:?}"
    );
    assert!(err.to_string().contains("eighty"), "{err}");
}

#[tokio::test]
async fn binding_twice_is_an_error_and_keeps_the_first_listener() {
    let (provider, _d, _calls, addr) = serve("MTWICE", Behaviour::EchoActor, &[]).await;
    let err = provider
        .bind_actor(bind_request("MTWICE", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("already bound"), "{err}");
    assert_eq!(provider.bound_address("MTWICE"), Some(addr));
    assert_eq!(get(addr, "/").await.0, StatusCode::OK);
    provider.shutdown().await;
}

#[tokio::test]
async fn bind_before_start_is_an_error() {
    let provider = HttpServerProvider::new();
    let err = provider
        .bind_actor(bind_request("MEARLY", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Internal { .. }), "{err:?}");
    assert_eq!(provider.bound_address("MEARLY"), None);
}

#[tokio::test]
async fn remove_drains_in_flight_requests_then_refuses_connections() {
    let gate = Arc::new(Notify::new());
    let (provider, _d, mut calls, addr) = serve("MSLOW", Behaviour::Gate(gate.clone()), &[]).await;
    let provider = Arc::new(provider);

    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    next_call(&mut calls).await;

    let remover = {
        let provider = provider.clone();
        tokio::spawn(async move { provider.remove_actor("MSLOW", "default").await })
    };
    // The listening socket closes as soon as removal starts.
    tokio::time::timeout(PATIENCE, async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener kept accepting after remove_actor");
    assert_eq!(provider.bound_address("MSLOW"), None);
    assert!(
        !remover.is_finished(),
        "remove_actor returned while a request was still in flight"
    );

    gate.notify_one();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"slow");
    tokio::time::timeout(PATIENCE, remover)
        .await
        .expect("remove_actor did not finish after the drain")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(matches!(
        provider.remove_actor("MSLOW", "default").await,
        Err(ProviderError::NotBound { .. })
    ));
}

#[tokio::test]
async fn drain_timeout_bounds_remove() {
    let (provider, _d, mut calls, addr) =
        serve("MSTUCK", Behaviour::Hang, &[("DRAIN_TIMEOUT_MS", "100")]).await;
    let in_flight = tokio::spawn(async move {
        client()
            .request(request(Method::GET, addr, "/", Bytes::new()))
            .await
    });
    next_call(&mut calls).await;
    tokio::time::timeout(PATIENCE, provider.remove_actor("MSTUCK", "default"))
        .await
        .expect("remove_actor waited past the drain timeout")
        .unwrap();
    let outcome = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert!(
        outcome.is_err(),
        "the stuck request should have been cut off"
    );
}

#[tokio::test]
async fn two_actors_on_two_ports_are_isolated() {
    let (dispatcher, _calls) = TestDispatcher::new(Behaviour::EchoActor);
    let provider = HttpServerProvider::new();
    provider.start(dispatcher).await.unwrap();
    provider
        .bind_actor(bind_request("MONE", &[]))
        .await
        .unwrap();
    provider
        .bind_actor(bind_request("MTWO", &[]))
        .await
        .unwrap();
    let one = provider.bound_address("MONE").unwrap();
    let two = provider.bound_address("MTWO").unwrap();
    assert_ne!(one.port(), two.port());

    assert_eq!(&get(one, "/").await.2[..], b"MONE");
    assert_eq!(&get(two, "/").await.2[..], b"MTWO");

    provider.remove_actor("MONE", "default").await.unwrap();
    assert!(tokio::net::TcpStream::connect(one).await.is_err());
    assert_eq!(&get(two, "/").await.2[..], b"MTWO");
    assert!(provider.health().await.healthy);

    provider.shutdown().await;
    assert!(tokio::net::TcpStream::connect(two).await.is_err());
    assert_eq!(provider.bound_address("MTWO"), None);
}

#[tokio::test]
async fn keep_alive_connection_serves_many_requests() {
    let (provider, _d, _calls, addr) = serve("MKEEP", Behaviour::EchoActor, &[]).await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut read = 0;
        while !buf[..read].ends_with(b"MKEEP") {
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf[read..]))
                .await
                .unwrap()
                .unwrap();
            assert_ne!(
                n,
                0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&buf[..read])
            );
            read += n;
        }
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }
    provider.shutdown().await;
}

#[tokio::test]
async fn descriptor_names_the_capability() {
    let descriptor = HttpServerProvider::new().descriptor();
    assert_eq!(descriptor.id, "wascc:http_server");
    assert!(
        descriptor
            .supported_operations
            .iter()
            .any(|op| op.name == OP_HANDLE_REQUEST)
    );
}

/// RFC 9112 §3.2: two `Host` headers, or an HTTP/1.1 request with none, is
/// answered 400 and never reaches the actor (a filter reading the first and
/// the actor reading both would disagree on where it was sent). HTTP/1.0
/// may go without.
#[tokio::test]
async fn requests_with_two_host_headers_or_none_in_http_1_1_are_refused() {
    let (provider, _d, mut calls, addr) =
        serve("MHOST", Behaviour::Reply(Response::ok()), &[]).await;
    for (raw, status) in [
        (
            &b"GET / HTTP/1.1\r\nHost: allowed.example\r\nHost: other.example\r\nConnection: close\r\n\r\n"[..],
            "HTTP/1.1 400",
        ),
        (&b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"[..], "HTTP/1.1 400"),
        (&b"GET / HTTP/1.0\r\n\r\n"[..], "HTTP/1.0 200"),
        (&b"GET / HTTP/1.1\r\nHost: one.example\r\nConnection: close\r\n\r\n"[..], "HTTP/1.1 200"),
    ] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(raw).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, conn.read_to_end(&mut answer))
            .await
            .expect("no answer")
            .unwrap();
        assert!(
            answer.starts_with(status.as_bytes()),
            "{}: {}",
            String::from_utf8_lossy(raw),
            String::from_utf8_lossy(&answer)
        );
    }
    let mut seen = 0;
    while calls.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 2, "only the two good requests reach the actor");
    provider.shutdown().await;
}
