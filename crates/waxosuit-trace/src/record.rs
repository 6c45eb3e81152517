//! Recording `tracing` spans as OpenTelemetry spans, directly.
//!
//! For each span the [`Recorder`](crate::Recorder) keeps a small
//! [`Recording`] (ids, flags, and the attributes only when the span is
//! sampled) and, when the span closes, lends it as a [`SpanRecord`] to a
//! [`SpanSink`]: the exporter's queue, which encodes it there, in a host;
//! a vector of [`FinishedSpan`] copies in a test. Nothing here formats,
//! batches or sends.
//!
//! The field names follow the usual `tracing` conventions for
//! OpenTelemetry: `otel.name` renames the span, `otel.kind` sets its kind,
//! `otel.status_code` (`ok`/`error`) and `otel.status_description` set its
//! status; every other field is an attribute. An event inside a sampled
//! span becomes a span event (its `message` the event's name), and an
//! `ERROR` event marks the span as failed unless something set a status.
//!
//! Why not the SDK's span pipeline behind a bridge: that builds each span
//! twice (a builder, then the SDK's span data) with an owned string per
//! attribute, then converts it a third time for export, which cost more
//! than the rest of a traced request (`docs/observability.md`).

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::SystemTime;

use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Key, KeyValue, StringValue, Value};
use smallvec::SmallVec;
use tracing::Level;
use tracing::Metadata;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};

/// The most attributes an event keeps (the OpenTelemetry default limit).
/// A span's own attributes are its callsite's fields, bounded by the code.
pub const MAX_ATTRIBUTES: usize = 128;
/// The most events a span keeps (the OpenTelemetry default limit).
pub const MAX_EVENTS: usize = 128;
/// The longest string kept in an attribute or event name, in bytes; a
/// longer one is cut at a character boundary. Paths, log lines and error
/// texts can come from the network or from an actor.
pub const MAX_VALUE_LEN: usize = 4096;

/// A span that has ended, as the exporter encodes it. The field names are
/// those of the OpenTelemetry SDK's span data.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    /// Trace id, span id, flags and trace state.
    pub span_context: SpanContext,
    /// The parent's span id; [`SpanId::INVALID`] for a root span.
    pub parent_span_id: SpanId,
    /// Whether the parent came from another process.
    pub parent_span_is_remote: bool,
    /// Server, client, producer, consumer or internal.
    pub span_kind: SpanKind,
    /// `otel.name`, or the span's name in the code.
    pub name: Cow<'static, str>,
    /// When the span was created.
    pub start_time: SystemTime,
    /// When it closed.
    pub end_time: SystemTime,
    /// Its fields, in the order they were first set.
    pub attributes: Vec<KeyValue>,
    /// Attribute values dropped because the span's text was full
    /// ([`MAX_TEXT`]).
    pub dropped_attributes_count: u32,
    /// Events recorded inside it.
    pub events: Vec<Event>,
    /// Events past [`MAX_EVENTS`].
    pub dropped_events_count: u32,
    /// Unset, ok or error with a description.
    pub status: Status,
}

/// Where finished spans go.
pub trait SpanSink: Send + Sync + 'static {
    /// Takes one finished, sampled span. Called on the thread that closed
    /// the span, which is borrowed for the call: encode or copy what is
    /// needed ([`SpanRecord::to_finished`]); do not block.
    fn finish(&self, span: &SpanRecord<'_>);
}

/// A value of an attribute, borrowed from the span that has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttributeValue<'a> {
    /// An integer (a `u64` above `i64::MAX` is recorded as text).
    I64(i64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// Text (`Debug` and `Display` values are formatted once, bounded).
    Str(&'a str),
}

impl AttributeValue<'_> {
    fn to_value(self) -> Value {
        match self {
            AttributeValue::I64(v) => Value::I64(v),
            AttributeValue::F64(v) => Value::F64(v),
            AttributeValue::Bool(v) => Value::Bool(v),
            AttributeValue::Str(v) => Value::String(StringValue::from(v.to_owned())),
        }
    }
}

