//! `waxosuit run` and the twelve-factor side of `waxosuit up`: one signed
//! actor configured from the environment alone, `$PORT`, `/readyz` through
//! start and drain, exit 0 after a clean drain, and nothing written outside
//! the cache directory.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Dir, Up, get, try_get};

const PATIENCE: Duration = Duration::from_secs(120);

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `waxosuit run` configured from the environment only (no flag, no
/// argument), with stdout and stderr collected.
struct Run {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Run {
    fn start(env: &[(&str, String)], cwd: &Path) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn,waxosuit=info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let sink = Arc::new(Mutex::new(String::new()));
            let writer = Arc::clone(&sink);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = writer.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
            sink
        };
        let out = collect(Box::new(child.stdout.take().unwrap()));
        let err = collect(Box::new(child.stderr.take().unwrap()));
        Run { child, out, err }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.out.lock().unwrap(),
            self.err.lock().unwrap()
        )
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen in time\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The `/spin?n=` count that keeps the probe actor busy for about `secs`
/// seconds on this machine now, measured on a short spin first.
fn spin_for(app: SocketAddr, secs: u64) -> u64 {
    const CALIBRATION: u64 = 50_000_000;
    let started = Instant::now();
    assert_eq!(get(app, &format!("/spin?n={CALIBRATION}")).0, 200);
    let per_unit = started.elapsed().as_secs_f64() / CALIBRATION as f64;
    ((secs as f64 / per_unit) as u64).clamp(CALIBRATION, 1_000 * CALIBRATION * secs)
}

/// How many spins the probe actor has started so far.
fn spins(run: &Run) -> usize {
    run.err.lock().unwrap().matches("spin started").count()
}

impl Drop for Run {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn run_serves_one_actor_on_port_turns_unready_while_draining_and_exits_0() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server", "wascc:keyvalue"],
    );
    // A working directory and a home of its own, to see that nothing is
    // written there; the compiled-module cache is the only place it writes.
    let cwd = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let app: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let run = Run::start(
        &[
            (
                "WAXOSUIT_ACTOR",
                dir.path("probe.wasm").display().to_string(),
            ),
            ("PORT", port.to_string()),
            ("WAXOSUIT_ADMIN", admin.to_string()),
            ("WAXOSUIT_TRUSTED_ISSUERS", dir.account().public_key()),
            ("WAXOSUIT_KEYS", dir.keys().display().to_string()),
            ("WAXOSUIT_CACHE", cache.path().display().to_string()),
            ("HOME", home.path().display().to_string()),
            ("TMPDIR", tmp.path().display().to_string()),
            ("WAXOSUIT_DEADLINE_MS", "120000".to_string()),
            // Generous: CI runs tests in parallel on two cores.
            ("WAXOSUIT_DRAIN_TIMEOUT", "180".to_string()),
        ],
        cwd.path(),
    );

    run.wait_for("/readyz answering 200", || {
        try_get(admin, "/readyz", Duration::from_secs(5)).is_some_and(|(code, _)| code == 200)
    });
    assert_eq!(get(app, "/"), (200, "ok".to_string()));
    // The embedded key-value store is bound because the claims grant it.
    assert_eq!(get(app, "/kv"), (200, "1".to_string()));
    assert_eq!(get(app, "/kv"), (200, "2".to_string()));
    let stdout = run.out.lock().unwrap().clone();
    assert!(
        stdout.contains(&format!("listening on http://{app}")),
        "{stdout}"
    );

    // A request that takes a while, surely in flight at SIGTERM.
    let n = spin_for(app, 2);
    // Counted after the calibration: a call that computes for long is
    // restarted on another kind of instance and logs its start again.
    let before = spins(&run);
    let slow = std::thread::spawn(move || get(app, &format!("/spin?n={n}")));
    run.wait_for("the slow request reaching the actor", || {
        spins(&run) > before
    });
    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // While the slow request drains, the host says it wants no traffic.
    run.wait_for("/readyz answering 503 while draining", || {
        try_get(admin, "/readyz", Duration::from_secs(5))
            .is_some_and(|(code, body)| code == 503 && body.starts_with("draining"))
    });
    assert!(
        !slow.is_finished(),
        "the slow request ended before the drain was seen"
    );
    let (code, body) = slow.join().unwrap();
    assert_eq!(code, 200, "the in-flight request was cut: {body}");
    assert!(body.starts_with("done"), "{body}");

    let mut run = run;
    let status = run.child.wait().unwrap();
    assert!(status.success(), "{status}\n{}", run.output());
    assert!(run.out.lock().unwrap().contains("Stopped."));
    assert!(entries(cwd.path()).is_empty(), "{:?}", entries(cwd.path()));
    assert!(
        entries(home.path()).is_empty(),
        "{:?}",
        entries(home.path())
    );
    assert!(entries(tmp.path()).is_empty(), "{:?}", entries(tmp.path()));
    assert!(
        !entries(&cache.path().join("modules")).is_empty(),
        "the compiled module was not cached"
    );
}

