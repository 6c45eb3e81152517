//! Pre-initialisation: `_start`/`wapc_init` run once at load and every
//! instance starts from the result, unless that could change behaviour.

use std::sync::Arc;

use waxosuit_runtime::{Limits, Runtime, RuntimeError};
use waxosuit_test_fixtures::{wapc_echo, wat_echo, wat_init_host_call, wat_stateful_init};

use crate::common::{TestHandler, config, key, load_on};

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
        let actor = load_on(
            config().preinitialize(preinitialize),
            &wat_stateful_init(),
            Limits::default().instances(1, 4),
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
    let actor = load_on(
        config().cache_dir(dir.path()).preinitialize(false),
        wapc_echo(),
        Limits::default(),
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
    let err = load_on(config(), &trapping, Limits::default())
        .await
        .expect_err("init traps");
    assert!(matches!(err, RuntimeError::Trap { .. }), "{err:?}");

    let looping = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func (export "wapc_init") (loop br 0))
            (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
    )?;
    let err = load_on(
        config(),
        &looping,
        Limits::default().deadline(std::time::Duration::from_millis(50)),
    )
    .await
    .expect_err("init never ends");
    assert!(matches!(err, RuntimeError::Deadline { .. }), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn hot_swap_pre_initialises_the_new_module() -> anyhow::Result<()> {
    let actor = load_on(config(), &wat_echo(), Limits::default().instances(1, 2)).await?;
    assert!(!actor.stats().preinitialized);
    actor.replace_module(&key(1), &wat_stateful_init()).await?;
    let stats = actor.stats();
    assert_eq!(stats.generation, 2);
    assert!(stats.preinitialized);
    assert_eq!(actor.call("peek", b"").await?, peek(b"init-done", 41, 7));
    Ok(())
}

/// A guest whose `__guest_call` answers with its private global `$g` (4
/// bytes, little endian) followed by the byte at address 70000 (in a page
/// only `memory.grow` provides); `items` adds exports, a start function...
fn global_guest(items: &str) -> anyhow::Result<Vec<u8>> {
    Ok(wat::parse_str(format!(
        r#"(module
            (import "wapc" "__guest_response" (func $resp (param i32 i32)))
            (memory (export "memory") 1)
            (global $g (mut i32) (i32.const 0))
            (func (export "__guest_call") (param i32 i32) (result i32)
              (i32.store (i32.const 0) (global.get $g))
              (if (i32.gt_u (memory.size) (i32.const 1))
                (then (i32.store8 (i32.const 4) (i32.load8_u (i32.const 70000)))))
              (call $resp (i32.const 0) (i32.const 5))
              (i32.const 1))
            {items})"#
    ))?)
}

async fn load_preinit(module: &[u8], limits: Limits) -> anyhow::Result<(bool, Vec<u8>)> {
    let actor = load_on(config(), module, limits).await?;
    let reply = actor.call("get", b"").await?;
    // A second instance must see the same state.
    actor.prewarm().await?;
    assert_eq!(actor.call("get", b"").await?, reply);
    Ok((actor.stats().preinitialized, reply))
}

#[tokio::test]
async fn start_functions_memory_growth_and_refused_modules() -> anyhow::Result<()> {
    // A start section runs at instantiation, before `wapc_init`: both are
    // baked in once (a second run of either would give 15 or 20, not 10).
    let start = global_guest(
        r#"(func $s (global.set $g (i32.add (global.get $g) (i32.const 5)))) (start $s)
           (func (export "wapc_init") (global.set $g (i32.mul (global.get $g) (i32.const 2))))"#,
    )?;
    assert_eq!(
        load_preinit(&start, Limits::default()).await?,
        (true, vec![10, 0, 0, 0, 0])
    );

    // Only `_start`, and an initialisation that grows memory and writes there.
    let grows = global_guest(
        r#"(func (export "_start")
             (drop (memory.grow (i32.const 1)))
             (i32.store8 (i32.const 70000) (i32.const 9))
             (global.set $g (i32.const 3)))"#,
    )?;
    assert_eq!(
        load_preinit(&grows, Limits::default()).await?,
        (true, vec![3, 0, 0, 0, 9])
    );

    // `data.drop` is something Wizer cannot replay: initialised per instance.
    let refused = global_guest(
        r#"(data $d "x")
           (func (export "wapc_init") (data.drop $d) (global.set $g (i32.const 4)))"#,
    )?;
    assert_eq!(
        load_preinit(&refused, Limits::default()).await?,
        (false, vec![4, 0, 0, 0, 0])
    );
    Ok(())
}

#[tokio::test]
async fn contract_violations_are_still_refused() -> anyhow::Result<()> {
    // A `wapc_init` with parameters: refused as before, although Wizer would
    // drop the export from a snapshot.
    let bad_init = global_guest(r#"(func (export "wapc_init") (param i32))"#)?;
    let err = load_preinit(&bad_init, Limits::default())
        .await
        .expect_err("bad wapc_init");
    assert!(
        err.to_string()
            .contains("\"wapc_init\" must be a function without parameters"),
        "{err:#}"
    );
    // An import outside the contract whose start function would call it.
    let wasi = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func $s (call $exit (i32.const 1))) (start $s)
            (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
    )?;
    let err = load_preinit(&wasi, Limits::default())
        .await
        .expect_err("unknown import");
    assert!(
        matches!(
            err.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::UnknownImport { .. })
        ),
        "{err:#}"
    );
    Ok(())
}

#[tokio::test]
async fn cache_entries_follow_the_limits_and_keep_fallbacks() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let load = |deadline_ms: u64, module: Vec<u8>, handler: Arc<TestHandler>| {
        let dir = dir.path().to_owned();
        async move {
            let actor = Runtime::new(config().cache_dir(dir))?
                .load(
                    key(1),
                    &module,
                    Limits::default()
                        .deadline(std::time::Duration::from_millis(deadline_ms))
                        .instances(2, 2),
                    handler,
                )
                .await?;
            anyhow::Ok(actor.stats())
        }
    };
    let echo = wapc_echo().to_vec();
    let handler = || Arc::new(TestHandler::default());
    use waxosuit_runtime::CacheOutcome::{Hit, Miss};
    // The snapshot ran under one deadline; another deadline gets its own run.
    assert_eq!(
        load(1000, echo.clone(), handler()).await?.cache_outcome,
        Miss
    );
    assert_eq!(
        load(2000, echo.clone(), handler()).await?.cache_outcome,
        Miss
    );
    assert_eq!(
        load(1000, echo.clone(), handler()).await?.cache_outcome,
        Hit
    );

    // A cached fallback still initialises every instance.
    for expected in [Miss, Hit] {
        let recording = handler();
        let stats = load(1000, wat_init_host_call(), Arc::clone(&recording)).await?;
        assert_eq!(stats.cache_outcome, expected);
        assert!(!stats.preinitialized);
        assert_eq!(recording.calls().len(), 2, "{expected:?}");
    }
    Ok(())
}
