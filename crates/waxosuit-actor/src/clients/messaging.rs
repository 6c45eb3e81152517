use waxosuit_codec::messaging::{self as msg, BrokerMessage, RequestMessage};

use super::bound_client;
use crate::context::call_encoded;
use crate::{HostCalls, Result};

/// Client for `wascc:messaging`: publish and request/reply.
pub struct Messaging<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(Messaging);

impl Messaging<'_> {
    /// Publishes `body` on `subject`. `reply_to` names the subject replies
    /// should go to, if any.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn publish(&self, subject: &str, reply_to: Option<&str>, body: &[u8]) -> Result<()> {
        let message = BrokerMessage {
            subject: subject.to_string(),
            // The contract has no optional field: "" means "no reply".
            reply_to: reply_to.unwrap_or_default().to_string(),
            body: body.to_vec(),
        };
        call_encoded(
            self.host,
            &self.binding,
            msg::CAPABILITY_ID,
            msg::OP_PUBLISH_MESSAGE,
            &message,
        )
        .map(drop)
    }

    /// Sends `body` to `subject` and waits up to `timeout_ms` milliseconds
    /// for one reply, whose body is returned as is.
    ///
    /// # Errors
    ///
    /// The host call failed, including when no reply came in time.
    pub fn request(&self, subject: &str, body: &[u8], timeout_ms: u32) -> Result<Vec<u8>> {
        let request = RequestMessage {
            subject: subject.to_string(),
            body: body.to_vec(),
            timeout_ms: i64::from(timeout_ms),
        };
        // The reply is the raw body, not a MessagePack struct (see the
        // contract), so it is returned undecoded.
        call_encoded(
            self.host,
            &self.binding,
            msg::CAPABILITY_ID,
            msg::OP_PERFORM_REQUEST,
            &request,
        )
    }
}
