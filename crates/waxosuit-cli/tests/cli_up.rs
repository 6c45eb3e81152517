//! `waxosuit up` end to end: a real host process serving signed actors over
//! HTTP with the in-memory key-value store.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, embed_claims};

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    /// Signs `module` as `name` with these capabilities into `name.wasm`.
    fn actor(&self, module: &[u8], name: &str, caps: &[&str]) -> String {
        let account = KeyPair::generate(KeyKind::Account);
        let subject = KeyPair::generate(KeyKind::Module);
        let claims = Claims::<Actor>::builder()
            .issuer(account.public_key())
            .subject(subject.public_key())
            .metadata(Actor {
                caps: Some(caps.iter().map(|c| c.to_string()).collect()),
                ..Actor::named(name)
            })
            .build();
        let signed = embed_claims(module, &claims, &account).unwrap();
        std::fs::write(self.path(&format!("{name}.wasm")), signed).unwrap();
        subject.public_key()
    }

    fn manifest(&self, text: &str) -> PathBuf {
        let p = self.path("host.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    /// Actor name → HTTP address, from the startup summary.
    listening: Vec<(String, SocketAddr)>,
}

impl Up {
    fn start(dir: &Dir, manifest: &PathBuf) -> Result<Up, String> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .arg("up")
            .arg(manifest)
            .args(["--no-cache", "--drain-timeout", "20"])
            .env("RUST_LOG", "warn,waxosuit=info")
            .current_dir(dir.0.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut listening = Vec::new();
        loop {
            match lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) if line.starts_with("Ready.") => break,
                Ok(line) => {
                    if let Some((before, url)) = line.split_once("listening on http://") {
                        let name = before
                            .trim()
                            .strip_prefix("binding")
                            .unwrap()
                            .split_whitespace()
                            .next()
                            .unwrap()
                            .to_string();
                        listening.push((name, url.trim().parse().unwrap()));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().unwrap();
                    let err = stderr.join().unwrap();
                    return Err(format!("`waxosuit up` did not start ({status}):\n{err}"));
                }
            }
        }
        Ok(Up {
            child,
            lines,
            stderr,
            listening,
        })
    }

    fn addr(&self, actor: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|(n, _)| n == actor)
            .unwrap_or_else(|| panic!("{actor} is not listening: {:?}", self.listening))
            .1
    }

    /// Sends SIGTERM and waits; returns (exit success, stdout rest, stderr).
    fn terminate(mut self) -> (bool, String, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.try_iter().collect();
        (
            status.success(),
            rest.join("\n"),
            self.stderr.join().unwrap(),
        )
    }
}

