//! Helpers shared by the lattice's integration tests: a real `nats-server`
//! per test, hosts joined to it, a signed echo actor, a provider that
//! records what it was bound with, and a raw NATS client for the attacker.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_host::{Host, HostBuilder, Limits};
use waxosuit_lattice::protocol::{self, Response};
use waxosuit_lattice::{Lattice, LatticeClient, LatticeConfig, TrustPolicy};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};
use waxosuit_test_servers::NatsServer;

pub(crate) const PING: &str = "test:ping";

/// Answers `Ping` with `pong from <name>` for bound actors only, and
/// remembers the values each actor was bound with.
pub(crate) struct Pinger {
    pub name: &'static str,
    pub bound: Mutex<Vec<String>>,
    pub values: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl Pinger {
    pub(crate) fn new(name: &'static str) -> Arc<Pinger> {
        Arc::new(Pinger {
            name,
            bound: Mutex::new(Vec::new()),
            values: Mutex::new(BTreeMap::new()),
        })
    }
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
    async fn bind_actor(&self, req: BindRequest) -> Result<(), ProviderError> {
        self.bound.lock().unwrap().push(req.actor.clone());
        self.values
            .lock()
            .unwrap()
            .insert(req.actor, req.values.into_iter().collect());
        Ok(())
    }
    async fn remove_actor(&self, actor: &str, _binding: &str) -> Result<(), ProviderError> {
        self.bound.lock().unwrap().retain(|a| a != actor);
        Ok(())
    }
    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        if !self.bound.lock().unwrap().contains(&call.actor) {
            return Err(ProviderError::Backend {
                capid: PING.into(),
                message: format!("{} is not bound", call.actor),
            });
        }
        Ok(format!("pong from {}", self.name).into_bytes())
    }
}

/// The `wapc-echo` guest signed by `account` with `caps`; returns (module, key).
pub(crate) fn echo_actor_by(account: &KeyPair, caps: &[&str]) -> (Vec<u8>, String) {
    echo_actor_aliased(account, caps, None)
}

/// [`echo_actor_by`] with a `call_alias`.
pub(crate) fn echo_actor_aliased(
    account: &KeyPair,
    caps: &[&str],
    alias: Option<&str>,
) -> (Vec<u8>, String) {
    let module = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .metadata(Actor {
            caps: Some(caps.iter().map(|c| c.to_string()).collect()),
            call_alias: alias.map(str::to_string),
            ..Actor::named("echo")
        })
        .build();
    let signed = embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, account).unwrap();
    (signed, module.public_key())
}

pub(crate) struct Node {
    pub host: Host,
    pub lattice: Lattice,
}

/// A `nats-server`, the hosts' server keys, an admin key the hosts trust,
/// and the account that signs the test actors (which the hosts trust).
pub(crate) struct Net {
    pub nats: NatsServer,
    pub keys: Vec<KeyPair>,
    pub admin: KeyPair,
    pub account: KeyPair,
}

impl Net {
    pub(crate) fn new(hosts: usize) -> Net {
        Net {
            nats: NatsServer::start_monitored().expect("nats-server"),
            keys: (0..hosts)
                .map(|_| KeyPair::generate(KeyKind::Server))
                .collect(),
            admin: KeyPair::generate(KeyKind::User),
            account: KeyPair::generate(KeyKind::Account),
        }
    }

    pub(crate) fn trust(&self) -> TrustPolicy {
        TrustPolicy::hosts(self.keys.iter().map(|k| k.public_key()))
            .unwrap()
            .with_admins([self.admin.public_key()])
            .unwrap()
    }

    /// Host `i`'s server key (a copy: `KeyPair` is not `Clone`).
    pub(crate) fn identity(&self, i: usize) -> KeyPair {
        copy(&self.keys[i])
    }

    pub(crate) fn echo_actor(&self, caps: &[&str]) -> (Vec<u8>, String) {
        echo_actor_by(&self.account, caps)
    }

    pub(crate) fn config(&self, i: usize, timeout: Duration) -> LatticeConfig {
        let mut config = LatticeConfig::new(self.nats.url(), self.identity(i), self.trust());
        config.timeout = timeout;
        config
    }

    pub(crate) fn host(&self, labels: &[(&str, &str)]) -> Host {
        // A short deadline, so the `loop` test burns 2 s of CPU, not 10.
        let mut builder = self.builder();
        for (k, v) in labels {
            builder = builder.label(*k, *v);
        }
        builder.build().unwrap()
    }

    pub(crate) async fn node(&self, i: usize, labels: &[(&str, &str)]) -> Node {
        self.node_with(i, labels, |_| {}).await
    }

    /// Joins an already built host as host `i`.
    pub(crate) async fn join(&self, i: usize, host: Host) -> Node {
        let lattice = Lattice::join(host.clone(), self.config(i, Duration::from_secs(5)))
            .await
            .unwrap();
        Node { host, lattice }
    }

    /// A host builder with the test's trust and limits.
    pub(crate) fn builder(&self) -> HostBuilder {
        HostBuilder::new()
            .verifier(
                Verifier::new()
                    .trust_issuer(&self.account.public_key())
                    .unwrap(),
            )
            .default_limits(
                Limits::default()
                    .max_payload(8 << 20)
                    .max_memory(64 << 20)
                    .deadline(Duration::from_secs(2)),
            )
    }

