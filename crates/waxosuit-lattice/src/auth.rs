//! Who is trusted, and how every message that is not an invocation proves
//! who sent it.
//!
//! Invocations and their responses carry their own proof (a signed JWT or a
//! session tag, [`crate::antiforgery`] and [`crate::session`]). Every other
//! lattice message (commands and their replies, binding changes, inventory
//! questions and answers, events, auction calls and bids, binding-value
//! exchanges) carries a JWT in the `Waxosuit-Auth` NATS header, signed by
//! the sender's key. Its claims bind the message: the NATS subject and
//! reply inbox, the SHA-256 of the payload, a unique id and a short expiry,
//! and for an answer the id of the request it answers. The payload itself
//! stays as it was (JSON for people and tools, MessagePack for commands),
//! so a plain NATS subscriber can still read what it is allowed to see.
//!
//! A receiver checks, cheapest first: the header is there and parses, the
//! claimed signer is one it accepts for that message, the signature, the
//! expiry, the subject, the reply inbox, that the id was not seen before
//! (a bounded replay memory; before hashing, so a replayed copy costs no
//! more than a forged one), the payload hash, and then records the id. Only
//! then does the message have any effect. A message claiming an untrusted
//! signer costs a header parse.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use async_nats::{HeaderMap, Message};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use waxosuit_claims::{Claims, KeyKind, KeyPair, TokenKind, Verifier, now_secs};

use crate::LatticeError;
use crate::protocol::digest;

/// The NATS header that carries a message's signature.
pub const AUTH_HEADER: &str = "Waxosuit-Auth";

/// How long a signed message is valid: long enough for a slow hop and
/// clock skew (the verifier also allows its 30 s skew), short enough that
/// the replay guard only has to remember a minute of ids.
pub(crate) const MESSAGE_LIFETIME: Duration = Duration::from_secs(60);

/// The longest validity a receiver accepts from any signer: a token minted
/// for longer would have to be remembered longer to stop its replay.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(600);

/// Which keys a host (or a tool) believes.
///
/// *Hosts* (server keys, `N…`) may call actors and providers, answer calls,
/// publish events and bindings, and answer inventory. *Admins* (operator or
/// user keys, `O…`/`U…`) may send commands, ask for inventory and change
/// bindings, but are never taken for a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    hosts: BTreeSet<String>,
    admins: BTreeSet<String>,
    any: bool,
}

impl TrustPolicy {
    /// Trust exactly these server keys (a host always trusts itself).
    pub fn hosts<I, S>(keys: I) -> Result<TrustPolicy, LatticeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut hosts = BTreeSet::new();
        for key in keys {
            let key = key.as_ref().trim();
            match KeyKind::of_public_key(key) {
                Ok(KeyKind::Server) => {
                    hosts.insert(key.to_string());
                }
                _ => {
                    return Err(LatticeError::Config {
                        reason: format!(
                            "`{}` is not a host (server) public key; host keys start with `N` \
                             (`waxosuit keys gen server`)",
                            shown_key(key)
                        ),
                    });
                }
            }
        }
        Ok(TrustPolicy {
            hosts,
            admins: BTreeSet::new(),
            any: false,
        })
    }

    /// Also trust these admin keys (operator `O…` or user `U…`) for
    /// commands, inventory questions and binding changes.
    pub fn with_admins<I, S>(mut self, keys: I) -> Result<TrustPolicy, LatticeError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for key in keys {
            let key = key.as_ref().trim();
            match KeyKind::of_public_key(key) {
                Ok(KeyKind::Operator | KeyKind::User) => {
                    self.admins.insert(key.to_string());
                }
                _ => {
                    return Err(LatticeError::Config {
                        reason: format!(
                            "`{}` is not an admin key; admin keys are operator (`O…`) or user \
                             (`U…`) public keys (`waxosuit keys gen user`)",
                            shown_key(key)
                        ),
                    });
                }
            }
        }
        Ok(self)
    }

    /// Trust any host that signs correctly, as the original did. For
    /// development only: anyone who can publish on the bus can then call
    /// actors and steer hosts.
    pub fn any_host() -> TrustPolicy {
        TrustPolicy {
            hosts: BTreeSet::new(),
            admins: BTreeSet::new(),
            any: true,
        }
    }

    /// Whether every signing host is trusted.
    pub fn trusts_any(&self) -> bool {
        self.any
    }

    /// Adds a host key.
    pub(crate) fn with(mut self, key: &str) -> TrustPolicy {
        self.hosts.insert(key.to_string());
        self
    }

    /// Whether `key` is a trusted host; otherwise why not.
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.is_host(key) {
            Ok(())
        } else {
            Err(format!(
                "host {} is not on this host's trust list (add it with --lattice-trust-host)",
                shorten(key)
            ))
        }
    }

    /// Whether `key` is a trusted host.
    pub fn is_host(&self, key: &str) -> bool {
        self.hosts.contains(key)
            || (self.any && matches!(KeyKind::of_public_key(key), Ok(KeyKind::Server)))
    }

    /// Whether `key` is a trusted admin.
    pub fn is_admin(&self, key: &str) -> bool {
        self.admins.contains(key)
    }

    /// The trusted host keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(String::as_str)
    }

    /// The trusted admin keys.
    pub fn admin_keys(&self) -> impl Iterator<Item = &str> {
        self.admins.iter().map(String::as_str)
    }
}

