//! Push, pull and the cache against a real `docker-registry` on loopback.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use waxosuit_registry::{
    Artifact, ArtifactKind, ArtifactRef, Cache, ClaimsSummary, CredentialStore, PullPolicy, Puller,
    Registry, RegistryError, RegistryOptions, Transfer, media, sha256_digest,
};
use waxosuit_test_servers::{REGISTRY_PASSWORD, REGISTRY_USER, RegistryServer};

/// A user and password from the environment, for `host`.
fn basic(user: &str, password: &str, host: &str) -> CredentialStore {
    CredentialStore::from_parts(
        Some(user.into()),
        Some(password.into()),
        None,
        Some(host),
        None,
    )
    .unwrap()
}

fn options(server: &RegistryServer) -> RegistryOptions {
    RegistryOptions {
        insecure: vec![server.host()],
        ..RegistryOptions::default()
    }
}

fn anonymous(server: &RegistryServer) -> Registry {
    Registry::new(CredentialStore::anonymous(), options(server))
}

fn reference(server: &RegistryServer, repo_tag: &str) -> ArtifactRef {
    ArtifactRef::parse(&format!("oci://{}/{repo_tag}", server.host()), false).unwrap()
}

fn actor(bytes: &[u8]) -> Artifact {
    Artifact {
        kind: ArtifactKind::Actor,
        bytes: Bytes::copy_from_slice(bytes),
        claims: ClaimsSummary {
            name: Some("hello".into()),
            version: Some("1.0.0".into()),
            issuer: "AISSUER".into(),
            subject: "MSUBJECT".into(),
            capability: None,
        },
        targets: Vec::new(),
    }
}

