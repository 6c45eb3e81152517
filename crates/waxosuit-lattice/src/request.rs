//! Signed requests and their verified answers: commands, inventory,
//! auctions and binding values, for hosts and tools alike.
//!
//! A request is signed for its subject and its reply inbox under an id of
//! its own; every answer must be signed by a key the requester accepts for
//! it and name that id (`re`), so an answer to another request, an answer
//! replayed, or one from a stranger is ignored. Scatter-gather requests
//! keep one answer per signer.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use parking_lot::Mutex;
use waxosuit_claims::{KeyPair, Verifier};

use crate::LatticeError;
use crate::auth::{self, ReplayGuard, Signers, TrustPolicy};
use crate::metrics::{LatticeMetrics, Plane};
use crate::replies::{Replies, Verdict, is_no_responders};

/// Whose answers a request accepts.
#[derive(Debug, Clone)]
pub(crate) enum Answerers {
    /// Trusted hosts.
    Hosts,
    /// Exactly this key.
    Only(String),
}

/// An answer that verified.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// Who signed it.
    pub(crate) signer: String,
    /// Its payload.
    pub(crate) payload: Bytes,
}

/// What a request needs: the connection, the signing key, and whom to believe.
pub(crate) struct Requester<'a> {
    pub(crate) client: &'a Client,
    pub(crate) replies: &'a Replies,
    pub(crate) identity: &'a KeyPair,
    pub(crate) verifier: &'a Verifier,
    pub(crate) trust: &'a TrustPolicy,
    pub(crate) metrics: &'a LatticeMetrics,
}

/// How a request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gather {
    /// The first verified answer ends it; none within the window is an error.
    One,
    /// Every verified answer within the window (one per signer).
    All,
}

impl Requester<'_> {
    /// Sends `body` to `subject`, signed, and collects verified answers.
    /// `target` names what was asked, for errors.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn request(
        &self,
        subject: String,
        body: Vec<u8>,
        answerers: Answerers,
        plane: Plane,
        window: Duration,
        gather: Gather,
        target: impl FnOnce() -> String,
    ) -> Result<Vec<Answer>, LatticeError> {
        self.request_with_id(subject, body, answerers, plane, window, gather, target)
            .await
            .map(|(_, answers)| answers)
    }

    /// [`Requester::request`], also returning the request's id (which the
    /// answers name, and which keys derived per request may bind).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn request_with_id(
        &self,
        subject: String,
        body: Vec<u8>,
        answerers: Answerers,
        plane: Plane,
        window: Duration,
        gather: Gather,
        target: impl FnOnce() -> String,
    ) -> Result<(String, Vec<Answer>), LatticeError> {
        let id = nuid::next().to_string();
        let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(tokio::sync::Notify::new());
        let nobody = Arc::new(tokio::sync::Notify::new());
        let inbox = {
            let answers = Arc::clone(&answers);
            let done = Arc::clone(&done);
            let nobody = Arc::clone(&nobody);
            let verifier = self.verifier.clone();
            let trust = self.trust.clone();
            let metrics = self.metrics.clone();
            let re = id.clone();
            // Each answer's own id is remembered for this request only, so
            // a copy of one answer counts once.
            let replay = ReplayGuard::new(4096);
            let mut seen = BTreeSet::new();
            self.replies.open(move |msg| {
                if is_no_responders(&msg) {
                    nobody.notify_one();
                    return Verdict::More;
                }
                let signers = match &answerers {
                    Answerers::Hosts => Signers::Hosts,
                    Answerers::Only(key) => Signers::Only(key),
                };
                match auth::verify_message(&verifier, &trust, &replay, &msg, signers, Some(&re)) {
                    Ok(ok) => {
                        if !seen.insert(ok.signer.clone()) {
                            return Verdict::Ignore;
                        }
                        answers.lock().push(Answer {
                            signer: ok.signer,
                            payload: msg.payload,
                        });
                        done.notify_one();
                        match gather {
                            Gather::One => Verdict::Done,
                            Gather::All => Verdict::More,
                        }
                    }
                    Err(refusal) => {
                        metrics.refused(plane, &refusal);
                        Verdict::Ignore
                    }
                }
            })
        };
        let headers = auth::sign_message_as(
            self.identity,
            &id,
            &subject,
            Some(&inbox.subject),
            None,
            &body,
        )?;
        self.client
            .publish_with_reply_and_headers(subject, inbox.subject.clone(), headers, body.into())
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "request",
                reason: e.to_string(),
            })?;
        let deadline = tokio::time::Instant::now() + window;
        let mut said_nobody = false;
        loop {
            tokio::select! {
                _ = done.notified(), if gather == Gather::One => break,
                // Anyone can forge a no-responders status: it names the
                // error if no verified answer comes, and ends nothing early.
                _ = nobody.notified(), if gather == Gather::One && !said_nobody => {
                    said_nobody = true;
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        drop(inbox);
        let answers = std::mem::take(&mut *answers.lock());
        if gather == Gather::One && answers.is_empty() {
            return Err(if said_nobody {
                LatticeError::NoResponders { target: target() }
            } else {
                LatticeError::Timeout {
                    target: target(),
                    timeout_ms: window.as_millis(),
                    ignored: None,
                }
            });
        }
        Ok((id, answers))
    }
}
