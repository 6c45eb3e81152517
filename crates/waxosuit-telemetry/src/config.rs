//! What the operator asked for, checked: the standard `OTEL_*` settings
//! (or the CLI flags that mirror them) turned into an export plan, with an
//! error that names the setting for anything that does not parse.

use std::time::Duration;

use hyper::Uri;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::KeyValue;
use waxosuit_trace::Sampler;

use crate::TelemetryError;
use crate::tls::ExportTls;

/// The service name when neither `OTEL_SERVICE_NAME` nor `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "waxosuit";
/// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`'s default).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// More resource attributes than any deployment needs; a longer list is a
/// mistake worth reporting.
const MAX_RESOURCE_ATTRIBUTES: usize = 128;
/// The same bound for export headers.
const MAX_HEADERS: usize = 64;
/// `OTEL_BSP_SCHEDULE_DELAY`'s default: how long a span may wait for a
/// batch to fill.
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);
/// `OTEL_BSP_MAX_QUEUE_SIZE`'s default: spans past it are dropped (and
/// counted) until the exporter catches up.
pub const DEFAULT_MAX_QUEUE: usize = 2048;
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default.
pub const DEFAULT_MAX_BATCH: usize = 512;
/// The largest queue accepted: a queue holds whole spans in memory.
const MAX_QUEUE_LIMIT: usize = 1 << 20;

/// Trace settings as given, each the value of a flag or of the standard
/// environment variable it mirrors; `None` when neither was set.
#[derive(Clone, Default)]
pub struct TraceSettings {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's base URL; traces go to
    /// `{endpoint}/v1/traces`.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: the full URL for traces; wins
    /// over `endpoint`.
    pub traces_endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`:
    /// `http/protobuf` (the default) or `grpc`.
    pub protocol: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_INSECURE` or `OTEL_EXPORTER_OTLP_INSECURE`:
    /// `true` for cleartext HTTP/2 to a gRPC address given without a
    /// scheme (TLS otherwise).
    pub insecure: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` or
    /// `OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip`, or `none` (the default).
    pub compression: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`: a PEM file of the certificates
    /// trusted for the collector, instead of the Web PKI roots.
    pub certificate: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE` or
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`: a PEM file of this host's
    /// certificate chain, for a collector that asks for one.
    pub client_certificate: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY` or
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY`: a PEM file of its private key.
    pub client_key: Option<String>,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,…`, values percent-encoded.
    pub resource_attributes: Option<String>,
    /// `OTEL_TRACES_SAMPLER`.
    pub sampler: Option<String>,
    /// `OTEL_TRACES_SAMPLER_ARG`.
    pub sampler_arg: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` or `OTEL_EXPORTER_OTLP_TIMEOUT`,
    /// in milliseconds.
    pub timeout_ms: Option<String>,
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,…` sent with every export
    /// (often a token). Read from the environment only; never shown.
    pub headers: Option<String>,
    /// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`: more headers for traces; a key
    /// here wins over the same key in `headers`.
    pub traces_headers: Option<String>,
    /// `OTEL_BSP_SCHEDULE_DELAY`, in milliseconds.
    pub schedule_delay_ms: Option<String>,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub max_queue_size: Option<String>,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub max_export_batch_size: Option<String>,
    /// `OTEL_SDK_DISABLED=true`: no export, whatever else is set.
    pub disabled: bool,
}

impl std::fmt::Debug for TraceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values are often credentials, and URLs may carry some.
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "***");
        let shown = |v: &Option<String>| v.as_deref().map(without_userinfo);
        f.debug_struct("TraceSettings")
            .field("endpoint", &shown(&self.endpoint))
            .field("traces_endpoint", &shown(&self.traces_endpoint))
            .field("protocol", &self.protocol)
            .field("insecure", &self.insecure)
            .field("compression", &self.compression)
            .field("certificate", &self.certificate)
            .field("client_certificate", &self.client_certificate)
            .field("client_key", &self.client_key)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .field("sampler_arg", &self.sampler_arg)
            .field("timeout_ms", &self.timeout_ms)
            .field("headers", &hidden(&self.headers))
            .field("traces_headers", &hidden(&self.traces_headers))
            .field("schedule_delay_ms", &self.schedule_delay_ms)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_export_batch_size", &self.max_export_batch_size)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// How spans wait for export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPlan {
    /// The longest a span waits before its batch is sent.
    pub delay: Duration,
    /// Spans queued at most; more are dropped and counted.
    pub max_queue: usize,
    /// Spans per export request at most.
    pub max_batch: usize,
}

