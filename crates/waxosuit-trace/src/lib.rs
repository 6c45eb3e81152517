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
//! * [`Recorder`] is the subscriber that keeps the spans (`recorder`
//!   module), gives them their OpenTelemetry identity and records them
//!   (`record` module): ids, sampling, attributes, events and status,
//!   handed to a [`SpanSink`] when each span closes. `waxosuit-telemetry` installs it with an OTLP
//!   exporter as the sink; tests install it with a vector.
//! * [`span_context`] reads a span's trace and span ids back.
//!
//! Both directions are plain strings in and out, so each transport keeps
//! its own header type, and both cost next to nothing when no [`Recorder`]
//! is installed: a disabled span has no context to read or set.
//!
//! The values come from the network, so parsing is strict and bounded:
//! only version `00` of `traceparent` (or a later version's first four
//! fields, as the specification asks), no all-zero ids, and a `tracestate`
//! longer than [`MAX_TRACESTATE_LEN`] or malformed is dropped rather than
//! carried on.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod record;
mod recorder;
mod slots;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use std::borrow::Cow;
use tracing::Span;

pub use record::{
    AttributeValue, FinishedSpan, MAX_ATTRIBUTES, MAX_EVENTS, MAX_TEXT, MAX_VALUE_LEN, Recording,
    Sampler, SpanRecord, SpanSink, SpanStatus,
};
pub use recorder::{EventSpan, Recorder, SpanStore};

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
    /// [`Recorder`] exporting spans gives it an OpenTelemetry context
    /// (tracing off).
    pub fn of(span: &Span) -> Option<Self> {
        let sc = span_context(span)?;
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
/// parse, the span is disabled or not recorded by a [`Recorder`], it has a
/// local parent, or a child span or [`span_context`] already copied its
/// trace (so the parent is fixed once the trace was handed on). A
/// malformed `tracestate` is dropped and the parent kept. The span is
/// sampled again as the recorder's sampler decides for a span with that
/// parent.
pub fn continue_trace(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) -> bool {
    if span.is_disabled() {
        return false;
    }
    let Some(parent) = traceparent.and_then(|tp| parse_traceparent(tp, tracestate)) else {
        return false;
    };
    span.with_subscriber(|(id, dispatch)| {
        let recorder = dispatch.downcast_ref::<Recorder>()?;
        recorder.with_recording(id, |r| r.set_remote_parent(&parent, recorder.sampler()))
    })
    .flatten()
    .unwrap_or(false)
}

/// The trace context of `span`, when a [`Recorder`] records it.
pub fn span_context(span: &Span) -> Option<SpanContext> {
    if span.is_disabled() {
        return None;
    }
    span.with_subscriber(|(id, dispatch)| {
        dispatch
            .downcast_ref::<Recorder>()?
            .with_recording(id, |r| {
                // Handed on: a later `continue_trace` would make it a lie.
                r.has_children = true;
                r.span_context()
            })
    })
    .flatten()
}

/// The one `traceparent` among a message's values of that header (`None`
/// for a value that is not text): `None` when there is none or more than
/// one. Two (a client's, and a proxy's appended after it) name no one
/// parent, and the specification starts a new trace rather than let the
/// first win.
pub fn single_traceparent<'a>(
    mut values: impl Iterator<Item = Option<&'a str>>,
) -> Option<&'a str> {
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first
}

/// A message's `tracestate` values joined with `,` into one list, as the
/// specification combines several headers; `None` when there is none, one
/// is not text, or the list passes [`MAX_TRACESTATE_LEN`] (it would be
/// dropped whole anyway).
pub fn joined_tracestate<'a>(
    mut values: impl Iterator<Item = Option<&'a str>>,
) -> Option<Cow<'a, str>> {
    let first = values.next()??;
    let Some(second) = values.next() else {
        return Some(Cow::Borrowed(first));
    };
    let mut joined = first.to_string();
    for value in std::iter::once(second).chain(values) {
        joined.push(',');
        joined.push_str(value?);
        if joined.len() > MAX_TRACESTATE_LEN {
            return None;
        }
    }
    Some(Cow::Owned(joined))
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
        .filter(|s| valid_tracestate(s))
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

