//! `pw-callout`, after the SDK's `http_auth_random` example: every request
//! is held while the filter asks the upstream `auth` (`GET /auth` on
//! `auth.local`, forwarding the request's `x-user`). A `200` answer resumes
//! the request, and the callout's body is added to the response as
//! `x-auth-body`; any other answer is a local `403`. If the callout cannot
//! even be dispatched, the request is answered with a local `503`.

use std::time::Duration;

use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(HttpAuth { auth_body: None })
    });
}}

struct HttpAuth {
    /// The callout's body, once it answered `200`.
    auth_body: Option<String>,
}

impl HttpContext for HttpAuth {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let user = self.get_http_request_header("x-user").unwrap_or_default();
        match self.dispatch_http_call(
            "auth",
            vec![
                (":method", "GET"),
                (":path", "/auth"),
                (":authority", "auth.local"),
                ("x-user", user.as_str()),
            ],
            None,
            vec![],
            Duration::from_secs(5),
        ) {
            Ok(token) => {
                info!("callout dispatched, token {token}");
                Action::Pause
            }
            Err(status) => {
                warn!("callout failed: {status:?}");
                self.send_http_response(503, vec![], Some(b"callout failed\n"));
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(body) = &self.auth_body {
            self.set_http_response_header("x-auth-body", Some(body));
        }
        Action::Continue
    }
}

impl Context for HttpAuth {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if self.get_http_call_response_header(":status").as_deref() == Some("200") {
            let body = self
                .get_http_call_response_body(0, body_size)
                .unwrap_or_default();
            self.auth_body = Some(String::from_utf8_lossy(&body).trim().to_owned());
            info!("access granted.");
            self.resume_http_request();
            return;
        }
        info!("access forbidden.");
        self.send_http_response(
            403,
            vec![("Powered-By", "proxy-wasm")],
            Some(b"Access forbidden.\n"),
        );
    }
}
