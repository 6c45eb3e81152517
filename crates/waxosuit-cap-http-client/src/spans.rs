//! The client span of each request the provider sends, as Waxosuit's
//! tracing conventions (issue #18) name it: `otel.name` the method, kind
//! `client`, the HTTP semantic-convention attributes, and the W3C trace
//! context handed on in `traceparent` and `tracestate`.
//!
//! Each hop is a span of its own, a redirect's next hop included, as the
//! semantic conventions ask: each is one request on the wire, with its own
//! status code. The span is the child of the span the call runs in (the
//! host's capability call), so the server that receives the request
//! continues the actor's trace. When no subscriber is interested the
//! span is disabled: no field is evaluated, no header is added, and the
//! actor's own `traceparent`, if it sent one, goes out unchanged.

use std::fmt;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};
use http::{Method, StatusCode};
use tracing::Span;
use tracing::field::{Empty, display};
use waxosuit_trace::{TRACEPARENT, TRACESTATE, TraceHeaders};

/// One hop's span; marked as failed if dropped before its outcome was
/// recorded (the call's `TIMEOUT_MS` ended it mid-way).
pub(crate) struct Hop {
    span: Span,
    ended: bool,
}

impl Hop {
    /// Opens the span of a request to `uri` and puts its trace context
    /// into `headers`, replacing any the actor set: the actor cannot see
    /// the host's trace, so its own values would break it.
    pub(crate) fn start(method: &Method, uri: &Uri, headers: &mut HeaderMap) -> Hop {
        let span = tracing::info_span!(
            "http.client",
            otel.name = method.as_str(),
            otel.kind = "client",
            http.request.method = method.as_str(),
            url.full = %FullUrl(uri),
            server.address = uri.host(),
            server.port = port(uri).map(i64::from),
            http.response.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        if let Some(trace) = TraceHeaders::of(&span) {
            inject(headers, &trace);
        }
        Hop { span, ended: false }
    }

    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// The response's status; a `5xx` marks the hop as failed.
    pub(crate) fn status(&self, status: StatusCode) {
        self.span
            .record("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            self.span.record("otel.status_code", "error");
        }
    }

    /// Puts a failure ending the hop on its span, with its reason; a
    /// success leaves the hop open.
    pub(crate) fn failed<T, E: fmt::Display>(&mut self, outcome: &Result<T, E>) {
        if let Err(error) = outcome {
            fail(&self.span, error);
            self.ended = true;
        }
    }

    /// The hop is over: its response was read, or it was a redirect.
    pub(crate) fn complete(&mut self) {
        self.ended = true;
    }
}

impl Drop for Hop {
    fn drop(&mut self) {
        if !self.ended {
            fail(
                &self.span,
                "cancelled before the response was complete (TIMEOUT_MS for this binding)",
            );
        }
    }
}

fn fail(span: &Span, reason: impl fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", display(reason));
}

fn inject(headers: &mut HeaderMap, trace: &TraceHeaders) {
    // Both values are ASCII by construction; a failure would only leave
    // the request untraced.
    if let Ok(value) = HeaderValue::from_str(&trace.traceparent) {
        headers.insert(HeaderName::from_static(TRACEPARENT), value);
    }
    let tracestate = HeaderName::from_static(TRACESTATE);
    match trace
        .tracestate
        .as_deref()
        .and_then(|state| HeaderValue::from_str(state).ok())
    {
        Some(value) => {
            headers.insert(tracestate, value);
        }
        // The actor's state belongs to no trace we send.
        None => {
            headers.remove(tracestate);
        }
    }
}

/// The URL's port, or its scheme's default.
fn port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or_else(|| match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => Some(443),
        Some(s) if *s == Scheme::HTTP => Some(80),
        _ => None,
    })
}

/// `url.full` without the query, which may carry secrets (user
/// information is refused before any request is made).
pub(crate) struct FullUrl<'a>(pub(crate) &'a Uri);

impl fmt::Display for FullUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let uri = self.0;
        if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
            write!(f, "{scheme}://{authority}")?;
        }
        f.write_str(uri.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_url_has_no_query_and_the_port_defaults_by_scheme() {
        let uri: Uri = "https://api.example.com/v1/items?token=secret"
            .parse()
            .unwrap();
        assert_eq!(
            FullUrl(&uri).to_string(),
            "https://api.example.com/v1/items"
        );
        assert_eq!(port(&uri), Some(443));
        let uri: Uri = "http://127.0.0.1:8080".parse().unwrap();
        assert_eq!(FullUrl(&uri).to_string(), "http://127.0.0.1:8080/");
        assert_eq!(port(&uri), Some(8080));
        assert_eq!(port(&"http://h/".parse().unwrap()), Some(80));
    }

    #[test]
    fn injection_replaces_the_actors_trace_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static("actor's"));
        headers.insert(TRACESTATE, HeaderValue::from_static("actor=state"));
        headers.insert("x-kept", HeaderValue::from_static("yes"));
        let trace = TraceHeaders {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        };
        inject(&mut headers, &trace);
        assert_eq!(headers[TRACEPARENT], trace.traceparent.as_str());
        assert!(headers.get(TRACESTATE).is_none());
        assert_eq!(headers["x-kept"], "yes");
        let trace = TraceHeaders {
            tracestate: Some("congo=t61".into()),
            ..trace
        };
        inject(&mut headers, &trace);
        assert_eq!(headers[TRACESTATE], "congo=t61");
        assert_eq!(headers.get_all(TRACEPARENT).iter().count(), 1);
    }
}
