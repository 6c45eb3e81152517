//! Prometheus metrics: invocations, errors and latency per actor, capability
//! and operation.
//!
//! # Bounded by construction
//!
//! Label values come from guests (operation names), from the lattice
//! (operations of remote calls) and from providers (capability ids), so
//! nothing here may grow with what they send. Three limits make the size of
//! `/metrics` a constant of this file, [`MAX_INVOCATION_EXPOSITION_BYTES`]
//! (15.6 MB at the limits below; a realistic host is far smaller):
//!
//! * **Label values** are recorded as given only if they are at most
//!   [`MAX_LABEL_BYTES`] (64) bytes of printable ASCII other than `"` and
//!   `\`; anything else is recorded as `other`. Replacing rather than
//!   truncating keeps distinct long names from posing as one real name, and
//!   means the text encoder never escapes, so a label's size is its length.
//!   A longer operation name is mapped to `other` before it is even hashed.
//! * **Operations** per actor, and per actor and capability, are at most
//!   [`MAX_OPERATIONS`] (256); later new names count under `other`. Host
//!   calls to a provider whose descriptor declares its operations
//!   ([`Metrics::declare_operations`]) count undeclared operations under
//!   `other` too, so only names the provider knows get series of their own.
//! * **Label sets** in all are at most [`MAX_SERIES`] (2,048); beyond that,
//!   invocations are counted in one overflow series per target, whose every
//!   label but `target` is `other`. Series are never removed (an actor added
//!   again must find its old series), which is what makes a global bound
//!   necessary: per-actor bounds alone grow with every actor ever loaded.
//!
//! Every invocation records into its series, from whichever core runs it.
//! A shared atomic counter (or prometheus-client's mutex-guarded histogram)
//! would move its cache line between cores on every call, which profiling
//! the HTTP host showed to be a real cost. So each series keeps one cell of
//! counters per thread slot, on its own cache lines, and the cells are only
//! added up when `/metrics` is scraped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rustc_hash::{FxHashMap, FxHashSet};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};

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

/// The longest label value recorded as given; longer ones are `other`.
pub(crate) const MAX_LABEL_BYTES: usize = 64;

/// Label sets (series) of the invocation families in all, not counting
/// the two overflow series.
pub(crate) const MAX_SERIES: usize = 2048;

/// Sample lines per label set: two counters, and a histogram's buckets
/// (with `+Inf`), `_sum` and `_count`.
const SAMPLES_PER_SERIES: usize = 2 + (BUCKETS + 1) + 2;

/// The longest sample line: the longest family name
/// (`waxosuit_invocation_duration_seconds_bucket`, 43 bytes), the label
/// names and quotes (75), three values of [`MAX_LABEL_BYTES`] (192), the
/// `target` (10), an `le` bound (at most 24), a value (at most 24) and the
/// separators: 349 bytes, rounded up.
pub(crate) const MAX_SAMPLE_LINE_BYTES: usize = 400;

/// Bytes of the `# HELP`/`# TYPE` lines of the three families, generously.
const FAMILY_HEADER_BYTES: usize = 1024;

/// Upper bound of the invocation families' part of `/metrics`, in bytes.
/// The rest of the exposition is fixed in size: the `actors` and
/// `bindings` gauges, and the policy and lattice collectors, whose label
/// values are closed sets.
pub(crate) const MAX_INVOCATION_EXPOSITION_BYTES: usize =
    (MAX_SERIES + 2) * SAMPLES_PER_SERIES * MAX_SAMPLE_LINE_BYTES + FAMILY_HEADER_BYTES;

// Checked at compile time, so that a change to the limits that lets the
// bound drift far from what the module docs state fails the build.
const _: () = assert!(MAX_INVOCATION_EXPOSITION_BYTES <= 16 * 1000 * 1000);

/// `value` if it may be a label value as it is, else [`OTHER`].
fn label_value(value: &str) -> &str {
    let fits = value.len() <= MAX_LABEL_BYTES
        && value
            .bytes()
            .all(|b| (b.is_ascii_graphic() || b == b' ') && b != b'"' && b != b'\\');
    if fits { value } else { OTHER }
}

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

/// Every series, for the exposition; at most [`MAX_SERIES`] plus the
/// two overflow series.
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

