//! Health: `HealthRequest` to every actor, `health()` of every provider,
//! and the periodic task that keeps the last report for readiness.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt;
use waxosuit_codec::core as wcore;
use waxosuit_runtime::ActorKey;

use crate::host::{ActorEntry, Host, ProviderEntry, RouteKey};
use crate::policy::Entity;

/// Result of the last health round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    /// Whether a round has run at all.
    pub checked: bool,
    /// Actor key, name, healthy, message.
    pub actors: Vec<(ActorKey, String, bool, String)>,
    /// Provider route, healthy, message.
    pub providers: Vec<(RouteKey, bool, String)>,
}

impl HealthReport {
    /// Every actor and provider healthy.
    pub fn all_healthy(&self) -> bool {
        self.actors.iter().all(|a| a.2) && self.providers.iter().all(|p| p.1)
    }
}

impl Host {
    /// Sends a `HealthRequest` to every actor and asks every provider for its
    /// health; keeps and returns the report.
    pub async fn check_health(&self) -> HealthReport {
        let payload = waxosuit_codec::serialize(&wcore::HealthRequest { placeholder: false })
            .unwrap_or_default();
        let actors: Vec<Arc<ActorEntry>> =
            self.inner.actors.entries.load().values().cloned().collect();
        let mut report = HealthReport {
            checked: true,
            ..HealthReport::default()
        };
        for entry in actors {
            let claims = entry.claims();
            let result = self
                .inner
                .actors
                .invoke_actor(|| Entity::Host, &entry, wcore::OP_HEALTH_REQUEST, &payload)
                .await;
            let (ok, message) = match result {
                Ok(_) => (true, String::new()),
                Err(e) => {
                    tracing::warn!(actor = %claims.public_key(), name = %claims.name(), error = %e, "actor health check failed");
                    (false, e.to_string())
                }
            };
            report.actors.push((
                entry.runtime.key().clone(),
                claims.name().to_string(),
                ok,
                message,
            ));
        }
        let providers: Vec<(RouteKey, Arc<ProviderEntry>)> = self
            .inner
            .providers
            .load()
            .iter()
            .map(|(r, p)| (r.clone(), Arc::clone(p)))
            .collect();
        for (route, p) in providers {
            let health = AssertUnwindSafe(p.provider.health())
                .catch_unwind()
                .await
                .unwrap_or_else(|_| waxosuit_provider::Health::unhealthy("health check panicked"));
            if !health.healthy {
                tracing::warn!(capability = %route.capid, binding = %route.binding, reason = %health.message, "provider unhealthy");
            }
            report
                .providers
                .push((route, health.healthy, health.message));
        }
        report.actors.sort();
        report.providers.sort();
        let mut health = self.inner.health.write();
        for (key, _, ok, message) in &report.actors {
            if health.known.insert(key.clone(), *ok) != Some(*ok) {
                // A broadcast send never waits, so the lock is held briefly.
                self.emit(crate::HostEvent::ActorHealth {
                    actor: key.clone(),
                    healthy: *ok,
                    message: message.clone(),
                });
            }
        }
        health.report = report.clone();
        report
    }

    /// The last health report.
    pub fn last_health(&self) -> HealthReport {
        self.inner.health.read().report.clone()
    }

    /// Runs [`Host::check_health`] every `interval` until the host shuts down.
    pub fn spawn_health_checks(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                if inner.stopping.load(Ordering::Acquire) {
                    break;
                }
                Host { inner }.check_health().await;
            }
        })
    }
}
