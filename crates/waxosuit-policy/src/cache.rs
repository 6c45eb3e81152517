//! The invocation decision cache: (actor, capability, binding, operation) →
//! verdict, for a time-to-live.
//!
//! A hit is on the path of every call an actor makes or receives, so it must
//! cost tens of nanoseconds, allocate nothing and scale across cores:
//!
//! * The key is hashed once (foldhash, seeded per process, since operation
//!   names come from untrusted guests) and looked up as borrowed `&str`s; the
//!   same hash picks a shard and probes the shard's table.
//! * A shard's table is published through `arc-swap`: a reader takes a
//!   snapshot without writing any memory shared with other cores (an
//!   `RwLock` would write its lock word on every hit). A new key copies the
//!   shard's table, which holds only `Arc`s, so copies are cheap and rare.
//! * Each entry's verdict and expiry live in one `AtomicU64`, so refreshing
//!   an expired entry is a store, not a copy.
//! * Expiry is checked against a coarse monotonic clock
//!   (`CLOCK_MONOTONIC_COARSE` on Linux, ~4 ns through the vDSO, where
//!   `Instant::now` costs ~30 ns). Its resolution is the kernel tick (1–4
//!   ms), so an entry may outlive its TTL by that much.
//!
//! The cache is bounded ([`CACHE_CAPACITY`](crate::CACHE_CAPACITY) keys,
//! split evenly across shards). When a shard is full, entries that have
//! expired are dropped to make room; if none has, the new key is not cached
//! (its decision is evaluated every time), so a guest inventing operation
//! names cannot grow the host's memory or evict the decisions of others.
//! Nor can it take their room: one actor holds at most a quarter of each
//! shard's live entries. Without that share, an actor inventing ~1,600
//! names a second kept every shard full of its own fresh decisions, and
//! every other actor's decision, once expired, found no room and went to
//! the engine (an OPA round trip, a decision-log line) on every call.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hashbrown::{DefaultHashBuilder, HashTable};
use parking_lot::Mutex;

use crate::InvokeKey;

/// A decision worth caching. Failures never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The document was `true`.
    Allow,
    /// The document had a value other than `true`.
    DenyFalse,
    /// The document was undefined at a governed point.
    DenyUndefined,
}

impl Verdict {
    fn bits(self) -> u64 {
        match self {
            Verdict::Allow => 1,
            Verdict::DenyFalse => 2,
            Verdict::DenyUndefined => 3,
        }
    }

    fn from_bits(bits: u64) -> Option<Verdict> {
        match bits {
            1 => Some(Verdict::Allow),
            2 => Some(Verdict::DenyFalse),
            3 => Some(Verdict::DenyUndefined),
            _ => None,
        }
    }
}

/// Shards: enough that one insert copies a small table, few enough that the
/// empty cache is small. A power of two.
const SHARDS: usize = 32;
/// Low bits of an entry's state hold the verdict; the rest its expiry.
const VERDICT_BITS: u32 = 2;

struct Entry {
    hash: u64,
    actor: Box<str>,
    capability: Box<str>,
    binding: Box<str>,
    operation: Box<str>,
    direction: crate::input::Direction,
    /// `expiry_nanos << VERDICT_BITS | verdict`, with the expiry in
    /// nanoseconds since the cache's epoch; 0 means "nothing valid".
    state: AtomicU64,
}

impl Entry {
    fn matches(&self, key: &InvokeKey<'_>) -> bool {
        // The operation first: it is the field that differs most often
        // between the entries of one actor.
        *self.operation == *key.operation
            && self.direction == key.direction
            && *self.capability == *key.capability
            && *self.binding == *key.binding
            && *self.actor == *key.actor
    }
}

type Table = HashTable<Arc<Entry>>;

#[derive(Default)]
struct Shard {
    table: ArcSwap<Table>,
    /// Serialises inserts, so that each applies to the latest table.
    writer: Mutex<()>,
}

pub(crate) struct DecisionCache {
    shards: Box<[Shard]>,
    hasher: DefaultHashBuilder,
    /// Zero disables the cache.
    ttl_nanos: u64,
    per_shard: usize,
    /// The most live entries of one actor in a shard.
    per_actor: usize,
}

