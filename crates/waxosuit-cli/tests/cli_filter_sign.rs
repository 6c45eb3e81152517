//! `waxosuit claims sign` and `inspect` on Proxy-Wasm filter modules, run
//! as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

    /// Runs `waxosuit` with a keys directory of this test's own (the
    /// keystore account it generates is trusted by `inspect`).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_waxosuit"))
            .args(args)
            .current_dir(self.dir.path())
            .env("WAXOSUIT_KEYS", self.path("keys"))
            .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns (stdout, stderr).
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{args:?} failed: {stderr}");
        (String::from_utf8(out.stdout).unwrap(), stderr)
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
        String::from_utf8(out.stderr).unwrap()
    }

    fn write(&self, name: &str, wat: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, wat::parse_str(wat).unwrap()).unwrap();
        p
    }

    /// The smallest Proxy-Wasm module of an ABI (`0_2_1`).
    fn filter(&self, abi: &str) -> PathBuf {
        self.write(
            &format!("filter_{abi}.wasm"),
            &format!(
                r#"(module (func (export "proxy_abi_version_{abi}")) (memory (export "memory") 1))"#
            ),
        )
    }

    fn actor(&self) -> PathBuf {
        self.write(
            "actor.wasm",
            r#"(module (memory (export "memory") 1)
                 (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
        )
    }

    fn inspect_json(&self, file: &Path) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["claims", "inspect", s(file), "--json"]).0).unwrap()
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_proxy_wasm_module_is_signed_as_a_filter_and_inspect_says_so() {
    let env = Env::new();
    let module = env.filter("0_2_1");
    let signed = env.path("headers_signed.wasm");
    let (_, stderr) = env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "headers",
        "--tag",
        "demo",
        // Given by hand as well: still only once.
        "--tag",
        "proxy-wasm-filter",
    ]);
    let json = env.inspect_json(&signed);
    assert_eq!(json["valid"], true, "{json}");
    assert_eq!(json["kind"], "proxy-wasm-filter", "{json}");
    assert_eq!(json["proxy_wasm_abi"], "0.2.1", "{json}");
    assert_eq!(
        json["claims"]["tags"],
        serde_json::json!(["demo", "proxy-wasm-filter"])
    );
    assert_eq!(json["claims"]["capabilities"], serde_json::json!([]));
    let key = json["claims"]["module"].as_str().unwrap();
    let expected = format!(
        "Signed {} as Proxy-Wasm filter {key} (ABI 0.2.1) → {}",
        s(&module),
        s(&signed)
    );
    assert!(stderr.contains(&expected), "{expected:?} in {stderr}");

    let (table, _) = env.ok(&["claims", "inspect", s(&signed)]);
    for expected in [
        "headers - Module",
        "Kind",
        "Proxy-Wasm filter (ABI 0.2.1)",
        "Signature valid",
    ] {
        assert!(table.contains(expected), "missing {expected:?} in\n{table}");
    }

    // Without a tag given, the tag is added; ABI 0.2.0 is supported too.
    let module = env.filter("0_2_0");
    let signed = env.path("old_signed.wasm");
    let (_, stderr) = env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "old",
    ]);
    assert!(stderr.contains("as Proxy-Wasm filter"), "{stderr}");
    assert!(stderr.contains("(ABI 0.2.0)"), "{stderr}");
    let json = env.inspect_json(&signed);
    assert_eq!(json["kind"], "proxy-wasm-filter");
    assert_eq!(
        json["claims"]["tags"],
        serde_json::json!(["proxy-wasm-filter"])
    );
}

#[test]
fn an_actor_is_still_signed_and_shown_as_an_actor() {
    let env = Env::new();
    let module = env.actor();
    let signed = env.path("actor_signed.wasm");
    let (_, stderr) = env.ok(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&signed),
        "--name",
        "echo",
        "--http-server",
    ]);
    assert!(stderr.contains("as actor M"), "{stderr}");
    let json = env.inspect_json(&signed);
    assert_eq!(json["kind"], "actor");
    assert_eq!(json["proxy_wasm_abi"], serde_json::Value::Null);
    let (table, _) = env.ok(&["claims", "inspect", s(&signed)]);
    assert!(table.contains("Actor"), "{table}");
    assert!(!table.contains("Proxy-Wasm"), "{table}");
}

#[test]
fn a_filter_is_granted_no_capabilities() {
    let env = Env::new();
    let module = env.filter("0_2_1");
    let out = env.path("out.wasm");
    let err = env.fails(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&out),
        "--name",
        "headers",
        "--http-server",
    ]);
    assert!(err.contains("Proxy-Wasm filter (ABI 0.2.1)"), "{err}");
    assert!(err.contains("calls no capability provider"), "{err}");
    assert!(err.contains("drop --http-server"), "{err}");

    let err = env.fails(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&out),
        "--name",
        "headers",
        "--keyvalue",
        "--cap",
        "acme:inventory",
    ]);
    assert!(
        err.contains("drop --keyvalue, --cap acme:inventory"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written");
    assert!(!env.path("keys").exists(), "no key is generated either");
}

#[test]
fn the_filter_tag_is_reserved_for_proxy_wasm_modules() {
    let env = Env::new();
    let module = env.actor();
    let out = env.path("out.wasm");
    let err = env.fails(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&out),
        "--name",
        "echo",
        "--tag",
        "proxy-wasm-filter",
    ]);
    assert!(err.contains("the tag is reserved"), "{err}");
    assert!(err.contains("Proxy-Wasm ABI marker"), "{err}");
    assert!(err.contains("proxy_abi_version_0_2_1"), "{err}");
    assert!(!out.exists());
}

#[test]
fn abi_0_1_0_is_refused() {
    let env = Env::new();
    let module = env.filter("0_1_0");
    let out = env.path("out.wasm");
    let err = env.fails(&[
        "claims",
        "sign",
        s(&module),
        "-o",
        s(&out),
        "--name",
        "legacy",
    ]);
    assert!(err.contains("ABI 0.1.0 is not supported"), "{err}");
    assert!(err.contains("proxy-wasm SDK 0.2.x"), "{err}");
    assert!(!out.exists());
}