/// A minimal HTTP/1.1 GET: (status, body).
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn classic_wascc_actor_counter_runs_unchanged() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::wascc_kvcounter(),
        "classic",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let manifest = dir.manifest(
        r#"
actors: [ ./classic.wasm ]
capabilities:
  - id: wascc:http_server
  - id: wascc:keyvalue
bindings:
  - { actor: classic, capability: wascc:http_server, values: { PORT: 0, ADDRESS: 127.0.0.1 } }
  - { actor: classic, capability: wascc:keyvalue }
"#,
    );
    let up = Up::start(&dir, &manifest).unwrap();
    let addr = up.addr("classic");
    assert_eq!(get(addr, "/counter"), (200, r#"{"counter":1}"#.to_string()));
    assert_eq!(get(addr, "/counter"), (200, r#"{"counter":2}"#.to_string()));
    assert_eq!(get(addr, "/other"), (200, r#"{"counter":1}"#.to_string()));
    assert_eq!(get(addr, "/counter"), (200, r#"{"counter":3}"#.to_string()));
    let (ok, _, _) = up.terminate();
    assert!(ok);
}

fn probe_manifest(dir: &Dir, with_kv_binding: bool) -> PathBuf {
    let kv = if with_kv_binding {
        "  - { actor: probe, capability: wascc:keyvalue }\n"
    } else {
        ""
    };
    dir.manifest(&format!(
        r#"
actors:
  - path: ./probe.wasm
    limits: {{ deadline_ms: 30000, max_instances: 8 }}
capabilities:
  - id: wascc:http_server
  - id: wascc:keyvalue
bindings:
  - {{ actor: probe, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}
{kv}"#
    ))
}

#[test]
fn actor_errors_traps_and_malformed_replies_are_500_and_the_host_serves_on() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let up = Up::start(&dir, &probe_manifest(&dir, true)).unwrap();
    let addr = up.addr("probe");
    assert_eq!(get(addr, "/"), (200, "ok".to_string()));
    assert_eq!(get(addr, "/error").0, 500);
    assert_eq!(get(addr, "/trap").0, 500);
    assert_eq!(get(addr, "/"), (200, "ok".to_string()));
    assert_eq!(get(addr, "/malformed").0, 500);
    assert_eq!(get(addr, "/kv"), (200, "1".to_string()));
    assert_eq!(get(addr, "/kv"), (200, "2".to_string()));
    assert_eq!(get(addr, "/nowhere").0, 404);
    let (ok, _, stderr) = up.terminate();
    assert!(ok);
    assert!(stderr.contains("the probe was asked to fail"), "{stderr}");
    assert!(stderr.contains("trapped"), "{stderr}");
}

#[test]
fn a_missing_binding_is_a_500_whose_log_says_what_to_add() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let up = Up::start(&dir, &probe_manifest(&dir, false)).unwrap();
    assert_eq!(get(up.addr("probe"), "/kv").0, 500);
    let (_, _, stderr) = up.terminate();
    assert!(
        stderr.contains("has no binding to wascc:keyvalue (binding `default`)"),
        "{stderr}"
    );
}

#[test]
fn sigterm_during_load_lets_in_flight_requests_complete() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    let up = Up::start(&dir, &probe_manifest(&dir, false)).unwrap();
    let addr = up.addr("probe");
    // Calibrate a request that takes a while, so it is surely in flight.
    let started = std::time::Instant::now();
    assert_eq!(get(addr, "/spin?n=50000000").0, 200);
    let per_unit = started.elapsed().as_secs_f64() / 50_000_000.0;
    let n = ((1.5 / per_unit) as u64).clamp(50_000_000, 20_000_000_000);

    let requests: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(addr, &format!("/spin?n={n}"))))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, stdout, stderr) = up.terminate();
    for r in requests {
        let (status, body) = r.join().unwrap();
        assert_eq!(status, 200, "an in-flight request was cut: {body}");
        assert!(body.starts_with("done"), "{body}");
    }
    assert!(ok, "{stderr}");
    assert!(stdout.contains("Stopped."), "{stdout}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after stop"
    );
}

#[test]
fn malformed_manifest_is_a_clear_error() {
    let dir = Dir::new();
    let manifest = dir.manifest("actors: [ ./x.wasm ]\nbindngs: []\n");
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .arg("up")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host.yaml"), "{err}");
    assert!(err.contains("bindngs"), "{err}");
    assert!(err.contains("bindings"), "did you mean: {err}");

    // A missing actor file names the entry and what to do.
    let manifest = dir.manifest("actors: [ ./missing.wasm ]\n");
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .arg("up")
        .arg(&manifest)
        .arg("--no-cache")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("actors[0]") && err.contains("missing.wasm"),
        "{err}"
    );

    // An unknown backend names the alternatives.
    let manifest = dir.manifest("capabilities:\n  - { id: wascc:keyvalue, provider: etcd }\n");
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .arg("up")
        .arg(&manifest)
        .arg("--no-cache")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("capabilities[0]") && err.contains("available: memory"),
        "{err}"
    );
}

#[test]
fn binding_a_capability_the_claims_do_not_grant_stops_startup_with_the_reason() {
    let dir = Dir::new();
    let key = dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .arg("up")
        .arg(probe_manifest(&dir, true))
        .arg("--no-cache")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bindings[1]"), "{err}");
    assert!(
        err.contains(&key) && err.contains("wascc:keyvalue"),
        "{err}"
    );
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn redis_backed_counter_survives_a_redis_restart() {
    let mut redis = waxosuit_test_servers::RedisServer::start().unwrap();
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::wascc_kvcounter(),
        "classic",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    let manifest = dir.manifest(&format!(
        r#"
actors: [ ./classic.wasm ]
capabilities:
  - id: wascc:http_server
  - {{ id: wascc:keyvalue, provider: redis }}
bindings:
  - {{ actor: classic, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}
  - {{ actor: classic, capability: wascc:keyvalue, values: {{ URL: "{}" }} }}
"#,
        redis.url()
    ));
    let up = Up::start(&dir, &manifest).unwrap();
    let addr = up.addr("classic");
    assert_eq!(get(addr, "/c"), (200, r#"{"counter":1}"#.to_string()));
    assert_eq!(get(addr, "/c"), (200, r#"{"counter":2}"#.to_string()));

    // Redis dies: requests fail cleanly (500), the host stays up.
    redis.stop();
    for _ in 0..3 {
        assert_eq!(get(addr, "/c").0, 500);
    }
    // Redis is back (empty: it has no persistence): service resumes within 2 s.
    redis.restart().unwrap();
    let back = std::time::Instant::now();
    let mut last = (0, String::new());
    while back.elapsed() < Duration::from_secs(2) {
        last = get(addr, "/c");
        if last.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        last,
        (200, r#"{"counter":1}"#.to_string()),
        "not back within 2 s"
    );
    let (ok, _, stderr) = up.terminate();
    assert!(ok);
    assert!(stderr.contains("unavailable"), "{stderr}");
}
