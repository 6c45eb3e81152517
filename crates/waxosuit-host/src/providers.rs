//! Providers and bindings on a [`Host`]: registering a provider (and
//! retiring it, unbinding its actors first), and binding actors to one with
//! their configuration. Kept apart from the actor side in `host`, which it
//! shares the tables with.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use waxosuit_codec::core as wcore;
use waxosuit_provider::{BindRequest, CapabilityProvider};

use crate::HostError;
use crate::events::HostEvent;
use crate::host::{
    ActorEntry, Host, ProviderEntry, RouteKey, bind_values, guard_provider, provider_not_found,
};
use crate::policy::Entity;
use crate::router::ProviderDispatcher;

impl Host {
    /// Registers a provider under its descriptor's capability id and
    /// `binding` (empty = `default`), and starts it.
    pub async fn add_provider(
        &self,
        binding: &str,
        provider: Arc<dyn CapabilityProvider>,
    ) -> Result<RouteKey, HostError> {
        let descriptor = provider.descriptor();
        let route = RouteKey::new(descriptor.id.clone(), binding);
        if self.inner.providers.load().contains_key(&route) {
            return Err(HostError::DuplicateProvider {
                capability: route.capid,
                binding: route.binding,
            });
        }
        let dispatcher = Arc::new(ProviderDispatcher::new(
            Arc::downgrade(&self.inner),
            Arc::clone(&self.inner.actors),
            route.clone(),
        ));
        guard_provider(&route, provider.start(dispatcher)).await?;
        let (descriptor_name, descriptor_version) =
            (descriptor.name.clone(), descriptor.version.clone());
        let entry = Arc::new(ProviderEntry {
            provider,
            descriptor,
        });
        // Host calls of operations the provider does not declare count as
        // operation="other": a guest cannot grow the metrics by inventing names.
        self.inner
            .actors
            .metrics
            .declare_operations(&entry.descriptor);
        let inserted = self.inner.providers.update(|providers| {
            if providers.contains_key(&route) {
                return false;
            }
            providers.insert(route.clone(), entry);
            true
        });
        if !inserted {
            return Err(HostError::DuplicateProvider {
                capability: route.capid,
                binding: route.binding,
            });
        }
        tracing::info!(capability = %route.capid, binding = %route.binding, "provider registered");
        self.emit(HostEvent::ProviderStarted {
            route: route.clone(),
            name: descriptor_name,
            version: descriptor_version,
        });
        let link = self.inner.remote.link.read().clone();
        if let Some(link) = link {
            link.provider_started(&route).await;
        }
        Ok(route)
    }

    /// Removes a provider: unbinds every actor from it, then shuts it down.
    pub async fn remove_provider(&self, capid: &str, binding: &str) -> Result<(), HostError> {
        let route = RouteKey::new(capid, binding);
        let entry = self
            .inner
            .providers
            .update(|providers| providers.remove(&route))
            .ok_or_else(|| provider_not_found(&route))?;
        let actors: Vec<Arc<ActorEntry>> =
            self.inner.actors.entries.load().values().cloned().collect();
        for actor in actors {
            let was_bound = actor.bindings.update(|b| b.remove(&route)).is_some();
            if was_bound {
                let key = actor.runtime.key().to_string();
                if let Err(e) =
                    guard_provider(&route, entry.provider.remove_actor(&key, &route.binding)).await
                {
                    tracing::warn!(actor = %key, error = %e, "provider failed to release the actor");
                }
            }
        }
        self.inner
            .remote
            .bindings
            .write()
            .retain(|(_, r), _| *r != route);
        let _ = AssertUnwindSafe(entry.provider.shutdown())
            .catch_unwind()
            .await;
        self.refresh_counts();
        self.emit(HostEvent::ProviderStopped { route });
        Ok(())
    }

    /// Binds an actor (key or name) to the provider registered under
    /// (`capid`, `binding`), passing `values` plus the `__wascc_*` claim keys.
    pub async fn set_binding(
        &self,
        actor: &str,
        capid: &str,
        binding: &str,
        values: BTreeMap<String, String>,
    ) -> Result<(), HostError> {
        let key = self.resolve_actor(actor)?;
        let entry = self.entry(&key)?;
        let claims = entry.claims();
        let route = RouteKey::new(capid, binding);
        let target = Entity::Capability {
            capid: route.capid.clone(),
            binding: route.binding.clone(),
        };
        self.inner.authorize(
            &claims,
            &route.capid,
            &target,
            wcore::OP_BIND_ACTOR,
            &route.binding,
        )?;
        let provider = self.provider(&route);
        if provider.is_none() && self.inner.remote.link.read().is_none() {
            return Err(provider_not_found(&route));
        }
        if entry.is_bound(&route) {
            return Err(HostError::DuplicateBinding {
                actor: key.to_string(),
                capability: route.capid,
                binding: route.binding,
            });
        }
        // Without a local provider the binding is recorded only: the
        // provider's own host binds it when the lattice tells it to.
        if let Some(provider) = provider {
            let mut provider_values = bind_values(&claims, &values);
            // The HTTP server lowers its body limit to this, and answers 413
            // above it rather than handing the actor what it would refuse.
            provider_values.insert(
                wcore::CONFIG_WAXOSUIT_MAX_PAYLOAD.to_string(),
                entry.runtime.limits().max_payload.to_string(),
            );
            let request = BindRequest {
                actor: key.to_string(),
                binding: route.binding.clone(),
                values: provider_values,
            };
            guard_provider(&route, provider.provider.bind_actor(request)).await?;
        }
        // An update may have narrowed the claims while the provider bound:
        // judged again against the claims in force, in the same step as
        // the insert (an update takes the table's lock to drop bindings
        // its claims do not grant).
        let inserted = entry.bindings.update(|b| {
            let granted = self.inner.may_bind(&entry.claims(), &route);
            if granted {
                b.insert(route.clone(), values);
            }
            granted
        });
        if !inserted {
            if let Some(provider) = self.provider(&route)
                && let Err(e) =
                    guard_provider(&route, provider.provider.remove_actor(&key, &route.binding))
                        .await
            {
                tracing::warn!(actor = %key, capability = %route.capid, error = %e, "provider failed to release the actor");
            }
            let claims = entry.claims();
            return Err(HostError::PermissionDenied {
                actor: key.to_string(),
                name: claims.name().to_string(),
                capability: route.capid,
                binding: route.binding,
                operation: wcore::OP_BIND_ACTOR.to_string(),
            });
        }
        tracing::info!(actor = %key, capability = %route.capid, binding = %route.binding, "binding established");
        self.refresh_counts();
        self.emit(HostEvent::BindingSet { actor: key, route });
        Ok(())
    }

    /// Removes a binding and tells the provider.
    pub async fn remove_binding(
        &self,
        actor: &str,
        capid: &str,
        binding: &str,
    ) -> Result<(), HostError> {
        let key = self.resolve_actor(actor)?;
        let entry = self.entry(&key)?;
        let route = RouteKey::new(capid, binding);
        if entry.bindings.update(|b| b.remove(&route)).is_none() {
            return Err(HostError::MissingBinding {
                actor: key.to_string(),
                name: entry.claims().name().to_string(),
                capability: route.capid,
                binding: route.binding,
            });
        }
        if let Some(p) = self.provider(&route) {
            guard_provider(&route, p.provider.remove_actor(&key, &route.binding)).await?;
        }
        self.refresh_counts();
        self.emit(HostEvent::BindingRemoved { actor: key, route });
        Ok(())
    }
}
