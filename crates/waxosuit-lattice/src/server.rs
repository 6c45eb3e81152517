//! Calls in: serving this host's actors and providers to the lattice.
//!
//! Each local target has two subscriptions. On its shared subject
//! (`{prefix}.actor.{key}` or `{prefix}.provider.{capid}.{binding}`), in a
//! queue group with every other host running it, this host answers
//! discovery questions: "here, I serve it" ([`crate::protocol::Here`]). On
//! its own subject (the shared one plus `.{host key}`) it takes calls: a
//! call's signature or tag covers that subject, so a call captured on its
//! way to one replica is refused by every other. Each call is handled
//! under a per-target semaphore: past
//! [`crate::LatticeLimits::inbound_per_target`] calls in flight, a call is
//! authenticated and answered `busy` at once instead of spawning a task.
//!
//! The order of checks is the point: the trace headers' sizes, decode,
//! version, target, the sender on the trust list, the signature or session
//! tag (which cover the subject, reply inbox, payload or chunk reference,
//! and trace headers), the replay guard; only then is a chunk fetched (from
//! the sender's own chunk subject, no larger than the target accepts, under
//! the transfer semaphore), a session token learned, a server span opened
//! that continues the caller's trace ([`crate::propagation`]), or the
//! target run (inside that span, so the host's own spans are its children).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Message;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::Instrument;
use waxosuit_host::{ActorKey, Entity, HostError, RouteKey};

use crate::LatticeError;
use crate::antiforgery::{self, Binding};
use crate::auth::{Reason, Refusal, shorten};
use crate::chunk;
use crate::metrics::Plane;
use crate::node::Inner;
use crate::propagation::{self, Carried};
use crate::protocol::{
    Discover, ErrorKind, Here, PROTOCOL_VERSION, Probe, Response, WireEntity, WireInvocation,
    decode, encode, encode_sized, proof_digest,
};
use crate::session::{Opened, Pair, Signed};

/// The longest invocation id accepted: hosts send 22-character NUIDs
/// (waSCC sent 36-character UUIDs), and every answer echoes the id.
const MAX_ID_BYTES: usize = 64;

/// What a local subscription serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Served {
    Actor(String),
    Provider(RouteKey),
}

/// A running subscription for a local target.
struct Subscription {
    /// Asks the task to drain its subscription and end.
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
    served: Served,
}

/// The subscriptions serving local targets, by subject.
#[derive(Default)]
pub(crate) struct Serving {
    subscriptions: Mutex<HashMap<String, Subscription>>,
    /// Held while a subscription is made, so each target is served once.
    subscribing: tokio::sync::Mutex<()>,
}

impl Serving {
    /// Drains every subscription (leaving the lattice), within `timeout`.
    pub(crate) async fn drain_all(&self, timeout: Duration) {
        let all: Vec<Subscription> = self.subscriptions.lock().drain().map(|(_, s)| s).collect();
        let mut draining = Vec::with_capacity(all.len());
        for s in all {
            let _ = s.stop.send(());
            draining.push(s.task);
        }
        // Wait until the server has dropped every subscription (so no call
        // is routed to this host any more) and what it had sent is taken.
        let _ = tokio::time::timeout(timeout, futures_util::future::join_all(draining)).await;
    }

    /// What is served now.
    pub(crate) fn targets(&self) -> Vec<Served> {
        self.subscriptions
            .lock()
            .values()
            .map(|s| s.served.clone())
            .collect()
    }
}

/// A call that passed authentication, ready to run.
struct Authenticated {
    inv: WireInvocation,
    /// The inbox to answer on.
    reply: String,
    /// The session pair the call was tagged under (the answer is tagged
    /// under it too), or `None` for signed claims (the answer is signed,
    /// with this host's token).
    pair: Option<Pair>,
    /// Its trace headers, authenticated with it.
    trace: Carried,
}

impl Inner {
    fn subject_of(&self, served: &Served) -> String {
        match served {
            Served::Actor(key) => self.bus.subjects.actor(key),
            Served::Provider(route) => self.bus.subjects.provider(&route.capid, &route.binding),
        }
    }

