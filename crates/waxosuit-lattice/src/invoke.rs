//! Calls out: invocations this host sends, and the host's [`RemoteLink`].
//!
//! A call goes to one host that serves its target: the next one in turn
//! among those trusted sources named ([`crate::routes`]), or, when none is
//! known, the one that answers a discovery question on the target's shared
//! subject. It is tagged under that host's session (the fast path) or
//! signed; both bind the host's own subject and the reply inbox. Its answer
//! is accepted only from that host and only when authenticated: tagged
//! under the pair's key for a tagged call, signed otherwise. Anything else
//! arriving on the inbox (a forger's answer, an old answer replayed, an
//! unauthenticated refusal) is counted and ignored, and the call keeps
//! waiting for the real answer until its timeout. A "no responders"
//! status (which anyone can forge) takes the host out of the rotation but
//! never makes a call resend: with replicas, a resend could run it twice.
//!
//! Each call runs in a client span ([`crate::propagation`]) whose trace
//! context, when tracing is on, goes with every attempt in the NATS headers
//! and is bound into the attempt's tag or claims; a call that fails marks
//! the span failed with the error.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tracing::{Instrument, Span};
use waxosuit_claims::KeyKind;
use waxosuit_host::{Entity, RemoteError, RemoteLink, RouteKey};

use crate::LatticeError;
use crate::antiforgery::{self, Binding};
use crate::auth::{Reason, Refusal, shorten};
use crate::chunk;
use crate::metrics::Plane;
use crate::node::Inner;
use crate::propagation::{self, Outgoing};
use crate::protocol::{
    Discover, ErrorKind, Here, PROTOCOL_VERSION, Response, WireEntity, WireInvocation, decode,
    encode, encode_sized, proof_digest,
};
use crate::replies::{Verdict, is_no_responders};
use crate::server::describe;
use crate::session::{HostSession, Pair, Signed};

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
    /// The one host the call was sent to.
    host: String,
    /// The session pair it was tagged under; `None` when it was signed.
    pair: Option<Pair>,
    /// [`proof_digest`] of the proof sent, which a `session` refusal must name.
    proof: Option<String>,
}

/// How long discovery keeps asking while nobody serves a target yet (an
/// actor started a moment ago elsewhere): asking has no effect, so it may
/// be repeated, unlike a call.
const DISCOVERY_GRACE: Duration = Duration::from_millis(310);

impl Inner {
    /// Sends one invocation to one host serving `target` and waits for its
    /// authenticated response: tagged under that host's session when there
    /// is one, signed otherwise, or when the host asks for signed claims.
    /// The call runs in a client span, marked failed when the call fails.
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        origin: WireEntity,
        target: WireEntity,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LatticeError> {
        let shared = match &target {
            WireEntity::Actor(key) => self.bus.subjects.actor(key),
            WireEntity::Capability { capid, binding } => self.bus.subjects.provider(capid, binding),
            WireEntity::Host(key) => {
                return Err(LatticeError::Config {
                    reason: format!("host {} cannot be invoked; call its actors", shorten(key)),
                });
            }
        };
        let span = propagation::client_span(&target, operation);
        let result = self
            .invoke_in(&span, shared, origin, target, operation, payload)
            .instrument(span.clone())
            .await;
        if let Err(e) = &result {
            propagation::failed(&span, e);
        }
        result
    }

    /// [`Inner::invoke`] within its client span `span`.
    async fn invoke_in(
        self: &Arc<Self>,
        span: &Span,
        shared: String,
        origin: WireEntity,
        target: WireEntity,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LatticeError> {
        let host = match self.routes.pick(&shared) {
            Some(host) => host,
            None => self.discover(&shared, &target).await?,
        };
        let subject = self.bus.subjects.at(&shared, &host);
        span.record("messaging.destination.name", subject.as_str());
        span.record("waxosuit.lattice.target_host", host.as_str());
        let max_payload = self
            .bus
            .max_payload
            .load(std::sync::atomic::Ordering::Relaxed);
        let mut timeout = self.bus.timeout;
        let (msg, chunked) = if payload.len() > chunk::inline_limit(max_payload) {
            let reference = chunk::offer(
                chunk::Offer {
                    client: &self.bus.client,
                    subjects: &self.bus.subjects,
                    owner: &self.keys.host_id,
                    // The call goes to this host's own subject: only it
                    // fetches.
                    receiver: &host,
                    max_payload,
                    ttl: self.bus.timeout * 4,
                    on_refused: self.chunk_refusals(),
                },
                payload,
            )
            .await?;
            // The receiver pulls every chunk before it starts the call.
            timeout += self.bus.timeout.saturating_mul(reference.chunks);
            (Vec::new(), Some(reference))
        } else {
            (payload, None)
        };
        span.record("waxosuit.lattice.chunked", chunked.is_some());
        // The same context goes with every attempt: a resend after a
        // `session` answer is the same hop of the trace.
        let trace = Outgoing::of(span);
        let mut inv = WireInvocation {
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
        // Chunks are served once per transfer, so a chunked call is not
        // resent after a `session` answer: it always carries signed claims
        // (whose cost is small next to the transfer).
        let mut may_tag = inv.chunked.is_none();
        let response = loop {
            let response = self
                .attempt(
                    &shared,
                    &subject,
                    &host,
                    &mut inv,
                    trace.as_ref(),
                    may_tag,
                    timeout,
                )
                .await?;
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
                    &self.keys.identity,
                    &reference,
                    self.bus.timeout,
                )
                .await
            }
            None => Ok(response.msg),
        }
    }

