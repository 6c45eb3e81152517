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
//!   * `Publish` ([`BrokerMessage`]; empty reply) publishes, with the reply
//!     subject when `replyTo` is not empty.
//!   * `Request` ([`RequestMessage`](waxosuit_codec::messaging::RequestMessage)) sends a request and returns the raw
//!     reply body. `timeout` is in milliseconds; `0` or less means
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
//!   subscription holds at most [`SUBSCRIPTION_CAPACITY`] undelivered
//!   messages; beyond that the client drops messages and a warning is
//!   logged. [`remove_actor`](CapabilityProvider::remove_actor) and
//!   [`shutdown`](CapabilityProvider::shutdown) stop the tasks and close
//!   the connections.
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

use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, RequestErrorKind, Subscriber};
use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::task::JoinHandle;
use waxosuit_cap_messaging::{Broker, Caller, Subscriptions};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, Health, ProviderCall,
    ProviderError, encode, redact_url,
};

pub mod reconnect;

pub use waxosuit_cap_messaging::{
    DEFAULT_REQUEST_TIMEOUT, MAX_SUBSCRIPTIONS, MessagingError, NATS_ACCOUNTS_DOC, QUEUEGROUP_NAME,
    SUBSCRIPTION, SubjectUse, subject,
};

use crate::reconnect::Reconnect;

/// Binding key: the NATS server URL.
pub const URL: &str = "URL";
/// Binding key: path of a NATS `.creds` file.
pub const CREDSFILE: &str = "CREDSFILE";
/// The server used when a binding has no [`URL`].
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// The connection name servers show for this provider's clients.
pub const CONNECTION_NAME: &str = "Waxosuit NATS Provider";
/// How long a bind waits for the server to confirm its subscriptions.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);
/// Undelivered messages one subscription may hold before the client drops
/// new ones (the NATS "slow consumer" case).
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// The prefix of the Waxosuit lattice's own subjects; always reserved.
pub const DEFAULT_RESERVED_PREFIX: &str = "waxosuit";

/// A prefix given to [`NatsMessaging::reserve_prefix`] that cannot be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{prefix}` cannot be reserved: it is not a valid NATS subject without wildcards ({reason}); \
     pass the lattice prefix itself, e.g. `waxosuit` or `staging.waxosuit`"
)]
pub struct InvalidPrefix {
    /// The prefix as given.
    pub prefix: String,
    /// What is wrong with it.
    pub reason: subject::SubjectError,
}

/// The reserved prefixes of one provider, the default first.
#[derive(Debug)]
struct Reserved {
    prefixes: Vec<String>,
}

impl Reserved {
    fn new() -> Reserved {
        Reserved {
            prefixes: vec![DEFAULT_RESERVED_PREFIX.to_string()],
        }
    }

    /// Refuses `subject` for `action` by `actor` when it is not a valid
    /// subject for that use, or is or could match one under a reserved
    /// prefix. The reservation is checked before the wildcard ban on
    /// published subjects, so `*.control.x` is reported as the permission
    /// problem it is, not as a syntax error.
    fn check(
        &self,
        actor: &str,
        binding: &str,
        action: SubjectUse,
        subject: &str,
    ) -> Result<(), MessagingError> {
        let invalid = |reason| MessagingError::InvalidSubject {
            actor: actor.to_string(),
            binding: binding.to_string(),
            action,
            subject: subject.to_string(),
            reason,
        };
        subject::validate(subject).map_err(invalid)?;
        if let Some(prefix) = self
            .prefixes
            .iter()
            .find(|p| subject::overlaps_prefix(subject, p))
        {
            return Err(MessagingError::Reserved {
                actor: actor.to_string(),
                binding: binding.to_string(),
                action,
                subject: subject.to_string(),
                prefix: prefix.clone(),
            });
        }
        if action != SubjectUse::Subscribe {
            subject::validate_literal(subject).map_err(invalid)?;
        }
        Ok(())
    }
}

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

    /// The pair's client and what [`Bound::connected`] needs.
    fn bound(&self, actor: &str, binding: &str) -> Result<Bound, ProviderError> {
        self.inner.bindings.read_all(|map| {
            map.get(actor, binding)
                .map(|b| Bound {
                    client: b.client.clone(),
                    url: b.url.clone(),
                    reconnect: Arc::clone(&b.reconnect),
                })
                .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))
        })
    }

    fn stop_all(&self) {
        for binding in self.inner.bindings.drain() {
            binding.stop();
        }
    }
}

/// A bound pair's connection, cloned out of the table for one call.
struct Bound {
    client: Client,
    /// Redacted.
    url: String,
    reconnect: Arc<Reconnect>,
}

