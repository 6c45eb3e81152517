//! Fail-closed verification: the only way to get a [`Verified`] value.

use std::collections::HashSet;
use std::time::Duration;

use crate::jwt::{self, Account, Actor, CapabilityProvider, Claims, Operator, TokenKind};
use crate::keys::{KeyKind, KeyPair};
use crate::{ClaimsError, wasm};

/// Claims that passed every check of a [`Verifier`].
///
/// There is no public constructor: holding one proves the signature, the key
/// roles, every field against [`crate::rules`], the validity window, the
/// module hash (for actors) and, for actors, provider archives and account
/// tokens, the issuer's trust were all checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified<T> {
    claims: Claims<T>,
    metadata: T,
    jwt: String,
}

impl<T> Verified<T> {
    /// The verified claims.
    pub fn claims(&self) -> &Claims<T> {
        &self.claims
    }

    /// The `wascap` metadata (always present on a verified token).
    pub fn metadata(&self) -> &T {
        &self.metadata
    }

    /// The token as it was signed.
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// `iss`
    pub fn issuer(&self) -> &str {
        &self.claims.issuer
    }

    /// `sub`
    pub fn subject(&self) -> &str {
        &self.claims.subject
    }
}

/// A verified actor: its module key, issuer and granted capabilities.
pub type VerifiedActor = Verified<Actor>;

impl Verified<Actor> {
    /// The actor's identity: its `M…` module public key.
    pub fn public_key(&self) -> &str {
        &self.claims.subject
    }

    /// The actor's name, or its key when unnamed.
    pub fn name(&self) -> &str {
        self.metadata
            .name
            .as_deref()
            .unwrap_or(&self.claims.subject)
    }

    /// Capability ids granted by the signature.
    pub fn capabilities(&self) -> &[String] {
        self.metadata.capabilities()
    }

    /// Whether the signature grants `capid` (or names `capid` as a callable actor).
    pub fn has_capability(&self, capid: &str) -> bool {
        self.capabilities().iter().any(|c| c == capid)
    }

    /// Whether the module was signed as a Proxy-Wasm HTTP filter: its tags
    /// include [`crate::PROXY_WASM_FILTER_TAG`]. Hosts run such a module
    /// only as a filter, and any other only as an actor. The tag says what
    /// the signer meant; whether the module exports a supported ABI marker
    /// is [`crate::proxy_wasm_abi`]'s to tell.
    pub fn is_proxy_wasm_filter(&self) -> bool {
        self.metadata.is_proxy_wasm_filter()
    }
}

/// Verification policy: clock skew, clock, and whom to trust.
///
/// A verifier fails closed: [`Verifier::new`] trusts **no** issuer, so it
/// refuses every actor and provider archive
/// ([`ClaimsError::NoTrustedIssuer`]) until told whom to trust. An issuer
/// is trusted directly ([`trust_issuer`](Verifier::trust_issuer)), or through
/// an account token ([`with_account_token`](Verifier::with_account_token))
/// issued by a trusted operator ([`trust_operator`](Verifier::trust_operator),
/// [`trust_operator_token`](Verifier::trust_operator_token)):
/// operator → account → actor. [`allow_any_issuer`](Verifier::allow_any_issuer)
/// accepts any correctly signed token instead, for development.
#[derive(Debug, Clone)]
pub struct Verifier {
    clock_skew: Duration,
    fixed_now: Option<u64>,
    trusted_issuers: HashSet<String>,
    trusted_operators: HashSet<String>,
    account_tokens: Vec<String>,
    allow_any_issuer: bool,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

/// Default tolerance for clocks that disagree between signer and host.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(30);

impl Verifier {
    /// A verifier with the default clock skew that trusts no issuer yet:
    /// it refuses every actor, provider archive and account token until an
    /// issuer or operator is trusted, or [`allow_any_issuer`](Self::allow_any_issuer)
    /// is set.
    pub fn new() -> Self {
        Verifier {
            clock_skew: DEFAULT_CLOCK_SKEW,
            fixed_now: None,
            trusted_issuers: HashSet::new(),
            trusted_operators: HashSet::new(),
            account_tokens: Vec::new(),
            allow_any_issuer: false,
        }
    }

