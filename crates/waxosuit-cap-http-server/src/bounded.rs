//! Bounded HTTP/1.1 serving: a cap on open connections and the header-read,
//! idle and write timeouts, shared by this provider's listeners and usable
//! for other small servers of the host (`waxosuit up --admin` serves
//! `/livez`, `/readyz` and `/metrics` with [`serve`]).
//!
//! What is bounded, per server:
//!
//! * **Open connections**: [`ConnectionLimits::max_connections`]. Past it a
//!   new connection is accepted only to be answered `503` with
//!   `Retry-After: 1` in one non-blocking write and closed
//!   ([`WhenFull::Refuse`]), or, for endpoints that must stay reachable,
//!   takes the place of the oldest connection that is not serving a request
//!   ([`WhenFull::EvictIdle`]). Either way the number of sockets, and so of
//!   file descriptors, stays at the cap, and the listen backlog keeps
//!   draining.
//! * **Time**: a request head must arrive within the header-read timeout; a
//!   connection with no request and no I/O is closed after the idle
//!   timeout; a response write that makes no progress is abandoned after
//!   the write timeout. None of them costs a timer or a clock read per
//!   request (see the `watchdog` and `conn` modules).
//! * **Memory per connection**: the request head is limited to
//!   [`ConnectionLimits::max_header_bytes`], which is also the size of
//!   hyper's read buffer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio::time::timeout;

use crate::config::{
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_BYTES, DEFAULT_MIN_WRITE_RATE, DEFAULT_WRITE_TIMEOUT,
};
use crate::conn::{self, Activity};
use crate::inflight::InFlight;
use crate::threads::ConnectionThreads;

/// What a server does with a new connection while
/// [`ConnectionLimits::max_connections`] are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhenFull {
    /// Answer `503 Service Unavailable` with `Retry-After: 1` and close it;
    /// the open connections are not touched. What the HTTP server provider
    /// does with `WHEN_FULL: refuse`.
    Refuse,
    /// Close the oldest open connection that is neither handling a request
    /// nor writing a response (an idle keep-alive connection, or one still
    /// sending its request head), else the oldest whose client does not
    /// read its answers (a response write blocked and making no progress
    /// for half the write timeout, no request in hand; closed with a
    /// reset), and
    /// serve the new one in its place; refuse as
    /// [`Refuse`](WhenFull::Refuse) does only when every connection is
    /// handling a request. Clients holding half-sent requests, or pipelining
    /// requests they never read the answers to, can then not lock out a
    /// health probe or other clients. What the admin endpoint does, and
    /// the HTTP server provider by default.
    EvictIdle,
}

