//! `pw-passthrough`: an HTTP context that implements no callback, so every
//! one of them is the SDK's default (`Continue`). The baseline for benchmarks
//! of the Proxy-Wasm host.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Passthrough) });
}}

struct Passthrough;

impl Context for Passthrough {}

impl HttpContext for Passthrough {}
