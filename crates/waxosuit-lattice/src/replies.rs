//! Replies to this connection's requests, accepted only when authentic.
//!
//! A reply inbox is visible to everyone who sees the request, so anyone on
//! the NATS server can publish to it. `async-nats`' own request/reply hands
//! the caller the *first* message on the inbox; a forger who answers first
//! would win. Here every request registers an acceptor for its inbox; each
//! message on it is offered to the acceptor, which checks it (signature,
//! session tag, length…) and either takes it, ending the wait, or drops it
//! and keeps waiting for the real answer until the caller's timeout.
//!
//! One wildcard subscription serves every inbox of the connection (as
//! `async-nats` does internally), so a request costs a map insert, not a
//! subscription round trip.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{Client, Message, StatusCode};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use crate::LatticeError;

/// What an acceptor makes of one message on its inbox.
pub(crate) enum Verdict {
    /// Not authentic or not for this request: ignore it, keep waiting.
    Ignore,
    /// Taken; keep the inbox open for more (scatter-gather).
    More,
    /// Taken; the request is answered.
    Done,
}

type Acceptor = Box<dyn FnMut(Message) -> Verdict + Send>;

/// Takes a server status (no responders) as a message too: the acceptor
/// decides what it means.
pub(crate) fn is_no_responders(msg: &Message) -> bool {
    msg.status == Some(StatusCode::NO_RESPONDERS)
}

struct Shared {
    pending: Mutex<HashMap<u64, Arc<Mutex<Acceptor>>>>,
}

/// The connection's reply inboxes.
pub(crate) struct Replies {
    prefix: String,
    next: AtomicU64,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An open inbox; closed when dropped.
pub(crate) struct Inbox {
    /// The subject to name as the reply inbox.
    pub(crate) subject: String,
    token: u64,
    shared: Arc<Shared>,
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.token);
    }
}

impl Replies {
    /// Subscribes to `{inbox_prefix}.{unique}.*` and dispatches from there.
    pub(crate) async fn start(client: &Client) -> Result<Replies, LatticeError> {
        let prefix = client.new_inbox();
        let mut sub =
            client
                .subscribe(format!("{prefix}.*"))
                .await
                .map_err(|e| LatticeError::Transport {
                    operation: "subscribe to replies",
                    reason: e.to_string(),
                })?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
        });
        let dispatch = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Some(token) = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok())
                else {
                    continue;
                };
                // Cloned out of the map so the check runs unlocked: requests
                // come and go while a message is being verified.
                let acceptor = dispatch.pending.lock().get(&token).cloned();
                let Some(acceptor) = acceptor else { continue };
                let verdict = (acceptor.lock())(msg);
                if let Verdict::Done = verdict {
                    dispatch.pending.lock().remove(&token);
                }
            }
        });
        Ok(Replies {
            prefix,
            next: AtomicU64::new(1),
            shared,
            task,
        })
    }

    /// Opens an inbox whose messages go to `accept` until it says `Done` or
    /// the inbox is dropped.
    pub(crate) fn open(&self, accept: impl FnMut(Message) -> Verdict + Send + 'static) -> Inbox {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.shared
            .pending
            .lock()
            .insert(token, Arc::new(Mutex::new(Box::new(accept))));
        Inbox {
            subject: format!("{}.{token}", self.prefix),
            token,
            shared: Arc::clone(&self.shared),
        }
    }
}
