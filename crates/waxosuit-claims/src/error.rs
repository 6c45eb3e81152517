//! The one error type of this crate.

use crate::keys::KeyKind;

/// Why a key, a token or a signed module was refused.
///
/// Every verification failure has its own variant so that callers (and the
/// CLI's exit messages) can tell *what* failed; the `Display` text also says
/// what to do about it. The text is meant for people and may change; match on
/// the variant instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// The bytes do not start with the WebAssembly magic number and version.
    #[error(
        "not a WebAssembly module: the file does not start with the wasm magic bytes `\\0asm` \
         and version 1; pass the `.wasm` file produced by your build"
    )]
    NotWasm,

    /// The bytes start like a module but cannot be parsed (truncated, corrupt).
    #[error(
        "malformed WebAssembly module at byte offset {offset}: {reason}; the file is truncated \
         or corrupt, rebuild it and sign it again"
    )]
    MalformedModule {
        /// Where the parser gave up.
        offset: u64,
        /// What the parser said.
        reason: String,
    },

    /// A component (not a core module) was given; actors are core modules.
    #[error(
        "this is a WebAssembly component, not a core module; Waxosuit actors are core modules \
         speaking waPC"
    )]
    ComponentNotSupported,

    /// The module has no `jwt` (or `wasmcloud_jwt`) custom section.
    #[error(
        "the module is unsigned: it has no `jwt` custom section; sign it with \
         `waxosuit claims sign IN.wasm -o OUT.wasm --name NAME`"
    )]
    Unsigned,

    /// The module carries two different signatures: we refuse to guess which counts.
    #[error(
        "the module carries {count} different embedded JWTs; re-sign it with \
         `waxosuit claims sign`, which replaces every earlier signature"
    )]
    AmbiguousSignature {
        /// How many distinct tokens were found.
        count: usize,
    },

    /// The token is not a well-formed compact JWT.
    #[error("malformed JWT: {reason}")]
    MalformedToken {
        /// What is wrong with it.
        reason: String,
    },

    /// The JWT header names another algorithm or type.
    #[error(
        "unsupported JWT header: alg `{alg}`, typ `{typ}`; only `Ed25519` tokens of type `jwt` \
         are accepted"
    )]
    UnsupportedHeader {
        /// The `alg` found.
        alg: String,
        /// The `typ` found.
        typ: String,
    },

    /// The token has no `wascap` metadata object of the expected kind.
    #[error("the token has no `wascap` metadata object; it is not a {expected} token")]
    MissingMetadata {
        /// The kind of token expected.
        expected: &'static str,
    },

    /// A string that should be an nkey is not one.
    #[error("`{key}` is not a valid nkey {what}: {reason}")]
    InvalidKey {
        /// The offending text (seeds are never echoed; see [`crate::KeyPair::from_seed`]).
        key: String,
        /// Public key or seed.
        what: &'static str,
        /// Why the nkeys decoder refused it.
        reason: String,
    },

    /// A key of the wrong kind was used in some role.
    #[error("{role} must be {expected} key (prefix `{}`), but `{key}` is {actual}", expected.prefix())]
    WrongKeyKind {
        /// The role: "the issuer of an actor token", ...
        role: &'static str,
        /// Expected kind.
        expected: KeyKind,
        /// What was found.
        actual: KeyKind,
        /// The public key.
        key: String,
    },

    /// The Ed25519 signature does not verify with the issuer's public key.
    #[error(
        "bad signature: the token is not signed by its stated issuer `{issuer}`; it was altered \
         or forged, do not use this module"
    )]
    BadSignature {
        /// The issuer the token claims.
        issuer: String,
    },

    /// The module bytes are not the ones that were signed.
    #[error(
        "module hash mismatch: the token was issued for module hash {expected} but this module \
         hashes to {actual}; the code was changed after signing or the signature was copied \
         from another module; rebuild and sign again"
    )]
    ModuleHashMismatch {
        /// The hash in the token.
        expected: String,
        /// The hash of the module as found.
        actual: String,
    },

    /// `exp` has passed.
    #[error(
        "the token expired at {} (unix {expires_at}); ask the issuer for a freshly signed module",
        crate::time::human_date(*expires_at)
    )]
    Expired {
        /// The `exp` claim.
        expires_at: u64,
    },

    /// `nbf` is still in the future.
    #[error(
        "the token cannot be used before {} (unix {not_before}); wait, or check this \
         machine's clock",
        crate::time::human_date(*not_before)
    )]
    NotYetValid {
        /// The `nbf` claim.
        not_before: u64,
    },

    /// The issuer and the subject are the same key.
    #[error(
        "self-issued token: `{key}` is both issuer and subject; an account key must sign the \
         module key"
    )]
    SelfIssued {
        /// The key.
        key: String,
    },

    /// A field of the token is outside [`crate::rules`]: a capability id
    /// that is neither `namespace:name` nor a module key, a tag with control
    /// characters, an alias shaped like a key, an oversized token, …
    #[error(
        "invalid `{field}` in the {kind} token: {value} is not allowed; allowed: {allowed}; \
         sign the module (or token) again with valid claims"
    )]
    InvalidClaim {
        /// The kind of token: "actor", "account", "operator", "capability provider".
        kind: &'static str,
        /// The field, with the index for list entries: `caps[2]`, `tags[0]`,
        /// `call_alias`, `token` (for its overall size), …
        field: String,
        /// The offending value, escaped and cut short for display
        /// ([`crate::display::quoted`]), or a size such as `300 entries`.
        value: String,
        /// What the field may hold.
        allowed: String,
    },

    /// Nothing could vouch for the issuer: the verifier trusts no issuer
    /// (for account tokens: no operator) and was not told to accept any.
    /// A [`crate::Verifier`] fails closed until it is configured.
    #[error("{}", no_trusted_issuer_message(what, issuer))]
    NoTrustedIssuer {
        /// What was refused: "actor", "capability provider archive", "account token".
        what: &'static str,
        /// The (correctly signed) token's issuer.
        issuer: String,
    },

    /// A trust list is configured and the issuer is not on it, nor chains to a trusted operator.
    #[error(
        "untrusted issuer `{issuer}`: it is not among the trusted issuers and no trusted \
         operator vouches for it; add it with --trusted-issuer, or supply the account token \
         signed by a trusted operator"
    )]
    UntrustedIssuer {
        /// The issuer.
        issuer: String,
    },

    /// Signing was asked with a key pair that is not the issuer named in the claims.
    #[error("cannot sign: the claims name issuer `{claimed}` but the signing key is `{actual}`")]
    SignerMismatch {
        /// Issuer in the claims.
        claimed: String,
        /// Public key of the signing key pair.
        actual: String,
    },

    /// A key pair without a seed (public only) cannot sign.
    #[error("key `{key}` has no seed, so it cannot sign: {reason}")]
    CannotSign {
        /// The public key.
        key: String,
        /// What nkeys said.
        reason: String,
    },
}

