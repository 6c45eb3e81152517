//! One listener: its accept loop (see `bounded`) and the HTTP ↔
//! `HandleRequest` mapping of each request.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
    TRANSFER_ENCODING,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{StatusCode, ext::ReasonPhrase};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};
use tracing::Span;
use waxosuit_codec::CodecError;
use waxosuit_codec::http::{
    OP_HANDLE_REQUEST, RequestHead, RequestWriter, ResponseBody, ResponseLimits, ResponseView,
};
use waxosuit_provider::ActorDispatcher;

use crate::bounded::{self, ConnectionLimits, Connector};
use crate::config::{ListenerConfig, ReplyLimits};
use crate::conn::{self, Activity};
use crate::failures::FailureLog;
use crate::filter::{FilterChain, FilterTarget};
use crate::held::{HeldBody, Kept, Places};
use crate::inflight::{InFlight, Throttle};
use crate::spans;
use crate::threads::ConnectionThreads;

/// The HTTP response type of every request this provider serves: actor
/// bodies are already complete in memory, so no streaming body is needed.
pub(crate) type HttpResponse = hyper::Response<Bytes>;

/// Body of the 500 sent when the actor fails; the reason goes to the log
/// only, so that actor internals do not leak to clients.
pub(crate) const FAILED: &[u8] = b"Failed to handle request";
/// Body of the 500 sent when the actor's reply is not a `Response`.
const MALFORMED: &[u8] = b"Malformed response from actor";

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
    /// The actor's name from its claims (`__wascc_name`), for log lines;
    /// empty when the host did not say.
    pub(crate) name: Arc<str>,
    pub(crate) dispatcher: Arc<dyn ActorDispatcher>,
    pub(crate) max_body_bytes: usize,
    /// The actor's payload limit, when the host said.
    pub(crate) max_payload: Option<usize>,
    pub(crate) request_timeout: Duration,
    pub(crate) reply: ReplyLimits,
    pub(crate) in_flight: Arc<InFlight>,
    /// Places one client may hold of `in_flight` (`MAX_IN_FLIGHT_PER_CLIENT`).
    pub(crate) per_client: usize,
    /// Logs refusals for a client's share, listener-wide, so that many
    /// clients cannot log one line each.
    pub(crate) client_refusals: Arc<Throttle>,
    /// Logs requests that failed (the actor failed, timed out or replied
    /// what HTTP cannot carry; a filter failed), listener-wide: an actor
    /// with a bug fails every request, and a line each would let any client
    /// fill the logs.
    pub(crate) failures: Arc<FailureLog>,
    /// Logs requests refused for what the client sent (too large for the
    /// actor, not encodable, no memory for its body), on a budget of their
    /// own: a client must not use up the lines of the actor's failures.
    pub(crate) refusals: Arc<FailureLog>,
    /// The binding's name.
    pub(crate) binding: Arc<str>,
    /// The binding's filters; empty for most, which then take the direct
    /// path.
    pub(crate) filters: FilterChain,
}

impl ActorService {
    /// Whether a failed request is logged now ([`FailureLog`]), and how
    /// many were not since the last line.
    pub(crate) fn log_failure(&self) -> Option<u64> {
        self.failures.should_log(std::time::Instant::now())
    }

    /// As [`log_failure`](Self::log_failure), for requests refused for
    /// what the client sent.
    pub(crate) fn log_refusal(&self) -> Option<u64> {
        self.refusals.should_log(std::time::Instant::now())
    }
}

/// An [`ActorService`] as one connection serves it: its own copy, so that
/// the `Arc` each request clones is not shared by all connections (a count
/// written from every core on every request), plus what the connection
/// knows about itself.
pub(crate) struct ConnService {
    pub(crate) service: ActorService,
    activity: Arc<Activity>,
    /// The connection thread, whose share of the in-flight limit it uses.
    pub(crate) thread: usize,
    /// The places the connection's client has in flight, shared by all its
    /// connections.
    client: Option<Arc<InFlight>>,
    /// The client's address, for filters.
    pub(crate) source: Option<SocketAddr>,
    /// The actor and binding, for filters; this connection's own.
    pub(crate) target: Arc<FilterTarget>,
}

