//! Inventory: what each host runs, answered to trusted hosts and admins,
//! and the host's own sync (claims and bindings learned from trusted hosts).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use waxosuit_host::RouteKey;

use crate::LatticeError;
use crate::auth::{Reason, Refusal, Signers};
use crate::metrics::{LatticeMetrics, Plane};
use crate::node::{BindingRecord, Inner};
use crate::protocol::{
    ActorEntry, BindingEntry, HostEntry, InventoryKind, PROTOCOL_VERSION, ProviderEntry,
};
use crate::request::{Answer, Answerers, Gather};

/// Decodes the JSON list answers of every host into one list. An entry that
/// names another host than the one that signed the answer is dropped: a
/// host speaks for itself only.
pub(crate) fn merge<T: DeserializeOwned>(
    answers: Vec<Answer>,
    metrics: &LatticeMetrics,
    host_of: impl Fn(&T) -> Option<&str>,
) -> Vec<T> {
    let mut out = Vec::new();
    for answer in answers {
        match serde_json::from_slice::<Vec<T>>(&answer.payload) {
            Ok(items) => out.extend(
                items
                    .into_iter()
                    .filter(|item| host_of(item).is_none_or(|h| h == answer.signer)),
            ),
            Err(e) => metrics.refused(
                Plane::Inventory,
                &Refusal::new(Reason::Malformed, e.to_string()).by(&answer.signer),
            ),
        }
    }
    out
}

impl Inner {
    pub(crate) fn requester(&self) -> crate::request::Requester<'_> {
        crate::request::Requester {
            client: &self.bus.client,
            replies: &self.bus.replies,
            identity: &self.keys.identity,
            verifier: &self.keys.verifier,
            trust: &self.keys.trust,
            metrics: &self.metrics,
        }
    }

    pub(crate) async fn answer_inventory(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.bus.subjects.inventory_all()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                if msg.reply.is_none() {
                    continue;
                }
                let Some(signed) =
                    self.verify(Plane::Inventory, &msg, Signers::HostsOrAdmins, None)
                else {
                    continue;
                };
                let kind = msg
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(InventoryKind::parse);
                let body = match kind {
                    Some(InventoryKind::Hosts) => serde_json::to_vec(&[HostEntry {
                        id: self.keys.host_id.clone(),
                        labels: self.labels(),
                        uptime_ms: self.remote.host().info().uptime.as_millis() as u64,
                        version: PROTOCOL_VERSION,
                    }]),
                    Some(InventoryKind::Actors) => {
                        let actors: Vec<ActorEntry> = self
                            .remote
                            .host()
                            .actors()
                            .into_iter()
                            .filter_map(|a| {
                                Some(ActorEntry {
                                    host: self.keys.host_id.clone(),
                                    claims: self.remote.host().actor_claims(&a.key)?,
                                    key: a.key.to_string(),
                                    name: a.name,
                                })
                            })
                            .collect();
                        serde_json::to_vec(&actors)
                    }
                    Some(InventoryKind::Providers) => {
                        let providers: Vec<ProviderEntry> = self
                            .remote
                            .host()
                            .providers()
                            .into_iter()
                            .map(|p| ProviderEntry {
                                host: self.keys.host_id.clone(),
                                capid: p.route.capid,
                                binding: p.route.binding,
                                name: p.name,
                                version: p.version,
                            })
                            .collect();
                        serde_json::to_vec(&providers)
                    }
                    // Redacted: the real values never leave in an answer.
                    Some(InventoryKind::Bindings) => serde_json::to_vec(&self.binding_entries()),
                    None => continue,
                };
                if let Ok(body) = body {
                    self.answer_signed(&msg, &signed.id, body).await;
                }
            }
        })
    }

    /// The binding table as the lattice may see it.
    pub(crate) fn binding_entries(&self) -> Vec<BindingEntry> {
        self.state
            .lock()
            .bindings
            .iter()
            .map(|((actor, route), r)| BindingEntry {
                actor: actor.clone(),
                capid: route.capid.clone(),
                binding: route.binding.clone(),
                values: r.shown.clone(),
                redacted: r.redacted.clone(),
                owner: r.owner.clone(),
                rev: r.rev.clone(),
            })
            .collect()
    }

    async fn ask(
        &self,
        kind: InventoryKind,
        window: Duration,
    ) -> Result<Vec<Answer>, LatticeError> {
        self.requester()
            .request(
                self.bus.subjects.inventory(kind),
                Vec::new(),
                Answerers::Hosts,
                Plane::Inventory,
                window,
                Gather::All,
                || format!("the lattice's {}", kind.as_str()),
            )
            .await
    }

    /// Learns actors' claims, who serves what, and the binding table from
    /// trusted hosts (each about itself).
    pub(crate) async fn sync(self: &Arc<Self>) {
        let window = self.bus.timeout.min(Duration::from_millis(500));
        let (actors, providers, bindings) = tokio::join!(
            self.ask(InventoryKind::Actors, window),
            self.ask(InventoryKind::Providers, window),
            self.ask(InventoryKind::Bindings, window),
        );
        match actors {
            Ok(answers) => {
                let actors: Vec<ActorEntry> = merge(answers, &self.metrics, |a: &ActorEntry| {
                    Some(a.host.as_str())
                });
                let mut state = self.state.lock();
                for a in actors {
                    self.routes.add(&self.bus.subjects.actor(&a.key), &a.host);
                    state.claims.insert(a.key, a.claims);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not ask the lattice for its actors"),
        }
        match providers {
            Ok(answers) => {
                let providers: Vec<ProviderEntry> =
                    merge(answers, &self.metrics, |p: &ProviderEntry| {
                        Some(p.host.as_str())
                    });
                for p in providers {
                    self.routes
                        .add(&self.bus.subjects.provider(&p.capid, &p.binding), &p.host);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not ask the lattice for its providers"),
        }
        match bindings {
            Ok(answers) => {
                let bindings: Vec<BindingEntry> =
                    merge(answers, &self.metrics, |_: &BindingEntry| None);
                let mut state = self.state.lock();
                for b in bindings {
                    let route = RouteKey::new(b.capid, b.binding);
                    state
                        .bindings
                        .entry((b.actor, route))
                        .or_insert(BindingRecord {
                            shown: b.values,
                            redacted: b.redacted,
                            owner: b.owner,
                            rev: b.rev,
                        });
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not ask the lattice for its bindings"),
        }
        self.reconcile_now().await;
    }
}
