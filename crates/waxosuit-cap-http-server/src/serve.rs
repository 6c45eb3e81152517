//! One listener: the accept loop, per-connection serving with graceful
//! shutdown, and the HTTP ↔ `HandleRequest` mapping.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{StatusCode, ext::ReasonPhrase};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::{Instant, timeout, timeout_at};
use waxosuit_codec::http::{OP_HANDLE_REQUEST, Response};
use waxosuit_provider::ActorDispatcher;

use crate::config::ListenerConfig;
use crate::threads::ConnectionThreads;
use crate::watchdog::{DeadlineTimer, Watchdog};
use crate::wire;

/// The HTTP response type of every request this provider serves: actor
/// bodies are already complete in memory, so no streaming body is needed.
pub(crate) type HttpResponse = hyper::Response<Full<Bytes>>;

/// Body of the 500 sent when the actor fails; the reason goes to the log
/// only, so that actor internals do not leak to clients.
const FAILED: &[u8] = b"Failed to handle request";
/// Body of the 500 sent when the actor's reply is not a `Response`.
const MALFORMED: &[u8] = b"Malformed response from actor";

/// How long the accept loop backs off after an error such as `EMFILE`,
/// which would otherwise repeat immediately and spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Listen backlog; larger than std's 128 so a burst of benchmark or
/// production connections is not refused while the loop catches up.
const BACKLOG: u32 = 1024;

/// Binds `addr` the way a server should: `SO_REUSEADDR` so a restarted
/// binding can reuse a port whose old connections are in `TIME_WAIT`.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What every request of one binding needs.
#[derive(Clone)]
pub(crate) struct ActorService {
    pub(crate) actor: Arc<str>,
    pub(crate) dispatcher: Arc<dyn ActorDispatcher>,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
}

