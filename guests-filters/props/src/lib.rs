//! `pw-props`: properties and request-header rewriting.
//!
//! On the request headers, reads the properties below (before any rewrite)
//! and sets the request header `x-filtered: yes`; a `:path` of
//! `/rewrite-me` becomes `/rewritten`, so the actor sees both changes. The
//! response then gets one header per property, `-` when it is missing:
//!
//! | header         | property                  |
//! |----------------|---------------------------|
//! | `x-path`       | `request.path`            |
//! | `x-method`     | `request.method`          |
//! | `x-source`     | `source.address`          |
//! | `x-plugin`     | `plugin_name`             |
//! | `x-actor`      | `waxosuit.actor`          |
//! | `x-actor-name` | `waxosuit.actor_name`     |

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(Props { headers: Vec::new() })
    });
}}

/// Response header and the property path it reports.
const PROPERTIES: &[(&str, &[&str])] = &[
    ("x-path", &["request", "path"]),
    ("x-method", &["request", "method"]),
    ("x-source", &["source", "address"]),
    ("x-plugin", &["plugin_name"]),
    ("x-actor", &["waxosuit", "actor"]),
    ("x-actor-name", &["waxosuit", "actor_name"]),
];

struct Props {
    /// Response headers to add, read on the request headers.
    headers: Vec<(&'static str, String)>,
}

impl Context for Props {}

impl HttpContext for Props {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.headers = PROPERTIES
            .iter()
            .map(|(header, path)| {
                // The hostcall, not `Context::get_property`, which panics on
                // any status but `NotFound`.
                let value = hostcalls::get_property(path.to_vec())
                    .ok()
                    .flatten()
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .unwrap_or_else(|| "-".to_owned());
                (*header, value)
            })
            .collect();
        self.set_http_request_header("x-filtered", Some("yes"));
        if self.get_http_request_header(":path").as_deref() == Some("/rewrite-me") {
            self.set_http_request_header(":path", Some("/rewritten"));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in &self.headers {
            self.set_http_response_header(name, Some(value));
        }
        Action::Continue
    }
}