/// How spans travel to the collector (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OTLP/HTTP: one protobuf request per batch, POSTed to `/v1/traces`
    /// (the collector's port 4318).
    #[default]
    HttpProtobuf,
    /// OTLP/gRPC: the `TraceService/Export` call over HTTP/2 (port 4317);
    /// cleartext HTTP/2 for an `http://` endpoint, TLS for `https://`.
    Grpc,
}

impl Protocol {
    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// The gRPC method every OTLP trace export calls.
pub(crate) const GRPC_EXPORT_PATH: &str =
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How export requests are compressed (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Sent as they are.
    #[default]
    None,
    /// gzip: `Content-Encoding: gzip` over OTLP/HTTP, `grpc-encoding: gzip`
    /// and the compressed flag over gRPC. Spans are mostly repeated names
    /// and ids, and shrink several times over; it costs the export thread
    /// the compression.
    Gzip,
}

/// A checked export plan.
#[derive(Clone)]
pub struct TraceExport {
    /// Where spans are sent: `…/v1/traces` for OTLP/HTTP, the collector's
    /// address with the export method's path for gRPC.
    pub url: Uri,
    /// OTLP/HTTP or OTLP/gRPC.
    pub protocol: Protocol,
    /// gzip or none.
    pub compression: Compression,
    /// `service.name` and every other resource attribute.
    pub resource: Vec<KeyValue>,
    /// Which traces are recorded.
    pub sampler: Sampler,
    /// How long one export may take.
    pub timeout: Duration,
    /// Headers sent with every export.
    pub headers: HeaderMap,
    /// Batching.
    pub batch: BatchPlan,
    /// Certificates trusted for the collector, and this host's own.
    pub(crate) tls: ExportTls,
}

impl TraceExport {
    /// Whether the export headers (often a token) would travel unencrypted
    /// to another machine: a plain `http://` endpoint that is not loopback.
    /// Not refused (a collector beside the host on a private network is
    /// common), but worth a warning at start-up.
    pub fn headers_in_the_clear(&self) -> bool {
        if self.headers.is_empty() || self.url.scheme_str() == Some("https") {
            return false;
        }
        let host = self.url.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        !loopback
    }

    /// The collector's URL as logs and errors show it: without credentials.
    pub fn shown_url(&self) -> String {
        without_userinfo(&self.url.to_string())
    }
}

impl std::fmt::Debug for TraceExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceExport")
            .field("url", &self.shown_url())
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("resource", &self.resource)
            .field("sampler", &self.sampler)
            .field("timeout", &self.timeout)
            // Values can be credentials: only the names are shown.
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("batch", &self.batch)
            .field("tls", &self.tls)
            .finish()
    }
}

