//! What a policy decision costs the host.
//!
//! * `invoke/cached_hit`: `Policy::check_invoke` answered by the decision
//!   cache, the cost every call pays once its decision is cached (target:
//!   at most 100 ns, no allocation).
//! * `invoke/uncached`: the same call with the cache off: the input document
//!   is built, serialized to JSON and evaluated by the embedded engine
//!   against the example policies `no-egress.rego` and `read-only-kv.rego`
//!   with `data.json`.
//! * `start/uncached`: an actor start decision by `trusted-tags.rego`, with
//!   claims shaped like a real signed module's.
//!
//! Futures are polled once with `now_or_never`: the embedded engine decides
//! inline, so this measures the decision, not an executor.
//!
//! cargo bench -p waxosuit-policy-rego -- --warm-up-time 1 --measurement-time 3

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use serde_json::json;
use waxosuit_policy::input::{
    ActorFacts, Direction, HostFacts, InvokeInput, ModuleFacts, StartInput,
};
use waxosuit_policy::{DecisionPoint, InvokeKey, Policy, PolicyConfig};
use waxosuit_policy_rego::RegoEngine;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/policies")
        .join(name)
}

fn policy(files: &[&str], cache_ttl: Duration) -> Policy {
    let files: Vec<PathBuf> = files.iter().map(|f| example(f)).collect();
    let engine = RegoEngine::from_files(&files, &[example("data.json")]).expect("examples load");
    Policy::new(
        Arc::new(engine),
        PolicyConfig {
            cache_ttl,
            decision_log: None,
        },
    )
}

fn host() -> HostFacts {
    HostFacts {
        id: Some("NBLXA3SI6WYI2LJWKBKDLVNGMGJJUYVG5VEVAHK4ZJKC5TY3YQFZMWCB".into()),
        labels: BTreeMap::from([
            ("region".to_owned(), "eu-west".to_owned()),
            ("hostcore.os".to_owned(), "linux".to_owned()),
            ("hostcore.arch".to_owned(), "x86_64".to_owned()),
        ]),
    }
}

fn invoke_input(key: &InvokeKey<'_>) -> serde_json::Value {
    let input = InvokeInput {
        actor: ActorFacts {
            key: key.actor.to_owned(),
            name: "kvcounter".to_owned(),
            issuer: "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW".to_owned(),
            caps: vec!["wascc:http_server".to_owned(), "wascc:keyvalue".to_owned()],
            tags: vec!["approved".to_owned()],
        },
        capability: key.capability.to_owned(),
        binding: key.binding.to_owned(),
        operation: key.operation.to_owned(),
        direction: Direction::Outbound,
        host: host(),
    };
    serde_json::to_value(&input).expect("serializes")
}

fn start_input() -> serde_json::Value {
    let input = StartInput {
        token: "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.eyJqdGkiOiJ4In0.c2lnbmF0dXJl".to_owned(),
        claims: json!({
            "jti": "ZCdLFKGmQBMK5s1pRvGNJb",
            "iat": 1_767_225_600,
            "iss": "ACOJJN6WUP4ODD75XEBKKTCCUJJCY5ZKQ56XVKYK4BEJWGVAOOQHZMCW",
            "sub": "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2",
            "wascap": {
                "name": "kvcounter",
                "hash": "4D5A6B1C2E3F40516273849506A7B8C9D0E1F2031425364758697A8B9CADBECF",
                "tags": ["approved", "team-storage"],
                "caps": ["wascc:http_server", "wascc:keyvalue"],
                "rev": 3,
                "ver": "0.3.0"
            }
        }),
        module: ModuleFacts {
            hash: "4D5A6B1C2E3F40516273849506A7B8C9D0E1F2031425364758697A8B9CADBECF".to_owned(),
            size: 1_843_201,
        },
        source: "./build/kvcounter_signed.wasm".to_owned(),
        host: host(),
    };
    serde_json::to_value(&input).expect("serializes")
}

const ACTOR: &str = "MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2";

fn benches(c: &mut Criterion) {
    let invoke_files = ["no-egress.rego", "read-only-kv.rego"];
    let key = InvokeKey {
        actor: ACTOR,
        capability: "wascc:keyvalue",
        binding: "default",
        operation: "Get",
        direction: waxosuit_policy::input::Direction::Outbound,
    };

    let cached = policy(&invoke_files, Duration::from_secs(3600));
    cached
        .check_invoke(key, || invoke_input(&key))
        .now_or_never()
        .expect("decides inline")
        .expect("Get is allowed");
    c.bench_function("invoke/cached_hit", |b| {
        b.iter(|| {
            cached
                .check_invoke(black_box(key), || unreachable!("cached"))
                .now_or_never()
                .expect("a hit does not wait")
        })
    });

    let uncached = policy(&invoke_files, Duration::ZERO);
    c.bench_function("invoke/uncached", |b| {
        b.iter(|| {
            uncached
                .check_invoke(black_box(key), || invoke_input(&key))
                .now_or_never()
                .expect("decides inline")
        })
    });

    let start = policy(&["trusted-tags.rego"], Duration::ZERO);
    let input = start_input();
    c.bench_function("start/uncached", |b| {
        b.iter(|| {
            start
                .check(DecisionPoint::Start, black_box(input.clone()))
                .now_or_never()
                .expect("decides inline")
        })
    });
}

criterion_group!(policy_benches, benches);
criterion_main!(policy_benches);
