//! [`Link`]: the connection to one Redis server, made when a call needs it
//! and replaced as soon as it is known to be dead.
//!
//! redis-rs' `ConnectionManager` reconnects in the background after a
//! failure and hands the *outcome of that attempt* to the next call: when
//! the attempt was made during an outage, the first call after the server
//! is back still gets the outage's "Connection refused", and only the one
//! after it succeeds. A host serving requests cannot afford that, so the
//! provider keeps its own connection:
//!
//! * The connection's driver task is spawned here, so the link learns the
//!   moment the server closes the connection (a restart, a crash): the
//!   next call does not even try the dead connection, it connects anew.
//! * A call that finds no usable connection connects **within the call**,
//!   bounded by the connection timeout: once the server is back, the first
//!   call succeeds; during an outage each call fails fast with the error of
//!   its own attempt, never a stale one. Calls that arrive while an attempt
//!   is under way wait for that attempt instead of starting their own.
//! * A connection that drops while a command is in flight is forgotten, and
//!   the caller may retry on a fresh one ([`Exchange::fresh`] says whether
//!   that would be a second attempt on a new connection anyway).
//!
//! [`Link::exchange`] runs one call's exchange on it (retrying once on a
//! new connection when that is safe, [`Repeat`]), bounded, inside one
//! client span named after the Redis command ([`Op`]), and [`Report`] turns
//! Redis failures into the errors actors see.
//! `waxosuit-cap-keyvalue-redis` and `waxosuit-cap-eventstreams-redis` both
//! use them, so the two backends recover and fail the same way.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod exchange;

pub use exchange::{Op, Repeat, Report};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, RedisError};

/// A connection in use and how to tell whether it is still alive.
#[derive(Clone)]
struct Live {
    conn: MultiplexedConnection,
    /// Set by the driver task when it ends: the server closed the
    /// connection, or it failed.
    closed: Arc<AtomicBool>,
    /// Which connection this is, so that a failure reported late does not
    /// forget a newer one.
    id: u64,
}

/// A connection handed to one call.
pub struct Exchange {
    /// The multiplexed connection; cheap to clone.
    pub conn: MultiplexedConnection,
    /// Made for this call (or while it waited), rather than reused from an
    /// earlier one.
    pub fresh: bool,
    id: u64,
}

/// The outcome of the latest connection attempt, behind the lock that
/// serialises attempts.
#[derive(Default)]
struct Attempts {
    /// Attempts finished so far.
    finished: u64,
    /// The error of the latest one, if it failed.
    last_error: Option<RedisError>,
}

/// The connection to one Redis server, shared by every binding with its URL.
pub struct Link {
    client: Client,
    connection_timeout: Duration,
    config: AsyncConnectionConfig,
    live: Mutex<Option<Live>>,
    /// Held while connecting, so that one attempt serves every call that
    /// arrives meanwhile.
    attempts: tokio::sync::Mutex<Attempts>,
    /// Copy of `attempts.finished`, readable without waiting for the lock.
    finished: AtomicU64,
    next_id: AtomicU64,
    /// Where the server is, as the command spans name it.
    server: Server,
}

/// The server's address for the spans' `server.address` and `server.port`:
/// host and port, or a Unix socket's path and no port.
#[derive(Debug, Default)]
struct Server {
    address: Option<String>,
    port: Option<u16>,
}

impl Server {
    fn of(client: &Client) -> Self {
        match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => Server {
                address: Some(host.clone()),
                port: Some(*port),
            },
            ConnectionAddr::Unix(path) => Server {
                address: Some(path.display().to_string()),
                port: None,
            },
            _ => Server::default(),
        }
    }
}

