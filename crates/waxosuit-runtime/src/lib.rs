//! Sandboxed [waPC] runtime for Waxosuit actors, on wasmtime.
//!
//! # Guided tour
//!
//! * A [`Runtime`] owns one wasmtime engine, a background thread that
//!   advances the engine epoch (that is how deadlines are enforced), the
//!   instance allocator (pooling when the host allows it) and the on-disk
//!   cache of compiled modules.
//! * [`Runtime::load`] turns module bytes into an [`Actor`]: a pool of ready
//!   instances of the module, all serving the same [`ActorKey`]. By default
//!   the module's initialisation runs once, at load, and every instance
//!   starts from its result (see *Performance*).
//! * [`Actor::call`] performs one waPC call (host → guest). While handling
//!   it the guest may call the host (`__host_call`); every such call goes to
//!   the single [`HostCallHandler`] the embedder supplied, as a [`HostCall`]
//!   (binding, namespace, operation, payload). The runtime knows nothing of
//!   capabilities: routing and authorisation are the handler's job.
//! * [`Actor::replace_module`] hot-swaps the module without failing calls.
//!
//! ```
//! use std::sync::Arc;
//! use waxosuit_runtime::{
//!     ActorKey, HostCall, HostCallError, HostCallHandler, Limits, Runtime, RuntimeConfig,
//! };
//!
//! /// Answers every host call with the payload reversed.
//! struct Reverse;
//!
//! impl HostCallHandler for Reverse {
//!     type Error = HostCallError;
//!
//!     async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
//!         Ok(call.payload.iter().rev().copied().collect())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A minimal waPC guest: `__guest_call` echoes its request payload.
//! let module = wat::parse_str(r#"(module
//!   (import "wapc" "__guest_request" (func $req (param i32 i32)))
//!   (import "wapc" "__guest_response" (func $resp (param i32 i32)))
//!   (memory (export "memory") 1)
//!   (func (export "__guest_call") (param $op_len i32) (param $len i32) (result i32)
//!     (call $req (i32.const 0) (i32.const 1024))
//!     (call $resp (i32.const 1024) (local.get $len))
//!     (i32.const 1)))"#)?;
//!
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let key = ActorKey::new("MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW")?;
//! let actor = runtime
//!     .load(key, &module, Limits::default(), Arc::new(Reverse))
//!     .await?;
//! assert_eq!(actor.call("echo", b"hello").await?, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Trust model
//!
//! The runtime is claims-agnostic: it does **not** verify signatures, claims
//! or the module hash against a JWT. Callers (the `waxosuit-claims` crate and
//! the host) verify the module first and then pass its bytes together with
//! the actor's identity, its 56-character `M…` module public key.
//!
//! The sandbox itself is enforced here: a module may import only the `wapc`
//! host functions below (no WASI, nothing else), with the right signatures,
//! or loading fails with [`RuntimeError::UnknownImport`]. Every pointer the
//! guest hands over is bounds-checked, and strings are validated as UTF-8;
//! violations fail the call with [`RuntimeError::GuestError`] and never
//! panic the host.
//!
//! # The waPC contract
//!
//! Imports (module `wapc`, all `i32`): `__host_call` (8 arguments
//! `bd_ptr, bd_len, ns_ptr, ns_len, op_ptr, op_len, ptr, len`, returning 1
//! or 0), `__host_response(ptr)`, `__host_response_len()`,
//! `__host_error(ptr)`, `__host_error_len()`, `__guest_request(op_ptr, ptr)`,
//! `__guest_response(ptr, len)`, `__guest_error(ptr, len)`,
//! `__console_log(ptr, len)`. Exports: `__guest_call(op_len, msg_len) -> i32`
//! and `memory`; `_start` and then `wapc_init` run once if exported: per
//! instance, or once at load when the module is pre-initialised, which
//! gives the same state. Older guests are accepted too: the 6-argument `__host_call`
//! (`ns, op, payload`; binding `"default"`) and the 4-argument one whose
//! operation is `"capid!Operation"` (namespace = `capid`).
//!
//! Result of a call: when `__guest_call` returns 0 the call fails with the
//! guest's `__guest_error` message (or "No error message set for call
//! failure"); otherwise it returns the `__guest_response` bytes, or fails
//! with the guest error, or "No error message OR response set for call
//! success". Only the first [`MAX_GUEST_ERROR_BYTES`] of a guest error are
//! read and kept.
//!
//! # Limits, failures and concurrency
//!
//! [`Limits`] bound each actor: linear memory, a per-call wall-clock
//! deadline, optional fuel, payload sizes, and the number of instances.
//! Exceeding one yields a typed [`RuntimeError`]; the instance is dropped and
//! replaced on demand, and the actor (and process) carry on. Instances are
//! single-threaded and pooled: up to `max_instances` calls of one actor run
//! concurrently, further calls queue for up to `queue_timeout`.
//!
//! The deadline bounds the whole call, from the moment it is made: waiting
//! for a free instance (a call that gets none fails with
//! [`RuntimeError::QueueTimeout`] at its deadline, or at `queue_timeout` if
//! that is shorter), guest code (stopped by epoch interruption), and host
//! calls: one still pending at the deadline is abandoned and the call fails
//! with [`RuntimeError::Deadline`] naming it, on fiber and inline
//! instances alike. The names a guest passes to `__host_call`
//! are bounded too ([`MAX_BINDING_NAME_LEN`], [`MAX_NAMESPACE_LEN`],
//! [`MAX_OPERATION_NAME_LEN`]); a longer one is a protocol fault
//! ([`RuntimeError::NameTooLong`]) reported to the guest as a host error.
//!
//! A [`HostCallHandler`] may await I/O. How the guest waits meanwhile
//! depends on the instance:
//!
//! * *Inline* instances ([`RuntimeConfig::inline_calls`], the default on a
//!   multi-threaded Tokio runtime) run the guest on the caller's stack and
//!   poll the handler's future in place: cheapest by far when it is ready
//!   at once, as in-memory capabilities are. The first time one is not,
//!   that call waits through Tokio's documented pair
//!   `tokio::task::block_in_place` (the worker's other tasks move to
//!   another thread first) and `Handle::block_on`, bounded by the call's
//!   deadline, and the actor switches to fiber instances for good
//!   ([`ActorStats::inline`]). A call that computes for long (50 ms)
//!   switches the actor too. It cannot yield: one that has made no host
//!   call yet is stopped and runs again from the start on a fiber instance;
//!   one that has (its effects may not be repeated) finishes on its thread,
//!   by its deadline at the latest, while the other workers steal the rest
//!   of that worker's queue (not the task in its LIFO slot, which waits).
//! * *Fiber* instances run the guest on its own wasmtime fiber, which is
//!   suspended while the handler awaits, so no thread blocks; long guests
//!   yield to the executor every 10 ms. On a current-thread runtime every
//!   instance is a fiber instance.
//!
//! A call made from inside a guest's host call (an actor calling another,
//! or a capability calling an actor while it answers one) always runs on a
//! fiber instance, whatever the actor's mode: inline, it would run on the
//! calling guest's stack, and wasmtime gives every store its whole
//! `max_wasm_stack` from where it is entered, so a chain of deep guests
//! would pass the end of the thread's stack and abort the process.
//!
//! Idle instances are kept per thread (a call reuses an instance its core
//! already has in cache), and the bound on live instances is shared. The
//! runtime must be used from within a Tokio runtime (compilation runs on the
//! blocking pool, queueing uses Tokio timers).
//!
//! # Performance
//!
//! Instances are created from a pre-linked `InstancePre` with copy-on-write
//! memory images, from the pooling allocator when its virtual-memory
//! reservation succeeds (see [`Runtime::allocator`]). Compiled modules are
//! cached on disk ([`RuntimeConfig::cache_dir`]) keyed by the module's
//! SHA-256 and the engine's configuration fingerprint, so a restart skips
//! compilation ([`CacheOutcome`]).
//!
//! *Pre-initialisation* ([`RuntimeConfig::preinitialize`], on by default):
//! at load the module is instrumented with Wizer, `_start`/`wapc_init` run
//! once under the actor's limits in a store whose imports all trap, and the
//! resulting memory and globals become the initial state of the module the
//! actor actually runs. A new instance is then just an instantiation from a
//! shared copy-on-write image: no guest code runs and no page is private
//! until a call writes one. A module whose initialisation calls the host
//! (logging, capabilities: effects that belong to each instance) or that
//! Wizer cannot snapshot is initialised per instance as before
//! ([`ActorStats::preinitialized`] says which). The cost is a second
//! compilation on a cache miss.
//!
//! # Cargo features
//!
//! None: the crate has a single configuration.
//!
//! [waPC]: https://wapc.io

