//! Remote actor calls across the lattice against raw NATS request/reply
//! between the same two connections' worth of processes, in one run.
//!
//! `cargo bench -p waxosuit-lattice --bench lattice`
//!
//! * `raw_nats/*`: a NATS request answered by a plain subscriber that echoes
//!   the payload: the floor any lattice call pays.
//! * `lattice_call/*`: `Lattice::call_actor` from host A to the `wapc-echo`
//!   actor on host B, steady state (the first call, signed, sets up the
//!   hosts' session; the measured ones carry a session tag): envelope,
//!   tag, replay check, the wasm call, and the response's own tag checked
//!   by the caller before it is accepted.
//! * `*_x64`: 64 calls in flight at once (throughput; elements per second).
//! * `antiforgery/*`: signing and checking a JWT alone (what each call paid
//!   before sessions), and the spec's payload hash at 64 KiB.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures_util::StreamExt;
use futures_util::future::join_all;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_host::HostBuilder;
use waxosuit_lattice::antiforgery::{self, Binding};
use waxosuit_lattice::protocol::{PROTOCOL_VERSION, WireEntity, WireInvocation};
use waxosuit_lattice::{Lattice, LatticeConfig, TrustPolicy};
use waxosuit_test_servers::NatsServer;

fn signed_echo(account: &KeyPair) -> (Vec<u8>, String) {
    let module = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .metadata(Actor::named("echo"))
        .build();
    let signed = embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, account).unwrap();
    (signed, module.public_key())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nats = NatsServer::start().expect("nats-server");
    let keys = [
        KeyPair::generate(KeyKind::Server),
        KeyPair::generate(KeyKind::Server),
    ];
    let trust = TrustPolicy::hosts(keys.iter().map(|k| k.public_key())).unwrap();
    let account = KeyPair::generate(KeyKind::Account);
    let (module, key) = signed_echo(&account);
    let verifier = Verifier::new().trust_issuer(&account.public_key()).unwrap();
    let (a, _b, raw_client) = rt.block_on(async {
        let join = |i: usize| {
            let host = HostBuilder::new()
                .verifier(verifier.clone())
                .build()
                .unwrap();
            let identity = KeyPair::from_seed(&keys[i].seed().unwrap()).unwrap();
            let config = LatticeConfig::new(nats.url(), identity, trust.clone());
            async move { (Lattice::join(host.clone(), config).await.unwrap(), host) }
        };
        let (a, _) = join(0).await;
        let (b, host_b) = join(1).await;
        host_b.add_actor(&module, "echo", None).await.unwrap();
        // The raw responder: its own connection, like host B's.
        let responder = async_nats::connect(nats.url()).await.unwrap();
        let mut sub = responder
            .queue_subscribe("bench.raw", "bench.raw".to_string())
            .await
            .unwrap();
        let replier = responder.clone();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let Some(reply) = msg.reply {
                    let _ = replier.publish(reply, msg.payload).await;
                }
            }
        });
        let requester = async_nats::connect(nats.url()).await.unwrap();
        (a, b, requester)
    });
    let raw = raw_client.clone();

    let mut group = c.benchmark_group("lattice");
    for size in [0usize, 1024, 64 * 1024] {
        let payload = vec![7u8; size];
        let label = match size {
            0 => "0B".to_string(),
            s => format!("{}KiB", s / 1024),
        };
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("raw_nats", &label), &payload, |bch, p| {
            bch.to_async(&rt).iter(|| {
                let raw = raw.clone();
                let p = p.clone();
                async move { raw.request("bench.raw", p.into()).await.unwrap() }
            })
        });
        group.bench_with_input(
            BenchmarkId::new("lattice_call", &label),
            &payload,
            |bch, p| {
                bch.to_async(&rt)
                    .iter(|| async { a.call_actor(&key, "echo", p.clone()).await.unwrap() })
            },
        );
    }
    group.throughput(Throughput::Elements(64));
    group.bench_function("raw_nats_x64/0B", |bch| {
        bch.to_async(&rt).iter(|| async {
            join_all((0..64).map(|_| {
                let raw = raw.clone();
                async move { raw.request("bench.raw", Vec::new().into()).await.unwrap() }
            }))
            .await
        })
    });
    group.bench_function("lattice_call_x64/0B", |bch| {
        bch.to_async(&rt).iter(|| async {
            join_all((0..64).map(|_| a.call_actor(&key, "echo", Vec::new()))).await
        })
    });
    group.finish();

    let mut group = c.benchmark_group("antiforgery");
    let identity = KeyPair::generate(KeyKind::Server);
    let mut inv = WireInvocation {
        v: PROTOCOL_VERSION,
        id: "id".into(),
        origin: WireEntity::Host(identity.public_key()),
        target: WireEntity::Actor(key.clone()),
        operation: "echo".into(),
        msg: Vec::new(),
        encoded_claims: String::new(),
        host_id: identity.public_key(),
        chunked: None,
        session: None,
        session_token: None,
    };
    let to = || Binding {
        subject: "waxosuit.actor.M",
        reply: "waxosuit._INBOX.x.1",
    };
    group.bench_function("sign", |bch| {
        bch.iter(|| antiforgery::sign(&identity, &inv, to()).unwrap())
    });
    inv.encoded_claims = antiforgery::sign(&identity, &inv, to()).unwrap();
    let verifier = Verifier::new();
    let policy = TrustPolicy::hosts([identity.public_key()]).unwrap();
    group.bench_function("verify", |bch| {
        bch.iter(|| antiforgery::verify(&verifier, &policy, &inv, to()).unwrap())
    });
    // The spec's SHA-256 over a payload, which signed calls pay on each
    // side and session-tagged calls do not (their keyed BLAKE3 replaces it).
    let big = vec![7u8; 64 * 1024];
    group.bench_function("payload_hash/64KiB", |bch| {
        bch.iter(|| {
            waxosuit_lattice::protocol::invocation_hash(
                "wasmbus://host/N",
                "wasmbus://M/echo",
                &big,
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
