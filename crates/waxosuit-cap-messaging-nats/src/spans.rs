//! The spans of messages, as Waxosuit's tracing conventions (issue #18)
//! name them: a producer span per `Publish`, a client span per `Request`,
//! both handing their W3C trace context on in the NATS message's
//! `traceparent`/`tracestate` headers, and a consumer span per message
//! delivered to an actor, continuing the trace its headers carry.
//!
//! When no subscriber is interested the spans are disabled: no field is
//! evaluated, no header is read, and messages go out without headers (`PUB`
//! rather than `HPUB`), exactly as before.

use std::fmt::Display;

use async_nats::{HeaderMap, HeaderName};
use tracing::Span;
use tracing::field::{Empty, display};
use waxosuit_trace::{TRACEPARENT, TRACESTATE, TraceHeaders};

/// What an outgoing message is: a `Publish` (no answer awaited) or a
/// `Request` (the caller waits for one).
#[derive(Clone, Copy)]
pub(crate) enum Outgoing {
    Publish,
    Request,
}

/// The span of an outgoing message of `body_size` bytes to `subject`:
/// `publish {subject}` (producer) or `send {subject}` (client).
pub(crate) fn outgoing(kind: Outgoing, subject: &str, body_size: usize) -> Span {
    let (operation, otel_kind) = match kind {
        Outgoing::Publish => ("publish", "producer"),
        Outgoing::Request => ("send", "client"),
    };
    tracing::info_span!(
        "nats.outgoing",
        otel.name = %format_args!("{operation} {subject}"),
        otel.kind = otel_kind,
        messaging.system = "nats",
        "messaging.operation.type" = operation,
        messaging.destination.name = subject,
        messaging.message.body.size = size(body_size),
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// The span of delivering a message to `actor`, the child of the trace its
/// `headers` carry, if any.
pub(crate) fn process(message: &async_nats::Message, actor: &str) -> Span {
    let subject = message.subject.as_str();
    let span = tracing::info_span!(
        "nats.process",
        otel.name = %format_args!("process {subject}"),
        otel.kind = "consumer",
        messaging.system = "nats",
        "messaging.operation.type" = "process",
        messaging.destination.name = subject,
        messaging.message.body.size = size(message.payload.len()),
        waxosuit.actor.key = actor,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if !span.is_disabled()
        && let Some(headers) = &message.headers
        && let Some(parent) = waxosuit_trace::single_traceparent(values(headers, TRACEPARENT))
    {
        let state = waxosuit_trace::joined_tracestate(values(headers, TRACESTATE));
        waxosuit_trace::continue_trace(&span, Some(parent), state.as_deref());
    }
    span
}

/// The headers carrying `span`'s trace context; `None` when tracing is off.
pub(crate) fn trace_headers(span: &Span) -> Option<HeaderMap> {
    let trace = TraceHeaders::of(span)?;
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(TRACEPARENT), trace.traceparent);
    if let Some(state) = trace.tracestate {
        headers.insert(HeaderName::from_static(TRACESTATE), state);
    }
    Some(headers)
}

/// Puts a failure on `span`, with its reason.
pub(crate) fn fail(span: &Span, reason: impl Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", display(reason));
}

/// Puts `outcome` on `span` when it is a failure.
pub(crate) fn outcome<T, E: Display>(span: &Span, outcome: &Result<T, E>) {
    if let Err(error) = outcome {
        fail(span, error);
    }
}

/// Every value of a header, whatever the case of its name: NATS header
/// names are case-sensitive, and other clients' propagators differ.
fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = Option<&'a str>> {
    headers
        .iter()
        .filter(move |(key, _)| AsRef::<str>::as_ref(*key).eq_ignore_ascii_case(name))
        .flat_map(|(_, values)| values.iter().map(|value| Some(value.as_str())))
}

fn size(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}
