//! Host ↔ actor/provider lifecycle contract.
//!
//! These operations are sent by the host itself, with
//! [`SYSTEM_ACTOR`](crate::SYSTEM_ACTOR) as the calling actor, rather than by
//! an actor. A provider learns about an actor only through
//! [`OP_BIND_ACTOR`] (carrying a [`CapabilityConfiguration`]) and forgets it on
//! [`OP_REMOVE_ACTOR`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub use crate::capabilities::OP_GET_CAPABILITY_DESCRIPTOR;

/// Host → actor: replace the running module with the bytes of a
/// [`LiveUpdate`].
pub const OP_PERFORM_LIVE_UPDATE: &str = "PerformLiveUpdate";
/// Host → provider: legacy identity query, superseded by
/// [`OP_GET_CAPABILITY_DESCRIPTOR`] but still a reserved name.
pub const OP_IDENTIFY_CAPABILITY: &str = "IdentifyCapability";
/// Host → actor or provider: liveness probe carrying a [`HealthRequest`]; an
/// empty successful reply means healthy.
pub const OP_HEALTH_REQUEST: &str = "HealthRequest";
/// Host → actor: one-time initialisation hook.
pub const OP_INITIALIZE: &str = "Initialize";
/// Host → provider: start serving an actor; the payload is a
/// [`CapabilityConfiguration`].
pub const OP_BIND_ACTOR: &str = "BindActor";
/// Host → provider: stop serving an actor and release its resources; the
/// payload is a [`CapabilityConfiguration`] with empty `values`.
pub const OP_REMOVE_ACTOR: &str = "RemoveActor";

/// Configuration key the host adds on `BindActor`: the actor's issuer
/// (account public key).
pub const CONFIG_WASCC_CLAIMS_ISSUER: &str = "__wascc_issuer";
/// Configuration key the host adds on `BindActor`: the actor's capability ids,
/// joined with `,`.
pub const CONFIG_WASCC_CLAIMS_CAPABILITIES: &str = "__wascc_capabilities";
/// Configuration key the host adds on `BindActor`: the actor's friendly name.
pub const CONFIG_WASCC_CLAIMS_NAME: &str = "__wascc_name";
/// Configuration key the host adds on `BindActor`: the claims' expiry in
/// seconds since the epoch, `0` when they never expire.
pub const CONFIG_WASCC_CLAIMS_EXPIRES: &str = "__wascc_expires";
/// Configuration key the host adds on `BindActor`: the actor's tags, joined
/// with `,`.
pub const CONFIG_WASCC_CLAIMS_TAGS: &str = "__wascc_tags";

/// Binding value the host adds (not a waSCC key): the largest payload the
/// actor accepts, so a provider can refuse bigger requests up front.
pub const CONFIG_WAXOSUIT_MAX_PAYLOAD: &str = "__waxosuit_max_payload";

/// The replacement module for [`OP_PERFORM_LIVE_UPDATE`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveUpdate {
    /// Raw bytes of the new module. On the wire this is an array of
    /// integers, not `bin`, because the original codec did not mark it
    /// `serde_bytes`.
    #[serde(deserialize_with = "crate::wire::bytes_from_array_or_bin")]
    pub new_module: Vec<u8>,
}

/// Payload of [`OP_HEALTH_REQUEST`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthRequest {
    /// Unused; present because the original message could not be empty and
    /// peers still expect the key.
    pub placeholder: bool,
}

/// Per-actor provider configuration, the payload of [`OP_BIND_ACTOR`] and
/// [`OP_REMOVE_ACTOR`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapabilityConfiguration {
    /// The actor's public key (its claims' `sub`). Providers should treat it
    /// as an opaque key.
    pub module: String,
    /// Configuration values from the binding, plus the `__wascc_*` claim
    /// keys added by the host.
    #[serde(default)]
    pub values: HashMap<String, String>,
}