/// Serves a binding's connections.
pub(crate) struct ActorConnector {
    pub(crate) service: ActorService,
    pub(crate) http: http1::Builder,
    pub(crate) limits: ConnectionLimits,
    /// `actor M… (binding b)`, for log lines about connections.
    pub(crate) server: String,
}

impl ActorConnector {
    pub(crate) fn new(service: ActorService, config: &ListenerConfig, binding: &str) -> Self {
        ActorConnector {
            server: format!("actor {} (binding {binding})", service.actor),
            http: conn::http1_builder(&config.connections, config.max_headers),
            limits: config.connections.clone(),
            service,
        }
    }
}

impl Connector for ActorConnector {
    fn server(&self) -> &str {
        &self.server
    }

    fn client_places(&self) -> Option<InFlight> {
        // No more shares than places: a share of zero would send its
        // thread to another thread's line on every request.
        let per_client = self.service.per_client;
        Some(InFlight::new(
            per_client,
            self.service.in_flight.shares().min(per_client),
        ))
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, conn: bounded::Conn) {
        let service = Arc::new(ConnService {
            service: self.service.clone(),
            activity: Arc::clone(&conn.activity),
            thread: conn.thread,
            client: conn.client,
            source: stream.peer_addr().ok(),
            target: Arc::new(FilterTarget {
                actor: Arc::clone(&self.service.actor),
                actor_name: Arc::clone(&self.service.name),
                binding: Arc::clone(&self.service.binding),
            }),
        });
        let svc = service_fn(move |req| {
            let service = Arc::clone(&service);
            async move { Ok::<_, Infallible>(service.handle(req).await) }
        });
        conn::serve(
            stream,
            &self.http,
            svc,
            &self.limits,
            conn.activity,
            conn.stop,
            &self.server,
        )
        .await;
    }
}

/// Serves `listener` until `stop` turns true (or its sender is dropped),
/// then stops accepting, asks every connection to finish its in-flight
/// request and close, and waits up to `drain_timeout` before closing the
/// rest forcibly. Connections run on `threads`, or on the current runtime
/// without them.
pub(crate) async fn run_listener(
    listener: TcpListener,
    connector: Arc<ActorConnector>,
    drain_timeout: Duration,
    threads: Option<Arc<ConnectionThreads>>,
    mut stop: watch::Receiver<bool>,
) {
    let open = bounded::accept_until(
        listener,
        &connector,
        &connector.limits,
        threads.as_ref(),
        stopped(&mut stop),
    )
    .await;
    open.drain(drain_timeout, &connector.server).await;
}

/// Resolves once the listener is told to stop, or its sender is gone (the
/// provider was dropped), which must stop it as well.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here, not in the
    // caller's `select!` arm where it would live across an `await`.
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// Why a request body was not read to the end.
enum BodyRefusal {
    /// Over the binding's limit, or more than MessagePack can describe.
    TooLarge,
    /// The client broke the framing or the connection.
    Unreadable(hyper::Error),
    /// Its declared length and the bytes sent disagree.
    LengthMismatch,
    /// Memory for it could not be had.
    NoMemory,
}

impl ConnService {
    /// Maps one HTTP request to `HandleRequest` and the actor's reply back,
    /// inside the request's server span when tracing is on ([`spans`]).
    /// The places the request took are given back once its response body
    /// has been taken by hyper ([`held`](crate::held)).
    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> hyper::Response<HeldBody> {
        let (response, kept) = {
            let mut places = Places::default();
            let response = self.traced(req, &mut places).await;
            (response, places.keep())
        };
        response.map(|body| HeldBody::new(body, self, kept))
    }

