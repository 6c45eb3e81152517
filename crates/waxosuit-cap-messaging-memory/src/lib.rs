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
//!   [`MemoryMessaging::with_queue_capacity`] changes the default of
//!   [`MAX_QUEUED_MESSAGES`]. Register it with the host like any
//!   [`CapabilityProvider`]: the dispatcher it gets in
//!   [`start`](CapabilityProvider::start) is how messages reach actors.
//! * **Binding configuration** ([`bind_actor`](CapabilityProvider::bind_actor)):
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`SUBSCRIPTION`] | none | comma-separated subjects to receive; `*` stands for one token, a final `>` for one or more |
//!   | [`QUEUEGROUP_NAME`] | none | subscriptions with the same subject and group name share the messages, each going to one member only |
//!   | [`MAX_SUBSCRIPTIONS`] | `64` | most subjects `SUBSCRIPTION` may list |
//!   | [`MAX_QUEUED_MESSAGES`] | `1024` | most messages waiting for this binding's actor, over all its subscriptions |
//!   | [`MAX_QUEUED_BYTES`] | `16777216` (16 MiB) | most bytes (encoded `DeliverMessage` payloads) waiting likewise |
//!
//!   Binding again replaces the pair's subscriptions and quotas (messages
//!   still queued for the old subscriptions are discarded); an invalid
//!   subject or value, or more subjects than `MAX_SUBSCRIPTIONS`, fails
//!   with [`ProviderError::Config`].
//! * **Operations**, from bound actors only (others get
//!   [`ProviderError::NotBound`]):
//!   * `Publish` ([`BrokerMessage`]; empty reply) queues a `DeliverMessage`
//!     with that message for every matching subscription and returns at
//!     once. Delivery happens later on the subscription's own task, never on
//!     the publisher's call stack, so an actor may publish to a subject it
//!     subscribes to without deadlocking itself. A message nobody
//!     subscribes to is dropped silently, as in NATS.
//!   * `Request` ([`RequestMessage`](waxosuit_codec::messaging::RequestMessage); the reply is the raw reply body)
//!     delivers the body with `replyTo` set to a fresh `_INBOX.…` subject
//!     (128 random bits: an actor that was not handed it cannot guess it
//!     and answer in the responder's place) and waits for the first message
//!     published there. A responder answers
//!     either by publishing to `replyTo`, or — a convenience of Waxosuit —
//!     simply by **returning non-empty bytes from its `DeliverMessage`
//!     handler**, which the broker publishes to `replyTo` for it. The first
//!     reply wins. `timeout` is in milliseconds, at most
//!     [`MAX_REQUEST_TIMEOUT`]; `0` or less means
//!     [`DEFAULT_REQUEST_TIMEOUT`]. With no matching subscription the
//!     request fails at once with "no responders for SUBJECT"; without a
//!     reply in time it fails with "no reply on SUBJECT within N ms". Both
//!     are [`ProviderError::Backend`] errors (see [`MessagingError`]); a
//!     request still waiting when the broker shuts down fails with
//!     [`ProviderError::Unavailable`].
//! * **Back-pressure.** Each subscription has a queue delivered in order by
//!   one task; the queues of one binding share its `MAX_QUEUED_MESSAGES`
//!   and `MAX_QUEUED_BYTES` (a message counts from when it is queued until
//!   its delivery starts). When an actor cannot keep up and its binding's
//!   quota is full, further messages for it are dropped rather than held in
//!   unbounded memory, as NATS drops messages for a slow consumer; a
//!   `tracing` warning, at most one per second per binding, says how many
//!   and which value to raise. A queue group member whose quota is full is
//!   skipped in favour of another member. If a `Publish` or `Request`
//!   matched subscriptions but **every one of them** refused it for its
//!   quota, the call fails with [`MessagingError::QueueFull`] naming the
//!   subscribers, their bindings and the quota to raise, so the sender
//!   knows nothing will arrive (a NATS server would not tell it); when some
//!   subscriptions took the message, the call succeeds.
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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use waxosuit_cap_messaging::subject::Pattern;
use waxosuit_cap_messaging::{Broker, Caller, Subscriptions};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, Health, ProviderCall, ProviderError,
};

