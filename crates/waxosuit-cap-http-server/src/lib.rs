//! The `wascc:http_server` capability provider: actors answer HTTP.
//!
//! # A guided tour
//!
//! * [`HttpServerProvider`] implements [`CapabilityProvider`]. The host calls
//!   [`start`](waxosuit_provider::CapabilityProvider::start) once with the
//!   [`ActorDispatcher`] the provider uses to call actors back; each
//!   [`bind_actor`](waxosuit_provider::CapabilityProvider::bind_actor) then
//!   opens **one listener for that actor binding**, as waSCC did, on the
//!   binding's [`ADDRESS`] and [`PORT`].
//! * Every request becomes a [`Request`](waxosuit_codec::http::Request)
//!   (method, path, query string without `?`, lower-case headers with
//!   repeated values joined by `", "`, body), is sent to the actor as
//!   [`HandleRequest`](waxosuit_codec::http::OP_HANDLE_REQUEST), and the
//!   actor's [`Response`](waxosuit_codec::http::Response) becomes the HTTP
//!   response. On this hot path the MessagePack is written and read in
//!   place by the codec
//!   ([`RequestWriter`](waxosuit_codec::http::RequestWriter),
//!   [`ResponseView`](waxosuit_codec::http::ResponseView)) rather than
//!   through its structs: the same bytes and the same accepted inputs,
//!   without a `HashMap`, a `String` per header or a copy of the body.
//! * Failures never reach the client as actor internals: an actor error or
//!   trap is `500 Failed to handle request`, a reply that is not a valid
//!   `Response` is `500 Malformed response from actor`, and the reason is
//!   logged with `tracing::error!` naming the actor (ten lines per 10 s a
//!   listener at most, then a count: `failures` module).
//! * When a tracing layer is installed, each request is an OpenTelemetry
//!   server span that continues the client's W3C `traceparent` and holds
//!   the actor call, so the host's actor span is its child; a `5xx` marks
//!   it as an error, with the reason when the server knows it. Without one
//!   nothing is looked up or recorded. The headers still reach the actor.
//! * Every resource a client or an actor can make the server spend is
//!   bounded, with a default and a binding value to change it
//!   (`docs/http-server.md` has the table):
//!   * per request: [`MAX_BODY_BYTES`] (`413`; no larger than the actor's
//!     payload limit, [`ACTOR_MAX_PAYLOAD`]), [`REQUEST_TIMEOUT_MS`] (`408`
//!     for a slow body, `504` for a slow actor), [`MAX_HEADERS`] and
//!     [`MAX_HEADER_BYTES`] (`431`). The body is read straight into the
//!     MessagePack request, never held twice;
//!   * per reply: [`MAX_REPLY_HEADERS`] and [`MAX_REPLY_HEADER_BYTES`]
//!     (`500` with a short reason, and a log line naming the actor and the
//!     value to raise), checked before anything is built per header;
//!   * per listener: [`MAX_CONNECTIONS`] (past it, the oldest connection
//!     not handling a request is closed to make room, or with
//!     [`WHEN_FULL`] `refuse` the new one gets `503` with `Retry-After`)
//!     and [`MAX_IN_FLIGHT`] (`503` with `Retry-After`);
//!   * per client (an IPv4 address, an IPv6 /64): a share of each,
//!     [`MAX_CONNECTIONS_PER_CLIENT`] and [`MAX_IN_FLIGHT_PER_CLIENT`]
//!     (half by default), so one address holding connections or trickling
//!     bodies leaves room for the others;
//!   * per connection: [`HEADER_READ_TIMEOUT_MS`], [`IDLE_TIMEOUT_MS`],
//!     [`WRITE_TIMEOUT_MS`] and [`MIN_WRITE_BYTES_PER_SEC`] (the connection
//!     is closed).
//!
//!   The [`bounded`] module serves other small HTTP endpoints of the host
//!   with the same connection bounds.
//! * A binding may have an ordered chain of request filters in front of its
//!   actor ([`HttpServerProvider::set_host_filters`],
//!   [`HttpServerProvider::set_filters`]; the [`filter`] module has the
//!   contract). Such requests are read whole and pass through the filters
//!   both ways; a binding without filters never takes that path.
//! * [`ADDRESS`] defaults to **loopback** (`127.0.0.1`), where waSCC
//!   listened on `0.0.0.0`; a binding without `ADDRESS` is logged as a
//!   warning saying so.
//! * [`HttpServerProvider::bound_address`] tells the host which address a
//!   binding actually got, which matters with `PORT=0`.
//! * [`remove_actor`](waxosuit_provider::CapabilityProvider::remove_actor)
//!   and [`shutdown`](waxosuit_provider::CapabilityProvider::shutdown) stop
//!   gracefully: the socket closes at once, requests in flight finish, and
//!   whatever is still open after [`DRAIN_TIMEOUT_MS`] is closed.
//!
//! Connections are served by hyper's HTTP/1.1 server with keep-alive and
//! `TCP_NODELAY`. Listeners accept on the host's tokio runtime; each
//! connection is then served, for its whole life, on one of a set of
//! [`ConnectionThreads`]: single-worker runtimes, one per core by default,
//! so that a request and the actor call it makes stay on one core. Actor
//! calls, and the host calls they make, run on them, so resources other
//! providers open lazily during a request are registered there too: the
//! embedder, which alone knows when every provider is stopped, owns the
//! set. It creates one, gives it to each HTTP server
//! ([`HttpServerProvider::with_shared_threads`]) and shuts it down last;
//! a provider made with [`HttpServerProvider::new`] owns a set of its own
//! and stops it in its `shutdown`.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use waxosuit_cap_http_server::HttpServerProvider;
//! use waxosuit_codec::http::Response;
//! use waxosuit_provider::{ActorDispatcher, BindRequest, CapabilityProvider, DispatchError};
//!
//! /// Stands in for the host: every actor answers `200 Hello`.
//! struct Hello;
//!
//! #[async_trait]
//! impl ActorDispatcher for Hello {
//!     async fn dispatch(&self, _actor: &str, _op: &str, _payload: Vec<u8>)
//!         -> Result<Vec<u8>, DispatchError> {
//!         let reply = Response { body: b"Hello".to_vec(), ..Response::ok() };
//!         Ok(waxosuit_codec::serialize(&reply).expect("a Response always encodes"))
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = HttpServerProvider::new();
//! provider.start(Arc::new(Hello)).await?;
//! provider
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([
//!             ("ADDRESS".to_string(), "127.0.0.1".to_string()),
//!             ("PORT".to_string(), "0".to_string()),
//!         ]),
//!     })
//!     .await?;
//! let addr = provider.bound_address("MACTOR").expect("just bound");
//! println!("actor MACTOR listening on {addr}");
//! provider.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The codec's documentation says a repeated header keeps its last value,
//! which is what waSCC's actix server did; this provider joins the values
//! instead, so that nothing the client sent is lost.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod bounded;
mod config;
mod conn;
mod failures;
pub mod filter;
mod filtered;
mod held;
mod inflight;
mod serve;
mod spans;
mod threads;
mod watchdog;

/// Entry points for the fuzz suite (`fuzz/`, docs/fuzzing.md); not an API.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::Bytes;
    use http_body_util::Full;

    use crate::config::ReplyLimits;

    /// What a client would get for `reply` (an actor's `HandleRequest`
    /// answer) under the given header limits.
    pub fn reply_to_http(
        reply: Vec<u8>,
        max_headers: usize,
        max_header_bytes: usize,
    ) -> hyper::Response<Full<Bytes>> {
        let limits = ReplyLimits {
            max_headers,
            max_header_bytes,
        };
        let log = crate::failures::FailureLog::default();
        crate::serve::reply_to_http("fuzz", "fuzz", reply, &limits, &log).map(Full::new)
    }
}

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::http::{OP_HANDLE_REQUEST, SERVER_CAPABILITY_ID};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, Health, ProviderCall, ProviderError,
};

