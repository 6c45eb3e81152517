//! Helpers shared by the fuzz targets (`fuzz_targets/*.rs`) and by the seed
//! corpus generator (`examples/gen_corpus.rs`).
//!
//! The targets are thin: each one hands the fuzzer's bytes to the real
//! parsing code of a workspace crate and checks what must hold whatever the
//! input (no panic, no unbounded memory, plus the crate's own promises, e.g.
//! "an error message never carries a terminal escape"). What is here only
//! makes inputs reach deeper: fixed keys, so that a target can sign fuzzed
//! claims and get past the signature check, and a fixed clock.

use data_encoding::BASE64URL_NOPAD;
use std::sync::OnceLock;

use waxosuit_claims::{KeyKind, KeyPair, Verifier};

/// The time every verifier in the targets runs at (2023-11-14), so that a
/// crash reproduces whatever day it is replayed.
pub const NOW: u64 = 1_700_000_000;

/// The JOSE header of every token the claims crate writes.
pub const HEADER_JSON: &str = r#"{"typ":"jwt","alg":"Ed25519"}"#;

/// The fixed identities the targets sign with and trust. Raw seeds are
/// constants so that seed corpora and crash inputs stay valid across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// `A…`: issues actors and provider archives; trusted by the targets.
    Account,
    /// `A…`: a second account, trusted only through [`account_token`].
    ChainedAccount,
    /// `O…`: issues account tokens; trusted by the targets.
    Operator,
    /// `M…`: an actor's module key (the subject of actor tokens).
    Module,
    /// `N…`: a lattice host's server key.
    Server,
    /// `V…`: a provider archive's service key.
    Service,
}

impl Signer {
    /// Every signer, in a fixed order (targets pick one by index).
    pub const ALL: [Signer; 6] = [
        Signer::Account,
        Signer::ChainedAccount,
        Signer::Operator,
        Signer::Module,
        Signer::Server,
        Signer::Service,
    ];

    /// Picks a signer from a fuzzer byte.
    pub fn from_byte(b: u8) -> Signer {
        Signer::ALL[usize::from(b) % Signer::ALL.len()]
    }

    fn parts(self) -> (KeyKind, nkeys::KeyPairType, u8) {
        match self {
            Signer::Account => (KeyKind::Account, nkeys::KeyPairType::Account, 0x11),
            Signer::ChainedAccount => (KeyKind::Account, nkeys::KeyPairType::Account, 0x12),
            Signer::Operator => (KeyKind::Operator, nkeys::KeyPairType::Operator, 0x33),
            Signer::Module => (KeyKind::Module, nkeys::KeyPairType::Module, 0x22),
            Signer::Server => (KeyKind::Server, nkeys::KeyPairType::Server, 0x44),
            Signer::Service => (KeyKind::Service, nkeys::KeyPairType::Service, 0x55),
        }
    }

    /// The key pair as the claims crate sees it.
    pub fn key_pair(self) -> KeyPair {
        let (kind, _, seed) = self.parts();
        KeyPair::from_raw_seed(kind, [seed; 32]).expect("a fixed raw seed is valid")
    }

    /// The 56-character public key.
    pub fn public_key(self) -> String {
        self.key_pair().public_key()
    }

    /// An Ed25519 signature by this key. (`waxosuit_claims::KeyPair::sign`
    /// is crate-private; nkeys derives the very same key from the seed.)
    pub fn sign(self, data: &[u8]) -> Vec<u8> {
        let (_, kind, seed) = self.parts();
        nkeys::KeyPair::new_from_raw(kind, [seed; 32])
            .expect("a fixed raw seed is valid")
            .sign(data)
            .expect("a seeded key pair signs")
    }
}

/// A compact JWT with `header` and `claims` (raw JSON bytes, whatever they
/// hold) signed by `signer`: the token a holder of that key could forge.
pub fn sign_token(signer: Signer, header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header),
        BASE64URL_NOPAD.encode(claims)
    );
    let signature = signer.sign(input.as_bytes());
    format!("{input}.{}", BASE64URL_NOPAD.encode(&signature))
}

/// An account token by [`Signer::Operator`] for [`Signer::ChainedAccount`]:
/// what lets a verifier that trusts the operator accept that account's
/// actors (operator → account → actor).
pub fn account_token() -> String {
    let claims = serde_json::json!({
        "jti": "fuzz-account",
        "iat": NOW - 3600,
        "iss": Signer::Operator.public_key(),
        "sub": Signer::ChainedAccount.public_key(),
        "wascap": { "name": "chained", "valid_signers": [] },
    });
    sign_token(
        Signer::Operator,
        HEADER_JSON.as_bytes(),
        claims.to_string().as_bytes(),
    )
}

/// Whether `text`, shown to a person, could change how the text around it
/// is displayed (what `waxosuit_claims::display` promises never happens
/// with token text).
pub fn has_unsafe_chars(text: &str) -> bool {
    text.chars().any(waxosuit_claims::display::is_unsafe_char)
}

/// Splits `data` at the first `sep`, or returns it all as the first part.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// One entry of a target's case table: a name, and a decoder that says
/// whether the payload decoded.
pub type Case = (&'static str, fn(&[u8]) -> bool);

pub mod codec;
pub mod lattice;

/// The verifiers the claims and archive targets check against.
pub struct Verifiers {
    /// Trusts [`Signer::Account`] directly and [`Signer::Operator`], with an
    /// account token chaining [`Signer::ChainedAccount`] to it.
    pub trusting: Verifier,
    /// Development mode.
    pub any: Verifier,
    /// Trusts no one.
    pub none: Verifier,
}

/// The [`Verifiers`], built once, at [`NOW`].
pub fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| Verifiers {
        trusting: Verifier::new()
            .at_time(NOW)
            .trust_issuer(&Signer::Account.public_key())
            .expect("an account key")
            .trust_operator(&Signer::Operator.public_key())
            .expect("an operator key")
            .with_account_token(account_token()),
        any: Verifier::new().at_time(NOW).allow_any_issuer(),
        none: Verifier::new().at_time(NOW),
    })
}
