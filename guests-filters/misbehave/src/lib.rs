//! `pw-misbehave`: misbehaves on demand, for the host's failure paths. The
//! plugin configuration (a plain string) picks the behaviour:
//!
//! | configuration   | behaviour                                            |
//! |-----------------|------------------------------------------------------|
//! | `trap`          | panics (a wasm trap) in `on_http_request_headers`     |
//! | `loop`          | loops forever in `on_http_request_headers`            |
//! | `pause`         | returns `Pause` from `on_http_request_headers`, never resumes |
//! | `bad-config`    | `on_configure` returns `false`                        |
//! | `trap-response` | panics in `on_http_response_headers`                  |
//! | anything else   | `Continue` everywhere                                 |

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(MisbehaveRoot { mode: Rc::from("") })
    });
}}

/// Spun by `loop`, so the loop has an observable effect and is not
/// optimized away.
static SPINS: AtomicU64 = AtomicU64::new(0);

struct MisbehaveRoot {
    mode: Rc<str>,
}

impl Context for MisbehaveRoot {}

impl RootContext for MisbehaveRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.mode = Rc::from(String::from_utf8_lossy(&config).trim());
        &*self.mode != "bad-config"
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Misbehave {
            mode: Rc::clone(&self.mode),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Misbehave {
    mode: Rc<str>,
}

impl Context for Misbehave {}

impl HttpContext for Misbehave {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        match &*self.mode {
            "trap" => panic!("boom"),
            "loop" => loop {
                SPINS.fetch_add(1, Ordering::Relaxed);
                core::hint::black_box(());
            },
            "pause" => Action::Pause,
            _ => Action::Continue,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if &*self.mode == "trap-response" {
            panic!("boom");
        }
        Action::Continue
    }
}
