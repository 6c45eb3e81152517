//! Signed invocations and responses: who sent a call, to whom, with which
//! payload, on which subject, answered on which inbox; and who answered it.
//!
//! An invocation sent without a session tag (first contact, chunked
//! payloads, or when the receiver asks) carries a token signed by the
//! sending host's server key (`N…`). Its claims extend the original's
//! (spec §4.6: origin and target URLs and a hash over them and the payload)
//! with the NATS subject and reply inbox it was sent with, and, for a
//! chunked payload, the chunk reference instead of the payload: the
//! receiver checks the signature before it fetches a byte. The token's id
//! is the invocation id, which the receiver remembers until the token
//! expires, so a captured invocation runs once. When the call carries trace
//! headers, the claims also bind them ([`InvocationClaims::trace`]), so a
//! trace context cannot be spliced into a captured call.
//!
//! The receiver also requires the signer to be on its trust list (the
//! original accepted any host that could sign), and a caller accepts a
//! signed response only from a host on its own.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use waxosuit_claims::{Claims, ClaimsError, KeyKind, KeyPair, TokenKind, Verifier};

use crate::auth::{Reason, Refusal, ReplayGuard, TrustPolicy, check_lifetime, shorten};
use crate::protocol::{ChunkRef, Response, WireInvocation, digest, invocation_hash};

/// How long an invocation token is valid: long enough for clock skew and a
/// slow hop, short enough that receivers remember its id only briefly.
pub(crate) const TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The claims of a signed invocation. Unknown fields are refused, so a
/// token of another kind never passes for one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvocationClaims {
    /// `wasmbus://` URL of the caller.
    pub origin_url: String,
    /// `wasmbus://` URL of the callee plus `/operation`.
    pub target_url: String,
    /// For an inline payload, `HEXUPPER(SHA-256(origin_url ‖ target_url ‖
    /// msg))` (spec §4.6); for a chunked one, [`chunk_hash`].
    pub hash: String,
    /// The subject the invocation was published to.
    pub subject: String,
    /// The reply inbox it named.
    pub reply: String,
    /// The chunk reference, when the payload travels in chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkRef>,
    /// [`digest`] of the session token sent with the call, so nobody can
    /// swap in another (older) one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// [`crate::propagation::binding`] of the trace headers sent with the
    /// call; absent when it carries none (so the claims of a call without
    /// tracing are what they always were).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl TokenKind for InvocationClaims {
    const KIND: &'static str = "lattice invocation";
}

/// The claims of a signed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseClaims {
    /// The invocation answered.
    pub re: String,
    /// [`digest`] of what the response says: its outcome (payload or chunk
    /// reference, error), inbox, host and session token.
    pub hash: String,
}

impl TokenKind for ResponseClaims {
    const KIND: &'static str = "lattice response";
}

/// What the claims of a chunked invocation hash: the URLs and every field of
/// the chunk reference.
pub fn chunk_hash(origin_url: &str, target_url: &str, chunk: &ChunkRef) -> String {
    let parts = chunk.signed_parts();
    let mut all: Vec<&[u8]> = vec![origin_url.as_bytes(), target_url.as_bytes()];
    all.extend(parts.iter().map(Vec::as_slice));
    digest(&all)
}

/// What an invocation's signature binds besides its own fields.
pub struct Binding<'a> {
    /// The subject it is published to.
    pub subject: &'a str,
    /// The reply inbox it names.
    pub reply: &'a str,
}

/// Signs an invocation (its `msg` or `chunked` as they will be sent) with
/// the host's server key, for a call sent without trace headers.
pub fn sign(
    identity: &KeyPair,
    inv: &WireInvocation,
    to: Binding<'_>,
) -> Result<String, ClaimsError> {
    sign_traced(identity, inv, to, None)
}