    /// Accepts actors and provider archives from **any** account, and
    /// account tokens from any operator, as long as they are correctly
    /// signed, valid and well-formed. For development only: anyone with a key
    /// pair can then run code here. Trust lists configured as well are
    /// ignored.
    pub fn allow_any_issuer(mut self) -> Self {
        self.allow_any_issuer = true;
        self
    }

    /// Whether [`allow_any_issuer`](Self::allow_any_issuer) is set.
    pub fn allows_any_issuer(&self) -> bool {
        self.allow_any_issuer
    }

    /// How far `exp` and `nbf` may be off.
    pub fn with_clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// Verifies as if the time were `unix_secs` (tests, audits).
    pub fn at_time(mut self, unix_secs: u64) -> Self {
        self.fixed_now = Some(unix_secs);
        self
    }

    /// Trusts actors issued by this account key.
    pub fn trust_issuer(mut self, account_key: &str) -> Result<Self, ClaimsError> {
        expect_kind(account_key, KeyKind::Account, "a trusted issuer")?;
        self.trusted_issuers.insert(account_key.to_string());
        Ok(self)
    }

    /// Trusts accounts issued by this operator key.
    pub fn trust_operator(mut self, operator_key: &str) -> Result<Self, ClaimsError> {
        expect_kind(operator_key, KeyKind::Operator, "a trusted operator")?;
        self.trusted_operators.insert(operator_key.to_string());
        Ok(self)
    }

    /// Trusts a self-signed operator token: its key and its `valid_signers`.
    pub fn trust_operator_token(mut self, jwt: &str) -> Result<Self, ClaimsError> {
        let op = self.verify_operator(jwt)?;
        self.trusted_operators.insert(op.subject().to_string());
        for signer in op.metadata().valid_signers.iter().flatten() {
            expect_kind(signer, KeyKind::Operator, "an operator's valid signer")?;
            self.trusted_operators.insert(signer.clone());
        }
        Ok(self)
    }

    /// Offers an account token through which an actor's issuer may chain to a
    /// trusted operator. It is verified when used, so order does not matter.
    pub fn with_account_token(mut self, jwt: impl Into<String>) -> Self {
        self.account_tokens.push(jwt.into());
        self
    }

    /// Whether any issuer or operator is trusted (whatever
    /// [`allows_any_issuer`](Self::allows_any_issuer) says). Without one, and
    /// without allow-any, every actor is refused.
    pub fn has_trust_list(&self) -> bool {
        !self.trusted_issuers.is_empty() || !self.trusted_operators.is_empty()
    }

    fn now(&self) -> u64 {
        self.fixed_now.unwrap_or_else(crate::time::now_secs)
    }

    /// Verifies a signed module: extracts its token and checks signature, key
    /// roles, fields, module hash, validity window and the issuer's trust.
    pub fn verify_actor(&self, module: &[u8]) -> Result<VerifiedActor, ClaimsError> {
        let extracted = wasm::extract(module)?;
        self.verify_actor_token(&extracted.jwt, &extracted.module_hash)
    }

    /// Verifies an actor token against the hash of the module it came with.
    pub fn verify_actor_token(
        &self,
        jwt: &str,
        module_hash: &str,
    ) -> Result<VerifiedActor, ClaimsError> {
        let verified =
            self.check::<Actor>(jwt, KeyKind::Account, KeyKind::Module, Issuance::ByOther)?;
        if verified.metadata.module_hash != module_hash {
            return Err(ClaimsError::ModuleHashMismatch {
                expected: verified.metadata.module_hash.clone(),
                actual: module_hash.to_string(),
            });
        }
        self.check_window(&verified.claims)?;
        self.check_issuer_trust(verified.issuer(), "actor")?;
        Ok(verified)
    }

