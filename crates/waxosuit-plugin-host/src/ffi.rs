//! The host side of the C ABI: opening a library, checking its table, and
//! calling through it. Everything `unsafe` in this crate is here.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_plugin_abi::{
    ABI_VERSION, ENTRY_SYMBOL, EntryPoint, HostTable, OutBuf, PluginTable, STATUS_ERROR, STATUS_OK,
    STATUS_PANIC, Slice, level,
};
use waxosuit_plugin_sdk::wire::{WireBind, WireError, WireHealth};
use waxosuit_provider::{ActorDispatcher, BindRequest, Health, ProviderCall, ProviderError};

use crate::PluginError;

/// What the host's callbacks need; boxed so its address (the `ctx`) is stable.
pub(crate) struct HostCtx {
    pub(crate) capid: String,
    pub(crate) dispatcher: Option<Arc<dyn ActorDispatcher>>,
    pub(crate) handle: tokio::runtime::Handle,
}

/// A loaded plugin. Dropping it shuts the plugin down, unloads the library,
/// then frees the callback context, in that order.
pub(crate) struct Loaded {
    table: PluginTable,
    // Field order is drop order: the library goes before the context its
    // code may still reference, and the temporary file after both.
    library: Option<libloading::Library>,
    ctx: Box<HostCtx>,
    // Never read: it only has to stay at its address while the plugin may
    // still hold the pointer it received.
    _host_table: Box<HostTable>,
    _dir: tempfile::TempDir,
}

// SAFETY: the plugin table's functions are callable from any thread (ABI
// contract); the context is immutable after load and its fields are
// `Send + Sync`.
unsafe impl Send for Loaded {}
// SAFETY: as above; no method takes `&mut self`.
unsafe impl Sync for Loaded {}

