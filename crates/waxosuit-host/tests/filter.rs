//! Proxy-Wasm filters at the host: admitted with the trust and policy of
//! actors, and never mistaken for actors (nor actors for filters).

use std::sync::Arc;

use waxosuit_claims::{
    Actor, Claims, ClaimsError, KeyKind, KeyPair, PROXY_WASM_FILTER_TAG, ProxyWasmAbi, Verifier,
    embed_claims,
};
use waxosuit_host::{Authorizer, Host, HostBuilder, HostError};
use waxosuit_policy::{Policy, PolicyConfig};
use waxosuit_policy_rego::RegoEngine;

/// The smallest Proxy-Wasm module of an ABI: its marker and a memory.
fn proxy_wasm(abi: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (func (export "proxy_abi_version_{abi}")) (memory (export "memory") 1))"#
    ))
    .unwrap()
}

/// A module with no Proxy-Wasm marker.
fn plain() -> Vec<u8> {
    wat::parse_str(r#"(module (func (export "hello")) (memory (export "memory") 1))"#).unwrap()
}

struct Account(KeyPair);

impl Account {
    fn new() -> Account {
        Account(KeyPair::generate(KeyKind::Account))
    }

    fn verifier(&self) -> Verifier {
        Verifier::new().trust_issuer(&self.0.public_key()).unwrap()
    }

    fn host(&self) -> Host {
        HostBuilder::new()
            .verifier(self.verifier())
            .build()
            .unwrap()
    }

    /// Signs `module` as `name` with these tags; returns it and its key.
    fn sign(&self, module: &[u8], name: &str, tags: &[&str]) -> (Vec<u8>, String) {
        let subject = KeyPair::generate(KeyKind::Module);
        let claims = Claims::<Actor>::builder()
            .issuer(self.0.public_key())
            .subject(subject.public_key())
            .metadata(Actor {
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                ..Actor::named(name)
            })
            .build();
        (
            embed_claims(module, &claims, &self.0).unwrap(),
            subject.public_key(),
        )
    }

    fn filter(&self, name: &str) -> (Vec<u8>, String) {
        self.sign(&proxy_wasm("0_2_1"), name, &[PROXY_WASM_FILTER_TAG])
    }
}

#[tokio::test]
async fn a_tagged_proxy_wasm_module_is_admitted_and_not_registered() {
    let account = Account::new();
    let host = account.host();
    let (filter, key) = account.filter("headers");
    let claims = host.admit_filter(&filter, "./headers.wasm").await.unwrap();
    assert_eq!(claims.public_key(), key);
    assert_eq!(claims.name(), "headers");
    assert!(claims.is_proxy_wasm_filter());
    assert!(host.actors().is_empty(), "a filter is not an actor");

    // ABI 0.2.0 is supported too.
    let (filter, _) = account.sign(&proxy_wasm("0_2_0"), "old", &[PROXY_WASM_FILTER_TAG]);
    host.admit_filter(&filter, "old.wasm").await.unwrap();
}

#[tokio::test]
async fn a_module_signed_as_an_actor_is_refused_as_a_filter() {
    let account = Account::new();
    let host = account.host();
    let (untagged, key) = account.sign(&proxy_wasm("0_2_1"), "headers", &["demo"]);
    let err = host
        .admit_filter(&untagged, "./headers.wasm")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::NotAFilter { filter, name, origin }
            if *filter == key && name == "headers" && origin == "./headers.wasm"),
        "{err:?}"
    );
    let text = err.to_string();
    for expected in [
        "./headers.wasm",
        "headers",
        key.as_str(),
        "signed as an actor, not as a Proxy-Wasm filter",
        "sign the filter module with `waxosuit claims sign` (which tags Proxy-Wasm modules)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
}

