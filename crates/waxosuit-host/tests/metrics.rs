//! `/metrics` under a hostile guest: a signed actor that makes its host
//! calls with 64 KiB operation names, as in issue 16 (300 such calls made a
//! 320 MB exposition). The bounds themselves are tested where they are
//! defined (`src/metrics.rs`); this drives them the way a guest does.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_host::{Host, HostBuilder};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};

/// The bound `src/metrics.rs` states for the invocation families
/// (`MAX_INVOCATION_EXPOSITION_BYTES`): 2,050 label sets of 19 lines of at
/// most 400 bytes, plus headers.
const STATED_BOUND_BYTES: usize = 2050 * 19 * 400 + 1024;

static ACCOUNT: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::generate(KeyKind::Account));

/// Accepts any operation, as a logging provider accepts any line: the
/// calls succeed, so nothing stops the guest before the metrics do.
#[derive(Default)]
struct Sink {
    calls: AtomicU64,
}

#[async_trait]
impl CapabilityProvider for Sink {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id("test:sink")
            .name("Sink")
            .version("0.0.1")
            .with_operation("Write", OperationDirection::ToProvider, "Takes anything")
            .build()
    }

    async fn bind_actor(&self, _request: BindRequest) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn remove_actor(&self, _actor: &str, _binding: &str) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn handle_call(&self, _call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(Vec::new())
    }
}

/// The echo fixture's `forward` payload: it makes one host call with these.
fn forward(namespace: &str, operation: &str, body: &[u8]) -> Vec<u8> {
    let mut p = format!("\n{namespace}\n{operation}\n").into_bytes();
    p.extend_from_slice(body);
    p
}

/// Resident set size of this process in bytes (Linux), for the record.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// A host with the sink registered and the echo fixture, signed as
/// `flooder`, bound to it; returns the actor's key.
async fn flooder() -> (Host, Arc<Sink>, String) {
    let host: Host = HostBuilder::new()
        .verifier(Verifier::new().trust_issuer(&ACCOUNT.public_key()).unwrap())
        .build()
        .unwrap();
    let sink = Arc::new(Sink::default());
    host.add_provider("default", sink.clone()).await.unwrap();
    let module_key = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(ACCOUNT.public_key())
        .subject(module_key.public_key())
        .metadata(Actor {
            caps: Some(vec!["test:sink".to_string()]),
            ..Actor::named("flooder")
        })
        .build();
    let module = embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, &ACCOUNT).unwrap();
    let info = host.add_actor(&module, "flooder.wasm", None).await.unwrap();
    host.set_binding("flooder", "test:sink", "", BTreeMap::new())
        .await
        .unwrap();
    (host, sink, info.key.to_string())
}

/// `(labels, count)` of every `waxosuit_invocations_total` line.
fn invocations(text: &str) -> Vec<(&str, u64)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("waxosuit_invocations_total{"))
        .map(|l| {
            let (labels, count) = l.rsplit_once("} ").unwrap();
            (labels, count.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_host_calls_with_64_kib_operation_names_keep_metrics_small() {
    let (host, sink, key) = flooder().await;
    let before = rss();
    let mut refused = 0u64;
    for i in 0..10_000u32 {
        // Every name distinct, 64 KiB long.
        let mut operation = format!("{i:05}");
        operation.push_str(&"A".repeat(64 * 1024 - operation.len()));
        // The runtime may refuse names this long before the host call is
        // routed (a limit of its own); either way nothing may reach the
        // metrics but a bounded count.
        match host
            .call_actor(&key, "forward", &forward("test:sink", &operation, b"x"))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                assert!(e.to_string().contains("operation"), "{e}");
                refused += 1;
            }
        }
    }
    let passed = sink.calls.load(Ordering::Relaxed);
    assert_eq!(passed + refused, 10_000);
    let text = host.metrics_text();
    let after = rss();

    let mut expected = vec![(
        format!(r#"target="actor",actor="{key}",capability="",operation="forward""#),
        10_000,
    )];
    if passed > 0 {
        expected.push((
            format!(
                r#"target="capability",actor="{key}",capability="test:sink",operation="other""#
            ),
            passed,
        ));
    }
    let got: Vec<(String, u64)> = invocations(&text)
        .into_iter()
        .map(|(labels, count)| (labels.to_string(), count))
        .collect();
    assert_eq!(got, expected, "{text}");
    assert!(
        !text.contains("AAAA"),
        "no operation name reached the exposition"
    );
    // A few KiB whatever the names, and never above the stated bound.
    assert!(text.len() < 16 * 1024, "{} bytes", text.len());
    assert!(text.len() < STATED_BOUND_BYTES);
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "10,000 calls with 64 KiB operation names ({passed} routed, {refused} refused by the \
             runtime): /metrics is {} bytes; resident memory {} MiB before the calls, {} MiB \
             after the calls and the scrape",
            text.len(),
            before / (1024 * 1024),
            after / (1024 * 1024)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_distinct_short_operation_names_are_bounded_per_capability() {
    let (host, sink, key) = flooder().await;
    for i in 0..10_000u32 {
        // Distinct, and short enough for any name limit of the runtime.
        let operation = format!("{i:05}{}", "B".repeat(55));
        host.call_actor(&key, "forward", &forward("test:sink", &operation, b"x"))
            .await
            .unwrap();
    }
    assert_eq!(sink.calls.load(Ordering::Relaxed), 10_000);
    let text = host.metrics_text();
    let series = invocations(&text);
    let capability: Vec<&(&str, u64)> = series
        .iter()
        .filter(|(labels, _)| labels.starts_with(r#"target="capability""#))
        .collect();
    // 256 names and `other`; only `other` once the host declares the
    // sink's operations (it declares only `Write`) to the metrics.
    assert!(
        capability.len() == 257 || capability.len() == 1,
        "{} series",
        capability.len()
    );
    assert_eq!(capability.iter().map(|(_, n)| n).sum::<u64>(), 10_000);
    let other = capability
        .iter()
        .find(|(labels, _)| labels.ends_with(r#"operation="other""#))
        .expect("an `other` series");
    assert!(other.1 >= 10_000 - 256, "{other:?}");
    assert!(text.len() < STATED_BOUND_BYTES);
    assert!(text.len() < 2 * 1024 * 1024, "{} bytes", text.len());
    println!(
        "10,000 distinct 60-byte operation names from actor {key}: {} series, /metrics {} bytes",
        series.len(),
        text.len()
    );
}
