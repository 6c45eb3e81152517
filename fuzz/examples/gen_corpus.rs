//! Writes the seed corpora under `fuzz/corpus/<target>/`: a few valid inputs
//! per target, built with the crates' own APIs, test vectors and fixtures,
//! signed with the fixed keys of `waxosuit_fuzz` so that they stay valid
//! for the targets. Deterministic: running it again rewrites the same bytes.
//!
//! ```sh
//! CARGO_TARGET_DIR=target/fuzz cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use waxosuit_claims::{
    Account, Actor, CapabilityProvider, Claims, Operator, WascapInvocation, embed_claims,
};
use waxosuit_codec::{capabilities, core, extras, http, invocation, keyvalue, messaging};
use waxosuit_fuzz::{HEADER_JSON, NOW, Signer, sign_token};
use waxosuit_lattice::protocol::{
    self, ActorEntry, AuctionBid, AuctionRequest, BindingChange, BindingEntry, ChunkRef,
    CloudEvent, Command, CommandReply, Discover, ErrorKind, Here, HostEntry, ProviderEntry,
    Response, SessionProof, SessionTag, ValuesRequest, ValuesResponse, WireEntity,
};

struct Corpus {
    dir: PathBuf,
}

impl Corpus {
    fn new(root: &Path, target: &str) -> Corpus {
        let dir = root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        // Start clean, so removed seeds do not linger; but the inputs kept
        // from findings (`regression-*`) are not ours to remove.
        for entry in fs::read_dir(&dir).expect("read corpus dir").flatten() {
            let keep = entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with("regression-"));
            if !keep {
                fs::remove_file(entry.path()).expect("remove old seed");
            }
        }
        Corpus { dir }
    }

    fn add(&self, name: &str, bytes: &[u8]) {
        fs::write(self.dir.join(name), bytes).expect("write seed");
    }

    fn add_with(&self, name: &str, prefix: &[u8], bytes: &[u8]) {
        let mut all = prefix.to_vec();
        all.extend_from_slice(bytes);
        self.add(name, &all);
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

fn claims<T>(issuer: Signer, subject: &str, metadata: T) -> Claims<T> {
    Claims {
        expires: Some(NOW + 86_400),
        id: "fuzz-seed".into(),
        issued_at: NOW - 60,
        issuer: issuer.public_key(),
        subject: subject.into(),
        not_before: Some(NOW - 120),
        metadata: Some(metadata),
        wascap_revision: Some(waxosuit_claims::WASCAP_REVISION),
    }
}

fn token<T: Serialize>(signer: Signer, claims: &Claims<T>) -> String {
    sign_token(signer, HEADER_JSON.as_bytes(), &json(claims))
}

fn wat(file: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/waxosuit-test-fixtures/wat")
        .join(file);
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn actor_meta() -> Actor {
    Actor {
        name: Some("counter".into()),
        module_hash: "0".repeat(64),
        tags: Some(vec!["fuzz".into(), "seed".into()]),
        caps: Some(vec!["wascc:keyvalue".into(), "wascc:http_server".into()]),
        rev: Some(3),
        ver: Some("0.1.0".into()),
        call_alias: Some("fuzz/counter".into()),
        provider: false,
    }
}

fn provider_meta(library: &[u8]) -> CapabilityProvider {
    CapabilityProvider {
        name: Some("Inventory".into()),
        capid: "acme:inventory".into(),
        vendor: "Acme".into(),
        rev: Some(1),
        ver: Some("1.0".into()),
        target_hashes: HashMap::from([(
            "x86_64-unknown-linux-gnu".to_string(),
            waxosuit_par::library_hash(library),
        )]),
    }
}

fn claims_jwt(root: &Path) {
    let c = Corpus::new(root, "claims_jwt");
    let module = Signer::Module.public_key();
    let actor = claims(Signer::Account, &module, actor_meta());
    let chained = claims(Signer::ChainedAccount, &module, actor_meta());
    let account = claims(
        Signer::Operator,
        &Signer::ChainedAccount.public_key(),
        Account {
            name: Some("team".into()),
            valid_signers: Some(vec![Signer::Account.public_key()]),
        },
    );
    let operator = claims(
        Signer::Operator,
        &Signer::Operator.public_key(),
        Operator {
            name: Some("ops".into()),
            valid_signers: None,
        },
    );
    let provider = claims(
        Signer::Account,
        &Signer::Service.public_key(),
        provider_meta(b"\x7fELF"),
    );
    let invocation = claims(
        Signer::Server,
        "inv-1",
        WascapInvocation {
            target_url: "wasmbus://MABC/Echo".into(),
            origin_url: "wasmbus://host/N".into(),
            invocation_hash: "A".repeat(64),
        },
    );
    // Mode 0: whole tokens.
    c.add_with("raw_actor", &[0], token(Signer::Account, &actor).as_bytes());
    c.add_with(
        "raw_account",
        &[0],
        token(Signer::Operator, &account).as_bytes(),
    );
    c.add_with(
        "raw_provider",
        &[0],
        token(Signer::Account, &provider).as_bytes(),
    );
    c.add_with("raw_garbage", &[0], b" a.b.c ");
    // Mode 1: claims JSON signed by the signer the next byte picks.
    let index = |s: Signer| Signer::ALL.iter().position(|&x| x == s).expect("signer") as u8;
    c.add_with("signed_actor", &[1, index(Signer::Account)], &json(&actor));
    c.add_with(
        "signed_chained_actor",
        &[1, index(Signer::ChainedAccount)],
        &json(&chained),
    );
    c.add_with(
        "signed_account",
        &[1, index(Signer::Operator)],
        &json(&account),
    );
    c.add_with(
        "signed_operator",
        &[1, index(Signer::Operator)],
        &json(&operator),
    );
    c.add_with(
        "signed_provider",
        &[1, index(Signer::Account)],
        &json(&provider),
    );
    c.add_with(
        "signed_invocation",
        &[1, index(Signer::Server)],
        &json(&invocation),
    );
    // Mode 2: header and claims.
    let mut both = HEADER_JSON.as_bytes().to_vec();
    both.push(b'\n');
    both.extend_from_slice(&json(&actor));
    c.add_with("header_actor", &[2, index(Signer::Account)], &both);
}

fn wasm_extract(root: &Path) {
    let c = Corpus::new(root, "wasm_extract");
    let key = Signer::Account.key_pair();
    let mut meta = claims(Signer::Account, &Signer::Module.public_key(), actor_meta());
    meta.expires = None;
    for (name, file) in [
        ("echo_v2", "echo-v2.wat"),
        ("wasi", "wasi.wat"),
        ("wrong_signature", "wrong-signature.wat"),
    ] {
        let module = wat(file);
        let signed = embed_claims(&module, &meta, &key).expect("sign");
        c.add(&format!("{name}_unsigned.wasm"), &module);
        c.add(&format!("{name}_signed.wasm"), &signed);
    }
    // A wascap >= 0.9 section name beside ours, and two different tokens.
    let module = wat("unknown-wapc-import.wat");
    let signed = embed_claims(&module, &meta, &key).expect("sign");
    let jwt = waxosuit_claims::extract(&signed).expect("signed").jwt;
    let mut both = signed.clone();
    custom_section(&mut both, "wasmcloud_jwt", jwt.as_bytes());
    c.add("two_sections_same_token.wasm", &both);
    custom_section(&mut both, "jwt", b"x.y.z");
    c.add("ambiguous.wasm", &both);
    let mut producers = module.clone();
    custom_section(&mut producers, "producers", b"\x00");
    c.add("producers_section.wasm", &producers);
    c.add("component.wasm", b"\0asm\x0d\0\x01\0");
}

fn custom_section(module: &mut Vec<u8>, name: &str, data: &[u8]) {
    let mut body = Vec::new();
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    module.push(0);
    leb128(module, body.len());
    module.extend_from_slice(&body);
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The codec's golden vectors (`crates/waxosuit-codec/tests/golden.rs`) and
/// a few more values, each filed under every type it decodes as.
fn codec_decode(root: &Path) {
    let c = Corpus::new(root, "codec_decode");
    let mut pool: Vec<Vec<u8>> = Vec::new();
    let mut add = |bytes: Vec<u8>| {
        if !pool.contains(&bytes) {
            pool.push(bytes);
        }
    };
    let s = |v: &dyn erased::Ser| v.bytes();
    add(s(&http::Request {
        method: "GET".into(),
        path: "/foo".into(),
        query_string: "a=1".into(),
        header: HashMap::from([("accept".into(), "text/html".into())]),
        body: b"hi".to_vec(),
    }));
    add(s(&http::Response::ok()));
    add(s(&http::Response::internal_server_error("boom")));
    add(s(&keyvalue::SetRequest {
        key: "k".into(),
        value: "v".into(),
        expires_s: 60,
    }));
    add(s(&keyvalue::GetResponse {
        value: "v".into(),
        exists: true,
    }));
    add(s(&keyvalue::AddRequest {
        key: "k".into(),
        value: 2,
    }));
    add(s(&keyvalue::ListRangeRequest {
        key: "k".into(),
        start: 0,
        stop: -1,
    }));
    add(s(&keyvalue::ListRangeResponse {
        values: vec!["a".into(), "b".into()],
    }));
    add(s(&keyvalue::ListResponse { new_count: 2 }));
    add(s(&core::CapabilityConfiguration {
        module: "M".into(),
        values: HashMap::from([("PORT".into(), "8080".into())]),
    }));
    add(s(&core::LiveUpdate {
        new_module: vec![0, 97],
    }));
    add(s(&extras::GeneratorResult {
        guid: Some("g".into()),
        sequence_number: 5,
        random_number: 0,
    }));
    add(s(&messaging::BrokerMessage {
        subject: "a.b".into(),
        reply_to: "r".into(),
        body: b"x".to_vec(),
    }));
    add(s(&capabilities::OperationDirection::Both));
    add(s(&capabilities::CapabilityDescriptor::builder()
        .id("wascc:keyvalue")
        .name("kv")
        .version("1")
        .revision(2)
        .with_operation("Get", capabilities::OperationDirection::ToProvider, "get")
        .build()));
    let inv = invocation::Invocation {
        origin: invocation::Entity::Actor("M1".into()),
        target: invocation::Entity::Capability {
            capid: "wascc:kv".into(),
            binding: "default".into(),
        },
        operation: "Get".into(),
        msg: vec![1, 2, 200],
        id: "i".into(),
        encoded_claims: "j".into(),
        host_id: "N".into(),
    };
    add(s(&inv));
    add(s(&invocation::InvocationResponse::error(&inv, "e")));
    add(s(&inv.target));
    // Every contract type's default value, so that each has a seed.
    macro_rules! defaults {
        ($($ty:ty),* $(,)?) => { $(add(s(&<$ty>::default()));)* };
    }
    use waxosuit_codec::{blobstore, eventstreams, logging};
    defaults![
        http::Request,
        http::Response,
        keyvalue::GetRequest,
        keyvalue::GetResponse,
        keyvalue::SetRequest,
        keyvalue::SetResponse,
        keyvalue::DelRequest,
        keyvalue::DelResponse,
        keyvalue::AddRequest,
        keyvalue::AddResponse,
        keyvalue::ListPushRequest,
        keyvalue::ListDelItemRequest,
        keyvalue::ListClearRequest,
        keyvalue::ListRangeRequest,
        keyvalue::ListRangeResponse,
        keyvalue::ListResponse,
        keyvalue::SetAddRequest,
        keyvalue::SetRemoveRequest,
        keyvalue::SetQueryRequest,
        keyvalue::SetQueryResponse,
        keyvalue::SetIntersectionRequest,
        keyvalue::SetUnionRequest,
        keyvalue::SetOperationResponse,
        keyvalue::KeyExistsQuery,
        messaging::BrokerMessage,
        messaging::RequestMessage,
        logging::WriteLogRequest,
        extras::GeneratorRequest,
        extras::GeneratorResult,
        blobstore::FileChunk,
        blobstore::Container,
        blobstore::ContainerList,
        blobstore::Blob,
        blobstore::BlobList,
        blobstore::StreamRequest,
        blobstore::Transfer,
        eventstreams::Event,
        eventstreams::WriteResponse,
        eventstreams::StreamQuery,
        eventstreams::StreamResults,
        eventstreams::TimeRange,
        core::LiveUpdate,
        core::HealthRequest,
        core::CapabilityConfiguration,
        capabilities::CapabilityDescriptor,
        invocation::Entity,
        invocation::InvocationResponse,
        invocation::Invocation,
    ];
    add(s(&capabilities::OperationDescriptor::new(
        "Get",
        capabilities::OperationDirection::ToProvider,
        "get",
    )));
    // Name-keyed enum and struct-as-array forms the decoder also accepts.
    add(b"\x81\xa5Actor\xa2M1".to_vec());
    add(vec![
        0x94, 0xcc, 201, 0xa2, b'O', b'K', 0x80, 0xc4, 0x01, b'!',
    ]);
    add(vec![0x80]);
    for (index, (name, decode)) in waxosuit_fuzz::codec::CASES.iter().enumerate() {
        let mut kept = 0;
        for (i, payload) in pool.iter().enumerate() {
            if kept < 3 && decode(payload) {
                let file = format!("{:02}_{}_{i}", index, name.replace("::", "_"));
                c.add_with(&file, &[index as u8], payload);
                kept += 1;
            }
        }
        assert!(kept > 0, "no seed decodes as {name}");
    }
}

/// `Serialize` behind a trait object, for the pool above.
mod erased {
    pub trait Ser {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            waxosuit_codec::serialize(self).expect("serialize")
        }
    }
}

fn lattice_decode(root: &Path) {
    let c = Corpus::new(root, "lattice_decode");
    let index = |name: &str| {
        waxosuit_fuzz::lattice::CASES
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no case {name}")) as u8
    };
    let add = |name: &str, file: &str, payload: Vec<u8>| {
        let i = index(name);
        assert!(
            waxosuit_fuzz::lattice::CASES[usize::from(i)].1(&payload),
            "seed {file} does not decode as {name}"
        );
        c.add_with(&format!("{i:02}_{file}"), &[i], &payload);
    };
    let mp = |v: &dyn erased_lattice::Ser| v.msgpack();
    let host = Signer::Server.public_key();
    let chunk = ChunkRef {
        subject: format!("waxosuit.chunks.{host}.abc"),
        len: 3_000_000,
        chunks: 3,
        chunk: 1_048_576,
        hashes: vec!["A".repeat(64), "B".repeat(64), "C".repeat(64)],
    };
    let inv = protocol::WireInvocation {
        v: protocol::PROTOCOL_VERSION,
        id: "inv-1".into(),
        origin: WireEntity::Host(host.clone()),
        target: WireEntity::Actor(Signer::Module.public_key()),
        operation: "Echo".into(),
        msg: b"hi".to_vec(),
        encoded_claims: "a.b.c".into(),
        host_id: host.clone(),
        chunked: None,
        session: None,
        session_token: Some("tok".into()),
    };
    add("Probe", "probe", mp(&inv));
    add("WireInvocation", "signed", mp(&inv));
    add(
        "WireInvocation",
        "tagged_chunked",
        mp(&protocol::WireInvocation {
            target: WireEntity::Capability {
                capid: "wascc:keyvalue".into(),
                binding: "default".into(),
            },
            msg: Vec::new(),
            encoded_claims: String::new(),
            chunked: Some(chunk.clone()),
            session: Some(SessionProof {
                sid: "s1".into(),
                iat: NOW,
                seq: 7,
                tags: vec![SessionTag {
                    to: host.clone(),
                    to_sid: "s2".into(),
                    mac: vec![0xab; 32],
                }],
            }),
            session_token: None,
            ..inv.clone()
        }),
    );
    add(
        "Response",
        "success",
        mp(&Response::success("inv-1", b"ok".to_vec())),
    );
    let mut refused = Response::failure("inv-1", ErrorKind::Session, "no session");
    refused.proof = Some("D".repeat(64));
    refused.tag = Some(vec![1; 32]);
    refused.chunked = Some(chunk.clone());
    add("Response", "failure", mp(&refused));
    add(
        "Command",
        "start_actor",
        mp(&Command::StartActor {
            v: 3,
            module: b"\0asm\x01\0\0\0".to_vec(),
            chunked: None,
        }),
    );
    add(
        "Command",
        "start_provider",
        mp(&Command::StartProvider {
            v: 3,
            capid: "wascc:keyvalue".into(),
            backend: Some("memory".into()),
            binding: "default".into(),
        }),
    );
    add(
        "Command",
        "stop_actor",
        mp(&Command::StopActor {
            v: 3,
            actor: Signer::Module.public_key(),
        }),
    );
    add(
        "Discover",
        "discover",
        mp(&Discover {
            v: 3,
            discover: true,
        }),
    );
    add(
        "Here",
        "here",
        mp(&Here {
            v: 3,
            host: host.clone(),
            token: "t".into(),
        }),
    );
    add(
        "CommandReply",
        "reply",
        mp(&CommandReply {
            host: host.clone(),
            ok: true,
            message: "started".into(),
        }),
    );
    let entry = BindingEntry {
        actor: Signer::Module.public_key(),
        capid: "wascc:keyvalue".into(),
        binding: "default".into(),
        values: BTreeMap::from([
            ("URL".into(), "redis://app:<redacted>@db:6379".into()),
            ("KEY_PREFIX".into(), "tenant-a:".into()),
        ]),
        redacted: vec!["URL".into()],
        owner: host.clone(),
        rev: "r1".into(),
    };
    add(
        "BindingChange",
        "put",
        json(&BindingChange::Put(entry.clone())),
    );
    add(
        "BindingChange",
        "remove",
        json(&BindingChange::Remove {
            actor: "M".into(),
            capid: "wascc:keyvalue".into(),
            binding: "default".into(),
        }),
    );
    let mut event = CloudEvent::new(
        &host,
        "actor_started",
        Signer::Module.public_key(),
        serde_json::json!({ "name": "counter", "instances": 2, "ratio": 0.5 }),
    );
    event.id = "evt-1".into();
    event.time = "2023-11-14T22:13:20.000Z".into();
    add("CloudEvent", "actor_started", json(&event));
    add(
        "Vec<HostEntry>",
        "hosts",
        json(&vec![HostEntry {
            id: host.clone(),
            labels: BTreeMap::from([("hostcore.os".into(), "linux".into())]),
            uptime_ms: 1000,
            version: 3,
        }]),
    );
    add(
        "Vec<ActorEntry>",
        "actors",
        json(&vec![ActorEntry {
            host: host.clone(),
            key: Signer::Module.public_key(),
            name: "counter".into(),
            claims: "a.b.c".into(),
        }]),
    );
    add(
        "Vec<ProviderEntry>",
        "providers",
        json(&vec![ProviderEntry {
            host: host.clone(),
            capid: "wascc:keyvalue".into(),
            binding: "default".into(),
            name: "memory".into(),
            version: "1".into(),
        }]),
    );
    add("Vec<BindingEntry>", "bindings", json(&vec![entry]));
    add(
        "ValuesRequest",
        "request",
        json(&ValuesRequest {
            actor: "M".into(),
            capid: "wascc:keyvalue".into(),
            binding: "default".into(),
            rev: "r1".into(),
            xkey: "AAAA".into(),
        }),
    );
    add(
        "ValuesResponse",
        "response",
        json(&ValuesResponse {
            ok: true,
            message: String::new(),
            xkey: "AAAA".into(),
            nonce: "BBBB".into(),
            sealed: "CCCC".into(),
        }),
    );
    add(
        "AuctionRequest",
        "auction",
        json(&AuctionRequest {
            constraints: BTreeMap::from([("region".into(), "eu".into())]),
            actor: Some("M".into()),
        }),
    );
    add(
        "AuctionBid",
        "bid",
        json(&AuctionBid {
            host: host.clone(),
            actors: 2,
        }),
    );
    add(
        "sealed values",
        "values",
        json(&BTreeMap::from([("URL", "redis://:pw@db"), ("PORT", "1")])),
    );
    add(
        "Subjects",
        "subjects",
        b"staging.waxosuit\nwascc:keyvalue\nmy binding".to_vec(),
    );
}

/// `Serialize` behind a trait object, written the lattice's way.
mod erased_lattice {
    pub trait Ser {
        fn msgpack(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn msgpack(&self) -> Vec<u8> {
            waxosuit_lattice::protocol::encode(self).expect("encode")
        }
    }
}

fn lattice_redact(root: &Path) {
    let c = Corpus::new(root, "lattice_redact");
    // From the crate's own tests (`src/redact.rs`).
    for (i, (key, value)) in [
        ("URL", "redis://:hunter2@db:6379/0"),
        ("URL", "redis://app:hunter2@db:6379"),
        ("URL", "nats://s3cr3ttoken@nats:4222"),
        ("URL", "https://api.example/x?token=abc&page=2#top"),
        ("URL", "alice:pw@nats:4222"),
        ("URL", "nats://u:p%40ss@h1:4222,nats://u:q@h2:4222"),
        ("CREDSFILE", "/etc/nats/app.creds"),
        ("REDIS_PASSWORD", "hunter2"),
        ("KEY_PREFIX", "tenant-a:"),
        (
            "SOMETHING",
            "SUAMLK3GZ2W5A6RUSBBEBSA4O7RMSSNMBW7LC6LOD4DEBB52BE4EFZOLDU",
        ),
        ("SOMETHING", "eyJhbGciOiJlZDI1NTE5In0.eyJzdWIiOiJ4In0.c2ln"),
        ("URL", "é://ü:ö@ß"),
    ]
    .into_iter()
    .enumerate()
    {
        c.add(
            &format!("{i:02}_{}", key.to_lowercase()),
            format!("{key}\0{value}").as_bytes(),
        );
    }
}

fn manifest_parse(root: &Path) {
    let c = Corpus::new(root, "manifest_parse");
    // From `crates/waxosuit-manifest/tests/manifest.rs` and the README.
    c.add(
        "example.yaml",
        br#"
labels: { region: local }
actors:
  - ./build/kvcounter_signed.wasm
  - path: ./build/hello_signed.wasm
    limits: { max_memory_mib: 16, deadline_ms: 500, fuel: 1000000, max_payload_kib: 1024, min_instances: 1, max_instances: 8 }
capabilities:
  - id: wascc:http_server
  - id: wascc:keyvalue
    binding_name: default
    provider: memory
  - path: ./libwascc_redis.so
    binding_name: cache
bindings:
  - actor: MB4OLDIC3TCZ4Q4TGGOVAZC43VXFE2JQVRAXQMQFXUCREOOFEKOKZTY2
    capability: wascc:http_server
    binding: default
    values: { PORT: "${PORT:8080}" }
  - actor: hello
    capability: wascc:keyvalue
  - actor: hello
    capability: wascc:keyvalue
    binding_name: cache
    values: { URL: "redis://127.0.0.1:6379" }
"#,
    );
    c.add(
        "example.json",
        br#"{
  "labels": { "region": "local" },
  "actors": [
    "./build/kvcounter_signed.wasm",
    { "path": "./build/hello_signed.wasm",
      "limits": { "max_memory_mib": 16, "deadline_ms": 500, "min_instances": 1, "max_instances": 8 } }
  ],
  "capabilities": [
    { "id": "wascc:http_server" },
    { "id": "wascc:keyvalue", "binding_name": "default", "provider": "memory" },
    { "path": "./libwascc_redis.so", "binding_name": "cache" }
  ],
  "bindings": [
    { "actor": "hello", "capability": "wascc:keyvalue", "binding_name": "cache",
      "values": { "URL": "redis://127.0.0.1:6379", "N": 1, "B": true } }
  ]
}"#,
    );
    c.add(
        "env.yaml",
        br#"
labels: { zone: "${HOST}", "${HOST}": key-is-not-expanded }
actors:
  - path: ${ACTOR_DIR:./build}/hello.wasm
    limits: { fuel: "${FUEL:1000}" }
capabilities:
  - id: wascc:http_server
bindings:
  - actor: hello
    capability: wascc:http_server
    values:
      PORT: ${PORT:8080}
      HOST: "${EMPTY:}"
      LITERAL: $HOME/x
      NESTED: ${NESTED}
      ODD: ${ODD}
      MIXED: "http://${HOST:localhost}:${PORT:80}/${PATH_PART:}"
"#,
    );
    c.add(
        "wascc_sample.yaml",
        br#"---
labels:
    sample: "Key-Value Counter"
actors:
    - ./examples/.assets/kvcounter.wasm
capabilities:
    - path: ./examples/.assets/libwascc_redis.so
    - path: ./examples/.assets/libwascc_httpsrv.so
      binding_name: default
bindings:
    - actor: "MASCXFM4R6X63UD5MSCDZYCJNPBVSIU6RKMXUPXRKAOSBQ6UY3VT3NPZ"
      capability: "wascc:keyvalue"
      values:
        URL: redis://127.0.0.1:6379
    - actor: "MASCXFM4R6X63UD5MSCDZYCJNPBVSIU6RKMXUPXRKAOSBQ6UY3VT3NPZ"
      capability: "wascc:messaging"
      binding: default
"#,
    );
    c.add(
        "policy_embedded.yaml",
        b"policy:\n  policies: [./policies/authz.rego, /etc/waxosuit/tenants.rego]\n  data: \
          [policies/data.json]\n  cache_ttl_ms: 2500\n  decision_log: ./log/decisions.jsonl\n",
    );
    c.add(
        "policy_opa.yaml",
        b"policy:\n  opa_url: http://${HOST}:8181\n  opa_timeout_ms: 250\n  cache_ttl_ms: \
          ${TTL:0}\n  decision_log: \"-\"\n",
    );
    c.add(
        "anchors.yaml",
        b"labels: &l { a: b }\nbindings:\n  - &b { actor: x, capability: wascc:logging, values: *l }\n",
    );
    c.add("empty_map.json", b"{}");
}

fn http_reply(root: &Path) {
    let c = Corpus::new(root, "http_reply");
    let s = |r: &http::Response| waxosuit_codec::serialize(r).expect("serialize");
    c.add_with("reply_ok", &[0], &s(&http::Response::ok()));
    c.add_with(
        "reply_headers",
        &[0],
        &s(&http::Response {
            status_code: 201,
            status: "Created".into(),
            header: HashMap::from([("Content-Type".into(), "text/plain".into())]),
            body: b"abc".to_vec(),
        }),
    );
    // Body first (from `serve.rs`'s tests) and the array layout the codec
    // also accepts.
    let mut body_first = vec![
        0x84, 0xa4, b'b', b'o', b'd', b'y', 0xc4, 0x03, b'x', b'y', b'z',
    ];
    body_first.push(0xaa);
    body_first.extend_from_slice(b"statusCode");
    body_first.extend_from_slice(&[0xcc, 202, 0xa6]);
    body_first.extend_from_slice(b"status");
    body_first.extend_from_slice(&[0xa0, 0xa6]);
    body_first.extend_from_slice(b"header");
    body_first.extend_from_slice(&[0x81, 0xa1, b'k', 0xa1, b'v']);
    c.add_with("reply_body_first", &[0], &body_first);
    c.add_with(
        "reply_array",
        &[0],
        &[0x94, 0xcc, 201, 0xa2, b'O', b'K', 0x80, 0xc4, 0x01, b'!'],
    );
    let request = http::Request {
        method: "GET".into(),
        path: "/a/b".into(),
        query_string: "x=1".into(),
        header: HashMap::from([("accept".into(), "text/html, application/json".into())]),
        body: b"hi".to_vec(),
    };
    c.add_with(
        "request",
        &[1],
        &waxosuit_codec::serialize(&request).expect("serialize"),
    );
}

fn par_read(root: &Path) {
    let c = Corpus::new(root, "par_read");
    let library = b"\x7fELF fake plugin library".to_vec();
    let provider = claims(
        Signer::Account,
        &Signer::Service.public_key(),
        provider_meta(&library),
    );
    let jwt = token(Signer::Account, &provider);
    let tar = |entries: &[(&str, &[u8])]| {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, *bytes)
                .expect("append");
        }
        builder.into_inner().expect("finish")
    };
    let plain = tar(&[
        ("claims.jwt", jwt.as_bytes()),
        ("x86_64-unknown-linux-gnu.so", &library),
    ]);
    let gz = waxosuit_par::ProviderArchive::from_bytes(&plain)
        .expect("the seed archive reads")
        .to_bytes()
        .expect("and writes");
    c.add_with("gz", &[0], &gz);
    c.add_with("plain", &[0], &plain);
    c.add_with("plain_fixed", &[1], &plain);
    c.add_with(
        "two_libraries_fixed",
        &[1],
        &tar(&[
            ("claims.jwt", jwt.as_bytes()),
            ("x86_64-unknown-linux-gnu.so", &library),
            ("aarch64-apple-darwin.dylib", b"\xcf\xfa\xed\xfe"),
        ]),
    );
    c.add_with(
        "built",
        &[2],
        b"acme:inventory\nAcme\nInventory\n1.0\nx86_64-unknown-linux-gnu\n\x7fELF library",
    );
}

