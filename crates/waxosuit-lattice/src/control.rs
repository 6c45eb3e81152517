//! Commands (`{prefix}.control.{host}`) and auctions
//! (`{prefix}.control.auction`), accepted from trusted hosts and admins
//! only, each checked against policy (`data.waxosuit.command.allow`), and
//! answered signed.

use std::sync::Arc;

use futures_util::StreamExt;
use serde_json::json;
use waxosuit_policy::DecisionPoint;
use waxosuit_policy::input::{CommandInput, HostFacts};

use crate::LatticeError;
use crate::auth::{Authentic, Signers};
use crate::chunk;
use crate::metrics::Plane;
use crate::node::Inner;
use crate::protocol::{
    AuctionBid, AuctionRequest, Command, CommandReply, PROTOCOL_VERSION, Probe, decode, encode,
};

/// What a command looks like to policy: its fields, never a module's bytes.
pub(crate) fn command_document(command: &Command) -> serde_json::Value {
    match command {
        Command::StartActor {
            module, chunked, ..
        } => json!({
            "cmd": "start_actor",
            "module_bytes": chunked.as_ref().map_or(module.len() as u64, |c| c.len),
            "chunked": chunked.is_some(),
        }),
        Command::StopActor { actor, .. } => json!({ "cmd": "stop_actor", "actor": actor }),
        Command::StartProvider {
            capid,
            backend,
            binding,
            ..
        } => json!({
            "cmd": "start_provider",
            "capid": capid,
            "backend": backend,
            "binding": binding,
        }),
        Command::StopProvider { capid, binding, .. } => {
            json!({ "cmd": "stop_provider", "capid": capid, "binding": binding })
        }
    }
}

impl Inner {
    pub(crate) async fn answer_commands(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self
            .subscribe(self.bus.subjects.control(&self.keys.host_id))
            .await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                if msg.reply.is_none() {
                    continue;
                }
                let Some(signed) = self.verify(Plane::Command, &msg, Signers::HostsOrAdmins, None)
                else {
                    continue;
                };
                let Ok(permit) = Arc::clone(&self.gates.commands).try_acquire_owned() else {
                    let reply = self.command_reply(Err(format!(
                        "host {} is running {} commands already; try again shortly",
                        self.keys.host_id, self.gates.limits.commands
                    )));
                    self.answer_signed(&msg, &signed.id, reply).await;
                    continue;
                };
                let inner = Arc::clone(&self);
                tokio::spawn(async move {
                    let outcome = inner.run_command(&signed, &msg.payload).await;
                    let reply = inner.command_reply(outcome);
                    inner.answer_signed(&msg, &signed.id, reply).await;
                    drop(permit);
                });
            }
        })
    }

    fn command_reply(&self, outcome: Result<String, String>) -> Vec<u8> {
        let (ok, message) = match outcome {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        encode(&CommandReply {
            host: self.keys.host_id.clone(),
            ok,
            message,
        })
        .unwrap_or_default()
    }

    async fn run_command(
        self: &Arc<Self>,
        signed: &Authentic,
        payload: &[u8],
    ) -> Result<String, String> {
        let probe: Probe = decode("command", payload).map_err(|e| e.to_string())?;
        if let Some(got) = probe.v
            && got != PROTOCOL_VERSION
        {
            return Err(LatticeError::Version {
                got,
                supported: PROTOCOL_VERSION,
            }
            .to_string());
        }
        let command: Command = decode("command", payload).map_err(|e| e.to_string())?;
        if let Some(policy) = &self.policy {
            let input = CommandInput {
                signer: signed.signer.clone(),
                command: command_document(&command),
                host: HostFacts {
                    id: Some(self.keys.host_id.clone()),
                    labels: self.remote.host().info().labels,
                },
            };
            let input = serde_json::to_value(&input).map_err(|e| e.to_string())?;
            policy
                .check(DecisionPoint::Command, input)
                .await
                .map_err(|e| e.to_string())?;
        }
        tracing::info!(signer = %signed.signer, command = %command_document(&command), "lattice command");
        match command {
            Command::StartActor {
                module, chunked, ..
            } => {
                let module = match chunked {
                    Some(reference) => {
                        chunk::check(
                            &reference,
                            &self.bus.subjects,
                            &signed.signer,
                            self.gates.limits.max_module_bytes,
                        )?;
                        let _permit = Arc::clone(&self.gates.transfers)
                            .acquire_owned()
                            .await
                            .map_err(|e| e.to_string())?;
                        chunk::fetch(
                            &self.bus.client,
                            &self.bus.replies,
                            &self.keys.identity,
                            &reference,
                            self.bus.timeout,
                        )
                        .await
                        .map_err(|e| e.to_string())?
                    }
                    None => module,
                };
                let origin = format!("a lattice start command from {}", signed.signer);
                let info = self
                    .remote
                    .host()
                    .add_actor(&module, &origin, None)
                    .await
                    .map_err(|e| e.to_string())?;
                // Served before the answer (`add_actor` waits for it), so
                // whoever started it can call it at once.
                Ok(format!("started actor {} ({})", info.name, info.key))
            }
            Command::StopActor { actor, .. } => {
                self.remote
                    .host()
                    .remove_actor(&actor)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("stopped actor {actor}"))
            }
            Command::StartProvider {
                capid,
                backend,
                binding,
                ..
            } => {
                let factory = self
                    .factory
                    .as_ref()
                    .ok_or_else(|| "this host does not start providers on request".to_string())?;
                let provider = factory
                    .create(&capid, backend.as_deref())
                    .map_err(|e| crate::error::with_sources(&e))?;
                let route = self
                    .remote
                    .host()
                    .add_provider(&binding, provider)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "started provider {} (binding `{}`)",
                    route.capid, route.binding
                ))
            }
            Command::StopProvider { capid, binding, .. } => {
                self.remote
                    .host()
                    .remove_provider(&capid, &binding)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("stopped provider {capid} (binding `{binding}`)"))
            }
        }
    }

    pub(crate) async fn answer_auctions(
        self: Arc<Self>,
    ) -> Result<impl std::future::Future<Output = ()> + Send + 'static, LatticeError> {
        let mut sub = self.subscribe(self.bus.subjects.auction()).await?;
        Ok(async move {
            while let Some(msg) = sub.next().await {
                if msg.reply.is_none() {
                    continue;
                }
                let Some(signed) = self.verify(Plane::Auction, &msg, Signers::HostsOrAdmins, None)
                else {
                    continue;
                };
                let Ok(request) = serde_json::from_slice::<AuctionRequest>(&msg.payload) else {
                    continue;
                };
                let labels = self.labels();
                let fits = request
                    .constraints
                    .iter()
                    .all(|(k, v)| labels.get(k) == Some(v));
                let free = request
                    .actor
                    .as_deref()
                    .is_none_or(|a| !crate::node::runs_here(self.remote.host(), a));
                if fits && free {
                    let bid = AuctionBid {
                        host: self.keys.host_id.clone(),
                        actors: self.remote.host().actors().len(),
                    };
                    if let Ok(body) = serde_json::to_vec(&bid) {
                        self.answer_signed(&msg, &signed.id, body).await;
                    }
                }
            }
        })
    }
}
