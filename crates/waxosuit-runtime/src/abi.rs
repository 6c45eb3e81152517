//! The waPC host contract: import validation, per-instance state and the
//! `wapc.*` host functions.
//!
//! Every pointer and length coming from the guest is untrusted. Violations
//! never panic and never trap the host: they are recorded as a [`Fault`] (which
//! fails the current call and retires the instance) and, where the contract
//! has an error channel (`__host_call`), reported to the guest as well.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::{Caller, ExternType, FuncType, Linker, Memory, Module, ResourceLimiter, ValType};

use crate::clock::EpochClock;
use crate::console::{MAX_LINE_BYTES, MAX_LINES_PER_SECOND, Verdict};
use crate::{
    ActorKey, HostCall, HostCallHandler, MAX_BINDING_NAME_LEN, MAX_NAMESPACE_LEN,
    MAX_OPERATION_NAME_LEN, Name, PendingHostCall, RuntimeError,
};

/// Import module of the waPC host contract.
pub(crate) const WAPC: &str = "wapc";

/// Which `__host_call` generation a module imports (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostCallAbi {
    /// `(bd_ptr, bd_len, ns_ptr, ns_len, op_ptr, op_len, ptr, len) -> i32`.
    Binding,
    /// `(ns_ptr, ns_len, op_ptr, op_len, ptr, len) -> i32`, binding `"default"`.
    Namespace,
    /// `(op_ptr, op_len, ptr, len) -> i32`, operation `"capid!Op"`.
    Route,
}

/// Identity shared by all instances of one actor.
pub(crate) struct Identity<H> {
    pub(crate) key: ActorKey,
    pub(crate) handler: Arc<H>,
    /// New instances are inline (no fiber; see
    /// [`RuntimeConfig::inline_calls`](crate::RuntimeConfig::inline_calls)).
    /// Here, not on the actor, so that the host function that finds it has
    /// to wait switches the actor at once, before other calls pick inline
    /// instances and block threads too.
    pub(crate) inline: std::sync::atomic::AtomicBool,
    /// The runtime's view of the engine epoch: a call's deadline is the
    /// tick it ends at, and a host call that has to wait may wait until then.
    pub(crate) clock: Arc<EpochClock>,
    /// Shared by every instance, so more instances do not mean more lines.
    pub(crate) console: crate::console::ConsoleBudget,
}

impl<H> Identity<H> {
    /// Makes new instances fiber instances from now on; idle inline ones
    /// are replaced as they come out of the pool.
    pub(crate) fn leave_inline(&self, why: &str) {
        if self
            .inline
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::debug!(actor = %self.key, why, "actor switches to fiber instances");
        }
    }
}

/// A contract violation or limit breach noticed inside a host function.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    Protocol(String),
    PayloadTooLarge {
        what: &'static str,
        size: usize,
    },
    /// A `__host_call` name longer than the ABI allows.
    NameTooLong {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    /// The call's deadline passed while this host call was pending; the
    /// host function trapped to stop the guest.
    HostCallDeadline(PendingHostCall),
}

/// Denies memory growth past the actor's limit and remembers that it did,
/// so the resulting trap is reported as `MemoryLimit`.
pub(crate) struct MemoryLimiter {
    pub(crate) max_memory: usize,
    pub(crate) denied: bool,
}

/// Generous bound for funcref tables (Rust guests need a few hundred entries).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// Per-instance waPC state (the wasmtime `Store` data).
pub(crate) struct HostState<H> {
    pub(crate) ident: Arc<Identity<H>>,
    /// The guest's exported memory, cached so host functions skip the export lookup.
    pub(crate) memory: Option<Memory>,
    pub(crate) max_payload: usize,
    /// Pending request; buffers are reused across calls.
    pub(crate) op: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) guest_response: Option<Vec<u8>>,
    pub(crate) guest_error: Option<String>,
    pub(crate) host_response: Vec<u8>,
    pub(crate) host_error: Vec<u8>,
    pub(crate) fault: Option<Fault>,
    pub(crate) limiter: MemoryLimiter,
    /// Epoch tick at which the guest started running the current call
    /// (how long an inline call has computed is counted from it).
    pub(crate) started: u64,
    /// Epoch tick at which the current call's deadline ends. Guest code is
    /// stopped there by epoch interruption; a pending host call is
    /// abandoned there.
    pub(crate) end: u64,
    /// An inline store had to wait: a host call was pending, or the guest
    /// ran for long. The actor then switches to fiber instances.
    pub(crate) waited: bool,
    names: NameCache,
}

