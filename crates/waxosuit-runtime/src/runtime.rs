//! The [`Runtime`]: one wasmtime engine, its epoch ticker and module cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::actor::Actor;
use crate::cache::ModuleCache;
use crate::clock::EpochClock;
use crate::snapshot::FunctionCache;
use crate::{ActorKey, HostCallHandler, Limits, RuntimeConfig, RuntimeError};

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AllocatorKind {
    /// wasmtime's pooling allocator: instances reuse pre-reserved slots.
    Pooling,
    /// Each instance maps its own memory; used when pooling is disabled or
    /// its virtual-memory reservation failed.
    OnDemand,
}

/// Host for waPC actors: owns the wasmtime engine, the epoch ticker that
/// enforces deadlines, and the compiled-module cache.
///
/// Cheap to clone; actors keep what they need alive, so dropping the
/// `Runtime` does not stop loaded actors.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("allocator", &self.inner.allocator)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) cache: ModuleCache,
    pub(crate) config: RuntimeConfig,
    pub(crate) allocator: AllocatorKind,
    /// The engine's per-function compilation cache (see `snapshot`).
    pub(crate) functions: Arc<FunctionCache>,
    /// The epoch as the runtime sees it, for deadlines outside wasm code.
    pub(crate) clock: Arc<EpochClock>,
    _ticker: Ticker,
}

/// Stack for wasm code; the async (fiber) stack must be larger because host
/// functions run on it too.
const MAX_WASM_STACK: usize = 512 << 10;
const ASYNC_STACK: usize = 1 << 20;

/// Dirty bytes per released pool slot reset in place rather than decommitted.
const KEEP_RESIDENT: usize = 128 << 10;

fn engine_config(
    config: &RuntimeConfig,
    pooled: bool,
    functions: &Arc<FunctionCache>,
) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(true)
        .consume_fuel(config.fuel_metering)
        .memory_init_cow(true)
        .parallel_compilation(true)
        .cranelift_opt_level(OptLevel::Speed)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        // wasmtime's default, stated because it matters: a fiber stack is
        // reused as is (no memset or `madvise` per call or per release).
        .async_stack_zeroing(false)
        // waPC guests are plain core modules: keep the GC and component
        // async machinery out of every store and call.
        .gc_support(false)
        .concurrency_support(false)
        .wasm_gc(false);
    if config.preinitialize
        && let Err(e) = c.enable_incremental_compilation(functions.clone())
    {
        // Only costs pre-initialisation a second full compilation.
        tracing::warn!(error = %format!("{e:#}"), "no incremental compilation cache");
    }
    if pooled && let Some(p) = config.pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(p.total_instances)
            .total_memories(p.total_instances)
            .total_tables(p.total_instances)
            .total_stacks(p.total_instances)
            .total_component_instances(0)
            .max_memories_per_module(1)
            .max_memory_size(p.max_memory_per_instance)
            // Reset a released slot by rewriting only its dirty pages (found
            // with PAGEMAP_SCAN where the kernel has it) instead of
            // `madvise`: no TLB shootdown on release and no page faults when
            // the next instance touches the same pages.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

