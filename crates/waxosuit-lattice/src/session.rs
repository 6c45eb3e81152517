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
//! number, origin, target and operation, subject, reply inbox, payload,
//! trace context when there is one)
//! under the key of the pair (sender → receiver), and every response a tag
//! under the other direction's key. BLAKE3 rather than HMAC-SHA-256 because
//! the tag covers the whole payload: at 64 KiB it is ~4× faster, and
//! neither side then needs the spec's SHA-256 of the payload at all.
//!
//! A call goes to one host's own subject, and carries one tag, for that
//! host. A host that finds no tag for itself, or does not know the
//! sender's session, answers `session` (signed, and bound to the proof it
//! received) without running anything, and includes its own token; the
//! sender learns it and resends the call with a signed JWT (the slow path,
//! still always available) plus its own token.
//!
//! Tokens are learned only from a message that verified, only from a host
//! on the trust list, and only until they expire. Each tagged call carries
//! a sequence number of the sender's session; the receiver accepts each
//! number once, within a sliding window of 65 536 numbers, so a
//! captured call published again is refused without remembering every id.
//! When a peer starts a new session the receiver keeps the old one's keys
//! and window while its token lives, and a tag made more than a minute
//! away from its clock is refused before its session is looked up: a
//! captured call is never answered `session`, which would have its sender,
//! if still waiting for it, resend it signed and so run it twice.
//!
//! What this keeps: only the two hosts of a pair can compute its tags (a
//! third party on the bus sees tokens and tags but no secret), and every
//! signed field is still bound to the message. The curve secret lives only
//! in memory, so a restart or a rotation starts new sessions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use data_encoding::BASE64URL_NOPAD;
use parking_lot::{Mutex, RwLock};
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

/// A peer's sessions before its current one that a receiver keeps checking
/// tags against while they live: two, so that a peer starting new sessions
/// twice within a call's lifetime (a restart after a rotation) still finds
/// its captured calls refused as replays.
const RETIRED: usize = 2;

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
    /// When their token was issued and when it expires.
    issued: u64,
    expires: u64,
    /// Key for messages from this host to them.
    send: [u8; 32],
    /// Key for messages from them to this host.
    recv: [u8; 32],
    /// Their sequence numbers seen here.
    window: Mutex<Window>,
    /// Calls to them are signed, not tagged, until their token is seen
    /// again ([`Sessions::suspend`]); what comes from them is unaffected.
    suspended: std::sync::atomic::AtomicBool,
}

impl Peer {
    fn live(&self, now: u64) -> bool {
        self.expires > now
    }
}

/// One of this host's sessions: its curve key and the pairs agreed under it.
struct Generation {
    sid: String,
    secret: StaticSecret,
    token: String,
    seq: AtomicU64,
    peers: RwLock<HashMap<String, Arc<Peer>>>,
    /// Each peer's sessions before its current one ([`RETIRED`] at most,
    /// newest first), while they live: a call tagged under one is still
    /// checked against its replay window. Were it forgotten, a captured
    /// call of that session published again would find no session, be
    /// answered `session`, and its sender, still waiting for it, would
    /// resend it signed: the call would run twice.
    retired: RwLock<HashMap<String, Vec<Arc<Peer>>>>,
}

/// What the receiver concluded about an invocation's tag.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The tag for this host is correct and its number is new.
    Authentic,
    /// There is no usable tag for this host: no tag addressed to it, or a
    /// session it does not know. The sender should fall back.
    Unknown,
}

/// This host's sessions (the current one and the one before, so calls in
/// flight across a rotation still check) and what it knows of the others'.
pub(crate) struct Sessions {
    host_id: String,
    current: ArcSwap<Generation>,
    previous: ArcSwap<Option<Arc<Generation>>>,
    /// Held while rotating, and while a learned pair is filed, so a pair is
    /// never filed under a generation that was just replaced.
    filing: Mutex<()>,
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

/// What an invocation's tag covers, besides its issue time and sequence
/// number.
pub(crate) struct Signed<'a> {
    /// WireInvocation id.
    pub id: &'a str,
    /// `wasmbus://` URL of the origin.
    pub origin_url: &'a str,
    /// `wasmbus://` URL of the target plus `/operation`.
    pub target_url: &'a str,
    /// The subject the invocation is published to (which names the one
    /// host meant to run it).
    pub subject: &'a str,
    /// The reply inbox it names.
    pub reply: &'a str,
    /// The payload.
    pub msg: &'a [u8],
    /// [`crate::propagation::binding`] of the trace headers sent with it;
    /// `None` (nothing more tagged) when it carries none.
    pub trace: Option<&'a str>,
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
    // A trailing part only when there is a trace context: a call without
    // one is tagged exactly as before, and the parts being length-prefixed,
    // no payload can pass for a payload plus a trace context.
    if let Some(trace) = signed.trace {
        absorb(&mut hasher, &[trace.as_bytes()]);
    }
    hasher.finalize()
}

