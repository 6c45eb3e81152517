//! Hosts joined over a real `nats-server` (started per test on a free
//! port), in one process: remote calls, chunking, anti-forgery, versions,
//! timeouts, shared bindings, inventory, events and control.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_host::{Host, HostBuilder, Limits};
use waxosuit_lattice::protocol::{
    self, Command, ErrorKind, Invocation, PROTOCOL_VERSION, Response, WireEntity,
};
use waxosuit_lattice::{Lattice, LatticeClient, LatticeConfig, LatticeError, TrustPolicy};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};
use waxosuit_test_servers::NatsServer;

const PING: &str = "test:ping";

/// Answers `Ping` with `pong from <name>` for bound actors only.
struct Pinger {
    name: &'static str,
    bound: Mutex<Vec<String>>,
}

impl Pinger {
    fn new(name: &'static str) -> Arc<Pinger> {
        Arc::new(Pinger {
            name,
            bound: Mutex::new(Vec::new()),
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
        self.bound.lock().unwrap().push(req.actor);
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

/// The `wapc-echo` guest signed with `caps`; returns (module, key).
fn echo_actor(caps: &[&str]) -> (Vec<u8>, String) {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .metadata(Actor {
            caps: Some(caps.iter().map(|c| c.to_string()).collect()),
            ..Actor::named("echo")
        })
        .build();
    let signed = embed_claims(waxosuit_test_fixtures::wapc_echo(), &claims, &account).unwrap();
    (signed, module.public_key())
}

struct Node {
    host: Host,
    lattice: Lattice,
}

struct Net {
    nats: NatsServer,
    keys: Vec<KeyPair>,
}

impl Net {
    fn new(hosts: usize) -> Net {
        Net::with_nats(NatsServer::start().expect("nats-server"), hosts)
    }

    fn with_nats(nats: NatsServer, hosts: usize) -> Net {
        Net {
            nats,
            keys: (0..hosts)
                .map(|_| KeyPair::generate(KeyKind::Server))
                .collect(),
        }
    }

    fn trust(&self) -> TrustPolicy {
        TrustPolicy::hosts(self.keys.iter().map(|k| k.public_key())).unwrap()
    }

    /// Host `i`'s server key (a copy: `KeyPair` is not `Clone`).
    fn identity(&self, i: usize) -> KeyPair {
        KeyPair::from_seed(&self.keys[i].seed().unwrap()).unwrap()
    }

    fn config(&self, i: usize, timeout: Duration) -> LatticeConfig {
        let identity = self.identity(i);
        let mut config = LatticeConfig::new(self.nats.url(), identity, self.trust());
        config.timeout = timeout;
        config
    }

    async fn node(&self, i: usize, labels: &[(&str, &str)]) -> Node {
        self.node_with_timeout(i, labels, Duration::from_secs(5))
            .await
    }

    async fn node_with_timeout(
        &self,
        i: usize,
        labels: &[(&str, &str)],
        timeout: Duration,
    ) -> Node {
        let mut builder = HostBuilder::new().default_limits(
            Limits::default()
                .max_payload(8 << 20)
                .max_memory(64 << 20)
                // Short, so the `loop` test burns 2 s of CPU, not 10.
                .deadline(Duration::from_secs(2)),
        );
        for (k, v) in labels {
            builder = builder.label(*k, *v);
        }
        let host = builder.build().unwrap();
        let lattice = Lattice::join(host.clone(), self.config(i, timeout))
            .await
            .unwrap();
        Node { host, lattice }
    }

    async fn client(&self) -> LatticeClient {
        LatticeClient::connect(
            &self.nats.url(),
            "waxosuit",
            None,
            Duration::from_millis(700),
        )
        .await
        .unwrap()
    }
}

async fn eventually<F, Fut>(what: &str, mut f: F)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_on_another_host_answers_small_and_5_mib_payloads() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();

    let reply = a
        .lattice
        .call_actor(&key, "echo", b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!(reply, b"hello");

    // Default nats-server max_payload is 1 MiB: this travels in chunks both ways.
    let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = a
        .lattice
        .call_actor(&key, "echo", big.clone())
        .await
        .unwrap();
    assert_eq!(reply.len(), big.len());
    assert!(reply == big, "the 5 MiB payload came back altered");

    // A guest error comes back as a remote failure naming the actor.
    let err = a
        .lattice
        .call_actor(&key, "error", b"boom".to_vec())
        .await
        .unwrap_err();
    match &err {
        LatticeError::Remote { kind, message, .. } => {
            assert_eq!(*kind, ErrorKind::Failed);
            assert!(message.contains("boom"), "{message}");
        }
        other => panic!("expected a remote failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_uses_a_provider_on_another_host_and_the_binding_survives_its_restart() {
    let net = Net::new(3);
    let b = net.node(1, &[]).await;
    let c = net.node(2, &[]).await;
    let pinger = Pinger::new("C");
    c.host
        .add_provider("default", pinger.clone())
        .await
        .unwrap();
    let (module, key) = echo_actor(&[PING]);
    b.host.add_actor(&module, "echo", None).await.unwrap();

    // Bound from a third host that runs neither side.
    let a = net.node(0, &[]).await;
    a.lattice
        .put_binding(&key, PING, "", BTreeMap::from([("K".into(), "V".into())]))
        .await
        .unwrap();
    eventually("C binds the remote actor", || async {
        pinger.bound.lock().unwrap().contains(&key)
    })
    .await;
    eventually("B records the binding", || async {
        b.host
            .is_bound(&key, &waxosuit_host::RouteKey::new(PING, "default"))
    })
    .await;
    let reply = b.host.call_actor(&key, "ping", b"").await.unwrap();
    assert_eq!(reply, b"pong from C");

    // Restart the provider's host: a new process would start empty.
    c.lattice.leave().await;
    c.host.shutdown().await;
    drop(c);
    let err = b.host.call_actor(&key, "ping", b"").await.unwrap_err();
    assert!(err.to_string().contains(PING), "{err}");

    let c2 = net.node(2, &[]).await;
    let pinger2 = Pinger::new("C2");
    c2.host
        .add_provider("default", pinger2.clone())
        .await
        .unwrap();
    eventually("the restarted provider is bound again", || async {
        pinger2.bound.lock().unwrap().contains(&key)
    })
    .await;
    let reply = b.host.call_actor(&key, "ping", b"").await.unwrap();
    assert_eq!(reply, b"pong from C2");

    let client = net.client().await;
    let bindings = client.bindings().await.unwrap();
    assert_eq!(bindings.len(), 1, "{bindings:?}");
    assert_eq!(bindings[0].actor, key);
    assert_eq!(bindings[0].values.get("K").map(String::as_str), Some("V"));
}

fn forged(host: &KeyPair, target: &str, msg: &[u8]) -> Invocation {
    let origin = WireEntity::Host(host.public_key());
    let target = WireEntity::Actor(target.to_string());
    let id = "forged-1".to_string();
    let claims =
        waxosuit_lattice::antiforgery::sign(host, &id, &origin, &target, "echo", msg).unwrap();
    Invocation {
        v: PROTOCOL_VERSION,
        id,
        origin,
        target,
        operation: "echo".into(),
        msg: msg.to_vec(),
        encoded_claims: claims,
        host_id: host.public_key(),
        chunked: None,
        session: None,
        session_token: None,
    }
}

/// Returns once the server has handled everything `nats` sent before (a
/// subscription, say). `flush` only empties the socket buffer; the server
/// handles a connection's commands in order, so a message published to a
/// fresh inbox on the same connection comes back only after the earlier
/// ones took effect.
async fn synced_with_server(nats: &async_nats::Client) {
    let inbox = nats.new_inbox();
    let mut probe = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish(inbox, "sync".into()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), probe.next())
        .await
        .expect("the server answered the sync probe within 10 s")
        .expect("the probe subscription is open");
}

/// The next message a spy subscriber saw, or a failure naming the wait.
async fn next(spy: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(10), spy.next())
        .await
        .expect("the spy saw the call within 10 s")
        .expect("the spy's subscription is open")
}

async fn send(client: &LatticeClient, subject: String, body: Vec<u8>) -> Response {
    let reply = client
        .nats()
        .request(subject, body.into())
        .await
        .expect("an answer, not silence");
    protocol::decode("response", &reply.payload).expect("a decodable response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_versioned_and_malformed_messages_get_typed_refusals() {
    let net = Net::new(1);
    let b = net.node(0, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let client = net.client().await;
    let subject = client.subjects().actor(&key);

    // Signed by a key nobody trusts.
    let stranger = KeyPair::generate(KeyKind::Server);
    let r = send(
        &client,
        subject.clone(),
        protocol::encode(&forged(&stranger, &key, b"x")).unwrap(),
    )
    .await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("trust list"), "{}", e.message);

    // Signed by a trusted host, payload changed on the way.
    let trusted = net.identity(0);
    let mut inv = forged(&trusted, &key, b"pay 1");
    inv.msg = b"pay 1000".to_vec();
    let r = send(&client, subject.clone(), protocol::encode(&inv).unwrap()).await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("hash"), "{}", e.message);

    // Signed for another actor, sent to this one's subject.
    let inv = forged(&trusted, "MOTHERACTOR", b"x");
    let r = send(&client, subject.clone(), protocol::encode(&inv).unwrap()).await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Forged);

    // A future protocol version.
    let mut inv = forged(&trusted, &key, b"x");
    inv.v = PROTOCOL_VERSION + 1;
    let r = send(&client, subject.clone(), protocol::encode(&inv).unwrap()).await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Version);
    assert!(e.message.contains("version"), "{}", e.message);

    // Not MessagePack at all, and MessagePack without a version.
    let r = send(&client, subject.clone(), b"\xc1garbage".to_vec()).await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Malformed);
    let r = send(
        &client,
        subject.clone(),
        protocol::encode(&BTreeMap::from([("id", "x")])).unwrap(),
    )
    .await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Malformed);