pub use waxosuit_cap_messaging::{
    DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_REQUEST_TIMEOUT, MAX_QUEUED_BYTES, MAX_QUEUED_MESSAGES,
    MAX_REQUEST_TIMEOUT, MAX_SUBSCRIPTIONS, MessagingError, QUEUEGROUP_NAME, QueueRefusal,
    SUBSCRIPTION, subject,
};

/// [`MAX_QUEUED_MESSAGES`] when neither the binding nor
/// [`MemoryMessaging::with_queue_capacity`] sets it.
pub const DEFAULT_QUEUE_CAPACITY: usize = waxosuit_cap_messaging::DEFAULT_MAX_QUEUED_MESSAGES;
/// [`MAX_QUEUED_BYTES`] when the binding does not set it (16 MiB).
pub const DEFAULT_MAX_QUEUED_BYTES: u64 = waxosuit_cap_messaging::DEFAULT_MAX_QUEUED_BYTES;
/// Dropped messages are reported at most once per this interval per binding.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// How many refusals a [`MessagingError::QueueFull`] keeps and shows.
const REFUSALS_SHOWN: usize = 3;

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
    /// A broker whose bindings may each have [`DEFAULT_QUEUE_CAPACITY`]
    /// messages waiting unless they set [`MAX_QUEUED_MESSAGES`].
    pub fn new() -> MemoryMessaging {
        MemoryMessaging::with_queue_capacity(DEFAULT_QUEUE_CAPACITY)
    }

    /// A broker whose bindings may each have up to `capacity` undelivered
    /// messages (at least 1) unless they set [`MAX_QUEUED_MESSAGES`].
    pub fn with_queue_capacity(capacity: usize) -> MemoryMessaging {
        MemoryMessaging {
            inner: Arc::new(Inner {
                default_max_queued: capacity.max(1),
                dispatcher: RwLock::new(None),
                bindings: Bindings::new(CAPABILITY_ID),
                inboxes: Mutex::new(HashMap::new()),
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

    /// Messages queued and not yet being delivered, over all bindings.
    pub fn queued_messages(&self) -> usize {
        self.inner.bindings.read_all(|bindings| {
            bindings
                .values()
                .map(|pair| pair.backlog.state.lock().messages)
                .sum()
        })
    }
}

struct Inner {
    /// [`MAX_QUEUED_MESSAGES`] of bindings that do not set it.
    default_max_queued: usize,
    dispatcher: RwLock<Option<Arc<dyn ActorDispatcher>>>,
    bindings: Bindings<BoundPair>,
    /// Pending requests by inbox subject; the first publish there answers.
    inboxes: Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>,
    /// Rotates queue group deliveries among members.
    next_member: AtomicUsize,
}

struct BoundPair {
    subs: Vec<Arc<Subscription>>,
    tasks: Vec<JoinHandle<()>>,
    backlog: Arc<Backlog>,
}

impl BoundPair {
    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

struct Subscription {
    pattern: Pattern,
    queue: Option<String>,
    /// Unbounded: the binding's [`Backlog`] is the bound, shared by all its
    /// subscriptions, which a per-channel capacity could not express.
    tx: mpsc::UnboundedSender<Queued>,
    backlog: Arc<Backlog>,
}

/// A message on its way to one subscription: the `DeliverMessage` payload,
/// encoded once per publish and shared by all recipients.
#[derive(Clone)]
struct Delivery {
    payload: Arc<Vec<u8>>,
    subject: String,
    reply_to: String,
}

/// A delivery in a subscription's queue, holding its room in the backlog.
struct Queued {
    delivery: Delivery,
    slot: Slot,
}

/// What one binding may have waiting for its actor, and what it has.
struct Backlog {
    actor: String,
    binding: String,
    max_messages: usize,
    max_bytes: u64,
    state: Mutex<BacklogState>,
}

#[derive(Default)]
struct BacklogState {
    messages: usize,
    bytes: u64,
    /// Messages dropped since the last warning.
    dropped: u64,
    /// When the last warning was written; `None` before the first.
    warned: Option<Instant>,
}

impl Backlog {
    /// Takes room for one message of `bytes`, or says which quota is full.
    fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Slot, QueueRefusal> {
        let mut state = self.state.lock();
        let full = if state.messages >= self.max_messages {
            Some((MAX_QUEUED_MESSAGES, self.max_messages as u64))
        } else if state.bytes.saturating_add(bytes) > self.max_bytes {
            Some((MAX_QUEUED_BYTES, self.max_bytes))
        } else {
            None
        };
        if let Some((quota, limit)) = full {
            return Err(QueueRefusal {
                actor: self.actor.clone(),
                binding: self.binding.clone(),
                quota,
                limit,
            });
        }
        state.messages += 1;
        state.bytes += bytes;
        Ok(Slot {
            backlog: Arc::clone(self),
            bytes,
        })
    }

    /// Counts a message dropped for this binding and warns, at most once per
    /// [`DROP_WARNING_INTERVAL`]: a flood must not become a flood of logs.
    fn dropped(&self, refusal: &QueueRefusal) {
        let now = Instant::now();
        let dropped = {
            let mut state = self.state.lock();
            state.dropped += 1;
            if state
                .warned
                .is_some_and(|at| now.saturating_duration_since(at) < DROP_WARNING_INTERVAL)
            {
                return;
            }
            state.warned = Some(now);
            std::mem::take(&mut state.dropped)
        };
        tracing::warn!(
            actor = %self.actor,
            binding = %self.binding,
            dropped,
            quota = refusal.quota,
            limit = refusal.limit,
            "wascc:messaging: {dropped} message(s) dropped because the actor is not keeping up \
             with its subscriptions: its {} quota ({}) is full; raise it in the binding's values",
            refusal.quota,
            refusal.limit
        );
    }
}

/// Room taken in a [`Backlog`], given back when the message leaves the
/// queue however it leaves: delivered, or discarded with its subscription.
struct Slot {
    backlog: Arc<Backlog>,
    bytes: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.backlog.state.lock();
        state.messages -= 1;
        state.bytes -= self.bytes;
    }
}

/// What routing one message did.
#[derive(Debug, Default)]
struct Routed {
    /// Subscriptions matched, a queue group counting once.
    matched: usize,
    /// Of those, how many took the message (a waiting request's inbox
    /// counts too).
    delivered: usize,
    /// The first few subscriptions that refused it for their quota.
    refused: Vec<QueueRefusal>,
}

impl Routed {
    /// An error when subscriptions matched but all refused for their quota.
    fn check(self, subject: &str) -> Result<usize, MessagingError> {
        if self.delivered == 0 && !self.refused.is_empty() {
            return Err(MessagingError::QueueFull {
                subject: subject.to_string(),
                refused: self.refused,
            });
        }
        Ok(self.matched)
    }

    fn refuse(&mut self, refusal: QueueRefusal) {
        if self.refused.len() < REFUSALS_SHOWN {
            self.refused.push(refusal);
        }
    }
}

impl Inner {
    fn dispatcher(&self) -> Option<Arc<dyn ActorDispatcher>> {
        self.dispatcher.read().clone()
    }

    /// Routes one message; says how many subscriptions (queue groups
    /// counted once) it matched and which took it. Never blocks and never
    /// calls an actor, so it is safe on any call stack.
    fn route(&self, subject: &str, reply_to: &str, body: Vec<u8>) -> Result<Routed, ProviderError> {
        let mut routed = Routed::default();
        if let Some(waiter) = self.inboxes.lock().remove(subject) {
            // The requester may have given up already; that is not an error.
            if waiter.send(body.clone()).is_ok() {
                routed.delivered += 1;
            }
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
        self.bindings.read_all(|bindings| {
            let mut groups: BTreeMap<(&Pattern, &str), Vec<&Subscription>> = BTreeMap::new();
            for sub in bindings.values().flat_map(|b| &b.subs) {
                if !sub.pattern.matches(subject) {
                    continue;
                }
                match &sub.queue {
                    Some(q) => groups.entry((&sub.pattern, q)).or_default().push(sub),
                    None => {
                        routed.matched += 1;
                        match offer(sub, delivery.clone()) {
                            Offer::Queued => routed.delivered += 1,
                            Offer::Refused(refusal) => {
                                sub.backlog.dropped(&refusal);
                                routed.refuse(refusal);
                            }
                            Offer::Closed => {}
                        }
                    }
                }
            }
            for (_, members) in groups {
                routed.matched += 1;
                let start = self.next_member.fetch_add(1, Ordering::Relaxed);
                let mut refusals = Vec::new();
                let taken = (0..members.len())
                    .map(|i| members[(start + i) % members.len()])
                    .any(|member| match offer(member, delivery.clone()) {
                        Offer::Queued => true,
                        Offer::Refused(refusal) => {
                            refusals.push((member, refusal));
                            false
                        }
                        Offer::Closed => false,
                    });
                if taken {
                    routed.delivered += 1;
                } else {
                    // Dropped for the whole group: each member that was
                    // full is told, as for a plain subscription.
                    for (member, refusal) in refusals {
                        member.backlog.dropped(&refusal);
                        routed.refuse(refusal);
                    }
                }
            }
        });
        Ok(routed)
    }
}

/// What became of a delivery offered to one subscription.
enum Offer {
    Queued,
    /// The binding's quota is full.
    Refused(QueueRefusal),
    /// The subscription's task has stopped (its binding is going away).
    Closed,
}

fn offer(sub: &Subscription, delivery: Delivery) -> Offer {
    let slot = match sub.backlog.reserve(delivery.payload.len() as u64) {
        Ok(slot) => slot,
        Err(refusal) => return Offer::Refused(refusal),
    };
    // On failure the message comes back in the error and is dropped here,
    // giving its room back.
    match sub.tx.send(Queued { delivery, slot }) {
        Ok(()) => Offer::Queued,
        Err(_) => Offer::Closed,
    }
}

/// Delivers one subscription's messages in order. It holds the broker only
/// weakly, so dropping the provider ends it.
async fn deliver_loop(inner: Weak<Inner>, actor: String, mut rx: mpsc::UnboundedReceiver<Queued>) {
    // An actor that fails every delivery (its own error text in each line)
    // would write a line per message: one per DROP_WARNING_INTERVAL, with
    // how many failed since.
    let mut warned: Option<Instant> = None;
    let mut failed_since = 0u64;
    while let Some(Queued { delivery, slot }) = rx.recv().await {
        // Out of the queue: the room is free again while the actor works.
        drop(slot);
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
                let now = Instant::now();
                if warned
                    .is_some_and(|at| now.saturating_duration_since(at) < DROP_WARNING_INTERVAL)
                {
                    failed_since += 1;
                    continue;
                }
                warned = Some(now);
                let unlogged = std::mem::take(&mut failed_since);
                tracing::warn!(
                    %actor,
                    subject = %delivery.subject,
                    error = %e,
                    failed_since_last_warning = unlogged,
                    "message delivery failed"
                );
            }
        }
    }
}

/// A request's reply subject: random, so that only actors it is delivered
/// to can answer (a counter let any bound actor publish to the next few
/// inboxes and answer other actors' requests first).
fn fresh_inbox() -> String {
    format!("_INBOX.WAXOSUIT.{:032x}", rand::random::<u128>())
}

/// Removes a request's inbox however the request ends, including when the
/// caller's future is dropped at its deadline.
struct InboxGuard<'a> {
    inner: &'a Inner,
    inbox: String,
}

impl Drop for InboxGuard<'_> {
    fn drop(&mut self) {
        self.inner.inboxes.lock().remove(&self.inbox);
    }
}

