//! `wascc:messaging`: publish/subscribe and request/reply over a broker.

use serde::{Deserialize, Serialize};

/// Capability id of message broker providers.
pub const CAPABILITY_ID: &str = "wascc:messaging";

/// Actor → provider: publish a [`BrokerMessage`]; the reply is empty.
pub const OP_PUBLISH_MESSAGE: &str = "Publish";
/// Provider → actor: a [`BrokerMessage`] arrived on a subscribed subject.
pub const OP_DELIVER_MESSAGE: &str = "DeliverMessage";
/// Actor → provider: send a [`RequestMessage`] and wait for one reply. The
/// response payload is the raw reply body, not wrapped in any struct.
pub const OP_PERFORM_REQUEST: &str = "Request";

/// A message on a subject.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerMessage {
    /// The subject (topic).
    pub subject: String,
    /// Where replies should go; empty when no reply is expected, because
    /// the original contract had no optional fields here.
    pub reply_to: String,
    /// The body, as MessagePack `bin`; its encoding is up to the
    /// applications.
    #[serde(with = "serde_bytes", default)]
    pub body: Vec<u8>,
}

/// Payload of [`OP_PERFORM_REQUEST`]. Reply inboxes are managed by the
/// provider, not by the actor.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMessage {
    /// The subject to send the request to.
    pub subject: String,
    /// The request body, as MessagePack `bin`.
    #[serde(with = "serde_bytes", default)]
    pub body: Vec<u8>,
    /// How long to wait for the reply, in milliseconds. Sent as `timeout`.
    #[serde(rename = "timeout")]
    pub timeout_ms: i64,
}
