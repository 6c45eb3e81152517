//! Host-pair sessions: authenticate invocations and responses with a MAC
//! instead of an Ed25519 signature.
//!
//! Signing and checking a JWT per call costs ~80 µs of CPU, more than the
//! NATS round trip itself. So each host makes an X25519 key and signs a
//! *session token* (a JWT from its server key naming that curve key, valid
//! for an hour; a host rotates to a new one every half hour). Two hosts
//! that have seen each other's token agree on a shared secret once, derive
//! one key per direction from it, and from then on every invocation carries
//! a keyed BLAKE3 tag over what the JWT would sign (id, issue time, sequence
//! number, origin, target and operation, subject, reply inbox, payload)
//! under the key of the pair (sender → receiver), and every response a tag
//! under the other direction's key. BLAKE3 rather than HMAC-SHA-256 because
//! the tag covers the whole payload: at 64 KiB it is ~4× faster, and
//! neither side then needs the spec's SHA-256 of the payload at all.
//!
//! The sender does not know which host of a queue group will take a call,
//! so it tags the invocation once for every host it has seen answer on that
//! subject. A host that finds no tag for itself, or does not know the
//! sender's session, answers `session` (signed) without running anything,
//! and includes its own token; the sender learns it and resends the call
//! with a signed JWT (the slow path, still always available) plus its own
//! token.
//!
//! Tokens are learned only from a message that verified, only from a host
//! on the trust list, and only until they expire. Each tagged call carries
//! a sequence number of the sender's session; the receiver accepts each
//! number once, within a sliding window of 65 536 numbers, so a
//! captured call published again is refused without remembering every id.
//!
//! What this keeps: only the two hosts of a pair can compute its tags (a
//! third party on the bus sees tokens and tags but no secret), and every
//! signed field is still bound to the message. The curve secret lives only
//! in memory, so a restart or a rotation starts new sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use waxosuit_claims::{Claims, ClaimsError, KeyKind, KeyPair, TokenKind, Verifier, now_secs};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::auth::{Reason, Refusal, TrustPolicy, shorten};
use crate::protocol::{SessionProof, SessionTag};

/// How far a tagged invocation's issue time may be from the receiver's
/// clock: the lifetime of a signed invocation, for the same reasons.
const MAX_AGE: Duration = Duration::from_secs(60);

/// How long a session token is valid.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(3600);

/// How often a host starts a new session: well before its token expires,
/// so peers never hold an expired one for long.
pub(crate) const ROTATE_EVERY: Duration = Duration::from_secs(1800);

/// A sender keeps tagging for at most this many hosts per subject; beyond
/// it the oldest is dropped (it gets the slow path once if still alive).
const MAX_RESPONDERS: usize = 16;

/// Sequence numbers a receiver remembers per peer session: a tagged call
/// whose number is this far behind the newest seen is refused. Calls leave
/// a host in number order and NATS keeps a connection's order, so only
/// calls overtaken by 65 536 others would be; the bitmap costs 8 KiB.
pub(crate) const WINDOW: u64 = 1 << 16;

/// Domain separation for the per-direction keys (BLAKE3 `derive_key`).
const KDF_CONTEXT: &str = "waxosuit lattice 2026-12 session direction key v3";

/// Metadata of a session token: the host's curve key for this session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostSession {
    /// X25519 public key, base64url without padding.
    pub xkey: String,
}

impl TokenKind for HostSession {
    const KIND: &'static str = "host session";
}

/// Sequence numbers seen from one peer session.
struct Window {
    /// The highest number seen (0: none yet; numbering starts at 1).
    top: u64,
    bits: Box<[u64]>,
}

