//! Sets one field of JSON response bodies, as a Proxy-Wasm HTTP filter.
//!
//! Plugin configuration (JSON); `value` may be any JSON value:
//!
//! ```json
//! {"field": "greeting", "value": "hello from the filter"}
//! ```
//!
//! When the response's `content-type` is JSON, the filter drops its
//! `content-length` (the body changes size), buffers the whole body, and if
//! it is a JSON object sets `field` to `value`. Other bodies, and JSON
//! bodies that are not objects, pass through unchanged.

use std::rc::Rc;

use log::warn;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;
use serde_json::Value;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(JsonRewriteRoot { config: None })
    });
}}

/// The plugin configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Name of the top-level field to set.
    field: String,
    /// Its new value.
    value: Value,
}

struct JsonRewriteRoot {
    config: Option<Rc<Config>>,
}

impl Context for JsonRewriteRoot {}

impl RootContext for JsonRewriteRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            warn!("json-rewrite: no plugin configuration; bodies pass unchanged");
            return true;
        };
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                warn!("json-rewrite: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(JsonRewrite {
            config: self.config.clone(),
            rewrite: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct JsonRewrite {
    config: Option<Rc<Config>>,
    /// Whether this response's body is JSON and will be rewritten.
    rewrite: bool,
}

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || mime.ends_with("+json")
}

impl Context for JsonRewrite {}

impl HttpContext for JsonRewrite {
    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.rewrite = self.config.is_some()
            && !end_of_stream
            && self
                .get_http_response_header("content-type")
                .is_some_and(|ct| is_json(&ct));
        if self.rewrite {
            // The body changes size: let the host recompute the length.
            self.set_http_response_header("content-length", None);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.rewrite {
            return Action::Continue;
        }
        if !end_of_stream {
            // Buffer until the whole body is there.
            return Action::Pause;
        }
        let (Some(config), Some(body)) = (&self.config, self.get_http_response_body(0, body_size))
        else {
            return Action::Continue;
        };
        if let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(&body) {
            object.insert(config.field.clone(), config.value.clone());
            match serde_json::to_vec(&Value::Object(object)) {
                Ok(new_body) => self.set_http_response_body(0, body_size, &new_body),
                Err(e) => warn!("json-rewrite: cannot serialize the body: {e}"),
            }
        }
        Action::Continue
    }
}
