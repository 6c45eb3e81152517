//! What a filter's VMs share: key-value data with compare-and-swap, queues,
//! and metrics. Each filter (chain entry) has its own; nothing is shared
//! between different filters, so one cannot read or flood another's.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::abi::{MetricKind, Status};

/// Most keys in a filter's shared data.
pub const MAX_SHARED_KEYS: usize = 1024;
/// Longest shared-data key, queue name or metric name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest shared-data value or queue item, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 << 10;
/// Most bytes of values in a filter's shared data.
pub const MAX_SHARED_BYTES: usize = 8 << 20;
/// Most queues a filter may register.
pub const MAX_QUEUES: usize = 64;
/// Most items waiting in one queue.
pub const MAX_QUEUE_ITEMS: usize = 1024;
/// Most bytes of items waiting in all of a filter's queues together (the
/// item count alone allows 64 queues × 1024 items × 64 KiB = 4 GiB).
pub const MAX_QUEUED_BYTES: usize = 8 << 20;
/// Most metrics a filter may define.
pub const MAX_METRICS: usize = 256;

/// The shared state of one filter.
#[derive(Default)]
pub(crate) struct Shared {
    data: Mutex<SharedData>,
    queues: Mutex<Queues>,
    pub(crate) metrics: Arc<FilterMetrics>,
}

#[derive(Default)]
struct SharedData {
    /// Value, CAS version, and when it was last written.
    entries: HashMap<String, (Vec<u8>, u32, u64)>,
    bytes: usize,
    writes: u64,
    /// The version the last write was given (never 0, which means "no
    /// check" to `set`).
    next_cas: u32,
}

#[derive(Default)]
struct Queues {
    by_name: HashMap<String, u32>,
    items: Vec<VecDeque<Vec<u8>>>,
    /// Per queue, the VMs (slot indices) that registered it and hear of new items.
    listeners: Vec<Vec<usize>>,
    /// Bytes of all items waiting.
    bytes: usize,
}

impl Shared {
    pub(crate) fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data
            .lock()
            .entries
            .get(key)
            .map(|(v, cas, _)| (v.clone(), *cas))
    }

    /// Sets `key`; with a non-zero `cas`, only if the value is still at that
    /// version. When the keys or bytes would pass their bounds, the least
    /// recently written keys make room: the SDKs cannot delete keys, and a
    /// refusal there is a panic in the filter, so a cache keyed by client
    /// would otherwise break for good once full.
    pub(crate) fn set(&self, key: &str, value: &[u8], cas: u32) -> Status {
        if key.len() > MAX_NAME_BYTES || value.len() > MAX_VALUE_BYTES {
            return Status::BadArgument;
        }
        let mut data = self.data.lock();
        let data = &mut *data;
        let old = data.entries.get(key);
        if cas != 0 && old.map(|(_, v, _)| *v) != Some(cas) {
            return Status::CasMismatch;
        }
        // One counter for all keys, as Envoy's host keeps: a key evicted and
        // written anew must not come back at a version a VM still holds from
        // before, or that VM's compare-and-swap would overwrite the new value.
        data.next_cas = data.next_cas.wrapping_add(1).max(1);
        let version = data.next_cas;
        if let Some((old, _, _)) = data.entries.remove(key) {
            data.bytes -= old.len();
        }
        while !data.entries.is_empty()
            && (data.entries.len() >= MAX_SHARED_KEYS
                || data.bytes + value.len() > MAX_SHARED_BYTES)
        {
            let oldest = data
                .entries
                .iter()
                .min_by_key(|(_, (_, _, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest
                && let Some((evicted, _, _)) = data.entries.remove(&oldest)
            {
                data.bytes -= evicted.len();
            }
        }
        data.writes += 1;
        data.bytes += value.len();
        data.entries
            .insert(key.to_string(), (value.to_vec(), version, data.writes));
        Status::Ok
    }

    /// Registers (or finds) queue `name`; `vm` hears of its new items.
    pub(crate) fn register_queue(&self, name: &str, vm: usize) -> Result<u32, Status> {
        if name.len() > MAX_NAME_BYTES {
            return Err(Status::BadArgument);
        }
        let mut queues = self.queues.lock();
        let id = match queues.by_name.get(name) {
            Some(id) => *id,
            None => {
                if queues.items.len() >= MAX_QUEUES {
                    return Err(Status::BadArgument);
                }
                let id = u32::try_from(queues.items.len()).map_err(|_| Status::BadArgument)?;
                queues.by_name.insert(name.to_string(), id);
                queues.items.push(VecDeque::new());
                queues.listeners.push(Vec::new());
                id
            }
        };
        let listeners = &mut queues.listeners[id as usize];
        if !listeners.contains(&vm) {
            listeners.push(vm);
        }
        Ok(id)
    }

    pub(crate) fn resolve_queue(&self, name: &str) -> Option<u32> {
        self.queues.lock().by_name.get(name).copied()
    }

    /// Adds an item; a full queue drops its oldest item to make room, and
    /// when the filter's queues hold [`MAX_QUEUED_BYTES`], the oldest items
    /// of this queue go first, then those of the longest other queue (the
    /// SDKs treat any refusal but `NotFound` as a bug and panic).
    pub(crate) fn enqueue(&self, id: u32, value: &[u8]) -> Result<(), Status> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(Status::BadArgument);
        }
        let mut guard = self.queues.lock();
        let queues = &mut *guard;
        let at = id as usize;
        if at >= queues.items.len() {
            return Err(Status::NotFound);
        }
        if queues.items[at].len() >= MAX_QUEUE_ITEMS
            && let Some(old) = queues.items[at].pop_front()
        {
            queues.bytes -= old.len();
        }
        while queues.bytes + value.len() > MAX_QUEUED_BYTES {
            let from = if queues.items[at].is_empty() {
                // Another queue holds the bytes: its oldest items go.
                (0..queues.items.len()).max_by_key(|&q| queues.items[q].len())
            } else {
                Some(at)
            };
            match from.and_then(|q| queues.items[q].pop_front()) {
                Some(old) => queues.bytes -= old.len(),
                None => break,
            }
        }
        queues.bytes += value.len();
        queues.items[at].push_back(value.to_vec());
        Ok(())
    }

    /// The VMs (slot indices) that registered queue `id`.
    pub(crate) fn listeners(&self, id: u32) -> Vec<usize> {
        self.queues
            .lock()
            .listeners
            .get(id as usize)
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let mut queues = self.queues.lock();
        let queue = queues.items.get_mut(id as usize).ok_or(Status::NotFound)?;
        let item = queue.pop_front().ok_or(Status::Empty)?;
        queues.bytes -= item.len();
        Ok(item)
    }
}

