//! [`Lattice`]: one host's membership of a lattice.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_nats::{Client, Message};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use tokio::task::JoinHandle;
use waxosuit_claims::{KeyKind, KeyPair, Verifier};
use waxosuit_host::{Entity, Host, HostError, HostEvent, RemoteError, RemoteLink, RouteKey};
use waxosuit_provider::CapabilityProvider;

use crate::LatticeError;
use crate::antiforgery::{self, TrustPolicy};
use crate::chunk;
use crate::client::{connect, gather, merge, request};
use crate::protocol::{
    ActorEntry, AuctionBid, AuctionRequest, BindingChange, BindingEntry, CloudEvent, Command,
    CommandReply, ErrorKind, HostEntry, InventoryKind, Invocation, PROTOCOL_VERSION, Probe,
    ProviderEntry, Response, Subjects, WireEntity, decode, encode, encode_sized, invocation_hash,
};
use crate::session::{Opened, Sessions, Signed};

/// Makes providers on request (`waxosuit lattice start provider`); the
/// embedder knows which backends exist, the lattice does not.
pub trait ProviderFactory: Send + Sync + 'static {
    /// A new provider for `capid`, from the named backend or the default.
    fn create(
        &self,
        capid: &str,
        backend: Option<&str>,
    ) -> Result<Arc<dyn CapabilityProvider>, String>;
}

/// How a host joins a lattice.
pub struct LatticeConfig {
    /// NATS server URL.
    pub url: String,
    /// Subject prefix ([`crate::protocol::DEFAULT_PREFIX`] unless set).
    pub prefix: String,
    /// NATS credentials file.
    pub creds: Option<PathBuf>,
    /// Timeout for every request across the lattice and window for
    /// inventory answers.
    pub timeout: Duration,
    /// The host's server key: it signs every invocation this host sends.
    pub identity: KeyPair,
    /// Whose invocations are accepted.
    pub trust: TrustPolicy,
    /// Makes providers on request; without one, provider start commands are
    /// refused.
    pub providers: Option<Arc<dyn ProviderFactory>>,
}

impl LatticeConfig {
    /// Defaults: prefix `waxosuit`, 2 s timeout, no credentials.
    pub fn new(url: impl Into<String>, identity: KeyPair, trust: TrustPolicy) -> LatticeConfig {
        LatticeConfig {
            url: url.into(),
            prefix: crate::protocol::DEFAULT_PREFIX.to_string(),
            creds: None,
            timeout: Duration::from_secs(2),
            identity,
            trust,
            providers: None,
        }
    }
}

/// The lattice-wide state every host keeps a copy of.
#[derive(Default)]
struct State {
    bindings: BTreeMap<(String, RouteKey), BTreeMap<String, String>>,
    /// Actor key → claims (JWT) as last announced by any host.
    claims: HashMap<String, String>,
}

