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
//!    see its own answer) and may change it; the request, as the actor got
//!    it, is lent to them to read;
//! 4. the streams are dropped, which ends any a phase did not end.
//!
//! A phase that decides at once (most do) is a [`Step::Ready`]: the
//! filtered path then allocates no future per phase. Only a filter that
//! waits (a callout, a timer) returns a boxed future.
//!
//! A filter that fails ([`FilterError`]) fails its request only: `500
//! Filter failed` (`504` when it did not resume the request in time), the
//! reason logged. A binding without filters takes none of this path.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

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

/// The actor and binding a chain serves.
#[derive(Debug, Clone)]
pub struct FilterTarget {
    /// The actor's `M…` key.
    pub actor: Arc<str>,
    /// The actor's name from its claims, or empty.
    pub actor_name: Arc<str>,
    /// The binding's name.
    pub binding: Arc<str>,
}

/// What a stream knows about where it runs.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The actor and binding; one per connection, so the count each
    /// request bumps is not written from every core.
    pub target: Arc<FilterTarget>,
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

    /// Starts a stream for one request. The stream may borrow the filter:
    /// the server holds the chain for as long as the request lasts.
    fn open<'a>(&'a self, info: &StreamInfo) -> Box<dyn FilterStream + 'a>;
}

/// What a phase of a [`FilterStream`] came to: decided at once (most
/// filters decide without waiting), or a future to await (a filter that
/// paused for a callout, a timer or a queue).
///
/// Deciding at once costs no allocation; only a phase that has to wait
/// boxes its future.
pub enum Step<'a, T> {
    /// Decided without waiting.
    Ready(Result<T, FilterError>),
    /// Decided once this completes.
    Wait(Pin<Box<dyn Future<Output = Result<T, FilterError>> + Send + 'a>>),
}

impl<T> Step<'_, T> {
    /// The phase's outcome, waiting if it has to.
    pub async fn outcome(self) -> Result<T, FilterError> {
        match self {
            Step::Ready(outcome) => outcome,
            Step::Wait(future) => future.await,
        }
    }
}

impl<T> std::fmt::Debug for Step<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Ready(_) => "Step::Ready",
            Step::Wait(_) => "Step::Wait",
        })
    }
}

/// One request's passage through one filter. Dropping it ends the stream
/// (the engine's "done", "log" and "delete" callbacks) if the response
/// phase did not already.
pub trait FilterStream: Send {
    /// The request phase; it may change `request`.
    fn request<'a>(&'a mut self, request: &'a mut FilterRequest) -> Step<'a, Verdict>;

    /// The response phase; it may change `response`. `request` is the
    /// request as the actor received it (or as it was when a later filter
    /// answered in the actor's place), lent so the filter can still read
    /// it; it must be left as it was found.
    fn response<'a>(
        &'a mut self,
        request: &'a mut FilterRequest,
        response: &'a mut FilterResponse,
    ) -> Step<'a, ()>;
}

/// An ordered chain of filters; cheap to clone.
pub type FilterChain = Arc<[Arc<dyn HttpFilter>]>;
