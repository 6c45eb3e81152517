//! Why a messaging operation failed, as every broker says it.

use std::fmt;

use waxosuit_provider::ProviderError;

use crate::CAPABILITY_ID;
use crate::config::MAX_QUEUED_BYTES;
use crate::subject::{self, SubjectError};

/// Where refusals of reserved subjects point operators: the page on
/// separate NATS accounts.
pub const NATS_ACCOUNTS_DOC: &str = "docs/nats-accounts.md";

/// What an actor tried to do with a subject; the text completes "may not …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectUse {
    /// `Publish`'s subject.
    Publish,
    /// `Publish`'s `replyTo`, or the reply subject of a message delivered
    /// to the actor (the provider publishes the actor's answer there).
    Reply,
    /// `Request`'s subject.
    Request,
    /// A [`SUBSCRIPTION`](crate::SUBSCRIPTION) subject (plain or with
    /// [`QUEUEGROUP_NAME`](crate::QUEUEGROUP_NAME)).
    Subscribe,
}

impl fmt::Display for SubjectUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SubjectUse::Publish => "publish to",
            SubjectUse::Reply => "send replies to",
            SubjectUse::Request => "send requests to",
            SubjectUse::Subscribe => "subscribe to",
        })
    }
}

/// Why a messaging operation failed. Each converts into the
/// [`ProviderError`] the actor sees: [`MessagingError::ShutDown`] into
/// [`ProviderError::Unavailable`], every other into
/// [`ProviderError::Backend`] (the provider API has no permission variant;
/// the text says what was refused and why).
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
    /// The subject is not a valid NATS subject for this use.
    #[error(
        "actor {actor} (binding `{binding}`) may not {action} `{subject}`: it is not a valid \
         NATS subject: {reason}"
    )]
    InvalidSubject {
        /// The actor's key.
        actor: String,
        /// The binding the call came through.
        binding: String,
        /// What the actor tried.
        action: SubjectUse,
        /// The subject as given.
        subject: String,
        /// What is wrong with it.
        reason: SubjectError,
    },
    /// The subject is, or as a wildcard could match, a subject under a
    /// reserved prefix: the Waxosuit lattice's own control and data planes.
    #[error(
        "permission denied: actor {actor} (binding `{binding}`) may not {action} `{subject}`: \
         {reach}, and those are reserved for the Waxosuit lattice (prefix `{prefix}`). Use a \
         subject that cannot match `{prefix}.>`, or give actors a NATS account of their own \
         (see {NATS_ACCOUNTS_DOC})",
        reach = reach(.subject, .prefix)
    )]
    Reserved {
        /// The actor's key.
        actor: String,
        /// The binding the call came through.
        binding: String,
        /// What the actor tried.
        action: SubjectUse,
        /// The refused subject or pattern.
        subject: String,
        /// The reserved prefix it reaches.
        prefix: String,
    },
    /// Subscriptions matched, but every one of them refused the message
    /// because its binding's queue quota is full.
    #[error(
        "message on {subject} dropped: every matching subscription is full: {}; the \
         subscribers must keep up, or raise the named quota in their wascc:messaging binding's \
         values",
        Refusals(refused)
    )]
    QueueFull {
        /// The subject published to.
        subject: String,
        /// Who refused, and by which quota (the first few).
        refused: Vec<QueueRefusal>,
    },
    /// The broker shut down while the request waited.
    #[error("the broker shut down before a reply on {subject} arrived")]
    ShutDown {
        /// The request subject.
        subject: String,
    },
    /// The broker's client refused or failed the operation.
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

impl MessagingError {
    /// Whether the call failed because nobody answered (no responders, or
    /// no reply in time) rather than because it was refused.
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self,
            MessagingError::NoResponders { .. } | MessagingError::TimedOut { .. }
        )
    }

    /// Whether the subject itself was refused (invalid or reserved).
    pub fn is_refused_subject(&self) -> bool {
        matches!(
            self,
            MessagingError::InvalidSubject { .. } | MessagingError::Reserved { .. }
        )
    }
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

/// How a refused subject reaches under a reserved prefix, for the error text.
fn reach(subject: &str, prefix: &str) -> String {
    if subject::validate_literal(subject).is_ok() {
        format!("it is a subject under `{prefix}.`")
    } else {
        format!("as a wildcard it could match subjects under `{prefix}.`")
    }
}

/// One subscriber binding that refused a message for its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRefusal {
    /// The subscriber's actor key.
    pub actor: String,
    /// Its binding name.
    pub binding: String,
    /// The quota that is full, as its binding value is named
    /// (`MAX_QUEUED_MESSAGES`, `MAX_QUEUED_BYTES`).
    pub quota: &'static str,
    /// The binding's value of that quota.
    pub limit: u64,
}

impl fmt::Display for QueueRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.quota == MAX_QUEUED_BYTES {
            "bytes"
        } else {
            "messages"
        };
        write!(
            f,
            "actor {} (binding `{}`) is at its {} quota of {} waiting {what}",
            self.actor, self.binding, self.quota, self.limit
        )
    }
}

/// The refusals of a [`MessagingError::QueueFull`], joined.
struct Refusals<'a>(&'a [QueueRefusal]);

impl fmt::Display for Refusals<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, refusal) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{refusal}")?;
        }
        Ok(())
    }
}
