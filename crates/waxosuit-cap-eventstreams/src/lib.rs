//! The `wascc:eventstreams` contract of Waxosuit, written once.
//!
//! The Redis-streams provider (`waxosuit-cap-eventstreams-redis`) and the
//! SDK's fake host give actors the same event ids, the same order, the same
//! answers to time ranges and counts, and the same errors, because the
//! parts that make up the contract live here and nowhere else:
//!
//! # A guided tour
//!
//! * [`EventId`] and [`IdRange`]: ids `<ms>-<seq>` as Redis streams assign
//!   them ([`EventId::next_after`] is `XADD stream *`), and the id range a
//!   query's time range selects ([`IdRange::of`]).
//! * [`Streams`]: one binding's streams, as a backend keeps them. Its two
//!   methods, `append` (`XADD`) and `range` (`XRANGE`), take decoded,
//!   already checked arguments and return plain values. A backend
//!   implements this and nothing about the wire format.
//! * [`dispatch`] is the **operation table**: decode the request, check
//!   what the contract forbids, call the streams, encode. The operations,
//!   with the Redis command each one behaves like:
//!
//!   | Operation | Redis | Notes |
//!   |---|---|---|
//!   | `WriteEvent` | `XADD stream * field value …` | replies the assigned id; at least one value and a stream name; the actor's `eventId` is ignored |
//!   | `QueryStream` | `XRANGE stream start end [COUNT n]` | oldest first; `range` in milliseconds, both ends inclusive; `count` `0` for all, at most [`MAX_COUNT`] |
//!
//!   [`descriptor`] is a provider's descriptor; `DeliverEvent`, the
//!   provider's call to subscribed actors, carries an [`Entry`] turned
//!   into an event ([`Entry::into_event`]).
//! * [`reference`](mod@reference): the in-memory reference backend
//!   ([`MemoryStreams`], one binding's streams) with a clock passed in and
//!   no Tokio, so the SDK's fake host builds it for `wasm32` as well.
//! * [`conformance`]: the suite every backend must pass, run against
//!   anything that answers encoded calls ([`conformance::Subject`]).
//!
//! Adding a backend means implementing [`Streams`] for a bound caller, a
//! [`CapabilityProvider`](waxosuit_provider::CapabilityProvider) whose
//! `handle_call` finds the binding and calls [`dispatch`], and running
//! [`conformance::run`] against it: see `docs/capability-backends.md`.
//!
//! ```
//! use std::collections::HashMap;
//! use std::sync::Arc;
//! use std::time::Duration;
//! use waxosuit_cap_eventstreams::MemoryStreams;
//! use waxosuit_codec::eventstreams::{Event, OP_WRITE_EVENT, WriteResponse};
//!
//! // A clock standing at 1.5 s after the Unix epoch.
//! let streams = MemoryStreams::new(Arc::new(|| Duration::from_millis(1_500)));
//! let event = Event {
//!     event_id: String::new(),
//!     stream: "orders".into(),
//!     values: HashMap::from([("sku".to_string(), "A-1".to_string())]),
//! };
//! for expected in ["1500-0", "1500-1"] {
//!     let reply = streams.call_now(OP_WRITE_EVENT, &waxosuit_codec::serialize(&event)?)?;
//!     let WriteResponse { event_id } = waxosuit_codec::deserialize(&reply)?;
//!     assert_eq!(event_id, expected);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod conformance;
mod id;
pub mod reference;
mod table;

pub use id::{EventId, EventIdError, IdRange};
pub use reference::MemoryStreams;
pub use table::{Entry, MAX_COUNT, Streams, descriptor, dispatch};
pub use waxosuit_codec::eventstreams::CAPABILITY_ID;
