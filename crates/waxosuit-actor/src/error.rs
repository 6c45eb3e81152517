//! The single error type of the SDK.

use thiserror::Error as ThisError;
use waxosuit_codec::CodecError;

/// Everything that can go wrong inside an actor.
///
/// When a handler returns an `Err`, its [`Display`](std::fmt::Display) text
/// is what the host receives as the guest error (`__guest_error`), so every
/// variant renders as a complete sentence that names the operation or the
/// capability involved.
///
/// Handlers usually create their own failures with [`Error::msg`] or from a
/// string (`Err("sensor id missing".into())`), and propagate the others with
/// `?`.
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// The host invoked an operation no handler was registered for.
    #[error("no handler registered for operation \"{operation}\"")]
    UnknownOperation {
        /// The operation name the host sent.
        operation: String,
    },

    /// The payload of an incoming operation did not decode as the type its
    /// handler expects.
    #[error("invalid payload for operation \"{operation}\": {source}")]
    InvalidPayload {
        /// The operation being dispatched.
        operation: String,
        /// What the decoder reported.
        #[source]
        source: CodecError,
    },

    /// The host (or the provider behind it) rejected a host call. `message`
    /// is the host's error text, verbatim.
    #[error("host call {operation} on {namespace} (binding \"{binding}\") failed: {message}")]
    HostCall {
        /// The named binding the call went to.
        binding: String,
        /// The capability id or actor key called.
        namespace: String,
        /// The operation called.
        operation: String,
        /// The host's error text.
        message: String,
    },

    /// A host call succeeded but its reply was not what the contract
    /// promises.
    #[error("unexpected reply to {operation} on {namespace}: {reason}")]
    InvalidReply {
        /// The capability id or actor key called.
        namespace: String,
        /// The operation called.
        operation: String,
        /// Why the reply was rejected.
        reason: String,
    },

    /// A value could not be encoded (or decoded) with the waSCC codec
    /// outside the two situations above, e.g. a handler's response.
    #[error(transparent)]
    Codec(#[from] CodecError),

    /// A failure reported by actor code itself.
    #[error("{0}")]
    Handler(String),
}

impl Error {
    /// An error carrying `message` as its whole text, for failures of the
    /// actor's own logic; also handy with `map_err(Error::msg)`.
    pub fn msg(message: impl std::fmt::Display) -> Self {
        Self::Handler(message.to_string())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Self::Handler(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Self::Handler(message.to_string())
    }
}

/// `Result` with the SDK's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
