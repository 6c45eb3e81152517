//! [`LatticeClient`]: a connection for tools (`waxosuit lattice …`) that
//! look at and steer a lattice without being a host.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Message};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;

use crate::LatticeError;
use crate::chunk;
use crate::protocol::{
    ActorEntry, AuctionBid, AuctionRequest, BindingEntry, CloudEvent, Command, CommandReply,
    HostEntry, InventoryKind, PROTOCOL_VERSION, ProviderEntry, Subjects, decode, encode,
};

/// The least time a start command is given.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to NATS with the options every Waxosuit connection shares:
/// unlimited reconnects (a server restart must not end a host), a name that
/// shows in `nats-server` monitoring, and optional credentials.
pub(crate) async fn connect(
    url: &str,
    name: String,
    creds: Option<&Path>,
    timeout: Duration,
    on_connect: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> Result<Client, LatticeError> {
    let shown = url.to_string();
    let mut options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .connection_timeout(timeout.max(Duration::from_secs(2)))
        .event_callback(move |event| {
            let url = shown.clone();
            let tx = on_connect.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(%url, "lattice connection (re)established");
                        if let Some(tx) = tx {
                            let _ = tx.send(());
                        }
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(%url, "lattice connection lost; reconnecting");
                    }
                    other => tracing::debug!(%url, event = %other, "lattice connection event"),
                }
            }
        });
    if let Some(path) = creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| LatticeError::Config {
                reason: format!(
                    "cannot use the NATS credentials file {}: {e}",
                    path.display()
                ),
            })?;
    }
    options
        .connect(url)
        .await
        .map_err(|e| LatticeError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// One NATS request with a timeout; transport failures become typed errors
/// naming `target` (what the caller was trying to reach).
pub(crate) async fn request(
    client: &Client,
    subject: String,
    payload: Bytes,
    timeout: Duration,
    target: impl FnOnce() -> String,
    operation: &'static str,
) -> Result<Message, LatticeError> {
    let request = async_nats::Request::new()
        .payload(payload)
        .timeout(Some(timeout));
    client
        .send_request(subject, request)
        .await
        .map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::TimedOut => LatticeError::Timeout {
                target: target(),
                timeout_ms: timeout.as_millis(),
            },
            async_nats::RequestErrorKind::NoResponders => {
                LatticeError::NoResponders { target: target() }
            }
            _ => LatticeError::Transport {
                operation,
                reason: e.to_string(),
            },
        })
}

/// Publishes `payload` to `subject` and collects every reply that arrives
/// within `window` (scatter-gather: each host answers once).
pub(crate) async fn gather(
    client: &Client,
    subject: String,
    payload: Bytes,
    window: Duration,
) -> Result<Vec<Message>, LatticeError> {
    let transport = |operation: &'static str| {
        move |e: Box<dyn std::error::Error + Send + Sync>| LatticeError::Transport {
            operation,
            reason: e.to_string(),
        }
    };
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| transport("inventory")(e.into()))?;
    client
        .publish_with_reply(subject, inbox, payload)
        .await
        .map_err(|e| transport("inventory")(e.into()))?;
    let deadline = tokio::time::Instant::now() + window;
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        out.push(msg);
    }
    let _ = sub.unsubscribe().await;
    Ok(out)
}

/// Decodes JSON list replies from every host into one list.
pub(crate) fn merge<T: DeserializeOwned>(replies: Vec<Message>) -> Vec<T> {
    let mut out = Vec::new();
    for msg in replies {
        match serde_json::from_slice::<Vec<T>>(&msg.payload) {
            Ok(items) => out.extend(items),
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed inventory reply"),
        }
    }
    out
}

/// A connection for looking at and steering a lattice.
#[derive(Clone)]
pub struct LatticeClient {
    client: Client,
    subjects: Subjects,
    timeout: Duration,
}

impl LatticeClient {
    /// Connects. `timeout` bounds requests and inventory windows.
    pub async fn connect(
        url: &str,
        prefix: &str,
        creds: Option<&Path>,
        timeout: Duration,
    ) -> Result<LatticeClient, LatticeError> {
        let subjects = Subjects::new(prefix)?;
        let client = connect(url, "waxosuit lattice client".into(), creds, timeout, None).await?;
        Ok(LatticeClient {
            client,
            subjects,
            timeout,
        })
    }

    async fn inventory<T: DeserializeOwned>(
        &self,
        kind: InventoryKind,
    ) -> Result<Vec<T>, LatticeError> {
        let replies = gather(
            &self.client,
            self.subjects.inventory(kind),
            Bytes::new(),
            self.timeout,
        )
        .await?;
        Ok(merge(replies))
    }

