//! The plugin side of the C ABI. Everything `unsafe` in the SDK is here.
//!
//! State is kept in statics of the SDK: every plugin library links its own
//! copy of this crate, so the statics are per plugin.
#![allow(unsafe_code)]

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use waxosuit_plugin_abi::{
    ABI_VERSION, HostTable, OutBuf, PluginTable, STATUS_ERROR, STATUS_OK, STATUS_PANIC, Slice,
};
use waxosuit_provider::{
    ActorDispatcher, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
};

use crate::wire::{WireBind, WireError, WireHealth};

/// The provider and the runtime its futures run on.
struct Plugin {
    runtime: tokio::runtime::Runtime,
    provider: Arc<dyn CapabilityProvider>,
    capid: String,
}

/// The host's table, copied; raw pointers are not `Send`, but the ABI
/// contract makes `ctx` valid from any thread until `shutdown` returns.
#[derive(Clone, Copy)]
struct HostRef(HostTable);
// SAFETY: the host guarantees its callbacks and `ctx` may be used from any
// thread while the plugin is loaded (see `HostTable`).
unsafe impl Send for HostRef {}

static PLUGIN: Mutex<Option<Arc<Plugin>>> = Mutex::new(None);
static HOST: Mutex<Option<HostRef>> = Mutex::new(None);

/// How long `shutdown` waits for the plugin's tasks before the host may unload.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

static TABLE: PluginTable = PluginTable {
    abi_version: ABI_VERSION,
    describe,
    start,
    bind_actor,
    remove_actor,
    handle_call,
    health,
    shutdown,
    free_buffer,
};

/// The entry point behind [`export_provider!`](crate::export_provider).
///
/// # Safety
///
/// `host` must be null or point to a valid [`HostTable`] whose `ctx` stays
/// valid until `shutdown` returns.
pub unsafe fn entry(
    host: *const HostTable,
    make: fn() -> Arc<dyn CapabilityProvider>,
) -> *const PluginTable {
    if host.is_null() {
        return std::ptr::null();
    }
    // SAFETY: every ABI version starts with `abi_version: u32`, so reading
    // it is valid whatever version the host speaks.
    let version = unsafe { *host.cast::<u32>() };
    if version != ABI_VERSION {
        return std::ptr::null();
    }
    // SAFETY: same version, so `host` points to a `HostTable` of this layout.
    let table = unsafe { *host };
    *HOST.lock() = Some(HostRef(table));
    let built = catch_unwind(|| -> Result<Plugin, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("waxosuit-plugin")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build the plugin's tokio runtime: {e}"))?;
        // Constructors may look for a runtime (to spawn, or to grab a handle).
        let provider = {
            let _context = runtime.enter();
            make()
        };
        let capid = provider.descriptor().id;
        Ok(Plugin {
            runtime,
            provider,
            capid,
        })
    });
    match built {
        Ok(Ok(plugin)) => {
            *PLUGIN.lock() = Some(Arc::new(plugin));
            &TABLE
        }
        Ok(Err(message)) => {
            host_log(waxosuit_plugin_abi::level::ERROR, &message);
            *HOST.lock() = None;
            std::ptr::null()
        }
        Err(panic) => {
            let message = format!("the plugin's constructor panicked: {}", panic_text(&*panic));
            host_log(waxosuit_plugin_abi::level::ERROR, &message);
            *HOST.lock() = None;
            std::ptr::null()
        }
    }
}

