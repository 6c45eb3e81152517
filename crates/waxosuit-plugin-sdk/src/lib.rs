//! Build a native Waxosuit capability provider plugin from any
//! [`CapabilityProvider`](waxosuit_provider::CapabilityProvider).
//!
//! The same provider type can be registered in-process with
//! `Host::add_provider` or shipped as a plugin: the SDK adapts it to the
//! C ABI of [`waxosuit_plugin_abi`], so built-in and plugin providers share
//! their code.
//!
//! # A guided tour
//!
//! * [`export_provider!`] is all a plugin crate (`crate-type = ["cdylib"]`)
//!   writes: `export_provider!(MyProvider, MyProvider::new);` exports the
//!   `waxosuit_provider_v1` entry point.
//! * When the host calls that entry point (at the first binding, never
//!   earlier), the SDK builds a small multi-thread tokio runtime owned by the
//!   plugin and the provider, inside that runtime's context. Every exported
//!   function then blocks on the provider's future on that runtime; the host
//!   calls them from blocking threads.
//! * The [`ActorDispatcher`](waxosuit_provider::ActorDispatcher) given to
//!   `start` calls actors through the host's callback table, so a plugin
//!   calls actors exactly as a built-in provider does.
//! * Panics in the provider are caught at the boundary and reported to the
//!   host as `STATUS_PANIC`; the host turns them into
//!   `ProviderError::Internal`, and the plugin keeps serving.
//! * [`log`] writes to the host's log. [`wire`] holds the JSON shapes both
//!   sides exchange.
//!
//! ```
//! // plugins/acme-ping/src/lib.rs, with `crate-type = ["cdylib"]`
//! use async_trait::async_trait;
//! use waxosuit_codec::capabilities::CapabilityDescriptor;
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};
//!
//! pub struct Pinger;
//!
//! #[async_trait]
//! impl CapabilityProvider for Pinger {
//!     fn descriptor(&self) -> CapabilityDescriptor {
//!         CapabilityDescriptor::builder().id("acme:ping").name("Pinger").build()
//!     }
//!     async fn bind_actor(&self, _req: BindRequest) -> Result<(), ProviderError> {
//!         Ok(())
//!     }
//!     async fn remove_actor(&self, _actor: &str, _binding: &str) -> Result<(), ProviderError> {
//!         Ok(())
//!     }
//!     async fn handle_call(&self, _call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
//!         Ok(b"Pong".to_vec())
//!     }
//! }
//!
//! waxosuit_plugin_sdk::export_provider!(Pinger, || Pinger);
//! # fn main() {}
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod ffi;
pub mod wire;

pub use waxosuit_plugin_abi as abi;
pub use waxosuit_plugin_abi::level;

/// Writes `message` to the host's log at `level` (see [`level`]). Does
/// nothing when no host is attached (before load, after shutdown).
pub fn log(level: u32, message: &str) {
    ffi::host_log(level, message);
}

#[doc(hidden)]
pub mod __private {
    //! Used by [`export_provider!`](crate::export_provider); not an API.
    pub use crate::ffi::entry;
    pub use waxosuit_provider::CapabilityProvider;
}

/// Exports `$provider` (a type implementing
/// [`CapabilityProvider`](waxosuit_provider::CapabilityProvider)) as the
/// plugin's `waxosuit_provider_v1` entry point; `$ctor` is a function or
/// closure taking no arguments and returning the provider.
///
/// See the [crate docs](crate) for a complete plugin; the built-in
/// key-value store becomes a plugin with one line:
/// `export_provider!(MemoryKeyValue, MemoryKeyValue::new);`.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty, $ctor:expr) => {
        /// The plugin entry point of the Waxosuit plugin ABI.
        ///
        /// # Safety
        ///
        /// `host` must be null or point to a valid `HostTable` whose `ctx`
        /// stays valid until `shutdown` returns.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn waxosuit_provider_v1(
            host: *const $crate::abi::HostTable,
        ) -> *const $crate::abi::PluginTable {
            fn make() -> ::std::sync::Arc<dyn $crate::__private::CapabilityProvider> {
                let provider: $provider = ($ctor)();
                ::std::sync::Arc::new(provider)
            }
            // SAFETY: forwarded from this function's own contract.
            unsafe { $crate::__private::entry(host, make) }
        }
    };
}
