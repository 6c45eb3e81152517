//! The lattice's error type.

use crate::protocol::ErrorKind;

fn ignored_note(ignored: &Option<String>) -> String {
    match ignored {
        Some(text) => format!(
            "; an unauthenticated reply was ignored, it said: {}",
            crate::auth::shorten_to(text, 300)
        ),
        None => String::new(),
    }
}

/// What went wrong on the lattice. Transport failures are distinct variants
/// so callers can tell a slow host from a missing one from a refused call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LatticeError {
    /// The NATS server could not be reached.
    #[error(
        "cannot reach the lattice at {url}: {reason}; start nats-server there, or fix \
         --lattice / WAXOSUIT_LATTICE"
    )]
    Connect {
        /// Server URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A setting is unusable.
    #[error("lattice configuration: {reason}")]
    Config {
        /// What is wrong and what to do.
        reason: String,
    },
    /// No authenticated answer in time.
    #[error(
        "no answer from {target} within {timeout_ms} ms; the host running it may be overloaded \
         or gone (raise --lattice-timeout-ms if calls are legitimately slow){}",
        ignored_note(.ignored)
    )]
    Timeout {
        /// What was called.
        target: String,
        /// The timeout.
        timeout_ms: u128,
        /// What an unauthenticated reply said, if one came (and was ignored).
        ignored: Option<String>,
    },
    /// Nobody serves the target.
    #[error("no host of the lattice runs {target}; start it on one (`waxosuit lattice start …`)")]
    NoResponders {
        /// What was called.
        target: String,
    },
    /// The anti-forgery check refused an invocation (here, or at the receiver).
    #[error("invocation refused as forged: {reason}")]
    Forged {
        /// Why.
        reason: String,
    },
    /// The other side speaks another protocol version.
    #[error(
        "protocol version mismatch: this host speaks version {supported}, the message is version \
         {got}; run the same Waxosuit release on every host of a lattice"
    )]
    Version {
        /// The version received.
        got: u16,
        /// The version spoken here.
        supported: u16,
    },
    /// A message could not be decoded or encoded.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which message.
        what: &'static str,
        /// Decoder's reason.
        reason: String,
    },
    /// The remote host ran the call and it failed.
    #[error("{target} failed: {message}")]
    Remote {
        /// What was called.
        target: String,
        /// How the remote host classified it.
        kind: ErrorKind,
        /// The remote host's message.
        message: String,
    },
    /// Any other transport failure.
    #[error("lattice {operation} failed: {reason}")]
    Transport {
        /// What was being done.
        operation: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why a [`ProviderFactory`](crate::ProviderFactory) could not make the
/// provider a start command asked for: the embedder's own error, whole.
///
/// Shown and chained exactly as the wrapped error (`transparent`); the
/// command's requester reads it with its sources, joined by `: `.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct FactoryError(Box<dyn std::error::Error + Send + Sync>);

impl FactoryError {
    /// Wraps the embedder's error (any error type, or a message).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> FactoryError {
        FactoryError(error.into())
    }
}

/// `error` and each of its sources, joined by `: `: how a failure that
/// crosses the wire reads, since its sources cannot follow it.
pub(crate) fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("no such backend")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start wascc:keyvalue")]
    struct Outer(#[source] Inner);

    #[test]
    fn a_factory_error_keeps_its_sources_and_reads_with_them() {
        let error = FactoryError::new(Outer(Inner));
        assert_eq!(error.to_string(), "cannot start wascc:keyvalue");
        assert!(std::error::Error::source(&error).is_some_and(|s| s.is::<Inner>()));
        assert_eq!(
            with_sources(&error),
            "cannot start wascc:keyvalue: no such backend"
        );
        assert_eq!(with_sources(&FactoryError::new("plain")), "plain");
    }
}
