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
//! It only happens when it cannot change behaviour. Initialisation that calls
//! the host (a log line, a capability such as a random number) must run per
//! instance, so any host call traps the snapshot run and the actor falls back
//! to running the instrumented module's initialisation in every instance, as
//! does a module Wizer cannot snapshot (one that mutates tables, for
//! example). Either way the result is a module with the same imports, the
//! same code and the same observable behaviour as the one that was verified.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use wasmtime::{CacheStore, Engine, Instance, Linker, Module, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use crate::abi::{MemoryLimiter, block_on};

/// The guest's initialisation exports, in the order waPC runs them.
pub(crate) const INIT_EXPORTS: [&str; 2] = ["_start", "wapc_init"];

/// A compiled module and whether its initialisation is already baked in.
pub(crate) struct Prepared {
    pub(crate) module: Module,
    /// `true`: instances must not run `_start`/`wapc_init` again.
    pub(crate) preinitialized: bool,
}

/// Limits the snapshot run is held to: the actor's own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InitLimits {
    pub(crate) deadline_ticks: u64,
    pub(crate) max_memory: usize,
    /// `Some` when the engine meters fuel.
    pub(crate) fuel: Option<u64>,
}

/// Compiles `bytes`, pre-initialised when `enabled` and possible.
///
/// Errors are compilation errors of the module itself, as text. A module
/// that compiles but cannot be pre-initialised is returned as is.
pub(crate) fn prepare(
    engine: &Engine,
    functions: &FunctionCache,
    bytes: &[u8],
    enabled: bool,
    limits: InitLimits,
) -> Result<Prepared, String> {
    let prepared = prepare_uncached(engine, bytes, enabled, limits);
    functions.clear();
    prepared
}

fn prepare_uncached(
    engine: &Engine,
    bytes: &[u8],
    enabled: bool,
    limits: InitLimits,
) -> Result<Prepared, String> {
    let plain = |module| Prepared {
        module,
        preinitialized: false,
    };
    let has_init = |module: &Module| INIT_EXPORTS.iter().any(|e| module.get_export(e).is_some());
    if !enabled {
        return compile(engine, bytes).map(plain);
    }
    let mut wizer = Wizer::new();
    // Wizer drops this export from the snapshot; instances skip the other
    // one (`Prepared::preinitialized`).
    wizer.init_func("wapc_init");
    let Ok((cx, instrumented)) = wizer.instrument(bytes) else {
        // Wizer refuses what it cannot snapshot (and invalid modules, whose
        // error is better told by the compiler).
        return compile(engine, bytes).map(plain);
    };
    let module = compile(engine, &instrumented)?;
    if !has_init(&module) {
        return Ok(plain(module));
    }
    let started = Instant::now();
    let Some((mut store, instance)) = initialise(engine, &module, limits) else {
        return Ok(plain(module));
    };
    let mut state = Snapshotting {
        store: &mut store,
        instance,
        mismatch: false,
    };
    let snapshot = block_on(wizer.snapshot(&cx, &mut state));
    let snapshot = match snapshot {
        Ok(snapshot) if !state.mismatch => snapshot,
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
            })
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot compile the pre-initialised module; initialising per instance");
            Ok(plain(module))
        }
    }
}

fn compile(engine: &Engine, bytes: &[u8]) -> Result<Module, String> {
    Module::new(engine, bytes).map_err(|e| format!("{e:#}"))
}

/// Instantiates `module` with trapping imports and runs its initialisation
/// exports. `None` if anything fails: the caller then initialises per
/// instance, where a genuine failure is reported with the actor's context.
fn initialise(
    engine: &Engine,
    module: &Module,
    limits: InitLimits,
) -> Option<(Store<MemoryLimiter>, Instance)> {
    let mut store = Store::new(
        engine,
        MemoryLimiter {
            max_memory: limits.max_memory,
            denied: false,
        },
    );
    store.limiter(|limiter| limiter);
    store.epoch_deadline_trap();
    store.set_epoch_deadline(limits.deadline_ticks);
    if let Some(fuel) = limits.fuel {
        store.set_fuel(fuel).ok()?;
    }
    let mut linker = Linker::new(engine);
    // Any host call during initialisation traps: its effect (output, a
    // capability's answer) belongs to each instance, not to a snapshot.
    linker.define_unknown_imports_as_traps(module).ok()?;
    let instance = linker.instantiate(&mut store, module).ok()?;
    for export in INIT_EXPORTS {
        if let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, export) {
            func.call(&mut store, ()).ok()?;
        }
    }
    Some((store, instance))
}

/// Wizer's view of the initialised instance.
struct Snapshotting<'a> {
    store: &'a mut Store<MemoryLimiter>,
    instance: Instance,
    /// Set if Wizer asked for something the instance does not have; the
    /// snapshot is then discarded rather than trusted.
    mismatch: bool,
}

impl InstanceState for Snapshotting<'_> {
    async fn global_get(&mut self, name: &str, _type_hint: ValType) -> SnapshotVal {
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
                self.mismatch = true;
                SnapshotVal::I32(0)
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
/// The snapshot module has exactly the instrumented module's code (only data
/// and global initialisers differ), so with this cache its compilation
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
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.map = HashMap::new();
        entries.bytes = 0;
    }
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.map.get(key).map(|v| Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let size = key.len() + value.len();
        if size > FUNCTION_CACHE_BYTES {
            return false;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
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
