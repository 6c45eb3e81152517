//! # waxosuit-actor
//!
//! The Rust SDK for writing Waxosuit actors: signed WebAssembly modules that
//! answer operations from the host and reach the outside world only through
//! capability providers. Actors built with it speak the 2020 waPC guest ABI
//! and the waSCC MessagePack contracts, so they also run on waSCC-era hosts.
//!
//! ## A guided tour
//!
//! 1. **Register handlers.** [`actor!`] names a function that fills the
//!    [`Registry`]; it becomes the module's `wapc_init` export. Handlers are
//!    typed: [`Registry::on_http_request`], [`Registry::on_message`],
//!    [`Registry::on`] for any MessagePack request/response pair,
//!    [`Registry::on_raw`] for bytes. `HealthRequest` is answered for you.
//! 2. **Use capabilities through [`Ctx`].** Every handler receives a
//!    context with typed clients: [`Ctx::kv`], [`Ctx::msg`],
//!    [`Ctx::http_client`], [`Ctx::log`], [`Ctx::extras`], [`Ctx::blob`],
//!    [`Ctx::events`], [`Ctx::raw`] for custom capabilities and
//!    [`Ctx::actor`] for actor-to-actor calls. Each call is one waPC host
//!    call `(binding, namespace, operation, payload)`, checked by the host
//!    against the actor's signed claims.
//! 3. **Return errors.** One [`Error`] type; whatever a handler returns as
//!    `Err` reaches the host as the guest error text (its `Display`).
//! 4. **Test natively.** Everything above goes through one trait,
//!    [`HostCalls`]. On `wasm32` it is the waPC import table; under plain
//!    `cargo test` [`testing::FakeHost`] implements it in memory (a working
//!    key-value store, recorded messages and logs, scripted replies), and
//!    [`Registry::dispatch`] runs an operation by name.
//!
//! ```
//! use waxosuit_actor::{Ctx, Registry, Result, actor, http};
//!
//! actor! { on_init }
//!
//! fn on_init(actor: &mut Registry) {
//!     actor.on_http_request(greet);
//! }
//!
//! fn greet(ctx: &Ctx, req: http::Request) -> Result<http::Response> {
//!     ctx.log().info(&format!("{} {}", req.method, req.path))?;
//!     Ok(http::Response {
//!         body: b"hello\n".to_vec(),
//!         ..http::Response::ok()
//!     })
//! }
//!
//! // The same registry the host would drive, exercised natively:
//! let fake = waxosuit_actor::testing::FakeHost::new();
//! let registry = Registry::from_init(on_init);
//! let request = waxosuit_actor::testing::http_request("GET", "/", "");
//! let reply: http::Response = registry.invoke(&fake.ctx(), "HandleRequest", &request)?;
//! assert_eq!(reply.body, b"hello\n");
//! assert_eq!(fake.logs()[0].body, "GET /");
//! # Ok::<(), waxosuit_actor::Error>(())
//! ```
//!
//! ## The ABI, for the curious
//!
//! On `wasm32` the crate exports `__guest_call(op_len, msg_len) -> i32` and
//! imports from module `wapc` only: `__host_call` (8 arguments: binding,
//! namespace, operation, payload as pointer/length pairs), `__host_response`,
//! `__host_response_len`, `__host_error`, `__host_error_len`,
//! `__guest_request`, `__guest_response`, `__guest_error` and
//! `__console_log`. [`actor!`] adds the `wapc_init` export, which the host
//! calls once after instantiation. Build with `panic = "abort"`: a panic
//! then traps (after its message is sent to the console log).
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
// Examples in the docs are the first code readers copy; keep them warning-free.
#![doc(test(attr(deny(warnings))))]

#[cfg(target_arch = "wasm32")]
mod abi;
pub mod clients;
mod context;
mod error;
mod registry;
pub mod testing;

pub use context::{Ctx, DEFAULT_BINDING, HostCalls};
pub use error::{Error, Result};
pub use registry::Registry;
/// The contract types (`http::Request`, `messaging::BrokerMessage`, …), the
/// same crate the host uses.
pub use waxosuit_codec as codec;
pub use waxosuit_codec::http;

/// What most actors need, in one `use waxosuit_actor::prelude::*;`.
pub mod prelude {
    pub use crate::codec::core::HealthRequest;
    pub use crate::codec::messaging::BrokerMessage;
    pub use crate::{Ctx, Error, Registry, Result, actor, http};
}

/// Declares the actor: `actor! { on_init }` makes `on_init(&mut Registry)`
/// the registration function the host runs (as the `wapc_init` export)
/// before the first call.
///
/// On other targets nothing is exported; build the same registry in tests
/// with [`Registry::from_init`]. The generated export is `#[no_mangle]`,
/// which the `unsafe_code` lint counts as unsafe; the macro allows it
/// locally, so the calling crate may `deny` that lint but not `forbid` it.
#[macro_export]
macro_rules! actor {
    ($init:path $(,)?) => {
        // Type-checks the registration function on every target, so a
        // native `cargo test` catches a wrong signature too.
        const _: fn(&mut $crate::Registry) = $init;

        /// waPC start hook: registers this actor's handlers.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn wapc_init() {
            $crate::__private::init($init);
        }
    };
}

/// Support for [`actor!`]; not public API.
#[doc(hidden)]
pub mod __private {
    #[cfg(target_arch = "wasm32")]
    pub use crate::abi::init;
}
