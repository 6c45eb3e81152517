//! What tracing costs one HTTP request served by an actor, measured alone:
//! the spans `waxosuit up` makes for it (the HTTP server's, and the
//! actor's inside it, with the same fields, records and entries), with
//! tracing off (no endpoint: the text log layer only), with spans made
//! but none sampled (`always_off`), and with every span recorded and
//! exported to an OTLP receiver in this process (`always_on`).
//!
//! `cargo bench -p waxosuit-telemetry --bench spans`; figures in
//! `docs/observability.md`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tracing::field::{Empty, Value};
use tracing_subscriber::layer::SubscriberExt;
use waxosuit_telemetry::{LogSettings, TraceSettings};
use waxosuit_test_servers::OtlpReceiver;

/// One request's spans, as the HTTP server and the host make them.
fn request() {
    let method = black_box("GET");
    let server = tracing::info_span!(
        target: "waxosuit_cap_http_server::spans",
        "http.server",
        otel.name = method,
        otel.kind = "server",
        http.request.method = method,
        url.path = black_box("/"),
        url.scheme = "http",
        http.request.body.size = Empty,
        http.response.status_code = Empty,
        http.response.body.size = Empty,
        otel.status_code = Empty,
        otel.status_description = Empty,
    );
    if !server.is_disabled() {
        waxosuit_trace::continue_trace(&server, None, None);
    }
    // Polled twice: before and after the body is read.
    server.in_scope(|| {});
    server.record("http.request.body.size", 0_i64);
    server.in_scope(|| {
        let name = black_box("hello");
        let operation = black_box("HandleRequest");
        let actor = tracing::info_span!(
            target: "waxosuit_host::spans",
            "actor",
            otel.name = %format_args!("{name} {operation}"),
            otel.status_code = Empty,
            otel.status_description = Empty,
            waxosuit.actor.key = black_box("MBPRU5YXNPYGUHZR35O6U5FA3KE7HMOGKIYLCPWGMXWIBG2WWM677CIL"),
            waxosuit.actor.name = %name,
            waxosuit.operation = operation,
            waxosuit.outcome = Empty,
            waxosuit.instance.wait_us = 0_u64,
        );
        actor.in_scope(|| {});
        actor.record("waxosuit.outcome", "ok");
    });
    // Both response fields in one record, as the HTTP server does.
    if let Some(meta) = server.metadata() {
        let fields = meta.fields();
        if let (Some(status), Some(size)) = (
            fields.field("http.response.status_code"),
            fields.field("http.response.body.size"),
        ) {
            server.record_all(&fields.value_set(&[
                (&status, Some(&200_i64 as &dyn Value)),
                (&size, Some(&12_i64 as &dyn Value)),
            ]));
        }
    }
}

fn spans(c: &mut Criterion) {
    let receiver = OtlpReceiver::start_counting("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut group = c.benchmark_group("request_spans");
    let logs = LogSettings {
        filter: Some(waxosuit_telemetry::DEFAULT_LOG_FILTER.into()),
        ..LogSettings::default()
    };
    for sampler in [None, Some("always_off"), Some("always_on")] {
        let plan = sampler.map(|sampler| {
            TraceSettings {
                endpoint: Some(receiver.url()),
                sampler: Some(sampler.into()),
                ..TraceSettings::default()
            }
            .resolve()
            .unwrap()
            .unwrap()
        });
        let (subscriber, mut telemetry) =
            waxosuit_telemetry::subscriber(&logs, plan.as_ref()).unwrap();
        let name = sampler.unwrap_or("off");
        tracing::dispatcher::with_default(&subscriber, || {
            group.bench_function(name, |b| b.iter(request));
        });
        telemetry.shutdown();
    }
    // The floor: the same spans in a bare registry under a layer that
    // wants them and does nothing, i.e. what `tracing` itself costs.
    let bare = tracing_subscriber::registry().with(Wants);
    tracing::subscriber::with_default(bare, || {
        group.bench_function("registry_only", |b| b.iter(request));
    });
    group.finish();
}

/// Enables every span and records nothing.
struct Wants;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Wants {}

criterion_group!(benches, spans);
criterion_main!(benches);
