//! Measures the resident memory of idle, ready-to-call instances.
//!
//! Creates 1,000 ready-to-call instances of the `wapc-echo` guest (store
//! created, module instantiated, `wapc_init` run) and reports the RSS growth per instance from `/proc/self/statm`, for the
//! pooling and on-demand allocators and for the public `wapc` host.
//!
//! Each measurement runs in its own process, so that heap memory released by
//! one does not flatter the next.
//!
//! Run: `cargo run --release -p waxosuit-runtime --example idle_rss`
//! (or pass one case name, e.g. `-- pooling`, to run only that one).

use std::sync::Arc;

use waxosuit_runtime::{
    ActorKey, HostCall, HostCallHandler, Limits, PoolingConfig, Runtime, RuntimeConfig,
};
use waxosuit_test_fixtures::wapc_echo;

const INSTANCES: usize = 1_000;

struct Echo;

impl HostCallHandler for Echo {
    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, String> {
        Ok(call.payload)
    }
}

/// The same handler declared `BLOCKING`: instances never need a fiber stack.
struct EchoBlocking;

impl HostCallHandler for EchoBlocking {
    const BLOCKING: bool = true;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, String> {
        Ok(call.payload)
    }
}

fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/statm: {statm}"))?
        .parse()?;
    // Page size is 4 KiB on the x86-64 and aarch64 Linux hosts we target.
    Ok(resident * 4096)
}

async fn waxosuit<H: HostCallHandler>(
    label: &str,
    config: RuntimeConfig,
    handler: H,
) -> anyhow::Result<()> {
    let runtime = Runtime::new(config)?;
    let key = ActorKey::new("MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW")?;
    let limits = Limits::default().instances(0, INSTANCES);
    let actor = runtime
        .load(key, wapc_echo(), limits, Arc::new(handler))
        .await?;
    // One warm-up call so lazily initialised runtime state is not counted.
    actor.call("echo", b"warm").await?;
    let before = rss_bytes()?;
    for _ in 0..INSTANCES {
        actor.prewarm().await?;
    }
    let after = rss_bytes()?;
    let idle = actor.stats().idle_instances;
    report(label, idle, before, after);
    Ok(())
}

fn report(label: &str, instances: usize, before: u64, after: u64) {
    let grown = after.saturating_sub(before);
    println!(
        "{label:<28} {instances:>5} idle instances: RSS +{:>8} KiB, {:>6.1} KiB per instance",
        grown / 1024,
        grown as f64 / 1024.0 / instances.max(1) as f64
    );
}

fn peer() -> anyhow::Result<()> {
    let engine = wasmtime::Engine::default();
    let pre = wasmtime_provider::WasmtimeEngineProviderBuilder::new()
        .engine(engine)
        .module_bytes(wapc_echo())
        .build_pre()?;
    let make = || -> anyhow::Result<wapc::WapcHost> {
        let host = wapc::WapcHost::new(
            Box::new(pre.rehydrate(None)?),
            Some(Box::new(|_, _, _, _, payload: &[u8]| Ok(payload.to_vec()))),
        )?;
        Ok(host)
    };
    drop(make()?);
    let before = rss_bytes()?;
    let hosts = (0..INSTANCES)
        .map(|_| make())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let after = rss_bytes()?;
    report("wapc peer (on-demand)", hosts.len(), before, after);
    Ok(())
}

/// The measurements, by name. Each runs in a fresh process (see `main`).
const CASES: [&str; 5] = [
    "pooling",
    "on-demand",
    "pooling-blocking",
    "on-demand-blocking",
    "peer",
];

async fn run(case: &str) -> anyhow::Result<()> {
    let pool = PoolingConfig::default().total_instances(1_100);
    let pooled = RuntimeConfig::default().pooling(Some(pool));
    let on_demand = RuntimeConfig::default().pooling(None);
    match case {
        "pooling" => waxosuit("waxosuit pooling", pooled, Echo).await,
        "on-demand" => waxosuit("waxosuit on-demand", on_demand, Echo).await,
        "pooling-blocking" => waxosuit("waxosuit pooling, blocking", pooled, EchoBlocking).await,
        "on-demand-blocking" => {
            waxosuit("waxosuit on-demand, blocking", on_demand, EchoBlocking).await
        }
        "peer" => peer(),
        other => anyhow::bail!("unknown case {other:?}; expected one of {CASES:?}"),
    }
}

/// Without an argument, runs every case in its own child process: memory
/// freed by one case (e.g. malloc arenas) would otherwise be reused by the
/// next and hide part of its growth.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    if let Some(case) = std::env::args().nth(1) {
        return run(&case).await;
    }
    let exe = std::env::current_exe()?;
    for case in CASES {
        let status = std::process::Command::new(&exe).arg(case).status()?;
        anyhow::ensure!(status.success(), "case {case} failed: {status}");
    }
    Ok(())
}
