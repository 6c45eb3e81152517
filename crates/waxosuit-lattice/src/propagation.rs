//! Traces across the lattice: the spans of a remote call, and the trace
//! context that travels with it, authenticated like the rest of the call.
//!
//! # A guided tour
//!
//! A call from one host to another is one hop of a trace. The caller opens
//! a client span, `lattice {target}` (`client_span`), and sends the W3C
//! context of that span with the invocation in the NATS headers
//! `traceparent` and `tracestate` (`Outgoing`); when no subscriber is
//! installed the span is disabled and nothing is added, so the message is
//! byte for byte what it was without tracing. The serving host opens a
//! server span, `lattice serve {target}` (`server_span`), and continues
//! the trace from those headers, inside which the host runs the actor or
//! provider.
//!
//! Headers are not part of the payload, but they are part of the call: a
//! trace context spliced into a captured call would attach another host's
//! work (and its sampling decision) to a trace of the splicer's choosing.
//! So the headers as sent are reduced to one [`binding`] that the call's
//! claims ([`crate::antiforgery`]) or session tag ([`crate::session`])
//! cover, and the server continues a trace only from a call that
//! authenticated: a header added, altered or removed in transit fails
//! exactly as a tampered payload does. A call without trace headers binds
//! nothing extra, so its proof is the one it always was.
//!
//! The headers come from the network: before anything else is done with a
//! call, one carrying more than one value of either header, a `traceparent`
//! over [`MAX_TRACEPARENT_LEN`] bytes or a `tracestate` over
//! [`MAX_TRACESTATE_LEN`] bytes is refused (`Carried::read`).

use std::fmt;

use async_nats::HeaderMap;
use tracing::Span;
use tracing::field::{Empty, display};
use waxosuit_trace::{TRACEPARENT, TRACESTATE, TraceHeaders};

pub use waxosuit_trace::MAX_TRACESTATE_LEN;

use crate::auth::{Reason, Refusal};
use crate::protocol::{WireEntity, WireInvocation, digest};

/// The longest `traceparent` a call may carry: version `00` is 55 bytes,
/// and a later version's extra fields are not carried on anyway.
pub const MAX_TRACEPARENT_LEN: usize = 64;

/// What a call's claims or session tag bind of its trace headers as sent:
/// `None` when it carries neither header (the proof is then the one a call
/// without tracing always had), otherwise a digest that tells an absent
/// header from an empty one and each header from the other.
pub fn binding(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<String> {
    if traceparent.is_none() && tracestate.is_none() {
        return None;
    }
    let present = |v: Option<&str>| if v.is_some() { [1u8] } else { [0u8] };
    Some(digest(&[
        b"waxosuit trace context",
        &present(traceparent),
        traceparent.unwrap_or_default().as_bytes(),
        &present(tracestate),
        tracestate.unwrap_or_default().as_bytes(),
    ]))
}

/// The trace headers a received call carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Carried {
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

impl Carried {
    /// Reads a call's trace headers, refusing more than one value of
    /// either, or one over its bound, before any other work is done.
    pub(crate) fn read(headers: Option<&HeaderMap>) -> Result<Carried, Refusal> {
        let Some(headers) = headers else {
            return Ok(Carried::default());
        };
        Ok(Carried {
            traceparent: one(headers, TRACEPARENT, MAX_TRACEPARENT_LEN)?,
            tracestate: one(headers, TRACESTATE, MAX_TRACESTATE_LEN)?,
        })
    }

    /// [`binding`] of these headers.
    pub(crate) fn binding(&self) -> Option<String> {
        binding(self.traceparent.as_deref(), self.tracestate.as_deref())
    }

    /// Makes `span` (a server span, not yet entered) continue the trace
    /// these (authenticated) headers name.
    pub(crate) fn continue_in(&self, span: &Span) {
        waxosuit_trace::continue_trace(
            span,
            self.traceparent.as_deref(),
            self.tracestate.as_deref(),
        );
    }
}

fn one(headers: &HeaderMap, name: &str, max: usize) -> Result<Option<String>, Refusal> {
    let mut values = headers.get_all(name);
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            Reason::Malformed,
            format!("it carries more than one `{name}` header"),
        ));
    }
    let value = first.as_str();
    if value.len() > max {
        return Err(Refusal::new(
            Reason::Malformed,
            format!(
                "its `{name}` header is {} bytes long (at most {max} allowed)",
                value.len()
            ),
        ));
    }
    Ok(Some(value.to_string()))
}

/// The trace context a call sends: its headers and what its proof binds.
pub(crate) struct Outgoing {
    pub(crate) headers: HeaderMap,
    pub(crate) binding: String,
}

impl Outgoing {
    /// The context of the client span `span`, or `None` when tracing is off.
    /// A `tracestate` longer than receivers accept is left out.
    pub(crate) fn of(span: &Span) -> Option<Outgoing> {
        let TraceHeaders {
            traceparent,
            tracestate,
        } = TraceHeaders::of(span)?;
        let tracestate = tracestate.filter(|s| s.len() <= MAX_TRACESTATE_LEN);
        let binding = binding(Some(&traceparent), tracestate.as_deref())?;
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, traceparent.as_str());
        if let Some(state) = &tracestate {
            headers.insert(TRACESTATE, state.as_str());
        }
        Some(Outgoing { headers, binding })
    }
}