impl<H> HostState<H> {
    /// The next slice (at most `max` ticks) the guest may run before the
    /// epoch callback runs again; `None` once the deadline has passed.
    ///
    /// Measured against the clock, not by adding up slices: time a fiber
    /// spent suspended in a host call counts against the deadline too.
    pub(crate) fn next_slice(&self, max: u64) -> Option<u64> {
        let now = self.ident.clock.now();
        (now < self.end).then(|| (self.end - now).min(max))
    }

    /// Records that the deadline passed while a host call was pending
    /// (the host call whose names the instance saw last) and returns the
    /// error that makes the host function trap, which stops the guest.
    fn deadline_in_host_call(&mut self) -> wasmtime::Error {
        let pending = self.names.pending();
        let text = format!("the call's deadline passed while waiting on host call {pending}");
        self.fault(Fault::HostCallDeadline(pending));
        wasmtime::Error::msg(text)
    }

    pub(crate) fn new(ident: Arc<Identity<H>>, max_payload: usize, max_memory: usize) -> Self {
        Self {
            ident,
            memory: None,
            max_payload,
            op: Vec::new(),
            payload: Vec::new(),
            guest_response: None,
            guest_error: None,
            host_response: Vec::new(),
            host_error: Vec::new(),
            fault: None,
            started: 0,
            end: 0,
            waited: false,
            limiter: MemoryLimiter {
                max_memory,
                denied: false,
            },
            names: NameCache::default(),
        }
    }

    /// Resets the per-call state and stores the request (step 1 of §1.4).
    pub(crate) fn begin_call(&mut self, op: &str, payload: &[u8]) {
        self.op.clear();
        self.op.extend_from_slice(op.as_bytes());
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        self.guest_response = None;
        self.guest_error = None;
        self.host_response.clear();
        self.host_error.clear();
        self.fault = None;
    }

    /// Drops large buffers so an idle instance does not pin a big payload.
    pub(crate) fn end_call(&mut self) {
        const KEEP: usize = 64 << 10;
        for buf in [
            &mut self.op,
            &mut self.payload,
            &mut self.host_response,
            &mut self.host_error,
        ] {
            buf.clear();
            if buf.capacity() > KEEP {
                buf.shrink_to(KEEP);
            }
        }
    }

    fn fault(&mut self, fault: Fault) {
        // The first fault is the cause; later ones are usually consequences.
        if self.fault.is_none() {
            self.fault = Some(fault);
        }
    }

    fn protocol_fault(&mut self, message: String) {
        self.fault(Fault::Protocol(message));
    }
}

/// Converts a guest `(ptr, len)` pair into a checked range of `memory`.
fn guest_range(memory_len: usize, ptr: i32, len: i32) -> Option<Range<usize>> {
    // wasm32 pointers and lengths are unsigned; the ABI passes them as i32.
    let start = ptr.cast_unsigned() as usize;
    let end = start.checked_add(len.cast_unsigned() as usize)?;
    (end <= memory_len).then_some(start..end)
}

fn func_shape(ty: &FuncType) -> Option<(usize, usize)> {
    let all_i32 = ty
        .params()
        .chain(ty.results())
        .all(|t| matches!(t, ValType::I32));
    all_i32.then(|| (ty.params().len(), ty.results().len()))
}

