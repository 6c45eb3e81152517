//! The `wascc:http_client` provider of Waxosuit: outbound HTTP(S) for
//! actors, behind a per-binding egress allowlist.
//!
//! An actor sends `PerformRequest` with a [`Request`] whose `path` is the
//! full URL; the provider performs it and replies with a [`Response`]. What
//! makes this provider more than a thin client is that an actor is
//! untrusted code: it must not be able to reach the host's loopback
//! services, the private network or the cloud metadata endpoint just
//! because it holds the `wascc:http_client` claim.
//!
//! # A guided tour
//!
//! * [`HttpClientProvider::new`] builds the provider; register it with the
//!   host like any [`CapabilityProvider`]. Each (actor, binding) pair gets
//!   its own pooled client (HTTP/1.1 over plain TCP or rustls with the
//!   Mozilla roots) when bound, dropped with its pooled connections on
//!   [`remove_actor`](CapabilityProvider::remove_actor).
//! * **Configuration** (binding values):
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`ALLOWED_HOSTS`] | *(empty: deny all)* | comma list of destinations the actor may reach |
//!   | [`TIMEOUT_MS`] | `30000` | total time for a call, redirects and body included |
//!   | [`MAX_REDIRECTS`] | `5` | redirects followed before the call fails |
//!   | [`MAX_RESPONSE_BYTES`] | `16777216` | largest response body accepted (never more than the actor accepts, less 64 KiB for the headers) |
//!   | [`MAX_CONNECTIONS`] | `64` | connections the binding holds open, in use or idle in its pool (1 to 4096) |
//!   | [`IDLE_TIMEOUT_MS`] | `30000` | how long a pooled connection may stay idle before it is closed |
//!
//! * **Egress policy.** `ALLOWED_HOSTS` is **deny by default**: a binding
//!   without it (or with it empty) cannot reach anything. Entries are
//!   exact host names (`api.example.com`), subdomain wildcards
//!   (`*.example.com`, which does not match `example.com` itself), IP
//!   addresses (`10.1.2.3`, `::1`), CIDRs (`10.0.0.0/8`) and `*` for any
//!   *public* host. Every destination, including every redirect hop, is
//!   checked twice:
//!   1. the URL's host against the entries, before anything is sent;
//!   2. each address the name resolves to, resolved by the provider itself
//!      right before connecting. Loopback, link-local, private-use,
//!      unique-local, unspecified, CGNAT, multicast, reserved and cloud
//!      metadata (`169.254.169.254`, `fd00:ec2::254`) addresses are
//!      refused unless an IP/CIDR entry contains the address or an exact
//!      host-name entry names the host; `*` and wildcards only ever reach
//!      public addresses, and `metadata.google.internal` is refused unless
//!      named exactly. The connection goes to the address that passed the
//!      check, so a DNS answer that changes between check and connect
//!      (rebinding) cannot redirect it; the `Host` header and TLS SNI keep
//!      the name.
//!
//!   Refusals reach the actor as a [`ProviderError::Backend`] naming the
//!   actor, the binding, the host and what to add to the binding's values.
//! * **Requests.** The method defaults to `GET` when empty (`CONNECT` is
//!   refused); `queryString`, when not empty, is appended to the URL with
//!   `?`, or with `&` if the URL already has a query; a URL fragment is
//!   dropped. The body is sent for every method that has one (the 2020
//!   provider sent it only for `POST`). The actor's `Host`,
//!   `Content-Length`, `Transfer-Encoding` and `Connection` headers are
//!   ignored: the provider sets them from the URL and body.
//! * **Redirects** (301, 302, 303, 307, 308) are followed by the provider,
//!   each hop checked like the first; 303, and 301/302 after a `POST`,
//!   continue as a body-less `GET`, as browsers do. `Authorization`,
//!   `Cookie` and `Proxy-Authorization` are dropped when a redirect leaves
//!   the original scheme, host and port. A redirect from `https` to plain
//!   `http` is refused: the request's other headers and its body would
//!   follow it in clear text.
//! * **Connections.** Each binding holds at most `MAX_CONNECTIONS` open,
//!   counting those idle in its pool (closed after `IDLE_TIMEOUT_MS`); a call that
//!   needs one more waits up to half its `TIMEOUT_MS` for a place, then
//!   fails naming the limit. Making a connection (TCP and TLS) takes at most
//!   `TIMEOUT_MS`, also when hyper finishes it in the background for a
//!   later request.
//! * **Replies** carry the numeric status, its canonical reason phrase,
//!   the headers (lower-case names; a header received several times has
//!   its values joined with `", "`; a value that is not UTF-8 is sent as
//!   base64, as in 2020) and the body, read incrementally and refused as
//!   soon as it exceeds `MAX_RESPONSE_BYTES`. The answer to a `HEAD`, and
//!   a `204` or `304`, has no body whatever its `Content-Length` says.
//! * **Traces.** When a tracing layer is installed, each request sent (each
//!   redirect hop) is an OpenTelemetry client span, and its W3C
//!   `traceparent`/`tracestate` replace the actor's, so the server called
//!   continues the host's trace. Without one the headers are the actor's.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_http_client::{ALLOWED_HOSTS, HttpClientProvider};
//! use waxosuit_codec::http::{CLIENT_CAPABILITY_ID, OP_PERFORM_REQUEST, Request};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = HttpClientProvider::new();
//! client
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([(ALLOWED_HOSTS.to_string(), "api.example.com".to_string())]),
//!     })
//!     .await?;
//! let request = Request {
//!     method: "GET".into(),
//!     path: "http://169.254.169.254/latest/meta-data/".into(),
//!     ..Request::default()
//! };
//! let refused = client
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_PERFORM_REQUEST.into(),
//!         payload: encode(CLIENT_CAPABILITY_ID, &request)?,
//!     })
//!     .await
//!     .unwrap_err();
//! assert!(matches!(refused, ProviderError::Backend { .. }));
//! assert!(refused.to_string().contains("not in ALLOWED_HOSTS"));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod connect;
mod policy;
mod spans;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tracing::Instrument;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::http::{CLIENT_CAPABILITY_ID, OP_PERFORM_REQUEST, Request, Response};
use waxosuit_provider::{
    BindRequest, Bindings, CapabilityProvider, ProviderCall, ProviderError, decode, encode,
};