impl Window {
    fn new() -> Window {
        Window {
            top: 0,
            bits: vec![0u64; (WINDOW / 64) as usize].into_boxed_slice(),
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Whether `seq` is new; records it.
    fn accept(&mut self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            if seq - self.top >= WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in self.top + 1..seq {
                    let (w, b) = Window::slot(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq;
            let (w, b) = Window::slot(seq);
            self.bits[w] |= b;
            return true;
        }
        if self.top - seq >= WINDOW {
            return false;
        }
        let (w, b) = Window::slot(seq);
        if self.bits[w] & b != 0 {
            return false;
        }
        self.bits[w] |= b;
        true
    }
}

/// Keys shared with one other host.
struct Peer {
    /// The token they announced (compared, not re-verified, on every sight).
    token: String,
    /// Their session id (the token's subject).
    sid: String,
    /// When their token expires.
    expires: u64,
    /// Key for messages from this host to them.
    send: [u8; 32],
    /// Key for messages from them to this host.
    recv: [u8; 32],
    /// Their sequence numbers seen here.
    window: Mutex<Window>,
}

impl Peer {
    fn live(&self, now: u64) -> bool {
        self.expires > now
    }
}

/// This host's current session.
struct Own {
    sid: String,
    secret: StaticSecret,
    token: String,
    seq: AtomicU64,
}

/// What the receiver concluded about an invocation's tags.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The tag for this host is correct and its number is new.
    Authentic,
    /// There is no usable tag for this host: no tag addressed to it, or a
    /// session it does not know. The sender should fall back.
    Unknown,
}

/// This host's session and what it knows of the others'.
pub(crate) struct Sessions {
    host_id: String,
    own: ArcSwap<Own>,
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

/// What an invocation's tag covers, besides the payload's issue time and
/// sequence number.
pub(crate) struct Signed<'a> {
    /// Invocation id.
    pub id: &'a str,
    /// `wasmbus://` URL of the origin.
    pub origin_url: &'a str,
    /// `wasmbus://` URL of the target plus `/operation`.
    pub target_url: &'a str,
    /// The subject the invocation is published to.
    pub subject: &'a str,
    /// The reply inbox it names.
    pub reply: &'a str,
    /// The payload.
    pub msg: &'a [u8],
}

fn tag(key: &[u8; 32], iat: u64, seq: u64, signed: &Signed<'_>) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    absorb(
        &mut hasher,
        &[
            b"waxosuit invocation",
            signed.id.as_bytes(),
            &iat.to_be_bytes(),
            &seq.to_be_bytes(),
            signed.origin_url.as_bytes(),
            signed.target_url.as_bytes(),
            signed.subject.as_bytes(),
            signed.reply.as_bytes(),
            signed.msg,
        ],
    );
    hasher.finalize()
}

fn tag_parts(key: &[u8; 32], parts: &[Vec<u8>]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    absorb(&mut hasher, &refs);
    hasher.finalize()
}

fn new_own(identity: &KeyPair) -> Result<Own, ClaimsError> {
    let secret = StaticSecret::from(rand::random::<[u8; 32]>());
    let xkey = BASE64URL_NOPAD.encode(PublicKey::from(&secret).as_bytes());
    let sid = nuid::next().to_string();
    let token = Claims::<HostSession>::builder()
        .issuer(identity.public_key())
        .subject(&sid)
        .expires_in(SESSION_LIFETIME)
        .metadata(HostSession { xkey })
        .build()
        .encode(identity)?;
    Ok(Own {
        sid,
        secret,
        token,
        seq: AtomicU64::new(1),
    })
}

impl Sessions {
    /// Starts this host's first session.
    pub(crate) fn new(identity: &KeyPair) -> Result<Sessions, ClaimsError> {
        Ok(Sessions {
            host_id: identity.public_key(),
            own: ArcSwap::from_pointee(new_own(identity)?),
            peers: RwLock::new(HashMap::new()),
            responders: RwLock::new(HashMap::new()),
        })
    }

    /// Starts a new session: a fresh curve key and token. Every pair key
    /// was derived from the old one, so the peers are forgotten; each pair
    /// takes the signed path once and agrees on new keys.
    pub(crate) fn rotate(&self, identity: &KeyPair) -> Result<(), ClaimsError> {
        self.own.store(Arc::new(new_own(identity)?));
        write(&self.peers).clear();
        Ok(())
    }

    /// This host's session token.
    pub(crate) fn token(&self) -> String {
        self.own.load().token.clone()
    }