/// `(params, results)` of each contract function except `__host_call`.
const CONTRACT: &[(&str, usize, usize)] = &[
    ("__host_response", 1, 0),
    ("__host_response_len", 0, 1),
    ("__host_error", 1, 0),
    ("__host_error_len", 0, 1),
    ("__guest_request", 2, 0),
    ("__guest_response", 2, 0),
    ("__guest_error", 2, 0),
    ("__console_log", 2, 0),
];

fn describe(params: usize, results: usize) -> String {
    let list = |n: usize| vec!["i32"; n].join(", ");
    format!("({}) -> ({})", list(params), list(results))
}

/// Checks the module's imports and exports against the waPC contract.
pub(crate) fn check_module(module: &Module, actor: &ActorKey) -> Result<HostCallAbi, RuntimeError> {
    let mut abi = HostCallAbi::Binding;
    for import in module.imports() {
        let unknown = |detail: String| RuntimeError::UnknownImport {
            actor: actor.clone(),
            module: import.module().to_owned(),
            name: import.name().to_owned(),
            detail,
        };
        let ExternType::Func(ty) = import.ty() else {
            return Err(unknown(" (not a function)".to_owned()));
        };
        if import.module() != WAPC {
            return Err(unknown(String::new()));
        }
        let shape = func_shape(&ty);
        if import.name() == "__host_call" {
            abi = match shape {
                Some((8, 1)) => HostCallAbi::Binding,
                Some((6, 1)) => HostCallAbi::Namespace,
                Some((4, 1)) => HostCallAbi::Route,
                _ => {
                    return Err(unknown(format!(
                        " with signature {ty}, expected 8, 6 or 4 i32 parameters and an i32 result"
                    )));
                }
            };
            continue;
        }
        match CONTRACT.iter().find(|(name, ..)| *name == import.name()) {
            None => return Err(unknown(String::new())),
            Some(&(_, params, results)) if shape != Some((params, results)) => {
                return Err(unknown(format!(
                    " with signature {ty}, expected {}",
                    describe(params, results)
                )));
            }
            Some(_) => {}
        }
    }

    let load = |message: String| RuntimeError::Load {
        actor: actor.clone(),
        message,
    };
    match module.get_export("__guest_call") {
        Some(ExternType::Func(ty)) if func_shape(&ty) == Some((2, 1)) => {}
        Some(other) => {
            return Err(load(format!(
                "export \"__guest_call\" is {other:?}, expected a function (i32, i32) -> (i32)"
            )));
        }
        None => {
            return Err(load(
                "the module does not export \"__guest_call\"; it is not a waPC guest".to_owned(),
            ));
        }
    }
    if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
        return Err(load(
            "the module does not export its linear memory as \"memory\"".to_owned(),
        ));
    }
    for start in ["_start", "wapc_init"] {
        match module.get_export(start) {
            None => {}
            Some(ExternType::Func(ty)) if func_shape(&ty) == Some((0, 0)) => {}
            Some(_) => {
                return Err(load(format!(
                    "export \"{start}\" must be a function without parameters or results"
                )));
            }
        }
    }
    Ok(abi)
}