/// A span as it closes, borrowed from the recorder: what an exporter reads.
#[derive(Debug, Clone, Copy)]
pub struct SpanRecord<'a> {
    recording: &'a Recording,
    fields: &'a Fields,
    end: SystemTime,
}

impl<'a> SpanRecord<'a> {
    /// Trace id, span id, flags and trace state.
    pub fn span_context(&self) -> SpanContext {
        self.recording.span_context()
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.recording.trace_id
    }

    /// The span id.
    pub fn span_id(&self) -> SpanId {
        self.recording.span_id
    }

    /// The trace flags (sampled).
    pub fn trace_flags(&self) -> TraceFlags {
        self.recording.flags
    }

    /// Vendor state carried with the trace.
    pub fn trace_state(&self) -> &'a TraceState {
        &self.recording.state
    }

    /// The parent's span id; [`SpanId::INVALID`] for a root span.
    pub fn parent_span_id(&self) -> SpanId {
        self.recording.parent_span_id
    }

    /// Whether the parent came from another process.
    pub fn parent_span_is_remote(&self) -> bool {
        self.recording.parent_is_remote
    }

    /// `otel.name`, or the span's name in the code.
    pub fn name(&self) -> &'a str {
        match self.fields.name {
            Some(range) => self.fields.text(range),
            None => self.fields.meta.name(),
        }
    }

    /// Server, client, producer, consumer or internal.
    pub fn kind(&self) -> SpanKind {
        self.fields.kind.clone()
    }

    /// When the span was created.
    pub fn start_time(&self) -> SystemTime {
        self.fields.start
    }

    /// When it closed.
    pub fn end_time(&self) -> SystemTime {
        self.end
    }

    /// Its fields that have values, in the order the code declares them
    /// (the `otel.*` fields are the name, kind and status instead).
    pub fn attributes(&self) -> impl Iterator<Item = (&'static str, AttributeValue<'a>)> + 'a {
        let fields = self.fields;
        fields
            .meta
            .fields()
            .iter()
            .zip(fields.slots.iter())
            .filter_map(move |(field, slot)| {
                let value = match *slot {
                    Slot::Empty => return None,
                    Slot::I64(v) => AttributeValue::I64(v),
                    Slot::F64(v) => AttributeValue::F64(v),
                    Slot::Bool(v) => AttributeValue::Bool(v),
                    Slot::Str(range) => AttributeValue::Str(fields.text(range)),
                };
                Some((field.name(), value))
            })
    }

    /// Attribute values that did not fit ([`MAX_TEXT`]).
    pub fn dropped_attributes_count(&self) -> u32 {
        self.fields.dropped_attributes
    }

    /// Events recorded inside it.
    pub fn events(&self) -> &'a [Event] {
        &self.fields.events
    }

    /// Events past [`MAX_EVENTS`].
    pub fn dropped_events_count(&self) -> u32 {
        self.fields.dropped_events
    }

    /// Unset, ok, or error with a description (`""` when none was given).
    pub fn status(&self) -> SpanStatus<'a> {
        match self.fields.status {
            StatusCode::Unset => SpanStatus::Unset,
            StatusCode::Ok => SpanStatus::Ok,
            StatusCode::Error => SpanStatus::Error(
                self.fields
                    .status_text
                    .map(|range| self.fields.text(range))
                    .unwrap_or(""),
            ),
        }
    }

    /// An owned copy, with the field names of the OpenTelemetry SDK's span
    /// data (for tests and sinks that keep spans).
    pub fn to_finished(&self) -> FinishedSpan {
        FinishedSpan {
            span_context: self.span_context(),
            parent_span_id: self.parent_span_id(),
            parent_span_is_remote: self.parent_span_is_remote(),
            span_kind: self.kind(),
            name: Cow::Owned(self.name().to_owned()),
            start_time: self.start_time(),
            end_time: self.end_time(),
            attributes: self
                .attributes()
                .map(|(key, value)| KeyValue::new(Key::from_static_str(key), value.to_value()))
                .collect(),
            dropped_attributes_count: self.dropped_attributes_count(),
            events: self.events().to_vec(),
            dropped_events_count: self.dropped_events_count(),
            status: match self.status() {
                SpanStatus::Unset => Status::Unset,
                SpanStatus::Ok => Status::Ok,
                SpanStatus::Error(description) => Status::error(description.to_owned()),
            },
        }
    }
}