/// Bytes larger than one upload chunk, so progress has several steps.
fn module_bytes() -> Vec<u8> {
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend((0..600_000u32).map(|i| (i % 251) as u8));
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_actor_comes_back_byte_identical_in_the_cncf_layout() {
    let server = RegistryServer::start().unwrap();
    let registry = anonymous(&server);
    let r = reference(&server, "team/hello:1.0.0");
    let bytes = module_bytes();
    let steps = Arc::new(Mutex::new(Vec::<Transfer>::new()));
    let seen = Arc::clone(&steps);
    let pushed = registry
        .push(
            &r,
            &actor(&bytes),
            Some(Arc::new(move |t| seen.lock().unwrap().push(t))),
        )
        .await
        .unwrap();
    assert_eq!(pushed.layer_digest, sha256_digest(&bytes));
    assert_eq!(pushed.size, bytes.len() as u64);
    assert!(!pushed.layer_existed);
    let steps = steps.lock().unwrap().clone();
    assert!(steps.len() > 1, "{steps:?}");
    assert_eq!(steps.last().unwrap().done, bytes.len() as u64);

    // The manifest as any OCI tool sees it.
    let (status, raw) = server
        .get("/v2/team/hello/manifests/1.0.0", media::OCI_MANIFEST)
        .unwrap();
    assert_eq!(status, 200);
    let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(manifest["mediaType"], media::OCI_MANIFEST);
    assert_eq!(manifest["config"]["mediaType"], media::WASM_CONFIG);
    assert_eq!(manifest["layers"][0]["mediaType"], media::WASM_LAYER);
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let annotations = &manifest["annotations"];
    assert_eq!(annotations[media::ANNOTATION_TITLE], "hello");
    assert_eq!(annotations[media::ANNOTATION_VERSION], "1.0.0");
    assert_eq!(annotations[media::ANNOTATION_ISSUER], "AISSUER");
    assert_eq!(annotations[media::ANNOTATION_SUBJECT], "MSUBJECT");
    assert_eq!(sha256_digest(&raw), pushed.digest);

    let resolved = registry
        .resolve(&r, Some(ArtifactKind::Actor))
        .await
        .unwrap();
    assert_eq!(resolved.digest, pushed.digest);
    assert_eq!(resolved.claims.name.as_deref(), Some("hello"));
    let pulled = registry.fetch_layer(&r, &resolved, None).await.unwrap();
    assert_eq!(pulled, bytes);

    // Pushing again sends no layer.
    let again = registry.push(&r, &actor(&bytes), None).await.unwrap();
    assert!(again.layer_existed);

    // Asked for as a provider archive, it is refused with what it is.
    let err = registry
        .resolve(&r, Some(ArtifactKind::ProviderArchive))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::WrongMediaType { .. }), "{err}");
    assert!(
        err.to_string().contains("holds a actor") || err.to_string().contains("an actor"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_basic_auth_names_the_variables_when_refusing() {
    let server = RegistryServer::start_with_basic_auth().unwrap();
    let r = reference(&server, "team/hello:1.0.0");

    let none = anonymous(&server);
    let err = none.push(&r, &actor(b"\0asm"), None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("WAXOSUIT_REGISTRY_USER"), "{err}");
    assert!(
        err.to_string().contains("no credentials were sent"),
        "{err}"
    );

    let wrong = Registry::new(
        basic(REGISTRY_USER, "nope", &server.host()),
        options(&server),
    );
    let err = wrong.resolve(&r, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string().contains("came from WAXOSUIT_REGISTRY_USER"),
        "{err}"
    );
    assert!(
        !err.to_string().contains("nope"),
        "the password is never shown: {err}"
    );

    let right = Registry::new(
        basic(REGISTRY_USER, REGISTRY_PASSWORD, &server.host()),
        options(&server),
    );
    right.push(&r, &actor(b"\0asm-auth"), None).await.unwrap();
    let resolved = right.resolve(&r, None).await.unwrap();
    assert_eq!(
        right.fetch_layer(&r, &resolved, None).await.unwrap(),
        b"\0asm-auth"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_a_restart_with_the_registry_down() {
    let mut server = RegistryServer::start().unwrap();
    let cache_dir = tempfile::tempdir().unwrap();
    let r = reference(&server, "team/hello:2.0.0");
    let bytes = module_bytes();
    anonymous(&server)
        .push(&r, &actor(&bytes), None)
        .await
        .unwrap();

    let cold = Puller::new(
        anonymous(&server),
        Cache::new(cache_dir.path()),
        PullPolicy::Missing,
    );
    let first = cold
        .fetch(&r, Some(ArtifactKind::Actor), None)
        .await
        .unwrap();
    assert!(first.contacted_registry && first.downloaded);
    assert_eq!(first.bytes, bytes);
    assert!(first.path.starts_with(cache_dir.path()));
    // The same start asks the registry once per reference.
    let second = cold
        .fetch(&r, Some(ArtifactKind::Actor), None)
        .await
        .unwrap();
    assert!(!second.contacted_registry);

    server.stop();
    let warm = Puller::new(
        anonymous(&server),
        Cache::new(cache_dir.path()),
        PullPolicy::Missing,
    );
    let served = warm
        .fetch(&r, Some(ArtifactKind::Actor), None)
        .await
        .unwrap();
    assert!(!served.contacted_registry);
    assert_eq!(served.bytes, bytes);
    // The pinned form is found offline too.
    let pinned = r.pinned(&first.resolved.digest);
    let by_digest = warm.fetch(&pinned, None, None).await.unwrap();
    assert_eq!(by_digest.bytes, bytes);

    // `always` must ask the registry, which is down.
    let always = Puller::new(
        anonymous(&server),
        Cache::new(cache_dir.path()),
        PullPolicy::Always,
    );
    let err = always.fetch(&r, None, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::Transport { .. }), "{err}");

    // `never` with an empty cache says how to fill it.
    let empty = tempfile::tempdir().unwrap();
    let never = Puller::new(
        anonymous(&server),
        Cache::new(empty.path()),
        PullPolicy::Never,
    );
    let err = never.fetch(&r, None, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::NotCached { .. }), "{err}");
    assert!(err.to_string().contains("waxosuit pull"), "{err}");

    // Back up, `always` resolves again but downloads nothing new.
    server.restart().unwrap();
    let again = always.fetch(&r, None, None).await.unwrap();
    assert!(again.contacted_registry && !again.downloaded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_digests_that_do_not_match_and_foreign_artifacts_are_refused() {
    let server = RegistryServer::start().unwrap();
    let registry = anonymous(&server);
    let r = reference(&server, "team/hello:3.0.0");
    let pushed = registry
        .push(&r, &actor(b"\0asm-pinned"), None)
        .await
        .unwrap();
    let good = r.pinned(&pushed.digest);
    registry.resolve(&good, None).await.unwrap();
    let wrong = r.pinned(&sha256_digest(b"something else"));
    let err = registry.resolve(&wrong, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::NotFound { .. } | RegistryError::DigestMismatch { .. }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&sha256_digest(b"something else")),
        "{err}"
    );

    // A container image pushed by hand.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"not really a tarball";
    let config_digest = server.put_blob("team/image", config).unwrap();
    let layer_digest = server.put_blob("team/image", layer).unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
    }))
    .unwrap();
    server
        .put_manifest("team/image", "1.0", media::OCI_MANIFEST, &manifest)
        .unwrap();
    let image = reference(&server, "team/image:1.0");
    let err = registry
        .resolve(&image, Some(ArtifactKind::Actor))
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::WrongMediaType { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{err}"
    );

    // A layer announced smaller than it is: refused before it is all read.
    let big = vec![7u8; 100_000];
    let big_digest = server.put_blob("team/liar", &big).unwrap();
    let cfg = server.put_blob("team/liar", b"{}").unwrap();
    let liar = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::WASM_CONFIG, "digest": cfg, "size": 2},
        "layers": [{"mediaType": media::WASM_LAYER, "digest": big_digest, "size": 10}],
    }))
    .unwrap();
    server
        .put_manifest("team/liar", "1.0", media::OCI_MANIFEST, &liar)
        .unwrap();
    let liar = reference(&server, "team/liar:1.0");
    let resolved = registry.resolve(&liar, None).await.unwrap();
    let err = registry
        .fetch_layer(&liar, &resolved, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("10 bytes"), "{err}");

    // Over the configured limit: refused before downloading.
    let small = Registry::new(
        CredentialStore::anonymous(),
        RegistryOptions {
            max_artifact_bytes: 5,
            ..options(&server)
        },
    );
    let resolved = small.resolve(&r, None).await.unwrap();
    let err = small.fetch_layer(&r, &resolved, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("--max-artifact-mib"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_only_spoken_to_registries_named_insecure() {
    let server = RegistryServer::start().unwrap();
    let strict = Registry::new(CredentialStore::anonymous(), RegistryOptions::default());
    let r = reference(&server, "team/hello:1.0.0");
    let err = strict.resolve(&r, None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("--insecure-registry {}", server.host())),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_never_answers_is_given_up_on_at_the_deadline() {
    // Accepts connections and reads requests, answers nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let registry = Registry::new(
        CredentialStore::anonymous(),
        RegistryOptions {
            insecure: vec![host.clone()],
            deadline: std::time::Duration::from_secs(1),
            ..RegistryOptions::default()
        },
    );
    let r = ArtifactRef::parse(&format!("oci://{host}/team/hello:1.0.0"), false).unwrap();
    let started = std::time::Instant::now();
    let err = registry.resolve(&r, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("--registry-timeout"), "{err}");
    // Given up on at the deadline, not at the 60 s read timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// A "registry" on a free port answering every request with `head` (a
/// status line and headers), `{realm}` in it replaced by `realm`.
fn challenging_registry(head: &str, realm: std::net::SocketAddr) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let head = head.replace("{realm}", &realm.to_string());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "{head}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_handed_to_a_plain_http_token_service() {
    // Registries whose challenge names a plain-HTTP token service on
    // another port, however it is written; whoever listens there would get
    // the password.
    for head in [
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm}/token\",service=\"x\"",
        // After another challenge in the same header.
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\", Bearer realm=\"http://{realm}/token\"",
        // In a header of its own, after a harmless one.
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\nWWW-Authenticate: Bearer realm=\"http://{realm}/token\"",
        // The scheme in capitals.
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"HTTP://{realm}/token\"",
        // A space before `=`, and a second realm after an escaped quote (the
        // client takes the last).
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer service=\"x\", realm =\"http://{realm}/token\"",
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"https://ok/\\\"\", realm=\"http://{realm}/token\"",
    ] {
        let realm = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm_addr = realm.local_addr().unwrap();
        realm.set_nonblocking(true).unwrap();
        let host = challenging_registry(head, realm_addr);
        let registry = Registry::new(
            basic("u", "secret", &host),
            RegistryOptions {
                insecure: vec![host.clone()],
                ..RegistryOptions::default()
            },
        );
        let r = ArtifactRef::parse(&format!("oci://{host}/team/hello:1.0.0"), false).unwrap();
        let err = registry.resolve(&r, None).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::InsecureRealm { .. }),
            "{head}: {err}"
        );
        assert!(err.to_string().contains(&realm_addr.to_string()), "{err}");
        // Nobody called the token service.
        assert!(realm.accept().is_err(), "{head}");
    }

    // Reached through a redirect of `/v2/`, the challenge is still read.
    let realm = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let realm_addr = realm.local_addr().unwrap();
    realm.set_nonblocking(true).unwrap();
    let target = challenging_registry(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm}/token\"",
        realm_addr,
    );
    let redirect = format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/v2/");
    let host = challenging_registry(&redirect, realm_addr);
    let registry = Registry::new(
        basic("u", "secret", &host),
        RegistryOptions {
            insecure: vec![host.clone(), target.clone()],
            ..RegistryOptions::default()
        },
    );
    let r = ArtifactRef::parse(&format!("oci://{host}/team/hello:1.0.0"), false).unwrap();
    let err = registry.resolve(&r, None).await.unwrap_err();
    assert!(matches!(err, RegistryError::InsecureRealm { .. }), "{err}");
    assert!(realm.accept().is_err());
    drop(realm);

    // Named insecure itself, it is a development setup and allowed.
    let realm = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let realm_addr = realm.local_addr().unwrap();
    let host = challenging_registry(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{realm}/token\",service=\"x\"",
        realm_addr,
    );
    let allowed = Registry::new(
        basic("u", "secret", &host),
        RegistryOptions {
            insecure: vec![host.clone(), realm_addr.to_string()],
            ..RegistryOptions::default()
        },
    );
    drop(realm);
    let r = ArtifactRef::parse(&format!("oci://{host}/team/hello:1.0.0"), false).unwrap();
    let err = allowed.resolve(&r, None).await.unwrap_err();
    assert!(!matches!(err, RegistryError::InsecureRealm { .. }), "{err}");
}
