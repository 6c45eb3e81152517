//! The stable C ABI between the Waxosuit host and native capability provider
//! plugins.
//!
//! Plugins are shared libraries built by any Rust compiler (or none): only
//! the `#[repr(C)]` types of this crate cross the boundary, never Rust
//! types, trait objects or allocations that the other side would free.
//!
//! # A guided tour
//!
//! * A plugin exports one symbol, [`ENTRY_SYMBOL`]
//!   (`waxosuit_provider_v1`), of type [`EntryPoint`]. The host calls it
//!   once per load with its [`HostTable`] and receives a pointer to the
//!   plugin's [`PluginTable`], which lives as long as the library stays
//!   loaded. Then: `describe`, `start`, any number of `bind_actor`,
//!   `handle_call`, `remove_actor` and `health` calls (from any thread,
//!   concurrently), `shutdown` once, and the library is unloaded.
//! * **Versioning.** Both tables start with `abi_version: u32`, and every
//!   future version keeps that field first, so either side can read the
//!   other's version before trusting anything else in the table. The host
//!   refuses a table whose version is not [`ABI_VERSION`]; a plugin that
//!   does not speak the host's version returns a null table.
//! * **Bytes in.** Inputs are [`Slice`]s borrowed for the duration of the
//!   call only; the callee copies what it keeps.
//! * **Bytes out.** Results are written to an [`OutBuf`] allocated by the
//!   callee. The caller must release it with the *callee's*
//!   `free_buffer` (the plugin's [`PluginTable::free_buffer`] for plugin
//!   results, the host's [`HostTable::free_buffer`] for callback results),
//!   because the two sides may use different allocators.
//! * **Status.** Every function returns [`STATUS_OK`] (the buffer holds the
//!   result), [`STATUS_ERROR`] (the buffer holds a JSON error, see
//!   [`PluginTable`]) or [`STATUS_PANIC`] (the buffer holds the UTF-8 panic
//!   message): panics are caught on the side where they happen and never
//!   unwind across the boundary.
//! * **Structured values** (bind requests, descriptors, health, errors) are
//!   JSON; call payloads stay opaque MessagePack bytes.
#![deny(missing_docs)]

use std::ffi::c_void;

/// The ABI version this crate describes.
pub const ABI_VERSION: u32 = 1;

/// The name of the one symbol a plugin exports (NUL-terminated for `dlsym`).
pub const ENTRY_SYMBOL: &[u8] = b"waxosuit_provider_v1\0";

/// Success: the output buffer holds the result (possibly empty).
pub const STATUS_OK: i32 = 0;
/// Failure: the output buffer holds a JSON error object.
pub const STATUS_ERROR: i32 = 1;
/// A panic was caught: the output buffer holds the UTF-8 panic message.
pub const STATUS_PANIC: i32 = 2;

/// Log levels for [`HostTable::log`].
pub mod level {
    /// Errors.
    pub const ERROR: u32 = 1;
    /// Warnings.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debugging detail.
    pub const DEBUG: u32 = 4;
}

/// Borrowed bytes: valid only during the call that receives them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    /// First byte; may be dangling (but non-null) or null when `len` is 0.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Slice {
    /// Borrows `bytes` as a slice descriptor.
    pub fn new(bytes: &[u8]) -> Slice {
        Slice {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }
}

/// Bytes owned by the side that wrote them; release them with that side's
/// `free_buffer`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OutBuf {
    /// First byte, or null for "nothing written".
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
}

impl OutBuf {
    /// An empty buffer for the callee to fill.
    pub const fn empty() -> OutBuf {
        OutBuf {
            ptr: std::ptr::null_mut(),
            len: 0,
        }
    }
}

impl Default for OutBuf {
    fn default() -> Self {
        OutBuf::empty()
    }
}

/// Host → plugin: calls `operation` on `actor` with a MessagePack payload.
/// The reply (or, with [`STATUS_ERROR`], a UTF-8 message) goes to `out`.
pub type DispatchFn = unsafe extern "C" fn(
    ctx: *const c_void,
    actor: Slice,
    operation: Slice,
    payload: Slice,
    out: *mut OutBuf,
) -> i32;

