//! Policy at the host's decision points, with the embedded Rego engine:
//! actor start, calls out of an actor, calls delivered into one, alias
//! uniqueness, and the decision metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_host::{Host, HostBuilder, HostError};
use waxosuit_policy::{Policy, PolicyConfig};
use waxosuit_policy_rego::RegoEngine;
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, ProviderCall, ProviderError,
};

const PING: &str = "test:ping";

const START: &str = r#"
package waxosuit.start

default allow := false
allow if "approved" in input.claims.wascap.tags
"#;

const INVOKE: &str = r#"
package waxosuit.invoke

default allow := false
# Calls out: only Ping on test:ping.
allow if {
    input.direction == "outbound"
    input.capability == "test:ping"
    input.operation == "Ping"
}
# Deliveries in: only `echo`, and only to approved actors.
allow if {
    input.direction == "inbound"
    input.operation == "echo"
    "approved" in input.actor.tags
}
"#;

/// Answers `Ping`; keeps the dispatcher it was started with, to deliver
/// calls into actors.
#[derive(Default)]
struct Pinger {
    dispatcher: Mutex<Option<Arc<dyn ActorDispatcher>>>,
}

#[async_trait]
impl CapabilityProvider for Pinger {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(PING)
            .name("Pinger")
            .version("1.0.0")
            .build()
    }
    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *self.dispatcher.lock().unwrap() = Some(dispatcher);
        Ok(())
    }
    async fn bind_actor(&self, _req: BindRequest) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn remove_actor(&self, _actor: &str, _binding: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn handle_call(&self, _call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        Ok(b"pong".to_vec())
    }
}

struct Fixture {
    host: Host,
    account: KeyPair,
    pinger: Arc<Pinger>,
}

async fn fixture(policies: &[(&str, &str)]) -> Fixture {
    let account = KeyPair::generate(KeyKind::Account);
    let sources = policies
        .iter()
        .map(|(name, text)| (name.to_string(), text.to_string()))
        .collect();
    let engine = RegoEngine::from_sources(sources, vec![]).expect("the policy compiles");
    let policy = Arc::new(Policy::new(Arc::new(engine), PolicyConfig::default()));
    let host = HostBuilder::new()
        .verifier(Verifier::new().trust_issuer(&account.public_key()).unwrap())
        .policy(policy)
        .id("NHOSTTEST")
        .label("zone", "test")
        .build()
        .unwrap();
    let pinger = Arc::new(Pinger::default());
    host.add_provider("default", pinger.clone()).await.unwrap();
    Fixture {
        host,
        account,
        pinger,
    }
}

impl Fixture {
    fn actor(&self, tags: &[&str], alias: Option<&str>) -> (Vec<u8>, String) {
        let module = KeyPair::generate(KeyKind::Module);
        let claims = Claims::<Actor>::builder()
            .issuer(self.account.public_key())
            .subject(module.public_key())
            .metadata(Actor {
                caps: Some(vec![PING.to_string()]),
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                call_alias: alias.map(str::to_string),
                ..Actor::named("echo")
            })
            .build();
        let signed =
            embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, &self.account).unwrap();
        (signed, module.public_key())
    }

    async fn deliver(&self, actor: &str, operation: &str) -> Result<Vec<u8>, String> {
        let dispatcher = self.pinger.dispatcher.lock().unwrap().clone().unwrap();
        dispatcher
            .dispatch(actor, operation, b"hi".to_vec())
            .await
            .map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_the_policy_denies_is_refused_naming_the_point_and_the_policy() {
    let f = fixture(&[("start.rego", START), ("invoke.rego", INVOKE)]).await;
    let (module, key) = f.actor(&[], None);
    let err = f
        .host
        .add_actor(&module, "./unapproved.wasm", None)
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::Policy { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("actor start denied"), "{text}");
    assert!(text.contains("start.rego"), "{text}");
    assert!(
        !f.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap()),
        "a denied actor runs"
    );
    let (module, key) = f.actor(&["approved"], None);
    f.host
        .add_actor(&module, "./approved.wasm", None)
        .await
        .unwrap();
    assert!(
        f.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_out_and_deliveries_in_are_each_decided_and_counted() {
    let f = fixture(&[("start.rego", START), ("invoke.rego", INVOKE)]).await;
    let (module, key) = f.actor(&["approved"], None);
    f.host.add_actor(&module, "approved", None).await.unwrap();
    f.host
        .set_binding(&key, PING, "default", BTreeMap::new())
        .await
        .unwrap();
    // Out: Ping is allowed; any other operation on the same capability not.
    for _ in 0..3 {
        assert_eq!(
            f.host.call_actor(&key, "ping", b"x").await.unwrap(),
            b"pong"
        );
    }
    let forward = format!("default\n{PING}\nDrop\n").into_bytes();
    let err = f
        .host
        .call_actor(&key, "forward", &forward)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invocation denied"), "{err}");

    // In: `echo` delivered by the provider is allowed, anything else not.
    assert_eq!(f.deliver(&key, "echo").await.unwrap(), b"hi");
    let err = f.deliver(&key, "error").await.unwrap_err();
    assert!(err.contains("invocation denied"), "{err}");

    let metrics = f.host.metrics_text();
    let count = |labels: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("waxosuit_policy_decisions_total{{{labels}}}")))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_default() as u64
    };
    // The three pings: one evaluation, then two cache hits.
    assert_eq!(
        count(r#"point="invoke",result="allow",cached="false""#),
        2,
        "{metrics}"
    );
    assert!(
        count(r#"point="invoke",result="allow",cached="true""#) >= 2,
        "{metrics}"
    );
    assert_eq!(
        count(r#"point="invoke",result="deny",cached="false""#),
        2,
        "{metrics}"
    );
    assert_eq!(
        count(r#"point="start",result="allow",cached="false""#),
        1,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_actor_with_a_taken_call_alias_is_refused() {
    let f = fixture(&[("other.rego", "package other\n")]).await;
    let (first, first_key) = f.actor(&[], Some("payments"));
    f.host.add_actor(&first, "first", None).await.unwrap();
    let (second, second_key) = f.actor(&[], Some("payments"));
    let err = f.host.add_actor(&second, "second", None).await.unwrap_err();
    assert!(matches!(err, HostError::DuplicateAlias { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("payments") && text.contains(&first_key),
        "{text}"
    );
    assert!(
        !f.host
            .has_actor(&waxosuit_host::ActorKey::new(second_key.as_str()).unwrap())
    );
    // The first keeps its callers.
    assert!(
        f.host
            .has_actor(&waxosuit_host::ActorKey::new(first_key.as_str()).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_call_to_an_alias_hints_at_the_module_key_not_the_alias() {
    let f = fixture(&[("other.rego", "package other\n")]).await;
    let (callee, _) = f.actor(&[], Some("payments"));
    f.host.add_actor(&callee, "callee", None).await.unwrap();
    let (caller, caller_key) = f.actor(&[], None);
    f.host.add_actor(&caller, "caller", None).await.unwrap();
    let forward = b"\npayments\necho\n".to_vec();
    let err = f
        .host
        .call_actor(&caller_key, "forward", &forward)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(!text.contains("--cap payments"), "{text}");
    assert!(text.contains("module key"), "{text}");
}
