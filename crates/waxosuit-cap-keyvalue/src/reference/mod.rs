//! The in-memory reference backend: what every other backend is measured
//! against.
//!
//! [`ReferenceBackend`] opens one [`MemoryKeyspace`] per binding. A
//! keyspace holds strings, lists and sets with the Redis semantics the
//! [`Keyspace`] trait states, exact expiry (an expired key is invisible from
//! its deadline on, whether or not it has been purged yet) and two quotas
//! per binding, read from the binding's values:
//!
//! | Key | Default | Meaning |
//! |---|---|---|
//! | [`MAX_KEYS`] | `100000` | keys held, of every type |
//! | [`MAX_BYTES`] | `67108864` (64 MiB) | bytes held: every key, list item and set member counts its UTF-8 length plus [`ITEM_OVERHEAD_BYTES`], a string value its length |
//!
//! A write that would take the keyspace over a quota fails with a
//! [`ProviderError::Backend`] naming the quota, the actor, the binding and
//! the value to raise, and changes nothing. Expired keys that are still
//! held count until they go; a write that would fail only because of them
//! purges them first. Writes that shrink or keep the size always pass, so a
//! keyspace over its quota (after a re-bind lowered it) can be cleaned up.
//! Re-binding applies the new quotas and keeps the data; removing the
//! binding drops it.
//!
//! Time comes from a [`Clock`] the embedder passes in, so this module needs
//! neither Tokio nor a system clock: the memory provider passes the
//! runtime's clock (which tests can pause), the SDK's fake host a
//! [`ManualClock`]. Keys nobody touches after they expire are purged by
//! [`ReferenceBackend::sweep`], which the memory provider runs on a timer.

mod store;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use waxosuit_provider::{BindRequest, Health, ProviderError};

use crate::CAPABILITY_ID;
use crate::keyspace::{Backend, Description, Keyspace};
use store::{Quota, Store, StoreError};

/// Binding value: the most keys the binding's keyspace may hold (at least
/// 1); default [`DEFAULT_MAX_KEYS`].
pub const MAX_KEYS: &str = "MAX_KEYS";
/// Binding value: the most bytes the binding's keyspace may hold, counted
/// as the [module docs](self) say (at least 1); default
/// [`DEFAULT_MAX_BYTES`].
pub const MAX_BYTES: &str = "MAX_BYTES";
/// [`MAX_KEYS`] when the binding does not set it.
pub const DEFAULT_MAX_KEYS: u64 = 100_000;
/// [`MAX_BYTES`] when the binding does not set it (64 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// What each key, list item and set member counts for in [`MAX_BYTES`] on
/// top of its length (32): an empty string still takes memory, and without
/// this an actor could hold millions of empty list items in no bytes at
/// all.
pub const ITEM_OVERHEAD_BYTES: u64 = store::ITEM_OVERHEAD_BYTES;

/// The longest reply of a read that grows with what is stored (`Range`,
/// `SetQuery`, `SetUnion`, `SetIntersection`) when the host does not pass
/// the actor's payload limit (16 MiB), as the Redis backend.
pub const DEFAULT_MAX_REPLY_BYTES: u64 = 16 * 1024 * 1024;

/// What one keyspace may hold, and the longest reply it gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Keys, of every type.
    pub max_keys: u64,
    /// Bytes, counted as the [module docs](self) say.
    pub max_bytes: u64,
    /// The longest reply of `Range`, `SetQuery`, `SetUnion` or
    /// `SetIntersection`, as MessagePack encodes it: the actor's payload
    /// limit, or [`DEFAULT_MAX_REPLY_BYTES`]. A longer one is refused
    /// while it is gathered, with the Redis backend's error, rather than
    /// copied whole under the keyspace's lock and refused by the host.
    pub max_reply_bytes: u64,
}

impl Limits {
    /// No limit at all (the SDK's fake host).
    pub const UNLIMITED: Limits = Limits {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
        max_reply_bytes: u64::MAX,
    };

