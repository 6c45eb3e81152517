//! The subscriber that keeps the spans: where each span's [`Recording`]
//! lives, which span is current on each thread, and when a span ends.
//!
//! Why a subscriber of its own rather than a layer on
//! `tracing_subscriber::Registry`: the registry keeps a layer's data in a
//! type map behind a lock, one boxed value per span, and every callback
//! of every layer looks the span up again; entering and leaving a span (on
//! each poll of an instrumented future) takes and drops a reference
//! through the global dispatcher. Traced requests spent more on that
//! bookkeeping than on recording their spans (`docs/observability.md`).
//! Here a span's slot holds its recording inline, found by id in one
//! step, and the per-thread stack of entered spans is a vector of ids.
//!
//! Log layers stack on top as usual (`SubscriberExt::with`); they see
//! events, and read the span context they need through a [`SpanStore`]
//! (JSON lines' `actor`, `capability`, `trace_id` and `span_id`, copied
//! from the parent when a span is made).
//!
//! Two things differ from the registry, on purpose:
//! * A span ends when its last handle is dropped, even if a child (a task
//!   spawned inside it) lives on: its end time is when its own work ended.
//!   The registry kept a parent open until its children closed.
//! * A span's slot is locked while its values are recorded. A `Debug` or
//!   `Display` of a recorded value that itself logs, records to or asks
//!   for the current span would wait on that lock forever; values are
//!   plain data in the host's spans.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use opentelemetry::trace::{SpanId, TraceId};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_core::span::Current;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Layer;

use crate::record::{Fields, Recording, Sampler, SpanSink};
use crate::slots::Slots;

/// The subscriber that records spans. Stack log layers on it with
/// `tracing_subscriber::layer::SubscriberExt::with`;
/// [`crate::continue_trace`] and [`crate::span_context`] find it under
/// them.
pub struct Recorder {
    sampler: Sampler,
    sink: Option<Arc<dyn SpanSink>>,
    spans: Option<Targets>,
    store: Arc<Store>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("sampler", &self.sampler)
            .field("exporting", &self.sink.is_some())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Records spans as `sampler` decides and hands them to `sink`.
    pub fn new(sampler: Sampler, sink: Arc<dyn SpanSink>) -> Recorder {
        Recorder {
            sampler,
            sink: Some(sink),
            spans: None,
            store: Arc::default(),
        }
    }

    /// Keeps spans for the log lines' context only: nothing is sampled or
    /// exported, and no trace context is read or handed on.
    pub fn for_logs() -> Recorder {
        Recorder {
            sampler: Sampler::AlwaysOff,
            sink: None,
            spans: None,
            store: Arc::default(),
        }
    }

    /// Keeps only the spans `targets` enables (all spans without it).
    /// Spans outside `targets` are disabled at their callsite, for every
    /// layer; events are never disabled by it.
    pub fn with_spans(mut self, targets: Targets) -> Recorder {
        self.spans = Some(targets);
        self
    }

    /// The spans' log context ([`SpanStore`]), for a log layer: the host's
    /// `actor`, `actor_name` and `capability` fields are then kept for
    /// each span, at a small cost per span.
    pub fn log_context(&self) -> SpanStore {
        SpanStore {
            store: Arc::clone(&self.store),
        }
        .keeping_context()
    }

    pub(crate) fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Runs `f` on span `id`'s recording, if the span exists and trace
    /// context is in use (only spans that may be exported are recorded).
    pub(crate) fn with_recording<R>(
        &self,
        id: &Id,
        f: impl FnOnce(&mut Recording) -> R,
    ) -> Option<R> {
        self.store.get(id)?.recording.as_mut().map(f)
    }

    fn wants_span(&self, meta: &Metadata<'_>) -> bool {
        match &self.spans {
            Some(targets) => targets.would_enable(meta.target(), meta.level()),
            None => true,
        }
    }

    /// The span an event or a new span belongs to.
    fn parent_of(&self, explicit: Option<&Id>, contextual: bool) -> Option<Id> {
        match explicit {
            Some(id) => Some(id.clone()),
            None if contextual => self.current(),
            None => None,
        }
    }