/// Defines the waPC host functions in `linker`, with the `__host_call`
/// generation the module imports. With `inline`, `__host_call` is a plain
/// host function that drives the handler's future in place (instances need
/// no fiber; see
/// [`RuntimeConfig::inline_calls`](crate::RuntimeConfig::inline_calls)),
/// otherwise an async one that suspends the guest while the handler waits.
pub(crate) fn define<H: HostCallHandler>(
    linker: &mut Linker<HostState<H>>,
    abi: HostCallAbi,
    inline: bool,
) -> wasmtime::Result<()> {
    linker.func_wrap(
        WAPC,
        "__guest_request",
        |mut caller: Caller<'_, HostState<H>>, op_ptr: i32, ptr: i32| {
            let Some(memory) = caller.data().memory else {
                return;
            };
            let (mem, state) = memory.data_and_store_mut(&mut caller);
            let op = guest_range(mem.len(), op_ptr, state.op.len().try_into().unwrap_or(-1));
            let msg = guest_range(mem.len(), ptr, state.payload.len().try_into().unwrap_or(-1));
            match (op, msg) {
                (Some(op), Some(msg)) => {
                    mem[op].copy_from_slice(&state.op);
                    mem[msg].copy_from_slice(&state.payload);
                }
                _ => state.protocol_fault(format!(
                    "__guest_request buffers (operation at {op_ptr:#x}, payload at {ptr:#x}) \
                     are outside linear memory"
                )),
            }
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__guest_response",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32, len: i32| {
            let Some(memory) = caller.data().memory else {
                return;
            };
            let (mem, state) = memory.data_and_store_mut(&mut caller);
            let size = len.cast_unsigned() as usize;
            if size > state.max_payload {
                state.fault(Fault::PayloadTooLarge {
                    what: "guest response",
                    size,
                });
                return;
            }
            match guest_range(mem.len(), ptr, len) {
                Some(range) => state.guest_response = Some(mem[range].to_vec()),
                None => state.protocol_fault(format!(
                    "__guest_response range {ptr:#x}+{size} is outside linear memory"
                )),
            }
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__guest_error",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32, len: i32| {
            if let Some(text) = read_text(&mut caller, ptr, len, "__guest_error") {
                caller.data_mut().guest_error = Some(text);
            }
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__console_log",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32, len: i32| {
            let dropped_before = match caller.data().ident.console.take(Instant::now()) {
                Verdict::Write { dropped_before } => dropped_before,
                // Not even read: a guest over its budget costs a lock and a
                // counter per call.
                Verdict::Drop => return,
            };
            let actor = &caller.data().ident.key;
            if dropped_before > 0 {
                tracing::warn!(
                    actor = %actor,
                    dropped = dropped_before,
                    "actor wrote more than {MAX_LINES_PER_SECOND} console lines in a second; \
                     the rest were dropped"
                );
            }
            let size = len.cast_unsigned() as usize;
            let cut = size > MAX_LINE_BYTES;
            // Only the part that is written is read (and checked against
            // memory), so a long line costs no more than a short one.
            let read = i32::try_from(size.min(MAX_LINE_BYTES)).unwrap_or(0);
            if let Some(text) = read_text(&mut caller, ptr, read, "__console_log") {
                let actor = &caller.data().ident.key;
                if cut {
                    tracing::info!(actor = %actor, "{text} [cut: {size} bytes in all]");
                } else {
                    tracing::info!(actor = %actor, "{text}");
                }
            }
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_response_len",
        |caller: Caller<'_, HostState<H>>| -> i32 {
            // Bounded by `max_payload`, which `Runtime::load` keeps below i32::MAX.
            i32::try_from(caller.data().host_response.len()).unwrap_or(0)
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_error_len",
        |caller: Caller<'_, HostState<H>>| -> i32 {
            i32::try_from(caller.data().host_error.len()).unwrap_or(0)
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_response",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32| {
            copy_out(&mut caller, ptr, |s| &s.host_response, "__host_response");
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_error",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32| {
            copy_out(&mut caller, ptr, |s| &s.host_error, "__host_error");
        },
    )?;

    // One closure per ABI generation, each in an async flavour (the guest
    // is suspended on a fiber while the handler awaits) and an in-place one
    // (the handler's future is driven on the calling thread; see
    // `RuntimeConfig::inline_calls`).
    macro_rules! host_call_fn {
        ($($arg:ident),* => $args:expr) => {
            if inline {
                linker.func_wrap(
                    WAPC,
                    "__host_call",
                    |mut caller: Caller<'_, HostState<H>>, $($arg: i32),*| -> wasmtime::Result<i32> {
                        let args: HostCallArgs = $args;
                        let prepared = read_host_call(&mut caller, &args);
                        // Borrowed, not cloned: the future is driven to
                        // completion (or dropped) before the state is
                        // touched again.
                        let state = caller.data();
                        let ident = &state.ident;
                        let end = state.end;
                        let mut waited = false;
                        let outcome = match prepared {
                            Ok(call) => {
                                let future = ident.handler.host_call(&ident.key, call);
                                let (driven, had_to_wait) = drive_inline(ident, future, end);
                                waited = had_to_wait;
                                match driven {
                                    Some(result) => Ok(result),
                                    None => {
                                        let state = caller.data_mut();
                                        state.waited |= waited;
                                        return Err(state.deadline_in_host_call());
                                    }
                                }
                            }
                            Err(fault) => Err(fault),
                        };
                        let state = caller.data_mut();
                        state.waited |= waited;
                        Ok(finish_host_call(state, outcome))
                    },
                )?
            } else {
                linker.func_wrap_async(
                    WAPC,
                    "__host_call",
                    |mut caller: Caller<'_, HostState<H>>, ($($arg,)*): ($(host_call_fn!(@i32 $arg),)*)| {
                        let args: HostCallArgs = $args;
                        let prepared = read_host_call(&mut caller, &args);
                        Box::new(async move {
                            let outcome = match prepared {
                                Ok(call) => {
                                    let state = caller.data();
                                    let ident = &state.ident;
                                    let future = ident.handler.host_call(&ident.key, call);
                                    match within(future, &ident.clock, state.end).await {
                                        Some(result) => Ok(result),
                                        None => return Err(caller.data_mut().deadline_in_host_call()),
                                    }
                                }
                                Err(fault) => Err(fault),
                            };
                            Ok(finish_host_call(caller.data_mut(), outcome))
                        })
                    },
                )?
            }
        };
        (@i32 $arg:ident) => { i32 };
    }
    match abi {
        HostCallAbi::Binding => {
            host_call_fn!(bd_ptr, bd_len, ns_ptr, ns_len, op_ptr, op_len, ptr, len => HostCallArgs {
                binding: Some((bd_ptr, bd_len)),
                namespace: Some((ns_ptr, ns_len)),
                operation: (op_ptr, op_len),
                payload: (ptr, len),
            })
        }
        HostCallAbi::Namespace => {
            host_call_fn!(ns_ptr, ns_len, op_ptr, op_len, ptr, len => HostCallArgs {
                binding: None,
                namespace: Some((ns_ptr, ns_len)),
                operation: (op_ptr, op_len),
                payload: (ptr, len),
            })
        }
        HostCallAbi::Route => host_call_fn!(op_ptr, op_len, ptr, len => HostCallArgs {
            binding: None,
            namespace: None,
            operation: (op_ptr, op_len),
            payload: (ptr, len),
        }),
    };
    Ok(())
}

