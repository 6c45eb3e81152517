//! Host-pair sessions: authenticate an invocation with a MAC instead of an
//! Ed25519 signature.
//!
//! Signing and checking a JWT per call costs ~80 µs of CPU, more than the
//! NATS round trip itself. So each host, when it joins, makes a fresh X25519
//! key and signs one *session token* (a JWT from its server key naming that
//! curve key). Two hosts that have seen each other's token agree on a
//! shared secret once, derive one key per direction from it, and from then
//! on every invocation carries a keyed BLAKE3 tag over what the JWT would
//! sign (id, issue time, origin, target and operation, payload) under the
//! key of the pair (sender → receiver). BLAKE3 rather than HMAC-SHA-256
//! because the tag covers the whole payload: at 64 KiB it is ~4× faster,
//! and neither side then needs the spec's SHA-256 of the payload at all.
//!
//! The sender does not know which host of a queue group will take a call,
//! so it tags the invocation once for every host it has seen answer on that
//! subject. A host that finds no tag for itself, or does not know the
//! sender's session, answers `session` without running anything, and
//! includes its own token; the sender learns it and resends the call with a
//! signed JWT (the slow path, still always available) plus its own token.
//! The trust list applies exactly as for JWTs: a session token is only
//! accepted from a host on it.
//!
//! What this keeps: only the two hosts of a pair can compute its tags (a
//! third party on the bus sees tokens and tags but no secret), and every
//! signed field is still bound to the message. What it adds: the curve
//! secret lives only in memory for the life of the process, so a restart
//! starts new sessions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use waxosuit_claims::{Claims, ClaimsError, KeyKind, KeyPair, TokenKind, Verifier, now_secs};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::antiforgery::TrustPolicy;
use crate::protocol::{SessionProof, SessionTag};

/// How far a tagged invocation's issue time may be from the
/// receiver's clock: the lifetime of a signed invocation, for the same
/// reasons (skew, chunked transfers, a bound on replays).
const MAX_AGE: Duration = Duration::from_secs(300);

/// A sender keeps tagging for at most this many hosts per subject; beyond
/// it the oldest is dropped (it gets the slow path once if still alive).
const MAX_RESPONDERS: usize = 16;

/// Domain separation for the per-direction keys (BLAKE3 `derive_key`).
const KDF_CONTEXT: &str = "waxosuit lattice 2026-11 session direction key v1";

/// Metadata of a session token: the host's curve key for this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSession {
    /// X25519 public key, base64url without padding.
    pub xkey: String,
}

impl TokenKind for HostSession {
    const KIND: &'static str = "host session";
}

/// Keys shared with one other host.
struct Peer {
    /// The token they announced (compared, not re-verified, on every sight).
    token: String,
    /// Their session id (the token's subject).
    sid: String,
    /// Key for calls from this host to them.
    send: [u8; 32],
    /// Key for calls from them to this host.
    recv: [u8; 32],
}

/// What the receiver concluded about an invocation's tags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The tag for this host is correct.
    Authentic,
    /// There is no usable tag for this host: no tag addressed to it, or a
    /// session it does not know. The sender should fall back.
    Unknown,
}

