//! The single error type of the codec.

use thiserror::Error;

/// Why encoding or decoding a contract value failed.
///
/// Every variant names the Rust type involved (`type_name`, as given by
/// [`core::any::type_name`]) because a bare "invalid type" from MessagePack is
/// useless when a provider receives a payload for the wrong operation: the type
/// tells you which contract the bytes were expected to follow.
///
/// The `reason` strings come from the underlying encoder and are meant for
/// humans; their wording is not part of the API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// A value could not be written as MessagePack.
    #[error("failed to serialize {type_name} to MessagePack: {reason}")]
    Serialize {
        /// The Rust type that was being serialized.
        type_name: &'static str,
        /// What the encoder reported.
        reason: String,
    },
    /// The bytes are not a valid MessagePack encoding of the expected type:
    /// truncated input, a value of the wrong type, a missing required field,
    /// an unknown enum variant, or bytes that are not MessagePack at all.
    #[error("failed to deserialize {type_name} from MessagePack: {reason}")]
    Deserialize {
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What the decoder reported.
        reason: String,
    },
    /// A complete value was decoded but more bytes followed it.
    ///
    /// Conforming senders never append data, so leftovers mean the payload
    /// was built for another contract or has been tampered with; silently
    /// ignoring them would make two different byte strings decode as the
    /// same request.
    #[error(
        "failed to deserialize {type_name} from MessagePack: {trailing} unexpected byte(s) after the end of the value"
    )]
    TrailingBytes {
        /// The Rust type that was decoded.
        type_name: &'static str,
        /// How many bytes were left over.
        trailing: usize,
    },
    /// A [`ResponseView`](crate::http::ResponseView) refused a reply
    /// with more headers than its limits allow.
    #[error(
        "refused {type_name}: it has {count} headers, more than the limit of {limit}; \
         fix the sender, or raise the limit"
    )]
    TooManyHeaders {
        /// The Rust type that was being read.
        type_name: &'static str,
        /// Headers the reply declares (or counted so far).
        count: u64,
        /// The limit.
        limit: usize,
    },
    /// A [`ResponseView`](crate::http::ResponseView) refused a reply
    /// whose header names and values add up to more bytes than its limits
    /// allow.
    #[error(
        "refused {type_name}: its header names and values add up to more than the limit \
         of {limit} bytes; fix the sender, or raise the limit"
    )]
    HeadersTooLarge {
        /// The Rust type that was being read.
        type_name: &'static str,
        /// The limit.
        limit: usize,
    },
    /// A payload could not be rendered as JSON (see
    /// [`http::Response::json`](crate::http::Response::json)).
    #[error("failed to serialize {type_name} to JSON: {reason}")]
    Json {
        /// The Rust type that was being serialized.
        type_name: &'static str,
        /// What `serde_json` reported.
        reason: String,
    },
}