pub use config::{
    ACTOR_MAX_PAYLOAD, ADDRESS, DEFAULT_ADDRESS, DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_REPLY_HEADER_BYTES, DEFAULT_MAX_REPLY_HEADERS, DEFAULT_MIN_WRITE_RATE,
    DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_WRITE_TIMEOUT, DRAIN_TIMEOUT_MS,
    HEADER_READ_TIMEOUT_MS, IDLE_TIMEOUT_MS, MAX_BODY_BYTES, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_CLIENT, MAX_HEADER_BYTES, MAX_HEADERS, MAX_IN_FLIGHT,
    MAX_IN_FLIGHT_PER_CLIENT, MAX_REPLY_HEADER_BYTES, MAX_REPLY_HEADERS, MAX_REPLY_HEADERS_LIMIT,
    MIN_WRITE_BYTES_PER_SEC, PORT, REQUEST_TIMEOUT_MS, WHEN_FULL, WRITE_TIMEOUT_MS,
};

use config::{ListenerConfig, config_error};
use filter::{FilterChain, HttpFilter};
use inflight::InFlight;
use serve::{ActorConnector, ActorService};
pub use threads::ConnectionThreads;

/// The binding a listener serves: (actor key, binding name).
type ListenerKey = (String, String);

/// A running listener of one actor binding.
struct Listener {
    addr: SocketAddr,
    /// Sending `true` (or dropping it) starts the graceful stop.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The `wascc:http_server` provider. See the [crate docs](crate).
///
/// Dropping it without calling
/// [`shutdown`](CapabilityProvider::shutdown) still stops the listeners
/// gracefully, in the background.
pub struct HttpServerProvider {
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
    listeners: Mutex<HashMap<ListenerKey, Listener>>,
    threads: Threads,
    filters: RwLock<Filters>,
}

/// The filter chains bindings get when they are bound (see [`filter`]).
#[derive(Default)]
struct Filters {
    /// In front of every binding, first.
    host: Vec<Arc<dyn HttpFilter>>,
    /// In front of one binding, after the host's.
    binding: HashMap<ListenerKey, Vec<Arc<dyn HttpFilter>>>,
}

impl Filters {
    fn chain(&self, key: &ListenerKey) -> FilterChain {
        self.host
            .iter()
            .chain(self.binding.get(key).into_iter().flatten())
            .cloned()
            .collect()
    }
}

/// Where a provider serves its connections.
enum Threads {
    /// On the tokio runtime that binds the actor.
    Binder,
    /// On a set the embedder owns, shares and shuts down.
    Shared(Arc<ConnectionThreads>),
    /// On a set of the provider's own, shut down with it; replaced by a
    /// new one if the provider binds again after its shutdown.
    Own {
        count: usize,
        set: Mutex<Arc<ConnectionThreads>>,
    },
}

impl Default for HttpServerProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for HttpServerProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let listeners: Vec<(ListenerKey, SocketAddr)> = self
            .listeners
            .lock()
            .iter()
            .map(|(key, l)| (key.clone(), l.addr))
            .collect();
        f.debug_struct("HttpServerProvider")
            .field("listeners", &listeners)
            .finish_non_exhaustive()
    }
}

