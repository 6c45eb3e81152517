//! Messages from NATS to actors: one task per subscription hands each
//! message to the actor as `DeliverMessage` and publishes a non-empty answer
//! to the message's reply subject, unless that subject is reserved.
//!
//! Separate because it runs on its own task for as long as the binding
//! lives, apart from any call an actor makes. Each message is a consumer
//! span continuing the trace its headers carry ([`spans`]). Messages wait
//! for the actor in a queue bounded in number and bytes
//! ([`PendingSubscriber`]); what does not fit is dropped and logged.

use std::sync::{Arc, Weak};
use std::time::Instant;

use async_nats::{Client, Message, Subscriber};
use futures_util::StreamExt;
use tracing::{Instrument, Span};
use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE};
use waxosuit_nats::{DropReport, Dropped, PendingBudget, PendingSubscriber};
use waxosuit_provider::{Throttle, encode};

use crate::reserved::Reserved;
use crate::spans;
use crate::{Inner, SubjectUse};

/// Hands one subscription's messages to the actor, in order. It holds the
/// provider only weakly, so dropping the provider ends it.
pub(crate) async fn deliver_loop(
    inner: Weak<Inner>,
    reserved: Arc<Reserved>,
    client: Client,
    actor: String,
    binding: String,
    subscriber: Subscriber,
    budget: PendingBudget,
) {
    let quota_bytes = budget.max_bytes();
    let mut subscriber =
        PendingSubscriber::new(subscriber, budget, slow_consumer(&actor, quota_bytes));
    let delivery = Delivery {
        inner,
        reserved,
        client,
        actor,
        binding,
        warned: Throttle::default(),
    };
    while let Some(message) = subscriber.next().await {
        // One consumer span per message, holding the actor call and the
        // reply, in the trace the message's headers carry.
        let span = spans::process(&message, &delivery.actor);
        delivery
            .deliver(message, &span)
            .instrument(span.clone())
            .await;
    }
}

/// Logs messages dropped for `actor`, at most every
/// [`waxosuit_nats::pending::REPORT_EVERY`], with
/// how many were not logged since.
fn slow_consumer(
    actor: &str,
    quota_bytes: usize,
) -> impl FnMut(&Message, Dropped) + Send + 'static {
    let actor = actor.to_string();
    let mut report = DropReport::default();
    move |message, why| {
        let Some(unlogged) = report.due() else {
            return;
        };
        let bound = match why {
            Dropped::TooManyMessages => "MAX_QUEUED_MESSAGES",
            Dropped::TooManyBytes => "MAX_QUEUED_BYTES",
        };
        if message.length > quota_bytes {
            // Not a slow actor: this message can never be delivered.
            tracing::warn!(
                %actor,
                subject = %message.subject,
                bytes = message.length,
                max_queued_bytes = quota_bytes,
                dropped_since_last_warning = unlogged,
                "a message larger than the binding's whole MAX_QUEUED_BYTES quota was \
                 dropped; raise MAX_QUEUED_BYTES in the binding's values above the largest \
                 message the subject carries"
            );
        } else {
            tracing::warn!(
                %actor,
                subject = %message.subject,
                bytes = message.length,
                dropped_since_last_warning = unlogged,
                "messages arrive faster than the actor handles them: one was dropped, the \
                 binding already holding its {bound} quota for it; make the handler faster, \
                 spread the subject over a queue group (QUEUEGROUP_NAME), or raise {bound} in \
                 the binding's values"
            );
        }
    }
}

/// What delivering a subscription's messages needs.
struct Delivery {
    inner: Weak<Inner>,
    reserved: Arc<Reserved>,
    client: Client,
    actor: String,
    binding: String,
    /// Failed deliveries, one per message at most, are logged at most every
    /// ten seconds: whoever publishes to the subject can cause them at will
    /// (the span of each message still says why it failed).
    warned: Throttle,
}

impl Delivery {
    /// Whether a failed delivery is logged now, and how many were not
    /// since the last one that was.
    fn should_warn(&self) -> Option<u64> {
        self.warned.should_warn(Instant::now())
    }

    /// Hands `message` to the actor and publishes its answer; a failure is
    /// logged, and put on `span`.
    async fn deliver(&self, message: Message, span: &Span) {
        let actor = &self.actor;
        let Some(dispatcher) = self.inner.upgrade().and_then(|i| i.dispatcher()) else {
            if let Some(unlogged) = self.should_warn() {
                tracing::warn!(%actor, subject = %message.subject, not_logged_since = unlogged, "provider not started; message dropped");
            }
            spans::fail(span, "the provider is not started; message dropped");
            return;
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
                if let Some(unlogged) = self.should_warn() {
                    tracing::warn!(%actor, error = %e, not_logged_since = unlogged, "cannot encode a delivery; message dropped");
                }
                spans::fail(span, &e);
                return;
            }
        };
        match dispatcher
            .dispatch(actor, OP_DELIVER_MESSAGE, payload)
            .await
        {
            Ok(reply) if !reply.is_empty() => {
                let Some(reply_to) = message.reply else {
                    return;
                };
                // Whoever sent the message chose the reply subject; answering
                // blindly would let any client of the server aim an actor's
                // output at the lattice's planes.
                if let Err(refused) =
                    self.reserved
                        .check(actor, &self.binding, SubjectUse::Reply, &reply_to)
                {
                    if let Some(unlogged) = self.should_warn() {
                        tracing::warn!(%actor, subject = %message.subject, error = %refused, not_logged_since = unlogged, "actor's reply not sent");
                    }
                    spans::fail(span, &refused);
                    return;
                }
                if let Err(e) = self.client.publish(reply_to.clone(), reply.into()).await {
                    if let Some(unlogged) = self.should_warn() {
                        tracing::warn!(%actor, %reply_to, error = %e, not_logged_since = unlogged, "cannot publish the actor's reply");
                    }
                    spans::fail(span, &e);
                }
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(unlogged) = self.should_warn() {
                    tracing::warn!(%actor, subject = %message.subject, error = %e, not_logged_since = unlogged, "message delivery failed");
                }
                spans::fail(span, &e);
            }
        }
    }
}
