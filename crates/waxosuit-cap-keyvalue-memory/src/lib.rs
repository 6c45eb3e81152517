//! The embedded, in-memory `wascc:keyvalue` provider of Waxosuit.
//!
//! Actors written against the waSCC key-value contract get a working store
//! with no server to run: strings, atomic counters, lists and sets, with the
//! semantics of the Redis commands the 2020 `wascc-redis` provider used, so
//! an actor behaves the same when the manifest later points it at Redis.
//!
//! # A guided tour
//!
//! * [`MemoryKeyValue::new`] builds the provider;
//!   [`MemoryKeyValue::with_sweep_interval`] picks how often expired keys
//!   are purged. Register it with the host like any
//!   [`CapabilityProvider`].
//! * **Isolation.** Each (actor, binding) pair gets its own keyspace,
//!   created by [`bind_actor`](CapabilityProvider::bind_actor) and dropped,
//!   data and all, by [`remove_actor`](CapabilityProvider::remove_actor).
//!   An actor therefore never sees another actor's keys, nor its own keys
//!   of another binding; there is no way to share a keyspace. Re-binding a
//!   bound pair keeps its data. Calls from an actor without the binding
//!   fail with [`ProviderError::NotBound`].
//! * **Operations** (all of [`waxosuit_codec::keyvalue`]), with the Redis
//!   command each one behaves like:
//!
//!   | Operation | Redis | Notes |
//!   |---|---|---|
//!   | `Get` | `GET` | `exists: false` for a missing key |
//!   | `Set` | `SET` / `SET … EX` | `expires` seconds, `0` for none; replaces any type and TTL |
//!   | `Add` | `INCRBY` | atomic; a missing key counts as 0; keeps the TTL |
//!   | `Del` | `DEL` | any type |
//!   | `Clear` | `DEL` | lists only |
//!   | `Range` | `LRANGE` | inclusive stop, negative indices from the end |
//!   | `Push` | `LPUSH` | replies the new length |
//!   | `ListItemDelete` | `LREM key 0 value` | replies the length left |
//!   | `SetAdd` / `SetRemove` | `SADD` / `SREM` | reply 1 if a member was added / removed, else 0 |
//!   | `SetUnion` / `SetIntersection` | `SUNION` / `SINTER` | at least one key; members sorted |
//!   | `SetQuery` | `SMEMBERS` | members sorted |
//!   | `KeyExists` | `EXISTS` | `value` is empty |
//!
//!   A list or set operation on a key holding another type fails with a
//!   `WRONGTYPE` [`ProviderError::Backend`]; `Add` on a value that is not a
//!   canonical decimal integer, or whose result leaves the `i32` of the
//!   reply, fails without changing the value. Emptied lists and sets
//!   disappear, as in Redis.
//! * **Quotas** (binding values), per (actor, binding) keyspace:
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`MAX_KEYS`] | `100000` | keys held, of every type |
//!   | [`MAX_BYTES`] | `67108864` (64 MiB) | bytes held: every key, list item and set member counts its UTF-8 length plus [`ITEM_OVERHEAD_BYTES`], a string value its length |
//!
//!   A write that would take the keyspace over a quota fails with a
//!   [`ProviderError::Backend`] naming the quota, the actor, the binding
//!   and the value to raise, and changes nothing: the data already stored
//!   stays as it was. Expired keys that are still held count until they go;
//!   a write that would fail only because of them sweeps them first.
//!   Writes that shrink or keep the size (`Del`, `Clear`, removals,
//!   overwriting with something no bigger) always pass, so a keyspace over
//!   its quota (after a re-bind lowered it) can always be cleaned up.
//!   Re-binding applies the new quotas and keeps the data.
//! * **Expiry** is exact: an expired key is invisible to every operation
//!   from its deadline on. Expired keys nobody touches are purged by a sweep
//!   task that [`start`](CapabilityProvider::start) spawns and
//!   [`shutdown`](CapabilityProvider::shutdown) (or dropping the provider)
//!   stops; [`MemoryKeyValue::stored_keys`] shows what is held.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_keyvalue_memory::MemoryKeyValue;
//! use waxosuit_codec::keyvalue::{AddRequest, AddResponse, CAPABILITY_ID, OP_ADD};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kv = MemoryKeyValue::new();
//! kv.bind_actor(BindRequest {
//!     actor: "MACTOR".into(),
//!     binding: "default".into(),
//!     values: HashMap::new(),
//! })
//! .await?;
//! let reply = kv
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_ADD.into(),
//!         payload: encode(CAPABILITY_ID, &AddRequest { key: "hits".into(), value: 2 })?,
//!     })
//!     .await?;
//! let AddResponse { value } = waxosuit_codec::deserialize(&reply)?;
//! assert_eq!(value, 2);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod store;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::keyvalue::{
    AddRequest, AddResponse, CAPABILITY_ID, DelRequest, DelResponse, GetRequest, GetResponse,
    KeyExistsQuery, ListClearRequest, ListDelItemRequest, ListPushRequest, ListRangeRequest,
    ListRangeResponse, ListResponse, OP_ADD, OP_CLEAR, OP_DEL, OP_GET, OP_KEY_EXISTS, OP_LIST_DEL,
    OP_PUSH, OP_RANGE, OP_SET, OP_SET_ADD, OP_SET_INTERSECT, OP_SET_QUERY, OP_SET_REMOVE,
    OP_SET_UNION, SetAddRequest, SetIntersectionRequest, SetOperationResponse, SetQueryRequest,
    SetQueryResponse, SetRemoveRequest, SetRequest, SetResponse, SetUnionRequest,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, Health, ProviderCall, ProviderError, decode,
    encode,
};