use crate::connect::{Capped, ConnectError};
use crate::policy::{EgressPolicy, EgressRefusal, Host};
use crate::spans::Hop;

/// Binding value: comma list of destinations the actor may reach (see the
/// [crate docs](crate)); empty or absent denies all egress.
pub const ALLOWED_HOSTS: &str = "ALLOWED_HOSTS";
/// Binding value: total time in milliseconds for one `PerformRequest`,
/// redirects and body included; default 30 000.
pub const TIMEOUT_MS: &str = "TIMEOUT_MS";
/// Binding value: how many redirects one call follows; default 5. With
/// `0` the first redirect fails the call.
pub const MAX_REDIRECTS: &str = "MAX_REDIRECTS";
/// Binding value: the largest response body accepted, in bytes; default
/// 16 MiB.
pub const MAX_RESPONSE_BYTES: &str = "MAX_RESPONSE_BYTES";
/// Binding value: how many connections the binding holds open, in use or
/// idle in its pool; default 64, at most 4096.
pub const MAX_CONNECTIONS: &str = "MAX_CONNECTIONS";
/// Binding value: how long, in milliseconds, a pooled connection may stay
/// idle (holding one of the `MAX_CONNECTIONS` places); default 30 000.
pub const IDLE_TIMEOUT_MS: &str = "IDLE_TIMEOUT_MS";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_REDIRECTS: u32 = 5;
const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// The most `MAX_CONNECTIONS` accepts: each is a descriptor of the host's.
const MAX_CONNECTIONS_LIMIT: usize = 4096;
/// How long a pooled connection may stay idle by default: each holds one of
/// the binding's `MAX_CONNECTIONS` places meanwhile.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CAPID: &str = CLIENT_CAPABILITY_ID;

type HttpsClient = Client<Capped<HttpsConnector<HttpConnector<CheckedResolver>>>, Full<Bytes>>;

