//! Calls out: invocations this host sends, and the host's [`RemoteLink`].
//!
//! A call is tagged for the hosts known to answer on its subject (the fast
//! path) or signed; both bind the subject and the reply inbox. Its answer
//! is accepted only when authenticated by a host this host trusts: tagged
//! under that pair's key for a tagged call, signed otherwise. Anything else
//! arriving on the inbox (a forger's answer, an old answer replayed, an
//! unauthenticated refusal) is counted and ignored, and the call keeps
//! waiting for the real answer until its timeout.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use waxosuit_host::{Entity, RemoteError, RemoteLink, RouteKey};

use crate::LatticeError;
use crate::antiforgery::{self, Binding};
use crate::auth::{Reason, Refusal, shorten};
use crate::chunk;
use crate::metrics::Plane;
use crate::node::{Inner, lock};
use crate::protocol::{
    ErrorKind, Invocation, PROTOCOL_VERSION, Response, WireEntity, decode, encode_sized,
};
use crate::replies::{Verdict, is_no_responders};
use crate::server::describe;
use crate::session::Signed;

/// How long a call waits, after the server said nobody serves its subject,
/// for an authentic answer anyway: a "no responders" status can be forged
/// by anyone on the bus, so it only shortens the wait, it never resends.
const NO_RESPONDERS_GRACE: Duration = Duration::from_millis(310);

/// The host's [`RemoteLink`]: calls it cannot serve go over NATS.
pub(crate) struct Link {
    pub(crate) inner: Weak<Inner>,
}

fn left() -> RemoteError {
    Box::new(LatticeError::Transport {
        operation: "call",
        reason: "this host has left the lattice".to_string(),
    })
}

