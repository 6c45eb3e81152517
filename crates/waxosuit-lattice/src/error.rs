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
