//! A batch of large spans is split so no export request is larger than
//! 4 MiB (what gRPC servers accept by default), and none of it is lost.

use waxosuit_telemetry::{LogSettings, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

#[test]
fn a_batch_over_four_mebibytes_goes_in_several_requests_and_nothing_is_lost() {
    for grpc in [false, true] {
        let receiver = if grpc {
            OtlpReceiver::start_grpc().unwrap()
        } else {
            OtlpReceiver::start().unwrap()
        };
        let plan = TraceSettings {
            endpoint: Some(receiver.url()),
            protocol: grpc.then(|| "grpc".into()),
            sampler: Some("always_on".into()),
            max_queue_size: Some("4096".into()),
            max_export_batch_size: Some("4096".into()),
            ..TraceSettings::default()
        }
        .resolve()
        .unwrap()
        .unwrap();
        let (subscriber, mut telemetry) =
            waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap();
        // 3000 spans of a 4 KiB value each: ~12 MiB in one batch of 4096.
        let value = "v".repeat(4096);
        tracing::dispatcher::with_default(&subscriber, || {
            for n in 0..3000 {
                tracing::info_span!(target: "waxosuit::test", "big", n, value = value.as_str())
                    .in_scope(|| {});
            }
        });
        telemetry.shutdown();
        let spans = receiver.spans();
        assert_eq!(spans.len(), 3000, "grpc: {grpc}");
        let mut n: Vec<i64> = spans
            .iter()
            .map(|s| s.attr("n").unwrap().parse().unwrap())
            .collect();
        n.sort_unstable();
        assert!(n.iter().copied().eq(0..3000), "grpc: {grpc}");
        assert!(
            receiver.requests() >= 3,
            "grpc: {grpc}: {} requests",
            receiver.requests()
        );
        assert!(
            receiver.largest_request() <= 4 << 20,
            "grpc: {grpc}: a request of {} bytes",
            receiver.largest_request()
        );
        assert_eq!(receiver.rejected(), 0);
    }
}