    /// The quotas a binding's values set ([`MAX_KEYS`], [`MAX_BYTES`]),
    /// with the defaults for those it leaves out, and the actor's payload
    /// limit as the host passes it.
    ///
    /// # Errors
    ///
    /// [`ProviderError::Config`] for a value that is not a positive integer.
    pub fn from_binding(request: &BindRequest) -> Result<Limits, ProviderError> {
        let positive = |key: &str, default: u64| {
            Ok::<_, ProviderError>(request.positive(CAPABILITY_ID, key)?.unwrap_or(default))
        };
        Ok(Limits {
            max_keys: positive(MAX_KEYS, DEFAULT_MAX_KEYS)?,
            max_bytes: positive(MAX_BYTES, DEFAULT_MAX_BYTES)?,
            max_reply_bytes: request
                .actor_max_payload()
                .map_or(DEFAULT_MAX_REPLY_BYTES, |n| n as u64),
        })
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_keys: DEFAULT_MAX_KEYS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
        }
    }
}

/// Where a keyspace reads the time: how long after an epoch of the clock's
/// choosing. Only differences matter, and they must never go backwards.
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> Duration;
}

/// The system's monotonic clock, from when it was made.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    epoch: Instant,
}

impl MonotonicClock {
    /// A clock reading zero now. (`wasm32-unknown-unknown` has no clock:
    /// use a [`ManualClock`] there.)
    pub fn new() -> Self {
        MonotonicClock {
            epoch: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// A clock that moves only when told to ([`advance`](Self::advance)), for
/// tests and for the SDK's fake host.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // `fetch_update` so a saturated clock stays at its maximum.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(by))
            });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

/// A write refused by a binding's quota, saying whose and what to raise.
#[derive(Debug, thiserror::Error)]
#[error(
    "ERR quota {quota} exceeded for actor {actor} (binding `{binding}`): {source}; delete keys \
     or let them expire, or raise {quota} in this wascc:keyvalue binding's values"
)]
struct QuotaExceeded<'a> {
    quota: &'static str,
    actor: &'a str,
    binding: &'a str,
    #[source]
    source: StoreError,
}

/// One binding's keys, in memory. See the [module docs](self).
pub struct MemoryKeyspace {
    actor: String,
    binding: String,
    clock: Arc<dyn Clock>,
    store: Mutex<Store>,
}