impl ClaimsError {
    /// A stable, machine-readable name for the failure (for `--json` output
    /// and metrics), unlike the `Display` text.
    pub fn kind(&self) -> &'static str {
        match self {
            ClaimsError::NotWasm => "not_wasm",
            ClaimsError::MalformedModule { .. } => "malformed_module",
            ClaimsError::ComponentNotSupported => "component_not_supported",
            ClaimsError::Unsigned => "unsigned",
            ClaimsError::AmbiguousSignature { .. } => "ambiguous_signature",
            ClaimsError::MalformedToken { .. } => "malformed_token",
            ClaimsError::UnsupportedHeader { .. } => "unsupported_header",
            ClaimsError::MissingMetadata { .. } => "missing_metadata",
            ClaimsError::InvalidKey { .. } => "invalid_key",
            ClaimsError::WrongKeyKind { .. } => "wrong_key_kind",
            ClaimsError::BadSignature { .. } => "bad_signature",
            ClaimsError::ModuleHashMismatch { .. } => "module_hash_mismatch",
            ClaimsError::Expired { .. } => "expired",
            ClaimsError::NotYetValid { .. } => "not_yet_valid",
            ClaimsError::SelfIssued { .. } => "self_issued",
            ClaimsError::InvalidClaim { .. } => "invalid_claim",
            ClaimsError::NoTrustedIssuer { .. } => "no_trusted_issuer",
            ClaimsError::UntrustedIssuer { .. } => "untrusted_issuer",
            ClaimsError::SignerMismatch { .. } => "signer_mismatch",
            ClaimsError::CannotSign { .. } => "cannot_sign",
        }
    }

    /// The reason may quote the token (serde names the value it choked on),
    /// so it is escaped and cut short like any other token text.
    pub(crate) fn malformed_token(reason: impl AsRef<str>) -> Self {
        Self::MalformedToken {
            reason: crate::display::escape(reason.as_ref(), MAX_REASON_CHARS),
        }
    }
}

/// How much of a parser's complaint a message keeps.
const MAX_REASON_CHARS: usize = 300;

fn no_trusted_issuer_message(what: &str, issuer: &str) -> String {
    if what == "account token" {
        format!(
            "no operator is trusted, so the account token issued by `{issuer}` is refused: if \
             you trust that operator, pass `--trusted-operator {issuer}` (or its operator token \
             file); for development only, `--allow-any-issuer` accepts any operator"
        )
    } else {
        format!(
            "no issuer is trusted, so the {what} issued by `{issuer}` is refused: if you trust \
             that account, pass `--trusted-issuer {issuer}` (or `--trusted-operator` with the \
             account's `--account-token`); or sign it with the local keystore's account \
             (`waxosuit claims sign` / `waxosuit par create` without `--issuer`), which is \
             trusted automatically; for development only, `--allow-any-issuer` accepts any issuer"
        )
    }
}
