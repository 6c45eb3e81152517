//! `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`: export requests travel gzipped,
//! over OTLP/HTTP (`Content-Encoding`) and gRPC (`grpc-encoding` and the
//! compressed flag, inflated by tonic), and every span arrives whole.

use waxosuit_telemetry::{Compression, LogSettings, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

#[test]
fn gzipped_exports_reach_http_and_grpc_collectors_whole() {
    for grpc in [false, true] {
        let receiver = if grpc {
            OtlpReceiver::start_grpc().unwrap()
        } else {
            OtlpReceiver::start().unwrap()
        };
        let plan = TraceSettings {
            endpoint: Some(receiver.url()),
            protocol: grpc.then(|| "grpc".into()),
            compression: Some("gzip".into()),
            sampler: Some("always_on".into()),
            ..TraceSettings::default()
        }
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(plan.compression, Compression::Gzip);
        let (subscriber, mut telemetry) =
            waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap();
        let value = "compressible ".repeat(100);
        tracing::dispatcher::with_default(&subscriber, || {
            for n in 0..300 {
                tracing::info_span!(target: "waxosuit::test", "span", n, value = value.as_str())
                    .in_scope(|| {});
            }
        });
        telemetry.shutdown();
        assert_eq!(receiver.rejected(), 0, "grpc: {grpc}");
        let spans = receiver.spans();
        assert_eq!(spans.len(), 300, "grpc: {grpc}");
        let mut n: Vec<i64> = spans
            .iter()
            .map(|s| s.attr("n").unwrap().parse().unwrap())
            .collect();
        n.sort_unstable();
        assert!(n.iter().copied().eq(0..300), "grpc: {grpc}");
        assert!(
            spans
                .iter()
                .all(|s| s.attr("value") == Some(value.as_str())),
            "grpc: {grpc}"
        );
        if grpc {
            assert_eq!(receiver.last_header("grpc-encoding"), ["gzip"]);
        } else {
            assert_eq!(receiver.last_header("content-encoding"), ["gzip"]);
            // On the wire, a fraction of the request it inflates to.
            let sent: usize = receiver.last_header("content-length")[0].parse().unwrap();
            let request = receiver.largest_request();
            assert!(sent * 5 < request, "{sent} bytes sent for {request}");
        }
    }
}