fn tag_parts(key: &[u8; 32], parts: &[Vec<u8>]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    absorb(&mut hasher, &refs);
    hasher.finalize()
}

fn generation(identity: &KeyPair) -> Result<Generation, ClaimsError> {
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
    Ok(Generation {
        sid,
        secret,
        token,
        seq: AtomicU64::new(1),
        peers: RwLock::new(HashMap::new()),
        retired: RwLock::new(HashMap::new()),
    })
}

/// The session a caller used for one call: which of its generations, and
/// the peer's session, so the answer is checked under that very pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) own_sid: String,
    pub(crate) peer_sid: String,
}

impl Sessions {
    /// Starts this host's first session.
    pub(crate) fn new(identity: &KeyPair) -> Result<Sessions, ClaimsError> {
        Ok(Sessions {
            host_id: identity.public_key(),
            current: ArcSwap::from_pointee(generation(identity)?),
            previous: ArcSwap::from_pointee(None),
            filing: Mutex::new(()),
        })
    }

    /// Starts a new session: a fresh curve key and token. New pairs are
    /// agreed under it (each takes the signed path once); the previous
    /// session stays valid until the next rotation, so calls in flight and
    /// peers that have not yet heard of the new one keep working.
    pub(crate) fn rotate(&self, identity: &KeyPair) -> Result<(), ClaimsError> {
        let next = Arc::new(generation(identity)?);
        let _filing = self.filing.lock();
        let old = self.current.swap(next);
        self.previous.store(Arc::new(Some(old)));
        Ok(())
    }

    /// This host's current session token.
    pub(crate) fn token(&self) -> String {
        self.current.load().token.clone()
    }

    /// The generation with session id `sid`, current or previous.
    fn generation(&self, sid: &str) -> Option<Arc<Generation>> {
        let current = self.current.load_full();
        if current.sid == sid {
            return Some(current);
        }
        self.previous
            .load()
            .as_ref()
            .as_ref()
            .filter(|g| g.sid == sid)
            .cloned()
    }