#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod abi;
mod actor;
mod cache;
mod clock;
mod config;
pub mod console;
mod error;
mod host_call;
mod name;
mod pool;
mod runtime;
mod snapshot;
mod state;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use actor::{Actor, ActorStats};
pub use cache::CacheOutcome;
pub use config::{Limits, PoolingConfig, RuntimeConfig};
pub use error::{ErrorKind, PendingHostCall, RuntimeError, WaitBound, engine_text};
pub use name::Name;
pub use pool::thread_slot;
pub use runtime::{AllocatorKind, Runtime};

/// The most elements a guest's table may hold, created or grown: generous
/// for funcref tables (Rust guests need a few hundred entries), and a bound
/// whichever instance allocator is in use (the pooling allocator has its
/// own, the on-demand one none). Filters use it too.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The most of a guest's `__guest_error` message the host reads and keeps,
/// in bytes; a longer one is cut and says so (`… [cut: N bytes in all]`).
/// The message travels into log lines, trace spans and error answers, each
/// of which it would otherwise make as long as the actor's payload limit.
pub const MAX_GUEST_ERROR_BYTES: usize = 8 * 1024;

/// Longest binding name a guest may pass to `__host_call`, in bytes.
///
/// Binding names are short labels from a manifest (`default`, `orders`).
/// Like the other two name limits it is checked before the name is read,
/// so a guest cannot make the host copy, hash or log megabytes of "name":
/// a longer name is refused with a host error to the guest and
/// [`RuntimeError::NameTooLong`] for the call.
pub const MAX_BINDING_NAME_LEN: usize = 64;