    /// The span this recorder's caller entered last on this thread.
    fn current(&self) -> Option<Id> {
        ENTERED
            .try_with(|entered| {
                entered
                    .borrow()
                    .iter()
                    .rev()
                    .find(|(recorder, _)| *recorder == self.store.instance)
                    .map(|(_, id)| id.clone())
            })
            .ok()
            .flatten()
    }
}

impl Subscriber for Recorder {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.enabled(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    /// Every event, and the spans of `with_spans` (also asked directly
    /// when a callsite's interest is `sometimes`: several subscribers in
    /// one process).
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        !meta.is_span() || self.wants_span(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.spans
            .as_ref()
            .and_then(<Targets as Layer<Recorder>>::max_level_hint)
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let parent = self
            .parent_of(attrs.parent(), attrs.is_contextual())
            .and_then(|id| self.store.get(&id))
            .map(|mut data| {
                let context = data.context.clone();
                (
                    data.recording.as_mut().map(|r| r.parent_of_child()),
                    context,
                )
            });
        let (parent, mut context) = parent.unwrap_or_default();
        if self.store.keeps_context() {
            attrs.record(&mut context);
        }
        let key = self.store.slots.insert(|data| {
            data.refs = 1;
            data.meta = Some(attrs.metadata());
            // Without export, spans only carry the log lines' context.
            data.recording = self
                .sink
                .is_some()
                .then(|| Recording::new(parent, &self.sampler, attrs, &mut data.spare));
            data.context = context;
        });
        match key {
            Some(key) => Id::from_u64(key),
            // Every index is taken (beyond any real number of live spans):
            // the span is not kept, and an id no slot answers to stands in.
            None => Id::from_u64(u64::MAX),
        }
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some(mut data) = self.store.get(span) {
            if let Some(recording) = data.recording.as_mut() {
                recording.record(values);
            }
            if self.store.keeps_context() {
                values.record(&mut data.context);
            }
        }
    }

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        if self.sink.is_none() {
            return;
        }
        let Some(id) = self.parent_of(event.parent(), event.is_contextual()) else {
            return;
        };
        if let Some(mut data) = self.store.get(&id)
            && let Some(recording) = data.recording.as_mut()
        {
            recording.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        // A thread that is exiting has no current span to keep.
        let _ = ENTERED.try_with(|entered| {
            entered
                .borrow_mut()
                .push((self.store.instance, span.clone()));
        });
    }

    fn exit(&self, span: &Id) {
        let _ = ENTERED.try_with(|entered| {
            let mut entered = entered.borrow_mut();
            // Spans are usually left in the order they were entered; a
            // guard dropped out of order leaves the others where they are.
            let at = entered
                .iter()
                .rposition(|(recorder, id)| *recorder == self.store.instance && id == span);
            if let Some(at) = at {
                entered.remove(at);
            }
        });
    }

    fn clone_span(&self, span: &Id) -> Id {
        if let Some(mut data) = self.store.get(span) {
            data.refs += 1;
        }
        span.clone()
    }

    fn try_close(&self, span: Id) -> bool {
        let Some(mut data) = self.store.get(&span) else {
            return false;
        };
        data.refs -= 1;
        if data.refs > 0 {
            return false;
        }
        if let (Some(sink), Some(recording)) = (&self.sink, data.recording.as_ref()) {
            recording.finish(sink.as_ref());
        }
        self.store.slots.release(data, SlotData::clear);
        true
    }

    fn current_span(&self) -> Current {
        let Some(id) = self.current() else {
            return Current::none();
        };
        match self.store.get(&id).and_then(|data| data.meta) {
            Some(meta) => Current::new(id, meta),
            None => Current::none(),
        }
    }
}

/// The spans' context for log lines, shared with the [`Recorder`] that
/// keeps them ([`Recorder::log_context`]).
#[derive(Clone)]
pub struct SpanStore {
    store: Arc<Store>,
}

impl fmt::Debug for SpanStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpanStore").finish_non_exhaustive()
    }
}