impl DecisionCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> DecisionCache {
        DecisionCache {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: DefaultHashBuilder::default(),
            // A TTL beyond what the state word can hold (about 146 years) is
            // as good as forever.
            ttl_nanos: u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX >> VERDICT_BITS),
            per_shard: capacity.div_ceil(SHARDS),
            // A quarter, but never fewer than 8 (or the whole of a shard
            // smaller than that): a small cache is a test's or a tiny host's.
            per_actor: (capacity.div_ceil(SHARDS) / 4).max(capacity.div_ceil(SHARDS).min(8)),
        }
    }

    fn hash(&self, key: &InvokeKey<'_>) -> u64 {
        self.hasher.hash_one((
            key.actor,
            key.capability,
            key.binding,
            key.operation,
            key.direction,
        ))
    }

    fn shard(&self, hash: u64) -> &Shard {
        // hashbrown probes with the low bits and tags with the top seven, so
        // the shard comes from bits in between.
        &self.shards[(hash >> 40) as usize & (SHARDS - 1)]
    }

    /// The cache's clock, in nanoseconds; pass its reading to
    /// [`DecisionCache::insert`].
    pub(crate) fn now(&self) -> u64 {
        clock::coarse_nanos()
    }

    /// The cached verdict for `key`, if there is one that has not expired.
    pub(crate) fn get(&self, key: &InvokeKey<'_>) -> Option<Verdict> {
        if self.ttl_nanos == 0 {
            return None;
        }
        let hash = self.hash(key);
        let table = self.shard(hash).table.load();
        let entry = table.find(hash, |e| e.matches(key))?;
        let state = entry.state.load(Ordering::Relaxed);
        if state >> VERDICT_BITS > self.now() {
            Verdict::from_bits(state & ((1 << VERDICT_BITS) - 1))
        } else {
            None
        }
    }

    /// Caches `verdict` for `key` until `decided_at` ([`DecisionCache::now`])
    /// plus the TTL. `decided_at` is read before the evaluation starts, so
    /// that an entry never outlives its TTL counted from the facts it was
    /// decided on.
    pub(crate) fn insert(&self, key: &InvokeKey<'_>, verdict: Verdict, decided_at: u64) {
        if self.ttl_nanos == 0 {
            return;
        }
        let expiry = decided_at
            .saturating_add(self.ttl_nanos)
            .min(u64::MAX >> VERDICT_BITS);
        let state = expiry << VERDICT_BITS | verdict.bits();
        let hash = self.hash(key);
        let shard = self.shard(hash);
        if let Some(entry) = shard.table.load().find(hash, |e| e.matches(key)) {
            entry.state.store(state, Ordering::Relaxed);
            return;
        }

        let _writer = shard.writer.lock();
        let current = shard.table.load_full();
        // Another task may have inserted the key while this one waited.
        if let Some(entry) = current.find(hash, |e| e.matches(key)) {
            entry.state.store(state, Ordering::Relaxed);
            return;
        }
        let now = self.now();
        let live = |e: &Arc<Entry>| e.state.load(Ordering::Relaxed) >> VERDICT_BITS > now;
        // A scan of one shard (a few hundred entries) on a miss, which
        // already costs an evaluation.
        let held = current
            .iter()
            .filter(|e| *e.actor == *key.actor && live(e))
            .count();
        if held >= self.per_actor {
            // This actor's share is full of live decisions: uncached.
            return;
        }
        let mut table = if current.len() >= self.per_shard {
            if current.iter().all(live) {
                // Full of live decisions: this key goes uncached.
                return;
            }
            let mut table = Table::with_capacity(current.len());
            for entry in current.iter().filter(|e| live(e)) {
                table.insert_unique(entry.hash, Arc::clone(entry), |e| e.hash);
            }
            table
        } else {
            Table::clone(&current)
        };
        table.insert_unique(
            hash,
            Arc::new(Entry {
                hash,
                actor: key.actor.into(),
                capability: key.capability.into(),
                binding: key.binding.into(),
                operation: key.operation.into(),
                direction: key.direction,
                state: AtomicU64::new(state),
            }),
            |e| e.hash,
        );
        shard.table.store(Arc::new(table));
    }

    /// Keys held, expired ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.table.load().len()).sum()
    }
}