/// A span's status, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanStatus<'a> {
    /// Nothing set it.
    Unset,
    /// Set to ok.
    Ok,
    /// Failed, with a description.
    Error(&'a str),
}

/// Which traces are recorded, with the names of `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// A share of traces (0.0 to 1.0), chosen by trace id so every host
    /// decides alike.
    TraceIdRatio(f64),
    /// The parent's decision when there is a parent, else the inner one.
    ParentBased(Box<Sampler>),
}

impl Sampler {
    /// Whether a span of `trace_id` is sampled, given its parent's flags
    /// (`None` for a root span).
    pub fn sample(&self, parent: Option<TraceFlags>, trace_id: TraceId) -> bool {
        match self {
            Sampler::AlwaysOn => true,
            Sampler::AlwaysOff => false,
            Sampler::TraceIdRatio(ratio) => ratio_keeps(*ratio, trace_id),
            Sampler::ParentBased(root) => match parent {
                Some(flags) => flags.is_sampled(),
                None => root.sample(None, trace_id),
            },
        }
    }
}

/// The specification's (and the SDK's) rule: the trace id's low 63 bits
/// against the ratio, so a ratio keeps the same traces on every host.
fn ratio_keeps(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    (u64::from_be_bytes(low) >> 1) < bound
}

/// What a child span takes from its parent.
#[derive(Debug)]
pub(crate) struct Parent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: TraceFlags,
    state: TraceState,
}

fn flags(sampled: bool) -> TraceFlags {
    if sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    }
}

/// What the recorder keeps for one span.
#[derive(Debug)]
pub struct Recording {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: SpanId,
    pub(crate) parent_is_remote: bool,
    pub(crate) flags: TraceFlags,
    pub(crate) state: TraceState,
    /// Set once a child copied this span's trace, or its context was read
    /// to be handed on: its parent can no longer change.
    pub(crate) has_children: bool,
    /// `None` when the span will not be exported (not sampled, and its
    /// sampling cannot change any more).
    pub(crate) fields: Option<Box<Fields>>,
}

impl Recording {
    /// The span's context, as a sending edge hands it on.
    pub fn span_context(&self) -> SpanContext {
        SpanContext::new(
            self.trace_id,
            self.span_id,
            self.flags,
            false,
            self.state.clone(),
        )
    }

    /// The trace id.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span id.
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// A new span's recording: a child of `parent` (its trace id, span
    /// id, flags and state), or a root span.
    /// `spare` is a closed span's fields, whose buffers are reused.
    pub(crate) fn new(
        parent: Option<Parent>,
        sampler: &Sampler,
        attrs: &Attributes<'_>,
        spare: &mut Option<Box<Fields>>,
    ) -> Self {
        let meta = attrs.metadata();
        match parent {
            Some(parent) => {
                let sampled = sampler.sample(Some(parent.flags), parent.trace_id);
                Recording {
                    trace_id: parent.trace_id,
                    span_id: new_span_id(),
                    parent_span_id: parent.span_id,
                    parent_is_remote: false,
                    flags: flags(sampled),
                    state: parent.state,
                    has_children: false,
                    fields: sampled.then(|| record_fields(meta, attrs, spare)),
                }
            }
            None => {
                // A root span may still be given a remote parent (and so
                // another sampling decision) by `continue_trace`: its
                // fields are kept until it closes.
                let trace_id = new_trace_id();
                let sampled = sampler.sample(None, trace_id);
                Recording {
                    trace_id,
                    span_id: new_span_id(),
                    parent_span_id: SpanId::INVALID,
                    parent_is_remote: false,
                    flags: flags(sampled),
                    state: TraceState::NONE,
                    has_children: false,
                    fields: Some(record_fields(meta, attrs, spare)),
                }
            }
        }
    }

