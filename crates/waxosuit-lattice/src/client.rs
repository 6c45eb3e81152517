//! [`LatticeClient`]: a connection for tools (`waxosuit lattice …`) that
//! look at and steer a lattice without being a host.
//!
//! A tool signs every request with its own key (an admin key the hosts
//! trust with `--lattice-trust-admin`, or a host key) and believes only
//! answers and events signed by the hosts on its own trust list; a command
//! addressed to one host is believed only from that host.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use waxosuit_claims::{KeyKind, KeyPair, Verifier};

use crate::LatticeError;
use crate::auth::{self, ReplayGuard, Signers, TrustPolicy};
use crate::chunk;
use crate::inventory::merge;
use crate::metrics::{LatticeMetrics, Plane};
use crate::protocol::{
    ActorEntry, AuctionBid, AuctionRequest, BindingEntry, CloudEvent, Command, CommandReply,
    HostEntry, InventoryKind, PROTOCOL_VERSION, ProviderEntry, Subjects, decode, encode,
};
use crate::replies::Replies;
use crate::request::{Answerers, Gather, Requester};

/// The least time a start command is given.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to NATS with the options every Waxosuit connection shares:
/// unlimited reconnects (a server restart must not end a host), a name that
/// shows in `nats-server` monitoring, optional credentials, and reply
/// inboxes under the lattice prefix (so the whole lattice sits under one
/// prefix that permissions can fence off).
pub(crate) async fn connect(
    url: &str,
    name: String,
    creds: Option<&Path>,
    timeout: Duration,
    subjects: &Subjects,
    on_connect: Option<tokio::sync::mpsc::UnboundedSender<()>>,
) -> Result<Client, LatticeError> {
    // Logged and shown in errors: never the credentials a URL may hold.
    let shown = crate::redact::redact_value("URL", url);
    let mut options = ConnectOptions::new()
        .name(name)
        .max_reconnects(None)
        .custom_inbox_prefix(subjects.inbox_prefix())
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
    waxosuit_nats::with_url_credentials(options, url)
        .connect(waxosuit_nats::without_credentials(url))
        .await
        .map_err(|e| LatticeError::Connect {
            url: crate::redact::redact_value("URL", url),
            reason: e.to_string(),
        })
}

/// A connection for looking at and steering a lattice.
pub struct LatticeClient {
    client: Client,
    subjects: Subjects,
    timeout: Duration,
    identity: KeyPair,
    trust: TrustPolicy,
    verifier: Verifier,
    metrics: LatticeMetrics,
    replies: Replies,
}

impl LatticeClient {
    /// Connects. `identity` signs every request (hosts accept an admin key
    /// they trust, or a trusted host key); `trust` says whose answers and
    /// events to believe. `timeout` bounds requests and inventory windows.
    pub async fn connect(
        url: &str,
        prefix: &str,
        creds: Option<&Path>,
        timeout: Duration,
        identity: KeyPair,
        trust: TrustPolicy,
    ) -> Result<LatticeClient, LatticeError> {
        if !matches!(
            identity.kind(),
            KeyKind::Operator | KeyKind::User | KeyKind::Server
        ) {
            return Err(LatticeError::Config {
                reason: format!(
                    "lattice requests are signed with an admin key (operator `SO…` or user \
                     `SU…` seed) or a host key (`SN…`), not a {} key; create one with \
                     `waxosuit keys gen user`",
                    identity.kind()
                ),
            });
        }
        let subjects = Subjects::new(prefix)?;
        let client = connect(
            url,
            "waxosuit lattice client".into(),
            creds,
            timeout,
            &subjects,
            None,
        )
        .await?;
        let replies = Replies::start(&client).await?;
        Ok(LatticeClient {
            client,
            subjects,
            timeout,
            identity,
            trust,
            verifier: Verifier::new(),
            metrics: LatticeMetrics::new(),
            replies,
        })
    }

    /// The key this client signs with.
    pub fn public_key(&self) -> String {
        self.identity.public_key()
    }

