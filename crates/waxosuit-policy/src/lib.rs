//! Policy decisions for Waxosuit, in the shape of the Open Policy Agent (OPA):
//! the host asks a policy whether an actor may start, whether a call may go
//! through, whether a provider archive may load and whether a lattice command
//! may run, and denies whatever the policy does not allow.
//!
//! This crate is the contract. It has no policy language and no network
//! client: the embedded Rego engine (`waxosuit-policy-rego`) and the client of
//! a real OPA server (`waxosuit-policy-opa`) implement [`PolicyEngine`], and
//! the host talks to either through [`Policy`].
//!
//! # A guided tour
//!
//! * A [`DecisionPoint`] is one question the host asks: `start`, `invoke`,
//!   `provider` or `command`. Each is answered by one OPA document,
//!   `data.waxosuit.<point>.allow` ([`DecisionPoint::rule`]), which an OPA
//!   server serves at `/v1/data/waxosuit/<point>/allow`
//!   ([`DecisionPoint::data_path`]).
//! * The [`input`] module defines the input document of each point. They
//!   are plain `Serialize` structs: what a policy author reads as `input.…`.
//! * A [`PolicyEngine`] evaluates a document for an input and reports an
//!   [`Outcome`]: [`Allow`](Outcome::Allow) (the document is `true`),
//!   [`Deny`](Outcome::Deny) (it is anything else) or
//!   [`Undefined`](Outcome::Undefined) (no rule produced a value). It also
//!   says which points its policy set [`governs`](PolicyEngine::governs).
//! * [`Policy`] wraps an engine with the host's rules:
//!   - **Undefined** denies where the policy set governs the point and allows
//!     where it defines nothing for it, so a policy about invocations does
//!     not stop actors from starting.
//!   - **Fail closed**: an engine error (a crashed rule, an OPA server that
//!     is down or slow) denies, as [`PolicyDenied::Failed`].
//!   - **Cache**: [`Policy::check_invoke`] remembers each (actor,
//!     capability, binding, operation) decision, allow or deny, for
//!     [`PolicyConfig::cache_ttl`]; a hit costs tens of nanoseconds and
//!     allocates nothing when it allows. Errors are never cached.
//!   - **Decision log** ([`DecisionLog`]): one JSON line per evaluated
//!     decision, with OPA's field names.
//!   - **Metrics**: [`Policy::collector`] exposes
//!     `policy_decisions_total{point,result,cached}` to Prometheus.
//!
//! ```
//! use std::sync::Arc;
//! use serde_json::{Value, json};
//! use waxosuit_policy::{
//!     DecisionPoint, EngineError, InvokeKey, Outcome, Policy, PolicyConfig, PolicyDenied,
//!     PolicyEngine,
//! };
//!
//! /// A toy engine: only invocations are governed, and only `Get` is allowed.
//! struct ReadOnly;
//!
//! #[async_trait::async_trait]
//! impl PolicyEngine for ReadOnly {
//!     fn describe(&self) -> String {
//!         "read-only policy".into()
//!     }
//!     fn governs(&self, point: DecisionPoint) -> bool {
//!         point == DecisionPoint::Invoke
//!     }
//!     async fn evaluate(&self, point: DecisionPoint, input: &Value) -> Result<Outcome, EngineError> {
//!         Ok(match (point, input["operation"].as_str()) {
//!             (DecisionPoint::Invoke, Some("Get")) => Outcome::Allow,
//!             (DecisionPoint::Invoke, Some(_)) => Outcome::Deny,
//!             _ => Outcome::Undefined,
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = Policy::new(Arc::new(ReadOnly), PolicyConfig::default());
//! let key = |operation| InvokeKey {
//!     actor: "MACTOR",
//!     capability: "wascc:keyvalue",
//!     binding: "default",
//!     operation,
//!     direction: waxosuit_policy::input::Direction::Outbound,
//! };
//!
//! policy.check_invoke(key("Get"), || json!({ "operation": "Get" })).await.unwrap();
//! let denied = policy
//!     .check_invoke(key("Set"), || json!({ "operation": "Set" }))
//!     .await
//!     .unwrap_err();
//! assert!(matches!(denied, PolicyDenied::Denied { point: DecisionPoint::Invoke, .. }));
//! assert!(denied.to_string().starts_with("invocation denied by read-only policy"));
//!
//! // The policy says nothing about starting actors, so that stays allowed.
//! policy.check(DecisionPoint::Start, json!({})).await.unwrap();
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod cache;
mod error;
pub mod input;
mod log;
mod metrics;
mod policy;

use std::fmt;

pub use error::{EngineError, EngineErrorKind, PolicyDenied};
pub use log::DecisionLog;
pub use policy::{CACHE_CAPACITY, DEFAULT_CACHE_TTL, InvokeKey, Policy, PolicyConfig};

/// A question the host asks the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionPoint {
    /// May this signed module start as an actor? Input:
    /// [`input::StartInput`].
    Start,
    /// May this call between an actor and a capability (or another actor) go
    /// through? Input: [`input::InvokeInput`].
    Invoke,
    /// May this signed provider archive load? Input:
    /// [`input::ProviderInput`].
    Provider,
    /// May this signed lattice command run on this host? Input:
    /// [`input::CommandInput`].
    Command,
}