    /// Verifies an actor token presented without its module, as another host
    /// of a lattice presents the claims of an actor it runs: signature, key
    /// roles, validity window and issuer trust. The module hash cannot be
    /// checked here; the host that holds the module checked it when it loaded
    /// the actor, and that host is itself authenticated by the lattice.
    pub fn verify_remote_actor_token(&self, jwt: &str) -> Result<VerifiedActor, ClaimsError> {
        let verified =
            self.check::<Actor>(jwt, KeyKind::Account, KeyKind::Module, Issuance::ByOther)?;
        self.check_window(&verified.claims)?;
        self.check_issuer_trust(verified.issuer(), "actor")?;
        Ok(verified)
    }

    /// Verifies a capability provider archive's token: issued by an account
    /// key to the provider's service (`V…`) key, every field well-formed,
    /// valid now, and issued by an account trusted exactly as an actor's
    /// issuer must be. The library hashes it lists are the archive's to
    /// check (`waxosuit-par` does).
    pub fn verify_provider(&self, jwt: &str) -> Result<Verified<CapabilityProvider>, ClaimsError> {
        let verified = self.check::<CapabilityProvider>(
            jwt,
            KeyKind::Account,
            KeyKind::Service,
            Issuance::ByOther,
        )?;
        self.check_window(&verified.claims)?;
        self.check_issuer_trust(verified.issuer(), "capability provider archive")?;
        Ok(verified)
    }

    /// Verifies an account token: issued by an operator key to an account
    /// key, and by a trusted operator (any operator with
    /// [`allow_any_issuer`](Self::allow_any_issuer)).
    pub fn verify_account(&self, jwt: &str) -> Result<Verified<Account>, ClaimsError> {
        let verified =
            self.check::<Account>(jwt, KeyKind::Operator, KeyKind::Account, Issuance::ByOther)?;
        self.check_window(&verified.claims)?;
        let issuer = verified.issuer();
        if self.allow_any_issuer || self.trusted_operators.contains(issuer) {
            return Ok(verified);
        }
        Err(if self.trusted_operators.is_empty() {
            ClaimsError::NoTrustedIssuer {
                what: "account token",
                issuer: issuer.to_string(),
            }
        } else {
            ClaimsError::UntrustedIssuer {
                issuer: issuer.to_string(),
            }
        })
    }

    /// Verifies a self-signed operator token.
    pub fn verify_operator(&self, jwt: &str) -> Result<Verified<Operator>, ClaimsError> {
        let verified =
            self.check::<Operator>(jwt, KeyKind::Operator, KeyKind::Operator, Issuance::BySelf)?;
        self.check_window(&verified.claims)?;
        Ok(verified)
    }

    /// Verifies any other kind of token (lattice invocations and sessions):
    /// signature, key roles, fields ([`TokenKind::validate`]) and validity
    /// window. Trust decisions for these belong to the caller, who knows
    /// which server keys count; provider archives have
    /// [`verify_provider`](Self::verify_provider), which decides trust too.
    pub fn verify_token<T: TokenKind>(
        &self,
        jwt: &str,
        issuer_kind: KeyKind,
        subject_kind: Option<KeyKind>,
    ) -> Result<Verified<T>, ClaimsError> {
        let verified = match subject_kind {
            Some(kind) => self.check::<T>(jwt, issuer_kind, kind, Issuance::ByOther)?,
            None => self.check_unkeyed_subject::<T>(jwt, issuer_kind)?,
        };
        self.check_window(&verified.claims)?;
        Ok(verified)
    }

    /// Signature, then who signed for whom, then what the metadata says.
    fn check<T: TokenKind>(
        &self,
        jwt: &str,
        issuer_kind: KeyKind,
        subject_kind: KeyKind,
        issuance: Issuance,
    ) -> Result<Verified<T>, ClaimsError> {
        let verified = self.check_signature::<T>(jwt)?;
        let claims = &verified.claims;
        if issuance == Issuance::ByOther && claims.issuer == claims.subject {
            return Err(ClaimsError::SelfIssued {
                key: claims.issuer.clone(),
            });
        }
        expect_kind(&claims.issuer, issuer_kind, issuer_role::<T>())?;
        expect_kind(&claims.subject, subject_kind, subject_role::<T>())?;
        verified.metadata.validate()?;
        Ok(verified)
    }

