//! [`Lattice`]: one host's membership of a lattice, and the state its parts
//! share. Each concern lives in its own module: calls out ([`crate::invoke`]),
//! calls in ([`crate::server`]), binding replication ([`crate::bindings`]),
//! inventory ([`crate::inventory`]), commands and auctions
//! ([`crate::control`]), events ([`crate::events`]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::Message;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use waxosuit_claims::{KeyKind, KeyPair, Verifier};
use waxosuit_host::{ActorKey, Host, RemoteAttachment, RouteKey};
use waxosuit_policy::Policy;
use waxosuit_provider::CapabilityProvider;

use crate::LatticeError;
use crate::auth::{self, ReplayGuard, TrustPolicy};
use crate::backlog;
use crate::client::connect;
use crate::error::FactoryError;
use crate::metrics::{LatticeMetrics, Plane};
use crate::protocol::{BindingChange, BindingEntry, CloudEvent, Subjects, WireEntity};
use crate::replies::Replies;
use crate::routes::Routes;
use crate::server::Serving;
use crate::session::{ROTATE_EVERY, Sessions};

/// Whether the actor named by `key` (text from the wire or the lattice's
/// own tables, unchecked) runs on `host`: what is not an actor key runs
/// nowhere.
pub(crate) fn runs_here(host: &Host, key: &str) -> bool {
    ActorKey::new(key).is_ok_and(|key| host.has_actor(&key))
}

/// Makes providers on request (`waxosuit lattice start provider`); the
/// embedder knows which backends exist, the lattice does not.
pub trait ProviderFactory: Send + Sync + 'static {
    /// A new provider for `capid`, from the named backend or the default.
    fn create(
        &self,
        capid: &str,
        backend: Option<&str>,
    ) -> Result<Arc<dyn CapabilityProvider>, FactoryError>;
}

/// Bounds on what other hosts (and anyone on the bus) can make this host do.
#[derive(Debug, Clone, Copy)]
pub struct LatticeLimits {
    /// Calls handled at once per served actor or provider; past it, a call
    /// is answered `busy` at once instead of queueing without bound.
    pub inbound_per_target: usize,
    /// Chunked payloads fetched at once (calls and start commands).
    pub transfers: usize,
    /// Commands run at once.
    pub commands: usize,
    /// The largest actor module a start command may deliver.
    pub max_module_bytes: usize,
    /// The largest chunked response accepted from another host.
    pub max_response_bytes: usize,
    /// Authenticated message ids remembered against replays.
    pub replay_memory: usize,
}

impl Default for LatticeLimits {
    fn default() -> Self {
        LatticeLimits {
            inbound_per_target: 256,
            transfers: 4,
            commands: 4,
            max_module_bytes: 64 << 20,
            max_response_bytes: 64 << 20,
            replay_memory: 200_000,
        }
    }
}

/// How long a leaving host keeps serving after announcing it, so that the
/// others stop picking it before it stops answering.
const LEAVE_NOTICE: Duration = Duration::from_millis(150);

/// The longest timeout a lattice accepts: longer ones would only keep
/// memory and tasks of lost calls around (and overflow deadlines).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

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
    /// The host's server key: it signs every message this host sends.
    pub identity: KeyPair,
    /// Whose messages are accepted (hosts and admins).
    pub trust: TrustPolicy,
    /// Makes providers on request; without one, provider start commands are
    /// refused.
    pub providers: Option<Arc<dyn ProviderFactory>>,
    /// Consulted on every command (`data.waxosuit.command.allow`).
    pub policy: Option<Arc<Policy>>,
    /// Concurrency and size bounds.
    pub limits: LatticeLimits,
}

impl LatticeConfig {
    /// Defaults: prefix `waxosuit`, 2 s timeout, no credentials, no policy.
    pub fn new(url: impl Into<String>, identity: KeyPair, trust: TrustPolicy) -> LatticeConfig {
        LatticeConfig {
            url: url.into(),
            prefix: crate::protocol::DEFAULT_PREFIX.to_string(),
            creds: None,
            timeout: Duration::from_secs(2),
            identity,
            trust,
            providers: None,
            policy: None,
            limits: LatticeLimits::default(),
        }
    }
}

