//! The server span of each request, as Waxosuit's tracing conventions
//! (issue #18) name it: `otel.name` the method (`HTTP` for one outside the
//! standard ones), kind `server`, the
//! HTTP semantic-convention attributes a reader filters on (the actor is on
//! the actor span below it; every attribute costs each traced request an
//! allocation and an encoding).
//!
//! The span continues the trace of the request's `traceparent` and
//! `tracestate` headers, and the actor call runs inside it, so the host's
//! actor span is its child. When no subscriber is interested the span is
//! disabled: its fields are never evaluated, no header is looked up and
//! nothing is recorded, which keeps the request path as it was.

use std::fmt::Display;

use hyper::header::HeaderName;
use hyper::{Method, Request};
use tracing::Span;
use tracing::field::{Empty, Value, display};
use waxosuit_trace::{TRACEPARENT, TRACESTATE};

use crate::serve::HttpResponse;

/// The span of `request`, continuing the caller's trace when it sent one.
pub(crate) fn request_span<B>(request: &Request<B>) -> Span {
    // A client may send any token as its method: names and attributes stay
    // within the known methods, the rest `_OTHER` in a span named `HTTP`
    // (the semantic conventions' rule), so a client cannot fill a
    // collector's index with span names of its choosing.
    let (name, method) = match *request.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::CONNECT
        | Method::OPTIONS
        | Method::TRACE
        | Method::PATCH => (request.method().as_str(), request.method().as_str()),
        _ => ("HTTP", "_OTHER"),
    };
    let span = tracing::info_span!(
        "http.server",
        otel.name = name,
        otel.kind = "server",
        http.request.method = method,
        url.path = request.uri().path(),
        url.scheme = "http",
        http.request.body.size = Empty,
        http.response.status_code = Empty,
        http.response.body.size = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if !span.is_disabled() {
        let headers = request.headers();
        // Names made once: a name given as text is parsed on every lookup.
        static PARENT: HeaderName = HeaderName::from_static(TRACEPARENT);
        static STATE: HeaderName = HeaderName::from_static(TRACESTATE);
        // `tracestate` means nothing without a parent: most requests have
        // neither, and are spared the second lookup.
        let text = |name| headers.get_all(name).iter().map(|v| v.to_str().ok());
        if let Some(parent) = waxosuit_trace::single_traceparent(text(&PARENT)) {
            let state = waxosuit_trace::joined_tracestate(text(&STATE));
            waxosuit_trace::continue_trace(&span, Some(parent), state.as_deref());
        }
    }
    span
}

/// The size of the request body read.
pub(crate) fn record_body_size(span: &Span, size: usize) {
    span.record(
        "http.request.body.size",
        i64::try_from(size).unwrap_or(i64::MAX),
    );
}

/// The response's status code and body size, recorded together: each
/// record is a trip through the subscriber and a lookup of the span.
pub(crate) fn record_response(span: &Span, response: &HttpResponse) {
    let Some(meta) = span.metadata() else {
        return;
    };
    let fields = meta.fields();
    let (Some(status), Some(size)) = (
        fields.field("http.response.status_code"),
        fields.field("http.response.body.size"),
    ) else {
        return;
    };
    let code = i64::from(response.status().as_u16());
    let body = Some(i64::try_from(response.body().len()).unwrap_or(i64::MAX));
    span.record_all(&fields.value_set(&[
        (&status, Some(&code as &dyn Value)),
        (&size, body.as_ref().map(|size| size as &dyn Value)),
    ]));
}

/// Marks the request as failed on the server's side (a `5xx`), with the
/// reason the client is not told.
pub(crate) fn fail(span: &Span, reason: impl Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", display(reason));
}

/// Marks the request as failed when its response is a `5xx` whose reason
/// was logged where it arose (the actor's own `5xx`, a refused reply).
pub(crate) fn fail_on_server_error(span: &Span, response: &HttpResponse) {
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
}