    /// Takes in another host's session token (or this host's own): checks
    /// its signature, expiry and the trust list once, then derives the
    /// pair's keys. Returns the host it belongs to.
    pub(crate) fn learn(
        &self,
        verifier: &Verifier,
        trust: &TrustPolicy,
        token: &str,
    ) -> Result<String, Refusal> {
        let now = now_secs();
        if let Some(host) = read(&self.peers)
            .iter()
            .find(|(_, p)| p.token == token && p.live(now))
            .map(|(h, _)| h.clone())
        {
            return Ok(host);
        }
        let unverified = Claims::<HostSession>::decode_unverified(token).map_err(|e| {
            Refusal::new(
                Reason::Malformed,
                format!("its session token is malformed: {e}"),
            )
        })?;
        trust
            .check(&unverified.issuer)
            .map_err(|e| Refusal::new(Reason::Untrusted, e).by(&unverified.issuer))?;
        let verified = verifier
            .verify_token::<HostSession>(token, KeyKind::Server, None)
            .map_err(|e| {
                Refusal::new(
                    Reason::BadSignature,
                    format!("its session token does not verify: {e}"),
                )
                .by(&unverified.issuer)
            })?;
        let host = verified.issuer().to_string();
        let claims = verified.claims();
        let expires = match claims.expires {
            Some(exp) if exp.saturating_sub(claims.issued_at) <= 2 * SESSION_LIFETIME.as_secs() => {
                exp
            }
            _ => {
                return Err(Refusal::new(
                    Reason::Expired,
                    "its session token never expires or is valid for too long",
                )
                .by(&host));
            }
        };
        let their: [u8; 32] = BASE64URL_NOPAD
            .decode(verified.metadata().xkey.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Refusal::new(
                    Reason::Malformed,
                    "its session token carries no valid curve key",
                )
                .by(&host)
            })?;
        let own = self.own.load();
        let shared = own.secret.diffie_hellman(&PublicKey::from(their));
        if !shared.was_contributory() {
            return Err(
                Refusal::new(Reason::Malformed, "its session key is a low-order point").by(&host),
            );
        }
        let sid = verified.subject().to_string();
        let me = (self.host_id.as_str(), own.sid.as_str());
        let them = (host.as_str(), sid.as_str());
        let peer = Peer {
            send: direction_key(shared.as_bytes(), me, them),
            recv: direction_key(shared.as_bytes(), them, me),
            token: token.to_string(),
            sid,
            expires,
            window: Mutex::new(Window::new()),
        };
        write(&self.peers).insert(host.clone(), Arc::new(peer));
        Ok(host)
    }