/// What a log line takes from the span its event happened in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventSpan {
    /// The trace and span ids, when spans are traced.
    pub ids: Option<(TraceId, SpanId)>,
    /// The nearest `waxosuit.actor.key` of the span or its ancestors.
    pub actor: Option<Arc<str>>,
    /// The nearest `waxosuit.actor.name`.
    pub actor_name: Option<Arc<str>>,
    /// The nearest `waxosuit.capability`.
    pub capability: Option<Arc<str>>,
}

impl SpanStore {
    fn keeping_context(self) -> SpanStore {
        self.store.keep_context.store(true, Ordering::Relaxed);
        self
    }

    /// The context of the span `event` happened in (its explicit parent,
    /// or the current span), if any. `current` is the current span's id,
    /// as the log layer's context reports it.
    pub fn event_span(&self, event: &Event<'_>, current: Option<&Id>) -> Option<EventSpan> {
        let id = match event.parent() {
            Some(id) => id,
            None if event.is_contextual() => current?,
            None => return None,
        };
        let data = self.store.get(id)?;
        // Only traced spans are recorded, so only they have ids.
        let ids = data.recording.as_ref().map(|r| (r.trace_id(), r.span_id()));
        Some(EventSpan {
            ids,
            actor: data.context.actor.clone(),
            actor_name: data.context.actor_name.clone(),
            capability: data.context.capability.clone(),
        })
    }
}

thread_local! {
    /// The spans entered on this thread, oldest first, each with the
    /// recorder that keeps it (tests nest recorders on one thread).
    static ENTERED: RefCell<Vec<(u64, Id)>> = const { RefCell::new(Vec::new()) };
}

/// Recorder numbers, to tell their entries in [`ENTERED`] apart.
static RECORDERS: AtomicU64 = AtomicU64::new(0);

/// The live spans.
struct Store {
    slots: Slots<SlotData>,
    instance: u64,
    /// Whether spans keep a [`LogContext`] (a JSON log layer reads it).
    keep_context: AtomicBool,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            slots: Slots::default(),
            instance: RECORDERS.fetch_add(1, Ordering::Relaxed),
            keep_context: AtomicBool::new(false),
        }
    }
}

impl Store {
    fn get(&self, id: &Id) -> Option<crate::slots::Slot<'_, SlotData>> {
        self.slots.get(id.into_u64())
    }

    fn keeps_context(&self) -> bool {
        self.keep_context.load(Ordering::Relaxed)
    }
}

/// One span: its handle count, its callsite, and what is recorded.
#[derive(Default)]
struct SlotData {
    refs: usize,
    meta: Option<&'static Metadata<'static>>,
    recording: Option<Recording>,
    /// The last span's fields, kept for their buffers.
    spare: Option<Box<Fields>>,
    context: LogContext,
}

impl SlotData {
    fn clear(&mut self) {
        self.meta = None;
        if let Some(fields) = self.recording.take().and_then(|r| r.fields) {
            self.spare = fields.recycle();
        }
        self.context = LogContext::default();
    }
}

/// The host's fields that JSON log lines repeat, inherited from the
/// parent span and overridden by the span's own.
#[derive(Debug, Clone, Default)]
struct LogContext {
    actor: Option<Arc<str>>,
    actor_name: Option<Arc<str>>,
    capability: Option<Arc<str>>,
}

impl LogContext {
    fn slot(&mut self, field: &Field) -> Option<&mut Option<Arc<str>>> {
        match field.name() {
            "waxosuit.actor.key" => Some(&mut self.actor),
            "waxosuit.actor.name" => Some(&mut self.actor_name),
            "waxosuit.capability" => Some(&mut self.capability),
            _ => None,
        }
    }
}

impl Visit for LogContext {
    fn record_str(&mut self, field: &Field, value: &str) {
        if let Some(slot) = self.slot(field) {
            *slot = Some(crate::record::bounded(value).into());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if let Some(slot) = self.slot(field) {
            *slot = Some(crate::record::formatted(value).into());
        }
    }
}