    async fn traced<'s>(
        &'s self,
        req: hyper::Request<Incoming>,
        places: &mut Places<'s>,
    ) -> HttpResponse {
        let span = spans::request_span(&req);
        // Pinned where it is made and polled inside the span: `respond`'s
        // state is large, and `.instrument()` would copy all of it into the
        // wrapper on every request (`docs/observability.md`, "What it
        // costs").
        let mut respond = pin!(self.respond(req, &span, places));
        if span.is_disabled() {
            return respond.await;
        }
        let response = poll_fn(|cx| span.in_scope(|| respond.as_mut().poll(cx))).await;
        spans::record_response(&span, &response);
        response
    }

    /// Gives back places [`Places::keep`] kept for this connection.
    pub(crate) fn give_back(&self, kept: Kept) {
        if let Some(share) = kept.listener {
            self.service.in_flight.give_back(share);
        }
        if let (Some(share), Some(client)) = (kept.client, &self.client) {
            client.give_back(share);
        }
    }

    /// The answer to a request past its client's share of the places.
    #[cold]
    fn client_busy(&self, span: &Span) -> HttpResponse {
        let s = &self.service;
        if let Some(unlogged) = s.client_refusals.should_warn(std::time::Instant::now()) {
            tracing::warn!(
                actor = %s.actor,
                actor_name = %s.name,
                client = ?self.source.map(|a| a.ip()),
                max_in_flight_per_client = s.per_client,
                refused_since_last_warning = unlogged,
                "one client has too many HTTP requests in flight: its new ones are answered \
                 503, and other clients are served; if it is a proxy in front of the host, \
                 raise MAX_IN_FLIGHT_PER_CLIENT in the binding values (up to MAX_IN_FLIGHT)"
            );
        }
        spans::fail(
            span,
            "too many requests in flight from one client (MAX_IN_FLIGHT_PER_CLIENT)",
        );
        busy()
    }

    /// [`handle`](Self::handle)'s work. Never fails: every problem becomes
    /// a status code, and the reason the client does not see is logged (and
    /// put on `span` for a `5xx`).
    async fn respond<'s>(
        &'s self,
        req: hyper::Request<Incoming>,
        span: &Span,
        places: &mut Places<'s>,
    ) -> HttpResponse {
        let _request = self.activity.request();
        let s = &self.service;
        // The client's share first: its requests past it are refused
        // without touching the listener's places.
        if let Some(client) = &self.client {
            match client.try_take(self.thread) {
                Some(place) => places.client = Some(place),
                None => return self.client_busy(span),
            }
        }
        let Some(place) = s.in_flight.try_take(self.thread) else {
            if let Some(unlogged) = s.in_flight.should_warn(std::time::Instant::now()) {
                tracing::warn!(
                    actor = %s.actor,
                    actor_name = %s.name,
                    max_in_flight = s.in_flight.limit(),
                    refused_since_last_warning = unlogged,
                    "too many HTTP requests in flight: new ones are answered 503; if this is \
                     legitimate load, raise MAX_IN_FLIGHT in the binding values (or the \
                     actor's max_instances, if requests queue for it)"
                );
            }
            spans::fail(span, "too many requests in flight (MAX_IN_FLIGHT)");
            return busy();
        };
        places.listener = Some(place);
        if let Some(refusal) = host_refusal(&req) {
            return plain(StatusCode::BAD_REQUEST, refusal);
        }
        if !s.filters.is_empty() {
            return self.respond_filtered(req, span).await;
        }
        let (parts, body) = req.into_parts();
        // Started when something first has to wait, not here: most requests
        // never wait, and reading the clock and arming a timer for them is
        // measurable on the hot path.
        let mut deadline = None;

        // Refusing on the declared length saves reading a body we would
        // throw away.
        let declared = declared_length(&parts.headers);
        if declared.is_some_and(|len| len > s.max_body_bytes as u64) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, b"Request body too large");
        }
        let declared = declared.and_then(|len| usize::try_from(len).ok());
        // Most requests (GET, HEAD, …) have no body: nothing to stream.
        let no_body = body.is_end_stream();
        let head = RequestHead {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query_string: parts.uri.query().unwrap_or_default(),
            body_capacity: if no_body { 0 } else { declared.unwrap_or(0) },
        };
        let fields = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()));
        let writer = match RequestWriter::new(&head, parts.headers.keys_len(), fields) {
            Ok(writer) => writer,
            Err(e) => return unencodable(s, &e),
        };
        // Release hyper's head before the body and the actor, however long
        // they take.
        drop(parts);
        // Known too large before reading a byte of the body?
        let at_least = writer.len() + declared.unwrap_or(0);
        if let Some(max) = s.max_payload
            && at_least > max
        {
            return too_large_for_actor(s, at_least, max);
        }
        let payload = if no_body {
            match writer.finish(&[]) {
                Ok(payload) => payload,
                Err(e) => return unencodable(s, &e),
            }
        } else {
            match self
                .read_body(body, writer, declared, &mut deadline, span)
                .await
            {
                Ok(payload) => payload,
                Err(refusal) => return refusal,
            }
        };
        if let Some(max) = s.max_payload
            && payload.len() > max
        {
            return too_large_for_actor(s, payload.len(), max);
        }

        let dispatch = s.dispatcher.dispatch(&s.actor, OP_HANDLE_REQUEST, payload);
        let reply = match self.bounded(&mut deadline, dispatch).await {
            Some(Ok(reply)) => reply,
            Some(Err(e)) => {
                if let Some(not_logged) = s.log_failure() {
                    tracing::error!(actor = %s.actor, error = %e, not_logged, "actor failed to handle an HTTP request");
                }
                spans::fail(span, &e);
                return plain(StatusCode::INTERNAL_SERVER_ERROR, FAILED);
            }
            None => {
                if let Some(not_logged) = s.log_failure() {
                    tracing::error!(
                        actor = %s.actor,
                        timeout = ?s.request_timeout,
                        not_logged,
                        "actor did not answer an HTTP request in time"
                    );
                }
                spans::fail(
                    span,
                    format_args!("the actor did not answer within {:?}", s.request_timeout),
                );
                return plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    b"Actor did not respond in time",
                );
            }
        };
        let response = reply_to_http(&s.actor, &s.name, reply, &s.reply, &s.failures);
        spans::fail_on_server_error(span, &response);
        response
    }

    /// Streams the body straight into the request `writer` is writing: the
    /// body exists once in memory, never also as hyper's chunks or a
    /// joined copy. `Err` is the response refusing it.
    async fn read_body(
        &self,
        body: Incoming,
        writer: RequestWriter,
        declared: Option<usize>,
        deadline: &mut Option<Instant>,
        span: &Span,
    ) -> Result<Vec<u8>, HttpResponse> {
        let s = &self.service;
        let limit = s.max_body_bytes;
        let read = async {
            let mut body = pin!(body);
            let mut payload = writer
                .stream_body(declared)
                .map_err(|_| BodyRefusal::TooLarge)?;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(BodyRefusal::Unreadable)?;
                let Ok(data) = frame.into_data() else {
                    // Trailers: the codec's `Request` has nowhere to put them.
                    continue;
                };
                let received = payload.body_len() + data.len();
                if received > limit {
                    return Err(BodyRefusal::TooLarge);
                }
                if declared.is_some_and(|len| received > len) {
                    return Err(BodyRefusal::LengthMismatch);
                }
                payload.push(&data).map_err(|_| BodyRefusal::NoMemory)?;
            }
            if declared.is_some_and(|len| payload.body_len() != len) {
                return Err(BodyRefusal::LengthMismatch);
            }
            spans::record_body_size(span, payload.body_len());
            payload.finish().map_err(|_| BodyRefusal::TooLarge)
        };
        match self.bounded(deadline, read).await {
            Some(Ok(payload)) => Ok(payload),
            Some(Err(BodyRefusal::TooLarge)) => Err(plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                b"Request body too large",
            )),
            Some(Err(BodyRefusal::NoMemory)) => {
                if let Some(not_logged) = s.log_refusal() {
                    tracing::error!(actor = %s.actor, not_logged, "out of memory for an HTTP request body");
                }
                spans::fail(span, "out of memory for the request body");
                Err(busy())
            }
            Some(Err(BodyRefusal::LengthMismatch)) => Err(plain(
                StatusCode::BAD_REQUEST,
                b"Request body does not match its Content-Length",
            )),
            Some(Err(BodyRefusal::Unreadable(e))) => {
                tracing::debug!(actor = %s.actor, error = %e, "cannot read request body");
                Err(plain(StatusCode::BAD_REQUEST, b"Cannot read request body"))
            }
            None => Err(plain(
                StatusCode::REQUEST_TIMEOUT,
                b"Request body not received in time",
            )),
        }
    }

    /// Runs `fut` to completion, or `None` once the request's deadline has
    /// passed. A future that is ready at once never touches the timer.
    pub(crate) async fn bounded<F: Future>(
        &self,
        deadline: &mut Option<Instant>,
        fut: F,
    ) -> Option<F::Output> {
        let mut fut = pin!(fut);
        let first = poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(output) = first {
            return Some(output);
        }
        let deadline =
            *deadline.get_or_insert_with(|| Instant::now() + self.service.request_timeout);
        timeout_at(deadline, fut).await.ok()
    }
}