/// The NATS side: connection, subjects, reply inboxes.
pub(crate) struct Bus {
    pub(crate) client: Client,
    pub(crate) subjects: Subjects,
    pub(crate) replies: Replies,
    pub(crate) timeout: Duration,
    /// The server's `max_payload`, read at connect and after each reconnect
    /// (another server of a cluster may differ) rather than on every call.
    pub(crate) max_payload: AtomicUsize,
}

/// Identity, trust and the proofs that go with them.
pub(crate) struct Keys {
    pub(crate) identity: KeyPair,
    pub(crate) host_id: String,
    pub(crate) trust: TrustPolicy,
    pub(crate) verifier: Verifier,
    pub(crate) replay: ReplayGuard,
    /// MAC sessions with the other hosts (the fast path of authentication).
    pub(crate) sessions: Sessions,
}

/// Semaphores and budgets that bound inbound work.
pub(crate) struct Gates {
    pub(crate) limits: LatticeLimits,
    pub(crate) transfers: Arc<Semaphore>,
    pub(crate) commands: Arc<Semaphore>,
    /// Signed `session` and `busy` answers to calls that came without a
    /// session cost a signature each, and anyone can provoke one in a
    /// trusted host's name: a token bucket per claimed sender bounds them,
    /// so a flood in one host's name does not silence the answers to others.
    signed_refusals: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Signed refusals allowed per claimed sender per second (and in one burst).
const SIGNED_REFUSALS_PER_SECOND: f64 = 64.0;

/// Senders whose refusal budgets are remembered; past it they start over.
const REFUSAL_BUDGETS: usize = 4096;

impl Gates {
    /// Whether one more signed refusal to `sender` may be made now.
    pub(crate) fn may_sign_refusal(&self, sender: &str) -> bool {
        let mut buckets = self.signed_refusals.lock();
        if buckets.len() >= REFUSAL_BUDGETS && !buckets.contains_key(sender) {
            buckets.clear();
        }
        let now = Instant::now();
        let (tokens, last) = *buckets
            .entry(sender.to_string())
            .or_insert((SIGNED_REFUSALS_PER_SECOND, now));
        let refilled = (tokens
            + now.duration_since(last).as_secs_f64() * SIGNED_REFUSALS_PER_SECOND)
            .min(SIGNED_REFUSALS_PER_SECOND);
        let allowed = refilled >= 1.0;
        buckets.insert(
            sender.to_string(),
            (if allowed { refilled - 1.0 } else { refilled }, now),
        );
        allowed
    }
}

/// One lattice-wide binding as this host knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindingRecord {
    /// The values as shown to the lattice (redacted).
    pub(crate) shown: BTreeMap<String, String>,
    pub(crate) redacted: Vec<String>,
    pub(crate) owner: String,
    pub(crate) rev: String,
}

/// The lattice-wide state every host keeps a copy of.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) bindings: BTreeMap<(String, RouteKey), BindingRecord>,
    /// Actor key → claims (JWT) as last announced by a trusted host.
    pub(crate) claims: HashMap<String, String>,
    /// Real binding values this host made (as owner) or fetched for a
    /// provider it serves: (actor, route) → (rev, values). Never sent
    /// anywhere but encrypted to a trusted host that asks.
    pub(crate) secrets: HashMap<(String, RouteKey), (String, BTreeMap<String, String>)>,
}

