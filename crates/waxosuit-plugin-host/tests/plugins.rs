//! Real plugins (built from `plugins/` by `waxosuit-plugin-fixtures`),
//! packaged into signed archives, registered from a manifest, and called by
//! a real signed actor (`wapc-echo`'s `forward` operation).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use waxosuit_claims::{ClaimsError, Verifier};
use waxosuit_host::{Host, HostBuilder};
use waxosuit_manifest::{CapabilitySource, Format, Manifest};
use waxosuit_par::{HOST_TARGET, ParError, ProviderArchive};
use waxosuit_plugin_fixtures::plugins;
use waxosuit_plugin_host::{PluginError, PluginProvider, probe_library};
use waxosuit_provider::{CapabilityProvider, ProviderCall};

mod common;
use common::{INVENTORY, Keys, msgpack};

fn forward(namespace: &str, operation: &str, body: &[u8]) -> Vec<u8> {
    let mut p = format!("default\n{namespace}\n{operation}\n").into_bytes();
    p.extend_from_slice(body);
    p
}

#[derive(Serialize)]
struct GetStock<'a> {
    sku: &'a str,
}

#[derive(Serialize)]
struct Reserve<'a> {
    sku: &'a str,
    qty: u32,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Stock {
    sku: String,
    count: u32,
}

/// Starts a host from `yaml` the way `waxosuit up` does: plugin archives
/// and actors are verified by the same `verifier`, and archives are
/// registered as lazy [`PluginProvider`]s.
async fn host_from_manifest(
    dir: &Path,
    yaml: &str,
    verifier: &Verifier,
) -> (Host, Vec<Arc<PluginProvider>>) {
    let env = |_: &str| None;
    let manifest = Manifest::from_str_with_env(yaml, Format::Yaml, dir, "host.yaml", &env).unwrap();
    let host = HostBuilder::new()
        .verifier(verifier.clone())
        .build()
        .unwrap();
    let mut plugins = Vec::new();
    for entry in &manifest.capabilities {
        let CapabilitySource::Plugin { source, .. } = &entry.kind else {
            panic!("this test only declares plugins");
        };
        let path = source.path().expect("this test declares files");
        let verified = ProviderArchive::read_path(path)
            .unwrap()
            .verify(verifier)
            .unwrap();
        let plugin = Arc::new(PluginProvider::from_archive(&verified).unwrap());
        host.add_provider(&entry.binding_name, plugin.clone())
            .await
            .unwrap();
        plugins.push(plugin);
    }
    for actor in &manifest.actors {
        let bytes = std::fs::read(actor.source.path().unwrap()).unwrap();
        host.add_actor(&bytes, &actor.declared, None).await.unwrap();
    }
    for b in &manifest.bindings {
        host.set_binding(&b.actor, &b.capability, &b.binding, b.values.clone())
            .await
            .unwrap();
    }
    (host, plugins)
}

const MANIFEST: &str = r#"
actors:
  - ./client_signed.wasm
capabilities:
  - path: ./acme.par
bindings:
  - actor: inventory-client
    capability: acme:inventory
    values: { stock.bolt: "4" }
"#;