/// A request the codec cannot write (a part past MessagePack's 4 GiB).
pub(crate) fn unencodable(s: &ActorService, error: &CodecError) -> HttpResponse {
    if let Some(not_logged) = s.log_refusal() {
        tracing::error!(actor = %s.actor, %error, not_logged, "cannot encode an HTTP request as MessagePack");
    }
    plain(StatusCode::PAYLOAD_TOO_LARGE, b"Request too large")
}

pub(crate) fn too_large_for_actor(s: &ActorService, size: usize, max: usize) -> HttpResponse {
    if let Some(not_logged) = s.log_refusal() {
        tracing::info!(
            actor = %s.actor,
            actor_name = %s.name,
            size,
            max_payload = max,
            not_logged,
            "HTTP request refused with 413: larger than the actor's payload limit"
        );
    }
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        b"Request too large for the actor",
    )
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Turns the actor's reply into the HTTP response, through the codec's
/// [`ResponseView`]: read in place when it has the usual layout, decoded
/// otherwise, and refused past `limits` either way.
pub(crate) fn reply_to_http(
    actor: &str,
    name: &str,
    reply: Vec<u8>,
    limits: &ReplyLimits,
    log: &FailureLog,
) -> HttpResponse {
    let limits = ResponseLimits {
        max_headers: limits.max_headers,
        max_header_bytes: limits.max_header_bytes,
    };
    let view = match ResponseView::decode(&reply, &limits) {
        Ok(view) => view,
        Err(e) => return refused_reply(actor, name, &e, log),
    };
    let head = match response_head(
        actor,
        view.status_code(),
        view.status(),
        view.headers(),
        log,
    ) {
        Ok(head) => head,
        Err(MalformedReply) => return plain(StatusCode::INTERNAL_SERVER_ERROR, MALFORMED),
    };
    let body = match view.into_body() {
        // The body stays in the reply buffer. It is usually written last,
        // so the truncation is a no-op and neither call copies or allocates
        // (slicing a `Bytes` made from a `Vec` would allocate its shared
        // header).
        ResponseBody::InReply(range) => {
            let mut body = Bytes::from(reply);
            body.truncate(range.end);
            body.advance(range.start);
            body
        }
        ResponseBody::Owned(body) => Bytes::from(body),
    };
    head.map(|()| body)
}