impl Bound {
    /// The client, once it is connected (see [`reconnect`]).
    async fn connected(&self, caller: &Caller<'_>) -> Result<&Client, ProviderError> {
        self.reconnect
            .ready(&self.client)
            .await
            .map_err(|why| ProviderError::Unavailable {
                capid: CAPABILITY_ID.to_string(),
                reason: format!(
                    "NATS at {} is unreachable for actor {} (binding `{}`): {why}. Nothing was \
                     sent; the connection keeps being re-established in the background, and \
                     calls succeed again as soon as the server is back",
                    self.url, caller.actor, caller.binding
                ),
            })?;
        Ok(&self.client)
    }
}

struct Inner {
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
    bindings: Bindings<NatsBinding>,
}

impl Inner {
    fn dispatcher(&self) -> Option<Arc<dyn ActorDispatcher>> {
        self.dispatcher
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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

struct BindConfig {
    url: String,
    subscriptions: Subscriptions,
    creds: Option<String>,
}

/// Reads a binding's values. Subscriptions are checked here, before any
/// connection is made, so a refused subject leaves nothing subscribed.
fn parse_config(request: &BindRequest, reserved: &Reserved) -> Result<BindConfig, ProviderError> {
    let subscriptions = Subscriptions::from_binding(request)?;
    for pattern in &subscriptions.patterns {
        reserved
            .check(
                &request.actor,
                &request.binding,
                SubjectUse::Subscribe,
                pattern.as_str(),
            )
            .map_err(|refused| ProviderError::Config {
                capid: CAPABILITY_ID.to_string(),
                actor: request.actor.clone(),
                key: SUBSCRIPTION.to_string(),
                reason: format!("is refused: {refused}"),
            })?;
    }
    let value = |key: &str| {
        request
            .values
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    Ok(BindConfig {
        url: value(URL).unwrap_or(DEFAULT_URL).to_string(),
        subscriptions,
        creds: value(CREDSFILE).map(str::to_string),
    })
}

impl NatsMessaging {
    async fn connect(
        &self,
        request: &BindRequest,
        config: &BindConfig,
        reconnect: &Arc<Reconnect>,
    ) -> Result<Client, ProviderError> {
        // The URL may carry `user:password@`; nothing shown to actors or
        // written to logs may repeat it.
        let shown = redact_url(&config.url);
        let url = shown.clone();
        let on_event = Arc::clone(reconnect);
        let on_attempt = Arc::clone(reconnect);
        let mut options = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            // Unlimited reconnects: a server restart must not end the binding.
            .max_reconnects(None)
            // Short backoff, cut short by waiting calls (see `reconnect`).
            .reconnect_to_server_callback(move |servers, _info| {
                let reconnect = Arc::clone(&on_attempt);
                async move { reconnect.next_attempt(servers).await }
            })
            .event_callback(move |event| {
                let url = url.clone();
                let reconnect = Arc::clone(&on_event);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            reconnect.connected();
                            tracing::info!(%url, "NATS connection (re)established");
                        }
                        other => tracing::warn!(%url, event = %other, "NATS connection event"),
                    }
                }
            });
        match (
            waxosuit_nats::UrlCredentials::from_url(&config.url),
            &config.creds,
        ) {
            (Some(_), Some(_)) => {
                return Err(ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: CREDSFILE.to_string(),
                    reason: format!(
                        "is set while `URL` ({shown}) carries credentials too; use one of them"
                    ),
                });
            }
            (Some(waxosuit_nats::UrlCredentials::UserPassword(user, password)), None) => {
                options = options.user_and_password(user, password);
            }
            (Some(waxosuit_nats::UrlCredentials::Token(token)), None) => {
                options = options.token(token)
            }
            (None, _) => {}
        }
        if let Some(path) = &config.creds {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: CREDSFILE.to_string(),
                    reason: format!("cannot use the credentials file `{path}`: {e}"),
                })?;
        }
        options
            .connect(config.url.as_str())
            .await
            .map_err(|e| match e.kind() {
                ConnectErrorKind::ServerParse => ProviderError::Config {
                    capid: CAPABILITY_ID.to_string(),
                    actor: request.actor.clone(),
                    key: URL.to_string(),
                    reason: format!("`{shown}` is not a NATS server URL: {e}"),
                },
                _ => ProviderError::Unavailable {
                    capid: CAPABILITY_ID.to_string(),
                    reason: format!("cannot connect to NATS at {shown}: {e}"),
                },
            })
    }

    async fn request(
        client: &Client,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let outgoing = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout));
        match client.send_request(subject.clone(), outgoing).await {
            Ok(reply) => Ok(reply.payload.to_vec()),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => MessagingError::NoResponders { subject },
                RequestErrorKind::TimedOut => MessagingError::TimedOut {
                    subject,
                    timeout_ms: timeout.as_millis(),
                },
                _ => MessagingError::Client {
                    operation: "request",
                    subject,
                    reason: e.to_string(),
                },
            }
            .into()),
        }
    }
}

