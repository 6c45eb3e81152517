//! An export the collector answers "later" (HTTP 429/502/503/504, the gRPC
//! codes the OTLP specification lists as retryable) is tried again, three
//! tries at most, after the collector's `Retry-After`; one it refuses for
//! good (HTTP 400, gRPC `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED` without
//! retry information) is not; a longer `Retry-After` or gRPC `RetryInfo`
//! pauses the export; and shutdown is never held by retries.

use std::time::Duration;

use waxosuit_telemetry::{LogSettings, Telemetry, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

/// An exporter to `receiver` whose batches are three spans, sent as soon
/// as they are made (the schedule delay never passes in a test).
fn exporter(receiver: &OtlpReceiver, grpc: bool) -> (tracing::Dispatch, Telemetry) {
    let plan = TraceSettings {
        endpoint: Some(receiver.url()),
        protocol: grpc.then(|| "grpc".into()),
        sampler: Some("always_on".into()),
        schedule_delay_ms: Some("600000".into()),
        max_export_batch_size: Some("3".into()),
        ..TraceSettings::default()
    }
    .resolve()
    .unwrap()
    .unwrap();
    waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap()
}

/// One full batch.
fn batch(subscriber: &tracing::Dispatch) {
    tracing::dispatcher::with_default(subscriber, || {
        for n in 0..3 {
            tracing::info_span!(target: "waxosuit::test", "request", n).in_scope(|| {});
        }
    });
}

/// Waits until `receiver` has had `requests` export requests, then longer
/// than the next retry could take (the waits are at most 250 and 500 ms),
/// so a request too many would have come.
fn settle(receiver: &OtlpReceiver, requests: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.requests() < requests && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
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
        let (subscriber, mut telemetry) = exporter(&receiver, grpc);
        batch(&subscriber);
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
        let (subscriber, mut telemetry) = exporter(&receiver, grpc);
        batch(&subscriber);
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
        let (subscriber, mut telemetry) = exporter(&receiver, grpc);
        batch(&subscriber);
        settle(&receiver, 3);
        assert_eq!(receiver.requests(), 3, "grpc: {grpc}");
        telemetry.shutdown();
        assert!(receiver.spans().is_empty());
    }
}

/// `receiver` refuses the first export asking for `wait`: the batch is
/// sent again no sooner, and all of it arrives.
fn retried_after(receiver: &OtlpReceiver, grpc: bool, wait: Duration) {
    let (subscriber, mut telemetry) = exporter(receiver, grpc);
    batch(&subscriber);
    settle(receiver, 2);
    telemetry.shutdown();
    assert_eq!(receiver.spans().len(), 3);
    let times = receiver.request_times();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= wait,
        "retried after {:?}",
        times[1] - times[0]
    );
}

/// `receiver` asks for longer than a retry waits (2 s): the batch is given
/// up, and the next one waits in the queue instead of being sent early,
/// until the flush at shutdown, which tries once.
fn gives_up_and_pauses(receiver: &OtlpReceiver, grpc: bool) {
    let (subscriber, mut telemetry) = exporter(receiver, grpc);
    batch(&subscriber);
    settle(receiver, 1);
    batch(&subscriber);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(receiver.requests(), 1);
    telemetry.shutdown();
    assert_eq!(receiver.requests(), 2);
}

#[test]
fn retry_after_is_waited_for_and_a_longer_one_pauses_the_export() {
    retried_after(
        &OtlpReceiver::start_refusing(1, 503, Some(1)).unwrap(),
        false,
        Duration::from_secs(1),
    );
    gives_up_and_pauses(
        &OtlpReceiver::start_refusing(usize::MAX, 503, Some(30)).unwrap(),
        false,
    );
}

#[test]
fn a_grpc_retry_info_is_waited_for_and_makes_resource_exhausted_retryable() {
    let wait = Duration::from_millis(1200);
    retried_after(
        &OtlpReceiver::start_grpc_refusing_with_retry_info(1, 8, "full", wait).unwrap(),
        true,
        wait,
    );
    gives_up_and_pauses(
        &OtlpReceiver::start_grpc_refusing_with_retry_info(
            usize::MAX,
            14,
            "down",
            Duration::from_secs(30),
        )
        .unwrap(),
        true,
    );
}

#[test]
fn shutdown_is_not_held_by_retries() {
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
        // The flush at shutdown is tried once: nothing was due before.
        let plan = TraceSettings {
            endpoint: Some(receiver.url()),
            protocol: grpc.then(|| "grpc".into()),
            schedule_delay_ms: Some("600000".into()),
            ..TraceSettings::default()
        }
        .resolve()
        .unwrap()
        .unwrap();
        let (subscriber, mut telemetry) =
            waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap();
        batch(&subscriber);
        telemetry.shutdown();
        assert_eq!(receiver.requests(), 1, "grpc: {grpc}");
    }
    // Shutdown during the wait between two tries (the collector asked for
    // 2 s) ends it: the batch is given up, and the flush sends what came
    // since, once. Without that, the two waits would have taken 4 of the
    // flush's 5 s and made four requests.
    let receiver = OtlpReceiver::start_refusing(usize::MAX, 503, Some(2)).unwrap();
    let (subscriber, mut telemetry) = exporter(&receiver, false);
    batch(&subscriber);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while receiver.requests() < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    batch(&subscriber);
    telemetry.shutdown();
    assert_eq!(receiver.requests(), 2);
}
