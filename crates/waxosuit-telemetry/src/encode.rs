//! Finished spans as an OTLP `ExportTraceServiceRequest`, in protobuf.
//!
//! The message is written straight from the spans: no intermediate types,
//! no string copies. The schema is OpenTelemetry's
//! `opentelemetry/proto/collector/trace/v1/trace_service.proto` and the
//! files it imports; the tests decode what is written here with the
//! `opentelemetry-proto` types.

use std::time::SystemTime;

use opentelemetry::trace::{Event, SpanId, SpanKind, TraceState};
use opentelemetry::{KeyValue, Value};
use waxosuit_trace::{AttributeValue, SpanRecord, SpanStatus};

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// `SpanFlags`: the has-is-remote bit, and the is-remote bit.
const CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const CONTEXT_IS_REMOTE: u32 = 0x200;

/// Encodes export requests for one resource and one instrumentation scope.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    /// The `Resource` message, written once.
    resource: Vec<u8>,
    /// The `InstrumentationScope` message, written once.
    scope: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(resource: &[KeyValue], scope_name: &str, scope_version: &str) -> Encoder {
        let mut r = Vec::new();
        for kv in resource {
            nested(&mut r, 1, |w| key_value(w, kv.key.as_str(), &kv.value));
        }
        let mut s = Vec::new();
        string(&mut s, 1, scope_name);
        string(&mut s, 2, scope_version);
        Encoder {
            resource: r,
            scope: s,
        }
    }

    /// One request carrying spans already written by [`span_body`], each
    /// framed by [`span_frame`].
    pub(crate) fn request_encoded(&self, entries: &[u8], out: &mut Vec<u8>) {
        self.write_request(entries, out, false);
    }

    /// The same request as a gRPC message: the 5-byte prefix (not
    /// compressed, then the length, big-endian) before it.
    pub(crate) fn grpc_message(&self, entries: &[u8], out: &mut Vec<u8>) {
        self.write_request(entries, out, true);
    }

    /// The encoded size of a request carrying `entries` bytes of spans.
    pub(crate) fn request_len(&self, entries: usize) -> usize {
        let framed = |len: usize| 1 + varint_len(len as u64) + len;
        let scope_spans = framed(self.scope.len()) + entries;
        framed(framed(self.resource.len()) + framed(scope_spans))
    }

    fn write_request(&self, entries: &[u8], out: &mut Vec<u8>, grpc: bool) {
        // Lengths first: a batch is large, and framing it after writing it
        // would move it twice.
        let framed = |len: usize| 1 + varint_len(len as u64) + len;
        let scope_spans = framed(self.scope.len()) + entries.len();
        let resource_spans = framed(self.resource.len()) + framed(scope_spans);
        let total = framed(resource_spans);
        out.clear();
        out.reserve(total + 5);
        if grpc {
            out.push(0);
            // A request is bounded far below 4 GiB (`export::MAX_REQUEST_BYTES`).
            out.extend_from_slice(&(total as u32).to_be_bytes());
        }
        // ExportTraceServiceRequest.resource_spans
        tag(out, 1, LEN);
        varint(out, resource_spans as u64);
        // ResourceSpans.resource
        bytes(out, 1, &self.resource);
        // ResourceSpans.scope_spans: the scope, then the spans.
        tag(out, 2, LEN);
        varint(out, scope_spans as u64);
        bytes(out, 1, &self.scope);
        out.extend_from_slice(entries);
    }
}

