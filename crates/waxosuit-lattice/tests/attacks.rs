//! The lattice under attack by a plain NATS client on the same server that
//! holds no trusted key (or a key of its own nobody trusts): every attack
//! from the trust-boundary review, each shown to change nothing, and the
//! same action by a trusted key shown to work.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_lattice::LatticeError;
use waxosuit_lattice::antiforgery;
use waxosuit_lattice::auth::{AUTH_HEADER, sign_message};
use waxosuit_lattice::protocol::{
    self, ActorEntry, BindingChange, BindingEntry, CloudEvent, Command, PROTOCOL_VERSION, Response,
    WireInvocation,
};
use waxosuit_lattice::redact::REDACTED;

const QUIET: Duration = Duration::from_millis(800);

fn stop(actor: &str) -> Vec<u8> {
    protocol::encode(&Command::StopActor {
        v: PROTOCOL_VERSION,
        actor: actor.to_string(),
    })
    .unwrap()
}

/// Publishes a request and says whether anything answered within [`QUIET`].
async fn answered(
    nats: &async_nats::Client,
    subject: String,
    headers: Option<async_nats::HeaderMap>,
    body: Vec<u8>,
) -> bool {
    let inbox = nats.new_inbox();
    let mut sub = nats.subscribe(inbox.clone()).await.unwrap();
    match headers {
        Some(h) => nats
            .publish_with_reply_and_headers(subject, inbox, h, Bytes::from(body))
            .await
            .unwrap(),
        None => nats
            .publish_with_reply(subject, inbox, Bytes::from(body))
            .await
            .unwrap(),
    }
    !silent(&mut sub, QUIET).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_from_anyone_but_a_trusted_key_change_nothing() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let nats = net.attacker().await;
    let control = b.lattice.subjects().control(b.lattice.host_id());

    // Unsigned: the project's own tool once sent exactly this.
    assert!(!answered(&nats, control.clone(), None, stop(&key)).await);
    // Signed by a key of the attacker's own, user or server.
    for kind in [KeyKind::User, KeyKind::Server, KeyKind::Operator] {
        let own = KeyPair::generate(kind);
        let inbox = nats.new_inbox();
        let mut sub = nats.subscribe(inbox.clone()).await.unwrap();
        let headers = sign_message(&own, &control, Some(&inbox), None, &stop(&key)).unwrap();
        nats.publish_with_reply_and_headers(
            control.clone(),
            inbox,
            headers,
            Bytes::from(stop(&key)),
        )
        .await
        .unwrap();
        assert!(silent(&mut sub, QUIET).await, "{kind:?} got an answer");
    }
    // Starting a provider (a blob store, say), unsigned.
    let start = protocol::encode(&Command::StartProvider {
        v: PROTOCOL_VERSION,
        capid: "wascc:blobstore".into(),
        backend: None,
        binding: "evil".into(),
    })
    .unwrap();
    assert!(!answered(&nats, control.clone(), None, start).await);
    assert!(b.host.providers().is_empty(), "a provider was started");
    // Through the tool's own client with an untrusted key.
    let stranger = net.client_as(KeyPair::generate(KeyKind::User)).await;
    let err = stranger
        .command(
            b.lattice.host_id(),
            Command::StopActor {
                v: PROTOCOL_VERSION,
                actor: key.clone(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, LatticeError::Timeout { .. }), "{err:?}");
    assert!(
        b.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap()),
        "the actor was stopped"
    );
    assert_eq!(
        a.lattice
            .call_actor(&key, "echo", b"still".to_vec())
            .await
            .unwrap(),
        b"still"
    );
    assert!(b.lattice.refusals("command", "unsigned") >= 1);
    assert!(b.lattice.refusals("command", "untrusted") >= 4);

    // The same command signed by the trusted admin is applied, once: the
    // signed message captured and published again is a replay.
    let mut spy = nats.subscribe(control.clone()).await.unwrap();
    synced_with_server(&nats).await;
    let admin = net.client().await;
    let reply = admin
        .command(
            b.lattice.host_id(),
            Command::StopActor {
                v: PROTOCOL_VERSION,
                actor: key.clone(),
            },
        )
        .await
        .unwrap();
    assert!(reply.ok, "{}", reply.message);
    assert!(
        !b.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap())
    );
    let captured = next(&mut spy).await;
    b.host.add_actor(&module, "echo", None).await.unwrap();
    nats.publish_with_reply_and_headers(
        control.clone(),
        captured.reply.clone().unwrap(),
        captured.headers.clone().unwrap(),
        captured.payload.clone(),
    )
    .await
    .unwrap();
    eventually("B refuses the replayed command", || async {
        b.lattice.refusals("command", "replayed") >= 1
    })
    .await;
    assert!(
        b.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap()),
        "a replayed command was applied"
    );
    // Re-published with a reply inbox of the attacker's: not what was signed.
    let inbox = nats.new_inbox();
    let mut sub = nats.subscribe(inbox.clone()).await.unwrap();
    nats.publish_with_reply_and_headers(
        control,
        inbox,
        captured.headers.unwrap(),
        captured.payload,
    )
    .await
    .unwrap();
    assert!(silent(&mut sub, QUIET).await);
    assert!(
        b.host
            .has_actor(&waxosuit_host::ActorKey::new(key.as_str()).unwrap())
    );
    let text = b.host.metrics_text();
    assert!(
        text.contains("waxosuit_lattice_refused_total{plane=\"command\",reason=\"replayed\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_binding_changes_inventory_answers_and_events_change_nothing_and_secrets_stay_sealed()
 {
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
    let nats = net.attacker().await;
    let mut bindings_spy = nats
        .subscribe(b.lattice.subjects().bindings())
        .await
        .unwrap();
    let mut events_spy = nats.subscribe(b.lattice.subjects().events()).await.unwrap();
    synced_with_server(&nats).await;

    let secret_url = "redis://:hunter2@db.internal:6379/0";
    b.lattice
        .put_binding(
            &key,
            PING,
            "",
            BTreeMap::from([
                ("URL".into(), secret_url.into()),
                ("MODE".into(), "fast".into()),
            ]),
        )
        .await
        .unwrap();
    eventually("C binds the actor with the real values", || async {
        pinger
            .values
            .lock()
            .unwrap()
            .get(&key)
            .is_some_and(|v| v.get("URL").map(String::as_str) == Some(secret_url))
    })
    .await;
    assert_eq!(
        b.host.call_actor(&key, "ping", b"").await.unwrap(),
        b"pong from C"
    );

    // What went over the bus: the binding broadcast, redacted and signed.
    let broadcast = next(&mut bindings_spy).await;
    let text = String::from_utf8_lossy(&broadcast.payload).to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains(REDACTED), "{text}");
    assert!(
        broadcast
            .headers
            .as_ref()
            .unwrap()
            .get(AUTH_HEADER)
            .is_some()
    );
    // Inventory, to the trusted admin: redacted, and it says so.
    let client = net.client().await;
    let listed = client.bindings().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].redacted, vec!["URL".to_string()]);
    assert!(!listed[0].values["URL"].contains("hunter2"));
    assert_eq!(listed[0].values["MODE"], "fast");
    assert_eq!(listed[0].owner, b.lattice.host_id());
    // To anyone else: no answer at all.
    assert!(
        !answered(
            &nats,
            b.lattice
                .subjects()
                .inventory(protocol::InventoryKind::Bindings),
            None,
            Vec::new()
        )
        .await
    );

    // Forged binding changes: unsigned, signed by a stranger, and signed by
    // a trusted host that claims another host's binding.
    let forged = BindingChange::Put(BindingEntry {
        actor: key.clone(),
        capid: PING.into(),
        binding: "default".into(),
        values: BTreeMap::from([("URL".into(), "redis://attacker:6379".into())]),
        redacted: vec![],
        owner: b.lattice.host_id().to_string(),
        rev: "forged".into(),
    });
    let body = serde_json::to_vec(&forged).unwrap();
    let subject = b.lattice.subjects().bindings();
    nats.publish(subject.clone(), body.clone().into())
        .await
        .unwrap();
    let stranger = KeyPair::generate(KeyKind::Server);
    let h = sign_message(&stranger, &subject, None, None, &body).unwrap();
    nats.publish_with_headers(subject.clone(), h, body.clone().into())
        .await
        .unwrap();
    let h = sign_message(&net.identity(2), &subject, None, None, &body).unwrap();
    nats.publish_with_headers(subject.clone(), h, body.clone().into())
        .await
        .unwrap();
    // And a removal, unsigned.
    let remove = serde_json::to_vec(&BindingChange::Remove {
        actor: key.clone(),
        capid: PING.into(),
        binding: "default".into(),
    })
    .unwrap();
    nats.publish(subject.clone(), remove.into()).await.unwrap();
    eventually("the forged changes are refused", || async {
        b.lattice.refusals("binding", "unsigned") >= 2
            && b.lattice.refusals("binding", "untrusted") >= 1
            && b.lattice.refusals("binding", "mismatch") >= 1
    })
    .await;
    assert_eq!(
        pinger.values.lock().unwrap()[&key]["URL"],
        secret_url,
        "the provider was repointed"
    );
    assert!(pinger.bound.lock().unwrap().contains(&key));
    assert_eq!(client.bindings().await.unwrap(), listed);

    // Forged inventory answers and events, then a new host joins and syncs.
    let mut inventory = nats
        .subscribe(format!("{}.inventory.*", b.lattice.subjects().prefix()))
        .await
        .unwrap();
    let fake_actor = KeyPair::generate(KeyKind::Module).public_key();
    let (fake_module, fake_key) = net.echo_actor(&[PING]);
    let _ = fake_module;
    let liar = nats.clone();
    let fake = fake_actor.clone();
    tokio::spawn(async move {
        while let Some(msg) = inventory.next().await {
            let Some(reply) = msg.reply else { continue };
            let body = if msg.subject.ends_with("bindings") {
                serde_json::to_vec(&[BindingEntry {
                    actor: fake.clone(),
                    capid: PING.into(),
                    binding: "default".into(),
                    values: BTreeMap::from([("URL".into(), "redis://attacker".into())]),
                    redacted: vec![],
                    owner: "NATTACKER".into(),
                    rev: "x".into(),
                }])
                .unwrap()
            } else {
                serde_json::to_vec(&[ActorEntry {
                    host: "NATTACKER".into(),
                    key: fake.clone(),
                    name: "fake".into(),
                    claims: "eyJ.fake.claims".into(),
                }])
                .unwrap()
            };
            let _ = liar.publish(reply, body.into()).await;
        }
    });
    let started = CloudEvent::new(
        b.lattice.host_id(),
        "actor_started",
        fake_key.clone(),
        serde_json::json!({ "actor": fake_key, "claims": "eyJ.fake", "host": b.lattice.host_id() }),
    );
    nats.publish(
        b.lattice.subjects().events(),
        serde_json::to_vec(&started).unwrap().into(),
    )
    .await
    .unwrap();
    let stopped = CloudEvent::new(
        b.lattice.host_id(),
        "host_stopped",
        b.lattice.host_id(),
        serde_json::json!({}),
    );
    // Signed by C, a trusted host, but claiming to come from B.
    let body = serde_json::to_vec(&stopped).unwrap();
    let h = sign_message(
        &net.identity(2),
        &b.lattice.subjects().events(),
        None,
        None,
        &body,
    )
    .unwrap();
    nats.publish_with_headers(b.lattice.subjects().events(), h, body.into())
        .await
        .unwrap();
    let a = net.node(0, &[]).await;
    eventually("the forged events are refused", || async {
        c.lattice.refusals("event", "unsigned") >= 1 && b.lattice.refusals("event", "mismatch") >= 1
    })
    .await;
    assert!(
        !a.lattice.knows_actor(&fake_actor),
        "a forged inventory answer was believed"
    );
    assert!(
        !c.lattice.knows_actor(&fake_key),
        "a forged event was believed"
    );
    let listed_again = client.bindings().await.unwrap();
    assert_eq!(listed_again.len(), 1, "{listed_again:?}");
    assert_eq!(listed_again[0].actor, key);

    // Nothing on the bus ever carried the secret in the clear.
    let mut seen = Vec::new();
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_millis(200), events_spy.next()).await
    {
        seen.push(String::from_utf8_lossy(&msg.payload).to_string());
    }
    assert!(!seen.is_empty());
    assert!(seen.iter().all(|e| !e.contains("hunter2")), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_are_never_accepted() {
    let net = Net::new(3);
    let a = net
        .node_with(0, &[], |c| c.timeout = Duration::from_millis(1500))
        .await;
    // B takes 150 ms per call, so the forger always answers first.
    let b = net
        .join(
            1,
            net.builder()
                .middleware(Delay(Duration::from_millis(150)))
                .build()
                .unwrap(),
        )
        .await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let subject = call_subject(&b, &key);
    let shared = b.lattice.subjects().actor(&key);
    let nats = net.attacker().await;
    let stranger = KeyPair::generate(KeyKind::Server);

    // Racing forged answers to every call's inbox: unsigned, a made-up
    // session tag in B's name, and a real signature by a stranger in B's name.
    let mut spy = nats.subscribe(subject.clone()).await.unwrap();
    synced_with_server(&nats).await;
    let racer = nats.clone();
    let b_id = b.lattice.host_id().to_string();
    let forging = tokio::spawn(async move {
        while let Some(msg) = spy.next().await {
            let Some(reply) = msg.reply else { continue };
            let Ok(inv) = protocol::decode::<WireInvocation>("invocation", &msg.payload) else {
                continue;
            };
            let mut forged = Response::success(&inv.id, b"FORGED".to_vec());
            let _ = racer
                .publish(reply.clone(), protocol::encode(&forged).unwrap().into())
                .await;
            forged.host = b_id.clone();
            forged.tag = Some(vec![7; 32]);
            let _ = racer
                .publish(reply.clone(), protocol::encode(&forged).unwrap().into())
                .await;
            forged.tag = None;
            forged.jwt = antiforgery::sign_response(&stranger, &forged, &reply).unwrap();
            let _ = racer
                .publish(reply, protocol::encode(&forged).unwrap().into())
                .await;
        }
    });
    for i in 0..10u8 {
        let reply = a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
        assert_eq!(reply, vec![i], "a forged answer was accepted");
    }
    // Each call ignored three forgeries before its real answer.
    assert_eq!(a.lattice.refusals("response", "unsigned"), 10);
    assert_eq!(a.lattice.refusals("response", "mismatch"), 10);
    // A tag on an answer to a signed call, or the wrong tag on a tagged one.
    assert_eq!(a.lattice.refusals("response", "bad_signature"), 10);
    forging.abort();

    // Joining the actor's queue group and answering every discovery
    // question with a made-up host: calls go to B's own subject, and a
    // discovery answer counts only with a token signed by a trusted host.
    let mut group = nats
        .queue_subscribe(shared.clone(), shared.clone())
        .await
        .unwrap();
    synced_with_server(&nats).await;
    let answering = nats.clone();
    let liar = KeyPair::generate(KeyKind::Server);
    let hijack = tokio::spawn(async move {
        while let Some(msg) = group.next().await {
            let Some(reply) = msg.reply else { continue };
            let here = protocol::Here {
                v: PROTOCOL_VERSION,
                host: liar.public_key(),
                token: "e30.e30.AAAA".into(),
            };
            let _ = answering
                .publish(reply, protocol::encode(&here).unwrap().into())
                .await;
        }
    });
    for i in 0..10u8 {
        let reply = a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
        assert_eq!(reply, vec![i], "a forged answer was accepted");
    }
    // A host that has never heard of B asks who serves the actor: the
    // attacker's queue member may answer first, but only B's answer counts.
    let c = net.node(2, &[]).await;
    for i in 0..4u8 {
        let reply = c.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
        assert_eq!(reply, vec![i]);
    }
    hijack.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_invocation_runs_once_on_one_replica_and_never_on_another() {
    let net = Net::new(3);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let c = net.node(2, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    c.host.add_actor(&module, "echo", None).await.unwrap();
    let (to_b, to_c) = (call_subject(&b, &key), call_subject(&c, &key));
    let nats = net.attacker().await;
    let mut spy_b = nats.subscribe(to_b.clone()).await.unwrap();
    let mut spy_c = nats.subscribe(to_c.clone()).await.unwrap();
    synced_with_server(&nats).await;
    // Calls rotate over B and C; the first to each is signed, later ones
    // tagged: capture one of each kind sent to B.
    for i in 0..4u8 {
        a.lattice.call_actor(&key, "echo", vec![i]).await.unwrap();
    }
    let signed = next(&mut spy_b).await;
    let tagged = next(&mut spy_b).await;
    let first: WireInvocation = protocol::decode("invocation", &signed.payload).unwrap();
    assert!(!first.encoded_claims.is_empty(), "first contact is signed");
    let later: WireInvocation = protocol::decode("invocation", &tagged.payload).unwrap();
    assert!(later.session.is_some(), "later calls are tagged");
    while tokio::time::timeout(Duration::from_millis(200), spy_c.next())
        .await
        .is_ok()
    {}
    let (b_before, c_before) = (served(&b.host, "echo"), served(&c.host, "echo"));
    for captured in [&signed, &tagged] {
        for _ in 0..3 {
            // The same bytes, to the same host, on the same inbox.
            nats.publish_with_reply(
                to_b.clone(),
                captured.reply.clone().unwrap(),
                captured.payload.clone(),
            )
            .await
            .unwrap();
            // And to the other replica.
            nats.publish_with_reply(
                to_c.clone(),
                captured.reply.clone().unwrap(),
                captured.payload.clone(),
            )
            .await
            .unwrap();
        }
    }
    // To an inbox of the attacker's, to read the answer: refused.
    let r = send_raw(&nats, to_b.clone(), |_| signed.payload.to_vec(), QUIET).await;
    let e = r.expect("refused").error.expect("refused");
    assert!(e.message.contains("inbox"), "{}", e.message);
    eventually("B refuses the six replays", || async {
        b.lattice.refusals("invocation", "replayed") >= 6
    })
    .await;
    eventually("C refuses what was meant for B", || async {
        c.lattice.refusals("invocation", "mismatch")
            + c.lattice.refusals("invocation", "bad_signature")
            >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        served(&b.host, "echo"),
        b_before,
        "a replayed call ran on B"
    );
    assert_eq!(
        served(&c.host, "echo"),
        c_before,
        "a replayed call ran on C"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_on_the_events_subject_is_held_to_a_bounded_backlog() {
    let net = Net::new(1);
    let a = net.node(0, &[]).await;
    let client = net.client().await;
    // A watcher that is not reading yet (a `lattice watch` piped into a
    // pager, say), and the host's own event follower.
    let mut events = client.watch().await.unwrap();
    let nats = async_nats::connect(net.nats.url()).await.unwrap();

    // 400 unsigned events of 100 KiB: 40 MB against a 16 MiB backlog.
    let junk = Bytes::from(vec![b'x'; 100 * 1024]);
    let before = net.nats.messages_sent().unwrap();
    for _ in 0..400 {
        nats.publish(a.lattice.subjects().events(), junk.clone())
            .await
            .unwrap();
    }
    nats.flush().await.unwrap();
    // Until the server has sent them to the watcher and to the host (each
    // reads what reaches it into its backlog at once).
    let started = std::time::Instant::now();
    while net.nats.messages_sent().unwrap() < before + 800 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the flood never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut held = 0;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(300), events.next()).await
    {
        assert!(event.is_err(), "an unsigned event was believed");
        held += 1;
    }
    eprintln!("the watcher held {held} of 400 flooded events of 100 KiB");
    assert!(
        held <= 16 * 1024 / 100,
        "{held} held: the backlog is not bounded"
    );
    assert!(held >= 100, "{held} held: the backlog was not used");

    // The host and the watcher still work.
    assert_eq!(client.hosts().await.unwrap().len(), 1);
    let (module, _) = net.echo_actor(&[]);
    let reply = client
        .start_actor(a.lattice.host_id(), module)
        .await
        .unwrap();
    assert!(reply.ok, "{}", reply.message);
    let started = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            if let Ok(event) = event {
                return event;
            }
        }
        panic!("the event stream ended");
    })
    .await
    .expect("no event after the flood");
    assert_eq!(started.kind, "dev.waxosuit.actor_started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_go_only_to_the_lattices_own_inboxes() {
    let net = Net::new(2);
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let nats = net.attacker().await;
    let question = protocol::encode(&protocol::Discover {
        v: PROTOCOL_VERSION,
        discover: true,
    })
    .unwrap();
    // A subject of someone else's the asker wants B to publish to.
    let mut victim = nats.subscribe("victim.x").await.unwrap();
    let inbox = format!("{}.asker", b.lattice.subjects().inbox_prefix());
    let mut asker = nats.subscribe(inbox.clone()).await.unwrap();
    synced_with_server(&nats).await;
    let shared = b.lattice.subjects().actor(&key);
    for _ in 0..3 {
        nats.publish_with_reply(
            shared.clone(),
            "victim.x".to_string(),
            question.clone().into(),
        )
        .await
        .unwrap();
        // An unsigned call, which earlier got an unauthenticated refusal.
        nats.publish_with_reply(
            call_subject(&b, &key),
            "victim.x".to_string(),
            b"{}".to_vec().into(),
        )
        .await
        .unwrap();
    }
    assert!(silent(&mut victim, QUIET).await, "B published to victim.x");
    // The same question from a lattice inbox is answered, by B.
    nats.publish_with_reply(shared, inbox, question.into())
        .await
        .unwrap();
    let here = next(&mut asker).await;
    let here: protocol::Here = protocol::decode("discovery answer", &here.payload).unwrap();
    assert_eq!(here.host, b.lattice.host_id());
}

/// A restarted host knows none of its sessions and tells a tagged caller so
/// with a signed refusal, whose budget (per claimed sender) a forger spends
/// by sending calls in the caller's name. The caller then heard nothing,
/// and its calls failed until its own session rotated (half an hour). Now a
/// tagged call that goes unanswered makes the next one signed, whose answer
/// renews the pair: one call fails, the next succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forger_spending_the_refusal_budget_cannot_cut_a_caller_off_a_restarted_host() {
    use waxosuit_lattice::protocol::{SessionProof, SessionTag, WireEntity};
    let net = Net::new(2);
    let a = net
        .node_with(0, &[], |c| c.timeout = Duration::from_secs(1))
        .await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    for msg in [b"one", b"two"] {
        assert_eq!(
            a.lattice
                .call_actor(&key, "echo", msg.to_vec())
                .await
                .unwrap(),
            msg
        );
    }
    // B restarts with the same key: its sessions are gone.
    b.lattice.leave().await;
    drop(b);
    let b = net.node(1, &[]).await;
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let subject = call_subject(&b, &key);

    // Forged tagged calls in A's name, for a session B does not know, well
    // past the budget of signed refusals, for as long as the test runs.
    let nats = net.attacker().await;
    let (a_id, b_id, target) = (
        a.lattice.host_id().to_string(),
        b.lattice.host_id().to_string(),
        key.clone(),
    );
    let flood = tokio::spawn(async move {
        let inbox = nats.new_inbox();
        // One a millisecond: the bucket (64 a second) refills a token in
        // about 16 ms, so it never holds one when A's call comes.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for seq in 0.. {
            tick.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let forged = WireInvocation {
                v: PROTOCOL_VERSION,
                id: nuid::next().to_string(),
                origin: WireEntity::Host(a_id.clone()),
                target: WireEntity::Actor(target.clone()),
                operation: "echo".into(),
                msg: b"x".to_vec(),
                encoded_claims: String::new(),
                host_id: a_id.clone(),
                chunked: None,
                session: Some(SessionProof {
                    sid: "forged".into(),
                    iat: now,
                    seq,
                    tags: vec![SessionTag {
                        to: b_id.clone(),
                        to_sid: "unknown".into(),
                        mac: vec![0; 32],
                    }],
                }),
                session_token: None,
            };
            let _ = nats
                .publish_with_reply(
                    subject.clone(),
                    inbox.clone(),
                    protocol::encode(&forged).unwrap().into(),
                )
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut outcomes = Vec::new();
    for msg in [&b"three"[..], b"four", b"five"] {
        let result = a.lattice.call_actor(&key, "echo", msg.to_vec()).await;
        outcomes.push(result.is_ok());
    }
    flood.abort();
    assert!(
        outcomes[1] && outcomes[2],
        "calls after the first unanswered one must succeed: {outcomes:?}"
    );
}

/// On a raw NATS connection (async-nats publishes no status): answers every
/// message on `subject` (discovery questions) and `subject.*` (calls to one
/// host) that has a reply subject with a `503` status, as the server does
/// when nobody listens, and as anyone on the server can.
async fn forge_no_responders(url: &str, subject: &str) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let addr = url.trim_start_matches("nats://").to_string();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    read.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    write
        .write_all(
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}}\r\n\
                 SUB {subject} 1\r\nSUB {subject}.* 2\r\nPING\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        // Reply inboxes are numbered in order: once one is seen, the next
        // few are sent a 503 every millisecond, before their question is.
        let mut predicted: Option<(String, u64)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        loop {
            line.clear();
            tokio::select! {
                read_len = read.read_line(&mut line) => {
                    if read_len.unwrap_or(0) == 0 {
                        return;
                    }
                    let words: Vec<&str> = line.split_whitespace().collect();
                    match words.first().copied() {
                        Some("PING") => write.write_all(b"PONG\r\n").await.unwrap(),
                        Some("MSG") | Some("HMSG") => {
                            // MSG subject sid [reply] bytes; HMSG … [reply] hdr total.
                            let size: usize = words.last().unwrap().parse().unwrap();
                            let mut body = vec![0; size + 2];
                            read.read_exact(&mut body).await.unwrap();
                            let fields = if words[0] == "MSG" { 5 } else { 6 };
                            if words.len() == fields {
                                let reply = words[3].to_string();
                                if let Some((prefix, n)) = reply.rsplit_once('.')
                                    && let Ok(n) = n.parse::<u64>()
                                {
                                    predicted = Some((prefix.to_string(), n + 1));
                                }
                                write
                                    .write_all(
                                        format!("HPUB {reply} 16 16\r\nNATS/1.0 503\r\n\r\n\r\n").as_bytes(),
                                    )
                                    .await
                                    .unwrap();
                            }
                        }
                        _ => {}
                    }
                }
                _ = tick.tick() => {
                    if let Some((prefix, next)) = &predicted {
                        for n in *next..*next + 4 {
                            write
                                .write_all(
                                    format!("HPUB {prefix}.{n} 16 16\r\nNATS/1.0 503\r\n\r\n\r\n").as_bytes(),
                                )
                                .await
                                .unwrap();
                        }
                    }
                }
            }
        }
    });
    // The subscription is in place once the server answers the PING.
    tokio::time::sleep(Duration::from_millis(200)).await;
    task
}

/// A forged "no responders" on a call's inbox takes its host out of the
/// caller's rotation (the call itself waits for the real answer), so the
/// next call discovers, and a forged one arrives before the host's answer
/// there too: the round's inbox stays open for that answer, so the forgery
/// cannot make a served actor look unserved (before, the round ended at the
/// first 503, and every call after the first failed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_no_responders_do_not_hide_a_served_actor() {
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let shared = b.lattice.subjects().actor(&key);
    let forger = forge_no_responders(&net.nats.url(), &shared).await;
    let mut outcomes = Vec::new();
    for i in 0..5u8 {
        outcomes.push(a.lattice.call_actor(&key, "echo", vec![i]).await.is_ok());
    }
    forger.abort();
    assert!(outcomes.iter().all(|ok| *ok), "{outcomes:?}");
}