/// The most list members a `tracestate` may have.
const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Whether `value` is a `tracestate` the W3C grammar allows: at most
/// [`MAX_TRACESTATE_LEN`] bytes and 32 members,
/// each `key=value` with a key of the specification's characters (simple,
/// or `tenant@system`) found once, and a value of printable ASCII without
/// `,` or `=` that does not end in a space. Anything else is dropped whole
/// (the specification's choice for a list it cannot parse), so a value
/// carried on to the next hop (a NATS header, a lattice call, an OTLP
/// span) is never one the specification calls invalid: a control
/// character, a line break, a duplicated key.
pub fn valid_tracestate(value: &str) -> bool {
    if value.len() > MAX_TRACESTATE_LEN {
        return false;
    }
    let mut keys: Vec<&str> = Vec::new();
    for member in value.split(',') {
        // Optional white space around members; empty members are allowed.
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let Some((key, val)) = member.split_once('=') else {
            return false;
        };
        if !valid_key(key) || !valid_value(val) || keys.contains(&key) {
            return false;
        }
        keys.push(key);
        if keys.len() > MAX_TRACESTATE_MEMBERS {
            return false;
        }
    }
    true
}

/// `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or
/// `tenant@system`: a tenant of up to 241 such characters that may start
/// with a digit, and a system of up to 14 that starts with a letter.
fn valid_key(key: &str) -> bool {
    let rest_ok = |s: &str| {
        s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/'))
    };
    match key.split_once('@') {
        None => {
            key.len() <= 256
                && key.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
                && rest_ok(key)
        }
        Some((tenant, system)) => {
            (1..=241).contains(&tenant.len())
                && tenant
                    .as_bytes()
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && rest_ok(tenant)
                && (1..=14).contains(&system.len())
                && system
                    .as_bytes()
                    .first()
                    .is_some_and(u8::is_ascii_lowercase)
                && rest_ok(system)
        }
    }
}