/// `plain`, an encoded request, gzip-compressed into `out`; as a gRPC
/// message (the compressed flag, then the compressed length) when `grpc`.
/// The fastest level: spans are mostly repeated names and ids, which it
/// already shrinks several times over, and the export thread shares the
/// host's cores.
pub(crate) fn gzip(plain: &[u8], grpc: bool, out: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Write;
    out.clear();
    out.reserve(plain.len() / 4 + 64);
    if grpc {
        out.extend_from_slice(&[1, 0, 0, 0, 0]);
    }
    let mut encoder = flate2::write::GzEncoder::new(&mut *out, flate2::Compression::fast());
    encoder.write_all(plain)?;
    encoder.finish()?;
    if grpc {
        let len = u32::try_from(out.len() - 5).map_err(std::io::Error::other)?;
        out[1..5].copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

/// The frame of one `ScopeSpans.spans` entry whose body is `len` bytes.
pub(crate) fn span_frame(w: &mut Vec<u8>, len: usize) {
    tag(w, 2, LEN);
    varint(w, len as u64);
}

/// The body of an OTLP `Span` message for `s`, appended to `w`. Spans are
/// written where they close, so the exporter only frames them.
pub(crate) fn span_body(w: &mut Vec<u8>, s: &SpanRecord<'_>) {
    bytes(w, 1, &s.trace_id().to_bytes());
    bytes(w, 2, &s.span_id().to_bytes());
    let state = s.trace_state();
    if *state != TraceState::NONE {
        let header = state.header();
        if !header.is_empty() {
            string(w, 3, &header);
        }
    }
    if s.parent_span_id() != SpanId::INVALID {
        bytes(w, 4, &s.parent_span_id().to_bytes());
    }
    string(w, 5, s.name());
    let kind = match s.kind() {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    };
    tag(w, 6, VARINT);
    varint(w, kind);
    fixed64(w, 7, nanos(s.start_time()));
    fixed64(w, 8, nanos(s.end_time()));
    for (key, value) in s.attributes() {
        attribute(w, 9, key, value);
    }
    uint(w, 10, u64::from(s.dropped_attributes_count()));
    for e in s.events() {
        nested(w, 11, |w| event(w, e));
    }
    uint(w, 12, u64::from(s.dropped_events_count()));
    match s.status() {
        SpanStatus::Unset => {}
        SpanStatus::Ok => nested(w, 15, |w| uint(w, 3, 1)),
        SpanStatus::Error(description) => nested(w, 15, |w| {
            if !description.is_empty() {
                string(w, 2, description);
            }
            uint(w, 3, 2);
        }),
    }
    let mut flags = u32::from(s.trace_flags().to_u8()) | CONTEXT_HAS_IS_REMOTE;
    if s.parent_span_is_remote() {
        flags |= CONTEXT_IS_REMOTE;
    }
    tag(w, 16, FIXED32);
    w.extend_from_slice(&flags.to_le_bytes());
}

/// A `KeyValue` of a span's attribute, its length worked out first so the
/// bytes are written once.
fn attribute(w: &mut Vec<u8>, field: u32, key: &str, value: AttributeValue<'_>) {
    let value_len = match value {
        AttributeValue::I64(i) => 1 + varint_len(i as u64),
        AttributeValue::F64(_) => 1 + 8,
        AttributeValue::Bool(_) => 1 + 1,
        AttributeValue::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
    };
    let len =
        1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(value_len as u64) + value_len;
    tag(w, field, LEN);
    varint(w, len as u64);
    string(w, 1, key);
    tag(w, 2, LEN);
    varint(w, value_len as u64);
    match value {
        AttributeValue::I64(i) => {
            tag(w, 3, VARINT);
            // int64 is a two's complement varint.
            varint(w, i as u64);
        }
        AttributeValue::F64(f) => fixed64(w, 4, f.to_bits()),
        AttributeValue::Bool(b) => {
            tag(w, 2, VARINT);
            varint(w, u64::from(b));
        }
        AttributeValue::Str(s) => string(w, 1, s),
    }
}

fn varint_len(v: u64) -> usize {
    // One byte per started group of 7 bits; zero takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn event(w: &mut Vec<u8>, e: &Event) {
    fixed64(w, 1, nanos(e.timestamp));
    string(w, 2, &e.name);
    for kv in &e.attributes {
        nested(w, 3, |w| key_value(w, kv.key.as_str(), &kv.value));
    }
    uint(w, 4, u64::from(e.dropped_attributes_count));
}

fn key_value(w: &mut Vec<u8>, key: &str, value: &Value) {
    string(w, 1, key);
    nested(w, 2, |w| any_value(w, value));
}

/// `AnyValue`: string 1, bool 2, int 3, double 4, array 5.
fn any_value(w: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => {
            tag(w, 2, VARINT);
            varint(w, u64::from(*b));
        }
        Value::I64(i) => {
            tag(w, 3, VARINT);
            // int64 is a two's complement varint.
            varint(w, *i as u64);
        }
        Value::F64(f) => fixed64(w, 4, f.to_bits()),
        Value::String(s) => string(w, 1, s.as_str()),
        Value::Array(array) => {
            use opentelemetry::Array;
            nested(w, 5, |w| match array {
                Array::Bool(v) => v
                    .iter()
                    .for_each(|x| nested(w, 1, |w| any_value(w, &Value::Bool(*x)))),
                Array::I64(v) => v
                    .iter()
                    .for_each(|x| nested(w, 1, |w| any_value(w, &Value::I64(*x)))),
                Array::F64(v) => v
                    .iter()
                    .for_each(|x| nested(w, 1, |w| any_value(w, &Value::F64(*x)))),
                Array::String(v) => v
                    .iter()
                    .for_each(|x| nested(w, 1, |w| string(w, 1, x.as_str()))),
                // A kind of array added later: its text.
                other => nested(w, 1, |w| string(w, 1, &other.to_string())),
            })
        }
        // A kind of value added later: its text.
        other => string(w, 1, &other.to_string()),
    }
}

fn nanos(t: SystemTime) -> u64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        // In u64 rather than `as_nanos`'s u128: it holds until 2554.
        Ok(d) => d
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos())),
        Err(_) => 0,
    }
}

