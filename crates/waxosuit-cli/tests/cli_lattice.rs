//! Three `waxosuit up` processes joined over a real nats-server: an HTTP
//! request on host A reaches an actor on host B that uses the key-value
//! provider on host C; then C restarts, B dies with a replica on C, a
//! forged invocation is refused and a 5 MiB payload round-trips. The
//! `waxosuit lattice` tool signs with an admin key the hosts trust; without
//! one, or with another, nothing it asks for happens.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Dir, Up, try_get};
use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_host::{HostBuilder, Limits};
use waxosuit_lattice::antiforgery::{self, Binding};
use waxosuit_lattice::protocol::{self, ErrorKind, PROTOCOL_VERSION, WireEntity, WireInvocation};
use waxosuit_lattice::{Lattice, LatticeConfig, TrustPolicy};
use waxosuit_test_servers::{NatsServer, RegistryServer};

struct Hosts {
    nats_url: String,
    seeds: Vec<String>,
    keys: Vec<String>,
    /// The admin key the hosts trust, and the file its seed is in.
    admin: String,
    admin_seed: std::path::PathBuf,
}

impl Hosts {
    /// Server keys for hosts A, B, C and the test itself (D).
    fn new(nats_url: String, dir: &Dir) -> Hosts {
        let pairs: Vec<KeyPair> = (0..4).map(|_| KeyPair::generate(KeyKind::Server)).collect();
        let admin = KeyPair::generate(KeyKind::User);
        let admin_seed = dir.path("admin.nk");
        std::fs::write(&admin_seed, admin.seed().unwrap()).unwrap();
        Hosts {
            nats_url,
            seeds: pairs.iter().map(|k| k.seed().unwrap()).collect(),
            keys: pairs.iter().map(|k| k.public_key()).collect(),
            admin: admin.public_key(),
            admin_seed,
        }
    }

    /// `waxosuit lattice ARGS…` as the admin, believing the hosts.
    fn tool(&self, args: &[&str]) -> std::process::Output {
        self.tool_as(&self.admin_seed, args)
    }

    fn tool_as(&self, seed: &std::path::Path, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .arg("lattice")
            .args(args)
            .env("WAXOSUIT_LATTICE", &self.nats_url)
            .env("WAXOSUIT_LATTICE_SEED", seed)
            .env("WAXOSUIT_LATTICE_TRUST_HOSTS", self.keys.join(","))
            .output()
            .unwrap()
    }

    /// `waxosuit lattice watch` as the admin, once it is subscribed, and
    /// what it prints, as it prints it.
    fn watch(&self) -> (std::process::Child, Arc<Mutex<String>>) {
        let mut watch = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .args(["lattice", "--url", &self.nats_url, "watch"])
            .env("WAXOSUIT_LATTICE_SEED", &self.admin_seed)
            .env("WAXOSUIT_LATTICE_TRUST_HOSTS", self.keys.join(","))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let watched = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&watched);
        let out = watch.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        // It says so once it is subscribed.
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let err = watch.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if line.contains("watching lattice events") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if ready.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = watch.kill();
            panic!("`lattice watch` did not start");
        }
        (watch, watched)
    }

    fn up(&self, dir: &Dir, i: usize, manifest: &str) -> Up {
        let path = dir.manifest_named(&format!("host{i}.yaml"), manifest);
        let trust = self.keys.join(",");
        // One compiled-module cache for all hosts: C compiles nothing B did.
        let cache = dir.path("cache");
        let cache = cache.to_str().unwrap();
        Up::start_with(
            dir,
            &path,
            &["--max-payload-kib", "8192", "--max-memory-mib", "64"],
            &[
                ("WAXOSUIT_LATTICE", self.nats_url.as_str()),
                ("WAXOSUIT_HOST_SEED", self.seeds[i].as_str()),
                ("WAXOSUIT_LATTICE_TRUST_HOSTS", trust.as_str()),
                ("WAXOSUIT_LATTICE_TRUST_ADMINS", self.admin.as_str()),
                ("WAXOSUIT_LATTICE_TIMEOUT_MS", "3000"),
                ("WAXOSUIT_CACHE", cache),
            ],
        )
        .unwrap_or_else(|e| panic!("host {i}: {e}"))
    }
}

