//! Offers of chunks under attack: a host answers a request for a chunk of
//! its payload only from the host the payload is for, to the inbox that
//! host signed for, and sends each chunk once.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_lattice::antiforgery::{self, Binding};
use waxosuit_lattice::auth;
use waxosuit_lattice::protocol::{self, ChunkRef, PROTOCOL_VERSION, WireEntity, WireInvocation};

const QUIET: Duration = Duration::from_millis(800);

/// Sends `body` on `subject` naming `reply`, with `headers` if any.
async fn ask(
    nats: &async_nats::Client,
    subject: &str,
    reply: &str,
    headers: Option<async_nats::HeaderMap>,
    body: &str,
) {
    let body = bytes::Bytes::from(body.to_string());
    match headers {
        Some(h) => nats
            .publish_with_reply_and_headers(subject.to_string(), reply.to_string(), h, body)
            .await
            .unwrap(),
        None => nats
            .publish_with_reply(subject.to_string(), reply.to_string(), body)
            .await
            .unwrap(),
    }
}

/// A chunk request signed by `key` for `reply`.
fn signed(key: &KeyPair, subject: &str, reply: &str, body: &str) -> async_nats::HeaderMap {
    auth::sign_message(key, subject, Some(reply), None, body.as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_go_once_and_only_to_the_host_they_are_for() {
    let net = Net::new(3);
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let subject = call_subject(&b, &key);
    // The test plays host A (a trusted host) on a plain connection, so it
    // decides when the chunks of B's answer are asked for, and by whom.
    let nats = net.attacker().await;
    let a_key = net.identity(0);
    let a_id = a_key.public_key();
    let b_id = b.lattice.host_id().to_string();
    let max_payload = nats.server_info().max_payload;
    let payload: Vec<u8> = (0..max_payload + max_payload / 2)
        .map(|i| (i % 251) as u8)
        .collect();

    // A's side of the call: its payload offered in chunks of 512 KiB, served
    // to whoever asks, each request's signer and inbox noted.
    let offered = format!("{}call", b.lattice.subjects().chunks_of(&a_id));
    let chunk = 512 * 1024;
    let hashes: Vec<String> = payload.chunks(chunk).map(protocol::sha256_hex).collect();
    let mut requests = nats.subscribe(offered.clone()).await.unwrap();
    let server = {
        let (nats, payload) = (nats.clone(), payload.clone());
        tokio::spawn(async move {
            let mut asked = Vec::new();
            while let Some(msg) = requests.next().await {
                let jwt = msg
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(auth::AUTH_HEADER))
                    .map(|v| v.as_str().to_string());
                let i: usize = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
                let reply = msg.reply.clone().unwrap();
                asked.push((i, jwt, reply.to_string()));
                let end = ((i + 1) * chunk).min(payload.len());
                nats.publish(reply, payload[i * chunk..end].to_vec().into())
                    .await
                    .unwrap();
                if end == payload.len() {
                    return asked;
                }
            }
            asked
        })
    };
    synced_with_server(&nats).await;
    let reference = ChunkRef {
        subject: offered.clone(),
        len: payload.len() as u64,
        chunks: hashes.len() as u32,
        chunk: chunk as u32,
        hashes,
    };
    let (k, s, signer) = (key.clone(), subject.clone(), net.identity(0));
    let response = send_raw(
        &nats,
        subject.clone(),
        move |reply| {
            let mut inv = WireInvocation {
                v: PROTOCOL_VERSION,
                id: nuid::next().to_string(),
                origin: WireEntity::Host(signer.public_key()),
                target: WireEntity::Actor(k),
                operation: "echo".into(),
                msg: vec![],
                encoded_claims: String::new(),
                host_id: signer.public_key(),
                chunked: Some(reference),
                session: None,
                session_token: None,
            };
            inv.encoded_claims =
                antiforgery::sign(&signer, &inv, Binding { subject: &s, reply }).unwrap();
            protocol::encode(&inv).unwrap()
        },
        Duration::from_secs(10),
    )
    .await
    .expect("B answers the chunked call");
    // B asked for A's chunks itself, each request signed by B for the inbox
    // it named.
    let asked = server.await.unwrap();
    assert_eq!(asked.len(), 3, "{asked:?}");
    for (i, (index, jwt, reply)) in asked.iter().enumerate() {
        assert_eq!(*index, i);
        let claims = waxosuit_claims::Claims::<auth::MessageClaims>::decode_unverified(
            jwt.as_deref().expect("a signed chunk request"),
        )
        .unwrap();
        let signed_for = claims.metadata.as_ref().unwrap();
        assert_eq!(claims.issuer, b_id);
        assert_eq!(signed_for.subject, offered);
        assert_eq!(signed_for.reply.as_ref(), Some(reply));
    }

    // B's answer is as large: offered in chunks, for A alone.
    assert!(response.error.is_none(), "{:?}", response.error);
    let answer = response.chunked.expect("a chunked answer");
    let theirs = answer.subject.clone();
    assert!(theirs.starts_with(&b.lattice.subjects().chunks_of(&b_id)));
    assert_eq!(answer.chunks, 2);

    // Anyone else asking, or asking to have a chunk sent somewhere A did
    // not sign for, gets nothing: B is no reflector.
    let victim = nats.new_inbox();
    let mut victim_sub = nats.subscribe(victim.clone()).await.unwrap();
    let stranger = KeyPair::generate(KeyKind::Server);
    let c_key = net.identity(2);
    let elsewhere = nats.new_inbox();
    ask(&nats, &theirs, &victim, None, "0").await;
    for key in [&stranger, &c_key] {
        let headers = signed(key, &theirs, &victim, "0");
        ask(&nats, &theirs, &victim, Some(headers), "0").await;
    }
    let headers = signed(&a_key, &theirs, &elsewhere, "0");
    ask(&nats, &theirs, &victim, Some(headers), "0").await;
    let oversized = "0".repeat(5000);
    for body in ["00000000000", "99", oversized.as_str()] {
        let headers = signed(&a_key, &theirs, &victim, body);
        ask(&nats, &theirs, &victim, Some(headers), body).await;
    }
    assert!(
        silent(&mut victim_sub, QUIET).await,
        "B sent a chunk to an inbox A did not sign for"
    );

    // A's own requests are answered, each chunk once: a captured request
    // published again, or a new one for a chunk already sent, gets nothing.
    let mine = nats.new_inbox();
    let mut mine_sub = nats.subscribe(mine.clone()).await.unwrap();
    let first = signed(&a_key, &theirs, &mine, "0");
    ask(&nats, &theirs, &mine, Some(first.clone()), "0").await;
    let mut got = next(&mut mine_sub).await.payload.to_vec();
    assert_eq!(protocol::sha256_hex(&got), answer.hashes[0]);
    ask(&nats, &theirs, &mine, Some(first), "0").await;
    ask(
        &nats,
        &theirs,
        &mine,
        Some(signed(&a_key, &theirs, &mine, "0")),
        "0",
    )
    .await;
    assert!(silent(&mut mine_sub, QUIET).await, "chunk 0 was sent twice");
    ask(
        &nats,
        &theirs,
        &mine,
        Some(signed(&a_key, &theirs, &mine, "1")),
        "1",
    )
    .await;
    got.extend_from_slice(&next(&mut mine_sub).await.payload);
    assert_eq!(got, payload, "the echo, reassembled");

    for (reason, count) in [
        ("unsigned", 1),
        ("untrusted", 2),
        ("mismatch", 1),
        ("malformed", 3),
        ("replayed", 2),
    ] {
        assert_eq!(b.lattice.refusals("chunk", reason), count, "{reason}");
    }
    // Every chunk was sent: the offer ends at once (not at its deadline,
    // 20 s away), and its subject is unserved.
    let mut unserved = false;
    for _ in 0..10 {
        let asked = nats.request(theirs.clone(), "1".into());
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(200), asked).await
            && e.kind() == async_nats::client::RequestErrorKind::NoResponders
        {
            unserved = true;
            break;
        }
    }
    assert!(
        unserved,
        "the offer is still served once every chunk was sent"
    );
}
