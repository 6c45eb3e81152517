//! Where the host consults policy (`waxosuit-policy`): before an actor
//! starts, and on every invocation into or out of an actor.
//!
//! The host knows no policy language and no OPA server: it builds the
//! documented input document and asks the [`Policy`] it was given. The
//! invocation check sits on the path of every request, so it is written for
//! the cached case: the key is borrowed strings, and the input document
//! (which allocates) is built only when the cache misses.

use std::collections::BTreeMap;
use std::sync::Arc;

use waxosuit_claims::VerifiedActor;
use waxosuit_policy::input::{
    ActorFacts, Direction, HostFacts, InvokeInput, ModuleFacts, StartInput,
};
use waxosuit_policy::{DecisionPoint, InvokeKey, Policy, PolicyDenied};

use crate::HostError;

/// A policy and the facts about this host that every input carries.
pub(crate) struct Gate {
    policy: Arc<Policy>,
    host: HostFacts,
}

/// What an invocation decision is about.
pub(crate) struct Call<'a> {
    /// The actor the decision is about (the caller outbound, the callee
    /// inbound).
    pub(crate) actor: &'a VerifiedActor,
    /// The capability id, or the other actor's key.
    pub(crate) capability: &'a str,
    pub(crate) binding: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) direction: Direction,
}

fn facts(actor: &VerifiedActor) -> ActorFacts {
    ActorFacts {
        key: actor.public_key().to_string(),
        name: actor.name().to_string(),
        issuer: actor.issuer().to_string(),
        caps: actor.capabilities().to_vec(),
        tags: actor.metadata().tag_list().to_vec(),
    }
}

impl Gate {
    pub(crate) fn new(
        policy: Arc<Policy>,
        id: Option<String>,
        labels: BTreeMap<String, String>,
    ) -> Gate {
        Gate {
            policy,
            host: HostFacts { id, labels },
        }
    }

    /// `data.waxosuit.start.allow` for a verified module.
    pub(crate) async fn start(
        &self,
        actor: &VerifiedActor,
        module_size: usize,
        source: &str,
    ) -> Result<(), HostError> {
        let input = StartInput {
            token: actor.jwt().to_string(),
            claims: serde_json::to_value(actor.claims()).unwrap_or_default(),
            module: ModuleFacts {
                hash: actor.metadata().module_hash.clone(),
                size: module_size as u64,
            },
            source: source.to_string(),
            host: self.host.clone(),
        };
        let input = serde_json::to_value(&input).unwrap_or_default();
        self.policy
            .check(DecisionPoint::Start, input)
            .await
            .map_err(|source| denied(actor, source))
    }

    /// `data.waxosuit.invoke.allow`, cached per (actor, capability, binding,
    /// operation, direction).
    pub(crate) async fn invoke(&self, call: Call<'_>) -> Result<(), HostError> {
        let key = InvokeKey {
            actor: call.actor.public_key(),
            capability: call.capability,
            binding: call.binding,
            operation: call.operation,
            direction: call.direction,
        };
        let input = || {
            serde_json::to_value(InvokeInput {
                actor: facts(call.actor),
                capability: call.capability.to_string(),
                binding: call.binding.to_string(),
                operation: call.operation.to_string(),
                direction: call.direction,
                host: self.host.clone(),
            })
            .unwrap_or_default()
        };
        self.policy
            .check_invoke(key, input)
            .await
            .map_err(|source| denied(call.actor, source))
    }
}

fn denied(actor: &VerifiedActor, source: PolicyDenied) -> HostError {
    HostError::Policy {
        actor: actor.public_key().to_string(),
        name: actor.name().to_string(),
        source: Box::new(source),
    }
}