/// Why an actor's reply was refused: over a limit of the binding (logged
/// with the binding value to raise, and a `500` whose body says briefly
/// why), or not a `Response` at all (`500 Malformed response from actor`).
fn refused_reply(actor: &str, name: &str, error: &CodecError, log: &FailureLog) -> HttpResponse {
    let (reason, client): (String, &'static [u8]) = match error {
        CodecError::TooManyHeaders { count, limit, .. } => (
            format!(
                "the reply has {count} headers, more than MAX_REPLY_HEADERS = {limit}; \
                 fix the actor, or raise MAX_REPLY_HEADERS in the binding's values"
            ),
            b"Actor response has too many headers",
        ),
        CodecError::HeadersTooLarge { limit, .. } => (
            format!(
                "the reply's header names and values exceed MAX_REPLY_HEADER_BYTES = {limit} \
                 bytes; fix the actor, or raise MAX_REPLY_HEADER_BYTES in the binding's values"
            ),
            b"Actor response headers are too large",
        ),
        other => {
            if let Some(not_logged) = log.should_log(std::time::Instant::now()) {
                tracing::error!(actor, error = %other, not_logged, "actor replied to HandleRequest with something that is not a Response");
            }
            return plain(StatusCode::INTERNAL_SERVER_ERROR, MALFORMED);
        }
    };
    if let Some(not_logged) = log.should_log(std::time::Instant::now()) {
        tracing::error!(
            actor,
            actor_name = name,
            not_logged,
            "actor's HTTP reply refused with 500: {reason}"
        );
    }
    plain(StatusCode::INTERNAL_SERVER_ERROR, client)
}

