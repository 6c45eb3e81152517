//! `wascc:logging`: structured log output from actors.

use serde::{Deserialize, Serialize};

/// Capability id of logging providers.
pub const CAPABILITY_ID: &str = "wascc:logging";

/// Actor → provider: write a [`WriteLogRequest`].
pub const OP_LOG: &str = "WriteLog";

/// [`WriteLogRequest::level`] for errors. The numbering is that of Rust's
/// `log::Level as u32`, which the original SDK sent as is.
pub const LEVEL_ERROR: u32 = 1;
/// [`WriteLogRequest::level`] for warnings.
pub const LEVEL_WARN: u32 = 2;
/// [`WriteLogRequest::level`] for informational messages.
pub const LEVEL_INFO: u32 = 3;
/// [`WriteLogRequest::level`] for debug output.
pub const LEVEL_DEBUG: u32 = 4;
/// [`WriteLogRequest::level`] for trace output.
pub const LEVEL_TRACE: u32 = 5;

/// Payload of [`OP_LOG`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteLogRequest {
    /// One of the `LEVEL_*` constants; providers report other values as an
    /// error rather than dropping the message.
    pub level: u32,
    /// The message text.
    pub body: String,
}
