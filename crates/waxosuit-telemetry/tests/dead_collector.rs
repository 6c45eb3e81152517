//! A collector that accepts connections and never answers: exports give up
//! at their timeout, and shutdown still returns, so a host never hangs on
//! its way out because of its tracing backend.

use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use waxosuit_telemetry::{LogSettings, TraceSettings};

#[test]
fn shutdown_returns_when_the_collector_never_answers() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    // Accepted and held open, never read or answered.
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = silent.accept() {
            kept.push(stream);
        }
    });
    let plan = TraceSettings {
        endpoint: Some(url),
        sampler: Some("always_on".into()),
        timeout_ms: Some("300".into()),
        ..TraceSettings::default()
    }
    .resolve()
    .unwrap()
    .unwrap();
    let mut telemetry = waxosuit_telemetry::install(&LogSettings::default(), Some(&plan)).unwrap();
    for n in 0..10 {
        tracing::info_span!(target: "waxosuit::test", "request", n).in_scope(|| {});
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        telemetry.shutdown();
        let _ = done.send(());
    });
    // The flush gives up after the export timeout (300 ms) or its own
    // bound (5 s); a minute means it hung.
    assert!(
        finished.recv_timeout(Duration::from_secs(60)).is_ok(),
        "shutdown hung on a collector that never answers"
    );
    drop(held);
}
