//! Actors whose handler is `BLOCKING`: same behaviour without fibers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use waxosuit_runtime::{ActorKey, ErrorKind, HostCall, HostCallHandler, Limits, RuntimeError};
use waxosuit_test_fixtures::{wapc_echo, wat_echo, wat_legacy4};

use crate::common::{key, payload, pending_once, runtime};

/// Replies `pong:` + payload; every other call is pending once and woken
/// from another thread, to exercise the parking fallback.
#[derive(Default)]
struct Blocking {
    calls: AtomicUsize,
}

impl HostCallHandler for Blocking {
    const BLOCKING: bool = true;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, String> {
        if self.calls.fetch_add(1, Ordering::SeqCst) % 2 == 1 {
            pending_once().await;
        }
        if call.payload == b"fail" {
            return Err("host says no".into());
        }
        Ok([b"pong:".as_slice(), &call.payload].concat())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handler_serves_echo_ping_and_errors() -> anyhow::Result<()> {
    let handler = Arc::new(Blocking::default());
    let actor = runtime()
        .load(key(5), wapc_echo(), Limits::default(), Arc::clone(&handler))
        .await?;
    for size in [0, 1024, 64 * 1024] {
        let data = payload(size);
        assert_eq!(actor.call("echo", &data).await?, data);
        for _ in 0..2 {
            let reply = actor.call("ping", &data).await?;
            assert_eq!(reply, [b"pong:".as_slice(), &data].concat());
        }
    }
    let err = actor.call("ping", b"fail").await.expect_err("host error");
    assert!(err.to_string().contains("host says no"), "{err}");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 7);

    let legacy = runtime()
        .load(
            key(6),
            &wat_legacy4(),
            Limits::default(),
            Arc::clone(&handler),
        )
        .await?;
    assert_eq!(legacy.call("x", b"old").await?, b"pong:old");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handler_keeps_limits_and_traps_typed() -> anyhow::Result<()> {
    let limits = Limits::default()
        .deadline(Duration::from_millis(100))
        .max_memory(8 << 20);
    let actor = runtime()
        .load(key(7), wapc_echo(), limits, Arc::new(Blocking::default()))
        .await?;
    let kind = |r: Result<Vec<u8>, RuntimeError>| r.expect_err("must fail").kind();
    assert_eq!(kind(actor.call("loop", b"").await), ErrorKind::Deadline);
    assert_eq!(kind(actor.call("grow", b"").await), ErrorKind::MemoryLimit);
    assert_eq!(kind(actor.call("panic", b"").await), ErrorKind::Trap);
    assert_eq!(kind(actor.call("error", b"").await), ErrorKind::GuestError);
    assert_eq!(actor.call("echo", b"alive").await?, b"alive");

    let wat = runtime()
        .load(key(8), &wat_echo(), limits, Arc::new(Blocking::default()))
        .await?;
    assert_eq!(kind(wat.call("loop", b"").await), ErrorKind::Deadline);
    assert_eq!(wat.call("echo", b"alive").await?, b"alive");
    Ok(())
}