fn trace_context(root: &Path) {
    let c = Corpus::new(root, "trace_context");
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    c.add("spec_example", parent.as_bytes());
    c.add_with(
        "with_tracestate",
        parent.as_bytes(),
        b"\0congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
    );
    c.add(
        "later_version",
        b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-extra",
    );
    c.add(
        "zero_trace_id",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    );
}

fn oci_manifest(root: &Path) {
    let c = Corpus::new(root, "oci_manifest");
    let digest = "sha256:05939c46047c4bda9cfd79a0dfaa7774210138fc3b9ba15be10fb2ff74202bb8";
    let manifest = |config: &str, layer: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"{config}","digest":"{digest}","size":2}},"layers":[{{"mediaType":"{layer}","digest":"{digest}","size":108450}}],"annotations":{{"org.opencontainers.image.title":"hello"}}}}"#
        )
    };
    let reference = b"oci://127.0.0.1:5000/team/hello:1.0.0";
    c.add_with(
        "actor",
        reference,
        format!(
            "\0{}",
            manifest("application/vnd.wasm.config.v0+json", "application/wasm")
        )
        .as_bytes(),
    );
    c.add_with(
        "provider_archive",
        b"oci://ghcr.io/team/inventory@sha256:05939c46047c4bda9cfd79a0dfaa7774210138fc3b9ba15be10fb2ff74202bb8",
        format!(
            "\0{}",
            manifest(
                "application/vnd.waxosuit.provider-archive.config.v1+json",
                "application/vnd.waxosuit.provider-archive.layer.v1+par"
            )
        )
        .as_bytes(),
    );
    c.add_with(
        "container_image",
        b"hello:1.0",
        format!(
            "\0{}",
            manifest(
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip"
            )
        )
        .as_bytes(),
    );
    c.add_with(
        "index",
        b"localhost/a/b:latest",
        format!(
            "\0{}",
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
        )
        .as_bytes(),
    );
    c.add(
        "bad_reference",
        b"oci://Host.example/A__b--c/..:-1@sha256:xyz",
    );
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    claims_jwt(&root);
    wasm_extract(&root);
    codec_decode(&root);
    lattice_decode(&root);
    lattice_redact(&root);
    manifest_parse(&root);
    http_reply(&root);
    par_read(&root);
    trace_context(&root);
    oci_manifest(&root);
    println!("seed corpora written under {}", root.display());
}
