//! [`Host`]: the facade over the actor table, the provider table and the
//! bindings. Invocation paths are in `invoke`, health in `health`.

use std::collections::{BTreeMap, HashMap};

// Internal maps use a fast non-cryptographic hash: their keys are actor keys
// loaded by the operator and capability routes, not attacker-chosen input.
use rustc_hash::FxHashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use futures_util::FutureExt;
use parking_lot::RwLock;
use waxosuit_claims::{VerifiedActor, Verifier};
use waxosuit_codec::capabilities::CapabilityDescriptor;
use waxosuit_codec::core as wcore;
use waxosuit_provider::{CapabilityProvider, ProviderError};
use waxosuit_runtime::{Actor, ActorKey, Limits, Runtime, RuntimeError};

use crate::builder::HostBuilder;
use crate::events::HostEvent;
use crate::health::HealthReport;
use crate::metrics::SeriesCache;
use crate::policy::{Authorizer, Entity};
use crate::read_mostly::ReadMostly;
use crate::remote::Remote;
use crate::router::Router;
use crate::table::ActorTable;
use crate::{HostError, HostInfo};

/// The binding name used when none is given.
pub const DEFAULT_BINDING: &str = "default";

/// A capability id and a binding name: where a provider is registered and
/// what a binding points to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    /// Capability id.
    pub capid: String,
    /// Binding name.
    pub binding: String,
}

impl RouteKey {
    /// A route; an empty binding name means [`DEFAULT_BINDING`].
    pub fn new(capid: impl Into<String>, binding: impl Into<String>) -> RouteKey {
        let binding = binding.into();
        RouteKey {
            capid: capid.into(),
            binding: if binding.trim().is_empty() {
                DEFAULT_BINDING.to_string()
            } else {
                binding
            },
        }
    }
}

pub(crate) struct ActorEntry {
    pub(crate) series: SeriesCache,
    pub(crate) claims: ReadMostly<VerifiedActor>,
    pub(crate) runtime: Actor<Router>,
    pub(crate) bindings: ReadMostly<FxHashMap<RouteKey, BTreeMap<String, String>>>,
}

impl ActorEntry {
    pub(crate) fn claims(&self) -> Arc<VerifiedActor> {
        self.claims.load_full()
    }

    pub(crate) fn is_bound(&self, route: &RouteKey) -> bool {
        self.bindings.load().contains_key(route)
    }
}

pub(crate) struct ProviderEntry {
    pub(crate) provider: Arc<dyn CapabilityProvider>,
    pub(crate) descriptor: CapabilityDescriptor,
}
pub(crate) struct HostInner {
    pub(crate) runtime: Runtime,
    pub(crate) verifier: Verifier,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) identity: HostIdentity,
    pub(crate) defaults: Defaults,
    /// Shared with every provider's dispatcher (see `table`).
    pub(crate) actors: Arc<ActorTable>,
    pub(crate) providers: ReadMostly<FxHashMap<RouteKey, Arc<ProviderEntry>>>,
    pub(crate) stopping: AtomicBool,
    pub(crate) health: RwLock<HealthState>,
    /// The transport's link and the bindings of actors on other hosts.
    pub(crate) remote: Remote,
    pub(crate) events: tokio::sync::broadcast::Sender<HostEvent>,
}

/// Who this host says it is (`HostInfo`), fixed at build.
pub(crate) struct HostIdentity {
    pub(crate) id: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) started: Instant,
}

/// What actors get when they ask for nothing else.
pub(crate) struct Defaults {
    pub(crate) limits: Limits,
    /// Capabilities every new actor is bound to under `default`.
    pub(crate) auto_bind: Vec<String>,
}

/// The last health report, and the last known health per actor, so that
/// only changes become events; one lock, since a check updates both.
#[derive(Default)]
pub(crate) struct HealthState {
    pub(crate) report: HealthReport,
    pub(crate) known: FxHashMap<ActorKey, bool>,
}
impl Drop for HostInner {
    fn drop(&mut self) {
        // Dispatchers of providers that outlive the host (a server task
        // still draining) hold the table; emptied, it turns their calls
        // into "shutting down" instead of keeping the actors running.
        self.actors.entries.store(FxHashMap::default());
    }
}

/// The Waxosuit host. Cheap to clone; clones share everything.
///
/// Stop it with [`Host::shutdown`], which lets providers drain the calls
/// in flight. Dropping the last clone without it stops the host at once:
/// a provider that is still serving finds no actors, and the host calls of
/// actor calls already running fail with "the host is shutting down".
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