/// [`sign`] for a call sent with trace headers whose
/// [`crate::propagation::binding`] is `trace`.
pub fn sign_traced(
    identity: &KeyPair,
    inv: &WireInvocation,
    to: Binding<'_>,
    trace: Option<&str>,
) -> Result<String, ClaimsError> {
    let origin_url = inv.origin.url();
    let target_url = format!("{}/{}", inv.target.url(), inv.operation);
    let hash = match &inv.chunked {
        Some(chunk) => chunk_hash(&origin_url, &target_url, chunk),
        None => invocation_hash(&origin_url, &target_url, &inv.msg),
    };
    Claims::<InvocationClaims>::builder()
        .issuer(identity.public_key())
        .subject(&inv.id)
        .expires_in(TOKEN_LIFETIME)
        .metadata(InvocationClaims {
            origin_url,
            target_url,
            hash,
            subject: to.subject.to_string(),
            reply: to.reply.to_string(),
            chunk: inv.chunked.clone(),
            token: inv
                .session_token
                .as_deref()
                .map(|t| digest(&[t.as_bytes()])),
            trace: trace.map(str::to_string),
        })
        .build()
        .encode(identity)
}

/// Checks a signed invocation received without trace headers (before any
/// chunk is fetched): signature, validity, signer on the trust list and the
/// sender, and every signed field matching the message. Returns the token's
/// expiry, for the replay guard.
///
/// # Errors
///
/// A [`Refusal`] saying why ([`Reason::Untrusted`], [`Reason::BadSignature`],
/// [`Reason::Expired`], [`Reason::Mismatch`]) and who claimed to sign.
pub fn verify(
    verifier: &Verifier,
    trust: &TrustPolicy,
    inv: &WireInvocation,
    to: Binding<'_>,
) -> Result<u64, Refusal> {
    verify_refusal(verifier, trust, inv, to, None, None).map(|(_, expires)| expires)
}

/// [`verify`], for a call received with trace headers whose
/// [`crate::propagation::binding`] is `trace` (`None`: no trace headers).
pub(crate) fn verify_refusal(
    verifier: &Verifier,
    trust: &TrustPolicy,
    inv: &WireInvocation,
    to: Binding<'_>,
    trace: Option<&str>,
    replay: Option<&ReplayGuard>,
) -> Result<(u64, u64), Refusal> {
    let mismatch = |detail: String| Refusal::new(Reason::Mismatch, detail).by(&inv.host_id);
    // Who claims to have signed comes first: nothing is verified for a
    // host nobody trusts.
    trust
        .check(&inv.host_id)
        .map_err(|e| Refusal::new(Reason::Untrusted, e).by(&inv.host_id))?;
    let verified = verifier
        .verify_token::<InvocationClaims>(&inv.encoded_claims, KeyKind::Server, None)
        .map_err(|e| {
            let reason = match e {
                ClaimsError::Expired { .. } | ClaimsError::NotYetValid { .. } => Reason::Expired,
                _ => Reason::BadSignature,
            };
            Refusal::new(reason, format!("its claims do not verify: {e}")).by(&inv.host_id)
        })?;
    let claims = verified.claims();
    if claims.issuer != inv.host_id {
        return Err(mismatch(format!(
            "signed by {} but sent as host {}",
            shorten(&claims.issuer),
            shorten(&inv.host_id)
        )));
    }
    if claims.subject != inv.id {
        return Err(mismatch(
            "the claims were issued for another invocation id".to_string(),
        ));
    }
    let expires =
        check_lifetime(claims.issued_at, claims.expires).map_err(|r| r.by(&inv.host_id))?;
    let meta = verified.metadata();
    let origin_url = inv.origin.url();
    let target_url = format!("{}/{}", inv.target.url(), inv.operation);
    if meta.origin_url != origin_url {
        return Err(mismatch(format!(
            "origin {} does not match the signed {}",
            shorten(&origin_url),
            shorten(&meta.origin_url)
        )));
    }
    if meta.target_url != target_url {
        return Err(mismatch(format!(
            "target {} does not match the signed {}",
            shorten(&target_url),
            shorten(&meta.target_url)
        )));
    }
    if meta.subject != to.subject {
        return Err(mismatch(format!(
            "signed for subject {} but received on {}",
            shorten(&meta.subject),
            shorten(to.subject)
        )));
    }
    if meta.reply != to.reply {
        return Err(mismatch(
            "signed for another reply inbox (re-published by someone else)".to_string(),
        ));
    }
    if meta.chunk != inv.chunked {
        return Err(mismatch(
            "its chunk reference does not match the signed one".to_string(),
        ));
    }
    if meta.token
        != inv
            .session_token
            .as_deref()
            .map(|t| digest(&[t.as_bytes()]))
    {
        return Err(mismatch(
            "its session token is not the one signed with it".to_string(),
        ));
    }
    if meta.trace.as_deref() != trace {
        return Err(mismatch(
            "its trace headers are not the ones signed with it (added, altered or removed in \
             transit)"
                .to_string(),
        ));
    }
    // The signature holds and binds the id (and every field checked
    // above): a replay is refused now, before the payload (up to
    // `max_payload`) is hashed, or resending a captured call would cost
    // this host a hash per copy.
    if let Some(replay) = replay {
        replay
            .refuse_if_seen(&inv.host_id, &inv.id)
            .map_err(|r| r.by(&inv.host_id))?;
    }
    let expected = match &inv.chunked {
        Some(chunk) => chunk_hash(&origin_url, &target_url, chunk),
        None => invocation_hash(&origin_url, &target_url, &inv.msg),
    };
    if meta.hash != expected {
        return Err(mismatch(
            "the payload does not match the signed hash".to_string(),
        ));
    }
    Ok((claims.issued_at, expires))
}

