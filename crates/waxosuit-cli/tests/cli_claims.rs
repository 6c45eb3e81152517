//! `waxosuit keys` and `waxosuit claims`, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, embed_claims};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .args(args)
            .current_dir(self.dir.path())
            .env("WAXOSUIT_KEYS", self.path("keys"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    fn module(&self) -> PathBuf {
        let p = self.path("actor.wasm");
        std::fs::write(
            &p,
            wat::parse_str(
                r#"(module (memory (export "memory") 1)
                     (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
            )
            .unwrap(),
        )
        .unwrap();
        p
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keys_gen_prints_nk_style_lines_for_every_kind() {
    let env = Env::new();
    for (kind, prefix) in [
        ("account", 'A'),
        ("module", 'M'),
        ("server", 'N'),
        ("operator", 'O'),
        ("service", 'V'),
        ("user", 'U'),
        ("cluster", 'C'),
    ] {
        let out = env.ok(&["keys", "gen", kind]);
        let mut lines = out.lines();
        let pk = lines.next().unwrap().strip_prefix("Public Key: ").unwrap();
        let seed = lines.next().unwrap().strip_prefix("Seed: ").unwrap();
        assert!(pk.starts_with(prefix) && pk.len() == 56, "{pk}");
        assert_eq!(KeyPair::from_seed(seed).unwrap().public_key(), pk);
    }
    assert!(
        env.fails(&["keys", "gen", "curve"])
            .contains("unknown key kind")
    );
}

#[test]
fn keys_gen_output_writes_a_private_seed_file() {
    let env = Env::new();
    let out = env.ok(&["keys", "gen", "account", "--output", "k", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v.get("seed").is_none(),
        "seed must not be printed with --output"
    );
    let file = env.path("k/account.nk");
    let seed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        KeyPair::from_seed(&seed).unwrap().public_key(),
        v["public_key"].as_str().unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn sign_without_keys_generates_and_reuses_them_then_inspect_shows_the_claims() {
    let env = Env::new();
    let module = env.module();
    let signed = env.path("signed.wasm");
    let first = env.run(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "Counter",
        "--keyvalue",
        "--http-server",
        "--cap",
        "acme:inventory",
        "--tag",
        "demo",
        "--ver",
        "1.0.0",
        "--rev",
        "3",
        "--expires-in-days",
        "10",
    ]);
    assert!(first.status.success());
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("Generated account key"), "{stderr}");
    assert!(env.path("keys/account.nk").exists());
    assert!(env.path("keys/counter_module.nk").exists());

    let table = env.ok(&["claims", "inspect", s(&signed)]);
    for expected in [
        "Counter - Module",
        "K/V Store",
        "HTTP Server",
        "acme:inventory",
        "1.0.0 (3)",
        "demo",
        "Signature valid",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }

    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["claims", "inspect", s(&signed), "--json"])).unwrap();
    assert_eq!(json["valid"], true);
    let module_key = json["claims"]["module"].as_str().unwrap().to_string();

    // Signing again reuses the same identity.
    let again = env.path("again.wasm");
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&again),
        "--name",
        "Counter",
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["claims", "inspect", s(&again), "--json"])).unwrap();
    assert_eq!(json["claims"]["module"], module_key.as_str());
}

#[test]
fn sign_with_explicit_seeds_and_files() {
    let env = Env::new();
    let module = env.module();
    let account = KeyPair::generate(KeyKind::Account);
    let subject = KeyPair::generate(KeyKind::Module);
    std::fs::write(env.path("subject.nk"), subject.seed().unwrap()).unwrap();
    let signed = env.path("signed.wasm");
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "x",
        "--issuer",
        &account.seed().unwrap(),
        "--subject",
        "subject.nk",
    ]);
    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["claims", "inspect", s(&signed), "--json"])).unwrap();
    assert_eq!(json["claims"]["account"], account.public_key().as_str());
    assert_eq!(json["claims"]["module"], subject.public_key().as_str());

    // Wrong roles are refused before anything is written.
    let err = env.fails(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        "nope.wasm",
        "--name",
        "x",
        "--issuer",
        &subject.seed().unwrap(),
    ]);
    assert!(err.contains("--issuer must be an account seed"), "{err}");
    assert!(!env.path("nope.wasm").exists());
    let err = env.fails(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        "nope.wasm",
        "--name",
        "x",
        "--cap",
        "nocolon",
    ]);
    assert!(err.contains("is not a capability id"), "{err}");
}

