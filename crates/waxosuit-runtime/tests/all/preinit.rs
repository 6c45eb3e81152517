//! Pre-initialisation: `_start`/`wapc_init` run once at load and every
//! instance starts from the result, unless that could change behaviour.

use std::sync::Arc;

use waxosuit_runtime::{Limits, Runtime, RuntimeError};
use waxosuit_test_fixtures::{wapc_echo, wat_echo, wat_init_host_call, wat_stateful_init};

use crate::common::{TestHandler, config, key};

/// What `peek` answers: the 9-byte marker, `$counter`, `$started`.
fn peek(marker: &[u8; 9], counter: i32, started: i32) -> Vec<u8> {
    let mut v = marker.to_vec();
    v.extend_from_slice(&counter.to_le_bytes());
    v.extend_from_slice(&started.to_le_bytes());
    v
}

#[tokio::test]
async fn initial_state_is_baked_in_and_each_instance_keeps_its_own() -> anyhow::Result<()> {
    for preinitialize in [true, false] {
        let runtime = Runtime::new(config().preinitialize(preinitialize))?;
        let actor = runtime
            .load(
                key(1),
                &wat_stateful_init(),
                Limits::default().instances(1, 4),
                Arc::new(TestHandler::default()),
            )
            .await?;
        assert_eq!(actor.stats().preinitialized, preinitialize);
        // Memory written and private globals set by `_start` and
        // `wapc_init`, each applied exactly once.
        let fresh = peek(b"init-done", 41, 7);
        assert_eq!(actor.call("peek", b"").await?, fresh, "{preinitialize}");

        // State a call leaves behind stays in that instance...
        actor.call("poke", b"").await?;
        assert_eq!(
            actor.call("peek", b"").await?,
            peek(b"XXXXXXXXX", 1041, 7),
            "{preinitialize}"
        );
        // ...and a new instance (served next: the pool is LIFO) starts
        // from the initialised state, not from its neighbour's.
        actor.prewarm().await?;
        assert_eq!(actor.call("peek", b"").await?, fresh, "{preinitialize}");
    }
    Ok(())
}

#[tokio::test]
async fn initialisation_that_calls_the_host_runs_in_every_instance() -> anyhow::Result<()> {
    let handler = Arc::new(TestHandler::default());
    let actor = Runtime::new(config())?
        .load(
            key(1),
            &wat_init_host_call(),
            Limits::default().instances(2, 4),
            Arc::clone(&handler),
        )
        .await?;
    assert!(!actor.stats().preinitialized);
    // One host call per ready instance, none swallowed by a snapshot run.
    assert_eq!(handler.calls().len(), 2);
    assert_eq!(actor.call("seen", b"").await?, b"pong:init");
    actor.prewarm().await?;
    assert_eq!(handler.calls().len(), 3);
    assert_eq!(actor.call("seen", b"").await?, b"pong:init");

    // Logging from `wapc_init` is a host call too: per instance.
    let actor = Runtime::new(config())?
        .load(
            key(2),
            &wat_echo(),
            Limits::default(),
            Arc::new(TestHandler::default()),
        )
        .await?;
    assert!(!actor.stats().preinitialized);
    assert_eq!(actor.call("echo", b"hi").await?, b"hi");
    Ok(())
}

#[tokio::test]
async fn public_wapc_guest_is_preinitialized_and_serves_from_the_cache() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for expected in [
        waxosuit_runtime::CacheOutcome::Miss,
        waxosuit_runtime::CacheOutcome::Hit,
    ] {
        let runtime = Runtime::new(config().cache_dir(dir.path()))?;
        let handler = Arc::new(TestHandler::default());
        let actor = runtime
            .load(
                key(1),
                wapc_echo(),
                Limits::default().instances(2, 4),
                Arc::clone(&handler),
            )
            .await?;
        let stats = actor.stats();
        assert_eq!(stats.cache_outcome, expected);
        assert!(stats.preinitialized, "{expected:?}");
        assert_eq!(actor.call("echo", b"abc").await?, b"abc");
        assert_eq!(actor.call("ping", b"abc").await?, b"pong:abc");
        assert_eq!(handler.calls().len(), 1);
    }
    // A runtime with pre-initialisation off keeps its own entries.
    let runtime = Runtime::new(config().cache_dir(dir.path()).preinitialize(false))?;
    let actor = runtime
        .load(
            key(1),
            wapc_echo(),
            Limits::default(),
            Arc::new(TestHandler::default()),
        )
        .await?;
    let stats = actor.stats();
    assert_eq!(stats.cache_outcome, waxosuit_runtime::CacheOutcome::Miss);
    assert!(!stats.preinitialized);
    Ok(())
}

#[tokio::test]
async fn initialisation_failures_are_still_load_errors() -> anyhow::Result<()> {
    // A `wapc_init` that traps or never ends cannot be snapshotted; the
    // per-instance attempt then reports it against the actor, as before.
    let trapping = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "wapc_init") unreachable)
            (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
    )?;
    let err = Runtime::new(config())?
        .load(
            key(1),
            &trapping,
            Limits::default(),
            Arc::new(TestHandler::default()),
        )
        .await
        .expect_err("init traps");
    assert!(matches!(err, RuntimeError::Trap { .. }), "{err:?}");

    let looping = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "wapc_init") (loop br 0))
            (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
    )?;
    let err = Runtime::new(config())?
        .load(
            key(1),
            &looping,
            Limits::default().deadline(std::time::Duration::from_millis(50)),
            Arc::new(TestHandler::default()),
        )
        .await
        .expect_err("init never ends");
    assert!(matches!(err, RuntimeError::Deadline { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn hot_swap_pre_initialises_the_new_module() -> anyhow::Result<()> {
    let actor = Runtime::new(config())?
        .load(
            key(1),
            &wat_echo(),
            Limits::default().instances(1, 2),
            Arc::new(TestHandler::default()),
        )
        .await?;
    assert!(!actor.stats().preinitialized);
    actor.replace_module(&key(1), &wat_stateful_init()).await?;
    let stats = actor.stats();
    assert_eq!(stats.generation, 2);
    assert!(stats.preinitialized);
    assert_eq!(actor.call("peek", b"").await?, peek(b"init-done", 41, 7));
    Ok(())
}
