//! Request filters in front of an actor: the seam between this server and a
//! filter engine (Waxosuit's is the Proxy-Wasm host, `waxosuit-proxy-wasm`).
//!
//! The server knows nothing of any filter ABI. For a binding with a chain
//! ([`HttpServerProvider::set_filters`](crate::HttpServerProvider::set_filters)),
//! each request is read whole (within the binding's body limit), then:
//!
//! 1. every filter, in chain order, [opens](HttpFilter::open) a
//!    [`FilterStream`] and sees the [`FilterRequest`]; it may change it or
//!    answer in the actor's place ([`Verdict::Respond`]), which skips the
//!    actor and the filters after it;
//! 2. the actor is called with the request as the filters left it;
//! 3. the filters that saw the request see the [`FilterResponse`] in
//!    reverse order (the one that answered in the actor's place does not
//!    see its own answer) and may change it;
//! 4. the streams are dropped, which ends them.
//!
//! A filter that fails ([`FilterError`]) fails its request only: `500
//! Filter failed` (`504` when it did not resume the request in time), the
//! reason logged. A binding without filters takes none of this path.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
pub use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

/// A request as filters see it: complete, body included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path with its query string (`/a?b=c`), as HTTP/2's `:path`.
    pub path: String,
    /// The `Host` the client asked for (HTTP/2's `:authority`), or empty.
    pub authority: String,
    /// `http`: this server speaks plain HTTP/1.1.
    pub scheme: &'static str,
    /// Headers as received (hyper's map: names in lower case, a header sent
    /// several times keeps every value). Handed over, not copied.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// A response as filters see it: the actor's, or a filter's local answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterResponse {
    /// The status code.
    pub status: u16,
    /// Headers. `content-length` and `transfer-encoding` are ignored on the
    /// way out: the server frames the final body itself.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

/// What a filter decided about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass it on (changed or not) to the next filter, then the actor.
    Continue,
    /// Answer with this response instead of the actor.
    Respond(FilterResponse),
}

/// What every stream of one binding knows about where it runs.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The actor's `M…` key.
    pub actor: Arc<str>,
    /// The actor's name from its claims, or empty.
    pub actor_name: Arc<str>,
    /// The binding's name.
    pub binding: Arc<str>,
    /// The client's address, when the socket could tell.
    pub source: Option<SocketAddr>,
    /// The connection thread serving the request (0 without connection
    /// threads): an engine may keep per-thread state, as Envoy keeps one
    /// VM per worker.
    pub thread: usize,
    /// When the request's time is up (the binding's `REQUEST_TIMEOUT_MS`).
    pub deadline: Instant,
}

/// Why a filter failed a request. The client sees only the status.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The filter trapped, ran out of its time, fuel or memory, or broke
    /// its ABI; the reason says which.
    #[error("filter `{filter}` failed: {reason}")]
    Failed {
        /// The filter's name.
        filter: String,
        /// What went wrong, for the log.
        reason: String,
    },
    /// The filter paused the request and did not resume it before the
    /// request's deadline.
    #[error(
        "filter `{filter}` paused the request and did not resume it before the request \
         timeout; it waits for something that never came (a callout, a timer, a queue)"
    )]
    Stalled {
        /// The filter's name.
        filter: String,
    },
}

/// A filter of a chain: opens one [`FilterStream`] per request.
pub trait HttpFilter: Send + Sync + 'static {
    /// The filter's name, for log lines and `waxosuit up`'s output.
    fn name(&self) -> &str;

    /// Starts a stream for one request.
    fn open(&self, info: &StreamInfo) -> Box<dyn FilterStream>;
}

/// One request's passage through one filter. Dropping it ends the stream
/// (the engine's "done", "log" and "delete" callbacks).
#[async_trait]
pub trait FilterStream: Send {
    /// The request phase; it may change `request`.
    async fn request(&mut self, request: &mut FilterRequest) -> Result<Verdict, FilterError>;

    /// The response phase; it may change `response`.
    async fn response(&mut self, response: &mut FilterResponse) -> Result<(), FilterError>;
}

/// An ordered chain of filters; cheap to clone.
pub type FilterChain = Arc<[Arc<dyn HttpFilter>]>;