/// Waits until the server has processed everything this connection sent.
/// `Client::flush` only empties the socket buffer, so this echoes a message
/// off the server instead: it processes a connection's commands in order.
async fn round_trip(client: &Client) -> Result<(), String> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(inbox, Vec::new().into())
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(ROUND_TRIP_TIMEOUT, echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("the connection closed".to_string()),
        Err(_) => Err(format!(
            "the server did not confirm the subscriptions within {ROUND_TRIP_TIMEOUT:?}"
        )),
    }
}

/// Hands one subscription's messages to the actor, in order. It holds the
/// provider only weakly, so dropping the provider ends it.
async fn deliver_loop(
    inner: Weak<Inner>,
    reserved: Arc<Reserved>,
    client: Client,
    actor: String,
    binding: String,
    mut subscriber: Subscriber,
) {
    while let Some(message) = subscriber.next().await {
        let Some(dispatcher) = inner.upgrade().and_then(|i| i.dispatcher()) else {
            tracing::warn!(%actor, subject = %message.subject, "provider not started; message dropped");
            continue;
        };
        let payload = BrokerMessage {
            subject: message.subject.to_string(),
            reply_to: message
                .reply
                .as_ref()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            body: message.payload.to_vec(),
        };
        let payload = match encode(CAPABILITY_ID, &payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%actor, error = %e, "cannot encode a delivery; message dropped");
                continue;
            }
        };
        match dispatcher
            .dispatch(&actor, OP_DELIVER_MESSAGE, payload)
            .await
        {
            Ok(reply) if !reply.is_empty() => {
                let Some(reply_to) = message.reply else {
                    continue;
                };
                // Whoever sent the message chose the reply subject; answering
                // blindly would let any client of the server aim an actor's
                // output at the lattice's planes.
                if let Err(refused) = reserved.check(&actor, &binding, SubjectUse::Reply, &reply_to)
                {
                    tracing::warn!(%actor, subject = %message.subject, error = %refused, "actor's reply not sent");
                    continue;
                }
                if let Err(e) = client.publish(reply_to.clone(), reply.into()).await {
                    tracing::warn!(%actor, %reply_to, error = %e, "cannot publish the actor's reply");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%actor, subject = %message.subject, error = %e, "message delivery failed");
            }
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
        *self
            .inner
            .dispatcher
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(dispatcher);
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
        *self
            .inner
            .dispatcher
            .write()
            .unwrap_or_else(PoisonError::into_inner) = None;
        self.stop_all();
    }
}

/// The operation table's view of one bound pair's connection.
struct BoundBroker<'a> {
    reserved: &'a Reserved,
    bound: Bound,
}

#[async_trait]
impl Broker for BoundBroker<'_> {
    /// Valid, and not under a reserved prefix.
    fn check_subject(
        &self,
        caller: &Caller<'_>,
        action: SubjectUse,
        subject: &str,
    ) -> Result<(), MessagingError> {
        self.reserved
            .check(caller.actor, caller.binding, action, subject)
    }

    async fn publish(
        &self,
        caller: &Caller<'_>,
        message: BrokerMessage,
    ) -> Result<(), ProviderError> {
        // Refused subjects were refused before anything waits on the
        // connection.
        let client = self.bound.connected(caller).await?;
        let subject = message.subject.clone();
        let send = async {
            if message.reply_to.is_empty() {
                client.publish(message.subject, message.body.into()).await
            } else {
                client
                    .publish_with_reply(message.subject, message.reply_to, message.body.into())
                    .await
            }
        };
        // The connection may drop between the check above and the send;
        // while it reconnects the client stops draining its command queue,
        // and a publish behind a full queue would wait for the server's
        // return. Bounded like the wait for a connection.
        let Ok(sent) = tokio::time::timeout(reconnect::RECONNECT_WAIT, send).await else {
            return Err(ProviderError::Unavailable {
                capid: CAPABILITY_ID.to_string(),
                reason: format!(
                    "NATS at {} did not take the message for `{subject}` from actor {}                      (binding `{}`) within {:?}: the connection dropped as it was sent. It may                      or may not be delivered; calls succeed again as soon as the server is back",
                    self.bound.url,
                    caller.actor,
                    caller.binding,
                    reconnect::RECONNECT_WAIT
                ),
            });
        };
        sent.map_err(|e| MessagingError::Client {
            operation: "publish",
            subject,
            reason: e.to_string(),
        })?;
        Ok(())
    }

    async fn request(
        &self,
        caller: &Caller<'_>,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let client = self.bound.connected(caller).await?;
        NatsMessaging::request(client, subject, body, timeout).await
    }
}

