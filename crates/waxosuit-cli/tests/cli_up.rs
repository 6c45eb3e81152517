//! `waxosuit up` end to end: a real host process serving signed actors over
//! HTTP with the in-memory key-value store.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use support::{Dir, Up, get};

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
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
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
    limits: {{ deadline_ms: 120000, max_instances: 8 }}
capabilities:
  - id: wascc:http_server
  - id: wascc:keyvalue
bindings:
  - {{ actor: probe, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1, DRAIN_TIMEOUT_MS: 120000 }} }}
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

    // Counted after the calibration: a call that computes for long is
    // restarted on another kind of instance and logs its start again.
    let before = up.log.lock().unwrap().matches("spin started").count();
    let requests: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(addr, &format!("/spin?n={n}"))))
        .collect();
    // SIGTERM only once both requests are inside the actor: a connection
    // still in the kernel's accept backlog is (rightly) reset, not drained.
    up.wait_for_log("spin started", before + 2);
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
fn a_long_request_does_not_hold_up_other_connections_on_its_thread() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    // One connection thread, so both connections below are served by it.
    let up = Up::start_with(
        &dir,
        &probe_manifest(&dir, false),
        &["--http-threads", "1"],
        &[],
    )
    .unwrap();
    let addr = up.addr("probe");
    // Calibrated on a short spin: one that ran for the inline patience
    // (50 ms) would move the actor to fiber instances, which yield, and the
    // hand-off below would go untested.
    let started = std::time::Instant::now();
    assert_eq!(get(addr, "/spin?n=2000000").0, 200);
    let per_unit = started.elapsed().as_secs_f64() / 2_000_000.0;
    let n = ((4.0 / per_unit) as u64).clamp(50_000_000, 40_000_000_000);

    let before = up.log.lock().unwrap().matches("spin started").count();
    let spin = std::thread::spawn(move || get(addr, &format!("/spin?n={n}")));
    up.wait_for_log("spin started", before + 1);
    // The spinning inline call hands its thread's worker, and with it the
    // other connections, to another OS thread once it has run for 50 ms;
    // without that, this request would wait for the spin to end.
    assert_eq!(get(addr, "/"), (200, "ok".to_string()));
    assert!(
        !spin.is_finished(),
        "the quick request was served only after the spinning one"
    );
    assert_eq!(spin.join().unwrap().0, 200);
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
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
        .args(dir.trust_args())
        .env("WAXOSUIT_KEYS", dir.keys())
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

