//! Invocation claims: who sent a call, to whom, with which payload.
//!
//! Every invocation carries a token signed by the sending host's server key
//! (`N…`) naming the origin and target URLs and a hash over them and the
//! payload (spec §4.6). The original accepted any host that could sign; here
//! the receiver also requires the signer to be on its trust list, so a
//! process that can reach NATS cannot drive actors just by making up a key.

use std::collections::BTreeSet;
use std::time::Duration;

use waxosuit_claims::{Claims, ClaimsError, KeyKind, KeyPair, Verifier};

use crate::LatticeError;
use crate::protocol::{Invocation, WireEntity, invocation_hash};

/// How long an invocation token is valid: long enough for clock skew and a
/// chunked transfer, short enough to limit replays of a captured message.
const TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Which hosts' invocations are accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    hosts: BTreeSet<String>,
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
                            "`{key}` is not a host (server) public key; host keys start with `N` \
                             (`waxosuit keys gen server`)"
                        ),
                    });
                }
            }
        }
        Ok(TrustPolicy { hosts, any: false })
    }

    /// Trust any host that signs correctly, as the original did. For
    /// development only: anyone who can publish on the bus can call actors.
    pub fn any_host() -> TrustPolicy {
        TrustPolicy {
            hosts: BTreeSet::new(),
            any: true,
        }
    }

    /// Whether every signing host is trusted.
    pub fn trusts_any(&self) -> bool {
        self.any
    }

    /// Adds a key.
    pub(crate) fn with(mut self, key: &str) -> TrustPolicy {
        self.hosts.insert(key.to_string());
        self
    }

    /// Whether invocations signed by `key` are accepted; otherwise why not.
    pub fn check(&self, key: &str) -> Result<(), String> {
        if self.any || self.hosts.contains(key) {
            Ok(())
        } else {
            Err(format!(
                "host {key} is not on this host's trust list (add it with --lattice-trust-host)"
            ))
        }
    }

    /// The trusted keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(String::as_str)
    }
}

/// Signs the claims of an invocation with the host's server key.
pub fn sign(
    identity: &KeyPair,
    id: &str,
    origin: &WireEntity,
    target: &WireEntity,
    operation: &str,
    msg: &[u8],
) -> Result<String, ClaimsError> {
    let origin_url = origin.url();
    let target_url = format!("{}/{operation}", target.url());
    let hash = invocation_hash(&origin_url, &target_url, msg);
    sign_hashed(identity, id, origin_url, target_url, hash)
}

/// [`sign`] for a caller that already has the URLs and the
/// [`invocation_hash`] (the payload may have left in chunks).
pub fn sign_hashed(
    identity: &KeyPair,
    id: &str,
    origin_url: String,
    target_url: String,
    hash: String,
) -> Result<String, ClaimsError> {
    Claims::<waxosuit_claims::Invocation>::builder()
        .issuer(identity.public_key())
        .subject(id)
        .expires_in(TOKEN_LIFETIME)
        .metadata(waxosuit_claims::Invocation {
            target_url,
            origin_url,
            invocation_hash: hash,
        })
        .build()
        .encode(identity)
}

