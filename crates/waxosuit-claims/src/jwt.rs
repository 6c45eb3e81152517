//! Claims and their compact JWT form, byte-compatible with wascap.
//!
//! A token is `base64url(header) . base64url(claims) . base64url(signature)`
//! without padding; the header is exactly `{"typ":"jwt","alg":"Ed25519"}` and
//! the signature is Ed25519 by the issuer over the first two segments. Field
//! order in the JSON follows the struct declarations below, which follow
//! wascap's, so tokens we sign are bytewise what wascap would sign.

use std::collections::HashMap;
use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::rules::{self, Check};
use crate::{ClaimsError, KeyKind, KeyPair};

/// The JOSE header every token carries, serialized in this field order.
#[derive(Debug, Serialize, Deserialize)]
struct Header {
    typ: String,
    alg: String,
}

const HEADER_TYP: &str = "jwt";
const HEADER_ALG: &str = "Ed25519";

/// The `wascap_revision` that modern wascap (≥ 0.9) writes. Tokens carrying at
/// least this revision have their module hash checked by wascap too, so the
/// CLI writes it; Waxosuit checks the hash whatever the revision.
pub const WASCAP_REVISION: u32 = 3;

/// A set of claims: the registered JWT fields plus a `wascap` object of type `T`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims<T> {
    /// `exp`: seconds since the epoch after which the token is void; `None` = never.
    #[serde(rename = "exp", skip_serializing_if = "Option::is_none", default)]
    pub expires: Option<u64>,
    /// `jti`: unique token id.
    #[serde(rename = "jti")]
    pub id: String,
    /// `iat`: when the token was issued.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// `iss`: public key of the signer.
    #[serde(rename = "iss")]
    pub issuer: String,
    /// `sub`: public key of what the token is about.
    #[serde(rename = "sub")]
    pub subject: String,
    /// `nbf`: not valid before; `None` = valid at once.
    #[serde(rename = "nbf", skip_serializing_if = "Option::is_none", default)]
    pub not_before: Option<u64>,
    /// `wascap`: the kind-specific metadata.
    #[serde(
        rename = "wascap",
        skip_serializing_if = "Option::is_none",
        default = "none"
    )]
    pub metadata: Option<T>,
    /// `wascap_revision`: written by wascap ≥ 0.9; preserved as found.
    #[serde(
        rename = "wascap_revision",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub wascap_revision: Option<u32>,
}

// serde's `default` on an `Option<T>` field would require `T: Default`.
fn none<T>() -> Option<T> {
    None
}

/// Metadata of an actor (a signed wasm module).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Actor {
    /// Friendly name, without version or key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Uppercase hex SHA-256 of the module without its signature sections.
    #[serde(rename = "hash")]
    pub module_hash: String,
    /// Free-form tags.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tags: Option<Vec<String>>,
    /// Capability ids the actor may use (and actor keys it may call).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub caps: Option<Vec<String>>,
    /// Revision number.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rev: Option<i32>,
    /// Human version string.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ver: Option<String>,
    /// Alias other actors may call this one by (wascap ≥ 0.6; preserved).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub call_alias: Option<String>,
    /// Whether the module is a portable capability provider.
    #[serde(rename = "prov", default)]
    pub provider: bool,
}

impl Actor {
    /// Metadata with a name and nothing else; the hash is filled in by
    /// [`crate::embed_claims`].
    pub fn named(name: impl Into<String>) -> Actor {
        Actor {
            name: Some(name.into()),
            ..Actor::default()
        }
    }

    /// The capability ids, or an empty slice.
    pub fn capabilities(&self) -> &[String] {
        self.caps.as_deref().unwrap_or(&[])
    }

    /// The tags, or an empty slice.
    pub fn tag_list(&self) -> &[String] {
        self.tags.as_deref().unwrap_or(&[])
    }

    /// Whether the tags include [`crate::PROXY_WASM_FILTER_TAG`]: the module
    /// was signed as a Proxy-Wasm HTTP filter, not as an actor.
    pub fn is_proxy_wasm_filter(&self) -> bool {
        self.tag_list()
            .iter()
            .any(|t| t == crate::PROXY_WASM_FILTER_TAG)
    }
}

/// Metadata of an account token (issued by an operator).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Account {
    /// Friendly name.
    #[serde(default)]
    pub name: Option<String>,
    /// Further account keys that may issue actors on this account's behalf.
    #[serde(default)]
    pub valid_signers: Option<Vec<String>>,
}

