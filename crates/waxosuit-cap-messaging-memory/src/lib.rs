//! The embedded, in-process `wascc:messaging` broker of Waxosuit.
//!
//! Actors written against the waSCC messaging contract can publish,
//! subscribe and make requests to each other with no message server to
//! run. Subjects follow NATS rules, so the same actor behaves the same when
//! its manifest later points it at a NATS binding.
//!
//! # A guided tour
//!
//! * [`MemoryMessaging::new`] builds the provider (one broker per provider
//!   instance; actors bound to the same instance share its subjects);
//!   [`MemoryMessaging::with_queue_capacity`] sizes the per-subscription
//!   queues. Register it with the host like any [`CapabilityProvider`]: the
//!   dispatcher it gets in [`start`](CapabilityProvider::start) is how
//!   messages reach actors.
//! * **Binding configuration** ([`bind_actor`](CapabilityProvider::bind_actor)):
//!
//!   | Key | Meaning |
//!   |---|---|
//!   | [`SUBSCRIPTION`] | comma-separated subjects to receive; `*` stands for one token, a final `>` for one or more |
//!   | [`QUEUEGROUP_NAME`] | optional; subscriptions with the same subject and group name share the messages, each going to one member only |
//!
//!   Binding again replaces the pair's subscriptions; an invalid subject
//!   fails with [`ProviderError::Config`].
//! * **Operations**, from bound actors only (others get
//!   [`ProviderError::NotBound`]):
//!   * `Publish` ([`BrokerMessage`]; empty reply) queues a `DeliverMessage`
//!     with that message for every matching subscription and returns at
//!     once. Delivery happens later on the subscription's own task, never on
//!     the publisher's call stack, so an actor may publish to a subject it
//!     subscribes to without deadlocking itself. A message nobody
//!     subscribes to is dropped silently, as in NATS.
//!   * `Request` ([`RequestMessage`]; the reply is the raw reply body)
//!     delivers the body with `replyTo` set to a fresh `_INBOX.…` subject
//!     and waits for the first message published there. A responder answers
//!     either by publishing to `replyTo`, or — a convenience of Waxosuit —
//!     simply by **returning non-empty bytes from its `DeliverMessage`
//!     handler**, which the broker publishes to `replyTo` for it. The first
//!     reply wins. `timeout` is in milliseconds; `0` or less means
//!     [`DEFAULT_REQUEST_TIMEOUT`]. With no matching subscription the
//!     request fails at once with "no responders for SUBJECT"; without a
//!     reply in time it fails with "no reply on SUBJECT within N ms". Both
//!     are [`ProviderError::Backend`] errors (see [`MessagingError`]); a
//!     request still waiting when the broker shuts down fails with
//!     [`ProviderError::Unavailable`].
//! * **Back-pressure.** Each subscription has a bounded queue delivered in
//!   order by one task. When an actor cannot keep up and its queue is full,
//!   further messages for it are dropped with a `tracing` warning rather
//!   than held in unbounded memory. A queue group member with a full queue
//!   is skipped in favour of another member.
//! * [`remove_actor`](CapabilityProvider::remove_actor) and
//!   [`shutdown`](CapabilityProvider::shutdown) stop the delivery tasks at
//!   once; queued messages are discarded. [`MemoryMessaging::subscriber_count`]
//!   tells how many subscriptions a subject would reach.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_messaging_memory::MemoryMessaging;
//! use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID, OP_PUBLISH_MESSAGE};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = MemoryMessaging::new();
//! broker
//!     .bind_actor(BindRequest {
//!         actor: "MLISTENER".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([("SUBSCRIPTION".into(), "orders.*".into())]),
//!     })
//!     .await?;
//! assert_eq!(broker.subscriber_count("orders.new"), 1);
//! let message = BrokerMessage {
//!     subject: "orders.new".into(),
//!     reply_to: String::new(),
//!     body: b"{}".to_vec(),
//! };
//! // A bound actor publishes; MLISTENER gets a `DeliverMessage` through
//! // the dispatcher the host passed to `start`.
//! broker
//!     .handle_call(ProviderCall {
//!         actor: "MLISTENER".into(),
//!         binding: "default".into(),
//!         operation: OP_PUBLISH_MESSAGE.into(),
//!         payload: encode(CAPABILITY_ID, &message)?,
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod subject;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{
    Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::messaging::{
    BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE,
    RequestMessage,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, Health, ProviderCall,
    ProviderError, decode,
};

use crate::subject::{Pattern, SubjectError, check_publish_subject};

/// Binding key: comma-separated subjects (patterns) to subscribe to.
pub const SUBSCRIPTION: &str = "SUBSCRIPTION";
/// Binding key: queue group shared by the binding's subscriptions.
pub const QUEUEGROUP_NAME: &str = "QUEUEGROUP_NAME";
/// Messages each subscription may hold before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// How long a `Request` waits when its `timeout` is `0` or negative.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a messaging operation failed. Each converts into the
/// [`ProviderError`] the actor sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessagingError {
    /// A request found no subscription for its subject.
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
    /// A subject in a call is not valid.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The provider shut down while the request waited.
    #[error("the broker shut down before a reply on {subject} arrived")]
    ShutDown {
        /// The request subject.
        subject: String,
    },
}