impl Runtime {
    /// Creates the engine (falling back from the pooling allocator to
    /// on-demand allocation if its reservation fails), starts the epoch
    /// ticker and prepares the cache directory.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Config`] if the engine cannot be created or the cache
    /// directory cannot be created.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        if config.epoch_tick.is_zero() {
            return Err(RuntimeError::Config("epoch_tick must not be zero".into()));
        }
        let functions = Arc::new(FunctionCache::default());
        let (engine, allocator) = if config.pooling.is_some() {
            match Engine::new(&engine_config(&config, true, &functions)) {
                Ok(engine) => (engine, AllocatorKind::Pooling),
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{e:#}"),
                        "pooling allocator unavailable (virtual memory reservation failed?); \
                         falling back to on-demand instance allocation"
                    );
                    (
                        build_engine(&config, false, &functions)?,
                        AllocatorKind::OnDemand,
                    )
                }
            }
        } else {
            (
                build_engine(&config, false, &functions)?,
                AllocatorKind::OnDemand,
            )
        };
        let cache = ModuleCache::new(config.cache_dir.clone(), &engine, config.preinitialize)
            .map_err(RuntimeError::Config)?;
        let clock = Arc::new(EpochClock::new(config.epoch_tick));
        let ticker = Ticker::start(engine.clone(), Arc::clone(&clock), config.epoch_tick)?;
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                cache,
                config,
                allocator,
                functions,
                clock,
                _ticker: ticker,
            }),
        })
    }

    /// The instance allocator in use.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// The configuration this runtime was created with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// The wasmtime engine, for other kinds of modules run under the same
    /// epoch ticker, allocator and fuel settings (Proxy-Wasm filters).
    pub fn engine(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    /// Loads an actor: compiles the module (or loads it from the cache),
    /// checks it against the waPC contract, pre-initialises it if
    /// [`RuntimeConfig::preinitialize`] is on and it qualifies (its
    /// initialisation then runs once, here, under `limits`, in a store
    /// whose imports trap), and creates [`Limits::min_instances`] ready
    /// instances.
    ///
    /// The runtime does not verify signatures or claims: pass only bytes the
    /// caller has already verified for `key`.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::Load`] for invalid modules, [`RuntimeError::UnknownImport`]
    /// for imports outside the waPC contract, [`RuntimeError::Config`] for
    /// unusable limits, and any call error raised by `_start`/`wapc_init`
    /// while creating the first instances (a module whose initialisation
    /// fails is never pre-initialised, so the error is the same either way).
    pub async fn load<H: HostCallHandler>(
        &self,
        key: ActorKey,
        module: &[u8],
        limits: Limits,
        handler: Arc<H>,
    ) -> Result<Actor<H>, RuntimeError> {
        self.check_limits(&limits)?;
        Actor::load(Arc::clone(&self.inner), key, module, limits, handler).await
    }

    fn check_limits(&self, limits: &Limits) -> Result<(), RuntimeError> {
        /// Instances kept ready without a pool to bound them.
        const MAX_MIN_INSTANCES: usize = 10_000;
        if limits.max_instances == 0 {
            return Err(RuntimeError::Config(
                "max_instances must be at least 1".into(),
            ));
        }
        if limits.min_instances > limits.max_instances {
            return Err(RuntimeError::Config(format!(
                "min_instances ({}) exceeds max_instances ({})",
                limits.min_instances, limits.max_instances
            )));
        }
        // Instances kept ready are made, and room for them reserved, at
        // load: more than the pool holds can never be had, and billions
        // would be an allocation that aborts the process.
        let most = match (self.inner.allocator, self.inner.config.pooling) {
            (AllocatorKind::Pooling, Some(pool)) => pool.total_instances as usize,
            _ => MAX_MIN_INSTANCES,
        };
        if limits.min_instances > most {
            return Err(RuntimeError::Config(format!(
                "min_instances ({}) exceeds the {most} instances this runtime can hold",
                limits.min_instances
            )));
        }
        if limits.max_payload >= i32::MAX as usize {
            return Err(RuntimeError::Config(
                "max_payload must be below 2 GiB (waPC lengths are i32)".into(),
            ));
        }
        if limits.fuel.is_some() && !self.inner.config.fuel_metering {
            return Err(RuntimeError::Config(
                "Limits::fuel needs RuntimeConfig::fuel_metering(true)".into(),
            ));
        }
        if self.inner.allocator == AllocatorKind::Pooling
            && let Some(pool) = self.inner.config.pooling
            && limits.max_memory > pool.max_memory_per_instance
        {
            return Err(RuntimeError::Config(format!(
                "max_memory ({} bytes) exceeds the pooling slot size ({} bytes); raise \
                 PoolingConfig::max_memory_per_instance",
                limits.max_memory, pool.max_memory_per_instance
            )));
        }
        Ok(())
    }
}

fn build_engine(
    config: &RuntimeConfig,
    pooled: bool,
    functions: &Arc<FunctionCache>,
) -> Result<Engine, RuntimeError> {
    Engine::new(&engine_config(config, pooled, functions))
        .map_err(|e| RuntimeError::Config(format!("cannot create the wasm engine: {e:#}")))
}

impl RuntimeInner {
    /// Number of epoch ticks that covers `deadline` (at least one full tick,
    /// plus one for the partially elapsed current tick).
    pub(crate) fn deadline_ticks(&self, deadline: Duration) -> u64 {
        let tick = self.config.epoch_tick.as_nanos().max(1);
        let ticks = deadline.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
    }
}

/// Background thread advancing the engine epoch and the runtime's
/// [`EpochClock`]; one per engine. A thread rather than a tokio task so
/// deadlines hold even when every worker is busy.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, clock: Arc<EpochClock>, tick: Duration) -> Result<Self, RuntimeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("waxosuit-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(tick);
                    engine.increment_epoch();
                    clock.advance();
                }
            })
            .map_err(|e| RuntimeError::Config(format!("cannot start the epoch ticker: {e}")))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            // The thread only sleeps and ticks; a join error would mean it
            // panicked, which it cannot, and there is nothing to do about it.
            let _ = handle.join();
        }
    }
}