#[async_trait]
impl RemoteLink for Link {
    async fn call_actor(
        &self,
        origin: &Entity,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError> {
        let inner = self.inner.upgrade().ok_or_else(left)?;
        let origin = match origin {
            Entity::Actor(key) => WireEntity::Actor(key.clone()),
            Entity::Capability { capid, binding } => WireEntity::Capability {
                capid: capid.clone(),
                binding: binding.clone(),
            },
            _ => WireEntity::Host(inner.keys.host_id.clone()),
        };
        Ok(inner
            .invoke(
                origin,
                WireEntity::Actor(actor.to_string()),
                operation,
                payload,
            )
            .await?)
    }

    async fn call_provider(
        &self,
        actor: &str,
        route: &RouteKey,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError> {
        let inner = self.inner.upgrade().ok_or_else(left)?;
        let target = WireEntity::Capability {
            capid: route.capid.clone(),
            binding: route.binding.clone(),
        };
        Ok(inner
            .invoke(
                WireEntity::Actor(actor.to_string()),
                target,
                operation,
                payload,
            )
            .await?)
    }

    async fn actor_started(&self, actor: &str) {
        if let Some(inner) = self.inner.upgrade() {
            inner
                .serve_now(crate::server::Served::Actor(actor.to_string()))
                .await;
        }
    }

    async fn provider_started(&self, route: &RouteKey) {
        if let Some(inner) = self.inner.upgrade() {
            inner
                .serve_now(crate::server::Served::Provider(route.clone()))
                .await;
        }
    }

    fn alias_owner(&self, alias: &str) -> Option<String> {
        let inner = self.inner.upgrade()?;
        inner.alias_owner(alias)
    }
}

/// One attempt's view of what it sent, for the acceptor.
struct Expected {
    id: String,
    reply: String,
    /// The hosts the call was tagged for; empty when it was signed.
    tagged_for: BTreeSet<String>,
}

impl Inner {
    /// Sends one invocation and waits for its authenticated response:
    /// tagged with the sessions of the hosts known to answer on the
    /// subject, or signed when there are none, or when the host that took
    /// it asks for signed claims.
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        origin: WireEntity,
        target: WireEntity,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LatticeError> {
        let subject = match &target {
            WireEntity::Actor(key) => self.bus.subjects.actor(key),
            WireEntity::Capability { capid, binding } => self.bus.subjects.provider(capid, binding),
            WireEntity::Host(key) => self.bus.subjects.control(key),
        };
        let max_payload = self
            .bus
            .max_payload
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut timeout = self.bus.timeout;
        let (msg, chunked) = if payload.len() > chunk::inline_limit(max_payload) {
            let reference = chunk::offer(
                &self.bus.client,
                &self.bus.subjects,
                &self.keys.host_id,
                payload,
                max_payload,
                self.bus.timeout * 4,
            )
            .await?;
            // The receiver pulls every chunk before it starts the call.
            timeout += self.bus.timeout * reference.chunks;
            (Vec::new(), Some(reference))
        } else {
            (payload, None)
        };
        let mut inv = Invocation {
            v: PROTOCOL_VERSION,
            id: nuid::next().to_string(),
            origin,
            target,
            operation: operation.to_string(),
            msg,
            encoded_claims: String::new(),
            host_id: self.keys.host_id.clone(),
            chunked,
            session: None,
            session_token: None,
        };
        // Chunks are served once, so a chunked call cannot be resent after a
        // `session` answer: it always carries signed claims (whose cost is
        // small next to the transfer).
        let mut may_tag = inv.chunked.is_none();
        let response = loop {
            let response = self.attempt(&subject, &mut inv, may_tag, timeout).await?;
            match &response.error {
                Some(error) if error.kind == ErrorKind::Session && may_tag => {
                    may_tag = false;
                }
                _ => break response,
            }
        };
        let target = &inv.target;
        if let Some(error) = response.error {
            return Err(match error.kind {
                ErrorKind::Forged => LatticeError::Forged {
                    reason: error.message,
                },
                kind => LatticeError::Remote {
                    target: describe(target),
                    kind,
                    message: error.message,
                },
            });
        }
        match response.chunked {
            Some(reference) => {
                chunk::check(
                    &reference,
                    &self.bus.subjects,
                    &response.host,
                    self.gates.limits.max_response_bytes,
                )
                .map_err(|reason| LatticeError::Malformed {
                    what: "response",
                    reason,
                })?;
                chunk::fetch(
                    &self.bus.client,
                    &self.bus.replies,
                    &reference,
                    self.bus.timeout,
                )
                .await
            }
            None => Ok(response.msg),
        }
    }

    /// One request on the bus and its authenticated response.
    async fn attempt(
        self: &Arc<Self>,
        subject: &str,
        inv: &mut Invocation,
        may_tag: bool,
        timeout: Duration,
    ) -> Result<Response, LatticeError> {
        // The answer has a channel of its own: a flood of (forgeable)
        // no-responders statuses must never crowd it out.
        let (answer_tx, mut answer_rx) = tokio::sync::oneshot::channel::<Response>();
        let mut answer_tx = Some(answer_tx);
        let nobody = Arc::new(tokio::sync::Notify::new());
        let ignored: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let expected: Arc<Mutex<Option<Expected>>> = Arc::new(Mutex::new(None));
        let inbox = {
            let inner = Arc::clone(self);
            let ignored = Arc::clone(&ignored);
            let expected = Arc::clone(&expected);
            let nobody = Arc::clone(&nobody);
            self.bus.replies.open(move |msg| {
                if is_no_responders(&msg) {
                    nobody.notify_one();
                    return Verdict::More;
                }
                let guard = lock(&expected);
                let Some(expected) = guard.as_ref() else {
                    return Verdict::Ignore;
                };
                match inner.accept_response(&msg.payload, expected) {
                    Ok(response) => {
                        if let Some(tx) = answer_tx.take() {
                            let _ = tx.send(response);
                        }
                        Verdict::Done
                    }
                    Err(note) => {
                        if let Some(note) = note {
                            *lock(&ignored) = Some(note);
                        }
                        Verdict::Ignore
                    }
                }
            })
        };
        let reply = inbox.subject.clone();
        let origin_url = inv.origin.url();
        let target_url = format!("{}/{}", inv.target.url(), inv.operation);
        inv.session = if may_tag {
            self.keys.sessions.seal(&Signed {
                id: &inv.id,
                origin_url: &origin_url,
                target_url: &target_url,
                subject,
                reply: &reply,
                msg: &inv.msg,
            })
        } else {
            None
        };
        let tagged_for: BTreeSet<String> = inv
            .session
            .iter()
            .flat_map(|p| p.tags.iter().map(|t| t.to.clone()))
            .collect();
        if inv.session.is_none() {
            inv.encoded_claims = antiforgery::sign(
                &self.keys.identity,
                inv,
                Binding {
                    subject,
                    reply: &reply,
                },
            )
            .map_err(|e| LatticeError::Transport {
                operation: "signing an invocation",
                reason: e.to_string(),
            })?;
            inv.session_token = Some(self.keys.sessions.token());
        } else {
            inv.encoded_claims.clear();
            inv.session_token = None;
        }
        *lock(&expected) = Some(Expected {
            id: inv.id.clone(),
            reply: reply.clone(),
            tagged_for,
        });
        let body: Bytes = encode_sized(&*inv, inv.msg.len())?.into();
        self.bus
            .client
            .publish_with_reply(subject.to_string(), reply, body)
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "request",
                reason: e.to_string(),
            })?;
        let mut deadline = tokio::time::Instant::now() + timeout;
        let mut said_nobody = false;
        let response = loop {
            tokio::select! {
                answer = &mut answer_rx => match answer {
                    Ok(response) => break response,
                    Err(_) => return Err(LatticeError::Transport {
                        operation: "request",
                        reason: "the reply inbox closed".to_string(),
                    }),
                },
                _ = nobody.notified(), if !said_nobody => {
                    said_nobody = true;
                    deadline = deadline.min(tokio::time::Instant::now() + NO_RESPONDERS_GRACE);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(if said_nobody {
                        LatticeError::NoResponders { target: describe(&inv.target) }
                    } else {
                        LatticeError::Timeout {
                            target: describe(&inv.target),
                            timeout_ms: timeout.as_millis(),
                            ignored: lock(&ignored).take(),
                        }
                    });
                }
            }
        };
        drop(inbox);
        if let Some(token) = &response.session {
            // The response verified as this host's: its token is the same
            // host's, or it is refused.
            match self
                .keys
                .sessions
                .learn(&self.keys.verifier, &self.keys.trust, token)
            {
                Ok(host) if host == response.host => {
                    self.keys.sessions.responded(subject, &host);
                }
                Ok(host) => {
                    self.metrics.refused(
                        Plane::Response,
                        &Refusal::new(
                            Reason::Mismatch,
                            format!("a response carried the session token of {}", shorten(&host)),
                        )
                        .by(&response.host),
                    );
                }
                Err(refusal) => self.metrics.refused(Plane::Response, &refusal),
            }
        }
        Ok(response)
    }

