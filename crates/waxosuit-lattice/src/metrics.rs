//! What the lattice refused, counted for `/metrics` and logged without
//! letting a flood of forgeries flood the log.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::auth::{Reason, Refusal};

/// Which kind of message was refused (the `plane` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Plane {
    /// Calls to actors and providers.
    Invocation,
    /// Answers to this host's calls.
    Response,
    /// Commands and their replies.
    Command,
    /// Binding changes and binding values.
    Binding,
    /// Inventory questions and answers.
    Inventory,
    /// Events.
    Event,
    /// Auction calls and bids.
    Auction,
    /// Requests for the chunks of a large payload.
    Chunk,
}

impl Plane {
    fn as_str(self) -> &'static str {
        match self {
            Plane::Invocation => "invocation",
            Plane::Response => "response",
            Plane::Command => "command",
            Plane::Binding => "binding",
            Plane::Inventory => "inventory",
            Plane::Event => "event",
            Plane::Auction => "auction",
            Plane::Chunk => "chunk",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    plane: &'static str,
    reason: &'static str,
}

/// At most this many refusals are logged per second; the rest are counted
/// and summarised in the next line that is logged.
const LOG_PER_SECOND: u32 = 20;

struct LogBudget {
    window: Instant,
    used: u32,
    suppressed: u64,
}

/// Refusal counters and the log budget, shared by the whole lattice.
#[derive(Clone)]
pub(crate) struct LatticeMetrics {
    refused: Family<Labels, Counter>,
    busy: Counter,
    log: Arc<Mutex<LogBudget>>,
}

impl LatticeMetrics {
    pub(crate) fn new() -> LatticeMetrics {
        LatticeMetrics {
            refused: Family::default(),
            busy: Counter::default(),
            log: Arc::new(Mutex::new(LogBudget {
                window: Instant::now(),
                used: 0,
                suppressed: 0,
            })),
        }
    }

    /// Counts and (within budget) logs a refused message. Never applied:
    /// this is all that happens to it.
    pub(crate) fn refused(&self, plane: Plane, refusal: &Refusal) {
        self.refused
            .get_or_create(&Labels {
                plane: plane.as_str(),
                reason: refusal.reason.as_str(),
            })
            .inc();
        if let Some(suppressed) = self.may_log() {
            tracing::warn!(
                plane = plane.as_str(),
                signer = refusal.signer.as_deref().unwrap_or("(none)"),
                reason = refusal.reason.as_str(),
                detail = %refusal.detail,
                suppressed_before = suppressed,
                "refused a lattice message"
            );
        }
    }

    /// Counts a call turned away because its target was at its limit.
    pub(crate) fn busy(&self) {
        self.busy.inc();
    }

    /// How many refusals of `plane` for `reason` were counted (tests).
    pub(crate) fn count(&self, plane: Plane, reason: Reason) -> u64 {
        self.refused
            .get_or_create(&Labels {
                plane: plane.as_str(),
                reason: reason.as_str(),
            })
            .get()
    }

    /// `Some(lines suppressed since the last one)` when a line may be
    /// logged: refusals and other lines a peer can cause share the budget.
    pub(crate) fn may_log(&self) -> Option<u64> {
        let mut log = self.log.lock();
        if log.window.elapsed().as_secs() >= 1 {
            log.window = Instant::now();
            log.used = 0;
        }
        if log.used < LOG_PER_SECOND {
            log.used += 1;
            Some(std::mem::take(&mut log.suppressed))
        } else {
            log.suppressed += 1;
            None
        }
    }
}

impl std::fmt::Debug for LatticeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LatticeMetrics")
    }
}

impl Collector for LatticeMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let refused = encoder.encode_descriptor(
            "lattice_refused",
            "Lattice messages refused (never applied), by plane and reason",
            None,
            self.refused.metric_type(),
        )?;
        self.refused.encode(refused)?;
        let busy = encoder.encode_descriptor(
            "lattice_busy",
            "Calls from the lattice turned away because their target was at its concurrency limit",
            None,
            self.busy.metric_type(),
        )?;
        self.busy.encode(busy)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_by_plane_and_reason_and_exposed() {
        let m = LatticeMetrics::new();
        for _ in 0..30 {
            m.refused(Plane::Command, &Refusal::new(Reason::Unsigned, "x"));
        }
        m.refused(Plane::Response, &Refusal::new(Reason::BadSignature, "y"));
        assert_eq!(m.count(Plane::Command, Reason::Unsigned), 30);
        let mut registry = prometheus_client::registry::Registry::with_prefix("waxosuit");
        registry.register_collector(Box::new(m.clone()));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "waxosuit_lattice_refused_total{plane=\"command\",reason=\"unsigned\"} 30"
            ),
            "{text}"
        );
        // The log budget: 20 lines in this second, the rest suppressed.
        assert!(m.may_log().is_none());
    }
}