/// `up` trusts no issuer implicitly: an actor from an account nobody named
/// stops start-up with the fix; the local keystore's account (what `claims
/// sign` uses, as `scripts/demo.sh` does) and `--allow-any-issuer` (or its
/// environment variable) are the ways in without naming a key.
#[test]
fn up_runs_only_actors_from_trusted_issuers() {
    let dir = Dir::new();
    dir.actor(waxosuit_test_fixtures::wapc_echo(), "echo", &[]);
    let manifest = dir.manifest("actors: [ ./echo.wasm ]\n");

    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .arg("up")
        .arg(&manifest)
        .arg("--no-cache")
        .env("WAXOSUIT_KEYS", dir.keys())
        .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("actors[0]"), "{err}");
    assert!(err.contains("no issuer is trusted"), "{err}");
    assert!(
        err.contains(&format!("--trusted-issuer {}", dir.account().public_key())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Development mode, by flag or by environment.
    for (args, env) in [
        (&["--allow-any-issuer"][..], &[][..]),
        (&[][..], &[("WAXOSUIT_ALLOW_ANY_ISSUER", "1")][..]),
    ] {
        let up = Up::start_trusting(&dir, &manifest, args, env).unwrap();
        assert!(
            up.summary
                .iter()
                .any(|l| l
                    .contains("WARNING: accepting actors and provider archives from ANY issuer")),
            "{:?}",
            up.summary
        );
        let (ok, _, stderr) = up.terminate();
        assert!(ok, "{stderr}");
    }

    // Signed by `waxosuit claims sign` with the keystore: trusted as is.
    std::fs::write(
        dir.path("echo.unsigned.wasm"),
        waxosuit_test_fixtures::wapc_echo(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args([
            "claims",
            "sign",
            "echo.unsigned.wasm",
            "-o",
            "echo.wasm",
            "--name",
            "echo",
        ])
        .current_dir(dir.0.path())
        .env("WAXOSUIT_KEYS", dir.keys())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = Up::start_trusting(&dir, &manifest, &[], &[]).unwrap();
    assert!(
        up.summary
            .iter()
            .any(|l| l.contains("trust") && l.contains("the local keystore's account")),
        "{:?}",
        up.summary
    );
    assert!(!up.summary.iter().any(|l| l.contains("ANY issuer")));
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
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

/// A NATS request over the raw text protocol: (reply body) or None on timeout.
fn nats_request(port: u16, subject: &str, body: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let inbox = format!("_INBOX.test.{}", std::process::id());
    write!(
        s,
        "CONNECT {{\"verbose\":false}}\r\nSUB {inbox} 1\r\nPUB {subject} {inbox} {}\r\n{body}\r\nPING\r\n",
        body.len()
    )
    .ok()?;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(at) = seen.find(&format!("MSG {inbox} 1 ")) {
            let rest = &seen[at..];
            if let Some((header, payload)) = rest.split_once("\r\n") {
                let len: usize = header.rsplit(' ').next()?.parse().ok()?;
                if payload.len() >= len {
                    return Some(payload[..len].to_string());
                }
            }
        }
    }
    None
}

#[test]
fn an_actor_subscribed_over_nats_answers_requests_and_survives_a_nats_restart() {
    let mut nats = waxosuit_test_servers::NatsServer::start().unwrap();
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("messaging-echo"),
        "echo",
        &["wascc:http_server", "wascc:messaging"],
    );
    let manifest = dir.manifest(&format!(
        r#"
actors: [ ./echo.wasm ]
capabilities:
  - id: wascc:http_server
  - {{ id: wascc:messaging, provider: nats }}
bindings:
  - {{ actor: echo, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}
  - {{ actor: echo, capability: wascc:messaging, values: {{ URL: "{}", SUBSCRIPTION: "greet,greet.*" }} }}
"#,
        nats.url()
    ));
    let up = Up::start(&dir, &manifest).unwrap();
    // A plain NATS client asks; the wasm actor answers.
    assert_eq!(
        nats_request(nats.port(), "greet", "hi").as_deref(),
        Some("echo: hi")
    );
    assert_eq!(
        nats_request(nats.port(), "greet.fr", "salut").as_deref(),
        Some("echo: salut")
    );
    // The actor itself requests over NATS (and, being subscribed, answers itself).
    let addr = up.addr("echo");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /ask/greet HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nyou"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("echo: you"), "{response}");

    // NATS restarts on the same port: the subscription comes back.
    nats.stop();
    nats.restart().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut answered = None;
    while std::time::Instant::now() < deadline && answered.is_none() {
        answered = nats_request(nats.port(), "greet", "again");
        if answered.is_none() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(answered.as_deref(), Some("echo: again"));
    let (ok, _, _) = up.terminate();
    assert!(ok);
}

/// Sends a request with a body; (status, body).
fn send(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn blobstore_event_streams_and_http_client_through_example_actors() {
    let redis = waxosuit_test_servers::RedisServer::start().unwrap();
    // A tiny upstream for the HTTP client, on loopback.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in upstream.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            );
        }
    });

    let dir = Dir::new();
    let root = dir.path("blobs");
    for (example, name, caps) in [
        (
            "blob-notes",
            "notes",
            &["wascc:http_server", "wascc:blobstore", "wascc:keyvalue"][..],
        ),
        (
            "event-log",
            "events",
            &["wascc:http_server", "wascc:eventstreams", "wascc:keyvalue"][..],
        ),
        (
            "http-fetch",
            "fetch",
            &["wascc:http_server", "wascc:http_client"][..],
        ),
        (
            "http-fetch",
            "closed",
            &["wascc:http_server", "wascc:http_client"][..],
        ),
    ] {
        dir.actor(waxosuit_test_fixtures::example(example), name, caps);
    }
    let http = |name: &str| {
        format!(
            "  - {{ actor: {name}, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n"
        )
    };
    let manifest = dir.manifest(&format!(
        r#"
actors: [ ./notes.wasm, ./events.wasm, ./fetch.wasm, ./closed.wasm ]
capabilities:
  - id: wascc:http_server
  - {{ id: wascc:blobstore, provider: fs }}
  - {{ id: wascc:eventstreams, provider: redis }}
  - id: wascc:keyvalue
  - id: wascc:http_client
bindings:
{}{}{}{}  - {{ actor: notes, capability: wascc:blobstore, values: {{ ROOT: "{}" }} }}
  - {{ actor: notes, capability: wascc:keyvalue }}
  - {{ actor: events, capability: wascc:eventstreams, values: {{ URL: "{}" }} }}
  - {{ actor: events, capability: wascc:keyvalue }}
  - {{ actor: fetch, capability: wascc:http_client, values: {{ ALLOWED_HOSTS: "127.0.0.1" }} }}
  - {{ actor: closed, capability: wascc:http_client }}
"#,
        http("notes"),
        http("events"),
        http("fetch"),
        http("closed"),
        root.display(),
        redis.url()
    ));
    let up = Up::start(&dir, &manifest).unwrap();

    // Blob store: a 200 KiB note is uploaded in chunks and lands byte-exact.
    let note: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    let (status, body) = send(up.addr("notes"), "PUT", "/notes/n1", &note);
    assert_eq!(status, 201, "{body}");
    assert!(body.contains(r#""chunks":4"#), "{body}");
    assert_eq!(std::fs::read(root.join("notes").join("n1")).unwrap(), note);
    let (status, body) = send(up.addr("notes"), "GET", "/notes/n1", b"");
    assert_eq!((status, body.contains("204800")), (200, true), "{body}");
    // A traversal attempt never leaves ROOT.
    let (status, _) = send(up.addr("notes"), "PUT", "/notes/..", b"x");
    assert_eq!(status, 500);

    // Event streams on Redis.
    for n in ["1", "2"] {
        let (status, body) = send(
            up.addr("events"),
            "POST",
            "/events/orders",
            format!(r#"{{"n":"{n}"}}"#).as_bytes(),
        );
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = send(up.addr("events"), "GET", "/events/orders", b"");
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""n":"1""#) && body.contains(r#""n":"2""#),
        "{body}"
    );

    // HTTP client: allowed upstream answers; a binding without ALLOWED_HOSTS is refused.
    let url = format!("/fetch?url=http://{upstream_addr}/x");
    let (status, body) = send(up.addr("fetch"), "GET", &url, b"");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""status":200"#) && body.contains(r#""bytes":5"#),
        "{body}"
    );
    let (status, body) = send(up.addr("closed"), "GET", &url, b"");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("ALLOWED_HOSTS"), "{body}");
    let (ok, _, _) = up.terminate();
    assert!(ok);
}