    /// What a child span takes from this one; the parent is then fixed.
    pub(crate) fn parent_of_child(&mut self) -> Parent {
        self.has_children = true;
        Parent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.flags,
            state: self.state.clone(),
        }
    }

    /// Records values given after the span was made.
    pub(crate) fn record(&mut self, values: &Record<'_>) {
        if let Some(fields) = self.fields.as_mut() {
            values.record(&mut **fields);
        }
    }

    /// Keeps `event` as an event of this span, when the span is sampled.
    pub(crate) fn event(&mut self, event: &tracing::Event<'_>) {
        if !self.flags.is_sampled() {
            return;
        }
        let Some(fields) = self.fields.as_mut() else {
            return;
        };
        let meta = event.metadata();
        let error = *meta.level() == Level::ERROR && fields.status == StatusCode::Unset;
        if !error && fields.events.len() >= MAX_EVENTS {
            // Counted without being read: an actor that logs without end
            // costs the span a counter.
            fields.dropped_events = fields.dropped_events.saturating_add(1);
            return;
        }
        let mut visitor = EventFields {
            message: None,
            attributes: Vec::with_capacity(meta.fields().len() + 2),
            bytes: 0,
        };
        event.record(&mut visitor);
        let name: Cow<'static, str> = match visitor.message {
            Some(message) => Cow::Owned(message),
            None => Cow::Borrowed(meta.name()),
        };
        if error {
            // The status is kept even when the event itself is not.
            fields.status = StatusCode::Error;
            fields.status_text = fields.push_text(&name);
        }
        let bytes = visitor.bytes + name.len();
        if fields.events.len() >= MAX_EVENTS || fields.event_bytes + bytes > MAX_TEXT {
            fields.dropped_events = fields.dropped_events.saturating_add(1);
            return;
        }
        fields.event_bytes += bytes;
        visitor
            .attributes
            .push(KeyValue::new("level", meta.level().as_str()));
        visitor
            .attributes
            .push(KeyValue::new("target", meta.target()));
        fields
            .events
            .push(Event::new(name, SystemTime::now(), visitor.attributes, 0));
    }

    /// Hands the span to `sink` as it closes, when it is sampled.
    pub(crate) fn finish(&self, sink: &dyn SpanSink) {
        if !self.flags.is_sampled() {
            return;
        }
        if let Some(fields) = &self.fields {
            sink.finish(&SpanRecord {
                recording: self,
                fields,
                end: SystemTime::now(),
            });
        }
    }

    /// Makes the span the child of a remote span, if no child has copied
    /// its trace yet, and samples it again as `sampler` decides for a span
    /// with that parent.
    pub(crate) fn set_remote_parent(&mut self, parent: &SpanContext, sampler: &Sampler) -> bool {
        // A span with a local parent belongs to its trace (and was sampled
        // with it); one whose context was handed on keeps it.
        let local_parent = self.parent_span_id != SpanId::INVALID && !self.parent_is_remote;
        if self.has_children || local_parent {
            return false;
        }
        self.trace_id = parent.trace_id();
        self.parent_span_id = parent.span_id();
        self.parent_is_remote = true;
        self.state = parent.trace_state().clone();
        self.flags = flags(sampler.sample(Some(parent.trace_flags()), self.trace_id));
        true
    }
}

/// The most bytes of text one span keeps across its attribute values,
/// its name and status description; later values are dropped (and
/// counted). Each value is bounded by [`MAX_VALUE_LEN`] too.
pub const MAX_TEXT: usize = 64 * 1024;

/// The most text capacity a closed span's fields keep for the next span;
/// a span that needed more (up to [`MAX_TEXT`]) gives it back.
const KEPT_TEXT: usize = 1024;
/// The most event capacity kept the same way.
const KEPT_EVENTS: usize = 8;

/// A field's value, in the slot of the field's index in its callsite.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    Empty,
    I64(i64),
    F64(f64),
    Bool(bool),
    /// A range of [`Fields::text`].
    Str((u32, u32)),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusCode {
    Unset,
    Ok,
    Error,
}