/// This host's session and what it knows of the others'.
pub(crate) struct Sessions {
    host_id: String,
    sid: String,
    secret: StaticSecret,
    token: String,
    peers: RwLock<HashMap<String, Arc<Peer>>>,
    /// Subject → hosts seen answering on it, newest last.
    responders: RwLock<HashMap<String, Vec<String>>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Feeds length-prefixed parts, so distinct splits of the same bytes never
/// produce the same input.
fn absorb(hasher: &mut blake3::Hasher, parts: &[&[u8]]) {
    for part in parts {
        hasher.update(&(part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
}

fn direction_key(shared: &[u8; 32], from: (&str, &str), to: (&str, &str)) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key(KDF_CONTEXT);
    absorb(
        &mut hasher,
        &[
            shared,
            from.0.as_bytes(),
            from.1.as_bytes(),
            to.0.as_bytes(),
            to.1.as_bytes(),
        ],
    );
    *hasher.finalize().as_bytes()
}

/// What an invocation's tag covers, besides the payload.
pub(crate) struct Signed<'a> {
    /// Invocation id.
    pub id: &'a str,
    /// `wasmbus://` URL of the origin.
    pub origin_url: &'a str,
    /// `wasmbus://` URL of the target plus `/operation`.
    pub target_url: &'a str,
    /// The payload.
    pub msg: &'a [u8],
}

fn tag(key: &[u8; 32], iat: u64, signed: &Signed<'_>) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    absorb(
        &mut hasher,
        &[
            signed.id.as_bytes(),
            &iat.to_be_bytes(),
            signed.origin_url.as_bytes(),
            signed.target_url.as_bytes(),
            signed.msg,
        ],
    );
    hasher.finalize()
}

impl Sessions {
    /// Starts this run's session: a fresh curve key, announced in a token
    /// signed by the host's server key.
    pub(crate) fn new(identity: &KeyPair) -> Result<Sessions, ClaimsError> {
        let secret = StaticSecret::from(rand::random::<[u8; 32]>());
        let xkey = BASE64URL_NOPAD.encode(PublicKey::from(&secret).as_bytes());
        let sid = nuid::next().to_string();
        let host_id = identity.public_key();
        let token = Claims::<HostSession>::builder()
            .issuer(&host_id)
            .subject(&sid)
            .metadata(HostSession { xkey })
            .build()
            .encode(identity)?;
        Ok(Sessions {
            host_id,
            sid,
            secret,
            token,
            peers: RwLock::new(HashMap::new()),
            responders: RwLock::new(HashMap::new()),
        })
    }

    /// This host's session token.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    /// Takes in another host's session token (or this host's own): checks
    /// its signature and the trust list once, then derives the pair's keys.
    /// Returns the host it belongs to.
    pub(crate) fn learn(
        &self,
        verifier: &Verifier,
        trust: &TrustPolicy,
        token: &str,
    ) -> Result<String, String> {
        if let Some(host) = read(&self.peers)
            .iter()
            .find(|(_, p)| p.token == token)
            .map(|(h, _)| h.clone())
        {
            return Ok(host);
        }
        let verified = verifier
            .verify_token::<HostSession>(token, KeyKind::Server, None)
            .map_err(|e| format!("its session token does not verify: {e}"))?;
        let host = verified.issuer().to_string();
        trust.check(&host)?;
        let their: [u8; 32] = BASE64URL_NOPAD
            .decode(verified.metadata().xkey.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "its session token carries no valid curve key".to_string())?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(their));
        if !shared.was_contributory() {
            return Err("its session key is a low-order point".to_string());
        }
        let sid = verified.subject().to_string();
        let me = (self.host_id.as_str(), self.sid.as_str());
        let them = (host.as_str(), sid.as_str());
        let peer = Peer {
            send: direction_key(shared.as_bytes(), me, them),
            recv: direction_key(shared.as_bytes(), them, me),
            token: token.to_string(),
            sid,
        };
        write(&self.peers).insert(host.clone(), Arc::new(peer));
        Ok(host)
    }

    /// Hosts with a session here, sorted.
    pub(crate) fn peers(&self) -> Vec<String> {
        let mut hosts: Vec<String> = read(&self.peers).keys().cloned().collect();
        hosts.sort();
        hosts
    }

    /// Records that `host` answered on `subject`, so later calls there
    /// carry a tag for it.
    pub(crate) fn responded(&self, subject: &str, host: &str) {
        if read(&self.responders)
            .get(subject)
            .is_some_and(|hosts| hosts.iter().any(|h| h == host))
        {
            return;
        }
        let mut responders = write(&self.responders);
        let hosts = responders.entry(subject.to_string()).or_default();
        if !hosts.iter().any(|h| h == host) {
            if hosts.len() == MAX_RESPONDERS {
                hosts.remove(0);
            }
            hosts.push(host.to_string());
        }
    }

    /// Forgets a host that left: no more tags for it.
    pub(crate) fn forget(&self, host: &str) {
        write(&self.peers).remove(host);
        for hosts in write(&self.responders).values_mut() {
            hosts.retain(|h| h != host);
        }
    }