/// Reads a UTF-8-ish message (lossy: it is only displayed) from the guest.
fn read_text<H>(
    caller: &mut Caller<'_, HostState<H>>,
    ptr: i32,
    len: i32,
    func: &str,
) -> Option<String> {
    let memory = caller.data().memory?;
    let (mem, state) = memory.data_and_store_mut(caller);
    let size = len.cast_unsigned() as usize;
    if size > state.max_payload {
        state.fault(Fault::PayloadTooLarge {
            what: "guest message",
            size,
        });
        return None;
    }
    match guest_range(mem.len(), ptr, len) {
        Some(range) => Some(String::from_utf8_lossy(&mem[range]).into_owned()),
        None => {
            state.protocol_fault(format!(
                "{func} range {ptr:#x}+{size} is outside linear memory"
            ));
            None
        }
    }
}

fn copy_out<H>(
    caller: &mut Caller<'_, HostState<H>>,
    ptr: i32,
    source: impl Fn(&HostState<H>) -> &Vec<u8>,
    func: &str,
) {
    let Some(memory) = caller.data().memory else {
        return;
    };
    let (mem, state) = memory.data_and_store_mut(caller);
    let bytes = source(state);
    let len = bytes.len().try_into().unwrap_or(-1);
    match guest_range(mem.len(), ptr, len) {
        Some(range) => mem[range].copy_from_slice(bytes),
        None => {
            let size = bytes.len();
            state.protocol_fault(format!(
                "{func} buffer {ptr:#x}+{size} is outside linear memory"
            ));
        }
    }
}

