//! Instance pool under concurrent load.

use std::sync::Arc;
use std::time::Duration;

use waxosuit_runtime::{ErrorKind, Limits};
use waxosuit_test_fixtures::{wapc_echo, wat_echo};

use crate::common::{TestHandler, load, load_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_calls_over_eight_instances() -> anyhow::Result<()> {
    let handler = Arc::new(TestHandler::default());
    let actor = load_with(wapc_echo(), Limits::default().instances(2, 8), handler).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1_000u32 {
        let actor = actor.clone();
        tasks.spawn(async move {
            let data = format!("payload-{i}").into_bytes();
            // Mix plain calls and calls that suspend in a host call.
            let (op, expected) = if i % 2 == 0 {
                ("echo", data.clone())
            } else {
                ("ping", [b"pong:".as_slice(), &data].concat())
            };
            let reply = actor.call(op, &data).await?;
            anyhow::ensure!(reply == expected, "call {i}: wrong reply");
            Ok(())
        });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        result??;
        ok += 1;
    }
    assert_eq!(ok, 1_000);
    let stats = actor.stats();
    // `ping` suspends in the handler, so the actor left inline instances
    // for fiber ones along the way: those are the only ones dropped, and
    // never more than eight are alive.
    assert!(!stats.inline, "{stats:?}");
    assert!(
        stats.instances_created - stats.instances_discarded <= 8,
        "{stats:?}"
    );
    assert!(stats.idle_instances <= 8, "{stats:?}");

    // Trimming drops idle instances only, and the actor keeps serving.
    let idle = stats.idle_instances;
    assert_eq!(actor.trim_idle(1), idle - 1);
    assert_eq!(actor.stats().idle_instances, 1);
    assert_eq!(actor.trim_idle(0), 1);
    assert_eq!(actor.call("echo", b"again").await?, b"again");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queue_and_time_out_when_all_instances_are_busy() -> anyhow::Result<()> {
    let limits = Limits::default()
        .instances(1, 1)
        .deadline(Duration::from_secs(2))
        .queue_timeout(Duration::from_millis(50));
    let actor = load(&wat_echo(), limits).await?;
    let busy = {
        let actor = actor.clone();
        tokio::spawn(async move { actor.call("loop", b"").await })
    };
    // Let the looping call take the only instance.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = actor.call("echo", b"x").await.expect_err("queue timeout");
    assert_eq!(err.kind(), ErrorKind::QueueTimeout, "{err}");
    let looped = busy.await?.expect_err("deadline");
    assert_eq!(looped.kind(), ErrorKind::Deadline);
    assert_eq!(actor.call("echo", b"x").await?, b"x");
    Ok(())
}