struct BindConfig {
    subscriptions: Subscriptions,
    max_queued_messages: usize,
    max_queued_bytes: u64,
}

fn parse_config(
    request: &BindRequest,
    default_max_queued: usize,
) -> Result<BindConfig, ProviderError> {
    Ok(BindConfig {
        subscriptions: Subscriptions::from_binding(request)?,
        max_queued_messages: request
            .positive(CAPABILITY_ID, MAX_QUEUED_MESSAGES)?
            .unwrap_or(default_max_queued),
        max_queued_bytes: request
            .positive(CAPABILITY_ID, MAX_QUEUED_BYTES)?
            .unwrap_or(DEFAULT_MAX_QUEUED_BYTES),
    })
}

#[async_trait]
impl CapabilityProvider for MemoryMessaging {
    fn descriptor(&self) -> CapabilityDescriptor {
        waxosuit_cap_messaging::descriptor(
            "Waxosuit in-memory message broker",
            "In-process publish/subscribe and request/reply with NATS subject rules",
        )
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *self.inner.dispatcher.write() = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let config = parse_config(&request, self.inner.default_max_queued)?;
        let backlog = Arc::new(Backlog {
            actor: request.actor.clone(),
            binding: request.binding.clone(),
            max_messages: config.max_queued_messages,
            max_bytes: config.max_queued_bytes,
            state: Mutex::new(BacklogState::default()),
        });
        let mut pair = BoundPair {
            subs: Vec::new(),
            tasks: Vec::new(),
            backlog: Arc::clone(&backlog),
        };
        if !config.subscriptions.patterns.is_empty() {
            // `tokio::spawn` would panic outside a runtime; say so instead.
            let runtime =
                tokio::runtime::Handle::try_current().map_err(|e| ProviderError::Internal {
                    capid: CAPABILITY_ID.to_string(),
                    message: format!("cannot start the delivery tasks: {e}"),
                })?;
            for pattern in config.subscriptions.patterns {
                let (tx, rx) = mpsc::unbounded_channel();
                pair.tasks.push(runtime.spawn(deliver_loop(
                    Arc::downgrade(&self.inner),
                    request.actor.clone(),
                    rx,
                )));
                pair.subs.push(Arc::new(Subscription {
                    pattern,
                    queue: config.subscriptions.queue.clone(),
                    tx,
                    backlog: Arc::clone(&backlog),
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
        waxosuit_cap_messaging::dispatch(self, &call).await
    }

    async fn health(&self) -> Health {
        let (count, subscriptions) = self.inner.bindings.read_all(|bindings| {
            let subscriptions: usize = bindings.values().map(|b| b.subs.len()).sum();
            (bindings.len(), subscriptions)
        });
        let queued = self.queued_messages();
        Health {
            healthy: true,
            message: format!(
                "{count} bindings, {subscriptions} subscriptions, {queued} messages queued"
            ),
        }
    }

    async fn shutdown(&self) {
        *self.inner.dispatcher.write() = None;
        for pair in self.inner.bindings.drain() {
            pair.stop();
        }
        // Dropping the senders wakes every waiting request with `ShutDown`.
        self.inner.inboxes.lock().clear();
    }
}

/// The operation table's view of the broker, for a caller already found
/// bound.
#[async_trait]
impl Broker for MemoryMessaging {
    async fn publish(
        &self,
        _caller: &Caller<'_>,
        message: BrokerMessage,
    ) -> Result<(), ProviderError> {
        self.inner
            .route(&message.subject, &message.reply_to, message.body)?
            .check(&message.subject)?;
        Ok(())
    }

    async fn request(
        &self,
        _caller: &Caller<'_>,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let inbox = fresh_inbox();
        let (tx, rx) = oneshot::channel();
        // Registered before routing: a responder may answer before `route`
        // even returns.
        self.inner.inboxes.lock().insert(inbox.clone(), tx);
        let _guard = InboxGuard {
            inner: &self.inner,
            inbox: inbox.clone(),
        };
        let matched = self.inner.route(&subject, &inbox, body)?.check(&subject)?;
        if matched == 0 {
            return Err(MessagingError::NoResponders { subject }.into());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(MessagingError::ShutDown { subject }.into()),
            Err(_) => Err(MessagingError::TimedOut {
                subject,
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
