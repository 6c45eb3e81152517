//! Measures the resident memory of idle, ready-to-call instances.
//!
//! Creates 1,000 ready-to-call instances of the `wapc-echo` guest (store
//! created, module instantiated, initialised) and reports the RSS growth per
//! instance from `/proc/self/statm`, for the pooling and on-demand
//! allocators, with pre-initialisation (the default) and with `wapc_init`
//! run in every instance, and for the public `wapc` host. For async handlers
//! it also reports the same instances after each has served one call.
//!
//! Each measurement runs in its own process, so that heap memory released by
//! one does not flatter the next.
//!
//! Run: `cargo run --release -p waxosuit-runtime --example idle_rss`
//! (or pass one case name, e.g. `-- pooling`, to run only that one).

use std::sync::Arc;

use waxosuit_runtime::{
    ActorKey, HostCall, HostCallError, HostCallHandler, Limits, PoolingConfig, Runtime,
    RuntimeConfig,
};
use waxosuit_test_fixtures::wapc_echo;

const INSTANCES: usize = 1_000;

struct Echo;

impl HostCallHandler for Echo {
    type Error = HostCallError;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        // Suspends once, so concurrent calls each hold their own instance.
        tokio::task::yield_now().await;
        Ok(call.payload)
    }
}

/// Resident and proportional set size of this process, in bytes.
///
/// RSS counts every mapped page once per mapping; PSS divides a page shared
/// by several mappings among them. The two differ for pre-initialised
/// instances once they have run: each maps the module's shared
/// copy-on-write image, and the kernel maps up to 16 neighbouring image
/// pages on every read fault (fault-around). Those pages exist once, but
/// RSS counts them in every instance.
#[derive(Clone, Copy)]
struct Memory {
    rss: u64,
    pss: u64,
}

fn memory() -> anyhow::Result<Memory> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/self/smaps_rollup"))?;
        let kib: u64 = line.trim().trim_end_matches("kB").trim().parse()?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("Rss:")?,
        pss: field("Pss:")?,
    })
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
    let before = memory()?;
    for _ in 0..INSTANCES {
        actor.prewarm().await?;
    }
    let after = memory()?;
    let stats = actor.stats();
    let created = stats.instances_created;
    let init = if stats.preinitialized {
        "pre-initialised"
    } else {
        "init per instance"
    };
    let label = format!("{label}, {init}");
    report(&label, "ready", stats.idle_instances, before, after);
    {
        // The same instances once each has served a call: the pages a call
        // writes (shadow stack, heap, fiber stack) are then theirs too.
        let calls = (0..INSTANCES)
            .map(|_| {
                let actor = actor.clone();
                tokio::spawn(async move { actor.call("ping", b"used").await })
            })
            .collect::<Vec<_>>();
        for call in calls {
            call.await??;
        }
        let used = memory()?;
        let stats = actor.stats();
        anyhow::ensure!(
            stats.instances_created == created,
            "the calls created instances instead of using the idle ones"
        );
        report(&label, "after one call", stats.idle_instances, before, used);
    }
    Ok(())
}

fn report(label: &str, state: &str, instances: usize, before: Memory, after: Memory) {
    let per = |a: u64, b: u64| a.saturating_sub(b) as f64 / 1024.0 / instances.max(1) as f64;
    println!(
        "{label:<45} {state:<15} {instances:>5} idle: {:>6.1} KiB RSS, {:>6.1} KiB PSS per instance",
        per(after.rss, before.rss),
        per(after.pss, before.pss),
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
    let before = memory()?;
    let hosts = (0..INSTANCES)
        .map(|_| make())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let after = memory()?;
    report("wapc peer (on-demand)", "ready", hosts.len(), before, after);
    Ok(())
}

/// The measurements, by name. Each runs in a fresh process (see `main`).
const CASES: [&str; 5] = [
    "pooling",
    "on-demand",
    "pooling-init-per-instance",
    "on-demand-init-per-instance",
    "peer",
];

async fn run(case: &str) -> anyhow::Result<()> {
    let pool = PoolingConfig::default().total_instances(1_100);
    let (case, preinit) = match case.strip_suffix("-init-per-instance") {
        Some(base) => (base, false),
        None => (case, true),
    };
    let pooled = RuntimeConfig::default()
        .pooling(Some(pool))
        .preinitialize(preinit);
    let on_demand = RuntimeConfig::default()
        .pooling(None)
        .preinitialize(preinit);
    match case {
        "pooling" => waxosuit("waxosuit pooling", pooled, Echo).await,
        "on-demand" => waxosuit("waxosuit on-demand", on_demand, Echo).await,
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