impl Loaded {
    /// Opens `path`, calls its entry point and checks the ABI version.
    /// `dir` is the private temporary directory holding the file; it is
    /// deleted after the library is unloaded.
    pub(crate) fn open(
        path: &Path,
        ctx: HostCtx,
        dir: tempfile::TempDir,
    ) -> Result<Loaded, PluginError> {
        let capid = ctx.capid.clone();
        let ctx = Box::new(ctx);
        let host_table = Box::new(HostTable {
            abi_version: ABI_VERSION,
            ctx: std::ptr::from_ref::<HostCtx>(&*ctx).cast::<c_void>(),
            dispatch: host_dispatch,
            log: host_log,
            free_buffer: host_free,
        });
        // SAFETY: loading runs the library's initialisers. Archive libraries
        // were verified (signature, trusted issuer, hash) before reaching
        // here; unsigned ones only with the operator's explicit opt-in.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| PluginError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        // SAFETY: the symbol's type is fixed by the ABI (`EntryPoint`).
        let entry = unsafe { library.get::<EntryPoint>(ENTRY_SYMBOL) }.map_err(|e| {
            PluginError::NoEntryPoint {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        // SAFETY: `host_table` and `ctx` are boxed and live in the returned
        // `Loaded` until after the plugin's shutdown and unload.
        let table_ptr = unsafe { entry(&*host_table) };
        if table_ptr.is_null() {
            return Err(PluginError::RefusedHost {
                capid,
                version: ABI_VERSION,
            });
        }
        // SAFETY: every ABI version starts with `abi_version: u32`, so this
        // read is valid whatever version the plugin speaks.
        let version = unsafe { *table_ptr.cast::<u32>() };
        if version != ABI_VERSION {
            return Err(PluginError::AbiMismatch {
                path: path.display().to_string(),
                expected: ABI_VERSION,
                found: version,
            });
        }
        // SAFETY: same version, so the pointer is to a `PluginTable` that
        // stays valid while the library is loaded; we copy it.
        let table = unsafe { *table_ptr };
        Ok(Loaded {
            table,
            library: Some(library),
            ctx,
            _host_table: host_table,
            _dir: dir,
        })
    }

    /// Calls a plugin function and decodes its status and buffer.
    fn invoke(&self, f: impl FnOnce(*mut OutBuf) -> i32) -> Result<Vec<u8>, ProviderError> {
        let mut out = OutBuf::empty();
        let status = f(&mut out);
        let bytes = if out.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: the plugin wrote `out.len` bytes at `out.ptr`; we copy
            // them and release them once with the plugin's own free function.
            unsafe {
                let copy = std::slice::from_raw_parts(out.ptr, out.len).to_vec();
                (self.table.free_buffer)(out.ptr, out.len);
                copy
            }
        };
        let capid = &self.ctx.capid;
        match status {
            STATUS_OK => Ok(bytes),
            STATUS_ERROR => Err(match serde_json::from_slice::<WireError>(&bytes) {
                Ok(wire) => wire.into_provider_error(capid),
                Err(_) => ProviderError::Internal {
                    capid: capid.clone(),
                    message: String::from_utf8_lossy(&bytes).into_owned(),
                },
            }),
            STATUS_PANIC => Err(ProviderError::Internal {
                capid: capid.clone(),
                message: format!("the plugin panicked: {}", String::from_utf8_lossy(&bytes)),
            }),
            other => Err(ProviderError::Internal {
                capid: capid.clone(),
                message: format!("the plugin returned an unknown status {other}"),
            }),
        }
    }

    fn internal(&self, message: impl std::fmt::Display) -> ProviderError {
        ProviderError::Internal {
            capid: self.ctx.capid.clone(),
            message: message.to_string(),
        }
    }

    pub(crate) fn describe(&self) -> Result<CapabilityDescriptor, ProviderError> {
        // SAFETY: a function of the checked table; `out` is a local.
        let json = self.invoke(|out| unsafe { (self.table.describe)(out) })?;
        serde_json::from_slice(&json)
            .map_err(|e| self.internal(format!("bad descriptor JSON from the plugin: {e}")))
    }

    pub(crate) fn start(&self) -> Result<(), ProviderError> {
        // SAFETY: as in `describe`.
        self.invoke(|out| unsafe { (self.table.start)(out) })
            .map(drop)
    }

    pub(crate) fn bind(&self, request: BindRequest) -> Result<(), ProviderError> {
        let json = serde_json::to_vec(&WireBind::from(request))
            .map_err(|e| self.internal(format!("cannot encode the bind request: {e}")))?;
        // SAFETY: `json` outlives the call; `out` is a local.
        self.invoke(|out| unsafe { (self.table.bind_actor)(Slice::new(&json), out) })
            .map(drop)
    }

    pub(crate) fn remove(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        // SAFETY: the strings outlive the call; `out` is a local.
        self.invoke(|out| unsafe {
            (self.table.remove_actor)(
                Slice::new(actor.as_bytes()),
                Slice::new(binding.as_bytes()),
                out,
            )
        })
        .map(drop)
    }

    pub(crate) fn call(&self, call: &ProviderCall) -> Result<Vec<u8>, ProviderError> {
        // SAFETY: the call's fields outlive the call; `out` is a local.
        self.invoke(|out| unsafe {
            (self.table.handle_call)(
                Slice::new(call.actor.as_bytes()),
                Slice::new(call.binding.as_bytes()),
                Slice::new(call.operation.as_bytes()),
                Slice::new(&call.payload),
                out,
            )
        })
    }

    pub(crate) fn health(&self) -> Health {
        // SAFETY: as in `describe`.
        match self.invoke(|out| unsafe { (self.table.health)(out) }) {
            Ok(json) => match serde_json::from_slice::<WireHealth>(&json) {
                Ok(h) => h.into(),
                Err(e) => Health::unhealthy(format!("bad health JSON from the plugin: {e}")),
            },
            Err(e) => Health::unhealthy(e.to_string()),
        }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: as in `describe`; called once, before the library goes.
        if let Err(e) = self.invoke(|out| unsafe { (self.table.shutdown)(out) }) {
            tracing::warn!(capability = %self.ctx.capid, error = %e, "plugin shutdown failed");
        }
        if let Some(library) = self.library.take()
            && let Err(e) = library.close()
        {
            tracing::warn!(capability = %self.ctx.capid, error = %e, "cannot unload the plugin");
        }
    }
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
/// `out` must be null or valid for a write of one `OutBuf`.
unsafe fn give(out: *mut OutBuf, bytes: Vec<u8>) {
    if out.is_null() {
        return;
    }
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    let ptr = Box::into_raw(boxed).cast::<u8>();
    // SAFETY: per this function's contract.
    unsafe { out.write(OutBuf { ptr, len }) };
}

unsafe extern "C" fn host_dispatch(
    ctx: *const c_void,
    actor: Slice,
    operation: Slice,
    payload: Slice,
    out: *mut OutBuf,
) -> i32 {
    // A panic must not unwind into the plugin.
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `HostCtx` we handed out, alive until unload.
        let ctx = unsafe { &*ctx.cast::<HostCtx>() };
        // SAFETY: inputs are borrowed for this call per the ABI.
        let (actor, operation, payload) = unsafe {
            (
                String::from_utf8_lossy(bytes(actor)).into_owned(),
                String::from_utf8_lossy(bytes(operation)).into_owned(),
                bytes(payload).to_vec(),
            )
        };
        let dispatcher = ctx
            .dispatcher
            .clone()
            .ok_or_else(|| "the plugin was not started".to_string())?;
        // Plugin threads are not host runtime threads, so blocking here is
        // the way back into the host's async world.
        ctx.handle
            .block_on(dispatcher.dispatch(&actor, &operation, payload))
            .map_err(|e| e.to_string())
    }));
    let (status, reply) = match result {
        Ok(Ok(reply)) => (STATUS_OK, reply),
        Ok(Err(message)) => (STATUS_ERROR, message.into_bytes()),
        Err(_) => (
            STATUS_PANIC,
            b"the host panicked while dispatching".to_vec(),
        ),
    };
    // SAFETY: the plugin passes a valid `out` per the ABI.
    unsafe { give(out, reply) };
    status
}

unsafe extern "C" fn host_log(ctx: *const c_void, lvl: u32, message: Slice) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `HostCtx` we handed out, alive until unload.
        let ctx = unsafe { &*ctx.cast::<HostCtx>() };
        // SAFETY: borrowed for this call per the ABI.
        let text = String::from_utf8_lossy(unsafe { bytes(message) });
        let capid = &ctx.capid;
        match lvl {
            level::ERROR => tracing::error!(capability = %capid, "plugin: {text}"),
            level::WARN => tracing::warn!(capability = %capid, "plugin: {text}"),
            level::INFO => tracing::info!(capability = %capid, "plugin: {text}"),
            _ => tracing::debug!(capability = %capid, "plugin: {text}"),
        }
    }));
}

unsafe extern "C" fn host_free(ptr: *mut u8, len: usize) {
    if ptr.is_null() {
        return;
    }
    // SAFETY: `ptr`/`len` came from `give`, which leaked a boxed slice of
    // exactly this length; the plugin frees each buffer once.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}