/// Metadata of an operator token (self-signed).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Operator {
    /// Friendly name.
    #[serde(default)]
    pub name: Option<String>,
    /// Further operator keys that may issue accounts on this operator's behalf.
    #[serde(default)]
    pub valid_signers: Option<Vec<String>>,
}

/// The metadata of a wascap invocation token (issued by a host's server
/// key), as the public `wascap` crate and waSCC's lattice define it. The
/// Waxosuit lattice signs its own, stricter `InvocationClaims`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WascapInvocation {
    /// `wasmbus://…` URL of the target plus `/operation`.
    pub target_url: String,
    /// `wasmbus://…` URL of the origin.
    pub origin_url: String,
    /// Uppercase hex SHA-256 of origin URL, target URL and payload.
    #[serde(rename = "hash")]
    pub invocation_hash: String,
}

/// Metadata of a capability provider archive (issued by an account to a service key).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapabilityProvider {
    /// Friendly name (serialized even when absent, as wascap does).
    #[serde(default)]
    pub name: Option<String>,
    /// The capability id it implements.
    pub capid: String,
    /// Who made it.
    pub vendor: String,
    /// Revision.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rev: Option<i32>,
    /// Version string.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ver: Option<String>,
    /// Target triple → uppercase hex SHA-256 of the library for that target.
    #[serde(default)]
    pub target_hashes: HashMap<String, String>,
}

/// A kind of `wascap` metadata: the name it goes by in messages, and what
/// its fields may hold.
pub trait TokenKind: Serialize + DeserializeOwned + Clone {
    /// "actor", "account", …
    const KIND: &'static str;

    /// Checks every field against [`crate::rules`], failing with
    /// [`ClaimsError::InvalidClaim`] for the first one outside them. The
    /// [`crate::Verifier`] calls it on every token it verifies, once the
    /// signature and key roles check out; [`crate::embed_claims`] calls it
    /// before signing. The default accepts anything: kinds whose fields the
    /// caller compares with values of its own (lattice invocations) need no
    /// rules here.
    fn validate(&self) -> Result<(), ClaimsError> {
        Ok(())
    }
}

impl TokenKind for Actor {
    const KIND: &'static str = "actor";

    fn validate(&self) -> Result<(), ClaimsError> {
        let check = Check::new(Self::KIND);
        check.optional_text("name", self.name.as_deref(), rules::MAX_NAME_CHARS)?;
        check.module_hash("hash", &self.module_hash)?;
        let tags = self.tag_list();
        check.count("tags", tags.len(), rules::MAX_TAGS)?;
        for (i, tag) in tags.iter().enumerate() {
            check.text(&format!("tags[{i}]"), tag, rules::MAX_TAG_CHARS)?;
        }
        let caps = self.capabilities();
        check.count("caps", caps.len(), rules::MAX_CAPS)?;
        for (i, capid) in caps.iter().enumerate() {
            check.capability(&format!("caps[{i}]"), capid)?;
        }
        check.revision(self.rev)?;
        check.optional_text("ver", self.ver.as_deref(), rules::MAX_VERSION_CHARS)?;
        if let Some(alias) = &self.call_alias {
            check.call_alias(alias)?;
        }
        Ok(())
    }
}

impl TokenKind for Account {
    const KIND: &'static str = "account";

    fn validate(&self) -> Result<(), ClaimsError> {
        let check = Check::new(Self::KIND);
        check.optional_text("name", self.name.as_deref(), rules::MAX_NAME_CHARS)?;
        signers(&check, self.valid_signers.as_deref(), KeyKind::Account)
    }
}

impl TokenKind for Operator {
    const KIND: &'static str = "operator";

    fn validate(&self) -> Result<(), ClaimsError> {
        let check = Check::new(Self::KIND);
        check.optional_text("name", self.name.as_deref(), rules::MAX_NAME_CHARS)?;
        signers(&check, self.valid_signers.as_deref(), KeyKind::Operator)
    }
}

impl TokenKind for WascapInvocation {
    const KIND: &'static str = "invocation";
}

impl TokenKind for CapabilityProvider {
    const KIND: &'static str = "capability provider";

