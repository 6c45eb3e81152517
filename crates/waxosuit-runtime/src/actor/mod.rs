//! [`Actor`]: one loaded module, its instance pool and its hot swap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use wasmtime::{InstancePre, Linker, Store, TypedFunc};

use crate::abi;
use crate::cache::{self, CacheOutcome};
use crate::clock::EpochClock;
use crate::host_call::{current_flavor, inside_host_call};
use crate::pool::{Busy, Checkout, Pool, Pooled};
use crate::runtime::RuntimeInner;
use crate::snapshot::{self, InitLimits};
use crate::state::{HostState, Identity};
use crate::{ActorKey, HostCallHandler, Limits, RuntimeError, WaitBound};

mod run;

use run::Invoked;

/// A loaded actor: a pool of ready instances of one module (one *generation*
/// per hot swap) serving waPC calls.
///
/// Cheap to clone; clones share the pool. Each instance serves one call at a
/// time; up to [`Limits::max_instances`] calls run concurrently and further
/// calls wait for a free instance, up to the call's deadline or
/// [`Limits::queue_timeout`], whichever is shorter.
pub struct Actor<H: HostCallHandler> {
    inner: Arc<ActorInner<H>>,
}

impl<H: HostCallHandler> Clone for Actor<H> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<H: HostCallHandler> std::fmt::Debug for Actor<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("key", &self.inner.ident.key)
            .field("limits", &self.inner.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters describing an actor's pool, for monitoring and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ActorStats {
    /// Ready instances waiting for a call.
    pub idle_instances: usize,
    /// Instances created since load (initial, on demand and after swaps).
    pub instances_created: u64,
    /// Instances dropped because they trapped, hit a limit, broke the
    /// protocol, or belonged to a replaced module.
    pub instances_discarded: u64,
    /// Module generation: 1 after load, incremented by every hot swap.
    pub generation: u64,
    /// SHA-256 (hex) of the current module's bytes.
    pub module_hash: String,
    /// How the current module was obtained (compiled or from the cache).
    pub cache_outcome: CacheOutcome,
    /// Whether the current module's `_start`/`wapc_init` ran once at load
    /// and instances start from its result, rather than each instance
    /// running them (see [`RuntimeConfig::preinitialize`](crate::RuntimeConfig::preinitialize)).
    pub preinitialized: bool,
    /// Whether new instances run inline, without a fiber (see
    /// [`RuntimeConfig::inline_calls`](crate::RuntimeConfig::inline_calls)):
    /// false once a call of the actor had to wait, and for actors loaded
    /// outside a multi-threaded Tokio runtime.
    pub inline: bool,
}

struct ActorInner<H: HostCallHandler> {
    runtime: Arc<RuntimeInner>,
    ident: Arc<Identity<H>>,
    limits: Limits,
    deadline_ticks: u64,
    /// The runtime's epoch clock (a copy of `runtime.clock`, one pointer
    /// closer on the call path).
    clock: Arc<EpochClock>,
    current: Mutex<Arc<Generation<H>>>,
    /// Copy of `current.id`, readable without the lock on the hot path.
    current_id: AtomicU64,
    /// Idle instances, per thread, and the bound on live ones.
    pool: Pool<Box<Instance<H>>>,
    /// Serializes hot swaps so generations are published in order.
    swap: tokio::sync::Mutex<()>,
    created: AtomicU64,
    discarded: AtomicU64,
}

struct Generation<H: HostCallHandler> {
    id: u64,
    /// Instances whose host calls may suspend the guest on a fiber.
    pre: InstancePre<HostState<H>>,
    /// Instances whose host calls are driven in place, if the actor may
    /// run inline; the same module, linked to the in-place `__host_call`.
    pre_inline: Option<InstancePre<HostState<H>>>,
    module_hash: String,
    cache_outcome: CacheOutcome,
    /// Initialisation is baked into `pre`: instances skip `_start`/`wapc_init`.
    preinitialized: bool,
}

/// A checked-out live slot of the pool; returns its instance (or discards
/// it) when dropped, including when a call is cancelled, and frees the slot
/// if no reusable instance is left in it.
struct Slot<'a, H: HostCallHandler> {
    actor: &'a ActorInner<H>,
    /// The pool shard the instance goes back to.
    home: usize,
    instance: Option<Box<Instance<H>>>,
    /// Set while the guest runs: an instance whose call was interrupted
    /// (future dropped) is in an unknown state and must not be reused.
    in_call: bool,
}

