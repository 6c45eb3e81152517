//! The host with real signed guests (built from source by the fixtures
//! crate) and a small in-process test provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use waxosuit_claims::{Actor, Claims, ClaimsError, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_host::{
    Authorizer, Decision, Entity, Flow, Host, HostBuilder, HostError, InvocationResult, Middleware,
    MiddlewareCall, Refusal,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, ProviderError,
};

// ------------------------------------------------------------------ setup --

/// The account every test actor is signed with; the hosts under test trust
/// exactly this one (a host trusts no issuer by default).
static TEST_ACCOUNT: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::generate(KeyKind::Account));

/// A verifier trusting [`TEST_ACCOUNT`].
fn trusting_verifier() -> Verifier {
    Verifier::new()
        .trust_issuer(&TEST_ACCOUNT.public_key())
        .unwrap()
}

/// A builder whose verifier trusts [`TEST_ACCOUNT`].
fn builder() -> HostBuilder {
    HostBuilder::new().verifier(trusting_verifier())
}

/// A host with default settings except that it trusts [`TEST_ACCOUNT`].
fn trusting_host() -> Host {
    builder().build().unwrap()
}

struct Signer {
    account: &'static KeyPair,
}

impl Signer {
    fn new() -> Signer {
        Signer {
            account: &TEST_ACCOUNT,
        }
    }

    /// Signs `module` for a fresh (or given) module key with these caps.
    fn sign(
        &self,
        module: &[u8],
        name: &str,
        caps: &[&str],
        key: Option<&KeyPair>,
    ) -> (Vec<u8>, String) {
        let fresh;
        let subject = match key {
            Some(k) => k,
            None => {
                fresh = KeyPair::generate(KeyKind::Module);
                &fresh
            }
        };
        let claims = Claims::<Actor>::builder()
            .issuer(self.account.public_key())
            .subject(subject.public_key())
            .metadata(Actor {
                caps: Some(caps.iter().map(|c| c.to_string()).collect()),
                ..Actor::named(name)
            })
            .build();
        (
            embed_claims(module, &claims, self.account).unwrap(),
            subject.public_key(),
        )
    }
}

fn echo_guest() -> &'static [u8] {
    waxosuit_test_fixtures::wapc_echo()
}

fn forward(binding: &str, namespace: &str, operation: &str, body: &[u8]) -> Vec<u8> {
    let mut p = format!("{binding}\n{namespace}\n{operation}\n").into_bytes();
    p.extend_from_slice(body);
    p
}

/// A provider for `test:echo` that records what it is told and answers
/// `Echo` with `<binding>:<payload>`.
#[derive(Default)]
struct TestProvider {
    id: &'static str,
    binds: Mutex<Vec<BindRequest>>,
    removed: Mutex<Vec<(String, String)>>,
    dispatcher: Mutex<Option<Arc<dyn ActorDispatcher>>>,
}

impl TestProvider {
    fn new() -> Arc<TestProvider> {
        Arc::new(TestProvider {
            id: "test:echo",
            ..TestProvider::default()
        })
    }

    fn dispatcher(&self) -> Arc<dyn ActorDispatcher> {
        self.dispatcher.lock().unwrap().clone().expect("started")
    }
}

#[async_trait]
impl CapabilityProvider for TestProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(self.id)
            .name("Test echo")
            .version("0.0.1")
            .build()
    }

    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        *self.dispatcher.lock().unwrap() = Some(dispatcher);
        Ok(())
    }

    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        if request.values.contains_key("FAIL") {
            return Err(ProviderError::Config {
                capid: self.id.into(),
                actor: request.actor,
                key: "FAIL".into(),
                reason: "asked to fail".into(),
            });
        }
        self.binds.lock().unwrap().push(request);
        Ok(())
    }

    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        self.removed
            .lock()
            .unwrap()
            .push((actor.to_string(), binding.to_string()));
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        match call.operation.as_str() {
            "Echo" => {
                let mut out = format!("{}:", call.binding).into_bytes();
                out.extend_from_slice(&call.payload);
                Ok(out)
            }
            "Panic" => panic!("provider exploded"),
            "Fail" => Err(ProviderError::backend(self.id, "backend said no")),
            op => Err(ProviderError::unknown_operation(self.id, op)),
        }
    }
}