use crate::store::{Limits, Quota, Store, StoreError};

/// How often [`MemoryKeyValue::new`]'s sweep task purges expired keys.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Binding value: the most keys the binding's keyspace may hold (at least
/// 1); default [`DEFAULT_MAX_KEYS`].
pub const MAX_KEYS: &str = "MAX_KEYS";
/// Binding value: the most bytes the binding's keyspace may hold, counted
/// as the [crate docs](crate) say (at least 1); default
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

/// A write refused by a binding's quota, saying whose and what to raise.
#[derive(Debug, thiserror::Error)]
#[error(
    "ERR quota {quota} exceeded for actor {actor} (binding `{binding}`): {source}; delete keys \
     or let them expire, or raise {quota} in this wascc:keyvalue binding's values"
)]
struct QuotaExceeded {
    quota: &'static str,
    actor: String,
    binding: String,
    #[source]
    source: StoreError,
}

/// Keyspaces by actor, then by binding, so a call can be routed from the
/// borrowed strings it carries.
type Stores = HashMap<String, HashMap<String, Arc<Mutex<Store>>>>;

/// The in-memory `wascc:keyvalue` provider. See the [crate docs](crate).
#[derive(Debug)]
pub struct MemoryKeyValue {
    stores: Arc<RwLock<Stores>>,
    sweep_interval: Duration,
    sweeper: Mutex<Option<Sweeper>>,
}

/// The running sweep task and the way to stop it.
#[derive(Debug)]
struct Sweeper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Default for MemoryKeyValue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryKeyValue {
    /// A provider with no bindings, sweeping every [`DEFAULT_SWEEP_INTERVAL`]
    /// once started.
    pub fn new() -> Self {
        Self::with_sweep_interval(DEFAULT_SWEEP_INTERVAL)
    }

    /// A provider whose sweep task runs every `interval` (at least 1 ms).
    /// Expiry is exact either way; the interval only bounds how long memory
    /// of expired, untouched keys is held.
    pub fn with_sweep_interval(interval: Duration) -> Self {
        MemoryKeyValue {
            stores: Arc::default(),
            // `tokio::time::interval` panics on zero.
            sweep_interval: interval.max(Duration::from_millis(1)),
            sweeper: Mutex::new(None),
        }
    }

    /// Entries held across all keyspaces, counting expired entries that
    /// have been neither touched nor swept yet.
    pub fn stored_keys(&self) -> usize {
        read(&self.stores)
            .values()
            .flat_map(HashMap::values)
            .map(|store| lock(store).len())
            .sum()
    }

    /// Bytes held across all keyspaces, as [`MAX_BYTES`] counts them,
    /// counting expired entries not yet touched or swept.
    pub fn stored_bytes(&self) -> u64 {
        read(&self.stores)
            .values()
            .flat_map(HashMap::values)
            .map(|store| lock(store).bytes())
            .sum()
    }

    /// The keyspace of a bound pair.
    fn store(&self, actor: &str, binding: &str) -> Result<Arc<Mutex<Store>>, ProviderError> {
        read(&self.stores)
            .get(actor)
            .and_then(|bindings| bindings.get(binding))
            .cloned()
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))
    }

    fn stop_sweeper(&self) -> Option<Sweeper> {
        lock(&self.sweeper).take()
    }
}

impl Drop for MemoryKeyValue {
    fn drop(&mut self) {
        // The task also ends on its own once it sees the stores gone, but
        // aborting here frees it without waiting for the next tick.
        if let Some(sweeper) = self.stop_sweeper() {
            sweeper.task.abort();
        }
    }
}

