//! The span queue and the OTLP exporter that empties it.
//!
//! Spans close on the host's threads and go into [`SpanQueue`]: a bounded
//! vector behind a mutex, which each thread fills from a small stage of its
//! own, so closing a span costs an append and the shared lock is taken once
//! per [`STAGE_SPANS`] spans. The exporter is
//! one task on a one-thread runtime of its own (an export must still run
//! while the host drains at shutdown, after the host's runtime stops taking
//! work): it wakes when a batch is full or the schedule delay has passed,
//! encodes the batch ([`Encoder`]) and sends it with hyper and rustls: a
//! POST over HTTP/1.1 for OTLP/HTTP, or the `TraceService/Export` call over
//! HTTP/2 for OTLP/gRPC (a gRPC call is an HTTP/2 POST with a framed
//! message and its status in the trailers, which hyper reads as well as a
//! gRPC library would, without a second HTTP stack).
//! When the collector is slower than the host, the queue fills and later
//! spans are dropped and counted, never buffered without bound; a collector
//! that fails is reported at most every [`REPORT_EVERY`].

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, TE};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, oneshot};
use waxosuit_trace::{SpanRecord, SpanSink};

use crate::config::{BatchPlan, Compression, Protocol, TraceExport};
use crate::encode::{self, Encoder};

/// A collector's answer is a small protobuf (partial success at most); a
/// larger one is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The largest export request sent: a batch whose spans would encode
/// larger is split. gRPC servers refuse messages over 4 MiB unless told
/// otherwise (the OpenTelemetry collector's receiver among them), and a
/// span can carry 128 KiB of text.
pub(crate) const MAX_REQUEST_BYTES: usize = 4 << 20;
/// The most of a gRPC error message shown in a warning.
const MAX_GRPC_MESSAGE: usize = 256;
/// Tries per batch: the first, and retries while the collector answers
/// that it may take the spans later.
const ATTEMPTS: u32 = 3;
/// The wait before the first retry; doubled before the next, and drawn
/// from its upper half so hosts restarting together do not retry together.
const RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between tries: the queue fills while the exporter
/// waits. A collector whose `Retry-After` asks for longer is not retried:
/// nothing is sent to it until then, [`MAX_PAUSE`] at most.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);
/// The longest pause a collector's `Retry-After` can impose.
const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How often a failing collector or dropped spans are reported.
pub(crate) const REPORT_EVERY: Duration = Duration::from_secs(30);

/// The most bytes of encoded spans queued, whatever their number: a span
/// can carry up to 128 attributes of 4 KiB. Each thread's stage holds
/// besides at most [`STAGE_BYTES`] and one span more.
const MAX_QUEUE_BYTES: usize = 32 << 20;

/// Spans a thread may hold before it moves them to the queue. Each
/// thread closing spans stages them in a buffer of its own, so the
/// queue's lock (whose cache line would otherwise travel between cores on
/// every span) is taken once per this many spans. Smaller batches stage
/// fewer ([`SpanQueue::stage_spans`]): the exporter is woken when a batch
/// has been queued, and each thread holds back less than a stage.
const STAGE_SPANS: usize = 16;
/// Bytes a thread may stage before it moves them, whatever their number.
const STAGE_BYTES: usize = 16 << 10;

/// Finished spans waiting for export, already encoded.
pub(crate) struct SpanQueue {
    queued: Mutex<Queued>,
    /// Every thread's staged spans; the exporter moves them to `queued`
    /// each time it wakes, so a thread that goes idle holds none for long.
    stages: Mutex<Vec<Arc<Mutex<Queued>>>>,
    /// Tells this queue's stages from another's on a thread.
    instance: u64,
    /// Spans a thread stages before moving them: [`STAGE_SPANS`], or an
    /// eighth of a batch when that is less (one, for batches of up to 15
    /// spans), so each thread holds back at most a small part of a batch.
    stage_spans: usize,
    batch: BatchPlan,
    /// Spans dropped because the queue was full, since the last report.
    dropped: AtomicU64,
    /// Set at shutdown: later spans are dropped.
    closed: AtomicBool,
    /// Wakes the exporter when a batch is full.
    full: Notify,
    /// Wakes the exporter out of a wait between tries at shutdown.
    closing: Notify,
}

/// Encoded `ScopeSpans.spans` entries, back to back, and where each ends.
#[derive(Default)]
pub(crate) struct Queued {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Queued {
    fn with_capacity(spans: usize) -> Queued {
        // Two spans of a traced request take about 500 bytes. Reserved up
        // front so no move reallocates under the lock, within the bound.
        let spans = spans.min(MAX_QUEUE_BYTES / 256);
        Queued {
            bytes: Vec::with_capacity(spans * 256),
            ends: Vec::with_capacity(spans),
        }
    }

    /// Appends one span, framed as a `ScopeSpans.spans` entry.
    fn append(&mut self, span: &SpanRecord<'_>) {
        // Whatever an interrupted append (a panic while encoding) left
        // after the last whole span goes: a partial span would make every
        // later request unreadable.
        let start = self.ends.last().copied().unwrap_or(0);
        self.bytes.truncate(start);
        encode::span_body(&mut self.bytes, span);
        // The frame holds the body's length, known once it is written: it
        // is appended, then turned to the front (a move of a few hundred
        // bytes, where the span's data is read only once).
        let len = self.bytes.len() - start;
        encode::span_frame(&mut self.bytes, len);
        let framed = self.bytes.len() - start - len;
        self.bytes[start..].rotate_right(framed);
        self.ends.push(self.bytes.len());
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

static QUEUES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's stage in each queue it closed spans for (one, but in
    /// tests that run several exporters).
    static STAGES: RefCell<Vec<(u64, Arc<Mutex<Queued>>)>> = const { RefCell::new(Vec::new()) };
}

impl SpanQueue {
    fn new(batch: BatchPlan) -> SpanQueue {
        SpanQueue {
            queued: Mutex::new(Queued::with_capacity(batch.max_queue)),
            stages: Mutex::new(Vec::new()),
            instance: QUEUES.fetch_add(1, Ordering::Relaxed),
            stage_spans: (batch.max_batch / 8).clamp(1, STAGE_SPANS),
            batch,
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            full: Notify::new(),
            closing: Notify::new(),
        }
    }

    /// Moves every thread's staged spans to the queue, then swaps
    /// everything queued for `spare` (emptied, its buffers kept).
    fn take(&self, spare: &mut Queued) {
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|stage| {
                // A thread that has exited left its stage to this list
                // alone, and nothing can stage into it any more: emptied
                // now, it goes. (Counted before it is emptied: a thread
                // may stage spans and exit in between.)
                let orphaned = Arc::strong_count(stage) == 1;
                let mut stage = stage.lock().unwrap_or_else(|e| e.into_inner());
                // The exporter is taking the queue: no need to wake it.
                self.move_staged(&mut stage, false);
                !orphaned
            });
        spare.clear();
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *queued, spare);
    }