async fn host_with_provider() -> (Host, Arc<TestProvider>) {
    let host = trusting_host();
    let provider = TestProvider::new();
    host.add_provider("default", provider.clone())
        .await
        .unwrap();
    (host, provider)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ------------------------------------------------------------------ tests --

#[tokio::test]
async fn bound_actor_calls_its_provider_which_receives_claims_in_the_config() {
    let (host, provider) = host_with_provider().await;
    let signer = Signer::new();
    let (module, key) = signer.sign(echo_guest(), "echoer", &["test:echo"], None);
    let info = host.add_actor(&module, "echo.wasm", None).await.unwrap();
    assert_eq!(info.key, key);
    host.set_binding(
        "echoer",
        "test:echo",
        "",
        BTreeMap::from([("COLOR".to_string(), "blue".to_string())]),
    )
    .await
    .unwrap();

    let reply = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Echo", b"hi"))
        .await
        .unwrap();
    assert_eq!(text(&reply), "default:hi");

    let binds = provider.binds.lock().unwrap().clone();
    assert_eq!(binds.len(), 1);
    let values: &HashMap<String, String> = &binds[0].values;
    assert_eq!(values["COLOR"], "blue");
    assert_eq!(values["__wascc_issuer"], signer.account.public_key());
    assert_eq!(values["__wascc_capabilities"], "test:echo");
    assert_eq!(values["__wascc_name"], "echoer");
    assert_eq!(values["__wascc_expires"], "0");
    assert_eq!(values["__wascc_tags"], "");
    assert_eq!(host.actors()[0].bindings.len(), 1);
}

#[tokio::test]
async fn capability_not_in_claims_is_denied_with_a_message_naming_everything() {
    let (host, _provider) = host_with_provider().await;
    let (module, key) = Signer::new().sign(echo_guest(), "nocaps", &[], None);
    host.add_actor(&module, "x.wasm", None).await.unwrap();

    // Binding is refused too.
    let err = host
        .set_binding(&key, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::PermissionDenied { .. }), "{err}");

    let err = host
        .call_actor(
            &key,
            "forward",
            &forward("default", "test:echo", "Echo", b""),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    for part in [
        &key[..],
        "nocaps",
        "test:echo",
        "`default`",
        "Echo",
        "permission denied",
    ] {
        assert!(msg.contains(part), "missing {part:?} in {msg}");
    }
}

#[tokio::test]
async fn missing_binding_says_which_binding_to_add() {
    let (host, _provider) = host_with_provider().await;
    let (module, key) = Signer::new().sign(echo_guest(), "unbound", &["test:echo"], None);
    host.add_actor(&module, "x.wasm", None).await.unwrap();
    let err = host
        .call_actor(&key, "forward", &forward("cache", "test:echo", "Echo", b""))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("has no binding to test:echo (binding `cache`)"),
        "{msg}"
    );
    assert!(msg.contains("under `bindings` in the manifest"), "{msg}");
}

#[tokio::test]
async fn named_bindings_reach_their_own_provider_instance() {
    let host = trusting_host();
    let default = TestProvider::new();
    let cache = TestProvider::new();
    host.add_provider("default", default.clone()).await.unwrap();
    host.add_provider("cache", cache.clone()).await.unwrap();
    let err = host
        .add_provider("cache", TestProvider::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::DuplicateProvider { .. }));

    let (module, key) = Signer::new().sign(echo_guest(), "a", &["test:echo"], None);
    host.add_actor(&module, "a.wasm", None).await.unwrap();
    host.set_binding(&key, "test:echo", "cache", BTreeMap::new())
        .await
        .unwrap();
    let reply = host
        .call_actor(
            &key,
            "forward",
            &forward("cache", "test:echo", "Echo", b"x"),
        )
        .await
        .unwrap();
    assert_eq!(text(&reply), "cache:x");
    assert_eq!(cache.binds.lock().unwrap().len(), 1);
    assert!(default.binds.lock().unwrap().is_empty());
    // The default binding was never established.
    assert!(
        host.call_actor(&key, "forward", &forward("", "test:echo", "Echo", b"x"))
            .await
            .is_err()
    );
    // Bindings are immutable: a second one is refused.
    let err = host
        .set_binding(&key, "test:echo", "cache", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::DuplicateBinding { .. }), "{err}");
}