impl fmt::Debug for MemoryKeyspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryKeyspace")
            .field("actor", &self.actor)
            .field("binding", &self.binding)
            .field("keys", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryKeyspace {
    /// An empty keyspace of `binding` of `actor` (named in quota errors).
    pub fn new(
        actor: impl Into<String>,
        binding: impl Into<String>,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        MemoryKeyspace {
            actor: actor.into(),
            binding: binding.into(),
            clock,
            store: Mutex::new(Store::new(limits)),
        }
    }

    /// Applies new quotas. Data already held stays even if it is over them;
    /// only writes that would grow the keyspace further are refused.
    pub fn set_limits(&self, limits: Limits) {
        self.store.lock().set_limits(limits);
    }

    /// Purges expired keys; returns how many went.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now();
        self.store.lock().sweep(now)
    }

    /// Keys held, counting expired ones not yet touched or swept.
    pub fn len(&self) -> usize {
        self.store.lock().len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held, as [`MAX_BYTES`] counts them.
    pub fn bytes(&self) -> u64 {
        self.store.lock().bytes()
    }

    /// The string at `key`; `None` when missing, expired or of another type.
    pub fn string(&self, key: &str) -> Option<String> {
        let now = self.clock.now();
        self.store.lock().get(key, now).ok().flatten()
    }

    /// The list at `key`, head first; empty when missing or of another type.
    pub fn list(&self, key: &str) -> Vec<String> {
        let now = self.clock.now();
        self.store.lock().range(key, 0, -1, now).unwrap_or_default()
    }

    /// The members of the set at `key`, sorted; empty when missing or of
    /// another type.
    pub fn members(&self, key: &str) -> Vec<String> {
        let now = self.clock.now();
        self.store.lock().set_members(key, now).unwrap_or_default()
    }

    /// How long `key` has left to live; `None` when it is missing or never
    /// expires.
    pub fn ttl(&self, key: &str) -> Option<Duration> {
        let now = self.clock.now();
        self.store.lock().ttl(key, now)
    }

    /// Runs one encoded call through the [operation table](crate::dispatch)
    /// now, for callers that are not async (the SDK's fake host). A memory
    /// keyspace never waits, so the call is complete on its first poll.
    ///
    /// # Errors
    ///
    /// As [`dispatch`](crate::dispatch).
    pub fn call_now(&self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let call = std::pin::pin!(crate::dispatch(self, operation, payload));
        match call.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            // Unreachable: nothing in a memory keyspace awaits anything.
            Poll::Pending => Err(ProviderError::Internal {
                capid: CAPABILITY_ID.to_string(),
                message: format!("the in-memory `{operation}` did not complete at once"),
            }),
        }
    }

    /// Runs `op` on the store at the clock's time, turning its refusal into
    /// the actor's error (a quota error also names the actor and binding,
    /// which the store does not know).
    fn with_store<T>(
        &self,
        op: impl FnOnce(&mut Store, Duration) -> Result<T, StoreError>,
    ) -> Result<T, ProviderError> {
        let now = self.clock.now();
        op(&mut self.store.lock(), now).map_err(|error| match error {
            StoreError::Quota { quota, .. } => ProviderError::backend(
                CAPABILITY_ID,
                QuotaExceeded {
                    quota: match quota {
                        Quota::Keys => MAX_KEYS,
                        Quota::Bytes => MAX_BYTES,
                    },
                    actor: &self.actor,
                    binding: &self.binding,
                    source: error,
                },
            ),
            other => ProviderError::backend(CAPABILITY_ID, other),
        })
    }
}

#[async_trait]
impl Keyspace for MemoryKeyspace {
    async fn get(&self, key: &str) -> Result<Option<String>, ProviderError> {
        self.with_store(|s, now| s.get(key, now))
    }

    async fn set(&self, key: &str, value: String, expires_s: u32) -> Result<(), ProviderError> {
        self.with_store(|s, now| s.set(key, value, expires_s, now))
    }

    async fn add(&self, key: &str, delta: i32) -> Result<i32, ProviderError> {
        self.with_store(|s, now| s.add(key, delta, now))
    }

    async fn del(&self, key: &str) -> Result<(), ProviderError> {
        self.with_store(|s, now| {
            s.del(key, now);
            Ok(())
        })
    }

    async fn clear_list(&self, key: &str) -> Result<(), ProviderError> {
        self.with_store(|s, now| s.clear_list(key, now))
    }

    async fn range(&self, key: &str, start: i32, stop: i32) -> Result<Vec<String>, ProviderError> {
        self.with_store(|s, now| s.range(key, start, stop, now))
    }

    async fn push(&self, key: &str, value: String) -> Result<u64, ProviderError> {
        self.with_store(|s, now| s.push(key, value, now).map(|n| n as u64))
    }

    async fn list_remove(&self, key: &str, value: &str) -> Result<u64, ProviderError> {
        self.with_store(|s, now| s.list_remove(key, value, now).map(|n| n as u64))
    }

    async fn set_add(&self, key: &str, member: String) -> Result<bool, ProviderError> {
        self.with_store(|s, now| s.set_add(key, member, now))
    }

    async fn set_remove(&self, key: &str, member: &str) -> Result<bool, ProviderError> {
        self.with_store(|s, now| s.set_remove(key, member, now))
    }

