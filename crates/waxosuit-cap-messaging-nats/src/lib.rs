//! The NATS-backed `wascc:messaging` provider of Waxosuit.
//!
//! Actors publish, subscribe and make requests through a real NATS server,
//! so they talk to each other across hosts and to any other NATS client.
//! Configuration keys and behaviour follow the 2020 `wascc-nats` provider,
//! so existing manifests keep working.
//!
//! # A guided tour
//!
//! * [`NatsMessaging::new`] builds the provider. Register it with the host
//!   like any [`CapabilityProvider`]; the dispatcher it gets in
//!   [`start`](CapabilityProvider::start) is how messages reach actors.
//! * **Binding configuration** ([`bind_actor`](CapabilityProvider::bind_actor)):
//!
//!   | Key | Meaning |
//!   |---|---|
//!   | [`URL`] | server URL, default [`DEFAULT_URL`] |
//!   | [`SUBSCRIPTION`] | comma-separated subjects to receive (NATS wildcards allowed) |
//!   | [`QUEUEGROUP_NAME`] | optional; subscribe as a member of this queue group |
//!   | [`CREDSFILE`] | optional path of a NATS `.creds` file (user JWT and seed) |
//!
//!   **Each binding has its own connection**, named [`CONNECTION_NAME`],
//!   as in `wascc-nats`: bindings never share credentials, and removing one
//!   closes exactly its connection. Binding again replaces the pair's
//!   connection and subscriptions.
//! * **Failures at bind time.** A server that cannot be reached fails the
//!   bind at once with [`ProviderError::Unavailable`] naming the URL; the
//!   provider does not retry in the background, so a manifest error shows
//!   up when the host starts rather than as silence later. A URL that does
//!   not parse, a subject that is not valid, or a `CREDSFILE` that cannot
//!   be read is a [`ProviderError::Config`] naming the key.
//! * **After the bind**, the connection survives server restarts: the
//!   client reconnects without limit and re-subscribes, so subscriptions
//!   come back by themselves. [`health`](CapabilityProvider::health)
//!   reports bindings whose connection is down.
//! * **Operations**, from bound actors only (others get
//!   [`ProviderError::NotBound`]):
//!   * `Publish` ([`BrokerMessage`]; empty reply) publishes, with the reply
//!     subject when `replyTo` is not empty.
//!   * `Request` ([`RequestMessage`]) sends a request and returns the raw
//!     reply body. `timeout` is in milliseconds; `0` or less means
//!     [`DEFAULT_REQUEST_TIMEOUT`]. It fails with "no responders for
//!     SUBJECT" when the server knows nobody is subscribed, and with "no
//!     reply on SUBJECT within N ms" when nobody answered in time; both are
//!     [`ProviderError::Backend`] errors (see [`MessagingError`]).
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
//! let nats = NatsMessaging::new();
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
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::messaging::{
    BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE,
    RequestMessage,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, Health, ProviderCall,
    ProviderError, decode, encode,
};

/// Binding key: the NATS server URL.
pub const URL: &str = "URL";
/// Binding key: comma-separated subjects to subscribe to.
pub const SUBSCRIPTION: &str = "SUBSCRIPTION";
/// Binding key: queue group for the binding's subscriptions.
pub const QUEUEGROUP_NAME: &str = "QUEUEGROUP_NAME";
/// Binding key: path of a NATS `.creds` file.
pub const CREDSFILE: &str = "CREDSFILE";
/// The server used when a binding has no [`URL`].
pub const DEFAULT_URL: &str = "nats://127.0.0.1:4222";
/// How long a `Request` waits when its `timeout` is `0` or negative.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The connection name servers show for this provider's clients.
pub const CONNECTION_NAME: &str = "Waxosuit NATS Provider";
/// How long a bind waits for the server to confirm its subscriptions.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);
/// Undelivered messages one subscription may hold before the client drops
/// new ones (the NATS "slow consumer" case).
pub const SUBSCRIPTION_CAPACITY: usize = 1024;

