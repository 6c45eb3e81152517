//! Who may do what: the [`Authorizer`] hook and [`Middleware`] around every
//! invocation.

use std::fmt;

use async_trait::async_trait;
use waxosuit_claims::VerifiedActor;

/// One end of an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entity {
    /// An actor, by public key.
    Actor(String),
    /// A capability provider registered under a capability id and binding name.
    Capability {
        /// Capability id.
        capid: String,
        /// Binding name.
        binding: String,
    },
    /// The host itself (health checks, calls from the CLI or an embedder).
    Host,
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Actor(key) => write!(f, "actor {key}"),
            Entity::Capability { capid, binding } => write!(f, "{capid} (binding `{binding}`)"),
            Entity::Host => f.write_str("the host"),
        }
    }
}

/// An invocation as middleware sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Who calls.
    pub origin: Entity,
    /// Who is called.
    pub target: Entity,
    /// The operation.
    pub operation: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The result of an invocation: reply bytes, or an error text (which reaches
/// the calling guest as its host error).
pub type InvocationResult = Result<Vec<u8>, String>;

/// What the authorizer says about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Decide by the signed claims alone (the default).
    ByClaims,
    /// Allow even if the claims do not list the target (e.g. a policy grant).
    Allow,
    /// Refuse even if the claims list the target.
    Deny,
}

/// A policy hook consulted when an actor is loaded and on every outbound call
/// and binding. The default allows what the claims allow.
pub trait Authorizer: Send + Sync + 'static {
    /// Whether the actor may be loaded at all (after its claims verified).
    fn can_load(&self, actor: &VerifiedActor) -> bool {
        let _ = actor;
        true
    }

    /// Whether `caller` may invoke `operation` on `target`.
    fn can_invoke(&self, caller: &VerifiedActor, target: &Entity, operation: &str) -> Decision {
        let _ = (caller, target, operation);
        Decision::ByClaims
    }
}

/// The authorizer used when none is configured.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClaimsOnly;

impl Authorizer for ClaimsOnly {}

/// What a middleware's invoke step decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Go on to the next middleware, then the target.
    Continue,
    /// Stop here and answer with this result; the target is not called.
    Halt(InvocationResult),
}

/// Code that runs around invocations of actors (`actor_*`) and of providers
/// (`capability_*`), in registration order.
///
/// Unlike waSCC, a pre-invoke error *refuses* the invocation (fail closed),
/// and `actor_invoke` is really called for actor invocations.
#[async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Before an actor is invoked; may rewrite the invocation or refuse it.
    async fn actor_pre_invoke(&self, inv: Invocation) -> Result<Invocation, String> {
        Ok(inv)
    }
    /// May answer in place of the actor.
    async fn actor_invoke(&self, inv: &Invocation) -> Flow {
        let _ = inv;
        Flow::Continue
    }
    /// After an actor answered; may rewrite the result.
    async fn actor_post_invoke(
        &self,
        inv: &Invocation,
        result: InvocationResult,
    ) -> InvocationResult {
        let _ = inv;
        result
    }
    /// Before a provider is invoked; may rewrite the invocation or refuse it.
    async fn capability_pre_invoke(&self, inv: Invocation) -> Result<Invocation, String> {
        Ok(inv)
    }
    /// May answer in place of the provider.
    async fn capability_invoke(&self, inv: &Invocation) -> Flow {
        let _ = inv;
        Flow::Continue
    }
    /// After a provider answered; may rewrite the result.
    async fn capability_post_invoke(
        &self,
        inv: &Invocation,
        result: InvocationResult,
    ) -> InvocationResult {
        let _ = inv;
        result
    }
}
