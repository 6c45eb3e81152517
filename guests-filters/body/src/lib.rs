//! `pw-body`, after the SDK's `http_body` example.
//!
//! * Response: drops `content-length`, buffers the whole body, and if it
//!   contains `secret` replaces it with
//!   `Original message body ({n} bytes) redacted.\n`.
//! * Request: when the request carries `x-upper: 1`, buffers the whole body
//!   and hands the actor its ASCII-uppercased version (same length, so
//!   `content-length` is kept).

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(HttpBody { upper: false })
    });
}}

struct HttpBody {
    /// Whether the request asked for its body to be uppercased.
    upper: bool,
}

impl Context for HttpBody {}

impl HttpContext for HttpBody {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.upper =
            !end_of_stream && self.get_http_request_header("x-upper").as_deref() == Some("1");
        // Uppercasing keeps the body's length: `content-length` stays valid.
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.upper {
            return Action::Continue;
        }
        if !end_of_stream {
            // Wait -- we'll be called again when the complete body is buffered
            // at the host side.
            return Action::Pause;
        }
        if let Some(body) = self.get_http_request_body(0, body_size) {
            self.set_http_request_body(0, body_size, &body.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // If there is a Content-Length header and we change the length of
        // the body later, then clients will break. So remove it.
        // We must do this here, because once we exit this function we
        // can no longer modify the response headers.
        self.set_http_response_header("content-length", None);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            // Wait -- we'll be called again when the complete body is buffered
            // at the host side.
            return Action::Pause;
        }

        // Replace the message body if it contains the text "secret".
        // Since we returned "Pause" previously, this will return the whole body.
        if let Some(body_bytes) = self.get_http_response_body(0, body_size) {
            let body_str = String::from_utf8_lossy(&body_bytes);
            if body_str.contains("secret") {
                let new_body = format!("Original message body ({body_size} bytes) redacted.\n");
                self.set_http_response_body(0, body_size, new_body.as_bytes());
            }
        }
        Action::Continue
    }
}