/// Adds `delta` to `value`, stopping at the bounds of `i64`: a filter's
/// additions must not wrap a counter to a negative value.
fn saturating_add(value: &AtomicI64, delta: i64) {
    let _ = value.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_add(delta))
    });
}

/// One filter's metrics, read by the host's `/metrics`.
#[derive(Default)]
pub struct FilterMetrics {
    defined: Mutex<Vec<Arc<Metric>>>,
}

/// One metric a filter defined.
pub(crate) struct Metric {
    pub(crate) name: String,
    pub(crate) kind: MetricKind,
    /// Counter or gauge value; for a histogram, the sum of recorded values.
    pub(crate) value: AtomicI64,
    /// Histogram: values recorded.
    pub(crate) count: AtomicU64,
    /// Histogram: cumulative-free counts per bucket of [`BUCKETS`].
    pub(crate) buckets: [AtomicU64; BUCKETS.len()],
}

/// Histogram bucket upper bounds: powers of 4 from 1 to 4^15 (~1e9), which
/// covers sizes in bytes and durations in µs or ns alike.
pub(crate) const BUCKETS: [f64; 16] = {
    let mut out = [0.0; 16];
    let mut i = 0;
    let mut bound = 1.0;
    while i < 16 {
        out[i] = bound;
        bound *= 4.0;
        i += 1;
    }
    out
};

