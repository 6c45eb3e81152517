//! The operation table: what `Publish` and `Request` mean, whatever the
//! broker.

use std::time::Duration;

use async_trait::async_trait;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::messaging::{
    BrokerMessage, OP_DELIVER_MESSAGE, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE, RequestMessage,
};
use waxosuit_provider::{ProviderCall, ProviderError};

use crate::CAPABILITY_ID;
use crate::config::request_timeout;
use crate::error::{MessagingError, SubjectUse};
use crate::subject;

/// The actor and binding a call came through, for checks and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The actor's key.
    pub actor: &'a str,
    /// The binding name.
    pub binding: &'a str,
}

impl Caller<'_> {
    /// The [`MessagingError::InvalidSubject`] of this caller.
    pub fn invalid_subject(
        &self,
        action: SubjectUse,
        subject: &str,
        reason: subject::SubjectError,
    ) -> MessagingError {
        MessagingError::InvalidSubject {
            actor: self.actor.to_string(),
            binding: self.binding.to_string(),
            action,
            subject: subject::shown(subject),
            reason,
        }
    }
}

/// A broker, as the operation table drives it for one bound caller.
///
/// [`dispatch`] decodes the request and checks every subject with
/// [`check_subject`](Broker::check_subject) before calling
/// [`publish`](Broker::publish) or [`request`](Broker::request), so these
/// only ever see subjects that passed it, and a request's timeout already
/// resolved.
#[async_trait]
pub trait Broker: Send + Sync {
    /// Whether `caller` may use `subject` for `action`. The default refuses
    /// what is not a literal NATS subject ([`subject::validate_literal`]);
    /// a broker that reserves subjects checks that as well.
    ///
    /// # Errors
    ///
    /// [`MessagingError::InvalidSubject`], or the broker's own refusal.
    fn check_subject(
        &self,
        caller: &Caller<'_>,
        action: SubjectUse,
        subject: &str,
    ) -> Result<(), MessagingError> {
        subject::validate_literal(subject)
            .map_err(|reason| caller.invalid_subject(action, subject, reason))
    }

    /// Sends `message` to every matching subscription (one member per queue
    /// group) and returns without waiting for delivery. A subject nobody
    /// subscribes to is no error.
    async fn publish(
        &self,
        caller: &Caller<'_>,
        message: BrokerMessage,
    ) -> Result<(), ProviderError>;

    /// Sends `body` to `subject` with a fresh reply subject and returns the
    /// first reply's body; [`MessagingError::NoResponders`] when nothing
    /// subscribes, [`MessagingError::TimedOut`] when no reply comes within
    /// `timeout`.
    async fn request(
        &self,
        caller: &Caller<'_>,
        subject: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ProviderError>;
}

/// The operation table of `wascc:messaging`: decodes `call`, checks its
/// subjects and runs it on `broker`. The caller has already found `call`'s
/// binding (an unknown pair is the caller's
/// [`ProviderError::NotBound`]).
///
/// # Errors
///
/// [`ProviderError::UnknownOperation`], [`ProviderError::BadPayload`], a
/// refused subject (see [`MessagingError`]), and whatever the broker
/// returns.
pub async fn dispatch<B: Broker + ?Sized>(
    broker: &B,
    call: &ProviderCall,
) -> Result<Vec<u8>, ProviderError> {
    let caller = Caller {
        actor: &call.actor,
        binding: &call.binding,
    };
    match call.operation.as_str() {
        OP_PUBLISH_MESSAGE => {
            let message: BrokerMessage = waxosuit_provider::decode(CAPABILITY_ID, call)?;
            broker.check_subject(&caller, SubjectUse::Publish, &message.subject)?;
            if !message.reply_to.is_empty() {
                broker.check_subject(&caller, SubjectUse::Reply, &message.reply_to)?;
            }
            broker.publish(&caller, message).await?;
            Ok(Vec::new())
        }
        OP_PERFORM_REQUEST => {
            let request: RequestMessage = waxosuit_provider::decode(CAPABILITY_ID, call)?;
            broker.check_subject(&caller, SubjectUse::Request, &request.subject)?;
            let timeout = request_timeout(request.timeout_ms);
            broker
                .request(&caller, request.subject, request.body, timeout)
                .await
        }
        other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
    }
}

/// The descriptor of a `wascc:messaging` provider: the contract's three
/// operations under the broker's `name` and `long_description`.
pub fn descriptor(name: &str, long_description: &str) -> CapabilityDescriptor {
    CapabilityDescriptor::builder()
        .id(CAPABILITY_ID)
        .name(name)
        .version(env!("CARGO_PKG_VERSION"))
        .revision(1)
        .long_description(long_description)
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
