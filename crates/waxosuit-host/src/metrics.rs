//! Prometheus metrics: invocations, errors and latency per actor, capability
//! and operation.
//!
//! Every invocation records into its series, from whichever core runs it.
//! A shared atomic counter (or prometheus-client's mutex-guarded histogram)
//! would move its cache line between cores on every call, which profiling
//! the HTTP host showed to be a real cost. So each series keeps one cell of
//! counters per thread slot, on its own cache lines, and the cells are only
//! added up when `/metrics` is scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::FxHashMap;

use crate::read_mostly::ReadMostly;

/// Labels of one invocation series. `target` is `actor` for calls into
/// actors and `capability` for calls into providers.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Labels {
    pub(crate) target: &'static str,
    pub(crate) actor: String,
    pub(crate) capability: String,
    pub(crate) operation: String,
}

/// Finite latency bucket bounds: 10 µs × 3ⁿ, up to ~40 s (wasm calls take
/// microseconds, provider I/O can take seconds); `+Inf` follows.
const BUCKETS: usize = 14;
const FIRST_BOUND_NANOS: u64 = 10_000;

fn bucket_bounds_nanos() -> [u64; BUCKETS] {
    let mut bounds = [FIRST_BOUND_NANOS; BUCKETS];
    for i in 1..BUCKETS {
        bounds[i] = bounds[i - 1] * 3;
    }
    bounds
}

/// Most cells per series: beyond this many threads, threads share cells.
const MAX_CELLS: usize = 16;

/// One thread slot's counters of one series.
#[repr(align(128))]
#[derive(Default)]
struct Cell128 {
    errors: AtomicU64,
    sum_nanos: AtomicU64,
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS + 1],
}

/// One label set's invocations, errors and latencies.
pub(crate) struct Series {
    cells: Box<[Cell128]>,
    bounds: [u64; BUCKETS],
}

/// A series added up across its cells.
struct Totals {
    count: u64,
    errors: u64,
    sum_seconds: f64,
    buckets: Vec<(f64, u64)>,
}

impl Series {
    fn new() -> Series {
        // Asked once: `available_parallelism` reads cgroup files.
        static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let threads =
            *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        Series {
            cells: (0..threads.clamp(1, MAX_CELLS).next_power_of_two())
                .map(|_| Cell128::default())
                .collect(),
            bounds: bucket_bounds_nanos(),
        }
    }

    pub(crate) fn record(&self, elapsed: Duration, ok: bool) {
        // A power of two long: a mask, not a division, on every invocation.
        let cell = &self.cells[waxosuit_runtime::thread_slot() & (self.cells.len() - 1)];
        if !ok {
            cell.errors.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        cell.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(BUCKETS);
        cell.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    fn totals(&self) -> Totals {
        let sum = |f: &dyn Fn(&Cell128) -> &AtomicU64| -> u64 {
            self.cells
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add)
        };
        let upper = |i: usize| {
            self.bounds
                .get(i)
                .map_or(f64::INFINITY, |&nanos| nanos as f64 / 1e9)
        };
        let buckets: Vec<(f64, u64)> = (0..=BUCKETS)
            .map(|i| (upper(i), sum(&|c| &c.buckets[i])))
            .collect();
        Totals {
            // From the buckets read here, so that `_count` and the `+Inf`
            // bucket always agree (every invocation lands in one bucket).
            count: buckets.iter().map(|&(_, n)| n).fold(0, u64::wrapping_add),
            errors: sum(&|c| &c.errors),
            sum_seconds: sum(&|c| &c.sum_nanos) as f64 / 1e9,
            buckets,
        }
    }
}

/// A counter family of the exposition: name, help, value of a series.
type CounterFamily = (&'static str, &'static str, fn(&Totals) -> u64);

/// Every series, for the exposition.
#[derive(Default)]
struct SeriesList(Mutex<Vec<(Labels, Arc<Series>)>>);

impl std::fmt::Debug for SeriesList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesList").finish_non_exhaustive()
    }
}

