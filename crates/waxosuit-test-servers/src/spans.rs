//! Spans recorded in memory, for tests of the code that makes them: the
//! in-process counterpart of [`OtlpReceiver`](crate::OtlpReceiver). The
//! subscriber is the one a host installs ([`waxosuit_trace::Recorder`]);
//! only the sink differs.

use std::sync::{Arc, Mutex};

use opentelemetry::Value;
use tracing::subscriber::DefaultGuard;
use waxosuit_trace::{FinishedSpan, Recorder, Sampler, SpanRecord, SpanSink};

/// The spans that closed, in the order they closed.
#[derive(Debug, Clone, Default)]
pub struct CollectedSpans(Arc<Mutex<Vec<FinishedSpan>>>);

impl CollectedSpans {
    /// A copy of every span finished so far.
    pub fn finished(&self) -> Vec<FinishedSpan> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl SpanSink for CollectedSpans {
    fn finish(&self, span: &SpanRecord<'_>) {
        let span = span.to_finished();
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(span);
    }
}

/// A recorder of every trace (`always_on`) that keeps spans in `spans`.
pub fn span_recorder(spans: &CollectedSpans) -> Recorder {
    Recorder::new(Sampler::AlwaysOn, Arc::new(spans.clone()))
}

/// Spans made on this thread are collected, each as soon as it closes,
/// until the guard drops. (`set_default` is per thread: a test whose calls
/// run on a multi-thread runtime would miss their spans, so these tests run
/// on a current-thread runtime.)
pub fn collect_spans() -> (CollectedSpans, DefaultGuard) {
    let spans = CollectedSpans::default();
    let guard = tracing::subscriber::set_default(span_recorder(&spans));
    (spans, guard)
}

/// A span's attribute, if it has it.
pub fn span_attribute(span: &FinishedSpan, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}