    fn check_unkeyed_subject<T: TokenKind>(
        &self,
        jwt: &str,
        issuer_kind: KeyKind,
    ) -> Result<Verified<T>, ClaimsError> {
        let verified = self.check_signature::<T>(jwt)?;
        expect_kind(&verified.claims.issuer, issuer_kind, issuer_role::<T>())?;
        verified.metadata.validate()?;
        Ok(verified)
    }

    /// The signature comes first: nothing a forged token says is worth
    /// reading. Only its size is judged before, so that a huge token costs
    /// nothing to refuse.
    fn check_signature<T: TokenKind>(&self, jwt: &str) -> Result<Verified<T>, ClaimsError> {
        crate::rules::Check::new(T::KIND).token_size(jwt.trim().len())?;
        let parsed = jwt::parse::<T>(jwt)?;
        let claims = parsed.claims;
        let issuer = KeyPair::from_public_key(&claims.issuer)?;
        if !issuer.verify(parsed.signing_input.as_bytes(), &parsed.signature) {
            return Err(ClaimsError::BadSignature {
                issuer: claims.issuer.clone(),
            });
        }
        let metadata = claims.metadata()?.clone();
        Ok(Verified {
            jwt: jwt.trim().to_string(),
            metadata,
            claims,
        })
    }

    fn check_window<T>(&self, claims: &Claims<T>) -> Result<(), ClaimsError> {
        let now = self.now();
        let skew = self.clock_skew.as_secs();
        if let Some(exp) = claims.expires
            && exp.saturating_add(skew) < now
        {
            return Err(ClaimsError::Expired { expires_at: exp });
        }
        if let Some(nbf) = claims.not_before
            && now.saturating_add(skew) < nbf
        {
            return Err(ClaimsError::NotYetValid { not_before: nbf });
        }
        Ok(())
    }

    /// Whether the account that issued an actor or a provider archive is
    /// trusted: anyone with allow-any, else on the trust list, else vouched
    /// for by an account token from a trusted operator. `what` names the
    /// refused thing in the error.
    fn check_issuer_trust(&self, issuer: &str, what: &'static str) -> Result<(), ClaimsError> {
        if self.allow_any_issuer || self.trusted_issuers.contains(issuer) {
            return Ok(());
        }
        let vouched = self.account_tokens.iter().any(|jwt| {
            self.verify_account(jwt).is_ok_and(|account| {
                account.subject() == issuer
                    || account
                        .metadata()
                        .valid_signers
                        .iter()
                        .flatten()
                        .any(|s| s == issuer)
            })
        });
        if vouched {
            Ok(())
        } else if self.has_trust_list() {
            Err(ClaimsError::UntrustedIssuer {
                issuer: issuer.to_string(),
            })
        } else {
            Err(ClaimsError::NoTrustedIssuer {
                what,
                issuer: issuer.to_string(),
            })
        }
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Issuance {
    ByOther,
    BySelf,
}

fn issuer_role<T: TokenKind>() -> &'static str {
    match T::KIND {
        "actor" => "the issuer of an actor token",
        "account" => "the issuer of an account token",
        "operator" => "the issuer of an operator token",
        "invocation" => "the issuer of an invocation token",
        "capability provider" => "the issuer of a provider archive",
        _ => "the issuer of this token",
    }
}

fn subject_role<T: TokenKind>() -> &'static str {
    match T::KIND {
        "actor" => "the subject of an actor token",
        "account" => "the subject of an account token",
        "operator" => "the subject of an operator token",
        "capability provider" => "the subject of a provider archive",
        _ => "the subject of this token",
    }
}

fn expect_kind(key: &str, expected: KeyKind, role: &'static str) -> Result<(), ClaimsError> {
    let actual = KeyKind::of_public_key(key)?;
    if actual == expected {
        Ok(())
    } else {
        Err(ClaimsError::WrongKeyKind {
            role,
            expected,
            actual,
            key: key.to_string(),
        })
    }
}