struct HostCallArgs {
    binding: Option<(i32, i32)>,
    namespace: Option<(i32, i32)>,
    operation: (i32, i32),
    payload: (i32, i32),
}

/// Reads and validates the arguments of `__host_call`, or explains why not.
fn read_host_call<H>(
    caller: &mut Caller<'_, HostState<H>>,
    args: &HostCallArgs,
) -> Result<HostCall, Fault> {
    let Some(memory) = caller.data().memory else {
        return Err(Fault::Protocol(
            "__host_call before memory is available".into(),
        ));
    };
    let (mem, state) = memory.data_and_store_mut(caller);
    let max_payload = state.max_payload;
    let names = &mut state.names;
    let name = |(ptr, len): (i32, i32), what: &'static str, limit: usize| -> Result<&[u8], Fault> {
        let size = len.cast_unsigned() as usize;
        // Checked before anything is read: a name is a short label, and a
        // guest must not make the host copy, compare or hash megabytes of it.
        if size > limit {
            return Err(Fault::NameTooLong { what, size, limit });
        }
        let range = guest_range(mem.len(), ptr, len).ok_or_else(|| {
            Fault::Protocol(format!(
                "__host_call {what} range {ptr:#x}+{size} is outside linear memory"
            ))
        })?;
        Ok(&mem[range])
    };
    let (binding, namespace, operation) = match (args.binding, args.namespace) {
        (Some(bd), Some(ns)) => (
            names
                .binding
                .get(name(bd, "binding", MAX_BINDING_NAME_LEN)?, "binding")?,
            names
                .namespace
                .get(name(ns, "namespace", MAX_NAMESPACE_LEN)?, "namespace")?,
            names.operation.get(
                name(args.operation, "operation", MAX_OPERATION_NAME_LEN)?,
                "operation",
            )?,
        ),
        (None, Some(ns)) => (
            names.binding.get(b"default", "binding")?,
            names
                .namespace
                .get(name(ns, "namespace", MAX_NAMESPACE_LEN)?, "namespace")?,
            names.operation.get(
                name(args.operation, "operation", MAX_OPERATION_NAME_LEN)?,
                "operation",
            )?,
        ),
        (_, None) => {
            // waPC v0 routes with "capid!Op" in the operation: bounded as a
            // whole first, then each part by its own limit.
            let route = name(
                args.operation,
                "operation",
                MAX_NAMESPACE_LEN + 1 + MAX_OPERATION_NAME_LEN,
            )?;
            let Some(split) = route.iter().position(|&b| b == b'!') else {
                return Err(Fault::Protocol(format!(
                    "legacy __host_call operation {:?} is not of the form \"capid!Operation\"",
                    String::from_utf8_lossy(route)
                )));
            };
            let (namespace, op) = (&route[..split], &route[split + 1..]);
            for (what, part, limit) in [
                ("namespace", namespace, MAX_NAMESPACE_LEN),
                ("operation", op, MAX_OPERATION_NAME_LEN),
            ] {
                if part.len() > limit {
                    return Err(Fault::NameTooLong {
                        what,
                        size: part.len(),
                        limit,
                    });
                }
            }
            (
                names.binding.get(b"default", "binding")?,
                names.namespace.get(namespace, "namespace")?,
                names.operation.get(op, "operation")?,
            )
        }
    };
    let (ptr, len) = args.payload;
    let size = len.cast_unsigned() as usize;
    if size > max_payload {
        return Err(Fault::PayloadTooLarge {
            what: "host call payload",
            size,
        });
    }
    let range = guest_range(mem.len(), ptr, len).ok_or_else(|| {
        Fault::Protocol(format!(
            "__host_call payload range {ptr:#x}+{size} is outside linear memory"
        ))
    })?;
    Ok(HostCall {
        binding,
        namespace,
        operation,
        payload: mem[range].to_vec(),
    })
}