impl From<MessagingError> for ProviderError {
    fn from(e: MessagingError) -> ProviderError {
        match e {
            MessagingError::ShutDown { .. } => ProviderError::Unavailable {
                capid: CAPABILITY_ID.to_string(),
                reason: e.to_string(),
            },
            _ => ProviderError::backend(CAPABILITY_ID, e),
        }
    }
}

/// The embedded `wascc:messaging` provider. See the [crate docs](crate).
pub struct MemoryMessaging {
    inner: Arc<Inner>,
}

impl Default for MemoryMessaging {
    fn default() -> Self {
        MemoryMessaging::new()
    }
}

impl MemoryMessaging {
    /// A broker with [`DEFAULT_QUEUE_CAPACITY`] per subscription.
    pub fn new() -> MemoryMessaging {
        MemoryMessaging::with_queue_capacity(DEFAULT_QUEUE_CAPACITY)
    }

    /// A broker whose subscriptions each hold up to `capacity` undelivered
    /// messages (at least 1).
    pub fn with_queue_capacity(capacity: usize) -> MemoryMessaging {
        MemoryMessaging {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                dispatcher: RwLock::new(None),
                bindings: Bindings::new(CAPABILITY_ID),
                inboxes: Mutex::new(HashMap::new()),
                next_inbox: AtomicU64::new(0),
                next_member: AtomicUsize::new(0),
            }),
        }
    }

    /// How many subscriptions a message published to `subject` would reach
    /// (a queue group counts once).
    pub fn subscriber_count(&self, subject: &str) -> usize {
        self.inner.bindings.read_all(|bindings| {
            let mut groups = BTreeMap::new();
            let mut plain = 0;
            for sub in bindings.values().flat_map(|b| &b.subs) {
                if sub.pattern.matches(subject) {
                    match &sub.queue {
                        Some(q) => {
                            groups.insert((sub.pattern.clone(), q.clone()), ());
                        }
                        None => plain += 1,
                    }
                }
            }
            plain + groups.len()
        })
    }
}

struct Inner {
    capacity: usize,
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
    bindings: Bindings<BoundPair>,
    /// Pending requests by inbox subject; the first publish there answers.
    inboxes: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    next_inbox: AtomicU64,
    /// Rotates queue group deliveries among members.
    next_member: AtomicUsize,
}

struct BoundPair {
    subs: Vec<Arc<Subscription>>,
    tasks: Vec<JoinHandle<()>>,
}

impl BoundPair {
    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

struct Subscription {
    actor: String,
    pattern: Pattern,
    queue: Option<String>,
    tx: mpsc::Sender<Delivery>,
}

/// A message on its way to one subscription: the `DeliverMessage` payload,
/// encoded once per publish and shared by all recipients.
#[derive(Clone)]
struct Delivery {
    payload: Arc<Vec<u8>>,
    subject: String,
    reply_to: String,
}

impl Inner {
    fn dispatcher(&self) -> Option<Arc<dyn ActorDispatcher>> {
        read(&self.dispatcher).clone()
    }

