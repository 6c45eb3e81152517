//! Pre-initialisation: run a module's `_start`/`wapc_init` once at load and
//! bake the result into a new module, so instances start ready to call.
//!
//! Without this every instance runs the guest's initialisation itself, which
//! costs two guest calls per instance and leaves every page the
//! initialisation wrote (data segment, heap, shadow stack) private to that
//! instance. A pre-initialised module carries that state in its data
//! segments instead: wasmtime maps it copy-on-write from one shared image, an
//! idle instance owns none of it, and creating one is just instantiation.
//!
//! The module is first *instrumented* (Wizer's rewrite: every memory and
//! mutable global exported, nothing else changed), compiled, instantiated in
//! a store whose imports all trap, and initialised under the actor's deadline,
//! memory and fuel limits. Its memory and globals are then written out as the
//! initial state of a new module without the initialisation exports' effect
//! needing to run again.
//!
//! It only happens when it cannot change behaviour, and only for modules that
//! pass the waPC contract check. Initialisation that calls the host (a log
//! line, a capability such as a random number) must run per instance, so any
//! host call traps the snapshot run and the actor falls back to running the
//! instrumented module's initialisation in every instance, as does a module
//! Wizer cannot snapshot (one that mutates tables, for example) or whose
//! snapshot would be large. The snapshot run uses the actor's limits, and the
//! cache keys pre-initialised modules by those limits too, so an actor never
//! skips an initialisation its own limits would have stopped. Either way the
//! result has the same imports, the same code and the same waPC behaviour as
//! the module that was verified (the instrumented form additionally exports
//! its globals under `__wizer_*` names, which the runtime ignores).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;
use wasmtime::{CacheStore, Engine, ExternType, Instance, Linker, Module, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use crate::state::MemoryLimiter;

/// The guest's initialisation exports, in the order waPC runs them.
pub(crate) const INIT_EXPORTS: [&str; 2] = ["_start", "wapc_init"];

/// A compiled module and whether its initialisation is already baked in.
pub(crate) struct Prepared {
    pub(crate) module: Module,
    /// `true`: instances must not run `_start`/`wapc_init` again.
    pub(crate) preinitialized: bool,
    /// Whether the outcome depends only on the module bytes and the limits,
    /// so the on-disk cache may keep it. A snapshot run that failed for a
    /// reason of the moment (no free pool slot, a deadline under load) is
    /// tried again at the next start instead.
    pub(crate) cacheable: bool,
}

/// Limits the snapshot run is held to: the actor's own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitLimits {
    pub(crate) deadline_ticks: u64,
    pub(crate) max_memory: usize,
    /// `Some` when the engine meters fuel.
    pub(crate) fuel: Option<u64>,
}

impl InitLimits {
    /// Short stable tag of the limits, for cache entry names.
    pub(crate) fn tag(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update(self.deadline_ticks.to_le_bytes());
        digest.update((self.max_memory as u64).to_le_bytes());
        digest.update(self.fuel.map_or([0xff; 8], u64::to_le_bytes));
        digest.update([u8::from(self.fuel.is_some())]);
        crate::cache::hex(&digest.finalize()[..4])
    }
}

/// Largest snapshot kept: a guest that fills its memory during
/// initialisation would otherwise cost a module (and cache entry) as large
/// as that memory. Such modules are initialised per instance.
const MAX_SNAPSHOT_BYTES: usize = 16 << 20;