    fn requester(&self) -> Requester<'_> {
        Requester {
            client: &self.client,
            replies: &self.replies,
            identity: &self.identity,
            verifier: &self.verifier,
            trust: &self.trust,
            metrics: &self.metrics,
        }
    }

    async fn inventory<T: DeserializeOwned>(
        &self,
        kind: InventoryKind,
        host_of: impl Fn(&T) -> Option<&str>,
    ) -> Result<Vec<T>, LatticeError> {
        let answers = self
            .requester()
            .request(
                self.subjects.inventory(kind),
                Vec::new(),
                Answerers::Hosts,
                Plane::Inventory,
                self.timeout,
                Gather::All,
                || format!("the lattice's {}", kind.as_str()),
            )
            .await?;
        Ok(merge(answers, &self.metrics, host_of))
    }

    /// Every trusted host that answers, sorted by id.
    pub async fn hosts(&self) -> Result<Vec<HostEntry>, LatticeError> {
        let mut v: Vec<HostEntry> = self
            .inventory(InventoryKind::Hosts, |h: &HostEntry| Some(h.id.as_str()))
            .await?;
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }

    /// Every actor instance, sorted by name then host.
    pub async fn actors(&self) -> Result<Vec<ActorEntry>, LatticeError> {
        let mut v: Vec<ActorEntry> = self
            .inventory(InventoryKind::Actors, |a: &ActorEntry| {
                Some(a.host.as_str())
            })
            .await?;
        v.sort_by(|a, b| (&a.name, &a.key, &a.host).cmp(&(&b.name, &b.key, &b.host)));
        Ok(v)
    }

    /// Every provider instance.
    pub async fn providers(&self) -> Result<Vec<ProviderEntry>, LatticeError> {
        let mut v: Vec<ProviderEntry> = self
            .inventory(InventoryKind::Providers, |p: &ProviderEntry| {
                Some(p.host.as_str())
            })
            .await?;
        v.sort_by(|a, b| (&a.capid, &a.binding, &a.host).cmp(&(&b.capid, &b.binding, &b.host)));
        Ok(v)
    }

    /// The lattice-wide bindings (every host holds the whole table; this
    /// merges their answers). Values that may hold secrets are redacted.
    pub async fn bindings(&self) -> Result<Vec<BindingEntry>, LatticeError> {
        let mut v: Vec<BindingEntry> = self
            .inventory(InventoryKind::Bindings, |_: &BindingEntry| None)
            .await?;
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// Events as they are published. An event not signed by a trusted host,
    /// or signed by another host than its `source`, comes out as an error
    /// (and is never taken for the event it claims to be).
    pub async fn watch(
        &self,
    ) -> Result<impl Stream<Item = Result<CloudEvent, LatticeError>> + use<>, LatticeError> {
        // Bounded: whoever reads the stream may be slower than the bus.
        let max_payload = self.client.server_info().max_payload;
        let sub = self
            .client
            .subscribe(self.subjects.events())
            .await
            .map(|subscriber| crate::backlog::bounded(subscriber, max_payload))
            .map_err(|e| LatticeError::Transport {
                operation: "watch",
                reason: e.to_string(),
            })?;
        let verifier = self.verifier.clone();
        let trust = self.trust.clone();
        let replay = ReplayGuard::new(100_000);
        Ok(sub.map(move |msg| {
            let signed =
                auth::verify_message(&verifier, &trust, &replay, &msg, Signers::Hosts, None)
                    .map_err(|refusal| LatticeError::Forged {
                        reason: format!("an event was refused: {refusal}"),
                    })?;
            let event = serde_json::from_slice::<CloudEvent>(&msg.payload).map_err(|e| {
                LatticeError::Malformed {
                    what: "event",
                    reason: e.to_string(),
                }
            })?;
            if event.source != format!("waxosuit://host/{}", signed.signer) {
                return Err(LatticeError::Forged {
                    reason: format!(
                        "an event claiming to come from {} is signed by {}",
                        auth::shorten(&event.source),
                        signed.signer
                    ),
                });
            }
            Ok(event)
        }))
    }

    /// Sends a command to one host and waits for its answer, signed by
    /// that host.
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
        let answers = self
            .requester()
            .request(
                subject,
                encode(&command)?,
                Answerers::Only(host.to_string()),
                Plane::Command,
                timeout,
                Gather::One,
                || format!("host {host}"),
            )
            .await?;
        let answer = answers
            .into_iter()
            .next()
            .ok_or_else(|| LatticeError::Timeout {
                target: format!("host {host}"),
                timeout_ms: timeout.as_millis(),
                ignored: None,
            })?;
        let reply: CommandReply = decode("command reply", &answer.payload)?;
        if reply.host != answer.signer {
            return Err(LatticeError::Forged {
                reason: format!(
                    "a command reply signed by {} claims to come from {}",
                    answer.signer, reply.host
                ),
            });
        }
        Ok(reply)
    }

    /// Starts a signed actor module on `host` (the host verifies it).
    pub async fn start_actor(
        &self,
        host: &str,
        module: Vec<u8>,
    ) -> Result<CommandReply, LatticeError> {
        let max_payload = self.client.server_info().max_payload;
        let command = if module.len() > chunk::inline_limit(max_payload) {
            let owner = self.identity.public_key();
            let reference = chunk::offer(
                chunk::Offer {
                    client: &self.client,
                    subjects: &self.subjects,
                    owner: &owner,
                    // The command goes to that host alone: only it fetches.
                    receiver: host,
                    max_payload,
                    ttl: self.timeout.max(START_TIMEOUT),
                    on_refused: Box::new(|refusal| {
                        tracing::debug!(
                            signer = refusal.signer().unwrap_or("(none)"),
                            reason = refusal.reason().as_str(),
                            detail = %refusal,
                            "refused a request for a module's chunks"
                        );
                    }),
                },
                module,
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

    /// Trusted hosts whose labels satisfy every constraint (and that do not
    /// already run `actor`), least loaded first.
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
        let answers = self
            .requester()
            .request(
                self.subjects.auction(),
                body,
                Answerers::Hosts,
                Plane::Auction,
                self.timeout,
                Gather::All,
                || "an auction".to_string(),
            )
            .await?;
        let mut bids: Vec<AuctionBid> = answers
            .iter()
            .filter_map(|a| {
                serde_json::from_slice::<AuctionBid>(&a.payload)
                    .ok()
                    .filter(|bid| bid.host == a.signer)
            })
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
