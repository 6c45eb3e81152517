//! nkeys identities: Ed25519 key pairs whose public keys and seeds are
//! base32 strings with a one-letter role prefix (`A…` account, `M…` module, …).
//!
//! The cryptography and the encoding are the `nkeys` crate's; this module only
//! gives them Waxosuit's names and typed errors, so no caller depends on
//! `nkeys` directly.

use std::fmt;
use std::str::FromStr;

use crate::ClaimsError;

/// The role a key plays, told by the first letter of its public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// `A`: an account; issues actor tokens.
    Account,
    /// `M`: a module; the subject of an actor token, i.e. the actor's identity.
    Module,
    /// `N`: a server; a host's identity (signs lattice invocations).
    Server,
    /// `O`: an operator; the root of trust, issues account tokens.
    Operator,
    /// `V`: a service; the subject of a capability provider archive.
    Service,
    /// `U`: a user.
    User,
    /// `C`: a cluster.
    Cluster,
}

impl KeyKind {
    /// Every kind, in the order the CLI lists them.
    pub const ALL: [KeyKind; 7] = [
        KeyKind::Account,
        KeyKind::Module,
        KeyKind::Server,
        KeyKind::Operator,
        KeyKind::Service,
        KeyKind::User,
        KeyKind::Cluster,
    ];

    /// First character of a public key of this kind.
    pub fn prefix(self) -> char {
        match self {
            KeyKind::Account => 'A',
            KeyKind::Module => 'M',
            KeyKind::Server => 'N',
            KeyKind::Operator => 'O',
            KeyKind::Service => 'V',
            KeyKind::User => 'U',
            KeyKind::Cluster => 'C',
        }
    }

    /// Lower-case name, as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Account => "account",
            KeyKind::Module => "module",
            KeyKind::Server => "server",
            KeyKind::Operator => "operator",
            KeyKind::Service => "service",
            KeyKind::User => "user",
            KeyKind::Cluster => "cluster",
        }
    }

    /// The kind of a public key string, checking its encoding and checksum.
    pub fn of_public_key(key: &str) -> Result<KeyKind, ClaimsError> {
        let kp = nkeys::KeyPair::from_public_key(key).map_err(|e| ClaimsError::InvalidKey {
            key: shown_key(key),
            what: "public key",
            reason: e.to_string(),
        })?;
        KeyKind::from_nkeys(kp.key_pair_type()).ok_or_else(|| ClaimsError::InvalidKey {
            key: shown_key(key),
            what: "public key",
            reason: "curve (X) keys cannot sign".to_string(),
        })
    }

    fn to_nkeys(self) -> nkeys::KeyPairType {
        match self {
            KeyKind::Account => nkeys::KeyPairType::Account,
            KeyKind::Module => nkeys::KeyPairType::Module,
            KeyKind::Server => nkeys::KeyPairType::Server,
            KeyKind::Operator => nkeys::KeyPairType::Operator,
            KeyKind::Service => nkeys::KeyPairType::Service,
            KeyKind::User => nkeys::KeyPairType::User,
            KeyKind::Cluster => nkeys::KeyPairType::Cluster,
        }
    }

    fn from_nkeys(kind: nkeys::KeyPairType) -> Option<KeyKind> {
        Some(match kind {
            nkeys::KeyPairType::Account => KeyKind::Account,
            nkeys::KeyPairType::Module => KeyKind::Module,
            nkeys::KeyPairType::Server => KeyKind::Server,
            nkeys::KeyPairType::Operator => KeyKind::Operator,
            nkeys::KeyPairType::Service => KeyKind::Service,
            nkeys::KeyPairType::User => KeyKind::User,
            nkeys::KeyPairType::Cluster => KeyKind::Cluster,
            nkeys::KeyPairType::Curve => return None,
        })
    }

    /// "an account", "a module", … for messages.
    fn with_article(self) -> &'static str {
        match self {
            KeyKind::Account => "an account",
            KeyKind::Module => "a module",
            KeyKind::Server => "a server",
            KeyKind::Operator => "an operator",
            KeyKind::Service => "a service",
            KeyKind::User => "a user",
            KeyKind::Cluster => "a cluster",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.with_article())
    }
}

/// Error for an unknown key kind name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown key kind `{0}`; expected one of account, module, server, operator, service, user, cluster"
)]
pub struct UnknownKeyKind(String);

impl FromStr for KeyKind {
    type Err = UnknownKeyKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s) || s == k.prefix().to_string())
            .ok_or_else(|| UnknownKeyKind(s.to_string()))
    }
}

/// An Ed25519 key pair (or a public key alone) with its nkeys role.
pub struct KeyPair {
    inner: nkeys::KeyPair,
    kind: KeyKind,
}

impl KeyPair {
    /// A fresh random key pair of the given kind.
    pub fn generate(kind: KeyKind) -> KeyPair {
        KeyPair {
            inner: nkeys::KeyPair::new(kind.to_nkeys()),
            kind,
        }
    }