#[tokio::test]
async fn provider_failures_and_panics_reach_the_actor_and_the_host_lives_on() {
    let (host, _provider) = host_with_provider().await;
    let (module, key) = Signer::new().sign(echo_guest(), "p", &["test:echo"], None);
    host.add_actor(&module, "p.wasm", None).await.unwrap();
    host.set_binding(&key, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap();

    let err = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Panic", b""))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("panicked: provider exploded"),
        "{err}"
    );
    let err = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Fail", b""))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("backend said no"), "{err}");
    let err = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Nope", b""))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("does not support the operation `Nope`"),
        "{err}"
    );
    // Still serving.
    let ok = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Echo", b"after"))
        .await
        .unwrap();
    assert_eq!(text(&ok), "default:after");

    // A provider that refuses a binding leaves no binding behind.
    let (module2, key2) = Signer::new().sign(echo_guest(), "q", &["test:echo"], None);
    host.add_actor(&module2, "q.wasm", None).await.unwrap();
    let err = host
        .set_binding(
            &key2,
            "test:echo",
            "default",
            BTreeMap::from([("FAIL".into(), "1".into())]),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("asked to fail"), "{err}");
    assert!(
        host.actors()
            .iter()
            .find(|a| a.key == key2)
            .unwrap()
            .bindings
            .is_empty()
    );
}

#[tokio::test]
async fn actor_traps_then_serves_the_next_call() {
    let (host, _p) = host_with_provider().await;
    let (module, key) = Signer::new().sign(echo_guest(), "t", &[], None);
    host.add_actor(&module, "t.wasm", None).await.unwrap();
    let err = host.call_actor(&key, "panic", b"").await.unwrap_err();
    assert!(matches!(err, HostError::Runtime { .. }), "{err}");
    let err = host.call_actor(&key, "error", b"boom").await.unwrap_err();
    assert!(
        matches!(&err, HostError::ActorFailed { message, .. } if message.contains("boom")),
        "{err}"
    );
    assert_eq!(host.call_actor(&key, "echo", b"ok").await.unwrap(), b"ok");
}

