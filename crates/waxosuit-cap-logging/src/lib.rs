//! The `wascc:logging` provider of Waxosuit: actors' log lines as `tracing`
//! events.
//!
//! Actors cannot write to the host's output themselves; the waSCC SDKs
//! send each log record as a `WriteLog` call instead. This provider turns
//! each one into a [`tracing`] event, so actor output lands wherever the
//! host's subscriber sends everything else, filtered the same way.
//!
//! # A guided tour
//!
//! * [`LoggingProvider::new`] builds the provider; register it with the host
//!   like any [`CapabilityProvider`].
//! * [`bind_actor`](CapabilityProvider::bind_actor) remembers the actor's
//!   name from the `__wascc_name` value the host adds from its claims;
//!   calls from actors without a binding fail with
//!   [`ProviderError::NotBound`].
//! * `WriteLog` ([`waxosuit_codec::logging::OP_LOG`]) emits one event with
//!   target [`TARGET`] at the request's level (1 error, 2 warn, 3 info,
//!   4 debug, 5 trace) carrying the fields `actor` (the actor's public key),
//!   `actor_name` (empty when the claims carry none), `binding`, and the
//!   body as the event's message. Any other level is refused with
//!   [`ProviderError::BadPayload`] rather than silently dropped or
//!   promoted, so a broken SDK shows up at its caller. The reply is empty.
//!
//! Select actor output with a filter on the target, e.g.
//! `RUST_LOG=waxosuit::actor=debug`.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_logging::LoggingProvider;
//! use waxosuit_codec::logging::{CAPABILITY_ID, LEVEL_INFO, OP_LOG, WriteLogRequest};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let logging = LoggingProvider::new();
//! logging
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([("__wascc_name".into(), "Greeter".into())]),
//!     })
//!     .await?;
//! let request = WriteLogRequest { level: LEVEL_INFO, body: "hello".into() };
//! let reply = logging
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_LOG.into(),
//!         payload: encode(CAPABILITY_ID, &request)?,
//!     })
//!     .await?;
//! assert!(reply.is_empty());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use async_trait::async_trait;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::core::CONFIG_WASCC_CLAIMS_NAME;
use waxosuit_codec::logging::{
    CAPABILITY_ID, LEVEL_DEBUG, LEVEL_ERROR, LEVEL_INFO, LEVEL_TRACE, LEVEL_WARN, OP_LOG,
    WriteLogRequest,
};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, decode};

/// The `tracing` target of every actor log event.
pub const TARGET: &str = "waxosuit::actor";

/// Actor names by actor key, then by binding.
type Names = HashMap<String, HashMap<String, String>>;

/// The `wascc:logging` provider. See the [crate docs](crate).
#[derive(Debug, Default)]
pub struct LoggingProvider {
    names: RwLock<Names>,
}

impl LoggingProvider {
    /// A provider with no bindings.
    pub fn new() -> Self {
        Self::default()
    }
}

// The map is only ever replaced entry by entry, so it is consistent even if
// a holder panicked; logging must not stop for the rest of the host's life.
fn read(names: &RwLock<Names>) -> std::sync::RwLockReadGuard<'_, Names> {
    names.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(names: &RwLock<Names>) -> std::sync::RwLockWriteGuard<'_, Names> {
    names.write().unwrap_or_else(PoisonError::into_inner)
}

/// Emits the event. `tracing` needs the level as a constant at each call
/// site, hence one macro call per level.
fn emit(level: u32, actor: &str, actor_name: &str, binding: &str, body: &str) -> bool {
    match level {
        LEVEL_ERROR => tracing::error!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_WARN => tracing::warn!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_INFO => tracing::info!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_DEBUG => tracing::debug!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_TRACE => tracing::trace!(target: TARGET, actor, actor_name, binding, "{body}"),
        _ => return false,
    }
    true
}

#[async_trait]
impl CapabilityProvider for LoggingProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit tracing logger")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "Writes actors' log records as `tracing` events with target `waxosuit::actor`, \
                 tagged with the actor's key and name.",
            )
            .with_operation(
                OP_LOG,
                OperationDirection::ToProvider,
                "Writes a log record at level 1 (error) to 5 (trace)",
            )
            .build()
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let name = request
            .values
            .get(CONFIG_WASCC_CLAIMS_NAME)
            .cloned()
            .unwrap_or_default();
        write(&self.names)
            .entry(request.actor)
            .or_default()
            .insert(request.binding, name);
        Ok(())
    }

    /// Forgets the binding; an unknown one is [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let mut names = write(&self.names);
        let bindings = names
            .get_mut(actor)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        bindings
            .remove(binding)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        if bindings.is_empty() {
            names.remove(actor);
        }
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let actor_name = read(&self.names)
            .get(&call.actor)
            .and_then(|bindings| bindings.get(&call.binding))
            .cloned()
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, &call.actor, &call.binding))?;
        if call.operation != OP_LOG {
            return Err(ProviderError::unknown_operation(
                CAPABILITY_ID,
                &call.operation,
            ));
        }
        let request: WriteLogRequest = decode(CAPABILITY_ID, &call)?;
        if emit(
            request.level,
            &call.actor,
            &actor_name,
            &call.binding,
            &request.body,
        ) {
            Ok(Vec::new())
        } else {
            Err(ProviderError::BadPayload {
                capid: CAPABILITY_ID.to_string(),
                operation: call.operation,
                reason: format!(
                    "log level {} is not one of 1 (error), 2 (warn), 3 (info), 4 (debug), \
                     5 (trace)",
                    request.level
                ),
            })
        }
    }
}
