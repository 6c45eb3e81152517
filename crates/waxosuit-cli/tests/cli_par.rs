//! `waxosuit par` and `path:` plugins in `waxosuit up`, run as a user would.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, embed_claims};
use waxosuit_plugin_fixtures::plugins;

struct Env {
    dir: tempfile::TempDir,
    account: KeyPair,
    service: KeyPair,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            account: KeyPair::generate(KeyKind::Account),
            service: KeyPair::generate(KeyKind::Service),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_waxosuit"));
        // A temporary directory of its own, to see that loading a plugin
        // writes there nothing (the cache directory is the host's place).
        std::fs::create_dir_all(self.path("tmp")).unwrap();
        c.current_dir(self.dir.path())
            .env("WAXOSUIT_KEYS", self.path("keys"))
            .env("WAXOSUIT_CACHE", self.path("cache"))
            .env("TMPDIR", self.path("tmp"))
            .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Packages the acme:inventory plugin as `acme.par`.
    fn create(&self) -> PathBuf {
        let (issuer, subject) = (self.account.seed().unwrap(), self.service.seed().unwrap());
        self.ok(&[
            "par",
            "create",
            "--capid",
            "acme:inventory",
            "--vendor",
            "Acme",
            "--name",
            "Inventory",
            "--ver",
            "1.0.0",
            "--rev",
            "3",
            "--target",
            plugins::TARGET,
            "--library",
            plugins::ACME_INVENTORY,
            "--issuer",
            &issuer,
            "--subject",
            &subject,
            "-o",
            "acme.par",
        ]);
        self.path("acme.par")
    }

    /// `par insert` of a (pretend) macOS library into `acme.par`, signed by
    /// the account.
    fn insert_mac(&self) -> Output {
        std::fs::write(self.path("mac.dylib"), b"not really a dylib").unwrap();
        self.run(&[
            "par",
            "insert",
            "acme.par",
            "--target",
            "aarch64-apple-darwin",
            "--library",
            "mac.dylib",
            "--issuer",
            &self.account.seed().unwrap(),
        ])
    }

    fn actor(&self, caps: &[&str]) {
        let module = KeyPair::generate(KeyKind::Module);
        let claims = Claims::<Actor>::builder()
            .issuer(self.account.public_key())
            .subject(module.public_key())
            .metadata(Actor {
                caps: Some(caps.iter().map(|c| c.to_string()).collect()),
                ..Actor::named("inventory-client")
            })
            .build();
        let signed =
            embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, &self.account).unwrap();
        std::fs::write(self.path("client_signed.wasm"), signed).unwrap();
    }

    fn manifest(&self, capability_path: &str) -> PathBuf {
        let text = format!(
            "actors:\n  - ./client_signed.wasm\ncapabilities:\n  - path: {capability_path}\n\
             bindings:\n  - actor: inventory-client\n    capability: acme:inventory\n"
        );
        let p = self.path("host.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }
}

#[test]
fn create_inspect_and_insert() {
    let env = Env::new();
    env.create();
    let table = env.ok(&[
        "par",
        "inspect",
        "acme.par",
        "--trusted-issuer",
        &env.account.public_key(),
    ]);
    for needle in [
        "acme:inventory",
        "Acme",
        "1.0.0 (rev 3)",
        plugins::TARGET,
        "valid (signature, trusted issuer, hashes)",
    ] {
        assert!(table.contains(needle), "missing {needle} in:\n{table}");
    }
    let library = std::fs::read(plugins::ACME_INVENTORY).unwrap();
    assert!(
        table.contains(&waxosuit_par::library_hash(&library)),
        "{table}"
    );

    let trusted = env.account.public_key();
    let json: serde_json::Value = serde_json::from_str(&env.ok(&[
        "par",
        "inspect",
        "acme.par",
        "--json",
        "--trusted-issuer",
        &trusted,
    ]))
    .unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["issuer_checked"], true);
    assert_eq!(json["subject"], env.service.public_key());

    // An untrusted issuer makes inspect fail, with the reason.
    let stranger = KeyPair::generate(KeyKind::Account).public_key();
    let out = env.run(&["par", "inspect", "acme.par", "--trusted-issuer", &stranger]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("INVALID") && text.contains("untrusted issuer"),
        "{text}"
    );
    // Trusting no one (the keystore has no account): refused, with the fix.
    let out = env.run(&["par", "inspect", "acme.par"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no issuer is trusted") && text.contains("--trusted-issuer"),
        "{text}"
    );
    // Development mode judges everything but the issuer, and says so.
    let json: serde_json::Value = serde_json::from_str(&env.ok(&[
        "par",
        "inspect",
        "acme.par",
        "--json",
        "--allow-any-issuer",
    ]))
    .unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["issuer_checked"], false);

    // Insert a second target; the archive is re-signed and stays valid.
    let out = env.insert_mac();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&env.ok(&[
        "par",
        "inspect",
        "acme.par",
        "--json",
        "--trusted-issuer",
        &trusted,
    ]))
    .unwrap();
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["targets"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(
        json["subject"],
        env.service.public_key(),
        "insert keeps the subject"
    );
}