/// A recorded span's name, kind, attributes, events and status. Values
/// live in slots indexed like the callsite's fields, and text in one
/// buffer per span: recording a field is a store, not a search and an
/// allocation.
#[derive(Debug)]
pub(crate) struct Fields {
    meta: &'static Metadata<'static>,
    name: Option<(u32, u32)>,
    kind: SpanKind,
    start: SystemTime,
    /// Inline for the fields of the host's spans (a dozen at most).
    slots: SmallVec<[Slot; 12]>,
    text: String,
    dropped_attributes: u32,
    events: Vec<Event>,
    dropped_events: u32,
    /// Text held by `events`, bounded by [`MAX_TEXT`] like the span's own.
    event_bytes: usize,
    status: StatusCode,
    status_text: Option<(u32, u32)>,
}

impl Fields {
    fn new(meta: &'static Metadata<'static>) -> Fields {
        Fields {
            meta,
            name: None,
            kind: SpanKind::Internal,
            start: SystemTime::now(),
            slots: smallvec::smallvec![Slot::Empty; meta.fields().len()],
            // Enough for the host's spans' text in one allocation.
            text: String::with_capacity(128),
            dropped_attributes: 0,
            events: Vec::new(),
            dropped_events: 0,
            event_bytes: 0,
            status: StatusCode::Unset,
            status_text: None,
        }
    }

    /// The fields of a closed span, kept for the next span's use of their
    /// buffers; `None` when a span made them large (up to [`MAX_TEXT`] of
    /// text and [`MAX_EVENTS`] events), which are not kept.
    pub(crate) fn recycle(mut self: Box<Self>) -> Option<Box<Self>> {
        if self.text.capacity() > KEPT_TEXT || self.events.capacity() > KEPT_EVENTS {
            return None;
        }
        self.text.clear();
        self.events.clear();
        Some(self)
    }

    /// Empties recycled fields for a new span of `meta`.
    fn reset(&mut self, meta: &'static Metadata<'static>) {
        self.meta = meta;
        self.name = None;
        self.kind = SpanKind::Internal;
        self.start = SystemTime::now();
        self.slots.clear();
        self.slots.resize(meta.fields().len(), Slot::Empty);
        self.text.clear();
        self.dropped_attributes = 0;
        self.events.clear();
        self.dropped_events = 0;
        self.event_bytes = 0;
        self.status = StatusCode::Unset;
        self.status_text = None;
    }

    fn text(&self, (start, end): (u32, u32)) -> &str {
        self.text.get(start as usize..end as usize).unwrap_or("")
    }

    /// Appends `value` (cut to [`MAX_VALUE_LEN`]) to the text, unless the
    /// span's text is full.
    fn push_text(&mut self, value: &str) -> Option<(u32, u32)> {
        let value = cut(value, MAX_VALUE_LEN);
        self.reserve_text(value.len())?;
        let start = self.text.len();
        self.text.push_str(value);
        Some((start as u32, self.text.len() as u32))
    }

    /// Formats `value` into the text, bounded like [`Fields::push_text`].
    fn push_formatted(&mut self, value: &dyn fmt::Debug) -> Option<(u32, u32)> {
        use std::fmt::Write;
        let start = self.text.len();
        if start >= MAX_TEXT {
            return None;
        }
        let limit = start + MAX_VALUE_LEN.min(MAX_TEXT - start);
        let mut out = Capped {
            text: &mut self.text,
            limit,
        };
        // `Capped` stops writing at the bound; the error it returns then is
        // expected.
        let _ = write!(out, "{value:?}");
        Some((start as u32, self.text.len() as u32))
    }

    fn reserve_text(&mut self, len: usize) -> Option<()> {
        (self.text.len() + len <= MAX_TEXT).then_some(())
    }

    fn set(&mut self, field: &Field, slot: Option<Slot>) {
        let Some(target) = self.slots.get_mut(field.index()) else {
            return;
        };
        match slot {
            Some(slot) => *target = slot,
            None => {
                *target = Slot::Empty;
                self.dropped_attributes = self.dropped_attributes.saturating_add(1);
            }
        }
    }

