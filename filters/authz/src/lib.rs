//! Bearer-token authorization, as a Proxy-Wasm HTTP filter.
//!
//! Plugin configuration (JSON):
//!
//! ```json
//! {"tokens": ["secret-1", "secret-2"], "realm": "waxosuit"}
//! ```
//!
//! A request whose `authorization` header is `Bearer <token>` with a
//! configured token continues to the actor unchanged; any other request
//! (no header, another scheme, an unknown token) is answered locally with
//! `403 Forbidden` and a `www-authenticate` challenge naming the realm.

use std::rc::Rc;

use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use serde::Deserialize;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(AuthzRoot { config: Rc::new(Config::default()) })
    });
}}

/// The plugin configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Accepted bearer tokens.
    #[serde(default)]
    tokens: Vec<String>,
    /// Realm named in the `www-authenticate` challenge.
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_realm() -> String {
    "waxosuit".to_owned()
}

struct AuthzRoot {
    config: Rc<Config>,
}

impl Context for AuthzRoot {}

impl RootContext for AuthzRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            warn!("authz: no plugin configuration; every request will be refused");
            self.config = Rc::new(Config::default());
            return true;
        };
        match serde_json::from_slice::<Config>(&bytes) {
            Ok(config) => {
                info!(
                    "authz: {} token(s), realm {:?}",
                    config.tokens.len(),
                    config.realm
                );
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                warn!("authz: invalid plugin configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Authz {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Authz {
    config: Rc<Config>,
}

impl Authz {
    fn authorized(&self) -> bool {
        let Some(header) = self.get_http_request_header("authorization") else {
            return false;
        };
        let Some(token) = header.strip_prefix("Bearer ") else {
            return false;
        };
        let token = token.trim();
        self.config.tokens.iter().any(|t| t == token)
    }
}

impl Context for Authz {}

impl HttpContext for Authz {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.authorized() {
            return Action::Continue;
        }
        let challenge = format!("Bearer realm=\"{}\"", self.config.realm);
        self.send_http_response(
            403,
            vec![("www-authenticate", challenge.as_str())],
            Some(b"Access forbidden.\n"),
        );
        Action::Pause
    }
}
