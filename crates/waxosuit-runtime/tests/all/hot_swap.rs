//! Hot swap of a running actor's module.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use waxosuit_runtime::{ErrorKind, Limits};
use waxosuit_test_fixtures::{wat_echo, wat_echo_v2};

use crate::common::{key, load, payload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_during_concurrent_calls_fails_none() -> anyhow::Result<()> {
    let actor = load(&wat_echo(), Limits::default().instances(2, 4)).await?;
    let swapped = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16u32 {
        let actor = actor.clone();
        let swapped = Arc::clone(&swapped);
        let started = Arc::clone(&started);
        tasks.spawn(async move {
            let (mut old_replies, mut new_replies) = (0u32, 0u32);
            // Keep calling until this task has seen the new module a few
            // times; the bound only guards against a hang if swap never lands.
            for i in 0..1_000_000u32 {
                let data = format!("{t}-{i}").into_bytes();
                let was_swapped = swapped.load(Ordering::SeqCst);
                let reply = actor.call("echo", &data).await?;
                if reply == [b"v2:".as_slice(), &data].concat() {
                    new_replies += 1;
                    if new_replies == 20 {
                        break;
                    }
                } else {
                    anyhow::ensure!(reply == data, "task {t} call {i}: bad reply");
                    // Once the swap has returned, no call may reach the old module.
                    anyhow::ensure!(!was_swapped, "task {t} call {i}: old module after swap");
                    old_replies += 1;
                    if old_replies == 20 {
                        started.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if i % 8 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            Ok((old_replies, new_replies))
        });
    }
    // Swap only once every task is streaming calls to the old module.
    while started.load(Ordering::SeqCst) < 16 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    actor.replace_module(&key(1), &wat_echo_v2()).await?;
    swapped.store(true, Ordering::SeqCst);
    while let Some(result) = tasks.join_next().await {
        let (old, new) = result??;
        assert!(old >= 20 && new == 20, "old {old}, new {new}");
    }
    let data = payload(10);
    assert_eq!(
        actor.call("echo", &data).await?,
        [b"v2:".as_slice(), &data].concat()
    );
    assert_eq!(actor.stats().generation, 2);
    Ok(())
}

#[tokio::test]
async fn swap_with_a_different_key_is_refused() -> anyhow::Result<()> {
    let actor = load(&wat_echo(), Limits::default()).await?;
    let err = actor
        .replace_module(&key(99), &wat_echo_v2())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::KeyMismatch, "{err}");
    assert_eq!(actor.call("echo", b"v1").await?, b"v1");
    Ok(())
}

#[tokio::test]
async fn failed_swap_keeps_the_old_module() -> anyhow::Result<()> {
    let actor = load(&wat_echo(), Limits::default()).await?;
    let err = actor
        .replace_module(&key(1), b"not wasm")
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Load);
    let err = actor
        .replace_module(&key(1), &waxosuit_test_fixtures::wat_wasi())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::UnknownImport);
    assert_eq!(actor.call("echo", b"v1").await?, b"v1");
    assert_eq!(actor.stats().generation, 1);
    Ok(())
}