    /// Takes in the session token of `expected` (another host): checks the
    /// issuer is that host and trusted, then the signature and expiry, then
    /// derives the pair's keys under the current session. A token older
    /// than the one already held is ignored; the same session keeps its
    /// replay window.
    pub(crate) fn learn(
        &self,
        verifier: &Verifier,
        trust: &TrustPolicy,
        expected: &str,
        token: &str,
    ) -> Result<(), Refusal> {
        let now = now_secs();
        let current = self.current.load_full();
        if let Some(known) = current
            .peers
            .read()
            .get(expected)
            .filter(|p| p.token == token && p.live(now))
        {
            // Seen before (verified then), with a message that was
            // authenticated: the pair is in use again.
            known.suspended.store(false, Ordering::Relaxed);
            return Ok(());
        }
        let unverified = Claims::<HostSession>::decode_unverified(token).map_err(|e| {
            Refusal::new(
                Reason::Malformed,
                format!("its session token is malformed: {e}"),
            )
        })?;
        if unverified.issuer != expected {
            return Err(Refusal::new(
                Reason::Mismatch,
                format!(
                    "it carries the session token of {}, not of {}",
                    shorten(&unverified.issuer),
                    shorten(expected)
                ),
            )
            .by(expected));
        }
        trust
            .check(expected)
            .map_err(|e| Refusal::new(Reason::Untrusted, e).by(expected))?;
        let verified = verifier
            .verify_token::<HostSession>(token, KeyKind::Server, None)
            .map_err(|e| {
                Refusal::new(
                    Reason::BadSignature,
                    format!("its session token does not verify: {e}"),
                )
                .by(expected)
            })?;
        let claims = verified.claims();
        let issued = claims.issued_at;
        let expires = match claims.expires {
            Some(exp)
                if exp.saturating_sub(issued) <= 2 * SESSION_LIFETIME.as_secs()
                    && issued <= now + waxosuit_claims::DEFAULT_CLOCK_SKEW.as_secs() =>
            {
                exp
            }
            _ => {
                return Err(Refusal::new(
                    Reason::Expired,
                    "its session token never expires, is valid for too long, or is issued in \
                     the future",
                )
                .by(expected));
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
                .by(expected)
            })?;
        let sid = verified.subject().to_string();
        let _filing = self.filing.lock();
        // The generation may have rotated while this token was checked.
        let current = self.current.load_full();
        let mut peers = current.peers.write();
        if let Some(known) = peers.get(expected) {
            if known.sid == sid && known.live(now) {
                // The same session: keep its keys and its replay window,
                // and tag calls to it again.
                known.suspended.store(false, Ordering::Relaxed);
                return Ok(());
            }
            if known.issued > issued && known.live(now) {
                // An older token replayed: keep the newer session.
                return Ok(());
            }
        }
        let shared = current.secret.diffie_hellman(&PublicKey::from(their));
        if !shared.was_contributory() {
            return Err(
                Refusal::new(Reason::Malformed, "its session key is a low-order point")
                    .by(expected),
            );
        }
        let me = (self.host_id.as_str(), current.sid.as_str());
        let them = (expected, sid.as_str());
        let replaced = peers.insert(
            expected.to_string(),
            Arc::new(Peer {
                send: direction_key(shared.as_bytes(), me, them),
                recv: direction_key(shared.as_bytes(), them, me),
                token: token.to_string(),
                sid,
                issued,
                expires,
                window: Mutex::new(Window::new()),
                suspended: std::sync::atomic::AtomicBool::new(false),
            }),
        );
        if let Some(old) = replaced.filter(|old| old.live(now)) {
            let mut retired = current.retired.write();
            let sessions = retired.entry(expected.to_string()).or_default();
            sessions.retain(|p| p.live(now));
            sessions.insert(0, old);
            sessions.truncate(RETIRED);
        }
        Ok(())
    }

    /// Stops tagging calls to `host` until its session token is seen again:
    /// after a tagged call to it went unanswered. A host that restarted
    /// knows no session, and tells a tagged caller so only with a signed
    /// refusal, whose budget anyone can spend by forging calls in the
    /// caller's name; a signed call, answered with the host's current
    /// token, gets the pair going again whatever the budget. The pair's
    /// keys and replay window are kept: calls from `host` still open.
    pub(crate) fn suspend(&self, host: &str) {
        if let Some(peer) = self.current.load().peers.read().get(host) {
            peer.suspended.store(true, Ordering::Relaxed);
        }
    }

    /// Hosts with a live session here (current generation), sorted.
    pub(crate) fn peers(&self) -> Vec<String> {
        let now = now_secs();
        let mut hosts: Vec<String> = self
            .current
            .load()
            .peers
            .read()
            .iter()
            .filter(|(_, p)| p.live(now))
            .map(|(h, _)| h.clone())
            .collect();
        hosts.sort();
        hosts
    }

    /// Tags an invocation for `host`, the one host it is sent to; `None`
    /// without a live session with it (the caller signs a JWT instead).
    pub(crate) fn seal(&self, host: &str, signed: &Signed<'_>) -> Option<(SessionProof, Pair)> {
        let current = self.current.load();
        let iat = now_secs();
        let peer = current
            .peers
            .read()
            .get(host)
            .filter(|p| p.live(iat) && !p.suspended.load(Ordering::Relaxed))
            .cloned()?;
        let seq = current.seq.fetch_add(1, Ordering::Relaxed);
        let mac = tag(&peer.send, iat, seq, signed).as_bytes().to_vec();
        Some((
            SessionProof {
                sid: current.sid.clone(),
                iat,
                seq,
                tags: vec![SessionTag {
                    to: host.to_string(),
                    to_sid: peer.sid.clone(),
                    mac,
                }],
            },
            Pair {
                own_sid: current.sid.clone(),
                peer_sid: peer.sid.clone(),
            },
        ))
    }