/// A value given where a public key belongs, as an error may show it: a
/// seed passed there by mistake is never echoed (the claims crate's rule,
/// which every trust list shares).
fn shown_key(key: &str) -> String {
    waxosuit_claims::display::shown_key(key)
}

/// A key or id as it may appear in a log line or an error: attacker-chosen
/// text is cut short and never spans lines.
pub(crate) fn shorten(text: &str) -> String {
    shorten_to(text, 64)
}

/// [`shorten`] to at most `max` characters.
pub(crate) fn shorten_to(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// What the `Waxosuit-Auth` JWT of a message says about it. Unknown fields
/// are refused, so a token of another kind never passes for one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageClaims {
    /// The NATS subject it was published to.
    pub subject: String,
    /// The reply inbox it named, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// [`digest`] of the payload.
    pub hash: String,
    /// For an answer: the id (`jti`) of the request it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub re: Option<String>,
}

impl TokenKind for MessageClaims {
    const KIND: &'static str = "lattice message";
}

/// Signs a message for `subject` (and `reply`), answering request `re`:
/// the `Waxosuit-Auth` header to publish it with.
pub fn sign_message(
    identity: &KeyPair,
    subject: &str,
    reply: Option<&str>,
    re: Option<&str>,
    body: &[u8],
) -> Result<HeaderMap, LatticeError> {
    sign_message_as(
        identity,
        &nuid::next().to_string(),
        subject,
        reply,
        re,
        body,
    )
}

/// [`sign_message`] with the message id chosen by the caller (a request
/// whose answers must name it).
pub fn sign_message_as(
    identity: &KeyPair,
    id: &str,
    subject: &str,
    reply: Option<&str>,
    re: Option<&str>,
    body: &[u8],
) -> Result<HeaderMap, LatticeError> {
    let jwt = Claims::<MessageClaims>::builder()
        .issuer(identity.public_key())
        .id(id)
        .subject(subject)
        .expires_in(MESSAGE_LIFETIME)
        .metadata(MessageClaims {
            subject: subject.to_string(),
            reply: reply.map(str::to_string),
            hash: digest(&[body]),
            re: re.map(str::to_string),
        })
        .build()
        .encode(identity)
        .map_err(|e| LatticeError::Transport {
            operation: "signing a message",
            reason: e.to_string(),
        })?;
    let mut headers = HeaderMap::new();
    headers.insert(AUTH_HEADER, jwt.as_str());
    Ok(headers)
}

/// Whose signature a receiver accepts on one kind of message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signers<'a> {
    /// A trusted host.
    Hosts,
    /// A trusted host or a trusted admin.
    HostsOrAdmins,
    /// Exactly this key (e.g. the host a command was addressed to).
    Only(&'a str),
}