pub(crate) struct Inner {
    /// The host, through the attachment that makes this lattice its
    /// transport (the only way to its inbound entry points).
    pub(crate) remote: RemoteAttachment,
    pub(crate) bus: Bus,
    pub(crate) keys: Keys,
    pub(crate) metrics: LatticeMetrics,
    pub(crate) gates: Gates,
    pub(crate) factory: Option<Arc<dyn ProviderFactory>>,
    pub(crate) policy: Option<Arc<Policy>>,
    pub(crate) state: Mutex<State>,
    /// Reconciliation runs one at a time, so a binding is never made twice.
    pub(crate) reconcile: tokio::sync::Mutex<()>,
    pub(crate) serving: Serving,
    /// Which hosts serve which target, for sending each call to one.
    pub(crate) routes: Routes,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A host's membership of a lattice. Cheap to clone.
#[derive(Clone)]
pub struct Lattice {
    pub(crate) inner: Arc<Inner>,
}

impl Lattice {
    /// Connects `host` to the lattice: serves its actors and providers,
    /// answers inventory and commands from trusted keys, learns the
    /// lattice-wide bindings and actor claims from trusted hosts, and routes
    /// calls the host cannot serve itself over NATS.
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
        if config.timeout.is_zero() || config.timeout > MAX_TIMEOUT {
            return Err(LatticeError::Config {
                reason: format!(
                    "a lattice timeout of {} ms is out of range; use 1 ms to {} s",
                    config.timeout.as_millis(),
                    MAX_TIMEOUT.as_secs()
                ),
            });
        }
        let (connected_tx, mut connected_rx) = tokio::sync::mpsc::unbounded_channel();
        let client = connect(
            &config.url,
            format!("waxosuit host {host_id}"),
            config.creds.as_deref(),
            config.timeout,
            &subjects,
            Some(connected_tx),
        )
        .await?;
        let max_payload = client.server_info().max_payload;
        let sessions = Sessions::new(&config.identity).map_err(|e| LatticeError::Config {
            reason: format!("cannot sign this host's session token: {e}"),
        })?;
        let replies = Replies::start(&client).await?;
        let limits = config.limits;
        let metrics = LatticeMetrics::new();
        host.register_metrics(Box::new(metrics.clone()));
        let inner = Arc::new(Inner {
            remote: host.attach_remote().map_err(|e| LatticeError::Config {
                reason: e.to_string(),
            })?,
            bus: Bus {
                client,
                subjects,
                replies,
                timeout: config.timeout,
                max_payload: AtomicUsize::new(max_payload),
            },
            keys: Keys {
                trust: config.trust.with(&host_id),
                identity: config.identity,
                host_id,
                verifier: Verifier::new(),
                replay: ReplayGuard::new(limits.replay_memory),
                sessions,
            },
            metrics,
            gates: Gates {
                limits,
                transfers: Arc::new(Semaphore::new(limits.transfers.max(1))),
                commands: Arc::new(Semaphore::new(limits.commands.max(1))),
                signed_refusals: Mutex::new(HashMap::new()),
            },
            factory: config.providers,
            policy: config.policy,
            state: Mutex::new(State::default()),
            reconcile: tokio::sync::Mutex::new(()),
            serving: Serving::default(),
            routes: Routes::default(),
            tasks: Mutex::new(Vec::new()),
        });
        let lattice = Lattice { inner };
        let inner = &lattice.inner;

