//! Logs as JSON lines, one object per event, for log pipelines.
//!
//! Every line has `timestamp` (RFC 3339, UTC), `level`, `target` and
//! `message`; `actor`, `actor_name` and `capability` when the event names
//! them or happens inside the host's span for an actor or a capability
//! call; `trace_id` and `span_id` when it happens inside a traced span;
//! and the event's other fields under their own names.

use std::io::Write;
use std::sync::Arc;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Where the lines go (stderr for the CLI; a buffer in tests).
pub(crate) type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// The JSON lines layer.
pub(crate) struct JsonLines {
    sink: Sink,
}

impl JsonLines {
    pub(crate) fn stderr() -> JsonLines {
        JsonLines::to(Arc::new(|line: &[u8]| {
            // A log line that cannot be written has nowhere to be reported.
            let _ = std::io::stderr().lock().write_all(line);
        }))
    }

    pub(crate) fn to(sink: Sink) -> JsonLines {
        JsonLines { sink }
    }
}

/// The context fields a span contributes to the lines inside it.
#[derive(Default, Clone)]
struct SpanContext {
    actor: Option<String>,
    actor_name: Option<String>,
    capability: Option<String>,
}

impl Visit for SpanContext {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "waxosuit.actor.key" => &mut self.actor,
            "waxosuit.actor.name" => &mut self.actor_name,
            "waxosuit.capability" => &mut self.capability,
            _ => return,
        };
        *slot = Some(value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(
            field.name(),
            "waxosuit.actor.key" | "waxosuit.actor.name" | "waxosuit.capability"
        ) {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

/// An event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_string(), value);
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::from(format!("{value:?}")));
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = SpanContext::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<SpanContext>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()),
        );
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        let message = fields.0.remove("message").unwrap_or(Value::from(""));
        line.insert("message".into(), message);

        // The event's own `actor`/`capability` win; otherwise the nearest
        // span that names one. The ids are the nearest recorded span's.
        let mut context = SpanContext::default();
        let mut ids = None;
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                let extensions = span.extensions();
                if ids.is_none()
                    && let Some(recording) = extensions.get::<waxosuit_trace::Recording>()
                {
                    ids = Some((recording.trace_id(), recording.span_id()));
                }
                if let Some(found) = extensions.get::<SpanContext>() {
                    context.actor = context.actor.or_else(|| found.actor.clone());
                    context.actor_name = context.actor_name.or_else(|| found.actor_name.clone());
                    context.capability = context.capability.or_else(|| found.capability.clone());
                }
            }
        }
        for (key, value) in [
            ("actor", context.actor),
            ("actor_name", context.actor_name),
            ("capability", context.capability),
        ] {
            if let Some(value) = fields.0.remove(key).or(value.map(Value::from)) {
                line.insert(key.into(), value);
            }
        }
        if let Some((trace_id, span_id)) = ids {
            line.insert("trace_id".into(), Value::from(trace_id.to_string()));
            line.insert("span_id".into(), Value::from(span_id.to_string()));
        }
        for (key, value) in fields.0 {
            line.entry(key).or_insert(value);
        }
        let mut bytes = Value::Object(line).to_string().into_bytes();
        bytes.push(b'\n');
        (self.sink)(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing_subscriber::layer::SubscriberExt;
    use waxosuit_test_servers::{CollectedSpans, span_recorder};

    /// What the layer wrote.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Lines {
        /// Every line, parsed (a line that is not JSON fails the test).
        fn parsed(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    fn capture() -> (Lines, JsonLines) {
        let lines = Lines::default();
        let sink = lines.clone();
        let layer = JsonLines::to(Arc::new(move |b: &[u8]| {
            sink.0.lock().unwrap().extend_from_slice(b)
        }));
        (lines, layer)
    }

    #[test]
    fn lines_carry_the_standard_keys_and_the_event_fields() {
        let (lines, layer) = capture();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "waxosuit_test", port = 8080_u64, quoted = "a\"b", "bind \"failed\"");
        });
        let got = lines.parsed();
        assert_eq!(got.len(), 1);
        let line = &got[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["target"], "waxosuit_test");
        assert_eq!(line["message"], "bind \"failed\"");
        assert_eq!(line["port"], 8080);
        assert_eq!(line["quoted"], "a\"b");
        let ts = line["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        assert!(
            line.get("trace_id").is_none(),
            "no span, no trace id: {line}"
        );
    }

    #[test]
    fn actor_and_capability_come_from_the_spans_and_ids_from_the_trace() {
        let (lines, layer) = capture();
        let kept = CollectedSpans::default();
        let otel = span_recorder(&kept);
        let subscriber = tracing_subscriber::registry().with(layer).with(otel);
        tracing::subscriber::with_default(subscriber, || {
            let actor = tracing::info_span!(
                "actor",
                waxosuit.actor.key = "MACTOR",
                waxosuit.actor.name = "counter"
            );
            let _a = actor.enter();
            let cap = tracing::info_span!("capability", waxosuit.capability = "wascc:keyvalue");
            let _c = cap.enter();
            tracing::info!("inside");
            // An event's own `actor` wins over the span's.
            tracing::info!(actor = "MOTHER", "names its own");
        });
        let spans = kept.finished();
        let cap = spans.iter().find(|s| s.name == "capability").unwrap();
        let got = lines.parsed();
        assert_eq!(got[0]["actor"], "MACTOR");
        assert_eq!(got[0]["actor_name"], "counter");
        assert_eq!(got[0]["capability"], "wascc:keyvalue");
        assert_eq!(got[0]["trace_id"], cap.span_context.trace_id().to_string());
        assert_eq!(got[0]["span_id"], cap.span_context.span_id().to_string());
        assert_eq!(got[1]["actor"], "MOTHER");
        // The event became an event of the span too.
        assert!(
            cap.events.iter().any(|e| e.name == "inside"),
            "{:?}",
            cap.events
        );
    }
}
