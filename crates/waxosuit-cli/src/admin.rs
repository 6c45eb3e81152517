//! The admin endpoints of `waxosuit up --admin`: `/livez`, `/readyz`, `/metrics`.
//!
//! Served with the HTTP server provider's bounds
//! ([`waxosuit_cap_http_server::bounded`]): the same header-read, idle and
//! write timeouts as an actor's listener with default binding values, and
//! at most [`MAX_CONNECTIONS`] connections, each reading at most
//! [`MAX_HEADER_BYTES`] of request head. When all are open, the oldest one
//! that is not serving a request (a half-sent request, an idle keep-alive
//! connection) is closed to make room, so that clients holding connections
//! open cannot lock a liveness probe out, nor use up the process's file
//! descriptors and with them the actors' listeners.
//!
//! `/metrics` and `/readyz` describe the host, so the endpoint belongs on
//! loopback (`--admin 127.0.0.1:9090`, as every example says); any other
//! address is served, with a warning at start-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use waxosuit_cap_http_server::bounded::{self, ConnectionLimits, WhenFull};
use waxosuit_claims::display;

use crate::up::Status;

/// Connections the admin endpoint keeps open at once: probes and scrapes
/// need a handful.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Connections one client (an address, or an IPv6 /64) may hold: the kubelet
/// and a scraper come from addresses of their own, so one client holding
/// its share (reading slowly, say) leaves the probes room.
pub(crate) const MAX_CONNECTIONS_PER_CLIENT: usize = 8;

/// The slowest a client may read an answer, in bytes per second averaged
/// over the write timeout: probes and scrapers read at once, and a client
/// trickling through a large `/metrics` holds its memory for as long.
pub(crate) const MIN_WRITE_BYTES_PER_SEC: u64 = 32 * 1024;

/// The largest request head accepted, in bytes: the endpoints take no
/// parameters, so hyper's smallest buffer is plenty.
pub(crate) const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The admin endpoint's bounds: the HTTP server provider's timeouts, a
/// connection cap of [`MAX_CONNECTIONS`] that evicts idle connections when
/// full, [`MAX_CONNECTIONS_PER_CLIENT`] of them per client and answers read
/// at [`MIN_WRITE_BYTES_PER_SEC`] at least.
pub(crate) fn limits() -> ConnectionLimits {
    let mut limits = ConnectionLimits::default();
    limits.max_connections = MAX_CONNECTIONS;
    limits.max_connections_per_client = Some(MAX_CONNECTIONS_PER_CLIENT);
    limits.min_write_rate = Some(MIN_WRITE_BYTES_PER_SEC);
    limits.when_full = WhenFull::EvictIdle;
    limits.max_header_bytes = MAX_HEADER_BYTES;
    limits
}

/// Binds `addr` and serves the admin endpoints within [`limits`] until the
/// task is aborted (which closes every admin connection too).
pub(crate) async fn serve(
    addr: SocketAddr,
    status: Arc<Status>,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    serve_with(addr, status, limits()).await
}

async fn serve_with(
    addr: SocketAddr,
    status: Arc<Status>,
    limits: ConnectionLimits,
) -> Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot bind the admin address {addr}; choose another with --admin 127.0.0.1:PORT")
    })?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        tracing::warn!(
            %bound,
            "the admin endpoint listens on a non-loopback address: anyone who can reach it \
             reads /metrics and /readyz; use --admin 127.0.0.1:PORT unless a firewall or \
             network policy restricts who connects"
        );
    }
    let task = tokio::spawn(bounded::serve(listener, limits, "admin", move |req| {
        route(&status, req)
    }));
    Ok((bound, task))
}

fn route(status: &Status, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/livez" => reply(StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => {
            let (ready, detail) = readiness(status);
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(code, "text/plain", detail)
        }
        "/metrics" => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            status.host.metrics_text(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /livez, /readyz or /metrics\n".to_string(),
        ),
    }
}

/// Ready once the manifest is fully applied and, after the first health
/// round, while every actor and provider reports healthy; unready again
/// from the stop signal on.
fn readiness(status: &Status) -> (bool, String) {
    if status.draining.load(Ordering::Acquire) {
        return (
            false,
            "draining: stopping, finishing the requests in flight\n".to_string(),
        );
    }
    if !status.started.load(Ordering::Acquire) {
        return (
            false,
            "starting: actors and bindings are not all up yet\n".to_string(),
        );
    }
    let report = status.host.last_health();
    if !report.checked || report.all_healthy() {
        return (true, "ready\n".to_string());
    }
    (false, unready_detail(&report))
}