/// The last binding, namespace and operation names this instance used.
///
/// Guests call the same few routes over and over; reusing the shared string
/// saves three allocations per host call.
#[derive(Default)]
pub(crate) struct NameCache {
    binding: CachedName,
    namespace: CachedName,
    operation: CachedName,
}

impl NameCache {
    /// The names of the host call being made (the last ones read).
    fn pending(&self) -> PendingHostCall {
        let name = |cached: &CachedName| cached.0.clone().unwrap_or_else(|| Name::new(""));
        PendingHostCall {
            binding: name(&self.binding),
            namespace: name(&self.namespace),
            operation: name(&self.operation),
        }
    }
}

#[derive(Default)]
struct CachedName(Option<Name>);

impl CachedName {
    // Inlined: returned through memory, the result was reread with wider
    // loads than it was written with, which stalls (store forwarding).
    #[inline(always)]
    fn get(&mut self, bytes: &[u8], what: &str) -> Result<Name, Fault> {
        if let Some(name) = &self.0
            && name.as_bytes() == bytes
        {
            return Ok(name.clone());
        }
        let name =
            Name::new(std::str::from_utf8(bytes).map_err(|e| {
                Fault::Protocol(format!("__host_call {what} is not valid UTF-8: {e}"))
            })?);
        self.0 = Some(name.clone());
        Ok(name)
    }
}

/// The host error a guest sees for a refused host call.
fn fault_text(fault: &Fault) -> String {
    match fault {
        Fault::Protocol(message) => message.clone(),
        Fault::PayloadTooLarge { what, size } => {
            format!("{what} of {size} bytes exceeds the payload limit")
        }
        Fault::NameTooLong { what, size, limit } => format!(
            "__host_call {what} name of {size} bytes exceeds the {limit}-byte limit for {what} \
             names (binding {MAX_BINDING_NAME_LEN}, namespace {MAX_NAMESPACE_LEN}, operation \
             {MAX_OPERATION_NAME_LEN} bytes)"
        ),
        Fault::HostCallDeadline(pending) => {
            format!("the call's deadline passed while waiting on host call {pending}")
        }
    }
}

/// Stores the outcome of a host call in the state and returns the
/// `__host_call` result code (1 = response, 0 = error).
fn finish_host_call<H>(
    state: &mut HostState<H>,
    outcome: Result<Result<Vec<u8>, String>, Fault>,
) -> i32 {
    state.host_response.clear();
    state.host_error.clear();
    match outcome {
        Ok(Ok(response)) if response.len() > state.max_payload => {
            let fault = Fault::PayloadTooLarge {
                what: "host response",
                size: response.len(),
            };
            state.host_error = fault_text(&fault).into_bytes();
            state.fault(fault);
            0
        }
        Ok(Ok(response)) => {
            state.host_response = response;
            1
        }
        Ok(Err(message)) => {
            state.host_error = message.into_bytes();
            0
        }
        Err(fault) => {
            state.host_error = fault_text(&fault).into_bytes();
            state.fault(fault);
            0
        }
    }
}

/// The flavour of the Tokio runtime this thread runs in, if any.
pub(crate) fn current_flavor() -> Option<tokio::runtime::RuntimeFlavor> {
    tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.runtime_flavor())
}

/// Drives a host call's future in place for an inline instance: at once if
/// it is ready on the first poll (the point of inline instances), otherwise
/// by blocking this thread, through `block_in_place` so that a Tokio worker
/// hands its other tasks to another thread first. Also says whether it had
/// to wait.
///
/// Waiting switches the actor to fiber instances at once, and lasts at most
/// until tick `end` (the call's deadline): `None` then, and the host call
/// is abandoned.
fn drive_inline<H, F: Future<Output = Result<Vec<u8>, String>>>(
    ident: &Identity<H>,
    future: F,
    end: u64,
) -> (Option<Result<Vec<u8>, String>>, bool) {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
        return (Some(output), false);
    }
    (wait_inline(ident, future, end), true)
}

