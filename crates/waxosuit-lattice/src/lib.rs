//! Many Waxosuit hosts as one, over a real NATS server.
//!
//! # A guided tour
//!
//! * [`Lattice::join`] connects a [`waxosuit_host::Host`] to NATS. From then
//!   on the host's actors and providers are reachable from every host of the
//!   lattice, and calls it cannot serve itself (an actor running elsewhere, a
//!   provider registered elsewhere) travel over NATS. The host crate knows
//!   none of this: the lattice installs a [`waxosuit_host::RemoteLink`].
//! * Calls are NATS request/reply to one host's own subject for a target
//!   (`{prefix}.actor.{key}.{host}`, `{prefix}.provider.{capid}.{binding}.{host}`):
//!   the caller picks the host in turn among those a trusted source says
//!   serve it ([`routes`]), or asks the target's shared subject, where the
//!   hosts running it answer in a queue group. Because every call's proof
//!   covers its subject, a call captured on its way to one replica is
//!   refused by all others.
//! * **Nothing unauthenticated has an effect.** Every call is an
//!   [`protocol::WireInvocation`] authenticated by the sending host: claims
//!   signed by its server key ([`antiforgery`]) on first contact, then a
//!   keyed-BLAKE3 tag under a key the two hosts agreed on once ([`session`]),
//!   ~80 µs cheaper per call. Both bind the subject, the reply inbox and the
//!   payload (or its chunk reference), and carry an id or sequence number
//!   that is accepted once. Responses are tagged or signed the same way,
//!   and a caller accepts them only from a host it trusts ([`invoke`]).
//!   Every other message (commands, binding changes, inventory, events,
//!   auctions) is signed in a NATS header ([`auth`]) by a trusted host or
//!   admin, and a request for a large payload's chunks by the one host the
//!   payload is for. The order of checks puts authentication before any work
//!   ([`server`]): no chunk is fetched, no session learned, no task spawned
//!   past a per-target bound, for a message that has not verified.
//!   Refusals are logged (rate-limited) and counted in `/metrics`
//!   (`waxosuit_lattice_refused_total{plane,reason}`).
//! * Each call is one hop of a trace ([`propagation`]): a client span on
//!   the caller, whose W3C context travels in the invocation's
//!   `traceparent`/`tracestate` headers (only when tracing is on), and a
//!   server span on the serving host that continues it. The headers are
//!   covered by the call's claims or session tag like its payload, and a
//!   trace is continued only from a call that authenticated.
//! * Bindings are lattice-wide ([`Lattice::put_binding`]): every host keeps
//!   the table, learns it from trusted hosts when it (re)joins, and the
//!   hosts running a provider bind it, so bindings survive a provider's
//!   restart. Values travel redacted ([`redact`]); a provider's host gets
//!   the real ones from the binding's owner, encrypted to it ([`bindings`]).
//! * Inventory (`{prefix}.inventory.*`), CloudEvents (`{prefix}.events`) and
//!   commands (`{prefix}.control.{host}`, auctions) are served by every host
//!   to trusted signers; [`LatticeClient`] is the tools' side of them
//!   (`waxosuit lattice …`), signing with an admin key.
//!
//! ```no_run
//! # async fn demo(host: waxosuit_host::Host) -> Result<(), waxosuit_lattice::LatticeError> {
//! use waxosuit_claims::{KeyKind, KeyPair};
//! use waxosuit_lattice::{Lattice, LatticeConfig, TrustPolicy};
//!
//! let identity = KeyPair::generate(KeyKind::Server);
//! let trust = TrustPolicy::hosts(["NB2…other host's key"])?
//!     .with_admins(["UADMIN…the operators' key"])?;
//! let lattice = Lattice::join(host, LatticeConfig::new("nats://127.0.0.1:4222", identity, trust)).await?;
//! let reply = lattice.call_actor("MB4O…", "echo", b"hi".to_vec()).await?;
//! # let _ = reply; Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod antiforgery;
pub mod auth;
mod backlog;
pub mod bindings;
mod chunk;
mod client;
mod control;
mod error;
mod events;
mod inventory;
pub mod invoke;
mod metrics;
mod node;
pub mod propagation;
pub mod protocol;
pub mod redact;
mod replies;
mod request;
pub mod routes;
pub mod server;
pub mod session;

pub use auth::{Reason as RefusalReason, Refusal, TrustPolicy};
pub use client::LatticeClient;
pub use error::{FactoryError, LatticeError};
pub use node::{Lattice, LatticeConfig, LatticeLimits, MAX_TIMEOUT, ProviderFactory};