impl Collector for SeriesList {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let series: Vec<(Labels, Totals)> = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(labels, series)| (labels.clone(), series.totals()))
            .collect();
        let counters: [CounterFamily; 2] = [
            (
                "invocations",
                "Invocations of actors and capability providers",
                |t| t.count,
            ),
            (
                "invocation_errors",
                "Invocations that ended in an error",
                |t| t.errors,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (labels, totals) in &series {
                family
                    .encode_family(labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&value(totals), None)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "invocation_duration_seconds",
            "Duration of invocations",
            None,
            MetricType::Histogram,
        )?;
        for (labels, totals) in &series {
            family
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(
                    totals.sum_seconds,
                    totals.count,
                    &totals.buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

pub(crate) struct Metrics {
    /// Locked only to scrape, and to register another part's collector.
    registry: Mutex<Registry>,
    series: Arc<SeriesList>,
    actors: Gauge,
    bindings: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("waxosuit");
        let series = Arc::new(SeriesList::default());
        registry.register_collector(Box::new(Arc::clone(&series)));
        let actors = Gauge::default();
        let bindings = Gauge::default();
        registry.register("actors", "Actors running in this host", actors.clone());
        registry.register("bindings", "Actor-capability bindings", bindings.clone());
        Metrics {
            registry: Mutex::new(registry),
            series,
            actors,
            bindings,
        }
    }

    /// The series of `labels`, listed in the exposition from its creation
    /// on. An actor that is removed and added again finds its old series:
    /// two series with one label set would make Prometheus reject the scrape.
    fn series(&self, labels: Labels) -> Arc<Series> {
        let mut list = self.series.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A linear search, but only when a cache misses: series are created
        // once per actor, capability and operation.
        if let Some((_, series)) = list.iter().find(|(l, _)| *l == labels) {
            return Arc::clone(series);
        }
        let series = Arc::new(Series::new());
        list.push((labels, Arc::clone(&series)));
        series
    }

    /// Adds a collector whose metrics appear in every later scrape.
    pub(crate) fn register(&self, collector: Box<dyn Collector>) {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register_collector(collector);
    }

    pub(crate) fn set_counts(&self, actors: usize, bindings: usize) {
        self.actors.set(i64::try_from(actors).unwrap_or(i64::MAX));
        self.bindings
            .set(i64::try_from(bindings).unwrap_or(i64::MAX));
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Distinct operations tracked per actor and capability; beyond this (a guest
/// inventing operation names) calls are counted under `operation="other"`,
/// so a guest cannot grow the host's memory through its metrics.
const MAX_OPERATIONS: usize = 256;

/// Series by operation name.
type Operations = FxHashMap<String, Arc<Series>>;

/// The operation label of calls beyond [`MAX_OPERATIONS`].
const OTHER: &str = "other";

/// `operation`'s series, or `other`'s once the map is full: a guest that
/// keeps inventing names must not make every call copy the map.
fn cached<'a>(ops: &'a Operations, operation: &str) -> Option<&'a Arc<Series>> {
    ops.get(operation).or_else(|| {
        if ops.len() >= MAX_OPERATIONS {
            ops.get(OTHER)
        } else {
            None
        }
    })
}

/// One actor's series, looked up by capability and operation without
/// building (or hashing) the full label set on every call: the hot path of
/// every invocation.
#[derive(Default)]
pub(crate) struct SeriesCache {
    /// Calls into the actor itself. Kept apart rather than under an empty
    /// capability id: comparing two empty `String`s (whose pointers are
    /// dangling) costs ~90 ns on AVX-512 glibc, where `memcmp`'s masked load
    /// of an unmapped address needs a microcode assist; that was a fifth of
    /// the host's own cost per call.
    own: ReadMostly<Operations>,
    /// The actor's host calls, by capability id.
    by_capability: ReadMostly<FxHashMap<String, Operations>>,
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
        // Recorded through the snapshot: cloning the `Arc` would write its
        // count, shared by every core, on each call.
        if capability.is_empty() {
            if let Some(series) = cached(&self.own.load(), operation) {
                return series.record(elapsed, ok);
            }
        } else if let Some(series) = self
            .by_capability
            .load()
            .get(capability)
            .and_then(|ops| cached(ops, operation))
        {
            return series.record(elapsed, ok);
        }
        let series = self.insert(metrics, actor, capability, operation);
        series.record(elapsed, ok);
    }

    /// The series for a label set seen for the first time (or `other`).
    #[cold]
    fn insert(
        &self,
        metrics: &Metrics,
        actor: &str,
        capability: &str,
        operation: &str,
    ) -> Arc<Series> {
        let make = |ops: &mut Operations| {
            let operation = if ops.len() >= MAX_OPERATIONS && !ops.contains_key(operation) {
                OTHER
            } else {
                operation
            };
            Arc::clone(ops.entry(operation.to_string()).or_insert_with(|| {
                metrics.series(Labels {
                    target: if capability.is_empty() {
                        "actor"
                    } else {
                        "capability"
                    },
                    actor: actor.to_string(),
                    capability: capability.to_string(),
                    operation: operation.to_string(),
                })
            }))
        };
        if capability.is_empty() {
            self.own.update(make)
        } else {
            self.by_capability
                .update(|map| make(map.entry(capability.to_string()).or_default()))
        }
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
    fn an_actor_added_again_keeps_one_series_per_label_set() {
        let metrics = Metrics::new();
        for _ in 0..2 {
            // A fresh cache, as for an actor removed and added again.
            let cache = SeriesCache::default();
            cache.record(&metrics, "MA", "", "Op", Duration::from_micros(5), true);
        }
        let text = metrics.encode();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("waxosuit_invocations_total{"))
            .collect();
        assert_eq!(
            lines,
            [
                r#"waxosuit_invocations_total{target="actor",actor="MA",capability="",operation="Op"} 2"#
            ],
            "{text}"
        );
        assert!(
            text.contains(r#"waxosuit_invocation_duration_seconds_count{target="actor",actor="MA",capability="",operation="Op"} 2"#),
            "{text}"
        );
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

        // Once full, new names are counted without copying the map again.
        let full = cache.own.load_full();
        cache.record(&metrics, "MA", "", "yet-another", Duration::ZERO, true);
        assert!(Arc::ptr_eq(&full, &cache.own.load_full()));
        assert!(metrics.encode().contains(r#"operation="other"} 51"#));
    }

    #[test]
    fn host_call_series_are_bounded_per_capability_too() {
        let metrics = Metrics::new();
        let cache = SeriesCache::default();
        for i in 0..(MAX_OPERATIONS + 5) {
            let op = format!("op{i}");
            cache.record(&metrics, "MA", "wascc:keyvalue", &op, Duration::ZERO, true);
        }
        let full = cache.by_capability.load_full();
        cache.record(
            &metrics,
            "MA",
            "wascc:keyvalue",
            "new",
            Duration::ZERO,
            true,
        );
        assert!(Arc::ptr_eq(&full, &cache.by_capability.load_full()));
        let text = metrics.encode();
        assert!(
            text.contains(r#"capability="wascc:keyvalue",operation="other"} 6"#),
            "{text}"
        );
        // The actor's own operations are counted apart.
        cache.record(&metrics, "MA", "", "op0", Duration::ZERO, true);
        assert!(metrics.encode().contains(
            r#"waxosuit_invocations_total{target="actor",actor="MA",capability="",operation="op0"} 1"#
        ));
    }
}
