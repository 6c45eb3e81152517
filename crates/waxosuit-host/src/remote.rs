//! Calls the host cannot serve itself, and calls other hosts make to it.
//!
//! A host on its own serves actors and providers registered with it. In a
//! lattice, an actor may be bound to a provider that runs on another host, and
//! a provider here may serve an actor that runs elsewhere. The host knows
//! nothing of the transport: a transport (the `waxosuit-lattice` crate, over
//! NATS) attaches itself with [`Host::attach_remote`], installs its
//! [`RemoteLink`] for outbound calls, and feeds the calls it has
//! authenticated to the inbound entry points of the [`RemoteAttachment`] it
//! got. Those entry points take the calling host's word for who calls (they
//! check bindings and policy, not an actor's claims), so only the one
//! attachment reaches them: a host has at most one, and an embedder that
//! did not attach cannot call them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustc_hash::FxHashMap;

use async_trait::async_trait;
use parking_lot::RwLock;
use waxosuit_claims::VerifiedActor;
use waxosuit_codec::core as wcore;
use waxosuit_provider::BindRequest;
use waxosuit_runtime::ActorKey;

use waxosuit_policy::input::Direction;

use crate::HostError;
use crate::events::HostEvent;
use crate::gate::Call;
use crate::host::{Host, RouteKey, bind_values, guard_provider};
use crate::policy::Entity;

/// A transport error from a [`RemoteLink`], kept whole so callers can look
/// at its type (timeout, no responders, refused, …).
pub type RemoteError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where the host sends calls to actors and providers that are not its own.
#[async_trait]
pub trait RemoteLink: Send + Sync + 'static {
    /// Calls an actor that does not run on this host.
    async fn call_actor(
        &self,
        origin: &Entity,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError>;

    /// Calls the provider registered under `route` on some other host, on
    /// behalf of `actor` (already authorized and bound here).
    async fn call_provider(
        &self,
        actor: &str,
        route: &RouteKey,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, RemoteError>;

    /// An actor started here; called before [`Host::add_actor`] returns, so
    /// that a transport makes it reachable (subscribes, say) before anyone
    /// is told it runs.
    async fn actor_started(&self, actor: &str) {
        let _ = actor;
    }

    /// A provider was registered here; called before [`Host::add_provider`]
    /// returns, like [`RemoteLink::actor_started`].
    async fn provider_started(&self, route: &RouteKey) {
        let _ = route;
    }

    /// The module key of an actor running elsewhere that claims `alias` as
    /// its `call_alias`, if any: an alias must name one actor lattice-wide.
    fn alias_owner(&self, alias: &str) -> Option<String> {
        let _ = alias;
        None
    }
}

/// What the host keeps for a transport: the link for outbound calls and the
/// bindings of actors that run elsewhere.
#[derive(Default)]
pub(crate) struct Remote {
    /// Where calls go that this host cannot serve (a lattice), if anywhere.
    pub(crate) link: RwLock<Option<Arc<dyn RemoteLink>>>,
    /// Actors running elsewhere bound to providers here: (actor, route) →
    /// values and the actor's verified claims.
    pub(crate) bindings: RwLock<FxHashMap<(String, RouteKey), RemoteBinding>>,
    /// Whether a [`RemoteAttachment`] exists.
    attached: AtomicBool,
}

/// A binding of an actor that runs on another host to a provider here.
pub(crate) struct RemoteBinding {
    pub(crate) values: BTreeMap<String, String>,
    pub(crate) claims: Arc<VerifiedActor>,
}

/// A transport's hold on a host: installs its [`RemoteLink`] and is the
/// only way to the host's inbound entry points (calls, bindings and claims
/// of actors on other hosts). Made by [`Host::attach_remote`];
/// [`detach`](Self::detach) or dropping it removes the link and lets
/// another transport attach.
pub struct RemoteAttachment {
    host: Host,
    /// Cleared by [`detach`](Self::detach): a detached attachment serves
    /// nothing, and does not touch a newer attachment's link.
    live: AtomicBool,
}

impl std::fmt::Debug for RemoteAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAttachment").finish_non_exhaustive()
    }
}

impl Drop for RemoteAttachment {
    fn drop(&mut self) {
        self.detach();
    }
}

