//! Instance allocator selection and the on-demand fallback.

use std::sync::Arc;

use waxosuit_runtime::{AllocatorKind, ErrorKind, Limits, PoolingConfig, Runtime, RuntimeConfig};
use waxosuit_test_fixtures::wapc_echo;

use crate::common::{TestHandler, key};

async fn echo_works(runtime: &Runtime) -> anyhow::Result<()> {
    let actor = runtime
        .load(
            key(1),
            wapc_echo(),
            Limits::default(),
            Arc::new(TestHandler::default()),
        )
        .await?;
    assert_eq!(actor.call("echo", b"pool").await?, b"pool");
    Ok(())
}

#[tokio::test]
async fn pooling_allocator_is_used_when_available() -> anyhow::Result<()> {
    let runtime = Runtime::new(crate::common::config())?;
    assert_eq!(runtime.allocator(), AllocatorKind::Pooling);
    echo_works(&runtime).await
}

#[tokio::test]
async fn failed_pool_reservation_falls_back_to_on_demand() -> anyhow::Result<()> {
    // 100,000 slots of 4 GiB each (~400 TiB) exceed the 128 TiB user address
    // space of x86-64 Linux, so the reservation fails without touching RAM.
    let huge = PoolingConfig::default().total_instances(100_000);
    let runtime = Runtime::new(RuntimeConfig::default().pooling(Some(huge)))?;
    assert_eq!(runtime.allocator(), AllocatorKind::OnDemand);
    echo_works(&runtime).await
}

#[tokio::test]
async fn pooling_can_be_disabled() -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default().pooling(None))?;
    assert_eq!(runtime.allocator(), AllocatorKind::OnDemand);
    echo_works(&runtime).await
}

/// More instances kept ready than the runtime can ever hold is refused at
/// load, before room is reserved for them (four billion was an allocation
/// that aborted the process).
#[tokio::test]
async fn more_ready_instances_than_the_runtime_holds_are_refused() -> anyhow::Result<()> {
    for pooling in [Some(PoolingConfig::default().total_instances(8)), None] {
        let runtime = Runtime::new(RuntimeConfig::default().pooling(pooling))?;
        for min in [9, 4_000_000_000] {
            if pooling.is_none() && min == 9 {
                continue;
            }
            let err = runtime
                .load(
                    key(2),
                    wapc_echo(),
                    Limits::default().instances(min, min),
                    Arc::new(TestHandler::default()),
                )
                .await
                .expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::Config, "{err}");
            assert!(err.to_string().contains("min_instances"), "{err}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn memory_limit_above_the_slot_size_is_refused() -> anyhow::Result<()> {
    let pool = PoolingConfig::default()
        .total_instances(8)
        .max_memory_per_instance(16 << 20);
    let runtime = Runtime::new(RuntimeConfig::default().pooling(Some(pool)))?;
    let err = runtime
        .load(
            key(1),
            wapc_echo(),
            Limits::default().max_memory(32 << 20),
            Arc::new(TestHandler::default()),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    Ok(())
}

#[tokio::test]
async fn exhausted_pool_is_a_typed_error_and_recovers() -> anyhow::Result<()> {
    let pool = PoolingConfig::default().total_instances(2);
    let runtime = Runtime::new(RuntimeConfig::default().pooling(Some(pool)))?;
    let a = runtime
        .load(
            key(1),
            wapc_echo(),
            Limits::default().instances(2, 2),
            Arc::new(TestHandler::default()),
        )
        .await?;
    let err = runtime
        .load(
            key(2),
            wapc_echo(),
            Limits::default().instances(1, 1),
            Arc::new(TestHandler::default()),
        )
        .await
        .expect_err("no slot left");
    assert_eq!(err.kind(), ErrorKind::Instantiate, "{err}");
    drop(a);
    echo_works(&runtime).await
}