    /// Tags an invocation for every host known to answer on `subject`;
    /// `None` when there is none (the caller signs a JWT instead).
    pub(crate) fn seal(&self, subject: &str, signed: &Signed<'_>) -> Option<SessionProof> {
        let responders = read(&self.responders);
        let hosts = responders.get(subject)?;
        let peers = read(&self.peers);
        let iat = now_secs();
        let tags: Vec<SessionTag> = hosts
            .iter()
            .filter_map(|host| {
                let peer = peers.get(host)?;
                let mac = tag(&peer.send, iat, signed).as_bytes().to_vec();
                Some(SessionTag {
                    to: host.clone(),
                    to_sid: peer.sid.clone(),
                    mac,
                })
            })
            .collect();
        if tags.is_empty() {
            return None;
        }
        Some(SessionProof {
            sid: self.sid.clone(),
            iat,
            tags,
        })
    }

    /// Checks the tag addressed to this host, from `sender`, over the
    /// message as received.
    pub(crate) fn open(
        &self,
        sender: &str,
        proof: &SessionProof,
        signed: &Signed<'_>,
    ) -> Result<Opened, String> {
        let Some(mine) = proof
            .tags
            .iter()
            .find(|t| t.to == self.host_id && t.to_sid == self.sid)
        else {
            return Ok(Opened::Unknown);
        };
        let Some(peer) = read(&self.peers)
            .get(sender)
            .filter(|p| p.sid == proof.sid)
            .cloned()
        else {
            return Ok(Opened::Unknown);
        };
        let now = now_secs();
        if proof.iat.abs_diff(now) > MAX_AGE.as_secs() {
            return Err(format!(
                "its session tag was made {} s away from this host's clock (at most {} s allowed)",
                proof.iat.abs_diff(now),
                MAX_AGE.as_secs()
            ));
        }
        let expected = tag(&peer.recv, proof.iat, signed);
        // `blake3::Hash` compares in constant time.
        let got = <[u8; 32]>::try_from(mine.mac.as_slice()).map(blake3::Hash::from_bytes);
        if got.is_ok_and(|got| got == expected) {
            Ok(Opened::Authentic)
        } else {
            Err(
                "its session tag does not match the message (tampered, or not from that host)"
                    .to_string(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Sessions, Sessions, TrustPolicy) {
        let a = KeyPair::generate(KeyKind::Server);
        let b = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([a.public_key(), b.public_key()]).unwrap();
        (
            Sessions::new(&a).unwrap(),
            Sessions::new(&b).unwrap(),
            trust,
        )
    }

    fn m(id: &'static str, msg: &'static str) -> Signed<'static> {
        Signed {
            id,
            origin_url: "wasmbus://host/N",
            target_url: "wasmbus://M/echo",
            msg: msg.as_bytes(),
        }
    }

    fn introduce(a: &Sessions, b: &Sessions, trust: &TrustPolicy, subject: &str) {
        let v = Verifier::new();
        assert_eq!(b.learn(&v, trust, a.token()).unwrap(), a.host_id);
        let host = a.learn(&v, trust, b.token()).unwrap();
        assert_eq!(host, b.host_id);
        a.responded(subject, &host);
    }

    #[test]
    fn a_tag_from_a_known_peer_opens_and_any_change_is_caught() {
        let (a, b, trust) = pair();
        assert!(a.seal("s", &m("id", "HASH")).is_none(), "no responders yet");
        introduce(&a, &b, &trust, "s");
        let proof = a.seal("s", &m("id-1", "HASH")).unwrap();
        assert_eq!(
            b.open(&a.host_id, &proof, &m("id-1", "HASH")),
            Ok(Opened::Authentic)
        );
        let err = b.open(&a.host_id, &proof, &m("id-1", "HASX")).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(b.open(&a.host_id, &proof, &m("id-2", "HASH")).is_err());
        let mut other_op = m("id-1", "HASH");
        other_op.target_url = "wasmbus://M/delete";
        assert!(b.open(&a.host_id, &proof, &other_op).is_err());
        let mut other_origin = m("id-1", "HASH");
        other_origin.origin_url = "wasmbus://MROOT";
        assert!(b.open(&a.host_id, &proof, &other_origin).is_err());
        let mut old = proof.clone();
        old.iat -= 301;
        assert!(b.open(&a.host_id, &old, &m("id-1", "HASH")).is_err());
        let mut flipped = proof.clone();
        flipped.tags[0].mac[0] ^= 1;
        assert!(b.open(&a.host_id, &flipped, &m("id-1", "HASH")).is_err());
        // The tag A made for B does not pass as one made by B for A.
        let reflected = SessionProof {
            sid: b.sid.clone(),
            iat: proof.iat,
            tags: vec![SessionTag {
                to: a.host_id.clone(),
                to_sid: a.sid.clone(),
                mac: proof.tags[0].mac.clone(),
            }],
        };
        assert!(a.open(&b.host_id, &reflected, &m("id-1", "HASH")).is_err());
    }

    #[test]
    fn a_stranger_or_a_new_session_is_told_to_fall_back() {
        let a_key = KeyPair::generate(KeyKind::Server);
        let b_key = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([a_key.public_key(), b_key.public_key()]).unwrap();
        let (a, b) = (
            Sessions::new(&a_key).unwrap(),
            Sessions::new(&b_key).unwrap(),
        );
        introduce(&a, &b, &trust, "s");
        let proof = a.seal("s", &m("id", "H")).unwrap();
        // B restarted: new session, so the old tags are not for it.
        let b2 = Sessions::new(&b_key).unwrap();
        assert_eq!(b2.host_id, b.host_id);
        assert_eq!(
            b2.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
        // A host that never saw A's token.
        let c = Sessions::new(&KeyPair::generate(KeyKind::Server)).unwrap();
        assert_eq!(
            c.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
    }

    #[test]
    fn untrusted_forged_or_keyless_tokens_are_refused() {
        let (a, b, _) = pair();
        let v = Verifier::new();
        let only_b = TrustPolicy::hosts([b.host_id.clone()]).unwrap();
        let err = b.learn(&v, &only_b, a.token()).unwrap_err();
        assert!(err.contains("trust list"), "{err}");
        let mut forged = a.token().to_string();
        forged.push('x');
        assert!(b.learn(&v, &TrustPolicy::any_host(), &forged).is_err());
        let key = KeyPair::generate(KeyKind::Server);
        let bad = Claims::<HostSession>::builder()
            .issuer(key.public_key())
            .subject("sid")
            .metadata(HostSession {
                xkey: "not a key".into(),
            })
            .build()
            .encode(&key)
            .unwrap();
        let err = b.learn(&v, &TrustPolicy::any_host(), &bad).unwrap_err();
        assert!(err.contains("curve key"), "{err}");
        let module = KeyPair::generate(KeyKind::Module);
        let wrong_kind = Claims::<HostSession>::builder()
            .issuer(module.public_key())
            .subject("sid")
            .metadata(HostSession { xkey: "x".into() })
            .build()
            .encode(&module)
            .unwrap();
        assert!(b.learn(&v, &TrustPolicy::any_host(), &wrong_kind).is_err());
    }

    #[test]
    fn a_sender_tags_every_known_responder_and_forgets_those_that_left() {
        let (a, b, trust) = pair();
        let c = Sessions::new(&KeyPair::generate(KeyKind::Server)).unwrap();
        let trust = trust.with(&c.host_id);
        introduce(&a, &b, &trust, "s");
        introduce(&a, &c, &trust, "s");
        let proof = a.seal("s", &m("id", "H")).unwrap();
        assert_eq!(proof.tags.len(), 2);
        assert_eq!(
            b.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Authentic)
        );
        assert_eq!(
            c.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Authentic)
        );
        a.forget(&b.host_id);
        let proof = a.seal("s", &m("id", "H")).unwrap();
        assert_eq!(proof.tags.len(), 1);
        assert_eq!(
            b.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
    }
}