        // Watch the host before looking at it, so nothing starts unseen.
        let events = host.subscribe();
        inner.spawn_task(Arc::clone(inner).follow_host(events));
        inner.spawn_task(Arc::clone(inner).answer_inventory().await?);
        inner.spawn_task(Arc::clone(inner).follow_bindings().await?);
        inner.spawn_task(Arc::clone(inner).answer_values().await?);
        inner.spawn_task(Arc::clone(inner).follow_events().await?);
        inner.spawn_task(Arc::clone(inner).answer_commands().await?);
        inner.spawn_task(Arc::clone(inner).answer_auctions().await?);
        inner.serve_local().await?;
        inner.remote.set_link(Arc::new(crate::invoke::Link {
            inner: Arc::downgrade(inner),
        }));
        inner.sync().await;
        inner.publish_event(
            "host_started",
            &inner.keys.host_id,
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
                inner.bus.max_payload.store(
                    inner.bus.client.server_info().max_payload,
                    Ordering::Relaxed,
                );
                inner.sync().await;
            }
        });
        // New session keys every half hour, well before tokens expire.
        let weak = Arc::downgrade(inner);
        inner.spawn_task(async move {
            let mut every = tokio::time::interval(ROTATE_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if let Err(e) = inner.keys.sessions.rotate(&inner.keys.identity) {
                    tracing::error!(error = %e, "could not start a new lattice session");
                }
            }
        });
        tracing::info!(host = %lattice.host_id(), prefix = %lattice.inner.bus.subjects.prefix(), "joined the lattice");
        Ok(lattice)
    }

    /// This host's server key.
    pub fn host_id(&self) -> &str {
        &self.inner.keys.host_id
    }

    /// The lattice's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.inner.bus.subjects
    }

    /// Binds an actor (running anywhere) to a capability, lattice-wide: the
    /// host running the actor records it, every host running the provider
    /// binds it, and the binding outlives provider restarts. This host keeps
    /// the values and hands them, encrypted, only to the hosts that serve the
    /// provider; the rest of the lattice sees them redacted.
    pub async fn put_binding(
        &self,
        actor: &str,
        capid: &str,
        binding: &str,
        values: BTreeMap<String, String>,
    ) -> Result<(), LatticeError> {
        let route = RouteKey::new(capid, binding);
        let rev = nuid::next().to_string();
        self.inner.state.lock().secrets.insert(
            (actor.to_string(), route.clone()),
            (rev.clone(), values.clone()),
        );
        let (shown, redacted) = crate::redact::redact(&values);
        let change = BindingChange::Put(BindingEntry {
            actor: actor.to_string(),
            capid: route.capid,
            binding: route.binding,
            values: shown,
            redacted,
            owner: self.inner.keys.host_id.clone(),
            rev,
        });
        self.inner.apply(change.clone()).await;
        self.inner
            .publish_signed_json(self.inner.bus.subjects.bindings(), &change)
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
            .publish_signed_json(self.inner.bus.subjects.bindings(), &change)
            .await
    }

    /// Whether `actor`'s claims are known here (it runs somewhere in the
    /// lattice and a trusted host announced it).
    pub fn knows_actor(&self, actor: &str) -> bool {
        self.inner.state.lock().claims.contains_key(actor)
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
        let origin = WireEntity::Host(self.inner.keys.host_id.clone());
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
        self.inner.keys.sessions.peers()
    }

    /// How many lattice messages of `plane` this host refused for `reason`
    /// (the same figures as `waxosuit_lattice_refused_total` in `/metrics`).
    /// Planes: `invocation`, `response`, `command`, `binding`, `inventory`,
    /// `event`, `auction`, `chunk`; reasons: `unsigned`, `malformed`, `untrusted`,
    /// `bad_signature`, `expired`, `replayed`, `mismatch`, `version`,
    /// `saturated`.
    pub fn refusals(&self, plane: &str, reason: &str) -> u64 {
        use crate::auth::Reason;
        let plane = match plane {
            "invocation" => Plane::Invocation,
            "response" => Plane::Response,
            "command" => Plane::Command,
            "binding" => Plane::Binding,
            "inventory" => Plane::Inventory,
            "event" => Plane::Event,
            "auction" => Plane::Auction,
            "chunk" => Plane::Chunk,
            _ => return 0,
        };
        let reason = match reason {
            "unsigned" => Reason::Unsigned,
            "malformed" => Reason::Malformed,
            "untrusted" => Reason::Untrusted,
            "bad_signature" => Reason::BadSignature,
            "expired" => Reason::Expired,
            "replayed" => Reason::Replayed,
            "mismatch" => Reason::Mismatch,
            "version" => Reason::Version,
            "saturated" => Reason::Saturated,
            _ => return 0,
        };
        self.inner.metrics.count(plane, reason)
    }

    /// Leaves the lattice: announces it (so callers stop sending here),
    /// then stops serving, answering the calls already on their way, and
    /// stops routing calls over NATS.
    pub async fn leave(&self) {
        let inner = &self.inner;
        let event = CloudEvent::new(
            &inner.keys.host_id,
            "host_stopped",
            &inner.keys.host_id,
            json!({}),
        );
        if let Ok(body) = serde_json::to_vec(&event) {
            let subject = inner.bus.subjects.events();
            let _ = inner.publish_signed(subject, None, None, body).await;
            inner.round_trip().await;
            // The others take the event off their queues in a moment; calls
            // they pick before that still arrive while this host drains.
            tokio::time::sleep(LEAVE_NOTICE.min(inner.bus.timeout)).await;
        }
        inner.remote.detach();
        inner.serving.drain_all(inner.bus.timeout).await;
        for task in inner.tasks.lock().drain(..) {
            task.abort();
        }
        // Bounded like the drain above: leaving never hangs on the server.
        let _ = tokio::time::timeout(inner.bus.timeout, inner.bus.client.flush()).await;
        tracing::info!(host = %inner.keys.host_id, "left the lattice");
    }
}