    /// A key pair from 32 raw seed bytes; deterministic, for tests and vectors.
    pub fn from_raw_seed(kind: KeyKind, seed: [u8; 32]) -> Result<KeyPair, ClaimsError> {
        let inner = nkeys::KeyPair::new_from_raw(kind.to_nkeys(), seed).map_err(|e| {
            ClaimsError::InvalidKey {
                key: "<raw seed>".to_string(),
                what: "seed",
                reason: e.to_string(),
            }
        })?;
        Ok(KeyPair { inner, kind })
    }

    /// Parses an `S…` seed string. The seed itself is never put into the error.
    pub fn from_seed(seed: &str) -> Result<KeyPair, ClaimsError> {
        let seed = seed.trim();
        let inner = nkeys::KeyPair::from_seed(seed).map_err(|e| ClaimsError::InvalidKey {
            key: redact_seed(seed),
            what: "seed",
            reason: e.to_string(),
        })?;
        let kind =
            KeyKind::from_nkeys(inner.key_pair_type()).ok_or_else(|| ClaimsError::InvalidKey {
                key: redact_seed(seed),
                what: "seed",
                reason: "curve (X) seeds cannot sign".to_string(),
            })?;
        Ok(KeyPair { inner, kind })
    }

    /// A verify-only key pair from a public key string.
    pub fn from_public_key(key: &str) -> Result<KeyPair, ClaimsError> {
        let kind = KeyKind::of_public_key(key)?;
        let inner = nkeys::KeyPair::from_public_key(key).map_err(|e| ClaimsError::InvalidKey {
            key: shown_key(key),
            what: "public key",
            reason: e.to_string(),
        })?;
        Ok(KeyPair { inner, kind })
    }

    /// The 56-character public key.
    pub fn public_key(&self) -> String {
        self.inner.public_key()
    }

    /// The 58-character seed, if this pair has one.
    pub fn seed(&self) -> Result<String, ClaimsError> {
        self.inner.seed().map_err(|e| ClaimsError::CannotSign {
            key: self.public_key(),
            reason: e.to_string(),
        })
    }

    /// The role of this key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub(crate) fn sign(&self, data: &[u8]) -> Result<Vec<u8>, ClaimsError> {
        self.inner.sign(data).map_err(|e| ClaimsError::CannotSign {
            key: self.public_key(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn verify(&self, data: &[u8], signature: &[u8]) -> bool {
        self.inner.verify(data, signature).is_ok()
    }
}

impl fmt::Debug for KeyPair {
    // Never print the seed, even in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("kind", &self.kind)
            .field("public_key", &self.public_key())
            .finish()
    }
}

/// A public key as an error shows it: keys come from tokens and arguments,
/// so a "key" may be any text at all (a valid key is shown unchanged).
fn shown_key(key: &str) -> String {
    crate::display::shown_key(key)
}

/// Seeds are secrets: errors show only their kind prefix.
fn redact_seed(seed: &str) -> String {
    let head: String = seed.chars().take(2).collect();
    format!("{}… (seed redacted)", crate::display::escape(&head, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_generates_keys_with_its_prefix_and_round_trips_the_seed() {
        for kind in KeyKind::ALL {
            let kp = KeyPair::generate(kind);
            let pk = kp.public_key();
            assert_eq!(pk.len(), 56);
            assert!(pk.starts_with(kind.prefix()), "{kind:?} -> {pk}");
            assert_eq!(KeyKind::of_public_key(&pk).unwrap(), kind);
            let seed = kp.seed().unwrap();
            assert_eq!(seed.len(), 58);
            assert!(seed.starts_with('S'));
            let again = KeyPair::from_seed(&seed).unwrap();
            assert_eq!(again.public_key(), pk);
            assert_eq!(again.kind(), kind);
        }
    }

    #[test]
    fn kind_names_parse() {
        assert_eq!("account".parse::<KeyKind>().unwrap(), KeyKind::Account);
        assert_eq!("Module".parse::<KeyKind>().unwrap(), KeyKind::Module);
        assert_eq!("V".parse::<KeyKind>().unwrap(), KeyKind::Service);
        assert!("curve".parse::<KeyKind>().is_err());
    }

    #[test]
    fn bad_seed_is_refused_without_echoing_it() {
        let err = KeyPair::from_seed("SAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ClaimsError::InvalidKey { what: "seed", .. }));
        assert!(!text.contains("XXXXXXXX"), "{text}");
    }

    #[test]
    fn public_only_pair_cannot_sign() {
        let kp = KeyPair::generate(KeyKind::Account);
        let public = KeyPair::from_public_key(&kp.public_key()).unwrap();
        assert!(matches!(
            public.sign(b"x"),
            Err(ClaimsError::CannotSign { .. })
        ));
        let sig = kp.sign(b"x").unwrap();
        assert!(public.verify(b"x", &sig));
        assert!(!public.verify(b"y", &sig));
    }
}