    /// Asks a target's shared subject which host serves it, and remembers
    /// the answer. Only an answer whose session token is signed by a trusted
    /// host counts (it is not learned here: sessions come from calls).
    async fn discover(
        self: &Arc<Self>,
        shared: &str,
        target: &WireEntity,
    ) -> Result<String, LatticeError> {
        let question = encode(&Discover {
            v: PROTOCOL_VERSION,
            discover: true,
        })?;
        let started = tokio::time::Instant::now();
        let deadline = started + self.bus.timeout;
        let grace = started + DISCOVERY_GRACE.min(self.bus.timeout);
        let mut pause = Duration::from_millis(10);
        // Every round's inbox stays open until discovery ends, all answering
        // into one channel: a "no responders" status (which anyone can send
        // to an inbox, and inboxes are numbered in order) ends nothing, so
        // a host's answer to any round is taken whenever it comes.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1);
        let nobody = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut inboxes = Vec::new();
        loop {
            let inbox = {
                let inner = Arc::clone(self);
                let nobody = Arc::clone(&nobody);
                let tx = tx.clone();
                self.bus.replies.open(move |msg| {
                    if is_no_responders(&msg) {
                        nobody.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Verdict::More;
                    }
                    let Ok(here) = decode::<Here>("discovery answer", &msg.payload) else {
                        return Verdict::Ignore;
                    };
                    if here.v != PROTOCOL_VERSION {
                        return Verdict::Ignore;
                    }
                    if !inner.keys.trust.is_host(&here.host) {
                        inner.metrics.refused(
                            Plane::Response,
                            &Refusal::new(
                                Reason::Untrusted,
                                "a discovery answer from a host this host does not trust",
                            )
                            .by(&here.host),
                        );
                        return Verdict::Ignore;
                    }
                    let signed_by_it = inner
                        .keys
                        .verifier
                        .verify_token::<HostSession>(&here.token, KeyKind::Server, None)
                        .is_ok_and(|t| t.issuer() == here.host);
                    if !signed_by_it {
                        inner.metrics.refused(
                            Plane::Response,
                            &Refusal::new(
                                Reason::BadSignature,
                                "a discovery answer whose token is not its host's",
                            )
                            .by(&here.host),
                        );
                        return Verdict::Ignore;
                    }
                    // One answer is enough; later ones find the channel full.
                    let _ = tx.try_send(here.host);
                    Verdict::Done
                })
            };
            self.bus
                .client
                .publish_with_reply(
                    shared.to_string(),
                    inbox.subject.clone(),
                    question.clone().into(),
                )
                .await
                .map_err(|e| LatticeError::Transport {
                    operation: "discovery",
                    reason: e.to_string(),
                })?;
            inboxes.push(inbox);
            // Asked again after a growing pause while within the grace (a
            // host may be starting); past it, the answers already asked for
            // are waited for until the deadline.
            let now = tokio::time::Instant::now();
            let asking = now < grace;
            let round_end = if asking {
                (now + pause).min(deadline)
            } else {
                deadline
            };
            tokio::select! {
                host = rx.recv() => {
                    if let Some(host) = host {
                        self.routes.add(shared, &host);
                        return Ok(host);
                    }
                }
                _ = tokio::time::sleep_until(round_end) => {}
            }
            let now = tokio::time::Instant::now();
            if now >= grace && nobody.load(std::sync::atomic::Ordering::Relaxed) {
                // Nobody (or a forger) said nobody serves it, for the whole
                // grace, and no host answered.
                return Err(LatticeError::NoResponders {
                    target: describe(target),
                });
            }
            if now >= deadline {
                return Err(LatticeError::Timeout {
                    target: describe(target),
                    timeout_ms: self.bus.timeout.as_millis(),
                    ignored: None,
                });
            }
            if asking {
                pause *= 2;
            }
        }
    }

