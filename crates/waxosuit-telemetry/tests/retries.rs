//! An export the collector answers "later" (HTTP 429/502/503/504, the gRPC
//! codes the OTLP specification lists as retryable) is tried again, three
//! tries at most, after the collector's `Retry-After`; one it refuses for
//! good (HTTP 400, gRPC `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` without
//! retry information) is not, and neither is any in the flush at shutdown.

use std::time::Duration;

use waxosuit_telemetry::{LogSettings, Telemetry, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

/// Makes three spans exported to `receiver` every 50 ms; the exporter runs
/// until the returned handle shuts down.
fn export_to(receiver: &OtlpReceiver, grpc: bool, delay_ms: &str) -> Telemetry {
    let plan = TraceSettings {
        endpoint: Some(receiver.url()),
        protocol: grpc.then(|| "grpc".into()),
        sampler: Some("always_on".into()),
        schedule_delay_ms: Some(delay_ms.into()),
        ..TraceSettings::default()
    }
    .resolve()
    .unwrap()
    .unwrap();
    let (subscriber, telemetry) =
        waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap();
    tracing::dispatcher::with_default(&subscriber, || {
        for n in 0..3 {
            tracing::info_span!(target: "waxosuit::test", "request", n).in_scope(|| {});
        }
    });
    telemetry
}

/// Waits until `receiver` has had `requests` export requests, then as long
/// again as every retry could take (two waits of at most 250 and 500 ms),
/// so a request too many would have come.
fn settle(receiver: &OtlpReceiver, requests: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.requests() < requests && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
}

#[test]
fn a_collector_that_asks_for_later_gets_the_spans_on_a_retry() {
    for (grpc, refused, receiver) in [
        (
            false,
            2,
            OtlpReceiver::start_refusing(2, 503, None).unwrap(),
        ),
        (
            false,
            1,
            OtlpReceiver::start_refusing(1, 429, None).unwrap(),
        ),
        (
            false,
            1,
            OtlpReceiver::start_refusing(1, 502, None).unwrap(),
        ),
        (
            false,
            1,
            OtlpReceiver::start_refusing(1, 504, None).unwrap(),
        ),
        (
            true,
            2,
            OtlpReceiver::start_grpc_refusing(2, 14, "restarting").unwrap(),
        ),
        (
            true,
            1,
            OtlpReceiver::start_grpc_refusing(1, 4, "slow").unwrap(),
        ),
    ] {
        let mut telemetry = export_to(&receiver, grpc, "50");
        settle(&receiver, refused + 1);
        telemetry.shutdown();
        assert_eq!(receiver.spans().len(), 3, "grpc: {grpc}, {refused} refused");
        assert_eq!(receiver.requests(), refused + 1, "grpc: {grpc}");
    }
}

#[test]
fn retries_are_bounded_and_final_refusals_are_not_retried() {
    // Refused for good: one try; the spans are lost (and reported).
    for (grpc, receiver) in [
        (
            false,
            OtlpReceiver::start_refusing(usize::MAX, 400, None).unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(usize::MAX, 3, "bad span").unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(usize::MAX, 8, "full").unwrap(),
        ),
    ] {
        let mut telemetry = export_to(&receiver, grpc, "50");
        settle(&receiver, 1);
        assert_eq!(receiver.requests(), 1, "grpc: {grpc}");
        telemetry.shutdown();
        assert!(receiver.spans().is_empty());
    }
    // "Later" forever: three tries, then the batch is given up.
    for (grpc, receiver) in [
        (
            false,
            OtlpReceiver::start_refusing(usize::MAX, 503, None).unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(usize::MAX, 14, "down").unwrap(),
        ),
    ] {
        let mut telemetry = export_to(&receiver, grpc, "50");
        settle(&receiver, 3);
        assert_eq!(receiver.requests(), 3, "grpc: {grpc}");
        telemetry.shutdown();
        assert!(receiver.spans().is_empty());
    }
}

#[test]
fn retry_after_is_waited_for_and_a_longer_one_gives_the_batch_up() {
    let receiver = OtlpReceiver::start_refusing(1, 503, Some(1)).unwrap();
    let mut telemetry = export_to(&receiver, false, "50");
    settle(&receiver, 2);
    telemetry.shutdown();
    assert_eq!(receiver.spans().len(), 3);
    let times = receiver.request_times();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "retried after {:?}",
        times[1] - times[0]
    );
    // Longer than the exporter waits (2 s): not hurried, given up.
    let receiver = OtlpReceiver::start_refusing(usize::MAX, 503, Some(30)).unwrap();
    let mut telemetry = export_to(&receiver, false, "50");
    settle(&receiver, 1);
    assert_eq!(receiver.requests(), 1);
    telemetry.shutdown();
}

#[test]
fn the_flush_at_shutdown_is_not_retried() {
    for (grpc, receiver) in [
        (
            false,
            OtlpReceiver::start_refusing(usize::MAX, 503, None).unwrap(),
        ),
        (
            true,
            OtlpReceiver::start_grpc_refusing(usize::MAX, 14, "down").unwrap(),
        ),
    ] {
        // Nothing is due before shutdown.
        let mut telemetry = export_to(&receiver, grpc, "600000");
        telemetry.shutdown();
        assert_eq!(receiver.requests(), 1, "grpc: {grpc}");
    }
}
