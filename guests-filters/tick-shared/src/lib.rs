//! `pw-tick-shared`: timers, shared data and shared queues.
//!
//! * Root context: sets a 50 ms tick period (in `on_vm_start` and again in
//!   `on_configure`), registers the shared queue `events` in `on_vm_start`,
//!   increments the shared counter `ticks` on every tick, and logs what it
//!   dequeues from `events` in `on_queue_ready`.
//! * HTTP context: increments the shared counter `requests` and enqueues the
//!   request's `:path` on `events`; adds `x-ticks` and `x-requests` (decimal)
//!   to the response.
//!
//! Counters are `u64` little-endian values updated with compare-and-swap
//! (retried on `CasMismatch`).

use std::time::Duration;

use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, Status};

const TICK_PERIOD: Duration = Duration::from_millis(50);
const QUEUE: &str = "events";
const TICKS: &str = "ticks";
const REQUESTS: &str = "requests";
/// Attempts at a compare-and-swap before giving up.
const CAS_ATTEMPTS: usize = 64;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(TickRoot { queue: None }) });
}}

/// The counter stored under `key`, 0 if absent or malformed.
fn read_counter(key: &str) -> u64 {
    match hostcalls::get_shared_data(key) {
        Ok((Some(bytes), _)) => decode(&bytes),
        _ => 0,
    }
}

fn decode(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes)
}

/// Adds one to the counter under `key` with compare-and-swap; returns the new value.
fn increment(key: &str) -> Result<u64, Status> {
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = hostcalls::get_shared_data(key)?;
        let next = current.as_deref().map_or(0, decode).wrapping_add(1);
        match hostcalls::set_shared_data(key, Some(&next.to_le_bytes()), cas) {
            Ok(()) => return Ok(next),
            Err(Status::CasMismatch) => continue,
            Err(status) => return Err(status),
        }
    }
    Err(Status::CasMismatch)
}

struct TickRoot {
    /// The `events` queue, once registered.
    queue: Option<u32>,
}

impl Context for TickRoot {}

impl RootContext for TickRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.set_tick_period(TICK_PERIOD);
        match hostcalls::register_shared_queue(QUEUE) {
            Ok(id) => self.queue = Some(id),
            Err(status) => warn!("cannot register the queue {QUEUE:?}: {status:?}"),
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        self.set_tick_period(TICK_PERIOD);
        true
    }

    fn on_tick(&mut self) {
        if let Err(status) = increment(TICKS) {
            warn!("cannot increment {TICKS:?}: {status:?}");
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        loop {
            match hostcalls::dequeue_shared_queue(queue_id) {
                Ok(Some(item)) => info!("queue {queue_id}: {}", String::from_utf8_lossy(&item)),
                Ok(None) => break,
                Err(status) => {
                    warn!("cannot dequeue from queue {queue_id}: {status:?}");
                    break;
                }
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(TickHttp { queue: self.queue }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct TickHttp {
    /// The queue id the root context registered.
    queue: Option<u32>,
}

impl TickHttp {
    /// The `events` queue: the root's registration, else resolved by name in
    /// this VM.
    fn queue(&self) -> Option<u32> {
        self.queue
            .or_else(|| hostcalls::resolve_shared_queue("", QUEUE).ok().flatten())
    }
}

impl Context for TickHttp {}

impl HttpContext for TickHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Err(status) = increment(REQUESTS) {
            warn!("cannot increment {REQUESTS:?}: {status:?}");
        }
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match self.queue() {
            Some(queue) => {
                if let Err(status) = hostcalls::enqueue_shared_queue(queue, Some(path.as_bytes())) {
                    warn!("cannot enqueue on queue {queue}: {status:?}");
                }
            }
            None => warn!("no queue {QUEUE:?}"),
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.set_http_response_header("x-ticks", Some(&read_counter(TICKS).to_string()));
        self.set_http_response_header("x-requests", Some(&read_counter(REQUESTS).to_string()));
        Action::Continue
    }
}