    /// Moves `stage`'s spans to the queue, as many as its bounds take; the
    /// others are dropped and counted. Wakes the exporter when a batch is
    /// full, if `wake`.
    fn move_staged(&self, stage: &mut Queued, wake: bool) {
        if stage.ends.is_empty() {
            return;
        }
        let mut queued = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.batch.max_queue.saturating_sub(queued.ends.len());
        let bytes_room = MAX_QUEUE_BYTES.saturating_sub(queued.bytes.len());
        let fit = stage
            .ends
            .iter()
            .take(room)
            .take_while(|&&end| end <= bytes_room)
            .count();
        let before = queued.ends.len();
        if fit > 0 {
            let base = queued.bytes.len();
            let end = stage.ends[fit - 1];
            queued.bytes.extend_from_slice(&stage.bytes[..end]);
            queued
                .ends
                .extend(stage.ends[..fit].iter().map(|end| base + end));
        }
        let full = before < self.batch.max_batch && queued.ends.len() >= self.batch.max_batch;
        drop(queued);
        let dropped = stage.ends.len() - fit;
        if dropped > 0 {
            self.dropped.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        stage.clear();
        if stage.bytes.capacity() > 2 * STAGE_BYTES {
            // A large span came through: its room is not kept per thread.
            stage.bytes.shrink_to(STAGE_BYTES);
        }
        if full && wake {
            self.full.notify_one();
        }
    }

    /// A new stage for this thread in this queue (it had none), registered.
    fn new_stage(&self, stages: &mut Vec<(u64, Arc<Mutex<Queued>>)>) -> Arc<Mutex<Queued>> {
        // Stages of queues that are gone (only this thread holds them).
        stages.retain(|(_, stage)| Arc::strong_count(stage) > 1);
        // Room for the stage's spans at their usual size (a few hundred
        // bytes): a thread pays for no more than it stages.
        let stage = Arc::new(Mutex::new(Queued {
            bytes: Vec::with_capacity((self.stage_spans * 512).min(STAGE_BYTES)),
            ends: Vec::with_capacity(self.stage_spans),
        }));
        self.stages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&stage));
        stages.push((self.instance, Arc::clone(&stage)));
        stage
    }

    fn stage_span(&self, stage: &Mutex<Queued>, span: &SpanRecord<'_>) {
        let mut stage = stage.lock().unwrap_or_else(|e| e.into_inner());
        stage.append(span);
        if stage.ends.len() >= self.stage_spans || stage.bytes.len() >= STAGE_BYTES {
            self.move_staged(&mut stage, true);
        }
    }
}

impl SpanSink for SpanQueue {
    fn finish(&self, span: &SpanRecord<'_>) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        // Encoding where the span closed reads its data where it lies, not
        // copied; staging it keeps the queue's lock off the span's path.
        let staged = STAGES.try_with(|stages| {
            let stages = stages.borrow();
            match stages.iter().find(|(queue, _)| *queue == self.instance) {
                Some((_, stage)) => self.stage_span(stage, span),
                None => {
                    drop(stages);
                    let stage = STAGES.with_borrow_mut(|stages| self.new_stage(stages));
                    self.stage_span(&stage, span);
                }
            }
        });
        if staged.is_err() {
            // The thread is exiting and its stage is gone: the span goes
            // to the queue alone.
            let mut alone = Queued::default();
            alone.append(span);
            self.move_staged(&mut alone, true);
        }
    }
}

/// The running exporter.
pub(crate) struct Exporter {
    queue: Arc<SpanQueue>,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    stopped: mpsc::Receiver<()>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter")
            .field("batch", &self.queue.batch)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Starts the exporter for `plan`, sending spans of `encoder`'s resource.
    pub(crate) fn start(plan: &TraceExport, encoder: Encoder) -> Result<Exporter, std::io::Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("waxosuit-otlp")
            .enable_all()
            .build()?;
        let client = ExportClient::new(plan)?;
        let queue = Arc::new(SpanQueue::new(plan.batch));
        let (stop, stopping) = oneshot::channel();
        let (done, stopped) = mpsc::channel();
        let task = ExportTask {
            queue: queue.clone(),
            client,
            encoder,
            shown_url: plan.shown_url(),
            protocol: plan.protocol,
            compression: plan.compression,
            buffer: Vec::new(),
            plain: Vec::new(),
            spare: Queued::with_capacity(plan.batch.max_queue),
            rejected: 0,
            rejection: None,
            collector_warning: None,
            rejections_reported: false,
            failures: 0,
            last_error: None,
            last_report: None,
            not_before: None,
        };
        runtime.spawn(async move {
            task.run(stopping).await;
            let _ = done.send(());
        });
        Ok(Exporter {
            queue,
            runtime: Some(runtime),
            stop: Some(stop),
            stopped,
        })
    }

    /// Where the recorder puts finished spans.
    pub(crate) fn sink(&self) -> Arc<SpanQueue> {
        self.queue.clone()
    }

    /// Sends what is queued, waiting at most `wait`; later spans are
    /// dropped. Returns whether the last export finished in time.
    pub(crate) fn shutdown(&mut self, wait: Duration) -> bool {
        let Some(stop) = self.stop.take() else {
            return true;
        };
        self.queue.closed.store(true, Ordering::Release);
        self.queue.closing.notify_waiters();
        let _ = stop.send(());
        let finished = match self.stopped.recv_timeout(wait) {
            Ok(()) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                tracing::warn!("the span exporter had stopped: spans still queued are lost");
                true
            }
        };
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime waits for its tasks, which panics inside
            // another runtime; the exporter may be shut down from one.
            runtime.shutdown_background();
        }
        finished
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How a batch went, for the retries of the batches after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Sent (or refused for good) without using up its tries.
    Once,
    /// Still "later" after every try, or after a wait longer than allowed.
    GaveUp,
}

struct ExportTask {
    queue: Arc<SpanQueue>,
    client: ExportClient,
    encoder: Encoder,
    shown_url: String,
    protocol: Protocol,
    /// gzip or none.
    compression: Compression,
    /// The request body being written.
    buffer: Vec<u8>,
    /// The request before compression, when it is compressed.
    plain: Vec<u8>,
    /// The queue's other half: filled by the host while this one is sent.
    spare: Queued,
    /// Spans collectors rejected since the last report, the last reason
    /// they gave, and the last warning of an export taken whole. The first
    /// is reported at once, later ones every [`REPORT_EVERY`].
    rejected: u64,
    rejection: Option<String>,
    collector_warning: Option<String>,
    rejections_reported: bool,
    /// Failed exports since the last report, and the last one's reason.
    failures: u64,
    last_error: Option<String>,
    last_report: Option<Instant>,
    /// Set when the collector asked for a longer pause than a retry waits:
    /// nothing is sent before (but the flush at shutdown).
    not_before: Option<Instant>,
}

