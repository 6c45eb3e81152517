//! The embedded, in-memory `wascc:keyvalue` provider of Waxosuit.
//!
//! Actors written against the waSCC key-value contract get a working store
//! with no server to run: strings, atomic counters, lists and sets, with the
//! semantics of the Redis commands the 2020 `wascc-redis` provider used, so
//! an actor behaves the same when the manifest later points it at Redis.
//!
//! # A guided tour
//!
//! * [`MemoryKeyValue`] is the provider: the contract's
//!   [`KeyValueProvider`] over a [`MemoryBackend`]. [`MemoryKeyValue::new`]
//!   builds it; [`MemoryBackend::with_sweep_interval`] picks how often
//!   expired keys are purged. Register it with the host like any
//!   [`CapabilityProvider`](waxosuit_provider::CapabilityProvider).
//! * **Semantics, quotas and isolation** are the reference backend's
//!   ([`waxosuit_cap_keyvalue::reference`]): each (actor, binding) pair gets
//!   its own keyspace, created when bound and dropped, data and all, when
//!   the binding is removed; [`MAX_KEYS`] and [`MAX_BYTES`] in the binding's
//!   values bound what it may hold. The operations and the Redis command
//!   each one behaves like are listed in [`waxosuit_cap_keyvalue`]. This
//!   crate adds only what needs a runtime:
//! * **Expiry** is exact: an expired key is invisible to every operation
//!   from its deadline on. Expired keys nobody touches are purged by a sweep
//!   task that [`start`](waxosuit_provider::CapabilityProvider::start)
//!   spawns on the host's runtime and
//!   [`shutdown`](waxosuit_provider::CapabilityProvider::shutdown) (or
//!   dropping the provider) stops; [`MemoryBackend::stored_keys`] shows
//!   what is held. Time is the runtime's clock, so tests that pause Tokio's
//!   clock move expiry with it.
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

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use waxosuit_cap_keyvalue::reference::{Clock, ReferenceBackend};
use waxosuit_cap_keyvalue::{Backend, Description, MemoryKeyspace};
use waxosuit_provider::{BindRequest, Health, ProviderError};

pub use waxosuit_cap_keyvalue::KeyValueProvider;
pub use waxosuit_cap_keyvalue::reference::{
    DEFAULT_MAX_BYTES, DEFAULT_MAX_KEYS, ITEM_OVERHEAD_BYTES, MAX_BYTES, MAX_KEYS,
};

/// The in-memory `wascc:keyvalue` provider. See the [crate docs](crate).
pub type MemoryKeyValue = KeyValueProvider<MemoryBackend>;

/// How often [`MemoryBackend::default`]'s sweep task purges expired keys.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The runtime's clock (pausable in tests), from when the backend was made.
#[derive(Debug)]
struct RuntimeClock {
    epoch: Instant,
}

impl Clock for RuntimeClock {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.epoch)
    }
}

/// The reference backend plus its sweep task. See the [crate docs](crate).
#[derive(Debug)]
pub struct MemoryBackend {
    reference: Arc<ReferenceBackend>,
    sweep_interval: Duration,
    sweeper: Mutex<Option<Sweeper>>,
}

/// The running sweep task and the way to stop it.
#[derive(Debug)]
struct Sweeper {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::with_sweep_interval(DEFAULT_SWEEP_INTERVAL)
    }
}

impl MemoryBackend {
    /// A backend whose sweep task runs every `interval` (at least 1 ms)
    /// once started. Expiry is exact either way; the interval only bounds
    /// how long memory of expired, untouched keys is held. Reads the
    /// runtime's clock, so it must be made inside one when Tokio's clock is
    /// paused.
    pub fn with_sweep_interval(interval: Duration) -> Self {
        MemoryBackend {
            reference: Arc::new(ReferenceBackend::with_clock(Arc::new(RuntimeClock {
                epoch: Instant::now(),
            }))),
            // `tokio::time::interval` panics on zero.
            sweep_interval: interval.max(Duration::from_millis(1)),
            sweeper: Mutex::new(None),
        }
    }

    /// Entries held across all keyspaces, counting expired entries that
    /// have been neither touched nor swept yet.
    pub fn stored_keys(&self) -> usize {
        self.reference.stored_keys()
    }

    /// Bytes held across all keyspaces, as [`MAX_BYTES`] counts them,
    /// counting expired entries not yet touched or swept.
    pub fn stored_bytes(&self) -> u64 {
        self.reference.stored_bytes()
    }

    fn stop_sweeper(&self) -> Option<Sweeper> {
        self.sweeper.lock().take()
    }
}

impl Drop for MemoryBackend {
    fn drop(&mut self) {
        // The task also ends on its own once it sees the backend gone, but
        // aborting here frees it without waiting for the next tick.
        if let Some(sweeper) = self.stop_sweeper() {
            sweeper.task.abort();
        }
    }
}

/// Purges expired keys every `interval` until told to stop or until the
/// backend is dropped.
async fn sweep_loop(
    reference: Weak<ReferenceBackend>,
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
                let Some(reference) = reference.upgrade() else { break };
                let purged = reference.sweep();
                if purged > 0 {
                    tracing::trace!(purged, "wascc:keyvalue (memory) swept expired keys");
                }
            }
        }
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    type Keyspace = MemoryKeyspace;

    fn description(&self) -> Description {
        self.reference.description()
    }

    async fn start(&self) -> Result<(), ProviderError> {
        // `tokio::spawn` would panic outside a runtime; say so instead.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|e| ProviderError::Internal {
                capid: waxosuit_cap_keyvalue::CAPABILITY_ID.to_string(),
                message: format!("cannot start the expiry sweep task: {e}"),
            })?;
        let (stop, stopped) = oneshot::channel();
        let task = runtime.spawn(sweep_loop(
            Arc::downgrade(&self.reference),
            self.sweep_interval,
            stopped,
        ));
        let previous = self.sweeper.lock().replace(Sweeper { stop, task });
        // A second start must not leave the first task running unowned.
        if let Some(previous) = previous {
            previous.task.abort();
        }
        Ok(())
    }

    fn open(
        &self,
        request: &BindRequest,
        current: Option<&Arc<MemoryKeyspace>>,
    ) -> Result<Arc<MemoryKeyspace>, ProviderError> {
        self.reference.open(request, current)
    }

    async fn health(&self) -> Health {
        self.reference.health().await
    }

    /// Stops the sweep task and waits for it.
    async fn shutdown(&self) {
        let Some(Sweeper { stop, task }) = self.stop_sweeper() else {
            return;
        };
        // The task may already have ended, in which case there is no
        // receiver and nothing to tell.
        let _ = stop.send(());
        if let Err(error) = task.await
            && error.is_panic()
        {
            tracing::error!(%error, "wascc:keyvalue (memory) sweep task panicked");
        }
    }
}
