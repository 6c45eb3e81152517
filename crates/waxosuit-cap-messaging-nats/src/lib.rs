//! The NATS-backed `wascc:messaging` provider of Waxosuit.
//!
//! Actors publish, subscribe and make requests through a real NATS server,
//! so they talk to each other across hosts and to any other NATS client.
//! Configuration keys and behaviour follow the 2020 `wascc-nats` provider,
//! so existing manifests keep working.
//!
//! # A guided tour
//!
//! * What `Publish` and `Request` mean, the subject rules, the binding
//!   values above and the error texts are the contract crate's
//!   ([`waxosuit_cap_messaging`]), shared with the embedded broker; this
//!   crate adds the connection, the reserved lattice subjects and the
//!   recovery described below.
//! * [`NatsMessaging::new`] builds the provider. Register it with the host
//!   like any [`CapabilityProvider`]; the dispatcher it gets in
//!   [`start`](CapabilityProvider::start) is how messages reach actors.
//! * **Binding configuration** ([`bind_actor`](CapabilityProvider::bind_actor)):
//!
//!   | Key | Meaning |
//!   |---|---|
//!   | [`URL`] | server URL, default [`DEFAULT_URL`]; `nats://user:password@host:port` (percent-encoded) or `nats://token@host:port` authenticates |
//!   | [`SUBSCRIPTION`] | comma-separated subjects to receive (NATS wildcards allowed) |
//!   | [`QUEUEGROUP_NAME`] | optional; subscribe as a member of this queue group |
//!   | [`MAX_SUBSCRIPTIONS`] | most subjects `SUBSCRIPTION` may list, default `64` (each is a server subscription and a delivery task) |
//!   | [`CREDSFILE`] | optional path of a NATS `.creds` file (user JWT and seed); not together with credentials in the `URL` |
//!   | [`MAX_QUEUED_MESSAGES`] | most received messages waiting for the actor, over all the binding's subscriptions, default `1024` |
//!   | [`MAX_QUEUED_BYTES`] | most bytes (subjects, headers and payloads) of those, default `16777216` (16 MiB) |
//!
//!   **Each binding has its own connection**, named [`CONNECTION_NAME`],
//!   as in `wascc-nats`: bindings never share credentials, and removing one
//!   closes exactly its connection. Binding again replaces the pair's
//!   connection and subscriptions.
//! * **Failures at bind time.** A server that cannot be reached fails the
//!   bind at once with [`ProviderError::Unavailable`] naming the URL
//!   (without its credentials: errors, health and logs never repeat them); the
//!   provider does not retry in the background, so a manifest error shows
//!   up when the host starts rather than as silence later. A URL that does
//!   not parse, a subject that is not valid, or a `CREDSFILE` that cannot
//!   be read is a [`ProviderError::Config`] naming the key.
//! * **After the bind**, the connection survives server restarts: the
//!   client reconnects without limit (backing off from
//!   [`reconnect::MIN_BACKOFF`] to at most [`reconnect::MAX_BACKOFF`]
//!   between attempts) and re-subscribes, so subscriptions come back by
//!   themselves. A `Publish` or `Request` that finds the connection down
//!   has the client try again **at once** and waits for that attempt (at
//!   most [`reconnect::RECONNECT_WAIT`]): the first call after the server
//!   is back succeeds, and a call during an outage fails fast with
//!   [`ProviderError::Unavailable`] naming the URL and the attempt's error,
//!   instead of being queued silently (or, once the client's queue is full,
//!   hanging). [`health`](CapabilityProvider::health) reports bindings
//!   whose connection is down.
//! * **Operations**, from bound actors only (others get
//!   [`ProviderError::NotBound`]):
//!   * `Publish`
//!     ([`BrokerMessage`](waxosuit_codec::messaging::BrokerMessage); empty
//!     reply) publishes, with the reply subject when `replyTo` is not empty.
//!   * `Request` ([`RequestMessage`](waxosuit_codec::messaging::RequestMessage)) sends a request and returns the raw
//!     reply body. `timeout` is in milliseconds, at most
//!     [`MAX_REQUEST_TIMEOUT`]; `0` or less means
//!     [`DEFAULT_REQUEST_TIMEOUT`]. It fails with "no responders for
//!     SUBJECT" when the server knows nobody is subscribed, and with "no
//!     reply on SUBJECT within N ms" when nobody answered in time; both are
//!     [`ProviderError::Backend`] errors (see [`MessagingError`]).
//! * **Reserved subjects.** The lattice's own planes (`waxosuit.actor.*`,
//!   `waxosuit.control.*`, `waxosuit.bindings`, `waxosuit._INBOX.>`, …) are
//!   out of every actor's reach, even when the provider's server is the
//!   lattice's: a `Publish`, `replyTo`, `Request` or [`SUBSCRIPTION`]
//!   subject (queue groups included) that is under a reserved prefix, **or
//!   as a wildcard could match** a subject under one, is refused, with NATS
//!   semantics token by token (see [`subject`]): `>`, `*.>`,
//!   `waxosuit.>` and `*.control.*` are refused, `waxosuitx.a`, `foo.>` and
//!   `waxosuit` itself are not. [`DEFAULT_RESERVED_PREFIX`] is always
//!   reserved; [`NatsMessaging::reserve_prefix`] adds the prefix of a
//!   lattice that uses another. A refused operation is a
//!   [`ProviderError::Backend`] starting "permission denied" (see
//!   [`MessagingError::Reserved`]); a refused subscription fails the bind
//!   with a [`ProviderError::Config`] naming [`SUBSCRIPTION`], and nothing
//!   is subscribed. Subjects that are not valid NATS subjects (empty tokens,
//!   whitespace, wildcards where a message is sent) are refused too. The
//!   provider also does not forward an actor's answer to a reserved reply
//!   subject. This is defence in depth: give actors a NATS account of
//!   their own as well ([`NATS_ACCOUNTS_DOC`], `deploy/nats/`).
//! * **Delivery.** Each subscription has a task that hands its messages, in
//!   order, to the actor as `DeliverMessage`. If a message carries a reply
//!   subject and the actor's handler **returns non-empty bytes, they are
//!   published to the reply subject**, so an actor answers NATS requests by
//!   returning the answer (it may also publish to `replyTo` itself). A
//!   binding's subscriptions together hold at most [`MAX_QUEUED_MESSAGES`]
//!   undelivered messages and [`MAX_QUEUED_BYTES`] of them, as the
//!   embedded broker does: a message may be as large as the server's
//!   `max_payload`, so a count alone (1,024 per subscription, once) let
//!   publishers faster than the actor fill gigabytes. Beyond either bound
//!   messages are dropped as they arrive (what a NATS server does to a
//!   slow consumer), and a warning naming the actor, the subject and the
//!   value to raise is logged, at most every ten seconds per subscription. [`remove_actor`](CapabilityProvider::remove_actor) and
//!   [`shutdown`](CapabilityProvider::shutdown) stop the tasks and close
//!   the connections.
//! * **Traces.** When a tracing layer is installed, a `Publish` is a
//!   producer span and a `Request` a client span, each sending its W3C
//!   `traceparent`/`tracestate` in the message's NATS headers; each
//!   delivery is a consumer span continuing the trace of the message's
//!   headers, holding the actor call and its reply. Without one, messages
//!   are sent without headers, as before.
//!
//! ```no_run
//! use std::collections::HashMap;
//! use waxosuit_cap_messaging_nats::NatsMessaging;
//! use waxosuit_provider::{BindRequest, CapabilityProvider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The lattice runs under `staging.waxosuit`; `waxosuit` stays reserved.
//! let nats = NatsMessaging::new().reserve_prefix("staging.waxosuit")?;
//! nats.bind_actor(BindRequest {
//!     actor: "MWORKER".into(),
//!     binding: "default".into(),
//!     values: HashMap::from([
//!         ("URL".into(), "nats://127.0.0.1:4222".into()),
//!         ("SUBSCRIPTION".into(), "jobs.>".into()),
//!         ("QUEUEGROUP_NAME".into(), "workers".into()),
//!     ]),
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::sync::Arc;

