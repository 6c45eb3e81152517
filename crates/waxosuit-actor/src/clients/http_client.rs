use waxosuit_codec::http::{self, Request, Response};

use super::bound_client;
use crate::context::call_typed;
use crate::{HostCalls, Result};

/// Client for `wascc:http_client`: outbound HTTP requests.
pub struct HttpClient<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(HttpClient);

impl HttpClient<'_> {
    /// Performs `request`, whose `path` is the **full URL**, and returns the
    /// response. A non-2xx status is a successful call: inspect
    /// `status_code`.
    ///
    /// # Errors
    ///
    /// The host call failed (network error, timeout, not bound) or its
    /// reply did not decode.
    pub fn request(&self, request: &Request) -> Result<Response> {
        call_typed(
            self.host,
            &self.binding,
            http::CLIENT_CAPABILITY_ID,
            http::OP_PERFORM_REQUEST,
            request,
        )
    }

    /// `GET url`, a shortcut for [`request`](Self::request).
    ///
    /// # Errors
    ///
    /// As for [`request`](Self::request).
    pub fn get(&self, url: &str) -> Result<Response> {
        self.request(&Request {
            method: "GET".to_string(),
            path: url.to_string(),
            ..Request::default()
        })
    }
}
