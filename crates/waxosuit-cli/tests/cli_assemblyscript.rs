//! The AssemblyScript example actor (`examples/as-kvcounter`) built from
//! source with its pinned npm toolchain, signed with `waxosuit claims sign`,
//! and served by `waxosuit up`: the proof that a non-Rust waPC guest runs
//! on this host as it is documented to.
//!
//! Node.js and npm are required: without them the test fails and says so,
//! rather than skipping and passing silently.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Dir, Up, get};

const NAME: &str = "as-kvcounter";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/as-kvcounter")
}

/// Copies the example's sources: not `node_modules` or `build`, so the
/// test installs from the committed lockfile and compiles from scratch.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "node_modules" || name == "build" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_sources(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a Node.js tool, failing with what to install when it is missing.
fn tool(program: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): this test builds examples/as-kvcounter with \
                 Node.js (18 or later) and npm (9 or later); install both and put them on PATH"
            )
        });
    assert!(
        out.status.success(),
        "`{program} {}` failed in {} ({}):\n{}\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn waxosuit(dir: &Dir, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(args)
        .current_dir(dir.0.path())
        .env("WAXOSUIT_KEYS", dir.keys())
        .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
        .output()
        .unwrap()
}

/// Builds the example in `dir` and signs it with keys generated into the
/// directory's keystore; returns the example's copy.
fn build_and_sign(dir: &Dir) -> PathBuf {
    let project = dir.path(NAME);
    copy_sources(&example_dir(), &project);
    // `node` first: npm without node fails with a less direct message.
    tool("node", &["--version"], &project);
    // As the README says: none of the pinned packages needs install scripts.
    tool(
        "npm",
        &["ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        &project,
    );
    tool("npm", &["run", "build"], &project);
    assert!(
        project.join("build/as_kvcounter.wasm").is_file(),
        "`npm run build` did not write build/as_kvcounter.wasm"
    );

    let out = waxosuit(
        dir,
        &[
            "claims",
            "sign",
            &format!("{NAME}/build/as_kvcounter.wasm"),
            "--output",
            &format!("{NAME}/build/as_kvcounter_signed.wasm"),
            "--name",
            NAME,
            "--cap",
            "wascc:http_server",
            "--cap",
            "wascc:keyvalue",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        dir.keys().join("account.nk").is_file(),
        "`claims sign` did not generate the account key in the keys directory"
    );
    project
}

#[test]
fn the_assemblyscript_counter_builds_with_npm_and_counts_per_path_under_up() {
    let dir = Dir::new();
    let project = build_and_sign(&dir);

    // The health probe the host sends every actor: an actor that did not
    // register it would fail here ("Could not find function").
    let health_request = [
        0x81, 0xab, b'p', b'l', b'a', b'c', b'e', b'h', b'o', b'l', b'd', b'e', b'r', 0xc2,
    ];
    std::fs::write(dir.path("health.msgpack"), health_request).unwrap();
    let out = waxosuit(
        &dir,
        &[
            "call",
            &format!("{NAME}/build/as_kvcounter_signed.wasm"),
            "HealthRequest",
            "--data-file",
            "health.msgpack",
            "--no-cache",
        ],
    );
    assert!(
        out.status.success(),
        "HealthRequest failed: {}",
        text(&out.stderr)
    );

    // The example's own manifest, on a port the kernel picks, through the
    // variables the host itself reads.
    let up = Up::start_with(
        &dir,
        &project.join("manifest.yaml"),
        &[],
        &[("PORT", "0"), ("WAXOSUIT_HTTP_ADDRESS", "127.0.0.1")],
    )
    .unwrap();
    let addr = up.addr(NAME);
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_ne!(
        addr.port(),
        8080,
        "PORT did not override the manifest's default"
    );
    assert_eq!(get(addr, "/a"), (200, r#"{"counter":1}"#.to_string()));
    assert_eq!(get(addr, "/a"), (200, r#"{"counter":2}"#.to_string()));
    assert_eq!(get(addr, "/b"), (200, r#"{"counter":1}"#.to_string()));

    // Paths up to 256 bytes count; a longer one is refused before it can
    // become a key, and does not count.
    let longest = format!("/{}", "p".repeat(255));
    assert_eq!(get(addr, &longest), (200, r#"{"counter":1}"#.to_string()));
    let too_long = format!("{longest}p");
    let (status, body) = get(addr, &too_long);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body, "as-kvcounter: the path is longer than 256 bytes\n");
    let (status, body) = get(addr, &format!("/{}", "q".repeat(60 * 1024)));
    assert_eq!(status, 400, "{body}");
    assert_eq!(get(addr, &longest), (200, r#"{"counter":2}"#.to_string()));
    let (ok, stdout, stderr) = up.terminate();
    assert!(
        ok,
        "`waxosuit up` did not exit 0 on SIGTERM:\n{stdout}\n{stderr}"
    );

    // Without a key-value binding the store call fails: the actor answers
    // 500 itself instead of trapping, with a body that keeps the host's
    // reason from the client; the reason goes to the host's log.
    let manifest = dir.manifest(&format!(
        r#"
actors: [ ./{NAME}/build/as_kvcounter_signed.wasm ]
capabilities:
  - id: wascc:http_server
bindings:
  - {{ actor: {NAME}, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}
"#
    ));
    let up = Up::start(&dir, &manifest).unwrap();
    let (status, body) = get(up.addr(NAME), "/a");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body, "key-value store unavailable\n");
    const LOGGED: &str = "as-kvcounter: the key-value store (wascc:keyvalue) failed: ";
    up.wait_for_log(LOGGED, 1);
    let (ok, _, stderr) = up.terminate();
    assert!(ok, "{stderr}");
    // The host's reason, in the log line and nowhere in the answer.
    let reason = stderr
        .lines()
        .find_map(|line| line.split_once(LOGGED))
        .map(|(_, reason)| reason.trim())
        .unwrap();
    assert!(reason.contains("no binding to wascc:keyvalue"), "{stderr}");
    assert!(
        !body.contains("wascc:keyvalue") && !body.contains("binding"),
        "the host's reason reached the client: {body}"
    );
    assert!(
        !stderr.contains("trapped"),
        "the actor trapped instead of answering 500:\n{stderr}"
    );
}