use async_nats::Client;
use async_nats::connection::State;
use async_trait::async_trait;
use parking_lot::RwLock;
use tokio::task::JoinHandle;
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_codec::messaging::CAPABILITY_ID;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, Health, ProviderCall,
    ProviderError, redact_url,
};

mod broker;
mod connect;
mod deliver;
pub mod reconnect;
mod reserved;
mod spans;

pub use waxosuit_cap_messaging::{
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_REQUEST_TIMEOUT,
    MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES, MAX_REQUEST_TIMEOUT, MAX_SUBSCRIPTIONS, MessagingError,
    NATS_ACCOUNTS_DOC, QUEUEGROUP_NAME, SUBSCRIPTION, SubjectUse, subject,
};

pub use crate::reserved::InvalidPrefix;

use crate::broker::BoundBroker;
use crate::connect::{parse_config, round_trip};
use crate::deliver::deliver_loop;
use crate::reconnect::Reconnect;
use crate::reserved::Reserved;

/// Binding key: the NATS server URL.
pub const URL: &str = "URL";
/// Binding key: path of a NATS `.creds` file.
pub const CREDSFILE: &str = "CREDSFILE";
/// The server used when a binding has no [`URL`].
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// The connection name servers show for this provider's clients.
pub const CONNECTION_NAME: &str = "Waxosuit NATS Provider";
/// Messages the client buffers per subscription before the delivery task's
/// reader moves them into its bounded queue; the reader does nothing else,
/// so this only absorbs moments when it is not scheduled.
const CLIENT_BUFFER: usize = 256;

