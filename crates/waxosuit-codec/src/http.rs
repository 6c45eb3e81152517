//! `wascc:http_server` and `wascc:http_client`.
//!
//! Both capabilities share one [`Request`]/[`Response`] pair: the server
//! provider sends a `Request` to the actor with [`OP_HANDLE_REQUEST`] and
//! expects a `Response` back; an actor sends a `Request` (whose `path` is the
//! full URL) to the client provider with [`OP_PERFORM_REQUEST`] and receives a
//! `Response`.
//!
//! A server on the hot path need not build either struct: [`RequestWriter`]
//! writes a `Request` straight from borrowed parts (its body streamed in
//! with [`BodyWriter`]), and [`ResponseView::decode`] reads a `Response` in
//! place within [`ResponseLimits`]. Both produce and accept exactly the
//! bytes [`serialize`](crate::serialize) and
//! [`deserialize`](crate::deserialize) do for these types.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::CodecError;

mod view;
mod writer;

pub use view::{ResponseBody, ResponseLimits, ResponseView};
pub use writer::{BodyWriter, RequestHead, RequestWriter};

/// Capability id of the HTTP server provider.
pub const SERVER_CAPABILITY_ID: &str = "wascc:http_server";
/// Capability id of the HTTP client provider.
pub const CLIENT_CAPABILITY_ID: &str = "wascc:http_client";

/// Actor → `wascc:http_client`: perform an outbound request.
pub const OP_PERFORM_REQUEST: &str = "PerformRequest";
/// `wascc:http_server` → actor: handle an inbound request.
pub const OP_HANDLE_REQUEST: &str = "HandleRequest";

/// An HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path (server side) or the full URL (client side).
    pub path: String,
    /// The query string without the leading `?`.
    pub query_string: String,
    /// Headers; a header sent several times keeps only its last value.
    #[serde(default)]
    pub header: HashMap<String, String>,
    /// The body, as MessagePack `bin`.
    #[serde(with = "serde_bytes", default)]
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The numeric status, e.g. `200`.
    pub status_code: u32,
    /// The reason phrase, e.g. `OK`.
    pub status: String,
    /// Headers.
    #[serde(default)]
    pub header: HashMap<String, String>,
    /// The body, as MessagePack `bin`.
    #[serde(with = "serde_bytes", default)]
    pub body: Vec<u8>,
}

impl Response {
    /// A response with the given status whose body is `payload` rendered as
    /// JSON.
    ///
    /// No `Content-Type` header is added, matching the original helper, so
    /// that actors ported from waSCC produce identical responses; insert one
    /// into `header` if clients need it.
    ///
    /// # Errors
    ///
    /// [`CodecError::Json`] if `payload` cannot be represented as JSON (for
    /// instance a map with non-string keys). The original panicked here;
    /// inside a host, a panic on actor-supplied data is not acceptable.
    pub fn json<T>(payload: &T, status_code: u32, status: &str) -> Result<Self, CodecError>
    where
        T: Serialize + ?Sized,
    {
        let body = serde_json::to_vec(payload).map_err(|e| CodecError::Json {
            type_name: ::core::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            status_code,
            status: status.to_string(),
            header: HashMap::new(),
            body,
        })
    }

    /// `200 OK` with an empty body.
    #[must_use]
    pub fn ok() -> Self {
        Self::with_status(200, "OK")
    }

    /// `404 Not Found` with an empty body.
    #[must_use]
    pub fn not_found() -> Self {
        Self::with_status(404, "Not Found")
    }

    /// `400 Bad Request` with an empty body.
    #[must_use]
    pub fn bad_request() -> Self {
        Self::with_status(400, "Bad Request")
    }

    /// `500 Internal Server Error` whose body is `msg`.
    #[must_use]
    pub fn internal_server_error(msg: &str) -> Self {
        Self {
            body: msg.as_bytes().to_vec(),
            ..Self::with_status(500, "Internal Server Error")
        }
    }

    fn with_status(status_code: u32, status: &str) -> Self {
        Self {
            status_code,
            status: status.to_string(),
            ..Self::default()
        }
    }
}
