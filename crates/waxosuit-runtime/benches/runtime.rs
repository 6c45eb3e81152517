//! Waxosuit runtime benchmarks, side by side with the public `wapc` host
//! (`wasmtime-provider`, same wasmtime 48) on the same guest bytes, and with
//! a raw wasmtime floor.
//!
//! Run: `cargo bench -p waxosuit-runtime --bench runtime -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use waxosuit_runtime::{
    Actor, ActorKey, HostCall, HostCallError, HostCallHandler, Limits, PoolingConfig, Runtime,
    RuntimeConfig,
};
use waxosuit_test_fixtures::wapc_echo;

const SIZES: [(usize, &str); 3] = [(0, "0B"), (1024, "1KiB"), (64 * 1024, "64KiB")];

struct Pong;

impl HostCallHandler for Pong {
    type Error = HostCallError;

    async fn host_call(&self, _actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostCallError> {
        Ok(call.payload)
    }
}

fn key() -> ActorKey {
    ActorKey::new("MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW").expect("valid key")
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What `waxosuit up` runs on; actors loaded here run inline (no fiber)
/// while their host calls answer at once, as `Pong`'s do.
fn tokio_mt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn pool_config() -> RuntimeConfig {
    RuntimeConfig::default().pooling(Some(PoolingConfig::default().total_instances(256)))
}

fn load(rt: &tokio::runtime::Runtime, runtime: &Runtime) -> Actor<Pong> {
    load_with(rt, runtime, Pong)
}

fn load_with<H: HostCallHandler>(
    rt: &tokio::runtime::Runtime,
    runtime: &Runtime,
    handler: H,
) -> Actor<H> {
    rt.block_on(runtime.load(key(), wapc_echo(), Limits::default(), Arc::new(handler)))
        .expect("load")
}

fn peer_host(pre: &wasmtime_provider::WasmtimeEngineProviderPre) -> wapc::WapcHost {
    let provider = pre.rehydrate(None).expect("rehydrate");
    wapc::WapcHost::new(
        Box::new(provider),
        Some(Box::new(|_id, _binding, _ns, _op, payload| {
            Ok(payload.to_vec())
        })),
    )
    .expect("wapc host")
}

fn peer_pre(engine: &wasmtime::Engine) -> wasmtime_provider::WasmtimeEngineProviderPre {
    wasmtime_provider::WasmtimeEngineProviderBuilder::new()
        .engine(engine.clone())
        .module_bytes(wapc_echo())
        .build_pre()
        .expect("peer pre")
}

fn calls(c: &mut Criterion) {
    let rt = tokio_rt();
    let mt = tokio_mt();
    let runtime = Runtime::new(pool_config()).expect("runtime");
    let actor = load(&mt, &runtime);
    assert!(
        actor.stats().inline,
        "the default row must measure inline calls"
    );
    let fiber = load(&rt, &runtime);
    assert!(!fiber.stats().inline);
    let peer_engine = wasmtime::Engine::default();
    let peer = peer_host(&peer_pre(&peer_engine));

    for op in ["echo", "ping"] {
        let mut group = c.benchmark_group(op);
        for (size, label) in SIZES {
            let data = vec![0x5a; size];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new("waxosuit", label), &data, |b, data| {
                b.to_async(&mt)
                    .iter(|| async { black_box(actor.call(op, data).await.expect("call")) });
            });
            group.bench_with_input(
                BenchmarkId::new("waxosuit-fiber", label),
                &data,
                |b, data| {
                    b.to_async(&rt)
                        .iter(|| async { black_box(fiber.call(op, data).await.expect("call")) });
                },
            );
            group.bench_with_input(BenchmarkId::new("wapc-peer", label), &data, |b, data| {
                b.iter(|| black_box(peer.call(op, data).expect("call")));
            });
        }
        group.finish();
    }

    let mut floor = floor::Floor::new();
    c.bench_function("floor/raw-wasmtime-echo-0B", |b| {
        b.iter(|| black_box(floor.echo(b"echo", b"")));
    });
    // The same minimal host through `call_async`: the cost of entering a
    // wasmtime fiber, which every call of an async handler's actor pays.
    c.bench_function("floor/raw-wasmtime-async-echo-0B", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    black_box(floor.echo_async(b"echo", b"").await);
                }
                start.elapsed()
            })
        });
    });
}