/// What the host knows about one running actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorInfo {
    /// Module public key.
    pub key: ActorKey,
    /// Name from the claims.
    pub name: String,
    /// Issuer account key.
    pub issuer: String,
    /// Capabilities granted by the claims.
    pub capabilities: Vec<String>,
    /// Established bindings.
    pub bindings: Vec<RouteKey>,
}

/// What the host knows about one registered provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// Where it is registered.
    pub route: RouteKey,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
}

impl Host {
    /// A host with default settings (see [`HostBuilder`]).
    pub fn new() -> Result<Host, HostError> {
        HostBuilder::new().build()
    }

    /// Static facts about this host.
    pub fn info(&self) -> HostInfo {
        HostInfo {
            id: self.inner.identity.id.clone(),
            labels: self.inner.identity.labels.clone(),
            uptime: self.inner.identity.started.elapsed(),
        }
    }

    /// Verifies, authorizes and starts an actor. `origin` (a path, a URL)
    /// appears in error messages. A module signed as a Proxy-Wasm filter
    /// is refused with [`HostError::FilterAsActor`] (see
    /// [`Host::admit_filter`]).
    pub async fn add_actor(
        &self,
        module: &[u8],
        origin: &str,
        limits: Option<Limits>,
    ) -> Result<ActorInfo, HostError> {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Acquire) {
            return Err(HostError::ShuttingDown);
        }
        let claims = inner
            .verifier
            .verify_actor(module)
            .map_err(|error| HostError::Claims {
                origin: origin.to_string(),
                error: Box::new(error),
            })?;
        refuse_filter(&claims, origin)?;
        let key_text = claims.public_key().to_string();
        let name = claims.name().to_string();
        if !inner.authorizer.can_load(&claims) {
            return Err(HostError::LoadDenied {
                actor: key_text,
                name,
            });
        }
        if let Some(gate) = &inner.actors.gate {
            gate.start(&claims, module.len(), origin).await?;
        }
        if inner.actors.entries.load().contains_key(&key_text) {
            return Err(HostError::DuplicateActor {
                actor: key_text,
                name,
            });
        }
        if let Some(alias) = claims.metadata().call_alias.as_deref() {
            self.check_alias(alias, &key_text, &name)?;
        }
        let runtime_err = |error: RuntimeError| HostError::Runtime {
            actor: key_text.clone(),
            name: name.clone(),
            error: Box::new(error),
        };
        let key = ActorKey::new(key_text.clone()).map_err(runtime_err)?;
        let router = Arc::new(Router::new(Arc::downgrade(&self.inner)));
        let runtime = inner
            .runtime
            .load(key, module, limits.unwrap_or(inner.defaults.limits), router)
            .await
            .map_err(runtime_err)?;
        let entry = Arc::new(ActorEntry {
            series: SeriesCache::default(),
            claims: ReadMostly::new(claims),
            runtime,
            bindings: ReadMostly::default(),
        });
        // Checked again where it is decided: two starts with one alias may
        // have raced through the check above while their modules loaded.
        let alias = entry.claims().metadata().call_alias.clone();
        let inserted = inner.actors.entries.update(|actors| {
            if actors.contains_key(&key_text) {
                return Err(None);
            }
            if let Some(alias) = &alias
                && let Some((owner, _)) = actors
                    .iter()
                    .find(|(_, e)| e.claims().metadata().call_alias.as_ref() == Some(alias))
            {
                return Err(Some(owner.clone()));
            }
            actors.insert(key_text.clone(), Arc::clone(&entry));
            Ok(())
        });
        match inserted {
            Ok(()) => {}
            Err(None) => {
                return Err(HostError::DuplicateActor {
                    actor: key_text,
                    name,
                });
            }
            Err(Some(owner)) => {
                return Err(HostError::DuplicateAlias {
                    alias: alias.unwrap_or_default(),
                    actor: key_text,
                    name,
                    owner,
                });
            }
        }
        tracing::info!(actor = %key_text, %name, "actor started");
        let granted = entry.claims();
        self.emit(HostEvent::ActorStarted {
            actor: entry.runtime.key().clone(),
            name: name.clone(),
            claims: granted.jwt().to_string(),
        });
        let link = inner.remote.link.read().clone();
        if let Some(link) = link {
            link.actor_started(&key_text).await;
        }
        for capid in &inner.defaults.auto_bind {
            let route = RouteKey::new(capid.clone(), DEFAULT_BINDING);
            if granted.has_capability(capid) && inner.providers.load().contains_key(&route) {
                self.set_binding(&key_text, capid, DEFAULT_BINDING, BTreeMap::new())
                    .await?;
            }
        }
        self.refresh_counts();
        self.actor_info(&key_text)
    }

    /// Replaces a running actor's module with a newly verified one signed
    /// with the same module key, without failing in-flight or queued calls.
    /// Bindings of capabilities the new claims do not grant are removed (and
    /// their providers told), with a warning each.
    /// A module signed as a Proxy-Wasm filter is refused with
    /// [`HostError::FilterAsActor`].
    pub async fn update_actor(&self, module: &[u8]) -> Result<ActorInfo, HostError> {
        let inner = &self.inner;
        let claims = inner
            .verifier
            .verify_actor(module)
            .map_err(|error| HostError::Claims {
                origin: "update".to_string(),
                error: Box::new(error),
            })?;
        refuse_filter(&claims, "update")?;
        let key_text = claims.public_key().to_string();
        let entry = self.entry(&key_text)?;
        if let Some(alias) = claims.metadata().call_alias.as_deref() {
            self.check_alias(alias, &key_text, claims.name())?;
        }
        if !inner.authorizer.can_load(&claims) {
            return Err(HostError::LoadDenied {
                actor: key_text,
                name: claims.name().to_string(),
            });
        }
        if let Some(gate) = &inner.actors.gate {
            gate.start(&claims, module.len(), "update").await?;
        }
        let key = entry.runtime.key().clone();
        entry
            .runtime
            .replace_module(&key, module)
            .await
            .map_err(|error| match error {
                RuntimeError::KeyMismatch { .. } => HostError::UpdateKeyMismatch {
                    expected: key.to_string(),
                    got: key_text.clone(),
                },
                error => HostError::Runtime {
                    actor: key_text.clone(),
                    name: claims.name().to_string(),
                    error: Box::new(error),
                },
            })?;
        let jwt = claims.jwt().to_string();
        entry.claims.store(claims);
        // A binding the new claims do not grant (nor the authorizer, which
        // may grant what claims do not) is dropped: deliveries check the
        // binding, not the claims, so a kept binding would go on handing
        // the actor requests and messages of a capability its signature no
        // longer names. After the claims are stored: a bind finishing
        // meanwhile judges its insert against the claims in force, in the
        // same locked step, so it is either refused there or dropped here.
        let dropped: Vec<RouteKey> = entry.bindings.update(|bindings| {
            let claims = entry.claims();
            let dropped: Vec<RouteKey> = bindings
                .keys()
                .filter(|route| !inner.may_bind(&claims, route))
                .cloned()
                .collect();
            for route in &dropped {
                bindings.remove(route);
            }
            dropped
        });
        for route in dropped {
            tracing::warn!(
                actor = %key_text,
                capability = %route.capid,
                binding = %route.binding,
                "the updated claims (or the authorizer) no longer grant a bound capability: the \
                 binding is removed; sign the module with the capability again and bind it anew \
                 to restore it"
            );
            if let Some(p) = self.provider(&route)
                && let Err(e) =
                    guard_provider(&route, p.provider.remove_actor(&key, &route.binding)).await
            {
                tracing::warn!(actor = %key, capability = %route.capid, error = %e, "provider failed to release the actor");
            }
            self.emit(HostEvent::BindingRemoved {
                actor: key.clone(),
                route,
            });
        }
        self.refresh_counts();
        tracing::info!(actor = %key_text, "actor updated");
        self.emit(HostEvent::ActorUpdated {
            actor: entry.runtime.key().clone(),
            claims: jwt,
        });
        self.actor_info(&key_text)
    }

    /// Stops an actor: removes its bindings (telling each provider) and drops
    /// it. Calls in flight finish; new calls fail with "not running".
    pub async fn remove_actor(&self, actor: &str) -> Result<(), HostError> {
        let key = self.resolve_actor(actor)?;
        let entry = self
            .inner
            .actors
            .entries
            .update(|actors| actors.remove(key.as_str()))
            .ok_or_else(|| HostError::ActorNotFound {
                actor: actor.to_string(),
            })?;
        let routes: Vec<RouteKey> = entry.bindings.update(std::mem::take).into_keys().collect();
        for route in routes {
            if let Some(p) = self.provider(&route)
                && let Err(e) =
                    guard_provider(&route, p.provider.remove_actor(&key, &route.binding)).await
            {
                tracing::warn!(actor = %key, capability = %route.capid, error = %e, "provider failed to release the actor");
            }
        }
        tracing::info!(actor = %key, "actor removed");
        self.emit(HostEvent::ActorStopped { actor: key.clone() });
        self.refresh_counts();
        Ok(())
    }

    /// Calls an actor (key or name) from the host itself.
    pub async fn call_actor(
        &self,
        actor: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        // The common case is a key: one lookup; names are resolved only on a miss.
        let entry = match self.inner.actor(actor) {
            Some(entry) => entry,
            None => self.entry(&self.resolve_actor(actor)?)?,
        };
        self.inner
            .actors
            .invoke_actor(|| Entity::Host, &entry, operation, payload)
            .await
    }

    /// The running actors.
    pub fn actors(&self) -> Vec<ActorInfo> {
        let mut keys: Vec<String> = self.inner.actors.entries.load().keys().cloned().collect();
        keys.sort();
        keys.iter()
            .filter_map(|k| self.actor_info(k).ok())
            .collect()
    }

    /// A running actor's signed claims (compact JWT), for other hosts to
    /// verify without the module.
    pub fn actor_claims(&self, actor: &ActorKey) -> Option<String> {
        self.inner
            .actor(actor.as_str())
            .map(|e| e.claims().jwt().to_string())
    }

    /// The registered providers.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        let mut out: Vec<ProviderInfo> = self
            .inner
            .providers
            .load()
            .iter()
            .map(|(route, p)| ProviderInfo {
                route: route.clone(),
                name: p.descriptor.name.clone(),
                version: p.descriptor.version.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }

    /// Resolves an actor reference: a running actor's key, or a unique name.
    pub fn resolve_actor(&self, reference: &str) -> Result<ActorKey, HostError> {
        let actors = self.inner.actors.entries.load();
        if let Some(entry) = actors.get(reference) {
            return Ok(entry.runtime.key().clone());
        }
        let mut matches: Vec<&ActorKey> = actors
            .values()
            .filter(|e| e.claims().name() == reference)
            .map(|e| e.runtime.key())
            .collect();
        match matches.len() {
            0 => Err(HostError::ActorNotFound {
                actor: reference.to_string(),
            }),
            1 => Ok(matches.remove(0).clone()),
            _ => {
                matches.sort();
                let keys: Vec<&str> = matches.iter().map(|k| k.as_str()).collect();
                Err(HostError::AmbiguousActorName {
                    name: reference.to_string(),
                    keys: keys.join(", "),
                })
            }
        }
    }

    /// Prometheus text exposition of the host's metrics.
    pub fn metrics_text(&self) -> String {
        self.inner.actors.metrics.encode()
    }

    /// Exposes another part's metrics (the lattice's, policy's) with the
    /// host's in [`Host::metrics_text`], under the same `waxosuit` prefix.
    pub fn register_metrics(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.inner.actors.metrics.register(collector);
    }

    /// The largest payload `actor` accepts (its limits), or the host's
    /// default limit when `actor` is `None` or not running here: what a
    /// transport may deliver to it at most.
    pub fn payload_limit(&self, actor: Option<&ActorKey>) -> usize {
        actor
            .and_then(|key| self.inner.actor(key.as_str()))
            .map_or(self.inner.defaults.limits.max_payload, |entry| {
                entry.runtime.limits().max_payload
            })
    }

    /// Stops the host: providers first (so servers drain their in-flight
    /// requests while actors still run), then actors.
    pub async fn shutdown(&self) {
        self.inner.stopping.store(true, Ordering::Release);
        let providers: Vec<(RouteKey, Arc<ProviderEntry>)> = self
            .inner
            .providers
            .update(std::mem::take)
            .into_iter()
            .collect();
        for (route, p) in providers {
            if AssertUnwindSafe(p.provider.shutdown())
                .catch_unwind()
                .await
                .is_err()
            {
                tracing::error!(capability = %route.capid, "provider panicked while shutting down");
            }
        }
        self.inner.actors.entries.store(FxHashMap::default());
        self.refresh_counts();
        tracing::info!("host stopped");
    }

    /// A `call_alias` names one actor: refused when another actor (here,
    /// or elsewhere in the lattice) already has it. Replicas of the same
    /// module key may share it.
    pub(crate) fn check_alias(&self, alias: &str, key: &str, name: &str) -> Result<(), HostError> {
        let local = self
            .inner
            .actors
            .entries
            .load()
            .iter()
            .find(|(k, e)| {
                k.as_str() != key && e.claims().metadata().call_alias.as_deref() == Some(alias)
            })
            .map(|(k, _)| k.clone());
        let owner = local.or_else(|| {
            let link = self.inner.remote.link.read().clone()?;
            link.alias_owner(alias).filter(|owner| owner != key)
        });
        match owner {
            Some(owner) => Err(HostError::DuplicateAlias {
                alias: alias.to_string(),
                actor: key.to_string(),
                name: name.to_string(),
                owner,
            }),
            None => Ok(()),
        }
    }

    pub(crate) fn entry(&self, key: &str) -> Result<Arc<ActorEntry>, HostError> {
        self.inner
            .actor(key)
            .ok_or_else(|| HostError::ActorNotFound {
                actor: key.to_string(),
            })
    }

    pub(crate) fn provider(&self, route: &RouteKey) -> Option<Arc<ProviderEntry>> {
        self.inner.providers.load().get(route).cloned()
    }

    /// The provider registered under `route`, or the error that says so.
    pub(crate) fn registered_provider(
        &self,
        route: &RouteKey,
    ) -> Result<Arc<ProviderEntry>, HostError> {
        self.provider(route)
            .ok_or_else(|| provider_not_found(route))
    }

    pub(crate) fn actor_info(&self, key: &str) -> Result<ActorInfo, HostError> {
        let entry = self.entry(key)?;
        let claims = entry.claims();
        let mut bindings: Vec<RouteKey> = entry.bindings.load().keys().cloned().collect();
        bindings.sort();
        Ok(ActorInfo {
            key: entry.runtime.key().clone(),
            name: claims.name().to_string(),
            issuer: claims.issuer().to_string(),
            capabilities: claims.capabilities().to_vec(),
            bindings,
        })
    }

    pub(crate) fn refresh_counts(&self) {
        let actors = self.inner.actors.entries.load();
        let bindings: usize = actors.values().map(|e| e.bindings.load().len()).sum();
        self.inner.actors.metrics.set_counts(actors.len(), bindings);
    }
}
/// A binding's configuration as the provider receives it: the manifest's
/// values plus the `__wascc_*` keys taken from the actor's claims.
pub(crate) fn bind_values(
    claims: &VerifiedActor,
    values: &BTreeMap<String, String>,
) -> HashMap<String, String> {
    let mut config: HashMap<String, String> = values.clone().into_iter().collect();
    let meta = claims.metadata();
    let c = claims.claims();
    config.insert(
        wcore::CONFIG_WASCC_CLAIMS_ISSUER.to_string(),
        c.issuer.clone(),
    );
    config.insert(
        wcore::CONFIG_WASCC_CLAIMS_CAPABILITIES.to_string(),
        meta.capabilities().join(","),
    );
    config.insert(
        wcore::CONFIG_WASCC_CLAIMS_NAME.to_string(),
        claims.name().to_string(),
    );
    config.insert(
        wcore::CONFIG_WASCC_CLAIMS_EXPIRES.to_string(),
        c.expires.unwrap_or(0).to_string(),
    );
    config.insert(
        wcore::CONFIG_WASCC_CLAIMS_TAGS.to_string(),
        meta.tag_list().join(","),
    );
    config
}

/// A module signed as a Proxy-Wasm filter never runs as an actor.
fn refuse_filter(claims: &VerifiedActor, origin: &str) -> Result<(), HostError> {
    if claims.is_proxy_wasm_filter() {
        return Err(HostError::FilterAsActor {
            origin: origin.to_string(),
            actor: claims.public_key().to_string(),
            name: claims.name().to_string(),
        });
    }
    Ok(())
}

/// Runs a provider future, turning a panic into [`ProviderError::Internal`]
/// so that a broken provider never takes the host down.
pub(crate) async fn guard_provider<T>(
    route: &RouteKey,
    fut: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_string());
            tracing::error!(capability = %route.capid, binding = %route.binding, %message, "provider panicked");
            Err(ProviderError::Internal {
                capid: route.capid.clone(),
                message: format!("panicked: {message}"),
            })
        }
    }
}
/// A weak handle for routers and dispatchers, which must not keep the host alive.
pub(crate) type WeakHost = Weak<HostInner>;

/// The error for a capability and binding no provider is registered under.
pub(crate) fn provider_not_found(route: &RouteKey) -> HostError {
    HostError::ProviderNotFound {
        capability: route.capid.clone(),
        binding: route.binding.clone(),
    }
}