/// Writes a log line in the host's log at `level` (see [`level`]).
pub type LogFn = unsafe extern "C" fn(ctx: *const c_void, level: u32, message: Slice);

/// Releases a buffer the same side allocated.
pub type FreeFn = unsafe extern "C" fn(ptr: *mut u8, len: usize);

/// What the host offers a plugin. The plugin may copy it; `ctx` stays
/// valid until the plugin's `shutdown` has returned.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostTable {
    /// Must stay the first field in every version.
    pub abi_version: u32,
    /// Opaque host state passed back to every callback.
    pub ctx: *const c_void,
    /// Calls an actor bound to this plugin's capability.
    pub dispatch: DispatchFn,
    /// Logs through the host.
    pub log: LogFn,
    /// Releases buffers the host wrote (replies of `dispatch`).
    pub free_buffer: FreeFn,
}

/// A plugin function that only produces output.
pub type OutFn = unsafe extern "C" fn(out: *mut OutBuf) -> i32;

/// `bind_actor`: the input is a JSON bind request
/// `{"actor": "M…", "binding": "default", "values": {"K": "V"}}`.
pub type BindFn = unsafe extern "C" fn(request: Slice, out: *mut OutBuf) -> i32;

/// `remove_actor(actor, binding)`.
pub type RemoveFn = unsafe extern "C" fn(actor: Slice, binding: Slice, out: *mut OutBuf) -> i32;

/// `handle_call(actor, binding, operation, payload)`; the reply goes to `out`.
pub type CallFn = unsafe extern "C" fn(
    actor: Slice,
    binding: Slice,
    operation: Slice,
    payload: Slice,
    out: *mut OutBuf,
) -> i32;

/// What a plugin exports, behind [`ENTRY_SYMBOL`].
///
/// Every function writes to `out` only what the plugin allocated; on
/// [`STATUS_ERROR`] that is a JSON object
/// `{"kind": "not_bound" | "unknown_operation" | "bad_payload" | "config" |
/// "unavailable" | "backend" | "internal", "message": "…", …}` with the
/// fields of the matching `ProviderError` variant (`capid`, `actor`,
/// `binding`, `operation`, `key`, `reason`) when they apply.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginTable {
    /// Must stay the first field in every version.
    pub abi_version: u32,
    /// Writes the provider's JSON capability descriptor.
    pub describe: OutFn,
    /// Starts the provider (it may call the host back from now on).
    pub start: OutFn,
    /// Binds an actor with its configuration.
    pub bind_actor: BindFn,
    /// Removes an actor's binding.
    pub remove_actor: RemoveFn,
    /// Handles one call from an actor.
    pub handle_call: CallFn,
    /// Writes JSON health `{"healthy": true, "message": ""}`.
    pub health: OutFn,
    /// Stops the provider and everything it runs (threads, tasks); after it
    /// returns the host may unload the library.
    pub shutdown: OutFn,
    /// Releases buffers the plugin wrote.
    pub free_buffer: FreeFn,
}

/// The type of [`ENTRY_SYMBOL`]: receives the host's table (valid until
/// `shutdown` returns) and returns the plugin's (valid while loaded), or
/// null when the plugin cannot speak `host.abi_version`.
pub type EntryPoint = unsafe extern "C" fn(host: *const HostTable) -> *const PluginTable;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_first_field_of_both_tables() {
        assert_eq!(std::mem::offset_of!(PluginTable, abi_version), 0);
        assert_eq!(std::mem::offset_of!(HostTable, abi_version), 0);
    }

    #[test]
    fn entry_symbol_is_nul_terminated_and_versioned() {
        assert_eq!(ENTRY_SYMBOL.last(), Some(&0));
        let name = std::str::from_utf8(&ENTRY_SYMBOL[..ENTRY_SYMBOL.len() - 1]).unwrap();
        assert!(name.ends_with(&format!("_v{ABI_VERSION}")), "{name}");
    }
}
