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
//! and takes a chunk only if it hashes to the signed value: a forged
//! reference, a subject of someone else's choosing, an oversized transfer
//! or a forger answering first costs it nothing but a refusal.
//!
//! The sender serves its chunks until a fixed deadline (not until each was
//! asked for once, which anyone reading the subject could do first), so a
//! payload stays in memory for a bounded time whoever asks.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;
use parking_lot::Mutex;

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

/// Offers `data` on a fresh subject of `owner`'s for `ttl`. The
/// subscription is made before this returns, so a receiver told about the
/// subject finds it served.
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
        hashes: (0..chunks as usize)
            .map(|i| sha256_hex(&data[i * chunk..((i + 1) * chunk).min(len)]))
            .collect(),
    };
    let data = Bytes::from(data);
    let client = client.clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + ttl;
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
            let Some(reply) = msg.reply else { continue };
            let Some(i) = std::str::from_utf8(&msg.payload)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|i| *i < chunks as usize)
            else {
                continue;
            };
            let start = i * chunk;
            let body = data.slice(start..(start + chunk).min(len));
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
    let hex = |h: &String| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
    if reference.hashes.len() as u64 != expected || !reference.hashes.iter().all(hex) {
        return Err(format!(
            "it announces {} chunk hashes for {expected} chunks, or hashes that are not SHA-256",
            reference.hashes.len()
        ));
    }
    Ok(())
}

/// Fetches a payload [`check`]ed before. A reply is taken only if it hashes
/// to the signed value of the chunk asked for (anything else, a forger's,
/// is ignored and the wait goes on), so at most `reference.len` bytes are
/// ever kept, all of them the sender's. A no-responders status, which
/// anyone can forge, does not end the wait either.
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