/// The prefix of the Waxosuit lattice's own subjects; always reserved.
pub const DEFAULT_RESERVED_PREFIX: &str = "waxosuit";

/// The NATS `wascc:messaging` provider. See the [crate docs](crate).
pub struct NatsMessaging {
    inner: Arc<Inner>,
    /// Shared with the delivery tasks, which check reply subjects too.
    reserved: Arc<Reserved>,
}

impl Default for NatsMessaging {
    fn default() -> Self {
        NatsMessaging::new()
    }
}

impl NatsMessaging {
    /// A provider with no bindings yet, reserving
    /// [`DEFAULT_RESERVED_PREFIX`] only.
    pub fn new() -> NatsMessaging {
        NatsMessaging {
            inner: Arc::new(Inner {
                dispatcher: RwLock::new(None),
                bindings: Bindings::new(CAPABILITY_ID),
            }),
            reserved: Arc::new(Reserved::new()),
        }
    }

    /// Also refuses actors every subject under `prefix` (e.g. the lattice
    /// prefix `staging.waxosuit`), on top of [`DEFAULT_RESERVED_PREFIX`],
    /// which stays reserved. Reserving a prefix twice is harmless.
    ///
    /// Call it before binding actors: bindings made earlier were checked
    /// against the prefixes reserved then.
    ///
    /// ```
    /// use waxosuit_cap_messaging_nats::NatsMessaging;
    ///
    /// let nats = NatsMessaging::new().reserve_prefix("staging.waxosuit")?;
    /// assert_eq!(nats.reserved_prefixes(), ["waxosuit", "staging.waxosuit"]);
    /// assert!(NatsMessaging::new().reserve_prefix("staging.*").is_err());
    /// # Ok::<(), waxosuit_cap_messaging_nats::InvalidPrefix>(())
    /// ```
    pub fn reserve_prefix(mut self, prefix: &str) -> Result<NatsMessaging, InvalidPrefix> {
        subject::validate_literal(prefix).map_err(|reason| InvalidPrefix {
            prefix: prefix.to_string(),
            reason,
        })?;
        if !self.reserved.prefixes.iter().any(|p| p == prefix) {
            let mut prefixes = self.reserved.prefixes.clone();
            prefixes.push(prefix.to_string());
            self.reserved = Arc::new(Reserved { prefixes });
        }
        Ok(self)
    }

    /// [`NatsMessaging::new`] followed by
    /// [`reserve_prefix`](NatsMessaging::reserve_prefix) for each of
    /// `prefixes`.
    pub fn with_reserved_prefixes<I, S>(prefixes: I) -> Result<NatsMessaging, InvalidPrefix>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        prefixes
            .into_iter()
            .try_fold(NatsMessaging::new(), |nats, prefix| {
                nats.reserve_prefix(prefix.as_ref())
            })
    }

    /// The reserved prefixes, [`DEFAULT_RESERVED_PREFIX`] first.
    pub fn reserved_prefixes(&self) -> &[String] {
        &self.reserved.prefixes
    }

    fn stop_all(&self) {
        for binding in self.inner.bindings.drain() {
            binding.stop();
        }
    }
}

struct Inner {
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
    bindings: Bindings<NatsBinding>,
}

impl Inner {
    fn dispatcher(&self) -> Option<Arc<dyn ActorDispatcher>> {
        self.dispatcher.read().clone()
    }
}

struct NatsBinding {
    client: Client,
    /// Redacted: it is shown in health messages.
    url: String,
    /// How calls wait for the connection after an outage.
    reconnect: Arc<Reconnect>,
    tasks: Vec<JoinHandle<()>>,
}

