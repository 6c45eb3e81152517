//! `waxosuit push`, `pull`, and `oci://` references in `up` and `call`,
//! against a real `docker-registry` on loopback.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{Dir, Up, get};
use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_plugin_fixtures::plugins;
use waxosuit_test_servers::{REGISTRY_PASSWORD, REGISTRY_USER, RegistryServer};

/// `waxosuit ARGS` in the test's directory, with no credentials or
/// registry settings from whoever runs the tests.
fn waxosuit(dir: &Dir, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waxosuit"))
        .args(args)
        .current_dir(dir.0.path())
        .env("WAXOSUIT_KEYS", dir.keys())
        .env("DOCKER_CONFIG", dir.path("docker"))
        .env_remove("WAXOSUIT_ALLOW_ANY_ISSUER")
        .env_remove("WAXOSUIT_REGISTRY_USER")
        .env_remove("WAXOSUIT_REGISTRY_PASSWORD")
        .env_remove("WAXOSUIT_REGISTRY_TOKEN")
        .env_remove("WAXOSUIT_REGISTRY_HOST")
        .env_remove("WAXOSUIT_INSECURE_REGISTRIES")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[track_caller]
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[track_caller]
fn refused(out: Output) -> String {
    assert!(
        !out.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// The acme:inventory plugin in an archive signed by the directory's account.
fn archive(dir: &Dir) -> PathBuf {
    let service = KeyPair::generate(KeyKind::Service);
    let mut par =
        waxosuit_par::ProviderArchive::create("acme:inventory", "Acme", "Inventory").unwrap();
    par.set_version("1.0.0");
    par.insert(
        plugins::TARGET,
        std::fs::read(plugins::ACME_INVENTORY).unwrap(),
    )
    .unwrap();
    par.sign(dir.account(), &service.public_key()).unwrap();
    let path = dir.path("acme.par");
    par.write_path(&path).unwrap();
    path
}

/// A test directory with `hello.wasm`, the HTTP example signed by its account.
fn hello_dir() -> Dir {
    let dir = Dir::new();
    dir.actor(
        waxosuit_test_fixtures::example("hello"),
        "hello",
        &["wascc:http_server"],
    );
    dir
}

fn push_json(dir: &Dir, file: &str, reference: &str, host: &str) -> serde_json::Value {
    let out = ok(waxosuit(
        dir,
        &[
            "push",
            file,
            reference,
            "--insecure-registry",
            host,
            "--json",
        ],
        &[],
    ));
    serde_json::from_str(&out).unwrap()
}

fn cache(dir: &Dir) -> String {
    dir.path("cache").display().to_string()
}

/// The hello actor (HTTP) and an inventory client bound to the archive's
/// capability, both named by reference.
fn by_reference_manifest(dir: &Dir, host: &str) -> PathBuf {
    dir.manifest(&format!(
        "actors:\n\
         \x20 - oci://{host}/team/hello:1.0.0\n\
         \x20 - oci://{host}/team/inventory-client:1.0.0\n\
         capabilities:\n\
         \x20 - id: wascc:http_server\n\
         \x20 - path: oci://{host}/team/inventory:1.0.0\n\
         bindings:\n\
         \x20 - {{ actor: hello, capability: wascc:http_server, values: {{ PORT: 0, ADDRESS: 127.0.0.1 }} }}\n\
         \x20 - {{ actor: inventory-client, capability: acme:inventory }}\n"
    ))
}

#[test]
fn actors_and_archives_round_trip_and_run_by_reference_then_from_the_cache() {
    let mut registry = RegistryServer::start().unwrap();
    let host = registry.host();
    let dir = hello_dir();
    dir.actor(
        waxosuit_test_fixtures::wapc_echo(),
        "inventory-client",
        &["acme:inventory"],
    );
    archive(&dir);

    let hello = push_json(
        &dir,
        "hello.wasm",
        &format!("oci://{host}/team/hello:1.0.0"),
        &host,
    );
    assert_eq!(hello["media_type"], "application/wasm");
    assert_eq!(hello["kind"], "actor");
    assert_eq!(hello["claims"]["name"], "hello");
    assert_eq!(hello["claims"]["issuer"], dir.account().public_key());
    let digest = hello["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    push_json(
        &dir,
        "inventory-client.wasm",
        &format!("oci://{host}/team/inventory-client:1.0.0"),
        &host,
    );
    let par = push_json(
        &dir,
        "acme.par",
        &format!("oci://{host}/team/inventory:1.0.0"),
        &host,
    );
    assert_eq!(
        par["media_type"],
        "application/vnd.waxosuit.provider-archive.layer.v1+par"
    );
    assert_eq!(par["claims"]["capability"], "acme:inventory");

    // On a terminal, a progress line (bytes, total, rate) on stderr;
    // `script` gives the command one.
    let command = format!(
        "{} push hello.wasm oci://{host}/team/hello:progress --insecure-registry {host}",
        env!("CARGO_BIN_EXE_waxosuit")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.0.path())
        .env("WAXOSUIT_KEYS", dir.keys())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains(&format!("pushing oci://{host}/team/hello:progress"))
            && shown.contains("/s"),
        "{shown}"
    );
    // Piped, the summary alone.
    let piped = waxosuit(
        &dir,
        &[
            "push",
            "hello.wasm",
            &format!("oci://{host}/team/hello:piped"),
            "--insecure-registry",
            &host,
        ],
        &[],
    );
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("pushing"));

    // Pulled back byte-identical, into files and the cache.
    for (reference, file, original) in [
        ("team/hello:1.0.0", "hello.pulled.wasm", "hello.wasm"),
        ("team/inventory:1.0.0", "acme.pulled.par", "acme.par"),
    ] {
        let out = ok(waxosuit(
            &dir,
            &[
                "pull",
                &format!("oci://{host}/{reference}"),
                "-o",
                file,
                "--insecure-registry",
                &host,
                "--cache-dir",
                &cache(&dir),
                "--json",
            ],
            &[],
        ));
        let pulled: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            std::fs::read(dir.path(file)).unwrap(),
            std::fs::read(dir.path(original)).unwrap(),
            "{reference}"
        );
        assert!(
            Path::new(pulled["file"].as_str().unwrap()).ends_with(file),
            "{pulled}"
        );
    }
    // By digest, too.
    ok(waxosuit(
        &dir,
        &[
            "pull",
            &format!("oci://{host}/team/hello@{digest}"),
            "--insecure-registry",
            &host,
            "--cache-dir",
            &cache(&dir),
        ],
        &[],
    ));

    // A fresh cache: `up` pulls everything, then serves.
    let fresh = dir.path("fresh-cache").display().to_string();
    let manifest = by_reference_manifest(&dir, &host);
    let args = [
        "--insecure-registry",
        host.as_str(),
        "--cache-dir",
        fresh.as_str(),
    ];
    let up = Up::start_with(&dir, &manifest, &args, &[]).unwrap();
    let summary = up.summary.join("\n");
    assert_eq!(summary.matches("from the registry").count(), 3, "{summary}");
    assert!(summary.contains("→ acme:inventory"), "{summary}");
    let (status, body) = get(up.addr("hello"), "/");
    assert_eq!(status, 200, "{body}");
    let (stopped, _, _) = up.terminate();
    assert!(stopped);

    // The registry is down: the same start is served from the cache.
    registry.stop();
    let up = Up::start_with(&dir, &manifest, &args, &[]).unwrap();
    let summary = up.summary.join("\n");
    assert_eq!(summary.matches("from the cache").count(), 3, "{summary}");
    let (status, _) = get(up.addr("hello"), "/");
    assert_eq!(status, 200);
    up.terminate();

    // …but not when told to ask the registry every time.
    let mut always = args.to_vec();
    always.extend(["--pull", "always"]);
    let err = Up::start_with(&dir, &manifest, &always, &[])
        .err()
        .expect("started without its registry");
    assert!(
        err.contains(&format!("oci://{host}/team/"))
            && err.contains("fetching the manifest failed"),
        "{err}"
    );

    // `call` by reference, from the cache.
    let out = ok(waxosuit(
        &dir,
        &[
            "call",
            &format!("oci://{host}/team/inventory-client:1.0.0"),
            "echo",
            "-d",
            "hi",
            "--cache-dir",
            &fresh,
            "--trusted-issuer",
            &dir.account().public_key(),
        ],
        &[],
    ));
    assert_eq!(out, "hi");
}

