//! The invocation paths: guest host calls routed to providers or actors,
//! and calls into actors, each through policy, middleware and metrics.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;
use waxosuit_claims::VerifiedActor;
use waxosuit_codec::core as wcore;
use waxosuit_policy::input::Direction;
use waxosuit_provider::ProviderCall;
use waxosuit_runtime::ActorKey;

use crate::HostError;
use crate::gate::Call;
use crate::host::{
    ActorEntry, DEFAULT_BINDING, HostInner, ProviderEntry, RouteKey, guard_provider,
    provider_not_found,
};
use crate::policy::{Decision, Entity, MiddlewareCall, Side, after, before};
use crate::spans;

impl HostInner {
    pub(crate) fn actor(&self, key: &str) -> Option<Arc<ActorEntry>> {
        self.actors.get(key)
    }

    /// Claims, then policy: the namespace must be granted by the claims
    /// unless the authorizer allows it; the authorizer may also deny.
    pub(crate) fn authorize(
        &self,
        caller: &VerifiedActor,
        namespace: &str,
        target: &Entity,
        operation: &str,
        binding: &str,
    ) -> Result<(), HostError> {
        let by_claims = caller.has_capability(namespace)
            || matches!(target, Entity::Actor(key) if caller.has_capability(key));
        let allowed = match self.authorizer.can_invoke(caller, target, operation) {
            Decision::ByClaims => by_claims,
            Decision::Allow => true,
            Decision::Deny => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(HostError::PermissionDenied {
                actor: caller.public_key().to_string(),
                name: caller.name().to_string(),
                capability: namespace.to_string(),
                binding: binding.to_string(),
                operation: operation.to_string(),
            })
        }
    }

    /// Whether `claims` may hold a binding on `route`: what
    /// [`Host::set_binding`](crate::Host::set_binding) asks before binding.
    pub(crate) fn may_bind(&self, claims: &VerifiedActor, route: &RouteKey) -> bool {
        let target = Entity::Capability {
            capid: route.capid.clone(),
            binding: route.binding.clone(),
        };
        self.authorize(
            claims,
            &route.capid,
            &target,
            wcore::OP_BIND_ACTOR,
            &route.binding,
        )
        .is_ok()
    }

    /// A running actor addressed by key or by `call_alias`.
    pub(crate) fn actor_by_namespace(&self, namespace: &str) -> Option<Arc<ActorEntry>> {
        let actors = self.actors.entries.load();
        if let Some(e) = actors.get(namespace) {
            return Some(Arc::clone(e));
        }
        if namespace.contains(':') {
            // Capability ids are `ns:name`; aliases never contain ':'.
            return None;
        }
        actors
            .values()
            .find(|e| e.claims().metadata().call_alias.as_deref() == Some(namespace))
            .cloned()
    }

    /// A guest's host call: route, authorize, invoke (spec §4.7).
    pub(crate) async fn route_host_call(
        &self,
        caller_key: &str,
        binding: &str,
        namespace: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        // Snapshots, not clones: nothing shared is written on this path.
        let actors = self.actors.entries.load();
        let caller_entry = actors
            .get(caller_key)
            .ok_or_else(|| HostError::ActorNotFound {
                actor: caller_key.to_string(),
            })?;
        let caller = caller_entry.claims.load();
        let binding = if binding.trim().is_empty() {
            DEFAULT_BINDING
        } else {
            binding
        };
        let is_actor_key = ActorKey::is_valid(namespace);
        if is_actor_key || !namespace.contains(':') {
            // Actors have no bindings to each other: the caller's binding
            // name would only be a value of its choosing in the policy's
            // input (and a fresh cache key per name).
            let binding = DEFAULT_BINDING;
            if let Some(capability) = delivered_by(operation) {
                return Err(HostError::DeliveredByCapability {
                    actor: caller_key.to_string(),
                    name: caller.name().to_string(),
                    target: namespace.to_string(),
                    operation: operation.to_string(),
                    capability: capability.to_string(),
                });
            }
            let target = Entity::Actor(namespace.to_string());
            let callee = self.actor_by_namespace(namespace);
            let target = match &callee {
                Some(e) => Entity::Actor(e.runtime.key().to_string()),
                None => target,
            };
            self.authorize(&caller, namespace, &target, operation, binding)?;
            if let Some(gate) = &self.actors.gate {
                let callee_key = match &target {
                    Entity::Actor(key) => key.as_str(),
                    _ => namespace,
                };
                gate.invoke(Call {
                    actor: &caller,
                    capability: callee_key,
                    binding,
                    operation,
                    direction: Direction::Outbound,
                })
                .await?;
            }
            let Some(callee) = callee else {
                let origin = Entity::Actor(caller_key.to_string());
                return self
                    .call_remote_actor(&origin, namespace, operation, payload)
                    .await;
            };
            // The callee's side too, as when the call comes from elsewhere.
            if let Some(gate) = &self.actors.gate {
                let claims = callee.claims();
                gate.invoke(Call {
                    actor: &claims,
                    capability: caller_key,
                    binding,
                    operation,
                    direction: Direction::Inbound,
                })
                .await?;
            }
            return self
                .actors
                .invoke_actor(
                    || Entity::Actor(caller_key.to_string()),
                    &callee,
                    operation,
                    &payload,
                )
                .await;
        }
        let route = RouteKey::new(namespace, binding);
        let span = spans::capability(caller_key, &route, operation);
        let result = self
            .call_capability(
                caller_entry,
                &caller,
                caller_key,
                &route,
                operation,
                payload,
            )
            .instrument(span.clone())
            .await;
        spans::finish(&span, &result);
        result
    }

