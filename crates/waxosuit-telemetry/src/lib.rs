//! Waxosuit's logs and traces: what a process installs once, at start.
//!
//! # A guided tour
//!
//! * The host's crates only make `tracing` spans and events (the HTTP
//!   server's request span, the host's actor and capability spans, the
//!   lattice's client and server spans, …) and hand W3C trace context on
//!   with `waxosuit-trace`. This crate decides where they go.
//! * [`install`] sets the process's subscriber from [`LogSettings`]: logs
//!   on stderr as text (ANSI colours only on a terminal, never with
//!   `NO_COLOR`) or as JSON lines ([`LogFormat`]), filtered by `RUST_LOG`.
//!   Text logs show events only; spans cost nothing unless something
//!   records them.
//! * With an export plan ([`TraceSettings::resolve`], from the standard
//!   `OTEL_*` variables or the CLI's flags), the subscriber is
//!   [`waxosuit_trace::Recorder`], which keeps the spans, gives each its
//!   trace context and records it, with the log lines stacked on it
//!   (`text` module: the `RUST_LOG` filter every log layer shares), and an
//!   exporter ([`export`](crate) module) that queues
//!   the finished spans, encodes each batch as an OTLP protobuf request
//!   ([`encode`](crate) module, written straight from the spans) and sends
//!   it to the collector with hyper and rustls on a runtime of its own: a
//!   POST to `/v1/traces` (OTLP/HTTP), or the `TraceService/Export` gRPC
//!   call over HTTP/2 ([`Protocol`]). An export the collector answers
//!   "later" is tried again, a bounded number of times. Over TLS it trusts
//!   the Web PKI, or only the CA of `OTEL_EXPORTER_OTLP_CERTIFICATE`, and
//!   shows a client certificate when the collector asks (`tls` module).
//! * Without an endpoint there is no exporter, no thread and no
//!   connection. Text logs are then `tracing-subscriber`'s `fmt` layer on
//!   its registry, with every span callsite disabled; JSON lines keep the
//!   recorder, without trace context, for the `actor` and `capability`
//!   they take from the host's spans.
//! * Every line is one line, whatever its values hold (`escape` module):
//!   a line feed, a carriage return or a bidirectional override an actor
//!   logs is escaped, so it cannot forge a line or change what a terminal
//!   shows.
//! * [`Telemetry::shutdown`] (also on drop) flushes the spans still queued;
//!   the CLI calls it after the host has drained, on Ctrl-C, SIGTERM or exit.
//!
//! Why not the OpenTelemetry SDK's span pipeline: with the
//! `tracing-opentelemetry` bridge in front of it, every span was built
//! three times (a builder, the SDK's span data, the exporter's protobuf
//! types), which cost a traced request more CPU than serving it;
//! `docs/observability.md` has the figures. The OpenTelemetry types, names
//! and rules are kept: the API crate's ids, values and statuses, the
//! specification's samplers and batch settings, OTLP's schema (the tests
//! decode every request with `opentelemetry-proto`).
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod config;
mod encode;
mod escape;
mod export;
mod json;
mod text;
mod tls;

use std::io::IsTerminal;
use std::str::FromStr;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Dispatch, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

pub use config::{
    BatchPlan, Compression, DEFAULT_EXPORT_TIMEOUT, DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE,
    DEFAULT_SCHEDULE_DELAY, DEFAULT_SERVICE_NAME, Protocol, TraceExport, TraceSettings,
};

/// The filter when `RUST_LOG` is not set: Waxosuit at info, the rest at warn.
pub const DEFAULT_LOG_FILTER: &str = "warn,waxosuit=info";
/// How long [`Telemetry::shutdown`] waits for the last spans to export.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A setting does not parse.
    #[error("{setting} is `{value}`, which is not valid: {fix}")]
    Setting {
        /// The variable (or the flag that mirrors it).
        setting: &'static str,
        /// What it was set to.
        value: String,
        /// What to set instead.
        fix: &'static str,
    },
    /// A setting that may hold a credential does not parse; its value is
    /// not repeated.
    #[error("{setting} is not valid (its value is not shown: it may hold a credential): {fix}")]
    Secret {
        /// The variable.
        setting: &'static str,
        /// What to set instead.
        fix: &'static str,
    },
    /// A file a setting names cannot be used.
    #[error("{setting} names `{path}`, which cannot be used: {problem}")]
    File {
        /// The variable.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why (never the file's content).
        problem: String,
    },
    /// The exporter could not be built.
    #[error("cannot start the OTLP trace exporter for {url}: {source}")]
    Exporter {
        /// The collector's URL.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another subscriber is installed already.
    #[error("logging is already set up in this process")]
    AlreadyInstalled,
}

