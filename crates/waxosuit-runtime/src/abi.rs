//! The waPC host contract: import validation and the `wapc.*` host
//! functions (`__host_call` itself is in [`crate::host_call`], the state
//! they share in [`crate::state`]).
//!
//! Every pointer and length coming from the guest is untrusted. Violations
//! never panic and never trap the host: they are recorded as a [`Fault`] (which
//! fails the current call and retires the instance) and, where the contract
//! has an error channel (`__host_call`), reported to the guest as well.

use std::ops::Range;
use std::time::Instant;

use wasmtime::{Caller, ExternType, FuncType, Linker, Module, ValType};

use crate::MAX_GUEST_ERROR_BYTES;
use crate::console::{MAX_LINE_BYTES, MAX_LINES_PER_SECOND, Verdict};
use crate::host_call::{
    Driven, HostCallArgs, Unanswered, drive_inline, finish_host_call, on_guest_stack,
    read_host_call, within,
};
use crate::state::{Fault, HostState};
use crate::{ActorKey, HostCallHandler, RuntimeError};

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

/// Converts a guest `(ptr, len)` pair into a checked range of `memory`.
pub(crate) fn guest_range(memory_len: usize, ptr: i32, len: i32) -> Option<Range<usize>> {
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
            let op = guest_range(
                mem.len(),
                op_ptr,
                state.wapc.op.len().try_into().unwrap_or(-1),
            );
            let msg = guest_range(
                mem.len(),
                ptr,
                state.wapc.payload.len().try_into().unwrap_or(-1),
            );
            match (op, msg) {
                (Some(op), Some(msg)) => {
                    mem[op].copy_from_slice(&state.wapc.op);
                    mem[msg].copy_from_slice(&state.wapc.payload);
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
                Some(range) => state.wapc.guest_response = Some(mem[range].to_vec()),
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
            // The message ends up in logs, spans and error answers: only its
            // start is read and kept. The whole range is still checked, as
            // for every other pointer a guest passes: a length past its
            // payload limit or its memory is a fault, not a short message.
            let size = len.cast_unsigned() as usize;
            if !check_range(&mut caller, ptr, len, "__guest_error") {
                return;
            }
            let read = i32::try_from(size.min(MAX_GUEST_ERROR_BYTES)).unwrap_or(0);
            if let Some(mut text) = read_text(&mut caller, ptr, read, "__guest_error") {
                if size > MAX_GUEST_ERROR_BYTES {
                    // A character cut in two reads as U+FFFD: not kept.
                    text.truncate(text.trim_end_matches('\u{fffd}').len());
                    text.push_str(&format!("… [cut: {size} bytes in all]"));
                }
                caller.data_mut().wapc.guest_error = Some(text);
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
            i32::try_from(caller.data().wapc.host_response.len()).unwrap_or(0)
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_error_len",
        |caller: Caller<'_, HostState<H>>| -> i32 {
            i32::try_from(caller.data().wapc.host_error.len()).unwrap_or(0)
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_response",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32| {
            copy_out(
                &mut caller,
                ptr,
                |s| &s.wapc.host_response,
                "__host_response",
            );
        },
    )?;
    linker.func_wrap(
        WAPC,
        "__host_error",
        |mut caller: Caller<'_, HostState<H>>, ptr: i32| {
            copy_out(&mut caller, ptr, |s| &s.wapc.host_error, "__host_error");
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
                        // From here the call may have effects: it must not
                        // be run again from the start (see `GiveWay`).
                        caller.data_mut().progress.called_host |= prepared.is_ok();
                        // Borrowed, not cloned: the future is driven to
                        // completion (or dropped) before the state is
                        // touched again.
                        let state = caller.data();
                        let ident = &state.ident;
                        let end = state.progress.end;
                        let mut waited = false;
                        let outcome = match prepared {
                            Ok(call) => {
                                let (driven, had_to_wait) = drive_inline(
                                    ident,
                                    || ident.handler.host_call(&ident.key, call),
                                    end,
                                );
                                waited = had_to_wait;
                                match driven {
                                    Driven::Done(result) => Ok(result),
                                    Driven::CannotWait => Err(Unanswered::CannotWait),
                                    Driven::Deadline => {
                                        let state = caller.data_mut();
                                        state.progress.waited |= waited;
                                        return Err(state.deadline_in_host_call());
                                    }
                                }
                            }
                            Err(fault) => Err(Unanswered::Fault(fault)),
                        };
                        let state = caller.data_mut();
                        state.progress.waited |= waited;
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
                        Box::new(on_guest_stack(async move {
                            let outcome = match prepared {
                                Ok(call) => {
                                    let state = caller.data();
                                    let ident = &state.ident;
                                    let future = ident.handler.host_call(&ident.key, call);
                                    match within(future, &ident.clock, state.progress.end).await {
                                        Some(result) => Ok(result),
                                        None => return Err(caller.data_mut().deadline_in_host_call()),
                                    }
                                }
                                Err(fault) => Err(Unanswered::Fault(fault)),
                            };
                            Ok(finish_host_call(caller.data_mut(), outcome))
                        }))
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

/// Whether `ptr..ptr+len` is a payload the guest may pass (within its
/// payload limit) in its linear memory; records the fault otherwise.
fn check_range<H>(caller: &mut Caller<'_, HostState<H>>, ptr: i32, len: i32, func: &str) -> bool {
    let Some(memory) = caller.data().memory else {
        return false;
    };
    let (mem, state) = memory.data_and_store_mut(caller);
    let size = len.cast_unsigned() as usize;
    if size > state.max_payload {
        state.fault(Fault::PayloadTooLarge {
            what: "guest message",
            size,
        });
        return false;
    }
    if guest_range(mem.len(), ptr, len).is_none() {
        state.protocol_fault(format!(
            "{func} range {ptr:#x}+{size} is outside linear memory"
        ));
        return false;
    }
    true
}

/// Reads a UTF-8-ish message (lossy: it is only displayed) from the guest,
/// once [`check_range`] has accepted its range.
fn read_text<H>(
    caller: &mut Caller<'_, HostState<H>>,
    ptr: i32,
    len: i32,
    func: &str,
) -> Option<String> {
    if !check_range(caller, ptr, len, func) {
        return None;
    }
    let memory = caller.data().memory?;
    let mem = memory.data(&*caller);
    let range = guest_range(mem.len(), ptr, len)?;
    Some(String::from_utf8_lossy(&mem[range]).into_owned())
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
