//! Chunked payloads under attack, in a test binary of its own: it measures
//! the process's memory, which tests running beside it would disturb.

mod common;

use std::time::Duration;

use common::*;
use waxosuit_lattice::antiforgery::{self, Binding};
use waxosuit_lattice::protocol::{
    self, ChunkRef, ErrorKind, PROTOCOL_VERSION, WireEntity, WireInvocation,
};

const QUIET: Duration = Duration::from_millis(800);

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_chunk_is_fetched_and_no_session_learned_before_a_call_verifies() {
    let net = Net::new(3);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let subject = call_subject(&b, &key);
    let nats = net.attacker().await;
    let a_id = a.lattice.host_id().to_string();

    // Chunk subjects the attacker would like B to pull 300 MB from: its
    // own, and one made to look like A's.
    let mut mine = nats.subscribe("attacker.chunks").await.unwrap();
    let under_a = format!("{}x", b.lattice.subjects().chunks_of(&a_id));
    let mut posing = nats.subscribe(under_a.clone()).await.unwrap();
    synced_with_server(&nats).await;
    let huge = |subject: &str| ChunkRef {
        subject: subject.to_string(),
        len: 300 << 20,
        chunks: 300,
        chunk: 1 << 20,
        hashes: vec!["0".repeat(64); 300],
    };
    let rss_before = rss_bytes();
    for chunk_subject in ["attacker.chunks", under_a.as_str()] {
        // Claiming to be A, with no valid signature.
        let reference = huge(chunk_subject);
        let (id, s) = (a_id.clone(), subject.clone());
        let k = key.clone();
        let r = send_raw(
            &nats,
            subject.clone(),
            move |_| {
                let inv = WireInvocation {
                    v: PROTOCOL_VERSION,
                    id: "big-1".into(),
                    origin: WireEntity::Host(id.clone()),
                    target: WireEntity::Actor(k),
                    operation: "echo".into(),
                    msg: vec![],
                    encoded_claims: "e30.e30.AAAA".into(),
                    host_id: id,
                    chunked: Some(reference),
                    session: None,
                    session_token: None,
                };
                let _ = s;
                protocol::encode(&inv).unwrap()
            },
            QUIET,
        )
        .await
        .expect("refused");
        assert_eq!(r.error.unwrap().kind, ErrorKind::Forged);
    }
    // Signed by A for real, but offering chunks from a subject that is not
    // A's own, or more than the actor accepts: refused before any fetch.
    for reference in [
        huge("attacker.chunks"),
        ChunkRef {
            subject: under_a.clone(),
            len: 300 << 20,
            chunks: 300,
            chunk: 1 << 20,
            hashes: vec!["0".repeat(64); 300],
        },
    ] {
        let a_key = net.identity(0);
        let (k, s) = (key.clone(), subject.clone());
        let r = send_raw(
            &nats,
            subject.clone(),
            move |reply| {
                let mut inv = WireInvocation {
                    v: PROTOCOL_VERSION,
                    id: nuid::next().to_string(),
                    origin: WireEntity::Host(a_key.public_key()),
                    target: WireEntity::Actor(k),
                    operation: "echo".into(),
                    msg: vec![],
                    encoded_claims: String::new(),
                    host_id: a_key.public_key(),
                    chunked: Some(reference),
                    session: None,
                    session_token: None,
                };
                inv.encoded_claims =
                    antiforgery::sign(&a_key, &inv, Binding { subject: &s, reply }).unwrap();
                protocol::encode(&inv).unwrap()
            },
            QUIET,
        )
        .await
        .expect("an answer");
        let e = r.error.expect("refused");
        assert!(
            e.message.contains("not its sender's own") || e.message.contains("over the limit"),
            "{}",
            e.message
        );
    }
    assert!(
        silent(&mut mine, QUIET).await,
        "B asked the attacker for a chunk"
    );
    assert!(silent(&mut posing, Duration::from_millis(100)).await);
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 64 << 20, "the process grew by {grown} bytes");

    // A session token is learned only from a call that verified: A's real
    // token, replayed by the attacker inside a forged call to C (which A
    // never called), is not.
    let c = net.node(2, &[]).await;
    let (other, other_key) = net.echo_actor(&[]);
    c.host.add_actor(&other, "other", None).await.unwrap();
    let mut spy = nats.subscribe(subject.clone()).await.unwrap();
    synced_with_server(&nats).await;
    let _ = a.lattice.call_actor(&key, "echo", b"hi".to_vec()).await;
    let first: WireInvocation =
        protocol::decode("invocation", &next(&mut spy).await.payload).unwrap();
    let token = first.session_token.expect("A's token");
    let id = a.lattice.host_id().to_string();
    let r = send_raw(
        &nats,
        call_subject(&c, &other_key),
        move |_| {
            protocol::encode(&WireInvocation {
                v: PROTOCOL_VERSION,
                id: "x".into(),
                origin: WireEntity::Host(id.clone()),
                target: WireEntity::Actor(other_key),
                operation: "echo".into(),
                msg: vec![],
                encoded_claims: "e30.e30.AAAA".into(),
                host_id: id,
                chunked: None,
                session: None,
                session_token: Some(token),
            })
            .unwrap()
        },
        QUIET,
    )
    .await;
    assert_eq!(r.expect("refused").error.unwrap().kind, ErrorKind::Forged);
    assert!(
        c.lattice.session_peers().is_empty(),
        "a token was learned from a forged call"
    );
}