/// The `wascc:http_client` provider. See the [crate docs](crate).
pub struct HttpClientProvider {
    bindings: Bindings<Arc<Binding>>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Default for HttpClientProvider {
    fn default() -> Self {
        HttpClientProvider {
            bindings: Bindings::new(CAPID),
            tls: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for HttpClientProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bindings = self.bindings.read_all(|map| map.len());
        f.debug_struct("HttpClientProvider")
            .field("bindings", &bindings)
            .finish_non_exhaustive()
    }
}

struct Binding {
    timeout: Duration,
    max_redirects: u32,
    max_response_bytes: u64,
    /// What the actor accepts (the host's `__waxosuit_max_payload`), which
    /// the whole reply, headers included, must fit.
    max_reply: Option<u64>,
    policy: Arc<EgressPolicy>,
    client: HttpsClient,
}

impl HttpClientProvider {
    /// A provider with no bindings.
    pub fn new() -> HttpClientProvider {
        HttpClientProvider::default()
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, ProviderError> {
        self.tls
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                    .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|message| ProviderError::Internal {
                capid: CAPID.to_string(),
                message: format!("cannot build the TLS configuration: {message}"),
            })
    }

    fn binding(&self, actor: &str, binding: &str) -> Result<Arc<Binding>, ProviderError> {
        self.bindings.get(actor, binding)
    }
}

fn config_value<T: FromStr>(
    request: &BindRequest,
    key: &str,
    default: T,
    what: &str,
) -> Result<T, ProviderError> {
    match request.values.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(default),
        Some(raw) => raw.parse().map_err(|_| ProviderError::Config {
            capid: CAPID.to_string(),
            actor: request.actor.clone(),
            key: key.to_string(),
            reason: format!("is `{raw}`, not {what}"),
        }),
    }
}

/// What the actor accepts, if the host said.
fn actor_limit(request: &BindRequest) -> Option<u64> {
    request.actor_max_payload().map(|n| n as u64)
}

/// Room left in the actor's payload for a response's status, headers and
/// encoding, at most half of it.
const HEADER_ROOM: u64 = 64 * 1024;

/// `max` lowered to what the actor accepts (the host's
/// `__waxosuit_max_payload`) less room for the headers: a larger body would
/// be read and encoded only for the host to refuse the reply, failing the
/// actor's whole call instead of answering it with an error it can handle.
/// An explicit `MAX_RESPONSE_BYTES` above it is lowered with a warning.
fn within_actor_limit(request: &BindRequest, max: u64) -> u64 {
    let Some(accepted) = actor_limit(request) else {
        return max;
    };
    let room = accepted.saturating_sub(HEADER_ROOM.min(accepted / 2));
    if max > room && request.values.contains_key(MAX_RESPONSE_BYTES) {
        tracing::warn!(
            actor = %request.actor,
            binding = %request.binding,
            configured = max,
            used = room,
            "wascc:http_client MAX_RESPONSE_BYTES is more than the actor accepts; responses \
             are refused past {room} bytes (raise the actor's max_payload_kib to accept more)"
        );
    }
    max.min(room)
}

#[async_trait]
impl CapabilityProvider for HttpClientProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(CAPID)
            .name("Waxosuit HTTP client")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "Outbound HTTP and HTTPS requests for actors, limited per binding to the hosts \
                 in ALLOWED_HOSTS (deny by default), with resolved-address checks, redirect, \
                 timeout and response-size limits.",
            )
            .with_operation(
                OP_PERFORM_REQUEST,
                OperationDirection::ToProvider,
                "Performs the request whose path is the full URL and replies with the response",
            )
            .build()
    }

    /// Parses the binding's configuration and builds its pooled client;
    /// re-binding a bound pair replaces its configuration and pool.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let policy = EgressPolicy::parse(
            request
                .values
                .get(ALLOWED_HOSTS)
                .map(String::as_str)
                .unwrap_or(""),
        )
        .map_err(|e| ProviderError::Config {
            capid: CAPID.to_string(),
            actor: request.actor.clone(),
            key: ALLOWED_HOSTS.to_string(),
            reason: e.to_string(),
        })?;
        if policy.is_empty() {
            tracing::info!(
                actor = %request.actor,
                binding = %request.binding,
                "wascc:http_client binding has no ALLOWED_HOSTS; all egress is denied"
            );
        }
        let timeout_ms: u64 = config_value(
            &request,
            TIMEOUT_MS,
            DEFAULT_TIMEOUT.as_millis() as u64,
            "a number of milliseconds",
        )?;
        if timeout_ms == 0 {
            return Err(ProviderError::Config {
                capid: CAPID.to_string(),
                actor: request.actor.clone(),
                key: TIMEOUT_MS.to_string(),
                reason: "must be at least 1".to_string(),
            });
        }
        let max_redirects = config_value(
            &request,
            MAX_REDIRECTS,
            DEFAULT_MAX_REDIRECTS,
            "a non-negative number",
        )?;
        let max_response_bytes = config_value(
            &request,
            MAX_RESPONSE_BYTES,
            DEFAULT_MAX_RESPONSE_BYTES,
            "a number of bytes",
        )?;
        let max_response_bytes = within_actor_limit(&request, max_response_bytes);
        let max_connections = config_value(
            &request,
            MAX_CONNECTIONS,
            DEFAULT_MAX_CONNECTIONS,
            "a number of connections",
        )?;
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&max_connections) {
            return Err(ProviderError::Config {
                capid: CAPID.to_string(),
                actor: request.actor.clone(),
                key: MAX_CONNECTIONS.to_string(),
                reason: format!(
                    "is {max_connections}; it must be from 1 to {MAX_CONNECTIONS_LIMIT}"
                ),
            });
        }
        let max_reply = actor_limit(&request);

        let policy = Arc::new(policy);
        let mut http = HttpConnector::new_with_resolver(CheckedResolver::new(Arc::clone(&policy)));
        // The TLS wrapper handles `https`; the inner connector must let it.
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls_config()?).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let idle_ms: u64 = config_value(
            &request,
            IDLE_TIMEOUT_MS,
            DEFAULT_IDLE_TIMEOUT.as_millis() as u64,
            "a number of milliseconds",
        )?;
        if idle_ms == 0 {
            return Err(ProviderError::Config {
                capid: CAPID.to_string(),
                actor: request.actor.clone(),
                key: IDLE_TIMEOUT_MS.to_string(),
                reason: "must be at least 1".to_string(),
            });
        }
        let idle = Duration::from_millis(idle_ms);
        let timeout = Duration::from_millis(timeout_ms);
        let capped = Capped::new(https, max_connections, timeout / 2, timeout, idle);
        // The timer drives the pool's idle reaper: without one, hyper drops
        // an idle connection only when its origin is used again, and each
        // idle connection holds one of the binding's places.
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .build(capped);
        let binding = Binding {
            timeout,
            max_redirects,
            max_response_bytes,
            max_reply,
            policy,
            client,
        };
        self.bindings
            .insert(request.actor, request.binding, Arc::new(binding));
        Ok(())
    }

    /// Drops the pair's client and its pooled connections; an unknown pair
    /// is [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        self.bindings.remove(actor, binding).map(drop)
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        if call.operation != OP_PERFORM_REQUEST {
            return Err(ProviderError::unknown_operation(CAPID, &call.operation));
        }
        let binding = self.binding(&call.actor, &call.binding)?;
        let request: Request = decode(CAPID, &call)?;
        let outcome = match prepare(&request) {
            Ok(prepared) => {
                match tokio::time::timeout(binding.timeout, perform(&binding, prepared)).await {
                    Ok(result) => result,
                    Err(_) => Err(CallError::Timeout {
                        millis: binding.timeout.as_millis(),
                    }),
                }
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(response) => encode(CAPID, &response),
            Err(error) => Err(error.into_provider_error(&call, without_query(&request.path))),
        }
    }

    async fn shutdown(&self) {
        self.bindings.drain();
    }
}