impl Link {
    /// A link that connects on first use: each attempt bounded by
    /// `connection_timeout`, each reply by `response_timeout`.
    pub fn new(client: Client, connection_timeout: Duration, response_timeout: Duration) -> Self {
        Link {
            server: Server::of(&client),
            client,
            connection_timeout,
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(connection_timeout))
                .set_response_timeout(Some(response_timeout)),
            live: Mutex::new(None),
            attempts: tokio::sync::Mutex::new(Attempts::default()),
            finished: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
        }
    }

    /// The current connection if it is still open.
    fn current(&self) -> Option<Live> {
        self.live
            .lock()
            .as_ref()
            .filter(|live| !live.closed.load(Ordering::Acquire))
            .cloned()
    }

    /// A connection for one exchange: the open one, or a new one made now
    /// (or by a call that was already connecting when this one arrived).
    ///
    /// # Errors
    ///
    /// The error of the connection attempt made for this call, or of the
    /// one it waited for: never the error of an attempt that ended before
    /// the call was made.
    pub async fn get(&self) -> Result<Exchange, RedisError> {
        if let Some(live) = self.current() {
            return Ok(Exchange {
                conn: live.conn,
                fresh: false,
                id: live.id,
            });
        }
        let seen = self.finished.load(Ordering::Acquire);
        let mut attempts = self.attempts.lock().await;
        if let Some(live) = self.current() {
            // Connected by the attempt this call waited for.
            return Ok(Exchange {
                conn: live.conn,
                fresh: true,
                id: live.id,
            });
        }
        if attempts.finished != seen
            && let Some(error) = &attempts.last_error
        {
            // An attempt finished while this call waited for the lock,
            // after the call was made, and failed: it answers this call too.
            return Err(error.clone());
        }
        let outcome = self.connect().await;
        attempts.finished += 1;
        self.finished.store(attempts.finished, Ordering::Release);
        match outcome {
            Ok(live) => {
                attempts.last_error = None;
                let exchange = Exchange {
                    conn: live.conn.clone(),
                    fresh: true,
                    id: live.id,
                };
                *self.live.lock() = Some(live);
                Ok(exchange)
            }
            Err(error) => {
                attempts.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Forgets the connection `exchange` used, unless a newer one has
    /// replaced it already: the next call connects anew.
    pub fn forget(&self, exchange: &Exchange) {
        let mut live = self.live.lock();
        if live.as_ref().is_some_and(|l| l.id == exchange.id) {
            *live = None;
        }
    }

    /// One connection attempt: socket, Redis handshake (`AUTH`, `SELECT`,
    /// …), and the driver task, bounded by the connection timeout.
    async fn connect(&self) -> Result<Live, RedisError> {
        let info = self.client.get_connection_info();
        let redis = info.redis_settings();
        let attempt = async {
            match info.addr() {
                ConnectionAddr::Tcp(host, port) => {
                    let stream = tokio::net::TcpStream::connect((host.as_str(), *port)).await?;
                    // Requests are small and answered one by one: do not
                    // let Nagle's algorithm hold them back.
                    stream.set_nodelay(true)?;
                    self.start(redis, stream).await
                }
                #[cfg(unix)]
                ConnectionAddr::Unix(path) => {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    self.start(redis, stream).await
                }
                other => Err(RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "this build cannot connect to that address",
                    format!("{other}; use redis:// or redis+unix://"),
                ))),
            }
        };
        match tokio::time::timeout(self.connection_timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.connection_timeout),
            ))),
        }
    }

    /// Hands `stream` to redis-rs for the handshake and spawns the driver
    /// task, which marks the connection closed when it ends.
    async fn start<S>(
        &self,
        redis: &redis::RedisConnectionInfo,
        stream: S,
    ) -> Result<Live, RedisError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, driver) =
            MultiplexedConnection::new_with_config(redis, stream, self.config.clone()).await?;
        let closed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&closed);
        // The driver ends when the server closes the connection, when it
        // fails, or when the last handle is dropped.
        tokio::spawn(async move {
            driver.await;
            flag.store(true, Ordering::Release);
        });
        Ok(Live {
            conn,
            closed,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// Whether `error` means the connection it came from must not be used
/// again: the server closed it, it failed for good, or a reply did not come
/// within the response timeout. The last matters when the server's machine
/// vanishes without resetting the connection (power loss, a partition, a
/// container given a new address): the socket stays open until TCP gives
/// up, about 15 minutes by default, and every call would wait out its
/// timeout on it meanwhile. A forgotten connection is replaced by the next
/// call's attempt, which fails fast while the server is unreachable.
pub fn connection_is_dead(error: &RedisError) -> bool {
    error.is_unrecoverable_error() || error.is_connection_dropped() || error.is_timeout()
}