impl<H: HostCallHandler> Drop for Slot<'_, H> {
    fn drop(&mut self) {
        let actor = self.actor;
        let mut instance = self.instance.take();
        if self.in_call
            && let Some(broken) = instance.take()
        {
            actor.discard(broken);
        }
        match instance {
            Some(i)
                if i.generation == actor.current_id.load(Ordering::Acquire)
                    && !actor.pool.over_capacity() =>
            {
                actor.pool.put(self.home, i);
            }
            stale_or_none => {
                if let Some(stale) = stale_or_none {
                    actor.discard(stale);
                }
                actor.pool.release();
            }
        }
    }
}

/// Boxed wherever it is held: moving the few words by value through the
/// pool and the call path compiled to overlapping copies that stalled on
/// store forwarding, a measurable share of a 130 ns call.
struct Instance<H: HostCallHandler> {
    store: Store<HostState<H>>,
    guest_call: TypedFunc<(i32, i32), i32>,
    generation: u64,
    /// Runs without a fiber (see [`ActorInner::inline`]).
    inline: bool,
}

impl<H: HostCallHandler> Pooled for Box<Instance<H>> {
    fn generation(&self) -> u64 {
        self.generation
    }
}

impl<H: HostCallHandler> Actor<H> {
    pub(crate) async fn load(
        runtime: Arc<RuntimeInner>,
        key: ActorKey,
        module: &[u8],
        limits: Limits,
        handler: Arc<H>,
    ) -> Result<Self, RuntimeError> {
        // Inline instances need a runtime where a waiting host call can hand
        // its worker's tasks elsewhere (`block_in_place`).
        let inline = runtime.config.inline_calls
            && current_flavor() == Some(tokio::runtime::RuntimeFlavor::MultiThread);
        let ident = Arc::new(Identity {
            key,
            handler,
            inline: AtomicBool::new(inline),
            clock: Arc::clone(&runtime.clock),
            console: crate::console::ConsoleBudget::new(),
        });
        let deadline_ticks = runtime.deadline_ticks(limits.deadline);
        let init_limits = init_limits(&runtime, &limits, deadline_ticks);
        let generation =
            Arc::new(prepare(&runtime, &ident.key, module, 1, init_limits, inline).await?);
        let clock = Arc::clone(&runtime.clock);
        let actor = Self {
            inner: Arc::new(ActorInner {
                runtime,
                ident,
                limits,
                deadline_ticks,
                clock,
                current: Mutex::new(Arc::clone(&generation)),
                current_id: AtomicU64::new(1),
                pool: Pool::new(limits.max_instances),
                swap: tokio::sync::Mutex::new(()),
                created: AtomicU64::new(0),
                discarded: AtomicU64::new(0),
            }),
        };
        let warm = actor
            .inner
            .instantiate_many(&generation, limits.min_instances)
            .await?;
        actor.inner.pool.add(warm);
        Ok(actor)
    }

    /// The actor's identity.
    pub fn key(&self) -> &ActorKey {
        &self.inner.ident.key
    }

    /// The limits the actor was loaded with.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Pool counters and the current module generation.
    pub fn stats(&self) -> ActorStats {
        let generation = Arc::clone(&self.inner.current.lock());
        ActorStats {
            idle_instances: self.inner.pool.idle_len(),
            instances_created: self.inner.created.load(Ordering::Relaxed),
            instances_discarded: self.inner.discarded.load(Ordering::Relaxed),
            generation: generation.id,
            module_hash: generation.module_hash.clone(),
            cache_outcome: generation.cache_outcome,
            preinitialized: generation.preinitialized,
            inline: self.inner.ident.inline.load(Ordering::Relaxed),
        }
    }

