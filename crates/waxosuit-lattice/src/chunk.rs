//! Payloads larger than the server's `max_payload`.
//!
//! The sender keeps the bytes and answers requests for them on a fresh
//! subject under its own key (`{prefix}.chunks.{key}.{nuid}`), one chunk
//! per request; the receiver pulls the chunks in order and checks the
//! SHA-256 of each against the signed reference. Pulling (rather than
//! pushing chunks at the receiver) needs no JetStream, keeps at most one
//! chunk in flight per transfer, and lets the receiver's speed set the pace.
//!
//! Both directions are authenticated, like every lattice message:
//! * A receiver fetches only what an authenticated message told it to, from
//!   the sender's own chunk subjects, no more bytes than the target accepts,
//!   and takes a chunk only if it hashes to the signed value: a forged
//!   reference, a subject of someone else's choosing, an oversized transfer
//!   or a forger answering first costs it nothing but a refusal.
//! * A sender answers only requests signed (`Waxosuit-Auth`) by the one
//!   host the payload is for, each bound to the transfer's subject and to
//!   the inbox the chunk goes to, each once, and sends each chunk once.
//!   Unanswered, a request of a few bytes would make the sender publish up
//!   to `max_payload` bytes to any subject its author names (a reflector
//!   with an amplification of 10⁵ or more), and anyone who read a reference
//!   could have the payload sent again and again until the transfer ended.
//!
//! The offer ends when every chunk was sent or at a fixed deadline,
//! whichever comes first, so a payload stays in memory for a bounded time
//! whatever the receiver does.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Message};
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;
use waxosuit_claims::{KeyPair, Verifier};

use crate::LatticeError;
use crate::auth::{self, Reason, Refusal, ReplayGuard, Signers, TrustPolicy};
use crate::protocol::{ChunkRef, Subjects, sha256_hex};
use crate::replies::{Replies, Verdict, is_no_responders};

/// Room left in each message for headers and the reply subject.
const HEADROOM: usize = 8 * 1024;

/// The smallest chunk a receiver accepts: smaller ones would only make a
/// transfer cost more round trips.
const MIN_CHUNK: u32 = 1024;

/// The largest payload that travels inline, for a server's `max_payload`.
pub(crate) fn inline_limit(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADROOM).max(MIN_CHUNK as usize)
}

/// The longest chunk request body: a chunk index in decimal.
const MAX_REQUEST: usize = 10;

/// What is told of each refused chunk request (a host counts and logs it).
pub(crate) type OnRefused = Box<dyn Fn(&Refusal) + Send + Sync>;

/// One offer: where it is served, whose requests are answered, and for how
/// long.
pub(crate) struct Offer<'a> {
    pub(crate) client: &'a Client,
    pub(crate) subjects: &'a Subjects,
    /// The sender's key: the chunks are served on its chunk subjects.
    pub(crate) owner: &'a str,
    /// The one key whose signed requests are answered: the host the
    /// payload is for.
    pub(crate) receiver: &'a str,
    pub(crate) max_payload: usize,
    /// How long the chunks are served at most.
    pub(crate) ttl: Duration,
    pub(crate) on_refused: OnRefused,
}

/// Offers `data` to `offer.receiver` on a fresh subject of `offer.owner`'s.
/// The subscription is made before this returns, so a receiver told about
/// the subject finds it served.
pub(crate) async fn offer(offer: Offer<'_>, data: Vec<u8>) -> Result<ChunkRef, LatticeError> {
    let chunk = inline_limit(offer.max_payload);
    let len = data.len();
    let too_large = || LatticeError::Transport {
        operation: "chunked send",
        reason: format!("a payload of {len} bytes is too large"),
    };
    let chunks = u32::try_from(len.div_ceil(chunk).max(1)).map_err(|_| too_large())?;
    let chunk_size = u32::try_from(chunk).map_err(|_| too_large())?;
    let subject = offer.subjects.chunks(offer.owner);
    let sub =
        offer
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "chunked send",
                reason: e.to_string(),
            })?;
    // Whoever can publish here can send messages faster than requests are
    // checked: they wait in a small bounded queue, which large ones skip.
    let mut sub = crate::backlog::requests(sub);
    let reference = ChunkRef {
        subject,
        len: len as u64,
        chunks,
        chunk: chunk_size,
        hashes: (0..chunks as usize)
            .map(|i| sha256_hex(&data[i * chunk..((i + 1) * chunk).min(len)]))
            .collect(),
    };
    let data = Bytes::from(data);
    let client = offer.client.clone();
    let mut gate = Gate {
        receiver: offer.receiver.to_string(),
        verifier: Verifier::new(),
        // The receiver asks once per chunk, and a chunk already sent is
        // refused before this is consulted, so it never holds more than
        // `chunks`. The subject is new and signed into every request, so
        // nothing signed before the offer can match it: no start time to
        // refuse from (a receiver's clock behind this one's must not be
        // taken for a replay).
        replay: ReplayGuard::new(chunks as usize).since(0),
        sent: vec![false; chunks as usize],
    };
    let on_refused = offer.on_refused;
    let ttl = offer.ttl;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + ttl;
        let mut left = chunks as usize;
        while left > 0 {
            let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await else {
                break;
            };
            let (i, reply) = match gate.admit(&msg) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    on_refused(&refusal);
                    continue;
                }
            };
            let start = i * chunk;
            let body = data.slice(start..(start + chunk).min(len));
            if client.publish(reply, body).await.is_err() {
                break;
            }
            left -= 1;
        }
        // Dropping the subscriber unsubscribes.
        drop(sub);
    });
    Ok(reference)
}