/// The actor's reply cannot be turned into HTTP; already logged.
struct MalformedReply;

/// Applies the actor's status and headers; anything hyper cannot represent
/// faithfully (bad status, bad header) is the actor's bug and becomes a
/// logged 500 rather than a silently altered reply; the reason is logged
/// here (through `log`), so the error carries nothing. The header count is
/// already within the binding's limit, itself far below what a `HeaderMap`
/// holds, and the fallible calls keep it so.
fn response_head<'a>(
    actor: &str,
    status_code: u32,
    reason: &str,
    headers: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    log: &FailureLog,
) -> Result<hyper::Response<()>, MalformedReply> {
    let logged = || log.should_log(std::time::Instant::now());
    let Some(status) = u16::try_from(status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
    else {
        if let Some(not_logged) = logged() {
            tracing::error!(
                actor,
                status_code,
                not_logged,
                "actor replied with an invalid HTTP status code"
            );
        }
        return Err(MalformedReply);
    };
    let mut out = hyper::Response::new(());
    *out.status_mut() = status;
    let map = out.headers_mut();
    let too_many = |_| {
        if let Some(not_logged) = logged() {
            tracing::error!(
                actor,
                not_logged,
                "actor replied with more headers than an HTTP response can hold"
            );
        }
        MalformedReply
    };
    map.try_reserve(headers.len()).map_err(too_many)?;
    for (name, value) in headers {
        let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
            if let Some(not_logged) = logged() {
                tracing::error!(actor, header = %name, not_logged, "actor replied with an invalid header name");
            }
            return Err(MalformedReply);
        };
        // The body is complete, so hyper frames it itself; an actor's stale
        // length would corrupt the keep-alive stream.
        if header_name == CONTENT_LENGTH || header_name == TRANSFER_ENCODING {
            continue;
        }
        let Ok(header_value) = HeaderValue::from_str(value) else {
            if let Some(not_logged) = logged() {
                tracing::error!(actor, header = %name, not_logged, "actor replied with an invalid header value");
            }
            return Err(MalformedReply);
        };
        map.try_append(header_name, header_value)
            .map_err(too_many)?;
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

/// Why a request's `Host` headers are refused (RFC 9112 §3.2: more than
/// one, or none in HTTP/1.1). A filter reads the first as `:authority`
/// while the actor gets them joined: the two would disagree on where the
/// request was sent, and a filter deciding by host could be walked past.
fn host_refusal(req: &hyper::Request<Incoming>) -> Option<&'static [u8]> {
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Some(b"More than one Host header"),
        (None, _) if req.version() == hyper::Version::HTTP_11 => Some(b"Missing Host header"),
        _ => None,
    }
}