    /// Hosts with a live session here, sorted.
    pub(crate) fn peers(&self) -> Vec<String> {
        let now = now_secs();
        let mut hosts: Vec<String> = read(&self.peers)
            .iter()
            .filter(|(_, p)| p.live(now))
            .map(|(h, _)| h.clone())
            .collect();
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

    /// Tags an invocation for every host known to answer on
    /// `signed.subject`; `None` when there is none (the caller signs a JWT
    /// instead).
    pub(crate) fn seal(&self, signed: &Signed<'_>) -> Option<SessionProof> {
        let responders = read(&self.responders);
        let hosts = responders.get(signed.subject)?;
        let peers = read(&self.peers);
        let own = self.own.load();
        let iat = now_secs();
        let seq = own.seq.fetch_add(1, Ordering::Relaxed);
        let tags: Vec<SessionTag> = hosts
            .iter()
            .filter_map(|host| {
                let peer = peers.get(host).filter(|p| p.live(iat))?;
                let mac = tag(&peer.send, iat, seq, signed).as_bytes().to_vec();
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
            sid: own.sid.clone(),
            iat,
            seq,
            tags,
        })
    }

    /// Checks the tag addressed to this host, from `sender`, over the
    /// message as received, then its sequence number (once each).
    pub(crate) fn open(
        &self,
        sender: &str,
        proof: &SessionProof,
        signed: &Signed<'_>,
    ) -> Result<Opened, Refusal> {
        let own = self.own.load();
        let Some(mine) = proof
            .tags
            .iter()
            .find(|t| t.to == self.host_id && t.to_sid == own.sid)
        else {
            return Ok(Opened::Unknown);
        };
        let now = now_secs();
        let Some(peer) = read(&self.peers)
            .get(sender)
            .filter(|p| p.sid == proof.sid && p.live(now))
            .cloned()
        else {
            return Ok(Opened::Unknown);
        };
        if proof.iat.abs_diff(now) > MAX_AGE.as_secs() {
            return Err(Refusal::new(
                Reason::Expired,
                format!(
                    "its session tag was made {} s away from this host's clock (at most {} s \
                     allowed)",
                    proof.iat.abs_diff(now),
                    MAX_AGE.as_secs()
                ),
            )
            .by(sender));
        }
        let expected = tag(&peer.recv, proof.iat, proof.seq, signed);
        // `blake3::Hash` compares in constant time.
        let got = <[u8; 32]>::try_from(mine.mac.as_slice()).map(blake3::Hash::from_bytes);
        if !got.is_ok_and(|got| got == expected) {
            return Err(Refusal::new(
                Reason::BadSignature,
                "its session tag does not match the message (tampered, or not from that host)",
            )
            .by(sender));
        }
        let fresh = peer
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .accept(proof.seq);
        if !fresh {
            return Err(Refusal::new(
                Reason::Replayed,
                format!(
                    "call number {} of session {} was already received (a replay) or is too old",
                    proof.seq,
                    shorten(&proof.sid)
                ),
            )
            .by(sender));
        }
        Ok(Opened::Authentic)
    }

    /// A tag over a response's signed parts, for the caller `peer`; `None`
    /// without a live session with it.
    pub(crate) fn tag_response(&self, peer: &str, parts: &[Vec<u8>]) -> Option<Vec<u8>> {
        let peers = read(&self.peers);
        let peer = peers.get(peer).filter(|p| p.live(now_secs()))?;
        Some(tag_parts(&peer.send, parts).as_bytes().to_vec())
    }

    /// Whether `mac` is `responder`'s tag over a response's signed parts.
    pub(crate) fn check_response(&self, responder: &str, parts: &[Vec<u8>], mac: &[u8]) -> bool {
        let Some(peer) = read(&self.peers).get(responder).cloned() else {
            return false;
        };
        let expected = tag_parts(&peer.recv, parts);
        <[u8; 32]>::try_from(mac)
            .map(blake3::Hash::from_bytes)
            .is_ok_and(|got| got == expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (KeyPair, KeyPair, Sessions, Sessions, TrustPolicy) {
        let a = KeyPair::generate(KeyKind::Server);
        let b = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([a.public_key(), b.public_key()]).unwrap();
        let (sa, sb) = (Sessions::new(&a).unwrap(), Sessions::new(&b).unwrap());
        (a, b, sa, sb, trust)
    }

    fn m(id: &'static str, msg: &'static str) -> Signed<'static> {
        Signed {
            id,
            origin_url: "wasmbus://host/N",
            target_url: "wasmbus://M/echo",
            subject: "s",
            reply: "inbox.1",
            msg: msg.as_bytes(),
        }
    }

    fn introduce(a: &Sessions, b: &Sessions, trust: &TrustPolicy, subject: &str) {
        let v = Verifier::new();
        assert_eq!(b.learn(&v, trust, &a.token()).unwrap(), a.host_id);
        let host = a.learn(&v, trust, &b.token()).unwrap();
        assert_eq!(host, b.host_id);
        a.responded(subject, &host);
    }

    #[test]
    fn a_tag_from_a_known_peer_opens_once_and_any_change_is_caught() {
        let (_, _, a, b, trust) = pair();
        assert!(a.seal(&m("id", "HASH")).is_none(), "no responders yet");
        introduce(&a, &b, &trust, "s");
        let proof = a.seal(&m("id-1", "HASH")).unwrap();
        let check = |proof: &SessionProof, signed: &Signed<'_>| b.open(&a.host_id, proof, signed);
        for (changed, what) in [
            (m("id-1", "HASX"), "payload"),
            (m("id-2", "HASH"), "id"),
            (
                Signed {
                    target_url: "wasmbus://M/delete",
                    ..m("id-1", "HASH")
                },
                "operation",
            ),
            (
                Signed {
                    origin_url: "wasmbus://MROOT",
                    ..m("id-1", "HASH")
                },
                "origin",
            ),
            (
                Signed {
                    subject: "other",
                    ..m("id-1", "HASH")
                },
                "subject",
            ),
            (
                Signed {
                    reply: "attacker",
                    ..m("id-1", "HASH")
                },
                "reply inbox",
            ),
        ] {
            let err = check(&proof, &changed).unwrap_err();
            assert_eq!(err.reason, Reason::BadSignature, "{what}: {err}");
        }
        let mut renumbered = proof.clone();
        renumbered.seq += 1;
        assert!(check(&renumbered, &m("id-1", "HASH")).is_err());
        let mut old = proof.clone();
        old.iat -= 61;
        assert_eq!(
            check(&old, &m("id-1", "HASH")).unwrap_err().reason,
            Reason::Expired
        );
        let mut flipped = proof.clone();
        flipped.tags[0].mac[0] ^= 1;
        assert!(check(&flipped, &m("id-1", "HASH")).is_err());

        assert_eq!(check(&proof, &m("id-1", "HASH")), Ok(Opened::Authentic));
        let replay = check(&proof, &m("id-1", "HASH")).unwrap_err();
        assert_eq!(replay.reason, Reason::Replayed, "{replay}");

        // The tag A made for B does not pass as one made by B for A.
        let reflected = SessionProof {
            sid: b.own.load().sid.clone(),
            iat: proof.iat,
            seq: proof.seq,
            tags: vec![SessionTag {
                to: a.host_id.clone(),
                to_sid: a.own.load().sid.clone(),
                mac: proof.tags[0].mac.clone(),
            }],
        };
        assert!(a.open(&b.host_id, &reflected, &m("id-1", "HASH")).is_err());
    }

    #[test]
    fn responses_are_tagged_per_direction() {
        let (_, _, a, b, trust) = pair();
        introduce(&a, &b, &trust, "s");
        let parts = vec![b"resp".to_vec(), b"id".to_vec()];
        let mac = b.tag_response(&a.host_id, &parts).unwrap();
        assert!(a.check_response(&b.host_id, &parts, &mac));
        assert!(!a.check_response(&b.host_id, &[b"resp".to_vec()], &mac));
        // B cannot take A's response tag for one of A's own.
        let own = a.tag_response(&b.host_id, &parts).unwrap();
        assert!(!a.check_response(&b.host_id, &parts, &own));
    }

    #[test]
    fn the_replay_window_accepts_each_number_once_and_refuses_the_too_old() {
        let mut w = Window::new();
        assert!(!w.accept(0));
        assert!(w.accept(5));
        assert!(w.accept(3), "out of order but new");
        assert!(!w.accept(3));
        assert!(!w.accept(5));
        assert!(w.accept(5 + WINDOW - 1));
        assert!(!w.accept(5), "still remembered");
        assert!(w.accept(10 + WINDOW));
        assert!(!w.accept(9), "now behind the window");
        assert!(w.accept(10 + 3 * WINDOW), "a jump clears the window");
        assert!(w.accept(11 + 2 * WINDOW));
    }

    #[test]
    fn a_stranger_a_new_session_or_a_rotation_is_told_to_fall_back() {
        let (_, b_key, a, b, trust) = pair();
        introduce(&a, &b, &trust, "s");
        let proof = a.seal(&m("id", "H")).unwrap();
        // B restarted: new session, so the old tags are not for it.
        let b2 = Sessions::new(&b_key).unwrap();
        assert_eq!(
            b2.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
        // B rotated: the same.
        b.rotate(&b_key).unwrap();
        assert_eq!(
            b.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
        assert!(
            b.peers().is_empty(),
            "pair keys of the old session are gone"
        );
        // A host that never saw A's token.
        let c = Sessions::new(&KeyPair::generate(KeyKind::Server)).unwrap();
        assert_eq!(
            c.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
    }

    #[test]
    fn untrusted_forged_expired_or_keyless_tokens_are_refused() {
        let (_, _, a, b, _) = pair();
        let v = Verifier::new();
        let only_b = TrustPolicy::hosts([b.host_id.clone()]).unwrap();
        let err = b.learn(&v, &only_b, &a.token()).unwrap_err();
        assert_eq!(err.reason, Reason::Untrusted, "{err}");
        let mut forged = a.token();
        forged.push('x');
        assert!(b.learn(&v, &TrustPolicy::any_host(), &forged).is_err());
        let key = KeyPair::generate(KeyKind::Server);
        let token = |xkey: &str, lifetime: Option<Duration>| {
            let mut builder = Claims::<HostSession>::builder()
                .issuer(key.public_key())
                .subject("sid")
                .metadata(HostSession { xkey: xkey.into() });
            if let Some(d) = lifetime {
                builder = builder.expires_in(d);
            }
            builder.build().encode(&key).unwrap()
        };
        let good_xkey =
            BASE64URL_NOPAD.encode(PublicKey::from(&StaticSecret::from([7u8; 32])).as_bytes());
        let any = TrustPolicy::any_host();
        let err = b
            .learn(&v, &any, &token("not a key", Some(SESSION_LIFETIME)))
            .unwrap_err();
        assert!(err.detail.contains("curve key"), "{err}");
        let err = b.learn(&v, &any, &token(&good_xkey, None)).unwrap_err();
        assert_eq!(err.reason, Reason::Expired, "{err}");
        let err = b
            .learn(&v, &any, &token(&good_xkey, Some(SESSION_LIFETIME * 10)))
            .unwrap_err();
        assert_eq!(err.reason, Reason::Expired, "{err}");
        b.learn(&v, &any, &token(&good_xkey, Some(SESSION_LIFETIME)))
            .unwrap();
    }

    #[test]
    fn a_sender_tags_every_known_responder_and_forgets_those_that_left() {
        let (_, _, a, b, trust) = pair();
        let c = Sessions::new(&KeyPair::generate(KeyKind::Server)).unwrap();
        let trust = trust.with(&c.host_id);
        introduce(&a, &b, &trust, "s");
        introduce(&a, &c, &trust, "s");
        let proof = a.seal(&m("id", "H")).unwrap();
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
        let proof = a.seal(&m("id", "H")).unwrap();
        assert_eq!(proof.tags.len(), 1);
        assert_eq!(
            b.open(&a.host_id, &proof, &m("id", "H")),
            Ok(Opened::Unknown)
        );
    }
}