/// Why a message was refused; also the `reason` label of the refusal
/// counter, so the set is small and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// No signature where one is required.
    Unsigned,
    /// The message or its signature could not be decoded.
    Malformed,
    /// Signed by a key the receiver does not trust for this message.
    Untrusted,
    /// The signature does not verify.
    BadSignature,
    /// Too old, not yet valid, or valid for too long.
    Expired,
    /// Seen before.
    Replayed,
    /// Signed for another subject, inbox, request, target or payload.
    Mismatch,
    /// Another protocol version.
    Version,
    /// The receiver is at a limit (concurrency, replay memory).
    Saturated,
}

impl Reason {
    /// The metric label (`reason` of the refusal counter).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::Malformed => "malformed",
            Reason::Untrusted => "untrusted",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::Replayed => "replayed",
            Reason::Mismatch => "mismatch",
            Reason::Version => "version",
            Reason::Saturated => "saturated",
        }
    }
}

/// A refused message: why, with the claimed signer when there was one.
/// Its text is the detail, bounded and on one line (it quotes decoders on
/// attacker input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub(crate) reason: Reason,
    pub(crate) signer: Option<String>,
    pub(crate) detail: String,
}

impl Refusal {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            signer: None,
            // Details quote decoders on attacker input: bounded, one line.
            detail: shorten_to(&detail.into(), 400),
        }
    }

    pub(crate) fn by(mut self, signer: &str) -> Refusal {
        self.signer = Some(shorten(signer));
        self
    }

    /// Why it was refused.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Who the message claimed had signed it (shortened), if anyone.
    pub fn signer(&self) -> Option<&str> {
        self.signer.as_deref()
    }
}

impl std::error::Error for Refusal {}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// A message whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Authentic {
    /// Who signed it.
    pub(crate) signer: String,
    /// Its unique id: what an answer names in `re`.
    pub(crate) id: String,
}

/// Checks a header-signed message; see the module docs for the order.
/// `re` is the request id an answer must name (`None` for a request).
pub(crate) fn verify_message(
    verifier: &Verifier,
    trust: &TrustPolicy,
    replay: &ReplayGuard,
    msg: &Message,
    signers: Signers<'_>,
    re: Option<&str>,
) -> Result<Authentic, Refusal> {
    let jwt = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(AUTH_HEADER))
        .map(|v| v.as_str())
        .ok_or_else(|| Refusal::new(Reason::Unsigned, "the message carries no signature"))?;
    let unverified = Claims::<MessageClaims>::decode_unverified(jwt).map_err(|e| {
        Refusal::new(
            Reason::Malformed,
            format!("its signature is malformed: {e}"),
        )
    })?;
    let signer = unverified.issuer.as_str();
    let kind = KeyKind::of_public_key(signer).map_err(|_| {
        Refusal::new(Reason::Malformed, "its signer is not a public key").by(signer)
    })?;
    let accepted = match signers {
        Signers::Hosts => kind == KeyKind::Server && trust.is_host(signer),
        Signers::HostsOrAdmins => {
            (kind == KeyKind::Server && trust.is_host(signer)) || trust.is_admin(signer)
        }
        Signers::Only(key) => signer == key,
    };
    if !accepted {
        return Err(Refusal::new(
            Reason::Untrusted,
            format!("signed by {}, which is not trusted here", shorten(signer)),
        )
        .by(signer));
    }
    let verified = verifier
        .verify_token::<MessageClaims>(jwt, kind, None)
        .map_err(|e| {
            let reason = match e {
                waxosuit_claims::ClaimsError::Expired { .. }
                | waxosuit_claims::ClaimsError::NotYetValid { .. } => Reason::Expired,
                _ => Reason::BadSignature,
            };
            Refusal::new(reason, format!("its signature does not verify: {e}")).by(signer)
        })?;
    let claims = verified.claims();
    let meta = verified.metadata();
    let expires = check_lifetime(claims.issued_at, claims.expires).map_err(|e| e.by(signer))?;
    if meta.subject != msg.subject.as_str() {
        return Err(Refusal::new(
            Reason::Mismatch,
            format!(
                "signed for subject {} but sent to {}",
                shorten(&meta.subject),
                shorten(&msg.subject)
            ),
        )
        .by(signer));
    }
    if meta.reply.as_deref() != msg.reply.as_deref() {
        return Err(Refusal::new(Reason::Mismatch, "signed for another reply inbox").by(signer));
    }
    if meta.re.as_deref() != re {
        return Err(Refusal::new(Reason::Mismatch, "it answers another request").by(signer));
    }
    // A replay is refused before its payload is hashed: the signature is
    // authentic, so the id is the sender's, and hashing a captured message
    // of `max_payload` bytes on every copy would make replays the cheapest
    // way to keep this host busy.
    replay
        .refuse_if_seen(signer, &claims.id)
        .map_err(|e| e.by(signer))?;
    if meta.hash != digest(&[&msg.payload]) {
        return Err(Refusal::new(
            Reason::Mismatch,
            "the payload does not match the signed hash",
        )
        .by(signer));
    }
    replay
        .check(signer, &claims.id, claims.issued_at, expires)
        .map_err(|e| e.by(signer))?;
    Ok(Authentic {
        signer: signer.to_string(),
        id: claims.id.clone(),
    })
}

