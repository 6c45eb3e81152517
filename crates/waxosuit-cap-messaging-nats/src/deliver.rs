//! Messages from NATS to actors: one task per subscription hands each
//! message to the actor as `DeliverMessage` and publishes a non-empty answer
//! to the message's reply subject, unless that subject is reserved.
//!
//! Separate because it runs on its own task for as long as the binding
//! lives, apart from any call an actor makes.

use std::sync::{Arc, Weak};

use async_nats::{Client, Subscriber};
use futures_util::StreamExt;
use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID, OP_DELIVER_MESSAGE};
use waxosuit_provider::encode;

use crate::reserved::Reserved;
use crate::{Inner, SubjectUse};

/// Hands one subscription's messages to the actor, in order. It holds the
/// provider only weakly, so dropping the provider ends it.
pub(crate) async fn deliver_loop(
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
