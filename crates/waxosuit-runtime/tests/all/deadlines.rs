//! Every call keeps its deadline, whatever it is waiting on: a host call
//! that does not complete (a slow backend, the actor calling itself) on
//! fiber and inline instances, and a free instance.
//!
//! Margins are generous (the machine running the tests may be loaded): the
//! error must come within the deadline plus [`MARGIN`], where before these
//! fixes it came after 30 s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use waxosuit_runtime::{
    Actor, ActorKey, ErrorKind, HostCall, HostCallError, HostCallHandler, Limits, RuntimeError,
    WaitBound,
};

use crate::common::{Abi, caller_guest, host_call_request, key, runtime};

const DEADLINE: Duration = Duration::from_millis(500);
/// Slack allowed past the deadline.
const MARGIN: Duration = Duration::from_millis(2000);
/// The earliest a deadline error may come: the deadline, less the clock's
/// rounding to whole epoch ticks and then some.
const EARLIEST: Duration = Duration::from_millis(450);

/// A handler whose host calls misbehave by namespace:
///
/// * `slow:backend` answers after 30 s, like an HTTP client, messaging
///   request or lattice call whose far end is stuck;
/// * `stuck:thread` blocks its thread for [`STUCK_FOR`] before answering
///   (no deadline can interrupt that), holding the instance meanwhile;
/// * the actor's own key calls the actor again (`echo` with the payload);
/// * anything else answers the payload at once.
#[derive(Default)]
struct Misbehaving {
    actor: OnceLock<Actor<Misbehaving>>,
    /// Host calls whose future was dropped before it completed.
    abandoned: AtomicUsize,
    /// Set once a `stuck:thread` call has started blocking.
    stuck: AtomicBool,
}

const STUCK_FOR: Duration = Duration::from_millis(1500);

/// Counts a host call as abandoned unless it is disarmed on completion.
struct AbandonGuard<'a>(&'a AtomicUsize, bool);

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl HostCallHandler for Misbehaving {
    type Error = HostCallError;

    async fn host_call(&self, actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        let mut guard = AbandonGuard(&self.abandoned, true);
        let result = match &*call.namespace {
            "slow:backend" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(b"too late".to_vec())
            }
            "stuck:thread" => {
                self.stuck.store(true, Ordering::SeqCst);
                std::thread::sleep(STUCK_FOR);
                Ok(b"unstuck".to_vec())
            }
            ns if ns == actor.as_str() => {
                let me = self
                    .actor
                    .get()
                    .ok_or_else(|| HostCallError::new("the actor is not loaded yet"))?;
                me.call("echo", &call.payload)
                    .await
                    .map_err(|e| HostCallError::new(e.to_string()))
            }
            _ => Ok(call.payload),
        };
        guard.1 = false;
        result
    }
}

async fn load_misbehaving(n: u32, limits: Limits) -> anyhow::Result<Arc<Misbehaving>> {
    let handler = Arc::new(Misbehaving::default());
    let actor = runtime()
        .load(
            key(n),
            &caller_guest(Abi::Binding),
            limits,
            Arc::clone(&handler),
        )
        .await?;
    handler
        .actor
        .set(actor)
        .map_err(|_| anyhow::anyhow!("set twice"))?;
    Ok(handler)
}

fn actor(handler: &Misbehaving) -> &Actor<Misbehaving> {
    handler.actor.get().expect("loaded")
}

