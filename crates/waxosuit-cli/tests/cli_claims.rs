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
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .args(args)
            .current_dir(self.dir.path())
            .env("WAXOSUIT_KEYS", self.path("keys"))
            .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
            .envs(env.iter().copied())
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

/// A second `keys gen --output` to the same file keeps the first key and
/// fails saying how to replace it; `--force` replaces it.
#[test]
fn keys_gen_output_never_replaces_a_key_without_force() {
    let env = Env::new();
    env.ok(&["keys", "gen", "account", "--output", "k"]);
    let file = env.path("k/account.nk");
    let first = std::fs::read_to_string(&file).unwrap();
    let err = env.fails(&["keys", "gen", "account", "--output", "k"]);
    assert!(
        err.contains("already holds a key") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    env.ok(&["keys", "gen", "account", "--output", "k", "--force"]);
    assert_ne!(std::fs::read_to_string(&file).unwrap(), first);
    // --force means nothing without a file to replace.
    env.fails(&["keys", "gen", "account", "--force"]);
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
    let out = env.run(&[
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
    assert!(out.status.success());
    // The literal seed works, but is called out; the seed file is not.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: the account seed was given on the command line"),
        "{stderr}"
    );
    assert!(stderr.contains("process list"), "{stderr}");
    assert!(!stderr.contains("module seed was given"), "{stderr}");
    assert!(
        !stderr.contains(&account.seed().unwrap()),
        "never echoed: {stderr}"
    );

    // Not the keystore's account: trusted only when named.
    let json: serde_json::Value = serde_json::from_str(&env.ok(&[
        "claims",
        "inspect",
        s(&signed),
        "--json",
        "--trusted-issuer",
        &account.public_key(),
    ]))
    .unwrap();
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
    // Fields no verifier would accept are refused before signing.
    for (flag, value, field) in [
        ("--call-alias", "acme:counter", "call_alias"),
        ("--tag", "bell\u{7}", "tags[0]"),
        ("--ver", "", "ver"),
    ] {
        let err = env.fails(&[
            "claims",
            "sign",
            s(&module),
            "-o",
            "nope.wasm",
            "--name",
            "x",
            flag,
            value,
        ]);
        assert!(
            err.contains(&format!("invalid `{field}` in the actor token")),
            "{flag}: {err}"
        );
        assert!(!env.path("nope.wasm").exists());
    }
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
    let table = env.ok(&[
        "claims",
        "inspect",
        "acct.jwt",
        "--trusted-operator",
        "op.jwt",
    ]);
    assert!(table.contains("Team - account token"), "{table}");
    assert!(table.contains(&operator.public_key()));
    // No operator trusted: the token is shown, and refused with the fix.
    let out = env.run(&["claims", "inspect", "acct.jwt"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("(NOT VALID)"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no operator is trusted"), "{err}");
    assert!(err.contains("--trusted-operator"), "{err}");

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

#[test]
fn inspect_trusts_the_keystore_account_and_no_one_else_unless_told() {
    let env = Env::new();
    let module = env.module();
    // The keystore's own account (generated by this first `sign`).
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        "mine.wasm",
        "--name",
        "mine",
    ]);
    let table = env.ok(&["claims", "inspect", "mine.wasm"]);
    assert!(
        table.contains("Signature valid (issuer trusted)"),
        "{table}"
    );

    // Someone else's account.
    let stranger = KeyPair::generate(KeyKind::Account);
    std::fs::write(env.path("stranger.nk"), stranger.seed().unwrap()).unwrap();
    env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        "theirs.wasm",
        "--name",
        "theirs",
        "--issuer",
        "stranger.nk",
    ]);
    let err = env.fails(&["claims", "inspect", "theirs.wasm"]);
    assert!(err.contains("untrusted issuer"), "{err}");
    assert!(err.contains(&stranger.public_key()), "{err}");

    // An empty keystore trusts no one, and says how to fix it.
    let out = env.run_env(
        &["claims", "inspect", "theirs.wasm"],
        &[("WAXOSUIT_KEYS", "no-keys-here")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no issuer is trusted"), "{err}");
    assert!(err.contains("--allow-any-issuer"), "{err}");

    // Development mode, by flag or environment, is said out loud.
    let table = env.ok(&["claims", "inspect", "theirs.wasm", "--allow-any-issuer"]);
    assert!(table.contains("ANY issuer accepted"), "{table}");
    let out = env.run_env(
        &["claims", "inspect", "theirs.wasm", "--json"],
        &[("WAXOSUIT_ALLOW_ANY_ISSUER", "true")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["any_issuer_accepted"], true);
    // A typo in the variable is an error, not a silent "no".
    let out = env.run_env(
        &["claims", "inspect", "theirs.wasm"],
        &[("WAXOSUIT_ALLOW_ANY_ISSUER", "maybe")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'maybe' for '--allow-any-issuer'"),
        "{err}"
    );
}

#[test]
fn inspect_refuses_hostile_claims_without_panicking() {
    let env = Env::new();
    let module = std::fs::read(env.module()).unwrap();
    let account = KeyPair::generate(KeyKind::Account);
    let subject = KeyPair::generate(KeyKind::Module).public_key();
    // A 56-byte, non-ASCII `caps` entry starting with `M`: it made
    // `claims inspect` panic (a slice inside a multi-byte character).
    let hostile_cap = format!("MAAAAAA\u{e9}{}", "A".repeat(47));
    // The caps entry is the first field that breaks the rules; the alias
    // (checked later) carries a terminal escape and a direction override,
    // which the table must show escaped.
    let meta = Actor {
        caps: Some(vec![hostile_cap.clone()]),
        call_alias: Some("\u{1b}[2Jcleared\u{202e}".into()),
        ..Actor::named("sneaky")
    };
    let signed = waxosuit_test_fixtures::hostile::signed_module(
        &module,
        &account,
        &subject,
        meta,
        Some(u64::MAX),
        None,
    );
    std::fs::write(env.path("sneaky.wasm"), signed).unwrap();
    for json in [false, true] {
        let mut args = vec!["claims", "inspect", "sneaky.wasm", "--trusted-issuer"];
        let key = account.public_key();
        args.push(&key);
        if json {
            args.push("--json");
        }
        let out = env.run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a refusal, not a panic: {out:?}"
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("invalid `caps[0]` in the actor token"),
            "{stderr}"
        );
        assert!(stderr.contains("allowed:"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for text in [&stdout, &stderr] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{202e}'),
                "{text:?}"
            );
        }
        if json {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v["error"]["kind"], "invalid_claim");
            assert_eq!(v["claims"]["capabilities"][0]["id"], hostile_cap.as_str());
        } else {
            assert!(stdout.contains("(NOT VALID)"), "{stdout}");
            assert!(stdout.contains("\\u{1b}[2Jcleared"), "{stdout}");
            assert!(
                stdout.contains("unix time 18446744073709551615"),
                "{stdout}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn keys_are_never_written_through_a_symbolic_link() {
    let env = Env::new();
    std::fs::create_dir(env.path("k")).unwrap();
    std::fs::write(env.path("victim.txt"), "keep me\n").unwrap();
    std::os::unix::fs::symlink(env.path("victim.txt"), env.path("k/account.nk")).unwrap();
    let err = env.fails(&["keys", "gen", "account", "--output", "k"]);
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_to_string(env.path("victim.txt")).unwrap(),
        "keep me\n"
    );

    // The keystore `claims sign` uses is protected the same way: a link
    // planted where it would create the account seed is not followed.
    std::fs::create_dir(env.path("keys")).unwrap();
    std::os::unix::fs::symlink(env.path("planted.nk"), env.path("keys/account.nk")).unwrap();
    let module = env.module();
    let err = env.fails(&["claims", "sign", s(&module), "-o", "x.wasm", "--name", "x"]);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(!env.path("planted.nk").exists());
    assert!(!env.path("x.wasm").exists());
}
