//! Logs as JSON lines, one object per event, for log pipelines.
//!
//! Every line has `timestamp` (RFC 3339, UTC), `level`, `target` and
//! `message`; `actor`, `actor_name` and `capability` when the event names
//! them or happens inside the host's span for an actor or a capability
//! call; `trace_id` and `span_id` when it happens inside a traced span;
//! and the event's other fields under their own names.

use serde_json::{Map, Value};
use tracing::Event;
use tracing::field::{Field, Visit};
use tracing::span::Id;
use waxosuit_trace::SpanStore;

use crate::text::{Lines, Sink};

/// The JSON lines writer, under a [`crate::text::Logs`] filter; the span
/// context comes from the recorder's [`SpanStore`].
pub(crate) struct JsonLines {
    spans: SpanStore,
    sink: Sink,
}

impl JsonLines {
    pub(crate) fn new(spans: SpanStore, sink: Sink) -> JsonLines {
        JsonLines { spans, sink }
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

impl Lines for JsonLines {
    fn line(&self, event: &Event<'_>, current: Option<&Id>) {
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
        // span that names one. The ids are the event's span's, when traced.
        let span = self.spans.event_span(event, current).unwrap_or_default();
        for (key, value) in [
            ("actor", span.actor),
            ("actor_name", span.actor_name),
            ("capability", span.capability),
        ] {
            if let Some(value) = fields.0.remove(key).or(value.map(|v| Value::from(&*v))) {
                line.insert(key.into(), value);
            }
        }
        if let Some((trace_id, span_id)) = span.ids {
            line.insert("trace_id".into(), Value::from(trace_id.to_string()));
            line.insert("span_id".into(), Value::from(span_id.to_string()));
        }
        for (key, value) in fields.0 {
            line.entry(key).or_insert(value);
        }
        let text = Value::Object(line).to_string();
        // `serde_json` leaves C1 controls, line separators and
        // bidirectional characters as they are; escaped, they read the same.
        let escaped = match crate::escape::escape_json(&text) {
            std::borrow::Cow::Owned(escaped) => Some(escaped),
            std::borrow::Cow::Borrowed(_) => None,
        };
        let mut bytes = escaped.unwrap_or(text).into_bytes();
        bytes.push(b'\n');
        (self.sink)(&bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::Logs;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::filter::EnvFilter;
    use tracing_subscriber::layer::SubscriberExt;
    use waxosuit_test_servers::{CollectedSpans, span_recorder};
    use waxosuit_trace::Recorder;

    /// What the JSON lines wrote.
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

    /// `recorder` with JSON lines of every event over it.
    fn capture(recorder: Recorder) -> (Lines, impl tracing::Subscriber) {
        let lines = Lines::default();
        let sink = lines.clone();
        let json = JsonLines::new(
            recorder.log_context(),
            Arc::new(move |b: &[u8]| sink.0.lock().unwrap().extend_from_slice(b)),
        );
        let logs = Logs::new(EnvFilter::new("trace"), "trace", true, json);
        (lines, recorder.with(logs))
    }

    #[test]
    fn a_value_cannot_break_its_line_and_reads_back_unchanged() {
        let (lines, subscriber) = capture(Recorder::for_logs());
        let hostile = "ok\n{\"level\":\"ERROR\"}\r\u{85}\u{2028}\u{202e}\u{7f}";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "waxosuit_test", field = hostile, "{hostile}");
        });
        let raw = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(raw.matches('\n').count(), 1, "{raw:?}");
        assert!(
            raw.is_ascii(),
            "every such character is a JSON escape: {raw:?}"
        );
        let got = lines.parsed();
        assert_eq!(got[0]["message"], hostile);
        assert_eq!(got[0]["field"], hostile);
    }

    #[test]
    fn lines_carry_the_standard_keys_and_the_event_fields() {
        let (lines, subscriber) = capture(Recorder::for_logs());
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
        let kept = CollectedSpans::default();
        let (lines, subscriber) = capture(span_recorder(&kept));
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

    #[test]
    fn without_export_lines_name_the_actor_but_carry_no_trace_ids() {
        let (lines, subscriber) = capture(Recorder::for_logs());
        tracing::subscriber::with_default(subscriber, || {
            let actor = tracing::info_span!(
                "actor",
                waxosuit.actor.key = "MACTOR",
                waxosuit.actor.name = tracing::field::Empty
            );
            // Named after the span was made, as a record.
            actor.record("waxosuit.actor.name", "counter");
            actor.in_scope(|| tracing::warn!("inside"));
            // Outside the span, nothing of it.
            tracing::warn!("outside");
            // An explicit parent wins over the current span.
            tracing::warn!(parent: &actor, "for the actor");
        });
        let got = lines.parsed();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["actor"], "MACTOR");
        assert_eq!(got[0]["actor_name"], "counter");
        assert!(got[0].get("trace_id").is_none(), "{}", got[0]);
        assert!(got[1].get("actor").is_none(), "{}", got[1]);
        assert_eq!(got[2]["actor"], "MACTOR");
    }
}