/// The operations host calls to a capability may be counted under.
#[derive(Debug, Clone)]
enum Declared {
    /// Any: some provider of the capability declares none.
    Any,
    /// Only these; every other name counts as `other`.
    Only(FxHashSet<String>),
}

pub(crate) struct Metrics {
    /// Locked only to scrape, and to register another part's collector.
    registry: Mutex<Registry>,
    series: Arc<SeriesList>,
    /// Read only when a series is created, never on the hot path.
    declared: Mutex<FxHashMap<String, Declared>>,
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
            declared: Mutex::new(FxHashMap::default()),
            actors,
            bindings,
        }
    }

    /// Records which operations actors may call on `descriptor`'s
    /// capability (those towards the provider, or both ways), so that host
    /// calls of any other name are counted under `other`. Providers of one
    /// capability id add up; one that declares no operations lifts the
    /// restriction for its id, since nothing says which names are real.
    pub(crate) fn declare_operations(&self, descriptor: &CapabilityDescriptor) {
        let names: FxHashSet<String> = descriptor
            .supported_operations
            .iter()
            .filter(|op| op.direction != OperationDirection::ToActor)
            .map(|op| op.name.clone())
            .collect();
        let mut declared = self.declared.lock();
        let entry = declared
            .entry(descriptor.id.clone())
            .or_insert_with(|| Declared::Only(FxHashSet::default()));
        match (entry, names.is_empty()) {
            (Declared::Any, _) => {}
            (entry @ Declared::Only(_), true) => *entry = Declared::Any,
            (Declared::Only(known), false) => known.extend(names),
        }
    }

    /// Whether host calls of `operation` on `capability` get a series of
    /// their own (rather than `other`). Calls into actors (`capability`
    /// empty) and capabilities no provider here has declared (a provider
    /// on another host) are not restricted.
    fn is_declared(&self, capability: &str, operation: &str) -> bool {
        if capability.is_empty() {
            return true;
        }
        let declared = self.declared.lock();
        match declared.get(capability) {
            None | Some(Declared::Any) => true,
            Some(Declared::Only(known)) => known.contains(operation),
        }
    }

    /// The series of `labels`, listed in the exposition from its creation
    /// on. An actor that is removed and added again finds its old series:
    /// two series with one label set would make Prometheus reject the scrape.
    /// Past [`MAX_SERIES`], new label sets share their target's overflow
    /// series.
    fn series(&self, labels: Labels) -> Arc<Series> {
        let mut list = self.series.0.lock();
        // A linear search, but only when a cache misses: series are created
        // once per actor, capability and operation.
        if let Some((_, series)) = list.iter().find(|(l, _)| *l == labels) {
            return Arc::clone(series);
        }
        let labels = if list.len() >= MAX_SERIES {
            let overflow = Labels {
                target: labels.target,
                actor: OTHER.to_string(),
                capability: if labels.capability.is_empty() {
                    String::new()
                } else {
                    OTHER.to_string()
                },
                operation: OTHER.to_string(),
            };
            if let Some((_, series)) = list.iter().find(|(l, _)| *l == overflow) {
                return Arc::clone(series);
            }
            overflow
        } else {
            labels
        };
        let series = Arc::new(Series::new());
        list.push((labels, Arc::clone(&series)));
        series
    }

    /// Adds a collector whose metrics appear in every later scrape.
    pub(crate) fn register(&self, collector: Box<dyn Collector>) {
        self.registry.lock().register_collector(collector);
    }

    pub(crate) fn set_counts(&self, actors: usize, bindings: usize) {
        self.actors.set(i64::try_from(actors).unwrap_or(i64::MAX));
        self.bindings
            .set(i64::try_from(bindings).unwrap_or(i64::MAX));
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let registry = self.registry.lock();
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Distinct operations tracked per actor and capability; beyond this (a guest
/// inventing operation names) calls are counted under `operation="other"`,
/// so a guest cannot grow the host's memory through its metrics.
pub(crate) const MAX_OPERATIONS: usize = 256;

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
        // Before any lookup: hashing a 64 KiB name on every call would cost
        // more than the call, and it could never be recorded as given.
        let operation = if operation.len() > MAX_LABEL_BYTES {
            OTHER
        } else {
            operation
        };
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
            // Another thread may have added it since the lookup missed.
            if let Some(series) = ops.get(operation) {
                return Arc::clone(series);
            }
            let room = ops.len() < MAX_OPERATIONS;
            let label = if room
                && label_value(operation) == operation
                && metrics.is_declared(capability, operation)
            {
                operation
            } else {
                OTHER
            };
            let series = Arc::clone(ops.entry(label.to_string()).or_insert_with(|| {
                metrics.series(Labels {
                    target: if capability.is_empty() {
                        "actor"
                    } else {
                        "capability"
                    },
                    actor: label_value(actor).to_string(),
                    capability: label_value(capability).to_string(),
                    operation: label.to_string(),
                })
            }));
            // A name counted as `other` is remembered as an alias of it, so
            // its next call is a cache hit instead of another copy of the
            // map. Names are at most MAX_LABEL_BYTES here and aliases take
            // places like any name, so the map stays small.
            if label != operation && room {
                ops.insert(operation.to_string(), Arc::clone(&series));
            }
            series
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

    /// The `waxosuit_invocations_total` lines of an exposition.
    fn invocation_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("waxosuit_invocations_total{"))
            .collect()
    }

    #[test]
    fn label_values_are_short_printable_ascii_or_other() {
        let longest = "x".repeat(MAX_LABEL_BYTES);
        assert_eq!(label_value(&longest), longest);
        assert_eq!(label_value("HandleRequest"), "HandleRequest");
        assert_eq!(label_value("wascc:http_server"), "wascc:http_server");
        assert_eq!(label_value("with space"), "with space");
        for bad in [
            "x".repeat(MAX_LABEL_BYTES + 1),
            "quo\"te".to_string(),
            "back\\slash".to_string(),
            "new\nline".to_string(),
            "tab\t".to_string(),
            "nul\0".to_string(),
            "Grüße".to_string(),
        ] {
            assert_eq!(label_value(&bad), OTHER, "{bad:?}");
        }
    }

    #[test]
    fn ten_thousand_calls_with_64_kib_operation_names_make_one_small_series() {
        let metrics = Metrics::new();
        let cache = SeriesCache::default();
        for i in 0..10_000 {
            // Each name distinct, as an attacker would make them.
            let mut name = format!("{i:05}");
            name.push_str(&"A".repeat(64 * 1024 - name.len()));
            let capability = if i % 2 == 0 { "" } else { "wascc:logging" };
            cache.record(&metrics, "MA", capability, &name, Duration::ZERO, true);
        }
        let text = metrics.encode();
        assert_eq!(
            invocation_lines(&text),
            [
                r#"waxosuit_invocations_total{target="actor",actor="MA",capability="",operation="other"} 5000"#,
                r#"waxosuit_invocations_total{target="capability",actor="MA",capability="wascc:logging",operation="other"} 5000"#,
            ]
        );
        // The 320 MB of the issue, now under 16 KiB; and no name was kept.
        assert!(text.len() < 16 * 1024, "{} bytes", text.len());
        assert_eq!(cache.own.load().len(), 1);
        assert_eq!(cache.by_capability.load()["wascc:logging"].len(), 1);
    }

    #[test]
    fn odd_names_count_as_other_and_stay_cached() {
        let metrics = Metrics::new();
        let cache = SeriesCache::default();
        for _ in 0..3 {
            cache.record(&metrics, "MA", "", "bad\nname", Duration::ZERO, true);
        }
        let full = cache.own.load_full();
        cache.record(&metrics, "MA", "", "bad\nname", Duration::ZERO, true);
        assert!(
            Arc::ptr_eq(&full, &cache.own.load_full()),
            "the alias makes later calls cache hits"
        );
        let text = metrics.encode();
        assert_eq!(
            invocation_lines(&text),
            [
                r#"waxosuit_invocations_total{target="actor",actor="MA",capability="",operation="other"} 4"#
            ]
        );
    }

    #[test]
    fn operations_a_provider_does_not_declare_count_as_other() {
        let metrics = Metrics::new();
        let descriptor = CapabilityDescriptor::builder()
            .id("wascc:blobstore")
            .with_operation("StartUpload", OperationDirection::ToProvider, "")
            .with_operation("Either", OperationDirection::Both, "")
            .with_operation("ReceiveChunk", OperationDirection::ToActor, "")
            .build();
        metrics.declare_operations(&descriptor);
        let cache = SeriesCache::default();
        for op in [
            "StartUpload",
            "Either",
            "ReceiveChunk",
            "Invented",
            "Invented2",
        ] {
            cache.record(&metrics, "MA", "wascc:blobstore", op, Duration::ZERO, true);
        }
        // Calls into actors and to capabilities nobody declared are free.
        cache.record(&metrics, "MA", "", "Invented", Duration::ZERO, true);
        cache.record(
            &metrics,
            "MA",
            "acme:remote",
            "Invented",
            Duration::ZERO,
            true,
        );
        let text = metrics.encode();
        let lines = invocation_lines(&text);
        for expected in [
            r#"capability="wascc:blobstore",operation="StartUpload"} 1"#,
            r#"capability="wascc:blobstore",operation="Either"} 1"#,
            r#"capability="wascc:blobstore",operation="other"} 3"#,
            r#"capability="",operation="Invented"} 1"#,
            r#"capability="acme:remote",operation="Invented"} 1"#,
        ] {
            assert!(
                lines.iter().any(|l| l.ends_with(expected)),
                "{expected}: {text}"
            );
        }
        assert_eq!(lines.len(), 5, "{text}");

        // A second provider of the id that declares nothing lifts the
        // restriction; one declaring more adds to it.
        let other = Metrics::new();
        other.declare_operations(&descriptor);
        other.declare_operations(
            &CapabilityDescriptor::builder()
                .id("wascc:blobstore")
                .with_operation("Extra", OperationDirection::ToProvider, "")
                .build(),
        );
        assert!(other.is_declared("wascc:blobstore", "Extra"));
        assert!(other.is_declared("wascc:blobstore", "StartUpload"));
        assert!(!other.is_declared("wascc:blobstore", "Invented"));
        other.declare_operations(
            &CapabilityDescriptor::builder()
                .id("wascc:blobstore")
                .build(),
        );
        assert!(other.is_declared("wascc:blobstore", "Invented"));
    }

    #[test]
    fn the_exposition_stays_under_its_bound_when_every_limit_is_reached() {
        let metrics = Metrics::new();
        // Every label at its longest, on enough actors and capabilities to
        // pass the global limit on series.
        let long = |prefix: &str, i: usize| {
            let mut s = format!("{prefix}{i}-");
            s.push_str(&"Z".repeat(MAX_LABEL_BYTES - s.len()));
            s
        };
        let actors = MAX_SERIES / (2 * MAX_OPERATIONS) + 2;
        for a in 0..actors {
            let cache = SeriesCache::default();
            let actor = long("M", a);
            for o in 0..=MAX_OPERATIONS {
                let op = long("op", o);
                for capability in [String::new(), long("cap:", a)] {
                    // The longest `_sum` the encoder can print, too.
                    cache.record(&metrics, &actor, &capability, &op, Duration::MAX, false);
                }
            }
        }
        let text = metrics.encode();
        let lines = invocation_lines(&text);
        assert_eq!(
            lines.len(),
            MAX_SERIES + 2,
            "two overflow series past the limit"
        );
        assert!(
            lines.iter().any(|l| l.starts_with(
                r#"waxosuit_invocations_total{target="actor",actor="other",capability="",operation="other"}"#
            )),
            "{text}"
        );
        assert!(lines.iter().any(|l| l.starts_with(
            r#"waxosuit_invocations_total{target="capability",actor="other",capability="other",operation="other"}"#
        )));
        let longest = text.lines().map(str::len).max().unwrap_or(0);
        assert!(
            longest <= MAX_SAMPLE_LINE_BYTES,
            "a line of {longest} bytes"
        );
        assert!(
            text.len() <= MAX_INVOCATION_EXPOSITION_BYTES,
            "{} bytes over the bound of {MAX_INVOCATION_EXPOSITION_BYTES}",
            text.len()
        );
        println!(
            "worst case: {} bytes for {} series (bound {MAX_INVOCATION_EXPOSITION_BYTES}), \
             longest line {longest} bytes",
            text.len(),
            lines.len()
        );
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
