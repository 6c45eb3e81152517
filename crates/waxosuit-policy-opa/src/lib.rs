//! Policy decisions for Waxosuit from a real Open Policy Agent server, over
//! OPA's Data API. Use it where policies are managed centrally (bundles,
//! OPA's own decision logs and tooling); for a self-contained host, the
//! embedded engine (`waxosuit-policy-rego`) runs the same policies in
//! process.
//!
//! # A guided tour
//!
//! * [`OpaEngine::new`] takes OPA's base URL (`http://127.0.0.1:8181`, or
//!   `https://…`, optionally with a path prefix for a gateway) and a time
//!   limit per decision ([`DEFAULT_TIMEOUT`], 1 s). Nothing is sent until the
//!   first decision.
//! * Each decision is one `POST {url}/v1/data/waxosuit/<point>/allow` with
//!   `{"input": …}` as `application/json`. OPA answers `{"result": …}`:
//!   `true` allows, any other value denies, and no `result` at all means the
//!   document is undefined. OPA's loaded policies are not visible from here,
//!   so the engine [governs](PolicyEngine::governs) every point: an
//!   undefined answer denies.
//! * Connections are HTTP/1.1 and kept alive in a pool, so a decision on a
//!   warm connection is one round trip. HTTPS uses rustls with the Mozilla
//!   root certificates.
//! * Everything that is not an answer is an [`EngineError`], which a
//!   [`Policy`](waxosuit_policy::Policy) turns into a denial (fail closed):
//!   a connection that is refused or a name that does not resolve
//!   ([`EngineErrorKind::Unavailable`]), no complete answer within the time
//!   limit ([`EngineErrorKind::Timeout`]), an error status (OPA answers 500
//!   when a policy fails to evaluate) or an answer that is not the expected
//!   JSON or is larger than [`MAX_RESPONSE_BYTES`]
//!   ([`EngineErrorKind::BadResponse`]).
//!
//! ```
//! use std::time::Duration;
//! use waxosuit_policy::{DecisionPoint, PolicyEngine};
//! use waxosuit_policy_opa::{DEFAULT_TIMEOUT, OpaEngine, OpaError};
//!
//! let opa = OpaEngine::new("http://127.0.0.1:8181/", DEFAULT_TIMEOUT)?;
//! assert_eq!(opa.describe(), "OPA at http://127.0.0.1:8181");
//! assert!(opa.governs(DecisionPoint::Start));
//! assert_eq!(
//!     opa.decision_url(DecisionPoint::Invoke),
//!     "http://127.0.0.1:8181/v1/data/waxosuit/invoke/allow"
//! );
//!
//! let err = OpaEngine::new("127.0.0.1:8181", DEFAULT_TIMEOUT).unwrap_err();
//! assert!(matches!(err, OpaError::InvalidUrl { .. }));
//! # Ok::<(), OpaError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use waxosuit_policy::{DecisionPoint, EngineError, EngineErrorKind, Outcome, PolicyEngine};

/// The time limit per decision unless another is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest answer accepted from OPA. A decision is a few bytes; this
/// only stops a misdirected URL from streaming something large into memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// How much of an error answer is quoted in the error message.
const EXCERPT_CHARS: usize = 200;

/// An OPA engine that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpaError {
    /// The URL is not an `http://` or `https://` base URL.
    #[error("`{url}` is not a usable OPA URL: {reason}")]
    InvalidUrl {
        /// The URL as given, without user information or query.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A zero time limit would fail every decision.
    #[error("the OPA time limit must be more than 0 ms")]
    ZeroTimeout,

    /// The TLS configuration could not be built.
    #[error("cannot set up TLS for the OPA client")]
    Tls(#[source] rustls::Error),
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client of one OPA server's Data API. See the [crate docs](crate).
///
/// Cheap to share: clones use the same connection pool.
#[derive(Clone)]
pub struct OpaEngine {
    client: HttpsClient,
    /// The decision URL of each point, in [`DecisionPoint::ALL`] order.
    urls: Arc<[Uri; 4]>,
    base: Arc<str>,
    timeout: Duration,
}

impl std::fmt::Debug for OpaEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpaEngine")
            .field("url", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OpaEngine {
    /// A client of the OPA server at `url` (its base URL, e.g.
    /// `http://127.0.0.1:8181`), allowing `timeout` for each decision
    /// (connecting, sending and reading the whole answer).
    pub fn new(url: &str, timeout: Duration) -> Result<OpaEngine, OpaError> {
        if timeout.is_zero() {
            return Err(OpaError::ZeroTimeout);
        }
        let base = base_url(url)?;
        let mut urls = Vec::with_capacity(DecisionPoint::ALL.len());
        for point in DecisionPoint::ALL {
            let decision = format!("{base}/v1/data/{}", point.data_path());
            urls.push(decision.parse::<Uri>().map_err(|e| OpaError::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?);
        }
        let urls: [Uri; 4] = urls.try_into().map_err(|_| OpaError::InvalidUrl {
            url: url.to_owned(),
            reason: "internal error: one URL per decision point".to_owned(),
        })?;

        let mut http = HttpConnector::new();
        // The TLS wrapper handles `https`; the inner connector must let it.
        http.enforce_http(false);
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);

        Ok(OpaEngine {
            client,
            urls: Arc::new(urls),
            base: base.into(),
            timeout,
        })
    }

    /// Where decisions for `point` are asked.
    pub fn decision_url(&self, point: DecisionPoint) -> String {
        self.url(point).to_string()
    }

    /// The time limit per decision.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn url(&self, point: DecisionPoint) -> &Uri {
        &self.urls[point.index()]
    }

    async fn ask(&self, point: DecisionPoint, body: Bytes) -> Result<Outcome, EngineError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.url(point).clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));

        let response = self.client.request(request).await.map_err(|e| {
            let what = if e.is_connect() {
                format!("cannot connect to OPA at {}", self.base)
            } else {
                format!("the request to OPA at {} failed", self.base)
            };
            EngineError::new(EngineErrorKind::Unavailable, what).with_source(e)
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|collected| collected.to_bytes());

        if !status.is_success() {
            let detail = body
                .as_deref()
                .map_or_else(|_| "(unreadable)".to_owned(), excerpt);
            return Err(EngineError::new(
                EngineErrorKind::BadResponse,
                format!("OPA answered {status}: {detail}"),
            ));
        }
        let body = body.map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                EngineError::new(
                    EngineErrorKind::BadResponse,
                    format!("OPA's answer is larger than {MAX_RESPONSE_BYTES} bytes"),
                )
            } else {
                EngineError::new(EngineErrorKind::BadResponse, "cannot read OPA's answer")
                    .with_source(e)
            }
        })?;
        outcome(&body)
    }
}

