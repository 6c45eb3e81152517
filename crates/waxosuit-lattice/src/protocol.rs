//! What travels on the bus, byte for byte.
//!
//! Invocations and their responses are MessagePack maps keyed by field name
//! (as waSCC's were), with two changes the original's users asked for: a
//! protocol version `v` on every message, so that a host can answer a
//! message from an incompatible release with a clear error instead of a
//! decode failure, and `msg` as MessagePack `bin` rather than an array of
//! integers. Inventory replies and events are JSON, for people and tools.
//!
//! Invocations and responses carry their own authentication (a signed JWT or
//! a session tag, see [`crate::antiforgery`] and [`crate::session`]); every
//! other message is signed in a NATS header ([`crate::auth`]).
//!
//! The subjects everything travels on are in [`Subjects`]; the inventory
//! and binding-table records and the commands, auctions and events between
//! hosts have modules of their own (re-exported here), so this file keeps
//! the invocation path: entities, invocations, responses and the codec.

use data_encoding::HEXUPPER;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::LatticeError;

mod control;
mod inventory;
mod subjects;

pub use control::{AuctionBid, AuctionRequest, CloudEvent, Command, CommandReply};
pub use inventory::{
    ActorEntry, BindingChange, BindingEntry, HostEntry, ProviderEntry, ValuesRequest,
    ValuesResponse,
};
pub use subjects::{InventoryKind, Subjects};

/// The protocol version this build speaks.
///
/// Version 3 authenticates every message and response, binds each to its
/// subject and reply inbox, and numbers session-tagged calls for replay
/// protection. Version 4 also authenticates requests for chunks: a sender
/// answers only the host a payload is for, and a version-3 receiver's
/// unsigned requests would go unanswered, so older hosts get a version
/// error instead.
pub const PROTOCOL_VERSION: u16 = 4;

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "waxosuit";

/// Who sends or receives an invocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WireEntity {
    /// An actor, by module key.
    Actor(String),
    /// A capability provider, by capability id and binding name.
    Capability {
        /// Capability id.
        capid: String,
        /// Binding name.
        binding: String,
    },
    /// A host itself (health checks, embedders, `waxosuit` tools), by server key.
    Host(String),
}

impl WireEntity {
    /// The `wasmbus://` URL that invocation claims sign (spec §4.6).
    pub fn url(&self) -> String {
        use waxosuit_codec::invocation::{actor_url, capability_url, host_url};
        match self {
            WireEntity::Actor(key) => actor_url(key),
            WireEntity::Capability { capid, binding } => capability_url(capid, binding),
            WireEntity::Host(key) => host_url(key),
        }
    }
}

/// `HEXUPPER(SHA-256(origin_url ‖ target_url ‖ msg))`, with `target_url` =
/// target URL + `/` + operation (spec §4.6).
pub fn invocation_hash(origin_url: &str, target_url: &str, msg: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(origin_url.as_bytes());
    hasher.update(target_url.as_bytes());
    hasher.update(msg);
    HEXUPPER.encode(&hasher.finalize())
}

/// Uppercase hex SHA-256 of some bytes (chunk integrity).
pub fn sha256_hex(bytes: &[u8]) -> String {
    HEXUPPER.encode(&Sha256::digest(bytes))
}

/// Where the rest of a payload too big for one NATS message can be fetched.
///
/// A reference is only ever acted on after the message that carries it was
/// authenticated, and every field of it is covered by that message's
/// signature or tag: the receiver knows how much it will fetch, from whom
/// (the subject is under the sender's own `{prefix}.chunks.{key}.`), and
/// what each chunk must hash to, before it asks for the first one; a chunk
/// that does not match is ignored, so a forger answering first cannot
/// spoil a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// Subject that answers a request carrying a chunk index (decimal).
    pub subject: String,
    /// Total length in bytes.
    pub len: u64,
    /// Number of chunks.
    pub chunks: u32,
    /// Size of every chunk but the last, in bytes.
    pub chunk: u32,
    /// Uppercase hex SHA-256 of each chunk, in order.
    pub hashes: Vec<String>,
}

impl ChunkRef {
    /// The reference as length-prefixed parts, for signatures and tags.
    pub(crate) fn signed_parts(&self) -> Vec<Vec<u8>> {
        let mut parts = vec![
            self.subject.as_bytes().to_vec(),
            self.len.to_be_bytes().to_vec(),
            self.chunks.to_be_bytes().to_vec(),
            self.chunk.to_be_bytes().to_vec(),
        ];
        parts.extend(self.hashes.iter().map(|h| h.as_bytes().to_vec()));
        parts
    }
}

/// `HEXUPPER(SHA-256)` over length-prefixed parts: distinct splits of the
/// same bytes never hash alike.
pub fn digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    HEXUPPER.encode(&hasher.finalize())
}