    /// Routes one message; returns how many subscriptions (queue groups
    /// counted once) it matched. Never blocks and never calls an actor, so
    /// it is safe on any call stack.
    fn route(&self, subject: &str, reply_to: &str, body: Vec<u8>) -> Result<usize, ProviderError> {
        if let Some(waiter) = lock(&self.inboxes).remove(subject) {
            // The requester may have given up already; that is not an error.
            let _ = waiter.send(body.clone());
        }
        let message = BrokerMessage {
            subject: subject.to_string(),
            reply_to: reply_to.to_string(),
            body,
        };
        let delivery = Delivery {
            payload: Arc::new(waxosuit_provider::encode(CAPABILITY_ID, &message)?),
            subject: message.subject,
            reply_to: message.reply_to,
        };
        let matched = self.bindings.read_all(|bindings| {
            let mut groups: BTreeMap<(&Pattern, &str), Vec<&Subscription>> = BTreeMap::new();
            let mut matched = 0;
            for sub in bindings.values().flat_map(|b| &b.subs) {
                if !sub.pattern.matches(subject) {
                    continue;
                }
                match &sub.queue {
                    Some(q) => groups.entry((&sub.pattern, q)).or_default().push(sub),
                    None => {
                        matched += 1;
                        offer(sub, delivery.clone());
                    }
                }
            }
            for ((pattern, group), members) in groups {
                matched += 1;
                let start = self.next_member.fetch_add(1, Ordering::Relaxed);
                let taken = (0..members.len())
                    .map(|i| members[(start + i) % members.len()])
                    .any(|member| try_offer(member, delivery.clone()));
                if !taken {
                    tracing::warn!(
                        subject,
                        subscription = %pattern,
                        queue_group = group,
                        "every member of the queue group is behind; message dropped"
                    );
                }
            }
            matched
        });
        Ok(matched)
    }
}

/// Queues a delivery for a plain subscription, warning when it is dropped.
fn offer(sub: &Subscription, delivery: Delivery) {
    if !try_offer(sub, delivery) {
        tracing::warn!(
            actor = %sub.actor,
            subscription = %sub.pattern,
            "actor is not keeping up with its subscription; message dropped"
        );
    }
}

fn try_offer(sub: &Subscription, delivery: Delivery) -> bool {
    sub.tx.try_send(delivery).is_ok()
}

/// Delivers one subscription's messages in order. It holds the broker only
/// weakly, so dropping the provider ends it.
async fn deliver_loop(inner: Weak<Inner>, actor: String, mut rx: mpsc::Receiver<Delivery>) {
    while let Some(delivery) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { break };
        let Some(dispatcher) = inner.dispatcher() else {
            tracing::warn!(%actor, subject = %delivery.subject, "broker not started; message dropped");
            continue;
        };
        let result = dispatcher
            .dispatch(&actor, OP_DELIVER_MESSAGE, delivery.payload.to_vec())
            .await;
        match result {
            Ok(reply) if !reply.is_empty() && !delivery.reply_to.is_empty() => {
                if let Err(e) = inner.route(&delivery.reply_to, "", reply) {
                    tracing::warn!(%actor, reply_to = %delivery.reply_to, error = %e, "cannot publish the actor's reply");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%actor, subject = %delivery.subject, error = %e, "message delivery failed");
            }
        }
    }
}

/// Removes a request's inbox however the request ends, including when the
/// caller's future is dropped at its deadline.
struct InboxGuard<'a> {
    inner: &'a Inner,
    inbox: String,
}

impl Drop for InboxGuard<'_> {
    fn drop(&mut self) {
        lock(&self.inner.inboxes).remove(&self.inbox);
    }
}

struct BindConfig {
    patterns: Vec<Pattern>,
    queue: Option<String>,
}

fn parse_config(request: &BindRequest) -> Result<BindConfig, ProviderError> {
    let config_error = |key: &str, reason: String| ProviderError::Config {
        capid: CAPABILITY_ID.to_string(),
        actor: request.actor.clone(),
        key: key.to_string(),
        reason,
    };
    let mut patterns = Vec::new();
    if let Some(list) = request.values.get(SUBSCRIPTION) {
        for subject in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let pattern =
                Pattern::parse(subject).map_err(|e| config_error(SUBSCRIPTION, e.to_string()))?;
            patterns.push(pattern);
        }
    }
    let queue = match request.values.get(QUEUEGROUP_NAME).map(|q| q.trim()) {
        None | Some("") => None,
        Some(q) if q.chars().any(char::is_whitespace) => {
            return Err(config_error(
                QUEUEGROUP_NAME,
                format!("`{q}` contains whitespace"),
            ));
        }
        Some(q) => Some(q.to_string()),
    };
    Ok(BindConfig { patterns, queue })
}

