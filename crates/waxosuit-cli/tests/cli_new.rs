//! `waxosuit new actor`: a project is scaffolded, then the commands the CLI
//! printed are run as a user would paste them (native test, wasm build,
//! keys, signing), the signed actor is served by the printed `waxosuit run`
//! line and by the printed `waxosuit up` on its own manifest (each on a free
//! port) and answers over HTTP. The failure paths write nothing.
//!
//! The printed commands are run without a shell, split on whitespace (the
//! temporary paths here need no quoting), with `waxosuit` resolved to the
//! binary under test. The generated Rust project's `target` is a link into
//! this repository's target directory, so its SDK dependencies are built
//! once, not on every run.

mod support;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{Dir, Up, get};

const WAXOSUIT: &str = env!("CARGO_BIN_EXE_waxosuit");

/// Runs `waxosuit new ARGS` in `dir`.
fn new_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(WAXOSUIT)
        .arg("new")
        .args(args)
        .current_dir(dir)
        .env_remove("WAXOSUIT_SDK_PATH")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The commands under "Next": every indented line that is not a comment.
fn printed_commands(stdout: &str) -> Vec<String> {
    let (_, next) = stdout
        .split_once("\nNext")
        .unwrap_or_else(|| panic!("no next steps printed:\n{stdout}"));
    next.lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The one printed command containing `needle`.
fn command_with<'a>(commands: &'a [String], needle: &str) -> &'a str {
    let found: Vec<&String> = commands.iter().filter(|c| c.contains(needle)).collect();
    assert_eq!(found.len(), 1, "`{needle}` in {commands:#?}");
    found[0]
}

/// A printed command as (leading `VAR=value` assignments, program and
/// arguments).
fn split(command: &str) -> (Vec<(String, String)>, Vec<String>) {
    assert!(
        !command.contains(['\'', '"', '\\', '$', '|', ';', '&']),
        "a command this test cannot run without a shell: {command}"
    );
    let mut words = command.split_whitespace().peekable();
    let mut env = Vec::new();
    while let Some((key, value)) = words.peek().and_then(|w| w.split_once('=')) {
        env.push((key.to_string(), value.to_string()));
        words.next();
    }
    (env, words.map(str::to_string).collect())
}

/// A `Command` for a printed command, run in `dir` with an environment
/// free of whatever the outer cargo and the caller's shell exported.
fn prepare(dir: &Path, command: &str, keys: &Path) -> Command {
    let (env, argv) = split(command);
    let program = match argv[0].as_str() {
        // The commands name the binary that printed them, or `waxosuit`
        // when that is on PATH; either way, the one under test.
        "waxosuit" => PathBuf::from(WAXOSUIT),
        other => PathBuf::from(other),
    };
    let mut cmd = Command::new(program);
    cmd.args(&argv[1..]).current_dir(dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let outer_build = [
            "CARGO_TARGET_DIR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_CRATE_NAME",
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
        ]
        .contains(&key.as_ref())
            || ["CARGO_BUILD_", "CARGO_PKG_", "CARGO_TARGET_"]
                .iter()
                .any(|p| key.starts_with(p));
        if outer_build || key.starts_with("WAXOSUIT_") {
            cmd.env_remove(key.as_ref());
        }
    }
    // Keys and compiled modules stay in this test's directory whatever a
    // command leaves to its defaults; the command's own settings win.
    cmd.env("WAXOSUIT_KEYS", keys)
        .env("WAXOSUIT_CACHE", dir.join("cache"))
        .envs(env);
    cmd
}