impl ExportTask {
    async fn run(mut self, mut stopping: oneshot::Receiver<()>) {
        loop {
            let stop = tokio::select! {
                _ = self.queue.full.notified() => false,
                _ = tokio::time::sleep(self.queue.batch.delay) => false,
                _ = &mut stopping => true,
            };
            self.export_queued().await;
            self.report(stop);
            if stop {
                return;
            }
        }
    }

    async fn export_queued(&mut self) {
        let closed = self.queue.closed.load(Ordering::Acquire);
        if !closed && self.not_before.is_some_and(|at| Instant::now() < at) {
            // The spans wait in the queue, which drops (and counts) past
            // its bound.
            return;
        }
        self.not_before = None;
        self.queue.take(&mut self.spare);
        let ends = std::mem::take(&mut self.spare.ends);
        let mut start = 0;
        let mut spans = 0;
        // Retries stop for the round once a batch has used all its tries:
        // the collector is down, and later batches would only wait too.
        // They never happen in the flush at shutdown, which has a few
        // seconds for every batch.
        let mut may_retry = !closed;
        for (n, &end) in ends.iter().enumerate() {
            spans += 1;
            // The batch ends here when it is full, or when the next span
            // would take the request over its byte bound.
            let next_end = ends.get(n + 1).copied();
            let full = spans == self.queue.batch.max_batch
                || next_end
                    .is_none_or(|next| self.encoder.request_len(next - start) > MAX_REQUEST_BYTES);
            if !full {
                continue;
            }
            let sent = self.send(start, end, may_retry).await;
            may_retry &= sent != Sent::GaveUp;
            start = end;
            spans = 0;
        }
        self.spare.ends = ends;
    }

    /// Sends the queued spans in `start..end` of the taken half, trying
    /// again (when `may_retry`) while the collector answers "later".
    async fn send(&mut self, start: usize, end: usize, may_retry: bool) -> Sent {
        let body = match self.request_body(start, end) {
            Ok(body) => body,
            Err(error) => {
                self.failed(&error);
                return Sent::Once;
            }
        };
        let mut attempt = 1;
        let mut sent = Sent::Once;
        let outcome = loop {
            let outcome = self.client.post(body.clone()).await;
            let Err(error) = &outcome else {
                break outcome;
            };
            let Some(asked) = error.retry() else {
                break outcome;
            };
            if !may_retry {
                break outcome;
            }
            if asked > MAX_RETRY_WAIT {
                // Not hurried: the batch is given up, and nothing more is
                // sent until the collector said.
                self.not_before = Some(Instant::now() + asked.min(MAX_PAUSE));
                sent = Sent::GaveUp;
                break outcome;
            }
            if attempt == ATTEMPTS {
                sent = Sent::GaveUp;
                break outcome;
            }
            let backoff = RETRY_DELAY * 2u32.pow(attempt - 1);
            let wait = (backoff / 2 + jitter(backoff / 2)).max(asked);
            // Shutdown ends the wait: its flush needs the time.
            let closing = self.queue.closing.notified();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.queue.closed.load(Ordering::Acquire) {
                sent = Sent::GaveUp;
                break outcome;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = &mut closing => {
                    sent = Sent::GaveUp;
                    break outcome;
                }
            }
            attempt += 1;
        };
        match outcome {
            Ok(None) => {}
            Ok(Some(partial)) => self.partly_rejected(partial),
            Err(error) => self.failed(&error),
        }
        sent
    }

    /// Counts what a collector rejected of an export it took in part (not
    /// retried, as the specification says: it would reject it again), and
    /// reports the first one at once.
    fn partly_rejected(&mut self, partial: PartialSuccess) {
        if partial.rejected > 0 {
            self.rejected = self
                .rejected
                .saturating_add(u64::try_from(partial.rejected).unwrap_or(0));
            self.rejection = Some(partial.message);
        } else {
            self.collector_warning = Some(partial.message);
        }
        if !self.rejections_reported {
            self.report_rejections();
            self.rejections_reported = true;
        }
    }

    fn report_rejections(&mut self) {
        if self.rejected > 0 {
            tracing::warn!(
                collector = %self.shown_url,
                rejected = self.rejected,
                reason = self.rejection.take().unwrap_or_default(),
                "the collector rejected spans it was sent (it says why in `reason`)"
            );
            self.rejected = 0;
        }
        if let Some(warning) = self.collector_warning.take() {
            tracing::warn!(
                collector = %self.shown_url,
                warning,
                "the collector took the spans with a warning"
            );
        }
    }

    /// Counts a failed export, and reports the first one at once (later
    /// ones are counted, and reported with the dropped spans).
    fn failed(&mut self, error: &ExportError) {
        self.failures += 1;
        self.last_error = Some(with_sources(error));
        if self.last_report.is_none() {
            tracing::warn!(
                collector = %self.shown_url,
                error = self.last_error.as_deref().unwrap_or_default(),
                "cannot export spans; check that the collector is running and \
                 accepts OTLP over {} at this URL",
                match self.protocol {
                    Protocol::HttpProtobuf => "HTTP (port 4318)",
                    Protocol::Grpc => "gRPC (port 4317)",
                }
            );
            self.last_report = Some(Instant::now());
            self.failures = 0;
        }
    }

    /// The request carrying the queued spans in `start..end` of the taken
    /// half, compressed if the plan says so.
    fn request_body(&mut self, start: usize, end: usize) -> Result<Bytes, ExportError> {
        let entries = &self.spare.bytes[start..end];
        match (self.compression, self.protocol) {
            (Compression::None, Protocol::HttpProtobuf) => {
                self.encoder.request_encoded(entries, &mut self.buffer);
            }
            (Compression::None, Protocol::Grpc) => {
                self.encoder.grpc_message(entries, &mut self.buffer);
            }
            (Compression::Gzip, protocol) => {
                self.encoder.request_encoded(entries, &mut self.plain);
                encode::gzip(&self.plain, protocol == Protocol::Grpc, &mut self.buffer)
                    .map_err(ExportError::Compress)?;
            }
        }
        Ok(Bytes::from(std::mem::take(&mut self.buffer)))
    }

    /// Reports dropped spans and failed exports, at most every
    /// [`REPORT_EVERY`] (and once more at shutdown).
    fn report(&mut self, last: bool) {
        let due = self
            .last_report
            .is_none_or(|at| at.elapsed() >= REPORT_EVERY);
        if !due && !last {
            return;
        }
        let dropped = self.queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                queue = self.queue.batch.max_queue,
                "spans were dropped: the collector takes them more slowly than the host \
                 makes them; sample fewer traces (OTEL_TRACES_SAMPLER_ARG) or raise \
                 OTEL_BSP_MAX_QUEUE_SIZE"
            );
        }
        if self.failures > 0 {
            tracing::warn!(
                collector = %self.shown_url,
                failed = self.failures,
                error = self.last_error.as_deref().unwrap_or_default(),
                "span exports kept failing"
            );
            self.failures = 0;
        }
        self.report_rejections();
        if dropped > 0 || self.last_report.is_some() {
            self.last_report = Some(Instant::now());
        }
    }
}