impl DecisionPoint {
    /// Every decision point, in a fixed order.
    pub const ALL: [DecisionPoint; 4] = [
        DecisionPoint::Start,
        DecisionPoint::Invoke,
        DecisionPoint::Provider,
        DecisionPoint::Command,
    ];

    /// The point's name, which is also its package below `waxosuit`:
    /// `start`, `invoke`, `provider` or `command`.
    pub fn name(self) -> &'static str {
        match self {
            DecisionPoint::Start => "start",
            DecisionPoint::Invoke => "invoke",
            DecisionPoint::Provider => "provider",
            DecisionPoint::Command => "command",
        }
    }

    /// The document that decides, as a Rego reference:
    /// `data.waxosuit.<point>.allow`.
    pub fn rule(self) -> &'static str {
        match self {
            DecisionPoint::Start => "data.waxosuit.start.allow",
            DecisionPoint::Invoke => "data.waxosuit.invoke.allow",
            DecisionPoint::Provider => "data.waxosuit.provider.allow",
            DecisionPoint::Command => "data.waxosuit.command.allow",
        }
    }

    /// The same document as an OPA Data API path (what follows `/v1/data/`):
    /// `waxosuit/<point>/allow`. Also the decision log's `path`.
    pub fn data_path(self) -> &'static str {
        match self {
            DecisionPoint::Start => "waxosuit/start/allow",
            DecisionPoint::Invoke => "waxosuit/invoke/allow",
            DecisionPoint::Provider => "waxosuit/provider/allow",
            DecisionPoint::Command => "waxosuit/command/allow",
        }
    }

    /// What is being decided, for messages: "actor start", "invocation",
    /// "provider archive load" or "lattice command".
    pub fn describe(self) -> &'static str {
        match self {
            DecisionPoint::Start => "actor start",
            DecisionPoint::Invoke => "invocation",
            DecisionPoint::Provider => "provider archive load",
            DecisionPoint::Command => "lattice command",
        }
    }

    /// The point called `name` (as [`DecisionPoint::name`] spells it).
    pub fn from_name(name: &str) -> Option<DecisionPoint> {
        DecisionPoint::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The point whose [`data_path`](DecisionPoint::data_path) is `path`
    /// (a leading or trailing `/` is ignored).
    pub fn from_data_path(path: &str) -> Option<DecisionPoint> {
        let path = path.trim_matches('/');
        DecisionPoint::ALL
            .into_iter()
            .find(|p| p.data_path() == path)
    }

    /// The point's position in [`DecisionPoint::ALL`], for per-point
    /// tables (`[T; 4]`).
    pub fn index(self) -> usize {
        match self {
            DecisionPoint::Start => 0,
            DecisionPoint::Invoke => 1,
            DecisionPoint::Provider => 2,
            DecisionPoint::Command => 3,
        }
    }
}

impl fmt::Display for DecisionPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an engine found the decision document to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The document is `true`.
    Allow,
    /// The document has a value, and it is not `true` (`false`, but also a
    /// string, a number, an object…: only `true` allows).
    Deny,
    /// No rule produced a value and no default applies.
    Undefined,
}

/// Something that evaluates `data.waxosuit.<point>.allow` for an input: an
/// embedded Rego interpreter, or a client of an OPA server.
///
/// Implementations are shared by every task of a multi-threaded runtime, so
/// `evaluate` takes `&self` and may run concurrently with itself.
#[async_trait::async_trait]
pub trait PolicyEngine: Send + Sync + 'static {
    /// Names the engine and its policy for messages, e.g. "embedded policy
    /// (authz.rego, tenants.rego)" or "OPA at http://127.0.0.1:8181".
    fn describe(&self) -> String;

    /// Whether the loaded policy set defines anything under
    /// `data.waxosuit.<point>` (rules in package `waxosuit.<point>` or below,
    /// or data documents under that path). [`Policy`] turns an
    /// [`Outcome::Undefined`] into a denial only for governed points. A
    /// remote engine cannot know what its server loaded, so it returns `true`
    /// for every point.
    fn governs(&self, point: DecisionPoint) -> bool;

    /// Evaluates `point`'s document ([`DecisionPoint::rule`]) with `input`
    /// as `input`. An `Err` means no decision could be made; [`Policy`]
    /// denies it.
    async fn evaluate(
        &self,
        point: DecisionPoint,
        input: &serde_json::Value,
    ) -> Result<Outcome, EngineError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_rules_and_paths_agree() {
        for point in DecisionPoint::ALL {
            assert_eq!(
                point.rule(),
                format!("data.waxosuit.{}.allow", point.name())
            );
            assert_eq!(
                point.data_path(),
                format!("waxosuit/{}/allow", point.name())
            );
            assert_eq!(DecisionPoint::from_name(point.name()), Some(point));
            assert_eq!(
                DecisionPoint::from_data_path(point.data_path()),
                Some(point)
            );
            assert_eq!(
                DecisionPoint::from_data_path(&format!("/{}/", point.data_path())),
                Some(point)
            );
            assert_eq!(DecisionPoint::ALL[point.index()], point);
            assert_eq!(point.to_string(), point.name());
        }
        assert_eq!(DecisionPoint::from_name("allow"), None);
        assert_eq!(DecisionPoint::from_data_path("waxosuit/start"), None);
    }
}