#[test]
fn run_refuses_an_actor_not_signed_for_http_and_says_how_to_fix_it() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "quiet",
        &["wascc:keyvalue"],
    );
    let cwd = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["run", "--no-cache", "--trusted-issuer"])
        .arg(dir.account().public_key())
        .arg(dir.path("quiet.wasm"))
        .env("PORT", "0")
        .env("WAXOSUIT_KEYS", dir.keys())
        .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("actor quiet is not signed for wascc:http_server")
            && stderr.contains("--cap wascc:http_server"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_an_actor_from_an_untrusted_issuer() {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    let cwd = tempfile::tempdir().unwrap();
    // Trusts another account: the actor's signature is valid but its
    // issuer is nobody this host trusts.
    let other = Dir::new();
    let output = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(["run", "--no-cache"])
        .arg(dir.path("probe.wasm"))
        .env("PORT", "0")
        .env("WAXOSUIT_TRUSTED_ISSUERS", other.account().public_key())
        .env("WAXOSUIT_KEYS", other.keys())
        .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("untrusted issuer"), "{stderr}");
    assert!(entries(cwd.path()).is_empty());
}

fn two_servers_manifest(dir: &Dir, second_port: &str) -> std::path::PathBuf {
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    dir.manifest(&format!(
        r#"
actors: [ ./probe.wasm ]
capabilities:
  - id: wascc:http_server
  - {{ id: wascc:http_server, binding_name: second }}
bindings:
  - {{ actor: probe, capability: wascc:http_server, values: {{ ADDRESS: 127.0.0.1 }} }}
  - {{ actor: probe, capability: wascc:http_server, binding: second, values: {{ ADDRESS: 127.0.0.1{second_port} }} }}
"#
    ))
}

#[test]
fn up_gives_port_to_the_http_binding_that_names_none() {
    let dir = Dir::new();
    let manifest = two_servers_manifest(&dir, ", PORT: 0");
    let port = free_port();
    let up = Up::start_with(&dir, &manifest, &[], &[("PORT", &port.to_string())]).unwrap();
    let ports: Vec<u16> = up.listening.iter().map(|(_, a)| a.port()).collect();
    assert_eq!(ports.len(), 2, "{:?}", up.summary);
    assert_eq!(ports[0], port, "{:?}", up.summary);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(get(addr, "/"), (200, "ok".to_string()));
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
}

#[test]
fn up_with_port_and_two_open_http_bindings_refuses_to_guess() {
    let dir = Dir::new();
    let manifest = two_servers_manifest(&dir, "");
    let err = match Up::start_with(&dir, &manifest, &[], &[("PORT", "8080")]) {
        Ok(_) => panic!("started with two bindings open to $PORT"),
        Err(err) => err,
    };
    assert!(
        err.contains("$PORT is set but 2 HTTP bindings give no PORT (bindings[0], bindings[1])"),
        "{err}"
    );
    let err = match Up::start_with(&dir, &manifest, &[], &[("PORT", "eighty")]) {
        Ok(_) => panic!("started with PORT=eighty"),
        Err(err) => err,
    };
    assert!(
        err.contains("PORT=`eighty` is not a TCP port number"),
        "{err}"
    );
}

