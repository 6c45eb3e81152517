//! Prometheus metrics: invocations, errors and latency per actor, capability
//! and operation.

use rustc_hash::FxHashMap;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::host::{read, write};

/// Labels of one invocation series. `target` is `actor` for calls into
/// actors and `capability` for calls into providers.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Labels {
    pub(crate) target: &'static str,
    pub(crate) actor: String,
    pub(crate) capability: String,
    pub(crate) operation: String,
}

fn latency_histogram() -> Histogram {
    // 10 µs … ~40 s: wasm calls are µs, provider I/O can be seconds.
    Histogram::new(exponential_buckets(0.000_01, 3.0, 14))
}

pub(crate) struct Metrics {
    registry: Registry,
    invocations: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    actors: Gauge,
    bindings: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("waxosuit");
        let invocations = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let latency =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let actors = Gauge::default();
        let bindings = Gauge::default();
        registry.register(
            "invocations",
            "Invocations of actors and capability providers",
            invocations.clone(),
        );
        registry.register(
            "invocation_errors",
            "Invocations that ended in an error",
            errors.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Duration of invocations",
            latency.clone(),
        );
        registry.register("actors", "Actors running in this host", actors.clone());
        registry.register("bindings", "Actor-capability bindings", bindings.clone());
        Metrics {
            registry,
            invocations,
            errors,
            latency,
            actors,
            bindings,
        }
    }

    /// The handles of one series. They share their values with the
    /// families, so recording through them needs no label set.
    fn series(&self, labels: &Labels) -> Series {
        Series {
            invocations: self.invocations.get_or_create(labels).clone(),
            errors: self.errors.get_or_create(labels).clone(),
            latency: self.latency.get_or_create(labels).clone(),
        }
    }

    pub(crate) fn set_counts(&self, actors: usize, bindings: usize) {
        self.actors.set(i64::try_from(actors).unwrap_or(i64::MAX));
        self.bindings
            .set(i64::try_from(bindings).unwrap_or(i64::MAX));
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One label set's counters and histogram.
pub(crate) struct Series {
    invocations: Counter,
    errors: Counter,
    latency: Histogram,
}

impl Series {
    pub(crate) fn record(&self, elapsed: Duration, ok: bool) {
        self.invocations.inc();
        if !ok {
            self.errors.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }
}

/// Distinct operations tracked per actor and capability; beyond this (a guest
/// inventing operation names) calls are counted under `operation="other"`,
/// so a guest cannot grow the host's memory through its metrics.
const MAX_OPERATIONS: usize = 256;

/// One actor's series, looked up by capability and operation without
/// building (or hashing) the full label set on every call: the hot path of
/// every invocation.
#[derive(Default)]
pub(crate) struct SeriesCache {
    by_capability: RwLock<FxHashMap<String, FxHashMap<String, Series>>>,
}

impl SeriesCache {
    /// Records one invocation of `operation` by `actor` on `capability`
    /// (empty for calls into the actor itself).
    pub(crate) fn record(
        &self,
        metrics: &Metrics,
        actor: &str,
        capability: &str,
        operation: &str,
        elapsed: Duration,
        ok: bool,
    ) {
        if let Some(series) = read(&self.by_capability)
            .get(capability)
            .and_then(|ops| ops.get(operation))
        {
            series.record(elapsed, ok);
            return;
        }
        let mut map = write(&self.by_capability);
        let ops = map.entry(capability.to_string()).or_default();
        let operation = if ops.len() >= MAX_OPERATIONS && !ops.contains_key(operation) {
            "other"
        } else {
            operation
        };
        ops.entry(operation.to_string())
            .or_insert_with(|| {
                metrics.series(&Labels {
                    target: if capability.is_empty() {
                        "actor"
                    } else {
                        "capability"
                    },
                    actor: actor.to_string(),
                    capability: capability.to_string(),
                    operation: operation.to_string(),
                })
            })
            .record(elapsed, ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_series_share_values_with_the_exposition() {
        let metrics = Metrics::new();
        let cache = SeriesCache::default();
        cache.record(&metrics, "MA", "", "Op", Duration::from_micros(5), true);
        cache.record(&metrics, "MA", "", "Op", Duration::from_micros(5), false);
        cache.record(
            &metrics,
            "MA",
            "wascc:keyvalue",
            "Get",
            Duration::from_micros(5),
            true,
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"waxosuit_invocations_total{target="actor",actor="MA",capability="",operation="Op"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"waxosuit_invocation_errors_total{target="actor",actor="MA",capability="",operation="Op"} 1"#),
            "{text}"
        );
        assert!(text.contains(
            r#"target="capability",actor="MA",capability="wascc:keyvalue",operation="Get"} 1"#
        ));
    }

    #[test]
    fn invented_operation_names_cannot_grow_the_metrics_without_bound() {
        let metrics = Metrics::new();
        let cache = SeriesCache::default();
        for i in 0..(MAX_OPERATIONS + 50) {
            cache.record(
                &metrics,
                "MA",
                "",
                &format!("op{i}"),
                Duration::from_micros(1),
                true,
            );
        }
        let text = metrics.encode();
        assert!(text.contains(r#"operation="other"} 50"#), "{text}");
        let series = text
            .lines()
            .filter(|l| l.starts_with("waxosuit_invocations_total{"))
            .count();
        assert_eq!(series, MAX_OPERATIONS + 1);
    }
}