/// Compiles `bytes`, pre-initialised when `enabled` and possible.
///
/// `contract_ok` tells whether a compiled module passes the waPC contract
/// check; guest code runs only for modules that do. Errors are compilation
/// errors of the module itself, as text. A module that compiles but is not
/// pre-initialised is returned compiled, instrumented or not, for the
/// caller's contract check and per-instance initialisation.
pub(crate) fn prepare(
    engine: &Engine,
    functions: &FunctionCache,
    bytes: &[u8],
    enabled: bool,
    limits: InitLimits,
    contract_ok: &dyn Fn(&Module) -> bool,
) -> Result<Prepared, String> {
    /// Empties the function cache however `prepare` ends (a panic included).
    struct Clear<'a>(&'a FunctionCache);
    impl Drop for Clear<'_> {
        fn drop(&mut self) {
            self.0.clear();
        }
    }
    let _clear = Clear(functions);
    let plain = |module| Prepared {
        module,
        preinitialized: false,
        cacheable: true,
    };
    if !enabled {
        return compile(engine, bytes).map(plain);
    }
    let mut wizer = Wizer::new();
    // Wizer drops this export from the snapshot; instances skip the other
    // one (`Prepared::preinitialized`).
    wizer.init_func("wapc_init");
    // Wizer asserts on inputs it does not expect; a hostile module must
    // cost only its pre-initialisation, never the load.
    let Some((cx, instrumented)) = unwind_safe(|| wizer.instrument(bytes).ok()) else {
        // Refused (table mutation, imported memory, ...) or invalid: the
        // compiler tells the latter best.
        return compile(engine, bytes).map(plain);
    };
    let Ok(module) = compile(engine, &instrumented) else {
        return compile(engine, bytes).map(plain);
    };
    let has_init = INIT_EXPORTS.iter().any(|e| module.get_export(e).is_some());
    if !has_init || !contract_ok(&module) {
        return Ok(plain(module));
    }
    let started = Instant::now();
    let (mut store, instance) = match initialise(engine, &module, limits) {
        Ok(initialised) => initialised,
        Err(InitFailure::HostCall) => return Ok(plain(module)),
        Err(InitFailure::Other) => {
            return Ok(Prepared {
                cacheable: false,
                ..plain(module)
            });
        }
    };
    let mut state = Snapshotting {
        store: &mut store,
        instance,
        mismatch: false,
    };
    let snapshot = unwind_safe(|| ready_now(wizer.snapshot(&cx, &mut state)).and_then(Result::ok));
    let snapshot = match snapshot {
        Some(snapshot) if !state.mismatch && snapshot.len() <= MAX_SNAPSHOT_BYTES => snapshot,
        _ => return Ok(plain(module)),
    };
    match Module::new(engine, &snapshot) {
        Ok(snapshotted) => {
            tracing::debug!(
                elapsed = ?started.elapsed(),
                bytes = snapshot.len(),
                "module pre-initialised"
            );
            Ok(Prepared {
                module: snapshotted,
                preinitialized: true,
                cacheable: true,
            })
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot compile the pre-initialised module; initialising per instance");
            Ok(plain(module))
        }
    }
}

/// Runs `f`, turning a panic into `None`.
fn unwind_safe<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(None)
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Module, String> {
    Module::new(engine, bytes).map_err(|e| format!("{e:#}"))
}

/// Why the snapshot run did not complete.
enum InitFailure {
    /// Initialisation called the host: it must run in every instance.
    HostCall,
    /// A trap, a limit or no free instance slot: per-instance
    /// initialisation will tell (or succeed, if it was the moment).
    Other,
}

/// Store data of the snapshot run.
struct InitState {
    limiter: MemoryLimiter,
    host_called: bool,
}

/// Instantiates `module` with trapping imports and runs its initialisation
/// exports.
fn initialise(
    engine: &Engine,
    module: &Module,
    limits: InitLimits,
) -> Result<(Store<InitState>, Instance), InitFailure> {
    let mut store = Store::new(
        engine,
        InitState {
            limiter: MemoryLimiter {
                max_memory: limits.max_memory,
                denied: false,
            },
            host_called: false,
        },
    );
    store.limiter(|state| &mut state.limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(limits.deadline_ticks);
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel).map_err(|_| InitFailure::Other)?;
    }
    let mut linker = Linker::<InitState>::new(engine);
    // Any host call during initialisation traps: its effect (output, a
    // capability's answer) belongs to each instance, not to a snapshot.
    for import in module.imports() {
        let ExternType::Func(ty) = import.ty() else {
            return Err(InitFailure::Other);
        };
        linker
            .func_new(import.module(), import.name(), ty, |mut caller, _, _| {
                caller.data_mut().host_called = true;
                Err(wasmtime::Error::msg("host call during pre-initialisation"))
            })
            .map_err(|_| InitFailure::Other)?;
    }
    let failed = |store: &Store<InitState>| {
        if store.data().host_called {
            InitFailure::HostCall
        } else {
            InitFailure::Other
        }
    };
    let instance = match linker.instantiate(&mut store, module) {
        Ok(instance) => instance,
        Err(_) => return Err(failed(&store)),
    };
    for export in INIT_EXPORTS {
        if let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, export)
            && func.call(&mut store, ()).is_err()
        {
            return Err(failed(&store));
        }
    }
    Ok((store, instance))
}