impl TraceSettings {
    /// Reads the standard variables (the CLI reads them through its flags
    /// instead, so a flag wins).
    pub fn from_env() -> TraceSettings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        TraceSettings {
            endpoint: var("OTEL_EXPORTER_OTLP_ENDPOINT"),
            traces_endpoint: var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            protocol: var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL")),
            insecure: var("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
                .or_else(|| var("OTEL_EXPORTER_OTLP_INSECURE")),
            compression: var("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
                .or_else(|| var("OTEL_EXPORTER_OTLP_COMPRESSION")),
            certificate: var("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
                .or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE")),
            client_certificate: var("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE")
                .or_else(|| var("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")),
            client_key: var("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY")
                .or_else(|| var("OTEL_EXPORTER_OTLP_CLIENT_KEY")),
            service_name: var("OTEL_SERVICE_NAME"),
            resource_attributes: var("OTEL_RESOURCE_ATTRIBUTES"),
            sampler: var("OTEL_TRACES_SAMPLER"),
            sampler_arg: var("OTEL_TRACES_SAMPLER_ARG"),
            timeout_ms: var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
                .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT")),
            headers: var("OTEL_EXPORTER_OTLP_HEADERS"),
            traces_headers: var("OTEL_EXPORTER_OTLP_TRACES_HEADERS"),
            schedule_delay_ms: var("OTEL_BSP_SCHEDULE_DELAY"),
            max_queue_size: var("OTEL_BSP_MAX_QUEUE_SIZE"),
            max_export_batch_size: var("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
            disabled: var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// The export plan, or `None` when no endpoint is set (or the SDK is
    /// disabled): then nothing is exported and no connection is ever made.
    pub fn resolve(&self) -> Result<Option<TraceExport>, TelemetryError> {
        if self.disabled {
            return Ok(None);
        }
        let protocol = match self.protocol.as_deref().map(str::trim) {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(TelemetryError::setting(
                    "--otlp-protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or \
                     OTEL_EXPORTER_OTLP_PROTOCOL)",
                    other,
                    "use `http/protobuf` (the default, a collector's port 4318) or `grpc` \
                     (port 4317); `http/json` is not built in",
                ));
            }
        };
        let url = match protocol {
            Protocol::HttpProtobuf => match (&self.traces_endpoint, &self.endpoint) {
                (Some(full), _) => parse_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full)?,
                (None, Some(base)) => {
                    parse_url("OTEL_EXPORTER_OTLP_ENDPOINT", base)?;
                    let joined = format!("{}/v1/traces", base.trim().trim_end_matches('/'));
                    parse_url("OTEL_EXPORTER_OTLP_ENDPOINT", &joined)?
                }
                (None, None) => return Ok(None),
            },
            // gRPC names the method, not a path under the endpoint: both
            // variables give the collector's address, as the specification
            // says, and the signal's endpoint wins.
            Protocol::Grpc => {
                let insecure = self.insecure()?;
                match (&self.traces_endpoint, &self.endpoint) {
                    (Some(full), _) => {
                        grpc_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", full, insecure)?
                    }
                    (None, Some(base)) => grpc_url("OTEL_EXPORTER_OTLP_ENDPOINT", base, insecure)?,
                    (None, None) => return Ok(None),
                }
            }
        };
        let tls = ExportTls::load(
            self.certificate.as_deref().map(str::trim),
            self.client_certificate.as_deref().map(str::trim),
            self.client_key.as_deref().map(str::trim),
        )?;
        if tls.is_set() && url.scheme_str() != Some("https") {
            // Certificates were given for TLS: sending in the clear instead
            // would be a surprise.
            return Err(TelemetryError::setting(
                "OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT)",
                &without_userinfo(&url.to_string()),
                "certificates are set (OTEL_EXPORTER_OTLP_CERTIFICATE or _CLIENT_CERTIFICATE), \
                 and they are only used over TLS: give an https:// endpoint, or unset them",
            ));
        }
        Ok(Some(TraceExport {
            url,
            protocol,
            compression: self.compression()?,
            resource: self.resource()?,
            sampler: self.parse_sampler()?,
            timeout: self.timeout()?,
            headers: self.headers()?,
            batch: self.batch()?,
            tls,
        }))
    }

    /// `OTEL_EXPORTER_OTLP_COMPRESSION`: the two values the specification
    /// names. Anything else is refused rather than sent uncompressed: a
    /// setting that silently does nothing is worse than an error.
    fn compression(&self) -> Result<Compression, TelemetryError> {
        match self.compression.as_deref().map(str::trim) {
            None => Ok(Compression::None),
            Some(v) if v.eq_ignore_ascii_case("none") => Ok(Compression::None),
            Some(v) if v.eq_ignore_ascii_case("gzip") => Ok(Compression::Gzip),
            Some(v) => Err(TelemetryError::setting(
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION or OTEL_EXPORTER_OTLP_COMPRESSION",
                v,
                "use gzip, or none (the default)",
            )),
        }
    }

    /// `OTEL_EXPORTER_OTLP_INSECURE`: only read for a gRPC address given
    /// without a scheme.
    fn insecure(&self) -> Result<bool, TelemetryError> {
        match self.insecure.as_deref().map(str::trim) {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(TelemetryError::setting(
                "OTEL_EXPORTER_OTLP_TRACES_INSECURE or OTEL_EXPORTER_OTLP_INSECURE",
                v,
                "use true (cleartext HTTP/2 to a gRPC address given without a scheme) or \
                 false (TLS, the default)",
            )),
        }
    }

    fn headers(&self) -> Result<HeaderMap, TelemetryError> {
        let mut map = HeaderMap::new();
        for (setting, list) in [
            ("OTEL_EXPORTER_OTLP_HEADERS", &self.headers),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &self.traces_headers),
        ] {
            if let Some(list) = list {
                for (name, value) in parse_headers(setting, list)? {
                    map.insert(name, value);
                }
            }
        }
        Ok(map)
    }

    fn batch(&self) -> Result<BatchPlan, TelemetryError> {
        let number = |setting: &'static str,
                      value: &Option<String>,
                      default: usize,
                      fix: &'static str|
         -> Result<usize, TelemetryError> {
            match value {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 && n <= MAX_QUEUE_LIMIT => Ok(n),
                    _ => Err(TelemetryError::setting(setting, v, fix)),
                },
            }
        };
        let delay = number(
            "OTEL_BSP_SCHEDULE_DELAY",
            &self.schedule_delay_ms,
            DEFAULT_SCHEDULE_DELAY.as_millis() as usize,
            "give a whole number of milliseconds above 0, such as 5000",
        )?;
        let max_queue = number(
            "OTEL_BSP_MAX_QUEUE_SIZE",
            &self.max_queue_size,
            DEFAULT_MAX_QUEUE,
            "give a number of spans from 1 to 1048576, such as 2048",
        )?;
        let max_batch = number(
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            &self.max_export_batch_size,
            DEFAULT_MAX_BATCH,
            "give a number of spans from 1 to 1048576, such as 512",
        )?;
        Ok(BatchPlan {
            delay: Duration::from_millis(delay as u64),
            max_queue,
            // The specification: a batch is never larger than the queue.
            max_batch: max_batch.min(max_queue),
        })
    }

    fn timeout(&self) -> Result<Duration, TelemetryError> {
        let Some(ms) = &self.timeout_ms else {
            return Ok(DEFAULT_EXPORT_TIMEOUT);
        };
        match ms.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(TelemetryError::setting(
                "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT or OTEL_EXPORTER_OTLP_TIMEOUT",
                ms,
                "give a whole number of milliseconds above 0, such as 10000",
            )),
        }
    }