struct Inner {
    host: Host,
    client: Client,
    subjects: Subjects,
    identity: KeyPair,
    host_id: String,
    trust: TrustPolicy,
    verifier: Verifier,
    /// MAC sessions with the other hosts (the fast path of anti-forgery).
    sessions: Sessions,
    timeout: Duration,
    /// The server's `max_payload`, read at connect and after each reconnect
    /// (another server of a cluster may differ) rather than on every call.
    max_payload: AtomicUsize,
    factory: Option<Arc<dyn ProviderFactory>>,
    state: Mutex<State>,
    /// Reconciliation runs one at a time, so a binding is never made twice.
    reconcile: tokio::sync::Mutex<()>,
    /// Subscriptions serving local actors and providers, by subject.
    serving: Mutex<HashMap<String, Serving>>,
    /// Held while a subscription is made, so each target is served once.
    subscribing: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A host's membership of a lattice. Cheap to clone.
#[derive(Clone)]
pub struct Lattice {
    inner: Arc<Inner>,
}

/// A running subscription for a local target.
struct Serving {
    /// Asks the task to drain its subscription and end.
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What a local subscription serves.
#[derive(Clone)]
enum Served {
    Actor(String),
    Provider(RouteKey),
}

impl Lattice {
    /// Connects `host` to the lattice: serves its actors and providers,
    /// answers inventory and commands, learns the lattice-wide bindings and
    /// actor claims from the other hosts, and routes calls the host cannot
    /// serve itself over NATS.
    pub async fn join(host: Host, config: LatticeConfig) -> Result<Lattice, LatticeError> {
        if config.identity.kind() != KeyKind::Server {
            return Err(LatticeError::Config {
                reason: format!(
                    "a host identity must be a server key (N…), not a {} key; create one with \
                     `waxosuit keys gen server`",
                    config.identity.kind()
                ),
            });
        }
        let subjects = Subjects::new(&config.prefix)?;
        let host_id = config.identity.public_key();
        let (connected_tx, mut connected_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = connect(
            &config.url,
            format!("waxosuit host {host_id}"),
            config.creds.as_deref(),
            config.timeout,
            Some(connected_tx),
        )
        .await?;
        let max_payload = client.server_info().max_payload;
        let sessions = Sessions::new(&config.identity).map_err(|e| LatticeError::Config {
            reason: format!("cannot sign this host's session token: {e}"),
        })?;
        let inner = Arc::new(Inner {
            host: host.clone(),
            client,
            subjects,
            trust: config.trust.with(&host_id),
            identity: config.identity,
            host_id,
            verifier: Verifier::new(),
            sessions,
            timeout: config.timeout,
            max_payload: AtomicUsize::new(max_payload),
            factory: config.providers,
            state: Mutex::new(State::default()),
            reconcile: tokio::sync::Mutex::new(()),
            serving: Mutex::new(HashMap::new()),
            subscribing: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
        });
        let lattice = Lattice { inner };
        let inner = &lattice.inner;

        // Watch the host before looking at it, so nothing starts unseen.
        let events = host.subscribe();
        inner.spawn_task(Arc::clone(inner).follow_host(events));
        inner.spawn_task(Arc::clone(inner).answer_inventory().await?);
        inner.spawn_task(Arc::clone(inner).follow_bindings().await?);
        inner.spawn_task(Arc::clone(inner).follow_events().await?);
        inner.spawn_task(Arc::clone(inner).answer_commands().await?);
        inner.spawn_task(Arc::clone(inner).answer_auctions().await?);
        inner.serve_local().await?;
        host.set_remote_link(Arc::new(Link {
            inner: Arc::downgrade(inner),
        }));
        inner.sync().await;
        inner.publish_event(
            "host_started",
            &inner.host_id,
            json!({ "labels": inner.labels() }),
        );
        // After a reconnect (nats-server restarted), catch up on what changed.
        let weak = Arc::downgrade(inner);
        inner.spawn_task(async move {
            let mut first = true;
            while connected_rx.recv().await.is_some() {
                if std::mem::take(&mut first) {
                    continue;
                }
                let Some(inner) = weak.upgrade() else { break };
                inner
                    .max_payload
                    .store(inner.client.server_info().max_payload, Ordering::Relaxed);
                inner.sync().await;
            }
        });
        tracing::info!(host = %lattice.host_id(), prefix = %lattice.inner.subjects.prefix(), "joined the lattice");
        Ok(lattice)
    }

    /// This host's server key.
    pub fn host_id(&self) -> &str {
        &self.inner.host_id
    }

    /// The lattice's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    /// Binds an actor (running anywhere) to a capability, lattice-wide: the
    /// host running the actor records it, every host running the provider
    /// binds it, and the binding outlives provider restarts.
    pub async fn put_binding(
        &self,
        actor: &str,
        capid: &str,
        binding: &str,
        values: BTreeMap<String, String>,
    ) -> Result<(), LatticeError> {
        let route = RouteKey::new(capid, binding);
        let change = BindingChange::Put(BindingEntry {
            actor: actor.to_string(),
            capid: route.capid,
            binding: route.binding,
            values,
        });
        self.inner.apply(change.clone()).await;
        self.inner
            .publish_json(self.inner.subjects.bindings(), &change)
            .await
    }

    /// Removes a lattice-wide binding.
    pub async fn remove_binding(
        &self,
        actor: &str,
        capid: &str,
        binding: &str,
    ) -> Result<(), LatticeError> {
        let route = RouteKey::new(capid, binding);
        let change = BindingChange::Remove {
            actor: actor.to_string(),
            capid: route.capid,
            binding: route.binding,
        };
        self.inner.apply(change.clone()).await;
        self.inner
            .publish_json(self.inner.subjects.bindings(), &change)
            .await
    }

    /// Whether `actor`'s claims are known here (it runs somewhere in the
    /// lattice and has announced itself).
    pub fn knows_actor(&self, actor: &str) -> bool {
        lock(&self.inner.state).claims.contains_key(actor)
    }

    /// Asks the other hosts again for actors and bindings and re-applies
    /// the bindings (also done after every reconnect).
    pub async fn sync(&self) {
        self.inner.sync().await;
    }

    /// Calls an actor anywhere in the lattice from this host.
    pub async fn call_actor(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LatticeError> {
        let origin = WireEntity::Host(self.inner.host_id.clone());
        self.inner
            .invoke(
                origin,
                WireEntity::Actor(actor.to_string()),
                operation,
                payload,
            )
            .await
    }

    /// The hosts this host shares a MAC session with (see
    /// [`crate::session`]), sorted.
    pub fn session_peers(&self) -> Vec<String> {
        self.inner.sessions.peers()
    }

    /// Leaves the lattice: stops serving (so this host drops out of every
    /// queue group), announces it, and stops routing calls over NATS.
    pub async fn leave(&self) {
        let inner = &self.inner;
        inner.host.clear_remote_link();
        let serving: Vec<Serving> = lock(&inner.serving).drain().map(|(_, s)| s).collect();
        let mut draining = Vec::with_capacity(serving.len());
        for s in serving {
            let _ = s.stop.send(());
            draining.push(s.task);
        }
        // Wait until the server has dropped every subscription (so no call
        // is routed to this host any more) and what it had sent is taken.
        let _ = tokio::time::timeout(inner.timeout, futures_util::future::join_all(draining)).await;
        for task in lock(&inner.tasks).drain(..) {
            task.abort();
        }
        inner.publish_event("host_stopped", &inner.host_id, json!({}));
        // Bounded like the drain above: leaving never hangs on the server.
        let _ = tokio::time::timeout(inner.timeout, inner.client.flush()).await;
        tracing::info!(host = %inner.host_id, "left the lattice");
    }
}

/// The host's [`RemoteLink`]: calls it cannot serve go over NATS.
struct Link {
    inner: Weak<Inner>,
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
            _ => WireEntity::Host(inner.host_id.clone()),
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
}

/// How long a call waits for a target nobody serves yet (see
/// `Inner::exchange`).
const NO_RESPONDERS_GRACE: Duration = Duration::from_millis(310);

fn left() -> RemoteError {
    Box::new(LatticeError::Transport {
        operation: "call",
        reason: "this host has left the lattice".to_string(),
    })
}

fn describe(target: &WireEntity) -> String {
    match target {
        WireEntity::Actor(key) => format!("actor {key}"),
        WireEntity::Capability { capid, binding } => format!("{capid} (binding `{binding}`)"),
        WireEntity::Host(key) => format!("host {key}"),
    }
}

impl Inner {
    fn spawn_task(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        lock(&self.tasks).push(tokio::spawn(fut));
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.host.info().labels;
        labels.insert("hostcore.os".into(), std::env::consts::OS.into());
        labels.insert("hostcore.osfamily".into(), std::env::consts::FAMILY.into());
        labels.insert("hostcore.arch".into(), std::env::consts::ARCH.into());
        labels
    }

    fn subject_of(&self, served: &Served) -> String {
        match served {
            Served::Actor(key) => self.subjects.actor(key),
            Served::Provider(route) => self.subjects.provider(&route.capid, &route.binding),
        }
    }

    /// Subscribes to calls for a local actor or provider, in the queue group
    /// of its subject so that every host running it shares the calls.
    async fn serve(self: &Arc<Self>, served: Served) -> Result<(), LatticeError> {
        let subject = self.subject_of(&served);
        // Host events, resyncs and start commands may serve the same target
        // at once; a second subscription would be dropped again, losing any
        // call already routed to it.
        let _guard = self.subscribing.lock().await;
        if lock(&self.serving).contains_key(&subject) {
            return Ok(());
        }
        let mut sub = self
            .client
            .queue_subscribe(subject.clone(), subject.clone())
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "subscribe",
                reason: e.to_string(),
            })?;
        let inner = Arc::clone(self);
        let target = served.clone();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut draining = false;
            loop {
                tokio::select! {
                    msg = sub.next() => {
                        let Some(msg) = msg else { break };
                        let inner = Arc::clone(&inner);
                        let target = target.clone();
                        tokio::spawn(async move { inner.handle_invocation(msg, target).await });
                    }
                    _ = &mut stopped, if !draining => {
                        // Unsubscribe but answer what the server already
                        // routed here; the stream ends once it confirms.
                        draining = true;
                        if sub.drain().await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        if let Some(old) = lock(&self.serving).insert(subject, Serving { stop, task }) {
            old.task.abort();
        }
        Ok(())
    }

    /// Stops serving a target: the server stops routing calls here, and
    /// calls already on their way are still answered.
    fn unserve(&self, served: &Served) {
        if let Some(serving) = lock(&self.serving).remove(&self.subject_of(served)) {
            let _ = serving.stop.send(());
        }
    }

    async fn handle_invocation(&self, msg: Message, served: Served) {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        let response = self.answer(&msg.payload, &served).await;
        let bytes = match encode_sized(&response, response.msg.len()) {
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
        if let Err(e) = self.client.publish(reply, bytes.into()).await {
            tracing::warn!(error = %e, "could not send a lattice reply");
        }
    }

    async fn answer(&self, payload: &[u8], served: &Served) -> Response {
        let probe: Probe = match decode("invocation", payload) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "refused a malformed invocation");
                return Response::failure("", ErrorKind::Malformed, e.to_string());
            }
        };
        let id = probe.id.unwrap_or_default();
        match probe.v {
            Some(PROTOCOL_VERSION) => {}
            Some(got) => {
                let e = LatticeError::Version {
                    got,
                    supported: PROTOCOL_VERSION,
                };
                tracing::warn!(error = %e, "refused an invocation");
                return Response::failure(&id, ErrorKind::Version, e.to_string());
            }
            None => {
                return Response::failure(
                    &id,
                    ErrorKind::Malformed,
                    "the message has no protocol version field `v`",
                );
            }
        }
        let mut inv: Invocation = match decode("invocation", payload) {
            Ok(inv) => inv,
            Err(e) => {
                tracing::warn!(error = %e, "refused a malformed invocation");
                return Response::failure(&id, ErrorKind::Malformed, e.to_string());
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
            return self.refuse(
                &inv,
                format!(
                    "addressed to {} but sent to the subject of {}",
                    describe(&inv.target),
                    describe(&expected)
                ),
            );
        }
        // Cheap check first: do not fetch chunks for a host nobody trusts.
        if let Err(reason) = self.trust.check(&inv.host_id) {
            return self.refuse(&inv, reason);
        }
        let msg = match &inv.chunked {
            Some(reference) => match chunk::fetch(&self.client, reference, self.timeout).await {
                Ok(m) => m,
                Err(e) => return Response::failure(&inv.id, ErrorKind::Malformed, e.to_string()),
            },
            None => std::mem::take(&mut inv.msg),
        };
        if let Some(token) = &inv.session_token {
            match self.sessions.learn(&self.verifier, &self.trust, token) {
                Ok(host) if host == inv.host_id => {}
                Ok(host) => {
                    return self.refuse(
                        &inv,
                        format!("it carries the session token of {host}, not of its sender"),
                    );
                }
                Err(reason) => return self.refuse(&inv, reason),
            }
        }
        let origin_url = inv.origin.url();
        let target_url = format!("{}/{}", inv.target.url(), inv.operation);
        let signed = Signed {
            id: &inv.id,
            origin_url: &origin_url,
            target_url: &target_url,
            msg: &msg,
        };
        let tagged = match &inv.session {
            Some(proof) => match self.sessions.open(&inv.host_id, proof, &signed) {
                Ok(opened) => opened == Opened::Authentic,
                Err(reason) => return self.refuse(&inv, reason),
            },
            None => false,
        };
        if !tagged {
            // Slow path: signed claims, and tell the sender our session so
            // its next calls can take the fast one.
            if inv.encoded_claims.is_empty() {
                let mut response = Response::failure(
                    &inv.id,
                    ErrorKind::Session,
                    "this host shares no session with the sender; send signed claims",
                );
                response.session = Some(self.sessions.token().to_string());
                return response;
            }
            if let Err(reason) = antiforgery::verify(&self.verifier, &self.trust, &inv, &msg) {
                return self.refuse(&inv, reason);
            }
        }
        let mut response = self.run(&inv, msg).await;
        if !tagged {
            response.session = Some(self.sessions.token().to_string());
        }
        response
    }

    /// Runs an authenticated invocation.
    async fn run(&self, inv: &Invocation, msg: Vec<u8>) -> Response {
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
                self.host
                    .invoke_inbound(origin, key, &inv.operation, &msg)
                    .await
            }
            (WireEntity::Capability { capid, binding }, WireEntity::Actor(actor)) => {
                let route = RouteKey::new(capid.clone(), binding.clone());
                self.host
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
            Ok(reply) => self.reply(&inv.id, reply).await,
            Err(e @ HostError::ActorNotFound { .. }) => {
                Response::failure(&inv.id, ErrorKind::NotFound, e.to_string())
            }
            Err(e) => Response::failure(&inv.id, ErrorKind::Failed, e.to_string()),
        }
    }

    fn refuse(&self, inv: &Invocation, reason: String) -> Response {
        tracing::warn!(
            from = %inv.host_id,
            target = %describe(&inv.target),
            operation = %inv.operation,
            %reason,
            "refused a forged invocation"
        );
        Response::failure(&inv.id, ErrorKind::Forged, reason)
    }

    async fn reply(&self, id: &str, msg: Vec<u8>) -> Response {
        let max_payload = self.max_payload.load(Ordering::Relaxed);
        if msg.len() <= chunk::inline_limit(max_payload) {
            return Response {
                v: PROTOCOL_VERSION,
                invocation_id: id.to_string(),
                msg,
                error: None,
                chunked: None,
                session: None,
            };
        }
        match chunk::offer(
            &self.client,
            &self.subjects,
            msg,
            max_payload,
            self.timeout * 4,
        )
        .await
        {
            Ok(reference) => Response {
                v: PROTOCOL_VERSION,
                invocation_id: id.to_string(),
                msg: Vec::new(),
                error: None,
                chunked: Some(reference),
                session: None,
            },
            Err(e) => Response::failure(id, ErrorKind::Failed, e.to_string()),
        }
    }

    /// Sends one invocation and waits for its response: tagged with the
    /// sessions of the hosts known to answer on the subject, or signed when
    /// there are none, or when the host that took it asks for signed claims.
    async fn invoke(
        &self,
        origin: WireEntity,
        target: WireEntity,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, LatticeError> {
        let id = nuid::next().to_string();
        let subject = match &target {
            WireEntity::Actor(key) => self.subjects.actor(key),
            WireEntity::Capability { capid, binding } => self.subjects.provider(capid, binding),
            WireEntity::Host(key) => self.subjects.control(key),
        };
        let origin_url = origin.url();
        let target_url = format!("{}/{operation}", target.url());
        let max_payload = self.max_payload.load(Ordering::Relaxed);
        let mut timeout = self.timeout;
        let (msg, chunked, hash) = if payload.len() > chunk::inline_limit(max_payload) {
            // Signed (below), and the payload is about to leave: hash it now.
            let hash = invocation_hash(&origin_url, &target_url, &payload);
            let reference = chunk::offer(
                &self.client,
                &self.subjects,
                payload,
                max_payload,
                self.timeout,
            )
            .await?;
            // The receiver pulls every chunk before it starts the call.
            timeout += self.timeout * reference.chunks;
            (Vec::new(), Some(reference), Some(hash))
        } else {
            (payload, None, None)
        };
        // Chunks are served once, so a chunked call cannot be resent after a
        // `session` answer: it always carries signed claims (whose cost is
        // small next to the transfer).
        let session = match chunked {
            None => self.sessions.seal(
                &subject,
                &Signed {
                    id: &id,
                    origin_url: &origin_url,
                    target_url: &target_url,
                    msg: &msg,
                },
            ),
            Some(_) => None,
        };
        let mut inv = Invocation {
            v: PROTOCOL_VERSION,
            id: id.clone(),
            origin,
            target,
            operation: operation.to_string(),
            msg,
            encoded_claims: String::new(),
            host_id: self.host_id.clone(),
            chunked,
            session,
            session_token: None,
        };
        let mut resent = false;
        let response = loop {
            if inv.session.is_none() {
                let hash = match &hash {
                    Some(hash) => hash.clone(),
                    None => invocation_hash(&origin_url, &target_url, &inv.msg),
                };
                inv.encoded_claims = antiforgery::sign_hashed(
                    &self.identity,
                    &id,
                    origin_url.clone(),
                    target_url.clone(),
                    hash,
                )
                .map_err(|e| LatticeError::Transport {
                    operation: "signing an invocation",
                    reason: e.to_string(),
                })?;
                inv.session_token = Some(self.sessions.token().to_string());
            }
            let response = self.exchange(&subject, &inv, timeout).await?;
            if let Some(token) = &response.session {
                // The trust list says whose calls this host runs, not who may
                // answer its own: any host in the queue group can take a
                // call, and tagging for it only saves a round trip. (Its own
                // calls here still meet the trust check before any tag.)
                match self
                    .sessions
                    .learn(&self.verifier, &TrustPolicy::any_host(), token)
                {
                    Ok(host) => self.sessions.responded(&subject, &host),
                    Err(reason) => {
                        tracing::debug!(%reason, "not tagging calls for a responder");
                    }
                }
            }
            match &response.error {
                Some(error) if error.kind == ErrorKind::Session && !resent => {
                    resent = true;
                    inv.session = None;
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
                ErrorKind::Version => LatticeError::Version {
                    got: PROTOCOL_VERSION,
                    supported: response.v,
                },
                kind => LatticeError::Remote {
                    target: describe(target),
                    kind,
                    message: error.message,
                },
            });
        }
        if response.invocation_id != id {
            return Err(LatticeError::Malformed {
                what: "response",
                reason: "it answers another invocation".to_string(),
            });
        }
        match response.chunked {
            Some(reference) => chunk::fetch(&self.client, &reference, self.timeout).await,
            None => Ok(response.msg),
        }
    }

    /// One request on the bus and its decoded response.
    ///
    /// "No responders" is retried for a moment: an actor started a moment
    /// ago on another host, or a host re-subscribing after a reconnect, is
    /// not yet known to the server, and a caller would rather wait 200 ms
    /// than fail. Nothing ran, so the retry is safe.
    async fn exchange(
        &self,
        subject: &str,
        inv: &Invocation,
        timeout: Duration,
    ) -> Result<Response, LatticeError> {
        let body: Bytes = encode_sized(inv, inv.msg.len())?.into();
        let mut pause = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        let budget = NO_RESPONDERS_GRACE.min(timeout);
        let reply = loop {
            match request(
                &self.client,
                subject.to_string(),
                body.clone(),
                timeout,
                || describe(&inv.target),
                "request",
            )
            .await
            {
                Err(LatticeError::NoResponders { .. }) if waited + pause <= budget => {
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause *= 2;
                }
                result => break result?,
            }
        };
        let probe: Probe = decode("response", &reply.payload)?;
        if let Some(got) = probe.v
            && got != PROTOCOL_VERSION
        {
            return Err(LatticeError::Version {
                got,
                supported: PROTOCOL_VERSION,
            });
        }
        decode("response", &reply.payload)
    }

    fn publish_event(&self, what: &str, subject: &str, data: serde_json::Value) {
        let event = CloudEvent::new(&self.host_id, what, subject, data);
        let client = self.client.clone();
        let events = self.subjects.events();
        match serde_json::to_vec(&event) {
            Ok(body) => {
                tokio::spawn(async move {
                    let _ = client.publish(events, body.into()).await;
                });
            }
            Err(e) => tracing::warn!(error = %e, "could not encode an event"),
        }
    }

    async fn publish_json<T: serde::Serialize>(
        &self,
        subject: String,
        value: &T,
    ) -> Result<(), LatticeError> {
        let body = serde_json::to_vec(value).map_err(|e| LatticeError::Malformed {
            what: "outgoing message",
            reason: e.to_string(),
        })?;
        self.client
            .publish(subject, body.into())
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "publish",
                reason: e.to_string(),
            })
    }

