//! Engine-wide configuration ([`RuntimeConfig`]) and per-actor [`Limits`].

use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a [`Runtime`](crate::Runtime): one wasmtime engine, its
/// epoch ticker, its instance allocator and its compiled-module cache.
///
/// The defaults suit a small (1 GB) host; every field has a builder-style setter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Directory for compiled modules; `None` disables the on-disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Interval of the epoch ticker that enforces deadlines. Deadlines are
    /// rounded up to whole ticks, so this is their resolution.
    pub epoch_tick: Duration,
    /// Count wasm instructions so that [`Limits::fuel`] can be enforced.
    /// Off by default: metering costs throughput on every call.
    pub fuel_metering: bool,
    /// Use wasmtime's pooling allocator with these slots; `None` allocates
    /// each instance on demand. If the pool's virtual-memory reservation
    /// fails the runtime falls back to on-demand allocation (see
    /// [`Runtime::allocator`](crate::Runtime::allocator)).
    pub pooling: Option<PoolingConfig>,
    /// Run each module's `_start`/`wapc_init` once at load and start every
    /// instance from the result (copy-on-write), instead of initialising
    /// each instance. On by default; modules whose initialisation calls the
    /// host, or that Wizer cannot snapshot, are initialised per instance
    /// regardless. See [`ActorStats::preinitialized`](crate::ActorStats::preinitialized).
    pub preinitialize: bool,
    /// Run guests on the calling thread's stack and drive their host calls
    /// in place, instead of on a fiber that can suspend while a host call
    /// waits. On by default, and only used on multi-threaded Tokio
    /// runtimes; an actor switches to fibers for good the first time a host
    /// call of one of its instances has to wait (that call blocks its
    /// thread through `tokio::task::block_in_place`, for at most what is
    /// left of its deadline) or a call runs for 10 epoch ticks (50 ms by
    /// default). Inline, a guest cannot yield to other tasks, so such a
    /// call, if it has made no host call yet, is stopped and run again from
    /// the start on a fiber instance; one that has (and so may have had
    /// effects) finishes inline. Calls that never wait, the common case for
    /// in-memory capabilities, skip the fiber's cost (see
    /// `docs/runtime-benchmarks.md`).
    pub inline_calls: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
            fuel_metering: false,
            pooling: Some(PoolingConfig::default()),
            preinitialize: true,
            inline_calls: true,
        }
    }
}

impl RuntimeConfig {
    /// Sets [`RuntimeConfig::cache_dir`].
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Sets [`RuntimeConfig::epoch_tick`].
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick;
        self
    }

    /// Sets [`RuntimeConfig::inline_calls`].
    pub fn inline_calls(mut self, enabled: bool) -> Self {
        self.inline_calls = enabled;
        self
    }

    /// Sets [`RuntimeConfig::fuel_metering`].
    pub fn fuel_metering(mut self, enabled: bool) -> Self {
        self.fuel_metering = enabled;
        self
    }

    /// Sets [`RuntimeConfig::pooling`].
    pub fn pooling(mut self, pooling: Option<PoolingConfig>) -> Self {
        self.pooling = pooling;
        self
    }

    /// Sets [`RuntimeConfig::preinitialize`].
    pub fn preinitialize(mut self, enabled: bool) -> Self {
        self.preinitialize = enabled;
        self
    }
}

/// Slots of the pooling instance allocator, shared by all actors of a runtime.
///
/// Each slot reserves (but does not commit) virtual memory for one linear
/// memory, so large pools cost address space, not RAM.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PoolingConfig {
    /// Maximum number of live instances across all actors.
    pub total_instances: u32,
    /// Largest linear memory a slot can hold; [`Limits::max_memory`] of every
    /// actor must not exceed it.
    pub max_memory_per_instance: usize,
}

impl Default for PoolingConfig {
    fn default() -> Self {
        Self {
            total_instances: 1_000,
            max_memory_per_instance: 256 << 20,
        }
    }
}

impl PoolingConfig {
    /// Sets [`PoolingConfig::total_instances`].
    pub fn total_instances(mut self, n: u32) -> Self {
        self.total_instances = n;
        self
    }

    /// Sets [`PoolingConfig::max_memory_per_instance`].
    pub fn max_memory_per_instance(mut self, bytes: usize) -> Self {
        self.max_memory_per_instance = bytes;
        self
    }
}

/// Per-actor limits. Exceeding one is a typed [`RuntimeError`](crate::RuntimeError);
/// the offending instance is dropped and the actor stays usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Maximum size of one instance's linear memory, in bytes.
    pub max_memory: usize,
    /// Wall-clock budget of one call, counted from the moment it is made:
    /// waiting for a free instance, creating one, guest code, and host
    /// calls. Guest code is stopped by epoch interruption, a host call
    /// still pending at the deadline is abandoned (both fail the call with
    /// [`RuntimeError::Deadline`](crate::RuntimeError::Deadline)), and a
    /// call that gets no instance in time fails with
    /// [`RuntimeError::QueueTimeout`](crate::RuntimeError::QueueTimeout).
    /// Rounded up to whole [`RuntimeConfig::epoch_tick`]s (plus one).
    pub deadline: Duration,
    /// Fuel budget of one call; needs [`RuntimeConfig::fuel_metering`].
    pub fuel: Option<u64>,
    /// Maximum size of a request payload, guest response, host-call payload
    /// or host response, in bytes.
    pub max_payload: usize,
    /// Instances created at load (and after a hot swap) so that the first
    /// calls do not pay for instantiation.
    pub min_instances: usize,
    /// Maximum number of instances, i.e. of concurrent calls, for this actor.
    pub max_instances: usize,
    /// The longest a call waits for a free instance when all are busy; the
    /// call's [`deadline`](Limits::deadline) ends the wait too, whichever
    /// comes first (with the defaults, the deadline).
    pub queue_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_memory: 16 << 20,
            deadline: Duration::from_secs(10),
            fuel: None,
            max_payload: 4 << 20,
            min_instances: 1,
            max_instances: 4,
            queue_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_memory`].
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Sets [`Limits::deadline`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`Limits::fuel`].
    pub fn fuel(mut self, fuel: Option<u64>) -> Self {
        self.fuel = fuel;
        self
    }

    /// Sets [`Limits::max_payload`].
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`Limits::min_instances`] and [`Limits::max_instances`].
    pub fn instances(mut self, min: usize, max: usize) -> Self {
        self.min_instances = min;
        self.max_instances = max;
        self
    }

    /// Sets [`Limits::queue_timeout`].
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.queue_timeout = timeout;
        self
    }
}