    fn validate(&self) -> Result<(), ClaimsError> {
        let check = Check::new(Self::KIND);
        check.optional_text("name", self.name.as_deref(), rules::MAX_NAME_CHARS)?;
        check.namespaced_capability("capid", &self.capid)?;
        check.text("vendor", &self.vendor, rules::MAX_NAME_CHARS)?;
        check.revision(self.rev)?;
        check.optional_text("ver", self.ver.as_deref(), rules::MAX_VERSION_CHARS)?;
        check.count(
            "target_hashes",
            self.target_hashes.len(),
            rules::MAX_TARGETS,
        )?;
        // Sorted, so the first offender reported is the same every time.
        let mut targets: Vec<(&String, &String)> = self.target_hashes.iter().collect();
        targets.sort();
        for (target, hash) in targets {
            check.target("target_hashes", target)?;
            check.library_hash(&format!("target_hashes[{target}]"), hash)?;
        }
        Ok(())
    }
}

fn signers(check: &Check, signers: Option<&[String]>, kind: KeyKind) -> Result<(), ClaimsError> {
    let signers = signers.unwrap_or(&[]);
    check.count("valid_signers", signers.len(), rules::MAX_SIGNERS)?;
    for (i, key) in signers.iter().enumerate() {
        check.key(&format!("valid_signers[{i}]"), key, kind)?;
    }
    Ok(())
}

impl<T: TokenKind> Claims<T> {
    /// Starts a builder.
    pub fn builder() -> ClaimsBuilder<T> {
        ClaimsBuilder::new()
    }

    /// Signs these claims with `issuer`, producing a compact JWT.
    ///
    /// Refuses a key pair whose public key is not the `iss` of the claims,
    /// because such a token could never verify. It does **not** check the
    /// metadata against [`crate::rules`] (it is the plain JWT encoder, and
    /// tests use it to mint hostile tokens); [`crate::embed_claims`] does,
    /// and so does every [`crate::Verifier`] reading the token.
    pub fn encode(&self, issuer: &KeyPair) -> Result<String, ClaimsError> {
        let signer = issuer.public_key();
        if signer != self.issuer {
            return Err(ClaimsError::SignerMismatch {
                claimed: self.issuer.clone(),
                actual: signer,
            });
        }
        let header = segment(&Header {
            typ: HEADER_TYP.to_string(),
            alg: HEADER_ALG.to_string(),
        })?;
        let claims = segment(self)?;
        let signing_input = format!("{header}.{claims}");
        let signature = issuer.sign(signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            BASE64URL_NOPAD.encode(&signature)
        ))
    }

    /// Decodes a token **without checking anything** but its shape.
    ///
    /// Use [`crate::Verifier`] for anything that grants trust; this is for
    /// tools that show what a token says.
    pub fn decode_unverified(jwt: &str) -> Result<Claims<T>, ClaimsError> {
        Ok(parse(jwt)?.claims)
    }

    /// The `wascap` metadata, or an error naming the missing kind.
    pub fn metadata(&self) -> Result<&T, ClaimsError> {
        self.metadata
            .as_ref()
            .ok_or(ClaimsError::MissingMetadata { expected: T::KIND })
    }
}

/// A token split into its parts, header checked, claims decoded.
pub(crate) struct Parsed<T> {
    pub(crate) signing_input: String,
    pub(crate) signature: Vec<u8>,
    pub(crate) claims: Claims<T>,
}

pub(crate) fn parse<T: DeserializeOwned>(jwt: &str) -> Result<Parsed<T>, ClaimsError> {
    let jwt = jwt.trim();
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ClaimsError::malformed_token(format!(
            "expected 3 dot-separated segments, found {}",
            jwt.split('.').count()
        )));
    };
    let header: Header = from_segment(h, "header")?;
    if header.alg != HEADER_ALG || !header.typ.eq_ignore_ascii_case(HEADER_TYP) {
        return Err(ClaimsError::UnsupportedHeader {
            alg: crate::display::escape(&header.alg, crate::display::DISPLAY_CHARS),
            typ: crate::display::escape(&header.typ, crate::display::DISPLAY_CHARS),
        });
    }
    let claims: Claims<T> = from_segment(c, "claims")?;
    let signature = BASE64URL_NOPAD
        .decode(s.as_bytes())
        .map_err(|e| ClaimsError::malformed_token(format!("signature is not base64url: {e}")))?;
    Ok(Parsed {
        signing_input: format!("{h}.{c}"),
        signature,
        claims,
    })
}

fn segment<S: Serialize>(value: &S) -> Result<String, ClaimsError> {
    let json = serde_json::to_vec(value)
        .map_err(|e| ClaimsError::malformed_token(format!("cannot serialize: {e}")))?;
    Ok(BASE64URL_NOPAD.encode(&json))
}