/// Bounds on one HTTP/1.1 server's connections; see the
/// [module docs](self). The defaults are the HTTP server provider's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Connections open at once (at least one is always allowed).
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, an IPv6 /64) may hold open
    /// at once; past it, its new ones are refused as past
    /// [`max_connections`](Self::max_connections) with [`WhenFull::Refuse`],
    /// whatever [`when_full`](Self::when_full) says. `None`: no limit.
    pub max_connections_per_client: Option<usize>,
    /// What happens to a connection past [`max_connections`](Self::max_connections).
    pub when_full: WhenFull,
    /// How long a request head may take to arrive, counted from when the
    /// server starts waiting for it (so it also bounds the pause between
    /// keep-alive requests); `None`: no limit.
    pub header_read_timeout: Option<Duration>,
    /// How long a connection may go without a request in progress and
    /// without any byte read or written; `None`: no limit.
    pub idle_timeout: Option<Duration>,
    /// How long a response write may make no progress (the client does not
    /// read); `None`: no limit.
    pub write_timeout: Option<Duration>,
    /// The fewest bytes a second a blocked response write must average over
    /// each [`write_timeout`](Self::write_timeout), so that a client reading
    /// a segment now and then cannot hold a response in memory for ever;
    /// `None`: no minimum.
    pub min_write_rate: Option<u64>,
    /// The largest request head accepted, in bytes (at least 8 KiB is
    /// used); larger heads get `431`.
    pub max_header_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: Some(DEFAULT_MAX_CONNECTIONS / 2),
            when_full: WhenFull::Refuse,
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            write_timeout: Some(DEFAULT_WRITE_TIMEOUT),
            min_write_rate: Some(DEFAULT_MIN_WRITE_RATE),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl ConnectionLimits {
    /// The shortest of these timeouts, which a connection's watchdog is
    /// made for (`Watchdog::new` ticks at a quarter of it), or `None`
    /// without any.
    pub(crate) fn shortest_timeout(&self) -> Option<Duration> {
        [
            self.header_read_timeout,
            self.idle_timeout,
            self.write_timeout,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Serves HTTP/1.1 on `listener` within `limits`, answering every request
/// with `handler` (which gets the request head; the body is discarded).
/// Connections are served on the current tokio runtime. `server` names
/// this server in log lines (e.g. `"admin"`).
///
/// Never returns: drop the future, or abort the task running it, to stop;
/// every connection closes with it.
pub async fn serve<H>(
    listener: TcpListener,
    limits: ConnectionLimits,
    server: impl Into<Arc<str>>,
    handler: H,
) where
    H: Fn(&hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> + Send + Sync + 'static,
{
    let server = server.into();
    warn_if_over_file_limit(&server, limits.max_connections);
    let connector = Arc::new(PlainConnector {
        http: conn::http1_builder(&limits, None),
        handler: Arc::new(handler),
        limits,
        server,
    });
    let limits = connector.limits.clone();
    // Without a stop signal this only ends with the future.
    accept_until(listener, &connector, &limits, None, std::future::pending()).await;
}

/// Serves one accepted connection; implemented by each kind of server.
pub(crate) trait Connector: Send + Sync + 'static {
    /// Names the server in log lines.
    fn server(&self) -> &str;

    /// Places for one client's requests in flight, made when a client
    /// opens its first connection and shared by all its connections
    /// ([`Conn::client`]); `None` (the default) when requests are not
    /// counted per client.
    fn client_places(&self) -> Option<InFlight> {
        None
    }

    /// Serves `stream` until it closes, `conn.stop` fires or a timeout hits.
    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        conn: Conn,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// What the accept loop gives each connection.
pub(crate) struct Conn {
    /// Shared with the accept loop, which may evict the connection.
    pub(crate) activity: Arc<Activity>,
    /// The connection thread serving it (0 without connection threads).
    pub(crate) thread: usize,
    /// Fires (or is dropped) when the server stops: finish and close.
    pub(crate) stop: oneshot::Receiver<()>,
    /// Its client's places, from [`Connector::client_places`].
    pub(crate) client: Option<Arc<InFlight>>,
}

/// A [`Connector`] answering every request with a synchronous handler.
struct PlainConnector<H> {
    http: http1::Builder,
    handler: Arc<H>,
    limits: ConnectionLimits,
    server: Arc<str>,
}

impl<H> Connector for PlainConnector<H>
where
    H: Fn(&hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> + Send + Sync + 'static,
{
    fn server(&self) -> &str {
        &self.server
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, conn: Conn) {
        let handler = Arc::clone(&self.handler);
        let activity = Arc::clone(&conn.activity);
        let service = service_fn(move |req| {
            let _request = activity.request();
            std::future::ready(Ok::<_, Infallible>(handler(&req)))
        });
        conn::serve(
            stream,
            &self.http,
            service,
            &self.limits,
            conn.activity,
            conn.stop,
            &self.server,
        )
        .await;
    }
}

/// The connections a server has open.
pub(crate) struct OpenConnections {
    tasks: JoinSet<()>,
    /// Every connection not yet finished or evicted, by task.
    by_task: HashMap<Id, Open>,
    /// What each client holds (no entry without a connection).
    by_client: HashMap<IpAddr, Client>,
    /// Accept order, to find the oldest.
    next_seq: u64,
}

/// One client's connections.
struct Client {
    connections: usize,
    /// Its requests in flight, over all its connections.
    places: Option<Arc<InFlight>>,
}

struct Open {
    stop: oneshot::Sender<()>,
    activity: Arc<Activity>,
    abort: AbortHandle,
    seq: u64,
    client: IpAddr,
}

impl OpenConnections {
    fn new() -> OpenConnections {
        OpenConnections {
            tasks: JoinSet::new(),
            by_task: HashMap::new(),
            by_client: HashMap::new(),
            next_seq: 0,
        }
    }

    fn len(&self) -> usize {
        self.by_task.len()
    }

    /// Connections `client` holds.
    fn of_client(&self, client: &IpAddr) -> usize {
        self.by_client.get(client).map_or(0, |c| c.connections)
    }

    /// The places `client` has in flight: those its open connections
    /// share, else new ones from `connector`.
    fn places_of<C: Connector>(&self, client: &IpAddr, connector: &C) -> Option<Arc<InFlight>> {
        match self.by_client.get(client) {
            Some(known) => known.places.clone(),
            None => connector.client_places().map(Arc::new),
        }
    }

    /// Files a new connection, whose client's places are `places` (from
    /// [`places_of`](Self::places_of)).
    fn insert(&mut self, id: Id, open: Open, places: Option<Arc<InFlight>>) {
        self.by_client
            .entry(open.client)
            .or_insert(Client {
                connections: 0,
                places,
            })
            .connections += 1;
        self.by_task.insert(id, open);
    }

    /// Takes connection `id` out of the books, if it is there.
    fn remove(&mut self, id: &Id) -> Option<Open> {
        let open = self.by_task.remove(id)?;
        if let Some(known) = self.by_client.get_mut(&open.client) {
            known.connections -= 1;
            if known.connections == 0 {
                self.by_client.remove(&open.client);
            }
        }
        Some(open)
    }

    fn finished(&mut self, finished: Result<(Id, ()), JoinError>, server: &str) {
        let id = match &finished {
            Ok((id, ())) => *id,
            Err(e) => e.id(),
        };
        self.remove(&id);
        report_connection_panic(server, finished.map(|_| ()));
    }

    /// Closes the oldest idle connection, else the oldest whose client
    /// does not read its answers; `false` if there is neither (every
    /// connection is handling a request).
    fn evict_idle(&mut self) -> bool {
        let oldest = |unread: bool| {
            self.by_task
                .iter()
                .filter(|(_, open)| {
                    if unread {
                        open.activity.is_unread()
                    } else {
                        open.activity.is_idle()
                    }
                })
                .min_by_key(|(_, open)| open.seq)
                .map(|(id, _)| *id)
        };
        let (oldest, unread) = match oldest(false) {
            Some(id) => (Some(id), false),
            None => (oldest(true), true),
        };
        match oldest.and_then(|id| self.remove(&id)) {
            Some(open) => {
                // A client not reading would otherwise be sent what the
                // send buffer holds, at its pace, after the abort.
                if unread {
                    open.activity.reset_on_close();
                }
                open.abort.abort();
                true
            }
            None => false,
        }
    }

    /// Asks every connection to finish its request in flight and close,
    /// then waits up to `drain_timeout` before closing the rest.
    pub(crate) async fn drain(mut self, drain_timeout: Duration, server: &str) {
        self.by_client.clear();
        for (_, open) in self.by_task.drain() {
            // The connection may have ended on its own meanwhile; nothing to do.
            let _ = open.stop.send(());
        }
        let open = self.tasks.len();
        let drained = timeout(drain_timeout, async {
            while let Some(finished) = self.tasks.join_next().await {
                report_connection_panic(server, finished);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                server,
                still_open = self.tasks.len(),
                of = open,
                ?drain_timeout,
                "connections did not finish in time; closing them"
            );
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

fn report_connection_panic(server: &str, finished: Result<(), JoinError>) {
    if let Err(e) = finished
        && e.is_panic()
    {
        tracing::error!(server, error = %e, "an HTTP connection task panicked");
    }
}

/// How long the accept loop backs off after an error such as `EMFILE`,
/// which would otherwise repeat immediately and spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How often a full server logs that it refuses connections, at most.
const FULL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// The whole answer to a connection refused for being over the cap.
pub(crate) const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    retry-after: 1\r\n\
    connection: close\r\n\
    content-type: text/plain; charset=utf-8\r\n\
    content-length: 26\r\n\
    \r\n\
    Too many open connections\n";

/// Accepts connections on `listener` within `limits` and serves each with
/// `connector`, on `threads` if given, until `stop` resolves. Returns the
/// connections still open, for the caller to drain; the listening socket is
/// closed by then, so new connections fail fast.
pub(crate) async fn accept_until<C: Connector>(
    listener: TcpListener,
    connector: &Arc<C>,
    limits: &ConnectionLimits,
    threads: Option<&Arc<ConnectionThreads>>,
    stop: impl Future<Output = ()>,
) -> OpenConnections {
    let server = connector.server();
    let mut open = OpenConnections::new();
    let mut full_since_warning: Option<(Instant, u64)> = None;
    let mut client_refused_since_warning: Option<(Instant, u64)> = None;
    let mut failed_since_warning: Option<(Instant, u64)> = None;
    let mut stop = pin!(stop);
    loop {
        tokio::select! {
            biased;
            () = &mut stop => break,
            // Reaped before accepting, so the count is current when a new
            // connection is weighed against the cap.
            Some(finished) = open.tasks.join_next_with_id(), if !open.tasks.is_empty() => {
                open.finished(finished, server);
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let client = client_of(peer.ip());
                    if limits
                        .max_connections_per_client
                        .is_some_and(|most| open.of_client(&client) >= most.max(1))
                    {
                        refuse(stream);
                        note_client_refusal(&mut client_refused_since_warning, server, limits, client);
                        continue;
                    }
                    let at_cap = open.len() >= limits.max_connections.max(1);
                    if at_cap && !(limits.when_full == WhenFull::EvictIdle && open.evict_idle()) {
                        refuse(stream);
                        note_refusal(&mut full_since_warning, server, limits.max_connections, peer);
                        continue;
                    }
                    admit(&mut open, stream, client, connector, threads);
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!(server, error = %e, "accept failed for one connection");
                }
                Err(e) => {
                    // Out of descriptors, typically: retried every 50 ms,
                    // logged once in a while, not 20 lines a second.
                    at_most_every_so_often(&mut failed_since_warning, |unlogged| {
                        tracing::error!(
                            server,
                            error = %e,
                            failed_since_last_warning = unlogged,
                            "accepting connections failed; retrying (out of file descriptors? \
                             raise the limit with ulimit -n, or lower MAX_CONNECTIONS)"
                        );
                    });
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    drop(listener);
    open
}

/// Starts serving an accepted connection.
fn admit<C: Connector>(
    open: &mut OpenConnections,
    stream: TcpStream,
    client: IpAddr,
    connector: &Arc<C>,
    threads: Option<&Arc<ConnectionThreads>>,
) {
    let server = connector.server();
    let activity = Arc::new(Activity::default());
    let (stop, stop_rx) = oneshot::channel();
    let places = open.places_of(&client, &**connector);
    let task = {
        let client = places.clone();
        let activity = Arc::clone(&activity);
        let connector = Arc::clone(connector);
        match threads {
            Some(threads) => {
                let Some(stream) = hand_over(stream, connector.server()) else {
                    return;
                };
                let spawned = threads.spawn(&mut open.tasks, move |thread| async move {
                    if let Some(stream) = take_over(stream, connector.server()) {
                        let conn = Conn {
                            activity,
                            thread,
                            stop: stop_rx,
                            client,
                        };
                        connector.serve(stream, conn).await;
                    }
                });
                match spawned {
                    Ok(task) => task,
                    Err(e) => {
                        // Its owner stopped the threads under a live
                        // listener: nothing can serve the connection.
                        tracing::error!(
                            server,
                            error = %e,
                            "cannot serve an accepted connection; it is closed. Shut the \
                             HTTP servers down before their connection threads"
                        );
                        return;
                    }
                }
            }
            None => open.tasks.spawn(async move {
                let conn = Conn {
                    activity,
                    thread: 0,
                    stop: stop_rx,
                    client,
                };
                connector.serve(stream, conn).await;
            }),
        }
    };
    let seq = open.next_seq;
    open.next_seq += 1;
    open.insert(
        task.id(),
        Open {
            stop,
            activity,
            abort: task,
            seq,
            client,
        },
        places,
    );
}

/// The client a peer address counts for: an IPv4 address (also when mapped
/// into IPv6), or the /64 of an IPv6 one, since one host usually has a
/// whole /64 to pick addresses from.
fn client_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1_u128 << 64) - 1),
            )),
        },
    }
}

/// Logs refusals of clients past their share, as [`note_refusal`] does.
fn note_client_refusal(
    last: &mut Option<(Instant, u64)>,
    server: &str,
    limits: &ConnectionLimits,
    client: IpAddr,
) {
    at_most_every_so_often(last, |unlogged| {
        tracing::warn!(
            server,
            %client,
            max_connections_per_client = limits.max_connections_per_client,
            refused_since_last_warning = unlogged,
            "a client holds as many HTTP connections as one client may: its new ones are \
             answered 503 and closed; behind a proxy, where every client has the proxy's \
             address, raise MAX_CONNECTIONS_PER_CLIENT in the binding values"
        );
    });
}

/// Runs `log` with the number of calls it skipped, at most every
/// [`FULL_WARNING_EVERY`]: `last` is when it last ran and the calls since.
fn at_most_every_so_often(last: &mut Option<(Instant, u64)>, log: impl FnOnce(u64)) {
    let now = Instant::now();
    match last {
        Some((at, count)) if now.saturating_duration_since(*at) < FULL_WARNING_EVERY => {
            *count += 1;
        }
        _ => {
            log(last.map_or(0, |(_, count)| count));
            *last = Some((now, 0));
        }
    }
}

/// Answers a connection over the cap and closes it. One non-blocking
/// write: a client that does not read it just sees the connection close.
fn refuse(stream: TcpStream) {
    let _ = stream.try_write(BUSY_RESPONSE);
}

/// Logs refusals at most every [`FULL_WARNING_EVERY`], with how many there
/// were, so that a flood of connections cannot flood the log.
fn note_refusal(
    last: &mut Option<(Instant, u64)>,
    server: &str,
    max_connections: usize,
    peer: SocketAddr,
) {
    at_most_every_so_often(last, |unlogged| {
        tracing::warn!(
            server,
            max_connections,
            %peer,
            refused_since_last_warning = unlogged,
            "too many open HTTP connections: new ones are answered 503 and closed; \
             if this is legitimate load, raise MAX_CONNECTIONS in the binding values \
             (and the process's open-file limit, ulimit -n, with it)"
        );
    });
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

/// Takes an accepted connection off this runtime's reactor, so that its
/// readiness wakes the thread that serves it, not this one (which would
/// then have to hand every wake-up over). `None`, logged, if that fails.
fn hand_over(stream: TcpStream, server: &str) -> Option<std::net::TcpStream> {
    stream
        .into_std()
        .inspect_err(|e| tracing::warn!(server, error = %e, "cannot hand over an accepted connection; it is closed"))
        .ok()
}

/// Registers a handed-over connection with the reactor of the runtime
/// running this; `into_std` left the socket non-blocking, as this requires.
fn take_over(stream: std::net::TcpStream, server: &str) -> Option<TcpStream> {
    TcpStream::from_std(stream)
        .inspect_err(|e| tracing::warn!(server, error = %e, "cannot register an accepted connection; it is closed"))
        .ok()
}

/// The process's soft limit on open files, from `/proc/self/limits`
/// (`None` where that does not exist or cannot be read).
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Warns when one server alone may open more connections than the process
/// may open files: the cap would then not protect the other listeners.
pub(crate) fn warn_if_over_file_limit(server: &str, max_connections: usize) {
    if let Some(files) = open_files_limit()
        && max_connections as u64 >= files
    {
        tracing::warn!(
            server,
            max_connections,
            open_files_limit = files,
            "the connection cap is not below the process's open-file limit, so connections \
             can use up every file descriptor; lower MAX_CONNECTIONS or raise the limit (ulimit -n)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchdog::Watchdog;

    #[tokio::test]
    async fn eviction_takes_an_idle_connection_then_one_whose_answers_are_not_read() {
        let mut open = OpenConnections::new();
        let add = |open: &mut OpenConnections| {
            let activity = Arc::new(Activity::default());
            let abort = open.tasks.spawn(std::future::pending::<()>());
            let id = abort.id();
            let (stop, _) = oneshot::channel();
            let seq = open.next_seq;
            open.next_seq += 1;
            let kept = Arc::clone(&activity);
            let client = IpAddr::from([127, 0, 0, 1]);
            open.insert(
                id,
                Open {
                    stop,
                    activity,
                    abort,
                    seq,
                    client,
                },
                None,
            );
            (id, kept)
        };
        let (busy, busy_activity) = add(&mut open);
        let _handling = busy_activity.request();
        let (unread, unread_activity) = add(&mut open);
        unread_activity.set_write_stalled(true);
        let (idle, _) = add(&mut open);
        // The idle one goes first, though it is the newest.
        assert!(open.evict_idle());
        assert!(!open.by_task.contains_key(&idle));
        // Then the one whose client pipelines requests and reads nothing.
        assert!(open.evict_idle());
        assert!(!open.by_task.contains_key(&unread));
        // Never one handling a request.
        assert!(!open.evict_idle());
        assert!(open.by_task.contains_key(&busy));
    }

    #[test]
    fn a_client_is_an_ipv4_address_or_an_ipv6_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_of(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_of(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(
            client_of(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_of(ip("2001:db8:1:2::1")),
            client_of(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn the_busy_response_is_well_formed() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nretry-after: 1"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
    }

    #[test]
    fn the_watchdog_ticks_for_the_shortest_timeout() {
        let mut limits = ConnectionLimits {
            header_read_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(Duration::from_secs(2)),
            write_timeout: None,
            ..ConnectionLimits::default()
        };
        assert_eq!(limits.shortest_timeout(), Some(Duration::from_secs(2)));
        assert_eq!(
            Watchdog::period(Duration::from_secs(2)),
            Duration::from_millis(500),
            "a connection wakes at a quarter of its shortest timeout"
        );
        limits.header_read_timeout = None;
        limits.idle_timeout = None;
        assert_eq!(limits.shortest_timeout(), None);
    }

    #[test]
    fn the_open_file_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