const CHUNK: u64 = 100;

/// Times `prewarm` in chunks of live instances; trimming the pool between
/// chunks happens outside the timed region.
fn time_prewarm<H: HostCallHandler>(
    rt: &tokio::runtime::Runtime,
    actor: &Actor<H>,
    iters: u64,
) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = std::time::Instant::now();
        rt.block_on(async {
            for _ in 0..n {
                actor.prewarm().await.expect("prewarm");
            }
        });
        total += start.elapsed();
        actor.trim_idle(0);
        left -= n;
    }
    total
}

/// Ready-to-call instance: new store, instantiation from the pre-linked
/// module (pre-initialised by default; `-init-per-instance` rows run
/// `_start`/`wapc_init` in each instance instead). Instances are created in chunks that stay
/// alive until the chunk is timed, so teardown is not measured (for either
/// host); the actor stays loaded, as in production, so pool slots keep their
/// affinity to the module's memory image.
fn instances(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("ready-instance");
    let pooled = Runtime::new(pool_config()).expect("runtime");
    let on_demand = Runtime::new(RuntimeConfig::default().pooling(None)).expect("runtime");
    let limits = Limits::default().instances(0, CHUNK as usize);
    let load_one = |runtime: &Runtime| {
        rt.block_on(runtime.load(key(), wapc_echo(), limits, Arc::new(Pong)))
            .expect("load")
    };
    let (pooled_actor, on_demand_actor) = (load_one(&pooled), load_one(&on_demand));
    let per_instance = Runtime::new(pool_config().preinitialize(false)).expect("runtime");
    let per_instance_actor = load_one(&per_instance);
    for actor in [&pooled_actor, &on_demand_actor] {
        assert!(
            actor.stats().preinitialized,
            "the guest must be pre-initialised"
        );
    }
    assert!(!per_instance_actor.stats().preinitialized);
    group.bench_function("waxosuit-pooling", |b| {
        b.iter_custom(|iters| time_prewarm(&rt, &pooled_actor, iters));
    });
    group.bench_function("waxosuit-on-demand", |b| {
        b.iter_custom(|iters| time_prewarm(&rt, &on_demand_actor, iters));
    });
    group.bench_function("waxosuit-pooling-init-per-instance", |b| {
        b.iter_custom(|iters| time_prewarm(&rt, &per_instance_actor, iters));
    });
    let peer_engine = wasmtime::Engine::default();
    let pre = peer_pre(&peer_engine);
    group.bench_function("wapc-peer", |b| {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CHUNK);
                let mut hosts = Vec::with_capacity(n as usize);
                let start = std::time::Instant::now();
                for _ in 0..n {
                    hosts.push(peer_host(&pre));
                }
                total += start.elapsed();
                drop(hosts);
                left -= n;
            }
            total
        });
    });
    group.finish();
}