pub(crate) fn host_log(level: u32, message: &str) {
    let Some(HostRef(host)) = *HOST.lock() else {
        return;
    };
    // SAFETY: the host table is valid while stored (cleared on shutdown);
    // the message is borrowed only for the call.
    unsafe { (host.log)(host.ctx, level, Slice::new(message.as_bytes())) }
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

fn current() -> Result<Arc<Plugin>, ProviderError> {
    PLUGIN
        .lock()
        .clone()
        .ok_or_else(|| ProviderError::Internal {
            capid: String::new(),
            message: "the plugin is not initialised or was shut down".to_string(),
        })
}

/// Hands `bytes` to the host; they come back through [`free_buffer`].
///
/// # Safety
///
/// `out` must be null or valid for a write of one `OutBuf`.
unsafe fn give(out: *mut OutBuf, bytes: Vec<u8>) {
    if out.is_null() {
        return;
    }
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    let ptr = Box::into_raw(boxed).cast::<u8>();
    // SAFETY: `out` is valid per this function's contract.
    unsafe { out.write(OutBuf { ptr, len }) };
}

/// Runs `f` with the plugin, catching panics, and writes its result.
///
/// # Safety
///
/// `out` must be null or valid for a write of one `OutBuf`.
unsafe fn guard(
    out: *mut OutBuf,
    f: impl FnOnce(&Plugin) -> Result<Vec<u8>, ProviderError>,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let plugin = current()?;
        f(&plugin)
    }));
    let (status, bytes) = match result {
        Ok(Ok(bytes)) => (STATUS_OK, bytes),
        Ok(Err(e)) => (
            STATUS_ERROR,
            serde_json::to_vec(&WireError::from(&e)).unwrap_or_else(|_| e.to_string().into_bytes()),
        ),
        Err(panic) => (STATUS_PANIC, panic_text(&*panic).into_bytes()),
    };
    // SAFETY: forwarded from this function's contract.
    unsafe { give(out, bytes) };
    status
}