/// Retries until the response is 200, for state that settles asynchronously.
fn get_ok(addr: SocketAddr, path: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let got = try_get(addr, path, Duration::from_secs(15));
        if let Some((200, body)) = &got {
            return body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no 200 from {addr}{path} in time; last: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills the host processes when the test ends, passing or not.
struct Reaper(Vec<u32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn kill9(up: &mut Up) {
    Command::new("kill")
        .args(["-KILL", &up.child.id().to_string()])
        .status()
        .unwrap();
    up.child.wait().unwrap();
}

#[test]
fn three_hosts_serve_as_one_and_survive_restarts_failures_and_forgeries() {
    let nats = NatsServer::start().expect("nats-server (apt-get install nats-server)");
    let dir = Dir::new();
    let hosts = Hosts::new(nats.url(), &dir);
    let counter = dir.actor(
        waxosuit_test_fixtures::example("kvcounter"),
        "counter",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let echo = dir.actor(waxosuit_test_fixtures::wapc_echo(), "echo", &[]);

    // `lattice watch` sees everything from here on.
    let (mut watch, watched) = hosts.watch();
    let mut reaper = Reaper(vec![watch.id()]);

    let c_manifest = "capabilities:\n  - id: wascc:keyvalue\n";
    let mut c = hosts.up(&dir, 2, c_manifest);
    let mut b = hosts.up(
        &dir,
        1,
        &format!(
            "actors: [ ./counter.wasm, ./echo.wasm ]\n\
             capabilities:\n  - {{ id: wascc:keyvalue, provider: lattice }}\n\
             bindings:\n  - {{ actor: {counter}, capability: wascc:keyvalue }}\n"
        ),
    );
    let a = hosts.up(
        &dir,
        0,
        &format!(
            "capabilities:\n  - id: wascc:http_server\n\
             bindings:\n  - {{ actor: {counter}, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n"
        ),
    );
    reaper.0.extend([a.child.id(), b.child.id(), c.child.id()]);
    assert!(
        a.summary
            .iter()
            .any(|l| l.contains("lattice") && l.contains(&hosts.keys[0])),
        "{:?}",
        a.summary
    );
    let addr = a.addr(&counter);

    // A (HTTP) → B (actor) → C (key-value).
    assert_eq!(
        get_ok(addr, "/", Duration::from_secs(20)),
        r#"{"counter":1}"#
    );
    assert_eq!(
        get_ok(addr, "/", Duration::from_secs(5)),
        r#"{"counter":2}"#
    );

    let out = hosts.tool(&["--json", "list", "hosts"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    let out = hosts.tool(&["list", "bindings"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("wascc:keyvalue") && text.contains("wascc:http_server"),
        "{text}"
    );
    assert!(text.contains("2 binding(s)"), "{text}");

    // Without a key, with a key the hosts do not trust, or believing no
    // host, the tool achieves nothing; the actor keeps serving.
    let stop_echo = [
        "stop",
        "actor",
        echo.as_str(),
        "--host",
        hosts.keys[1].as_str(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["lattice", "--url", &nats.url()])
        .args(stop_echo)
        .env_remove("WAXOSUIT_LATTICE_SEED")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--seed") && err.contains("--lattice-trust-admin"),
        "{err}"
    );
    let stranger_seed = dir.path("stranger.nk");
    std::fs::write(
        &stranger_seed,
        KeyPair::generate(KeyKind::User).seed().unwrap(),
    )
    .unwrap();
    let out = hosts.tool_as(&stranger_seed, &stop_echo);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no answer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.wait_for_log("refused a lattice message", 1);
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["lattice", "--url", &nats.url(), "list", "actors"])
        .env("WAXOSUIT_LATTICE_SEED", &hosts.admin_seed)
        .env_remove("WAXOSUIT_LATTICE_TRUST_HOSTS")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--lattice-trust-host"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(get_ok(addr, "/", Duration::from_secs(5)).contains("counter"));

    // A forged invocation (unknown host key) is refused and logged by B.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let subjects = waxosuit_lattice::protocol::Subjects::new("waxosuit").unwrap();
        // Hosts answer only into the lattice's inboxes; an attacker picks
        // its inboxes there.
        let nats_client = async_nats::ConnectOptions::new()
            .custom_inbox_prefix(subjects.inbox_prefix())
            .connect(nats.url())
            .await
            .unwrap();
        let stranger = KeyPair::generate(KeyKind::Server);
        // Calls go to the serving host's own subject: B's for the echo actor.
        let subject = subjects.at(&subjects.actor(&echo), &hosts.keys[1]);
        let inbox = nats_client.new_inbox();
        let mut answers = nats_client.subscribe(inbox.clone()).await.unwrap();
        let mut inv = WireInvocation {
            v: PROTOCOL_VERSION,
            id: "f1".into(),
            origin: WireEntity::Host(stranger.public_key()),
            target: WireEntity::Actor(echo.clone()),
            operation: "echo".into(),
            msg: b"x".to_vec(),
            encoded_claims: String::new(),
            host_id: stranger.public_key(),
            chunked: None,
            session: None,
            session_token: None,
        };
        inv.encoded_claims = antiforgery::sign(
            &stranger,
            &inv,
            Binding {
                subject: &subject,
                reply: &inbox,
            },
        )
        .unwrap();
        nats_client
            .publish_with_reply(subject, inbox, protocol::encode(&inv).unwrap().into())
            .await
            .unwrap();
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut answers),
        )
        .await
        .unwrap()
        .unwrap();
        let response: protocol::Response = protocol::decode("response", &reply.payload).unwrap();
        assert_eq!(response.error.unwrap().kind, ErrorKind::Forged);
    });
    b.wait_for_log("not on this host's trust list", 1);

    // 5 MiB to the echo actor on B and back, from a fourth (in-process) host.
    rt.block_on(async {
        let host = HostBuilder::new()
            .default_limits(Limits::default())
            .build()
            .unwrap();
        let identity = KeyPair::from_seed(&hosts.seeds[3]).unwrap();
        let trust = TrustPolicy::hosts(&hosts.keys).unwrap();
        let mut config = LatticeConfig::new(nats.url(), identity, trust);
        config.timeout = Duration::from_secs(10);
        let d = Lattice::join(host, config).await.unwrap();
        let big: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 253) as u8).collect();
        let back = d.call_actor(&echo, "echo", big.clone()).await.unwrap();
        assert!(
            back == big,
            "the 5 MiB payload came back altered ({} bytes)",
            back.len()
        );
        d.leave().await;
    });

    // Restart the provider's host: the binding is re-established.
    kill9(&mut c);
    let c2 = hosts.up(&dir, 2, c_manifest);
    reaper.0.push(c2.child.id());
    let body = get_ok(addr, "/", Duration::from_secs(20));
    assert_eq!(
        body, r#"{"counter":1}"#,
        "a fresh in-memory store behind the same binding"
    );

    // A replica on C, started by command from a registry reference (the
    // command pulls it, the host verifies it); then B dies.
    let c_id = hosts.keys[2].clone();
    let registry = RegistryServer::start().unwrap();
    let reference = format!("oci://{}/lattice/counter:1.0.0", registry.host());
    let pushed = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args([
            "push",
            "counter.wasm",
            &reference,
            "--insecure-registry",
            &registry.host(),
        ])
        .current_dir(dir.0.path())
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let cache = dir.path("registry-cache");
    let out = hosts.tool(&[
        "start",
        "actor",
        &reference,
        "--host",
        &c_id,
        "--insecure-registry",
        &registry.host(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("started actor counter"));
    std::thread::sleep(Duration::from_millis(500));
    kill9(&mut b);
    let mut failures = 0;
    for _ in 0..10 {
        match try_get(addr, "/", Duration::from_secs(15)) {
            Some((200, _)) => {}
            _ => failures += 1,
        }
    }
    assert!(
        failures <= 1,
        "{failures} of 10 requests failed after B died"
    );

    let _ = watch.kill();
    let _ = watch.wait();
    let seen = watched.lock().unwrap().clone();
    for kind in [
        "host_started",
        "actor_started",
        "provider_started",
        "binding_set",
    ] {
        assert!(
            seen.contains(kind),
            "`lattice watch` missed {kind}:\n{seen}"
        );
    }
    drop((a, c2));
}

/// A lattice URL with a password belongs in `WAXOSUIT_LATTICE`: given on
/// the command line (where the process list shows it) it is warned about,
/// and `--help` never prints the variable's value.
#[test]
fn a_lattice_url_with_a_password_is_kept_off_the_command_line_and_out_of_help() {
    let url = "nats://waxosuit-admin:S3CRET@127.0.0.1:9";
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["lattice", "--url", url, "list", "hosts"])
        .env_remove("WAXOSUIT_LATTICE")
        .env_remove("WAXOSUIT_LATTICE_SEED")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("carries a password") && err.contains("WAXOSUIT_LATTICE"),
        "{err}"
    );
    assert!(!err.contains("S3CRET"), "{err}");

    // From the environment: no warning, and help hides the value.
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["lattice", "list", "hosts"])
        .env("WAXOSUIT_LATTICE", url)
        .env_remove("WAXOSUIT_LATTICE_SEED")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("carries a password"), "{err}");
    for args in [&["lattice", "--help"][..], &["up", "--help"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .args(args)
            .env("WAXOSUIT_LATTICE", url)
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "https://u:S3CRET@collector:4318",
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("WAXOSUIT_LATTICE"), "{args:?}: {help}");
        assert!(!help.contains("S3CRET"), "{args:?}: {help}");
    }
}