impl NatsBinding {
    /// Aborting the tasks drops their subscribers (which unsubscribes);
    /// dropping the last client handle then closes the connection.
    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

#[async_trait]
impl CapabilityProvider for NatsMessaging {
    fn descriptor(&self) -> CapabilityDescriptor {
        waxosuit_cap_messaging::descriptor(
            "Waxosuit NATS messaging provider",
            "Publish/subscribe and request/reply through a NATS server",
        )
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *self.inner.dispatcher.write() = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let config = parse_config(&request, &self.reserved)?;
        let reconnect = Arc::new(Reconnect::default());
        let client = self.connect(&request, &config, &reconnect).await?;
        let subscribe_error = |subject: &str, e: &dyn std::fmt::Display| {
            ProviderError::from(MessagingError::Client {
                operation: "subscribe",
                subject: subject.to_string(),
                reason: e.to_string(),
            })
        };
        let mut subscribers = Vec::new();
        let subjects: Vec<&str> = config
            .subscriptions
            .patterns
            .iter()
            .map(|p| p.as_str())
            .collect();
        for subject in &subjects {
            let subscriber = match &config.subscriptions.queue {
                Some(q) => client.queue_subscribe(subject.to_string(), q.clone()).await,
                None => client.subscribe(subject.to_string()).await,
            }
            .map_err(|e| subscribe_error(subject, &e))?;
            subscribers.push(subscriber);
        }
        if !subscribers.is_empty() {
            // The server must know the subscriptions before the bind
            // returns, or messages published right after it would be missed.
            round_trip(&client)
                .await
                .map_err(|e| subscribe_error(&subjects.join(","), &e))?;
        }
        // One budget for the whole binding: more subjects, no more memory.
        let budget =
            waxosuit_nats::PendingBudget::new(config.max_queued_messages, config.max_queued_bytes);
        let tasks = subscribers
            .into_iter()
            .map(|subscriber| {
                tokio::spawn(deliver_loop(
                    Arc::downgrade(&self.inner),
                    self.reserved.clone(),
                    client.clone(),
                    request.actor.clone(),
                    request.binding.clone(),
                    subscriber,
                    budget.clone(),
                ))
            })
            .collect();
        let binding = NatsBinding {
            client,
            url: redact_url(&config.url),
            reconnect,
            tasks,
        };
        let previous = self
            .inner
            .bindings
            .insert(request.actor, request.binding, binding);
        if let Some(previous) = previous {
            previous.stop();
        }
        Ok(())
    }

    /// Stops the pair's subscriptions and closes its connection; an unknown
    /// pair is [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        self.inner.bindings.remove(actor, binding)?.stop();
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let bound = self.bound(&call.actor, &call.binding)?;
        let broker = BoundBroker {
            reserved: &self.reserved,
            bound,
        };
        waxosuit_cap_messaging::dispatch(&broker, &call).await
    }

    async fn health(&self) -> Health {
        let (count, down): (usize, Vec<String>) = self.inner.bindings.read_all(|bindings| {
            let down = bindings
                .iter()
                .filter(|(_, _, b)| b.client.connection_state() != State::Connected)
                .map(|(actor, binding, b)| format!("{actor} (binding `{binding}`) to {}", b.url))
                .collect();
            (bindings.len(), down)
        });
        if down.is_empty() {
            Health {
                healthy: true,
                message: format!("{count} NATS connections up"),
            }
        } else {
            Health::unhealthy(format!(
                "NATS connection down, reconnecting: {}",
                down.join("; ")
            ))
        }
    }

    async fn shutdown(&self) {
        *self.inner.dispatcher.write() = None;
        self.stop_all();
    }
}

impl Drop for NatsMessaging {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_must_be_literal_subjects() {
        for bad in ["", "a..b", "staging.*", ">", "a b", "waxosuit."] {
            let err = NatsMessaging::new().reserve_prefix(bad).err().unwrap();
            assert_eq!(err.prefix, bad);
            assert!(err.to_string().contains("cannot be reserved"), "{err}");
        }
        let nats = NatsMessaging::with_reserved_prefixes(["a.b", "waxosuit", "a.b", "c"]).unwrap();
        assert_eq!(nats.reserved_prefixes(), ["waxosuit", "a.b", "c"]);
        assert_eq!(NatsMessaging::new().reserved_prefixes(), ["waxosuit"]);
    }
}