impl HttpServerProvider {
    /// A provider with no listeners; they open as actors are bound. Its
    /// connections are served on connection threads of its own, one per
    /// core ([`std::thread::available_parallelism`]), started with its first
    /// listener and stopped by its
    /// [`shutdown`](CapabilityProvider::shutdown).
    ///
    /// Fine for a provider alone. A host running several providers should
    /// give them one set it owns instead
    /// ([`with_shared_threads`](Self::with_shared_threads)): other
    /// providers' I/O started during actor calls ends up on these threads
    /// too, and this provider's shutdown would stop it.
    #[must_use]
    pub fn new() -> HttpServerProvider {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        HttpServerProvider::with_connection_threads(cores)
    }

    /// As [`new`](Self::new), on `count` connection threads of its own; with
    /// 0, on the tokio runtime that binds the actor instead (which then has
    /// to be multi-threaded for the host's inline actor calls to be used).
    #[must_use]
    pub fn with_connection_threads(count: usize) -> HttpServerProvider {
        let threads = match count {
            0 => Threads::Binder,
            count => Threads::Own {
                count,
                set: Mutex::new(Arc::new(ConnectionThreads::new(count))),
            },
        };
        HttpServerProvider::serving_on(threads)
    }

    /// A provider whose connections are served on `threads`, which the
    /// caller owns: it may give the same set to other providers, and shuts
    /// it down ([`ConnectionThreads::shutdown`]) once every provider using
    /// it has been shut down. This provider's own shutdown leaves it running.
    #[must_use]
    pub fn with_shared_threads(threads: Arc<ConnectionThreads>) -> HttpServerProvider {
        HttpServerProvider::serving_on(Threads::Shared(threads))
    }

    fn serving_on(threads: Threads) -> HttpServerProvider {
        HttpServerProvider {
            dispatcher: RwLock::new(None),
            listeners: Mutex::new(HashMap::new()),
            threads,
            filters: RwLock::new(Filters::default()),
        }
    }