#[test]
fn the_registry_is_untrusted_transport() {
    let registry = RegistryServer::start().unwrap();
    let host = registry.host();
    let dir = hello_dir();
    push_json(
        &dir,
        "hello.wasm",
        &format!("oci://{host}/team/hello:1.0.0"),
        &host,
    );
    let start = |reference: &str| {
        let manifest = dir.manifest(&format!("actors:\n  - {reference}\n"));
        Up::start_with(
            &dir,
            &manifest,
            &["--insecure-registry", &host, "--cache-dir", &cache(&dir)],
            &[],
        )
        .err()
        .unwrap_or_else(|| panic!("{reference} was started"))
    };

    // A moving tag is refused before anything starts.
    let err = start(&format!("oci://{host}/team/hello:latest"));
    assert!(
        err.contains("actors[0]") && err.contains("--allow-latest"),
        "{err}"
    );
    assert!(!err.contains("provider registered"), "{err}");

    // A pinned digest that is not the tag's content.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let err = start(&format!("oci://{host}/team/hello@{wrong}"));
    assert!(err.contains(&wrong) && err.contains("not found"), "{err}");

    // Push by hand what `waxosuit push` would refuse to send.
    let signed = std::fs::read(dir.path("hello.wasm")).unwrap();
    let put = |repo: &str, layer: &[u8], layer_type: &str, config_type: &str| {
        let config = registry.put_blob(repo, b"{}").unwrap();
        let digest = registry.put_blob(repo, layer).unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "digest": config, "size": 2},
            "layers": [{"mediaType": layer_type, "digest": digest, "size": layer.len()}],
        }))
        .unwrap();
        registry
            .put_manifest(
                repo,
                "1.0.0",
                "application/vnd.oci.image.manifest.v1+json",
                &manifest,
            )
            .unwrap();
    };
    // The signed module with one byte of its code changed: the registry's
    // digests all hold, the embedded JWT's hash does not.
    // A custom section slipped in after the header keeps the module valid
    // and the JWT intact, and changes what the module hash covers.
    let mut tampered = signed[..8].to_vec();
    tampered.extend([0x00, 0x07, 0x06]);
    tampered.extend(b"tamper");
    tampered.extend(&signed[8..]);
    put(
        "team/tampered",
        &tampered,
        "application/wasm",
        "application/vnd.wasm.config.v0+json",
    );
    let err = start(&format!("oci://{host}/team/tampered:1.0.0"));
    assert!(err.contains("actors[0]") && err.contains("hash"), "{err}");
    let err = refused(waxosuit(
        &dir,
        &[
            "pull",
            &format!("oci://{host}/team/tampered:1.0.0"),
            "-o",
            "tampered.wasm",
            "--insecure-registry",
            &host,
            "--cache-dir",
            &cache(&dir),
        ],
        &[],
    ));
    assert!(err.contains("claims do not hold"), "{err}");
    assert!(
        !dir.path("tampered.wasm").exists(),
        "a refused pull wrote its file"
    );

    // An unsigned module, under a layer type wasmCloud used.
    put(
        "team/unsigned",
        waxosuit_test_fixtures::example("hello"),
        "application/vnd.module.wasm.content.layer.v1+wasm",
        "application/vnd.wasmcloud.actor.archive.config",
    );
    let err = start(&format!("oci://{host}/team/unsigned:1.0.0"));
    assert!(err.contains("actors[0]") && err.contains("jwt"), "{err}");

    // A container image: refused with its media types named.
    put(
        "team/image",
        b"not a tarball",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.config.v1+json",
    );
    let err = refused(waxosuit(
        &dir,
        &[
            "pull",
            &format!("oci://{host}/team/image:1.0.0"),
            "--insecure-registry",
            &host,
            "--cache-dir",
            &cache(&dir),
        ],
        &[],
    ));
    assert!(
        err.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{err}"
    );
    let err = start(&format!("oci://{host}/team/image:1.0.0"));
    assert!(err.contains("is not an actor"), "{err}");

    // Moving tags are refused unless allowed.
    let err = refused(waxosuit(
        &dir,
        &[
            "pull",
            &format!("oci://{host}/team/hello"),
            "--insecure-registry",
            &host,
        ],
        &[],
    ));
    assert!(err.contains("--allow-latest"), "{err}");
    // Plain HTTP only where named.
    let err = refused(waxosuit(
        &dir,
        &["pull", &format!("oci://{host}/team/hello:1.0.0")],
        &[],
    ));
    assert!(err.contains("--insecure-registry"), "{err}");
    // And an unsigned file is not pushed at all.
    std::fs::write(
        dir.path("raw.wasm"),
        waxosuit_test_fixtures::example("hello"),
    )
    .unwrap();
    let err = refused(waxosuit(
        &dir,
        &[
            "push",
            "raw.wasm",
            &format!("oci://{host}/team/raw:1.0.0"),
            "--insecure-registry",
            &host,
        ],
        &[],
    ));
    assert!(err.contains("claims sign"), "{err}");
}

