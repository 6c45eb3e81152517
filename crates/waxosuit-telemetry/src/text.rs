//! Log lines over the span recorder: the filter every log layer shares,
//! and the text lines.
//!
//! With trace export (or JSON lines), the subscriber is
//! [`waxosuit_trace::Recorder`], not `tracing_subscriber`'s registry, and
//! `tracing_subscriber`'s per-layer filters and `fmt` layer need the
//! registry. [`Logs`] is the filter instead: it takes the events
//! `RUST_LOG` enables and hands each to its [`Lines`]; it never disables
//! a span (the recorder decides), nor, when spans are exported, an event
//! (one `RUST_LOG` leaves out may still be an event of a recorded span).
//! [`Text`] writes the lines of the `fmt` layer used without trace export
//! (time, level and fields, without target and span scope; on a terminal
//! only the time and level are styled).

use std::sync::Arc;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::{Context, Filter, Layer};

/// Where the lines go (stderr for the CLI; a buffer in tests).
pub(crate) type Sink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A sink writing to stderr.
pub(crate) fn stderr() -> Sink {
    Arc::new(|line: &[u8]| {
        use std::io::Write;
        // A log line that cannot be written has nowhere to be reported.
        let _ = std::io::stderr().lock().write_all(line);
    })
}

/// Writes one event as a line.
pub(crate) trait Lines: Send + Sync + 'static {
    /// Writes `event`; `current` is the span current on this thread.
    fn line(&self, event: &Event<'_>, current: Option<&Id>);
}

/// The events `filter` enables, handed to `lines`.
pub(crate) struct Logs<L> {
    filter: EnvFilter,
    /// Whether the filter has span directives (`[span{field}]=level`),
    /// which follow spans as they are made, entered and left.
    dynamic: bool,
    /// Whether the recorder below keeps events as span events (when spans
    /// are exported), so no event callsite may be disabled here.
    exported: bool,
    lines: L,
}

impl<L> Logs<L> {
    /// `directives` is the filter's text, to tell whether it follows spans;
    /// `exported` says whether spans are exported.
    pub(crate) fn new(filter: EnvFilter, directives: &str, exported: bool, lines: L) -> Logs<L> {
        Logs {
            filter,
            dynamic: directives.contains('['),
            exported,
            lines,
        }
    }
}