/// A signed token must expire, within [`MAX_LIFETIME`] of its issue, and
/// not be issued in the future (a token from a fast clock would have to be
/// remembered for as long as the clock is off); returns its expiry.
pub(crate) fn check_lifetime(issued_at: u64, expires: Option<u64>) -> Result<u64, Refusal> {
    let Some(exp) = expires else {
        return Err(Refusal::new(Reason::Expired, "its signature never expires"));
    };
    if issued_at > now_secs().saturating_add(SKEW) {
        return Err(Refusal::new(
            Reason::Expired,
            "its signature is issued in the future (check this host's and the sender's clocks)",
        ));
    }
    if exp.saturating_sub(issued_at) > MAX_LIFETIME.as_secs() {
        return Err(Refusal::new(
            Reason::Expired,
            format!(
                "its signature is valid for {} s (at most {} s accepted)",
                exp.saturating_sub(issued_at),
                MAX_LIFETIME.as_secs()
            ),
        ));
    }
    Ok(exp)
}

/// Remembers the ids of authenticated messages until they expire, so that a
/// captured message published again is refused.
///
/// Only messages that already passed the signature check are remembered,
/// so an attacker cannot fill it; it is bounded anyway, and when full it
/// refuses (fails closed) rather than forgets.
pub(crate) struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), u64>>,
    capacity: usize,
    /// When this guard started remembering: a message signed before then
    /// (less the clock skew) may have been seen by a previous run of this
    /// process, whose memory is gone, so it is refused.
    since: u64,
}

/// Clock skew allowed past a token's expiry (the verifier's).
const SKEW: u64 = waxosuit_claims::DEFAULT_CLOCK_SKEW.as_secs();

impl ReplayGuard {
    pub(crate) fn new(capacity: usize) -> ReplayGuard {
        ReplayGuard {
            seen: Mutex::new(HashMap::new()),
            capacity,
            since: now_secs(),
        }
    }

    /// Refuses only messages signed before `since` (Unix seconds) less the
    /// clock skew, rather than before this guard was made: for messages
    /// bound to something that did not exist before `since`.
    pub(crate) fn since(mut self, since: u64) -> ReplayGuard {
        self.since = since;
        self
    }

    /// Records `(signer, id)`, issued at `issued`, valid until `expires`;
    /// refuses it if seen, or if it may have been seen before this guard
    /// started.
    pub(crate) fn check(
        &self,
        signer: &str,
        id: &str,
        issued: u64,
        expires: u64,
    ) -> Result<(), Refusal> {
        if issued.saturating_add(SKEW) < self.since {
            return Err(Refusal::new(
                Reason::Replayed,
                format!(
                    "message {} was signed before this host started, so it cannot tell it from \
                     a replay; send it again",
                    shorten(id)
                ),
            ));
        }
        let now = now_secs();
        let mut seen = self.seen.lock();
        let key = (signer.to_string(), id.to_string());
        if seen.get(&key).is_some_and(|until| *until >= now) {
            return Err(Refusal::new(
                Reason::Replayed,
                format!("message {} was already received (a replay)", shorten(id)),
            ));
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= self.capacity {
                return Err(Refusal::new(
                    Reason::Saturated,
                    "too many messages in the replay window; try again in a minute",
                ));
            }
        }
        seen.insert(key, expires.saturating_add(SKEW));
        Ok(())
    }

