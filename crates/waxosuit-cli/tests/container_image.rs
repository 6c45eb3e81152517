//! The container image: `scripts/build-image.sh` packages this binary into
//! an OCI image layout with umoci (no Docker), and pushes it with skopeo.
//! The layout is unpacked as root, its config read, the packaged binary run
//! in a chroot of the unpacked root file system, and the image pushed to a
//! real `docker-registry` on loopback and inspected there.
//!
//! Needs root, `umoci`, `skopeo`, `chroot` and `docker-registry`
//! (`apt-get install umoci skopeo coreutils docker-registry`); without them
//! the test fails and names what is missing.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use serde_json::Value;
use waxosuit_test_servers::RegistryServer;

/// What the script gives the image (scripts/image-rootfs.sh, the Dockerfile
/// and deploy/ use the same values).
const UID: u32 = 65532;
const ENTRYPOINT: &str = "/usr/local/bin/waxosuit";
const CACHE_DIR: &str = "/var/cache/waxosuit";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails, naming the tool and its Debian package, when `tool` is not on PATH:
/// a missing tool must not pass as a skipped test.
#[track_caller]
fn require(tool: &str, package: &str) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(tool)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
    });
    assert!(
        found,
        "`{tool}` is not installed; this test needs it (apt-get install {package})"
    );
}

#[track_caller]
fn require_root() {
    let out = run(Command::new("id").arg("-u"));
    assert_eq!(
        out.trim(),
        "0",
        "this test runs as root: umoci records file owners and chroot needs root"
    );
}

#[track_caller]
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    ok(command, out)
}

#[track_caller]
fn ok(command: &Command, out: Output) -> String {
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn build_image(args: &[&str]) -> Output {
    Command::new(repo_root().join("scripts/build-image.sh"))
        .args(args)
        .env_remove("WAXOSUIT_BINARY")
        .env_remove("WAXOSUIT_IMAGE_LAYOUT")
        .output()
        .unwrap()
}

fn json_file(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// The manifest digest the layout's index names `tag`.
fn manifest_digest(layout: &Path, tag: &str) -> String {
    let index = json_file(&layout.join("index.json"));
    let found: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .collect();
    assert_eq!(found.len(), 1, "tag {tag} in {index}");
    found[0]["digest"].as_str().unwrap().to_string()
}

/// `KEY=VALUE` entries of the image config's Env.
fn env_set(config: &Value) -> BTreeSet<String> {
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

/// The Dockerfile's last stage as instructions (continuation lines joined,
/// comments dropped): (INSTRUCTION, arguments).
fn dockerfile_final_stage() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let instructions: Vec<(String, String)> = joined
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (word, rest) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (word.to_ascii_uppercase(), rest.trim().to_string())
        })
        .collect();
    let last_from = instructions
        .iter()
        .rposition(|(word, _)| word == "FROM")
        .expect("the Dockerfile has a FROM");
    instructions[last_from..].to_vec()
}

