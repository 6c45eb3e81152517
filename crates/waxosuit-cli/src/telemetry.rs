//! `--log-format` and the OpenTelemetry flags, shared by the commands that
//! run a host or watch a lattice. Each trace flag mirrors the standard
//! variable shown in `--help`; the flag wins when both are set. Export
//! headers (`OTEL_EXPORTER_OTLP_HEADERS`, often a token) are read from the
//! environment only, never from a flag, so they stay off command lines.

use anyhow::{Context, Result};
use clap::Args;
use waxosuit_telemetry::{LogFormat, LogSettings, Protocol, Telemetry, TraceSettings};

/// Logging and tracing flags.
#[derive(Debug, Args)]
pub(crate) struct TelemetryArgs {
    /// Log lines as `text` (colours only on a terminal; NO_COLOR honoured)
    /// or `json` (one object per line, with trace_id/span_id inside spans).
    #[arg(long, global = true, env = "WAXOSUIT_LOG_FORMAT", default_value = "text",
          value_parser = ["text", "json"], ignore_case = true)]
    log_format: String,
    /// Export traces to this collector: spans go to URL/v1/traces over
    /// OTLP/HTTP, or to the address URL over gRPC (--otlp-protocol).
    /// Unset: no exporter and no connection.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        hide_env_values = true,
        value_name = "URL"
    )]
    otlp_endpoint: Option<String>,
    /// The full URL for traces; wins over --otlp-endpoint.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        hide_env_values = true,
        value_name = "URL"
    )]
    otlp_traces_endpoint: Option<String>,
    /// How spans travel: http/protobuf (the default; a collector's port
    /// 4318) or grpc (port 4317). The signal's variable is read here, so
    /// it wins over OTEL_EXPORTER_OTLP_PROTOCOL, as the specification
    /// orders them.
    #[arg(
        long,
        global = true,
        env = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        value_name = "PROTOCOL"
    )]
    otlp_protocol: Option<String>,
    /// `service.name` of the exported spans [default: waxosuit].
    #[arg(long, global = true, env = "OTEL_SERVICE_NAME")]
    service_name: Option<String>,
    /// More resource attributes, `key=value,…`.
    #[arg(
        long,
        global = true,
        env = "OTEL_RESOURCE_ATTRIBUTES",
        value_name = "LIST"
    )]
    resource_attributes: Option<String>,
    /// Which traces to record: always_on, always_off, traceidratio,
    /// parentbased_always_on (default), parentbased_always_off,
    /// parentbased_traceidratio.
    #[arg(long, global = true, env = "OTEL_TRACES_SAMPLER")]
    trace_sampler: Option<String>,
    /// The ratio for the *traceidratio samplers, 0.0 to 1.0.
    #[arg(
        long,
        global = true,
        env = "OTEL_TRACES_SAMPLER_ARG",
        value_name = "RATIO"
    )]
    trace_sampler_arg: Option<String>,
}

impl TelemetryArgs {
    /// Installs logging, and trace export when an endpoint is set.
    pub(crate) fn install(&self) -> Result<Telemetry> {
        let format: LogFormat = self.log_format.parse()?;
        let mut settings = TraceSettings::from_env();
        let flags = [
            (&mut settings.endpoint, &self.otlp_endpoint),
            (&mut settings.traces_endpoint, &self.otlp_traces_endpoint),
            (&mut settings.protocol, &self.otlp_protocol),
            (&mut settings.service_name, &self.service_name),
            (&mut settings.resource_attributes, &self.resource_attributes),
            (&mut settings.sampler, &self.trace_sampler),
            (&mut settings.sampler_arg, &self.trace_sampler_arg),
        ];
        for (setting, flag) in flags {
            if let Some(value) = flag.as_ref().filter(|v| !v.trim().is_empty()) {
                *setting = Some(value.clone());
            }
        }
        let plan = settings.resolve().context("cannot set up trace export")?;
        let telemetry = waxosuit_telemetry::install(
            &LogSettings {
                format,
                filter: None,
            },
            plan.as_ref(),
        )?;
        if let Some(plan) = &plan {
            let over = match plan.protocol {
                Protocol::HttpProtobuf => "OTLP/HTTP",
                Protocol::Grpc => "OTLP/gRPC",
            };
            tracing::info!(endpoint = %plan.shown_url(), "exporting traces over {over}");
            if plan.headers_in_the_clear() {
                tracing::warn!(
                    endpoint = %plan.shown_url(),
                    "the OTLP export headers (OTEL_EXPORTER_OTLP_HEADERS, often a token) go \
                     unencrypted over http:// to another machine, on every export; give an \
                     https:// endpoint"
                );
            }
        }
        Ok(telemetry)
    }
}