#[test]
fn run_serves_an_actor_pulled_by_reference_and_restarts_from_the_cache() {
    let registry = waxosuit_test_servers::RegistryServer::start().unwrap();
    let host = registry.host();
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("hello"),
        "hello",
        &["wascc:http_server"],
    );
    let reference = format!("oci://{host}/team/hello:1.0");
    let pushed = Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args([
            "push",
            "hello.wasm",
            &reference,
            "--insecure-registry",
            &host,
        ])
        .current_dir(dir.0.path())
        .env("WAXOSUIT_KEYS", dir.keys())
        .env("DOCKER_CONFIG", dir.path("docker"))
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let cwd = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let serve = |pull: &str| {
        let port = free_port();
        let run = Run::start(
            &[
                ("WAXOSUIT_ACTOR", reference.clone()),
                ("PORT", port.to_string()),
                ("WAXOSUIT_INSECURE_REGISTRIES", host.clone()),
                ("WAXOSUIT_PULL", pull.to_string()),
                ("WAXOSUIT_TRUSTED_ISSUERS", dir.account().public_key()),
                ("WAXOSUIT_KEYS", dir.keys().display().to_string()),
                ("WAXOSUIT_CACHE", cache.path().display().to_string()),
                ("DOCKER_CONFIG", dir.path("docker").display().to_string()),
            ],
            cwd.path(),
        );
        let app: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        run.wait_for("the pulled actor answering", || {
            try_get(app, "/", Duration::from_secs(5))
                .is_some_and(|r| r == (200, "Hello from Waxosuit!\n".to_string()))
        });
        let pid = run.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let mut run = run;
        let status = run.child.wait().unwrap();
        assert!(status.success(), "{status}\n{}", run.output());
        run.output()
    };
    let first = serve("missing");
    assert!(first.contains("pulled"), "{first}");
    // A restart with the registry gone: `--pull never` serves from the cache.
    drop(registry);
    serve("never");
    assert!(entries(cwd.path()).is_empty(), "{:?}", entries(cwd.path()));
}