#[tokio::test]
async fn a_host_trusts_no_issuer_until_told() {
    let (module, _) = Signer::new().sign(echo_guest(), "stranger", &[], None);

    // Default settings: refused, saying what to configure.
    let err = Host::new()
        .unwrap()
        .add_actor(&module, "stranger.wasm", None)
        .await
        .unwrap_err();
    match &err {
        HostError::Claims { origin, error } => {
            assert_eq!(origin, "stranger.wasm");
            assert!(
                matches!(**error, ClaimsError::NoTrustedIssuer { .. }),
                "{error}"
            );
        }
        other => panic!("expected a claims refusal, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("no issuer is trusted"), "{text}");
    assert!(text.contains("--trusted-issuer"), "{text}");
    assert!(text.contains(&TEST_ACCOUNT.public_key()), "{text}");

    // Trusting another account: refused as untrusted.
    let other = KeyPair::generate(KeyKind::Account).public_key();
    let host = HostBuilder::new()
        .verifier(Verifier::new().trust_issuer(&other).unwrap())
        .build()
        .unwrap();
    let err = host.add_actor(&module, "s", None).await.unwrap_err();
    assert!(
        matches!(&err, HostError::Claims { error, .. } if matches!(**error, ClaimsError::UntrustedIssuer { .. })),
        "{err}"
    );
    assert!(host.actors().is_empty());

    // Development mode, explicitly: accepted.
    let host = HostBuilder::new()
        .verifier(Verifier::new().allow_any_issuer())
        .build()
        .unwrap();
    host.add_actor(&module, "s", None).await.unwrap();
    // And the trusting host used by the other tests accepts it too.
    trusting_host().add_actor(&module, "s", None).await.unwrap();
}

#[tokio::test]
async fn refused_modules_and_duplicates() {
    let host = trusting_host();
    let err = host
        .add_actor(echo_guest(), "unsigned.wasm", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, HostError::Claims { origin, .. } if origin == "unsigned.wasm"),
        "{err}"
    );
    assert!(err.to_string().contains("unsigned"));
    let err = host
        .add_actor(b"garbage", "g.wasm", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not a WebAssembly module"),
        "{err}"
    );

    let signer = Signer::new();
    let (module, _key) = signer.sign(echo_guest(), "dup", &[], None);
    host.add_actor(&module, "a", None).await.unwrap();
    let err = host.add_actor(&module, "b", None).await.unwrap_err();
    assert!(matches!(err, HostError::DuplicateActor { .. }), "{err}");

    // A signed module that imports WASI is refused by the runtime with a clear error.
    let (wasi, _) = signer.sign(&waxosuit_test_fixtures::wat_wasi(), "wasi", &[], None);
    let err = host.add_actor(&wasi, "wasi.wasm", None).await.unwrap_err();
    assert!(err.to_string().contains("wasi_snapshot_preview1"), "{err}");
    assert_eq!(host.actors().len(), 1);
}

#[tokio::test]
async fn actor_to_actor_calls_need_the_callee_key_in_caps() {
    let host = trusting_host();
    let signer = Signer::new();
    let (callee_module, callee) = signer.sign(echo_guest(), "callee", &[], None);
    host.add_actor(&callee_module, "callee", None)
        .await
        .unwrap();
    let (caller_module, caller) = signer.sign(echo_guest(), "caller", &[&callee], None);
    host.add_actor(&caller_module, "caller", None)
        .await
        .unwrap();
    let (stranger_module, stranger) = signer.sign(echo_guest(), "stranger", &[], None);
    host.add_actor(&stranger_module, "stranger", None)
        .await
        .unwrap();

    let reply = host
        .call_actor(
            &caller,
            "forward",
            &forward("", &callee, "echo", b"via actor"),
        )
        .await
        .unwrap();
    assert_eq!(reply, b"via actor");
    let err = host
        .call_actor(&stranger, "forward", &forward("", &callee, "echo", b"x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");

    // What only a capability delivers cannot come from an actor, even one
    // allowed to call the callee: it would pass as a request that went
    // through the HTTP binding's filters, a message from the broker, ...
    for (operation, by) in [
        ("HandleRequest", "wascc:http_server"),
        ("DeliverMessage", "wascc:messaging"),
        ("DeliverEvent", "wascc:eventstreams"),
        ("ReceiveChunk", "wascc:blobstore"),
        ("HealthRequest", "the host's health checks"),
    ] {
        let err = host
            .call_actor(&caller, "forward", &forward("", &callee, operation, b"x"))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "actor caller ({caller}) failed to handle `forward`: Host error: actor caller \
                 ({caller}) may not call \
                 `{operation}` on actor {callee}: only {by} delivers `{operation}` to actors, \
                 and a call from an actor could forge what it vouches for; give the callee an \
                 operation of its own for actors to call"
            )
        );
    }
    // The callee still answers its own operations.
    let reply = host
        .call_actor(&caller, "forward", &forward("", &callee, "echo", b"again"))
        .await
        .unwrap();
    assert_eq!(reply, b"again");
}

#[tokio::test]
async fn provider_dispatch_reaches_only_bound_actors() {
    let (host, provider) = host_with_provider().await;
    let signer = Signer::new();
    let (bound_module, bound) = signer.sign(echo_guest(), "bound", &["test:echo"], None);
    let (free_module, free) = signer.sign(echo_guest(), "free", &["test:echo"], None);
    host.add_actor(&bound_module, "b", None).await.unwrap();
    host.add_actor(&free_module, "f", None).await.unwrap();
    host.set_binding(&bound, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap();
    let d = provider.dispatcher();
    assert_eq!(
        d.dispatch(&bound, "echo", b"in".to_vec()).await.unwrap(),
        b"in"
    );
    assert!(matches!(
        d.dispatch(&free, "echo", vec![]).await,
        Err(DispatchError::NotBound { .. })
    ));
    assert!(matches!(
        d.dispatch("MNOPE", "echo", vec![]).await,
        Err(DispatchError::ActorNotFound { .. })
    ));
    assert!(matches!(
        d.dispatch(&bound, "error", b"x".to_vec()).await,
        Err(DispatchError::Actor { .. })
    ));

    // Removing the actor tells the provider and stops dispatch.
    host.remove_actor("bound").await.unwrap();
    assert_eq!(
        provider.removed.lock().unwrap().clone(),
        vec![(bound.clone(), "default".to_string())]
    );
    assert!(matches!(
        d.dispatch(&bound, "echo", vec![]).await,
        Err(DispatchError::ActorNotFound { .. })
    ));
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
}

struct Recording(Arc<Recorder>);

#[async_trait]
impl Middleware for Recording {
    async fn actor_pre_invoke(&self, inv: MiddlewareCall) -> Result<MiddlewareCall, Refusal> {
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("actor_pre {}", inv.operation));
        if inv.operation == "blocked" {
            return Err(Refusal::new("not today"));
        }
        Ok(inv)
    }
    async fn actor_invoke(&self, inv: &MiddlewareCall) -> Flow {
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("actor_invoke {}", inv.operation));
        if inv.operation == "cached" {
            Flow::Halt(Ok(b"from cache".to_vec()))
        } else {
            Flow::Continue
        }
    }
    async fn actor_post_invoke(
        &self,
        inv: &MiddlewareCall,
        r: InvocationResult,
    ) -> InvocationResult {
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("actor_post {}", inv.operation));
        r
    }
    async fn capability_pre_invoke(&self, inv: MiddlewareCall) -> Result<MiddlewareCall, Refusal> {
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("cap_pre {}", inv.operation));
        Ok(inv)
    }
    async fn capability_invoke(&self, inv: &MiddlewareCall) -> Flow {
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("cap_invoke {}", inv.operation));
        Flow::Continue
    }
    async fn capability_post_invoke(
        &self,
        inv: &MiddlewareCall,
        r: InvocationResult,
    ) -> InvocationResult {
        self.0
            .seen
            .lock()
            .unwrap()
            .push(format!("cap_post {}", inv.operation));
        r.map(|mut bytes| {
            bytes.extend_from_slice(b"+post");
            bytes
        })
    }
}

