//! Requests an actor makes that time out leave nothing behind in the host:
//! measured as the process's resident memory, in a process of their own so
//! no other test's allocations are counted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use waxosuit_cap_messaging_nats::NatsMessaging;
use waxosuit_codec::messaging::{OP_PERFORM_REQUEST, RequestMessage};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, encode,
};
use waxosuit_test_servers::NatsServer;

/// The process's resident memory, in bytes (`VmRSS`, whatever the page size).
fn resident() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

struct Nobody;

#[async_trait]
impl ActorDispatcher for Nobody {
    async fn dispatch(&self, _: &str, _: &str, _: Vec<u8>) -> Result<Vec<u8>, DispatchError> {
        Ok(Vec::new())
    }
}

async fn timed_out_requests(provider: &Arc<NatsMessaging>, count: usize) {
    let call = ProviderCall {
        actor: "MREQ".into(),
        binding: "default".into(),
        operation: OP_PERFORM_REQUEST.into(),
        payload: encode(
            waxosuit_codec::messaging::CAPABILITY_ID,
            &RequestMessage {
                subject: "silent.service".into(),
                body: b"?".to_vec(),
                timeout_ms: 1,
            },
        )
        .unwrap(),
    };
    futures_util::stream::iter(0..count)
        .for_each_concurrent(64, |_| {
            let provider = Arc::clone(provider);
            let call = call.clone();
            async move {
                let result = provider.handle_call(call).await;
                assert!(result.is_err(), "the silent service answered");
            }
        })
        .await;
}

/// Requests in the warm-up, and then measured.
const REQUESTS: usize = 75_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_time_out_leave_no_memory_behind() {
    let server = NatsServer::start().unwrap();
    // A subscriber that never answers: the server then sends no "no
    // responders" status, and every request waits out its timeout. (Its
    // client buffers what it is sent, up to its subscription capacity:
    // part of what the warm-up fills, in another client than the one
    // measured, but the same process.)
    let silent = async_nats::connect(server.url()).await.unwrap();
    let _never_answered = silent.subscribe("silent.service").await.unwrap();
    silent.flush().await.unwrap();
    let provider = Arc::new(NatsMessaging::new());
    provider.start(Arc::new(Nobody)).await.unwrap();
    provider
        .bind_actor(BindRequest {
            actor: "MREQ".into(),
            binding: "default".into(),
            values: HashMap::from([("URL".to_string(), server.url())]),
        })
        .await
        .unwrap();
    // Warm up: the allocator's arenas and the client's buffers reach their
    // size (resident memory grows by some 20 MB over the first ~75,000
    // requests, then stays).
    timed_out_requests(&provider, REQUESTS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = resident();
    timed_out_requests(&provider, REQUESTS).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grown = resident().saturating_sub(before);
    // An entry kept per request cost some 700 bytes resident.
    assert!(
        grown < REQUESTS * 64,
        "{grown} more bytes resident after {REQUESTS} timed-out requests"
    );
}