impl Drop for NatsMessaging {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn bind_request(values: &[(&str, &str)]) -> BindRequest {
        BindRequest {
            actor: "MA".into(),
            binding: "default".into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn subjects_are_checked_like_the_server_does() {
        let reserved = Reserved::new();
        for ok in ["a", "a.b", "a.*.c", "a.>", "_INBOX.x", "waxosuit"] {
            assert!(
                reserved
                    .check("MA", "default", SubjectUse::Subscribe, ok)
                    .is_ok(),
                "{ok}"
            );
        }
        for bad in ["a..b", ".a", "a.", "a b", "a.>.b", "a*", "b>", ""] {
            let err = reserved
                .check("MA", "default", SubjectUse::Subscribe, bad)
                .unwrap_err();
            assert!(
                matches!(err, MessagingError::InvalidSubject { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reservation_wins_over_the_wildcard_ban_but_not_over_syntax() {
        let reserved = Reserved::new();
        let check = |action, subject| reserved.check("MA", "b1", action, subject);
        // A wildcard publish that could reach the lattice is a permission
        // problem first.
        let err = check(SubjectUse::Publish, "*.control.x").unwrap_err();
        assert!(matches!(err, MessagingError::Reserved { .. }), "{err}");
        // One that cannot is still not a valid publish subject.
        let err = check(SubjectUse::Publish, "jobs.*").unwrap_err();
        assert!(
            matches!(
                err,
                MessagingError::InvalidSubject {
                    reason: subject::SubjectError::Wildcard,
                    ..
                }
            ),
            "{err}"
        );
        assert!(check(SubjectUse::Subscribe, "jobs.*").is_ok());
        // Broken syntax is reported as such, wherever it points.
        let err = check(SubjectUse::Request, "waxosuit..control").unwrap_err();
        assert!(
            matches!(err, MessagingError::InvalidSubject { .. }),
            "{err}"
        );
    }

    #[test]
    fn refusals_say_what_why_and_what_to_do() {
        let reserved = Reserved::new()
            .prefixes
            .into_iter()
            .chain(["staging.waxosuit".to_string()])
            .collect();
        let reserved = Reserved { prefixes: reserved };
        let literal = reserved
            .check(
                "MACTOR",
                "b1",
                SubjectUse::Publish,
                "waxosuit.control.NHOST",
            )
            .unwrap_err()
            .to_string();
        for needle in [
            "permission denied",
            "actor MACTOR (binding `b1`)",
            "may not publish to `waxosuit.control.NHOST`",
            "it is a subject under `waxosuit.`",
            "reserved for the Waxosuit lattice (prefix `waxosuit`)",
            "cannot match `waxosuit.>`",
            "docs/nats-accounts.md",
        ] {
            assert!(
                literal.contains(needle),
                "{needle:?} missing from: {literal}"
            );
        }
        let wildcard = reserved
            .check("MACTOR", "b1", SubjectUse::Subscribe, "staging.*.events")
            .unwrap_err()
            .to_string();
        assert!(
            wildcard.contains("may not subscribe to `staging.*.events`: as a wildcard it could match subjects under `staging.waxosuit.`"),
            "{wildcard}"
        );
        assert!(
            wildcard.contains("(prefix `staging.waxosuit`)"),
            "{wildcard}"
        );
    }

    #[test]
    fn reserved_subscriptions_fail_the_binding_config() {
        let reserved = Reserved::new();
        let err = parse_config(&bind_request(&[(SUBSCRIPTION, "fine.one, *.>")]), &reserved)
            .err()
            .unwrap();
        assert!(
            matches!(&err, ProviderError::Config { key, .. } if key == SUBSCRIPTION),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("`SUBSCRIPTION` is refused: permission denied"),
            "{text}"
        );
        assert!(text.contains("`*.>`"), "{text}");
    }

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

    #[test]
    fn config_defaults_and_trimming() {
        let request = BindRequest {
            actor: "MA".into(),
            binding: "default".into(),
            values: HashMap::from([
                (SUBSCRIPTION.to_string(), " a , b.*, ".to_string()),
                (QUEUEGROUP_NAME.to_string(), "".to_string()),
            ]),
        };
        let config = parse_config(&request, &Reserved::new()).unwrap();
        assert_eq!(config.url, DEFAULT_URL);
        let subjects: Vec<&str> = config
            .subscriptions
            .patterns
            .iter()
            .map(|p| p.as_str())
            .collect();
        assert_eq!(subjects, ["a", "b.*"]);
        assert_eq!(config.subscriptions.queue, None);
        assert_eq!(config.creds, None);
    }
}
