//! The host's trace spans: one per call into an actor, one per capability
//! call an actor makes.
//!
//! They are ordinary `tracing` spans, exported as OpenTelemetry spans when
//! the embedder installs a tracing layer (`docs/observability.md` lists
//! every attribute). Their fields are computed inside the span macros,
//! which evaluate nothing when no layer wants the span, so with tracing off
//! a call pays one callsite check per span. The spans nest by the usual
//! `tracing` rules: a capability call runs inside the span of the actor
//! that makes it, and that actor's span inside whatever called it (an HTTP
//! server span, a lattice call, another actor). Their kind is OpenTelemetry's
//! default, `internal`. Each attribute costs every traced call an allocation
//! and an encoding, so the spans carry what a reader filters on and no more.

use tracing::Span;
use tracing::field::Empty;
use waxosuit_runtime::ErrorKind;

use crate::HostError;
use crate::host::{ActorEntry, RouteKey};

/// The span of one call into `entry`. `waxosuit.instance.wait_us` starts
/// at 0, what a call that finds an idle instance waits; the runtime
/// records the time when the call had to queue for one.
pub(crate) fn actor(entry: &ActorEntry, key: &str, operation: &str) -> Span {
    // The claims are borrowed (twice, as the macro evaluates each field
    // only when the span is wanted), not cloned: an `Arc`'s count is shared
    // by every thread calling the actor, and each change moves its cache
    // line between cores.
    tracing::info_span!(
        "actor",
        otel.name = %format_args!("{} {operation}", entry.claims.load().name()),
        otel.status_code = Empty,
        otel.status_description = Empty,
        waxosuit.actor.key = key,
        waxosuit.actor.name = entry.claims.load().name(),
        waxosuit.operation = operation,
        waxosuit.outcome = Empty,
        waxosuit.instance.wait_us = 0_u64,
    )
}

/// The span of a capability call `caller` makes through `route`.
pub(crate) fn capability(caller: &str, route: &RouteKey, operation: &str) -> Span {
    tracing::info_span!(
        "capability",
        otel.name = %format_args!("{} {operation}", route.capid),
        otel.status_code = Empty,
        otel.status_description = Empty,
        waxosuit.capability = route.capid.as_str(),
        waxosuit.binding = route.binding.as_str(),
        waxosuit.operation = operation,
        waxosuit.actor.key = caller,
        waxosuit.outcome = Empty,
    )
}

/// Records how the call the span stands for ended; an error marks the span
/// as failed with the error's message.
pub(crate) fn finish<T>(span: &Span, result: &Result<T, HostError>) {
    if span.is_disabled() {
        return;
    }
    match result {
        Ok(_) => {
            span.record("waxosuit.outcome", "ok");
        }
        Err(error) => {
            span.record("waxosuit.outcome", outcome(error));
            span.record("otel.status_code", "error");
            span.record("otel.status_description", tracing::field::display(error));
        }
    }
}

/// A short, stable name for how a call failed: what a trace query filters
/// on, where the message says the rest.
pub(crate) fn outcome(error: &HostError) -> &'static str {
    match error {
        HostError::Runtime { error, .. } => match error.kind() {
            ErrorKind::Deadline => "deadline",
            ErrorKind::Trap => "trap",
            ErrorKind::MemoryLimit => "memory_limit",
            ErrorKind::FuelExhausted => "fuel_exhausted",
            ErrorKind::QueueTimeout => "queue_timeout",
            ErrorKind::PayloadTooLarge | ErrorKind::NameTooLong => "too_large",
            ErrorKind::GuestError => "guest_error",
            _ => "runtime_error",
        },
        HostError::ActorFailed { .. } => "guest_error",
        HostError::PermissionDenied { .. }
        | HostError::DeliveredByCapability { .. }
        | HostError::MissingBinding { .. }
        | HostError::Policy { .. } => "denied",
        HostError::ActorNotFound { .. } | HostError::ProviderNotFound { .. } => "not_found",
        HostError::Remote { .. } => "remote_error",
        HostError::Provider { .. } => "provider_error",
        HostError::Middleware { .. } => "middleware",
        HostError::ShuttingDown => "shutting_down",
        _ => "error",
    }
}