    /// Subscribes to discovery questions for a local actor or provider (in
    /// the queue group of its shared subject) and to calls on this host's
    /// own subject for it.
    pub(crate) async fn serve(self: &Arc<Self>, served: Served) -> Result<(), LatticeError> {
        let shared = self.subject_of(&served);
        let own = self.bus.subjects.at(&shared, &self.keys.host_id);
        // Host events, resyncs and start commands may serve the same target
        // at once; a second subscription would be dropped again, losing any
        // call already routed to it.
        let _guard = self.serving.subscribing.lock().await;
        if self.serving.subscriptions.lock().contains_key(&shared) {
            return Ok(());
        }
        let transport = |e: &dyn std::fmt::Display| LatticeError::Transport {
            operation: "subscribe",
            reason: e.to_string(),
        };
        let mut questions = self
            .bus
            .client
            .queue_subscribe(shared.clone(), shared.clone())
            .await
            .map_err(|e| transport(&e))?;
        let mut calls = self
            .bus
            .client
            .subscribe(own)
            .await
            .map_err(|e| transport(&e))?;
        let inner = Arc::clone(self);
        let target = served.clone();
        let permits = Arc::new(Semaphore::new(self.gates.limits.inbound_per_target.max(1)));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let (mut asking, mut calling, mut draining) = (true, true, false);
            while asking || calling {
                tokio::select! {
                    msg = questions.next(), if asking => match msg {
                        Some(msg) => inner.answer_discovery(msg).await,
                        None => asking = false,
                    },
                    msg = calls.next(), if calling => {
                        let Some(msg) = msg else {
                            calling = false;
                            continue;
                        };
                        match Arc::clone(&permits).try_acquire_owned() {
                            Ok(permit) => {
                                let inner = Arc::clone(&inner);
                                let target = target.clone();
                                tokio::spawn(async move {
                                    inner.handle_invocation(msg, &target, permit).await;
                                });
                            }
                            // Saturated: no new task; answer `busy` here if
                            // the call is authentic, drop it otherwise.
                            Err(_) => inner.turn_away(msg, &target).await,
                        }
                    }
                    _ = &mut stopped, if !draining => {
                        // Unsubscribe but answer what the server already
                        // routed here; the streams end once it confirms.
                        draining = true;
                        if questions.drain().await.is_err() {
                            asking = false;
                        }
                        if calls.drain().await.is_err() {
                            calling = false;
                        }
                    }
                }
            }
        });
        if let Some(old) = self
            .serving
            .subscriptions
            .lock()
            .insert(shared, Subscription { stop, task, served })
        {
            old.task.abort();
        }
        Ok(())
    }

    /// Where an answer to `msg` (a discovery, a call, a refusal) may go:
    /// its reply subject when it is one of the lattice's own inboxes, where
    /// every lattice client asks from. Anyone may ask, and an answer sent
    /// wherever the asker names would make this host publish, with its
    /// credentials, to any subject at the asker's rate; a signed call binds
    /// its reply subject in its claims, so a legitimate one is never lost.
    fn reply_to(&self, msg: &Message) -> Option<String> {
        msg.reply
            .as_ref()
            .map(|r| r.to_string())
            .filter(|r| self.bus.subjects.is_inbox(r))
    }

    /// "Which host serves this?": this one, with its session token (signed
    /// by this host, so the answer costs no signature per question).
    async fn answer_discovery(&self, msg: Message) {
        let Some(reply) = self.reply_to(&msg) else {
            return;
        };
        let Ok(question) = decode::<Discover>("discovery", &msg.payload) else {
            return;
        };
        if question.v != PROTOCOL_VERSION || !question.discover {
            return;
        }
        let here = Here {
            v: PROTOCOL_VERSION,
            host: self.keys.host_id.clone(),
            token: self.keys.sessions.token(),
        };
        if let Ok(body) = encode(&here) {
            let _ = self.bus.client.publish(reply, body.into()).await;
        }
    }

    /// Serves a target and waits until the NATS server has taken the
    /// subscription, so a call made once this returns reaches it.
    pub(crate) async fn serve_now(self: &Arc<Self>, served: Served) {
        if let Err(e) = self.serve(served.clone()).await {
            tracing::error!(target = ?served, error = %e, "cannot serve on the lattice");
            return;
        }
        self.round_trip().await;
    }

    /// Returns once the server has handled everything this connection sent
    /// before (bounded by the timeout): `flush` only empties the socket, but
    /// the server handles a connection's messages in order, so one sent to
    /// our own inbox comes back only after them.
    pub(crate) async fn round_trip(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut tx = Some(tx);
        let inbox = self.bus.replies.open(move |_| {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
            crate::replies::Verdict::Done
        });
        if self
            .bus
            .client
            .publish(inbox.subject.clone(), bytes::Bytes::new())
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(self.bus.timeout, rx).await;
        }
    }

    /// Stops serving a target: the server stops routing calls here, and
    /// calls already on their way are still answered.
    pub(crate) fn unserve(&self, served: &Served) {
        if let Some(s) = self
            .serving
            .subscriptions
            .lock()
            .remove(&self.subject_of(served))
        {
            let _ = s.stop.send(());
        }
    }

    /// Answers one call holding one of the target's slots, `permit`, which
    /// is given back before the reply goes out: a caller that has its
    /// answer may call again at once and find the slot free.
    async fn handle_invocation(
        &self,
        msg: Message,
        served: &Served,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let Some(reply) = self.reply_to(&msg) else {
            return;
        };
        let call = match self.authenticate(&msg, served, &reply) {
            Ok(call) => call,
            Err(Some(response)) => {
                drop(permit);
                self.send_response(reply, &response).await;
                return;
            }
            Err(None) => return,
        };
        // Only now, the call authenticated, may its headers name a trace.
        let span = propagation::server_span(&call.inv, &msg.subject);
        call.trace.continue_in(&span);
        let serving = span.clone();
        async move {
            let response = self.run_call(&call).await;
            if let Some(error) = &response.error {
                propagation::failed(&serving, &error.message);
            }
            let response = self.seal_response(&call, response);
            drop(permit);
            self.send_response(reply, &response).await;
        }
        .instrument(span)
        .await;
    }

    /// A call that arrived while its target was at its limit.
    async fn turn_away(&self, msg: Message, served: &Served) {
        let Some(reply) = self.reply_to(&msg) else {
            return;
        };
        self.metrics.busy();
        let response = match self.authenticate(&msg, served, &reply) {
            Ok(call) => {
                let message = format!(
                    "host {} is handling {} calls for {} already (its limit); nothing ran, retry \
                     later or run more replicas",
                    self.keys.host_id,
                    self.gates.limits.inbound_per_target,
                    describe(&call.inv.target)
                );
                let span = propagation::server_span(&call.inv, &msg.subject);
                call.trace.continue_in(&span);
                propagation::failed(&span, &message);
                let busy = Response::failure(&call.inv.id, ErrorKind::Busy, message);
                if call.pair.is_none() && !self.gates.may_sign_refusal(&call.inv.host_id) {
                    return;
                }
                self.seal_response(&call, busy)
            }
            Err(Some(response)) => *response,
            Err(None) => return,
        };
        self.send_response(reply, &response).await;
    }

    async fn send_response(&self, reply: String, response: &Response) {
        let bytes = match encode_sized(response, response.msg.len()) {
            Ok(b) => b,
            Err(e) => match encode(&Response::failure(
                &response.invocation_id,
                ErrorKind::Failed,
                e.to_string(),
            )) {
                Ok(b) => b,
                Err(_) => return,
            },
        };
        if let Err(e) = self.bus.client.publish(reply, bytes.into()).await
            && let Some(suppressed) = self.metrics.may_log()
        {
            tracing::warn!(error = %e, suppressed_before = suppressed, "could not send a lattice reply");
        }
    }

    /// Everything short of running the call. `Err(Some(r))` is an answer
    /// to send (an unauthenticated refusal, or a signed `session`);
    /// `Err(None)` means say nothing.
    fn authenticate(
        &self,
        msg: &Message,
        served: &Served,
        reply: &str,
    ) -> Result<Authenticated, Option<Box<Response>>> {
        let refuse = |id: &str, kind: ErrorKind, refusal: Refusal| {
            self.metrics.refused(Plane::Invocation, &refusal);
            Some(Box::new(Response::failure(id, kind, refusal.detail)))
        };
        // Bounded before anything else is done with the message.
        let trace = match Carried::read(msg.headers.as_ref()) {
            Ok(trace) => trace,
            Err(refusal) => return Err(refuse("", ErrorKind::Malformed, refusal)),
        };
        let probe: Probe = match decode("invocation", &msg.payload) {
            Ok(p) => p,
            Err(e) => {
                return Err(refuse(
                    "",
                    ErrorKind::Malformed,
                    Refusal::new(Reason::Malformed, e.to_string()),
                ));
            }
        };
        // The id is echoed in every answer, a refusal included: one the
        // size of the server's largest message made an answer too large to
        // send, each failing with a log line of its own.
        if probe.id.as_ref().is_some_and(|id| id.len() > MAX_ID_BYTES) {
            return Err(refuse(
                "",
                ErrorKind::Malformed,
                Refusal::new(
                    Reason::Malformed,
                    format!("its id is longer than {MAX_ID_BYTES} bytes"),
                ),
            ));
        }
        let id = probe.id.unwrap_or_default();
        match probe.v {
            Some(PROTOCOL_VERSION) => {}
            Some(got) => {
                let e = LatticeError::Version {
                    got,
                    supported: PROTOCOL_VERSION,
                };
                return Err(refuse(
                    &id,
                    ErrorKind::Version,
                    Refusal::new(Reason::Version, e.to_string()),
                ));
            }
            None => {
                return Err(refuse(
                    &id,
                    ErrorKind::Malformed,
                    Refusal::new(
                        Reason::Malformed,
                        "the message has no protocol version field `v`",
                    ),
                ));
            }
        }
        let inv: WireInvocation = match decode("invocation", &msg.payload) {
            Ok(inv) => inv,
            Err(e) => {
                return Err(refuse(
                    &id,
                    ErrorKind::Malformed,
                    Refusal::new(Reason::Malformed, e.to_string()),
                ));
            }
        };
        let expected = match served {
            Served::Actor(key) => WireEntity::Actor(key.clone()),
            Served::Provider(route) => WireEntity::Capability {
                capid: route.capid.clone(),
                binding: route.binding.clone(),
            },
        };
        if inv.target != expected {
            return Err(refuse(
                &inv.id,
                ErrorKind::Forged,
                Refusal::new(
                    Reason::Mismatch,
                    format!(
                        "addressed to {} but sent to the subject of {}",
                        describe(&inv.target),
                        describe(&expected)
                    ),
                )
                .by(&inv.host_id),
            ));
        }
        // Cheap check first: nothing is verified for a host nobody trusts.
        if let Err(reason) = self.keys.trust.check(&inv.host_id) {
            return Err(refuse(
                &inv.id,
                ErrorKind::Forged,
                Refusal::new(Reason::Untrusted, reason).by(&inv.host_id),
            ));
        }
        let origin_url = inv.origin.url();
        let target_url = format!("{}/{}", inv.target.url(), inv.operation);
        let trace_binding = trace.binding();
        if let Some(proof) = &inv.session {
            if inv.chunked.is_some() {
                return Err(refuse(
                    &inv.id,
                    ErrorKind::Forged,
                    Refusal::new(Reason::Malformed, "a chunked call must carry signed claims")
                        .by(&inv.host_id),
                ));
            }
            let signed = Signed {
                id: &inv.id,
                origin_url: &origin_url,
                target_url: &target_url,
                subject: &msg.subject,
                reply,
                msg: &inv.msg,
                trace: trace_binding.as_deref(),
            };
            match self.keys.sessions.open(&inv.host_id, proof, &signed) {
                Ok((Opened::Authentic, pair)) => {
                    return Ok(Authenticated {
                        inv,
                        reply: reply.to_string(),
                        pair,
                        trace,
                    });
                }
                Ok((Opened::Unknown, _)) if inv.encoded_claims.is_empty() => {
                    // Nothing ran: tell the sender (signed, so it can trust
                    // the answer enough to resend) to use signed claims.
                    // The answer names the proof as received: a caller
                    // resends only if it is the one it sent, so nobody can
                    // provoke a second run by sending an altered copy.
                    if !self.gates.may_sign_refusal(&inv.host_id) {
                        return Err(None);
                    }
                    let mut response = Response::failure(
                        &inv.id,
                        ErrorKind::Session,
                        "this host shares no session with the sender; send signed claims",
                    );
                    response.session = Some(self.keys.sessions.token());
                    response.proof = Some(proof_digest(proof));
                    return Err(Some(Box::new(self.sign_response(response, reply))));
                }
                Ok((Opened::Unknown, _)) => {}
                Err(refusal) => return Err(refuse(&inv.id, ErrorKind::Forged, refusal)),
            }
        }
        if inv.encoded_claims.is_empty() {
            return Err(refuse(
                &inv.id,
                ErrorKind::Forged,
                Refusal::new(
                    Reason::Unsigned,
                    "the call carries neither claims nor a session tag",
                )
                .by(&inv.host_id),
            ));
        }
        let to = Binding {
            subject: &msg.subject,
            reply,
        };
        let (issued, expires) = match antiforgery::verify_refusal(
            &self.keys.verifier,
            &self.keys.trust,
            &inv,
            to,
            trace_binding.as_deref(),
            Some(&self.keys.replay),
        ) {
            Ok(window) => window,
            Err(refusal) => return Err(refuse(&inv.id, ErrorKind::Forged, refusal)),
        };
        if let Err(refusal) = self
            .keys
            .replay
            .check(&inv.host_id, &inv.id, issued, expires)
        {
            return Err(refuse(&inv.id, ErrorKind::Forged, refusal.by(&inv.host_id)));
        }
        // Verified (the token is bound into the claims): now it may be
        // learned, as its sender's only.
        if let Some(token) = &inv.session_token
            && let Err(refusal) =
                self.keys
                    .sessions
                    .learn(&self.keys.verifier, &self.keys.trust, &inv.host_id, token)
        {
            return Err(refuse(&inv.id, ErrorKind::Forged, refusal));
        }
        Ok(Authenticated {
            inv,
            reply: reply.to_string(),
            pair: None,
            trace,
        })
    }

    /// Fetches a chunked payload (if any) and runs an authenticated call.
    async fn run_call(&self, call: &Authenticated) -> Response {
        let inv = &call.inv;
        let msg = match &inv.chunked {
            Some(reference) => match self.fetch_inbound(inv, reference).await {
                Ok(msg) => msg,
                Err(response) => return *response,
            },
            None => inv.msg.clone(),
        };
        let result = match (&inv.target, &inv.origin) {
            (WireEntity::Actor(key), origin) => {
                let origin = match origin {
                    WireEntity::Actor(k) => Entity::Actor(k.clone()),
                    WireEntity::Capability { capid, binding } => Entity::Capability {
                        capid: capid.clone(),
                        binding: binding.clone(),
                    },
                    WireEntity::Host(_) => Entity::Host,
                };
                self.remote
                    .invoke_inbound(origin, key, &inv.operation, &msg)
                    .await
            }
            (WireEntity::Capability { capid, binding }, WireEntity::Actor(actor)) => {
                let route = RouteKey::new(capid.clone(), binding.clone());
                self.remote
                    .call_provider_inbound(actor, &route, &inv.operation, msg)
                    .await
            }
            (target, _) => {
                return Response::failure(
                    &inv.id,
                    ErrorKind::Failed,
                    format!("only actors may call {}", describe(target)),
                );
            }
        };
        match result {
            Ok(reply) => self.reply_payload(&inv.id, &inv.host_id, reply).await,
            Err(e @ HostError::ActorNotFound { .. }) => {
                Response::failure(&inv.id, ErrorKind::NotFound, e.to_string())
            }
            Err(e) => Response::failure(&inv.id, ErrorKind::Failed, e.to_string()),
        }
    }

    /// The payload of a verified chunked call: from the sender's own chunk
    /// subject, within the target's payload limit, one transfer of
    /// [`crate::LatticeLimits::transfers`] at a time.
    async fn fetch_inbound(
        &self,
        inv: &WireInvocation,
        reference: &crate::protocol::ChunkRef,
    ) -> Result<Vec<u8>, Box<Response>> {
        let limit = match &inv.target {
            WireEntity::Actor(key) => {
                let key = ActorKey::new(key.as_str()).ok();
                self.remote.host().payload_limit(key.as_ref())
            }
            _ => self.remote.host().payload_limit(None),
        };
        if let Err(reason) = chunk::check(reference, &self.bus.subjects, &inv.host_id, limit) {
            self.metrics.refused(
                Plane::Invocation,
                &Refusal::new(Reason::Mismatch, reason.clone()).by(&inv.host_id),
            );
            return Err(Box::new(Response::failure(
                &inv.id,
                ErrorKind::Malformed,
                reason,
            )));
        }
        let Ok(_permit) = tokio::time::timeout(
            self.bus.timeout,
            Arc::clone(&self.gates.transfers).acquire_owned(),
        )
        .await
        else {
            return Err(Box::new(Response::failure(
                &inv.id,
                ErrorKind::Busy,
                format!(
                    "host {} is receiving {} chunked payloads already; nothing ran, retry later",
                    self.keys.host_id, self.gates.limits.transfers
                ),
            )));
        };
        chunk::fetch(
            &self.bus.client,
            &self.bus.replies,
            &self.keys.identity,
            reference,
            self.bus.timeout,
        )
        .await
        .map_err(|e| {
            Box::new(Response::failure(
                &inv.id,
                ErrorKind::Malformed,
                e.to_string(),
            ))
        })
    }

    /// A successful reply, inline or offered in chunks to the caller
    /// (`caller`, whose call verified).
    async fn reply_payload(&self, id: &str, caller: &str, msg: Vec<u8>) -> Response {
        let max_payload = self
            .bus
            .max_payload
            .load(std::sync::atomic::Ordering::Relaxed);
        if msg.len() <= chunk::inline_limit(max_payload) {
            return Response::success(id, msg);
        }
        match chunk::offer(
            chunk::Offer {
                client: &self.bus.client,
                subjects: &self.bus.subjects,
                owner: &self.keys.host_id,
                receiver: caller,
                max_payload,
                ttl: self.bus.timeout * 4,
                on_refused: self.chunk_refusals(),
            },
            msg,
        )
        .await
        {
            Ok(reference) => {
                let mut response = Response::success(id, Vec::new());
                response.chunked = Some(reference);
                response
            }
            Err(e) => Response::failure(id, ErrorKind::Failed, e.to_string()),
        }
    }

    /// Authenticates the answer to an authenticated call: tagged under the
    /// pair's session key, or signed with this host's token attached.
    fn seal_response(&self, call: &Authenticated, mut response: Response) -> Response {
        response.host = self.keys.host_id.clone();
        if let Some(pair) = &call.pair {
            let parts = response.signed_parts(&call.reply);
            if let Some(tag) = self
                .keys
                .sessions
                .tag_response(&call.inv.host_id, pair, &parts)
            {
                response.tag = Some(tag);
                return response;
            }
        }
        response.session = Some(self.keys.sessions.token());
        self.sign_response(response, &call.reply)
    }

    fn sign_response(&self, mut response: Response, reply: &str) -> Response {
        response.host = self.keys.host_id.clone();
        match antiforgery::sign_response(&self.keys.identity, &response, reply) {
            Ok(jwt) => response.jwt = jwt,
            Err(e) => tracing::error!(error = %e, "could not sign a lattice response"),
        }
        response
    }
}

/// A target as people read it.
pub(crate) fn describe(target: &WireEntity) -> String {
    match target {
        WireEntity::Actor(key) => format!("actor {}", shorten(key)),
        WireEntity::Capability { capid, binding } => {
            format!("{} (binding `{}`)", shorten(capid), shorten(binding))
        }
        WireEntity::Host(key) => format!("host {}", shorten(key)),
    }
}