/// A call's target as its span names it: `actor {key}` or
/// `{capid} {binding}`.
struct Named<'a> {
    prefix: &'static str,
    target: &'a WireEntity,
}

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.target {
            WireEntity::Actor(key) => write!(f, "{}actor {key}", self.prefix),
            WireEntity::Capability { capid, binding } => {
                write!(f, "{}{capid} {binding}", self.prefix)
            }
            WireEntity::Host(key) => write!(f, "{}host {key}", self.prefix),
        }
    }
}

/// The caller's span of one remote call. The subject, host and whether the
/// payload is chunked are recorded once the call has picked them.
pub(crate) fn client_span(target: &WireEntity, operation: &str) -> Span {
    tracing::info_span!(
        "lattice call",
        otel.name = %Named { prefix: "lattice ", target },
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = "nats",
        messaging.destination.name = Empty,
        waxosuit.lattice.target_host = Empty,
        waxosuit.lattice.chunked = Empty,
        waxosuit.operation = operation,
    )
}

/// The serving host's span of one authenticated call received on
/// `subject`.
pub(crate) fn server_span(inv: &WireInvocation, subject: &str) -> Span {
    tracing::info_span!(
        "lattice serve",
        otel.name = %Named { prefix: "lattice serve ", target: &inv.target },
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = "nats",
        messaging.destination.name = subject,
        waxosuit.lattice.origin_host = inv.host_id.as_str(),
        waxosuit.lattice.chunked = inv.chunked.is_some(),
        waxosuit.operation = inv.operation.as_str(),
    )
}

/// Marks `span` failed, with the reason as the exported status's
/// description.
pub(crate) fn failed(span: &Span, reason: &dyn fmt::Display) {
    span.record("otel.status_code", "error");
    span.record("otel.status_description", display(reason));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_binding_tells_every_header_change_apart() {
        assert_eq!(binding(None, None), None, "no headers bind nothing");
        let all = [
            binding(Some(PARENT), None),
            binding(Some(PARENT), Some("")),
            binding(Some(PARENT), Some("k=v")),
            binding(Some(&PARENT.replace("-01", "-00")), Some("k=v")),
            binding(Some(""), None),
            binding(None, Some("")),
            binding(None, Some(PARENT)),
            binding(Some("k=v"), Some(PARENT)),
        ];
        for (i, a) in all.iter().enumerate() {
            assert!(a.is_some());
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn headers_are_bounded_and_single_before_any_work() {
        assert_eq!(Carried::read(None).unwrap(), Carried::default());
        let mut h = HeaderMap::new();
        h.insert("Traceparent", PARENT);
        assert_eq!(
            Carried::read(Some(&h)).unwrap(),
            Carried::default(),
            "header names are case-sensitive: another name is not read"
        );
        h.insert(TRACEPARENT, PARENT);
        h.insert(TRACESTATE, "k=v");
        let carried = Carried::read(Some(&h)).unwrap();
        assert_eq!(carried.traceparent.as_deref(), Some(PARENT));
        assert_eq!(carried.tracestate.as_deref(), Some("k=v"));
        assert_eq!(carried.binding(), binding(Some(PARENT), Some("k=v")));

        let mut long = HeaderMap::new();
        long.insert(
            TRACEPARENT,
            format!("01-{}", "a".repeat(MAX_TRACEPARENT_LEN)).as_str(),
        );
        let err = Carried::read(Some(&long)).unwrap_err();
        assert_eq!(err.reason, Reason::Malformed);
        assert!(
            err.detail.contains("`traceparent` header is 67 bytes"),
            "{err}"
        );

        let mut long = HeaderMap::new();
        long.insert(
            TRACESTATE,
            format!("k={}", "v".repeat(MAX_TRACESTATE_LEN)).as_str(),
        );
        let err = Carried::read(Some(&long)).unwrap_err();
        assert!(err.detail.contains("at most 512"), "{err}");

        let mut twice = HeaderMap::new();
        twice.append(TRACEPARENT, PARENT);
        twice.append(TRACEPARENT, PARENT);
        let err = Carried::read(Some(&twice)).unwrap_err();
        assert!(err.detail.contains("more than one `traceparent`"), "{err}");
    }

    #[test]
    fn without_a_tracing_layer_a_call_sends_no_trace_context() {
        let span = client_span(&WireEntity::Actor("M".into()), "echo");
        assert!(Outgoing::of(&span).is_none());
    }

    #[test]
    fn spans_are_named_after_their_target() {
        let cap = WireEntity::Capability {
            capid: "wascc:keyvalue".into(),
            binding: "default".into(),
        };
        let named = |prefix, target| Named { prefix, target }.to_string();
        assert_eq!(named("lattice ", &cap), "lattice wascc:keyvalue default");
        assert_eq!(
            named("lattice serve ", &WireEntity::Actor("MKEY".into())),
            "lattice serve actor MKEY"
        );
    }
}