/// `waxosuit run` of the probe actor with extra settings: the process, the
/// actor's address and the admin address, once `/readyz` says ready.
fn probe_run(dir: &Dir, cwd: &Path, extra: &[(&str, &str)]) -> (Run, SocketAddr, SocketAddr) {
    dir.actor(
        waxosuit_test_fixtures::http_probe(),
        "probe",
        &["wascc:http_server"],
    );
    let port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut env = vec![
        (
            "WAXOSUIT_ACTOR",
            dir.path("probe.wasm").display().to_string(),
        ),
        ("PORT", port.to_string()),
        ("WAXOSUIT_ADMIN", admin.to_string()),
        ("WAXOSUIT_TRUSTED_ISSUERS", dir.account().public_key()),
        ("WAXOSUIT_KEYS", dir.keys().display().to_string()),
        ("WAXOSUIT_NO_CACHE", "true".to_string()),
        ("WAXOSUIT_DEADLINE_MS", "120000".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let run = Run::start(&env, cwd);
    let app: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    run.wait_for("/readyz answering 200", || {
        try_get(admin, "/readyz", Duration::from_secs(5)).is_some_and(|(code, _)| code == 200)
    });
    (run, app, admin)
}

fn terminate(run: &Run) {
    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn a_drain_longer_than_the_drain_timeout_exits_non_zero_and_says_so() {
    let dir = Dir::new();
    let cwd = tempfile::tempdir().unwrap();
    let (run, app, _) = probe_run(&dir, cwd.path(), &[("WAXOSUIT_DRAIN_TIMEOUT", "1")]);
    // A request that outlasts the one-second drain by far.
    let n = spin_for(app, 8);
    let before = spins(&run);
    let slow = std::thread::spawn(move || try_get(app, &format!("/spin?n={n}"), PATIENCE));
    run.wait_for("the slow request reaching the actor", || {
        spins(&run) > before
    });
    terminate(&run);
    let mut run = run;
    let status = run.child.wait().unwrap();
    let output = run.output();
    let slow = slow.join().unwrap();
    assert!(
        !status.success(),
        "exited 0 with a request cut ({slow:?}):\n{output}"
    );
    assert!(
        output.contains("in-flight work did not finish within 1 s (--drain-timeout)"),
        "{output}"
    );
    // Whatever the client saw, it was not a completed answer.
    assert!(
        !slow.is_some_and(|(code, body)| code == 200 && body.starts_with("done")),
        "the slow request completed although the drain was cut"
    );
}

#[test]
fn the_shutdown_delay_keeps_serving_while_unready_until_a_second_signal() {
    let dir = Dir::new();
    let cwd = tempfile::tempdir().unwrap();
    // Far longer than the test waits: only the second signal ends it.
    let (run, app, admin) = probe_run(&dir, cwd.path(), &[("WAXOSUIT_SHUTDOWN_DELAY", "600")]);
    terminate(&run);
    run.wait_for("/readyz answering 503", || {
        try_get(admin, "/readyz", Duration::from_secs(5)).is_some_and(|(code, _)| code == 503)
    });
    // Unready, and still serving new connections, as a load balancer that
    // has not yet heard of the stop expects.
    assert_eq!(get(app, "/"), (200, "ok".to_string()));
    assert_eq!(get(app, "/"), (200, "ok".to_string()));
    // A second signal, well after the first: no more waiting.
    std::thread::sleep(Duration::from_secs(1));
    terminate(&run);
    let mut run = run;
    let status = run.child.wait().unwrap();
    let output = run.output();
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output.contains("still serving for 600 s (--shutdown-delay)"),
        "{output}"
    );
    assert!(output.contains("Stopped."), "{output}");
}

#[test]
fn a_second_signal_during_the_drain_stops_at_once_and_says_so() {
    let dir = Dir::new();
    let cwd = tempfile::tempdir().unwrap();
    let (run, app, _) = probe_run(&dir, cwd.path(), &[("WAXOSUIT_DRAIN_TIMEOUT", "600")]);
    let n = spin_for(app, 600);
    let before = spins(&run);
    let _slow = std::thread::spawn(move || try_get(app, &format!("/spin?n={n}"), PATIENCE));
    run.wait_for("the slow request reaching the actor", || {
        spins(&run) > before
    });
    terminate(&run);
    run.wait_for("the drain to begin", || {
        run.out
            .lock()
            .unwrap()
            .contains("draining in-flight requests")
    });
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    terminate(&run);
    let mut run = run;
    let status = run.child.wait().unwrap();
    let output = run.output();
    assert!(!status.success(), "exited 0 with a request cut:\n{output}");
    assert!(
        output.contains("stopped by a second signal before in-flight work had finished"),
        "{output}"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(60),
        "the second signal did not stop it: {:?}",
        signalled.elapsed()
    );
}

#[test]
fn a_stop_signal_during_start_up_ends_it_at_once() {
    // A "registry" that accepts connections and never answers: the pull
    // would wait for its whole timeout (300 s by default).
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for conn in silent.incoming().take(8) {
            open.push(conn);
        }
        open
    });
    let dir = Dir::new();
    let cwd = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let run = Run::start(
        &[
            ("WAXOSUIT_ACTOR", format!("oci://{host}/team/hello:1.0")),
            ("PORT", free_port().to_string()),
            ("WAXOSUIT_INSECURE_REGISTRIES", host.clone()),
            ("WAXOSUIT_TRUSTED_ISSUERS", dir.account().public_key()),
            ("WAXOSUIT_KEYS", dir.keys().display().to_string()),
            ("WAXOSUIT_CACHE", cache.path().display().to_string()),
            ("DOCKER_CONFIG", dir.path("docker").display().to_string()),
        ],
        cwd.path(),
    );
    run.wait_for("the host to start", || {
        run.out.lock().unwrap().contains("Starting Waxosuit host")
    });
    // Give it time to reach the registry and wait on it.
    std::thread::sleep(Duration::from_secs(2));
    let signalled = Instant::now();
    terminate(&run);
    let mut run = run;
    let status = run.child.wait().unwrap();
    let output = run.output();
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "took {:?} to stop",
        signalled.elapsed()
    );
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output.contains("Stopping before the host was ready"),
        "{output}"
    );
    assert!(!output.contains("Ready."), "{output}");
    drop(held);
}
