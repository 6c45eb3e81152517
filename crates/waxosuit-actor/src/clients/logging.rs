use waxosuit_codec::logging::{self as log, WriteLogRequest};

use super::bound_client;
use crate::context::call_encoded;
use crate::{HostCalls, Result};

/// Client for `wascc:logging`: leveled log lines attributed to the actor.
///
/// Each method is one `WriteLog` host call. They return a `Result` because
/// the call can fail (no logging provider bound, claim missing); a handler
/// that must not fail for want of a log line can ignore it, or fall back to
/// [`Ctx::console_log`](crate::Ctx::console_log), which needs no claim.
pub struct Logger<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(Logger);

impl Logger<'_> {
    /// Writes `message` at `level`, one of the
    /// `waxosuit_codec::logging::LEVEL_*` constants.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn write(&self, level: u32, message: &str) -> Result<()> {
        let request = WriteLogRequest {
            level,
            body: message.to_string(),
        };
        call_encoded(
            self.host,
            &self.binding,
            log::CAPABILITY_ID,
            log::OP_LOG,
            &request,
        )
        .map(drop)
    }

    /// Logs at error level.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn error(&self, message: &str) -> Result<()> {
        self.write(log::LEVEL_ERROR, message)
    }

    /// Logs at warn level.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn warn(&self, message: &str) -> Result<()> {
        self.write(log::LEVEL_WARN, message)
    }

    /// Logs at info level.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn info(&self, message: &str) -> Result<()> {
        self.write(log::LEVEL_INFO, message)
    }

    /// Logs at debug level.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn debug(&self, message: &str) -> Result<()> {
        self.write(log::LEVEL_DEBUG, message)
    }

    /// Logs at trace level.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn trace(&self, message: &str) -> Result<()> {
        self.write(log::LEVEL_TRACE, message)
    }
}