/// What `/readyz` says of an unhealthy round.
fn unready_detail(report: &waxosuit_host::HealthReport) -> String {
    let mut detail = String::from("not ready:\n");
    for (key, name, ok, message) in &report.actors {
        if !ok {
            // The actor wrote it: one escaped line, so it cannot fake the
            // lines of others or reach the reader's terminal.
            detail.push_str(&format!(
                "  actor {} ({key}): {}\n",
                display::escape(name, 64),
                display::escape(message, 1024)
            ));
        }
    }
    for (route, ok, message) in &report.providers {
        if !ok {
            detail.push_str(&format!(
                "  provider {} (binding `{}`): {}\n",
                route.capid,
                route.binding,
                display::escape(message, 1024)
            ));
        }
    }
    detail
}

fn reply(code: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

/// `PORT` (on 127.0.0.1) or a full address.
pub(crate) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|e| format!("`{s}` is neither a port nor an address like 127.0.0.1:9090: {e}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use waxosuit_host::Host;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(20);

    async fn start(limits: ConnectionLimits, started: bool) -> (SocketAddr, JoinHandle<()>) {
        let status = Arc::new(Status {
            host: Host::new().unwrap(),
            started: AtomicBool::new(started),
            draining: AtomicBool::new(false),
        });
        serve_with("127.0.0.1:0".parse().unwrap(), status, limits)
            .await
            .unwrap()
    }

    /// One request on a new connection: status code and body.
    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        tokio::time::timeout(PATIENCE, conn.read_to_end(&mut response))
            .await
            .expect("no response in time")
            .unwrap();
        let response = String::from_utf8_lossy(&response).into_owned();
        let code = response
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default();
        (code, body)
    }

    /// Sockets of this process whose local port is `port` (the server's side
    /// of its connections, and its listener): its open file descriptors for
    /// this endpoint, read from `/proc/self/fd`.
    fn server_sockets(port: u16) -> usize {
        let mut inodes = HashSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let (Some(local), Some(inode)) = (fields.get(1), fields.get(9)) else {
                    continue;
                };
                let local_port = local
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                if local_port == Some(port) && *inode != "0" {
                    inodes.insert(format!("socket:[{inode}]"));
                }
            }
        }
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| inodes.contains(&*target.to_string_lossy()))
            .count()
    }

    #[tokio::test]
    async fn the_endpoints_answer_as_before() {
        let (addr, task) = start(limits(), false).await;
        assert_eq!(get(addr, "/livez").await, (200, "ok\n".to_string()));
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.starts_with("starting"), "{body}");
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
        task.abort();
    }

    #[tokio::test]
    async fn readyz_turns_unready_when_draining_and_livez_stays_up() {
        let status = Arc::new(Status {
            host: Host::new().unwrap(),
            started: AtomicBool::new(true),
            draining: AtomicBool::new(false),
        });
        let (addr, task) = serve_with(
            "127.0.0.1:0".parse().unwrap(),
            Arc::clone(&status),
            limits(),
        )
        .await
        .unwrap();
        assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_string()));
        status.draining.store(true, Ordering::Release);
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.starts_with("draining"), "{body}");
        assert_eq!(get(addr, "/livez").await, (200, "ok\n".to_string()));
        task.abort();
    }

    #[test]
    fn the_limits_are_the_providers_timeouts_with_a_small_evicting_cap() {
        let provider = ConnectionLimits::default();
        let admin = limits();
        assert_eq!(admin.header_read_timeout, provider.header_read_timeout);
        assert_eq!(admin.idle_timeout, provider.idle_timeout);
        assert_eq!(admin.write_timeout, provider.write_timeout);
        assert!(admin.header_read_timeout.is_some());
        assert!(admin.idle_timeout.is_some() && admin.write_timeout.is_some());
        assert_eq!(admin.max_connections, MAX_CONNECTIONS);
        assert_eq!(admin.when_full, WhenFull::EvictIdle);
        assert_eq!(
            admin.max_connections_per_client,
            Some(MAX_CONNECTIONS_PER_CLIENT)
        );
        const { assert!(MAX_CONNECTIONS_PER_CLIENT * 4 <= MAX_CONNECTIONS) };
        assert_eq!(admin.min_write_rate, Some(MIN_WRITE_BYTES_PER_SEC));
    }

    /// One client holding connections it keeps busy (it reads its answers
    /// slowly, so none is idle or stalled and none may be evicted) took every
    /// place, and the kubelet's `/livez` got a 503 until the pod was
    /// restarted. Now it holds its share; another address is served.
    #[tokio::test]
    async fn one_client_cannot_take_every_admin_connection() {
        let (addr, task) = start(limits(), true).await;
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            held.push(conn);
        }
        // Past its share, the client is answered 503 and closed (the close
        // may reach it as a reset, its request unread).
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let _ = refused
            .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, refused.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        // Another address (all of 127/8 is loopback) is served at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut other = socket.connect(addr).await.unwrap();
        other
            .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(PATIENCE, other.read_to_end(&mut answer))
            .await
            .expect("answered in time")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        drop(held);
        task.abort();
    }

    /// What an actor says of its health is its own text: `/readyz` shows it
    /// on one escaped line, so it can neither add lines that pass for
    /// another actor's nor send escape codes to the terminal reading it.
    #[test]
    fn readyz_escapes_what_actors_and_providers_say() {
        let hostile = format!(
            "bad\n  actor good (MGOOD): ok\n\x1b]0;pwned\x07{}",
            "x".repeat(9000)
        );
        let report = waxosuit_host::HealthReport {
            checked: true,
            actors: vec![(
                waxosuit_runtime::ActorKey::new(
                    waxosuit_claims::KeyPair::generate(waxosuit_claims::KeyKind::Module)
                        .public_key(),
                )
                .unwrap(),
                "bad\nname".to_string(),
                false,
                hostile.clone(),
            )],
            providers: vec![(
                waxosuit_host::RouteKey::new("wascc:keyvalue", "default"),
                false,
                hostile,
            )],
        };
        let detail = unready_detail(&report);
        // The heading, one line per actor and provider, nothing else.
        assert_eq!(detail.lines().count(), 3, "{detail}");
        assert!(!detail.contains('\x1b'), "{detail}");
        assert!(detail.len() < 4 * 1024, "{} bytes", detail.len());
        assert!(detail.contains("actor bad\\nname ("), "{detail}");
    }

    #[tokio::test]
    async fn twice_the_connection_cap_of_half_requests_do_not_lock_out_livez() {
        let mut limits = limits();
        limits.max_connections = 8;
        // Every connection here is one client's (127.0.0.1): the share per
        // client is another test's.
        limits.max_connections_per_client = None;
        let (addr, task) = start(limits, true).await;
        let port = addr.port();

        // 16 clients that start a request and never finish it.
        let mut half = Vec::new();
        for _ in 0..16 {
            let mut conn = TcpStream::connect(addr).await.unwrap();
            conn.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
            half.push(conn);
        }
        // Let the server take them all in.
        let started = Instant::now();
        let mut closed = 0;
        while closed < 8 {
            assert!(started.elapsed() < PATIENCE, "only {closed} evicted");
            closed = 0;
            for conn in &mut half {
                let mut byte = [0u8; 1];
                if let Ok(Ok(0) | Err(_)) =
                    tokio::time::timeout(Duration::from_millis(5), conn.read(&mut byte)).await
                {
                    closed += 1;
                }
            }
        }
        let sockets = server_sockets(port);
        assert!(sockets <= 9, "{sockets} server sockets for a cap of 8");

        // A probe still gets through, at once rather than after a timeout.
        let probing = Instant::now();
        assert_eq!(get(addr, "/livez").await, (200, "ok\n".to_string()));
        assert_eq!(get(addr, "/readyz").await.0, 200);
        let answered = probing.elapsed();
        assert!(answered < Duration::from_secs(5), "{answered:?}");
        let sockets = server_sockets(port);
        assert!(sockets <= 9, "{sockets} server sockets for a cap of 8");
        eprintln!(
            "admin, cap 8: 16 half-requests, {closed} evicted, /livez and /readyz answered in \
             {answered:?}, {sockets} server sockets"
        );
        drop(half);
        task.abort();
    }
}