/// Why a messaging operation failed. Each converts into the
/// [`ProviderError`] the actor sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// The server reported no subscription for the request subject.
    #[error("no responders for {subject}")]
    NoResponders {
        /// The request subject.
        subject: String,
    },
    /// Nobody replied before the request's deadline.
    #[error("no reply on {subject} within {timeout_ms} ms")]
    TimedOut {
        /// The request subject.
        subject: String,
        /// The deadline used, in milliseconds.
        timeout_ms: u128,
    },
    /// The client refused or failed the operation.
    #[error("{operation} on {subject} failed: {reason}")]
    Client {
        /// `publish`, `request`, …
        operation: &'static str,
        /// The subject.
        subject: String,
        /// What the client said.
        reason: String,
    },
}

impl From<MessagingError> for ProviderError {
    fn from(e: MessagingError) -> ProviderError {
        ProviderError::backend(CAPABILITY_ID, e)
    }
}

/// The NATS `wascc:messaging` provider. See the [crate docs](crate).
pub struct NatsMessaging {
    inner: Arc<Inner>,
}

impl Default for NatsMessaging {
    fn default() -> Self {
        NatsMessaging::new()
    }
}

impl NatsMessaging {
    /// A provider with no bindings yet.
    pub fn new() -> NatsMessaging {
        NatsMessaging {
            inner: Arc::new(Inner {
                dispatcher: RwLock::new(None),
                bindings: Bindings::new(CAPABILITY_ID),
            }),
        }
    }

    fn client(&self, actor: &str, binding: &str) -> Result<Client, ProviderError> {
        self.inner.bindings.read_all(|map| {
            map.get(&(actor.to_string(), binding.to_string()))
                .map(|b| b.client.clone())
                .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))
        })
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
        self.dispatcher
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

struct NatsBinding {
    client: Client,
    url: String,
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
    subjects: Vec<String>,
    queue: Option<String>,
    creds: Option<String>,
}

fn parse_config(request: &BindRequest) -> Result<BindConfig, ProviderError> {
    let config_error = |key: &str, reason: String| ProviderError::Config {
        capid: CAPABILITY_ID.to_string(),
        actor: request.actor.clone(),
        key: key.to_string(),
        reason,
    };
    let value = |key: &str| {
        request
            .values
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let mut subjects = Vec::new();
    if let Some(list) = value(SUBSCRIPTION) {
        for subject in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            check_subject(subject).map_err(|reason| {
                config_error(
                    SUBSCRIPTION,
                    format!("has an invalid subject `{subject}`: {reason}"),
                )
            })?;
            subjects.push(subject.to_string());
        }
    }
    let queue = value(QUEUEGROUP_NAME).map(str::to_string);
    if let Some(q) = &queue
        && q.chars().any(char::is_whitespace)
    {
        return Err(config_error(
            QUEUEGROUP_NAME,
            format!("`{q}` contains whitespace"),
        ));
    }
    Ok(BindConfig {
        url: value(URL).unwrap_or(DEFAULT_URL).to_string(),
        subjects,
        queue,
        creds: value(CREDSFILE).map(str::to_string),
    })
}

/// The syntax checks a NATS server applies to subscriptions, done here so
/// the error names the binding key instead of surfacing as a server error.
fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.chars().any(char::is_whitespace) {
        return Err("it contains whitespace");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("it has an empty token");
        }
        if *token != "*" && *token != ">" && (token.contains('*') || token.contains('>')) {
            return Err("`*` and `>` must be whole tokens");
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err("`>` may only be the last token");
        }
    }
    Ok(())
}

