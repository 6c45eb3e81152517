//! Adds configured headers to every response, as a Proxy-Wasm HTTP filter.
//!
//! Plugin configuration (JSON), either one header:
//!
//! ```json
//! {"name": "x-served-by", "value": "waxosuit"}
//! ```
//!
//! or a list of them:
//!
//! ```json
//! {"headers": [["x-served-by", "waxosuit"], ["x-frame-options", "DENY"]]}
//! ```

use std::rc::Rc;

use log::warn;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AddHeaderRoot { headers: Rc::new(Vec::new()) })
    });
}}

/// The plugin configuration: one header, or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Config {
    One { name: String, value: String },
    Many { headers: Vec<(String, String)> },
}

impl Config {
    fn into_headers(self) -> Vec<(String, String)> {
        match self {
            Config::One { name, value } => vec![(name, value)],
            Config::Many { headers } => headers,
        }
    }
}

struct AddHeaderRoot {
    headers: Rc<Vec<(String, String)>>,
}

impl Context for AddHeaderRoot {}

impl RootContext for AddHeaderRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            warn!("add-header: no plugin configuration; no header will be added");
            return true;
        };
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                self.headers = Rc::new(config.into_headers());
                true
            }
            Err(e) => {
                warn!("add-header: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AddHeader {
            headers: Rc::clone(&self.headers),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct AddHeader {
    headers: Rc<Vec<(String, String)>>,
}

impl Context for AddHeader {}

impl HttpContext for AddHeader {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for (name, value) in self.headers.iter() {
            self.add_http_response_header(name, value);
        }
        Action::Continue
    }
}
