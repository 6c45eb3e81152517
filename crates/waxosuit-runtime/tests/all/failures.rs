//! Traps and exceeded limits: typed errors, and the actor survives.

use std::sync::Arc;
use std::time::Duration;

use waxosuit_runtime::{ErrorKind, Limits, Runtime, RuntimeError};
use waxosuit_test_fixtures::{wapc_echo, wat_echo};

use crate::common::{TestHandler, config, key, load, load_with};

#[tokio::test]
async fn panic_traps_and_later_calls_still_work() -> anyhow::Result<()> {
    let actor = load(wapc_echo(), Limits::default().instances(1, 1)).await?;
    let err = actor.call("panic", b"").await.expect_err("must trap");
    match &err {
        RuntimeError::Trap {
            actor: who,
            message,
        } => {
            assert_eq!(who, actor.key());
            assert!(message.contains("unreachable"), "{message}");
        }
        other => panic!("expected Trap, got {other:?}"),
    }
    assert!(err.broke_instance());
    // The broken instance was dropped and a fresh one serves the next calls.
    for _ in 0..3 {
        assert_eq!(actor.call("echo", b"after").await?, b"after");
    }
    assert_eq!(actor.stats().instances_discarded, 1);
    Ok(())
}

#[tokio::test]
async fn wat_trap_is_typed() -> anyhow::Result<()> {
    let actor = load(&wat_echo(), Limits::default()).await?;
    let err = actor.call("trap", b"").await.expect_err("must trap");
    assert_eq!(err.kind(), ErrorKind::Trap);
    assert_eq!(actor.call("echo", b"ok").await?, b"ok");
    Ok(())
}

#[tokio::test]
async fn infinite_loop_hits_the_deadline() -> anyhow::Result<()> {
    let limits = Limits::default().deadline(Duration::from_millis(100));
    for module in [wapc_echo().to_vec(), wat_echo()] {
        let actor = load(&module, limits).await?;
        let started = std::time::Instant::now();
        let err = actor.call("loop", b"").await.expect_err("must time out");
        let took = started.elapsed();
        // The contract: the error comes at the deadline, give or take an
        // epoch tick; the upper margin is generous because the machine
        // running the tests may be loaded (a descheduled ticker or worker
        // only ever makes the error later).
        assert!(
            took >= limits.deadline && took <= limits.deadline + Duration::from_millis(500),
            "the deadline error took {took:?}"
        );
        match &err {
            RuntimeError::Deadline {
                limit, waiting_on, ..
            } => {
                assert_eq!(*limit, limits.deadline);
                assert_eq!(*waiting_on, None, "the guest was computing");
            }
            other => panic!("expected Deadline, got {other:?}"),
        }
        assert!(err.to_string().contains("deadline"), "{err}");
        assert_eq!(actor.call("echo", b"alive").await?, b"alive");
    }
    Ok(())
}