/// Purges expired keys every `interval` until told to stop or until the
/// provider is dropped.
async fn sweep_loop(
    stores: Weak<RwLock<Stores>>,
    interval: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    // After a stall one sweep purges everything due; a burst of catch-up
    // ticks would only redo that work.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let Some(stores) = stores.upgrade() else { break };
                let now = Instant::now();
                // Clone the handles so the map lock is not held while each
                // keyspace is swept; binds and removals go on meanwhile.
                let all: Vec<_> = read(&stores).values().flat_map(HashMap::values).cloned().collect();
                let purged: usize = all.iter().map(|store| lock(store).sweep(now)).sum();
                if purged > 0 {
                    tracing::trace!(purged, "wascc:keyvalue (memory) swept expired keys");
                }
            }
        }
    }
}

// No store operation can panic between two of its mutations, so a poisoned
// lock still guards consistent data, and refusing service for the rest of
// the host's life would be worse than using it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Turns a store's refusal into the actor's error; a quota error also
/// names the actor and binding, which the store does not know.
fn refused(call: &ProviderCall) -> impl Fn(StoreError) -> ProviderError + '_ {
    |error| match error {
        StoreError::Quota { quota, .. } => ProviderError::backend(
            CAPABILITY_ID,
            QuotaExceeded {
                quota: match quota {
                    Quota::Keys => MAX_KEYS,
                    Quota::Bytes => MAX_BYTES,
                },
                actor: call.actor.clone(),
                binding: call.binding.clone(),
                source: error,
            },
        ),
        other => ProviderError::backend(CAPABILITY_ID, other),
    }
}

/// The binding's quotas from its values.
fn limits(request: &BindRequest) -> Result<Limits, ProviderError> {
    let positive = |key: &str, default: u64| {
        Ok::<_, ProviderError>(request.positive(CAPABILITY_ID, key)?.unwrap_or(default))
    };
    Ok(Limits {
        max_keys: positive(MAX_KEYS, DEFAULT_MAX_KEYS)?,
        max_bytes: positive(MAX_BYTES, DEFAULT_MAX_BYTES)?,
    })
}