/// `error` and its sources, `: `-separated: hyper's own message ("client
/// error (Connect)") says little without the cause under it.
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The OTLP client: hyper and rustls, the stack the `wascc:http_client`
/// capability already builds; HTTP/2 only for gRPC.
struct ExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    protocol: Protocol,
    compression: Compression,
    headers: HeaderMap,
    timeout: Duration,
}

/// Why one export failed.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error(transparent)]
    Http(#[from] hyper_util::client::legacy::Error),
    #[error("the collector answered {0}")]
    Status(hyper::StatusCode, Option<Duration>),
    #[error("the collector answered gRPC status {code} ({}){}", grpc_code_name(*code),
        if message.is_empty() { String::new() } else { format!(": {message}") })]
    Grpc {
        code: u32,
        message: String,
        /// The delay of a `google.rpc.RetryInfo` in the status details.
        retry_delay: Option<Duration>,
    },
    #[error("the collector's answer has no grpc-status: is it a gRPC server (port 4317)?")]
    NoGrpcStatus,
    #[error("the collector's answer has a grpc-status that is not a number: {0:?}")]
    BadGrpcStatus(String),
    #[error("cannot read the collector's answer: {0}")]
    Body(String),
    #[error("no answer from the collector within {0:?}")]
    Timeout(Duration),
    #[error("cannot build the request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("cannot compress the request: {0}")]
    Compress(std::io::Error),
}

impl ExportClient {
    fn new(plan: &TraceExport) -> Result<ExportClient, std::io::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &plan.tls.roots {
            Some(certificates) => {
                let mut roots = rustls::RootCertStore::empty();
                for certificate in certificates {
                    roots.add(certificate.clone()).map_err(|e| {
                        std::io::Error::other(format!(
                            "a certificate of OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE \
                             cannot be trusted: {e}"
                        ))
                    })?;
                }
                roots
            }
            None => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_root_certificates(roots);
        let tls = match &plan.tls.identity {
            Some(identity) => tls
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
                .map_err(|e| {
                    std::io::Error::other(format!(
                        "the client certificate and key of \
                         OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_CERTIFICATE and \
                         OTEL_EXPORTER_OTLP_(TRACES_)CLIENT_KEY cannot be used together: {e}"
                    ))
                })?,
            None => tls.with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(plan.timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let mut client = Client::builder(TokioExecutor::new());
        client.pool_idle_timeout(Duration::from_secs(30));
        let client = match plan.protocol {
            Protocol::HttpProtobuf => client.build(builder.enable_http1().wrap_connector(http)),
            // HTTP/2 from the first byte: ALPN `h2` over TLS, prior
            // knowledge in cleartext, as gRPC clients do.
            Protocol::Grpc => client
                .http2_only(true)
                .build(builder.enable_http2().wrap_connector(http)),
        };
        Ok(ExportClient {
            client,
            url: plan.url.clone(),
            protocol: plan.protocol,
            compression: plan.compression,
            headers: plan.headers.clone(),
            timeout: plan.timeout,
        })
    }

    /// Sends one export request; `Ok` with what the collector said if it
    /// took the spans only in part.
    async fn post(&self, body: Bytes) -> Result<Option<PartialSuccess>, ExportError> {
        let mut request = hyper::Request::post(self.url.clone()).body(Full::new(body))?;
        let headers = request.headers_mut();
        headers.extend(self.headers.clone());
        match self.protocol {
            Protocol::HttpProtobuf => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-protobuf"),
                );
                if self.compression == Compression::Gzip {
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
            }
            Protocol::Grpc => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert(TE, HeaderValue::from_static("trailers"));
                if self.compression == Compression::Gzip {
                    headers.insert(
                        HeaderName::from_static("grpc-encoding"),
                        HeaderValue::from_static("gzip"),
                    );
                    headers.insert(
                        HeaderName::from_static("grpc-accept-encoding"),
                        HeaderValue::from_static("gzip"),
                    );
                }
                // The server may give up at the same deadline as we do.
                if let Ok(value) = HeaderValue::from_str(&grpc_timeout(self.timeout)) {
                    headers.insert(HeaderName::from_static("grpc-timeout"), value);
                }
            }
        }
        let exchange = async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            // Read (at most a bounded amount of) the answer so the
            // connection can be reused, and, for gRPC, its trailers.
            let collected = Limited::new(body, MAX_RESPONSE_BYTES).collect().await;
            match self.protocol {
                Protocol::HttpProtobuf if parts.status.is_success() => {
                    return Ok(collected
                        .ok()
                        .and_then(|body| partial_success(&body.to_bytes())));
                }
                // gRPC answers every call with 200, its outcome in
                // `grpc-status`.
                Protocol::Grpc if parts.status == hyper::StatusCode::OK => {}
                _ => {
                    return Err(ExportError::Status(
                        parts.status,
                        retry_after(&parts.headers),
                    ));
                }
            }
            let collected = collected.map_err(|e| ExportError::Body(e.to_string()))?;
            // A call that fails at once answers its status in the headers
            // ("trailers-only"); otherwise it comes in the trailers.
            let status = match parts.headers.get("grpc-status") {
                Some(_) => &parts.headers,
                None => collected.trailers().ok_or(ExportError::NoGrpcStatus)?,
            };
            grpc_status(status)?;
            let gzipped = parts
                .headers
                .get("grpc-encoding")
                .is_some_and(|e| e.as_bytes().eq_ignore_ascii_case(b"gzip"));
            Ok(grpc_response(&collected.to_bytes(), gzipped)
                .as_deref()
                .and_then(partial_success))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(ExportError::Timeout(self.timeout)),
        }
    }
}