/// One call across the lattice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireInvocation {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub v: u16,
    /// Unique id (also the `sub` of the claims).
    pub id: String,
    /// Caller.
    pub origin: WireEntity,
    /// Callee.
    pub target: WireEntity,
    /// Operation name.
    pub operation: String,
    /// Payload; empty when [`WireInvocation::chunked`] is set.
    #[serde(with = "serde_bytes")]
    pub msg: Vec<u8>,
    /// WireInvocation claims signed by the sending host's server key (they bind
    /// the id, origin, target, operation, payload or chunk reference, subject
    /// and reply inbox); empty when [`WireInvocation::session`] authenticates the
    /// call instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub encoded_claims: String,
    /// The sending host's server key (`N…`).
    pub host_id: String,
    /// Set when the payload travels in chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunked: Option<ChunkRef>,
    /// Session tags for the hosts the sender shares a session with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionProof>,
    /// The sender's session token, sent with signed claims so that the
    /// receiver can tag-check its later calls. Learned only after the
    /// claims verified, and only when the same host issued it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
}

/// An invocation's session tags, one per host that may take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionProof {
    /// The sender's session id.
    pub sid: String,
    /// When the tags were made (seconds since the epoch).
    pub iat: u64,
    /// The sender's per-session sequence number: each is accepted once.
    pub seq: u64,
    /// One tag per receiving host.
    pub tags: Vec<SessionTag>,
}

/// Keyed-BLAKE3 tag for one receiving host's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionTag {
    /// The receiving host's server key.
    pub to: String,
    /// The receiving host's session id.
    pub to_sid: String,
    /// The tag.
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

/// Why a remote call failed, as the receiving host classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The anti-forgery check refused the invocation.
    Forged,
    /// The message's protocol version is not spoken here.
    Version,
    /// The message could not be decoded.
    Malformed,
    /// The target does not run on the host that answered.
    NotFound,
    /// The target ran and failed (actor error, provider error, denial).
    Failed,
    /// The receiver shares no session with the sender (or was not among
    /// the tagged hosts); nothing ran, send again with signed claims.
    Session,
    /// The receiver is at its limit of concurrent calls for the target;
    /// nothing ran.
    Busy,
}

/// A failure carried back to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// Classification.
    pub kind: ErrorKind,
    /// What the remote host says.
    pub message: String,
}

/// The answer to an [`WireInvocation`].
///
/// A caller accepts a response only when it is authenticated by a host on
/// its trust list: tagged under the pair's session key when the invocation
/// was tagged, or signed ([`Response::jwt`]) otherwise. Refusals of
/// messages that failed authentication go back unauthenticated (the
/// refused sender may be anyone, and signing for it would be work done for
/// an attacker): a caller reports their text in its timeout error, and
/// nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of the responder.
    pub v: u16,
    /// The invocation answered.
    pub invocation_id: String,
    /// Reply payload; empty on error or when chunked.
    #[serde(with = "serde_bytes")]
    pub msg: Vec<u8>,
    /// Set on failure.
    #[serde(default)]
    pub error: Option<WireError>,
    /// Set when the reply travels in chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunked: Option<ChunkRef>,
    /// The responder's session token, sent with a signed response: the
    /// caller learns it once the response verified and tags its next calls
    /// for this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The responding host's server key; empty on an unauthenticated refusal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Keyed-BLAKE3 tag under the pair's session key (responder → caller).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub tag: Option<Vec<u8>>,
    /// Response claims signed by the responder's server key, when the
    /// invocation came without a session tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwt: String,
    /// On a `session` refusal: [`proof_digest`] of the session proof as
    /// received, so the caller resends only the call it really sent, never
    /// one an attacker altered to provoke the refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// What a `session` refusal names: a digest of the proof as received.
pub fn proof_digest(proof: &SessionProof) -> String {
    let mut parts: Vec<Vec<u8>> = vec![
        proof.sid.as_bytes().to_vec(),
        proof.iat.to_be_bytes().to_vec(),
        proof.seq.to_be_bytes().to_vec(),
    ];
    for tag in &proof.tags {
        parts.push(tag.to.as_bytes().to_vec());
        parts.push(tag.to_sid.as_bytes().to_vec());
        parts.push(tag.mac.clone());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    digest(&refs)
}

/// A question on a target's shared subject: which host serves it? Calls
/// themselves go to one host's own subject (see [`Subjects::at`]),
/// so a captured call cannot be handed to another replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discover {
    /// Protocol version.
    pub v: u16,
    /// Always `true`: tells a discovery from anything else on the subject.
    pub discover: bool,
}

/// The answer to a [`Discover`]: the host and its current session token,
/// which is signed by that host; a caller believes it only from a host it
/// trusts. Replaying an old one only points at a (trusted) host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Here {
    /// Protocol version.
    pub v: u16,
    /// The serving host's server key.
    pub host: String,
    /// Its session token.
    pub token: String,
}