#[test]
fn inspect_exits_non_zero_with_the_reason() {
    let env = Env::new();
    let module = env.module();
    let signed = env.path("signed.wasm");
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "x",
    ]);

    // unsigned
    let err = env.fails(&["claims", "inspect", s(&module)]);
    assert!(err.contains("unsigned"), "{err}");

    // tampered: change one byte of code
    let mut bytes = std::fs::read(&signed).unwrap();
    let at = bytes.windows(2).position(|w| w == [0x41, 0x01]).unwrap();
    bytes[at + 1] = 0x02;
    std::fs::write(env.path("tampered.wasm"), &bytes).unwrap();
    let err = env.fails(&["claims", "inspect", "tampered.wasm"]);
    assert!(err.contains("module hash mismatch"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(
        &env.run(&["claims", "inspect", "tampered.wasm", "--json"])
            .stdout,
    )
    .unwrap();
    assert_eq!(json["valid"], false);
    assert_eq!(json["error"]["kind"], "module_hash_mismatch");

    // not yet valid
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        "later.wasm",
        "--name",
        "x",
        "--not-before-days",
        "2",
    ]);
    let err = env.fails(&["claims", "inspect", "later.wasm"]);
    assert!(err.contains("cannot be used before"), "{err}");

    // expired (signed by the library with a past expiry)
    let account = KeyPair::generate(KeyKind::Account);
    let subject = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(subject.public_key())
        .issued_at(1_000)
        .expires_at(2_000)
        .metadata(Actor::named("old"))
        .build();
    let expired = embed_claims(&std::fs::read(&module).unwrap(), &claims, &account).unwrap();
    std::fs::write(env.path("expired.wasm"), expired).unwrap();
    let err = env.fails(&["claims", "inspect", "expired.wasm"]);
    assert!(err.contains("expired"), "{err}");

    // badly signed: the signature segment of another token
    let other = env.path("other.wasm");
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&other),
        "--name",
        "y",
        "--issuer",
        &KeyPair::generate(KeyKind::Account).seed().unwrap(),
    ]);
    let genuine = waxosuit_claims::extract(&std::fs::read(&signed).unwrap())
        .unwrap()
        .jwt;
    let foreign = waxosuit_claims::extract(&std::fs::read(&other).unwrap())
        .unwrap()
        .jwt;
    let forged_jwt = format!(
        "{}.{}",
        genuine.rsplit_once('.').unwrap().0,
        foreign.rsplit_once('.').unwrap().1
    );
    let mut forged = waxosuit_claims::strip_signature(&std::fs::read(&module).unwrap()).unwrap();
    forged.push(0);
    let len = 4 + forged_jwt.len();
    forged.extend_from_slice(&[(len as u8 & 0x7f) | 0x80, (len >> 7) as u8, 3]);
    forged.extend_from_slice(b"jwt");
    forged.extend_from_slice(forged_jwt.as_bytes());
    std::fs::write(env.path("forged.wasm"), forged).unwrap();
    let err = env.fails(&["claims", "inspect", "forged.wasm"]);
    assert!(err.contains("bad signature"), "{err}");

    // not wasm at all / missing file
    std::fs::write(env.path("notes.txt"), "hello").unwrap();
    assert!(
        env.fails(&["claims", "inspect", "notes.txt"])
            .contains("malformed JWT")
    );
    assert!(
        env.fails(&["claims", "inspect", "missing.wasm"])
            .contains("cannot read")
    );
}

#[test]
fn provenance_chain_operator_account_actor() {
    let env = Env::new();
    let module = env.module();
    let operator = KeyPair::generate(KeyKind::Operator);
    let account = KeyPair::generate(KeyKind::Account);
    std::fs::write(env.path("op.nk"), operator.seed().unwrap()).unwrap();
    std::fs::write(env.path("acct.nk"), account.seed().unwrap()).unwrap();

    env.ok(&[
        "claims", "token", "operator", "--name", "Ops", "--issuer", "op.nk", "-o", "op.jwt",
    ]);
    env.ok(&[
        "claims",
        "token",
        "account",
        "--name",
        "Team",
        "--issuer",
        "op.nk",
        "--subject",
        &account.public_key(),
        "-o",
        "acct.jwt",
    ]);
    let table = env.ok(&["claims", "inspect", "acct.jwt"]);
    assert!(table.contains("Team - account token"), "{table}");
    assert!(table.contains(&operator.public_key()));

    let signed = env.path("signed.wasm");
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "x",
        "--issuer",
        "acct.nk",
    ]);

    // Chain: trusted operator (token file or key) + account token.
    env.ok(&[
        "claims",
        "inspect",
        s(&signed),
        "--trusted-operator",
        "op.jwt",
        "--account-token",
        "acct.jwt",
    ]);
    env.ok(&[
        "claims",
        "inspect",
        s(&signed),
        "--trusted-operator",
        &operator.public_key(),
        "--account-token",
        "acct.jwt",
    ]);
    env.ok(&[
        "claims",
        "inspect",
        s(&signed),
        "--trusted-issuer",
        &account.public_key(),
    ]);

    // Without the account token, or with another operator, the issuer is untrusted.
    let err = env.fails(&[
        "claims",
        "inspect",
        s(&signed),
        "--trusted-operator",
        "op.jwt",
    ]);
    assert!(err.contains("untrusted issuer"), "{err}");
    let stranger = KeyPair::generate(KeyKind::Operator).public_key();
    let err = env.fails(&[
        "claims",
        "inspect",
        s(&signed),
        "--trusted-operator",
        &stranger,
        "--account-token",
        "acct.jwt",
    ]);
    assert!(err.contains("untrusted issuer"), "{err}");
}
