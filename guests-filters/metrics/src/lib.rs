//! `pw-metrics`: host metrics.
//!
//! The root context defines, once (in `on_configure`), a counter
//! `requests_total`, a gauge `inflight` and a histogram `body_bytes`, and
//! hands their ids to each HTTP context. Per request: `requests_total` is
//! incremented and `inflight` raised on the request headers; `body_bytes`
//! records the request body's size (0 when there is none) at the end of the
//! request; `inflight` is lowered in `on_log`. The response gets
//! `x-requests-total: <requests_total>`.

use log::warn;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(MetricsRoot { metrics: None }) });
}}

/// Ids of the metrics this filter defines.
#[derive(Clone, Copy, Debug)]
struct Metrics {
    requests_total: u32,
    inflight: u32,
    body_bytes: u32,
}

impl Metrics {
    fn define() -> Result<Self, Status> {
        Ok(Self {
            requests_total: hostcalls::define_metric(MetricType::Counter, "requests_total")?,
            inflight: hostcalls::define_metric(MetricType::Gauge, "inflight")?,
            body_bytes: hostcalls::define_metric(MetricType::Histogram, "body_bytes")?,
        })
    }
}

fn check(what: &str, result: Result<(), Status>) {
    if let Err(status) = result {
        warn!("{what} failed: {status:?}");
    }
}

struct MetricsRoot {
    metrics: Option<Metrics>,
}

impl Context for MetricsRoot {}

impl RootContext for MetricsRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.metrics.is_none() {
            match Metrics::define() {
                Ok(metrics) => self.metrics = Some(metrics),
                Err(status) => {
                    warn!("cannot define metrics: {status:?}");
                    return false;
                }
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(MetricsHttp {
            metrics: self.metrics,
            body_size: 0,
            inflight: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct MetricsHttp {
    metrics: Option<Metrics>,
    /// Request body bytes seen so far.
    body_size: usize,
    /// Whether this request raised `inflight`.
    inflight: bool,
}

impl MetricsHttp {
    fn record_body(&self, metrics: Metrics) {
        let size = u64::try_from(self.body_size).unwrap_or(u64::MAX);
        check(
            "record_metric(body_bytes)",
            hostcalls::record_metric(metrics.body_bytes, size),
        );
    }
}

impl Context for MetricsHttp {}

impl HttpContext for MetricsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(metrics) = self.metrics else {
            return Action::Continue;
        };
        check(
            "increment_metric(requests_total)",
            hostcalls::increment_metric(metrics.requests_total, 1),
        );
        check(
            "increment_metric(inflight)",
            hostcalls::increment_metric(metrics.inflight, 1),
        );
        self.inflight = true;
        if end_of_stream {
            self.record_body(metrics);
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Each call reports the size of the body buffered so far.
        self.body_size = body_size;
        if end_of_stream && let Some(metrics) = self.metrics {
            self.record_body(metrics);
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(metrics) = self.metrics {
            match hostcalls::get_metric(metrics.requests_total) {
                Ok(total) => {
                    self.set_http_response_header("x-requests-total", Some(&total.to_string()));
                }
                Err(status) => warn!("get_metric(requests_total) failed: {status:?}"),
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.inflight
            && let Some(metrics) = self.metrics
        {
            check(
                "increment_metric(inflight)",
                hostcalls::increment_metric(metrics.inflight, -1),
            );
        }
    }
}