impl Host {
    /// Attaches a transport: the returned [`RemoteAttachment`] installs the
    /// [`RemoteLink`] and serves inbound calls. A host takes one transport
    /// at a time.
    ///
    /// # Errors
    ///
    /// [`HostError::AlreadyAttached`] while another attachment exists.
    pub fn attach_remote(&self) -> Result<RemoteAttachment, HostError> {
        if self.inner.remote.attached.swap(true, Ordering::AcqRel) {
            return Err(HostError::AlreadyAttached);
        }
        Ok(RemoteAttachment {
            host: self.clone(),
            live: AtomicBool::new(true),
        })
    }

    /// Watches what changes in this host.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<HostEvent> {
        self.inner.events.subscribe()
    }

    /// Whether an actor with this key runs here.
    pub fn has_actor(&self, actor: &ActorKey) -> bool {
        self.inner.actor(actor.as_str()).is_some()
    }

    /// Whether a provider is registered here under `route`.
    pub fn has_provider(&self, route: &RouteKey) -> bool {
        self.inner.providers.load().contains_key(route)
    }

    /// Whether `actor` is bound to `route` here: a local actor's binding, or a
    /// remote actor's binding to a local provider.
    pub fn is_bound(&self, actor: &ActorKey, route: &RouteKey) -> bool {
        match self.inner.actor(actor.as_str()) {
            Some(entry) => entry.is_bound(route),
            None => self
                .inner
                .remote
                .bindings
                .read()
                .contains_key(&(actor.to_string(), route.clone())),
        }
    }
}

impl RemoteAttachment {
    /// The host attached to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Installs the link for calls this host cannot serve itself,
    /// replacing any earlier one. Without one, such calls fail with "not
    /// running" / "no provider".
    pub fn set_link(&self, link: Arc<dyn RemoteLink>) {
        if self.live.load(Ordering::Acquire) {
            *self.host.inner.remote.link.write() = Some(link);
        }
    }

    /// Removes the link and gives the host up (when leaving a lattice):
    /// later inbound calls through this attachment fail with
    /// [`HostError::Detached`], and another transport may attach. Calling
    /// it again does nothing.
    pub fn detach(&self) {
        if self.live.swap(false, Ordering::AcqRel) {
            let remote = &self.host.inner.remote;
            *remote.link.write() = None;
            remote.attached.store(false, Ordering::Release);
        }
    }

