//! An export the collector answers "later" (HTTP 429/502/503/504, gRPC
//! `UNAVAILABLE` and the other codes the OTLP specification lists) is tried
//! again, a bounded number of times; one it refuses for good (HTTP 400,
//! gRPC `INVALID_ARGUMENT`) is not.

use waxosuit_telemetry::{LogSettings, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

/// Exports three spans to `receiver` and shuts the exporter down.
fn export_to(receiver: &OtlpReceiver, grpc: bool) {
    let plan = TraceSettings {
        endpoint: Some(receiver.url()),
        protocol: grpc.then(|| "grpc".into()),
        sampler: Some("always_on".into()),
        ..TraceSettings::default()
    }
    .resolve()
    .unwrap()
    .unwrap();
    let (subscriber, mut telemetry) =
        waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap();
    tracing::dispatcher::with_default(&subscriber, || {
        for n in 0..3 {
            tracing::info_span!(target: "waxosuit::test", "request", n).in_scope(|| {});
        }
    });
    // The flush at shutdown retries too, within its own bound (5 s).
    telemetry.shutdown();
}

#[test]
fn a_collector_that_asks_for_later_gets_the_spans_on_a_retry() {
    for (grpc, receiver) in [
        (false, OtlpReceiver::start_refusing(2, 503).unwrap()),
        (false, OtlpReceiver::start_refusing(1, 429).unwrap()),
        (
            true,
            OtlpReceiver::start_grpc_refusing(2, 14, "restarting").unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(1, 8, "busy").unwrap(),
        ),
    ] {
        export_to(&receiver, grpc);
        let spans = receiver.spans();
        assert_eq!(spans.len(), 3, "grpc: {grpc}: {spans:#?}");
        assert!(receiver.requests() >= 2, "grpc: {grpc}");
    }
}

#[test]
fn retries_are_bounded_and_a_final_refusal_is_not_retried() {
    // Refused for good: one try, the spans are lost (and reported).
    for (grpc, receiver) in [
        (
            false,
            OtlpReceiver::start_refusing(usize::MAX, 400).unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(usize::MAX, 3, "bad span").unwrap(),
        ),
    ] {
        export_to(&receiver, grpc);
        assert_eq!(receiver.requests(), 1, "grpc: {grpc}");
        assert!(receiver.spans().is_empty());
    }
    // "Later" forever: three tries, then the batch is given up.
    for (grpc, receiver) in [
        (
            false,
            OtlpReceiver::start_refusing(usize::MAX, 503).unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(usize::MAX, 14, "down").unwrap(),
        ),
    ] {
        export_to(&receiver, grpc);
        assert_eq!(receiver.requests(), 3, "grpc: {grpc}");
        assert!(receiver.spans().is_empty());
    }
}