    /// The connection threads to serve a new listener on, started if need
    /// be; `None` to serve on the binding runtime.
    fn threads(&self) -> Result<Option<Arc<ConnectionThreads>>, ProviderError> {
        let threads = match &self.threads {
            Threads::Binder => return Ok(None),
            Threads::Shared(threads) => Arc::clone(threads),
            Threads::Own { count, set } => {
                let mut set = set.lock();
                if set.is_shut_down() {
                    *set = Arc::new(ConnectionThreads::new(*count));
                }
                Arc::clone(&set)
            }
        };
        let cannot = |reason: String| ProviderError::Internal {
            capid: SERVER_CAPABILITY_ID.to_string(),
            message: reason,
        };
        if threads.is_shut_down() {
            return Err(cannot(
                "the HTTP connection threads this provider was given have been shut down by \
                 their owner; shut them down only after every HTTP server using them, or give \
                 the provider a running set"
                    .to_string(),
            ));
        }
        threads.ensure_started().map_err(|e| {
            cannot(format!(
                "cannot start {} HTTP connection threads: {e}; lower the thread count, or \
                 raise the process's thread limit",
                threads.len()
            ))
        })?;
        Ok(Some(threads))
    }

    /// The address `actor` is served on: its `default` binding's, or else
    /// that of its binding whose name sorts first. `None` if not bound.
    ///
    /// With `PORT=0` this is where to learn the port the system picked.
    pub fn bound_address(&self, actor: &str) -> Option<SocketAddr> {
        self.bound_addresses(actor)
            .into_iter()
            .min_by(|(a, _), (b, _)| (a != "default", a).cmp(&(b != "default", b)))
            .map(|(_, addr)| addr)
    }

    /// Every binding of `actor` with the address it is served on, sorted by
    /// binding name.
    pub fn bound_addresses(&self, actor: &str) -> Vec<(String, SocketAddr)> {
        let mut found: Vec<(String, SocketAddr)> = self
            .listeners
            .lock()
            .iter()
            .filter(|((a, _), _)| a == actor)
            .map(|((_, binding), l)| (binding.clone(), l.addr))
            .collect();
        found.sort();
        found
    }

    /// Puts `chain` in front of every binding bound from now on, before the
    /// binding's own filters ([`set_filters`](Self::set_filters)). Bindings
    /// already listening keep the chain they were bound with.
    pub fn set_host_filters(&self, chain: Vec<Arc<dyn HttpFilter>>) {
        self.filters.write().host = chain;
    }

    /// Puts `chain` in front of `actor`'s `binding` when it is bound, after
    /// the host's filters. An empty chain removes the binding's own.
    pub fn set_filters(&self, actor: &str, binding: &str, chain: Vec<Arc<dyn HttpFilter>>) {
        let key = (actor.to_string(), binding.to_string());
        let mut filters = self.filters.write();
        if chain.is_empty() {
            filters.binding.remove(&key);
        } else {
            filters.binding.insert(key, chain);
        }
    }

    /// The names of the filters `actor`'s `binding` gets (or got), in the
    /// order requests meet them.
    pub fn filter_names(&self, actor: &str, binding: &str) -> Vec<String> {
        let key = (actor.to_string(), binding.to_string());
        self.filters
            .read()
            .chain(&key)
            .iter()
            .map(|f| f.name().to_string())
            .collect()
    }

    fn dispatcher(&self) -> Option<Arc<dyn ActorDispatcher>> {
        self.dispatcher.read().clone()
    }
}

/// Waits for a stopped listener's drain to end; a panic there is logged,
/// since the listener is gone either way.
async fn join_listener(key: &ListenerKey, task: JoinHandle<()>) {
    if let Err(e) = task.await {
        tracing::error!(actor = %key.0, binding = %key.1, error = %e, "HTTP listener task failed");
    }
}