/// Decides which chunk requests of one offer are answered.
struct Gate {
    receiver: String,
    verifier: Verifier,
    replay: ReplayGuard,
    /// Which chunks were sent: each is sent once.
    sent: Vec<bool>,
}

impl Gate {
    /// The chunk asked for and the inbox it goes to, if the request is the
    /// receiver's, for this offer and this inbox, not seen before, and for
    /// a chunk not sent yet. Cheapest checks first: nothing is decoded or
    /// verified for a request that could not be answered anyway.
    fn admit(&mut self, msg: &Message) -> Result<(usize, async_nats::Subject), Refusal> {
        if msg.length > crate::backlog::MAX_REQUEST_BYTES {
            return Err(Refusal::new(
                Reason::Malformed,
                format!(
                    "a chunk request of {} bytes (at most {} with its headers)",
                    msg.length,
                    crate::backlog::MAX_REQUEST_BYTES
                ),
            ));
        }
        let Some(reply) = msg.reply.clone() else {
            return Err(Refusal::new(
                Reason::Malformed,
                "a chunk request without a reply inbox",
            ));
        };
        let i = (msg.payload.len() <= MAX_REQUEST)
            .then(|| std::str::from_utf8(&msg.payload).ok())
            .flatten()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|i| *i < self.sent.len())
            .ok_or_else(|| {
                Refusal::new(
                    Reason::Malformed,
                    format!(
                        "a chunk request of {} bytes that names none of the {} chunks offered",
                        msg.payload.len(),
                        self.sent.len()
                    ),
                )
            })?;
        // Before the signature: a request for a chunk already sent is
        // refused (as `replayed`) whoever signed it.
        if self.sent[i] {
            return Err(Refusal::new(
                Reason::Replayed,
                format!("chunk {i} was sent already; each is sent once"),
            ));
        }
        // Only the receiver's key is accepted, so no trust list is read.
        auth::verify_message(
            &self.verifier,
            &TrustPolicy::default(),
            &self.replay,
            msg,
            Signers::Only(&self.receiver),
            None,
        )?;
        self.sent[i] = true;
        Ok((i, reply))
    }
}

/// Checks a reference before anything is fetched: from `owner`'s own chunk
/// subjects, at most `max_len` bytes, and a chunk count that matches the
/// announced sizes.
pub(crate) fn check(
    reference: &ChunkRef,
    subjects: &Subjects,
    owner: &str,
    max_len: usize,
) -> Result<(), String> {
    let own = subjects.chunks_of(owner);
    let rest = reference.subject.strip_prefix(&own).unwrap_or_default();
    if rest.is_empty() || rest.contains(['.', '*', '>', ' ']) {
        return Err(format!(
            "its chunks are offered on a subject that is not its sender's own (expected \
             {own}…)"
        ));
    }
    if reference.len > max_len as u64 {
        return Err(format!(
            "its payload of {} bytes is over the limit of {max_len} bytes here",
            reference.len
        ));
    }
    if reference.chunk < MIN_CHUNK {
        return Err(format!(
            "its chunks of {} bytes are smaller than the {MIN_CHUNK} bytes allowed",
            reference.chunk
        ));
    }
    let expected = reference.len.div_ceil(u64::from(reference.chunk)).max(1);
    if u64::from(reference.chunks) != expected {
        return Err(format!(
            "it announces {} chunks for {} bytes in chunks of {} (expected {expected})",
            reference.chunks, reference.len, reference.chunk
        ));
    }
    let hex = |h: &String| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if reference.hashes.len() as u64 != expected || !reference.hashes.iter().all(hex) {
        return Err(format!(
            "it announces {} chunk hashes for {expected} chunks, or hashes that are not SHA-256",
            reference.hashes.len()
        ));
    }
    Ok(())
}

