//! Many Waxosuit hosts as one, over a real NATS server.
//!
//! # A guided tour
//!
//! * [`Lattice::join`] connects a [`waxosuit_host::Host`] to NATS. From then
//!   on the host's actors and providers are reachable from every host of the
//!   lattice, and calls it cannot serve itself (an actor running elsewhere, a
//!   provider registered elsewhere) travel over NATS. The host crate knows
//!   none of this: the lattice installs a [`waxosuit_host::RemoteLink`].
//! * Calls are NATS request/reply on a subject per actor (`{prefix}.actor.{key}`)
//!   or per provider (`{prefix}.provider.{capid}.{binding}`), each with a
//!   queue group, so instances on several hosts share the load and a host
//!   that leaves drops out.
//! * Every call is an [`protocol::Invocation`] authenticated by the sending
//!   host: claims signed by its server key ([`antiforgery`]) on first
//!   contact, then a keyed-BLAKE3 tag under a key the two hosts agreed on once
//!   ([`session`]), which is ~80 µs cheaper per call. The receiver checks
//!   either against its [`TrustPolicy`], a list of host keys, and answers
//!   anything else, another protocol version or an undecodable message with
//!   a typed error, never a panic. Payloads over the server's `max_payload`
//!   are chunked transparently.
//! * Bindings are lattice-wide ([`Lattice::put_binding`]): every host keeps
//!   the table, learns it from the others when it (re)joins, and the hosts
//!   running a provider bind it, so bindings survive a provider's restart.
//! * Inventory (`{prefix}.inventory.*`), CloudEvents (`{prefix}.events`) and
//!   commands (`{prefix}.control.{host}`, auctions) are served by every host;
//!   [`LatticeClient`] is the tools' side of them (`waxosuit lattice …`).
//!
//! ```no_run
//! # async fn demo(host: waxosuit_host::Host) -> Result<(), waxosuit_lattice::LatticeError> {
//! use waxosuit_claims::{KeyKind, KeyPair};
//! use waxosuit_lattice::{Lattice, LatticeConfig, TrustPolicy};
//!
//! let identity = KeyPair::generate(KeyKind::Server);
//! let trust = TrustPolicy::hosts(["NB2…other host's key"])?;
//! let lattice = Lattice::join(host, LatticeConfig::new("nats://127.0.0.1:4222", identity, trust)).await?;
//! let reply = lattice.call_actor("MB4O…", "echo", b"hi".to_vec()).await?;
//! # let _ = reply; Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod antiforgery;
mod chunk;
mod client;
mod error;
mod node;
pub mod protocol;
pub mod session;

pub use antiforgery::TrustPolicy;
pub use client::LatticeClient;
pub use error::LatticeError;
pub use node::{Lattice, LatticeConfig, ProviderFactory};