    fn resource(&self) -> Result<Vec<KeyValue>, TelemetryError> {
        let mut attributes = match &self.resource_attributes {
            Some(list) => parse_resource_attributes(list)?,
            None => Vec::new(),
        };
        let named = attributes
            .iter()
            .any(|kv| kv.key.as_str() == "service.name");
        match &self.service_name {
            Some(name) => {
                attributes.retain(|kv| kv.key.as_str() != "service.name");
                attributes.push(KeyValue::new("service.name", name.trim().to_string()));
            }
            None if !named => {
                attributes.push(KeyValue::new("service.name", DEFAULT_SERVICE_NAME));
            }
            None => {}
        }
        Ok(attributes)
    }

    fn parse_sampler(&self) -> Result<Sampler, TelemetryError> {
        let name = self.sampler.as_deref().map(str::trim);
        let ratio = || -> Result<f64, TelemetryError> {
            let Some(arg) = &self.sampler_arg else {
                return Ok(1.0);
            };
            match arg.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => Err(TelemetryError::setting(
                    "OTEL_TRACES_SAMPLER_ARG",
                    arg,
                    "give the share of traces to keep, from 0.0 to 1.0, such as 0.25",
                )),
            }
        };
        Ok(match name {
            None | Some("parentbased_always_on") => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
            }
            Some("always_on") => Sampler::AlwaysOn,
            Some("always_off") => Sampler::AlwaysOff,
            Some("traceidratio") => Sampler::TraceIdRatio(ratio()?),
            Some("parentbased_always_off") => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            Some("parentbased_traceidratio") => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(ratio()?)))
            }
            Some(other) => {
                return Err(TelemetryError::setting(
                    "OTEL_TRACES_SAMPLER",
                    other,
                    "use always_on, always_off, traceidratio, parentbased_always_on (the \
                     default), parentbased_always_off or parentbased_traceidratio",
                ));
            }
        })
    }
}

fn parse_url(setting: &'static str, value: &str) -> Result<Uri, TelemetryError> {
    let fix = "give an http:// or https:// URL with a host, such as http://127.0.0.1:4318";
    // The value is repeated in the error: without any credentials in it.
    let shown = without_userinfo(value);
    let uri: Uri = value
        .trim()
        .parse()
        .map_err(|_| TelemetryError::setting(setting, &shown, fix))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(uri),
        _ => Err(TelemetryError::setting(setting, &shown, fix)),
    }
}