/// A host stopped before it was ready has joined the lattice already (it
/// joins first): it leaves, so the other hosts hear `host_stopped` at once
/// instead of finding out from calls that time out. Here its only actor is
/// pulled from a registry that accepts and never answers.
#[test]
fn a_host_stopped_before_it_was_ready_leaves_the_lattice() {
    let nats = NatsServer::start().expect("nats-server (apt-get install nats-server)");
    let dir = Dir::new();
    let hosts = Hosts::new(nats.url(), &dir);
    let (mut watch, watched) = hosts.watch();
    let mut reaper = Reaper(vec![watch.id()]);

    let stuck = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let registry = stuck.local_addr().unwrap();
    let pulling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let pulling = Arc::clone(&pulling);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in stuck.incoming().flatten() {
                pulling.store(true, std::sync::atomic::Ordering::SeqCst);
                held.push(stream);
            }
        });
    }
    let manifest = dir.manifest_named(
        "early.yaml",
        &format!("actors: [ \"oci://{registry}/stuck:1.0\" ]\n"),
    );
    let trust = hosts.keys.join(",");
    let mut up = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .arg("up")
        .arg(&manifest)
        .args(dir.trust_args())
        .args(["--insecure-registry", &registry.to_string(), "--no-cache"])
        .env("WAXOSUIT_KEYS", dir.keys())
        .env("WAXOSUIT_LATTICE", nats.url())
        .env("WAXOSUIT_HOST_SEED", &hosts.seeds[0])
        .env("WAXOSUIT_LATTICE_TRUST_HOSTS", &trust)
        .current_dir(dir.0.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    reaper.0.push(up.id());
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pulling.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the host never started pulling");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Joined (the host joins before it pulls), as `watch` tells.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !watched.lock().unwrap().contains("host_started") {
        assert!(
            Instant::now() < deadline,
            "no host_started:\n{}",
            watched.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !watched.lock().unwrap().contains("host_stopped") {
        assert!(
            Instant::now() < deadline,
            "no host_stopped:\n{}",
            watched.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(up.wait().unwrap().success());
    let _ = watch.kill();
    let _ = watch.wait();
}
