//! Who may do what: the [`Authorizer`] hook and [`Middleware`] around every
//! invocation.

use std::fmt;

use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_claims::VerifiedActor;

use crate::HostError;

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
pub struct MiddlewareCall {
    /// Who calls.
    pub origin: Entity,
    /// Who is called.
    pub target: Entity,
    /// The operation.
    pub operation: String,
    /// The payload.
    pub payload: Vec<u8>,
}

impl MiddlewareCall {
    /// The error of a middleware that answers this call with a refusal
    /// ([`Flow::Halt`]`(Err(…))`).
    pub fn refuse(&self, reason: impl Into<String>) -> HostError {
        HostError::Middleware {
            target: self.target.to_string(),
            operation: self.operation.clone(),
            refusal: Refusal::new(reason),
        }
    }
}

/// The result of an invocation: reply bytes, or the typed error of the
/// target (or of a middleware); its text reaches the calling guest as its
/// host error.
pub type InvocationResult = Result<Vec<u8>, HostError>;

/// Why a middleware refused an invocation before it ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    /// The middleware's reason, shown to the caller.
    pub reason: String,
}

impl Refusal {
    /// A refusal for `reason`.
    pub fn new(reason: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.into(),
        }
    }
}

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
#[derive(Debug)]
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
    async fn actor_pre_invoke(&self, inv: MiddlewareCall) -> Result<MiddlewareCall, Refusal> {
        Ok(inv)
    }
    /// May answer in place of the actor.
    async fn actor_invoke(&self, inv: &MiddlewareCall) -> Flow {
        let _ = inv;
        Flow::Continue
    }
    /// After an actor answered; may rewrite the result.
    async fn actor_post_invoke(
        &self,
        inv: &MiddlewareCall,
        result: InvocationResult,
    ) -> InvocationResult {
        let _ = inv;
        result
    }
    /// Before a provider is invoked; may rewrite the invocation or refuse it.
    async fn capability_pre_invoke(&self, inv: MiddlewareCall) -> Result<MiddlewareCall, Refusal> {
        Ok(inv)
    }
    /// May answer in place of the provider.
    async fn capability_invoke(&self, inv: &MiddlewareCall) -> Flow {
        let _ = inv;
        Flow::Continue
    }
    /// After a provider answered; may rewrite the result.
    async fn capability_post_invoke(
        &self,
        inv: &MiddlewareCall,
        result: InvocationResult,
    ) -> InvocationResult {
        let _ = inv;
        result
    }
}

/// Which methods of a [`Middleware`] a chain calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// `actor_*`: an actor is invoked.
    Actor,
    /// `capability_*`: a provider is invoked.
    Capability,
}

/// The first half of the middleware chain, the same for actors and
/// providers: every pre-invoke step in order (a refusal ends the call),
/// then the invoke steps until one halts. Returns the call as the steps
/// left it, and the halting step's result if one halted; the caller then
/// runs the target unless one did, and hands the result to [`after`].
pub(crate) async fn before(
    middlewares: &[Arc<dyn Middleware>],
    side: Side,
    mut call: MiddlewareCall,
) -> Result<(MiddlewareCall, Option<InvocationResult>), HostError> {
    for m in middlewares {
        // The call moves into the step; what a refusal names is kept aside.
        let (target, operation) = (call.target.to_string(), call.operation.clone());
        let stepped = match side {
            Side::Actor => m.actor_pre_invoke(call).await,
            Side::Capability => m.capability_pre_invoke(call).await,
        };
        call = stepped.map_err(|refusal| HostError::Middleware {
            target,
            operation,
            refusal,
        })?;
    }
    for m in middlewares {
        let flow = match side {
            Side::Actor => m.actor_invoke(&call).await,
            Side::Capability => m.capability_invoke(&call).await,
        };
        if let Flow::Halt(result) = flow {
            return Ok((call, Some(result)));
        }
    }
    Ok((call, None))
}

/// The second half of the chain: every post-invoke step over the result.
pub(crate) async fn after(
    middlewares: &[Arc<dyn Middleware>],
    side: Side,
    call: &MiddlewareCall,
    mut result: InvocationResult,
) -> InvocationResult {
    for m in middlewares {
        result = match side {
            Side::Actor => m.actor_post_invoke(call, result).await,
            Side::Capability => m.capability_post_invoke(call, result).await,
        };
    }
    result
}