/// A gRPC collector's address with the export method's path.
///
/// As the specification has it, the address may come without a scheme
/// (`collector:4317`, as Kubernetes manifests write it): then TLS is used
/// unless `insecure` (`OTEL_EXPORTER_OTLP_INSECURE`) is true. A path is
/// refused rather than dropped (it is usually an OTLP/HTTP URL given with
/// the wrong protocol), and so are credentials in the URL: HTTP/2 would
/// send them in `:authority`, in the clear over `http://`.
fn grpc_url(setting: &'static str, value: &str, insecure: bool) -> Result<Uri, TelemetryError> {
    let shown = without_userinfo(value);
    let refuse = |fix: &'static str| TelemetryError::setting(setting, &shown, fix);
    let trimmed = value.trim();
    let given = if trimmed.contains("://") {
        trimmed.to_string()
    } else if insecure {
        format!("http://{trimmed}")
    } else {
        format!("https://{trimmed}")
    };
    let fix = "give the collector's gRPC address, such as http://127.0.0.1:4317 or \
               collector:4317 (TLS unless OTEL_EXPORTER_OTLP_INSECURE=true)";
    let uri: Uri = given.parse().map_err(|_| refuse(fix))?;
    let (Some(scheme @ ("http" | "https")), Some(authority)) = (uri.scheme_str(), uri.authority())
    else {
        return Err(refuse(fix));
    };
    if authority.host().is_empty() {
        return Err(refuse(fix));
    }
    if authority.as_str().contains('@') {
        return Err(refuse(
            "put credentials in OTEL_EXPORTER_OTLP_HEADERS (such as \
             authorization=Bearer%20TOKEN), not in the URL: over gRPC the URL's user \
             and password would be sent as they are",
        ));
    }
    let path_given = uri.path() != "/" && !uri.path().is_empty();
    if path_given || uri.query().is_some() {
        return Err(refuse(
            "with OTEL_EXPORTER_OTLP_PROTOCOL=grpc give the collector's address without a \
             path, such as http://127.0.0.1:4317 (a URL ending in /v1/traces is for \
             http/protobuf)",
        ));
    }
    format!("{scheme}://{authority}{GRPC_EXPORT_PATH}")
        .parse()
        .map_err(|_| refuse(fix))
}

/// `value` with any `user:password@` before the host replaced by `***@`
/// and any query by `?***`, for logs and errors: credentials belong in
/// `OTEL_EXPORTER_OTLP_HEADERS`, and even when someone puts them in the URL
/// (as user info or as an `?api-key=`) they are never printed.
pub(crate) fn without_userinfo(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, value),
    };
    // A password may hold `/`, `?`, `#` or `@`: everything up to the last
    // `@` is hidden, and an `@` past a `?` or `#` (the password's or the
    // query's, there is no telling) hides all but the scheme.
    let query = rest.find(['?', '#']);
    let mut rest = match rest.rfind('@') {
        Some(at) if query.is_some_and(|q| q < at) => "***".to_string(),
        Some(at) => format!("***{}", &rest[at..]),
        None => rest.to_string(),
    };
    if let Some(query) = rest.find('?') {
        rest.truncate(query);
        rest.push_str("?***");
    }
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    }
}

/// `key=value,…` as the OpenTelemetry specification writes it: values are
/// percent-encoded, whitespace around entries is ignored.
fn parse_resource_attributes(list: &str) -> Result<Vec<KeyValue>, TelemetryError> {
    let fix = "write key=value pairs separated by commas, such as \
               deployment.environment=prod,service.namespace=shop";
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| TelemetryError::setting("OTEL_RESOURCE_ATTRIBUTES", list, fix))?;
        let key = key.trim();
        let value = percent_decode(value.trim())
            .ok_or_else(|| TelemetryError::setting("OTEL_RESOURCE_ATTRIBUTES", list, fix))?;
        if key.is_empty() || out.len() == MAX_RESOURCE_ATTRIBUTES {
            return Err(TelemetryError::setting(
                "OTEL_RESOURCE_ATTRIBUTES",
                list,
                fix,
            ));
        }
        out.push(KeyValue::new(key.to_string(), value));
    }
    Ok(out)
}

