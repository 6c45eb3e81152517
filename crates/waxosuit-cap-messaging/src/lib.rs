//! The `wascc:messaging` contract of Waxosuit, written once.
//!
//! The embedded broker (`waxosuit-cap-messaging-memory`) and the NATS
//! provider (`waxosuit-cap-messaging-nats`) keep different state (queues
//! and delivery tasks in the host, or a connection and server-side
//! subscriptions), but what an actor sees is decided here, so an actor
//! behaves the same when its manifest moves it from one to the other:
//!
//! # A guided tour
//!
//! * [`subject`]: NATS subject syntax (one set of rules for both, as strict
//!   as the server and a little stricter on control characters), wildcard
//!   matching ([`subject::Pattern`]) and whether a pattern can reach a
//!   reserved prefix.
//! * [`Subscriptions::from_binding`] reads [`SUBSCRIPTION`] (at most
//!   [`MAX_SUBSCRIPTIONS`] subjects) and [`QUEUEGROUP_NAME`];
//!   [`request_timeout`] turns a request's `timeout` into a deadline (at most
//!   [`MAX_REQUEST_TIMEOUT`]).
//! * [`dispatch`] is the **operation table**: it decodes `Publish` and
//!   `Request`, checks every subject through [`Broker::check_subject`]
//!   (a broker that reserves subjects adds its check there), resolves the
//!   timeout and calls the [`Broker`]. [`descriptor`] is the provider's
//!   descriptor.
//! * [`MessagingError`] is every messaging failure, with the texts actors
//!   see; each converts into a [`ProviderError`](waxosuit_provider::ProviderError).
//! * [`conformance`]: the suite every broker must pass, through its calls
//!   and the deliveries it makes ([`conformance::Recorder`]).
//!
//! Adding a broker means implementing [`Broker`] for a bound caller, a
//! [`CapabilityProvider`](waxosuit_provider::CapabilityProvider) whose
//! `handle_call` finds the binding and calls [`dispatch`], and running
//! [`conformance::run`] against it: see `docs/capability-backends.md`.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod config;
pub mod conformance;
mod error;
pub mod subject;
mod table;

pub use config::{
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_MAX_SUBSCRIPTIONS,
    DEFAULT_REQUEST_TIMEOUT, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, MAX_REQUEST_TIMEOUT,
    MAX_SUBSCRIPTIONS, QUEUEGROUP_NAME, SUBSCRIPTION, Subscriptions, request_timeout,
};
pub use error::{MessagingError, NATS_ACCOUNTS_DOC, QueueRefusal, SubjectUse};
pub use table::{Broker, Caller, descriptor, dispatch};
pub use waxosuit_codec::messaging::CAPABILITY_ID;