/// The Dockerfile's final stage and the script's image config agree on the
/// user, entrypoint, exposed port, stop signal and environment.
fn assert_dockerfile_agrees(config: &Value) {
    let stage = dockerfile_final_stage();
    let all = |word: &str| -> Vec<&str> {
        stage
            .iter()
            .filter(|(w, _)| w == word)
            .map(|(_, args)| args.as_str())
            .collect()
    };
    assert_eq!(all("USER"), [config["config"]["User"].as_str().unwrap()]);
    let entrypoint: Value = serde_json::from_str(all("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entrypoint, config["config"]["Entrypoint"]);
    let exposed: BTreeSet<String> = all("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(String::from)
        .collect();
    let ports: BTreeSet<String> = config["config"]["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(exposed, ports, "Dockerfile EXPOSE vs the script's ports");
    assert_eq!(
        all("STOPSIGNAL"),
        [config["config"]["StopSignal"].as_str().unwrap()]
    );
    let env: BTreeSet<String> = all("ENV")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(String::from)
        .collect();
    assert_eq!(env, env_set(config), "Dockerfile ENV vs the script's Env");
}

#[test]
fn the_script_builds_an_image_that_runs_as_non_root_and_pushes_with_its_digest() {
    for (tool, package) in [
        ("umoci", "umoci"),
        ("skopeo", "skopeo"),
        ("chroot", "coreutils"),
        ("docker-registry", "docker-registry"),
    ] {
        require(tool, package);
    }
    require_root();
    let binary = env!("CARGO_BIN_EXE_waxosuit");
    let version = run(Command::new(binary).arg("--version"));
    let version_number = version.trim().strip_prefix("waxosuit ").unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let registry = RegistryServer::start().unwrap();
    let reference = format!("{}/waxosuit:test", registry.host());

    let started = Instant::now();
    let out = build_image(&[
        "--binary",
        binary,
        "--layout",
        layout.to_str().unwrap(),
        "--tag",
        "ci",
        "--push",
        &reference,
        "--insecure",
    ]);
    let log = ok(&Command::new("scripts/build-image.sh"), out);
    eprintln!("build-image.sh and push: {:?}", started.elapsed());

    // Tagged with the version, the extra tag and the pushed tag: one image.
    let digest = manifest_digest(&layout, version_number);
    assert_eq!(manifest_digest(&layout, "ci"), digest);
    assert_eq!(manifest_digest(&layout, "test"), digest);
    assert!(
        log.contains(&format!("Pushed {reference}@{digest}")),
        "{log}"
    );

    let manifest = json_file(&blob(&layout, &digest));
    let annotations = &manifest["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.version"],
        version_number
    );
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config = json_file(&blob(&layout, config_digest));
    let c = &config["config"];
    assert_eq!(c["User"], format!("{UID}:{UID}"));
    assert_eq!(c["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({ "8080/tcp": {} }),
        "{config}"
    );
    let env = env_set(&config);
    for wanted in [
        "WAXOSUIT_HTTP_ADDRESS=0.0.0.0",
        "PORT=8080",
        &format!("WAXOSUIT_CACHE={CACHE_DIR}"),
    ] {
        assert!(env.contains(wanted), "{wanted} not in {env:?}");
    }
    assert_eq!(
        c["Labels"]["org.opencontainers.image.version"],
        version_number
    );
    assert_dockerfile_agrees(&config);

    // The runtime bundle umoci makes from it: what a container runtime runs.
    let bundle = tmp.path().join("bundle");
    let started = Instant::now();
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:{version_number}", layout.display()))
        .arg(&bundle));
    eprintln!("umoci unpack: {:?}", started.elapsed());
    let runtime = json_file(&bundle.join("config.json"));
    assert_eq!(runtime["process"]["user"]["uid"], UID);
    assert_eq!(runtime["process"]["user"]["gid"], UID);
    assert_eq!(runtime["process"]["args"], serde_json::json!([ENTRYPOINT]));
    let rootfs = bundle.join("rootfs");
    let cache = std::fs::metadata(rootfs.join(CACHE_DIR.trim_start_matches('/'))).unwrap();
    assert!(cache.is_dir());
    assert_eq!(
        (cache.uid(), cache.gid()),
        (UID, UID),
        "{CACHE_DIR} belongs to the image's user"
    );
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd
            .lines()
            .any(|l| l.split(':').nth(2) == Some(&UID.to_string())),
        "{passwd}"
    );

    // Only what is in the image: a missing library or loader fails here.
    for userspec in ["0:0", &format!("{UID}:{UID}")] {
        let printed = run(Command::new("chroot")
            .arg(format!("--userspec={userspec}"))
            .arg(&rootfs)
            .arg(ENTRYPOINT)
            .arg("--version"));
        assert_eq!(printed, version, "as {userspec}");
    }

    // The registry serves the digest and config built here.
    let remote = format!("docker://{reference}");
    let inspected: Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(&remote)))
    .unwrap();
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Labels"], c["Labels"]);
    let remote_config: Value = serde_json::from_str(&run(Command::new("skopeo")
        .args(["inspect", "--config", "--tls-verify=false"])
        .arg(&remote)))
    .unwrap();
    assert_eq!(remote_config, config);
}

#[test]
fn the_script_refuses_bad_arguments_with_a_reason() {
    let binary = env!("CARGO_BIN_EXE_waxosuit");
    let tmp = tempfile::tempdir().unwrap();
    let not_a_layout = tmp.path().join("precious");
    std::fs::create_dir(&not_a_layout).unwrap();
    std::fs::write(not_a_layout.join("keep"), "data").unwrap();
    let layout = tmp.path().join("layout");
    let layout = layout.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["--binary", "/nonexistent/waxosuit"],
            "no waxosuit binary at",
        ),
        (
            &["--binary", binary, "--insecure"],
            "--insecure only applies to --push",
        ),
        (
            &["--binary", binary, "--layout", layout, "--tag", "no spaces"],
            "is not a valid image tag",
        ),
        (
            &["--binary", binary, "--push", "waxosuit"],
            "--push needs REGISTRY/REPO[:TAG]",
        ),
        (
            &[
                "--binary",
                binary,
                "--layout",
                not_a_layout.to_str().unwrap(),
            ],
            "is not an OCI image layout",
        ),
        (&["--bogus"], "unknown argument: --bogus"),
    ];
    for (args, reason) in cases {
        let out = build_image(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
    assert!(not_a_layout.join("keep").exists());
    assert!(!Path::new(layout).exists());
}
