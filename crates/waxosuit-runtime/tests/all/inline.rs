//! Inline instances (no fiber) on multi-threaded runtimes, and the switch
//! to fiber instances once a call of the actor has to wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use waxosuit_runtime::{
    ActorKey, ErrorKind, HostCall, HostCallError, HostCallHandler, Limits, RuntimeError,
};
use waxosuit_test_fixtures::{wapc_echo, wat_echo};

use crate::common::{config, key, payload, pending_once, runtime};

/// Replies `pong:` + payload and refuses `fail`; at once, unless `wait` is
/// set, in which case it is pending once and woken from another thread a
/// millisecond later.
#[derive(Default)]
struct Pong {
    calls: AtomicUsize,
    wait: AtomicBool,
}

impl HostCallHandler for Pong {
    type Error = HostCallError;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.wait.load(Ordering::SeqCst) {
            pending_once().await;
        }
        if call.payload == b"fail" {
            return Err(HostCallError::new("host says no"));
        }
        Ok([b"pong:".as_slice(), &call.payload].concat())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_answered_at_once_keep_the_actor_inline() -> anyhow::Result<()> {
    let handler = Arc::new(Pong::default());
    let actor = runtime()
        .load(
            key(40),
            wapc_echo(),
            Limits::default(),
            Arc::clone(&handler),
        )
        .await?;
    assert!(actor.stats().inline);
    for size in [0, 1024, 64 * 1024] {
        let data = payload(size);
        assert_eq!(actor.call("echo", &data).await?, data);
        assert_eq!(
            actor.call("ping", &data).await?,
            [b"pong:".as_slice(), &data].concat()
        );
    }
    let err = actor.call("ping", b"fail").await.expect_err("host error");
    assert!(err.to_string().contains("host says no"), "{err}");

    // Many concurrent calls over the pool, every reply checked.
    let calls: Vec<_> = (0..1000u32)
        .map(|i| {
            let actor = actor.clone();
            tokio::spawn(async move {
                let data = i.to_le_bytes();
                let op = if i % 2 == 0 { "echo" } else { "ping" };
                let reply = actor.call(op, &data).await?;
                let expected = if i % 2 == 0 {
                    data.to_vec()
                } else {
                    [b"pong:".as_slice(), &data].concat()
                };
                anyhow::ensure!(reply == expected, "call {i}: wrong reply");
                anyhow::Ok(())
            })
        })
        .collect();
    for call in calls {
        call.await??;
    }
    assert!(actor.stats().inline, "no call had to wait");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3 + 1 + 500);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_that_waits_completes_and_moves_the_actor_to_fibers() -> anyhow::Result<()> {
    let handler = Arc::new(Pong::default());
    let limits = Limits::default().instances(2, 8);
    let actor = runtime()
        .load(key(41), wapc_echo(), limits, Arc::clone(&handler))
        .await?;
    assert!(actor.stats().inline);
    handler.wait.store(true, Ordering::SeqCst);
    // Served inline: the worker blocks (handing its other tasks on) until
    // the timer fires, and the reply is right.
    assert_eq!(actor.call("ping", b"slow").await?, b"pong:slow");
    assert!(!actor.stats().inline, "the actor must switch to fibers");
    let discarded = actor.stats().instances_discarded;

    // Later calls suspend on fibers; the inline instances left idle are
    // replaced as they come out of the pool.
    let calls: Vec<_> = (0..50u32)
        .map(|i| {
            let actor = actor.clone();
            tokio::spawn(async move { actor.call("ping", &i.to_le_bytes()).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let expected = [b"pong:".as_slice(), &(i as u32).to_le_bytes()].concat();
        assert_eq!(call.await??, expected);
    }
    assert!(
        actor.stats().instances_discarded > discarded,
        "idle inline instances must be dropped, not reused"
    );
    assert!(!actor.stats().inline);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_inline_and_a_long_call_moves_the_actor_to_fibers() -> anyhow::Result<()> {
    let limits = Limits::default()
        .deadline(Duration::from_millis(100))
        .max_memory(8 << 20);
    let kind = |r: Result<Vec<u8>, RuntimeError>| r.expect_err("must fail").kind();
    for (n, module) in [(42, wapc_echo().to_vec()), (43, wat_echo())] {
        let actor = runtime()
            .load(key(n), &module, limits, Arc::new(Pong::default()))
            .await?;
        if module.as_slice() == wapc_echo() {
            assert_eq!(kind(actor.call("grow", b"").await), ErrorKind::MemoryLimit);
            assert_eq!(kind(actor.call("panic", b"").await), ErrorKind::Trap);
            assert_eq!(kind(actor.call("error", b"").await), ErrorKind::GuestError);
            assert!(actor.stats().inline, "quick failures keep the actor inline");
        }
        let started = std::time::Instant::now();
        assert_eq!(kind(actor.call("loop", b"").await), ErrorKind::Deadline);
        let took = started.elapsed();
        assert!(
            took >= limits.deadline && took <= limits.deadline + Duration::from_millis(500),
            "the deadline error took {took:?}"
        );
        assert!(
            !actor.stats().inline,
            "a call that ran for long moves the actor to fibers"
        );
        assert_eq!(actor.call("echo", b"alive").await?, b"alive");
        assert_eq!(kind(actor.call("loop", b"").await), ErrorKind::Deadline);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_calls_can_be_turned_off() -> anyhow::Result<()> {
    let runtime = waxosuit_runtime::Runtime::new(config().inline_calls(false))?;
    let actor = runtime
        .load(
            key(44),
            wapc_echo(),
            Limits::default(),
            Arc::new(Pong::default()),
        )
        .await?;
    assert!(!actor.stats().inline);
    assert_eq!(actor.call("ping", b"x").await?, b"pong:x");
    Ok(())
}

#[tokio::test]
async fn a_current_thread_runtime_gets_fiber_instances() -> anyhow::Result<()> {
    let handler = Arc::new(Pong::default());
    handler.wait.store(true, Ordering::SeqCst);
    let actor = runtime()
        .load(key(45), wapc_echo(), Limits::default(), handler)
        .await?;
    assert!(!actor.stats().inline);
    // Waiting host calls are fine: the guest is suspended on its fiber.
    assert_eq!(actor.call("ping", b"x").await?, b"pong:x");
    Ok(())
}

#[test]
fn an_inline_actor_called_from_a_current_thread_runtime_fails_the_waiting_call_instead_of_deadlocking()
-> anyhow::Result<()> {
    let handler = Arc::new(Pong::default());
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let actor = multi.block_on(runtime().load(
        key(46),
        wapc_echo(),
        Limits::default(),
        Arc::clone(&handler),
    ))?;
    assert!(actor.stats().inline);
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    handler.wait.store(true, Ordering::SeqCst);
    let err = single
        .block_on(actor.call("ping", b"x"))
        .expect_err("a waiting host call cannot complete here");
    assert_eq!(err.kind(), ErrorKind::GuestError, "{err}");
    assert!(err.to_string().contains("current-thread"), "{err}");
    // Nothing is wedged: a call that does not wait still works there.
    handler.wait.store(false, Ordering::SeqCst);
    assert_eq!(single.block_on(actor.call("echo", b"ok"))?, b"ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_long_inline_call_does_not_hold_up_other_tasks_for_its_deadline() -> anyhow::Result<()> {
    let limits = Limits::default().deadline(Duration::from_secs(3));
    let actor = runtime()
        .load(key(47), wapc_echo(), limits, Arc::new(Pong::default()))
        .await?;
    assert!(actor.stats().inline);
    let started = std::time::Instant::now();
    // Spawned from this (the only) worker: the loop and the timer task
    // below share it until the guest gives way to a fiber instance, which
    // yields between slices.
    let spinning = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.call("loop", b"").await })
    };
    let ticked = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        started.elapsed()
    });
    let ticked = ticked.await?;
    assert!(
        ticked < Duration::from_secs(1),
        "a timer task waited {ticked:?} behind a spinning inline guest"
    );
    let err = spinning.await?.expect_err("the loop hits its deadline");
    assert_eq!(err.kind(), ErrorKind::Deadline);
    assert!(!actor.stats().inline);
    Ok(())
}

/// A handler whose call never completes.
struct Hang;

impl HostCallHandler for Hang {
    type Error = HostCallError;

    async fn host_call(
        &self,
        _actor: &ActorKey,
        _call: HostCall,
    ) -> Result<Vec<u8>, HostCallError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_that_never_completes_fails_within_the_deadline() -> anyhow::Result<()> {
    let limits = Limits::default().deadline(Duration::from_millis(200));
    let actor = runtime()
        .load(key(48), wapc_echo(), limits, Arc::new(Hang))
        .await?;
    assert!(actor.stats().inline);
    let started = std::time::Instant::now();
    let err = actor
        .call("ping", b"x")
        .await
        .expect_err("the call cannot succeed");
    let took = started.elapsed();
    // The host call is abandoned at the deadline and the guest stopped.
    assert!(
        matches!(&err, RuntimeError::Deadline { waiting_on: Some(p), .. } if &*p.operation == "Ping"),
        "{err}"
    );
    assert!(
        took <= limits.deadline + Duration::from_millis(500),
        "the hung host call held the caller for {took:?}"
    );
    assert!(
        !actor.stats().inline,
        "a waiting host call switches the actor at once"
    );
    Ok(())
}

/// Calls `test:ping` `Ping` once, then spins until stopped.
const PING_THEN_SPIN: &str = r#"(module
  (import "wapc" "__host_call"
    (func $call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "defaulttest:pingPing")
  (func (export "__guest_call") (param i32 i32) (result i32)
    (drop (call $call (i32.const 0) (i32.const 7) (i32.const 7) (i32.const 9)
                      (i32.const 16) (i32.const 4) (i32.const 0) (i32.const 0)))
    (loop $spin (br $spin))
    (i32.const 1)))"#;

/// Counts down from a billion (well past the inline patience on any
/// machine), then replies `done`. No host call.
const COUNT_THEN_REPLY: &str = r#"(module
  (import "wapc" "__guest_response" (func $resp (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "done")
  (func (export "__guest_call") (param i32 i32) (result i32)
    (local $n i64)
    (local.set $n (i64.const 1000000000))
    (loop $count
      (local.set $n (i64.sub (local.get $n) (i64.const 1)))
      (br_if $count (i64.ne (local.get $n) (i64.const 0))))
    (call $resp (i32.const 0) (i32.const 4))
    (i32.const 1)))"#;

/// A long inline call that made no host call gives way: it is stopped and
/// runs again from the start on a fiber instance, and its caller gets the
/// one reply of the second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_effect_free_inline_call_runs_again_on_a_fiber_and_replies_once()
-> anyhow::Result<()> {
    let limits = Limits::default().deadline(Duration::from_secs(60));
    let actor = runtime()
        .load(
            key(49),
            &wat::parse_str(COUNT_THEN_REPLY)?,
            limits,
            Arc::new(Pong::default()),
        )
        .await?;
    assert!(actor.stats().inline);
    assert_eq!(actor.call("count", b"").await?, b"done");
    let stats = actor.stats();
    assert!(!stats.inline, "the actor left inline mode");
    assert!(
        stats.instances_discarded >= 1,
        "the stopped inline instance is dropped: {stats:?}"
    );
    // The fiber instance stays: the next call is served by it at once.
    assert_eq!(actor.call("count", b"").await?, b"done");
    Ok(())
}

/// A long inline call that has made a host call is never run twice (the
/// host call may have had effects): it finishes inline, here at its
/// deadline, with the host called exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_inline_call_that_called_the_host_is_not_run_twice() -> anyhow::Result<()> {
    let handler = Arc::new(Pong::default());
    let limits = Limits::default().deadline(Duration::from_millis(400));
    let actor = runtime()
        .load(
            key(50),
            &wat::parse_str(PING_THEN_SPIN)?,
            limits,
            Arc::clone(&handler),
        )
        .await?;
    assert!(actor.stats().inline);
    let err = actor.call("spin", b"").await.expect_err("it spins");
    assert_eq!(err.kind(), ErrorKind::Deadline, "{err}");
    assert_eq!(handler.calls.load(Ordering::SeqCst), 1);
    assert!(!actor.stats().inline);
    Ok(())
}
