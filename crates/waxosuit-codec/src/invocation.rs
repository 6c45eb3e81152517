//! The envelope of every call between actors and providers.
//!
//! Inside one host these are plain values; between hosts (lattice mode) they
//! travel MessagePack-encoded with [`serialize`](crate::serialize), so their
//! layout is frozen to that of waSCC host 0.14: field names in snake_case,
//! `msg` as an array of integers, [`Entity`] as an index-keyed enum.
//!
//! This module holds data only. Generating ids, signing `encoded_claims` and
//! the anti-forgery checks belong to the host.

use serde::{Deserialize, Serialize, Serializer};

use crate::wire;

/// URL scheme of [`Entity::url`].
pub const URL_SCHEME: &str = "wasmbus";

/// `wasmbus://{pk}`: the URL of an actor (see [`Entity::url`]).
#[must_use]
pub fn actor_url(pk: &str) -> String {
    format!("{URL_SCHEME}://{pk}")
}

/// `wasmbus://{capid}/{binding}` with `:` in the capability id turned into
/// `/`, spaces into `_`, and both parts lowercased: the URL of a capability
/// provider (see [`Entity::url`]).
#[must_use]
pub fn capability_url(capid: &str, binding: &str) -> String {
    format!(
        "{URL_SCHEME}://{}/{}",
        capid.replace(':', "/").replace(' ', "_").to_lowercase(),
        binding.replace(' ', "_").to_lowercase(),
    )
}

/// `wasmbus://host/{key}`: the URL of a host itself, by server key (calls
/// from a host's tools and health checks in a lattice).
#[must_use]
pub fn host_url(key: &str) -> String {
    format!("{URL_SCHEME}://host/{key}")
}

/// One end of an invocation: an actor, or a capability provider reached
/// through a named binding. (`WasccEntity` in waSCC.)
///
/// Encoded as `{0: "<actor pk>"}` or `{1: {"capid": …, "binding": …}}`;
/// decoding also accepts the variant names (`{"Actor": "M…"}`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub enum Entity {
    /// An actor, by public key (`M…`).
    Actor(String),
    /// A capability provider.
    Capability {
        /// The capability id, e.g. `wascc:keyvalue`.
        capid: String,
        /// The binding name, `default` unless the actor chose one.
        binding: String,
    },
}

/// The waSCC name of [`Entity`], for code ported from `wascc-host`.
pub type WasccEntity = Entity;

/// The fields of [`Entity::Capability`], borrowed for encoding.
#[derive(Serialize)]
struct CapabilityFields<'a> {
    capid: &'a str,
    binding: &'a str,
}

impl Serialize for Entity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Actor(pk) => wire::serialize_data_variant(serializer, "Entity", 0, "Actor", pk),
            Self::Capability { capid, binding } => wire::serialize_data_variant(
                serializer,
                "Entity",
                1,
                "Capability",
                &CapabilityFields { capid, binding },
            ),
        }
    }
}

impl Entity {
    /// The entity's URL, the form signed into invocation claims:
    /// `wasmbus://{pk}` for an actor; for a provider
    /// `wasmbus://{capid}/{binding}` with `:` in the capability id turned
    /// into `/`, spaces into `_`, and both parts lowercased.
    ///
    /// ```
    /// use waxosuit_codec::invocation::Entity;
    ///
    /// let kv = Entity::Capability { capid: "wascc:keyvalue".into(), binding: "Default".into() };
    /// assert_eq!(kv.url(), "wasmbus://wascc/keyvalue/default");
    /// ```
    #[must_use]
    pub fn url(&self) -> String {
        match self {
            Self::Actor(pk) => actor_url(pk),
            Self::Capability { capid, binding } => capability_url(capid, binding),
        }
    }
}

/// A call from one [`Entity`] to another.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Invocation {
    /// Who is calling.
    pub origin: Entity,
    /// Who is called.
    pub target: Entity,
    /// The operation name, e.g. `Get`.
    pub operation: String,
    /// The operation's payload. An array of integers on the wire (the
    /// original did not use `serde_bytes` here); `bin` is accepted on input.
    #[serde(deserialize_with = "crate::wire::bytes_from_array_or_bin")]
    pub msg: Vec<u8>,
    /// Unique id of this invocation (a UUID v4 in waSCC).
    pub id: String,
    /// The anti-forgery JWT signed by the originating host.
    pub encoded_claims: String,
    /// Public key (`N…`) of the originating host.
    pub host_id: String,
}

impl Default for Entity {
    /// An actor with an empty key; only useful as a placeholder.
    fn default() -> Self {
        Self::Actor(String::new())
    }
}

impl Invocation {
    /// The origin's URL.
    #[must_use]
    pub fn origin_url(&self) -> String {
        self.origin.url()
    }

    /// The target's URL followed by `/{operation}`, e.g.
    /// `wasmbus://wascc/messaging/default/Publish`.
    #[must_use]
    pub fn target_url(&self) -> String {
        format!("{}/{}", self.target.url(), self.operation)
    }
}

/// The outcome of an [`Invocation`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InvocationResponse {
    /// The reply payload; empty on error. An array of integers on the wire,
    /// `bin` accepted on input.
    #[serde(deserialize_with = "crate::wire::bytes_from_array_or_bin")]
    pub msg: Vec<u8>,
    /// Why the invocation failed, `None` on success.
    pub error: Option<String>,
    /// The [`Invocation::id`] this answers.
    pub invocation_id: String,
}

impl InvocationResponse {
    /// A successful reply to `invocation`.
    #[must_use]
    pub fn success(invocation: &Invocation, msg: Vec<u8>) -> Self {
        Self {
            msg,
            error: None,
            invocation_id: invocation.id.clone(),
        }
    }

    /// A failed reply to `invocation`.
    #[must_use]
    pub fn error(invocation: &Invocation, error: impl Into<String>) -> Self {
        Self {
            msg: Vec::new(),
            error: Some(error.into()),
            invocation_id: invocation.id.clone(),
        }
    }
}
