//! Prometheus metrics: invocations, errors and latency per actor, capability
//! and operation.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

    pub(crate) fn record(&self, labels: &Labels, elapsed: Duration, ok: bool) {
        self.invocations.get_or_create(labels).inc();
        if !ok {
            self.errors.get_or_create(labels).inc();
        }
        self.latency
            .get_or_create(labels)
            .observe(elapsed.as_secs_f64());
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
