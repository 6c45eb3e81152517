//! The two directions of traffic: guest host calls ([`Router`], the
//! runtime's callback) and provider calls into actors ([`ProviderDispatcher`]).

use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_provider::{ActorDispatcher, DispatchError};
use waxosuit_runtime::{ActorKey, HostCall, HostCallHandler};

use waxosuit_policy::input::Direction;

use crate::HostError;
use crate::gate::Call;
use crate::host::{RouteKey, WeakHost};
use crate::policy::Entity;
use crate::table::ActorTable;

/// The runtime's callback for `__host_call`: routes by namespace (actor key,
/// alias or capability id), authorizes against the caller's claims and
/// invokes. The error text becomes the guest's host error.
pub struct Router {
    host: WeakHost,
}

impl Router {
    pub(crate) fn new(host: WeakHost) -> Router {
        Router { host }
    }
}

impl HostCallHandler for Router {
    type Error = HostError;

    async fn host_call(&self, actor: &ActorKey, call: HostCall) -> Result<Vec<u8>, HostError> {
        let Some(host) = self.host.upgrade() else {
            return Err(HostError::ShuttingDown);
        };
        let result = host
            .route_host_call(
                actor.as_str(),
                &call.binding,
                &call.namespace,
                &call.operation,
                call.payload,
            )
            .await;
        result.map_err(|e| {
            tracing::debug!(actor = %actor, namespace = %call.namespace, operation = %call.operation, error = %e, "host call failed");
            e
        })
    }
}

/// The dispatcher handed to one registered provider: it reaches only actors
/// bound to that provider's (capability id, binding).
///
/// It holds the actor table strongly and the host weakly: the table is all
/// a local call needs, and holding it costs no shared write per request
/// (see `table`). The host is upgraded only for calls to actors elsewhere.
pub(crate) struct ProviderDispatcher {
    host: WeakHost,
    actors: Arc<ActorTable>,
    route: RouteKey,
}

impl ProviderDispatcher {
    pub(crate) fn new(
        host: WeakHost,
        actors: Arc<ActorTable>,
        route: RouteKey,
    ) -> ProviderDispatcher {
        ProviderDispatcher {
            host,
            actors,
            route,
        }
    }
}

#[async_trait]
impl ActorDispatcher for ProviderDispatcher {
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let origin = || Entity::Capability {
            capid: self.route.capid.clone(),
            binding: self.route.binding.clone(),
        };
        // A snapshot of the table, held for the call: no shared count is
        // touched on this path (see `read_mostly`).
        let actors = self.actors.entries.load();
        let Some(entry) = actors.get(actor) else {
            drop(actors);
            // Maybe it runs on another host; that host checks the binding.
            // A host that is gone has emptied the table, so this is also
            // where calls after shutdown end.
            let host = self.host.upgrade().ok_or(DispatchError::ShuttingDown)?;
            return host
                .call_remote_actor(&origin(), actor, operation, payload)
                .await
                .map_err(|e| match e {
                    HostError::ActorNotFound { .. } => DispatchError::ActorNotFound {
                        actor: actor.to_string(),
                    },
                    e => DispatchError::Actor {
                        actor: actor.to_string(),
                        operation: operation.to_string(),
                        message: e.to_string(),
                    },
                });
        };
        if !entry.is_bound(&self.route) {
            return Err(DispatchError::NotBound {
                actor: actor.to_string(),
                capid: self.route.capid.clone(),
                binding: self.route.binding.clone(),
            });
        }
        if let Some(gate) = &self.actors.gate {
            let claims = entry.claims.load();
            gate.invoke(Call {
                actor: &claims,
                capability: &self.route.capid,
                binding: &self.route.binding,
                operation,
                direction: Direction::Inbound,
            })
            .await
            .map_err(|e| DispatchError::Actor {
                actor: actor.to_string(),
                operation: operation.to_string(),
                message: e.to_string(),
            })?;
        }
        self.actors
            .invoke_actor(origin, entry, operation, &payload)
            .await
            .map_err(|e| DispatchError::Actor {
                actor: actor.to_string(),
                operation: operation.to_string(),
                message: e.to_string(),
            })
    }
}