/// `0*255(chr) nblk-chr`: printable ASCII but `,` and `=`, not ending in
/// a space.
fn valid_value(value: &str) -> bool {
    (1..=256).contains(&value.len())
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|b| matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e))
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Kept(Mutex<Vec<FinishedSpan>>);

    impl SpanSink for Kept {
        fn finish(&self, span: &SpanRecord<'_>) {
            self.0.lock().unwrap().push(span.to_finished());
        }
    }

    fn recording(sampler: Sampler) -> (Arc<Kept>, impl tracing::Subscriber) {
        let kept = Arc::new(Kept::default());
        let recorder = Recorder::new(sampler, kept.clone());
        (kept, recorder)
    }

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
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        for bad in [
            "k=a\u{1b}b",
            "k=a\rb",
            "k=a\nb",
            "k=é",
            "k=\0",
            "foo=1,foo=2",
            "k=",
            "K=v",
            "1k=v",
            "foo@=v",
            "@sys=v",
            "t@1sys=v",
            "k==v",
            many.as_str(),
        ] {
            let sc = parse_traceparent(PARENT, Some(bad)).unwrap();
            assert_eq!(sc.trace_state().header(), "", "{bad:?} was kept");
        }
    }

    #[test]
    fn one_traceparent_or_none_and_tracestates_joined() {
        assert_eq!(single_traceparent([Some("a")].into_iter()), Some("a"));
        assert_eq!(single_traceparent(std::iter::empty()), None);
        assert_eq!(single_traceparent([Some("a"), Some("b")].into_iter()), None);
        assert_eq!(single_traceparent([None].into_iter()), None);
        let joined =
            |v: &[Option<&str>]| joined_tracestate(v.iter().copied()).map(|c| c.into_owned());
        assert_eq!(joined(&[Some("a=1")]).as_deref(), Some("a=1"));
        assert_eq!(
            joined(&[Some("a=1"), Some("b=2")]).as_deref(),
            Some("a=1,b=2")
        );
        assert_eq!(joined(&[Some("a=1"), None]), None);
        assert_eq!(joined(&[]), None);
        let half = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN / 2));
        assert_eq!(joined(&[Some(&half), Some(&half)]), None);
    }

    #[test]
    fn a_tracestate_the_grammar_allows_is_kept() {
        let few = (0..32)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        for good in [
            "congo=t61rcWkgMzE",
            "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE",
            "  a=1 ,, b=2\t",
            "tenant1@vendor=x y",
            "0t@sys=1",
            "k*/_-=a!\"#$%&'()*+-./:;<>?@[]^_`{|}~",
            few.as_str(),
        ] {
            assert!(valid_tracestate(good), "{good:?} was refused");
            let sc = parse_traceparent(PARENT, Some(good)).unwrap();
            assert_ne!(sc.trace_state().header(), "", "{good:?} was dropped");
        }
    }

    #[test]
    fn without_a_recorder_nothing_is_read_or_written() {
        let span = tracing::info_span!("edge");
        assert!(!continue_trace(&span, Some(PARENT), None));
        assert_eq!(TraceHeaders::of(&span), None);
    }

    #[test]
    fn a_continued_trace_is_handed_on_with_a_new_span_id() {
        let (kept, subscriber) = recording(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
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
            // The parent is fixed once a child has copied the trace.
            span.in_scope(|| tracing::info_span!("child").in_scope(|| {}));
            assert!(!continue_trace(&span, Some(PARENT), None));
        });
        // Sampled by the remote parent (the root sampler would have
        // dropped it), with the child.
        let kept = kept.0.lock().unwrap();
        let names: Vec<_> = kept.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["child", "server"]);
        assert!(kept[1].parent_span_is_remote);
        assert_eq!(kept[0].parent_span_id, kept[1].span_context.span_id());
    }

    #[test]
    fn an_unsampled_parent_is_not_recorded_but_its_context_travels() {
        let (kept, subscriber) = recording(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("server");
            let unsampled = PARENT.replace("-01", "-00");
            assert!(continue_trace(&span, Some(&unsampled), None));
            let headers = span
                .in_scope(|| tracing::info_span!("child").in_scope(TraceHeaders::current))
                .unwrap();
            assert!(
                headers
                    .traceparent
                    .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
            );
            assert!(
                headers.traceparent.ends_with("-00"),
                "{}",
                headers.traceparent
            );
        });
        assert!(kept.0.lock().unwrap().is_empty());
    }

    #[test]
    fn fields_events_and_status_follow_the_conventions() {
        let (kept, subscriber) = recording(Sampler::AlwaysOn);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "http.server",
                otel.name = "GET",
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                url.path = "/a",
                http.response.status_code = tracing::field::Empty,
                big = u64::MAX,
            );
            span.record("http.response.status_code", 503_i64);
            span.record("url.path", "/b");
            span.in_scope(|| {
                tracing::info!(actor = "MX", "hello from the actor");
                tracing::error!("it broke");
            });
            span.record("otel.status_code", "error");
        });
        let kept = kept.0.lock().unwrap();
        let span = &kept[0];
        assert_eq!(span.name, "GET");
        assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Server);
        let attr = |k: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(attr("url.path"), Some("/b".into()));
        assert_eq!(attr("http.response.status_code"), Some(503_i64.into()));
        assert_eq!(attr("big"), Some(u64::MAX.to_string().into()));
        assert!(attr("otel.name").is_none() && attr("otel.kind").is_none());
        assert_eq!(span.events.len(), 2);
        assert_eq!(span.events[0].name, "hello from the actor");
        assert!(
            span.events[0]
                .attributes
                .iter()
                .any(|kv| kv.key.as_str() == "actor" && kv.value == "MX".into())
        );
        // The ERROR event set the status; `otel.status_code = "error"`
        // later keeps its description.
        assert_eq!(span.status, opentelemetry::trace::Status::error("it broke"));
        assert!(span.end_time >= span.start_time);
    }

    #[test]
    fn an_error_after_the_event_bound_still_fails_the_span() {
        let (kept, subscriber) = recording(Sampler::AlwaysOn);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!("actor").in_scope(|| {
                for n in 0..(MAX_EVENTS + 10) {
                    tracing::info!(n, "line");
                }
                tracing::error!("it broke after all that");
            });
        });
        let kept = kept.0.lock().unwrap();
        assert_eq!(
            kept[0].status,
            opentelemetry::trace::Status::error("it broke after all that")
        );
        assert_eq!(kept[0].events.len(), MAX_EVENTS);
    }

    #[test]
    fn a_span_with_a_local_parent_or_a_handed_on_context_keeps_its_trace() {
        let (_kept, subscriber) = recording(Sampler::AlwaysOn);
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            let child = root.in_scope(|| tracing::info_span!("child"));
            assert!(!continue_trace(&child, Some(PARENT), None));
            let edge = tracing::info_span!(parent: None, "edge");
            let sent = span_context(&edge).unwrap();
            assert!(!continue_trace(&edge, Some(PARENT), None));
            assert_eq!(span_context(&edge).unwrap().trace_id(), sent.trace_id());
        });
    }

    #[test]
    fn a_span_belongs_to_its_explicit_parent_or_to_the_current_span_or_to_none() {
        let (kept, subscriber) = recording(Sampler::AlwaysOn);
        tracing::subscriber::with_default(subscriber, || {
            let other = tracing::info_span!("other");
            let current = tracing::info_span!("current");
            current.in_scope(|| {
                tracing::info_span!(parent: &other, "explicit").in_scope(|| {});
                tracing::info_span!("contextual").in_scope(|| {});
                tracing::info_span!(parent: None, "root").in_scope(|| {});
            });
        });
        let kept = kept.0.lock().unwrap();
        let span = |name: &str| kept.iter().find(|s| s.name == name).unwrap();
        let (other, current) = (span("other"), span("current"));
        let in_trace_of = |child: &FinishedSpan, parent: &FinishedSpan| {
            child.span_context.trace_id() == parent.span_context.trace_id()
                && child.parent_span_id == parent.span_context.span_id()
        };
        assert!(in_trace_of(span("explicit"), other));
        assert!(in_trace_of(span("contextual"), current));
        let root = span("root");
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_ne!(
            root.span_context.trace_id(),
            current.span_context.trace_id()
        );
        assert_ne!(
            other.span_context.trace_id(),
            current.span_context.trace_id()
        );
    }

    #[test]
    fn a_hostile_span_is_bounded() {
        let (kept, subscriber) = recording(Sampler::AlwaysOn);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("actor", log = tracing::field::Empty);
            span.record("log", "x".repeat(1 << 20).as_str());
            span.in_scope(|| {
                for _ in 0..10_000 {
                    tracing::info!("{}", "y".repeat(10_000));
                }
            });
        });
        let kept = kept.0.lock().unwrap();
        let span = &kept[0];
        // Each line is cut to 4 KiB, and the span's events hold 64 KiB.
        let kept_events = MAX_TEXT / MAX_VALUE_LEN;
        assert_eq!(span.events.len(), kept_events);
        assert_eq!(span.dropped_events_count as usize, 10_000 - kept_events);
        assert!(span.events.iter().all(|e| e.name.len() <= MAX_VALUE_LEN));
        let log = span.attributes.iter().find(|kv| kv.key.as_str() == "log");
        assert_eq!(log.unwrap().value.as_str().len(), MAX_VALUE_LEN);
    }
}
