//! Calls from actors: `Publish` and `Request` on a bound pair's connection,
//! through the operation table of [`waxosuit_cap_messaging`], each waiting
//! (boundedly) for the connection when it is down.
//!
//! Separate from the binding life cycle in the crate root: this is the code
//! every actor call runs, and where an outage becomes the fast, named
//! [`ProviderError::Unavailable`].

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap, RequestErrorKind};
use async_trait::async_trait;
use tracing::Instrument;
use waxosuit_cap_messaging::{Broker, Caller};
use waxosuit_codec::messaging::{BrokerMessage, CAPABILITY_ID};
use waxosuit_provider::ProviderError;

use crate::reconnect::{self, Reconnect};
use crate::reserved::Reserved;
use crate::spans::{self, Outgoing};
use crate::{MessagingError, NatsMessaging, SubjectUse};

impl NatsMessaging {
    /// The pair's client and what [`Bound::connected`] needs.
    pub(crate) fn bound(&self, actor: &str, binding: &str) -> Result<Bound, ProviderError> {
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

    async fn request(
        client: &Client,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
        headers: Option<HeaderMap>,
    ) -> Result<Vec<u8>, ProviderError> {
        // An inbox of its own, unsubscribed when the call ends: the client's
        // shared reply inbox keeps an entry per request until a reply comes,
        // so requests that time out (an actor's, in a loop) would each leave
        // one behind for the life of the binding.
        let mut outgoing = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(timeout))
            .inbox(client.new_inbox());
        if let Some(headers) = headers {
            outgoing = outgoing.headers(headers);
        }
        // The client's own timeout starts once the request is written; the
        // subscription and the publish before it wait for room in the
        // client's command channel, which a stalled server never drains.
        let sent = client.send_request(subject.clone(), outgoing);
        let Ok(outcome) =
            tokio::time::timeout(timeout.saturating_add(reconnect::RECONNECT_WAIT), sent).await
        else {
            return Err(MessagingError::TimedOut {
                subject,
                timeout_ms: timeout.as_millis(),
            }
            .into());
        };
        match outcome {
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

/// A bound pair's connection, cloned out of the table for one call.
pub(crate) struct Bound {
    client: Client,
    /// Redacted.
    url: String,
    reconnect: Arc<Reconnect>,
}

impl Bound {
    /// The client, once it is connected (see [`reconnect`](crate::reconnect)).
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

/// The operation table's view of one bound pair's connection.
pub(crate) struct BoundBroker<'a> {
    pub(crate) reserved: &'a Reserved,
    pub(crate) bound: Bound,
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
        let span = spans::outgoing(Outgoing::Publish, &message.subject, message.body.len());
        let published = self
            .publish_in(caller, message, &span)
            .instrument(span.clone())
            .await;
        spans::outcome(&span, &published);
        published
    }

    async fn request(
        &self,
        caller: &Caller<'_>,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProviderError> {
        let span = spans::outgoing(Outgoing::Request, &subject, body.len());
        let reply = async {
            let client = self.bound.connected(caller).await?;
            let headers = spans::trace_headers(&span);
            NatsMessaging::request(client, subject, body, timeout, headers).await
        }
        .instrument(span.clone())
        .await;
        spans::outcome(&span, &reply);
        reply
    }
}

impl BoundBroker<'_> {
    /// [`Broker::publish`] inside its span, whose trace context the
    /// message's headers carry.
    async fn publish_in(
        &self,
        caller: &Caller<'_>,
        message: BrokerMessage,
        span: &tracing::Span,
    ) -> Result<(), ProviderError> {
        // Refused subjects were refused before anything waits on the
        // connection.
        let client = self.bound.connected(caller).await?;
        let subject = message.subject.clone();
        let headers = spans::trace_headers(span);
        let send = async {
            let body = message.body.into();
            match (message.reply_to.is_empty(), headers) {
                (true, None) => client.publish(message.subject, body).await,
                (false, None) => {
                    client
                        .publish_with_reply(message.subject, message.reply_to, body)
                        .await
                }
                (true, Some(headers)) => {
                    client
                        .publish_with_headers(message.subject, headers, body)
                        .await
                }
                (false, Some(headers)) => {
                    client
                        .publish_with_reply_and_headers(
                            message.subject,
                            message.reply_to,
                            headers,
                            body,
                        )
                        .await
                }
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
                    "NATS at {} did not take the message for `{subject}` from actor {} \
                     (binding `{}`) within {:?}: the connection dropped as it was sent. It may \
                     or may not be delivered; calls succeed again as soon as the server is back",
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
}
