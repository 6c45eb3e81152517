//! [`Policy`]: an engine plus the host's rules for undefined documents,
//! failures, caching, logging and metrics.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{DecisionCache, Verdict};
use crate::metrics::{Counters, DecisionsCollector, Result3};
use crate::{DecisionLog, DecisionPoint, EngineError, Outcome, PolicyDenied, PolicyEngine};

/// How long an invocation decision is cached by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(10);

/// Most invocation decisions cached at once. Operation names come from
/// untrusted guests, so past this bound new keys are decided every time
/// rather than cached (see [`Policy::check_invoke`]).
pub const CACHE_CAPACITY: usize = 16_384;

/// How a [`Policy`] caches and logs.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// How long an invocation decision (allow or deny) is reused;
    /// [`Duration::ZERO`] asks the engine every time. Default
    /// [`DEFAULT_CACHE_TTL`] (10 s): a changed policy or OPA bundle takes
    /// effect on running actors within this time.
    pub cache_ttl: Duration,
    /// Where to write each evaluated decision, if anywhere.
    pub decision_log: Option<DecisionLog>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            cache_ttl: DEFAULT_CACHE_TTL,
            decision_log: None,
        }
    }
}

/// What identifies an invocation decision in the cache. The policy's input
/// for the call must not depend on anything else that varies between calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvokeKey<'a> {
    /// The actor's public key (`M…`).
    pub actor: &'a str,
    /// The capability id, or the other actor's key for calls between actors.
    pub capability: &'a str,
    /// The binding name.
    pub binding: &'a str,
    /// The operation.
    pub operation: &'a str,
    /// Which way the call goes: an actor calling out and a capability
    /// delivering to it are different decisions, even with equal names.
    pub direction: crate::input::Direction,
}

/// A policy engine with the host's decision rules. Share it (`Arc`) between
/// everything that asks.
///
/// * [`Outcome::Allow`] → `Ok(())`.
/// * [`Outcome::Deny`] → [`PolicyDenied::Denied`].
/// * [`Outcome::Undefined`] → [`PolicyDenied::Denied`] where the engine
///   [governs](PolicyEngine::governs) the point, `Ok(())` where it does not.
/// * An engine error → [`PolicyDenied::Failed`] (fail closed).
pub struct Policy {
    engine: Arc<dyn PolicyEngine>,
    describe: String,
    cache: DecisionCache,
    counters: Arc<Counters>,
    log: Option<DecisionLog>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("engine", &self.describe)
            .field("decision_log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Wraps `engine`.
    pub fn new(engine: Arc<dyn PolicyEngine>, config: PolicyConfig) -> Policy {
        Policy {
            describe: engine.describe(),
            engine,
            cache: DecisionCache::new(config.cache_ttl, CACHE_CAPACITY),
            counters: Arc::new(Counters::default()),
            log: config.decision_log,
        }
    }

    /// The engine's description, e.g. "embedded policy (authz.rego)".
    pub fn describe(&self) -> String {
        self.describe.clone()
    }

    /// Whether the engine governs `point` (see [`PolicyEngine::governs`]): a
    /// host can skip building inputs for points nobody governs.
    pub fn governs(&self, point: DecisionPoint) -> bool {
        self.engine.governs(point)
    }

    /// Asks the engine about `point` for `input`, every time (start,
    /// provider and command decisions, which are rare; and invocations on a
    /// cache miss). Logged and counted.
    pub async fn check(
        &self,
        point: DecisionPoint,
        input: serde_json::Value,
    ) -> Result<(), PolicyDenied> {
        let verdict = self.decide(point, input).await;
        self.verdict(point, verdict)
    }

    /// The decision for one invocation, cached per `key` for the configured
    /// TTL (allow and deny alike; failures are never cached). `input` is
    /// only called on a miss.
    ///
    /// A hit that allows neither allocates nor awaits; it costs a hash, a
    /// lookup, a clock read and a counter increment (see the
    /// `waxosuit-policy-rego` benchmarks). A hit that denies builds the
    /// [`PolicyDenied`] error.
    ///
    /// At most [`CACHE_CAPACITY`] keys are held; a key beyond that, while
    /// every held decision is still fresh, is decided without being cached.
    pub async fn check_invoke(
        &self,
        key: InvokeKey<'_>,
        input: impl FnOnce() -> serde_json::Value,
    ) -> Result<(), PolicyDenied> {
        let point = DecisionPoint::Invoke;
        if let Some(verdict) = self.cache.get(&key) {
            self.counters.count(point, result_label(verdict), true);
            return self.verdict(point, Ok(verdict));
        }
        let started = self.cache.now();
        let verdict = self.decide(point, input()).await;
        if let Ok(verdict) = verdict {
            self.cache.insert(&key, verdict, started);
        }
        self.verdict(point, verdict)
    }

    /// A Prometheus collector for `policy_decisions_total{point, result,
    /// cached}` (`result` is `allow`, `deny` or `error`; `cached` is `true`
    /// for invocation decisions the cache answered). Register it with
    /// `Registry::register_collector`; the registry's prefix applies, so a
    /// host registry with prefix `waxosuit` exposes
    /// `waxosuit_policy_decisions_total`. Every call returns a view of the
    /// same counters.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(DecisionsCollector(Arc::clone(&self.counters)))
    }

    /// Evaluates, applies the undefined rule, logs and counts.
    async fn decide(
        &self,
        point: DecisionPoint,
        input: serde_json::Value,
    ) -> Result<Verdict, EngineError> {
        let outcome = self.engine.evaluate(point, &input).await;
        if let Some(log) = &self.log {
            // The log records what the document was, not the verdict: an
            // undefined document has no `result`, whether or not it denied.
            let (result, error) = match &outcome {
                Ok(Outcome::Allow) => (Some(true), None),
                Ok(Outcome::Deny) => (Some(false), None),
                Ok(Outcome::Undefined) => (None, None),
                Err(err) => (None, Some(error_text(err))),
            };
            log.record(point, &input, result, error);
        }
        let verdict = outcome.map(|outcome| match outcome {
            Outcome::Allow => Verdict::Allow,
            Outcome::Deny => Verdict::DenyFalse,
            Outcome::Undefined if self.engine.governs(point) => Verdict::DenyUndefined,
            // Nothing in the policy set speaks about this point.
            Outcome::Undefined => Verdict::Allow,
        });
        let result = match &verdict {
            Ok(verdict) => result_label(*verdict),
            Err(_) => Result3::Error,
        };
        self.counters.count(point, result, false);
        verdict
    }

    fn verdict(
        &self,
        point: DecisionPoint,
        verdict: Result<Verdict, EngineError>,
    ) -> Result<(), PolicyDenied> {
        let reason = match verdict {
            Ok(Verdict::Allow) => return Ok(()),
            Ok(Verdict::DenyFalse) => format!("{} is not true", point.rule()),
            Ok(Verdict::DenyUndefined) => format!(
                "{} is undefined (no rule matched and there is no default), and the policy \
                 governs this decision point",
                point.rule()
            ),
            Err(source) => {
                return Err(PolicyDenied::Failed {
                    point,
                    policy: self.describe.clone(),
                    source,
                });
            }
        };
        Err(PolicyDenied::Denied {
            point,
            policy: self.describe.clone(),
            reason,
        })
    }
}

fn result_label(verdict: Verdict) -> Result3 {
    match verdict {
        Verdict::Allow => Result3::Allow,
        Verdict::DenyFalse | Verdict::DenyUndefined => Result3::Deny,
    }
}

/// An engine error with its causes, for the decision log's `error` field.
fn error_text(err: &EngineError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
