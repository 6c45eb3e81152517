//! With no export, tracing costs nothing: no span is made, whatever the
//! log filter. (A test binary of its own: a callsite's interest is shared
//! by every subscriber alive in a process, and other tests make some.)

use waxosuit_telemetry::{DEFAULT_LOG_FILTER, LogFormat, LogSettings};

#[test]
fn without_export_no_span_is_made_at_the_default_filter_in_either_format() {
    for format in [LogFormat::Text, LogFormat::Json] {
        let logs = LogSettings {
            format,
            filter: Some(DEFAULT_LOG_FILTER.into()),
        };
        let (dispatch, telemetry) = waxosuit_telemetry::subscriber(&logs, None).unwrap();
        assert!(!telemetry.is_exporting());
        tracing::dispatcher::with_default(&dispatch, || {
            let span =
                tracing::info_span!(target: "waxosuit::host", "actor", waxosuit.actor.key = "MX");
            // Text lines never show spans, so none is made; JSON lines take
            // `actor` and `capability` from the host's spans.
            assert_eq!(span.is_disabled(), format == LogFormat::Text, "{format:?}");
            // Events still reach the logs.
            assert!(tracing::enabled!(target: "waxosuit::host", tracing::Level::INFO));
        });
    }
}
