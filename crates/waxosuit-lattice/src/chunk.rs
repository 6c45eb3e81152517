//! Payloads larger than the server's `max_payload`.
//!
//! The sender keeps the bytes and answers requests for them on a fresh
//! subject under its own key (`{prefix}.chunks.{key}.{nuid}`), one chunk
//! per request; the receiver pulls the chunks in order and checks the
//! SHA-256 of the whole. Pulling (rather than pushing chunks at the
//! receiver) needs no JetStream, keeps at most one chunk in flight per
//! transfer, and lets the receiver's speed set the pace.
//!
//! A receiver fetches only what an authenticated message told it to, from
//! the sender's own chunk subjects, no more bytes than the target accepts,
//! and with every chunk exactly the announced size: a forged reference, a
//! subject of someone else's choosing or an oversized transfer costs it
//! nothing but a refusal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::LatticeError;
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

/// Offers `data` on a fresh subject of `owner`'s until every chunk has been
/// fetched or `ttl` passes without a request. The subscription is made
/// before this returns, so a receiver told about the subject finds it
/// served.
pub(crate) async fn offer(
    client: &Client,
    subjects: &Subjects,
    owner: &str,
    data: Vec<u8>,
    max_payload: usize,
    ttl: Duration,
) -> Result<ChunkRef, LatticeError> {
    let chunk = inline_limit(max_payload);
    let len = data.len();
    let too_large = || LatticeError::Transport {
        operation: "chunked send",
        reason: format!("a payload of {len} bytes is too large"),
    };
    let chunks = u32::try_from(len.div_ceil(chunk).max(1)).map_err(|_| too_large())?;
    let chunk_size = u32::try_from(chunk).map_err(|_| too_large())?;
    let subject = subjects.chunks(owner);
    let mut sub = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| LatticeError::Transport {
            operation: "chunked send",
            reason: e.to_string(),
        })?;
    let reference = ChunkRef {
        subject,
        len: len as u64,
        chunks,
        chunk: chunk_size,
        sha256: sha256_hex(&data),
    };
    let data = Bytes::from(data);
    let client = client.clone();
    tokio::spawn(async move {
        let mut served = vec![false; chunks as usize];
        let mut left = chunks as usize;
        while left > 0 {
            let Ok(Some(msg)) = tokio::time::timeout(ttl, sub.next()).await else {
                break;
            };
            let Some(reply) = msg.reply else { continue };
            let index = std::str::from_utf8(&msg.payload)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|i| *i < chunks as usize);
            let body = match index {
                Some(i) => {
                    if !served[i] {
                        served[i] = true;
                        left -= 1;
                    }
                    let start = i * chunk;
                    data.slice(start..(start + chunk).min(len))
                }
                None => Bytes::new(),
            };
            if client.publish(reply, body).await.is_err() {
                break;
            }
        }
        let _ = sub.unsubscribe().await;
    });
    Ok(reference)
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
    Ok(())
}

/// Fetches a payload [`check`]ed before and verifies its hash. Replies of
/// any other size than the chunk asked for are ignored (a forger's), so
/// at most `reference.len` bytes are ever kept.
pub(crate) async fn fetch(
    client: &Client,
    replies: &Replies,
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
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<Bytes, ()>>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let deliver = Arc::clone(&tx);
        let inbox = replies.open(move |msg| {
            let result = if is_no_responders(&msg) {
                Err(())
            } else if msg.payload.len() == want {
                Ok(msg.payload)
            } else {
                return Verdict::Ignore;
            };
            if let Some(tx) = deliver
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
            {
                let _ = tx.send(result);
            }
            Verdict::Done
        });
        client
            .publish_with_reply(
                reference.subject.clone(),
                inbox.subject.clone(),
                Bytes::from(i.to_string()),
            )
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "chunk fetch",
                reason: e.to_string(),
            })?;
        let target = || format!("chunk {i} of {} (offered by the sender)", reference.subject);
        let bytes = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(bytes))) => bytes,
            Ok(Ok(Err(()))) => return Err(LatticeError::NoResponders { target: target() }),
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
    if out.len() != len || sha256_hex(&out) != reference.sha256 {
        return Err(LatticeError::Malformed {
            what: "chunked payload",
            reason: format!(
                "reassembled {} of {len} bytes with a different SHA-256 than announced",
                out.len()
            ),
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
            sha256: String::new(),
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
        ] {
            let err = check(&r, &s, "NOWNER", 4096).unwrap_err();
            assert!(err.contains(what), "{r:?}: {err}");
        }
    }
}