#[async_trait::async_trait]
impl PolicyEngine for OpaEngine {
    fn describe(&self) -> String {
        format!("OPA at {}", self.base)
    }

    /// Always `true`: what OPA has loaded is not known here, so an undefined
    /// answer denies.
    fn governs(&self, _point: DecisionPoint) -> bool {
        true
    }

    async fn evaluate(
        &self,
        point: DecisionPoint,
        input: &serde_json::Value,
    ) -> Result<Outcome, EngineError> {
        #[derive(Serialize)]
        struct Body<'a> {
            input: &'a serde_json::Value,
        }
        let body = serde_json::to_vec(&Body { input }).map_err(|e| {
            EngineError::new(EngineErrorKind::Evaluation, "cannot encode the input").with_source(e)
        })?;
        match tokio::time::timeout(self.timeout, self.ask(point, body.into())).await {
            Ok(outcome) => outcome,
            Err(_) => Err(EngineError::new(
                EngineErrorKind::Timeout,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }
}

/// `url` as an error shows it: without user information (a password is one
/// reason it is refused) or query. A password may hold `/`, `?`, `#` or `@`,
/// so everything up to the last `@` is hidden, and an `@` past a `?` or `#`
/// (the password's or the query's, it cannot tell) hides all but the scheme.
fn shown_url(url: &str) -> String {
    let bare = |text: &str| text.split(['?', '#']).next().unwrap_or_default().to_owned();
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "***".to_owned()
        } else {
            bare(url)
        };
    };
    let query = rest.find(['?', '#']);
    match rest.rfind('@') {
        Some(at) if query.is_some_and(|q| q < at) => format!("{scheme}://***"),
        Some(at) => format!("{scheme}://***@{}", bare(&rest[at + 1..])),
        None => format!("{scheme}://{}", bare(rest)),
    }
}

/// `url` checked and without a trailing `/`.
fn base_url(url: &str) -> Result<String, OpaError> {
    let invalid = |reason: &str| OpaError::InvalidUrl {
        url: shown_url(url),
        reason: reason.to_owned(),
    };
    let trimmed = url.trim().trim_end_matches('/');
    let uri: Uri = trimmed
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(invalid(&format!(
                "the scheme is `{other}`; use http or https"
            )));
        }
        None => return Err(invalid("expected http://HOST:PORT or https://HOST:PORT")),
    }
    let Some(authority) = uri.authority() else {
        return Err(invalid("there is no host"));
    };
    if authority.host().is_empty() {
        return Err(invalid("there is no host"));
    }
    if authority.as_str().contains('@') {
        return Err(invalid("credentials in the URL are not supported"));
    }
    if uri.query().is_some() || trimmed.contains('#') {
        return Err(invalid("a base URL has no query or fragment"));
    }
    Ok(trimmed.to_owned())
}

fn tls_config() -> Result<rustls::ClientConfig, OpaError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(OpaError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The outcome a 2xx answer carries.
fn outcome(body: &[u8]) -> Result<Outcome, EngineError> {
    let answer: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        EngineError::new(
            EngineErrorKind::BadResponse,
            format!("OPA's answer is not JSON: {}", excerpt(body)),
        )
        .with_source(e)
    })?;
    let Some(answer) = answer.as_object() else {
        return Err(EngineError::new(
            EngineErrorKind::BadResponse,
            format!("OPA's answer is not a JSON object: {}", excerpt(body)),
        ));
    };
    Ok(match answer.get("result") {
        None => Outcome::Undefined,
        Some(serde_json::Value::Bool(true)) => Outcome::Allow,
        Some(_) => Outcome::Deny,
    })
}