/// `key=value,…` headers, values percent-encoded. An error names the
/// variable but never repeats its value: it is often a credential.
fn parse_headers(
    setting: &'static str,
    list: &str,
) -> Result<Vec<(HeaderName, HeaderValue)>, TelemetryError> {
    let bad = || TelemetryError::Secret {
        setting,
        fix: "write name=value pairs separated by commas, values percent-encoded, such as \
              authorization=Bearer%20TOKEN",
    };
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry.split_once('=').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = percent_decode(value.trim()).ok_or_else(bad)?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| bad())?;
        value.set_sensitive(true);
        if out.len() == MAX_HEADERS {
            return Err(bad());
        }
        out.push((name, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut TraceSettings)) -> TraceSettings {
        let mut s = TraceSettings::default();
        f(&mut s);
        s
    }

    #[test]
    fn compression_is_gzip_or_none_and_anything_else_is_refused() {
        let plan = |value: Option<&str>| {
            with(|s| {
                s.endpoint = Some("http://c:4318".into());
                s.compression = value.map(Into::into);
            })
            .resolve()
        };
        let compression = |value| plan(value).unwrap().unwrap().compression;
        assert_eq!(compression(None), Compression::None);
        assert_eq!(compression(Some("none")), Compression::None);
        assert_eq!(compression(Some(" GZIP ")), Compression::Gzip);
        for bad in ["zstd", "deflate", "gzip,none"] {
            let err = plan(Some(bad)).unwrap_err().to_string();
            assert!(err.contains("OTEL_EXPORTER_OTLP_COMPRESSION"), "{err}");
            assert!(err.contains(bad), "{err}");
            assert!(err.contains("use gzip, or none"), "{err}");
        }
    }

    fn service_name(plan: &TraceExport) -> String {
        plan.resource
            .iter()
            .find(|kv| kv.key.as_str() == "service.name")
            .map(|kv| kv.value.to_string())
            .unwrap()
    }

    #[test]
    fn no_endpoint_means_no_export() {
        assert!(TraceSettings::default().resolve().unwrap().is_none());
        let disabled = with(|s| {
            s.endpoint = Some("http://127.0.0.1:4318".into());
            s.disabled = true;
        });
        assert!(disabled.resolve().unwrap().is_none());
    }

    #[test]
    fn the_base_endpoint_gets_the_traces_path_and_the_full_one_wins() {
        let base = with(|s| s.endpoint = Some("http://collector:4318/".into()));
        let plan = base.resolve().unwrap().unwrap();
        assert_eq!(plan.url.to_string(), "http://collector:4318/v1/traces");
        assert_eq!(service_name(&plan), "waxosuit");
        assert_eq!(plan.timeout, DEFAULT_EXPORT_TIMEOUT);
        let full = with(|s| {
            s.endpoint = Some("http://collector:4318".into());
            s.traces_endpoint = Some("https://traces.example:443/otlp".into());
        });
        let plan = full.resolve().unwrap().unwrap();
        assert_eq!(plan.url.to_string(), "https://traces.example:443/otlp");
    }

    #[test]
    fn grpc_calls_the_export_method_at_the_collectors_address() {
        let grpc = |s: &mut TraceSettings| s.protocol = Some(" grpc".into());
        let plan = with(|s| {
            grpc(s);
            s.endpoint = Some("http://collector:4317/".into());
        })
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(plan.protocol, Protocol::Grpc);
        assert_eq!(
            plan.url.to_string(),
            "http://collector:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        // The signal's endpoint wins, and is an address too.
        let plan = with(|s| {
            grpc(s);
            s.endpoint = Some("http://collector:4317".into());
            s.traces_endpoint = Some("https://traces.example".into());
        })
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(
            plan.url.to_string(),
            "https://traces.example/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        // An OTLP/HTTP URL given with gRPC is refused, naming the variable
        // and what to give instead.
        let err = with(|s| {
            grpc(s);
            s.traces_endpoint = Some("http://collector:4318/v1/traces".into());
        })
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") && err.contains("without a path"),
            "{err}"
        );
        // Credentials in the URL would travel in `:authority`: refused.
        let err = with(|s| {
            grpc(s);
            s.endpoint = Some("http://user:secret@collector:4317".into());
        })
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_HEADERS") && !err.contains("secret"),
            "{err}"
        );
        // An address without a scheme: TLS, unless insecure is set.
        let plan = |insecure: Option<&str>| {
            with(|s| {
                grpc(s);
                s.endpoint = Some("otel-collector.monitoring:4317".into());
                s.insecure = insecure.map(Into::into);
            })
            .resolve()
        };
        let url = |p: Result<Option<TraceExport>, TelemetryError>| p.unwrap().unwrap().url;
        assert_eq!(url(plan(None)).scheme_str(), Some("https"));
        assert_eq!(url(plan(Some("TRUE"))).scheme_str(), Some("http"));
        assert_eq!(
            url(plan(Some("true"))).authority().unwrap().as_str(),
            "otel-collector.monitoring:4317"
        );
        assert_eq!(url(plan(Some("false"))).scheme_str(), Some("https"));
        let err = plan(Some("yes")).unwrap_err().to_string();
        assert!(err.contains("OTEL_EXPORTER_OTLP_INSECURE"), "{err}");
        // No endpoint: no export, whatever the protocol.
        assert!(with(grpc).resolve().unwrap().is_none());
        // The default stays OTLP/HTTP.
        let plan = with(|s| s.endpoint = Some("http://c:4318".into()))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(plan.protocol, Protocol::HttpProtobuf);
    }

    #[test]
    fn bad_settings_name_the_variable_and_a_fix() {
        let cases: [(TraceSettings, &str); 6] = [
            (
                with(|s| s.endpoint = Some("collector:4318".into())),
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                with(|s| s.traces_endpoint = Some("ftp://x/v1/traces".into())),
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                with(|s| {
                    s.endpoint = Some("http://c:4318".into());
                    s.protocol = Some("http/json".into());
                }),
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                with(|s| {
                    s.endpoint = Some("http://c:4318".into());
                    s.sampler = Some("jaeger_remote".into());
                }),
                "OTEL_TRACES_SAMPLER",
            ),
            (
                with(|s| {
                    s.endpoint = Some("http://c:4318".into());
                    s.sampler = Some("traceidratio".into());
                    s.sampler_arg = Some("1.5".into());
                }),
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                with(|s| {
                    s.endpoint = Some("http://c:4318".into());
                    s.resource_attributes = Some("novalue".into());
                }),
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
        ];
        for (settings, variable) in cases {
            let err = settings.resolve().unwrap_err().to_string();
            assert!(err.contains(variable), "{err}");
            // A fix follows the reason.
            let fix = err.split_once("which is not valid: ").unwrap().1;
            assert!(fix.len() > 10, "{err}");
        }
    }

    /// Export headers (a token, usually) over plain `http://` to another
    /// machine are worth a warning; to loopback, over TLS or without
    /// headers they are not.
    #[test]
    fn headers_in_the_clear_are_told_apart() {
        let clear = |endpoint: &str, headers: Option<&str>| {
            with(|s| {
                s.endpoint = Some(endpoint.into());
                s.headers = headers.map(Into::into);
            })
            .resolve()
            .unwrap()
            .unwrap()
            .headers_in_the_clear()
        };
        let token = Some("authorization=Bearer%20t0ken");
        assert!(clear("http://collector.example:4318", token));
        assert!(clear("http://10.0.0.7:4318", token));
        assert!(!clear("https://collector.example:4318", token));
        assert!(!clear("http://127.0.0.1:4318", token));
        assert!(!clear("http://localhost:4318", token));
        assert!(!clear("http://[::1]:4318", token));
        assert!(!clear("http://collector.example:4318", None));
    }

    #[test]
    fn credentials_in_an_endpoint_are_never_shown() {
        assert_eq!(
            without_userinfo("https://user:s3cret@collector:4318/v1/traces"),
            "https://***@collector:4318/v1/traces"
        );
        // An `@` in the path is hidden with what comes before it: a password
        // may hold `/`, so which it is cannot be told (hiding a path is the
        // safe mistake).
        assert_eq!(without_userinfo("http://c:4318/a@b"), "http://***@b");
        for secret in [
            "http://user:s3c/ret@collector:4318",
            "http://user:s3c?ret@collector:4318",
            "http://user:s3c#ret@collector:4318/v1/traces",
            "https://user:s3c@ret@collector:4318",
        ] {
            let shown = without_userinfo(secret);
            assert!(
                !shown.contains("s3c") && !shown.contains("ret"),
                "{secret}: {shown}"
            );
        }
        assert_eq!(
            without_userinfo("https://c:4318/v1/traces?api-key=s3cret#x"),
            "https://c:4318/v1/traces?***"
        );
        let settings = with(|s| {
            s.endpoint = Some("https://u:s3cret@c:4318/?key=s3cret".into());
            s.headers = Some("authorization=s3cret".into());
            s.traces_headers = Some("x-key=s3cret".into());
        });
        assert!(!format!("{settings:?}").contains("s3cret"), "{settings:?}");
        let bad = with(|s| s.endpoint = Some("ftp://user:s3cret@collector".into()));
        let err = bad.resolve().unwrap_err().to_string();
        assert!(
            !err.contains("s3cret") && err.contains("***@collector"),
            "{err}"
        );
        let plan = with(|s| s.endpoint = Some("http://user:s3cret@collector:4318".into()))
            .resolve()
            .unwrap()
            .unwrap();
        assert!(!plan.shown_url().contains("s3cret"), "{}", plan.shown_url());
    }

    #[test]
    fn samplers_follow_the_specification_names() {
        let plan = |name: Option<&str>, arg: Option<&str>| {
            with(|s| {
                s.endpoint = Some("http://c:4318".into());
                s.sampler = name.map(str::to_string);
                s.sampler_arg = arg.map(str::to_string);
            })
            .resolve()
            .unwrap()
            .unwrap()
            .sampler
        };
        assert!(matches!(plan(None, None), Sampler::ParentBased(_)));
        assert!(matches!(plan(Some("always_on"), None), Sampler::AlwaysOn));
        assert!(matches!(plan(Some("always_off"), None), Sampler::AlwaysOff));
        assert!(matches!(
            plan(Some("traceidratio"), Some("0.25")),
            Sampler::TraceIdRatio(r) if r == 0.25
        ));
    }

    #[test]
    fn headers_merge_and_a_bad_one_is_reported_without_its_value() {
        let plan = with(|s| {
            s.endpoint = Some("http://c:4318".into());
            s.headers = Some("authorization=Bearer%20one, x-team=a".into());
            s.traces_headers = Some("authorization=Bearer%20two".into());
        })
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(plan.headers["authorization"], "Bearer two");
        assert_eq!(plan.headers["x-team"], "a");
        assert!(!format!("{plan:?}").contains("Bearer"), "{plan:?}");
        for bad in ["novalue", "bad name=x", "k=line%0Abreak", "k=%zz"] {
            let err = with(|s| {
                s.endpoint = Some("http://c:4318".into());
                s.headers = Some(format!("authorization=s3cret,{bad}"));
            })
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(err.contains("OTEL_EXPORTER_OTLP_HEADERS"), "{err}");
            assert!(!err.contains("s3cret") && !err.contains(bad), "{err}");
        }
    }

    #[test]
    fn batch_settings_have_the_sdk_defaults_and_are_checked() {
        let plan = with(|s| s.endpoint = Some("http://c:4318".into()))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(
            plan.batch,
            BatchPlan {
                delay: DEFAULT_SCHEDULE_DELAY,
                max_queue: 2048,
                max_batch: 512
            }
        );
        let plan = with(|s| {
            s.endpoint = Some("http://c:4318".into());
            s.max_queue_size = Some("100".into());
            s.schedule_delay_ms = Some("250".into());
        })
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(plan.batch.max_batch, 100);
        assert_eq!(plan.batch.delay, Duration::from_millis(250));
        for (field, variable) in [
            (0, "OTEL_BSP_SCHEDULE_DELAY"),
            (1, "OTEL_BSP_MAX_QUEUE_SIZE"),
            (2, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        ] {
            let err = with(|s| {
                s.endpoint = Some("http://c:4318".into());
                let slot = match field {
                    0 => &mut s.schedule_delay_ms,
                    1 => &mut s.max_queue_size,
                    _ => &mut s.max_export_batch_size,
                };
                *slot = Some("0".into());
            })
            .resolve()
            .unwrap_err()
            .to_string();
            assert!(err.contains(variable), "{err}");
        }
    }

    #[test]
    fn service_name_precedence_and_percent_decoding() {
        let attrs = "service.name=from-attrs,team=a%2Cb";
        let plan = with(|s| {
            s.endpoint = Some("http://c:4318".into());
            s.resource_attributes = Some(attrs.into());
        })
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(service_name(&plan), "from-attrs");
        let team = plan.resource.iter().find(|kv| kv.key.as_str() == "team");
        assert_eq!(team.unwrap().value.to_string(), "a,b");
        let plan = with(|s| {
            s.endpoint = Some("http://c:4318".into());
            s.resource_attributes = Some(attrs.into());
            s.service_name = Some("shop".into());
        })
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(service_name(&plan), "shop");
        let names = plan
            .resource
            .iter()
            .filter(|kv| kv.key.as_str() == "service.name");
        assert_eq!(names.count(), 1);
    }
}