    /// How the current module was obtained: compiled, or loaded from the
    /// on-disk cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.inner.current.lock().cache_outcome
    }

    /// Performs one waPC call: `op` with `payload`, returning the guest's response.
    ///
    /// Waits for a free instance if all are busy. [`Limits::deadline`]
    /// bounds the whole call from here: the wait for an instance, the
    /// guest's run and its host calls. A trap or exceeded limit drops the
    /// instance that served the call; the next call gets a fresh one.
    /// Dropping the returned future cancels the call and drops its
    /// instance.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::GuestError`] when the guest reports an error or breaks
    /// the protocol, [`RuntimeError::Trap`], [`RuntimeError::Deadline`] (also
    /// when a host call is still pending at the deadline),
    /// [`RuntimeError::MemoryLimit`], [`RuntimeError::FuelExhausted`],
    /// [`RuntimeError::PayloadTooLarge`], [`RuntimeError::NameTooLong`],
    /// [`RuntimeError::QueueTimeout`] when no instance was free in time, or
    /// [`RuntimeError::Instantiate`] when no instance could be created.
    pub async fn call(&self, op: &str, payload: &[u8]) -> Result<Vec<u8>, RuntimeError> {
        let inner = &*self.inner;
        // The deadline counts from here, as the tick it ends at.
        let end = inner.clock.now().saturating_add(inner.deadline_ticks);
        inner.check_payload("request payload", payload.len())?;
        inner.check_payload("operation name", op.len())?;
        // The caller's span (the host's actor span) learns how long the
        // call waited for an instance. A call that finds one idle did not
        // wait, and leaves the span's own value (the host's is 0): no clock
        // read and no trip through the subscriber for most calls.
        let mut slot = match inner.checkout_now() {
            Some(slot) => slot,
            None => {
                let _waiting = Waiting::start();
                inner.checkout(end).await?
            }
        };
        // Called from a guest's host call (one actor calling another, or a
        // capability delivering to an actor while it answers): a fiber
        // instance, with a stack of its own, not an inline one on the
        // caller's.
        let nested = inside_host_call();
        loop {
            if slot.instance.as_ref().is_some_and(|i| i.inline)
                && (nested || !inner.ident.inline.load(Ordering::Relaxed))
            {
                // The actor switched to fibers since this instance was made,
                // or this call may not run inline.
                if let Some(stale) = slot.instance.take() {
                    inner.discard(stale);
                }
            }
            let instance = match &mut slot.instance {
                Some(instance) => instance,
                empty => {
                    let generation = Arc::clone(&inner.current.lock());
                    empty.insert(inner.instantiate(&generation, Some(end)).await?)
                }
            };
            slot.in_call = true;
            let result = inner.invoke(instance, op, payload, end).await;
            slot.in_call = false;
            match result {
                Invoked::Replied(response) => return Ok(response),
                Invoked::Failed { error, reusable } => {
                    if !reusable && let Some(broken) = slot.instance.take() {
                        inner.discard(broken);
                    }
                    return Err(error);
                }
                // Runs once more at most: the actor has left inline mode,
                // so the next instance is a fiber instance, which never
                // gives way.
                Invoked::GaveWay => {
                    if let Some(stopped) = slot.instance.take() {
                        inner.discard(stopped);
                    }
                }
            }
        }
    }

    /// Creates one ready instance of the current module (new store,
    /// instantiation from the pre-linked module, and `_start`/`wapc_init`
    /// unless the module is pre-initialised) and parks it in the idle pool, dropping the oldest idle instance if
    /// the pool is full. Useful to pre-warm after a burst and to measure
    /// ready-to-call cost.
    ///
    /// # Errors
    ///
    /// Any error raised while creating the instance (see [`Actor::call`]).
    pub async fn prewarm(&self) -> Result<(), RuntimeError> {
        let inner = &*self.inner;
        let generation = Arc::clone(&inner.current.lock());
        let instance = inner.instantiate(&generation, None).await?;
        inner.pool.add([instance]);
        for old in inner.pool.evict_excess() {
            inner.discard(old);
        }
        Ok(())
    }

    /// Drops idle instances until at most `keep` remain (the least recently
    /// used go first), e.g. to return memory under pressure. Returns how many
    /// were dropped. Busy instances are not affected.
    pub fn trim_idle(&self, keep: usize) -> usize {
        let inner = &*self.inner;
        let dropped = inner.pool.trim(keep);
        let count = dropped.len();
        for instance in dropped {
            inner.discard(instance);
        }
        count
    }

    /// Hot swap: replaces the actor's module with `module`, keeping its
    /// identity, limits and handler.
    ///
    /// The new module is compiled and [`Limits::min_instances`] instances of
    /// it are created *before* it is published, so a module that fails to
    /// load or initialise leaves the old one serving. After publication new
    /// calls (including those already queued) use the new module; calls in
    /// flight finish on their old instance, which is then dropped.
    ///
    /// The caller must have verified that `module` is signed for `key`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::KeyMismatch`] if `key` is not this actor's key, and
    /// any error of [`Runtime::load`](crate::Runtime::load).
    pub async fn replace_module(
        &self,
        key: &ActorKey,
        module: &[u8],
    ) -> Result<CacheOutcome, RuntimeError> {
        let inner = &*self.inner;
        if *key != inner.ident.key {
            return Err(RuntimeError::KeyMismatch {
                expected: inner.ident.key.clone(),
                got: key.clone(),
            });
        }
        let _swap = inner.swap.lock().await;
        let id = inner.current_id.load(Ordering::Acquire) + 1;
        let init_limits = init_limits(&inner.runtime, &inner.limits, inner.deadline_ticks);
        let inline = inner.ident.inline.load(Ordering::Relaxed);
        let generation =
            Arc::new(prepare(&inner.runtime, key, module, id, init_limits, inline).await?);
        let warm = inner
            .instantiate_many(&generation, inner.limits.min_instances)
            .await?;
        let outcome = generation.cache_outcome;
        *inner.current.lock() = generation;
        inner.current_id.store(id, Ordering::Release);
        // Calls that find no idle instance between the two steps create one
        // of the new generation, which is already published.
        let stale = inner.pool.drain();
        inner.pool.add(warm);
        for instance in stale {
            inner.discard(instance);
        }
        tracing::info!(actor = %key, generation = id, "actor module replaced");
        Ok(outcome)
    }
}