#[tokio::test]
async fn middleware_runs_around_actor_and_provider_invocations() {
    let recorder = Arc::new(Recorder::default());
    let host = builder()
        .middleware(Recording(recorder.clone()))
        .build()
        .unwrap();
    host.add_provider("default", TestProvider::new())
        .await
        .unwrap();
    let (module, key) = Signer::new().sign(echo_guest(), "m", &["test:echo"], None);
    host.add_actor(&module, "m", None).await.unwrap();
    host.set_binding(&key, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap();

    let reply = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Echo", b"z"))
        .await
        .unwrap();
    assert_eq!(text(&reply), "default:z+post");
    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "actor_pre forward",
            "actor_invoke forward",
            "cap_pre Echo",
            "cap_invoke Echo",
            "cap_post Echo",
            "actor_post forward"
        ]
    );

    // Short-circuit: the actor is never called.
    assert_eq!(
        host.call_actor(&key, "cached", b"").await.unwrap(),
        b"from cache"
    );
    // A pre-invoke refusal fails the call, with the refusal as its source.
    let err = host.call_actor(&key, "blocked", b"").await.unwrap_err();
    assert!(err.to_string().contains("not today"), "{err}");
    assert!(
        matches!(&err, HostError::Middleware { refusal, .. } if refusal.reason == "not today"),
        "{err:?}"
    );
    // A provider's typed error passes the chain as it is: not re-wrapped as
    // a backend error.
    let err = host
        .call_actor(&key, "forward", &forward("", "test:echo", "Nope", b""))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("does not support the operation `Nope`"),
        "{text}"
    );
    assert!(!text.contains("backend error"), "{text}");
}

struct Policy;

impl Authorizer for Policy {
    fn can_load(&self, actor: &waxosuit_claims::VerifiedActor) -> bool {
        actor.name() != "forbidden"
    }
    fn can_invoke(
        &self,
        caller: &waxosuit_claims::VerifiedActor,
        target: &Entity,
        _operation: &str,
    ) -> Decision {
        match (caller.name(), target) {
            ("granted", Entity::Capability { .. }) => Decision::Allow,
            ("vetoed", _) => Decision::Deny,
            _ => Decision::ByClaims,
        }
    }
}

#[tokio::test]
async fn authorizer_can_refuse_loads_grant_and_veto_calls() {
    let host = builder().authorizer(Policy).build().unwrap();
    host.add_provider("default", TestProvider::new())
        .await
        .unwrap();
    let signer = Signer::new();

    let (m, _) = signer.sign(echo_guest(), "forbidden", &[], None);
    let err = host.add_actor(&m, "f", None).await.unwrap_err();
    assert!(matches!(err, HostError::LoadDenied { .. }), "{err}");

    // Granted by policy although the claims do not list the capability.
    let (m, granted) = signer.sign(echo_guest(), "granted", &[], None);
    host.add_actor(&m, "g", None).await.unwrap();
    host.set_binding(&granted, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap();
    let reply = host
        .call_actor(&granted, "forward", &forward("", "test:echo", "Echo", b"p"))
        .await
        .unwrap();
    assert_eq!(text(&reply), "default:p");

    // Vetoed although the claims list it.
    let (m, vetoed) = signer.sign(echo_guest(), "vetoed", &["test:echo"], None);
    host.add_actor(&m, "v", None).await.unwrap();
    let err = host
        .set_binding(&vetoed, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::PermissionDenied { .. }), "{err}");
}

