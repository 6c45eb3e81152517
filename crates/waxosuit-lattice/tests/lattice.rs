//! Hosts joined over a real `nats-server` (started per test on a free
//! port), in one process: remote calls, chunking, authentication, versions,
//! timeouts, shared bindings, inventory, events and control. Attacks by a
//! client holding no trusted key are in `attacks.rs`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use waxosuit_claims::{Claims, KeyKind, KeyPair, Verifier};
use waxosuit_host::Host;
use waxosuit_lattice::antiforgery::{self, Binding};
use waxosuit_lattice::protocol::{
    self, Command, ErrorKind, PROTOCOL_VERSION, WireEntity, WireInvocation,
};
use waxosuit_lattice::{Lattice, LatticeConfig, LatticeError, TrustPolicy};

/// An invocation of `echo` on `target` signed by `host` for `subject` and
/// the reply inbox it will be sent with.
fn signed(host: &KeyPair, target: &str, msg: &[u8], subject: &str, reply: &str) -> WireInvocation {
    let mut inv = WireInvocation {
        v: PROTOCOL_VERSION,
        id: nuid::next().to_string(),
        origin: WireEntity::Host(host.public_key()),
        target: WireEntity::Actor(target.to_string()),
        operation: "echo".into(),
        msg: msg.to_vec(),
        encoded_claims: String::new(),
        host_id: host.public_key(),
        chunked: None,
        session: None,
        session_token: None,
    };
    inv.encoded_claims = antiforgery::sign(host, &inv, Binding { subject, reply }).unwrap();
    inv
}

const WAIT: Duration = Duration::from_secs(5);