mod clock {
    /// Nanoseconds of `CLOCK_MONOTONIC_COARSE`.
    #[cfg(target_os = "linux")]
    pub(super) fn coarse_nanos() -> u64 {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
        let secs = u64::try_from(now.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }

    /// Nanoseconds since the first call, from `Instant` where there is no
    /// coarse clock to read.
    #[cfg(not(target_os = "linux"))]
    pub(super) fn coarse_nanos() -> u64 {
        use std::sync::OnceLock;
        use std::time::Instant;
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn key(operation: &str) -> InvokeKey<'_> {
        InvokeKey {
            actor: "MACTOR",
            capability: "wascc:keyvalue",
            binding: "default",
            operation,
            direction: crate::input::Direction::Outbound,
        }
    }

    #[test]
    fn remembers_verdicts_per_key_until_they_expire() {
        let cache = DecisionCache::new(Duration::from_millis(200), 100);
        assert_eq!(cache.get(&key("Get")), None);
        cache.insert(&key("Get"), Verdict::Allow, cache.now());
        cache.insert(&key("Set"), Verdict::DenyFalse, cache.now());
        cache.insert(&key("Del"), Verdict::DenyUndefined, cache.now());
        assert_eq!(cache.get(&key("Get")), Some(Verdict::Allow));
        assert_eq!(cache.get(&key("Set")), Some(Verdict::DenyFalse));
        assert_eq!(cache.get(&key("Del")), Some(Verdict::DenyUndefined));
        assert_eq!(cache.get(&key("Clear")), None);

        // Every field is part of the key.
        let other = [
            InvokeKey {
                actor: "MOTHER",
                ..key("Get")
            },
            InvokeKey {
                capability: "wascc:messaging",
                ..key("Get")
            },
            InvokeKey {
                binding: "cache",
                ..key("Get")
            },
        ];
        for k in &other {
            assert_eq!(cache.get(k), None, "{k:?}");
        }

        // Refreshing a key replaces its verdict in place.
        cache.insert(&key("Get"), Verdict::DenyFalse, cache.now());
        assert_eq!(cache.get(&key("Get")), Some(Verdict::DenyFalse));
        assert_eq!(cache.len(), 3);

        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(cache.get(&key("Get")), None, "expired");
    }

    #[test]
    fn expiry_counts_from_when_the_decision_started() {
        let cache = DecisionCache::new(Duration::from_millis(50), 100);
        let long_ago = cache.now().saturating_sub(60 * MS);
        cache.insert(&key("Get"), Verdict::Allow, long_ago);
        assert_eq!(cache.get(&key("Get")), None);
    }

    #[test]
    fn one_actor_cannot_take_the_room_of_others() {
        // 64 entries a shard, 16 of them for any one actor.
        let cache = DecisionCache::new(Duration::from_secs(10), SHARDS * 64);
        let names: Vec<String> = (0..SHARDS * 128).map(|i| format!("Op{i}")).collect();
        for name in &names {
            let hostile = InvokeKey {
                actor: "MEVIL",
                ..key(name)
            };
            cache.insert(&hostile, Verdict::Allow, cache.now());
        }
        assert!(cache.len() <= SHARDS * 16, "{} entries", cache.len());
        // Every other actor's decisions still find room, in every shard.
        for name in &names {
            cache.insert(&key(name), Verdict::Allow, cache.now());
        }
        let kept = names
            .iter()
            .filter(|name| cache.get(&key(name)).is_some())
            .count();
        assert!(kept >= SHARDS * 8, "only {kept} of the other actor's kept");
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let cache = DecisionCache::new(Duration::ZERO, 100);
        cache.insert(&key("Get"), Verdict::Allow, cache.now());
        assert_eq!(cache.get(&key("Get")), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn is_bounded_and_makes_room_only_from_expired_entries() {
        // One key per shard; eight times as many keys as fit.
        let cache = DecisionCache::new(Duration::from_millis(300), SHARDS);
        let names: Vec<String> = (0..SHARDS * 8).map(|i| format!("Op{i}")).collect();
        for name in &names {
            cache.insert(&key(name), Verdict::Allow, cache.now());
        }
        assert!(cache.len() <= SHARDS, "{} keys held", cache.len());
        let cached = names
            .iter()
            .filter(|n| cache.get(&key(n)).is_some())
            .count();
        assert_eq!(cached, cache.len(), "what is held is served");
        let before = cache.len();

        // Once the live entries expire, a new key finds room again, and the
        // expired entries of its shard are gone.
        std::thread::sleep(Duration::from_millis(350));
        cache.insert(&key("Fresh"), Verdict::Allow, cache.now());
        assert_eq!(cache.get(&key("Fresh")), Some(Verdict::Allow));
        let shard = cache.shard(cache.hash(&key("Fresh")));
        assert_eq!(shard.table.load().len(), 1, "the expired entry made room");
        assert!(cache.len() <= before + 1);
    }

    #[test]
    fn concurrent_readers_and_writers_agree() {
        let cache = Arc::new(DecisionCache::new(Duration::from_secs(60), 4096));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        let op = format!("Op{}", i % 250);
                        let verdict = if i % 2 == 0 {
                            Verdict::Allow
                        } else {
                            Verdict::DenyFalse
                        };
                        let k = InvokeKey {
                            actor: if t % 2 == 0 { "MA" } else { "MB" },
                            ..key(&op)
                        };
                        cache.insert(&k, verdict, cache.now());
                        assert!(cache.get(&k).is_some());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(
            cache.len(),
            500,
            "250 operation, direction: crate::input::Direction::Outbounds × 2 actors, each once"
        );
    }
}