/// Why one call failed, before it is phrased for the actor.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Refused(EgressRefusal),
    #[error("more than {max} redirects (MAX_REDIRECTS for this binding)")]
    TooManyRedirects { max: u32 },
    #[error("redirect with an unusable Location `{location}`")]
    BadRedirect { location: String },
    #[error(
        "redirect from https to plain http (`{location}`) refused: the request's headers and \
         body would follow it in clear text; call the https URL the server should offer"
    )]
    InsecureRedirect { location: String },
    #[error("{0}")]
    Connections(ConnectError),
    #[error(
        "no complete response within {millis} ms (TIMEOUT_MS for this binding); raise it or make \
         the server answer sooner"
    )]
    Timeout { millis: u128 },
    #[error(
        "the response body exceeds {max} bytes (MAX_RESPONSE_BYTES for this binding, or what \
         the actor accepts less room for the headers if that is less); raise the one that \
         bounds it (the actor's max_payload_kib) to accept larger responses"
    )]
    TooLarge { max: u64 },
    #[error(
        "the response's headers and body come to more than the {limit} bytes the actor accepts; \
         ask for less, or raise the actor's max_payload_kib"
    )]
    ReplyTooLarge { limit: u64 },
    #[error("cannot reach {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("request to {url} failed: {reason}")]
    Protocol { url: String, reason: String },
}

