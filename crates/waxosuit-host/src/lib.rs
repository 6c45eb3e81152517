//! The Waxosuit host: signed actors bound, at run time, to the capabilities
//! their signature grants.
//!
//! # A guided tour
//!
//! * [`Host`] is the facade. [`Host::add_actor`] verifies a module's signed
//!   claims (fail closed), asks the [`Authorizer`] whether it may load, and
//!   starts it on the `waxosuit-runtime` instance pool.
//!   [`Host::update_actor`] hot-swaps a module signed with the same module key
//!   (a binding whose capability the new claims drop is removed, its provider
//!   told); [`Host::remove_actor`] stops one.
//! * Proxy-Wasm HTTP filters are signed like actors, with the
//!   `proxy-wasm-filter` tag. [`Host::admit_filter`] applies the same
//!   trust, authorizer and start policy to one and returns its claims; the
//!   caller runs it. A module signed as a filter is never started as an
//!   actor ([`HostError::FilterAsActor`]), nor an actor admitted as a filter
//!   ([`HostError::NotAFilter`]).
//! * Capability providers (anything implementing
//!   `waxosuit_provider::CapabilityProvider`) are registered with
//!   [`Host::add_provider`] under their capability id and a binding name. The
//!   host itself depends on no backend: key-value stores, servers and brokers
//!   live in their own crates and are plugged in by the embedder (the CLI).
//! * [`Host::set_binding`] binds an actor to a provider with per-actor
//!   configuration. The provider receives the values plus the
//!   `__wascc_issuer`, `__wascc_capabilities`, `__wascc_name`,
//!   `__wascc_expires` and `__wascc_tags` keys from the claims. An actor
//!   cannot reach a provider it is not bound to.
//! * Guest host calls are routed as waSCC routed them: an empty binding means
//!   `default`; a 56-character `M…` namespace (or a running actor's
//!   `call_alias`) is an actor-to-actor call; anything else is a capability
//!   id. Every call is authorized: the namespace must be in the caller's
//!   signed `caps`, unless the [`Authorizer`] allows it; the authorizer may
//!   also deny. Refusals name the actor, capability, binding and operation.
//! * In a lattice, a [`RemoteLink`] carries calls to actors and providers
//!   that run on other hosts, and the transport's [`RemoteAttachment`]
//!   ([`Host::attach_remote`], one per host) serves calls from them;
//!   [`Host::subscribe`] reports every change as a [`HostEvent`].
//! * [`Middleware`] runs around every actor and provider invocation
//!   (pre-invoke, invoke with short-circuit, post-invoke).
//! * [`Host::metrics_text`] exposes Prometheus metrics (invocations, errors,
//!   latency per actor, capability and operation);
//!   [`Host::check_health`] sends `HealthRequest` to actors and asks providers.
//!
//! ```no_run
//! # async fn demo(module: Vec<u8>, kv: std::sync::Arc<dyn waxosuit_provider::CapabilityProvider>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::BTreeMap;
//! use waxosuit_claims::Verifier;
//! use waxosuit_host::HostBuilder;
//!
//! // A host runs actors only from issuers it trusts.
//! let verifier = Verifier::new().trust_issuer("AAC…the issuing account")?;
//! let host = HostBuilder::new().verifier(verifier).build()?;
//! host.add_provider("default", kv).await?;
//! let actor = host.add_actor(&module, "./counter_signed.wasm", None).await?;
//! host.set_binding(&actor.key, "wascc:keyvalue", "default", BTreeMap::new()).await?;
//! let reply = host.call_actor(&actor.key, "HandleRequest", b"...").await?;
//! # let _ = reply; Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::BTreeMap;
use std::time::Duration;

mod builder;
mod error;
mod events;
mod filter;
mod gate;
mod health;
mod host;
mod invoke;
mod metrics;
mod policy;
mod providers;
mod read_mostly;
mod remote;
mod router;
mod spans;
mod table;

pub use builder::HostBuilder;
pub use error::HostError;
pub use events::HostEvent;
pub use health::HealthReport;
pub use host::{ActorInfo, DEFAULT_BINDING, Host, ProviderInfo, RouteKey};
pub use policy::{
    Authorizer, ClaimsOnly, Decision, Entity, Flow, InvocationResult, Middleware, MiddlewareCall,
    Refusal,
};
pub use remote::{RemoteAttachment, RemoteError, RemoteLink};
pub use router::Router;
pub use waxosuit_runtime::{ActorKey, Limits};

/// Static facts about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The host's identity (its server key in a lattice), if it has one.
    pub id: Option<String>,
    /// Labels from the builder (or the manifest).
    pub labels: BTreeMap<String, String>,
    /// Time since the host was built.
    pub uptime: Duration,
}