    /// Turns host changes into lattice state, subscriptions and events.
    async fn follow_host(self: Arc<Self>, mut events: tokio::sync::broadcast::Receiver<HostEvent>) {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "lattice fell behind the host's events; resyncing"
                    );
                    self.resync_local().await;
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            match event {
                HostEvent::ActorStarted {
                    actor,
                    name,
                    claims,
                } => {
                    lock(&self.state)
                        .claims
                        .insert(actor.clone(), claims.clone());
                    if let Err(e) = self.serve(Served::Actor(actor.clone())).await {
                        tracing::error!(%actor, error = %e, "cannot serve the actor on the lattice");
                    }
                    self.publish_event(
                        "actor_started",
                        &actor,
                        json!({ "actor": actor, "name": name, "host": self.host_id, "claims": claims }),
                    );
                    self.reconcile_now().await;
                }
                HostEvent::ActorUpdated { actor, claims } => {
                    lock(&self.state)
                        .claims
                        .insert(actor.clone(), claims.clone());
                    self.publish_event(
                        "actor_updated",
                        &actor,
                        json!({ "actor": actor, "host": self.host_id, "claims": claims }),
                    );
                }
                HostEvent::ActorStopped { actor } => {
                    self.unserve(&Served::Actor(actor.clone()));
                    self.publish_event(
                        "actor_stopped",
                        &actor,
                        json!({ "actor": actor, "host": self.host_id }),
                    );
                }
                HostEvent::ProviderStarted {
                    route,
                    name,
                    version,
                } => {
                    if let Err(e) = self.serve(Served::Provider(route.clone())).await {
                        tracing::error!(capability = %route.capid, error = %e, "cannot serve the provider on the lattice");
                    }
                    self.publish_event(
                        "provider_started",
                        &format!("{}/{}", route.capid, route.binding),
                        json!({ "capid": route.capid, "binding": route.binding, "name": name, "version": version, "host": self.host_id }),
                    );
                    self.reconcile_now().await;
                }
                HostEvent::ProviderStopped { route } => {
                    self.unserve(&Served::Provider(route.clone()));
                    self.publish_event(
                        "provider_stopped",
                        &format!("{}/{}", route.capid, route.binding),
                        json!({ "capid": route.capid, "binding": route.binding, "host": self.host_id }),
                    );
                }
                HostEvent::BindingSet { actor, route } => self.publish_event(
                    "binding_set",
                    &format!("{actor}/{}/{}", route.capid, route.binding),
                    // Values may hold secrets: events never carry them.
                    json!({ "actor": actor, "capid": route.capid, "binding": route.binding, "host": self.host_id }),
                ),
                HostEvent::BindingRemoved { actor, route } => self.publish_event(
                    "binding_removed",
                    &format!("{actor}/{}/{}", route.capid, route.binding),
                    json!({ "actor": actor, "capid": route.capid, "binding": route.binding, "host": self.host_id }),
                ),
                HostEvent::ActorHealth {
                    actor,
                    healthy,
                    message,
                } => self.publish_event(
                    if healthy {
                        "actor_healthy"
                    } else {
                        "actor_unhealthy"
                    },
                    &actor,
                    json!({ "actor": actor, "healthy": healthy, "message": message, "host": self.host_id }),
                ),
                _ => {}
            }
        }
    }