#[async_trait]
impl CapabilityProvider for HttpServerProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(SERVER_CAPABILITY_ID)
            .name("Waxosuit HTTP Server")
            .long_description(
                "Serves HTTP/1.1 on one listener per bound actor (binding values ADDRESS, PORT) \
                 and delivers each request to the actor as HandleRequest",
            )
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .with_operation(
                OP_HANDLE_REQUEST,
                OperationDirection::ToActor,
                "An inbound HTTP request; the actor replies with a Response",
            )
            .build()
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *self.dispatcher.write() = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let config = ListenerConfig::from_bind(&request)?;
        let dispatcher = self.dispatcher().ok_or_else(|| ProviderError::Internal {
            capid: SERVER_CAPABILITY_ID.to_string(),
            message: "bind_actor was called before start; the provider has no dispatcher yet"
                .to_string(),
        })?;
        let key = (request.actor.clone(), request.binding.clone());
        // Held across the (non-blocking) bind so two concurrent binds of the
        // same binding cannot both open a listener.
        let mut listeners = self.listeners.lock();
        if let Some(existing) = listeners.get(&key) {
            return Err(config_error(
                &request,
                "binding",
                format!(
                    "`{}` is already bound and listening on {}; remove it before binding again",
                    request.binding, existing.addr
                ),
            ));
        }
        let listener = serve::bind(config.addr).map_err(|e| {
            // Blame the value the operator has to change.
            let key = if e.kind() == std::io::ErrorKind::AddrNotAvailable {
                ADDRESS
            } else {
                PORT
            };
            config_error(
                &request,
                key,
                format!("cannot listen on {}: {e}", config.addr),
            )
        })?;
        let addr = listener.local_addr().map_err(|e| {
            config_error(
                &request,
                PORT,
                format!("cannot read the address bound for {}: {e}", config.addr),
            )
        })?;
        let threads = self.threads()?;
        if config.address_defaulted {
            tracing::warn!(
                actor = %request.actor,
                binding = %request.binding,
                %addr,
                "no ADDRESS in the binding values: listening on loopback only, so other \
                 machines cannot connect. waSCC listened on 0.0.0.0 (all interfaces) by \
                 default; add `ADDRESS: 0.0.0.0` to the binding's values to serve the network"
            );
        }
        bounded::warn_if_over_file_limit(
            &format!("actor {} (binding {})", request.actor, request.binding),
            config.connections.max_connections,
        );
        let service = ActorService {
            actor: Arc::from(request.actor.as_str()),
            name: Arc::from(
                request
                    .values
                    .get(waxosuit_codec::core::CONFIG_WASCC_CLAIMS_NAME)
                    .map_or("", String::as_str),
            ),
            dispatcher,
            max_body_bytes: config.max_body_bytes,
            max_payload: config.max_payload,
            request_timeout: config.request_timeout,
            reply: config.reply,
            in_flight: Arc::new(InFlight::new(
                config.max_in_flight,
                threads.as_ref().map_or(1, |t| t.len()),
            )),
            per_client: config.max_in_flight_per_client,
            client_refusals: Arc::default(),
            failures: Arc::default(),
            refusals: Arc::default(),
            binding: Arc::from(request.binding.as_str()),
            filters: self.filters.read().chain(&key),
        };
        let connector = Arc::new(ActorConnector::new(service, &config, &request.binding));
        let drain_timeout = config.drain_timeout;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            serve::run_listener(listener, connector, drain_timeout, threads, stop_rx).await;
        });
        tracing::info!(actor = %request.actor, binding = %request.binding, %addr, "HTTP server listening");
        listeners.insert(key, Listener { addr, stop, task });
        Ok(())
    }

    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let key = (actor.to_string(), binding.to_string());
        let listener = self
            .listeners
            .lock()
            .remove(&key)
            .ok_or_else(|| ProviderError::not_bound(SERVER_CAPABILITY_ID, actor, binding))?;
        // If this call is cancelled from here on, the listener still drains
        // in the background: the signal is sent and the task is detached.
        listener.stop.send_replace(true);
        join_listener(&key, listener.task).await;
        tracing::info!(actor, binding, addr = %listener.addr, "HTTP server stopped");
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        // Actors never call this provider; it only calls them.
        Err(ProviderError::unknown_operation(
            SERVER_CAPABILITY_ID,
            &call.operation,
        ))
    }

    async fn health(&self) -> Health {
        // A listener is removed from the map before it is told to stop, so a
        // finished task still in the map died on its own.
        let dead: Vec<String> = self
            .listeners
            .lock()
            .iter()
            .filter(|(_, l)| l.task.is_finished())
            .map(|((actor, binding), l)| {
                format!("actor {actor} (binding `{binding}`) on {}", l.addr)
            })
            .collect();
        if dead.is_empty() {
            Health::healthy()
        } else {
            Health::unhealthy(format!(
                "HTTP listener stopped unexpectedly: {}",
                dead.join("; ")
            ))
        }
    }

    async fn shutdown(&self) {
        let all: Vec<(ListenerKey, Listener)> = self.listeners.lock().drain().collect();
        // Signal every listener before waiting on any, so they drain in
        // parallel and shutdown takes one drain timeout, not the sum.
        for (_, listener) in &all {
            listener.stop.send_replace(true);
        }
        for (key, listener) in all {
            join_listener(&key, listener.task).await;
        }
        if let Threads::Own { set, .. } = &self.threads {
            // From async code this does not wait: the threads end in the
            // background, their connections already drained.
            let set = Arc::clone(&set.lock());
            set.shutdown(std::time::Duration::ZERO);
        }
    }
}