#[tokio::test]
async fn memory_growth_hits_the_memory_limit() -> anyhow::Result<()> {
    let limits = Limits::default().max_memory(8 << 20);
    let actor = load(wapc_echo(), limits).await?;
    let err = actor
        .call("grow", b"")
        .await
        .expect_err("must hit the limit");
    match &err {
        RuntimeError::MemoryLimit { limit, .. } => assert_eq!(*limit, 8 << 20),
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert_eq!(actor.call("echo", b"alive").await?, b"alive");
    Ok(())
}

#[tokio::test]
async fn module_needing_more_initial_memory_than_allowed_fails_to_load() {
    // The wat echo guest declares 2 pages of initial memory.
    let err = load(
        &wat_echo(),
        Limits::default().max_memory(64 * 1024).instances(1, 1),
    )
    .await
    .expect_err("must not load");
    assert_eq!(err.kind(), ErrorKind::MemoryLimit, "{err}");
}

#[tokio::test]
async fn fuel_exhaustion_is_typed() -> anyhow::Result<()> {
    let runtime = Runtime::new(config().fuel_metering(true))?;
    let limits = Limits::default().fuel(Some(5_000_000));
    let actor = runtime
        .load(
            key(2),
            wapc_echo(),
            limits,
            Arc::new(TestHandler::default()),
        )
        .await?;
    assert_eq!(actor.call("echo", b"cheap").await?, b"cheap");
    let err = actor
        .call("loop", b"")
        .await
        .expect_err("must run out of fuel");
    match &err {
        RuntimeError::FuelExhausted { limit, .. } => assert_eq!(*limit, 5_000_000),
        other => panic!("expected FuelExhausted, got {other:?}"),
    }
    assert_eq!(actor.call("echo", b"refuelled").await?, b"refuelled");
    Ok(())
}

#[tokio::test]
async fn fuel_limit_without_metering_is_a_config_error() {
    let err = crate::common::runtime()
        .load(
            key(3),
            wapc_echo(),
            Limits::default().fuel(Some(1)),
            Arc::new(TestHandler::default()),
        )
        .await
        .expect_err("must be refused");
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn oversized_request_is_refused() -> anyhow::Result<()> {
    let actor = load(wapc_echo(), Limits::default().max_payload(1024)).await?;
    assert_eq!(actor.call("echo", &[1; 1024]).await?, vec![1; 1024]);
    let err = actor.call("echo", &[1; 1025]).await.expect_err("too large");
    match err {
        RuntimeError::PayloadTooLarge {
            what, size, limit, ..
        } => {
            assert_eq!((what, size, limit), ("request payload", 1025, 1024));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn oversized_host_call_payload_and_host_response_are_refused() -> anyhow::Result<()> {
    // The handler reply is checked before it is handed to the guest.
    let actor = load(wapc_echo(), Limits::default().max_payload(1024)).await?;
    let err = actor
        .call("ping", &[0; 1020])
        .await
        .expect_err("reply too large");
    // "pong:" + 1020 bytes exceeds the limit on the host response.
    match err {
        RuntimeError::PayloadTooLarge { what, size, .. } => {
            assert_eq!((what, size), ("host response", 1025));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    let handler = Arc::new(TestHandler {
        big_reply: Some(4096),
        ..TestHandler::default()
    });
    let actor = load_with(&wat_echo(), Limits::default().max_payload(2048), handler).await?;
    let err = actor.call("ping", b"x").await.expect_err("reply too large");
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge, "{err}");
    assert_eq!(actor.call("echo", b"fine").await?, b"fine");
    Ok(())
}

#[tokio::test]
async fn oversized_guest_response_is_refused() -> anyhow::Result<()> {
    // The v2 echo adds 3 bytes, so a request at the limit yields a response over it.
    let actor = load(
        &waxosuit_test_fixtures::wat_echo_v2(),
        Limits::default().max_payload(100),
    )
    .await?;
    let err = actor
        .call("echo", &[b'a'; 100])
        .await
        .expect_err("response too large");
    match err {
        RuntimeError::PayloadTooLarge { what, size, .. } => {
            assert_eq!((what, size), ("guest response", 103));
        }
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    Ok(())
}

/// A module may give its functions names of any length (the name section
/// is read whole): a trap's text, with its backtrace naming each frame, is
/// cut to MAX_GUEST_ERROR_BYTES rather than copied megabytes at a time into
/// errors, spans and logs.
#[tokio::test]
async fn a_trap_through_functions_with_huge_names_has_a_bounded_text() -> anyhow::Result<()> {
    let name = "f".repeat(1 << 20);
    let wat = format!(
        r#"(module
          (memory (export "memory") 1)
          (func ${name} (param $n i32)
            (if (i32.eqz (local.get $n)) (then (unreachable)))
            (call ${name} (i32.sub (local.get $n) (i32.const 1))))
          (func (export "__guest_call") (param i32 i32) (result i32)
            (call ${name} (i32.const 30))
            (i32.const 1)))"#
    );
    let runtime = Runtime::new(config().preinitialize(false))?;
    let actor = runtime
        .load(
            key(71),
            &wat::parse_str(&wat)?,
            Limits::default(),
            Arc::new(TestHandler::default()),
        )
        .await?;
    let err = actor.call("trap", b"").await.expect_err("must trap");
    let RuntimeError::Trap { message, .. } = &err else {
        panic!("expected Trap, got {err:?}");
    };
    assert!(message.contains("unreachable"), "{}", &message[..200]);
    assert!(
        message.contains("fff"),
        "names are shown: {}",
        &message[..200]
    );
    assert!(
        message.len() <= waxosuit_runtime::MAX_GUEST_ERROR_BYTES + 64,
        "{} bytes",
        message.len()
    );
    assert!(message.contains("… (cut)"), "{}", &message[..200]);
    assert!(err.to_string().len() < 10 * 1024);
    Ok(())
}