/// Runs a printed command to completion; panics with its output on failure.
fn run_printed(dir: &Path, command: &str, keys: &Path) -> String {
    let started = std::time::Instant::now();
    let output = prepare(dir, command, keys)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    eprintln!("{:>6.1}s  {command}", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "`{command}` failed ({}):\n{}\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout) + &text(&output.stderr)
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Serves the project with its printed `waxosuit up` command on a free
/// port, checks the greeting and stops the host with SIGTERM.
fn serve_and_greet(dir: &Dir, commands: &[String], name: &str, keys: &Path) {
    let (mut env, argv) = split(command_with(commands, " up "));
    assert_eq!(argv.len(), 3, "{argv:?}");
    assert_eq!(argv[1], "up");
    let port = free_port().to_string();
    env.push(("PORT".into(), port.clone()));
    let keys = keys.to_string_lossy().into_owned();
    let mut all_env: Vec<(&str, &str)> = vec![("WAXOSUIT_KEYS", keys.as_str())];
    all_env.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // Trust only the keys directory the commands name: no --trusted-issuer.
    let up = Up::start_trusting(dir, &PathBuf::from(&argv[2]), &[], &all_env).unwrap();
    let addr = up.addr(name);
    assert_eq!(
        addr.port().to_string(),
        port,
        "PORT did not override the manifest's default"
    );
    let (status, body) = get(addr, "/hello/from-test?x=1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("Hello from {name}! You asked for /hello/from-test\n")
    );
    let (stopped, _, log) = up.terminate();
    assert!(stopped, "`waxosuit up` did not exit 0 on SIGTERM:\n{log}");
}

/// A host started by a test, killed if the test fails before stopping it.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Serves the project with its printed `waxosuit run` command, `PORT`
/// overridden to a free port, checks the greeting and stops the host with
/// SIGTERM, which must end it with status 0.
fn run_and_greet(root: &Path, commands: &[String], name: &str, keys: &Path) {
    let command = command_with(commands, "waxosuit run ");
    let (env, argv) = split(command);
    assert_eq!(argv.len(), 3, "{argv:?}");
    assert_eq!(argv[1], "run");
    assert!(
        env.iter().any(|(key, _)| key == "PORT"),
        "the printed `run` sets no PORT: {command}"
    );
    let port = free_port();
    let mut cmd = prepare(root, command, keys);
    let child = cmd
        .env("PORT", port.to_string())
        // Generous: CI runs these tests in parallel on two cores.
        .env("WAXOSUIT_DRAIN_TIMEOUT", "180")
        .env("RUST_LOG", "warn,waxosuit=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let mut host = Host(child);
    let stdout = host.0.stdout.take().unwrap();
    let stderr = host.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut summary = Vec::new();
    let mut addr: Option<SocketAddr> = None;
    loop {
        match lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) if line.starts_with("Ready.") => break,
            Ok(line) => {
                if let Some((_, url)) = line.split_once("listening on http://") {
                    addr = Some(url.trim().parse().unwrap());
                }
                summary.push(line);
            }
            Err(_) => {
                let _ = host.0.kill();
                let status = host.0.wait().unwrap();
                panic!(
                    "`{command}` did not start ({status}):\n{}\n{}",
                    summary.join("\n"),
                    log.join().unwrap()
                );
            }
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no listening address in {summary:#?}"));
    assert_eq!(
        addr.port(),
        port,
        "PORT did not override the printed one: {summary:#?}"
    );
    let (status, body) = get(addr, "/hello/from-run?x=1");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        format!("Hello from {name}! You asked for /hello/from-run\n")
    );
    let pid = host.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let status = host.0.wait().unwrap();
    let rest: Vec<String> = lines.iter().collect();
    let log = log.join().unwrap();
    assert!(
        status.success(),
        "`{command}` did not exit 0 on SIGTERM ({status}):\n{}\n{log}",
        rest.join("\n")
    );
    assert!(rest.iter().any(|l| l.starts_with("Stopped.")), "{rest:#?}");
}

/// Where the generated Rust project builds: beside this test binary's own
/// build output, shared across runs.
fn shared_target_dir() -> PathBuf {
    let dir = Path::new(WAXOSUIT)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("new-actor-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_new_rust_actor_tests_builds_signs_and_serves() {
    let dir = Dir::new();
    let root = dir.0.path();
    let out = new_in(root, &["actor", "my-actor", "--lang", "rust"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "README.md",
        "waxosuit.yaml",
        ".gitignore",
    ] {
        assert!(
            stdout.contains(&format!("my-actor/{file}")),
            "{file}:\n{stdout}"
        );
    }
    let cargo_toml = std::fs::read_to_string(root.join("my-actor/Cargo.toml")).unwrap();
    assert!(cargo_toml.contains("name = \"my-actor\""), "{cargo_toml}");
    assert!(!cargo_toml.contains("{{"), "{cargo_toml}");

    std::os::unix::fs::symlink(shared_target_dir(), root.join("my-actor/target")).unwrap();
    let commands = printed_commands(&stdout);
    let keys = dir.keys();

    let tested = run_printed(root, command_with(&commands, "cargo test"), &keys);
    assert!(
        tested.contains("greets_with_the_request_path ... ok"),
        "{tested}"
    );
    let build = command_with(&commands, "cargo build");
    assert!(build.contains("--target wasm32-unknown-unknown"), "{build}");
    let started = std::time::Instant::now();
    let built = prepare(root, build, &keys).output().unwrap();
    eprintln!("{:>6.1}s  {build}", started.elapsed().as_secs_f64());
    assert!(
        built.status.success(),
        "`{build}` failed (is the target installed? `rustup target add \
         wasm32-unknown-unknown`):\n{}",
        text(&built.stderr)
    );
    for needle in [
        "keys gen account",
        "keys gen module",
        "mkdir",
        "claims sign",
    ] {
        run_printed(root, command_with(&commands, needle), &keys);
    }
    // The keys went where the commands said, not to the keystore.
    assert!(root.join("my-actor/keys/account.nk").is_file());
    assert!(!keys.exists(), "something used the default keys directory");
    let inspected = run_printed(
        root,
        "WAXOSUIT_KEYS=my-actor/keys waxosuit claims inspect my-actor/build/my-actor_signed.wasm",
        &keys,
    );
    assert!(inspected.contains("my-actor"), "{inspected}");

    run_and_greet(root, &commands, "my-actor", &keys);
    serve_and_greet(&dir, &commands, "my-actor", &root.join("my-actor/keys"));
}

#[test]
fn a_new_assemblyscript_actor_builds_signs_and_serves() {
    let dir = Dir::new();
    let root = dir.0.path();
    // The Rust SDK is not needed, so a bad SDK setting must not matter.
    let out = Command::new(WAXOSUIT)
        .args(["new", "actor", "as-actor", "--lang", "assemblyscript"])
        .env("WAXOSUIT_SDK_PATH", root.join("no-such-checkout"))
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    let package = std::fs::read_to_string(root.join("as-actor/package.json")).unwrap();
    assert!(package.contains("\"name\": \"as-actor\""), "{package}");

    let commands = printed_commands(&stdout);
    let keys = dir.keys();
    let install = command_with(&commands, "npm ci");
    assert!(install.contains("--ignore-scripts"), "{install}");
    for needle in [
        "npm ci",
        "npm run build",
        "keys gen account",
        "keys gen module",
        "claims sign",
    ] {
        run_printed(root, command_with(&commands, needle), &keys);
    }
    // The keys went where the commands said, not to the keystore, and the
    // project ignores them.
    assert!(root.join("as-actor/keys/account.nk").is_file());
    assert!(root.join("as-actor/keys/as_actor_module.nk").is_file());
    assert!(!keys.exists(), "something used the default keys directory");
    let ignored = std::fs::read_to_string(root.join("as-actor/.gitignore")).unwrap();
    assert!(ignored.lines().any(|l| l == "keys/"), "{ignored}");

    run_and_greet(root, &commands, "as-actor", &keys);
    serve_and_greet(&dir, &commands, "as-actor", &root.join("as-actor/keys"));
}

/// Every file and directory under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A failed `new`: exit status, the error's words, and nothing written.
fn assert_refused(root: &Path, args: &[&str], code: i32, words: &[&str]) {
    let before = tree(root);
    let out = new_in(root, args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    for word in words {
        assert!(stderr.contains(word), "{args:?}: {word:?} not in {stderr}");
    }
    assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    assert_eq!(tree(root), before, "{args:?} wrote something");
}

#[test]
fn refuses_an_existing_directory_a_bad_name_and_an_unknown_language() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("work");
    std::fs::create_dir_all(root.join("taken")).unwrap();
    std::fs::write(root.join("taken/notes.txt"), "mine").unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), root.join("link")).unwrap();

    assert_refused(
        &root,
        &["actor", "taken"],
        1,
        &[
            "taken already exists and is not an empty directory",
            "nothing was written",
        ],
    );
    assert_refused(&root, &["actor", "link"], 1, &["link already exists"]);
    assert_refused(
        &root,
        &["actor", "My Actor"],
        1,
        &["`My Actor` cannot name an actor", "try `my-actor`"],
    );
    for name in ["../escape", "a/b", "/tmp/abs", ".hidden", "9lives"] {
        assert_refused(&root, &["actor", name], 1, &["cannot name an actor"]);
    }
    assert!(!dir.path().join("escape").exists());
    assert_refused(&root, &["actor", &"a".repeat(65)], 1, &["more than 64"]);
    assert_refused(
        &root,
        &["actor", "ok", "--lang", "cobol"],
        2,
        &["invalid value 'cobol'", "rust", "assemblyscript"],
    );
    assert_refused(
        &root,
        &["actor", "ok", "--dir", "missing"],
        1,
        &["cannot use --dir missing", "create it first"],
    );
    let not_a_checkout = dir.path().join("not-sdk");
    std::fs::create_dir(&not_a_checkout).unwrap();
    let sdk = not_a_checkout.to_string_lossy().into_owned();
    assert_refused(
        &root,
        &["actor", "ok", "--sdk", &sdk],
        1,
        &[
            "is not a Waxosuit source checkout",
            "crates/waxosuit-actor/Cargo.toml",
            "--sdk",
        ],
    );
    let from_env = Command::new(WAXOSUIT)
        .args(["new", "actor", "ok"])
        .env("WAXOSUIT_SDK_PATH", &not_a_checkout)
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        text(&from_env.stderr).contains("is not a Waxosuit source checkout"),
        "{}",
        text(&from_env.stderr)
    );
    assert!(!root.join("ok").exists());
}

#[test]
fn fills_an_empty_directory_under_dir_and_prints_paths_from_here() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("projects/hello-kv")).unwrap();
    let out = new_in(dir.path(), &["actor", "hello-kv", "--dir", "projects"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lib = std::fs::read_to_string(dir.path().join("projects/hello-kv/src/lib.rs")).unwrap();
    assert!(lib.contains("Hello from hello-kv!"), "{lib}");
    let cargo_toml =
        std::fs::read_to_string(dir.path().join("projects/hello-kv/Cargo.toml")).unwrap();
    let sdk = std::fs::canonicalize(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).unwrap();
    assert!(
        cargo_toml.contains(&format!(
            "path = \"{}/crates/waxosuit-actor\"",
            sdk.display()
        )),
        "{cargo_toml}"
    );
    let commands = printed_commands(&stdout);
    assert!(
        command_with(&commands, "cargo build")
            .ends_with("--manifest-path projects/hello-kv/Cargo.toml"),
        "{commands:#?}"
    );
    assert!(
        command_with(&commands, "claims sign")
            .contains("projects/hello-kv/target/wasm32-unknown-unknown/release/hello_kv.wasm"),
        "{commands:#?}"
    );
    // No staging directory is left beside the project.
    let left: Vec<OsString> = std::fs::read_dir(dir.path().join("projects"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["hello-kv"]);
}
