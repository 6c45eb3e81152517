//! W3C Trace Context for Waxosuit's spans.
//!
//! # A guided tour
//!
//! A request can cross the HTTP server, an actor, a capability and another
//! host of the lattice; one trace follows it when every edge hands the
//! trace on. This crate is that hand-off, and nothing else:
//!
//! * [`continue_trace`] makes the span a receiving edge opened (an HTTP
//!   server span, a lattice server span, a message consumer span) the child
//!   of the `traceparent` (and `tracestate`) the request carried.
//! * [`TraceHeaders::of`] is the other direction: the values a sending edge
//!   (the HTTP client, a NATS publish, a lattice call) puts into its
//!   request so the receiver can continue the trace.
//!
//! Both are plain strings in and out, so each transport keeps its own
//! header type, and both cost next to nothing when no tracing layer is
//! installed: a disabled span has no context to read or set.
//!
//! The values come from the network, so parsing is strict and bounded:
//! only version `00` of `traceparent` (or a later version's first four
//! fields, as the specification asks), no all-zero ids, and a `tracestate`
//! longer than [`MAX_TRACESTATE_LEN`] or malformed is dropped rather than
//! carried on.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C `traceparent` header's name (lower case, as HTTP/2 and NATS
/// headers are compared here).
pub const TRACEPARENT: &str = "traceparent";
/// The W3C `tracestate` header's name.
pub const TRACESTATE: &str = "tracestate";
/// The longest `tracestate` carried on (the specification's 512 characters
/// that every vendor must propagate); a longer one is dropped whole.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// The trace context a sending edge puts into its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `00-{trace id}-{span id}-{flags}`.
    pub traceparent: String,
    /// Vendor state, when the trace carries any.
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The context of `span`, or `None` when the span is disabled or no
    /// tracing layer gives it an OpenTelemetry context (tracing off).
    pub fn of(span: &Span) -> Option<Self> {
        if span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let span_ref = cx.span();
        let sc = span_ref.span_context();
        if !sc.is_valid() {
            return None;
        }
        let state = sc.trace_state().header();
        Some(Self {
            traceparent: format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8()
            ),
            tracestate: (!state.is_empty()).then_some(state),
        })
    }

    /// The context of the current span ([`TraceHeaders::of`]).
    pub fn current() -> Option<Self> {
        Self::of(&Span::current())
    }
}

/// Makes `span` the child of the remote span named by `traceparent`.
///
/// Returns whether it did: `false` when there is no header, it does not
/// parse, the span is disabled, or the span was already entered (a span's
/// parent is fixed once it starts). A malformed `tracestate` is dropped and
/// the parent kept.
pub fn continue_trace(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) -> bool {
    if span.is_disabled() {
        return false;
    }
    let Some(parent) = traceparent.and_then(|tp| parse_traceparent(tp, tracestate)) else {
        return false;
    };
    let cx = Context::new().with_remote_span_context(parent);
    span.set_parent(cx).is_ok()
}

/// Parses a `traceparent` value (and its `tracestate`) into the remote
/// span's context; `None` when it is not a valid W3C `traceparent`.
pub fn parse_traceparent(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let value = traceparent.trim();
    // version(2) - trace id(32) - span id(16) - flags(2)
    if value.len() < 55 || !value.is_ascii() {
        return None;
    }
    let (head, rest) = value.split_at(55);
    let mut parts = head.split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let span_id = parts.next()?;
    let flags = parts.next()?;
    if parts.next().is_some()
        || version.len() != 2
        || trace_id.len() != 32
        || span_id.len() != 16
        || flags.len() != 2
        || ![version, trace_id, span_id, flags]
            .iter()
            .all(|p| is_lower_hex(p))
    {
        return None;
    }
    // Version ff is forbidden; version 00 has exactly four fields, a later
    // version may append fields after a dash.
    match version {
        "ff" => return None,
        "00" if !rest.is_empty() => return None,
        _ if !rest.is_empty() && !rest.starts_with('-') => return None,
        _ => {}
    }
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = tracestate
        .filter(|s| s.len() <= MAX_TRACESTATE_LEN)
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        state,
    ))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specification_example() {
        let sc = parse_traceparent(PARENT, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
        assert_eq!(sc.trace_state().get("congo"), Some("t61rcWkgMzE"));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00",
            // upper case hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // forbidden version, trailing data on version 00
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            // short fields, wrong separators, non-ASCII
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-011",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert!(parse_traceparent(bad, None).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn later_versions_keep_the_first_four_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra";
        let sc = parse_traceparent(v, None).unwrap();
        // Only the sampled bit is defined; others are not carried on.
        assert_eq!(sc.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn an_oversized_or_malformed_tracestate_is_dropped_not_the_parent() {
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN));
        let sc = parse_traceparent(PARENT, Some(&long)).unwrap();
        assert_eq!(sc.trace_state().header(), "");
        let sc = parse_traceparent(PARENT, Some("not a list member")).unwrap();
        assert_eq!(sc.trace_state().header(), "");
    }

    #[test]
    fn without_a_tracing_layer_nothing_is_read_or_written() {
        let span = tracing::info_span!("edge");
        assert!(!continue_trace(&span, Some(PARENT), None));
        assert_eq!(TraceHeaders::of(&span), None);
    }

    #[test]
    fn a_continued_trace_is_handed_on_with_a_new_span_id() {
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("server");
            assert!(continue_trace(
                &span,
                Some(PARENT),
                Some("congo=t61rcWkgMzE")
            ));
            let headers = span.in_scope(TraceHeaders::current).unwrap();
            let sc = parse_traceparent(&headers.traceparent, None).unwrap();
            assert_eq!(
                sc.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert_ne!(sc.span_id().to_string(), "00f067aa0ba902b7");
            assert!(sc.is_sampled());
            assert_eq!(headers.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
            // The parent is fixed once the span has started.
            assert!(!continue_trace(&span, Some(PARENT), None));
        });
    }
}