impl CallError {
    fn into_provider_error(self, call: &ProviderCall, url: &str) -> ProviderError {
        match self {
            CallError::BadRequest(reason) => ProviderError::BadPayload {
                capid: CAPID.to_string(),
                operation: call.operation.clone(),
                reason,
            },
            CallError::Refused(refusal) => ProviderError::backend(
                CAPID,
                format!(
                    "egress refused: actor {} (binding `{}`) may not reach {url}: {refusal}",
                    call.actor, call.binding
                ),
            ),
            e @ (CallError::Timeout { .. }
            | CallError::Connect { .. }
            | CallError::Connections(_)) => ProviderError::Unavailable {
                capid: CAPID.to_string(),
                reason: format!("{url}: {e}"),
            },
            e @ (CallError::TooManyRedirects { .. }
            | CallError::BadRedirect { .. }
            | CallError::InsecureRedirect { .. }
            | CallError::TooLarge { .. }
            | CallError::ReplyTooLarge { .. }) => {
                ProviderError::backend(CAPID, format!("{url}: {e}"))
            }
            e @ CallError::Protocol { .. } => ProviderError::backend(CAPID, e),
        }
    }
}

/// A URL as errors and logs show it: without its query or fragment, which
/// may carry secrets (API keys, presigned signatures, OAuth codes). Errors
/// reach the actor, but also the capability's span and the host's log.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or_default()
}

/// A URL from the actor or a server as errors show it: without its query,
/// and without user information where it may have some.
fn shown_url(url: &str) -> String {
    if url.contains("://") || url.contains('@') {
        waxosuit_provider::redact_url(url)
    } else {
        without_query(url).to_string()
    }
}

/// A request checked for shape, not yet for destination.
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// Headers the provider sets itself: taking them from the actor would let
/// it desynchronise framing or address another virtual host than the one
/// that was checked.
const PROVIDER_HEADERS: &[HeaderName] = &[
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
];

/// Headers that must not follow a redirect to another origin.
const CREDENTIAL_HEADERS: &[HeaderName] = &[
    header::AUTHORIZATION,
    header::COOKIE,
    header::PROXY_AUTHORIZATION,
];

fn prepare(request: &Request) -> Result<Prepared, CallError> {
    let method = match request.method.trim() {
        "" => Method::GET,
        m => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| CallError::BadRequest(format!("`{m}` is not an HTTP method")))?,
    };
    if method == Method::CONNECT {
        return Err(CallError::BadRequest(
            "CONNECT is not supported: tunnels would bypass the egress checks".to_string(),
        ));
    }

    let mut url = request.path.trim().to_string();
    if let Some(fragment) = url.find('#') {
        url.truncate(fragment);
    }
    let query = request.query_string.trim_start_matches('?');
    if !query.is_empty() {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(query);
    }
    let uri = parse_url(&url).map_err(|reason| {
        // Shown without its query, and without user information (a
        // password in the URL is one reason it is refused).
        let shown = shown_url(&url);
        CallError::BadRequest(format!("`{shown}` is not a usable URL: {reason}"))
    })?;

    let mut headers = HeaderMap::new();
    for (name, value) in &request.header {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| CallError::BadRequest(format!("`{name}` is not a header name")))?;
        if PROVIDER_HEADERS.contains(&name) {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            CallError::BadRequest(format!("the value of header `{name}` is not valid"))
        })?;
        headers.insert(name, value);
    }
    Ok(Prepared {
        method,
        uri,
        headers,
        body: Bytes::copy_from_slice(&request.body),
    })
}

/// Parses an absolute `http`/`https` URL with a host.
fn parse_url(url: &str) -> Result<Uri, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "it cannot be parsed")?;
    match uri.scheme() {
        Some(s) if *s == Scheme::HTTP || *s == Scheme::HTTPS => {}
        Some(_) => return Err("only http and https URLs are supported"),
        None => return Err("it is not absolute (it needs http:// or https://)"),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => return Err("it has no host"),
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("user information in URLs is not supported; send an Authorization header");
    }
    Ok(uri)
}

/// Resolves a redirect's `Location` against the URL that sent it.
fn resolve_location(base: &Uri, location: &str) -> Option<Uri> {
    let location = location.trim();
    let location = match location.find('#') {
        Some(i) => &location[..i],
        None => location,
    };
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let absolute = if has_scheme(location) {
        // Absolute: only http(s) is followed; parse_url below refuses others.
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{}{location}", base.path())
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{scheme}://{authority}{dir}{location}")
    };
    parse_url(&absolute).ok()
}

/// Whether a URI reference starts with `scheme:` (RFC 3986 §3.1).
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Whether a redirect from `from` to `to` leaves TLS.
fn downgrades(from: &Uri, to: &Uri) -> bool {
    from.scheme() == Some(&Scheme::HTTPS) && to.scheme() != Some(&Scheme::HTTPS)
}

