//! The exporter against an OTLP/HTTP receiver in this process: spans made
//! with `tracing` arrive as OTLP protobuf, with the resource and the remote
//! parent, and the ones still queued at shutdown are not lost.

use waxosuit_telemetry::{LogSettings, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

#[test]
fn spans_reach_the_collector_and_shutdown_flushes_them() {
    let receiver = OtlpReceiver::start().unwrap();
    let settings = TraceSettings {
        endpoint: Some(receiver.url()),
        resource_attributes: Some("deployment.environment=test".into()),
        sampler: Some("always_on".into()),
        headers: Some("authorization=Bearer%20t0ken,x-tenant=one".into()),
        traces_headers: Some("x-tenant=shop".into()),
        ..TraceSettings::default()
    };
    let plan = settings.resolve().unwrap().unwrap();
    let mut telemetry = waxosuit_telemetry::install(&LogSettings::default(), Some(&plan)).unwrap();
    assert!(telemetry.is_exporting());
    // Made on a runtime's worker, as the host's spans are.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        tokio::spawn(async {
            let span = tracing::info_span!(target: "waxosuit::test", "request", otel.kind = "server", waxosuit.actor.key = "MX");
            waxosuit_trace::continue_trace(
                &span,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                None,
            );
            let _in = span.enter();
            tracing::info_span!(target: "waxosuit::test", "child", otel.status_code = "error", otel.status_description = "it broke")
                .in_scope(|| tracing::info!(target: "waxosuit::test", "inside the child"));
        })
        .await
        .unwrap();
    });
    // The batch delay is seconds: nothing has been sent yet, and shutdown
    // must send it.
    telemetry.shutdown();
    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let request = spans.iter().find(|s| s.name == "request").unwrap();
    assert_eq!(request.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(request.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(request.kind, "server");
    assert_eq!(request.service(), "waxosuit");
    assert_eq!(
        request
            .resource
            .get("deployment.environment")
            .map(String::as_str),
        Some("test")
    );
    assert_eq!(request.attr("waxosuit.actor.key"), Some("MX"));
    let child = spans.iter().find(|s| s.name == "child").unwrap();
    assert_eq!(child.parent_span_id, request.span_id);
    assert_eq!(
        (child.status, child.status_message.as_str()),
        ("error", "it broke")
    );
    assert!(
        child
            .events
            .iter()
            .any(|(name, _)| name == "inside the child")
    );
    assert_eq!(receiver.rejected(), 0);
    // The headers of OTEL_EXPORTER_OTLP_HEADERS, the traces' own winning.
    let header = |name: &str| receiver.last_header(name);
    assert_eq!(header("authorization"), ["Bearer t0ken"]);
    assert_eq!(header("x-tenant"), ["shop"]);
    assert_eq!(header("content-type"), ["application/x-protobuf"]);
}