impl ExportError {
    /// Whether the export may succeed if tried again, as the OTLP
    /// specification lists the answers that say so, and how long the
    /// collector asked to wait (zero when it did not say). A timeout is not
    /// retried (the collector had its time, and the queue fills meanwhile),
    /// nor is a TLS or protocol error (it would fail again).
    fn retry(&self) -> Option<Duration> {
        match self {
            // The collector is restarting, or closed a pooled connection.
            ExportError::Http(error) => transient(error).then_some(Duration::ZERO),
            ExportError::Status(status, after) => {
                matches!(status.as_u16(), 429 | 502 | 503 | 504).then(|| after.unwrap_or_default())
            }
            // CANCELLED, DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE,
            // UNAVAILABLE, DATA_LOSS; RESOURCE_EXHAUSTED only with a
            // `RetryInfo` (the collector can take more later), as the
            // specification says. Its delay is the collector's own.
            ExportError::Grpc {
                code, retry_delay, ..
            } => match (code, retry_delay) {
                (1 | 4 | 10 | 11 | 14 | 15, delay) => Some(delay.unwrap_or_default()),
                (8, Some(delay)) => Some(*delay),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Whether a client error is a connection refused, reset or closed early:
/// a collector restarting, or dropping a connection the pool kept.
fn transient(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            // hyper-rustls wraps what went wrong in the handshake (a TLS
            // error, never retried, or a reset, retried) as `Other`.
            if io.kind() == std::io::ErrorKind::Other
                && let Some(inner) = io.get_ref()
            {
                cause = Some(inner);
                continue;
            }
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
            );
        }
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_incomplete_message()
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// `Retry-After`, in seconds or as a date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    // Or a date (`Wed, 21 Oct 2026 07:28:00 GMT`): the wait until then, and
    // none if it has passed.
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// A random duration up to `max`.
fn jitter(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Each `RandomState` is keyed anew: enough randomness to spread retries.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(random % nanos.max(1))
}

/// `grpc-timeout`: at most 8 digits and a unit.
fn grpc_timeout(timeout: Duration) -> String {
    let ms = timeout.as_millis();
    if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

/// The call's outcome from `grpc-status` and `grpc-message`.
fn grpc_status(headers: &HeaderMap) -> Result<(), ExportError> {
    let raw = headers
        .get("grpc-status")
        .ok_or(ExportError::NoGrpcStatus)?;
    let code = std::str::from_utf8(raw.as_bytes())
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| ExportError::BadGrpcStatus(grpc_message(raw.as_bytes())))?;
    if code == 0 {
        return Ok(());
    }
    let message = headers
        .get("grpc-message")
        .map(|v| grpc_message(v.as_bytes()))
        .unwrap_or_default();
    let retry_delay = headers
        .get("grpc-status-details-bin")
        .and_then(|details| retry_info(details.as_bytes()));
    Err(ExportError::Grpc {
        code,
        message,
        retry_delay,
    })
}

/// A `grpc-message`, percent-decoded as gRPC encodes it, cut to
/// [`MAX_GRPC_MESSAGE`] characters, control and invisible formatting
/// characters dropped: it is the collector's text and ends up in the
/// host's log.
fn grpc_message(raw: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(raw.len().min(MAX_GRPC_MESSAGE * 4));
    let digit = |at: usize| raw.get(at).and_then(|&b| char::from(b).to_digit(16));
    let mut i = 0;
    while i < raw.len() && bytes.len() < MAX_GRPC_MESSAGE * 4 {
        if raw[i] == b'%'
            && let (Some(high), Some(low)) = (digit(i + 1), digit(i + 2))
        {
            bytes.push((high * 16 + low) as u8);
            i += 3;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    shown(&String::from_utf8_lossy(&bytes))
}

/// A collector's text as logs show it: at most [`MAX_GRPC_MESSAGE`]
/// characters, without control or invisible formatting characters.
fn shown(text: &str) -> String {
    text.chars()
        .filter(|&c| !c.is_control() && !invisible(c))
        .take(MAX_GRPC_MESSAGE)
        .collect()
}

/// The delay of the `google.rpc.RetryInfo` in a gRPC status's details
/// (`grpc-status-details-bin`: a `google.rpc.Status`, base64, padding
/// optional), if it has one. Anything malformed is no delay.
fn retry_info(details: &[u8]) -> Option<Duration> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const BASE64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let status = BASE64.decode(details).ok()?;
    let mut status = Fields(&status);
    while let Some((field, value)) = status.next()? {
        // google.rpc.Status.details: google.protobuf.Any.
        let (3, Value::Len(any)) = (field, value) else {
            continue;
        };
        let (mut type_url, mut body) = ("".as_bytes(), None);
        let mut any = Fields(any);
        while let Some((field, value)) = any.next()? {
            match (field, value) {
                (1, Value::Len(url)) => type_url = url,
                (2, Value::Len(bytes)) => body = Some(bytes),
                _ => {}
            }
        }
        if !type_url.ends_with(b"/google.rpc.RetryInfo") {
            continue;
        }
        // RetryInfo.retry_delay: google.protobuf.Duration.
        let mut retry_info = Fields(body?);
        let mut duration = None;
        while let Some((field, value)) = retry_info.next()? {
            if let (1, Value::Len(bytes)) = (field, value) {
                duration = Some(bytes);
            }
        }
        let (mut seconds, mut nanos) = (0i64, 0i64);
        let mut duration = Fields(duration?);
        while let Some((field, value)) = duration.next()? {
            match (field, value) {
                (1, Value::Varint(v)) => seconds = v as i64,
                (2, Value::Varint(v)) => nanos = v as i64,
                _ => {}
            }
        }
        // A negative delay is none; nanos beyond a second are not valid.
        let seconds = u64::try_from(seconds).unwrap_or(0);
        let nanos = u32::try_from(nanos.clamp(0, 999_999_999)).unwrap_or(0);
        return Some(Duration::new(seconds, nanos));
    }
    None
}

/// What a collector that took an export only in part said (the
/// response's `partial_success`): spans it rejected, or a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartialSuccess {
    rejected: i64,
    message: String,
}

/// The `partial_success` of an `ExportTraceServiceResponse`, when the
/// collector filled it in. A response that does not parse says nothing:
/// the export itself succeeded.
fn partial_success(response: &[u8]) -> Option<PartialSuccess> {
    let mut response = Fields(response);
    let mut partial = None;
    while let Some((field, value)) = response.next()? {
        if let (1, Value::Len(bytes)) = (field, value) {
            partial = Some(bytes);
        }
    }
    let mut partial = Fields(partial?);
    let (mut rejected, mut message) = (0, String::new());
    while let Some((field, value)) = partial.next()? {
        match (field, value) {
            // int64: two's complement in a varint; a negative count is none.
            (1, Value::Varint(v)) => rejected = (v as i64).max(0),
            (2, Value::Len(text)) => message = shown(&String::from_utf8_lossy(text)),
            _ => {}
        }
    }
    (rejected != 0 || !message.is_empty()).then_some(PartialSuccess { rejected, message })
}

/// The message of a gRPC answer's body: the 5-byte prefix, then the
/// message, compressed if the prefix says so. Only gzip is offered
/// (`grpc-accept-encoding`), and only when the request is gzipped (a
/// collector answers in its request's encoding); `gzipped` is whether the
/// answer's `grpc-encoding` says gzip. Inflated at most to the bound of an
/// answer.
fn grpc_response(body: &[u8], gzipped: bool) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::io::Read;
    let (&[flag, a, b, c, d], message) = body.split_first_chunk::<5>()?;
    let message = message.get(..u32::from_be_bytes([a, b, c, d]) as usize)?;
    match flag {
        0 => Some(message.into()),
        1 if gzipped => {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(message)
                .take(MAX_RESPONSE_BYTES as u64)
                .read_to_end(&mut plain)
                .ok()?;
            Some(plain.into())
        }
        _ => None,
    }
}

/// A protobuf message's fields, one at a time.
struct Fields<'a>(&'a [u8]);

enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

impl<'a> Fields<'a> {
    /// The next field, `Ok(None)` at the end; `None` when malformed.
    fn next(&mut self) -> Option<Option<(u64, Value<'a>)>> {
        if self.0.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.skip(8)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                let (bytes, rest) = self.0.split_at_checked(len)?;
                self.0 = rest;
                Value::Len(bytes)
            }
            5 => self.skip(4)?,
            _ => return None,
        };
        Some(Some((key >> 3, value)))
    }

    fn skip(&mut self, len: usize) -> Option<Value<'a>> {
        self.0 = self.0.get(len..)?;
        Some(Value::Fixed)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.0.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Some(value);
            }
        }
        None
    }
}