/// Times a call's wait for an instance into the caller's span, if it is
/// being recorded and has `waxosuit.instance.wait_us` (the host's actor
/// span does). Recorded when dropped, so a wait that ends in a queue
/// timeout, or a call dropped while it waits, is recorded too; the span is
/// held until then.
struct Waiting {
    span: tracing::Span,
    since: std::time::Instant,
}

impl Waiting {
    fn start() -> Option<Waiting> {
        let span = tracing::Span::current();
        if span.is_disabled() {
            return None;
        }
        Some(Waiting {
            span,
            since: std::time::Instant::now(),
        })
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let micros = u64::try_from(self.since.elapsed().as_micros()).unwrap_or(u64::MAX);
        // A span without the field ignores it.
        self.span.record("waxosuit.instance.wait_us", micros);
    }
}

fn init_limits(runtime: &RuntimeInner, limits: &Limits, deadline_ticks: u64) -> InitLimits {
    InitLimits {
        deadline_ticks,
        max_memory: limits.max_memory,
        fuel: runtime
            .config
            .fuel_metering
            .then(|| limits.fuel.unwrap_or(u64::MAX)),
    }
}

/// Compiles and pre-initialises (or loads from cache) and links one module
/// generation.
async fn prepare<H: HostCallHandler>(
    runtime: &Arc<RuntimeInner>,
    key: &ActorKey,
    module: &[u8],
    id: u64,
    init_limits: InitLimits,
    inline: bool,
) -> Result<Generation<H>, RuntimeError> {
    let load_error = |message: String| RuntimeError::Load {
        actor: key.clone(),
        message,
    };
    if !module.starts_with(b"\0asm") {
        return Err(load_error(
            "the bytes are not a WebAssembly module (missing the \\0asm header)".into(),
        ));
    }
    let module_hash = cache::module_hash(module);
    // Compilation takes milliseconds of CPU: keep it off the async workers.
    let compiled = {
        let runtime = Arc::clone(runtime);
        let bytes = module.to_vec();
        let hash = module_hash.clone();
        let actor = key.clone();
        tokio::task::spawn_blocking(move || {
            let engine = &runtime.engine;
            let enabled = runtime.config.preinitialize;
            // A pre-initialised module embodies a run under these limits.
            let entry = if enabled {
                format!("{hash}-{}", init_limits.tag())
            } else {
                hash
            };
            let contract_ok = |module: &wasmtime::Module| abi::check_module(module, &actor).is_ok();
            runtime.cache.load_or_build(engine, &entry, || {
                snapshot::prepare(
                    engine,
                    &runtime.functions,
                    &bytes,
                    enabled,
                    init_limits,
                    &contract_ok,
                )
            })
        })
        .await
        .map_err(|e| load_error(format!("the compilation task failed: {e}")))?
    };
    let (prepared, cache_outcome) =
        compiled.map_err(|e| load_error(format!("invalid WebAssembly module: {e}")))?;
    let module = prepared.module;
    let abi = abi::check_module(&module, key)?;
    let link = |inline: bool| {
        let mut linker = Linker::new(&runtime.engine);
        abi::define(&mut linker, abi, inline)
            .map_err(|e| load_error(format!("cannot define the waPC host functions: {e:#}")))?;
        linker
            .instantiate_pre(&module)
            .map_err(|e| load_error(format!("cannot link the module: {e:#}")))
    };
    let pre = link(false)?;
    let pre_inline = if inline { Some(link(true)?) } else { None };
    Ok(Generation {
        id,
        pre,
        pre_inline,
        module_hash,
        cache_outcome,
        preinitialized: prepared.preinitialized,
    })
}