/// The slow path of [`drive_inline`]: the host call has to wait. Kept out
/// of line so the fast path above stays as small as it is hot.
#[cold]
#[inline(never)]
fn wait_inline<H, F: Future<Output = Result<Vec<u8>, String>>>(
    ident: &Identity<H>,
    future: std::pin::Pin<&mut F>,
    end: u64,
) -> Option<Result<Vec<u8>, String>> {
    ident.leave_inline("a host call had to wait");
    if current_flavor() == Some(tokio::runtime::RuntimeFlavor::CurrentThread) {
        // Parking the only thread of this runtime would stop the very I/O
        // the future waits for. Inline instances are only made on
        // multi-threaded runtimes; this is an actor moved to another one.
        return Some(Err(
            "the host call had to wait, but the actor runs inline on a current-thread Tokio \
             runtime, where waiting would deadlock; load and call it on a multi-threaded \
             runtime, or turn RuntimeConfig::inline_calls off"
                .to_owned(),
        ));
    }
    // Worked out only now that the call has to wait: the fast path reads
    // no clock.
    let patience = ident.clock.until(end);
    // Tokio's documented way to wait for a future from synchronous code on
    // a worker: `block_in_place` hands the worker's other tasks to another
    // thread, and `Handle::block_on` drives the future (its I/O and timers
    // run on the runtime's drivers as usual).
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(tokio::time::timeout(patience, future)).ok())
}

/// Awaits a host call's future on a fiber for at most until tick `end` (the
/// call's deadline); `None` if it is still pending then (the future is
/// dropped, which abandons the host call).
///
/// The timer is created only if the future is pending on its first poll:
/// host calls answered at once (in-memory capabilities) pay for no timer.
async fn within<F: Future>(future: F, clock: &EpochClock, end: u64) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut timer = std::pin::pin!(None::<tokio::time::Sleep>);
    std::future::poll_fn(|cx| {
        // The deadline first: a host call that completes only as the
        // deadline passes (say, an actor's call to itself that gave up at
        // the same tick) is abandoned, as it would be a moment later.
        if let Some(Poll::Ready(())) = timer.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
            return Poll::Ready(None);
        }
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        if timer.is_none() {
            timer.set(Some(tokio::time::sleep(clock.until(end))));
            if let Some(Poll::Ready(())) = timer.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx)) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

/// Longest [`hand_off_worker`] waits for another worker to take over.
const HAND_OFF_PATIENCE: Duration = Duration::from_millis(100);

/// Called once when an inline guest has been computing for long: it cannot
/// yield, so the Tokio worker running it gives its queued tasks (including
/// the one in its LIFO slot, which others cannot steal) to a new worker
/// thread, and the guest finishes on this one. `block_in_place` starts that
/// thread but takes the queue back if the thread has not started by the
/// time the closure returns; so the closure waits until a probe task has
/// run elsewhere (proof that another worker serves the queue), for at most
/// [`HAND_OFF_PATIENCE`]. That happens once per long call, which already
/// took tens of milliseconds.
pub(crate) fn hand_off_worker() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return;
    }
    tokio::task::block_in_place(|| {
        let (ran, probe) = std::sync::mpsc::channel();
        handle.spawn(async move {
            // The receiver may have given up already; nothing to do then.
            let _ = ran.send(());
        });
        let _ = probe.recv_timeout(HAND_OFF_PATIENCE);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_range_rejects_overflow_and_out_of_bounds() {
        assert_eq!(guest_range(100, 0, 100), Some(0..100));
        assert_eq!(guest_range(100, 10, 0), Some(10..10));
        assert_eq!(guest_range(100, 1, 100), None);
        assert_eq!(guest_range(100, -1, 2), None);
        assert_eq!(
            guest_range(usize::MAX, -1, -1),
            Some(0xffff_ffff..0x1_ffff_fffe)
        );
    }

    #[test]
    fn describe_lists_i32s() {
        assert_eq!(describe(2, 0), "(i32, i32) -> ()");
        assert_eq!(describe(0, 1), "() -> (i32)");
    }
}