/// Calls `namespace`/`Fetch` through the guest and checks that the call
/// fails within the deadline (plus [`MARGIN`]) with a deadline error naming
/// the pending host call, that the host call was abandoned, and that the
/// actor serves the next call.
async fn assert_abandoned_at_deadline(
    handler: &Misbehaving,
    namespace: &[u8],
) -> anyhow::Result<RuntimeError> {
    let actor = actor(handler);
    let request = host_call_request(b"default", namespace, b"Fetch", b"payload");
    let started = Instant::now();
    let err = actor
        .call("call", &request)
        .await
        .expect_err("the host call cannot complete in time");
    let took = started.elapsed();
    assert!(
        took >= EARLIEST && took <= DEADLINE + MARGIN,
        "the deadline error came after {took:?} for a {DEADLINE:?} deadline: {err}"
    );
    match &err {
        RuntimeError::Deadline {
            actor: who,
            limit,
            waiting_on: Some(pending),
        } => {
            assert_eq!(who, actor.key());
            assert_eq!(*limit, DEADLINE);
            assert_eq!(
                (
                    &*pending.binding,
                    pending.namespace.as_bytes(),
                    &*pending.operation
                ),
                ("default", namespace, "Fetch")
            );
        }
        other => panic!("expected a deadline while waiting on the host call, got {other:?}"),
    }
    let text = err.to_string();
    for needle in [
        "deadline while waiting on a host call",
        "operation `Fetch`",
        &String::from_utf8_lossy(namespace),
        "binding `default`",
        actor.key().as_str(),
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(err.broke_instance());
    // The abandoned host call's future was dropped, not left running.
    let deadline = Instant::now() + Duration::from_secs(5);
    while handler.abandoned.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the host call was never dropped");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(actor.call("echo", b"alive").await?, b"alive");
    Ok(err)
}

fn limits() -> Limits {
    Limits::default().deadline(DEADLINE)
}

#[tokio::test(flavor = "current_thread")]
async fn a_slow_host_call_is_abandoned_at_the_deadline_on_a_fiber() -> anyhow::Result<()> {
    let handler = load_misbehaving(60, limits()).await?;
    assert!(
        !actor(&handler).stats().inline,
        "a current-thread runtime gets fiber instances"
    );
    let err = assert_abandoned_at_deadline(&handler, b"slow:backend").await?;
    assert!(
        err.to_string()
            .contains("make `slow:backend` answer sooner"),
        "{err}"
    );
    // Again, now that the first instance was replaced.
    assert_abandoned_at_deadline(&handler, b"slow:backend").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_host_call_is_abandoned_at_the_deadline_inline() -> anyhow::Result<()> {
    let handler = load_misbehaving(61, limits()).await?;
    assert!(
        actor(&handler).stats().inline,
        "the first call runs inline on a multi-threaded runtime"
    );
    assert_abandoned_at_deadline(&handler, b"slow:backend").await?;
    // The wait moved the actor to fibers; the deadline holds there too.
    assert!(!actor(&handler).stats().inline);
    assert_abandoned_at_deadline(&handler, b"slow:backend").await?;
    Ok(())
}

/// A handler whose host calls never complete.
struct NeverAnswers;

impl HostCallHandler for NeverAnswers {
    type Error = HostCallError;

    async fn host_call(
        &self,
        _actor: &ActorKey,
        _call: HostCall,
    ) -> Result<Vec<u8>, HostCallError> {
        std::future::pending().await
    }
}

/// An inline instance (multi-threaded runtime) whose host call does not
/// complete at once waits for it on its thread (`block_in_place` and
/// `Handle::block_on`), and no longer than the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_host_call_that_never_completes_is_cut_at_the_deadline() -> anyhow::Result<()> {
    let actor = runtime()
        .load(
            key(62),
            &caller_guest(Abi::Binding),
            limits(),
            Arc::new(NeverAnswers),
        )
        .await?;
    assert!(actor.stats().inline, "the first call runs inline");
    let started = Instant::now();
    let err = actor
        .call(
            "call",
            &host_call_request(b"default", b"test:lying", b"Get", b""),
        )
        .await
        .expect_err("the host call never completes");
    let took = started.elapsed();
    assert!(
        took >= EARLIEST && took <= DEADLINE + MARGIN,
        "took {took:?}: {err}"
    );
    assert!(
        matches!(&err, RuntimeError::Deadline { waiting_on: Some(p), .. } if &*p.namespace == "test:lying"),
        "{err:?}"
    );
    assert_eq!(actor.call("echo", b"alive").await?, b"alive");
    Ok(())
}

/// The actor calls itself while its only instance is busy with the call
/// that is calling: before, that waited 30 s (the queue timeout).
///
/// Two deadlines end at the same epoch tick here: the outer call's, while
/// its host call (the call to itself) is pending, and the inner call's,
/// while it waits for an instance. The outer one normally wins (it is
/// checked first); should the inner one's error reach the guest first, the
/// guest reports it. Either way the call fails at the deadline saying what
/// happened and how to fix it.
async fn assert_self_call_fails_at_the_deadline(n: u32) -> anyhow::Result<()> {
    let handler = load_misbehaving(n, limits().instances(1, 1)).await?;
    let actor_ref = actor(&handler);
    let own_key = actor_ref.key().to_string();
    let request = host_call_request(b"default", own_key.as_bytes(), b"Fetch", b"payload");
    let started = Instant::now();
    let err = actor_ref
        .call("call", &request)
        .await
        .expect_err("the call to itself cannot get an instance");
    let took = started.elapsed();
    assert!(
        took >= EARLIEST && took <= DEADLINE + MARGIN,
        "the call to itself failed after {took:?}: {err}"
    );
    let text = err.to_string();
    match &err {
        RuntimeError::Deadline {
            waiting_on: Some(pending),
            ..
        } => {
            assert_eq!(&*pending.namespace, own_key.as_str());
            assert!(text.contains("the actor called itself"), "{text}");
        }
        RuntimeError::GuestError { message, .. } => {
            assert!(message.contains("no instance was free"), "{message}");
            assert!(message.contains("calls itself"), "{message}");
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    assert!(
        text.contains("raise `Limits::max_instances`")
            || text.contains("Raise `Limits::max_instances`"),
        "{text}"
    );
    assert_eq!(actor_ref.call("echo", b"alive").await?, b"alive");

    // The fix the message names works: with a second instance the call to
    // itself is served.
    let handler = load_misbehaving(n + 100, limits().instances(1, 2)).await?;
    let own_key = actor(&handler).key().to_string();
    let request = host_call_request(b"default", own_key.as_bytes(), b"Fetch", b"round trip");
    assert_eq!(actor(&handler).call("call", &request).await?, b"round trip");
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn an_actor_calling_itself_with_no_free_instance_fails_at_the_deadline_on_a_fiber()
-> anyhow::Result<()> {
    assert_self_call_fails_at_the_deadline(63).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_calling_itself_with_no_free_instance_fails_at_the_deadline_inline()
-> anyhow::Result<()> {
    assert_self_call_fails_at_the_deadline(64).await
}

/// Starts a call whose host call blocks its thread (and so holds the only
/// instance) for [`STUCK_FOR`], and returns once it is blocking.
async fn hold_the_only_instance(
    handler: &Arc<Misbehaving>,
) -> anyhow::Result<tokio::task::JoinHandle<Result<Vec<u8>, RuntimeError>>> {
    let holder = {
        let handler = Arc::clone(handler);
        tokio::spawn(async move {
            let request = host_call_request(b"default", b"stuck:thread", b"Sleep", b"");
            actor(&handler).call("call", &request).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !handler.stuck.load(Ordering::SeqCst) {
        anyhow::ensure!(Instant::now() < deadline, "the holder never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_gets_no_instance_fails_at_its_deadline_saying_so() -> anyhow::Result<()> {
    let handler = load_misbehaving(65, limits().instances(1, 1)).await?;
    let holder = hold_the_only_instance(&handler).await?;

    let started = Instant::now();
    let err = actor(&handler)
        .call("echo", b"waiting")
        .await
        .expect_err("no instance is free before the deadline");
    let took = started.elapsed();
    assert!(
        took >= EARLIEST && took <= DEADLINE + MARGIN,
        "the wait ended after {took:?}: {err}"
    );
    match &err {
        RuntimeError::QueueTimeout {
            max_instances,
            bound,
            waited,
            ..
        } => {
            assert_eq!(*max_instances, 1);
            assert_eq!(*bound, WaitBound::Deadline);
            // The deadline, as the epoch clock rounds it (whole ticks).
            assert!(
                *waited >= EARLIEST && *waited <= DEADLINE + MARGIN,
                "{waited:?}"
            );
        }
        other => panic!("expected QueueTimeout, got {other:?}"),
    }
    let text = err.to_string();
    for needle in [
        "no instance was free within",
        "its deadline",
        "all 1 instances stayed busy",
        "`Limits::max_instances`",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }

    // The holder overran its own deadline while its thread was blocked:
    // the guest is stopped as soon as it runs again.
    let held = holder.await?.expect_err("the holder ran past its deadline");
    assert_eq!(held.kind(), ErrorKind::Deadline, "{held}");
    assert_eq!(
        actor(&handler).call("echo", b"free again").await?,
        b"free again"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_timeout_shorter_than_the_deadline_ends_the_wait_first() -> anyhow::Result<()> {
    let queue_timeout = Duration::from_millis(300);
    let limits = Limits::default()
        .deadline(Duration::from_secs(10))
        .queue_timeout(queue_timeout)
        .instances(1, 1);
    let handler = load_misbehaving(66, limits).await?;
    let holder = hold_the_only_instance(&handler).await?;
    let started = Instant::now();
    let err = actor(&handler)
        .call("echo", b"waiting")
        .await
        .expect_err("the queue timeout ends the wait");
    let took = started.elapsed();
    assert!(
        took >= queue_timeout && took <= queue_timeout + MARGIN,
        "{took:?}"
    );
    assert!(
        matches!(
            &err,
            RuntimeError::QueueTimeout {
                bound: WaitBound::QueueTimeout,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("its queue timeout"), "{err}");
    // Within its 10 s deadline, the holder completes normally.
    assert_eq!(holder.await??, b"unstuck");
    Ok(())
}