    /// Refuses `(signer, id)` if it was recorded and has not expired; the
    /// cheap half of [`check`](Self::check), which still records it.
    pub(crate) fn refuse_if_seen(&self, signer: &str, id: &str) -> Result<(), Refusal> {
        let now = now_secs();
        let key = (signer.to_string(), id.to_string());
        if self
            .seen
            .lock()
            .get(&key)
            .is_some_and(|until| *until >= now)
        {
            return Err(Refusal::new(
                Reason::Replayed,
                format!("message {} was already received (a replay)", shorten(id)),
            ));
        }
        Ok(())
    }

    /// Ids remembered now (tests, metrics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(subject: &str, reply: Option<&str>, body: &[u8], headers: HeaderMap) -> Message {
        Message {
            subject: subject.into(),
            reply: reply.map(Into::into),
            payload: Bytes::copy_from_slice(body),
            headers: Some(headers),
            status: None,
            description: None,
            length: body.len(),
        }
    }

    fn setup() -> (KeyPair, KeyPair, TrustPolicy) {
        let host = KeyPair::generate(KeyKind::Server);
        let admin = KeyPair::generate(KeyKind::User);
        let trust = TrustPolicy::hosts([host.public_key()])
            .unwrap()
            .with_admins([admin.public_key()])
            .unwrap();
        (host, admin, trust)
    }

    #[test]
    fn a_signed_message_verifies_once_and_every_change_is_refused() {
        let (host, _, trust) = setup();
        let v = Verifier::new();
        let replay = ReplayGuard::new(100);
        let headers = sign_message(&host, "p.events", None, None, b"{}").unwrap();
        let msg = message("p.events", None, b"{}", headers.clone());
        let ok = verify_message(&v, &trust, &replay, &msg, Signers::Hosts, None).unwrap();
        assert_eq!(ok.signer, host.public_key());
        let again = verify_message(&v, &trust, &replay, &msg, Signers::Hosts, None).unwrap_err();
        assert_eq!(again.reason, Reason::Replayed, "{again}");
        // A replay is refused before the payload is hashed: with another
        // payload under the same signature it is still a replay, not a
        // mismatch found by hashing.
        let altered = message("p.events", None, &[b'x'; 4096], headers.clone());
        let err = verify_message(&v, &trust, &replay, &altered, Signers::Hosts, None).unwrap_err();
        assert_eq!(err.reason, Reason::Replayed, "{err}");

        let fresh = || ReplayGuard::new(100);
        for (subject, reply, body, re, what) in [
            ("p.other", None, &b"{}"[..], None, "subject"),
            ("p.events", Some("inbox"), &b"{}"[..], None, "reply"),
            ("p.events", None, &b"{ }"[..], None, "payload"),
            ("p.events", None, &b"{}"[..], Some("x"), "request"),
        ] {
            let msg = message(subject, reply, body, headers.clone());
            let err = verify_message(&v, &trust, &fresh(), &msg, Signers::Hosts, re).unwrap_err();
            assert_eq!(err.reason, Reason::Mismatch, "{what}: {err}");
        }
    }

    #[test]
    fn unsigned_untrusted_and_forged_messages_are_refused_with_the_reason() {
        let (host, admin, trust) = setup();
        let v = Verifier::new();
        let replay = ReplayGuard::new(100);
        let mut unsigned = message("s", None, b"x", HeaderMap::new());
        unsigned.headers = None;
        let err = verify_message(&v, &trust, &replay, &unsigned, Signers::Hosts, None).unwrap_err();
        assert_eq!(err.reason, Reason::Unsigned);

        let stranger = KeyPair::generate(KeyKind::Server);
        let msg = message(
            "s",
            None,
            b"x",
            sign_message(&stranger, "s", None, None, b"x").unwrap(),
        );
        let err = verify_message(&v, &trust, &replay, &msg, Signers::Hosts, None).unwrap_err();
        assert_eq!(err.reason, Reason::Untrusted);
        assert_eq!(err.signer.as_deref(), Some(stranger.public_key().as_str()));

        // An admin may command but is never taken for a host.
        let msg = message(
            "s",
            None,
            b"x",
            sign_message(&admin, "s", None, None, b"x").unwrap(),
        );
        let err = verify_message(&v, &trust, &replay, &msg, Signers::Hosts, None).unwrap_err();
        assert_eq!(err.reason, Reason::Untrusted);
        verify_message(&v, &trust, &replay, &msg, Signers::HostsOrAdmins, None).unwrap();

        // A trusted key claimed, another key's signature.
        let mut headers = sign_message(&stranger, "s", None, None, b"x").unwrap();
        let jwt = headers.get(AUTH_HEADER).unwrap().as_str().to_string();
        let parts: Vec<&str> = jwt.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(
            &data_encoding::BASE64URL_NOPAD
                .decode(parts[1].as_bytes())
                .unwrap(),
        )
        .unwrap();
        claims["iss"] = host.public_key().into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            data_encoding::BASE64URL_NOPAD.encode(&serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        headers.insert(AUTH_HEADER, forged.as_str());
        let msg = message("s", None, b"x", headers);
        let err = verify_message(&v, &trust, &replay, &msg, Signers::Hosts, None).unwrap_err();
        assert_eq!(err.reason, Reason::BadSignature, "{err}");
        assert_eq!(replay.len(), 1, "only the admin's message was remembered");
    }

    #[test]
    fn tokens_without_expiry_or_valid_too_long_are_refused() {
        let (host, _, trust) = setup();
        for expires in [None, Some(Duration::from_secs(3600))] {
            let mut builder = Claims::<MessageClaims>::builder()
                .issuer(host.public_key())
                .subject("id")
                .metadata(MessageClaims {
                    subject: "s".into(),
                    reply: None,
                    hash: digest(&[b"x"]),
                    re: None,
                });
            if let Some(d) = expires {
                builder = builder.expires_in(d);
            }
            let jwt = builder.build().encode(&host).unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(AUTH_HEADER, jwt.as_str());
            let msg = message("s", None, b"x", headers);
            let err = verify_message(
                &Verifier::new(),
                &trust,
                &ReplayGuard::new(10),
                &msg,
                Signers::Hosts,
                None,
            )
            .unwrap_err();
            assert_eq!(err.reason, Reason::Expired, "{err}");
        }
    }

    #[test]
    fn the_replay_guard_is_bounded_and_fails_closed_when_full() {
        let guard = ReplayGuard::new(2);
        let later = now_secs() + 60;
        let now = now_secs();
        guard.check("N", "1", now, later).unwrap();
        guard.check("N", "2", now, later).unwrap();
        assert_eq!(
            guard.check("N", "3", now, later).unwrap_err().reason,
            Reason::Saturated
        );
        assert_eq!(
            guard.check("N", "1", now, later).unwrap_err().reason,
            Reason::Replayed
        );
        // Expired entries make room.
        let guard = ReplayGuard::new(1);
        guard.check("N", "old", now, 1).unwrap();
        guard.check("N", "new", now, later).unwrap();
        // Signed before the guard started: it cannot know, so it refuses.
        let err = guard.check("N", "earlier", now - 600, later).unwrap_err();
        assert_eq!(err.reason, Reason::Replayed, "{err}");
    }

    #[test]
    fn only_server_keys_are_hosts_and_only_operator_or_user_keys_are_admins() {
        let module = KeyPair::generate(KeyKind::Module).public_key();
        assert!(TrustPolicy::hosts([&module]).is_err());
        let seed = KeyPair::generate(KeyKind::Server).seed().unwrap();
        let err = TrustPolicy::hosts([&seed]).unwrap_err().to_string();
        assert!(!err.contains(&seed[5..]), "a seed was echoed: {err}");
        let server = KeyPair::generate(KeyKind::Server).public_key();
        assert!(TrustPolicy::default().with_admins([&server]).is_err());
        let any = TrustPolicy::any_host();
        assert!(any.is_host(&server));
        assert!(!any.is_host(&module));
        assert!(!any.is_admin(&server));
    }
}