    /// The `otel.*` fields; `false` for any other.
    fn set_special(&mut self, name: &str, value: &str) -> bool {
        // Most fields are attributes: one prefix test spares them the
        // comparisons with each special name.
        if !name.starts_with("otel.") {
            return false;
        }
        match name {
            "otel.name" => {
                if let Some(range) = self.push_text(value) {
                    self.name = Some(range);
                }
            }
            "otel.kind" => self.kind = kind(value).unwrap_or(SpanKind::Internal),
            "otel.status_code" => {
                if value.eq_ignore_ascii_case("error") {
                    self.status = StatusCode::Error;
                } else if value.eq_ignore_ascii_case("ok") {
                    self.status = StatusCode::Ok;
                }
            }
            "otel.status_description" | "otel.status_message" => {
                self.status = StatusCode::Error;
                self.status_text = self.push_text(value);
            }
            _ => return false,
        }
        true
    }
}

fn kind(value: &str) -> Option<SpanKind> {
    Some(match value {
        "server" => SpanKind::Server,
        "client" => SpanKind::Client,
        "producer" => SpanKind::Producer,
        "consumer" => SpanKind::Consumer,
        "internal" => SpanKind::Internal,
        _ => return None,
    })
}

/// `value`, cut to `max` bytes at a character boundary.
fn cut(value: &str, max: usize) -> &str {
    &value[..value.floor_char_boundary(max)]
}

/// `value`, cut to [`MAX_VALUE_LEN`] bytes, owned.
pub(crate) fn bounded(value: &str) -> String {
    cut(value, MAX_VALUE_LEN).to_owned()
}

/// A `Debug`/`Display` value as a bounded string, formatted once.
pub(crate) fn formatted(value: &dyn fmt::Debug) -> String {
    use std::fmt::Write;
    let mut text = String::new();
    let mut out = Capped {
        text: &mut text,
        limit: MAX_VALUE_LEN,
    };
    // `Capped` stops writing at the bound; the error it returns then is
    // expected.
    let _ = write!(out, "{value:?}");
    text
}

/// Writes into `text` up to `limit` bytes, then refuses.
struct Capped<'a> {
    text: &'a mut String,
    limit: usize,
}

