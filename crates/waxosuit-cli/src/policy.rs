//! `waxosuit up`'s policy options: an embedded Rego policy or a remote OPA
//! server, from flags or the manifest's `policy:` section.
//!
//! A backend named by a flag (`--policy` or `--opa-url`) replaces the
//! manifest's; `--policy-cache-ttl-ms`, `--opa-timeout-ms` and
//! `--decision-log` override the manifest's values one by one. Without
//! either, no policy is consulted (the signed claims alone decide).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use waxosuit_manifest::{DecisionLogTarget, PolicyBackend, PolicySection};
use waxosuit_policy::{DecisionLog, Policy, PolicyConfig, PolicyEngine};
use waxosuit_policy_opa::OpaEngine;
use waxosuit_policy_rego::RegoEngine;

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    /// Evaluate this Rego file in process (repeatable; comma-separated in
    /// WAXOSUIT_POLICY). Decision points: data.waxosuit.{start,invoke,
    /// provider,command}.allow (docs/policy.md).
    #[arg(
        long = "policy",
        value_name = "FILE.rego",
        env = "WAXOSUIT_POLICY",
        value_delimiter = ','
    )]
    policies: Vec<PathBuf>,
    /// A JSON object merged into `data` for the embedded policy (repeatable).
    #[arg(
        long = "policy-data",
        value_name = "FILE.json",
        env = "WAXOSUIT_POLICY_DATA",
        value_delimiter = ','
    )]
    data: Vec<PathBuf>,
    /// Ask this OPA server instead (its Data API:
    /// `POST URL/v1/data/waxosuit/<point>/allow`).
    #[arg(
        long = "opa-url",
        value_name = "URL",
        env = "WAXOSUIT_OPA_URL",
        conflicts_with = "policies"
    )]
    opa_url: Option<String>,
    /// Time limit of one OPA decision, in milliseconds (default 1000); no
    /// answer in time denies.
    #[arg(
        long = "opa-timeout-ms",
        value_name = "MS",
        env = "WAXOSUIT_OPA_TIMEOUT_MS"
    )]
    opa_timeout_ms: Option<u64>,
    /// How long an invocation decision is reused, in milliseconds (default
    /// 10000; 0 asks every time).
    #[arg(
        long = "policy-cache-ttl-ms",
        value_name = "MS",
        env = "WAXOSUIT_POLICY_CACHE_TTL_MS"
    )]
    cache_ttl_ms: Option<u64>,
    /// Write one JSON line per evaluated decision (OPA's decision-log field
    /// names) to this file, or `-` for standard output.
    #[arg(
        long = "decision-log",
        value_name = "FILE|-",
        env = "WAXOSUIT_DECISION_LOG"
    )]
    decision_log: Option<String>,
}

/// The policy to install, and what to print about it at start-up.
pub(crate) struct Configured {
    pub policy: Arc<Policy>,
    pub summary: String,
}

impl PolicyArgs {
    /// The policy these flags and the manifest's section describe, if any.
    pub(crate) fn build(
        &self,
        section: Option<&PolicySection>,
        manifest: &str,
    ) -> Result<Option<Configured>> {
        let from_flags = if !self.policies.is_empty() {
            Some(PolicyBackend::Embedded {
                policies: self.policies.clone(),
                data: self.data.clone(),
            })
        } else {
            self.opa_url.as_ref().map(|url| PolicyBackend::Opa {
                url: url.clone(),
                timeout_ms: self.opa_timeout_ms,
            })
        };
        if from_flags.is_none() && !self.data.is_empty() {
            bail!("--policy-data needs a --policy FILE.rego to give the data to");
        }
        let (backend, origin) = match (from_flags, section) {
            (Some(backend), _) => (backend, "flags"),
            (None, Some(section)) => (section.backend.clone(), "the manifest's `policy:`"),
            (None, None) => {
                if self.decision_log.is_some() || self.cache_ttl_ms.is_some() {
                    bail!(
                        "--decision-log and --policy-cache-ttl-ms need a policy: pass --policy \
                         FILE.rego or --opa-url URL, or add a `policy:` section to {manifest}"
                    );
                }
                return Ok(None);
            }
        };
        let engine: Arc<dyn PolicyEngine> = match &backend {
            PolicyBackend::Embedded { policies, data } => Arc::new(
                RegoEngine::from_files(policies, data)
                    .with_context(|| format!("cannot load the policy given by {origin}"))?,
            ),
            PolicyBackend::Opa { url, timeout_ms } => {
                let timeout = self
                    .opa_timeout_ms
                    .or(*timeout_ms)
                    .map_or(waxosuit_policy_opa::DEFAULT_TIMEOUT, Duration::from_millis);
                Arc::new(
                    OpaEngine::new(url, timeout)
                        .with_context(|| format!("cannot use the OPA server given by {origin}"))?,
                )
            }
        };
        let cache_ttl = self
            .cache_ttl_ms
            .or(section.and_then(|s| s.cache_ttl_ms))
            .map_or(waxosuit_policy::DEFAULT_CACHE_TTL, Duration::from_millis);
        let log = match (
            &self.decision_log,
            section.and_then(|s| s.decision_log.as_ref()),
        ) {
            (Some(target), _) => Some(
                DecisionLog::open(target)
                    .with_context(|| format!("cannot open the decision log `{target}`"))?,
            ),
            (None, Some(DecisionLogTarget::Stdout)) => Some(DecisionLog::stdout()),
            (None, Some(DecisionLogTarget::File(path))) => Some(
                DecisionLog::file(path)
                    .with_context(|| format!("cannot open the decision log {}", path.display()))?,
            ),
            (None, None) => None,
        };
        let mut summary = format!(
            "{}; invocation decisions cached {}",
            engine.describe(),
            if cache_ttl.is_zero() {
                "never".to_string()
            } else {
                format!("{} ms", cache_ttl.as_millis())
            }
        );
        if let Some(log) = &log {
            summary.push_str(&format!("; decision log → {}", log.name()));
        }
        let policy = Policy::new(
            engine,
            PolicyConfig {
                cache_ttl,
                decision_log: log,
            },
        );
        Ok(Some(Configured {
            policy: Arc::new(policy),
            summary,
        }))
    }
}
