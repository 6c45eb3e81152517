//! The exporter against tonic's OTLP/gRPC `TraceService` in this process
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): the spans arrive over HTTP/2 as
//! the gRPC call decodes them, with the resource, the remote parent and the
//! export headers as call metadata, and the ones still queued at shutdown
//! are not lost.

use waxosuit_telemetry::{LogSettings, Protocol, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

#[test]
fn spans_reach_a_grpc_collector_and_shutdown_flushes_them() {
    let receiver = OtlpReceiver::start_grpc().unwrap();
    let plan = TraceSettings {
        endpoint: Some(receiver.url()),
        protocol: Some("grpc".into()),
        service_name: Some("checkout".into()),
        sampler: Some("always_on".into()),
        headers: Some("authorization=Bearer%20t0ken".into()),
        timeout_ms: Some("3000".into()),
        // Nothing is sent before shutdown, however slow this machine is.
        schedule_delay_ms: Some("600000".into()),
        ..TraceSettings::default()
    }
    .resolve()
    .unwrap()
    .unwrap();
    assert_eq!(plan.protocol, Protocol::Grpc);
    let mut telemetry = waxosuit_telemetry::install(&LogSettings::default(), Some(&plan)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::spawn(async {
            for n in 0..3 {
                let span = tracing::info_span!(target: "waxosuit::test", "request", n, otel.kind = "server");
                waxosuit_trace::continue_trace(
                    &span,
                    Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                    None,
                );
                let _in = span.enter();
                tracing::info_span!(target: "waxosuit::test", "child").in_scope(|| {});
            }
        })
        .await
        .unwrap();
    });
    // Nothing is due before the schedule delay: shutdown sends it.
    assert_eq!(receiver.requests(), 0);
    telemetry.shutdown();
    let spans = receiver.spans();
    assert_eq!(spans.len(), 6, "{spans:#?}");
    assert_eq!(receiver.requests(), 1);
    for request in spans.iter().filter(|s| s.name == "request") {
        assert_eq!(request.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(request.parent_span_id, "00f067aa0ba902b7");
        assert_eq!(request.kind, "server");
        assert_eq!(request.service(), "checkout");
        let children: Vec<_> = spans
            .iter()
            .filter(|s| s.parent_span_id == request.span_id)
            .collect();
        assert_eq!(children.len(), 1);
        assert_eq!(children[0].name, "child");
    }
    let header = |name: &str| receiver.last_header(name);
    assert_eq!(header("authorization"), ["Bearer t0ken"]);
    assert_eq!(header("content-type"), ["application/grpc"]);
    // tonic does not insist on these two; grpc-go (the collector) does.
    assert_eq!(header("te"), ["trailers"]);
    assert_eq!(header("grpc-timeout"), ["3000m"]);
    assert_eq!(receiver.connections(), 1);
}