    /// Whether a message on a call's inbox is its authentic answer. `Err`
    /// carries, for an unauthenticated refusal, its text (reported if the
    /// call times out).
    fn accept_response(
        &self,
        payload: &[u8],
        expected: &Expected,
    ) -> Result<Response, Option<String>> {
        let refused = |refusal: Refusal| {
            self.metrics.refused(Plane::Response, &refusal);
            None
        };
        let response: Response = match decode("response", payload) {
            Ok(r) => r,
            Err(e) => return Err(refused(Refusal::new(Reason::Malformed, e.to_string()))),
        };
        if response.v != PROTOCOL_VERSION {
            self.metrics.refused(
                Plane::Response,
                &Refusal::new(Reason::Version, "a response of another protocol version"),
            );
            return Err(Some(
                LatticeError::Version {
                    got: response.v,
                    supported: PROTOCOL_VERSION,
                }
                .to_string(),
            ));
        }
        if response.invocation_id != expected.id {
            return Err(refused(Refusal::new(
                Reason::Mismatch,
                "a response to another invocation",
            )));
        }
        if let Some(tag) = &response.tag {
            if !expected.tagged_for.contains(&response.host) {
                return Err(refused(
                    Refusal::new(
                        Reason::Untrusted,
                        "a tagged response from a host the call was not tagged for",
                    )
                    .by(&response.host),
                ));
            }
            let parts = response.signed_parts(&expected.reply);
            if !self.keys.trust.is_host(&response.host)
                || !self
                    .keys
                    .sessions
                    .check_response(&response.host, &parts, tag)
            {
                return Err(refused(
                    Refusal::new(
                        Reason::BadSignature,
                        "a response's session tag does not match",
                    )
                    .by(&response.host),
                ));
            }
            return Ok(response);
        }
        if !response.jwt.is_empty() {
            if let Err(refusal) = antiforgery::verify_response(
                &self.keys.verifier,
                &self.keys.trust,
                &response,
                &expected.id,
                &expected.reply,
            ) {
                return Err(refused(refusal));
            }
            let is_session = response
                .error
                .as_ref()
                .is_some_and(|e| e.kind == ErrorKind::Session);
            if !expected.tagged_for.is_empty() && !is_session {
                return Err(refused(
                    Refusal::new(
                        Reason::Mismatch,
                        "a session-tagged call was answered without the pair's key",
                    )
                    .by(&response.host),
                ));
            }
            return Ok(response);
        }
        let text = response.error.as_ref().map(|e| e.message.clone());
        self.metrics.refused(
            Plane::Response,
            &Refusal::new(Reason::Unsigned, "an unauthenticated response"),
        );
        Err(text)
    }

    /// The key of an actor elsewhere in the lattice that claims `alias`.
    pub(crate) fn alias_owner(&self, alias: &str) -> Option<String> {
        let state = lock(&self.state);
        state.claims.iter().find_map(|(key, jwt)| {
            let claims =
                waxosuit_claims::Claims::<waxosuit_claims::Actor>::decode_unverified(jwt).ok()?;
            (claims.metadata.as_ref()?.call_alias.as_deref() == Some(alias)).then(|| key.clone())
        })
    }
}