/// Lengths and counts travel as `i32`; a list longer than that is reported
/// as `i32::MAX` rather than wrapped to a negative length.
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[async_trait]
impl CapabilityProvider for MemoryKeyValue {
    fn descriptor(&self) -> CapabilityDescriptor {
        let to_provider = OperationDirection::ToProvider;
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit in-memory key-value store")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "Embedded Redis-like key-value store kept in the host's memory: strings, \
                 counters, lists and sets with expiry, isolated per actor binding and lost \
                 when the host stops.",
            )
            .with_operations(to_provider, &waxosuit_codec::keyvalue::OPERATIONS)
            .build()
    }

    async fn start(&self, _dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        // `tokio::spawn` would panic outside a runtime; say so instead.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| ProviderError::Internal {
                capid: CAPABILITY_ID.to_string(),
                message: format!("cannot start the expiry sweep task: {e}"),
            })?;
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(sweep_loop(
            Arc::downgrade(&self.stores),
            self.sweep_interval,
            stopped,
        ));
        let previous = lock(&self.sweeper).replace(Sweeper { stop, task });
        // A second start must not leave the first task running unowned.
        if let Some(previous) = previous {
            previous.task.abort();
        }
        Ok(())
    }

    /// Creates the pair's keyspace with the quotas of the binding's values;
    /// binding a bound pair again applies the new quotas and keeps its data.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let limits = limits(&request)?;
        let mut stores = write(&self.stores);
        let bindings = stores.entry(request.actor).or_default();
        match bindings.get(&request.binding) {
            Some(store) => lock(store).set_limits(limits),
            None => {
                bindings.insert(request.binding, Arc::new(Mutex::new(Store::new(limits))));
            }
        }
        Ok(())
    }

    /// Drops the pair's keyspace and everything in it; an unknown pair is
    /// [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let mut stores = write(&self.stores);
        let bindings = stores
            .get_mut(actor)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        bindings
            .remove(binding)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        if bindings.is_empty() {
            stores.remove(actor);
        }
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let store = self.store(&call.actor, &call.binding)?;
        let now = Instant::now();
        let backend = refused(&call);
        match call.operation.as_str() {
            OP_GET => {
                let req: GetRequest = decode(CAPABILITY_ID, &call)?;
                let value = lock(&store).get(&req.key, now).map_err(&backend)?;
                encode(
                    CAPABILITY_ID,
                    &GetResponse {
                        exists: value.is_some(),
                        value: value.unwrap_or_default(),
                    },
                )
            }
            OP_SET => {
                let req: SetRequest = decode(CAPABILITY_ID, &call)?;
                lock(&store)
                    .set(&req.key, req.value.clone(), req.expires_s, now)
                    .map_err(&backend)?;
                encode(CAPABILITY_ID, &SetResponse { value: req.value })
            }
            OP_ADD => {
                let req: AddRequest = decode(CAPABILITY_ID, &call)?;
                let value = lock(&store)
                    .add(&req.key, req.value, now)
                    .map_err(&backend)?;
                encode(CAPABILITY_ID, &AddResponse { value })
            }
            OP_DEL => {
                let req: DelRequest = decode(CAPABILITY_ID, &call)?;
                lock(&store).del(&req.key, now);
                encode(CAPABILITY_ID, &DelResponse { key: req.key })
            }
            OP_CLEAR => {
                let req: ListClearRequest = decode(CAPABILITY_ID, &call)?;
                lock(&store).clear_list(&req.key, now).map_err(&backend)?;
                encode(CAPABILITY_ID, &DelResponse { key: req.key })
            }
            OP_RANGE => {
                let req: ListRangeRequest = decode(CAPABILITY_ID, &call)?;
                let values = lock(&store)
                    .range(&req.key, req.start, req.stop, now)
                    .map_err(&backend)?;
                encode(CAPABILITY_ID, &ListRangeResponse { values })
            }
            OP_PUSH => {
                let req: ListPushRequest = decode(CAPABILITY_ID, &call)?;
                let len = lock(&store)
                    .push(&req.key, req.value, now)
                    .map_err(&backend)?;
                encode(
                    CAPABILITY_ID,
                    &ListResponse {
                        new_count: count(len),
                    },
                )
            }
            OP_LIST_DEL => {
                let req: ListDelItemRequest = decode(CAPABILITY_ID, &call)?;
                let len = lock(&store)
                    .list_remove(&req.key, &req.value, now)
                    .map_err(&backend)?;
                encode(
                    CAPABILITY_ID,
                    &ListResponse {
                        new_count: count(len),
                    },
                )
            }
            OP_SET_ADD => {
                let req: SetAddRequest = decode(CAPABILITY_ID, &call)?;
                let added = lock(&store)
                    .set_add(&req.key, req.value, now)
                    .map_err(&backend)?;
                encode(
                    CAPABILITY_ID,
                    &SetOperationResponse {
                        new_count: i32::from(added),
                    },
                )
            }
            OP_SET_REMOVE => {
                let req: SetRemoveRequest = decode(CAPABILITY_ID, &call)?;
                let removed = lock(&store)
                    .set_remove(&req.key, &req.value, now)
                    .map_err(&backend)?;
                encode(
                    CAPABILITY_ID,
                    &SetOperationResponse {
                        new_count: i32::from(removed),
                    },
                )
            }
            OP_SET_UNION => {
                let req: SetUnionRequest = decode(CAPABILITY_ID, &call)?;
                let values = lock(&store).set_union(&req.keys, now).map_err(&backend)?;
                encode(CAPABILITY_ID, &SetQueryResponse { values })
            }
            OP_SET_INTERSECT => {
                let req: SetIntersectionRequest = decode(CAPABILITY_ID, &call)?;
                let values = lock(&store)
                    .set_intersection(&req.keys, now)
                    .map_err(&backend)?;
                encode(CAPABILITY_ID, &SetQueryResponse { values })
            }
            OP_SET_QUERY => {
                let req: SetQueryRequest = decode(CAPABILITY_ID, &call)?;
                let values = lock(&store).set_members(&req.key, now).map_err(&backend)?;
                encode(CAPABILITY_ID, &SetQueryResponse { values })
            }
            OP_KEY_EXISTS => {
                let req: KeyExistsQuery = decode(CAPABILITY_ID, &call)?;
                let exists = lock(&store).exists(&req.key, now);
                encode(
                    CAPABILITY_ID,
                    &GetResponse {
                        value: String::new(),
                        exists,
                    },
                )
            }
            other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
        }
    }

    async fn health(&self) -> Health {
        Health {
            healthy: true,
            message: format!("{} keys held", self.stored_keys()),
        }
    }

    /// Stops the sweep task and waits for it; the data stays readable.
    async fn shutdown(&self) {
        let Some(Sweeper { stop, task }) = self.stop_sweeper() else {
            return;
        };
        // The task may already have ended (provider state gone), in which
        // case there is no receiver and nothing to tell.
        let _ = stop.send(());
        if let Err(error) = task.await
            && error.is_panic()
        {
            tracing::error!(%error, "wascc:keyvalue (memory) sweep task panicked");
        }
    }
}