fn same_origin(a: &Uri, b: &Uri) -> bool {
    a.scheme() == b.scheme()
        && a.host().map(str::to_ascii_lowercase) == b.host().map(str::to_ascii_lowercase)
        && a.port_u16() == b.port_u16()
}

fn check_destination(policy: &EgressPolicy, uri: &Uri) -> Result<(), CallError> {
    let host = Host::parse(uri.host().unwrap_or_default());
    policy
        .check_host(&host)
        .map(drop)
        .map_err(CallError::Refused)
}

async fn perform(binding: &Binding, prepared: Prepared) -> Result<Response, CallError> {
    let Prepared {
        mut method,
        mut uri,
        mut headers,
        mut body,
    } = prepared;
    let mut redirects = 0;
    loop {
        check_destination(&binding.policy, &uri)?;
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .body(Full::new(body.clone()))
            .map_err(|e| CallError::BadRequest(e.to_string()))?;
        *request.headers_mut() = headers.clone();
        let mut hop = Hop::start(&method, &uri, request.headers_mut());
        let sent = binding.client.request(request);
        let response = sent.instrument(hop.span().clone()).await;
        let response = response.map_err(|e| classify(&uri, &e));
        hop.failed(&response);
        let response = response?;

        let status = response.status();
        hop.status(status);
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let location = match location {
            Some(location) if is_redirect(status) => location,
            _ => {
                // RFC 9110 6.4.1: these have no body, whatever length
                // their headers give (a HEAD's is the GET's).
                let bodiless = method == Method::HEAD
                    || status.is_informational()
                    || matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
                let read = read_response(
                    response,
                    binding.max_response_bytes,
                    binding.max_reply,
                    &uri,
                    bodiless,
                )
                .await;
                hop.failed(&read);
                hop.complete();
                return read;
            }
        };
        hop.complete();
        if redirects >= binding.max_redirects {
            return Err(CallError::TooManyRedirects {
                max: binding.max_redirects,
            });
        }
        redirects += 1;
        let next = resolve_location(&uri, &location).ok_or_else(|| CallError::BadRedirect {
            location: shown_url(&location),
        })?;
        if downgrades(&uri, &next) {
            return Err(CallError::InsecureRedirect {
                location: shown_url(&location),
            });
        }
        tracing::debug!(from = %spans::FullUrl(&uri), to = %spans::FullUrl(&next), %status,
            "wascc:http_client following redirect");
        if status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                && method == Method::POST)
        {
            if method != Method::HEAD {
                method = Method::GET;
            }
            body = Bytes::new();
            headers.remove(header::CONTENT_TYPE);
        }
        if !same_origin(&uri, &next) {
            for name in CREDENTIAL_HEADERS {
                headers.remove(name);
            }
        }
        uri = next;
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Turns a client error into a refusal when the resolver refused the
/// address, else into a connection or protocol failure.
fn classify(uri: &Uri, error: &hyper_util::client::legacy::Error) -> CallError {
    let mut source: Option<&(dyn StdError + 'static)> = Some(error);
    let mut innermost = error.to_string();
    while let Some(e) = source {
        if let Some(ResolveError::Refused(refusal)) = e.downcast_ref::<ResolveError>() {
            return CallError::Refused(refusal.clone());
        }
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return CallError::Connections(connect.clone());
        }
        innermost = e.to_string();
        source = e.source();
    }
    let url = spans::FullUrl(uri).to_string();
    if error.is_connect() {
        CallError::Connect {
            url,
            reason: innermost,
        }
    } else {
        CallError::Protocol {
            url,
            reason: innermost,
        }
    }
}

async fn read_response(
    response: hyper::Response<hyper::body::Incoming>,
    max: u64,
    max_reply: Option<u64>,
    uri: &Uri,
    bodiless: bool,
) -> Result<Response, CallError> {
    let (parts, mut incoming) = response.into_parts();
    // The headers as they will be encoded (a value that is not UTF-8 goes
    // as base64, a third larger), with the status and the reply's own
    // fields: with the body, the reply must fit what the actor accepts.
    let header_bytes: u64 = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() as u64 + value.len() as u64 * 4 / 3 + 12)
        .sum::<u64>()
        + 128;
    let body_room = match max_reply {
        Some(limit) if header_bytes > limit => {
            return Err(CallError::ReplyTooLarge { limit });
        }
        Some(limit) => limit - header_bytes,
        None => u64::MAX,
    };
    let reply_too_large = || CallError::ReplyTooLarge {
        limit: max_reply.unwrap_or_default(),
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| !bodiless);
    if declared.is_some_and(|len| len > max) {
        return Err(CallError::TooLarge { max });
    }
    if declared.is_some_and(|len| len > body_room) {
        return Err(reply_too_large());
    }
    let mut body = Vec::new();
    while let Some(frame) = incoming.frame().await {
        let frame = frame.map_err(|e| CallError::Protocol {
            url: spans::FullUrl(uri).to_string(),
            reason: format!("reading the body: {e}"),
        })?;
        if let Ok(data) = frame.into_data() {
            if body.len() as u64 + data.len() as u64 > max {
                return Err(CallError::TooLarge { max });
            }
            if body.len() as u64 + data.len() as u64 > body_room {
                return Err(reply_too_large());
            }
            body.extend_from_slice(&data);
        }
    }

    let mut header = HashMap::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| match v.to_str() {
                Ok(text) => text.to_string(),
                Err(_) => data_encoding::BASE64.encode(v.as_bytes()),
            })
            .collect();
        header.insert(name.as_str().to_string(), values.join(", "));
    }
    Ok(Response {
        status_code: u32::from(parts.status.as_u16()),
        status: parts
            .status
            .canonical_reason()
            .unwrap_or_default()
            .to_string(),
        header,
        body,
    })
}