#[test]
fn archives_follow_the_actor_trust_rules() {
    let env = Env::new();
    // Signed by the keystore's account (no --issuer): trusted without flags.
    env.ok(&[
        "par",
        "create",
        "--capid",
        "acme:inventory",
        "--vendor",
        "Acme",
        "--name",
        "Inventory",
        "--target",
        plugins::TARGET,
        "--library",
        plugins::ACME_INVENTORY,
        "-o",
        "mine.par",
    ]);
    let table = env.ok(&["par", "inspect", "mine.par"]);
    assert!(
        table.contains("valid (signature, trusted issuer, hashes)"),
        "{table}"
    );

    // Signed by another account, vouched for by a trusted operator.
    env.create();
    let operator = KeyPair::generate(KeyKind::Operator);
    std::fs::write(env.path("op.nk"), operator.seed().unwrap()).unwrap();
    env.ok(&[
        "claims",
        "token",
        "account",
        "--name",
        "Acme",
        "--issuer",
        "op.nk",
        "--subject",
        &env.account.public_key(),
        "-o",
        "acme.jwt",
    ]);
    env.ok(&[
        "par",
        "inspect",
        "acme.par",
        "--trusted-operator",
        &operator.public_key(),
        "--account-token",
        "acme.jwt",
    ]);
    // Without the account token the keystore's account is all that is
    // trusted, and this archive is not its.
    let out = env.run(&[
        "par",
        "inspect",
        "acme.par",
        "--trusted-operator",
        &operator.public_key(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("untrusted issuer"));
}

/// Runs `waxosuit up` until `Ready.` (then SIGTERM) or exit; returns
/// (became ready, stdout, stderr).
fn up(env: &Env, manifest: &Path, extra: &[&str]) -> (bool, String, String) {
    let mut child = env
        .cmd()
        .arg("up")
        .arg(manifest)
        .args(extra)
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
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    let mut ready = false;
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("Ready.") {
            ready = true;
            let pid = child.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status().unwrap();
            break;
        }
    }
    let _ = child.wait();
    (ready, out, stderr.join().unwrap())
}

#[test]
fn up_loads_a_signed_archive_and_refuses_what_it_cannot_trust() {
    let env = Env::new();
    env.create();
    env.actor(&["acme:inventory"]);
    let manifest = env.manifest("./acme.par");
    let trusted = env.account.public_key();

    let (ready, out, err) = up(&env, &manifest, &["--trusted-issuer", &trusted]);
    assert!(ready, "did not start:\n{out}\n{err}");
    assert!(out.contains("acme:inventory (binding `default`)"), "{out}");
    assert!(out.contains("→ acme:inventory"), "{out}");
    // Loaded from under the cache directory, and nothing left in $TMPDIR.
    assert!(env.path("cache/plugins").is_dir(), "{err}");
    let tmp: Vec<_> = std::fs::read_dir(env.path("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // No trusted issuer configured: refused, saying what to pass.
    let (ready, _, err) = up(&env, &manifest, &[]);
    assert!(!ready);
    assert!(err.contains("--trusted-issuer"), "{err}");

    // A bare library needs the explicit opt-in, and is loudly flagged.
    std::fs::copy(plugins::ACME_INVENTORY, env.path("libacme_inventory.so")).unwrap();
    let manifest = env.manifest("./libacme_inventory.so");
    let (ready, _, err) = up(&env, &manifest, &[]);
    assert!(!ready);
    assert!(err.contains("--allow-unsigned-plugins"), "{err}");
    let (ready, out, err) = up(
        &env,
        &manifest,
        &["--allow-unsigned-plugins", "--trusted-issuer", &trusted],
    );
    assert!(ready, "did not start:\n{out}\n{err}");
    assert!(err.contains("UNSIGNED"), "{err}");
}

#[test]
fn up_trusts_archives_exactly_as_it_trusts_actors() {
    let env = Env::new();
    // Archive and actor both signed with the keystore's account: no flags.
    env.ok(&[
        "par",
        "create",
        "--capid",
        "acme:inventory",
        "--vendor",
        "Acme",
        "--name",
        "Inventory",
        "--target",
        plugins::TARGET,
        "--library",
        plugins::ACME_INVENTORY,
        "-o",
        "acme.par",
    ]);
    std::fs::write(env.path("client.wasm"), waxosuit_test_fixtures::wapc_echo()).unwrap();
    env.ok(&[
        "claims",
        "sign",
        "client.wasm",
        "-o",
        "client_signed.wasm",
        "--name",
        "inventory-client",
        "--cap",
        "acme:inventory",
    ]);
    let manifest = env.manifest("./acme.par");
    let (ready, out, err) = up(&env, &manifest, &[]);
    assert!(ready, "did not start:\n{out}\n{err}");
    assert!(out.contains("→ acme:inventory"), "{out}");

    // An archive from an account nobody trusts is refused with the fix…
    env.create();
    env.actor(&["acme:inventory"]);
    let (ready, _, err) = up(&env, &manifest, &[]);
    assert!(!ready);
    assert!(err.contains("untrusted issuer"), "{err}");
    // …unless any issuer is allowed, which is said out loud.
    let (ready, out, err) = up(&env, &manifest, &["--allow-any-issuer"]);
    assert!(ready, "did not start:\n{out}\n{err}");
    assert!(
        err.contains("WARNING: loading the provider archive") && err.contains("--allow-any-issuer"),
        "{err}"
    );
}

#[test]
fn insert_refuses_an_archive_whose_libraries_changed_after_signing() {
    let env = Env::new();
    env.create();
    // A library swapped inside the archive, not re-signed.
    let mut par = waxosuit_par::ProviderArchive::read_path(env.path("acme.par")).unwrap();
    par.insert(plugins::TARGET, b"swapped native code".to_vec())
        .unwrap();
    par.write_path(env.path("acme.par")).unwrap();
    let before = std::fs::read(env.path("acme.par")).unwrap();
    let out = env.insert_mac();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not verify, so it is not re-signed"),
        "{stderr}"
    );
    assert!(stderr.contains("hash mismatch"), "{stderr}");
    // The archive is left as it was: still refused wherever it goes.
    assert_eq!(std::fs::read(env.path("acme.par")).unwrap(), before);
}

#[test]
fn an_account_file_in_the_working_directory_is_not_trusted_without_home() {
    let env = Env::new();
    env.create();
    // The archive's signer's seed, where a checked-out repository would put
    // it: `.waxosuit/keys/account.nk` under the working directory.
    let keys = env.path(".waxosuit").join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let seed = keys.join("account.nk");
    std::fs::write(&seed, env.account.seed().unwrap()).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = env
        .cmd()
        .env_remove("HOME")
        .env_remove("WAXOSUIT_KEYS")
        .args(["par", "inspect", "acme.par"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(!stdout.contains("trusted issuer)"), "{stdout}");
    // With the keys directory named, the same file is the user's account.
    let out = env
        .cmd()
        .env("WAXOSUIT_KEYS", &keys)
        .args(["par", "inspect", "acme.par"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("valid (signature, trusted issuer, hashes)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
