//! Spans recorded in memory, for tests of the code that makes them: the
//! in-process counterpart of [`OtlpReceiver`](crate::OtlpReceiver).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Key, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

/// Spans made on this thread go to the returned exporter, each as soon as
/// it closes, until the guard drops. (`set_default` is per thread: a test
/// whose calls run on a multi-thread runtime would miss their spans, so
/// these tests run on a current-thread runtime.)
pub fn collect_spans() -> (InMemorySpanExporter, DefaultGuard) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
    (exporter, guard)
}

/// A span's attribute, if it has it.
pub fn span_attribute(span: &SpanData, key: &str) -> Option<Value> {
    let key = Key::from(key.to_string());
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.clone())
}