impl<H: HostCallHandler> ActorInner<H> {
    fn check_payload(&self, what: &'static str, size: usize) -> Result<(), RuntimeError> {
        if size > self.limits.max_payload {
            return Err(RuntimeError::PayloadTooLarge {
                actor: self.ident.key.clone(),
                what,
                size,
                limit: self.limits.max_payload,
            });
        }
        Ok(())
    }

    /// An idle instance of the current generation, if there is one now:
    /// the common case, without building the waiting future.
    fn checkout_now(&self) -> Option<Slot<'_, H>> {
        let home = self.pool.home();
        let instance = self
            .pool
            .take_newest(home, self.current_id.load(Ordering::Acquire))?;
        Some(Slot {
            actor: self,
            home,
            instance: Some(instance),
            in_call: false,
        })
    }

    /// A slot once [`ActorInner::checkout_now`] found no idle instance: an
    /// idle one of any shard, otherwise an empty slot (the caller creates
    /// the instance) if fewer than `max_instances` are live, otherwise
    /// waits, until the call's deadline (tick `end`) or for
    /// `queue_timeout`, whichever comes first.
    async fn checkout(&self, end: u64) -> Result<Slot<'_, H>, RuntimeError> {
        let current = || self.current_id.load(Ordering::Acquire);
        let home = self.pool.home();
        // Waiting spends the call's deadline, so it cannot outlast it: a
        // call that gets no instance fails when its deadline passes (an
        // actor calling itself with every instance busy would otherwise
        // wait out the queue timeout, 30 s by default).
        let left = self.clock.until(end);
        let (patience, bound) = if left <= self.limits.queue_timeout {
            (left, WaitBound::Deadline)
        } else {
            (self.limits.queue_timeout, WaitBound::QueueTimeout)
        };
        let no_instance = |waited| RuntimeError::QueueTimeout {
            actor: self.ident.key.clone(),
            max_instances: self.limits.max_instances,
            waited,
            bound,
        };
        let checkout = self
            .pool
            .checkout_slow(home, current, patience, &mut |stale| {
                self.discard(stale);
            })
            .await;
        let instance = match checkout {
            Ok(Checkout::Ready(instance)) => Some(instance),
            Ok(Checkout::Create) => None,
            Err(Busy) => return Err(no_instance(patience)),
        };
        let slot = Slot {
            actor: self,
            home,
            instance,
            in_call: false,
        };
        if self.clock.now() >= end {
            // An instance came, but the deadline (counted in whole ticks)
            // passed while the call waited for it; the slot goes back.
            return Err(RuntimeError::QueueTimeout {
                actor: self.ident.key.clone(),
                max_instances: self.limits.max_instances,
                waited: self.limits.deadline,
                bound: WaitBound::Deadline,
            });
        }
        Ok(slot)
    }

    /// Drops an instance that left the pool for good; its live slot is
    /// freed by whoever removed it.
    fn discard(&self, instance: Box<Instance<H>>) {
        self.discarded.fetch_add(1, Ordering::Relaxed);
        drop(instance);
    }
}