#[async_trait]
impl CapabilityProvider for MemoryMessaging {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit in-memory message broker")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "In-process publish/subscribe and request/reply with NATS subject rules",
            )
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
        *write(&self.inner.dispatcher) = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let config = parse_config(&request)?;
        let mut pair = BoundPair {
            subs: Vec::new(),
            tasks: Vec::new(),
        };
        if !config.patterns.is_empty() {
            // `tokio::spawn` would panic outside a runtime; say so instead.
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|e| ProviderError::Internal {
                    capid: CAPABILITY_ID.to_string(),
                    message: format!("cannot start the delivery tasks: {e}"),
                })?;
            for pattern in config.patterns {
                let (tx, rx) = mpsc::channel(self.inner.capacity);
                pair.tasks.push(runtime.spawn(deliver_loop(
                    Arc::downgrade(&self.inner),
                    request.actor.clone(),
                    rx,
                )));
                pair.subs.push(Arc::new(Subscription {
                    actor: request.actor.clone(),
                    pattern,
                    queue: config.queue.clone(),
                    tx,
                }));
            }
        }
        let previous = self
            .inner
            .bindings
            .insert(request.actor, request.binding, pair);
        if let Some(previous) = previous {
            previous.stop();
        }
        Ok(())
    }

    /// Stops the pair's subscriptions; an unknown pair is
    /// [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        self.inner.bindings.remove(actor, binding)?.stop();
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        if !self.inner.bindings.contains(&call.actor, &call.binding) {
            return Err(ProviderError::not_bound(
                CAPABILITY_ID,
                &call.actor,
                &call.binding,
            ));
        }
        match call.operation.as_str() {
            OP_PUBLISH_MESSAGE => {
                let message: BrokerMessage = decode(CAPABILITY_ID, &call)?;
                check_publish_subject(&message.subject).map_err(MessagingError::from)?;
                if !message.reply_to.is_empty() {
                    check_publish_subject(&message.reply_to).map_err(MessagingError::from)?;
                }
                self.inner
                    .route(&message.subject, &message.reply_to, message.body)?;
                Ok(Vec::new())
            }
            OP_PERFORM_REQUEST => {
                let request: RequestMessage = decode(CAPABILITY_ID, &call)?;
                self.request(request).await
            }
            other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
        }
    }

    async fn health(&self) -> Health {
        let (count, subscriptions) = self.inner.bindings.read_all(|bindings| {
            let subscriptions: usize = bindings.values().map(|b| b.subs.len()).sum();
            (bindings.len(), subscriptions)
        });
        Health {
            healthy: true,
            message: format!("{count} bindings, {subscriptions} subscriptions"),
        }
    }

    async fn shutdown(&self) {
        *write(&self.inner.dispatcher) = None;
        for pair in self.inner.bindings.drain() {
            pair.stop();
        }
        // Dropping the senders wakes every waiting request with `ShutDown`.
        lock(&self.inner.inboxes).clear();
    }
}

impl MemoryMessaging {
    async fn request(&self, request: RequestMessage) -> Result<Vec<u8>, ProviderError> {
        check_publish_subject(&request.subject).map_err(MessagingError::from)?;
        let timeout = match u64::try_from(request.timeout_ms) {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => DEFAULT_REQUEST_TIMEOUT,
        };
        let n = self.inner.next_inbox.fetch_add(1, Ordering::Relaxed);
        let inbox = format!("_INBOX.WAXOSUIT.{n}");
        let (tx, rx) = oneshot::channel();
        // Registered before routing: a responder may answer before `route`
        // even returns.
        lock(&self.inner.inboxes).insert(inbox.clone(), tx);
        let _guard = InboxGuard {
            inner: &self.inner,
            inbox: inbox.clone(),
        };
        let matched = self.inner.route(&request.subject, &inbox, request.body)?;
        if matched == 0 {
            return Err(MessagingError::NoResponders {
                subject: request.subject,
            }
            .into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(MessagingError::ShutDown {
                subject: request.subject,
            }
            .into()),
            Err(_) => Err(MessagingError::TimedOut {
                subject: request.subject,
                timeout_ms: timeout.as_millis(),
            }
            .into()),
        }
    }
}

impl Drop for MemoryMessaging {
    fn drop(&mut self) {
        // Tasks hold the broker weakly and would end on their own, but only
        // after their current delivery; stop them now.
        for pair in self.inner.bindings.drain() {
            pair.stop();
        }
    }
}

// A panic while a lock was held cannot leave these maps half-updated (every
// update is a single insert or remove), so a poisoned lock is still usable.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}