impl NatsMessaging {
    async fn connect(
        &self,
        request: &BindRequest,
        config: &BindConfig,
    ) -> Result<Client, ProviderError> {
        let url = config.url.clone();
        let mut options = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            // Unlimited reconnects: a server restart must not end the binding.
            .max_reconnects(None)
            .event_callback(move |event| {
                let url = url.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!(%url, "NATS connection (re)established");
                        }
                        other => tracing::warn!(%url, event = %other, "NATS connection event"),
                    }
                }
            });
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
                    reason: format!("`{}` is not a NATS server URL: {e}", config.url),
                },
                _ => ProviderError::Unavailable {
                    capid: CAPABILITY_ID.to_string(),
                    reason: format!("cannot connect to NATS at {}: {e}", config.url),
                },
            })
    }

    async fn request(
        &self,
        client: &Client,
        request: RequestMessage,
    ) -> Result<Vec<u8>, ProviderError> {
        let timeout = match u64::try_from(request.timeout_ms) {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => DEFAULT_REQUEST_TIMEOUT,
        };
        let outgoing = async_nats::Request::new()
            .payload(request.body.into())
            .timeout(Some(timeout));
        match client.send_request(request.subject.clone(), outgoing).await {
            Ok(reply) => Ok(reply.payload.to_vec()),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => MessagingError::NoResponders {
                    subject: request.subject,
                },
                RequestErrorKind::TimedOut => MessagingError::TimedOut {
                    subject: request.subject,
                    timeout_ms: timeout.as_millis(),
                },
                _ => MessagingError::Client {
                    operation: "request",
                    subject: request.subject,
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
    client: Client,
    actor: String,
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
                if let Some(reply_to) = message.reply
                    && let Err(e) = client.publish(reply_to.clone(), reply.into()).await
                {
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
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit NATS messaging provider")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description("Publish/subscribe and request/reply through a NATS server")
            .with_operation(
                OP_PUBLISH_MESSAGE,
                OperationDirection::ToProvider,
                "Publishes a message to a subject",
            )
            .with_operation(
                OP_PERFORM_REQUEST,
                OperationDirection::ToProvider,
                "Sends a request and waits for one reply",
            )
            .with_operation(
                OP_DELIVER_MESSAGE,
                OperationDirection::ToActor,
                "Delivers a message on a subscribed subject",
            )
            .build()
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
        let config = parse_config(&request)?;
        let client = self.connect(&request, &config).await?;
        let subscribe_error = |subject: &str, e: &dyn std::fmt::Display| {
            ProviderError::from(MessagingError::Client {
                operation: "subscribe",
                subject: subject.to_string(),
                reason: e.to_string(),
            })
        };
        let mut subscribers = Vec::new();
        for subject in &config.subjects {
            let subscriber = match &config.queue {
                Some(q) => client.queue_subscribe(subject.clone(), q.clone()).await,
                None => client.subscribe(subject.clone()).await,
            }
            .map_err(|e| subscribe_error(subject, &e))?;
            subscribers.push(subscriber);
        }
        if !subscribers.is_empty() {
            // The server must know the subscriptions before the bind
            // returns, or messages published right after it would be missed.
            round_trip(&client)
                .await
                .map_err(|e| subscribe_error(&config.subjects.join(","), &e))?;
        }
        let tasks = subscribers
            .into_iter()
            .map(|subscriber| {
                tokio::spawn(deliver_loop(
                    Arc::downgrade(&self.inner),
                    client.clone(),
                    request.actor.clone(),
                    subscriber,
                ))
            })
            .collect();
        let binding = NatsBinding {
            client,
            url: config.url,
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
        let client = self.client(&call.actor, &call.binding)?;
        match call.operation.as_str() {
            OP_PUBLISH_MESSAGE => {
                let message: BrokerMessage = decode(CAPABILITY_ID, &call)?;
                let subject = message.subject.clone();
                let sent = if message.reply_to.is_empty() {
                    client.publish(message.subject, message.body.into()).await
                } else {
                    client
                        .publish_with_reply(message.subject, message.reply_to, message.body.into())
                        .await
                };
                sent.map_err(|e| MessagingError::Client {
                    operation: "publish",
                    subject,
                    reason: e.to_string(),
                })?;
                Ok(Vec::new())
            }
            OP_PERFORM_REQUEST => {
                let request: RequestMessage = decode(CAPABILITY_ID, &call)?;
                self.request(&client, request).await
            }
            other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
        }
    }

    async fn health(&self) -> Health {
        let (count, down): (usize, Vec<String>) = self.inner.bindings.read_all(|bindings| {
            let down = bindings
                .iter()
                .filter(|(_, b)| b.client.connection_state() != State::Connected)
                .map(|((actor, binding), b)| format!("{actor} (binding `{binding}`) to {}", b.url))
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

impl Drop for NatsMessaging {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn subjects_are_checked_like_the_server_does() {
        for ok in ["a", "a.b", "a.*.c", "a.>", ">", "_INBOX.x"] {
            assert!(check_subject(ok).is_ok(), "{ok}");
        }
        for bad in ["a..b", ".a", "a.", "a b", "a.>.b", "a*", "b>"] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
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
        let config = parse_config(&request).unwrap();
        assert_eq!(config.url, DEFAULT_URL);
        assert_eq!(config.subjects, vec!["a", "b.*"]);
        assert_eq!(config.queue, None);
        assert_eq!(config.creds, None);
    }
}
