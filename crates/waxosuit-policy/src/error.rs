//! Why a decision could not be made ([`EngineError`]) and why a request was
//! refused ([`PolicyDenied`]).

use std::error::Error as StdError;

use crate::DecisionPoint;

/// The boxed cause an [`EngineError`] keeps.
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What kind of failure an [`EngineError`] is; lets callers tell a broken
/// policy from an unreachable server without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EngineErrorKind {
    /// The policy could not be evaluated for this input: a complete rule with
    /// conflicting values, a builtin that failed, an evaluation limit.
    Evaluation,
    /// The engine gave no answer within its time limit.
    Timeout,
    /// The engine could not be reached: connection refused, a name that does
    /// not resolve, a TLS failure.
    Unavailable,
    /// The engine answered, but not with a decision: an error status, a body
    /// that is not the expected JSON, a body too large.
    BadResponse,
}

/// A decision that could not be made. [`Policy`](crate::Policy) denies it
/// (fail closed) as [`PolicyDenied::Failed`].
///
/// The message says what went wrong in this engine's terms ("no answer within
/// 1000 ms", "OPA answered 500 Internal Server Error: …"); the underlying
/// error, when there is one, is kept as the [`source`](StdError::source).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    kind: EngineErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl EngineError {
    /// An error of `kind` described by `message`, without an underlying
    /// cause.
    pub fn new(kind: EngineErrorKind, message: impl Into<String>) -> EngineError {
        EngineError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// [`EngineErrorKind::Evaluation`]: the policy failed for this input.
    pub fn evaluation(message: impl Into<String>) -> EngineError {
        EngineError::new(EngineErrorKind::Evaluation, message)
    }

    /// Keeps `source` as the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> EngineError {
        self.source = Some(source.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> EngineErrorKind {
        self.kind
    }

    /// The message, without the underlying cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the engine did not answer in time.
    pub fn is_timeout(&self) -> bool {
        self.kind == EngineErrorKind::Timeout
    }

    /// Whether the engine could not be reached at all.
    pub fn is_unavailable(&self) -> bool {
        self.kind == EngineErrorKind::Unavailable
    }

    /// Whether the policy itself failed to evaluate.
    pub fn is_evaluation(&self) -> bool {
        self.kind == EngineErrorKind::Evaluation
    }
}

/// A request the policy refused. Both variants name the decision point and
/// the policy ([`PolicyEngine::describe`](crate::PolicyEngine::describe)).
#[derive(Debug, thiserror::Error)]
pub enum PolicyDenied {
    /// The decision document was not `true`: `false` (or another value), or
    /// undefined at a point the policy set governs.
    #[error("{} denied by {policy}: {reason}", point.describe())]
    Denied {
        /// The decision point.
        point: DecisionPoint,
        /// The policy that decided.
        policy: String,
        /// Why, in the policy's terms (e.g. "data.waxosuit.invoke.allow is
        /// false").
        reason: String,
    },
    /// No decision could be made, and a policy that cannot decide denies.
    #[error("{} denied: {policy} could not decide, and an undecided request is refused", point.describe())]
    Failed {
        /// The decision point.
        point: DecisionPoint,
        /// The policy that failed.
        policy: String,
        /// What went wrong.
        #[source]
        source: EngineError,
    },
}

impl PolicyDenied {
    /// The decision point that refused.
    pub fn point(&self) -> DecisionPoint {
        match self {
            PolicyDenied::Denied { point, .. } | PolicyDenied::Failed { point, .. } => *point,
        }
    }

    /// The policy that refused, as its engine describes itself.
    pub fn policy(&self) -> &str {
        match self {
            PolicyDenied::Denied { policy, .. } | PolicyDenied::Failed { policy, .. } => policy,
        }
    }

    /// Whether the refusal is a failure to decide (fail closed) rather than a
    /// decision.
    pub fn is_failure(&self) -> bool {
        matches!(self, PolicyDenied::Failed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_keep_kind_message_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err =
            EngineError::new(EngineErrorKind::Unavailable, "cannot reach OPA").with_source(io);
        assert!(err.is_unavailable() && !err.is_timeout() && !err.is_evaluation());
        assert_eq!(err.to_string(), "cannot reach OPA");
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("refused")
        );
        let err = EngineError::evaluation("conflicting values");
        assert_eq!(err.kind(), EngineErrorKind::Evaluation);
        assert!(err.source().is_none());
    }

    #[test]
    fn denials_name_point_policy_and_reason() {
        let denied = PolicyDenied::Denied {
            point: DecisionPoint::Start,
            policy: "embedded policy (a.rego)".into(),
            reason: "data.waxosuit.start.allow is false".into(),
        };
        assert_eq!(
            denied.to_string(),
            "actor start denied by embedded policy (a.rego): data.waxosuit.start.allow is false"
        );
        assert!(!denied.is_failure());
        assert_eq!(denied.point(), DecisionPoint::Start);

        let failed = PolicyDenied::Failed {
            point: DecisionPoint::Command,
            policy: "OPA at http://127.0.0.1:8181".into(),
            source: EngineError::new(EngineErrorKind::Timeout, "no answer within 1000 ms"),
        };
        assert!(failed.is_failure());
        assert_eq!(failed.policy(), "OPA at http://127.0.0.1:8181");
        let text = failed.to_string();
        assert!(
            text.starts_with("lattice command denied: OPA at http://127.0.0.1:8181"),
            "{text}"
        );
        assert_eq!(
            failed.source().map(ToString::to_string).as_deref(),
            Some("no answer within 1000 ms")
        );
    }
}
