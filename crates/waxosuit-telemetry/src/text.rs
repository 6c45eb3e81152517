//! Text log lines when spans are recorded for export.
//!
//! The text logs show events only. With no trace export, a per-layer
//! filter in front of the `fmt` layer says so, and every span callsite
//! stays disabled. With export, the recorder wants the host's spans, and a
//! per-layer filter would then look each span up again on every callback
//! (each poll of an instrumented future enters and leaves the request's
//! span) only to skip it: [`TextLog`] is a plain layer instead, which
//! never sees spans, takes the events `RUST_LOG` enables, and writes them
//! with [`Line`], which leaves the span scope out as the filtered layer
//! did.

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The `fmt` layer `L`, given only the events `filter` enables.
pub(crate) struct TextLog<L> {
    pub(crate) fmt: L,
    pub(crate) filter: EnvFilter,
}

impl<S, L> Layer<S> for TextLog<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_layer(&mut self, subscriber: &mut S) {
        self.fmt.on_layer(subscriber);
    }

    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            // Not this layer's to disable: the recorder decides.
            return Interest::always();
        }
        // An event `RUST_LOG` leaves out may still be a span event for the
        // recorder, so it is not disabled here, only skipped below.
        let interest = Filter::<S>::callsite_enabled(&self.filter, meta);
        if interest.is_always() {
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

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if Filter::<S>::enabled(&self.filter, event.metadata(), &ctx) {
            self.fmt.on_event(event, ctx);
        }
    }
}

/// `2026-12-06T05:30:00.123456Z  WARN message key=value`: the default
/// format of `tracing-subscriber` without target and span scope.
pub(crate) struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        if writer.has_ansi_escapes() {
            writer.write_str("\x1b[2m")?;
            SystemTime.format_time(&mut writer)?;
            let colour = match level {
                Level::TRACE => "35",
                Level::DEBUG => "34",
                Level::INFO => "32",
                Level::WARN => "33",
                Level::ERROR => "31",
            };
            write!(writer, "\x1b[0m \x1b[{colour}m{level:>5}\x1b[0m ")?;
        } else {
            SystemTime.format_time(&mut writer)?;
            write!(writer, " {level:>5} ")?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
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

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn run(ansi: bool, make: impl FnOnce()) -> (String, Vec<FinishedSpan>) {
        let out = Buffer::default();
        let writer = out.clone();
        let kept = CollectedSpans::default();
        let text = TextLog {
            fmt: tracing_subscriber::fmt::layer()
                .with_writer(move || writer.clone())
                .with_ansi(ansi)
                .event_format(Line),
            filter: EnvFilter::new("warn"),
        };
        let recorder = span_recorder(&kept).with_spans(
            Targets::new()
                .with_default(LevelFilter::WARN)
                .with_target("waxosuit", LevelFilter::INFO),
        );
        let subscriber = tracing_subscriber::registry().with(text).with(recorder);
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
}