fn from_segment<D: DeserializeOwned>(seg: &str, what: &str) -> Result<D, ClaimsError> {
    let bytes = BASE64URL_NOPAD
        .decode(seg.as_bytes())
        .map_err(|e| ClaimsError::malformed_token(format!("{what} is not base64url: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ClaimsError::malformed_token(format!("{what} is not the expected JSON: {e}")))
}

/// Builds [`Claims`], filling `jti` and `iat` unless given.
#[derive(Debug, Clone)]
pub struct ClaimsBuilder<T> {
    claims: Claims<T>,
    id_set: bool,
    iat_set: bool,
}

impl<T: TokenKind> ClaimsBuilder<T> {
    /// An empty builder.
    pub fn new() -> Self {
        ClaimsBuilder {
            claims: Claims {
                expires: None,
                id: String::new(),
                issued_at: 0,
                issuer: String::new(),
                subject: String::new(),
                not_before: None,
                metadata: None,
                wascap_revision: None,
            },
            id_set: false,
            iat_set: false,
        }
    }

    /// `iss`
    pub fn issuer(mut self, key: impl Into<String>) -> Self {
        self.claims.issuer = key.into();
        self
    }

    /// `sub`
    pub fn subject(mut self, key: impl Into<String>) -> Self {
        self.claims.subject = key.into();
        self
    }

    /// `exp` = issue time + `d`.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.claims.expires = Some(self.iat().saturating_add(d.as_secs()));
        self
    }

    /// `exp` at an absolute time.
    pub fn expires_at(mut self, secs: u64) -> Self {
        self.claims.expires = Some(secs);
        self
    }

    /// `nbf` = issue time + `d`.
    pub fn valid_in(mut self, d: Duration) -> Self {
        self.claims.not_before = Some(self.iat().saturating_add(d.as_secs()));
        self
    }

    /// `nbf` at an absolute time.
    pub fn not_before(mut self, secs: u64) -> Self {
        self.claims.not_before = Some(secs);
        self
    }

    /// `jti`; default: a fresh NUID.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.claims.id = id.into();
        self.id_set = true;
        self
    }

    /// `iat`; default: now.
    pub fn issued_at(mut self, secs: u64) -> Self {
        self.claims.issued_at = secs;
        self.iat_set = true;
        self
    }

    /// `wascap_revision`.
    pub fn wascap_revision(mut self, rev: u32) -> Self {
        self.claims.wascap_revision = Some(rev);
        self
    }

    /// The `wascap` metadata.
    pub fn metadata(mut self, metadata: T) -> Self {
        self.claims.metadata = Some(metadata);
        self
    }

    /// The claims.
    pub fn build(mut self) -> Claims<T> {
        if !self.id_set {
            self.claims.id = nuid::next().to_string();
        }
        self.claims.issued_at = self.iat();
        self.claims
    }

    fn iat(&mut self) -> u64 {
        if !self.iat_set {
            self.claims.issued_at = crate::time::now_secs();
            self.iat_set = true;
        }
        self.claims.issued_at
    }
}

impl<T: TokenKind> Default for ClaimsBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyKind;

    #[test]
    fn encode_refuses_a_signer_that_is_not_the_issuer() {
        let a = KeyPair::generate(KeyKind::Account);
        let b = KeyPair::generate(KeyKind::Account);
        let claims = Claims::<Actor>::builder()
            .issuer(a.public_key())
            .subject("M")
            .metadata(Actor::named("x"))
            .build();
        assert!(matches!(
            claims.encode(&b),
            Err(ClaimsError::SignerMismatch { .. })
        ));
    }

    #[test]
    fn malformed_tokens_are_typed_errors() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "eyJ0eXAiOiJqd3QifQ.e30.AA",
        ] {
            let err = Claims::<Actor>::decode_unverified(bad).unwrap_err();
            assert!(
                matches!(err, ClaimsError::MalformedToken { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
        let claims = BASE64URL_NOPAD.encode(br#"{"jti":"x","iat":1,"iss":"A","sub":"M"}"#);
        let err =
            Claims::<Actor>::decode_unverified(&format!("{header}.{claims}.AAAA")).unwrap_err();
        assert!(
            matches!(err, ClaimsError::UnsupportedHeader { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn builder_times_are_relative_to_iat() {
        let c = Claims::<Actor>::builder()
            .issued_at(1000)
            .expires_in(Duration::from_secs(10))
            .valid_in(Duration::from_secs(5))
            .build();
        assert_eq!(c.expires, Some(1010));
        assert_eq!(c.not_before, Some(1005));
        assert_eq!(c.id.len(), 22);
    }
}