    /// Refuses work once detached.
    fn check_live(&self) -> Result<(), HostError> {
        if self.live.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(HostError::Detached)
        }
    }

    /// Verifies the claims another host presents for an actor it runs.
    pub fn verify_remote_actor(&self, jwt: &str) -> Result<VerifiedActor, HostError> {
        self.check_live()?;
        self.host
            .inner
            .verifier
            .verify_remote_actor_token(jwt)
            .map_err(|error| HostError::Claims {
                origin: "the lattice".to_string(),
                error: Box::new(error),
            })
    }

    /// Binds an actor that runs on another host to the provider registered
    /// here under `route`. Idempotent: binding again with the same route is
    /// a no-op, so re-establishing bindings after a restart is safe.
    pub async fn bind_remote_actor(
        &self,
        claims: &VerifiedActor,
        route: &RouteKey,
        values: BTreeMap<String, String>,
    ) -> Result<(), HostError> {
        self.check_live()?;
        let key = ActorKey::new(claims.public_key()).map_err(|error| HostError::Runtime {
            actor: claims.public_key().to_string(),
            name: claims.name().to_string(),
            error: Box::new(error),
        })?;
        let target = Entity::Capability {
            capid: route.capid.clone(),
            binding: route.binding.clone(),
        };
        self.host.inner.authorize(
            claims,
            &route.capid,
            &target,
            wcore::OP_BIND_ACTOR,
            &route.binding,
        )?;
        let provider = self.host.registered_provider(route)?;
        let slot = (key.to_string(), route.clone());
        if self.host.inner.remote.bindings.read().contains_key(&slot) {
            return Ok(());
        }
        let request = BindRequest {
            actor: key.to_string(),
            binding: route.binding.clone(),
            values: bind_values(claims, &values),
        };
        guard_provider(route, provider.provider.bind_actor(request)).await?;
        self.host.inner.remote.bindings.write().insert(
            slot,
            RemoteBinding {
                values,
                claims: Arc::new(claims.clone()),
            },
        );
        tracing::info!(actor = %key, capability = %route.capid, binding = %route.binding, "binding established for a remote actor");
        self.host.emit(HostEvent::BindingSet {
            actor: key,
            route: route.clone(),
        });
        Ok(())
    }

    /// Releases a remote actor's binding to a local provider.
    pub async fn unbind_remote_actor(
        &self,
        actor: &ActorKey,
        route: &RouteKey,
    ) -> Result<(), HostError> {
        self.check_live()?;
        let slot = (actor.to_string(), route.clone());
        if self
            .host
            .inner
            .remote
            .bindings
            .write()
            .remove(&slot)
            .is_none()
        {
            return Ok(());
        }
        let provider = self.host.inner.providers.load().get(route).cloned();
        if let Some(p) = provider {
            guard_provider(route, p.provider.remove_actor(actor, &route.binding)).await?;
        }
        self.host.emit(HostEvent::BindingRemoved {
            actor: actor.clone(),
            route: route.clone(),
        });
        Ok(())
    }

    /// Remote actors bound to local providers: (actor, route, values).
    pub fn remote_bindings(&self) -> Vec<(String, RouteKey, BTreeMap<String, String>)> {
        let mut out: Vec<_> = self
            .host
            .inner
            .remote
            .bindings
            .read()
            .iter()
            .map(|((a, r), b)| (a.clone(), r.clone(), b.values.clone()))
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }

    /// A call another host forwarded to an actor running here. The caller
    /// has authenticated the sending host; a call from a capability must come
    /// through a binding the actor has.
    pub async fn invoke_inbound(
        &self,
        origin: Entity,
        actor: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        self.check_live()?;
        let entry = self
            .host
            .inner
            .actor(actor)
            .ok_or_else(|| HostError::ActorNotFound {
                actor: actor.to_string(),
            })?;
        if let Entity::Actor(caller) = &origin
            && let Some(capability) = crate::invoke::delivered_by(operation)
        {
            return Err(HostError::DeliveredByCapability {
                actor: caller.clone(),
                name: String::from("(remote actor)"),
                target: actor.to_string(),
                operation: operation.to_string(),
                capability: capability.to_string(),
            });
        }
        if let Entity::Capability { capid, binding } = &origin {
            let route = RouteKey::new(capid.clone(), binding.clone());
            if !entry.is_bound(&route) {
                return Err(HostError::MissingBinding {
                    actor: actor.to_string(),
                    name: entry.claims().name().to_string(),
                    capability: route.capid,
                    binding: route.binding,
                });
            }
        }
        // This host's policy decides for its own actors, whatever the
        // calling host decided.
        if let Some(gate) = &self.host.inner.actors.gate {
            let claims = entry.claims();
            let (capability, binding) = match &origin {
                Entity::Capability { capid, binding } => (capid.as_str(), binding.as_str()),
                Entity::Actor(key) => (key.as_str(), crate::DEFAULT_BINDING),
                Entity::Host => ("host", crate::DEFAULT_BINDING),
            };
            gate.invoke(Call {
                actor: &claims,
                capability,
                binding,
                operation,
                direction: Direction::Inbound,
            })
            .await?;
        }
        self.host
            .inner
            .actors
            .invoke_actor(|| origin, &entry, operation, payload)
            .await
    }

    /// A call another host forwarded from one of its actors to a provider
    /// registered here. The actor must be bound to it; middleware runs as
    /// for a local actor's call.
    pub async fn call_provider_inbound(
        &self,
        actor: &str,
        route: &RouteKey,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        self.check_live()?;
        let provider = self.host.registered_provider(route)?;
        // A replica of an actor that also runs here is bound here as a
        // local actor; any other caller must hold a remote binding.
        let claims = match self.host.inner.actor(actor) {
            Some(entry) => entry.is_bound(route).then(|| entry.claims()),
            None => self
                .host
                .inner
                .remote
                .bindings
                .read()
                .get(&(actor.to_string(), route.clone()))
                .map(|b| Arc::clone(&b.claims)),
        };
        let Some(claims) = claims else {
            return Err(HostError::MissingBinding {
                actor: actor.to_string(),
                name: String::from("(remote actor)"),
                capability: route.capid.clone(),
                binding: route.binding.clone(),
            });
        };
        // This host's policy decides for its providers too.
        if let Some(gate) = &self.host.inner.actors.gate {
            gate.invoke(Call {
                actor: &claims,
                capability: &route.capid,
                binding: &route.binding,
                operation,
                direction: Direction::Outbound,
            })
            .await?;
        }
        self.host
            .inner
            .invoke_provider(route, &provider, actor, operation, payload)
            .await
    }
}

impl Host {
    pub(crate) fn emit(&self, event: HostEvent) {
        // No receiver is the common case on a single host: not an error.
        let _ = self.inner.events.send(event);
    }
}
