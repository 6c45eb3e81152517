//! What inventory answers (hosts, actors, providers) and the lattice-wide
//! binding table: its entries, the changes hosts announce, and the request
//! and answer that fetch a binding's real values from the host that owns
//! them.
//!
//! Separate from the invocation path in the parent module: these are
//! records for tools and for the binding table, read and written by
//! [`crate::inventory`] and [`crate::bindings`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A host, as inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// Server key.
    pub id: String,
    /// Labels (user labels plus `hostcore.os`, `hostcore.arch`, …).
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the host started.
    pub uptime_ms: u64,
    /// Protocol version.
    pub version: u16,
}

/// An actor, as inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActorEntry {
    /// Host running it.
    pub host: String,
    /// Module key.
    pub key: String,
    /// Name from the claims.
    pub name: String,
    /// Signed claims (compact JWT).
    pub claims: String,
}

/// A provider, as inventory reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEntry {
    /// Host running it.
    pub host: String,
    /// Capability id.
    pub capid: String,
    /// Binding name.
    pub binding: String,
    /// Descriptor name.
    pub name: String,
    /// Descriptor version.
    pub version: String,
}

/// A lattice-wide binding, as it travels: values that may hold secrets are
/// redacted ([`crate::redact`]); the hosts that serve the provider fetch the
/// real values from [`BindingEntry::owner`], encrypted to them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BindingEntry {
    /// Actor key.
    pub actor: String,
    /// Capability id.
    pub capid: String,
    /// Binding name.
    pub binding: String,
    /// Configuration values, redacted where they may hold secrets.
    pub values: BTreeMap<String, String>,
    /// Keys of [`BindingEntry::values`] whose values were redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The host that holds the real values (the one that made the binding).
    #[serde(default)]
    pub owner: String,
    /// Changes whenever the binding is made again with other values.
    #[serde(default)]
    pub rev: String,
}

/// A request for the real values of a binding, signed by a host that serves
/// its provider (see [`crate::bindings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuesRequest {
    /// Actor key.
    pub actor: String,
    /// Capability id.
    pub capid: String,
    /// Binding name.
    pub binding: String,
    /// The revision asked for.
    pub rev: String,
    /// The requester's one-time X25519 public key (base64url): the values
    /// come back encrypted to it.
    pub xkey: String,
}

/// The answer to a [`ValuesRequest`], signed by the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValuesResponse {
    /// Whether the owner sent the values.
    pub ok: bool,
    /// Why not, when not.
    #[serde(default)]
    pub message: String,
    /// The owner's one-time X25519 public key (base64url).
    #[serde(default)]
    pub xkey: String,
    /// XChaCha20-Poly1305 nonce (base64url).
    #[serde(default)]
    pub nonce: String,
    /// The values as JSON, encrypted (base64url).
    #[serde(default)]
    pub sealed: String,
}

/// A change to the lattice-wide binding table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BindingChange {
    /// Bind (or re-bind with new values).
    Put(BindingEntry),
    /// Unbind.
    Remove {
        /// Actor key.
        actor: String,
        /// Capability id.
        capid: String,
        /// Binding name.
        binding: String,
    },
}