/// Characters that change how a log line reads without showing: the
/// bidirectional overrides and isolates, zero-width characters, the soft
/// hyphen and the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// The names gRPC gives its status codes.
fn grpc_code_name(code: u32) -> &'static str {
    match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "an unknown code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use waxosuit_trace::{Recorder, Sampler};

    fn plan(max_queue: usize, max_batch: usize) -> BatchPlan {
        BatchPlan {
            delay: Duration::from_secs(5),
            max_queue,
            max_batch,
        }
    }

    /// Makes `count` spans with an attribute of `len` bytes into `queue`.
    fn spans(queue: &Arc<SpanQueue>, count: usize, len: usize) {
        let value = "a".repeat(len);
        let subscriber = Recorder::new(Sampler::AlwaysOn, queue.clone());
        tracing::subscriber::with_default(subscriber, || {
            for n in 0..count {
                tracing::info_span!("request", n, big = value.as_str()).in_scope(|| {});
            }
        });
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_keeps_what_it_has() {
        let queue = Arc::new(SpanQueue::new(plan(4, 2)));
        spans(&queue, 10, 1);
        let mut taken = Queued::default();
        queue.take(&mut taken);
        assert_eq!(taken.ends.len(), 4);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 6);
        // The queued bytes frame into a request the proto types read.
        let encoder = Encoder::new(&[], "waxosuit", "0");
        let mut out = Vec::new();
        encoder.request_encoded(&taken.bytes, &mut out);
        let request = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        let spans_sent = &request.resource_spans[0].scope_spans[0].spans;
        let n: Vec<_> = spans_sent
            .iter()
            .map(|s| s.attributes.iter().find(|kv| kv.key == "n").cloned())
            .map(|kv| format!("{:?}", kv.unwrap().value.unwrap().value.unwrap()))
            .collect();
        assert_eq!(
            n,
            ["IntValue(0)", "IntValue(1)", "IntValue(2)", "IntValue(3)"]
        );
        // Emptied: new spans are taken again.
        spans(&queue, 1, 1);
        queue.take(&mut taken);
        assert_eq!(taken.ends.len(), 1);
    }

    #[test]
    fn queued_bytes_are_bounded_whatever_the_span_count() {
        let queue = Arc::new(SpanQueue::new(plan(1 << 20, 512)));
        // Each span keeps at most 4 KiB of its value: 10 000 of them are
        // ~40 MiB, over the byte bound.
        spans(&queue, 10_000, 1 << 20);
        let mut taken = Queued::default();
        queue.take(&mut taken);
        assert!(
            taken.bytes.len() <= MAX_QUEUE_BYTES,
            "{}",
            taken.bytes.len()
        );
        let dropped = queue.dropped.load(Ordering::Relaxed);
        assert!(dropped > 0);
        assert_eq!(taken.ends.len() as u64 + dropped, 10_000);
    }

    /// A client for `endpoint` over `protocol` (OTLP/HTTP when `None`), with
    /// a runtime to drive it.
    fn client(endpoint: String, protocol: Option<&str>) -> (tokio::runtime::Runtime, ExportClient) {
        let plan = crate::TraceSettings {
            endpoint: Some(endpoint),
            protocol: protocol.map(Into::into),
            ..crate::TraceSettings::default()
        }
        .resolve()
        .unwrap()
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async { ExportClient::new(&plan).unwrap() });
        (rt, client)
    }

    #[test]
    fn a_grpc_error_names_the_status_and_the_collectors_message() {
        let receiver = waxosuit_test_servers::OtlpReceiver::start_grpc_refusing(
            usize::MAX,
            14,
            "queue full, retry later",
        )
        .unwrap();
        let (rt, client) = client(receiver.url(), Some("grpc"));
        let error = rt.block_on(async {
            let encoder = Encoder::new(&[], "waxosuit", "0");
            let mut body = Vec::new();
            encoder.grpc_message(&[], &mut body);
            client.post(Bytes::from(body)).await.unwrap_err()
        });
        let text = with_sources(&error);
        assert!(
            text.contains("gRPC status 14 (UNAVAILABLE): queue full, retry later"),
            "{text}"
        );
        assert_eq!(receiver.requests(), 1);
    }

    #[test]
    fn a_grpc_export_that_succeeds_is_ok() {
        let receiver = waxosuit_test_servers::OtlpReceiver::start_grpc().unwrap();
        let (rt, client) = client(receiver.url(), Some("grpc"));
        rt.block_on(async {
            let encoder = Encoder::new(&[], "waxosuit", "0");
            for _ in 0..2 {
                let mut body = Vec::new();
                encoder.grpc_message(&[], &mut body);
                client.post(Bytes::from(body)).await.unwrap();
            }
        });
        // Both calls on one HTTP/2 connection.
        assert_eq!((receiver.requests(), receiver.connections()), (2, 1));
    }

    #[test]
    fn a_partial_success_is_read_from_http_and_grpc_answers() {
        for (grpc, gzip) in [(false, false), (true, false), (false, true), (true, true)] {
            let receiver = if grpc {
                waxosuit_test_servers::OtlpReceiver::start_grpc().unwrap()
            } else {
                waxosuit_test_servers::OtlpReceiver::start().unwrap()
            };
            let (rt, mut client) = client(receiver.url(), grpc.then_some("grpc"));
            if gzip {
                // tonic then answers gzipped too.
                client.compression = Compression::Gzip;
            }
            let encoder = Encoder::new(&[], "waxosuit", "0");
            let post = || {
                let mut body = Vec::new();
                match (grpc, gzip) {
                    (true, false) => encoder.grpc_message(&[], &mut body),
                    (false, false) => encoder.request_encoded(&[], &mut body),
                    (grpc, true) => {
                        let mut plain = Vec::new();
                        encoder.request_encoded(&[], &mut plain);
                        encode::gzip(&plain, grpc, &mut body).unwrap();
                    }
                }
                rt.block_on(client.post(Bytes::from(body))).unwrap()
            };
            assert_eq!(post(), None, "grpc: {grpc}");
            receiver.answer_partial_success(3, "span names\u{1b}[31m too long");
            assert_eq!(
                post(),
                Some(PartialSuccess {
                    rejected: 3,
                    message: "span names[31m too long".into()
                }),
                "grpc: {grpc}"
            );
            receiver.answer_partial_success(0, "slow down");
            assert_eq!(
                post(),
                Some(PartialSuccess {
                    rejected: 0,
                    message: "slow down".into()
                }),
                "grpc: {grpc}"
            );
        }
    }

    #[test]
    fn partial_success_is_read_only_from_a_well_formed_answer() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        let answer = |rejected: i64, message: &str| {
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.into(),
                }),
            }
            .encode_to_vec()
        };
        let read = |rejected, message: &str| partial_success(&answer(rejected, message));
        // An empty partial success means full success.
        assert_eq!(partial_success(&[]), None);
        assert_eq!(read(0, ""), None);
        assert_eq!(read(-5, ""), None);
        assert_eq!(
            read(7, "x"),
            Some(PartialSuccess {
                rejected: 7,
                message: "x".into()
            })
        );
        let long = read(1, &"m".repeat(10_000)).unwrap();
        assert_eq!(long.message.len(), MAX_GRPC_MESSAGE);
        // Unknown fields are skipped; a cut or malformed answer says nothing.
        let mut extra = vec![0x18, 0x01, 0x25, 1, 2, 3, 4];
        extra.extend(answer(2, "y"));
        assert_eq!(partial_success(&extra).unwrap().rejected, 2);
        let whole = answer(2, "y");
        for cut in 1..whole.len() {
            assert_eq!(partial_success(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(partial_success(&[0x0a, 0xff]), None);
        assert_eq!(partial_success(&[0xff; 11]), None);
        // gRPC: the 5-byte prefix, uncompressed only.
        let mut framed = vec![0, 0, 0, 0, whole.len() as u8];
        framed.extend(&whole);
        assert_eq!(
            grpc_response(&framed, false).as_deref(),
            Some(whole.as_slice())
        );
        // Compressed: only gzip that the answer's grpc-encoding names.
        framed[0] = 1;
        assert_eq!(grpc_response(&framed, true), None);
        assert_eq!(grpc_response(&framed, false), None);
        assert_eq!(grpc_response(&framed[..3], false), None);
        framed[0] = 0;
        framed[4] += 1;
        assert_eq!(grpc_response(&framed, false), None);
        let mut gzipped = Vec::new();
        encode::gzip(&whole, true, &mut gzipped).unwrap();
        assert_eq!(
            grpc_response(&gzipped, true).as_deref(),
            Some(whole.as_slice())
        );
        assert_eq!(grpc_response(&gzipped, false), None);
        // A bomb inflates no further than an answer's bound.
        let mut bomb = Vec::new();
        encode::gzip(&vec![0; 8 * MAX_RESPONSE_BYTES], true, &mut bomb).unwrap();
        let inflated = grpc_response(&bomb, true).unwrap();
        assert_eq!(inflated.len(), MAX_RESPONSE_BYTES);
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date() {
        let read = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", HeaderValue::from_str(value).unwrap());
            retry_after(&headers)
        };
        assert_eq!(read("7"), Some(Duration::from_secs(7)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        let soon = std::time::SystemTime::now() + Duration::from_secs(30);
        let wait = read(&httpdate::fmt_http_date(soon)).unwrap();
        assert!(
            (Duration::from_secs(28)..=Duration::from_secs(30)).contains(&wait),
            "{wait:?}"
        );
        // A date in the past: no wait.
        assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(read("soon"), None);
        assert_eq!(read("-3"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn retry_info_is_read_from_the_status_details() {
        use base64::Engine;
        use prost::encoding::{WireType, encode_key, encode_varint};
        fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
            encode_key(field, WireType::LengthDelimited, out);
            encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        }
        let status = |type_url: &str, seconds: i64, nanos: i64| {
            let mut duration = Vec::new();
            encode_key(1, WireType::Varint, &mut duration);
            encode_varint(seconds as u64, &mut duration);
            encode_key(2, WireType::Varint, &mut duration);
            encode_varint(nanos as u64, &mut duration);
            let mut retry_info = Vec::new();
            len_field(&mut retry_info, 1, &duration);
            let mut any = Vec::new();
            len_field(&mut any, 1, type_url.as_bytes());
            len_field(&mut any, 2, &retry_info);
            let mut status = Vec::new();
            encode_key(1, WireType::Varint, &mut status);
            encode_varint(8, &mut status);
            len_field(&mut status, 2, b"full");
            len_field(&mut status, 3, &any);
            status
        };
        let padded = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let unpadded =
            |bytes: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes);
        let retry_info = "type.googleapis.com/google.rpc.RetryInfo";
        let delay = status(retry_info, 2, 500_000_000);
        for encoded in [padded(&delay), unpadded(&delay)] {
            assert_eq!(
                super::retry_info(encoded.as_bytes()),
                Some(Duration::from_millis(2500))
            );
        }
        // A negative delay is none, nanos are clamped to a second.
        let odd = padded(&status(retry_info, -5, 7_000_000_000));
        assert_eq!(
            super::retry_info(odd.as_bytes()),
            Some(Duration::new(0, 999_999_999))
        );
        // Another detail, no details, bad base64, a cut message: no delay.
        let other = padded(&status("type.googleapis.com/google.rpc.DebugInfo", 2, 0));
        assert_eq!(super::retry_info(other.as_bytes()), None);
        assert_eq!(super::retry_info(b""), None);
        assert_eq!(super::retry_info(b"%%%"), None);
        let cut = padded(&delay[..delay.len() - 3]);
        assert_eq!(super::retry_info(cut.as_bytes()), None);
        // It makes RESOURCE_EXHAUSTED retryable, after its delay.
        let grpc = |code, retry_delay| ExportError::Grpc {
            code,
            message: String::new(),
            retry_delay,
        };
        assert_eq!(grpc(8, None).retry(), None);
        let asked = Some(Duration::from_secs(1));
        assert_eq!(grpc(8, asked).retry(), asked);
        assert_eq!(grpc(14, asked).retry(), asked);
        assert_eq!(grpc(14, None).retry(), Some(Duration::ZERO));
        assert_eq!(grpc(3, asked).retry(), None);
    }

    #[test]
    fn a_refused_connection_is_retried_and_a_timeout_is_not() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let (rt, client) = client(url, None);
        let error = rt.block_on(client.post(Bytes::new())).unwrap_err();
        assert_eq!(error.retry(), Some(Duration::ZERO), "{error:?}");
        assert_eq!(ExportError::Timeout(Duration::from_secs(1)).retry(), None);
        let refused = |status: u16| {
            ExportError::Status(hyper::StatusCode::from_u16(status).unwrap(), None).retry()
        };
        assert_eq!(refused(503), Some(Duration::ZERO));
        assert_eq!(refused(400), None);
        assert_eq!(refused(500), None);
    }

    #[test]
    fn grpc_status_comes_from_the_trailers_and_a_bad_one_is_shown() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(grpc_status(&trailers).is_ok());
        trailers.insert("grpc-status", HeaderValue::from_static("8"));
        trailers.insert("grpc-message", HeaderValue::from_static("too%20big"));
        let text = grpc_status(&trailers).unwrap_err().to_string();
        assert_eq!(
            text,
            "the collector answered gRPC status 8 (RESOURCE_EXHAUSTED): too big"
        );
        trailers.insert("grpc-status", HeaderValue::from_static("ok"));
        let text = grpc_status(&trailers).unwrap_err().to_string();
        assert!(text.contains("not a number: \"ok\""), "{text}");
        assert!(matches!(
            grpc_status(&HeaderMap::new()),
            Err(ExportError::NoGrpcStatus)
        ));
    }

    #[test]
    fn a_grpc_message_is_decoded_bounded_and_without_control_characters() {
        assert_eq!(
            grpc_message(b"no%20collector%3A%20gone"),
            "no collector: gone"
        );
        // A `%` that does not start an escape is kept as it is.
        assert_eq!(grpc_message(b"100% %zz%4"), "100% %zz%4");
        // Escapes cannot smuggle a line break or a terminal escape into the log.
        assert_eq!(grpc_message(b"a%0Ab%1B[31mc\x07"), "ab[31mc");
        let long = "x".repeat(100_000);
        assert_eq!(grpc_message(long.as_bytes()).len(), MAX_GRPC_MESSAGE);
        assert_eq!(grpc_message(b"%FF%FE"), "\u{fffd}\u{fffd}");
        // Right-to-left override and zero-width space: gone.
        assert_eq!(grpc_message(b"ok%E2%80%AEgnp.exe%E2%80%8B"), "okgnp.exe");
    }

    #[test]
    fn grpc_timeouts_fit_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_secs(10)), "10000m");
        assert_eq!(grpc_timeout(Duration::from_secs(1 << 40)), "99999999S");
    }

    #[test]
    fn spans_staged_by_any_thread_are_taken_even_after_it_exits() {
        let queue = Arc::new(SpanQueue::new(plan(1 << 16, 512)));
        // Fewer spans than a stage holds, and more: on threads that then
        // exit, with the spans still staged.
        let threads: Vec<_> = [3, STAGE_SPANS + 5, 1]
            .into_iter()
            .map(|count| {
                let queue = queue.clone();
                std::thread::spawn(move || spans(&queue, count, 10))
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        spans(&queue, 2, 10);
        let mut taken = Queued::default();
        queue.take(&mut taken);
        assert_eq!(taken.ends.len(), 3 + STAGE_SPANS + 5 + 1 + 2);
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 0);
        // Every entry frames one whole span.
        let encoder = Encoder::new(&[], "waxosuit", "0");
        let mut out = Vec::new();
        encoder.request_encoded(&taken.bytes, &mut out);
        let request = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        assert_eq!(
            request.resource_spans[0].scope_spans[0].spans.len(),
            taken.ends.len()
        );
        // The exited threads' stages are let go once emptied; this one's
        // stays.
        assert_eq!(queue.stages.lock().unwrap().len(), 1);
        // Nothing is taken twice.
        queue.take(&mut taken);
        assert!(taken.ends.is_empty() && taken.bytes.is_empty());
    }

    #[test]
    fn a_full_batch_wakes_the_exporter_though_its_spans_are_staged() {
        let woken = |queue: &SpanQueue| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            // A permit left by `notify_one` is taken on the first poll.
            runtime.block_on(async {
                tokio::time::timeout(Duration::ZERO, queue.full.notified())
                    .await
                    .is_ok()
            })
        };
        for (max_batch, staged) in [(3, 1), (100, 12), (512, STAGE_SPANS)] {
            let queue = Arc::new(SpanQueue::new(plan(4 * max_batch, max_batch)));
            assert_eq!(queue.stage_spans, staged);
            spans(&queue, max_batch - 1, 1);
            assert!(!woken(&queue), "woken before a batch of {max_batch}");
            // A batch is full once this thread's last stage moves: within
            // one stage of the batch size.
            spans(&queue, staged, 1);
            assert!(woken(&queue), "not woken by a batch of {max_batch}");
        }
    }

    #[test]
    fn a_large_span_is_queued_at_once_and_its_room_not_kept_per_thread() {
        let queue = Arc::new(SpanQueue::new(plan(1 << 16, 512)));
        // Twelve values of 4 KiB: one span of about 48 KiB, three stages'
        // worth of bytes.
        let v = "v".repeat(1 << 20);
        let v = v.as_str();
        let subscriber = Recorder::new(Sampler::AlwaysOn, queue.clone());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info_span!(
                "big",
                a = v,
                b = v,
                c = v,
                d = v,
                e = v,
                f = v,
                g = v,
                h = v,
                i = v,
                j = v,
                k = v,
                l = v
            )
            .in_scope(|| {});
        });
        let capacity = STAGES.with_borrow(|stages| {
            let (_, stage) = stages.iter().find(|(id, _)| *id == queue.instance).unwrap();
            let stage = stage.lock().unwrap();
            assert!(stage.ends.is_empty(), "a large span waited in the stage");
            stage.bytes.capacity()
        });
        assert!(
            capacity <= 2 * STAGE_BYTES,
            "{capacity} bytes kept by the thread"
        );
        let mut taken = Queued::default();
        queue.take(&mut taken);
        assert_eq!(taken.ends.len(), 1);
        assert!(taken.bytes.len() > 12 * 4096, "{}", taken.bytes.len());
    }

    #[test]
    fn a_partly_written_span_is_not_kept() {
        let queue = Arc::new(SpanQueue::new(plan(1 << 16, 512)));
        spans(&queue, 2, 10);
        // What an append interrupted half way would leave.
        STAGES.with_borrow(|stages| {
            let (_, stage) = stages.iter().find(|(id, _)| *id == queue.instance).unwrap();
            stage
                .lock()
                .unwrap()
                .bytes
                .extend_from_slice(&[0x12, 0x7f, 0x0a]);
        });
        spans(&queue, 1, 10);
        let mut taken = Queued::default();
        queue.take(&mut taken);
        let encoder = Encoder::new(&[], "waxosuit", "0");
        let mut out = Vec::new();
        encoder.request_encoded(&taken.bytes, &mut out);
        let request = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 3);
    }

    #[test]
    fn a_thread_lets_go_of_the_stages_of_queues_that_are_gone() {
        for _ in 0..10 {
            let queue = Arc::new(SpanQueue::new(plan(16, 8)));
            spans(&queue, 1, 1);
        }
        let held = STAGES.with_borrow(|stages| stages.len());
        assert!(held <= 1, "{held} stages of dropped queues held");
    }

    #[test]
    fn after_shutdown_spans_are_dropped() {
        let queue = Arc::new(SpanQueue::new(plan(16, 8)));
        queue.closed.store(true, Ordering::Relaxed);
        spans(&queue, 1, 1);
        let mut taken = Queued::default();
        queue.take(&mut taken);
        assert!(taken.ends.is_empty());
    }
}
