//! The built-in `wascc:extras` provider of Waxosuit: GUIDs, random numbers
//! and sequence numbers for actors.
//!
//! Actors have no entropy source and no state shared between instances, so
//! the host hands these out, as waSCC's built-in extras provider did.
//!
//! # A guided tour
//!
//! * [`ExtrasProvider::new`] builds the provider; register it with the host
//!   like any [`CapabilityProvider`]. Calls from actors without a binding
//!   fail with [`ProviderError::NotBound`].
//! * Every operation replies a [`GeneratorResult`] with only the asked-for
//!   field set:
//!   * `RequestGuid`: `guid` is a fresh random (version 4) UUID in its
//!     hyphenated lowercase form.
//!   * `RequestRandom`: when the [`GeneratorRequest`] says `random: true`,
//!     `randomNumber` is drawn uniformly from `[min, max)`; `min >= max` is
//!     refused with [`ProviderError::BadPayload`]. With `random: false` the
//!     reply is all defaults, as in waSCC.
//!   * `RequestSequence`: `sequenceNumber` is the next value of a counter
//!     per actor, starting at 0 and shared by the actor's bindings. It lives
//!     as long as the actor has a binding: removing the last one drops it,
//!     so a re-bound actor starts again at 0.
//! * Like waSCC, `RequestGuid` and `RequestSequence` do not read their
//!   payload (the SDKs send a `GeneratorRequest`, but its flags carry
//!   nothing for them); `RequestRandom` needs a decodable one.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_extras::ExtrasProvider;
//! use waxosuit_codec::extras::{GeneratorResult, OP_REQUEST_SEQUENCE};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let extras = ExtrasProvider::new();
//! extras
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::new(),
//!     })
//!     .await?;
//! let call = ProviderCall {
//!     actor: "MACTOR".into(),
//!     binding: "default".into(),
//!     operation: OP_REQUEST_SEQUENCE.into(),
//!     payload: Vec::new(),
//! };
//! let first: GeneratorResult = waxosuit_codec::deserialize(&extras.handle_call(call.clone()).await?)?;
//! let second: GeneratorResult = waxosuit_codec::deserialize(&extras.handle_call(call).await?)?;
//! assert_eq!((first.sequence_number, second.sequence_number), (0, 1));
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::RwLock;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::extras::{
    CAPABILITY_ID, GeneratorRequest, GeneratorResult, OP_REQUEST_GUID, OP_REQUEST_RANDOM,
    OP_REQUEST_SEQUENCE,
};
use waxosuit_provider::{
    BindRequest, CapabilityProvider, ProviderCall, ProviderError, decode, encode,
};

/// What the provider keeps per actor.
#[derive(Debug, Default)]
struct ActorState {
    bindings: HashSet<String>,
    sequence: AtomicU64,
}

/// The `wascc:extras` provider. See the [crate docs](crate).
#[derive(Debug, Default)]
pub struct ExtrasProvider {
    actors: RwLock<HashMap<String, ActorState>>,
}

impl ExtrasProvider {
    /// A provider with no bindings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` on the actor's state if the actor is bound through `binding`.
    /// A read lock suffices: the counter is atomic.
    fn with_actor<T>(
        &self,
        call: &ProviderCall,
        f: impl FnOnce(&ActorState) -> T,
    ) -> Result<T, ProviderError> {
        let actors = self.actors.read();
        actors
            .get(&call.actor)
            .filter(|state| state.bindings.contains(&call.binding))
            .map(f)
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, &call.actor, &call.binding))
    }
}

/// A v4 UUID. `uuid` sets the version and variant bits; the entropy comes
/// from `rand`'s OS-seeded thread generator, which the random numbers use
/// too, so the crate has one source of randomness.
fn new_guid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string()
}

fn random_number(call: &ProviderCall) -> Result<GeneratorResult, ProviderError> {
    let request: GeneratorRequest = decode(CAPABILITY_ID, call)?;
    if !request.random {
        return Ok(GeneratorResult::default());
    }
    // `random_range` panics on an empty range; the actor gets an error
    // instead of taking the host down.
    if request.min >= request.max {
        return Err(ProviderError::BadPayload {
            capid: CAPABILITY_ID.to_string(),
            operation: call.operation.clone(),
            reason: format!(
                "min ({}) must be less than max ({}): the number is drawn from [min, max)",
                request.min, request.max
            ),
        });
    }
    Ok(GeneratorResult {
        random_number: rand::random_range(request.min..request.max),
        ..GeneratorResult::default()
    })
}

#[async_trait]
impl CapabilityProvider for ExtrasProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        let to_provider = OperationDirection::ToProvider;
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit extras")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description("GUIDs, random numbers and per-actor sequence numbers for actors.")
            .with_operation(OP_REQUEST_GUID, to_provider, "Generates a version 4 UUID")
            .with_operation(
                OP_REQUEST_RANDOM,
                to_provider,
                "Draws a random number from [min, max)",
            )
            .with_operation(
                OP_REQUEST_SEQUENCE,
                to_provider,
                "Returns the next number of the actor's sequence, starting at 0",
            )
            .build()
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        self.actors
            .write()
            .entry(request.actor)
            .or_default()
            .bindings
            .insert(request.binding);
        Ok(())
    }

    /// Forgets the binding, and the actor's sequence with its last binding;
    /// an unknown binding is [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let mut actors = self.actors.write();
        let state = actors
            .get_mut(actor)
            .filter(|state| state.bindings.contains(binding))
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
        state.bindings.remove(binding);
        if state.bindings.is_empty() {
            actors.remove(actor);
        }
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let result = match call.operation.as_str() {
            OP_REQUEST_GUID => {
                self.with_actor(&call, |_| ())?;
                GeneratorResult {
                    guid: Some(new_guid()),
                    ..GeneratorResult::default()
                }
            }
            OP_REQUEST_RANDOM => {
                self.with_actor(&call, |_| ())?;
                random_number(&call)?
            }
            OP_REQUEST_SEQUENCE => GeneratorResult {
                // Relaxed is enough: the counter orders nothing but itself.
                sequence_number: self.with_actor(&call, |state| {
                    state.sequence.fetch_add(1, Ordering::Relaxed)
                })?,
                ..GeneratorResult::default()
            },
            other => {
                self.with_actor(&call, |_| ())?;
                return Err(ProviderError::unknown_operation(CAPABILITY_ID, other));
            }
        };
        encode(CAPABILITY_ID, &result)
    }
}