/// Longest namespace a guest may pass to `__host_call`, in bytes: room for
/// a capability id (at most 128 characters under the claims rules) and for
/// a 56-character actor key. In the oldest ABI (`"capid!Operation"`) it
/// applies to the part before the `!`.
pub const MAX_NAMESPACE_LEN: usize = 128;

/// Longest operation name a guest may pass to `__host_call`, in bytes
/// (waSCC operations such as `HandleRequest` or `DeliverMessage` use a
/// fraction of it).
pub const MAX_OPERATION_NAME_LEN: usize = 64;

/// An actor's identity: its 56-character module public key (`M…`, nkeys
/// base32 encoding).
///
/// Only the shape is checked here; the key's signature over the module is
/// verified by the caller before loading.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorKey(Arc<str>);

impl ActorKey {
    /// Length of an nkeys public key.
    pub const LEN: usize = 56;

    /// Checks the shape of `key` (56 characters, `M` prefix, base32
    /// alphabet) and wraps it.
    ///
    /// # Errors
    ///
    /// [`RuntimeError::InvalidActorKey`] if the shape is wrong.
    pub fn new(key: impl Into<String>) -> Result<Self, RuntimeError> {
        let key = key.into();
        if Self::is_valid(&key) {
            Ok(Self(key.into()))
        } else {
            Err(RuntimeError::InvalidActorKey { key })
        }
    }