impl Response {
    /// A failure reply (unauthenticated until signed or tagged).
    pub fn failure(invocation_id: &str, kind: ErrorKind, message: impl Into<String>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            invocation_id: invocation_id.to_string(),
            msg: Vec::new(),
            error: Some(WireError {
                kind,
                message: message.into(),
            }),
            chunked: None,
            session: None,
            host: String::new(),
            tag: None,
            jwt: String::new(),
            proof: None,
        }
    }

    /// A successful reply carrying `msg` inline.
    pub fn success(invocation_id: &str, msg: Vec<u8>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            invocation_id: invocation_id.to_string(),
            msg,
            error: None,
            chunked: None,
            session: None,
            host: String::new(),
            tag: None,
            jwt: String::new(),
            proof: None,
        }
    }

    /// What a response's tag or signature covers, besides the key that made
    /// it: the invocation answered, the inbox it goes to, the responder, and
    /// the outcome (payload or chunk reference, error).
    pub(crate) fn signed_parts(&self, reply: &str) -> Vec<Vec<u8>> {
        let mut parts = vec![
            b"waxosuit response".to_vec(),
            self.invocation_id.as_bytes().to_vec(),
            reply.as_bytes().to_vec(),
            self.host.as_bytes().to_vec(),
            self.msg.clone(),
        ];
        match &self.chunked {
            Some(chunk) => parts.extend(chunk.signed_parts()),
            None => parts.push(Vec::new()),
        }
        match &self.error {
            Some(error) => {
                parts.push(error_kind_name(error.kind).as_bytes().to_vec());
                parts.push(error.message.as_bytes().to_vec());
            }
            None => parts.push(Vec::new()),
        }
        parts.push(self.session.clone().unwrap_or_default().into_bytes());
        parts.push(self.proof.clone().unwrap_or_default().into_bytes());
        parts
    }
}

fn error_kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Forged => "forged",
        ErrorKind::Version => "version",
        ErrorKind::Malformed => "malformed",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Failed => "failed",
        ErrorKind::Session => "session",
        ErrorKind::Busy => "busy",
    }
}

/// Just the version and id of a message, read before anything else so that
/// a message from another protocol version gets a version error, not a
/// decode error.
#[derive(Debug, Deserialize)]
pub struct Probe {
    /// Protocol version, if the message has one.
    #[serde(default)]
    pub v: Option<u16>,
    /// WireInvocation id, if any.
    #[serde(default)]
    pub id: Option<String>,
}

/// Encodes a bus message (MessagePack map keyed by field name).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, LatticeError> {
    encode_sized(value, 0)
}

/// [`encode`] into a buffer made room for `payload` bytes up front, so a
/// large payload is copied once rather than on every doubling of the buffer.
pub fn encode_sized<T: Serialize>(value: &T, payload: usize) -> Result<Vec<u8>, LatticeError> {
    let mut out = Vec::with_capacity(payload + 512);
    rmp_serde::encode::write_named(&mut out, value).map_err(|e| LatticeError::Malformed {
        what: "outgoing message",
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// How deeply arrays and maps may nest in a bus message ([`decode`]).
pub const MAX_NESTING_DEPTH: usize = 64;

/// Decodes a bus message; arrays and maps nested deeper than
/// [`MAX_NESTING_DEPTH`] are refused.
pub fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, LatticeError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    // rmp-serde's own limit (1024 levels) is deeper than a 2 MiB tokio
    // worker stack survives in a debug build (an internally tagged
    // `Command` overflows at ~600), and invocations are decoded before
    // they are authenticated. The deepest message needs 4 levels.
    de.set_max_depth(MAX_NESTING_DEPTH);
    T::deserialize(&mut de).map_err(|e| LatticeError::Malformed {
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_urls_follow_the_original_scheme() {
        let cap = WireEntity::Capability {
            capid: "wascc:messaging".into(),
            binding: "default".into(),
        };
        assert_eq!(
            format!("{}/{}", cap.url(), "OP_TESTING"),
            "wasmbus://wascc/messaging/default/OP_TESTING"
        );
        assert_eq!(WireEntity::Actor("MABC".into()).url(), "wasmbus://MABC");
    }

    #[test]
    fn payload_is_binary_not_an_integer_array() {
        let inv = WireInvocation {
            v: PROTOCOL_VERSION,
            id: "1".into(),
            origin: WireEntity::Host("N".into()),
            target: WireEntity::Actor("M".into()),
            operation: "op".into(),
            msg: vec![0xff; 1000],
            encoded_claims: String::new(),
            host_id: "N".into(),
            chunked: None,
            session: None,
            session_token: None,
        };
        let bytes = encode(&inv).unwrap();
        // 1000 bytes as `bin 16` plus field names; an integer array would
        // need two bytes per 0xff.
        assert!(bytes.len() < 1200, "{}", bytes.len());
        assert_eq!(decode::<WireInvocation>("invocation", &bytes).unwrap(), inv);
    }

    #[test]
    fn probe_reads_the_version_of_any_message() {
        #[derive(Serialize)]
        struct Future {
            v: u16,
            id: String,
            something_new: Vec<u32>,
        }
        let bytes = encode(&Future {
            v: 9,
            id: "x".into(),
            something_new: vec![1],
        })
        .unwrap();
        let probe: Probe = decode("probe", &bytes).unwrap();
        assert_eq!(probe.v, Some(9));
        assert_eq!(probe.id.as_deref(), Some("x"));
    }
}