/// Writes the archive and the actor next to a manifest.
fn stage(keys: &Keys, dir: &Path, caps: &[&str]) {
    keys.archive(INVENTORY, plugins::ACME_INVENTORY)
        .write_path(dir.join("acme.par"))
        .unwrap();
    std::fs::write(
        dir.join("client_signed.wasm"),
        keys.actor("inventory-client", caps),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_calls_a_signed_plugin_loaded_from_a_manifest() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    stage(&keys, dir.path(), &[INVENTORY]);
    let (host, plugins) = host_from_manifest(dir.path(), MANIFEST, &keys.verifier()).await;
    let plugin = &plugins[0];
    assert!(plugin.is_loaded(), "bound, so loaded");
    assert_eq!(plugin.load_count(), 1);

    let call = |op: &'static str, body: Vec<u8>| {
        let host = host.clone();
        async move {
            host.call_actor(
                "inventory-client",
                "forward",
                &forward(INVENTORY, op, &body),
            )
            .await
        }
    };
    let reply = call("GetStock", msgpack(&GetStock { sku: "widget" }))
        .await
        .unwrap();
    let stock: Stock = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(
        stock,
        Stock {
            sku: "widget".into(),
            count: 10
        }
    );

    // Seeded by the binding's values.
    let reply = call("GetStock", msgpack(&GetStock { sku: "bolt" }))
        .await
        .unwrap();
    let stock: Stock = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(stock.count, 4);

    let reply = call(
        "Reserve",
        msgpack(&Reserve {
            sku: "widget",
            qty: 3,
        }),
    )
    .await
    .unwrap();
    let stock: Stock = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(stock.count, 7);

    let err = call(
        "Reserve",
        msgpack(&Reserve {
            sku: "widget",
            qty: 100,
        }),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("insufficient stock"), "{err}");
    let err = call("GetStock", msgpack(&GetStock { sku: "nope" }))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown sku"), "{err}");

    // Unloaded when the last binding goes, and loaded again on the next one.
    host.remove_binding("inventory-client", INVENTORY, "default")
        .await
        .unwrap();
    assert!(!plugin.is_loaded(), "no binding left, so unloaded");
    host.set_binding("inventory-client", INVENTORY, "default", BTreeMap::new())
        .await
        .unwrap();
    assert!(plugin.is_loaded());
    assert_eq!(plugin.load_count(), 2);
    let reply = call("GetStock", msgpack(&GetStock { sku: "widget" }))
        .await
        .unwrap();
    let stock: Stock = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(stock.count, 10, "a fresh load starts from fresh state");

    host.remove_actor("inventory-client").await.unwrap();
    assert!(
        !plugin.is_loaded(),
        "removing the actor removes its binding"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plugin_call_is_an_error_and_the_host_keeps_serving() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    stage(&keys, dir.path(), &[INVENTORY]);
    let (host, plugins) = host_from_manifest(dir.path(), MANIFEST, &keys.verifier()).await;

    for _ in 0..2 {
        let err = host
            .call_actor(
                "inventory-client",
                "forward",
                &forward(INVENTORY, "Panic", b""),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(err.to_string().contains("asked to panic"), "{err}");
    }
    let reply = host
        .call_actor(
            "inventory-client",
            "forward",
            &forward(INVENTORY, "GetStock", &msgpack(&GetStock { sku: "widget" })),
        )
        .await
        .unwrap();
    let stock: Stock = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(stock.count, 10);
    assert!(plugins[0].is_loaded());
    assert!(plugins[0].health().await.healthy);
    host.shutdown().await;
    assert!(!plugins[0].is_loaded(), "host shutdown unloads the plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_calls_actors_back_through_the_host() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    stage(&keys, dir.path(), &[INVENTORY]);
    let (host, plugins) = host_from_manifest(dir.path(), MANIFEST, &keys.verifier()).await;
    let key = host.resolve_actor("inventory-client").unwrap();

    #[derive(Serialize)]
    struct CallActor<'a> {
        operation: &'a str,
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
    }
    let reply = plugins[0]
        .handle_call(ProviderCall {
            actor: key.to_string(),
            binding: "default".into(),
            operation: "CallActor".into(),
            payload: msgpack(&CallActor {
                operation: "echo",
                body: b"through the host callback",
            }),
        })
        .await
        .unwrap();
    assert_eq!(reply, b"through the host callback");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_without_the_capability_is_denied_and_nothing_is_loaded() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    stage(&keys, dir.path(), &[]);
    let manifest = MANIFEST.replace("bindings:", "unused_bindings:");
    let manifest = manifest.split("unused_bindings:").next().unwrap();
    let (host, plugins) = host_from_manifest(dir.path(), manifest, &keys.verifier()).await;
    let plugin = &plugins[0];
    assert!(!plugin.is_loaded(), "registering loads nothing");

    let err = host
        .set_binding("inventory-client", INVENTORY, "default", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(INVENTORY), "{err}");
    let err = host
        .call_actor(
            "inventory-client",
            "forward",
            &forward(INVENTORY, "GetStock", &msgpack(&GetStock { sku: "widget" })),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains(INVENTORY), "{err}");
    assert!(!plugin.is_loaded(), "the library was never loaded");
    assert_eq!(plugin.load_count(), 0);
    host.shutdown().await;
}

#[test]
fn a_tampered_library_is_refused() {
    let keys = Keys::new();
    let mut par = ProviderArchive::from_bytes(
        &keys
            .archive(INVENTORY, plugins::ACME_INVENTORY)
            .to_bytes()
            .unwrap(),
    )
    .unwrap();
    let mut library = par.library_unverified(HOST_TARGET).unwrap().to_vec();
    let last = library.len() - 1;
    library[last] ^= 0xff;
    par.insert(HOST_TARGET, library).unwrap(); // keeps the old signature
    let tampered = ProviderArchive::from_bytes(&par.to_bytes().unwrap()).unwrap();
    let err = tampered.verify(&keys.verifier()).unwrap_err();
    assert!(matches!(err, ParError::HashMismatch { .. }), "{err}");
    assert!(err.to_string().contains("hash mismatch"), "{err}");
}

#[test]
fn a_bad_archive_signature_is_refused() {
    let keys = Keys::new();
    let par = keys.archive(INVENTORY, plugins::ACME_INVENTORY);
    // Re-pack the archive as plain tar with one signature character changed.
    let token = par.token().unwrap();
    let sig_start = token.rfind('.').unwrap() + 1;
    let at = sig_start + (token.len() - sig_start) / 2;
    let mut forged = token.to_string();
    let replacement = if &token[at..=at] == "A" { "B" } else { "A" };
    forged.replace_range(at..=at, replacement);

    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("claims.jwt".to_string(), forged.into_bytes()),
        (
            waxosuit_par::library_file_name(HOST_TARGET),
            par.library_unverified(HOST_TARGET).unwrap().to_vec(),
        ),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    let forged = ProviderArchive::from_bytes(&tar.into_inner().unwrap()).unwrap();
    let err = forged.verify(&keys.verifier()).unwrap_err();
    assert!(
        matches!(err, ParError::Claims(ClaimsError::BadSignature { .. })),
        "{err}"
    );
}

#[test]
fn an_untrusted_issuer_is_refused() {
    let keys = Keys::new();
    let par = keys.archive(INVENTORY, plugins::ACME_INVENTORY);
    let stranger = Keys::new();
    let err = par.verify(&stranger.verifier()).unwrap_err();
    assert!(
        matches!(
            err,
            ParError::Untrusted(ClaimsError::UntrustedIssuer { .. })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&keys.account.public_key()),
        "{err}"
    );
}

#[test]
fn a_default_verifier_loads_no_native_code() {
    let keys = Keys::new();
    let par = keys.archive(INVENTORY, plugins::ACME_INVENTORY);
    let err = par.verify(&Verifier::new()).unwrap_err();
    assert!(
        matches!(
            err,
            ParError::Untrusted(ClaimsError::NoTrustedIssuer { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("--trusted-issuer"), "{err}");
    // Development mode is an explicit choice.
    let verified = par.verify(&Verifier::new().allow_any_issuer()).unwrap();
    assert_eq!(verified.issuer(), keys.account.public_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abi_version_mismatch_is_refused() {
    let err = probe_library(Path::new(plugins::ABI_MISMATCH)).unwrap_err();
    assert!(
        matches!(
            err,
            PluginError::AbiMismatch {
                expected: 1,
                found: 999,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ABI version mismatch"), "{err}");

    // Through a signed archive: registration works (nothing is loaded), the
    // first binding fails with the mismatch, and nothing stays loaded.
    let keys = Keys::new();
    let verified = keys
        .archive("acme:future", plugins::ABI_MISMATCH)
        .verify(&keys.verifier())
        .unwrap();
    let plugin = Arc::new(PluginProvider::from_archive(&verified).unwrap());
    let host = keys.host();
    host.add_provider("default", plugin.clone()).await.unwrap();
    host.add_actor(
        &keys.actor("future-client", &["acme:future"]),
        "future",
        None,
    )
    .await
    .unwrap();
    let err = host
        .set_binding("future-client", "acme:future", "default", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ABI version mismatch"), "{err}");
    assert!(!plugin.is_loaded());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builtin_keyvalue_provider_runs_as_a_plugin() {
    use waxosuit_codec::keyvalue::{GetRequest, GetResponse, SetRequest};
    let keys = Keys::new();
    let verified = keys
        .archive("wascc:keyvalue", plugins::KEYVALUE_MEMORY)
        .verify(&keys.verifier())
        .unwrap();
    let plugin = Arc::new(PluginProvider::from_archive(&verified).unwrap());
    let host = keys.host();
    host.add_provider("default", plugin.clone()).await.unwrap();
    host.add_actor(&keys.actor("kv-client", &["wascc:keyvalue"]), "kv", None)
        .await
        .unwrap();
    host.set_binding("kv-client", "wascc:keyvalue", "default", BTreeMap::new())
        .await
        .unwrap();
    let set = SetRequest {
        key: "greeting".into(),
        value: "hello".into(),
        expires_s: 0,
    };
    host.call_actor(
        "kv-client",
        "forward",
        &forward("wascc:keyvalue", "Set", &msgpack(&set)),
    )
    .await
    .unwrap();
    let get = GetRequest {
        key: "greeting".into(),
    };
    let reply = host
        .call_actor(
            "kv-client",
            "forward",
            &forward("wascc:keyvalue", "Get", &msgpack(&get)),
        )
        .await
        .unwrap();
    let got: GetResponse = waxosuit_codec::deserialize(&reply).unwrap();
    assert_eq!(got.value, "hello");
    assert!(got.exists);
    host.shutdown().await;
    assert!(!plugin.is_loaded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_library_describes_itself_and_is_not_left_loaded() {
    let plugin = PluginProvider::from_unsigned_library(plugins::ACME_INVENTORY).unwrap();
    assert_eq!(plugin.descriptor().id, INVENTORY);
    assert!(!plugin.is_loaded());
    let err = PluginProvider::from_unsigned_library("/nonexistent/libnothing.so").unwrap_err();
    assert!(matches!(err, PluginError::Open { .. }), "{err}");
}

/// The memory store built as a native plugin passes the contract's
/// conformance suite through the C ABI, errors and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyvalue_plugin_passes_the_conformance_suite() {
    let keys = Keys::new();
    let verified = keys
        .archive("wascc:keyvalue", plugins::KEYVALUE_MEMORY)
        .verify(&keys.verifier())
        .unwrap();
    let plugin = Arc::new(PluginProvider::from_archive(&verified).unwrap());
    let host = keys.host();
    host.add_provider("default", plugin.clone()).await.unwrap();
    let subject =
        waxosuit_cap_keyvalue::conformance::ProviderSubject::bind(&*plugin, "MPLUGINKV", &[])
            .await
            .unwrap();
    waxosuit_cap_keyvalue::conformance::run(&subject)
        .await
        .assert_passed();
    host.shutdown().await;
}

/// A host with the in-memory key-value plugin (from a signed archive) staged
/// in `staging`, and an actor granted its capability, not yet bound.
async fn kv_plugin_staged_in(staging: &Path) -> (Host, Arc<PluginProvider>) {
    let keys = Keys::new();
    let verified = keys
        .archive("wascc:keyvalue", plugins::KEYVALUE_MEMORY)
        .verify(&keys.verifier())
        .unwrap();
    let plugin = Arc::new(
        PluginProvider::from_archive(&verified)
            .unwrap()
            .stage_in(staging),
    );
    let host = keys.host();
    host.add_provider("default", plugin.clone()).await.unwrap();
    host.add_actor(&keys.actor("kv-client", &["wascc:keyvalue"]), "kv", None)
        .await
        .unwrap();
    (host, plugin)
}

/// The subdirectories of `dir` the provider staged libraries in.
fn staged(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_is_staged_in_the_directory_given_and_nowhere_else() {
    let root = tempfile::tempdir().unwrap();
    let staging = root.path().join("cache").join("plugins");
    let (host, plugin) = kv_plugin_staged_in(&staging).await;
    assert!(staged(&staging).is_empty(), "staged before any binding");
    host.set_binding("kv-client", "wascc:keyvalue", "default", BTreeMap::new())
        .await
        .unwrap();
    assert!(plugin.is_loaded());
    let dirs = staged(&staging);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&staging), 0o700);
        assert_eq!(mode(&dirs[0]), 0o700);
    }
    host.remove_binding("kv-client", "wascc:keyvalue", "default")
        .await
        .unwrap();
    assert!(!plugin.is_loaded());
    assert!(
        staged(&staging).is_empty(),
        "left behind: {:?}",
        staged(&staging)
    );
    host.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_directory_others_may_write_to_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let staging = root.path().join("shared");
    std::fs::create_dir(&staging).unwrap();
    std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (host, plugin) = kv_plugin_staged_in(&staging).await;
    let err = host
        .set_binding("kv-client", "wascc:keyvalue", "default", BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("others may write to it (mode 777); chmod go-w it"),
        "{err}"
    );
    assert!(!plugin.is_loaded());
    assert!(staged(&staging).is_empty(), "{:?}", staged(&staging));
    host.shutdown().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staging_directory_of_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let root = tempfile::tempdir().unwrap();
    // Someone else's directory: as root (CI), one handed to `nobody`; as
    // any other user, the file system's root, which root owns.
    let staging = if std::fs::metadata(root.path()).unwrap().uid() == 0 {
        let dir = root.path().join("nobody");
        std::fs::create_dir(&dir).unwrap();
        let chown = std::process::Command::new("chown")
            .args(["65534:65534"])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success(), "chown failed");
        dir
    } else {
        std::path::PathBuf::from("/")
    };
    let (host, plugin) = kv_plugin_staged_in(&staging).await;
    let err = host
        .set_binding("kv-client", "wascc:keyvalue", "default", BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not by this process"), "{err}");
    assert!(err.contains(&staging.display().to_string()), "{err}");
    assert!(!plugin.is_loaded());
    host.shutdown().await;
}