    /// Every host that answers, sorted by id.
    pub async fn hosts(&self) -> Result<Vec<HostEntry>, LatticeError> {
        let mut v: Vec<HostEntry> = self.inventory(InventoryKind::Hosts).await?;
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    /// Every actor instance, sorted by name then host.
    pub async fn actors(&self) -> Result<Vec<ActorEntry>, LatticeError> {
        let mut v: Vec<ActorEntry> = self.inventory(InventoryKind::Actors).await?;
        v.sort_by(|a, b| (&a.name, &a.key, &a.host).cmp(&(&b.name, &b.key, &b.host)));
        Ok(v)
    }

    /// Every provider instance.
    pub async fn providers(&self) -> Result<Vec<ProviderEntry>, LatticeError> {
        let mut v: Vec<ProviderEntry> = self.inventory(InventoryKind::Providers).await?;
        v.sort_by(|a, b| (&a.capid, &a.binding, &a.host).cmp(&(&b.capid, &b.binding, &b.host)));
        Ok(v)
    }

    /// The lattice-wide bindings (every host holds the whole table; this
    /// merges their answers).
    pub async fn bindings(&self) -> Result<Vec<BindingEntry>, LatticeError> {
        let mut v: Vec<BindingEntry> = self.inventory(InventoryKind::Bindings).await?;
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// Events as they are published.
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<CloudEvent, LatticeError>> + use<>, LatticeError> {
        let sub = self
            .client
            .subscribe(self.subjects.events())
            .await
            .map_err(|e| LatticeError::Transport {
                operation: "watch",
                reason: e.to_string(),
            })?;
        Ok(sub.map(|msg| {
            serde_json::from_slice::<CloudEvent>(&msg.payload).map_err(|e| {
                LatticeError::Malformed {
                    what: "event",
                    reason: e.to_string(),
                }
            })
        }))
    }

    /// Sends a command to one host and waits for its answer.
    pub async fn command(
        &self,
        host: &str,
        command: Command,
    ) -> Result<CommandReply, LatticeError> {
        let subject = self.subjects.control(host);
        // Starting compiles a module or opens a backend's connections: give
        // it longer than a lookup, and report its real outcome, not an ack.
        let timeout = match command {
            Command::StartActor { .. } | Command::StartProvider { .. } => {
                self.timeout.max(START_TIMEOUT)
            }
            _ => self.timeout,
        };
        let reply = request(
            &self.client,
            subject,
            encode(&command)?.into(),
            timeout,
            || format!("host {host}"),
            "command",
        )
        .await?;
        decode("command reply", &reply.payload)
    }

    /// Starts a signed actor module on `host` (the host verifies it).
    pub async fn start_actor(
        &self,
        host: &str,
        module: Vec<u8>,
    ) -> Result<CommandReply, LatticeError> {
        let max_payload = self.client.server_info().max_payload;
        let command = if module.len() > chunk::inline_limit(max_payload) {
            let reference = chunk::offer(
                &self.client,
                &self.subjects,
                module,
                max_payload,
                self.timeout * 4,
            )
            .await?;
            Command::StartActor {
                v: PROTOCOL_VERSION,
                module: Vec::new(),
                chunked: Some(reference),
            }
        } else {
            Command::StartActor {
                v: PROTOCOL_VERSION,
                module,
                chunked: None,
            }
        };
        self.command(host, command).await
    }

    /// Hosts whose labels satisfy every constraint (and that do not already
    /// run `actor`), least loaded first.
    pub async fn auction(
        &self,
        constraints: BTreeMap<String, String>,
        actor: Option<String>,
    ) -> Result<Vec<AuctionBid>, LatticeError> {
        let body = serde_json::to_vec(&AuctionRequest { constraints, actor }).map_err(|e| {
            LatticeError::Malformed {
                what: "auction request",
                reason: e.to_string(),
            }
        })?;
        let replies = gather(
            &self.client,
            self.subjects.auction(),
            body.into(),
            self.timeout,
        )
        .await?;
        let mut bids: Vec<AuctionBid> = replies
            .iter()
            .filter_map(|m| serde_json::from_slice(&m.payload).ok())
            .collect();
        bids.sort_by(|a, b| (a.actors, &a.host).cmp(&(b.actors, &b.host)));
        Ok(bids)
    }

    /// The raw NATS connection (benchmarks and tests send hand-made messages).
    pub fn nats(&self) -> &Client {
        &self.client
    }

    /// This lattice's subjects.
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }
}
