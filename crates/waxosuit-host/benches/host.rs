//! The host's own cost per invocation, without HTTP: the `hello` example
//! actor called through `Host::call_actor` (routing, metrics, pool) next to
//! the `wapc-echo` test guest, with the `HandleRequest` payload that the HTTP
//! server sends for a small GET.
//!
//!     cargo bench -p waxosuit-host --bench host

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_codec::http;
use waxosuit_host::HostBuilder;

fn sign(account: &KeyPair, module: &[u8], name: &str) -> Vec<u8> {
    let subject = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(subject.public_key())
        .metadata(Actor::named(name))
        .build();
    embed_claims(module, &claims, account).expect("sign")
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    // The host trusts the one account that signs the benchmark's actors.
    let account = KeyPair::generate(KeyKind::Account);
    let verifier = Verifier::new()
        .trust_issuer(&account.public_key())
        .expect("account key");
    let host = HostBuilder::new().verifier(verifier).build().expect("host");
    let hello = rt
        .block_on(host.add_actor(
            &sign(&account, waxosuit_test_fixtures::example("hello"), "hello"),
            "hello",
            None,
        ))
        .expect("hello");
    let echo = rt
        .block_on(host.add_actor(
            &sign(&account, waxosuit_test_fixtures::wapc_echo(), "echo"),
            "echo",
            None,
        ))
        .expect("echo");
    let request = waxosuit_codec::serialize(&http::Request {
        method: "GET".into(),
        path: "/".into(),
        query_string: String::new(),
        header: HashMap::from([
            ("host".to_string(), "127.0.0.1:8080".to_string()),
            ("user-agent".to_string(), "wrk".to_string()),
        ]),
        body: Vec::new(),
    })
    .expect("encode");

    let mut group = c.benchmark_group("host");
    group.bench_function("hello HandleRequest via Host::call_actor", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                host.call_actor(&hello.key, http::OP_HANDLE_REQUEST, &request)
                    .await
                    .expect("call"),
            )
        })
    });
    group.bench_function("wapc-echo echo (same payload) via Host::call_actor", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                host.call_actor(&echo.key, "echo", &request)
                    .await
                    .expect("call"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
