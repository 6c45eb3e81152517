//! `policy_decisions_total{point,result,cached}`.
//!
//! A cached decision is counted on the path of every call, from whichever
//! core runs it. One shared atomic per series would move its cache line
//! between cores on each call, so the counters are striped: each thread
//! counts into one of a few cells (each on its own cache lines), and the
//! cells are added up when Prometheus scrapes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::DecisionPoint;

/// A decision's result label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Result3 {
    Allow,
    Deny,
    Error,
}

impl Result3 {
    const ALL: [Result3; 3] = [Result3::Allow, Result3::Deny, Result3::Error];

    fn label(self) -> &'static str {
        match self {
            Result3::Allow => "allow",
            Result3::Deny => "deny",
            Result3::Error => "error",
        }
    }

    fn index(self) -> usize {
        match self {
            Result3::Allow => 0,
            Result3::Deny => 1,
            Result3::Error => 2,
        }
    }
}

/// Series: 4 points × 3 results × cached or not.
const SERIES: usize = 4 * 3 * 2;
/// Cells; threads beyond this many share them. A power of two.
const CELLS: usize = 16;

fn series(point: DecisionPoint, result: Result3, cached: bool) -> usize {
    (point.index() * 3 + result.index()) * 2 + usize::from(cached)
}

#[repr(align(128))]
#[derive(Default)]
struct Cell([AtomicU64; SERIES]);

/// The cell the current thread counts into.
fn cell_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) & (CELLS - 1);
    }
    SLOT.with(|slot| *slot)
}

/// The decision counters of one [`Policy`](crate::Policy).
pub(crate) struct Counters {
    cells: Box<[Cell]>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            cells: (0..CELLS).map(|_| Cell::default()).collect(),
        }
    }
}

impl Counters {
    pub(crate) fn count(&self, point: DecisionPoint, result: Result3, cached: bool) {
        self.cells[cell_index()].0[series(point, result, cached)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn total(&self, point: DecisionPoint, result: Result3, cached: bool) -> u64 {
        let i = series(point, result, cached);
        self.cells
            .iter()
            .map(|c| c.0[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// Exposes [`Counters`] to a prometheus-client registry.
#[derive(Clone)]
pub(crate) struct DecisionsCollector(pub(crate) Arc<Counters>);

impl std::fmt::Debug for DecisionsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionsCollector").finish_non_exhaustive()
    }
}

impl Collector for DecisionsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // The registry adds its prefix (`waxosuit_`) and the text encoder the
        // `_total` suffix of counters: the name here is the bare family name.
        let mut family = encoder.encode_descriptor(
            "policy_decisions",
            "Policy decisions by decision point, result (allow, deny, error) and whether the \
             decision cache answered",
            None,
            MetricType::Counter,
        )?;
        for point in DecisionPoint::ALL {
            for result in Result3::ALL {
                for cached in [false, true] {
                    let labels = [
                        ("point", point.name()),
                        ("result", result.label()),
                        ("cached", if cached { "true" } else { "false" }),
                    ];
                    family
                        .encode_family(&labels)?
                        .encode_counter::<NoLabelSet, _, u64>(
                            &self.0.total(point, result, cached),
                            None,
                        )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn exposed_under_the_host_prefix_with_every_series() {
        let counters = Arc::new(Counters::default());
        counters.count(DecisionPoint::Invoke, Result3::Allow, true);
        counters.count(DecisionPoint::Invoke, Result3::Allow, true);
        counters.count(DecisionPoint::Start, Result3::Error, false);
        std::thread::spawn({
            let counters = Arc::clone(&counters);
            move || counters.count(DecisionPoint::Invoke, Result3::Allow, true)
        })
        .join()
        .unwrap();

        let mut registry = Registry::with_prefix("waxosuit");
        registry.register_collector(Box::new(DecisionsCollector(counters)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();

        assert!(
            text.contains("# TYPE waxosuit_policy_decisions counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "waxosuit_policy_decisions_total{point=\"invoke\",result=\"allow\",cached=\"true\"} 3\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "waxosuit_policy_decisions_total{point=\"start\",result=\"error\",cached=\"false\"} 1\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("waxosuit_policy_decisions_total{").count(),
            SERIES,
            "{text}"
        );
        assert!(!text.contains("_total_total"), "{text}");
    }
}