/// # Safety
///
/// `s` must describe `s.len` readable bytes (or have `len == 0`).
unsafe fn bytes<'a>(s: Slice) -> &'a [u8] {
    if s.len == 0 || s.ptr.is_null() {
        return &[];
    }
    // SAFETY: per this function's contract.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

/// # Safety
///
/// As [`bytes`].
unsafe fn text(s: Slice, what: &str) -> Result<String, ProviderError> {
    // SAFETY: forwarded.
    let raw = unsafe { bytes(s) };
    String::from_utf8(raw.to_vec()).map_err(|_| ProviderError::Internal {
        capid: String::new(),
        message: format!("the host passed a {what} that is not UTF-8"),
    })
}

fn internal(capid: &str, message: impl std::fmt::Display) -> ProviderError {
    ProviderError::Internal {
        capid: capid.to_string(),
        message: message.to_string(),
    }
}

unsafe extern "C" fn describe(out: *mut OutBuf) -> i32 {
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe {
        guard(out, |p| {
            serde_json::to_vec(&p.provider.descriptor()).map_err(|e| internal(&p.capid, e))
        })
    }
}

unsafe extern "C" fn start(out: *mut OutBuf) -> i32 {
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe {
        guard(out, |p| {
            let dispatcher: Arc<dyn ActorDispatcher> = Arc::new(HostDispatcher);
            p.runtime.block_on(p.provider.start(dispatcher))?;
            Ok(Vec::new())
        })
    }
}

unsafe extern "C" fn bind_actor(request: Slice, out: *mut OutBuf) -> i32 {
    // SAFETY: `request` is borrowed for this call per the ABI.
    let raw = unsafe { bytes(request) }.to_vec();
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe {
        guard(out, |p| {
            let wire: WireBind = serde_json::from_slice(&raw)
                .map_err(|e| internal(&p.capid, format!("bad bind request JSON: {e}")))?;
            p.runtime.block_on(p.provider.bind_actor(wire.into()))?;
            Ok(Vec::new())
        })
    }
}

unsafe extern "C" fn remove_actor(actor: Slice, binding: Slice, out: *mut OutBuf) -> i32 {
    // SAFETY: inputs are borrowed for this call per the ABI.
    let args = unsafe { text(actor, "actor key").and_then(|a| Ok((a, text(binding, "binding")?))) };
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe {
        guard(out, |p| {
            let (actor, binding) = args?;
            p.runtime
                .block_on(p.provider.remove_actor(&actor, &binding))?;
            Ok(Vec::new())
        })
    }
}

unsafe extern "C" fn handle_call(
    actor: Slice,
    binding: Slice,
    operation: Slice,
    payload: Slice,
    out: *mut OutBuf,
) -> i32 {
    // SAFETY: inputs are borrowed for this call per the ABI.
    let call = unsafe {
        (|| {
            Ok::<_, ProviderError>(ProviderCall {
                actor: text(actor, "actor key")?,
                binding: text(binding, "binding")?,
                operation: text(operation, "operation")?,
                payload: bytes(payload).to_vec(),
            })
        })()
    };
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe { guard(out, |p| p.runtime.block_on(p.provider.handle_call(call?))) }
}

unsafe extern "C" fn health(out: *mut OutBuf) -> i32 {
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe {
        guard(out, |p| {
            let health = p.runtime.block_on(p.provider.health());
            serde_json::to_vec(&WireHealth::from(health)).map_err(|e| internal(&p.capid, e))
        })
    }
}

unsafe extern "C" fn shutdown(out: *mut OutBuf) -> i32 {
    // SAFETY: the host passes a valid `out` per the ABI.
    unsafe {
        guard(out, |_| {
            let Some(plugin) = PLUGIN.lock().take() else {
                return Ok(Vec::new());
            };
            plugin.runtime.block_on(plugin.provider.shutdown());
            // Stop worker threads before the host unloads our code; calls
            // still in flight keep their `Arc` and drop the runtime later.
            if let Ok(plugin) = Arc::try_unwrap(plugin) {
                drop(plugin.provider);
                plugin.runtime.shutdown_timeout(SHUTDOWN_GRACE);
            }
            *HOST.lock() = None;
            Ok(Vec::new())
        })
    }
}

unsafe extern "C" fn free_buffer(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr`/`len` came from `give`, which leaked a boxed slice of
    // exactly this length, and the host frees each buffer once.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}

/// Calls actors through the host's `dispatch` callback.
struct HostDispatcher;

#[async_trait]
impl ActorDispatcher for HostDispatcher {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let (actor, operation) = (actor.to_string(), operation.to_string());
        let (a, o) = (actor.clone(), operation.clone());
        // The callback blocks until the actor answers; keep it off the
        // plugin's async workers.
        tokio::task::spawn_blocking(move || call_host(&a, &o, &payload))
            .await
            .unwrap_or_else(|e| {
                Err(DispatchError::Actor {
                    actor,
                    operation,
                    message: format!("the dispatch thread failed: {e}"),
                })
            })
    }
}

fn call_host(actor: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>, DispatchError> {
    let Some(HostRef(host)) = *HOST.lock() else {
        return Err(DispatchError::ShuttingDown);
    };
    let mut out = OutBuf::empty();
    // SAFETY: the host table is valid until `shutdown`; inputs are borrowed
    // for the call; `out` is a local the host writes once.
    let status = unsafe {
        (host.dispatch)(
            host.ctx,
            Slice::new(actor.as_bytes()),
            Slice::new(operation.as_bytes()),
            Slice::new(payload),
            &mut out,
        )
    };
    let reply = if out.ptr.is_null() {
        Vec::new()
    } else {
        // SAFETY: the host wrote `out.len` bytes at `out.ptr`; we copy them
        // and release them once with the host's own free function.
        unsafe {
            let copy = std::slice::from_raw_parts(out.ptr, out.len).to_vec();
            (host.free_buffer)(out.ptr, out.len);
            copy
        }
    };
    if status == STATUS_OK {
        Ok(reply)
    } else {
        Err(DispatchError::Actor {
            actor: actor.to_string(),
            operation: operation.to_string(),
            message: String::from_utf8_lossy(&reply).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_round_trip_through_give_and_free() {
        let mut out = OutBuf::empty();
        // SAFETY: `out` is a local.
        unsafe { give(&mut out, b"hello".to_vec()) };
        assert_eq!(out.len, 5);
        // SAFETY: just written by `give`.
        let copy = unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec();
        assert_eq!(copy, b"hello");
        // SAFETY: freed once, with the matching length.
        unsafe { free_buffer(out.ptr, out.len) };
    }

    #[test]
    fn entry_refuses_a_null_host_table() {
        fn never() -> Arc<dyn CapabilityProvider> {
            unreachable!("must not construct a provider for a null host")
        }
        // SAFETY: null is allowed by the contract.
        assert!(unsafe { entry(std::ptr::null(), never) }.is_null());
    }

    #[test]
    fn calls_without_a_plugin_fail_instead_of_crashing() {
        let mut out = OutBuf::empty();
        // SAFETY: `out` is a local.
        let status = unsafe { health(&mut out) };
        assert_eq!(status, STATUS_ERROR);
        // SAFETY: written by `give`.
        let json = unsafe { std::slice::from_raw_parts(out.ptr, out.len) }.to_vec();
        unsafe { free_buffer(out.ptr, out.len) };
        let err: WireError = serde_json::from_slice(&json).unwrap();
        assert!(err.message.contains("not initialised"), "{}", err.message);
    }
}