pub(crate) fn plain(status: StatusCode, body: &'static [u8]) -> HttpResponse {
    let mut out = hyper::Response::new(Bytes::from_static(body));
    *out.status_mut() = status;
    out.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    out
}

/// `503` with `Retry-After: 1`: the server is saturated, not broken.
fn busy() -> HttpResponse {
    let mut out = plain(StatusCode::SERVICE_UNAVAILABLE, b"Server busy; retry later");
    out.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use waxosuit_codec::http::Response;

    use super::*;

    fn reply(response: &Response) -> Vec<u8> {
        waxosuit_codec::serialize(response).unwrap()
    }

    /// The same response read in place, and decoded apart: with an unknown
    /// field `z: nil` added, a layout the codec does not read in place.
    fn both_paths(response: &Response) -> [HttpResponse; 2] {
        let usual = reply(response);
        assert_eq!(usual[0], 0x84, "a fixmap of the four fields");
        let mut unusual = usual.clone();
        unusual[0] = 0x85;
        unusual.extend_from_slice(&[0xa1, b'z', 0xc0]);
        [usual, unusual].map(|reply| {
            reply_to_http(
                "MA",
                "a",
                reply,
                &ReplyLimits::default(),
                &FailureLog::default(),
            )
        })
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

    #[tokio::test]
    async fn replies_over_the_limits_or_malformed_are_500s_saying_which() {
        let many = Response {
            header: (0..3)
                .map(|i| (format!("x-{i}"), "v".to_string()))
                .collect(),
            ..Response::ok()
        };
        for (limits, body) in [
            (
                ReplyLimits {
                    max_headers: 2,
                    max_header_bytes: 100,
                },
                &b"Actor response has too many headers"[..],
            ),
            (
                ReplyLimits {
                    max_headers: 3,
                    max_header_bytes: 11,
                },
                b"Actor response headers are too large",
            ),
        ] {
            let out = reply_to_http("MA", "a", reply(&many), &limits, &FailureLog::default());
            assert_eq!(out.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let got = out.into_body();
            assert_eq!(&got[..], body);
        }
        let out = reply_to_http(
            "MA",
            "a",
            vec![0xc1],
            &ReplyLimits::default(),
            &FailureLog::default(),
        );
        let got = out.into_body();
        assert_eq!(&got[..], MALFORMED);
    }

    #[test]
    fn codec_only_layouts_are_still_served() {
        // `Response::ok()` as a MessagePack array: the codec accepts it, the
        // in-place reader does not.
        let as_array = vec![0x94, 0xcc, 201, 0xa2, b'O', b'K', 0x80, 0xc4, 0x01, b'!'];
        let out = reply_to_http(
            "MA",
            "a",
            as_array,
            &ReplyLimits::default(),
            &FailureLog::default(),
        );
        assert_eq!(out.status(), StatusCode::CREATED);
        let mut garbage = reply(&Response::ok());
        garbage.push(0);
        assert_eq!(
            reply_to_http(
                "MA",
                "a",
                garbage,
                &ReplyLimits::default(),
                &FailureLog::default()
            )
            .status(),
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
        let out = reply_to_http(
            "MA",
            "a",
            reply,
            &ReplyLimits::default(),
            &FailureLog::default(),
        );
        assert_eq!(out.status(), StatusCode::ACCEPTED);
        assert_eq!(out.headers()["k"], "v");
        let body = out.into_body();
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
        let fast = fast.into_body();
        let codec = codec.into_body();
        assert_eq!(fast, codec);
        assert_eq!(&fast[..], b"nope");
    }
}