/// A short, single-line rendering of an answer for error messages. OPA's
/// error bodies are `{"code": …, "message": …}`; those two are shown.
fn excerpt(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(error)) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = error.get("message").and_then(serde_json::Value::as_str)
    {
        let code = error.get("code").and_then(serde_json::Value::as_str);
        let text = match code {
            Some(code) => format!("{code}: {message}"),
            None => message.to_owned(),
        };
        return shorten(&text);
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        shorten(&text)
    }
}

fn shorten(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > EXCERPT_CHARS {
        let cut: String = one_line.chars().take(EXCERPT_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

// Checked at compile time: the engine is shared by every task of the host.
const _: fn() = || {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<OpaEngine>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            base_url("http://127.0.0.1:8181/").unwrap(),
            "http://127.0.0.1:8181"
        );
        assert_eq!(
            base_url(" https://opa.example/gw/opa/ ").unwrap(),
            "https://opa.example/gw/opa"
        );
        for (bad, shown, why) in [
            ("127.0.0.1:8181", "127.0.0.1:8181", "http://HOST"),
            ("ftp://opa:21", "ftp://opa:21", "scheme is `ftp`"),
            (
                "http://user:pw@opa:8181",
                "`http://***@opa:8181`",
                "credentials",
            ),
            ("http://opa:8181/?x=1", "`http://opa:8181/`", "query"),
            ("http://opa:8181/#frag", "`http://opa:8181/`", "fragment"),
            ("http://", "http://", ""),
            ("not a url", "not a url", ""),
        ] {
            let err = base_url(bad).unwrap_err().to_string();
            assert!(err.contains(shown) && err.contains(why), "{bad}: {err}");
        }
        // A password or a query is never repeated, however the URL is wrong.
        for secret in [
            "http://user:S3CRET@opa:8181",
            "https://:S3CRET@opa/?x=S3CRET",
            "http://opa:8181/p?token=S3CRET",
            "user:S3CRET@opa",
            "ftp://u:S3CRET@opa/x",
        ] {
            let err = base_url(secret).unwrap_err().to_string();
            assert!(!err.contains("S3CRET"), "{secret}: {err}");
        }
        // A password holding `/`, `?`, `#` or `@` is hidden whole too.
        for secret in [
            "http://u:S3/CRET@opa:8181",
            "http://u:S3?CRET@opa:8181",
            "http://u:S3#CRET@opa:8181",
            "http://u:S3@CRET@opa:8181",
        ] {
            let shown = shown_url(secret);
            assert!(
                !shown.contains("S3") && !shown.contains("CRET"),
                "{secret}: {shown}"
            );
        }
        assert!(matches!(
            OpaEngine::new("http://opa:8181", Duration::ZERO),
            Err(OpaError::ZeroTimeout)
        ));
    }

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(outcome(br#"{"result": true}"#).unwrap(), Outcome::Allow);
        assert_eq!(outcome(br#"{"result": false}"#).unwrap(), Outcome::Deny);
        assert_eq!(outcome(br#"{"result": "true"}"#).unwrap(), Outcome::Deny);
        assert_eq!(
            outcome(br#"{"result": {"allow": true}}"#).unwrap(),
            Outcome::Deny
        );
        assert_eq!(outcome(br#"{"result": null}"#).unwrap(), Outcome::Deny);
        assert_eq!(outcome(br#"{}"#).unwrap(), Outcome::Undefined);
        assert_eq!(
            outcome(br#"{"decision_id": "x"}"#).unwrap(),
            Outcome::Undefined
        );
        let err = outcome(b"<html>oops</html>").unwrap_err();
        assert_eq!(err.kind(), EngineErrorKind::BadResponse);
        assert!(err.to_string().contains("<html>oops</html>"), "{err}");
        assert!(
            outcome(b"[true]")
                .unwrap_err()
                .to_string()
                .contains("not a JSON object")
        );
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(
            excerpt(br#"{"code":"internal_error","message":"eval_conflict_error: complete rules must not produce multiple outputs"}"#),
            "internal_error: eval_conflict_error: complete rules must not produce multiple outputs"
        );
        assert_eq!(excerpt(b"line one\n  line two"), "line one line two");
        assert_eq!(excerpt(b""), "(empty body)");
        let long = "x".repeat(1000);
        let short = excerpt(long.as_bytes());
        assert_eq!(short.chars().count(), EXCERPT_CHARS + 1);
        assert!(short.ends_with('…'));
    }

    #[test]
    fn every_point_has_its_data_api_url() {
        let opa = OpaEngine::new("http://opa:8181/gw", DEFAULT_TIMEOUT).unwrap();
        for point in DecisionPoint::ALL {
            assert_eq!(
                opa.decision_url(point),
                format!("http://opa:8181/gw/v1/data/waxosuit/{}/allow", point.name())
            );
            assert!(opa.governs(point));
        }
        assert_eq!(opa.describe(), "OPA at http://opa:8181/gw");
        assert_eq!(opa.timeout(), DEFAULT_TIMEOUT);
    }
}
