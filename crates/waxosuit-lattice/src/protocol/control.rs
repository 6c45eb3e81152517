//! Messages that act on hosts and report what they did: commands to one
//! host and its reply, auctions for a host to run something, and the
//! CloudEvents hosts publish.
//!
//! Separate from the invocation path in the parent module: these are the
//! control and events planes, used by [`crate::LatticeClient`] and the
//! hosts' control and events tasks.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ChunkRef;

/// A command to one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Verify and start a signed actor module (inline or chunked).
    StartActor {
        /// Protocol version.
        v: u16,
        /// The module, when small enough to travel inline.
        #[serde(with = "serde_bytes", default)]
        module: Vec<u8>,
        /// Where to fetch it otherwise.
        #[serde(default)]
        chunked: Option<ChunkRef>,
    },
    /// Stop an actor.
    StopActor {
        /// Protocol version.
        v: u16,
        /// Module key.
        actor: String,
    },
    /// Start a provider from the host's built-in backends.
    StartProvider {
        /// Protocol version.
        v: u16,
        /// Capability id.
        capid: String,
        /// Backend name (`memory`, `redis`, …); `None` for the default.
        #[serde(default)]
        backend: Option<String>,
        /// Binding name.
        binding: String,
    },
    /// Stop a provider.
    StopProvider {
        /// Protocol version.
        v: u16,
        /// Capability id.
        capid: String,
        /// Binding name.
        binding: String,
    },
}

/// A host's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The answering host.
    pub host: String,
    /// Whether it worked.
    pub ok: bool,
    /// What happened (actor key started, or the error).
    pub message: String,
}

/// A call for bids: which hosts could run something here?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionRequest {
    /// Labels a host must have, with these exact values.
    pub constraints: BTreeMap<String, String>,
    /// An actor key the host must not already run.
    #[serde(default)]
    pub actor: Option<String>,
}

/// A bid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionBid {
    /// Bidding host.
    pub host: String,
    /// How many actors it runs (the least loaded wins).
    pub actors: usize,
}

/// A CloudEvents 1.0 envelope (JSON), as published on the events subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `1.0`.
    pub specversion: String,
    /// `dev.waxosuit.<what>`, e.g. `dev.waxosuit.actor_started`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `waxosuit://host/<server key>`.
    pub source: String,
    /// Unique id.
    pub id: String,
    /// RFC 3339 UTC.
    pub time: String,
    /// Always `application/json`.
    pub datacontenttype: String,
    /// What the event is about (an actor key, `capid/binding`, …).
    pub subject: String,
    /// Event details.
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// A new event from `host`.
    pub fn new(
        host: &str,
        what: &str,
        subject: impl Into<String>,
        data: serde_json::Value,
    ) -> CloudEvent {
        CloudEvent {
            specversion: "1.0".to_string(),
            kind: format!("dev.waxosuit.{what}"),
            source: format!("waxosuit://host/{host}"),
            id: nuid::next().to_string(),
            time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            datacontenttype: "application/json".to_string(),
            subject: subject.into(),
            data,
        }
    }
}