impl fmt::Write for Capped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.limit.saturating_sub(self.text.len());
        if s.len() <= room {
            self.text.push_str(s);
            return Ok(());
        }
        self.text.push_str(cut(s, room));
        Err(fmt::Error)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.set_special(field.name(), value) {
            let slot = self.push_text(value).map(Slot::Str);
            self.set(field, slot);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // The name and the status text, the `otel.*` fields given as
        // `%value`, are formatted in place like any other text.
        if name == "otel.name" {
            if let Some(range) = self.push_formatted(value) {
                self.name = Some(range);
            }
        } else if name == "otel.status_description" || name == "otel.status_message" {
            self.status = StatusCode::Error;
            self.status_text = self.push_formatted(value);
        } else if name.starts_with("otel.") {
            self.set_special(name, &formatted(value));
        } else {
            let slot = self.push_formatted(value).map(Slot::Str);
            self.set(field, slot);
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field, Some(Slot::I64(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let slot = match i64::try_from(value) {
            Ok(v) => Some(Slot::I64(v)),
            Err(_) => self.push_text(&value.to_string()).map(Slot::Str),
        };
        self.set(field, slot);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field, Some(Slot::F64(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field, Some(Slot::Bool(value)));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let slot = self.push_formatted(&format_args!("{value}")).map(Slot::Str);
        self.set(field, slot);
    }
}

/// An event's message and fields, as a span event.
struct EventFields {
    message: Option<String>,
    attributes: Vec<KeyValue>,
    /// Bytes of text in `attributes`.
    bytes: usize,
}

impl EventFields {
    fn put(&mut self, field: &Field, value: Value) {
        if let Value::String(text) = &value {
            self.bytes += text.as_str().len();
        }
        if self.attributes.len() < MAX_ATTRIBUTES {
            self.attributes
                .push(KeyValue::new(Key::from_static_str(field.name()), value));
        }
    }
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(bounded(value));
        } else {
            self.put(field, Value::String(bounded(value).into()));
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = Some(formatted(value));
        } else {
            self.put(field, Value::String(formatted(value).into()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        match i64::try_from(value) {
            Ok(v) => self.put(field, Value::I64(v)),
            Err(_) => self.put(field, Value::String(value.to_string().into())),
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(
            field,
            Value::String(formatted(&format_args!("{value}")).into()),
        );
    }
}

thread_local! {
    /// Per-thread generator state for span and trace ids.
    static IDS: Cell<u64> = Cell::new(seed());
}

/// A seed from the standard library's per-process random keys (a new pair
/// for every call), mixed with the thread and the time.
fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    std::hash::Hash::hash(&std::thread::current().id(), &mut hasher);
    hasher.finish()
}

/// wyrand: fast, and good enough for ids that must be unique, not secret.
fn next_u64() -> u64 {
    IDS.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

fn new_span_id() -> SpanId {
    loop {
        let id = next_u64();
        if id != 0 {
            return SpanId::from_bytes(id.to_be_bytes());
        }
    }
}

fn new_trace_id() -> TraceId {
    loop {
        let id = (u128::from(next_u64()) << 64) | u128::from(next_u64());
        if id != 0 {
            return TraceId::from_bytes(id.to_be_bytes());
        }
    }
}

fn record_fields(
    meta: &'static Metadata<'static>,
    attrs: &Attributes<'_>,
    spare: &mut Option<Box<Fields>>,
) -> Box<Fields> {
    let mut fields = match spare.take() {
        Some(mut fields) => {
            fields.reset(meta);
            fields
        }
        None => Box::new(Fields::new(meta)),
    };
    attrs.record(&mut *fields);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_sampling_matches_the_specification() {
        let id = |low: u64| TraceId::from_bytes((u128::from(low)).to_be_bytes());
        // The low 63 bits against ratio × 2^63.
        assert!(ratio_keeps(0.5, id(0)));
        assert!(ratio_keeps(0.5, id((1 << 63) - 2)));
        assert!(!ratio_keeps(0.5, id(1 << 63)));
        assert!(!ratio_keeps(0.0, id(0)));
        assert!(ratio_keeps(1.0, id(u64::MAX)));
        let kept = (0..10_000u64)
            .filter(|_| ratio_keeps(0.25, new_trace_id()))
            .count();
        assert!((2_000..3_000).contains(&kept), "{kept} of 10000 at 0.25");
    }

    #[test]
    fn parent_based_follows_the_parent_and_roots_follow_the_inner_sampler() {
        let s = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        let t = new_trace_id();
        assert!(s.sample(Some(TraceFlags::SAMPLED), t));
        assert!(!s.sample(Some(TraceFlags::default()), t));
        assert!(!s.sample(None, t));
    }

    #[test]
    fn ids_are_not_zero_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            let id = new_span_id();
            assert_ne!(id, SpanId::INVALID);
            assert!(seen.insert(id), "span id repeated");
        }
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_VALUE_LEN);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_VALUE_LEN && cut.len() >= MAX_VALUE_LEN - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        let shown = formatted(&format_args!("{long}"));
        assert!(shown.len() <= MAX_VALUE_LEN);
    }

    #[test]
    fn a_closed_span_lends_its_buffers_but_not_a_hostile_size() {
        let span = tracing::subscriber::with_default(crate::Recorder::for_logs(), || {
            tracing::info_span!("span", a = 1)
        });
        let meta = span.metadata().unwrap();
        let mut fields = Box::new(Fields::new(meta));
        fields.text.push_str(&"x".repeat(MAX_TEXT));
        assert!(fields.recycle().is_none(), "64 KiB of text kept");
        let mut fields = Box::new(Fields::new(meta));
        for n in 0..MAX_EVENTS {
            fields
                .events
                .push(Event::new(format!("{n}"), SystemTime::now(), vec![], 0));
        }
        assert!(fields.recycle().is_none(), "128 events kept");
        let mut fields = Box::new(Fields::new(meta));
        fields.text.push_str("kept");
        fields.status = StatusCode::Error;
        let small = fields.text.capacity();
        let mut fields = fields.recycle().expect("small buffers are kept");
        assert!(fields.text.is_empty() && fields.events.is_empty());
        fields.reset(meta);
        assert_eq!(fields.text.capacity(), small);
        assert_eq!(fields.status, StatusCode::Unset);
        assert!(fields.slots.iter().all(|s| *s == Slot::Empty));
    }
}