/// Signs a response (all its other fields set) for the inbox `reply`.
pub fn sign_response(
    identity: &KeyPair,
    response: &Response,
    reply: &str,
) -> Result<String, ClaimsError> {
    Claims::<ResponseClaims>::builder()
        .issuer(identity.public_key())
        .subject(nuid::next().to_string())
        .expires_in(TOKEN_LIFETIME)
        .metadata(ResponseClaims {
            re: response.invocation_id.clone(),
            hash: response_hash(response, reply),
        })
        .build()
        .encode(identity)
}

fn response_hash(response: &Response, reply: &str) -> String {
    let parts = response.signed_parts(reply);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    digest(&refs)
}

/// Checks a signed response received on `reply` for invocation `id`: signed
/// by the host it names, which the caller trusts, over exactly this content.
pub(crate) fn verify_response(
    verifier: &Verifier,
    trust: &TrustPolicy,
    response: &Response,
    id: &str,
    reply: &str,
) -> Result<(), Refusal> {
    trust
        .check(&response.host)
        .map_err(|e| Refusal::new(Reason::Untrusted, format!("a response from {e}")))?;
    let verified = verifier
        .verify_token::<ResponseClaims>(&response.jwt, KeyKind::Server, None)
        .map_err(|e| {
            Refusal::new(
                Reason::BadSignature,
                format!("a response does not verify: {e}"),
            )
            .by(&response.host)
        })?;
    let claims = verified.claims();
    if claims.issuer != response.host {
        return Err(
            Refusal::new(Reason::Mismatch, "a response is signed by another host")
                .by(&response.host),
        );
    }
    check_lifetime(claims.issued_at, claims.expires).map_err(|r| r.by(&response.host))?;
    let meta = verified.metadata();
    if meta.re != id || response.invocation_id != id {
        return Err(
            Refusal::new(Reason::Mismatch, "a response answers another invocation")
                .by(&response.host),
        );
    }
    if meta.hash != response_hash(response, reply) {
        return Err(
            Refusal::new(Reason::Mismatch, "a response does not match its signature")
                .by(&response.host),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{PROTOCOL_VERSION, WireEntity};

    fn invocation(host: &KeyPair, msg: &[u8], to: Binding<'_>) -> WireInvocation {
        let mut inv = WireInvocation {
            v: PROTOCOL_VERSION,
            id: "id-1".into(),
            origin: WireEntity::Host(host.public_key()),
            target: WireEntity::Actor("MXYZ".into()),
            operation: "echo".into(),
            msg: msg.to_vec(),
            encoded_claims: String::new(),
            host_id: host.public_key(),
            chunked: None,
            session: None,
            session_token: None,
        };
        inv.encoded_claims = sign(host, &inv, to).unwrap();
        inv
    }

    fn to() -> Binding<'static> {
        Binding {
            subject: "waxosuit.actor.MXYZ",
            reply: "waxosuit._INBOX.a.1",
        }
    }

    #[test]
    fn refusals_say_why_and_who_claimed_to_sign() {
        let host = KeyPair::generate(KeyKind::Server);
        let stranger = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let v = Verifier::new();
        let refused = verify(&v, &trust, &invocation(&stranger, b"x", to()), to()).unwrap_err();
        assert_eq!(refused.reason(), Reason::Untrusted);
        assert!(
            refused.signer().is_some_and(|s| s.starts_with('N')),
            "{refused:?}"
        );
        let mut other = invocation(&host, b"x", to());
        other.msg = b"y".to_vec();
        let refused = verify(&v, &trust, &other, to()).unwrap_err();
        assert_eq!(refused.reason(), Reason::Mismatch, "{refused}");
    }

    #[test]
    fn a_trusted_host_passes_and_every_tampering_is_caught() {
        let host = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let v = Verifier::new();
        let inv = invocation(&host, b"hello", to());
        verify(&v, &trust, &inv, to()).unwrap();

        let mut other = inv.clone();
        other.msg = b"hellO".to_vec();
        assert!(
            verify(&v, &trust, &other, to())
                .unwrap_err()
                .to_string()
                .contains("hash")
        );

        let mut other = inv.clone();
        other.operation = "delete".into();
        assert!(
            verify(&v, &trust, &other, to())
                .unwrap_err()
                .to_string()
                .contains("target")
        );

        let mut other = inv.clone();
        other.origin = WireEntity::Actor("MROOT".into());
        assert!(
            verify(&v, &trust, &other, to())
                .unwrap_err()
                .to_string()
                .contains("origin")
        );

        let mut other = inv.clone();
        other.id = "id-2".into();
        assert!(
            verify(&v, &trust, &other, to())
                .unwrap_err()
                .to_string()
                .contains("id")
        );

        let elsewhere = Binding {
            subject: "waxosuit.actor.MOTHER",
            reply: to().reply,
        };
        assert!(
            verify(&v, &trust, &inv, elsewhere)
                .unwrap_err()
                .to_string()
                .contains("subject")
        );
        let stolen_inbox = Binding {
            subject: to().subject,
            reply: "_INBOX.attacker",
        };
        assert!(
            verify(&v, &trust, &inv, stolen_inbox)
                .unwrap_err()
                .to_string()
                .contains("inbox")
        );

        let mut other = inv.clone();
        other.chunked = Some(ChunkRef {
            subject: "waxosuit.chunks.N.x".into(),
            len: 300 << 20,
            chunks: 300,
            chunk: 1 << 20,
            hashes: vec!["0".repeat(64); 300],
        });
        assert!(
            verify(&v, &trust, &other, to())
                .unwrap_err()
                .to_string()
                .contains("chunk")
        );

        let mut other = inv;
        other.encoded_claims.push('x');
        assert!(
            verify(&v, &trust, &other, to())
                .unwrap_err()
                .to_string()
                .contains("verify")
        );
    }

    #[test]
    fn the_claims_bind_the_trace_context_sent_with_the_call() {
        let host = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let v = Verifier::new();
        let plain = invocation(&host, b"x", to());
        let mut traced = plain.clone();
        traced.encoded_claims = sign_traced(&host, &traced, to(), Some("T1")).unwrap();
        verify_refusal(&v, &trust, &traced, to(), Some("T1"), None).unwrap();
        verify_refusal(&v, &trust, &plain, to(), None, None).unwrap();
        for (inv, received, what) in [
            (&traced, Some("T2"), "altered"),
            (&traced, None, "removed"),
            (&plain, Some("T1"), "added"),
        ] {
            let err = verify_refusal(&v, &trust, inv, to(), received, None).unwrap_err();
            assert_eq!(err.reason, Reason::Mismatch, "{what}: {err}");
            assert!(err.detail.contains("trace headers"), "{what}: {err}");
        }
        // Without trace headers the claims are what they always were.
        let claims =
            waxosuit_claims::Claims::<InvocationClaims>::decode_unverified(&plain.encoded_claims)
                .unwrap();
        assert_eq!(claims.metadata.unwrap().trace, None);
        let payload = plain.encoded_claims.split('.').nth(1).unwrap();
        let json = data_encoding::BASE64URL_NOPAD
            .decode(payload.as_bytes())
            .unwrap();
        assert!(!String::from_utf8(json).unwrap().contains("trace"));
    }

    #[test]
    fn a_replayed_call_is_refused_before_its_payload_is_hashed() {
        let host = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let v = Verifier::new();
        let replay = ReplayGuard::new(100);
        let inv = invocation(&host, b"x", to());
        let (issued, expires) =
            verify_refusal(&v, &trust, &inv, to(), None, Some(&replay)).unwrap();
        replay
            .check(&inv.host_id, &inv.id, issued, expires)
            .unwrap();
        // The same signed call with another payload: a replay, found before
        // hashing (hashing would have called it a mismatch).
        let mut resent = inv;
        resent.msg = vec![b'x'; 4096];
        let err = verify_refusal(&v, &trust, &resent, to(), None, Some(&replay)).unwrap_err();
        assert_eq!(err.reason, Reason::Replayed, "{err}");
        let err = verify_refusal(&v, &trust, &resent, to(), None, None).unwrap_err();
        assert_eq!(err.reason, Reason::Mismatch, "{err}");
    }

    #[test]
    fn an_unknown_host_is_refused_before_its_signature_is_checked() {
        let stranger = KeyPair::generate(KeyKind::Server);
        let trusted = KeyPair::generate(KeyKind::Server);
        let inv = invocation(&stranger, b"x", to());
        let trust = TrustPolicy::hosts([trusted.public_key()]).unwrap();
        let err = verify_refusal(&Verifier::new(), &trust, &inv, to(), None, None).unwrap_err();
        assert_eq!(err.reason, Reason::Untrusted);
        assert!(err.detail.contains("trust list"), "{err}");
        verify(&Verifier::new(), &TrustPolicy::any_host(), &inv, to()).unwrap();
    }

    #[test]
    fn a_chunked_invocation_signs_its_chunk_reference_not_the_payload() {
        let host = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let mut inv = invocation(&host, b"", to());
        inv.chunked = Some(ChunkRef {
            subject: format!("waxosuit.chunks.{}.x", host.public_key()),
            len: 10,
            chunks: 1,
            chunk: 1024,
            hashes: vec!["AB".repeat(32)],
        });
        inv.encoded_claims = sign(&host, &inv, to()).unwrap();
        verify(&Verifier::new(), &trust, &inv, to()).unwrap();
        let mut bigger = inv.clone();
        bigger.chunked.as_mut().unwrap().len = 300 << 20;
        let err = verify(&Verifier::new(), &trust, &bigger, to()).unwrap_err();
        assert_eq!(err.reason(), Reason::Mismatch, "{err}");
        assert!(err.to_string().contains("chunk"), "{err}");
    }

    #[test]
    fn a_response_verifies_only_for_its_invocation_inbox_and_content() {
        let host = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let v = Verifier::new();
        let mut response = Response::success("id-1", b"ok".to_vec());
        response.host = host.public_key();
        response.jwt = sign_response(&host, &response, "inbox.1").unwrap();
        verify_response(&v, &trust, &response, "id-1", "inbox.1").unwrap();
        assert!(verify_response(&v, &trust, &response, "id-2", "inbox.1").is_err());
        assert!(verify_response(&v, &trust, &response, "id-1", "inbox.2").is_err());
        let mut changed = response.clone();
        changed.msg = b"forged".to_vec();
        assert_eq!(
            verify_response(&v, &trust, &changed, "id-1", "inbox.1")
                .unwrap_err()
                .reason,
            Reason::Mismatch
        );
        let untrusting =
            TrustPolicy::hosts([KeyPair::generate(KeyKind::Server).public_key()]).unwrap();
        assert_eq!(
            verify_response(&v, &untrusting, &response, "id-1", "inbox.1")
                .unwrap_err()
                .reason,
            Reason::Untrusted
        );
    }

    #[test]
    fn an_invocation_signed_by_a_non_server_key_is_refused() {
        let account = KeyPair::generate(KeyKind::Account);
        let inv = invocation(&account, b"x", to());
        let err = verify(&Verifier::new(), &TrustPolicy::any_host(), &inv, to())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trust list") || err.contains("verify"),
            "{err}"
        );
    }
}