/// Resolves host names for one binding's connector and drops every
/// address its policy refuses, so connections only ever go to checked
/// addresses.
///
/// A lookup runs `getaddrinfo` on a blocking thread, which keeps running
/// after the call that asked gave up (its deadline passed): a slow
/// resolver answers in seconds. So each binding has at most
/// [`MAX_LOOKUPS`] lookups running, the permit held by the blocking thread
/// itself; an actor asking for name after slow name waits on its own
/// lookups, instead of taking the runtime's blocking threads from every
/// other use.
#[derive(Clone)]
struct CheckedResolver {
    policy: Arc<EgressPolicy>,
    lookups: Arc<tokio::sync::Semaphore>,
    lookup: fn(&str) -> std::io::Result<Vec<SocketAddr>>,
}

/// Host-name lookups one binding may have running at once.
const MAX_LOOKUPS: usize = 8;

impl CheckedResolver {
    fn new(policy: Arc<EgressPolicy>) -> CheckedResolver {
        CheckedResolver {
            policy,
            lookups: Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)),
            lookup: system_lookup,
        }
    }
}

/// The system resolver (`getaddrinfo`), as `std` calls it.
fn system_lookup(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok((host, 0).to_socket_addrs()?.collect())
}

#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("{0}")]
    Refused(EgressRefusal),
    #[error("cannot resolve `{host}`: {reason}")]
    Lookup { host: String, reason: String },
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ResolveError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ResolveError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let lookups = Arc::clone(&self.lookups);
        let lookup = self.lookup;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let lookup_error = |reason: String| ResolveError::Lookup {
                host: host.clone(),
                reason,
            };
            // Never closed; an error would only mean no lookup can run.
            let permit = lookups
                .acquire_owned()
                .await
                .map_err(|e| lookup_error(e.to_string()))?;
            let name = host.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                // Held until `getaddrinfo` returns, whoever still waits.
                let _permit = permit;
                lookup(&name)
            })
            .await
            .map_err(|e| lookup_error(e.to_string()))?
            .map_err(|e| lookup_error(e.to_string()))?;
            let mut accepted = Vec::new();
            let mut refusal = None;
            for addr in resolved {
                match policy.check_resolved(&host, addr.ip()) {
                    Ok(()) => accepted.push(addr),
                    Err(r) => {
                        tracing::debug!(%host, addr = %addr.ip(), reason = %r, "wascc:http_client dropped a resolved address");
                        refusal.get_or_insert(r);
                    }
                }
            }
            match (accepted.is_empty(), refusal) {
                (false, _) => Ok(accepted.into_iter()),
                (true, Some(refusal)) => Err(ResolveError::Refused(refusal)),
                (true, None) => Err(ResolveError::Lookup {
                    host,
                    reason: "no addresses".to_string(),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `https` request is never continued over plain `http` (headers and
    /// body would follow in clear text); other hops are the policy's.
    #[test]
    fn a_redirect_may_not_leave_tls() {
        let base: Uri = "https://api.example.com/a?k=1".parse().unwrap();
        for (location, refused) in [
            ("http://api.example.com/b", true),
            ("HTTP://api.example.com/b", true),
            ("//other.example.com/b", false),
            ("/b", false),
            ("https://other.example.com/b", false),
        ] {
            let next = resolve_location(&base, location).unwrap();
            assert_eq!(downgrades(&base, &next), refused, "{location}");
        }
        let plain: Uri = "http://api.example.com/".parse().unwrap();
        let next = resolve_location(&plain, "https://api.example.com/").unwrap();
        assert!(!downgrades(&plain, &next));
        assert!(!downgrades(&plain, &plain));
        let err = CallError::InsecureRedirect {
            location: shown_url("http://user:S3CRET@api.example.com/b?token=S3CRET"),
        }
        .to_string();
        assert!(!err.contains("S3CRET"), "{err}");
        assert!(err.contains("https to plain http"), "{err}");
    }

    static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    static MOST: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A resolver that takes 300 ms and counts how many run at once.
    fn slow_lookup(_: &str) -> std::io::Result<Vec<SocketAddr>> {
        use std::sync::atomic::Ordering;
        let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
        MOST.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(300));
        RUNNING.fetch_sub(1, Ordering::SeqCst);
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], 0))])
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_lookups_keep_their_place_until_the_resolver_answers() {
        use tower_service::Service;
        let resolver = CheckedResolver {
            lookup: slow_lookup,
            ..CheckedResolver::new(Arc::new(EgressPolicy::parse("*").unwrap()))
        };
        // 40 calls, each given up after 20 ms, as a call's deadline would.
        for i in 0..40 {
            let mut r = resolver.clone();
            let name: Name = format!("slow{i}.test").parse().unwrap();
            let _ = tokio::time::timeout(std::time::Duration::from_millis(20), r.call(name)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let most = MOST.load(std::sync::atomic::Ordering::SeqCst);
        assert!(most <= MAX_LOOKUPS, "{most} lookups ran at once");
        assert!(most > 0);
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn locations_resolve_against_the_base() {
        let base = uri("http://a.test:8080/x/y?q=1");
        for (location, expected) in [
            ("http://b.test/z", "http://b.test/z"),
            ("//c.test/p", "http://c.test/p"),
            ("/root", "http://a.test:8080/root"),
            ("sib", "http://a.test:8080/x/sib"),
            ("?r=2", "http://a.test:8080/x/y?r=2"),
            ("/f#frag", "http://a.test:8080/f"),
        ] {
            assert_eq!(
                resolve_location(&base, location).map(|u| u.to_string()),
                Some(expected.to_string()),
                "{location}"
            );
        }
        assert_eq!(resolve_location(&base, "ftp://x.test/"), None);
    }

    #[test]
    fn urls_are_built_from_path_and_query_string() {
        let request = |path: &str, query: &str| Request {
            method: "post".into(),
            path: path.into(),
            query_string: query.into(),
            ..Request::default()
        };
        let p = prepare(&request("http://h.test/a", "x=1")).unwrap();
        assert_eq!(p.uri.to_string(), "http://h.test/a?x=1");
        assert_eq!(p.method, Method::POST);
        let p = prepare(&request("http://h.test/a?y=2#frag", "x=1")).unwrap();
        assert_eq!(p.uri.to_string(), "http://h.test/a?y=2&x=1");
        let p = prepare(&request("http://h.test/a", "")).unwrap();
        assert_eq!(p.uri.to_string(), "http://h.test/a");
        for bad in [
            "/relative",
            "ftp://h.test/",
            "not a url",
            "http://user:pw@h.test/",
        ] {
            assert!(
                matches!(prepare(&request(bad, "")), Err(CallError::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn provider_headers_are_not_taken_from_the_actor() {
        let request = Request {
            method: String::new(),
            path: "http://h.test/".into(),
            header: HashMap::from([
                ("Host".to_string(), "other.test".to_string()),
                ("Content-Length".to_string(), "99".to_string()),
                ("X-Kept".to_string(), "yes".to_string()),
            ]),
            ..Request::default()
        };
        let p = prepare(&request).unwrap();
        assert_eq!(p.method, Method::GET);
        assert!(p.headers.get(header::HOST).is_none());
        assert!(p.headers.get(header::CONTENT_LENGTH).is_none());
        assert_eq!(p.headers.get("x-kept").unwrap(), "yes");
    }

    #[test]
    fn tls_configuration_builds() {
        HttpClientProvider::new().tls_config().unwrap();
    }
}