    /// One request to one host on the bus and its authenticated response.
    /// `trace`, when tracing is on, goes in the request's headers and is
    /// bound into its tag or claims.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        self: &Arc<Self>,
        shared: &str,
        subject: &str,
        host: &str,
        inv: &mut WireInvocation,
        trace: Option<&Outgoing>,
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
                let guard = expected.lock();
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
                            *ignored.lock() = Some(note);
                        }
                        Verdict::Ignore
                    }
                }
            })
        };
        let reply = inbox.subject.clone();
        let origin_url = inv.origin.url();
        let target_url = format!("{}/{}", inv.target.url(), inv.operation);
        let sealed = if may_tag {
            self.keys.sessions.seal(
                host,
                &Signed {
                    id: &inv.id,
                    origin_url: &origin_url,
                    target_url: &target_url,
                    subject,
                    reply: &reply,
                    msg: &inv.msg,
                    trace: trace.map(|t| t.binding.as_str()),
                },
            )
        } else {
            None
        };
        let (pair, proof) = match sealed {
            Some((proof, pair)) => {
                let digest = proof_digest(&proof);
                inv.session = Some(proof);
                inv.encoded_claims.clear();
                inv.session_token = None;
                (Some(pair), Some(digest))
            }
            None => {
                inv.session = None;
                inv.session_token = Some(self.keys.sessions.token());
                inv.encoded_claims = antiforgery::sign_traced(
                    &self.keys.identity,
                    inv,
                    Binding {
                        subject,
                        reply: &reply,
                    },
                    trace.map(|t| t.binding.as_str()),
                )
                .map_err(|e| LatticeError::Transport {
                    operation: "signing an invocation",
                    reason: e.to_string(),
                })?;
                (None, None)
            }
        };
        let tagged = pair.is_some();
        *expected.lock() = Some(Expected {
            id: inv.id.clone(),
            reply: reply.clone(),
            host: host.to_string(),
            pair,
            proof,
        });
        let body: Bytes = encode_sized(&*inv, inv.msg.len())?.into();
        let client = &self.bus.client;
        let sent = match trace {
            Some(trace) => {
                client
                    .publish_with_reply_and_headers(
                        subject.to_string(),
                        reply,
                        trace.headers.clone(),
                        body,
                    )
                    .await
            }
            None => {
                client
                    .publish_with_reply(subject.to_string(), reply, body)
                    .await
            }
        };
        sent.map_err(|e| LatticeError::Transport {
            operation: "request",
            reason: e.to_string(),
        })?;
        let deadline = tokio::time::Instant::now() + timeout;
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
                // Anyone can forge a no-responders status: the host leaves
                // the rotation (discovery brings it back if it serves), but
                // the call still waits for an authentic answer.
                _ = nobody.notified(), if !said_nobody => {
                    said_nobody = true;
                    self.routes.remove(shared, host);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    // A host that lets a call time out (killed mid-call,
                    // cut off with its connection still open, hung) leaves
                    // the rotation too, or every call routed to it would
                    // time out until NATS drops its connection; discovery,
                    // its events and inventory bring it back if it serves.
                    self.routes.remove(shared, host);
                    // It may have restarted and forgotten the session, its
                    // signed refusal spent by forgers: the next call is
                    // signed, and its answer renews the pair.
                    if tagged {
                        self.keys.sessions.suspend(host);
                    }
                    return Err(if said_nobody {
                        LatticeError::NoResponders { target: describe(&inv.target) }
                    } else {
                        LatticeError::Timeout {
                            target: describe(&inv.target),
                            timeout_ms: timeout.as_millis(),
                            ignored: ignored.lock().take(),
                        }
                    });
                }
            }
        };
        drop(inbox);
        if let Some(token) = &response.session
            && let Err(refusal) = self.keys.sessions.learn(
                &self.keys.verifier,
                &self.keys.trust,
                &response.host,
                token,
            )
        {
            self.metrics.refused(Plane::Response, &refusal);
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
        if response.tag.is_none() && response.jwt.is_empty() {
            let text = response.error.as_ref().map(|e| e.message.clone());
            self.metrics.refused(
                Plane::Response,
                &Refusal::new(Reason::Unsigned, "an unauthenticated response"),
            );
            return Err(text);
        }
        if response.host != expected.host {
            return Err(refused(
                Refusal::new(
                    Reason::Untrusted,
                    "a response from another host than the call was sent to",
                )
                .by(&response.host),
            ));
        }
        if let Some(tag) = &response.tag {
            let parts = response.signed_parts(&expected.reply);
            let authentic = expected.pair.as_ref().is_some_and(|pair| {
                self.keys.trust.is_host(&response.host)
                    && self
                        .keys
                        .sessions
                        .check_response(&response.host, pair, &parts, tag)
            });
            if !authentic {
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
        match (&expected.proof, is_session) {
            // A signed `session` refusal counts only for the very proof sent.
            (Some(sent), true) if response.proof.as_ref() == Some(sent) => Ok(response),
            (Some(_), _) => Err(refused(
                Refusal::new(
                    Reason::Mismatch,
                    "a session-tagged call was answered without the pair's key, or refused for \
                     a proof it did not carry",
                )
                .by(&response.host),
            )),
            (None, true) => Err(refused(
                Refusal::new(Reason::Mismatch, "a signed call refused as untagged")
                    .by(&response.host),
            )),
            (None, false) => Ok(response),
        }
    }

    /// The key of an actor elsewhere in the lattice that claims `alias`.
    pub(crate) fn alias_owner(&self, alias: &str) -> Option<String> {
        let state = self.state.lock();
        state.claims.iter().find_map(|(key, jwt)| {
            let claims =
                waxosuit_claims::Claims::<waxosuit_claims::Actor>::decode_unverified(jwt).ok()?;
            (claims.metadata.as_ref()?.call_alias.as_deref() == Some(alias)).then(|| key.clone())
        })
    }
}