#[test]
fn credentials_come_from_the_environment_or_docker_config() {
    let registry = RegistryServer::start_with_basic_auth().unwrap();
    let host = registry.host();
    let dir = hello_dir();
    let reference = format!("oci://{host}/team/hello:1.0.0");
    let push = [
        "push",
        "hello.wasm",
        reference.as_str(),
        "--insecure-registry",
        host.as_str(),
    ];

    let err = refused(waxosuit(&dir, &push, &[]));
    assert!(
        err.contains("refused access") && err.contains("WAXOSUIT_REGISTRY_USER"),
        "{err}"
    );
    let err = refused(waxosuit(
        &dir,
        &push,
        &[
            ("WAXOSUIT_REGISTRY_USER", REGISTRY_USER),
            ("WAXOSUIT_REGISTRY_PASSWORD", "not-the-password"),
            ("WAXOSUIT_REGISTRY_HOST", host.as_str()),
        ],
    ));
    assert!(err.contains("refused access"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    let unscoped = [
        ("WAXOSUIT_REGISTRY_USER", REGISTRY_USER),
        ("WAXOSUIT_REGISTRY_PASSWORD", REGISTRY_PASSWORD),
    ];
    // For no named registry: refused before anything is sent, with the fix.
    let err = refused(waxosuit(&dir, &push, &unscoped));
    assert!(
        err.contains("WAXOSUIT_REGISTRY_HOST is not")
            && err.contains("e.g. WAXOSUIT_REGISTRY_HOST="),
        "{err}"
    );
    assert!(!err.contains(REGISTRY_PASSWORD), "{err}");
    // Scoped to another registry, they are not sent here.
    let mut scoped = unscoped.to_vec();
    scoped.push(("WAXOSUIT_REGISTRY_HOST", "elsewhere.example"));
    let err = refused(waxosuit(&dir, &push, &scoped));
    assert!(err.contains("no credentials were sent"), "{err}");
    let mut creds = unscoped.to_vec();
    creds.push(("WAXOSUIT_REGISTRY_HOST", host.as_str()));
    let out = waxosuit(&dir, &push, &creds);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    assert!(stderr.contains("over plain HTTP"), "{stderr}");

    // A Docker config.json with the same credentials.
    std::fs::create_dir_all(dir.path("docker")).unwrap();
    let auth =
        data_encoding::BASE64.encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}").as_bytes());
    std::fs::write(
        dir.path("docker/config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    ok(waxosuit(
        &dir,
        &[
            "pull",
            &reference,
            "-o",
            "back.wasm",
            "--insecure-registry",
            &host,
            "--cache-dir",
            &cache(&dir),
        ],
        &[],
    ));
    assert_eq!(
        std::fs::read(dir.path("back.wasm")).unwrap(),
        std::fs::read(dir.path("hello.wasm")).unwrap()
    );
}