    async fn set_members(&self, key: &str) -> Result<Vec<String>, ProviderError> {
        self.with_store(|s, now| s.set_members(key, now))
    }

    async fn set_union(&self, keys: &[String]) -> Result<Vec<String>, ProviderError> {
        self.with_store(|s, now| s.set_union(keys, now))
    }

    async fn set_intersection(&self, keys: &[String]) -> Result<Vec<String>, ProviderError> {
        self.with_store(|s, now| s.set_intersection(keys, now))
    }

    async fn exists(&self, key: &str) -> Result<bool, ProviderError> {
        self.with_store(|s, now| Ok(s.exists(key, now)))
    }
}

/// The in-memory reference backend. See the [module docs](self).
pub struct ReferenceBackend {
    clock: Arc<dyn Clock>,
    /// Every keyspace opened and not yet dropped, for [`sweep`](Self::sweep)
    /// and the counts; the provider owns them.
    open: Mutex<Vec<Weak<MemoryKeyspace>>>,
}

impl fmt::Debug for ReferenceBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferenceBackend")
            .field("keyspaces", &self.keyspaces().len())
            .finish_non_exhaustive()
    }
}

impl Default for ReferenceBackend {
    /// A backend on a [`MonotonicClock`].
    fn default() -> Self {
        Self::with_clock(Arc::new(MonotonicClock::new()))
    }
}

impl ReferenceBackend {
    /// A backend whose keyspaces read the time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        ReferenceBackend {
            clock,
            open: Mutex::new(Vec::new()),
        }
    }

    /// Purges expired keys from every keyspace; returns how many went.
    pub fn sweep(&self) -> usize {
        self.keyspaces().iter().map(|k| k.sweep()).sum()
    }

    /// Keys held across all keyspaces, counting expired ones not yet
    /// touched or swept.
    pub fn stored_keys(&self) -> usize {
        self.keyspaces().iter().map(|k| k.len()).sum()
    }

    /// Bytes held across all keyspaces, as [`MAX_BYTES`] counts them.
    pub fn stored_bytes(&self) -> u64 {
        self.keyspaces().iter().map(|k| k.bytes()).sum()
    }

    /// The keyspaces still open, forgetting those the provider dropped.
    fn keyspaces(&self) -> Vec<Arc<MemoryKeyspace>> {
        let mut open = self.open.lock();
        let live: Vec<_> = open.iter().filter_map(Weak::upgrade).collect();
        open.retain(|k| k.strong_count() > 0);
        live
    }
}

#[async_trait]
impl Backend for ReferenceBackend {
    type Keyspace = MemoryKeyspace;

    fn description(&self) -> Description {
        Description {
            name: "Waxosuit in-memory key-value store",
            long_description: "Embedded Redis-like key-value store kept in the host's memory: \
                               strings, counters, lists and sets with expiry, isolated per \
                               actor binding and lost when the host stops.",
        }
    }

    /// A new, empty keyspace with the binding's quotas; a bound pair keeps
    /// its keyspace and data and gets the new quotas.
    fn open(
        &self,
        request: &BindRequest,
        current: Option<&Arc<MemoryKeyspace>>,
    ) -> Result<Arc<MemoryKeyspace>, ProviderError> {
        let limits = Limits::from_binding(request)?;
        if let Some(current) = current {
            current.set_limits(limits);
            return Ok(Arc::clone(current));
        }
        let keyspace = Arc::new(MemoryKeyspace::new(
            request.actor.as_str(),
            request.binding.as_str(),
            limits,
            Arc::clone(&self.clock),
        ));
        let mut open = self.open.lock();
        open.retain(|k| k.strong_count() > 0);
        open.push(Arc::downgrade(&keyspace));
        Ok(keyspace)
    }

    async fn health(&self) -> Health {
        Health {
            healthy: true,
            message: format!("{} keys held", self.stored_keys()),
        }
    }
}