#[tokio::test]
async fn a_filter_is_refused_as_an_actor_and_as_an_update() {
    let account = Account::new();
    let host = account.host();
    let (filter, key) = account.filter("headers");
    let err = host
        .add_actor(&filter, "./headers.wasm", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::FilterAsActor { actor, name, origin }
            if *actor == key && name == "headers" && origin == "./headers.wasm"),
        "{err:?}"
    );
    let text = err.to_string();
    for expected in [
        key.as_str(),
        "headers",
        "is a Proxy-Wasm filter",
        "list it under `filters:` of a wascc:http_server binding or under `http_filters:` in \
         the manifest, not under `actors:`",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in {text}");
    }
    assert!(host.actors().is_empty());

    // Refused as an update before the running actor is even looked up.
    let err = host.update_actor(&filter).await.unwrap_err();
    assert!(
        matches!(&err, HostError::FilterAsActor { origin, .. } if origin == "update"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_tag_without_a_supported_marker_is_refused() {
    let account = Account::new();
    let host = account.host();

    let (no_marker, key) = account.sign(&plain(), "fake", &[PROXY_WASM_FILTER_TAG]);
    let err = host
        .admit_filter(&no_marker, "fake.wasm")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::FilterAbi { abi: None, filter, .. } if *filter == key),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("exports no Proxy-Wasm ABI marker"), "{text}");
    assert!(text.contains("fake.wasm"), "{text}");

    let (old, _) = account.sign(&proxy_wasm("0_1_0"), "old", &[PROXY_WASM_FILTER_TAG]);
    let err = host.admit_filter(&old, "old.wasm").await.unwrap_err();
    assert!(
        matches!(
            &err,
            HostError::FilterAbi {
                abi: Some(ProxyWasmAbi::V0_1_0),
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("ABI 0.1.0 is not supported"), "{text}");
    assert!(text.contains("SDK for ABI 0.2.x"), "{text}");
}

#[tokio::test]
async fn filters_need_a_trusted_issuer_and_a_valid_signature() {
    let account = Account::new();
    let (filter, _) = account.filter("headers");

    // A host that trusts only another account.
    let other = Account::new();
    let err = other
        .host()
        .admit_filter(&filter, "./headers.wasm")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Claims { origin, error }
            if origin == "./headers.wasm" && matches!(**error, ClaimsError::UntrustedIssuer { .. })),
        "{err:?}"
    );

    // A host that trusts no one.
    let err = Host::new()
        .unwrap()
        .admit_filter(&filter, "f")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Claims { error, .. } if matches!(**error, ClaimsError::NoTrustedIssuer { .. })),
        "{err:?}"
    );

    // Unsigned.
    let err = account
        .host()
        .admit_filter(&proxy_wasm("0_2_1"), "unsigned.wasm")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Claims { error, .. } if matches!(**error, ClaimsError::Unsigned)),
        "{err:?}"
    );
}

struct NoHeaders;

impl Authorizer for NoHeaders {
    fn can_load(&self, actor: &waxosuit_claims::VerifiedActor) -> bool {
        actor.name() != "headers"
    }
}

#[tokio::test]
async fn the_authorizer_can_refuse_a_filter() {
    let account = Account::new();
    let host = HostBuilder::new()
        .verifier(account.verifier())
        .authorizer(NoHeaders)
        .build()
        .unwrap();
    let (filter, key) = account.filter("headers");
    let err = host.admit_filter(&filter, "h").await.unwrap_err();
    assert!(
        matches!(&err, HostError::LoadDenied { actor, .. } if *actor == key),
        "{err:?}"
    );
    let (filter, _) = account.filter("other");
    host.admit_filter(&filter, "o").await.unwrap();
}

const START: &str = r#"
package waxosuit.start

default allow := false
allow if "approved" in input.claims.wascap.tags
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_policy_decides_filters_too() {
    let account = Account::new();
    let engine =
        RegoEngine::from_sources(vec![("start.rego".to_string(), START.to_string())], vec![])
            .expect("the policy compiles");
    let policy = Arc::new(Policy::new(Arc::new(engine), PolicyConfig::default()));
    let host = HostBuilder::new()
        .verifier(account.verifier())
        .policy(policy)
        .build()
        .unwrap();

    let (denied, key) = account.filter("headers");
    let err = host
        .admit_filter(&denied, "./headers.wasm")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Policy { actor, .. } if *actor == key),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("start denied"), "{text}");
    assert!(text.contains("start.rego"), "{text}");

    let (approved, _) = account.sign(
        &proxy_wasm("0_2_1"),
        "approved",
        &[PROXY_WASM_FILTER_TAG, "approved"],
    );
    host.admit_filter(&approved, "./approved.wasm")
        .await
        .unwrap();
}