impl<S: Subscriber, L: Lines> Layer<S> for Logs<L> {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            if self.dynamic {
                // The filter learns the span callsites its directives name.
                Filter::<S>::callsite_enabled(&self.filter, meta);
            }
            // Not this layer's to disable: the recorder decides.
            return Interest::always();
        }
        // An event `RUST_LOG` leaves out may still be a span event for the
        // recorder, so it is not disabled here, only skipped below.
        let interest = Filter::<S>::callsite_enabled(&self.filter, meta);
        if interest.is_always() || !self.exported {
            interest
        } else {
            Interest::sometimes()
        }
    }

    fn enabled(&self, _meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        true
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.filter)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.dynamic {
            self.filter.on_new_span(attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.dynamic {
            self.filter.on_record(id, values, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.dynamic {
            self.filter.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.dynamic {
            self.filter.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.dynamic {
            self.filter.on_close(id, ctx);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if Filter::<S>::enabled(&self.filter, event.metadata(), &ctx) {
            let current = ctx.current_span();
            self.lines.line(event, current.id());
        }
    }
}

/// `2026-12-06T05:30:00.123456Z  WARN message key=value`: the default
/// format of `tracing-subscriber` without target and span scope.
pub(crate) struct Text {
    /// ANSI colours for the time and level.
    pub(crate) ansi: bool,
    pub(crate) sink: Sink,
}

impl Lines for Text {
    fn line(&self, event: &Event<'_>, _current: Option<&Id>) {
        let mut line = String::with_capacity(160);
        // The writer escapes ANSI sequences in the values (an actor's log
        // line cannot drive the terminal); only the level is coloured.
        let mut writer = Writer::new(&mut line);
        let level = *event.metadata().level();
        let written = if self.ansi {
            write_coloured(&mut writer, level)
        } else {
            SystemTime
                .format_time(&mut writer)
                .and_then(|()| write!(writer, " {level:>5} "))
        }
        .and_then(|()| crate::escape::EscapedFields.format_fields(writer.by_ref(), event));
        if written.is_ok() {
            // Line breaks and hidden characters in the values are escaped
            // too (`crate::escape`): one event, one line.
            let mut line = crate::escape::escape_line(&line, self.ansi).into_owned();
            line.push('\n');
            (self.sink)(line.as_bytes());
        }
    }
}

fn write_coloured(writer: &mut Writer<'_>, level: Level) -> std::fmt::Result {
    writer.write_str("\x1b[2m")?;
    SystemTime.format_time(writer)?;
    let colour = match level {
        Level::TRACE => "35",
        Level::DEBUG => "34",
        Level::INFO => "32",
        Level::WARN => "33",
        Level::ERROR => "31",
    };
    write!(writer, "\x1b[0m \x1b[{colour}m{level:>5}\x1b[0m ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use waxosuit_test_servers::{CollectedSpans, span_recorder};
    use waxosuit_trace::FinishedSpan;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    fn run(ansi: bool, make: impl FnOnce()) -> (String, Vec<FinishedSpan>) {
        run_with("warn", ansi, make)
    }

    fn run_with(directives: &str, ansi: bool, make: impl FnOnce()) -> (String, Vec<FinishedSpan>) {
        let out = Buffer::default();
        let writer = out.clone();
        let kept = CollectedSpans::default();
        let text = Logs::new(
            EnvFilter::new(directives),
            directives,
            true,
            Text {
                ansi,
                sink: Arc::new(move |line: &[u8]| writer.0.lock().unwrap().extend_from_slice(line)),
            },
        );
        let recorder = span_recorder(&kept).with_spans(
            Targets::new()
                .with_default(LevelFilter::WARN)
                .with_target("waxosuit", LevelFilter::INFO),
        );
        let subscriber = recorder.with(text);
        tracing::subscriber::with_default(subscriber, make);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let spans = kept.finished();
        (text, spans)
    }

    #[test]
    fn lines_leave_spans_out_and_follow_rust_log_while_spans_get_every_event() {
        let (text, spans) = run(false, || {
            tracing::info_span!(target: "waxosuit::host", "actor", waxosuit.actor.key = "MX")
                .in_scope(|| {
                    tracing::info!(target: "waxosuit::actor", "below the log filter");
                    tracing::warn!(target: "waxosuit::actor", port = 8080_u64, "kept");
                });
        });
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let (time, rest) = lines[0].split_once(' ').unwrap();
        assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
        assert_eq!(rest, " WARN kept port=8080");
        assert!(!text.contains("actor") && !text.contains('\x1b'), "{text}");
        // Both events are events of the recorded span.
        let names: Vec<_> = spans[0].events.iter().map(|e| e.name.as_ref()).collect();
        assert_eq!(names, ["below the log filter", "kept"]);
    }

    #[test]
    fn on_a_terminal_the_level_is_coloured() {
        let (text, _) = run(true, || tracing::error!("broken"));
        assert!(text.contains("\x1b[31mERROR\x1b[0m broken"), "{text:?}");
    }

    #[test]
    fn spans_outside_the_recorders_targets_stay_disabled() {
        let (_, spans) = run(false, || {
            let other = tracing::info_span!(target: "hyper::proto", "h1");
            assert!(other.is_disabled());
            let ours = tracing::info_span!(target: "waxosuit::host", "actor");
            assert!(!ours.is_disabled());
        });
        assert_eq!(spans.len(), 1);
    }

    #[test]
    fn escape_sequences_in_values_reach_the_terminal_escaped() {
        let hostile = "\x1b]0;owned\x07\x1b[2J";
        let (text, _) = run(true, || {
            tracing::warn!(line = hostile, error = %hostile, "{hostile}");
        });
        // Only the time and level colours are escape sequences: not the
        // message's, nor the `%` value's (`tracing-subscriber` escapes only
        // the former).
        assert_eq!(text.matches('\x1b').count(), 4, "{text:?}");
        assert!(text.contains("error=\\u{1b}]0;owned"), "{text:?}");
        assert!(text.contains("\\x1b]0;owned"), "{text:?}");
        let (text, _) = run(false, || tracing::warn!("{hostile}"));
        assert!(!text.contains('\x1b'), "{text:?}");
    }

    #[test]
    fn a_value_cannot_break_its_line_or_hide_what_it_says() {
        let hostile = "ok\n2026-12-07T00:00:00.000000Z ERROR forged\r\u{85}\u{2066}";
        for ansi in [false, true] {
            let (text, spans) = run(ansi, || {
                tracing::info_span!(target: "waxosuit::host", "actor").in_scope(|| {
                    tracing::warn!(target: "waxosuit::actor", "{hostile}");
                });
                tracing::warn!(target: "waxosuit::actor", "after");
            });
            let lines: Vec<_> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{text:?}");
            assert!(
                lines[0]
                    .ends_with("ok\\n2026-12-07T00:00:00.000000Z ERROR forged\\r\\u{85}\\u{2066}"),
                "{text:?}"
            );
            assert!(lines[1].ends_with("after"), "{text:?}");
            // The span event keeps what was said as it was: protobuf text
            // carries any character, and nothing reads it as lines.
            assert_eq!(spans[0].events[0].name, hostile);
        }
    }

    #[test]
    fn span_directives_of_rust_log_follow_the_recorded_spans() {
        let (text, _) = run_with("warn,[request]=debug", false, || {
            tracing::debug!(target: "waxosuit::host", "outside");
            tracing::info_span!(target: "waxosuit::host", "request").in_scope(|| {
                tracing::debug!(target: "waxosuit::host", "inside");
            });
        });
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].ends_with("DEBUG inside"), "{text}");
    }
}