impl TelemetryError {
    fn setting(setting: &'static str, value: &str, fix: &'static str) -> TelemetryError {
        TelemetryError::Setting {
            setting,
            value: value.chars().take(200).collect(),
            fix,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line ([module docs](crate) list the keys).
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    fn from_str(s: &str) -> Result<LogFormat, TelemetryError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::setting(
                "--log-format (WAXOSUIT_LOG_FORMAT)",
                s,
                "use `text` or `json`",
            )),
        }
    }
}

/// How logs are written.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter; `None` reads `RUST_LOG`, then uses
    /// [`DEFAULT_LOG_FILTER`].
    pub filter: Option<String>,
}

/// Installed telemetry; flushes the last spans on [`Telemetry::shutdown`]
/// or drop.
#[derive(Debug)]
pub struct Telemetry {
    exporter: Option<export::Exporter>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn is_exporting(&self) -> bool {
        self.exporter.is_some()
    }

    /// Exports what is still queued (waiting at most a few seconds) and
    /// stops the exporter. Later spans are dropped.
    pub fn shutdown(&mut self) {
        if let Some(mut exporter) = self.exporter.take()
            && !exporter.shutdown(FLUSH_TIMEOUT)
        {
            tracing::warn!(
                "not every span could be exported before exit: the collector did not \
                 answer within {FLUSH_TIMEOUT:?}"
            );
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Sets the process's subscriber: logs as `logs` says, and traces exported
/// as `traces` says when it is `Some`.
pub fn install(
    logs: &LogSettings,
    traces: Option<&TraceExport>,
) -> Result<Telemetry, TelemetryError> {
    let (subscriber, telemetry) = subscriber(logs, traces)?;
    subscriber
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(telemetry)
}

/// What [`install`] sets, without setting it: for a thread or a scope of
/// its own (`tracing::dispatcher::with_default`), such as a benchmark's.
/// The exporter runs until the returned [`Telemetry`] shuts down.
pub fn subscriber(
    logs: &LogSettings,
    traces: Option<&TraceExport>,
) -> Result<(Dispatch, Telemetry), TelemetryError> {
    let exporter = traces.map(start_exporter).transpose()?;
    let directives = match &logs.filter {
        Some(directives) => directives.clone(),
        None => match std::env::var("RUST_LOG") {
            Ok(directives) => match EnvFilter::try_new(&directives) {
                Ok(_) => directives,
                Err(e) => {
                    // Nothing logs yet: said on standard error, once, rather
                    // than dropped without a word.
                    eprintln!(
                        "warning: RUST_LOG ({}) is not a valid filter ({e}); using the default \
                         `{DEFAULT_LOG_FILTER}`. Use directives such as warn,waxosuit=debug",
                        waxosuit_claims::display::escape(&directives, 200)
                    );
                    DEFAULT_LOG_FILTER.to_string()
                }
            },
            Err(_) => DEFAULT_LOG_FILTER.to_string(),
        },
    };
    let log_filter = EnvFilter::try_new(&directives).map_err(|_| {
        TelemetryError::setting(
            "RUST_LOG",
            &directives,
            "use directives such as warn,waxosuit=info",
        )
    })?;
    // The host's spans: what the trace export records, and what JSON
    // lines take their context from.
    let spans = || {
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("waxosuit", LevelFilter::INFO)
    };
    let recorder = match (traces.zip(exporter.as_ref()), logs.format) {
        (Some((plan, exporter)), _) => {
            waxosuit_trace::Recorder::new(plan.sampler.clone(), exporter.sink())
        }
        (None, LogFormat::Json) => waxosuit_trace::Recorder::for_logs(),
        // Text logs without export: no span is wanted at all, and the
        // registry with `fmt` and a filter that disables every span
        // callsite costs nothing per span.
        (None, LogFormat::Text) => {
            let dispatch = text_logs(log_filter, text::stderr(), use_colour());
            return Ok((dispatch, Telemetry { exporter }));
        }
    }
    .with_spans(spans());
    let exporting = exporter.is_some();
    let dispatch = match logs.format {
        LogFormat::Text => {
            let text = text::Text {
                ansi: use_colour(),
                sink: text::stderr(),
            };
            Dispatch::new(recorder.with(text::Logs::new(log_filter, &directives, exporting, text)))
        }
        LogFormat::Json => {
            let json = json::JsonLines::new(recorder.log_context(), text::stderr());
            Dispatch::new(recorder.with(text::Logs::new(log_filter, &directives, exporting, json)))
        }
    };
    Ok((dispatch, Telemetry { exporter }))
}

/// Text logs without export: `tracing-subscriber`'s `fmt` layer on its
/// registry, each line escaped on its way to `sink`.
fn text_logs(filter: EnvFilter, sink: text::Sink, colours: bool) -> Dispatch {
    let fmt = tracing_subscriber::fmt::layer()
        .fmt_fields(escape::EscapedFields)
        .with_writer(escape::EscapingWriter::new(sink, colours))
        .with_target(false)
        .with_ansi(colours)
        .with_filter(EventsOnly(filter));
    Dispatch::new(tracing_subscriber::registry().with(fmt))
}

fn start_exporter(plan: &TraceExport) -> Result<export::Exporter, TelemetryError> {
    let mut resource = plan.resource.clone();
    for (key, value) in [
        ("telemetry.sdk.name", "waxosuit"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
        ("service.version", env!("CARGO_PKG_VERSION")),
    ] {
        if !resource.iter().any(|kv| kv.key.as_str() == key) {
            resource.push(opentelemetry::KeyValue::new(key, value));
        }
    }
    let encoder = encode::Encoder::new(&resource, "waxosuit", env!("CARGO_PKG_VERSION"));
    export::Exporter::start(plan, encoder).map_err(|e| TelemetryError::Exporter {
        url: plan.shown_url(),
        source: Box::new(e),
    })
}

/// The text logs' filter: `RUST_LOG`'s events, and no spans at all. Spans
/// would repeat their fields on every line, and a span callsite some layer
/// might want is checked on every call; declaring spans never interesting
/// here keeps them free when nothing exports them.
struct EventsOnly(EnvFilter);

impl<S: Subscriber> Filter<S> for EventsOnly {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        !meta.is_span() && Filter::<S>::enabled(&self.0, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            Interest::never()
        } else {
            Filter::<S>::callsite_enabled(&self.0, meta)
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }
}

/// ANSI colours only for a person at a terminal, and never when `NO_COLOR`
/// is set (<https://no-color.org>).
fn use_colour() -> bool {
    colour_for(
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stderr().is_terminal(),
    )
}

/// `NO_COLOR` set to anything but the empty string turns colour off.
fn colour_for(no_color: Option<&std::ffi::OsStr>, terminal: bool) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_and_never_with_no_color() {
        assert!(colour_for(None, true));
        assert!(colour_for(Some(OsStr::new("")), true));
        assert!(!colour_for(Some(OsStr::new("1")), true));
        assert!(!colour_for(None, false));
    }

    #[test]
    fn log_formats_parse_and_a_bad_one_says_what_works() {
        assert_eq!("JSON".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!(" text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        let err = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(
            err.contains("WAXOSUIT_LOG_FORMAT") && err.contains("`text` or `json`"),
            "{err}"
        );
    }

    #[test]
    fn text_lines_without_export_cannot_be_broken_by_what_they_show() {
        use std::sync::{Arc, Mutex};
        // What an actor may write through `wascc:logging`: a second line
        // that looks like the host's, a carriage return, an override.
        let hostile = "ok\n2026-12-07T00:00:00.000000Z ERROR forged\r\u{202e}gnp.exe";
        for colours in [false, true] {
            let out = Arc::new(Mutex::new(Vec::new()));
            let written = Arc::clone(&out);
            let sink: text::Sink =
                Arc::new(move |line: &[u8]| written.lock().unwrap().extend_from_slice(line));
            let dispatch = text_logs(EnvFilter::new("warn"), sink, colours);
            tracing::dispatcher::with_default(&dispatch, || {
                tracing::warn!(target: "waxosuit::actor", actor = "MX", "{hostile}");
                // A value given with `%`, as errors usually are: clears the
                // screen, hides what follows.
                tracing::warn!(target: "waxosuit::actor", error = %"\x1b[2J\x1b[8mhidden", "after");
            });
            let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
            let lines: Vec<_> = text.lines().collect();
            assert_eq!(lines.len(), 2, "colours {colours}: {text:?}");
            assert!(
                lines[0]
                    .contains("ok\\n2026-12-07T00:00:00.000000Z ERROR forged\\r\\u{202e}gnp.exe"),
                "colours {colours}: {text:?}"
            );
            assert!(lines[0].ends_with("\"MX\""), "{text:?}");
            assert!(lines[1].contains("after"), "{text:?}");
            assert!(lines[1].contains("\\u{1b}[2J\\u{1b}[8mhidden"), "{text:?}");
            assert!(
                !text.contains('\r') && !text.contains('\u{202e}'),
                "{text:?}"
            );
            assert!(
                !text.contains("\x1b[2J") && !text.contains("\x1b[8m"),
                "{text:?}"
            );
            assert_eq!(text.contains('\x1b'), colours, "{text:?}");
        }
    }
}
