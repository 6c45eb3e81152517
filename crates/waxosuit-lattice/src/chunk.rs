//! Payloads larger than the server's `max_payload`.
//!
//! The sender keeps the bytes and answers requests for them on a fresh
//! subject, one chunk per request; the receiver pulls the chunks in order
//! and checks the SHA-256 of the whole. Pulling (rather than pushing chunks
//! at the receiver) needs no JetStream, keeps at most one chunk in flight
//! per transfer, and lets the receiver's speed set the pace.

use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures_util::StreamExt;

use crate::LatticeError;
use crate::client::request;
use crate::protocol::{ChunkRef, Subjects, sha256_hex};

/// Room left in each message for headers and the reply subject.
const HEADROOM: usize = 8 * 1024;

/// The largest payload that travels inline, for a server's `max_payload`.
pub(crate) fn inline_limit(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADROOM).max(1024)
}

/// Offers `data` on a fresh subject until every chunk has been fetched or
/// `ttl` passes without a request. The subscription is made before this
/// returns, so a receiver told about the subject finds it served.
pub(crate) async fn offer(
    client: &Client,
    subjects: &Subjects,
    data: Vec<u8>,
    max_payload: usize,
    ttl: Duration,
) -> Result<ChunkRef, LatticeError> {
    let chunk = inline_limit(max_payload);
    let len = data.len();
    let chunks = len.div_ceil(chunk).max(1);
    let chunks = u32::try_from(chunks).map_err(|_| LatticeError::Transport {
        operation: "chunked send",
        reason: format!("a payload of {len} bytes is too large"),
    })?;
    let subject = subjects.chunks();
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

/// Fetches an offered payload and checks its length and hash.
pub(crate) async fn fetch(
    client: &Client,
    reference: &ChunkRef,
    timeout: Duration,
) -> Result<Vec<u8>, LatticeError> {
    let len = usize::try_from(reference.len).map_err(|_| LatticeError::Malformed {
        what: "chunk reference",
        reason: "length does not fit in memory".to_string(),
    })?;
    let mut out = Vec::with_capacity(len.min(256 * 1024 * 1024));
    for i in 0..reference.chunks {
        let reply = request(
            client,
            reference.subject.clone(),
            Bytes::from(i.to_string()),
            timeout,
            || format!("chunk {i} of {} (offered by the sender)", reference.subject),
            "chunk fetch",
        )
        .await?;
        out.extend_from_slice(&reply.payload);
        if out.len() > len {
            break;
        }
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