impl Inner {
    pub(crate) fn spawn_task(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().push(tokio::spawn(fut));
    }

    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.remote.host().info().labels;
        labels.insert("hostcore.os".into(), std::env::consts::OS.into());
        labels.insert("hostcore.osfamily".into(), std::env::consts::FAMILY.into());
        labels.insert("hostcore.arch".into(), std::env::consts::ARCH.into());
        labels
    }

    /// Counts and logs the refused requests for this host's chunks.
    pub(crate) fn chunk_refusals(&self) -> crate::chunk::OnRefused {
        let metrics = self.metrics.clone();
        Box::new(move |refusal| metrics.refused(Plane::Chunk, refusal))
    }

    /// Subscribes to `subject` with a bounded backlog ([`backlog`]).
    pub(crate) async fn subscribe(
        &self,
        subject: String,
    ) -> Result<waxosuit_nats::PendingSubscriber, LatticeError> {
        let max_payload = self.bus.max_payload.load(Ordering::Relaxed);
        self.bus
            .client
            .subscribe(subject)
            .await
            .map(|subscriber| backlog::bounded(subscriber, max_payload))
            .map_err(|e| LatticeError::Transport {
                operation: "subscribe",
                reason: e.to_string(),
            })
    }

    /// Publishes `body` on `subject`, signed by this host (`re`: the request
    /// it answers).
    pub(crate) async fn publish_signed(
        &self,
        subject: String,
        reply: Option<String>,
        re: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(), LatticeError> {
        let headers =
            auth::sign_message(&self.keys.identity, &subject, reply.as_deref(), re, &body)?;
        let result = match reply {
            Some(reply) => {
                self.bus
                    .client
                    .publish_with_reply_and_headers(subject, reply, headers, Bytes::from(body))
                    .await
            }
            None => {
                self.bus
                    .client
                    .publish_with_headers(subject, headers, Bytes::from(body))
                    .await
            }
        };
        result.map_err(|e| LatticeError::Transport {
            operation: "publish",
            reason: e.to_string(),
        })
    }

    pub(crate) async fn publish_signed_json<T: serde::Serialize>(
        &self,
        subject: String,
        value: &T,
    ) -> Result<(), LatticeError> {
        let body = serde_json::to_vec(value).map_err(|e| LatticeError::Malformed {
            what: "outgoing message",
            reason: e.to_string(),
        })?;
        self.publish_signed(subject, None, None, body).await
    }

    /// Answers request `msg` (authenticated as `re`) with a signed `body`.
    pub(crate) async fn answer_signed(&self, msg: &Message, re: &str, body: Vec<u8>) {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        if let Err(e) = self
            .publish_signed(reply.to_string(), None, Some(re), body)
            .await
        {
            tracing::warn!(error = %e, "could not answer a lattice request");
        }
    }

    /// Checks a header-signed message and counts the refusal if it fails.
    pub(crate) fn verify(
        &self,
        plane: Plane,
        msg: &Message,
        signers: auth::Signers<'_>,
        re: Option<&str>,
    ) -> Option<auth::Authentic> {
        match auth::verify_message(
            &self.keys.verifier,
            &self.keys.trust,
            &self.keys.replay,
            msg,
            signers,
            re,
        ) {
            Ok(ok) => Some(ok),
            Err(refusal) => {
                self.metrics.refused(plane, &refusal);
                None
            }
        }
    }
}