/// Wizer's view of the initialised instance.
struct Snapshotting<'a> {
    store: &'a mut Store<InitState>,
    instance: Instance,
    /// Set if Wizer asked for something the instance does not have; the
    /// snapshot is then discarded rather than trusted.
    mismatch: bool,
}

impl InstanceState for Snapshotting<'_> {
    async fn global_get(&mut self, name: &str, type_hint: ValType) -> SnapshotVal {
        // Wizer only asks for the globals its instrumentation exported, and
        // only mutable number globals pass its validation.
        match self
            .instance
            .get_global(&mut *self.store, name)
            .map(|g| g.get(&mut *self.store))
        {
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            _ => {
                // A placeholder of the right type keeps Wizer's output
                // valid; the snapshot is discarded anyway.
                self.mismatch = true;
                match type_hint {
                    ValType::I64 => SnapshotVal::I64(0),
                    ValType::F32 => SnapshotVal::F32(0),
                    ValType::F64 => SnapshotVal::F64(0),
                    ValType::V128 => SnapshotVal::V128(0),
                    ValType::I32 | ValType::Ref(_) => SnapshotVal::I32(0),
                }
            }
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(memory) => contents(memory.data(&*self.store)),
            None => {
                self.mismatch = true;
                contents(&[]);
            }
        }
    }
}

/// Cranelift's per-function compilation cache, kept in memory.
///
/// The snapshot module has exactly the instrumented module's code (data,
/// global initialisers and the memory's minimum size differ), so with this cache its compilation
/// reuses every function compiled moments before instead of compiling the
/// module a second time. It serves only that: [`prepare`] empties it when
/// done, so memory is not held and a later load of any module is a true
/// cold compilation. (Concurrent loads may empty it under each other; that
/// costs a recompilation, never a wrong result: entries are keyed by the
/// function's full compilation input.)
#[derive(Debug, Default)]
pub(crate) struct FunctionCache {
    entries: Mutex<FunctionEntries>,
}

#[derive(Debug, Default)]
struct FunctionEntries {
    map: HashMap<Vec<u8>, Vec<u8>>,
    bytes: usize,
}

/// Upper bound of the cache's keys and values together.
const FUNCTION_CACHE_BYTES: usize = 32 << 20;

impl FunctionCache {
    fn clear(&self) {
        let mut entries = self.entries.lock();
        entries.map = HashMap::new();
        entries.bytes = 0;
    }
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let entries = self.entries.lock();
        entries.map.get(key).map(|v| Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let size = key.len() + value.len();
        if size > FUNCTION_CACHE_BYTES {
            return false;
        }
        let mut entries = self.entries.lock();
        if entries.bytes + size > FUNCTION_CACHE_BYTES {
            entries.map.clear();
            entries.bytes = 0;
        }
        if let Some(old) = entries.map.insert(key.to_vec(), value) {
            entries.bytes -= key.len() + old.len();
        }
        entries.bytes += size;
        true
    }
}

/// The output of `future` if it completes on its first poll. Snapshotting
/// runs no async host function, so its future is ready at once; one that
/// is not is treated as a failed snapshot (the module is used as it is).
fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.poll(&mut cx) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}
