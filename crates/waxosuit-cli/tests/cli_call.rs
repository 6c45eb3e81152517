//! `waxosuit call`: one call to a signed module, trusting only whom it is
//! told to trust, and saying whom on stderr.

use std::path::PathBuf;
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

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .args(args)
            .current_dir(self.dir.path())
            .env("WAXOSUIT_KEYS", self.path("keys"))
            .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn call_trusts_the_keystore_account_named_issuers_or_explicitly_anyone() {
    let env = Env::new();
    std::fs::write(env.path("echo.wasm"), waxosuit_test_fixtures::wapc_echo()).unwrap();

    // Signed with the local keystore (as `claims sign` does by default).
    let out = env.run(
        &[
            "claims",
            "sign",
            "echo.wasm",
            "-o",
            "mine.wasm",
            "--name",
            "echo",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = env.run(&["call", "mine.wasm", "echo", "--data", "hello"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("trusting actors and provider archives issued by A")
            && stderr.contains("the local keystore's account"),
        "{stderr}"
    );

    // Signed by a stranger: refused, with what to pass.
    let stranger = KeyPair::generate(KeyKind::Account);
    let claims = Claims::<Actor>::builder()
        .issuer(stranger.public_key())
        .subject(KeyPair::generate(KeyKind::Module).public_key())
        .metadata(Actor::named("theirs"))
        .build();
    let theirs = embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, &stranger).unwrap();
    std::fs::write(env.path("theirs.wasm"), theirs).unwrap();
    let out = env.run(&["call", "theirs.wasm", "echo", "--data", "x"], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("untrusted issuer"), "{stderr}");
    assert!(stderr.contains(&stranger.public_key()), "{stderr}");

    // Named: accepted.
    let out = env.run(
        &[
            "call",
            "theirs.wasm",
            "echo",
            "--data",
            "x",
            "--trusted-issuer",
            &stranger.public_key(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("(--trusted-issuer)"));

    // Anyone, explicitly: accepted, with the warning on every run.
    for (args, vars) in [
        (&["--allow-any-issuer"][..], &[][..]),
        (&[][..], &[("WAXOSUIT_ALLOW_ANY_ISSUER", "yes")][..]),
    ] {
        let mut all = vec!["call", "theirs.wasm", "echo", "--data", "x"];
        all.extend_from_slice(args);
        let out = env.run(&all, vars);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "x");
        assert!(
            text(&out.stderr)
                .contains("WARNING: accepting actors and provider archives from ANY issuer"),
            "{}",
            text(&out.stderr)
        );
    }

    // No keystore account at all: nothing is trusted, and stderr says how to fix it.
    let out = env.run(
        &["call", "theirs.wasm", "echo"],
        &[("WAXOSUIT_KEYS", "empty-keys")],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("trusting NO issuer"), "{stderr}");
    assert!(stderr.contains("no issuer is trusted"), "{stderr}");
}

#[test]
fn an_actors_error_is_shown_escaped_not_obeyed_by_the_terminal() {
    let env = Env::new();
    std::fs::write(env.path("echo.wasm"), waxosuit_test_fixtures::wapc_echo()).unwrap();
    let out = env.run(
        &[
            "claims",
            "sign",
            "echo.wasm",
            "-o",
            "mine.wasm",
            "--name",
            "echo",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Sets the terminal's title, clears the screen, goes back to the start
    // of the line and reverses what follows.
    let hostile = "\x1b]0;owned\x07\x1b[2J\rall good \u{202e}txt.exe";
    let out = env.run(&["call", "mine.wasm", "error", "--data", hostile], &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("guest error:"))
        .unwrap_or_else(|| panic!("no guest error line: {stderr:?}"));
    assert!(
        line.ends_with("\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\rall good \\u{202e}txt.exe"),
        "{stderr:?}"
    );
    for raw in ['\x1b', '\x07', '\r', '\u{202e}'] {
        assert!(
            !stderr.contains(raw),
            "{raw:?} reached the terminal: {stderr:?}"
        );
    }
}