impl FilterMetrics {
    /// The id of `name` (defining it if new); a name defined with another
    /// kind is a different metric.
    pub(crate) fn define(&self, kind: MetricKind, name: &str) -> Result<u32, Status> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(Status::BadArgument);
        }
        let mut defined = self.defined.lock();
        if let Some(at) = defined
            .iter()
            .position(|m| m.name == name && m.kind == kind)
        {
            return u32::try_from(at).map_err(|_| Status::BadArgument);
        }
        if defined.len() >= MAX_METRICS {
            return Err(Status::BadArgument);
        }
        defined.push(Arc::new(Metric {
            name: name.to_string(),
            kind,
            value: AtomicI64::new(0),
            count: AtomicU64::new(0),
            buckets: Default::default(),
        }));
        u32::try_from(defined.len() - 1).map_err(|_| Status::BadArgument)
    }

    fn get(&self, id: u32) -> Option<Arc<Metric>> {
        self.defined.lock().get(id as usize).cloned()
    }

    pub(crate) fn increment(&self, id: u32, delta: i64) -> Status {
        let Some(metric) = self.get(id) else {
            return Status::NotFound;
        };
        match metric.kind {
            MetricKind::Counter if delta < 0 => Status::BadArgument,
            MetricKind::Counter | MetricKind::Gauge => {
                saturating_add(&metric.value, delta);
                Status::Ok
            }
            MetricKind::Histogram => Status::BadArgument,
        }
    }

    pub(crate) fn record(&self, id: u32, value: u64) -> Status {
        let Some(metric) = self.get(id) else {
            return Status::NotFound;
        };
        match metric.kind {
            // A counter only goes up (Prometheus reads a fall as a
            // restart): a smaller value leaves it where it is.
            MetricKind::Counter => {
                metric
                    .value
                    .fetch_max(i64::try_from(value).unwrap_or(i64::MAX), Ordering::Relaxed);
            }
            MetricKind::Gauge => {
                metric
                    .value
                    .store(i64::try_from(value).unwrap_or(i64::MAX), Ordering::Relaxed);
            }
            MetricKind::Histogram => {
                metric.count.fetch_add(1, Ordering::Relaxed);
                saturating_add(&metric.value, i64::try_from(value).unwrap_or(i64::MAX));
                #[allow(clippy::cast_precision_loss)]
                let at = BUCKETS
                    .iter()
                    .position(|bound| value as f64 <= *bound)
                    .unwrap_or(BUCKETS.len() - 1);
                metric.buckets[at].fetch_add(1, Ordering::Relaxed);
            }
        }
        Status::Ok
    }

    /// A counter's or gauge's value; a histogram's count.
    pub(crate) fn value(&self, id: u32) -> Option<u64> {
        let metric = self.get(id)?;
        Some(match metric.kind {
            MetricKind::Histogram => metric.count.load(Ordering::Relaxed),
            _ => u64::try_from(metric.value.load(Ordering::Relaxed)).unwrap_or(0),
        })
    }

    pub(crate) fn all(&self) -> Vec<Arc<Metric>> {
        self.defined.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_metrics_saturate_and_counters_never_fall() {
        let metrics = FilterMetrics::default();
        let counter = metrics.define(MetricKind::Counter, "c").unwrap();
        let histogram = metrics.define(MetricKind::Histogram, "h").unwrap();
        let value = |id: u32| metrics.get(id).unwrap().value.load(Ordering::Relaxed);
        assert_eq!(metrics.increment(counter, i64::MAX), Status::Ok);
        assert_eq!(metrics.increment(counter, i64::MAX), Status::Ok);
        assert_eq!(value(counter), i64::MAX, "wrapped");
        assert_eq!(metrics.record(counter, 5), Status::Ok);
        assert_eq!(value(counter), i64::MAX, "a counter fell");
        for _ in 0..3 {
            assert_eq!(metrics.record(histogram, u64::MAX), Status::Ok);
        }
        assert_eq!(value(histogram), i64::MAX);
    }

    #[test]
    fn compare_and_swap_refuses_a_stale_version() {
        let shared = Shared::default();
        assert_eq!(shared.set("k", b"1", 0), Status::Ok);
        let (_, v1) = shared.get("k").unwrap();
        assert_eq!(shared.set("k", b"2", v1), Status::Ok);
        assert_eq!(shared.set("k", b"3", v1), Status::CasMismatch);
        assert_eq!(shared.get("k").unwrap().0, b"2");
        assert_eq!(shared.set("new", b"x", 7), Status::CasMismatch);
    }

    /// A key evicted and written again gets a version no VM saw before, so
    /// a compare-and-swap from before the eviction fails (with versions
    /// counted per key, it restarted at 1 and the stale write won).
    #[test]
    fn a_key_written_anew_after_eviction_refuses_an_old_version() {
        let shared = Shared::default();
        assert_eq!(shared.set("k", b"a", 0), Status::Ok);
        let (_, held) = shared.get("k").unwrap();
        for i in 0..MAX_SHARED_KEYS {
            assert_eq!(shared.set(&format!("other-{i}"), b"x", 0), Status::Ok);
        }
        assert!(shared.get("k").is_none(), "evicted");
        assert_eq!(shared.set("k", b"b", 0), Status::Ok);
        assert_eq!(shared.set("k", b"stale", held), Status::CasMismatch);
        assert_eq!(shared.get("k").unwrap().0, b"b");
    }

    #[test]
    fn a_hostile_filter_cannot_grow_shared_data_or_queues_without_bound() {
        let shared = Shared::default();
        for i in 0..(MAX_SHARED_KEYS * 3) {
            assert_eq!(shared.set(&i.to_string(), b"x", 0), Status::Ok);
        }
        let data = shared.data.lock();
        assert_eq!(data.entries.len(), MAX_SHARED_KEYS);
        // The most recent keys stayed; the oldest made room.
        assert!(
            data.entries
                .contains_key(&(MAX_SHARED_KEYS * 3 - 1).to_string())
        );
        assert!(!data.entries.contains_key("0"));
        drop(data);
        assert_eq!(
            shared.set("0", &vec![0; MAX_VALUE_BYTES + 1], 0),
            Status::BadArgument
        );
        // Total bytes: 64 KiB values, far more than 8 MiB of them.
        let big = vec![0; MAX_VALUE_BYTES];
        for i in 0..400 {
            assert_eq!(shared.set(&format!("big{i}"), &big, 0), Status::Ok);
        }
        let data = shared.data.lock();
        assert!(data.bytes <= MAX_SHARED_BYTES, "{}", data.bytes);
        assert_eq!(
            data.bytes,
            data.entries
                .values()
                .map(|(v, _, _)| v.len())
                .sum::<usize>()
        );
        drop(data);
        let id = shared.register_queue("q", 0).unwrap();
        for i in 0..(MAX_QUEUE_ITEMS + 10) {
            shared.enqueue(id, i.to_string().as_bytes()).unwrap();
        }
        assert_eq!(shared.queues.lock().items[0].len(), MAX_QUEUE_ITEMS);
        assert_eq!(
            shared.dequeue(id).unwrap(),
            b"10",
            "the oldest were dropped"
        );
        for i in 1..MAX_QUEUES {
            shared.register_queue(&format!("q{i}"), 0).unwrap();
        }
        assert_eq!(
            shared.register_queue("too-many", 0),
            Err(Status::BadArgument)
        );
        assert_eq!(shared.listeners(id), vec![0]);

        // Every queue filled with the largest items: the bytes stay bounded,
        // counted exactly, and the newest item is always kept.
        let big = vec![7; MAX_VALUE_BYTES];
        for round in 0..4 {
            for q in 0..MAX_QUEUES as u32 {
                for _ in 0..40 {
                    shared.enqueue(q, &big).unwrap();
                }
                let mut newest = big.clone();
                newest[0] = round;
                shared.enqueue(q, &newest).unwrap();
                let queues = shared.queues.lock();
                assert!(queues.bytes <= MAX_QUEUED_BYTES, "{}", queues.bytes);
                let counted: usize = queues.items.iter().flatten().map(Vec::len).sum();
                assert_eq!(queues.bytes, counted);
                assert_eq!(queues.items[q as usize].back().unwrap()[0], round);
            }
        }
        while shared.dequeue(id).is_ok() {}
        let queues = shared.queues.lock();
        let counted: usize = queues.items.iter().flatten().map(Vec::len).sum();
        assert_eq!(queues.bytes, counted, "dequeues are counted too");
    }

    #[test]
    fn metrics_by_kind() {
        let metrics = FilterMetrics::default();
        let c = metrics.define(MetricKind::Counter, "requests").unwrap();
        assert_eq!(metrics.define(MetricKind::Counter, "requests").unwrap(), c);
        let h = metrics.define(MetricKind::Histogram, "size").unwrap();
        assert_eq!(metrics.increment(c, 2), Status::Ok);
        assert_eq!(metrics.increment(c, -1), Status::BadArgument);
        assert_eq!(metrics.value(c), Some(2));
        assert_eq!(metrics.record(h, 100), Status::Ok);
        assert_eq!(metrics.value(h), Some(1));
        assert_eq!(metrics.increment(99, 1), Status::NotFound);
        for i in 0..MAX_METRICS {
            let _ = metrics.define(MetricKind::Gauge, &format!("g{i}"));
        }
        assert_eq!(
            metrics.define(MetricKind::Gauge, "over"),
            Err(Status::BadArgument)
        );
    }
}
