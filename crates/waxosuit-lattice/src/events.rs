//! Events: this host's changes published as signed CloudEvents, other
//! hosts' events believed only when signed by the host they come from.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use waxosuit_host::HostEvent;

use crate::LatticeError;
use crate::auth::{Reason, Refusal, Signers, shorten};
use crate::metrics::Plane;
use crate::node::Inner;
use crate::protocol::CloudEvent;
use crate::server::Served;

impl Inner {
    pub(crate) fn publish_event(
        self: &Arc<Self>,
        what: &str,
        subject: &str,
        data: serde_json::Value,
    ) {
        let event = CloudEvent::new(&self.keys.host_id, what, subject, data);
        match serde_json::to_vec(&event) {
            Ok(body) => {
                let inner = Arc::clone(self);
                tokio::spawn(async move {
                    let subject = inner.bus.subjects.events();
                    if let Err(e) = inner.publish_signed(subject, None, None, body).await {
                        tracing::debug!(error = %e, "could not publish an event");
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "could not encode an event"),
        }
    }

    /// Turns host changes into lattice state, subscriptions and events.
    pub(crate) async fn follow_host(
        self: Arc<Self>,
        mut events: tokio::sync::broadcast::Receiver<HostEvent>,
    ) {
        loop {
            let event = match events.recv().await {
                Ok(e) => e,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "lattice fell behind the host's events; resyncing"
                    );
                    self.resync_local().await;
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let host = self.keys.host_id.clone();
            match event {
                HostEvent::ActorStarted {
                    actor,
                    name,
                    claims,
                } => {
                    // Text from here: the lattice keys its tables and subjects by it.
                    let actor = actor.to_string();
                    self.state.lock()
                        .claims
                        .insert(actor.clone(), claims.clone());
                    self.routes.add(&self.bus.subjects.actor(&actor), &host);
                    if let Err(e) = self.serve(Served::Actor(actor.clone())).await {
                        tracing::error!(%actor, error = %e, "cannot serve the actor on the lattice");
                    }
                    self.publish_event(
                        "actor_started",
                        &actor,
                        json!({ "actor": actor, "name": name, "host": host, "claims": claims }),
                    );
                    self.reconcile_now().await;
                }
                HostEvent::ActorUpdated { actor, claims } => {
                    // Text from here: the lattice keys its tables and subjects by it.
                    let actor = actor.to_string();
                    self.state.lock()
                        .claims
                        .insert(actor.clone(), claims.clone());
                    self.publish_event(
                        "actor_updated",
                        &actor,
                        json!({ "actor": actor, "host": host, "claims": claims }),
                    );
                }
                HostEvent::ActorStopped { actor } => {
                    // Text from here: the lattice keys its tables and subjects by it.
                    let actor = actor.to_string();
                    self.unserve(&Served::Actor(actor.clone()));
                    self.routes.remove(&self.bus.subjects.actor(&actor), &host);
                    self.prune_claims();
                    self.publish_event(
                        "actor_stopped",
                        &actor,
                        json!({ "actor": actor, "host": host }),
                    );
                }
                HostEvent::ProviderStarted {
                    route,
                    name,
                    version,
                } => {
                    self.routes.add(
                        &self.bus.subjects.provider(&route.capid, &route.binding),
                        &host,
                    );
                    if let Err(e) = self.serve(Served::Provider(route.clone())).await {
                        tracing::error!(capability = %route.capid, error = %e, "cannot serve the provider on the lattice");
                    }
                    self.publish_event(
                        "provider_started",
                        &format!("{}/{}", route.capid, route.binding),
                        json!({ "capid": route.capid, "binding": route.binding, "name": name, "version": version, "host": host }),
                    );
                    self.reconcile_now().await;
                }
                HostEvent::ProviderStopped { route } => {
                    self.unserve(&Served::Provider(route.clone()));
                    self.routes.remove(
                        &self.bus.subjects.provider(&route.capid, &route.binding),
                        &host,
                    );
                    self.publish_event(
                        "provider_stopped",
                        &format!("{}/{}", route.capid, route.binding),
                        json!({ "capid": route.capid, "binding": route.binding, "host": host }),
                    );
                }
                HostEvent::BindingSet { actor, route } => self.publish_event(
                    "binding_set",
                    &format!("{actor}/{}/{}", route.capid, route.binding),
                    // Values may hold secrets: events never carry them.
                    json!({ "actor": actor.as_str(), "capid": route.capid, "binding": route.binding, "host": host }),
                ),
                HostEvent::BindingRemoved { actor, route } => self.publish_event(
                    "binding_removed",
                    &format!("{actor}/{}/{}", route.capid, route.binding),
                    json!({ "actor": actor.as_str(), "capid": route.capid, "binding": route.binding, "host": host }),
                ),
                HostEvent::ActorHealth {
                    actor,
                    healthy,
                    message,
                } => self.publish_event(
                    if healthy {
                        "actor_healthy"
                    } else {
                        "actor_unhealthy"
                    },
                    &actor,
                    json!({ "actor": actor.as_str(), "healthy": healthy, "message": message, "host": host }),
                ),
                _ => {}
            }
        }
    }

    /// After missed host events: serve exactly what runs now.
    async fn resync_local(self: &Arc<Self>) {
        if let Err(e) = self.serve_local().await {
            tracing::error!(error = %e, "cannot serve this host's actors and providers on the lattice");
        }
        self.reconcile_now().await;
    }

    /// Serves every actor and provider the host runs now (idempotent) and
    /// records the actors' claims.
    pub(crate) async fn serve_local(self: &Arc<Self>) -> Result<(), LatticeError> {
        for actor in self.remote.host().actors() {
            if let Some(jwt) = self.remote.host().actor_claims(&actor.key) {
                self.state.lock().claims.insert(actor.key.to_string(), jwt);
            }
            self.routes
                .add(&self.bus.subjects.actor(&actor.key), &self.keys.host_id);
            self.serve(Served::Actor(actor.key.to_string())).await?;
        }
        for provider in self.remote.host().providers() {
            let route = provider.route;
            self.routes.add(
                &self.bus.subjects.provider(&route.capid, &route.binding),
                &self.keys.host_id,
            );
            self.serve(Served::Provider(route)).await?;
        }
        Ok(())
    }

    /// Forgets the claims of actors that run nowhere any more (a trusted
    /// host said so): a stopped actor's alias is free again, and its
    /// bindings wait for it to come back.
    pub(crate) fn prune_claims(&self) {
        let mut state = self.state.lock();
        state.claims.retain(|actor, _| {
            crate::node::runs_here(self.remote.host(), actor)
                || !self
                    .routes
                    .hosts(&self.bus.subjects.actor(actor))
                    .is_empty()
        });
    }

    /// Other hosts' events: learn the claims of actors they start, forget
    /// hosts that leave. Only events signed by the host they come from.
    pub(crate) async fn follow_events(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.bus.subjects.events()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                let Some(signed) = self.verify(Plane::Event, &msg, Signers::Hosts, None) else {
                    continue;
                };
                if signed.signer == self.keys.host_id {
                    continue;
                }
                let Ok(event) = serde_json::from_slice::<CloudEvent>(&msg.payload) else {
                    continue;
                };
                if event.source != format!("waxosuit://host/{}", signed.signer) {
                    self.metrics.refused(
                        Plane::Event,
                        &Refusal::new(
                            Reason::Mismatch,
                            format!(
                                "an event from {} signed by {}",
                                shorten(&event.source),
                                shorten(&signed.signer)
                            ),
                        )
                        .by(&signed.signer),
                    );
                    continue;
                }
                let text = |field: &str| event.data.get(field).and_then(|c| c.as_str());
                let signer = signed.signer.as_str();
                match event.kind.as_str() {
                    "dev.waxosuit.host_stopped" => {
                        // The session is kept: a leaving host still answers
                        // the calls it holds while it drains, under that
                        // session's key. New calls stop going to it here; if
                        // it rejoins with a new session, the first tagged
                        // call is refused with a `session` answer and falls
                        // back to a signed one; otherwise the token expires.
                        self.routes.remove_host(signer);
                        self.prune_claims();
                    }
                    "dev.waxosuit.actor_started" | "dev.waxosuit.actor_updated" => {
                        if let (Some(actor), Some(claims)) = (text("actor"), text("claims")) {
                            self.routes.add(&self.bus.subjects.actor(actor), signer);
                            self.state
                                .lock()
                                .claims
                                .insert(actor.to_string(), claims.to_string());
                            self.reconcile_now().await;
                        }
                    }
                    "dev.waxosuit.actor_stopped" => {
                        if let Some(actor) = text("actor") {
                            self.routes.remove(&self.bus.subjects.actor(actor), signer);
                            self.prune_claims();
                        }
                    }
                    "dev.waxosuit.provider_started" => {
                        if let (Some(capid), Some(binding)) = (text("capid"), text("binding")) {
                            self.routes
                                .add(&self.bus.subjects.provider(capid, binding), signer);
                        }
                    }
                    "dev.waxosuit.provider_stopped" => {
                        if let (Some(capid), Some(binding)) = (text("capid"), text("binding")) {
                            self.routes
                                .remove(&self.bus.subjects.provider(capid, binding), signer);
                        }
                    }
                    _ => {}
                }
            }
        })
    }
}
