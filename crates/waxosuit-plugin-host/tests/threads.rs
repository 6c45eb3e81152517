//! The blocking threads plugin calls hold, counted for the whole process:
//! alone in its test binary, so no other test's threads come and go.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use waxosuit_plugin_fixtures::plugins;
use waxosuit_plugin_host::PluginProvider;
use waxosuit_provider::{CapabilityProvider, ProviderCall};

mod common;
use common::{INVENTORY, Keys, msgpack};

/// Threads of this process, from `/proc`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A plugin call its caller gives up on keeps its blocking thread until the
/// plugin returns; a plugin has at most MAX_CONCURRENT_CALLS of them, so
/// callers that give up over and over do not fill the blocking pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_plugin_calls_hold_at_most_the_call_limit_in_threads() {
    use waxosuit_plugin_host::MAX_CONCURRENT_CALLS;

    let keys = Keys::new();
    let host = keys.host();
    let plugin = Arc::new(
        PluginProvider::from_archive(
            &keys
                .archive(INVENTORY, plugins::ACME_INVENTORY)
                .verify(&keys.verifier())
                .unwrap(),
        )
        .unwrap(),
    );
    host.add_provider("default", plugin.clone()).await.unwrap();
    // The plugin's callback spins in this actor until its deadline: each
    // call holds its plugin thread for a second.
    let limits = waxosuit_host::Limits::default()
        .deadline(std::time::Duration::from_secs(1))
        .instances(1, 256);
    let info = host
        .add_actor(&keys.actor("spinner", &[INVENTORY]), "test", Some(limits))
        .await
        .unwrap();
    host.set_binding("spinner", INVENTORY, "default", BTreeMap::new())
        .await
        .unwrap();
    #[derive(Serialize)]
    struct CallActor<'a> {
        operation: &'a str,
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
    }
    let payload = msgpack(&CallActor {
        operation: "loop",
        body: b"",
    });
    let before = threads();
    for _ in 0..4 * MAX_CONCURRENT_CALLS {
        let call = plugin.handle_call(ProviderCall {
            actor: info.key.to_string(),
            binding: "default".into(),
            operation: "CallActor".into(),
            payload: payload.clone(),
        });
        // Given up on at once; the plugin's thread goes on.
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(1), call).await;
        assert!(gave_up.is_err());
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let during = threads();
    // Each call running holds two threads: the host's blocking thread in
    // the plugin, and the one the plugin's SDK calls the host back from
    // (without the limit: 246 threads for these 128 calls).
    assert!(
        during <= before + 2 * MAX_CONCURRENT_CALLS + 8,
        "{before} threads before, {during} with the abandoned calls running"
    );
    assert!(during > before, "the calls were running");
    host.shutdown().await;
}
