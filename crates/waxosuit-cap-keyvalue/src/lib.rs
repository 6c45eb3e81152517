//! The `wascc:keyvalue` contract of Waxosuit, written once.
//!
//! Every key-value backend (the embedded memory store, Redis, the memory
//! store built as a native plugin, the SDK's fake host) answers actors with
//! the same replies and the same errors, because the parts that make up the
//! contract live here and nowhere else:
//!
//! # A guided tour
//!
//! * [`Keyspace`]: one binding's keys, as a backend stores them. Its
//!   methods take decoded, already validated arguments (`Set`'s expiry is
//!   not negative, `SetUnion` has at least one key) and return plain values
//!   (`push` returns the new length as a `u64`). A backend implements this
//!   and nothing about the wire format.
//! * [`Backend`]: how a backend opens a keyspace for a binding (from the
//!   binding's values), reports health, starts and stops.
//! * [`KeyValueProvider`] is the capability provider
//!   ([`waxosuit_provider::CapabilityProvider`]) over any backend. It
//!   keeps the keyspaces per (actor, binding) in a
//!   [`Bindings`](waxosuit_provider::Bindings) table (routed from the
//!   call's borrowed strings, without allocating) and answers every call
//!   through [`dispatch`], the **operation table**: decode the request,
//!   check what the contract forbids, call the keyspace, clamp counts to
//!   the reply's `i32`, sort set results, encode. The operations, with the
//!   Redis command each one behaves like:
//!
//!   | Operation | Redis | Notes |
//!   |---|---|---|
//!   | `Get` | `GET` | `exists: false` for a missing key |
//!   | `Set` | `SET` / `SET … EX` | `expires` seconds, `0` for none, negative refused; replaces any type and TTL |
//!   | `Add` | `INCRBY` | atomic; a missing key counts as 0; keeps the TTL; a result outside `i32` is refused, the value kept |
//!   | `Del` | `DEL` | any type |
//!   | `Clear` | `DEL` | lists only |
//!   | `Range` | `LRANGE` | inclusive stop, negative indices from the end |
//!   | `Push` | `LPUSH` | replies the new length |
//!   | `ListItemDelete` | `LREM key 0 value` | replies the length left |
//!   | `SetAdd` / `SetRemove` | `SADD` / `SREM` | reply 1 if a member was added / removed, else 0 |
//!   | `SetUnion` / `SetIntersection` | `SUNION` / `SINTER` | at least one key; members sorted |
//!   | `SetQuery` | `SMEMBERS` | members sorted |
//!   | `KeyExists` | `EXISTS` | `value` is empty |
//!
//!   A list or set operation on a key of another type fails with a
//!   `WRONGTYPE` error; emptied lists and sets disappear, as in Redis.
//! * [`reference`](mod@reference): the in-memory reference backend
//!   ([`ReferenceBackend`](reference::ReferenceBackend), one
//!   [`MemoryKeyspace`] per binding): strings, counters, lists and sets with
//!   exact expiry and byte and key quotas, Redis semantics, a clock passed
//!   in and no Tokio, so the SDK's fake host builds it for `wasm32` as well.
//!   The `waxosuit-cap-keyvalue-memory` provider is this backend plus a
//!   sweep task on the host's runtime.
//! * [`conformance`]: the suite every backend must pass, run against
//!   anything that answers encoded calls ([`conformance::Subject`]).
//!
//! Adding a backend means implementing [`Keyspace`] and [`Backend`] and
//! running [`conformance::run`] against it in a test: see
//! `docs/capability-backends.md`.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_keyvalue::{CAPABILITY_ID, KeyValueProvider, reference::ReferenceBackend};
//! use waxosuit_codec::keyvalue::{AddRequest, AddResponse, OP_ADD};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let kv = KeyValueProvider::<ReferenceBackend>::new();
//! kv.bind_actor(BindRequest {
//!     actor: "MACTOR".into(),
//!     binding: "default".into(),
//!     values: HashMap::new(),
//! })
//! .await?;
//! let reply = kv
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_ADD.into(),
//!         payload: encode(CAPABILITY_ID, &AddRequest { key: "hits".into(), value: 2 })?,
//!     })
//!     .await?;
//! let AddResponse { value } = waxosuit_codec::deserialize(&reply)?;
//! assert_eq!(value, 2);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod conformance;
mod keyspace;
mod provider;
pub mod reference;

pub use keyspace::{Backend, Description, Keyspace};
pub use provider::{KeyValueProvider, MAX_SET_KEYS, dispatch};
pub use reference::MemoryKeyspace;
pub use waxosuit_codec::keyvalue::CAPABILITY_ID;