/// Checks an invocation whose payload is complete (`msg` passed separately
/// because a chunked payload arrives apart from the invocation): signature,
/// validity, signer on the trust list, and every signed field matching the
/// message. Returns why not.
pub fn verify(
    verifier: &Verifier,
    trust: &TrustPolicy,
    inv: &Invocation,
    msg: &[u8],
) -> Result<(), String> {
    let verified = verifier
        .verify_token::<waxosuit_claims::Invocation>(&inv.encoded_claims, KeyKind::Server, None)
        .map_err(|e| format!("its claims do not verify: {e}"))?;
    let claims = verified.claims();
    if claims.issuer != inv.host_id {
        return Err(format!(
            "signed by {} but sent as host {}",
            claims.issuer, inv.host_id
        ));
    }
    trust.check(&claims.issuer)?;
    if claims.subject != inv.id {
        return Err("the claims were issued for another invocation id".to_string());
    }
    let meta = verified.metadata();
    let origin_url = inv.origin.url();
    let target_url = format!("{}/{}", inv.target.url(), inv.operation);
    if meta.origin_url != origin_url {
        return Err(format!(
            "origin {origin_url} does not match the signed {}",
            meta.origin_url
        ));
    }
    if meta.target_url != target_url {
        return Err(format!(
            "target {target_url} does not match the signed {}",
            meta.target_url
        ));
    }
    if meta.invocation_hash != invocation_hash(&origin_url, &target_url, msg) {
        return Err("the payload does not match the signed hash".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::PROTOCOL_VERSION;

    fn invocation(host: &KeyPair, msg: &[u8]) -> Invocation {
        let origin = WireEntity::Host(host.public_key());
        let target = WireEntity::Actor("MXYZ".into());
        let claims = sign(host, "id-1", &origin, &target, "echo", msg).unwrap();
        Invocation {
            v: PROTOCOL_VERSION,
            id: "id-1".into(),
            origin,
            target,
            operation: "echo".into(),
            msg: msg.to_vec(),
            encoded_claims: claims,
            host_id: host.public_key(),
            chunked: None,
            session: None,
            session_token: None,
        }
    }

    #[test]
    fn a_trusted_host_passes_and_every_tampering_is_caught() {
        let host = KeyPair::generate(KeyKind::Server);
        let trust = TrustPolicy::hosts([host.public_key()]).unwrap();
        let v = Verifier::new();
        let inv = invocation(&host, b"hello");
        verify(&v, &trust, &inv, b"hello").unwrap();

        let err = verify(&v, &trust, &inv, b"hellO").unwrap_err();
        assert!(err.contains("hash"), "{err}");

        let mut other = inv.clone();
        other.operation = "delete".into();
        assert!(
            verify(&v, &trust, &other, b"hello")
                .unwrap_err()
                .contains("target")
        );

        let mut other = inv.clone();
        other.origin = WireEntity::Actor("MROOT".into());
        assert!(
            verify(&v, &trust, &other, b"hello")
                .unwrap_err()
                .contains("origin")
        );

        let mut other = inv.clone();
        other.id = "id-2".into();
        assert!(
            verify(&v, &trust, &other, b"hello")
                .unwrap_err()
                .contains("id")
        );

        let mut other = inv.clone();
        other.host_id = KeyPair::generate(KeyKind::Server).public_key();
        assert!(
            verify(&v, &trust, &other, b"hello")
                .unwrap_err()
                .contains("sent as")
        );

        let mut other = inv;
        other.encoded_claims.push('x');
        assert!(
            verify(&v, &trust, &other, b"hello")
                .unwrap_err()
                .contains("verify")
        );
    }

    #[test]
    fn an_unknown_host_is_refused_unless_any_host_is_trusted() {
        let stranger = KeyPair::generate(KeyKind::Server);
        let trusted = KeyPair::generate(KeyKind::Server);
        let inv = invocation(&stranger, b"x");
        let trust = TrustPolicy::hosts([trusted.public_key()]).unwrap();
        let err = verify(&Verifier::new(), &trust, &inv, b"x").unwrap_err();
        assert!(err.contains("trust list"), "{err}");
        verify(&Verifier::new(), &TrustPolicy::any_host(), &inv, b"x").unwrap();
    }

    #[test]
    fn only_server_keys_are_accepted_in_the_trust_list() {
        let actor = KeyPair::generate(KeyKind::Module).public_key();
        let err = TrustPolicy::hosts([actor]).unwrap_err();
        assert!(err.to_string().contains("server"), "{err}");
    }

    #[test]
    fn an_invocation_signed_by_a_non_server_key_is_refused() {
        let account = KeyPair::generate(KeyKind::Account);
        let inv = invocation(&account, b"x");
        let err = verify(&Verifier::new(), &TrustPolicy::any_host(), &inv, b"x").unwrap_err();
        assert!(err.contains("verify"), "{err}");
    }
}