fn cold_start(c: &mut Criterion) {
    let rt = tokio_rt();
    let mut group = c.benchmark_group("cold-start");
    group.sample_size(20);
    let runtime = Runtime::new(pool_config()).expect("runtime");
    group.bench_function("waxosuit-compile", |b| {
        b.iter(|| black_box(load(&rt, &runtime)));
    });
    let per_instance = Runtime::new(pool_config().preinitialize(false)).expect("runtime");
    group.bench_function("waxosuit-compile-init-per-instance", |b| {
        b.iter(|| black_box(load(&rt, &per_instance)));
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = Runtime::new(pool_config().cache_dir(dir.path())).expect("runtime");
    drop(load(&rt, &cached));
    group.bench_function("waxosuit-cached", |b| {
        b.iter(|| {
            let actor = load(&rt, &cached);
            assert_eq!(actor.cache_outcome(), waxosuit_runtime::CacheOutcome::Hit);
            black_box(actor)
        });
    });
    let peer_engine = wasmtime::Engine::default();
    group.bench_function("wapc-peer-compile", |b| {
        b.iter(|| black_box(peer_host(&peer_pre(&peer_engine))));
    });
    group.finish();
}

/// The floor: the same guest driven by a minimal synchronous waPC host on raw
/// wasmtime (typed `__guest_call`, no pool, no limits, no async).
mod floor {
    use wasmtime::{Caller, Engine, Linker, Memory, Module, Store, TypedFunc};

    #[derive(Default)]
    pub(crate) struct State {
        memory: Option<Memory>,
        op: Vec<u8>,
        payload: Vec<u8>,
        response: Vec<u8>,
    }

    pub(crate) struct Floor {
        store: Store<State>,
        guest_call: TypedFunc<(i32, i32), i32>,
    }

    fn mem<'a>(caller: &'a mut Caller<'_, State>) -> (&'a mut [u8], &'a mut State) {
        let memory = caller.data().memory.expect("memory");
        memory.data_and_store_mut(caller)
    }

    impl Floor {
        pub(crate) fn new() -> Self {
            let engine = Engine::default();
            let module = Module::new(&engine, super::wapc_echo()).expect("module");
            let mut linker = Linker::<State>::new(&engine);
            linker
                .func_wrap(
                    "wapc",
                    "__guest_request",
                    |mut c: Caller<'_, State>, op: i32, ptr: i32| {
                        let (m, s) = mem(&mut c);
                        let (op, ptr) = (op as usize, ptr as usize);
                        m[op..op + s.op.len()].copy_from_slice(&s.op);
                        m[ptr..ptr + s.payload.len()].copy_from_slice(&s.payload);
                    },
                )
                .expect("define");
            linker
                .func_wrap(
                    "wapc",
                    "__guest_response",
                    |mut c: Caller<'_, State>, ptr: i32, len: i32| {
                        let (m, s) = mem(&mut c);
                        s.response.clear();
                        s.response
                            .extend_from_slice(&m[ptr as usize..ptr as usize + len as usize]);
                    },
                )
                .expect("define");
            linker
                .define_unknown_imports_as_traps(&module)
                .expect("stubs");
            let mut store = Store::new(&engine, State::default());
            let instance = linker.instantiate(&mut store, &module).expect("instance");
            let memory = instance.get_memory(&mut store, "memory");
            store.data_mut().memory = memory;
            instance
                .get_typed_func::<(), ()>(&mut store, "wapc_init")
                .expect("wapc_init")
                .call(&mut store, ())
                .expect("init");
            let guest_call = instance
                .get_typed_func(&mut store, "__guest_call")
                .expect("__guest_call");
            Self { store, guest_call }
        }

        fn request(&mut self, op: &[u8], payload: &[u8]) -> (i32, i32) {
            let state = self.store.data_mut();
            state.op.clear();
            state.op.extend_from_slice(op);
            state.payload.clear();
            state.payload.extend_from_slice(payload);
            (op.len() as i32, payload.len() as i32)
        }

        pub(crate) fn echo(&mut self, op: &[u8], payload: &[u8]) -> i32 {
            let args = self.request(op, payload);
            self.guest_call.call(&mut self.store, args).expect("call")
        }

        pub(crate) async fn echo_async(&mut self, op: &[u8], payload: &[u8]) -> i32 {
            let args = self.request(op, payload);
            self.guest_call
                .call_async(&mut self.store, args)
                .await
                .expect("call")
        }
    }
}

criterion_group!(benches, calls, instances, cold_start);
criterion_main!(benches);