/// Fetches a payload [`check`]ed before, each request signed by
/// `identity` (the sender answers only the host the payload is for). A
/// reply is taken only if it hashes to the signed value of the chunk asked
/// for (anything else, a forger's, is ignored and the wait goes on), so at
/// most `reference.len` bytes are ever kept, all of them the sender's. A
/// no-responders status, which anyone can forge, does not end the wait
/// either.
pub(crate) async fn fetch(
    client: &Client,
    replies: &Replies,
    identity: &KeyPair,
    reference: &ChunkRef,
    timeout: Duration,
) -> Result<Vec<u8>, LatticeError> {
    let len = usize::try_from(reference.len).map_err(|_| LatticeError::Malformed {
        what: "chunk reference",
        reason: "length does not fit in memory".to_string(),
    })?;
    let chunk = reference.chunk as usize;
    let mut out = Vec::with_capacity(len);
    for i in 0..reference.chunks {
        let start = i as usize * chunk;
        let want = chunk.min(len.saturating_sub(start));
        let hash = reference
            .hashes
            .get(i as usize)
            .cloned()
            .unwrap_or_default();
        let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let deliver = Arc::clone(&tx);
        let inbox = replies.open(move |msg| {
            if is_no_responders(&msg)
                || msg.payload.len() != want
                || sha256_hex(&msg.payload) != hash
            {
                return Verdict::Ignore;
            }
            if let Some(tx) = deliver.lock().take() {
                let _ = tx.send(msg.payload);
            }
            Verdict::Done
        });
        let body = i.to_string();
        let headers = auth::sign_message(
            identity,
            &reference.subject,
            Some(&inbox.subject),
            None,
            body.as_bytes(),
        )?;
        client
            .publish_with_reply_and_headers(
                reference.subject.clone(),
                inbox.subject.clone(),
                headers,
                Bytes::from(body),
            )
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "chunk fetch",
                reason: e.to_string(),
            })?;
        let target = || format!("chunk {i} of {} (offered by the sender)", reference.subject);
        let bytes = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(bytes)) => bytes,
            _ => {
                return Err(LatticeError::Timeout {
                    target: target(),
                    timeout_ms: timeout.as_millis(),
                    ignored: None,
                });
            }
        };
        drop(inbox);
        out.extend_from_slice(&bytes);
    }
    if out.len() != len {
        return Err(LatticeError::Malformed {
            what: "chunked payload",
            reason: format!("reassembled {} of {len} bytes", out.len()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(subject: &str, len: u64, chunks: u32, chunk: u32) -> ChunkRef {
        ChunkRef {
            subject: subject.into(),
            len,
            chunks,
            chunk,
            hashes: vec!["A".repeat(64); chunks.min(1000) as usize],
        }
    }

    #[test]
    fn references_are_checked_before_any_fetch() {
        let s = Subjects::new("waxosuit").unwrap();
        let own = format!("waxosuit.chunks.NOWNER.{}", "x");
        check(&reference(&own, 3000, 3, 1024), &s, "NOWNER", 4096).unwrap();
        for (r, what) in [
            (reference("waxosuit.chunks.NOTHER.x", 10, 1, 1024), "own"),
            (reference("attacker.subject", 10, 1, 1024), "own"),
            (reference("waxosuit.chunks.NOWNER.x.y", 10, 1, 1024), "own"),
            (reference("waxosuit.chunks.NOWNER.>", 10, 1, 1024), "own"),
            (reference("waxosuit.chunks.NOWNER.", 10, 1, 1024), "own"),
            (reference(&own, 300 << 20, 300, 1 << 20), "limit"),
            (reference(&own, 3000, 3000, 1), "smaller"),
            (reference(&own, 3000, 1, 1024), "expected"),
            (reference(&own, 3000, u32::MAX, 1024), "expected"),
            (
                ChunkRef {
                    hashes: vec!["A".repeat(64); 2],
                    ..reference(&own, 3000, 3, 1024)
                },
                "hashes",
            ),
            (
                ChunkRef {
                    hashes: vec!["not hex".into(); 3],
                    ..reference(&own, 3000, 3, 1024)
                },
                "hashes",
            ),
        ] {
            let err = check(&r, &s, "NOWNER", 4096).unwrap_err();
            assert!(err.contains(what), "{r:?}: {err}");
        }
    }
}