    /// The capability half of [`HostInner::route_host_call`]: authorize,
    /// check the binding and policy, then call the provider, here or over
    /// the remote link.
    async fn call_capability(
        &self,
        caller_entry: &ActorEntry,
        caller: &VerifiedActor,
        caller_key: &str,
        route: &RouteKey,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        let binding = route.binding.as_str();
        let namespace = route.capid.as_str();
        let target = Entity::Capability {
            capid: route.capid.clone(),
            binding: route.binding.clone(),
        };
        self.authorize(caller, namespace, &target, operation, binding)?;
        if !caller_entry.is_bound(route) {
            return Err(HostError::MissingBinding {
                actor: caller_key.to_string(),
                name: caller.name().to_string(),
                capability: route.capid.clone(),
                binding: route.binding.clone(),
            });
        }
        if let Some(gate) = &self.actors.gate {
            gate.invoke(Call {
                actor: caller,
                capability: &route.capid,
                binding: &route.binding,
                operation,
                direction: Direction::Outbound,
            })
            .await?;
        }
        let started = Instant::now();
        let providers = self.providers.load();
        let result = match providers.get(route) {
            Some(provider) => {
                self.invoke_provider(route, provider, caller_key, operation, payload)
                    .await
            }
            None => {
                self.call_remote_provider(caller_key, route, operation, payload)
                    .await
            }
        };
        caller_entry.series.record(
            &self.actors.metrics,
            caller_key,
            &route.capid,
            operation,
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    /// Calls a local provider for `caller_key` (authorized and bound
    /// already), through middleware when there is any. Local actors and
    /// actors on other hosts of a lattice come through here alike.
    pub(crate) async fn invoke_provider(
        &self,
        route: &RouteKey,
        provider: &ProviderEntry,
        caller_key: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        let call = ProviderCall {
            actor: caller_key.to_string(),
            binding: route.binding.clone(),
            operation: operation.to_string(),
            payload,
        };
        if self.actors.middlewares.is_empty() {
            guard_provider(route, provider.provider.handle_call(call))
                .await
                .map_err(HostError::from)
        } else {
            self.capability_chain(route, provider, caller_key, call)
                .await
        }
    }

    /// An actor that is not running here: over the remote link if there is
    /// one. Only full keys travel; aliases name local actors.
    pub(crate) async fn call_remote_actor(
        &self,
        origin: &Entity,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        let is_key = ActorKey::is_valid(actor);
        let link = self.remote.link.read().clone();
        match link {
            Some(link) if is_key => link
                .call_actor(origin, actor, operation, payload)
                .await
                .map_err(|error| HostError::Remote {
                    target: format!("actor {actor}"),
                    operation: operation.to_string(),
                    error,
                }),
            _ => Err(HostError::ActorNotFound {
                actor: actor.to_string(),
            }),
        }
    }

    /// A provider that is not registered here: over the remote link if
    /// there is one.
    async fn call_remote_provider(
        &self,
        actor: &str,
        route: &RouteKey,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, HostError> {
        let link = self.remote.link.read().clone();
        match link {
            Some(link) => link
                .call_provider(actor, route, operation, payload)
                .await
                .map_err(|error| HostError::Remote {
                    target: format!("{} (binding `{}`)", route.capid, route.binding),
                    operation: operation.to_string(),
                    error,
                }),
            None => Err(provider_not_found(route)),
        }
    }

    async fn capability_chain(
        &self,
        route: &RouteKey,
        provider: &ProviderEntry,
        caller_key: &str,
        call: ProviderCall,
    ) -> Result<Vec<u8>, HostError> {
        let inv = MiddlewareCall {
            origin: Entity::Actor(caller_key.to_string()),
            target: Entity::Capability {
                capid: route.capid.clone(),
                binding: route.binding.clone(),
            },
            operation: call.operation,
            payload: call.payload,
        };
        let middlewares = &self.actors.middlewares;
        let (inv, halted) = before(middlewares, Side::Capability, inv).await?;
        let result = match halted {
            Some(result) => result,
            None => {
                let call = ProviderCall {
                    actor: caller_key.to_string(),
                    binding: route.binding.clone(),
                    operation: inv.operation.clone(),
                    payload: inv.payload.clone(),
                };
                guard_provider(route, provider.provider.handle_call(call))
                    .await
                    .map_err(HostError::from)
            }
        };
        after(middlewares, Side::Capability, &inv, result).await
    }
}

/// The capability (or the host) that delivers `operation` to actors, when
/// only it may: an actor calling another with it could forge what that
/// capability vouches for (an HTTP request that passed the binding's
/// filters, a message from the broker, a chunk of a stored object), so
/// actor-to-actor calls, here or from another host, are refused.
pub(crate) fn delivered_by(operation: &str) -> Option<&'static str> {
    use waxosuit_codec::{blobstore, core, eventstreams, http, messaging};
    match operation {
        http::OP_HANDLE_REQUEST => Some("wascc:http_server"),
        messaging::OP_DELIVER_MESSAGE => Some("wascc:messaging"),
        eventstreams::OP_DELIVER_EVENT => Some("wascc:eventstreams"),
        blobstore::OP_RECEIVE_CHUNK => Some("wascc:blobstore"),
        core::OP_HEALTH_REQUEST => Some("the host's health checks"),
        _ => None,
    }
}
