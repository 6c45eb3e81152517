//! An OTLP trace receiver in the test process: what an OpenTelemetry
//! collector would get from a host under test.
//!
//! Over HTTP it accepts `POST /v1/traces` with a protobuf
//! `ExportTraceServiceRequest` (decoded with the OpenTelemetry proto types,
//! so a malformed export fails the test rather than passing unseen). Over
//! gRPC ([`OtlpReceiver::start_grpc`]) it is tonic's server for the
//! `TraceService` the proto crate generates. Either way it keeps every
//! span and counts the connections made to it, so a test can also prove
//! that nothing connected.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::TestPki;

/// The largest export accepted; the SDK's batches are far smaller.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One received span, flattened for assertions: ids in lower-case hex.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The exporting resource's attributes (`service.name`, …).
    pub resource: BTreeMap<String, String>,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, or empty for a root span.
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// `server`, `client`, `producer`, `consumer`, `internal` or `unspecified`.
    pub kind: &'static str,
    /// Attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// `unset`, `ok` or `error`.
    pub status: &'static str,
    /// The status message (set with `error`).
    pub status_message: String,
    /// Events: name and attributes.
    pub events: Vec<(String, BTreeMap<String, String>)>,
    /// Start, nanoseconds since the Unix epoch.
    pub start_unix_nano: u64,
    /// How long it lasted, in microseconds.
    pub duration_us: u64,
}

impl ReceivedSpan {
    /// An attribute's value, if set.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// `service.name` of the resource that exported it.
    pub fn service(&self) -> &str {
        self.resource
            .get("service.name")
            .map(String::as_str)
            .unwrap_or("")
    }
}

#[derive(Default)]
struct Received {
    /// Decode and keep spans, or only count requests (a benchmark's sink,
    /// which should cost the machine little).
    keep: bool,
    spans: Vec<ReceivedSpan>,
    requests: usize,
    rejected: usize,
    bytes: usize,
    /// The largest export request's size, in bytes.
    largest: usize,
    /// Exports still to refuse before accepting any.
    refusals: usize,
    /// The HTTP status or gRPC code they are refused with.
    refusal: u16,
    /// The gRPC message they are refused with.
    refusal_message: String,
    /// The `Retry-After` (seconds) of an HTTP refusal.
    retry_after: Option<u64>,
    /// The `RetryInfo` delay a gRPC refusal carries in its details.
    retry_info: Option<Duration>,
    /// When each export request came (the first 10 000).
    times: Vec<Instant>,
    /// The last request's headers, names in lower case.
    headers: Vec<(String, String)>,
    /// The `partial_success` accepted exports are answered with.
    partial: Option<ExportTracePartialSuccess>,
}

impl Received {
    fn response(&self) -> ExportTraceServiceResponse {
        ExportTraceServiceResponse {
            partial_success: self.partial.clone(),
        }
    }
}

/// The receiver; stops listening when dropped.
pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Stops the gRPC server's runtime.
    grpc_stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Whether it speaks TLS (its URL is `https://`).
    tls: bool,
}

