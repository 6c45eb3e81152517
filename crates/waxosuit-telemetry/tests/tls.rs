//! Export over TLS, OTLP/HTTP and OTLP/gRPC alike, to collectors with the
//! certificates of a throwaway CA: trusted with
//! `OTEL_EXPORTER_OTLP_CERTIFICATE`, refused without it or with another
//! CA's, and a client certificate shown to a collector that asks for one
//! (`OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`, `…_CLIENT_KEY`).

use std::path::Path;

use waxosuit_telemetry::{LogSettings, TraceSettings};
use waxosuit_test_servers::{OtlpReceiver, TestPki};

fn path(p: &Path) -> Option<String> {
    Some(p.to_string_lossy().into_owned())
}

/// Exports three spans to `receiver` with `tls` settings, as one full
/// batch sent at once (so a failure could be retried), waits as long as
/// retries could take, and shuts down.
fn export(receiver: &OtlpReceiver, grpc: bool, tls: impl FnOnce(&mut TraceSettings)) {
    let mut settings = TraceSettings {
        endpoint: Some(receiver.url()),
        protocol: grpc.then(|| "grpc".into()),
        sampler: Some("always_on".into()),
        timeout_ms: Some("5000".into()),
        schedule_delay_ms: Some("600000".into()),
        max_export_batch_size: Some("3".into()),
        ..TraceSettings::default()
    };
    tls(&mut settings);
    let plan = settings.resolve().unwrap().unwrap();
    // The key never shows, only whether there is one.
    let shown = format!("{plan:?}");
    let client = settings.client_key.is_some();
    assert!(
        shown.contains(&format!("client_certificate: {client} }}")),
        "{shown}"
    );
    let (subscriber, mut telemetry) =
        waxosuit_telemetry::subscriber(&LogSettings::default(), Some(&plan)).unwrap();
    tracing::dispatcher::with_default(&subscriber, || {
        for n in 0..3 {
            tracing::info_span!(target: "waxosuit::test", "request", n).in_scope(|| {});
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while receiver.connections() < 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    telemetry.shutdown();
}

#[test]
fn a_collector_signed_by_the_trusted_ca_gets_the_spans_and_no_other_does() {
    let pki = TestPki::new().unwrap();
    for grpc in [false, true] {
        let start = || {
            if grpc {
                OtlpReceiver::start_grpc_tls(&pki, false).unwrap()
            } else {
                OtlpReceiver::start_tls(&pki, false).unwrap()
            }
        };
        let receiver = start();
        assert!(receiver.url().starts_with("https://"));
        export(&receiver, grpc, |s| s.certificate = path(&pki.ca));
        assert_eq!(receiver.spans().len(), 3, "grpc: {grpc}");
        // Another CA: the handshake fails, nothing is sent, and a TLS
        // error is not retried (one connection, the batch's only try).
        let receiver = start();
        export(&receiver, grpc, |s| s.certificate = path(&pki.other_ca));
        assert_eq!(receiver.requests(), 0, "grpc: {grpc}");
        assert_eq!(receiver.connections(), 1, "grpc: {grpc}");
        // No certificate file: the Web PKI roots, which never signed it.
        let receiver = start();
        export(&receiver, grpc, |_| {});
        assert_eq!(receiver.requests(), 0, "grpc: {grpc}");
        assert_eq!(receiver.connections(), 1, "grpc: {grpc}");
    }
}

#[test]
fn a_collector_that_asks_for_a_client_certificate_gets_one() {
    let pki = TestPki::new().unwrap();
    for grpc in [false, true] {
        let start = || {
            if grpc {
                OtlpReceiver::start_grpc_tls(&pki, true).unwrap()
            } else {
                OtlpReceiver::start_tls(&pki, true).unwrap()
            }
        };
        let receiver = start();
        export(&receiver, grpc, |s| {
            s.certificate = path(&pki.ca);
            s.client_certificate = path(&pki.client_certificate);
            s.client_key = path(&pki.client_key);
        });
        assert_eq!(receiver.spans().len(), 3, "grpc: {grpc}");
        // Without one, the collector refuses the handshake.
        let receiver = start();
        export(&receiver, grpc, |s| s.certificate = path(&pki.ca));
        assert_eq!(receiver.requests(), 0, "grpc: {grpc}");
    }
}

#[test]
fn unusable_certificate_settings_stop_the_start_and_never_show_a_key() {
    let pki = TestPki::new().unwrap();
    let endpoint = Some("https://127.0.0.1:4318".to_string());
    let fails = |tls: &dyn Fn(&mut TraceSettings)| {
        let mut settings = TraceSettings {
            endpoint: endpoint.clone(),
            ..TraceSettings::default()
        };
        tls(&mut settings);
        settings.resolve().unwrap_err().to_string()
    };
    let missing = pki.dir().join("missing.pem");
    let err = fails(&|s| s.certificate = path(&missing));
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_CERTIFICATE") && err.contains("missing.pem"),
        "{err}"
    );
    // A key where certificates are expected.
    let err = fails(&|s| s.certificate = path(&pki.client_key));
    assert!(err.contains("no certificate"), "{err}");
    // A certificate without its key, and the other way round.
    let err = fails(&|s| s.client_certificate = path(&pki.client_certificate));
    assert!(err.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"), "{err}");
    let err = fails(&|s| s.client_key = path(&pki.client_key));
    assert!(
        err.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
        "{err}"
    );
    // Not a key: the error names the file, never what is in it.
    let garbage = pki.dir().join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
    let err = fails(&|s| {
        s.client_certificate = path(&pki.client_certificate);
        s.client_key = path(&garbage);
    });
    assert!(
        err.contains("garbage.key") && err.contains("no private key") && !err.contains("c2VjcmV0"),
        "{err}"
    );
    // A directory (or a pipe) is not read.
    let err = fails(&|s| s.certificate = path(pki.dir()));
    assert!(err.contains("not a regular file"), "{err}");
    // Certificates for a cleartext endpoint: refused, not ignored.
    let err = {
        let mut settings = TraceSettings {
            endpoint: Some("http://127.0.0.1:4318".into()),
            certificate: path(&pki.ca),
            ..TraceSettings::default()
        };
        settings.protocol = None;
        settings.resolve().unwrap_err().to_string()
    };
    assert!(err.contains("https://"), "{err}");
    // Too large to be a certificate.
    let huge = pki.dir().join("huge.pem");
    std::fs::write(&huge, vec![b'a'; 2 << 20]).unwrap();
    let err = fails(&|s| s.certificate = path(&huge));
    assert!(err.contains("larger than"), "{err}");
}