    /// Checks the tag addressed to this host, from `sender`, over the
    /// message as received, then its sequence number (once each). Returns
    /// the pair it was made under, for the answer's tag.
    pub(crate) fn open(
        &self,
        sender: &str,
        proof: &SessionProof,
        signed: &Signed<'_>,
    ) -> Result<(Opened, Option<Pair>), Refusal> {
        let now = now_secs();
        // Too old or too new, whatever its session, and before its session
        // is looked up: a captured call is refused, never answered
        // `session` (which invites a resend). Judged after the lookup, a
        // call captured before this host restarted (its session gone) was
        // answered `session` at any age, and the caller still waiting for
        // it sent it again to run twice.
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
        let Some((mine, generation)) = proof.tags.iter().find_map(|t| {
            (t.to == self.host_id)
                .then(|| self.generation(&t.to_sid))
                .flatten()
                .map(|g| (t, g))
        }) else {
            return Ok((Opened::Unknown, None));
        };
        let ours = |p: &Arc<Peer>| p.sid == proof.sid && p.live(now);
        let current = generation
            .peers
            .read()
            .get(sender)
            .filter(|p| ours(p))
            .cloned();
        let retired = || {
            let retired = generation.retired.read();
            retired.get(sender)?.iter().find(|p| ours(p)).cloned()
        };
        let Some(peer) = current.or_else(retired) else {
            return Ok((Opened::Unknown, None));
        };
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
        if !peer.window.lock().accept(proof.seq) {
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
        Ok((
            Opened::Authentic,
            Some(Pair {
                own_sid: generation.sid.clone(),
                peer_sid: peer.sid.clone(),
            }),
        ))
    }

    /// The live peer `host` of this host's session `own_sid`, if its session
    /// is `peer_sid`.
    fn pair_peer(&self, host: &str, pair: &Pair) -> Option<Arc<Peer>> {
        let generation = self.generation(&pair.own_sid)?;
        let now = now_secs();
        let ours = |p: &Arc<Peer>| p.sid == pair.peer_sid && p.live(now);
        let current = generation
            .peers
            .read()
            .get(host)
            .filter(|p| ours(p))
            .cloned();
        current.or_else(|| {
            let retired = generation.retired.read();
            retired.get(host)?.iter().find(|p| ours(p)).cloned()
        })
    }

    /// A tag over a response's signed parts for the caller `peer`, under
    /// the pair its call came in on; `None` if that pair is gone.
    pub(crate) fn tag_response(
        &self,
        peer: &str,
        pair: &Pair,
        parts: &[Vec<u8>],
    ) -> Option<Vec<u8>> {
        let peer = self.pair_peer(peer, pair)?;
        Some(tag_parts(&peer.send, parts).as_bytes().to_vec())
    }

    /// Whether `mac` is `responder`'s tag over a response's signed parts,
    /// under the pair the call was tagged with.
    pub(crate) fn check_response(
        &self,
        responder: &str,
        pair: &Pair,
        parts: &[Vec<u8>],
        mac: &[u8],
    ) -> bool {
        let Some(peer) = self.pair_peer(responder, pair) else {
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
            trace: None,
        }
    }

    fn introduce(a: &Sessions, b: &Sessions, trust: &TrustPolicy) {
        let v = Verifier::new();
        b.learn(&v, trust, &a.host_id, &a.token()).unwrap();
        a.learn(&v, trust, &b.host_id, &b.token()).unwrap();
    }

    #[test]
    fn a_call_replayed_after_its_sender_started_a_new_session_is_refused_not_renegotiated() {
        let (ka, _, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let call = m("id-1", "HASH");
        let (proof, _) = a.seal(&b.host_id, &call).unwrap();
        assert_eq!(
            b.open(&a.host_id, &proof, &call).unwrap().0,
            Opened::Authentic
        );
        // The sender starts a new session and the receiver learns it (from
        // the sender's next signed call) while the first call still runs.
        a.rotate(&ka).unwrap();
        b.learn(&Verifier::new(), &trust, &a.host_id, &a.token())
            .unwrap();
        // The captured call, published again: refused as the replay it is.
        // Answered `session`, it would have had its sender resend it signed.
        let err = b.open(&a.host_id, &proof, &call).unwrap_err();
        assert_eq!(err.reason, Reason::Replayed, "{err}");
        // A call of the old session not seen before still opens (it was in
        // flight during the rotation), and its answer can be tagged.
        let (proof_2, _) = {
            // Sealed under the old session: made before the rotation.
            let old = a.previous.load();
            let old = old.as_ref().as_ref().unwrap();
            let peer = old.peers.read().get(&b.host_id).cloned().unwrap();
            let seq = old.seq.fetch_add(1, Ordering::Relaxed);
            let iat = now_secs();
            let mac = tag(&peer.send, iat, seq, &m("id-2", "HASH"))
                .as_bytes()
                .to_vec();
            (
                SessionProof {
                    sid: old.sid.clone(),
                    iat,
                    seq,
                    tags: vec![SessionTag {
                        to: b.host_id.clone(),
                        to_sid: peer.sid.clone(),
                        mac,
                    }],
                },
                (),
            )
        };
        let (opened, used) = b.open(&a.host_id, &proof_2, &m("id-2", "HASH")).unwrap();
        assert_eq!(opened, Opened::Authentic);
        assert!(
            b.tag_response(&a.host_id, &used.unwrap(), &[b"ok".to_vec()])
                .is_some()
        );
        // A captured call older than a tag may be is refused whatever its
        // session, never answered `session`.
        let mut stale = proof.clone();
        stale.sid = "a session nobody knows".into();
        stale.iat -= 61;
        assert_eq!(
            b.open(&a.host_id, &stale, &call).unwrap_err().reason,
            Reason::Expired
        );
        // A second new session within the call's lifetime: the first one's
        // window is still kept.
        a.rotate(&ka).unwrap();
        b.learn(&Verifier::new(), &trust, &a.host_id, &a.token())
            .unwrap();
        let err = b.open(&a.host_id, &proof, &call).unwrap_err();
        assert_eq!(err.reason, Reason::Replayed, "{err}");
    }

    /// A host that restarted knows none of its old sessions: a call
    /// captured before, published again over a minute later, must be
    /// refused as expired, not answered `session` (the caller, still
    /// waiting for that call, would send it again signed, and it would run
    /// twice). The age was judged only once a session was found.
    #[test]
    fn a_captured_call_is_refused_by_age_by_a_host_that_forgot_its_session() {
        let (_, kb, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let call = m("id-1", "HASH");
        let (proof, _) = a.seal(&b.host_id, &call).unwrap();
        assert_eq!(
            b.open(&a.host_id, &proof, &call).unwrap().0,
            Opened::Authentic
        );
        let restarted = Sessions::new(&kb).unwrap();
        let mut captured = proof.clone();
        captured.iat -= 120;
        let err = restarted.open(&a.host_id, &captured, &call).unwrap_err();
        assert_eq!(err.reason, Reason::Expired, "{err}");
        // A fresh call under the forgotten session is still told to fall
        // back: that is how the caller learns the new one.
        assert_eq!(
            restarted.open(&a.host_id, &proof, &call).unwrap().0,
            Opened::Unknown
        );
    }

    /// A suspended pair is not used for sending until the peer's token is
    /// seen again, and nothing about receiving changes: its replay window
    /// is the same one, so a call seen before stays a replay.
    #[test]
    fn a_suspended_pair_signs_until_renewed_and_keeps_its_window() {
        let (_, _, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let call = m("id-1", "HASH");
        let (from_b, _) = b.seal(&a.host_id, &call).unwrap();
        assert_eq!(
            a.open(&b.host_id, &from_b, &call).unwrap().0,
            Opened::Authentic
        );
        a.suspend(&b.host_id);
        assert!(
            a.seal(&b.host_id, &call).is_none(),
            "signed while suspended"
        );
        // Still opens B's calls; the one seen before is still a replay.
        assert_eq!(
            a.open(&b.host_id, &from_b, &call).unwrap_err().reason,
            Reason::Replayed
        );
        // B's token, seen again (its answer to the signed call), renews it.
        a.learn(&Verifier::new(), &trust, &b.host_id, &b.token())
            .unwrap();
        assert!(a.seal(&b.host_id, &call).is_some());
        assert_eq!(
            a.open(&b.host_id, &from_b, &call).unwrap_err().reason,
            Reason::Replayed
        );
    }

    #[test]
    fn a_tag_from_a_known_peer_opens_once_and_any_change_is_caught() {
        let (_, _, a, b, trust) = pair();
        assert!(
            a.seal(&b.host_id, &m("id", "HASH")).is_none(),
            "no session yet"
        );
        introduce(&a, &b, &trust);
        let (proof, sent) = a.seal(&b.host_id, &m("id-1", "HASH")).unwrap();
        assert_eq!(proof.tags.len(), 1, "one tag, for the one host");
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
                "subject (another host's)",
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

        let (opened, used) = check(&proof, &m("id-1", "HASH")).unwrap();
        assert_eq!(opened, Opened::Authentic);
        assert_eq!(
            used.unwrap(),
            Pair {
                own_sid: sent.peer_sid.clone(),
                peer_sid: sent.own_sid.clone()
            }
        );
        let replay = check(&proof, &m("id-1", "HASH")).unwrap_err();
        assert_eq!(replay.reason, Reason::Replayed, "{replay}");

        // The tag A made for B does not pass as one made by B for A.
        let reflected = SessionProof {
            sid: b.current.load().sid.clone(),
            iat: proof.iat,
            seq: proof.seq,
            tags: vec![SessionTag {
                to: a.host_id.clone(),
                to_sid: a.current.load().sid.clone(),
                mac: proof.tags[0].mac.clone(),
            }],
        };
        assert!(a.open(&b.host_id, &reflected, &m("id-1", "HASH")).is_err());
    }

    #[test]
    fn the_tag_binds_the_trace_context_and_only_it_differs() {
        let key = [9u8; 32];
        let traced = |trace| Signed {
            trace,
            ..m("id", "x")
        };
        let none = tag(&key, 1, 1, &traced(None));
        let one = tag(&key, 1, 1, &traced(Some("T1")));
        let other = tag(&key, 1, 1, &traced(Some("T2")));
        let empty = tag(&key, 1, 1, &traced(Some("")));
        assert_ne!(none, one);
        assert_ne!(one, other);
        assert_ne!(none, empty, "an empty binding is still a binding");
        assert_eq!(one, tag(&key, 1, 1, &traced(Some("T1"))));

        // Through a real pair: a call tagged with one trace context opens
        // only with that one; one added, changed or removed in transit is
        // refused as a tampered message, and does not use up its number.
        let (_, _, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let (proof, _) = a.seal(&b.host_id, &traced(Some("T1"))).unwrap();
        for changed in [None, Some("T2"), Some("")] {
            let err = b.open(&a.host_id, &proof, &traced(changed)).unwrap_err();
            assert_eq!(err.reason, Reason::BadSignature, "{changed:?}: {err}");
        }
        assert_eq!(
            b.open(&a.host_id, &proof, &traced(Some("T1"))).unwrap().0,
            Opened::Authentic
        );
        let (proof, _) = a.seal(&b.host_id, &traced(None)).unwrap();
        let err = b.open(&a.host_id, &proof, &traced(Some("T1"))).unwrap_err();
        assert_eq!(err.reason, Reason::BadSignature, "added: {err}");
        assert_eq!(
            b.open(&a.host_id, &proof, &traced(None)).unwrap().0,
            Opened::Authentic
        );
    }

    #[test]
    fn responses_are_tagged_per_direction_and_per_pair() {
        let (_, _, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let (proof, sent) = a.seal(&b.host_id, &m("id", "x")).unwrap();
        let (_, received) = b.open(&a.host_id, &proof, &m("id", "x")).unwrap();
        let received = received.unwrap();
        let parts = vec![b"resp".to_vec(), b"id".to_vec()];
        let mac = b.tag_response(&a.host_id, &received, &parts).unwrap();
        assert!(a.check_response(&b.host_id, &sent, &parts, &mac));
        assert!(!a.check_response(&b.host_id, &sent, &[b"resp".to_vec()], &mac));
        // B cannot take A's response tag for one of A's own.
        let own = a
            .tag_response(
                &b.host_id,
                &Pair {
                    own_sid: sent.own_sid.clone(),
                    peer_sid: sent.peer_sid.clone(),
                },
                &parts,
            )
            .unwrap();
        assert!(!a.check_response(&b.host_id, &sent, &parts, &own));
    }

    #[test]
    fn a_call_in_flight_across_a_rotation_is_still_answered() {
        let (a_key, b_key, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let (proof, sent) = a.seal(&b.host_id, &m("id", "x")).unwrap();
        // Both rotate while the call is on its way.
        a.rotate(&a_key).unwrap();
        b.rotate(&b_key).unwrap();
        let (opened, received) = b.open(&a.host_id, &proof, &m("id", "x")).unwrap();
        assert_eq!(opened, Opened::Authentic);
        let parts = vec![b"resp".to_vec()];
        let mac = b
            .tag_response(&a.host_id, &received.unwrap(), &parts)
            .unwrap();
        assert!(a.check_response(&b.host_id, &sent, &parts, &mac));
        // New calls go out under the new session: the signed path, once.
        assert!(a.seal(&b.host_id, &m("id2", "x")).is_none());
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
        assert!(w.accept(u64::MAX), "the last number");
        assert!(!w.accept(u64::MAX));
    }

    #[test]
    fn a_stranger_or_a_new_session_is_told_to_fall_back() {
        let (_, b_key, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let (proof, _) = a.seal(&b.host_id, &m("id", "H")).unwrap();
        // B restarted: new session, so the old tags are not for it.
        let b2 = Sessions::new(&b_key).unwrap();
        assert_eq!(
            b2.open(&a.host_id, &proof, &m("id", "H")).unwrap().0,
            Opened::Unknown
        );
        // A host that never saw A's token.
        let c = Sessions::new(&KeyPair::generate(KeyKind::Server)).unwrap();
        assert_eq!(
            c.open(&a.host_id, &proof, &m("id", "H")).unwrap().0,
            Opened::Unknown
        );
    }

    #[test]
    fn untrusted_foreign_forged_expired_older_or_keyless_tokens_are_refused_or_ignored() {
        let (a_key, _, a, b, _) = pair();
        let v = Verifier::new();
        let only_b = TrustPolicy::hosts([b.host_id.clone()]).unwrap();
        let err = b.learn(&v, &only_b, &a.host_id, &a.token()).unwrap_err();
        assert_eq!(err.reason, Reason::Untrusted, "{err}");
        let any = TrustPolicy::any_host();
        // Another host's token, presented as A's.
        let err = b.learn(&v, &any, &a.host_id, &b.token()).unwrap_err();
        assert_eq!(err.reason, Reason::Mismatch, "{err}");
        let mut forged = a.token();
        forged.push('x');
        assert!(b.learn(&v, &any, &a.host_id, &forged).is_err());
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
        let k = key.public_key();
        let err = b
            .learn(&v, &any, &k, &token("not a key", Some(SESSION_LIFETIME)))
            .unwrap_err();
        assert!(err.detail.contains("curve key"), "{err}");
        let err = b.learn(&v, &any, &k, &token(&good_xkey, None)).unwrap_err();
        assert_eq!(err.reason, Reason::Expired, "{err}");
        let err = b
            .learn(
                &v,
                &any,
                &k,
                &token(&good_xkey, Some(SESSION_LIFETIME * 10)),
            )
            .unwrap_err();
        assert_eq!(err.reason, Reason::Expired, "{err}");
        b.learn(&v, &any, &k, &token(&good_xkey, Some(SESSION_LIFETIME)))
            .unwrap();

        // A newer session of A is learned; its older token, replayed, is not.
        let older = a.token();
        b.learn(&v, &any, &a.host_id, &older).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        a.rotate(&a_key).unwrap();
        let newer = a.token();
        b.learn(&v, &any, &a.host_id, &newer).unwrap();
        b.learn(&v, &any, &a.host_id, &older).unwrap();
        let held = b.current.load().peers.read()[&a.host_id].token.clone();
        assert_eq!(held, newer, "an older token replaced a newer one");
    }

    #[test]
    fn relearning_the_same_session_keeps_its_replay_window() {
        let (_, _, a, b, trust) = pair();
        introduce(&a, &b, &trust);
        let (proof, _) = a.seal(&b.host_id, &m("id", "x")).unwrap();
        assert_eq!(
            b.open(&a.host_id, &proof, &m("id", "x")).unwrap().0,
            Opened::Authentic
        );
        b.learn(&Verifier::new(), &trust, &a.host_id, &a.token())
            .unwrap();
        let err = b.open(&a.host_id, &proof, &m("id", "x")).unwrap_err();
        assert_eq!(err.reason, Reason::Replayed, "{err}");
    }
}