    /// After missed host events: serve exactly what runs now.
    async fn resync_local(self: &Arc<Self>) {
        if let Err(e) = self.serve_local().await {
            tracing::error!(error = %e, "cannot serve this host's actors and providers on the lattice");
        }
        self.reconcile_now().await;
    }

    /// Serves every actor and provider the host runs now (idempotent) and
    /// records the actors' claims.
    async fn serve_local(self: &Arc<Self>) -> Result<(), LatticeError> {
        for actor in self.host.actors() {
            if let Some(jwt) = self.host.actor_claims(&actor.key) {
                lock(&self.state).claims.insert(actor.key.clone(), jwt);
            }
            self.serve(Served::Actor(actor.key)).await?;
        }
        for provider in self.host.providers() {
            self.serve(Served::Provider(provider.route)).await?;
        }
        Ok(())
    }

    /// Other hosts' events: learn the claims of actors they start.
    async fn follow_events(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.subjects.events()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Ok(event) = serde_json::from_slice::<CloudEvent>(&msg.payload) else {
                    continue;
                };
                if event.source.ends_with(&self.host_id) {
                    continue;
                }
                if event.kind == "dev.waxosuit.host_stopped"
                    && let Some(host) = event.source.rsplit('/').next()
                {
                    self.sessions.forget(host);
                    continue;
                }
                let learned = matches!(
                    event.kind.as_str(),
                    "dev.waxosuit.actor_started" | "dev.waxosuit.actor_updated"
                );
                let claims = event.data.get("claims").and_then(|c| c.as_str());
                let actor = event.data.get("actor").and_then(|c| c.as_str());
                if let (true, Some(actor), Some(claims)) = (learned, actor, claims) {
                    lock(&self.state)
                        .claims
                        .insert(actor.to_string(), claims.to_string());
                    self.reconcile_now().await;
                }
            }
        })
    }

    async fn subscribe(&self, subject: String) -> Result<async_nats::Subscriber, LatticeError> {
        self.client
            .subscribe(subject)
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "subscribe",
                reason: e.to_string(),
            })
    }

    async fn answer_inventory(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.subjects.inventory_all()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let kind = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(InventoryKind::parse);
                let body = match kind {
                    Some(InventoryKind::Hosts) => serde_json::to_vec(&[HostEntry {
                        id: self.host_id.clone(),
                        labels: self.labels(),
                        uptime_ms: self.host.info().uptime.as_millis() as u64,
                        version: PROTOCOL_VERSION,
                    }]),
                    Some(InventoryKind::Actors) => {
                        let actors: Vec<ActorEntry> = self
                            .host
                            .actors()
                            .into_iter()
                            .filter_map(|a| {
                                Some(ActorEntry {
                                    host: self.host_id.clone(),
                                    claims: self.host.actor_claims(&a.key)?,
                                    key: a.key,
                                    name: a.name,
                                })
                            })
                            .collect();
                        serde_json::to_vec(&actors)
                    }
                    Some(InventoryKind::Providers) => {
                        let providers: Vec<ProviderEntry> = self
                            .host
                            .providers()
                            .into_iter()
                            .map(|p| ProviderEntry {
                                host: self.host_id.clone(),
                                capid: p.route.capid,
                                binding: p.route.binding,
                                name: p.name,
                                version: p.version,
                            })
                            .collect();
                        serde_json::to_vec(&providers)
                    }
                    Some(InventoryKind::Bindings) => {
                        let bindings: Vec<BindingEntry> = lock(&self.state)
                            .bindings
                            .iter()
                            .map(|((actor, route), values)| BindingEntry {
                                actor: actor.clone(),
                                capid: route.capid.clone(),
                                binding: route.binding.clone(),
                                values: values.clone(),
                            })
                            .collect();
                        serde_json::to_vec(&bindings)
                    }
                    None => continue,
                };
                if let Ok(body) = body {
                    let _ = self.client.publish(reply, body.into()).await;
                }
            }
        })
    }

    async fn follow_bindings(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.subjects.bindings()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                match serde_json::from_slice::<BindingChange>(&msg.payload) {
                    Ok(change) => self.apply(change).await,
                    Err(e) => tracing::warn!(error = %e, "ignoring a malformed binding change"),
                }
            }
        })
    }

    async fn apply(self: &Arc<Self>, change: BindingChange) {
        match change {
            BindingChange::Put(entry) => {
                let route = RouteKey::new(entry.capid, entry.binding);
                let old = lock(&self.state)
                    .bindings
                    .insert((entry.actor.clone(), route.clone()), entry.values.clone());
                if old.as_ref().is_some_and(|v| *v != entry.values) {
                    // New values: re-bind so the provider sees them.
                    self.release(&entry.actor, &route).await;
                }
                self.reconcile_now().await;
            }
            BindingChange::Remove {
                actor,
                capid,
                binding,
            } => {
                let route = RouteKey::new(capid, binding);
                lock(&self.state)
                    .bindings
                    .remove(&(actor.clone(), route.clone()));
                self.release(&actor, &route).await;
            }
        }
    }

    async fn release(&self, actor: &str, route: &RouteKey) {
        let _guard = self.reconcile.lock().await;
        let result = if self.host.has_actor(actor) {
            if self.host.is_bound(actor, route) {
                self.host
                    .remove_binding(actor, &route.capid, &route.binding)
                    .await
            } else {
                Ok(())
            }
        } else {
            self.host.unbind_remote_actor(actor, route).await
        };
        if let Err(e) = result {
            tracing::warn!(%actor, capability = %route.capid, error = %e, "could not release a binding");
        }
    }

    /// Applies every lattice binding this host has a part in: records it for
    /// a local actor, binds a remote actor to a local provider.
    async fn reconcile_now(&self) {
        let _guard = self.reconcile.lock().await;
        let (bindings, claims) = {
            let state = lock(&self.state);
            (state.bindings.clone(), state.claims.clone())
        };
        for ((actor, route), values) in bindings {
            if self.host.is_bound(&actor, &route) {
                continue;
            }
            let result = if self.host.has_actor(&actor) {
                self.host
                    .set_binding(&actor, &route.capid, &route.binding, values)
                    .await
            } else if self.host.has_provider(&route) {
                let Some(jwt) = claims.get(&actor) else {
                    tracing::debug!(%actor, "binding waits for the actor to appear in the lattice");
                    continue;
                };
                match self.host.verify_remote_actor(jwt) {
                    Ok(verified) => self.host.bind_remote_actor(&verified, &route, values).await,
                    Err(e) => Err(e),
                }
            } else {
                continue;
            };
            if let Err(e) = result {
                tracing::warn!(%actor, capability = %route.capid, binding = %route.binding, error = %e, "could not establish a lattice binding");
            }
        }
    }

    /// Learns actors' claims and the binding table from the other hosts.
    async fn sync(&self) {
        let window = self.timeout.min(Duration::from_millis(500));
        match gather(
            &self.client,
            self.subjects.inventory(InventoryKind::Actors),
            Bytes::new(),
            window,
        )
        .await
        {
            Ok(replies) => {
                let actors: Vec<ActorEntry> = merge(replies);
                let mut state = lock(&self.state);
                for a in actors {
                    state.claims.insert(a.key, a.claims);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not ask the lattice for its actors"),
        }
        match gather(
            &self.client,
            self.subjects.inventory(InventoryKind::Bindings),
            Bytes::new(),
            window,
        )
        .await
        {
            Ok(replies) => {
                let bindings: Vec<BindingEntry> = merge(replies);
                let mut state = lock(&self.state);
                for b in bindings {
                    let route = RouteKey::new(b.capid, b.binding);
                    state.bindings.entry((b.actor, route)).or_insert(b.values);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not ask the lattice for its bindings"),
        }
        self.reconcile_now().await;
    }

    async fn answer_commands(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.subjects.control(&self.host_id)).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let inner = Arc::clone(&self);
                tokio::spawn(async move {
                    let (ok, message) = match inner.run_command(&msg.payload).await {
                        Ok(m) => (true, m),
                        Err(m) => (false, m),
                    };
                    let answer = CommandReply {
                        host: inner.host_id.clone(),
                        ok,
                        message,
                    };
                    if let Ok(body) = encode(&answer) {
                        let _ = inner.client.publish(reply, body.into()).await;
                    }
                });
            }
        })
    }

    async fn run_command(self: &Arc<Self>, payload: &[u8]) -> Result<String, String> {
        let probe: Probe = decode("command", payload).map_err(|e| e.to_string())?;
        if let Some(got) = probe.v
            && got != PROTOCOL_VERSION
        {
            return Err(LatticeError::Version {
                got,
                supported: PROTOCOL_VERSION,
            }
            .to_string());
        }
        let command: Command = decode("command", payload).map_err(|e| e.to_string())?;
        tracing::info!(?command, "lattice command");
        match command {
            Command::StartActor {
                module, chunked, ..
            } => {
                let module = match chunked {
                    Some(reference) => chunk::fetch(&self.client, &reference, self.timeout)
                        .await
                        .map_err(|e| e.to_string())?,
                    None => module,
                };
                let info = self
                    .host
                    .add_actor(&module, "a lattice start command", None)
                    .await
                    .map_err(|e| e.to_string())?;
                // Served before the answer (the host event would do it a
                // moment later), so whoever started it can call it at once.
                self.serve(Served::Actor(info.key.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                // Bounded: an answer must not wait on a broken connection.
                let _ = tokio::time::timeout(self.timeout, self.client.flush()).await;
                Ok(format!("started actor {} ({})", info.name, info.key))
            }
            Command::StopActor { actor, .. } => {
                self.host
                    .remove_actor(&actor)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("stopped actor {actor}"))
            }
            Command::StartProvider {
                capid,
                backend,
                binding,
                ..
            } => {
                let factory = self
                    .factory
                    .as_ref()
                    .ok_or_else(|| "this host does not start providers on request".to_string())?;
                let provider = factory.create(&capid, backend.as_deref())?;
                let route = self
                    .host
                    .add_provider(&binding, provider)
                    .await
                    .map_err(|e| e.to_string())?;
                self.serve(Served::Provider(route.clone()))
                    .await
                    .map_err(|e| e.to_string())?;
                // Bounded: an answer must not wait on a broken connection.
                let _ = tokio::time::timeout(self.timeout, self.client.flush()).await;
                Ok(format!(
                    "started provider {} (binding `{}`)",
                    route.capid, route.binding
                ))
            }
            Command::StopProvider { capid, binding, .. } => {
                self.host
                    .remove_provider(&capid, &binding)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("stopped provider {capid} (binding `{binding}`)"))
            }
        }
    }

    async fn answer_auctions(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.subjects.auction()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let Ok(request) = serde_json::from_slice::<AuctionRequest>(&msg.payload) else {
                    continue;
                };
                let labels = self.labels();
                let fits = request
                    .constraints
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v));
                let free = request
                    .actor
                    .as_deref()
                    .is_none_or(|a| !self.host.has_actor(a));
                if fits && free {
                    let bid = AuctionBid {
                        host: self.host_id.clone(),
                        actors: self.host.actors().len(),
                    };
                    if let Ok(body) = serde_json::to_vec(&bid) {
                        let _ = self.client.publish(reply, body.into()).await;
                    }
                }
            }
        })
    }
}