/// Builds a message for the reply inbox it will be sent with.
type Body = Box<dyn FnOnce(&str) -> Vec<u8> + Send>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_on_another_host_answers_small_and_5_mib_payloads() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
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
    let (module, key) = net.echo_actor(&[PING]);
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
        b.host.is_bound(
            &waxosuit_host::ActorKey::new(key.as_str()).unwrap(),
            &waxosuit_host::RouteKey::new(PING, "default"),
        )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_versioned_and_malformed_messages_get_typed_refusals() {
    let net = Net::new(1);
    let b = net.node(0, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let nats = net.attacker().await;
    // Calls go to the serving host's own subject.
    let subject = b
        .lattice
        .subjects()
        .at(&b.lattice.subjects().actor(&key), b.lattice.host_id());
    let trusted = net.identity(0);
    let send = |body: Body| {
        let nats = nats.clone();
        let subject = subject.clone();
        async move {
            send_raw(&nats, subject, body, WAIT)
                .await
                .expect("an answer, not silence")
        }
    };

    // Signed by a key nobody trusts.
    let stranger = KeyPair::generate(KeyKind::Server);
    let (k, s) = (key.clone(), subject.clone());
    let r = send(Box::new(move |reply| {
        protocol::encode(&signed(&stranger, &k, b"x", &s, reply)).unwrap()
    }))
    .await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("trust list"), "{}", e.message);
    assert!(
        r.jwt.is_empty() && r.tag.is_none(),
        "refusals are not signed"
    );

    // Signed by a trusted host, payload changed on the way.
    let (t, k, s) = (copy(&trusted), key.clone(), subject.clone());
    let r = send(Box::new(move |reply| {
        let mut inv = signed(&t, &k, b"pay 1", &s, reply);
        inv.msg = b"pay 1000".to_vec();
        protocol::encode(&inv).unwrap()
    }))
    .await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("hash"), "{}", e.message);

    // Signed for another actor, sent to this one's subject.
    let (t, s) = (copy(&trusted), subject.clone());
    let r = send(Box::new(move |reply| {
        protocol::encode(&signed(&t, "MOTHERACTOR", b"x", &s, reply)).unwrap()
    }))
    .await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Forged);

    // Signed for another reply inbox: re-published by someone else.
    let (t, k, s) = (copy(&trusted), key.clone(), subject.clone());
    let r = send(Box::new(move |_| {
        protocol::encode(&signed(&t, &k, b"x", &s, "_INBOX.someone.else")).unwrap()
    }))
    .await;
    let e = r.error.expect("refused");
    assert!(e.message.contains("inbox"), "{}", e.message);

    // A future protocol version.
    let (t, k, s) = (copy(&trusted), key.clone(), subject.clone());
    let r = send(Box::new(move |reply| {
        let mut inv = signed(&t, &k, b"x", &s, reply);
        inv.v = PROTOCOL_VERSION + 1;
        protocol::encode(&inv).unwrap()
    }))
    .await;
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Version);
    assert!(e.message.contains("version"), "{}", e.message);

    // Not MessagePack at all, and MessagePack without a version.
    let r = send(Box::new(|_| b"\xc1garbage".to_vec())).await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Malformed);
    let r = send(Box::new(|_| {
        protocol::encode(&BTreeMap::from([("id", "x")])).unwrap()
    }))
    .await;
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Malformed);
    // An id longer than any host sends: refused without echoing it (an
    // id near the server's largest message made every answer too large to
    // send, each failure a log line of its own).
    let (t, k, s) = (copy(&trusted), key.clone(), subject.clone());
    let r = send(Box::new(move |reply| {
        let mut inv = signed(&t, &k, b"x", &s, reply);
        inv.id = "A".repeat(64 * 1024);
        protocol::encode(&inv).unwrap()
    }))
    .await;
    assert!(r.invocation_id.is_empty(), "the id is not echoed");
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Malformed);
    assert!(e.message.contains("id is longer"), "{}", e.message);

    // And the host still serves honest calls, with a signed answer.
    let (t, k, s) = (copy(&trusted), key.clone(), subject.clone());
    let r = send(Box::new(move |reply| {
        protocol::encode(&signed(&t, &k, b"ok", &s, reply)).unwrap()
    }))
    .await;
    assert_eq!(r.error, None);
    assert_eq!(r.msg, b"ok");
    assert_eq!(r.host, b.lattice.host_id());
    assert!(!r.jwt.is_empty(), "a first-contact answer is signed");
    assert!(b.lattice.refusals("invocation", "untrusted") >= 1);
    assert!(b.lattice.refusals("invocation", "mismatch") >= 3);
    assert!(b.lattice.refusals("invocation", "version") >= 1);
    let metrics = b.host.metrics_text();
    assert!(
        metrics
            .contains("waxosuit_lattice_refused_total{plane=\"invocation\",reason=\"untrusted\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_first_contact_calls_carry_session_tags_that_bind_the_message() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let nats = net.attacker().await;
    let subject = b
        .lattice
        .subjects()
        .at(&b.lattice.subjects().actor(&key), b.lattice.host_id());
    // A plain subscriber on B's own subject sees a copy of every call to B.
    let mut spy = nats.subscribe(subject.clone()).await.unwrap();
    synced_with_server(&nats).await;

    // First contact: signed claims plus A's session token; B answers with its own.
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"one".to_vec())
            .await
            .unwrap(),
        b"one"
    );
    let first: WireInvocation =
        protocol::decode("invocation", &next(&mut spy).await.payload).unwrap();
    assert!(!first.encoded_claims.is_empty());
    assert!(first.session.is_none());
    let token = first.session_token.expect("A introduces its session");
    let verified = Verifier::new()
        .verify_token::<waxosuit_lattice::session::HostSession>(&token, KeyKind::Server, None)
        .unwrap();
    assert_eq!(verified.issuer(), a.lattice.host_id());
    assert!(verified.claims().expires.is_some(), "session tokens expire");
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
    let msg = next(&mut spy).await;
    let tagged: WireInvocation = protocol::decode("invocation", &msg.payload).unwrap();
    let reply = msg.reply.unwrap().to_string();
    assert!(
        tagged.encoded_claims.is_empty(),
        "the fast path signs nothing"
    );
    let proof = tagged.session.clone().expect("a session tag");
    assert_eq!(proof.tags.len(), 1);
    assert_eq!(proof.tags[0].to, b.lattice.host_id());

    // The tag binds the payload, the operation, the issue time, the number
    // and the reply inbox; the same message again is a replay.
    // Each variant goes to the inbox the original was tagged for (whose
    // answers the attacker can read), so only the change itself differs.
    let publish = |inv: WireInvocation, to: String| {
        let nats = nats.clone();
        let subject = subject.clone();
        async move { send_on(&nats, subject, to, protocol::encode(&inv).unwrap(), WAIT).await }
    };
    let mut changed = tagged.clone();
    changed.msg = b"TWO".to_vec();
    let r = publish(changed, reply.clone()).await.unwrap();
    let e = r.error.expect("refused");
    assert_eq!(e.kind, ErrorKind::Forged);
    assert!(e.message.contains("does not match"), "{}", e.message);
    let mut changed = tagged.clone();
    changed.operation = "error".into();
    let r = publish(changed, reply.clone()).await.unwrap();
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Forged);
    let mut changed = tagged.clone();
    changed.session.as_mut().unwrap().iat -= 3600;
    let r = publish(changed, reply.clone()).await.unwrap();
    assert_eq!(r.error.expect("refused").kind, ErrorKind::Forged);
    // The very same bytes on the very same inbox: a replay.
    let before = served(&b.host, "echo");
    nats.publish_with_reply(subject.clone(), reply.clone(), msg.payload.clone())
        .await
        .unwrap();
    eventually("B refuses the replayed tagged call", || async {
        b.lattice.refusals("invocation", "replayed") >= 1
    })
    .await;
    assert_eq!(served(&b.host, "echo"), before, "a replay ran");

    // A session B does not know gets `session` (signed, nothing runs) and B's token.
    let mut unknown = tagged.clone();
    unknown.session.as_mut().unwrap().sid = "someone-else".into();
    let r = publish(unknown, reply.clone()).await.unwrap();
    assert_eq!(r.error.expect("told to fall back").kind, ErrorKind::Session);
    assert!(!r.jwt.is_empty(), "a `session` answer is signed");
    let theirs = r.session.expect("B's session token");
    let verified = Verifier::new()
        .verify_token::<waxosuit_lattice::session::HostSession>(&theirs, KeyKind::Server, None)
        .unwrap();
    assert_eq!(verified.issuer(), b.lattice.host_id());

    // A session token must be the one signed with the call, and its
    // sender's own: a stranger's, or another trusted host's (B's), signed
    // in by A, is refused; and any token swapped in after signing is too.
    let stranger = KeyPair::generate(KeyKind::Server);
    let stranger_token = Claims::<waxosuit_lattice::session::HostSession>::builder()
        .issuer(stranger.public_key())
        .subject("sid")
        .expires_in(Duration::from_secs(600))
        .metadata(waxosuit_lattice::session::HostSession {
            xkey: "AAAA".into(),
        })
        .build()
        .encode(&stranger)
        .unwrap();
    for (token, signed_in, expected) in [
        (stranger_token.clone(), true, "session token of"),
        (theirs.clone(), true, "session token of"),
        (stranger_token, false, "not the one signed"),
    ] {
        let (t, k, s) = (net.identity(0), key.clone(), subject.clone());
        let r = send_raw(
            &nats,
            subject.clone(),
            move |reply| {
                let mut inv = signed(&t, &k, b"x", &s, reply);
                inv.session_token = Some(token);
                if signed_in {
                    inv.encoded_claims =
                        antiforgery::sign(&t, &inv, Binding { subject: &s, reply }).unwrap();
                }
                protocol::encode(&inv).unwrap()
            },
            WAIT,
        )
        .await
        .unwrap();
        let e = r.error.expect("refused");
        assert_eq!(e.kind, ErrorKind::Forged);
        assert!(e.message.contains(expected), "{}", e.message);
    }
    assert_eq!(
        b.lattice.session_peers(),
        vec![a.lattice.host_id().to_string()],
        "no foreign session was learned"
    );

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
async fn without_a_tracing_layer_calls_carry_no_trace_headers() {
    // No subscriber is installed in this test binary (`traces.rs` has one).
    assert!(tracing::info_span!("probe").is_disabled());
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let nats = net.attacker().await;
    let mut spy = nats.subscribe(call_subject(&b, &key)).await.unwrap();
    synced_with_server(&nats).await;
    // Signed, then session-tagged: neither carries a header.
    for payload in [b"one".to_vec(), b"two".to_vec()] {
        a.lattice
            .call_actor(&key, "echo", payload.clone())
            .await
            .unwrap();
        let sent = next(&mut spy).await;
        assert!(sent.headers.is_none(), "{:?}", sent.headers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_accepts_answers_only_from_hosts_it_trusts() {
    let net = Net::new(2);
    // A trusts no other host; B trusts A.
    let a = net
        .node_with(0, &[], |config| {
            config.trust = TrustPolicy::hosts(Vec::<String>::new()).unwrap();
            config.timeout = Duration::from_millis(800);
        })
        .await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    // B runs A's call and answers, signed; A refuses the answer of a host
    // it does not trust and learns no session from it.
    let err = a
        .lattice
        .call_actor(&key, "echo", vec![1])
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::Timeout { .. }), "{err:?}");
    assert!(a.lattice.refusals("response", "untrusted") >= 1);
    assert!(a.lattice.session_peers().is_empty());
    // The other way round, A refuses B's calls: B ignores A's unsigned
    // refusal, and reports what it said when it gives up.
    let (module, key_a) = net.echo_actor(&[]);
    a.host.add_actor(&module, "echo", None).await.unwrap();
    let err = b
        .lattice
        .call_actor(&key_a, "echo", vec![1])
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("trust list"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_at_its_limit_answers_busy_at_once() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net
        .node_with(1, &[], |config| config.limits.inbound_per_target = 1)
        .await;
    let (module, key) = net.echo_actor(&[]);
    b.host
        .add_actor(
            &module,
            "echo",
            Some(waxosuit_host::Limits::default().deadline(Duration::from_millis(1500))),
        )
        .await
        .unwrap();
    a.lattice.call_actor(&key, "echo", vec![]).await.unwrap();
    // `loop` spins until the deadline and holds the only slot.
    let spinning = {
        let lattice = a.lattice.clone();
        let key = key.clone();
        tokio::spawn(async move { lattice.call_actor(&key, "loop", vec![]).await })
    };
    let mut busy = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        match a.lattice.call_actor(&key, "echo", vec![]).await {
            Err(
                e @ LatticeError::Remote {
                    kind: ErrorKind::Busy,
                    ..
                },
            ) => {
                busy = Some(e);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let busy = busy.expect("a call while the only slot is taken is turned away");
    assert!(busy.to_string().contains("limit"), "{busy}");
    let _ = spinning.await;
    a.lattice.call_actor(&key, "echo", vec![]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_and_missing_targets_are_typed_errors() {
    let net = Net::new(2);
    let a = net
        .node_with(0, &[], |c| c.timeout = Duration::from_millis(300))
        .await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
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
    let (module, key) = net.echo_actor(&[]);
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
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    c.host.add_actor(&module, "echo", None).await.unwrap();
    for i in 0..40u8 {
        a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
    }
    let (nb, nc) = (served(&b.host, "echo"), served(&c.host, "echo"));
    assert_eq!(nb + nc, 40, "B {nb} + C {nc}");
    assert!(
        nb > 0 && nc > 0,
        "the queue group did not share: B {nb}, C {nc}"
    );

    b.lattice.leave().await;
    for i in 0..20u8 {
        a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
    }
    assert_eq!(served(&b.host, "echo"), nb, "B served calls after leaving");
    assert_eq!(served(&c.host, "echo"), nc + 20);
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
    let (module, key) = net.echo_actor(&[]);
    let reply = client
        .start_actor(&bids[0].host, module.clone())
        .await
        .unwrap();
    assert!(reply.ok, "{}", reply.message);
    assert!(
        b.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap())
    );
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
    // A module signed by an account the host does not trust is refused.
    let (foreign, _) = echo_actor_by(&KeyPair::generate(KeyKind::Account), &[]);
    let untrusted = client
        .start_actor(b.lattice.host_id(), foreign)
        .await
        .unwrap();
    assert!(
        !untrusted.ok && untrusted.message.to_lowercase().contains("trust"),
        "{}",
        untrusted.message
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
    assert!(
        !b.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap())
    );

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
async fn a_call_alias_names_one_actor_lattice_wide() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (first, first_key) = echo_actor_aliased(&net.account, &[], Some("payments"));
    b.host.add_actor(&first, "first", None).await.unwrap();
    eventually("A learns B's actor", || async {
        a.lattice.knows_actor(&first_key)
    })
    .await;
    let (second, second_key) = echo_actor_aliased(&net.account, &[], Some("payments"));
    let err = a.host.add_actor(&second, "second", None).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("payments") && text.contains(&first_key),
        "{text}"
    );
    assert!(
        !a.host
            .has_actor(&waxosuit_host::ActorKey::new(second_key.as_str()).unwrap())
    );
    // A replica of the same actor may share its alias.
    a.host.add_actor(&first, "replica", None).await.unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_larger_than_a_message_starts_by_command_in_chunks() {
    let net = Net::new(1);
    let b = net.node(0, &[]).await;
    let client = net.client().await;
    let account = &net.account;
    let module_key = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<waxosuit_claims::Actor>::builder()
        .issuer(account.public_key())
        .subject(module_key.public_key())
        .metadata(waxosuit_claims::Actor::named("big-echo"))
        .build();
    // Default nats-server max_payload is 1 MiB: this goes in two chunks,
    // which the host asks the admin's client for, signed.
    let module = waxosuit_claims::embed_claims(
        &waxosuit_test_fixtures::hostile::with_custom_section(
            waxosuit_test_fixtures::wapc_echo(),
            "padding",
            &vec![7; 1536 * 1024],
        ),
        &claims,
        account,
    )
    .unwrap();
    let max_payload = net.attacker().await.server_info().max_payload;
    assert!(module.len() > max_payload, "the module travels inline");
    let reply = client
        .start_actor(b.lattice.host_id(), module)
        .await
        .unwrap();
    assert!(reply.ok, "{}", reply.message);
    assert!(
        b.host
            .has_actor(&waxosuit_host::ActorKey::new(module_key.public_key().as_str()).unwrap())
    );
}