#[tokio::test]
async fn live_update_needs_the_same_module_key() {
    let host = trusting_host();
    let signer = Signer::new();
    let key = KeyPair::generate(KeyKind::Module);
    let (v1, pk) = signer.sign(&waxosuit_test_fixtures::wat_echo(), "swap", &[], Some(&key));
    host.add_actor(&v1, "v1", None).await.unwrap();
    assert_eq!(host.call_actor(&pk, "echo", b"a").await.unwrap(), b"a");

    let (v2, _) = signer.sign(
        &waxosuit_test_fixtures::wat_echo_v2(),
        "swap",
        &[],
        Some(&key),
    );
    host.update_actor(&v2).await.unwrap();
    let after = host.call_actor(&pk, "echo", b"a").await.unwrap();
    assert_eq!(after, b"v2:a", "the v2 module answers");

    // An update signed for another key does not replace anything.
    let (other, _) = signer.sign(&waxosuit_test_fixtures::wat_echo(), "swap", &[], None);
    let err = host.update_actor(&other).await.unwrap_err();
    assert!(matches!(err, HostError::ActorNotFound { .. }), "{err}");
    // A tampered update is refused by verification.
    let mut tampered = v2.clone();
    let n = tampered.len();
    tampered[n / 3] ^= 0xff;
    assert!(host.update_actor(&tampered).await.is_err());
    assert_eq!(host.call_actor(&pk, "echo", b"a").await.unwrap(), after);
}