impl OtlpReceiver {
    /// Listens on a free loopback port.
    pub fn start() -> io::Result<OtlpReceiver> {
        OtlpReceiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Listens on `addr` (a test that proves nothing connects to the
    /// standard OTLP port listens there).
    pub fn start_on(addr: SocketAddr) -> io::Result<OtlpReceiver> {
        OtlpReceiver::listen(addr, true, None)
    }

    /// OTLP/HTTP over TLS on a free loopback port, with `pki`'s server
    /// certificate; with `client_auth`, only clients with a certificate of
    /// `pki`'s CA get through the handshake.
    pub fn start_tls(pki: &TestPki, client_auth: bool) -> io::Result<OtlpReceiver> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(&pki.ca).map_err(io::Error::other)? {
                roots
                    .add(certificate.map_err(io::Error::other)?)
                    .map_err(io::Error::other)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let chain = CertificateDer::pem_file_iter(&pki.server_certificate)
            .map_err(io::Error::other)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).map_err(io::Error::other)?;
        let config = builder
            .with_single_cert(chain, key)
            .map_err(io::Error::other)?;
        OtlpReceiver::listen(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            true,
            Some(Arc::new(config)),
        )
    }

    /// Listens on `addr` and only counts what it is sent (no decoding, no
    /// spans kept): the sink for benchmarks of trace export.
    pub fn start_counting(addr: SocketAddr) -> io::Result<OtlpReceiver> {
        OtlpReceiver::listen(addr, false, None)
    }

    /// An OTLP/HTTP receiver that answers the first `first` exports with
    /// `status` and, if given, `Retry-After: retry_after` (counted, not
    /// kept), then accepts.
    pub fn start_refusing(
        first: usize,
        status: u16,
        retry_after: Option<u64>,
    ) -> io::Result<OtlpReceiver> {
        let receiver = OtlpReceiver::start()?;
        {
            let mut received = receiver.lock();
            received.refusals = first;
            received.refusal = status;
            received.retry_after = retry_after;
        }
        Ok(receiver)
    }

    fn listen(
        addr: SocketAddr,
        keep: bool,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<OtlpReceiver> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let receiver = OtlpReceiver {
            addr: listener.local_addr()?,
            received: Arc::new(Mutex::new(Received {
                keep,
                ..Received::default()
            })),
            connections: Arc::default(),
            stop: Arc::default(),
            grpc_stop: None,
            tls: tls.is_some(),
        };
        let (received, connections, stop) = (
            Arc::clone(&receiver.received),
            Arc::clone(&receiver.connections),
            Arc::clone(&receiver.stop),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        let received = Arc::clone(&received);
                        let tls = tls.clone();
                        std::thread::spawn(move || {
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                            match tls {
                                None => serve(stream, &received),
                                Some(config) => {
                                    if let Ok(tls) = rustls::ServerConnection::new(config) {
                                        serve(rustls::StreamOwned::new(tls, stream), &received);
                                    }
                                }
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
        });
        Ok(receiver)
    }

    /// An OTLP/gRPC receiver (tonic's server) on a free loopback port, for
    /// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
    pub fn start_grpc() -> io::Result<OtlpReceiver> {
        OtlpReceiver::grpc(None)
    }

    /// OTLP/gRPC over TLS (tonic's, ALPN `h2`) with `pki`'s server
    /// certificate; with `client_auth`, only clients with a certificate of
    /// `pki`'s CA get through the handshake.
    pub fn start_grpc_tls(pki: &TestPki, client_auth: bool) -> io::Result<OtlpReceiver> {
        let identity = tonic::transport::Identity::from_pem(
            std::fs::read(&pki.server_certificate)?,
            std::fs::read(&pki.server_key)?,
        );
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if client_auth {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(std::fs::read(
                &pki.ca,
            )?));
        }
        OtlpReceiver::grpc(Some(tls))
    }

    /// An OTLP/gRPC receiver that answers the first `first` exports with
    /// the gRPC status `code` (14 is `UNAVAILABLE`, as a collector that
    /// sheds load answers) and `message`, counting them, then accepts.
    pub fn start_grpc_refusing(first: usize, code: u16, message: &str) -> io::Result<OtlpReceiver> {
        let receiver = OtlpReceiver::grpc(None)?;
        {
            let mut received = receiver.lock();
            received.refusals = first;
            received.refusal = code;
            received.refusal_message = message.to_string();
        }
        Ok(receiver)
    }

    /// Like [`OtlpReceiver::start_grpc_refusing`], the refusals carrying a
    /// `google.rpc.RetryInfo` of `delay` in their status details
    /// (`grpc-status-details-bin`), as a collector asking for a pause does.
    pub fn start_grpc_refusing_with_retry_info(
        first: usize,
        code: u16,
        message: &str,
        delay: Duration,
    ) -> io::Result<OtlpReceiver> {
        let receiver = OtlpReceiver::start_grpc_refusing(first, code, message)?;
        receiver.lock().retry_info = Some(delay);
        Ok(receiver)
    }

    fn grpc(tls: Option<tonic::transport::ServerTlsConfig>) -> io::Result<OtlpReceiver> {
        let tls_on = tls.is_some();
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let received = Arc::new(Mutex::new(Received {
            keep: true,
            ..Received::default()
        }));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = Collector {
            received: Arc::clone(&received),
        };
        let counted = Arc::clone(&connections);
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                use tokio_stream::StreamExt;
                let incoming =
                    tokio_stream::wrappers::TcpListenerStream::new(listener).map(move |stream| {
                        counted.fetch_add(1, Ordering::Relaxed);
                        stream
                    });
                let mut server = tonic::transport::Server::builder();
                if let Some(tls) = tls {
                    match server.tls_config(tls) {
                        Ok(with_tls) => server = with_tls,
                        Err(_) => return,
                    }
                }
                let _ = server
                    .add_service(
                        TraceServiceServer::new(service)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
                            .send_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(OtlpReceiver {
            addr,
            received,
            connections,
            stop: Arc::default(),
            grpc_stop: Some(stop),
            tls: tls_on,
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` over TLS), the value for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.lock().spans.clone()
    }

    /// Export requests received (decoded or not).
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// Bytes of export requests received.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// When each export request came, refused or not (the first 10 000).
    pub fn request_times(&self) -> Vec<Instant> {
        self.lock().times.clone()
    }

    /// The largest export request received, in bytes (the protobuf
    /// message, without HTTP or gRPC framing).
    pub fn largest_request(&self) -> usize {
        self.lock().largest
    }

    /// From now on, answers the exports it accepts as taken only in part:
    /// `rejected` spans refused, for `message`.
    pub fn answer_partial_success(&self, rejected: i64, message: &str) {
        self.lock().partial = Some(ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: message.to_string(),
        });
    }

    /// Export requests that were not valid OTLP protobuf.
    pub fn rejected(&self) -> usize {
        self.lock().rejected
    }

    /// The values of header `name` (lower case) in the last export
    /// request, in order.
    pub fn last_header(&self, name: &str) -> Vec<String> {
        self.lock()
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// TCP connections accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Waits until `done` holds for the spans received, or `within` passes.
    pub fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + within;
        loop {
            let spans = self.spans();
            if done(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Received> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(stop) = self.grpc_stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The gRPC `TraceService`.
struct Collector {
    received: Arc<Mutex<Received>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .take(64)
            .map(|(name, value)| {
                (
                    name.as_str().to_string(),
                    value.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let request = request.into_inner();
        let mut received = self.received.lock().unwrap_or_else(|e| e.into_inner());
        received.headers = headers;
        received.requests += 1;
        if received.times.len() < 10_000 {
            received.times.push(Instant::now());
        }
        if received.refusals > 0 {
            received.refusals -= 1;
            let code = tonic::Code::from_i32(i32::from(received.refusal));
            let message = received.refusal_message.clone();
            return Err(match received.retry_info {
                Some(delay) => {
                    let details = retry_info_status(received.refusal, &message, delay);
                    tonic::Status::with_details(code, message, details.into())
                }
                None => tonic::Status::new(code, message),
            });
        }
        received.bytes += request.encoded_len();
        received.largest = received.largest.max(request.encoded_len());
        keep(request, &mut received);
        Ok(tonic::Response::new(received.response()))
    }
}

/// A `google.rpc.Status` of `code` and `message` whose details are one
/// `google.rpc.RetryInfo` of `delay`, in protobuf.
fn retry_info_status(code: u16, message: &str, delay: Duration) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint};
    fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
        encode_key(field, WireType::LengthDelimited, out);
        encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    let mut duration = Vec::new();
    encode_key(1, WireType::Varint, &mut duration);
    encode_varint(delay.as_secs(), &mut duration);
    encode_key(2, WireType::Varint, &mut duration);
    encode_varint(u64::from(delay.subsec_nanos()), &mut duration);
    let mut retry_info = Vec::new();
    len_field(&mut retry_info, 1, &duration);
    let mut any = Vec::new();
    len_field(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
    len_field(&mut any, 2, &retry_info);
    let mut status = Vec::new();
    encode_key(1, WireType::Varint, &mut status);
    encode_varint(u64::from(code), &mut status);
    len_field(&mut status, 2, message.as_bytes());
    len_field(&mut status, 3, &any);
    status
}

/// Serves one keep-alive connection.
fn serve(stream: impl Read + Write, received: &Mutex<Received>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut close = false;
        let mut encoding = None;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if headers.len() < 64 {
                    headers.push((name.clone(), value.to_string()));
                }
                if name == "content-length" {
                    length = value.parse().unwrap_or(usize::MAX);
                } else if name == "connection" && value.eq_ignore_ascii_case("close") {
                    close = true;
                } else if name == "content-encoding" {
                    encoding = Some(value.to_ascii_lowercase());
                }
            }
        }
        if length > MAX_BODY {
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n");
            return;
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        // As a collector does: gzip is taken (and inflated no further than
        // the bound of a plain body), any other encoding is refused.
        let body = match encoding.as_deref() {
            None | Some("identity") => Some(body),
            Some("gzip") => gunzip(&body),
            Some(_) => None,
        };
        let Some(body) = body else {
            let writer = reader.get_mut();
            let _ = writer
                .write_all(b"HTTP/1.1 415 Unsupported Media Type\r\ncontent-length: 0\r\n\r\n");
            return;
        };
        let refused = {
            let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
            received.headers = headers;
            if received.refusals > 0 {
                received.refusals -= 1;
                received.requests += 1;
                if received.times.len() < 10_000 {
                    received.times.push(Instant::now());
                }
                Some((received.refusal, received.retry_after))
            } else {
                None
            }
        };
        let ok = refused.is_none()
            && request_line.starts_with("POST /v1/traces ")
            && accept(&body, received);
        let answer = if ok {
            received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .response()
                .encode_to_vec()
        } else {
            Vec::new()
        };
        let status = match refused {
            Some((code, Some(seconds))) => format!("{code} Refused\r\nretry-after: {seconds}"),
            Some((code, None)) => format!("{code} Refused"),
            None if ok => "200 OK".to_string(),
            None => "400 Bad Request".to_string(),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        let writer = reader.get_mut();
        if writer.write_all(response.as_bytes()).is_err()
            || writer.write_all(&answer).is_err()
            || writer.flush().is_err()
            || close
        {
            return;
        }
    }
}

/// `body` inflated, if it is gzip and inflates to at most [`MAX_BODY`].
fn gunzip(body: &[u8]) -> Option<Vec<u8>> {
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut plain)
        .ok()?;
    (plain.len() <= MAX_BODY).then_some(plain)
}

fn accept(body: &[u8], received: &Mutex<Received>) -> bool {
    let mut received = received.lock().unwrap_or_else(|e| e.into_inner());
    received.requests += 1;
    received.bytes += body.len();
    received.largest = received.largest.max(body.len());
    if received.times.len() < 10_000 {
        received.times.push(Instant::now());
    }
    if !received.keep {
        return true;
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        received.rejected += 1;
        return false;
    };
    keep(request, &mut received);
    true
}

/// Keeps the spans of one export request.
fn keep(request: ExportTraceServiceRequest, received: &mut Received) {
    for resource_spans in request.resource_spans {
        let resource = attributes(
            resource_spans
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or_default(),
        );
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            let (status, status_message) = match &span.status {
                Some(s) if s.code == 2 => ("error", s.message.clone()),
                Some(s) if s.code == 1 => ("ok", s.message.clone()),
                _ => ("unset", String::new()),
            };
            received.spans.push(ReceivedSpan {
                resource: resource.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name.clone(),
                kind: match span.kind {
                    1 => "internal",
                    2 => "server",
                    3 => "client",
                    4 => "producer",
                    5 => "consumer",
                    _ => "unspecified",
                },
                attributes: attributes(&span.attributes),
                status,
                status_message,
                events: span
                    .events
                    .iter()
                    .map(|e| (e.name.clone(), attributes(&e.attributes)))
                    .collect(),
                start_unix_nano: span.start_time_unix_nano,
                duration_us: span
                    .end_time_unix_nano
                    .saturating_sub(span.start_time_unix_nano)
                    / 1000,
            });
        }
    }
}

fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
