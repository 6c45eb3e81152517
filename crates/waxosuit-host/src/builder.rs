//! [`HostBuilder`]: how a [`Host`] is configured.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use parking_lot::RwLock;
use waxosuit_claims::Verifier;
use waxosuit_runtime::{Limits, Runtime, RuntimeConfig};

use crate::HostError;
use crate::gate::Gate;
use crate::host::{Defaults, HealthState, Host, HostIdentity, HostInner};
use crate::policy::{Authorizer, ClaimsOnly, Middleware};
use crate::read_mostly::ReadMostly;
use crate::remote::Remote;
use crate::table::ActorTable;

/// Configures and builds a [`Host`].
pub struct HostBuilder {
    runtime: Option<Runtime>,
    verifier: Verifier,
    authorizer: Arc<dyn Authorizer>,
    middlewares: Vec<Arc<dyn Middleware>>,
    labels: BTreeMap<String, String>,
    id: Option<String>,
    policy: Option<Arc<waxosuit_policy::Policy>>,
    default_limits: Limits,
    auto_bind: Vec<String>,
}

impl Default for HostBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBuilder {
    /// Defaults: a runtime with default configuration, a verifier that
    /// trusts no issuer until configured (`Verifier::new()`: every actor is
    /// refused until [`verifier`](Self::verifier) installs one that trusts
    /// its issuer, or allows any issuer for development), the claims-only
    /// authorizer, no middleware, default limits.
    pub fn new() -> HostBuilder {
        HostBuilder {
            runtime: None,
            verifier: Verifier::new(),
            authorizer: Arc::new(ClaimsOnly),
            middlewares: Vec::new(),
            labels: BTreeMap::new(),
            id: None,
            policy: None,
            default_limits: Limits::default(),
            auto_bind: Vec::new(),
        }
    }

    /// Uses this runtime (engine, cache, allocator).
    pub fn runtime(mut self, runtime: Runtime) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// Uses this verifier (trust list, clock skew) for actors and updates.
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = verifier;
        self
    }

    /// Installs a policy hook.
    pub fn authorizer(mut self, authorizer: impl Authorizer) -> Self {
        self.authorizer = Arc::new(authorizer);
        self
    }

    /// Adds a middleware; they run in the order added.
    pub fn middleware(mut self, middleware: impl Middleware) -> Self {
        self.middlewares.push(Arc::new(middleware));
        self
    }

    /// Adds a host label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// The host's identity (its server key in a lattice), as policy inputs
    /// and `HostInfo` report it.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Consults `policy` before every actor start and on every invocation
    /// into or out of an actor (`waxosuit-policy`); its decision counts
    /// appear in [`Host::metrics_text`](crate::Host::metrics_text).
    pub fn policy(mut self, policy: Arc<waxosuit_policy::Policy>) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Limits for actors added without their own.
    pub fn default_limits(mut self, limits: Limits) -> Self {
        self.default_limits = limits;
        self
    }

    /// Binds every new actor whose claims grant `capid` to the provider
    /// registered under (`capid`, `default`), without configuration. waSCC
    /// did this for `wascc:extras`.
    pub fn auto_bind(mut self, capid: impl Into<String>) -> Self {
        self.auto_bind.push(capid.into());
        self
    }

    /// Builds the host.
    pub fn build(self) -> Result<Host, HostError> {
        let runtime = match self.runtime {
            Some(r) => r,
            None => Runtime::new(RuntimeConfig::default()).map_err(|error| HostError::Runtime {
                actor: String::new(),
                name: "(runtime)".to_string(),
                error: Box::new(error),
            })?,
        };
        let gate = self.policy.as_ref().map(|policy| {
            Arc::new(Gate::new(
                Arc::clone(policy),
                self.id.clone(),
                self.labels.clone(),
            ))
        });
        let actors = Arc::new(ActorTable::new(self.middlewares, gate));
        if let Some(policy) = &self.policy {
            actors.metrics.register(policy.collector());
        }
        Ok(Host {
            inner: Arc::new(HostInner {
                runtime,
                verifier: self.verifier,
                authorizer: self.authorizer,
                identity: HostIdentity {
                    id: self.id,
                    labels: self.labels,
                    started: Instant::now(),
                },
                defaults: Defaults {
                    limits: self.default_limits,
                    auto_bind: self.auto_bind,
                },
                actors,
                providers: ReadMostly::default(),
                stopping: AtomicBool::new(false),
                health: RwLock::new(HealthState::default()),
                remote: Remote::default(),
                events: tokio::sync::broadcast::channel(1024).0,
            }),
        })
    }
}