/// Deliveries check the binding, not the claims: an update whose claims
/// drop a bound capability removes that binding (telling the provider),
/// so the provider can no longer hand the new module requests of a
/// capability its signature does not name. A binding still granted stays.
#[tokio::test]
async fn an_update_that_drops_a_capability_drops_its_binding() {
    let host = trusting_host();
    let echo = TestProvider::new();
    let kept = Arc::new(TestProvider {
        id: "test:kept",
        ..TestProvider::default()
    });
    host.add_provider("default", echo.clone()).await.unwrap();
    host.add_provider("default", kept.clone()).await.unwrap();
    let signer = Signer::new();
    let key = KeyPair::generate(KeyKind::Module);
    let both = ["test:echo", "test:kept"];
    let (v1, pk) = signer.sign(
        &waxosuit_test_fixtures::wat_echo(),
        "narrowed",
        &both,
        Some(&key),
    );
    host.add_actor(&v1, "v1", None).await.unwrap();
    for capid in both {
        host.set_binding(&pk, capid, "default", BTreeMap::new())
            .await
            .unwrap();
    }
    let d = echo.dispatcher();
    assert_eq!(d.dispatch(&pk, "echo", b"a".to_vec()).await.unwrap(), b"a");

    let (v2, _) = signer.sign(
        &waxosuit_test_fixtures::wat_echo_v2(),
        "narrowed",
        &["test:kept"],
        Some(&key),
    );
    host.update_actor(&v2).await.unwrap();

    assert_eq!(
        echo.removed.lock().unwrap().clone(),
        vec![(pk.clone(), "default".to_string())],
        "the provider whose capability was dropped is told"
    );
    assert!(kept.removed.lock().unwrap().is_empty());
    let err = d.dispatch(&pk, "echo", b"a".to_vec()).await.unwrap_err();
    assert!(matches!(err, DispatchError::NotBound { .. }), "{err}");
    assert_eq!(
        kept.dispatcher()
            .dispatch(&pk, "echo", b"a".to_vec())
            .await
            .unwrap(),
        b"v2:a",
        "the binding still granted serves the new module"
    );
    // Binding the dropped capability again is refused by the new claims.
    let err = host
        .set_binding(&pk, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(matches!(err, HostError::PermissionDenied { .. }), "{err}");
}

/// What the authorizer grants beyond the claims survives an update as it
/// was granted at the bind: the update asks what the bind asked.
#[tokio::test]
async fn an_update_keeps_a_binding_the_authorizer_grants() {
    let host = builder().authorizer(Policy).build().unwrap();
    let provider = TestProvider::new();
    host.add_provider("default", provider.clone())
        .await
        .unwrap();
    let signer = Signer::new();
    let key = KeyPair::generate(KeyKind::Module);
    let (v1, pk) = signer.sign(
        &waxosuit_test_fixtures::wat_echo(),
        "granted",
        &[],
        Some(&key),
    );
    host.add_actor(&v1, "v1", None).await.unwrap();
    host.set_binding(&pk, "test:echo", "default", BTreeMap::new())
        .await
        .unwrap();
    let (v2, _) = signer.sign(
        &waxosuit_test_fixtures::wat_echo_v2(),
        "granted",
        &[],
        Some(&key),
    );
    host.update_actor(&v2).await.unwrap();
    assert!(provider.removed.lock().unwrap().is_empty());
    assert_eq!(
        provider
            .dispatcher()
            .dispatch(&pk, "echo", b"a".to_vec())
            .await
            .unwrap(),
        b"v2:a"
    );
}

#[tokio::test]
async fn health_and_metrics() {
    let (host, _p) = host_with_provider().await;
    let signer = Signer::new();
    let (module, key) = signer.sign(echo_guest(), "h", &[], None);
    host.add_actor(&module, "h", None).await.unwrap();
    host.call_actor(&key, "echo", b"1").await.unwrap();
    let report = host.check_health().await;
    assert!(report.checked);
    assert_eq!(report.actors.len(), 1);
    assert!(report.all_healthy(), "{report:?}");
    assert_eq!(host.last_health(), report);

    // A guest that cannot answer HealthRequest is reported unhealthy.
    let (sick, sick_key) = signer.sign(&waxosuit_test_fixtures::wat_legacy4(), "sick", &[], None);
    host.add_actor(&sick, "sick", None).await.unwrap();
    let report = host.check_health().await;
    assert!(!report.all_healthy());
    let entry = report.actors.iter().find(|a| a.0 == sick_key).unwrap();
    assert!(!entry.2 && !entry.3.is_empty(), "{entry:?}");

    let metrics = host.metrics_text();
    assert!(
        metrics.contains("waxosuit_invocations_total{target=\"actor\""),
        "{metrics}"
    );
    assert!(metrics.contains("operation=\"echo\""), "{metrics}");
    assert!(
        metrics.contains("waxosuit_invocation_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("waxosuit_actors 2"), "{metrics}");

    host.shutdown().await;
    assert!(host.actors().is_empty());
    let err = host.add_actor(&module, "again", None).await.unwrap_err();
    assert!(matches!(err, HostError::ShuttingDown));
}

/// The inbound entry points belong to the one transport that attached:
/// a second one is refused, a detached one serves nothing, and dropping a
/// detached attachment does not disturb the next one.
#[tokio::test]
async fn only_the_attached_transport_reaches_the_inbound_entry_points() {
    let host = waxosuit_host::Host::new().unwrap();
    let first = host.attach_remote().unwrap();
    assert!(matches!(
        host.attach_remote(),
        Err(waxosuit_host::HostError::AlreadyAttached)
    ));
    let unknown = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW";
    let err = first
        .invoke_inbound(waxosuit_host::Entity::Host, unknown, "echo", b"")
        .await
        .unwrap_err();
    assert!(
        matches!(err, waxosuit_host::HostError::ActorNotFound { .. }),
        "{err}"
    );
    first.detach();
    let err = first
        .invoke_inbound(waxosuit_host::Entity::Host, unknown, "echo", b"")
        .await
        .unwrap_err();
    assert!(matches!(err, waxosuit_host::HostError::Detached), "{err}");
    let second = host.attach_remote().unwrap();
    drop(first);
    let err = second
        .invoke_inbound(waxosuit_host::Entity::Host, unknown, "echo", b"")
        .await
        .unwrap_err();
    assert!(
        matches!(err, waxosuit_host::HostError::ActorNotFound { .. }),
        "dropping a detached attachment must not detach the next: {err}"
    );
}

/// The spans the host makes, recorded by an OpenTelemetry layer over an
/// in-memory exporter (this thread only: `#[tokio::test]` runs on it).
mod spans {
    use super::*;
    use std::time::Duration;
    use waxosuit_host::Limits;
    use waxosuit_test_servers::{collect_spans, span_attribute};
    use waxosuit_trace::FinishedSpan;

    fn attr(span: &FinishedSpan, key: &str) -> Option<String> {
        span_attribute(span, key).map(|v| v.to_string())
    }

    #[tokio::test]
    async fn each_call_is_a_span_with_its_outcome_and_capability_calls_are_children() {
        let (exporter, _on) = collect_spans();

        let (host, _p) = host_with_provider().await;
        let (module, key) = Signer::new().sign(echo_guest(), "spanned", &["test:echo"], None);
        let limits = Limits::default().deadline(Duration::from_millis(300));
        host.add_actor(&module, "s.wasm", Some(limits))
            .await
            .unwrap();
        host.set_binding("spanned", "test:echo", "", BTreeMap::new())
            .await
            .unwrap();
        host.call_actor(&key, "forward", &forward("", "test:echo", "Echo", b"hi"))
            .await
            .unwrap();
        let _ = host
            .call_actor(&key, "forward", &forward("", "test:echo", "Fail", b""))
            .await;
        host.call_actor(&key, "error", b"boom").await.unwrap_err();
        host.call_actor(&key, "panic", b"").await.unwrap_err();
        host.call_actor(&key, "loop", b"").await.unwrap_err();

        let spans = exporter.finished();
        let actor_spans: Vec<&FinishedSpan> = spans
            .iter()
            .filter(|s| attr(s, "waxosuit.actor.name").as_deref() == Some("spanned"))
            .collect();
        let outcomes: Vec<String> = actor_spans
            .iter()
            .filter_map(|s| attr(s, "waxosuit.outcome"))
            .collect();
        assert_eq!(
            outcomes,
            ["ok", "guest_error", "guest_error", "trap", "deadline"],
            "{actor_spans:#?}"
        );
        let first = actor_spans[0];
        assert_eq!(first.name, "spanned forward");
        assert_eq!(
            attr(first, "waxosuit.actor.key").as_deref(),
            Some(key.as_str())
        );
        assert!(attr(first, "waxosuit.instance.wait_us").is_some());
        assert_eq!(first.status, opentelemetry::trace::Status::Unset);
        // Failures are errors with the reason the caller gets.
        let killed = actor_spans[4];
        match &killed.status {
            opentelemetry::trace::Status::Error { description } => {
                assert!(description.contains("deadline"), "{description}")
            }
            other => panic!("{other:?}"),
        }

        let calls: Vec<&FinishedSpan> = spans
            .iter()
            .filter(|s| attr(s, "waxosuit.capability").as_deref() == Some("test:echo"))
            .collect();
        assert_eq!(calls.len(), 2, "{calls:#?}");
        assert_eq!(calls[0].name, "test:echo Echo");
        assert_eq!(calls[0].parent_span_id, first.span_context.span_id());
        assert_eq!(
            attr(calls[0], "waxosuit.binding").as_deref(),
            Some("default")
        );
        assert_eq!(attr(calls[0], "waxosuit.outcome").as_deref(), Some("ok"));
        assert_eq!(
            attr(calls[1], "waxosuit.outcome").as_deref(),
            Some("provider_error")
        );
        assert_eq!(
            calls[1].parent_span_id,
            actor_spans[1].span_context.span_id()
        );
    }

    #[tokio::test]
    async fn a_denied_capability_call_is_a_failed_span_that_says_why() {
        let (exporter, _on) = collect_spans();

        let (host, _p) = host_with_provider().await;
        // Not in the claims.
        let (module, key) = Signer::new().sign(echo_guest(), "nosy", &[], None);
        host.add_actor(&module, "n.wasm", None).await.unwrap();
        let _ = host
            .call_actor(&key, "forward", &forward("", "test:echo", "Echo", b"hi"))
            .await;
        let spans = exporter.finished();
        let call = spans
            .iter()
            .find(|s| attr(s, "waxosuit.capability").as_deref() == Some("test:echo"))
            .unwrap();
        assert_eq!(attr(call, "waxosuit.outcome").as_deref(), Some("denied"));
        match &call.status {
            opentelemetry::trace::Status::Error { description } => {
                assert!(description.contains("nosy"), "{description}")
            }
            other => panic!("{other:?}"),
        }
    }
}