#[inline(always)]
fn tag(w: &mut Vec<u8>, field: u32, wire: u32) {
    varint(w, u64::from((field << 3) | wire));
}

#[inline(always)]
fn varint(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push((v as u8) | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

/// A scalar field, left out at its default (0) as proto3 does.
#[inline(always)]
fn uint(w: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(w, field, VARINT);
        varint(w, v);
    }
}

#[inline(always)]
fn fixed64(w: &mut Vec<u8>, field: u32, v: u64) {
    tag(w, field, FIXED64);
    w.extend_from_slice(&v.to_le_bytes());
}

#[inline(always)]
fn bytes(w: &mut Vec<u8>, field: u32, b: &[u8]) {
    tag(w, field, LEN);
    varint(w, b.len() as u64);
    w.extend_from_slice(b);
}

#[inline(always)]
fn string(w: &mut Vec<u8>, field: u32, s: &str) {
    bytes(w, field, s.as_bytes());
}

/// A length-delimited message: written in place, then its length put in
/// front of it (one move of the message's bytes; lengths are not known
/// before the message is written).
fn nested(w: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(w, field, LEN);
    let start = w.len();
    body(w);
    let len = (w.len() - start) as u64;
    if len < 0x80 {
        w.insert(start, len as u8);
    } else {
        let mut prefix = Vec::with_capacity(10);
        varint(&mut prefix, len);
        w.splice(start..start, prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message;
    use std::sync::{Arc, Mutex};
    use waxosuit_trace::{FinishedSpan, Recorder, Sampler, SpanSink};

    #[test]
    fn timestamps_are_nanoseconds_since_the_epoch_saturated_at_both_ends() {
        use std::time::Duration;
        let epoch = SystemTime::UNIX_EPOCH;
        assert_eq!(
            nanos(epoch + Duration::new(1_700_000_000, 123_456_789)),
            1_700_000_000_123_456_789
        );
        assert_eq!(nanos(epoch + Duration::new(0, 1)), 1);
        // Before the epoch (a clock set wrong): zero, not a wrapped value.
        assert_eq!(nanos(epoch - Duration::from_secs(1)), 0);
        // Past what u64 nanoseconds hold (the year 2554): the largest.
        assert_eq!(nanos(epoch + Duration::from_secs(20_000_000_000)), u64::MAX);
    }

    #[test]
    fn gzip_inflates_to_the_request_and_frames_a_grpc_message() {
        use std::io::Read;
        let plain: Vec<u8> = (0..10_000u32)
            .flat_map(|n| (n % 97).to_le_bytes())
            .collect();
        let inflate = |gz: &[u8]| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(gz)
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let mut out = vec![9; 3];
        gzip(&plain, false, &mut out).unwrap();
        assert_eq!(inflate(&out), plain);
        assert!(out.len() < plain.len() / 4, "{} bytes", out.len());
        gzip(&plain, true, &mut out).unwrap();
        // Compressed flag, then the length of what follows, big-endian.
        assert_eq!(out[0], 1);
        let len = u32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 5);
        assert_eq!(inflate(&out[5..]), plain);
    }

    /// Encodes each span as the exporter's queue does, and keeps a copy.
    #[derive(Default)]
    struct Encoded(Mutex<(Vec<u8>, Vec<FinishedSpan>)>);

    impl SpanSink for Encoded {
        fn finish(&self, span: &SpanRecord<'_>) {
            let mut body = Vec::new();
            span_body(&mut body, span);
            let mut kept = self.0.lock().unwrap();
            span_frame(&mut kept.0, body.len());
            kept.0.extend_from_slice(&body);
            kept.1.push(span.to_finished());
        }
    }

    fn record(make: impl FnOnce()) -> (ExportTraceServiceRequest, Vec<FinishedSpan>) {
        let sink = Arc::new(Encoded::default());
        let subscriber = Recorder::new(Sampler::AlwaysOn, sink.clone());
        tracing::subscriber::with_default(subscriber, make);
        let encoder = Encoder::new(
            &[KeyValue::new("service.name", "waxosuit")],
            "waxosuit",
            "1.2.3",
        );
        let kept = sink.0.lock().unwrap();
        let mut out = Vec::new();
        encoder.request_encoded(&kept.0, &mut out);
        let request = ExportTraceServiceRequest::decode(out.as_slice()).unwrap();
        (request, kept.1.clone())
    }

    #[test]
    fn the_proto_types_read_back_what_was_written() {
        let long = "é".repeat(300);
        let (request, finished) = record(|| {
            for n in 0..40_i64 {
                let span = tracing::info_span!(
                    "http.server",
                    otel.name = %format_args!("GET {n}"),
                    otel.kind = "server",
                    otel.status_code = tracing::field::Empty,
                    otel.status_description = tracing::field::Empty,
                    url.path = "/counter",
                    http.response.status_code = 200_i64,
                    negative = -5_i64 * n,
                    ok = true,
                    ratio = 0.5,
                    long = long.as_str(),
                    unset = tracing::field::Empty,
                );
                waxosuit_trace::continue_trace(
                    &span,
                    Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    Some("congo=t61rcWkgMzE"),
                );
                span.in_scope(|| tracing::info!(level_name = "x", "hello"));
                span.record("otel.status_code", "error");
                span.record("otel.status_description", "it broke");
            }
        });
        let rs = &request.resource_spans[0];
        let resource = rs.resource.as_ref().unwrap();
        assert_eq!(resource.attributes[0].key, "service.name");
        let ss = &rs.scope_spans[0];
        let scope = ss.scope.as_ref().unwrap();
        assert_eq!(
            (scope.name.as_str(), scope.version.as_str()),
            ("waxosuit", "1.2.3")
        );
        assert_eq!(ss.spans.len(), 40);
        for (n, got) in ss.spans.iter().enumerate() {
            let want = &finished[n];
            assert_eq!(got.trace_id, want.span_context.trace_id().to_bytes());
            assert_eq!(got.span_id, want.span_context.span_id().to_bytes());
            assert_eq!(got.parent_span_id, want.parent_span_id.to_bytes());
            assert_eq!(got.trace_state, "congo=t61rcWkgMzE");
            assert_eq!(got.name, format!("GET {n}"));
            assert_eq!(got.kind, 2);
            assert_eq!(got.start_time_unix_nano, nanos(want.start_time));
            assert_eq!(got.end_time_unix_nano, nanos(want.end_time));
            assert_eq!(got.flags, 0x301);
            let attr = |k: &str| {
                got.attributes
                    .iter()
                    .find(|kv| kv.key == k)
                    .and_then(|kv| kv.value.clone())
                    .and_then(|v| v.value)
            };
            assert_eq!(attr("url.path"), Some(Any::StringValue("/counter".into())));
            assert_eq!(attr("http.response.status_code"), Some(Any::IntValue(200)));
            assert_eq!(attr("negative"), Some(Any::IntValue(-5 * n as i64)));
            assert_eq!(attr("ok"), Some(Any::BoolValue(true)));
            assert_eq!(attr("ratio"), Some(Any::DoubleValue(0.5)));
            assert_eq!(attr("long"), Some(Any::StringValue(long.clone())));
            assert_eq!(attr("unset"), None);
            assert!(attr("otel.name").is_none() && attr("otel.kind").is_none());
            assert_eq!(got.attributes.len(), want.attributes.len());
            assert_eq!(got.events[0].name, "hello");
            assert!(
                got.events[0]
                    .attributes
                    .iter()
                    .any(|kv| kv.key == "level_name")
            );
            let status = got.status.as_ref().unwrap();
            assert_eq!((status.code, status.message.as_str()), (2, "it broke"));
        }
    }

    #[test]
    fn a_root_span_has_no_parent_and_an_unset_status_is_left_out() {
        let (request, _) = record(|| tracing::info_span!("root").in_scope(|| {}));
        let got = &request.resource_spans[0].scope_spans[0].spans[0];
        assert!(got.parent_span_id.is_empty());
        assert!(got.status.is_none());
        assert!(got.trace_state.is_empty());
        assert_eq!(got.kind, 1);
        assert_eq!(got.flags, 0x101);
    }

    #[test]
    fn varint_lengths_match_the_encoding() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut w = Vec::new();
            varint(&mut w, v);
            assert_eq!(varint_len(v), w.len(), "{v}");
        }
    }
}