/// Serves `listener` until `stop` turns true (or its sender is dropped),
/// then stops accepting, asks every connection to finish its in-flight
/// request and close, and waits up to `drain_timeout` before closing the
/// rest forcibly. Connections run on `threads`, or on the current runtime
/// without them.
pub(crate) async fn run_listener(
    listener: TcpListener,
    service: Arc<ActorService>,
    config: &ListenerConfig,
    threads: Option<Arc<ConnectionThreads>>,
    mut stop: watch::Receiver<bool>,
) {
    let http = Arc::new(http1_builder(config));
    let mut connections = JoinSet::new();
    // One private stop signal per connection rather than a shared channel:
    // a connection polls its signal on every wake-up, and a shared `watch`
    // or `Notify` takes one mutex on each such poll, which all connections
    // would contend on.
    let mut stops: HashMap<Id, oneshot::Sender<()>> = HashMap::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            Some(finished) = connections.join_next_with_id(), if !connections.is_empty() => {
                stops.remove(&finished_id(&finished));
                report_connection_panic(&service.actor, finished);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let (stop_connection, stop_rx) = oneshot::channel();
                    let http = Arc::clone(&http);
                    let service = Arc::clone(&service);
                    let timeout = config.header_read_timeout;
                    let task = match &threads {
                        Some(threads) => {
                            let Some(stream) = hand_over(stream, &service.actor) else {
                                continue;
                            };
                            threads.spawn(&mut connections, async move {
                                if let Some(stream) = take_over(stream, &service.actor) {
                                    serve_connection(stream, http, service, timeout, stop_rx).await;
                                }
                            })
                        }
                        None => connections.spawn(serve_connection(stream, http, service, timeout, stop_rx)),
                    };
                    stops.insert(task.id(), stop_connection);
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(actor = %service.actor, error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    tracing::error!(actor = %service.actor, error = %e, "accepting connections failed; retrying");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    // Closing the socket first makes new connections fail fast instead of
    // queueing in the backlog while the old ones drain.
    drop(listener);
    for (_, stop_connection) in stops.drain() {
        // The connection may have ended on its own meanwhile; nothing to do.
        let _ = stop_connection.send(());
    }
    let open = connections.len();
    let drained = timeout(config.drain_timeout, async {
        while let Some(finished) = connections.join_next().await {
            report_connection_panic(&service.actor, finished);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            actor = %service.actor,
            still_open = connections.len(),
            of = open,
            drain_timeout = ?config.drain_timeout,
            "connections did not finish in time; closing them"
        );
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// Resolves once the listener is told to stop, or its sender is gone (the
/// provider was dropped), which must stop it as well.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not in the
    // caller's `select!` arm where it would live across an `await`.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

fn http1_builder(config: &ListenerConfig) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.keep_alive(true)
        .max_header_size(config.max_header_bytes)
        // The read buffer must hold the largest accepted head; hyper's
        // ~400 KB default would let one client pin that much per connection.
        .max_buf_size(config.max_header_bytes.max(64 * 1024))
        // Deadlines checked when the connection's watchdog wakes it, not
        // tokio timers armed per request; see `watchdog`.
        .timer(DeadlineTimer)
        .header_read_timeout(config.header_read_timeout);
    // Only when asked: hyper moves the header array to the heap once this is
    // set, which costs every request a few percent.
    if let Some(max) = config.max_headers {
        http.max_headers(max);
    }
    http
}

/// Errors that concern only the connection being accepted (the peer reset
/// it before we got it), not the listener.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

fn finished_id(finished: &Result<(Id, ()), JoinError>) -> Id {
    match finished {
        Ok((id, ())) => *id,
        Err(e) => e.id(),
    }
}

fn report_connection_panic<T>(actor: &str, finished: Result<T, JoinError>) {
    if let Err(e) = finished
        && e.is_panic()
    {
        tracing::error!(actor, error = %e, "an HTTP connection task panicked");
    }
}

/// Takes an accepted connection off this runtime's reactor, so that its
/// readiness wakes the thread that serves it, not this one (which would
/// then have to hand every wake-up over). `None`, logged, if that fails.
fn hand_over(stream: TcpStream, actor: &str) -> Option<std::net::TcpStream> {
    stream
        .into_std()
        .inspect_err(|e| tracing::warn!(actor, error = %e, "cannot hand over an accepted connection; it is closed"))
        .ok()
}

/// Registers a handed-over connection with the reactor of the runtime
/// running this; `into_std` left the socket non-blocking, as this requires.
fn take_over(stream: std::net::TcpStream, actor: &str) -> Option<TcpStream> {
    TcpStream::from_std(stream)
        .inspect_err(|e| tracing::warn!(actor, error = %e, "cannot register an accepted connection; it is closed"))
        .ok()
}

async fn serve_connection(
    stream: TcpStream,
    http: Arc<http1::Builder>,
    service: Arc<ActorService>,
    header_read_timeout: Option<Duration>,
    mut stop: oneshot::Receiver<()>,
) {
    // Made here, not by the accept loop: its timer belongs to the runtime
    // that serves the connection.
    let mut watchdog = Watchdog::new(header_read_timeout);
    // Responses are small and written in one go; Nagle would hold them back
    // waiting for an ACK and add up to 40 ms of latency on keep-alive.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let actor = Arc::clone(&service.actor);
    // A copy per connection: each request clones this `Arc`, and a count
    // shared by all connections would be written from every core on every
    // request.
    let service = Arc::new(ActorService::clone(&service));
    let svc = service_fn(move |req| {
        let service = Arc::clone(&service);
        async move { Ok::<_, Infallible>(service.handle(req).await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            // Polling the connection first keeps the common path to one branch.
            biased;
            result = conn.as_mut() => break result,
            // A dropped sender means the listener is gone: stop as well.
            _ = &mut stop, if !stopping => {
                // Finishes the request in flight (if any), then closes; an
                // idle keep-alive connection closes at once.
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            // Nothing to do: being woken makes hyper re-check its header
            // deadline on the next turn of the loop.
            () = watchdog.tick() => {}
        }
    };
    if let Err(e) = result {
        // Clients hanging up mid-request are routine; not worth more.
        tracing::debug!(actor = %actor, error = %e, "HTTP connection ended with an error");
    }
}

impl ActorService {
    /// Maps one HTTP request to `HandleRequest` and the actor's reply back.
    /// Never fails: every problem becomes a status code, and the reason the
    /// client does not see is logged.
    pub(crate) async fn handle(&self, req: hyper::Request<Incoming>) -> HttpResponse {
        let (parts, body) = req.into_parts();
        // Started when something first has to wait, not here: most requests
        // never wait, and reading the clock and arming a timer for them is
        // measurable on the hot path.
        let mut deadline = None;

        // Refusing on the declared length saves reading a body we would
        // throw away.
        if declared_length(&parts.headers).is_some_and(|len| len > self.max_body_bytes as u64) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, b"Request body too large");
        }
        // Most requests (GET, HEAD, …) have no body; skip the collecting.
        let body = if body.is_end_stream() {
            Bytes::new()
        } else {
            match self.read_body(body, &mut deadline).await {
                Ok(body) => body,
                Err(refusal) => return *refusal,
            }
        };

        let Some(payload) = wire::encode_request(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or_default(),
            &parts.headers,
            &body,
        ) else {
            tracing::error!(actor = %self.actor, "HTTP request too large to encode as MessagePack");
            return plain(StatusCode::PAYLOAD_TOO_LARGE, b"Request too large");
        };
        // Release hyper's buffers before the actor runs, however long it takes.
        drop((parts, body));

        let dispatch = self
            .dispatcher
            .dispatch(&self.actor, OP_HANDLE_REQUEST, payload);
        let reply = match self.bounded(&mut deadline, dispatch).await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => {
                tracing::error!(actor = %self.actor, error = %e, "actor failed to handle an HTTP request");
                return plain(StatusCode::INTERNAL_SERVER_ERROR, FAILED);
            }
            None => {
                tracing::error!(
                    actor = %self.actor,
                    timeout = ?self.request_timeout,
                    "actor did not answer an HTTP request in time"
                );
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    b"Actor did not respond in time",
                );
            }
        };
        reply_to_http(&self.actor, reply)
    }

    /// The whole body, or the response refusing it.
    async fn read_body(
        &self,
        body: Incoming,
        deadline: &mut Option<Instant>,
    ) -> Result<Bytes, Box<HttpResponse>> {
        let collect = Limited::new(body, self.max_body_bytes).collect();
        match self.bounded(deadline, collect).await {
            Some(Ok(collected)) => Ok(collected.to_bytes()),
            Some(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(Box::new(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                b"Request body too large",
            ))),
            Some(Err(e)) => {
                tracing::debug!(actor = %self.actor, error = %e, "cannot read request body");
                Err(Box::new(plain(
                    StatusCode::BAD_REQUEST,
                    b"Cannot read request body",
                )))
            }
            None => Err(Box::new(plain(
                StatusCode::REQUEST_TIMEOUT,
                b"Request body not received in time",
            ))),
        }
    }

    /// Runs `fut` to completion, or `None` once the request's deadline has
    /// passed. A future that is ready at once never touches the timer.
    async fn bounded<F: Future>(
        &self,
        deadline: &mut Option<Instant>,
        fut: F,
    ) -> Option<F::Output> {
        let mut fut = pin!(fut);
        let first = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = first {
            return Some(output);
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + self.request_timeout);
        timeout_at(deadline, fut).await.ok()
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns the actor's reply into the HTTP response: read in place when it has
/// the usual layout, through the codec otherwise, so that both accept and
/// reject exactly what the codec does.
fn reply_to_http(actor: &str, reply: Vec<u8>) -> HttpResponse {
    let Some(view) = wire::decode_reply(&reply) else {
        return match waxosuit_codec::deserialize::<Response>(&reply) {
            Ok(response) => build_http(
                actor,
                response.status_code,
                &response.status,
                response
                    .header
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
                Bytes::from(response.body),
            ),
            Err(e) => {
                tracing::error!(actor, error = %e, "actor replied to HandleRequest with something that is not a Response");
                plain(StatusCode::INTERNAL_SERVER_ERROR, MALFORMED)
            }
        };
    };
    let body_range = view.body.clone();
    let head = match response_head(
        actor,
        view.status_code,
        view.status,
        view.headers.into_iter(),
    ) {
        Ok(head) => head,
        Err(MalformedReply) => return plain(StatusCode::INTERNAL_SERVER_ERROR, MALFORMED),
    };
    // The body stays in the reply buffer. The codec writes it last, so the
    // truncation is a no-op and neither call copies or allocates (slicing a
    // `Bytes` made from a `Vec` would allocate its shared header).
    let mut body = Bytes::from(reply);
    body.truncate(body_range.end);
    body.advance(body_range.start);
    head.map(|()| Full::new(body))
}

/// The actor's reply cannot be turned into HTTP; already logged.
struct MalformedReply;

/// [`response_head`] with its body, for replies decoded by the codec.
fn build_http<'a>(
    actor: &str,
    status_code: u32,
    reason: &str,
    headers: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    body: Bytes,
) -> HttpResponse {
    match response_head(actor, status_code, reason, headers) {
        Ok(head) => head.map(|()| Full::new(body)),
        Err(MalformedReply) => plain(StatusCode::INTERNAL_SERVER_ERROR, MALFORMED),
    }
}

/// Applies the actor's status and headers; anything hyper cannot represent
/// faithfully (bad status, bad header) is the actor's bug and becomes a
/// logged 500 rather than a silently altered reply; the reason is logged
/// here, so the error carries nothing.
fn response_head<'a>(
    actor: &str,
    status_code: u32,
    reason: &str,
    headers: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<hyper::Response<()>, MalformedReply> {
    let Some(status) = u16::try_from(status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
    else {
        tracing::error!(
            actor,
            status_code,
            "actor replied with an invalid HTTP status code"
        );
        return Err(MalformedReply);
    };
    let mut out = hyper::Response::new(());
    *out.status_mut() = status;
    let map = out.headers_mut();
    map.reserve(headers.len());
    for (name, value) in headers {
        let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
            tracing::error!(actor, header = %name, "actor replied with an invalid header name");
            return Err(MalformedReply);
        };
        // The body is complete, so hyper frames it itself; an actor's stale
        // length would corrupt the keep-alive stream.
        if header_name == CONTENT_LENGTH || header_name == TRANSFER_ENCODING {
            continue;
        }
        let Ok(header_value) = HeaderValue::from_str(value) else {
            tracing::error!(actor, header = %name, "actor replied with an invalid header value");
            return Err(MalformedReply);
        };
        map.append(header_name, header_value);
    }
    // waSCC actors set `status` to the reason phrase; only a non-standard one
    // needs carrying, and one hyper rejects is left to the canonical phrase.
    if !reason.is_empty()
        && status.canonical_reason() != Some(reason)
        && let Ok(reason) = ReasonPhrase::try_from(reason.as_bytes())
    {
        out.extensions_mut().insert(reason);
    }
    Ok(out)
}

fn plain(status: StatusCode, body: &'static [u8]) -> HttpResponse {
    let mut out = hyper::Response::new(Full::new(Bytes::from_static(body)));
    *out.status_mut() = status;
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn reply(response: &Response) -> Vec<u8> {
        waxosuit_codec::serialize(response).unwrap()
    }

    /// The same response through the in-place reader and through the codec.
    fn both_paths(response: &Response) -> [HttpResponse; 2] {
        let fast = reply_to_http("MA", reply(response));
        let codec = build_http(
            "MA",
            response.status_code,
            &response.status,
            response
                .header
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            Bytes::from(response.body.clone()),
        );
        [fast, codec]
    }

    #[test]
    fn actor_framing_headers_are_dropped() {
        let response = Response {
            status_code: 201,
            status: "Created".into(),
            header: [
                ("Content-Length".to_string(), "999".to_string()),
                ("X-Kept".to_string(), "yes".to_string()),
            ]
            .into(),
            body: b"abc".to_vec(),
        };
        for out in both_paths(&response) {
            assert_eq!(out.status(), StatusCode::CREATED);
            assert!(out.headers().get(CONTENT_LENGTH).is_none());
            assert_eq!(out.headers()["x-kept"], "yes");
            assert!(out.extensions().get::<ReasonPhrase>().is_none());
        }
    }

    #[test]
    fn custom_reason_phrase_is_carried() {
        let response = Response {
            status_code: 200,
            status: "Fine".into(),
            ..Response::default()
        };
        for out in both_paths(&response) {
            assert_eq!(
                out.extensions()
                    .get::<ReasonPhrase>()
                    .map(ReasonPhrase::as_bytes),
                Some(&b"Fine"[..])
            );
        }
    }

    #[test]
    fn invalid_status_or_header_is_a_500() {
        for response in [
            Response {
                status_code: 99,
                ..Response::default()
            },
            Response {
                status_code: 1000,
                ..Response::default()
            },
            Response {
                status_code: 200,
                header: [("bad name".to_string(), "v".to_string())].into(),
                ..Response::default()
            },
            Response {
                status_code: 200,
                header: [("x-bad".to_string(), "line\nbreak".to_string())].into(),
                ..Response::default()
            },
        ] {
            for out in both_paths(&response) {
                assert_eq!(
                    out.status(),
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "{response:?}"
                );
            }
        }
    }

    #[test]
    fn codec_only_layouts_are_still_served() {
        // `Response::ok()` as a MessagePack array: the codec accepts it, the
        // in-place reader does not.
        let as_array = vec![0x94, 0xcc, 201, 0xa2, b'O', b'K', 0x80, 0xc4, 0x01, b'!'];
        let out = reply_to_http("MA", as_array);
        assert_eq!(out.status(), StatusCode::CREATED);
        let mut garbage = reply(&Response::ok());
        garbage.push(0);
        assert_eq!(
            reply_to_http("MA", garbage).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[tokio::test]
    async fn body_in_the_middle_of_the_reply_is_cut_out_exactly() {
        // Fields in another order than the codec writes: body first.
        let mut reply = vec![
            0x84, 0xa4, b'b', b'o', b'd', b'y', 0xc4, 0x03, b'x', b'y', b'z',
        ];
        reply.extend_from_slice(&[0xaa]);
        reply.extend_from_slice(b"statusCode");
        reply.extend_from_slice(&[0xcc, 202, 0xa6]);
        reply.extend_from_slice(b"status");
        reply.extend_from_slice(&[0xa0, 0xa6]);
        reply.extend_from_slice(b"header");
        reply.extend_from_slice(&[0x81, 0xa1, b'k', 0xa1, b'v']);
        let out = reply_to_http("MA", reply);
        assert_eq!(out.status(), StatusCode::ACCEPTED);
        assert_eq!(out.headers()["k"], "v");
        let body = out.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"xyz");
    }

    #[tokio::test]
    async fn both_paths_agree_on_headers_and_body() {
        let response = Response {
            status_code: 404,
            status: "Not Found".into(),
            header: HashMap::from([
                ("Content-Type".to_string(), "text/plain".to_string()),
                ("x-a".to_string(), "1".to_string()),
            ]),
            body: b"nope".to_vec(),
        };
        let [fast, codec] = both_paths(&response);
        assert_eq!(fast.status(), codec.status());
        assert_eq!(fast.headers(), codec.headers());
        let fast = fast.into_body().collect().await.unwrap().to_bytes();
        let codec = codec.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(fast, codec);
        assert_eq!(&fast[..], b"nope");
    }
}
