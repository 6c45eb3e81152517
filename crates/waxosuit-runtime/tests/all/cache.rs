//! The on-disk compiled-module cache.

use std::sync::Arc;

use waxosuit_runtime::{CacheOutcome, Limits, Runtime};
use waxosuit_test_fixtures::wapc_echo;

use crate::common::{TestHandler, config, key};

async fn load_once(dir: &std::path::Path) -> anyhow::Result<CacheOutcome> {
    let runtime = Runtime::new(config().cache_dir(dir))?;
    let actor = runtime
        .load(
            key(1),
            wapc_echo(),
            Limits::default(),
            Arc::new(TestHandler::default()),
        )
        .await?;
    assert_eq!(actor.call("echo", b"cached").await?, b"cached");
    Ok(actor.cache_outcome())
}

/// The entries, in the directory of its own the runtime keeps them in.
fn entries(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut v = Vec::new();
    for entry in std::fs::read_dir(dir.join("modules"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "cwasm") {
            v.push(path);
        }
    }
    Ok(v)
}

#[tokio::test]
async fn second_load_hits_the_cache() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    assert_eq!(load_once(dir.path()).await?, CacheOutcome::Miss);
    assert_eq!(entries(dir.path())?.len(), 1);
    assert_eq!(load_once(dir.path()).await?, CacheOutcome::Hit);
    Ok(())
}

#[tokio::test]
async fn corrupt_entries_are_ignored_and_rewritten() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    assert_eq!(load_once(dir.path()).await?, CacheOutcome::Miss);
    let [entry] = entries(dir.path())?.try_into().expect("one entry");
    let good = std::fs::read(&entry)?;

    // Flip one byte in the middle of the artifact.
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    std::fs::write(&entry, &flipped)?;
    assert_eq!(load_once(dir.path()).await?, CacheOutcome::Rewritten);
    assert_eq!(std::fs::read(&entry)?, good, "entry must be rewritten");
    assert_eq!(load_once(dir.path()).await?, CacheOutcome::Hit);

    // Truncated and garbage entries too.
    for bad in [
        good[..good.len() / 3].to_vec(),
        b"garbage".to_vec(),
        Vec::new(),
    ] {
        std::fs::write(&entry, bad)?;
        assert_eq!(load_once(dir.path()).await?, CacheOutcome::Rewritten);
        assert_eq!(load_once(dir.path()).await?, CacheOutcome::Hit);
    }
    Ok(())
}

#[tokio::test]
async fn without_a_cache_dir_the_cache_is_disabled() -> anyhow::Result<()> {
    let actor = crate::common::load(wapc_echo(), Limits::default()).await?;
    assert_eq!(actor.cache_outcome(), CacheOutcome::Disabled);
    Ok(())
}