    // And the host still serves honest calls.
    let r = send(
        &client,
        subject,
        protocol::encode(&forged(&trusted, &key, b"ok")).unwrap(),
    )
    .await;
    assert_eq!(r.error, None);
    assert_eq!(r.msg, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_first_contact_calls_carry_session_tags_that_bind_the_message() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let client = net.client().await;
    let subject = client.subjects().actor(&key);
    // A plain (non-queue) subscriber sees a copy of every call.
    let mut spy = client.nats().subscribe(subject.clone()).await.unwrap();
    synced_with_server(client.nats()).await;

    // First contact: signed claims plus A's session token; B answers with its own.
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"one".to_vec())
            .await
            .unwrap(),
        b"one"
    );
    let first: Invocation = protocol::decode("invocation", &next(&mut spy).await.payload).unwrap();
    assert!(!first.encoded_claims.is_empty());
    assert!(first.session.is_none());
    let token = first.session_token.expect("A introduces its session");
    let verified = Verifier::new()
        .verify_token::<waxosuit_lattice::session::HostSession>(&token, KeyKind::Server, None)
        .unwrap();
    assert_eq!(verified.issuer(), a.lattice.host_id());
    assert_eq!(
        a.lattice.session_peers(),
        vec![b.lattice.host_id().to_string()]
    );
    assert_eq!(
        b.lattice.session_peers(),
        vec![a.lattice.host_id().to_string()]
    );

    // From then on: no signature, one session tag addressed to B.
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"two".to_vec())
            .await
            .unwrap(),
        b"two"
    );
    let tagged: Invocation = protocol::decode("invocation", &next(&mut spy).await.payload).unwrap();
    assert!(
        tagged.encoded_claims.is_empty(),
        "the fast path signs nothing"
    );
    let proof = tagged.session.clone().expect("a session tag");
    assert_eq!(proof.tags.len(), 1);
    assert_eq!(proof.tags[0].to, b.lattice.host_id());

    // The tag binds the payload, the operation and the id.
    let mut changed = tagged.clone();
    changed.msg = b"TWO".to_vec();
    let r = send(
        &client,
        subject.clone(),
        protocol::encode(&changed).unwrap(),
    )
    .await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("does not match"), "{}", e.message);
    let mut changed = tagged.clone();
    changed.operation = "error".into();
    let r = send(
        &client,
        subject.clone(),
        protocol::encode(&changed).unwrap(),
    )
    .await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Forged);
    let mut changed = tagged.clone();
    changed.session.as_mut().unwrap().iat -= 3600;
    let r = send(
        &client,
        subject.clone(),
        protocol::encode(&changed).unwrap(),
    )
    .await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Forged);

    // A session B does not know gets `session` (nothing runs) and B's token.
    let mut unknown = tagged.clone();
    unknown.session.as_mut().unwrap().sid = "someone-else".into();
    let r = send(
        &client,
        subject.clone(),
        protocol::encode(&unknown).unwrap(),
    )
    .await;
    assert_eq!(r.error.expect("told to fall back").kind, ErrorKind::Session);
    let theirs = r.session.expect("B's session token");
    let verified = Verifier::new()
        .verify_token::<waxosuit_lattice::session::HostSession>(&theirs, KeyKind::Server, None)
        .unwrap();
    assert_eq!(verified.issuer(), b.lattice.host_id());

    // A session token from a host nobody trusts is refused outright.
    let stranger = KeyPair::generate(KeyKind::Server);
    let mut inv = forged(&net.identity(0), &key, b"x");
    inv.session_token = Some(
        Claims::<waxosuit_lattice::session::HostSession>::builder()
            .issuer(stranger.public_key())
            .subject("sid")
            .metadata(waxosuit_lattice::session::HostSession {
                xkey: "AAAA".into(),
            })
            .build()
            .encode(&stranger)
            .unwrap(),
    );
    let r = send(&client, subject.clone(), protocol::encode(&inv).unwrap()).await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("trust list"), "{}", e.message);
    // Nor may A present another (trusted) host's token as its own.
    inv.session_token = Some(theirs);
    let r = send(&client, subject.clone(), protocol::encode(&inv).unwrap()).await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("session token of"), "{}", e.message);

    // After B restarts its lattice membership (new session), A's stale tags
    // are answered with `session` and A falls back once, transparently.
    tokio::time::timeout(Duration::from_secs(20), b.lattice.leave())
        .await
        .expect("B leaves within 20 s");
    let b2 = tokio::time::timeout(
        Duration::from_secs(20),
        Lattice::join(b.host.clone(), net.config(1, Duration::from_secs(5))),
    )
    .await
    .expect("B joins again within 20 s")
    .unwrap();
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"three".to_vec())
            .await
            .unwrap(),
        b"three"
    );
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"four".to_vec())
            .await
            .unwrap(),
        b"four"
    );
    assert_eq!(b2.session_peers(), vec![a.lattice.host_id().to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_is_one_way_and_a_caller_keeps_sessions_with_hosts_it_does_not_trust() {
    let net = Net::new(2);
    // A trusts no other host; B trusts A.
    let mut config = net.config(0, Duration::from_secs(5));
    config.trust = TrustPolicy::hosts(Vec::<String>::new()).unwrap();
    let host_a = HostBuilder::new().build().unwrap();
    let a = Lattice::join(host_a.clone(), config).await.unwrap();
    let b = net.node(1, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    for i in 0..3u8 {
        assert_eq!(a.call_actor(&key, "echo", vec![i]).await.unwrap(), vec![i]);
    }
    // A tags its calls for B (no second round trip per call)...
    assert_eq!(a.session_peers(), vec![b.lattice.host_id().to_string()]);
    // ...but does not run B's.
    let (module, key_a) = echo_actor(&[]);
    host_a.add_actor(&module, "echo", None).await.unwrap();
    let err = b
        .lattice
        .call_actor(&key_a, "echo", vec![1])
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::Forged { .. }), "{err:?}");
    assert!(err.to_string().contains("trust list"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_missing_targets_are_typed_errors() {
    let net = Net::new(2);
    let a = net
        .node_with_timeout(0, &[], Duration::from_millis(300))
        .await;
    let b = net.node(1, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();

    let nobody = KeyPair::generate(KeyKind::Module).public_key();
    let err = a
        .lattice
        .call_actor(&nobody, "echo", vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::NoResponders { .. }), "{err:?}");
    assert!(err.to_string().contains(&nobody), "{err}");

    // `loop` spins until the actor's deadline (2 s); the caller gives up at 300 ms.
    let err = a
        .lattice
        .call_actor(&key, "loop", vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("300 ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_resume_after_nats_server_restarts() {
    let mut net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"1".to_vec())
            .await
            .unwrap(),
        b"1"
    );

    net.nats.restart().unwrap();
    let mut ok = false;
    for _ in 0..100 {
        if let Ok(reply) = a.lattice.call_actor(&key, "echo", b"2".to_vec()).await {
            assert_eq!(reply, b"2");
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "no successful call within 10 s of the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_calls_and_a_host_that_leaves_drops_out() {
    let net = Net::new(3);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let c = net.node(2, &[]).await;
    let (module, key) = echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    c.host.add_actor(&module, "echo", None).await.unwrap();
    let served = |host: &Host| -> u64 {
        host.metrics_text()
            .lines()
            .filter(|l| {
                l.starts_with("waxosuit_invocations_total{target=\"actor\"")
                    && l.contains("operation=\"echo\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    for i in 0..40u8 {
        a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
    }
    let (nb, nc) = (served(&b.host), served(&c.host));
    assert_eq!(nb + nc, 40, "B {nb} + C {nc}");
    assert!(
        nb > 0 && nc > 0,
        "the queue group did not share: B {nb}, C {nc}"
    );

    b.lattice.leave().await;
    for i in 0..20u8 {
        a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
    }
    assert_eq!(served(&b.host), nb, "B served calls after leaving");
    assert_eq!(served(&c.host), nc + 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_events_and_control_commands() {
    let net = Net::new(2);
    let a = net.node(0, &[("zone", "east")]).await;
    let b = net.node(1, &[("zone", "west")]).await;
    let client = net.client().await;
    let mut events = client.watch().await.unwrap();

    let hosts = client.hosts().await.unwrap();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    let west = hosts
        .iter()
        .find(|h| h.labels.get("zone").map(String::as_str) == Some("west"))
        .unwrap();
    assert_eq!(west.id, b.lattice.host_id());
    assert!(west.labels.contains_key("hostcore.arch"));
    assert_eq!(west.version, PROTOCOL_VERSION);

    // Auction: only B satisfies zone=west.
    let bids = client
        .auction(BTreeMap::from([("zone".into(), "west".into())]), None)
        .await
        .unwrap();
    assert_eq!(bids.len(), 1);
    assert_eq!(bids[0].host, b.lattice.host_id());

    // Start an actor on the winner by command; the event and inventory show it.
    let (module, key) = echo_actor(&[]);
    let reply = client
        .start_actor(&bids[0].host, module.clone())
        .await
        .unwrap();
    assert!(reply.ok, "{}", reply.message);
    assert!(b.host.has_actor(&key));
    let started = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            if event.kind == "dev.waxosuit.actor_started" {
                return event;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("an actor_started event");
    assert_eq!(started.subject, key);
    assert_eq!(started.specversion, "1.0");
    assert!(started.source.ends_with(b.lattice.host_id()));
    let actors = client.actors().await.unwrap();
    assert_eq!(actors.len(), 1);
    assert_eq!(actors[0].host, b.lattice.host_id());

    // A's lattice learned the claims from the event.
    eventually("A learns the actor", || async {
        a.lattice.knows_actor(&key)
    })
    .await;

    // Starting it again on B is refused with the host's reason; an unsigned
    // module is refused too.
    let again = client
        .start_actor(b.lattice.host_id(), module)
        .await
        .unwrap();
    assert!(
        !again.ok && again.message.contains("already running"),
        "{}",
        again.message
    );
    let unsigned = client
        .start_actor(
            b.lattice.host_id(),
            waxosuit_test_fixtures::wapc_echo().to_vec(),
        )
        .await
        .unwrap();
    assert!(
        !unsigned.ok && unsigned.message.contains("refused"),
        "{}",
        unsigned.message
    );

    // Providers on request need a factory; this host has none.
    let refused = client
        .command(
            a.lattice.host_id(),
            Command::StartProvider {
                v: PROTOCOL_VERSION,
                capid: PING.into(),
                backend: None,
                binding: "default".into(),
            },
        )
        .await
        .unwrap();
    assert!(
        !refused.ok && refused.message.contains("providers"),
        "{}",
        refused.message
    );

    let stop = client
        .command(
            b.lattice.host_id(),
            Command::StopActor {
                v: PROTOCOL_VERSION,
                actor: key.clone(),
            },
        )
        .await
        .unwrap();
    assert!(stop.ok, "{}", stop.message);
    assert!(!b.host.has_actor(&key));

    // A command in a future protocol version is refused, not misread.
    let future = client
        .command(
            b.lattice.host_id(),
            Command::StopActor {
                v: PROTOCOL_VERSION + 1,
                actor: key,
            },
        )
        .await
        .unwrap();
    assert!(
        !future.ok && future.message.contains("version"),
        "{}",
        future.message
    );

    let unknown = KeyPair::generate(KeyKind::Server).public_key();
    let err = client
        .command(
            &unknown,
            Command::StopActor {
                v: PROTOCOL_VERSION,
                actor: "M".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::NoResponders { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_and_a_wrong_identity_are_clear_errors() {
    let port = waxosuit_test_servers::free_port().unwrap();
    let host = Host::new().unwrap();
    let config = LatticeConfig::new(
        format!("nats://127.0.0.1:{port}"),
        KeyPair::generate(KeyKind::Server),
        TrustPolicy::any_host(),
    );
    let err = Lattice::join(host.clone(), config).await.err().unwrap();
    assert!(matches!(err, LatticeError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("nats-server"), "{err}");

    let config = LatticeConfig::new(
        format!("nats://127.0.0.1:{port}"),
        KeyPair::generate(KeyKind::Account),
        TrustPolicy::any_host(),
    );
    let err = Lattice::join(host, config).await.err().unwrap();
    assert!(err.to_string().contains("server key"), "{err}");
}