    /// Whether `text` has the shape [`ActorKey::new`] accepts: how callers
    /// tell an actor key from a capability id or a name without building
    /// one. Cheap for anything else (the length is checked first).
    pub fn is_valid(text: &str) -> bool {
        text.len() == Self::LEN
            && text.starts_with('M')
            && text
                .bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// A key is text with a checked shape: wherever text is expected, it is that
// text (hashing and ordering agree with `str`'s, so maps keyed by `String`
// can be searched with one).
impl std::ops::Deref for ActorKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ActorKey {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for ActorKey {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<String> for ActorKey {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl AsRef<str> for ActorKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ActorKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorKey({})", self.0)
    }
}

impl std::str::FromStr for ActorKey {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// One guest → host call (`__host_call`), already decoded and validated.
///
/// Names are [`Name`]s because guests reuse a handful of routes: short ones
/// are interned, so handing them out costs nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostCall {
    /// Named binding; `"default"` for guests on the older ABIs.
    pub binding: Name,
    /// Namespace: a capability id (e.g. `wascc:keyvalue`) or an actor key,
    /// by the embedder's convention.
    pub namespace: Name,
    /// Operation name.
    pub operation: Name,
    /// Opaque payload.
    pub payload: Vec<u8>,
}

impl HostCall {
    /// Builds a call, e.g. to exercise a [`HostCallHandler`] in tests.
    pub fn new(
        binding: impl Into<Name>,
        namespace: impl Into<Name>,
        operation: impl Into<Name>,
        payload: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            binding: binding.into(),
            namespace: namespace.into(),
            operation: operation.into(),
            payload: payload.into(),
        }
    }
}

/// The embedder's side of `__host_call`.
///
/// `Ok` bytes become the guest's host response (`__host_call` returns 1);
/// an `Err` becomes the guest's host error (it returns 0): the guest reads
/// the error's `Display` text, while the embedder keeps the typed value (and
/// its sources) for its own logs. The future may await I/O: the guest is
/// suspended meanwhile without blocking a thread. Responses are subject to
/// [`Limits::max_payload`].
pub trait HostCallHandler: Send + Sync + 'static {
    /// What a refused or failed host call carries. Its `Display` text is
    /// all the guest sees, so it must not hold anything the guest may not
    /// read. [`HostCallError`] serves handlers with nothing richer.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Handles one host call made by `actor`.
    fn host_call(
        &self,
        actor: &ActorKey,
        call: HostCall,
    ) -> impl Future<Output = Result<Vec<u8>, Self::Error>> + Send;
}

/// A host call refused with a message and nothing else: the error type of
/// handlers (tests, examples, benchmarks) that have no richer one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostCallError {
    message: String,
}

impl HostCallError {
    /// A refusal the guest reads as `message`.
    pub fn new(message: impl Into<String>) -> HostCallError {
        HostCallError {
            message: message.into(),
        }
    }

    /// The text the guest reads.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_call_new_fills_every_field() {
        let call = HostCall::new("default", "wascc:keyvalue", "Get", b"k".as_slice());
        assert_eq!(
            (
                &*call.binding,
                &*call.namespace,
                &*call.operation,
                call.payload.as_slice()
            ),
            ("default", "wascc:keyvalue", "Get", b"k".as_slice())
        );
    }

    #[test]
    fn actor_key_shape_is_checked() {
        let good = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW";
        assert_eq!(
            ActorKey::new(good).map(|k| k.to_string()).ok().as_deref(),
            Some(good)
        );
        for bad in [
            "",
            &good[1..],
            "NB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW",
            "Mb2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW",
            "M12ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW",
        ] {
            let err = ActorKey::new(bad).err().map(|e| e.kind());
            assert_eq!(err, Some(ErrorKind::InvalidActorKey), "{bad:?}");
            assert!(!ActorKey::is_valid(bad), "{bad:?}");
        }
        assert!(ActorKey::is_valid(good));
        // Where text is expected, a key is its text.
        let key = ActorKey::new(good).unwrap();
        let text = String::from(good);
        assert!(key == good && key == text && *key == *good);
        let by_text: std::collections::HashMap<String, u8> = [(good.to_string(), 1)].into();
        assert_eq!(by_text.get(key.as_ref()), Some(&1));
    }
}