    pub(crate) async fn node_with(
        &self,
        i: usize,
        labels: &[(&str, &str)],
        adjust: impl FnOnce(&mut LatticeConfig),
    ) -> Node {
        let host = self.host(labels);
        let mut config = self.config(i, Duration::from_secs(5));
        adjust(&mut config);
        let lattice = Lattice::join(host.clone(), config).await.unwrap();
        Node { host, lattice }
    }

    /// A tool signing with the admin key and believing the hosts.
    pub(crate) async fn client(&self) -> LatticeClient {
        self.client_as(copy(&self.admin)).await
    }

    pub(crate) async fn client_as(&self, identity: KeyPair) -> LatticeClient {
        LatticeClient::connect(
            &self.nats.url(),
            "waxosuit",
            None,
            Duration::from_millis(700),
            identity,
            TrustPolicy::hosts(self.keys.iter().map(|k| k.public_key())).unwrap(),
        )
        .await
        .unwrap()
    }

    /// The attacker: a plain client on the same server, with no key anybody trusts. Its
    /// inboxes are under the lattice's prefix, as an attacker would choose
    /// them: hosts answer nowhere else.
    pub(crate) async fn attacker(&self) -> async_nats::Client {
        async_nats::ConnectOptions::new()
            .custom_inbox_prefix(format!(
                "{}._INBOX",
                waxosuit_lattice::protocol::DEFAULT_PREFIX
            ))
            .connect(self.nats.url())
            .await
            .unwrap()
    }
}

pub(crate) fn copy(key: &KeyPair) -> KeyPair {
    KeyPair::from_seed(&key.seed().unwrap()).unwrap()
}

pub(crate) async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Returns once the server has handled everything `nats` sent before (a
/// subscription, say). `flush` only empties the socket buffer; the server
/// handles a connection's commands in order, so a message published to a
/// fresh inbox on the same connection comes back only after the earlier
/// ones took effect.
pub(crate) async fn synced_with_server(nats: &async_nats::Client) {
    let inbox = nats.new_inbox();
    let mut probe = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish(inbox, "sync".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), probe.next())
        .await
        .expect("the server answered the sync probe within 10 s")
        .expect("the probe subscription is open");
}

/// The next message a spy subscriber saw, or a failure naming the wait.
pub(crate) async fn next(spy: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), spy.next())
        .await
        .expect("the spy saw the message within 10 s")
        .expect("the spy's subscription is open")
}

/// Whether `spy` sees nothing within `wait`.
pub(crate) async fn silent(spy: &mut async_nats::Subscriber, wait: Duration) -> bool {
    tokio::time::timeout(wait, spy.next()).await.is_err()
}

/// Publishes `body` (built for the reply inbox it is given) on `subject`
/// and returns the first answer, decoded, or `None` within `wait`.
pub(crate) async fn send_raw(
    nats: &async_nats::Client,
    subject: String,
    body: impl FnOnce(&str) -> Vec<u8>,
    wait: Duration,
) -> Option<Response> {
    let inbox = nats.new_inbox();
    let mut sub = nats.subscribe(inbox.clone()).await.unwrap();
    let bytes = body(&inbox);
    nats.publish_with_reply(subject, inbox, Bytes::from(bytes))
        .await
        .unwrap();
    let msg = tokio::time::timeout(wait, sub.next()).await.ok()??;
    Some(protocol::decode("response", &msg.payload).expect("a decodable response"))
}

/// Holds every actor call for a while: answers from the real host then
/// always come after an attacker's.
pub(crate) struct Delay(pub Duration);

#[async_trait]
impl waxosuit_host::Middleware for Delay {
    async fn actor_pre_invoke(
        &self,
        inv: waxosuit_host::MiddlewareCall,
    ) -> Result<waxosuit_host::MiddlewareCall, waxosuit_host::Refusal> {
        tokio::time::sleep(self.0).await;
        Ok(inv)
    }
}

/// Publishes `body` on `subject` naming `reply` (an inbox the message was
/// signed for) and returns the first answer there, decoded, or `None`.
pub(crate) async fn send_on(
    nats: &async_nats::Client,
    subject: String,
    reply: String,
    body: Vec<u8>,
    wait: Duration,
) -> Option<Response> {
    let mut sub = nats.subscribe(reply.clone()).await.unwrap();
    nats.publish_with_reply(subject, reply, Bytes::from(body))
        .await
        .unwrap();
    let msg = tokio::time::timeout(wait, sub.next()).await.ok()??;
    Some(protocol::decode("response", &msg.payload).expect("a decodable response"))
}

/// The subject on which `node` takes calls for actor `key`.
pub(crate) fn call_subject(node: &Node, key: &str) -> String {
    let subjects = node.lattice.subjects();
    subjects.at(&subjects.actor(key), node.lattice.host_id())
}

/// Invocations of `operation` counted in `host`'s metrics.
pub(crate) fn served(host: &Host, operation: &str) -> u64 {
    host.metrics_text()
        .lines()
        .filter(|l| {
            l.starts_with("waxosuit_invocations_total{target=\"actor\"")
                && l.contains(&format!("operation=\"{operation}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
