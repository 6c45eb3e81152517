//! Signed capability claims for Waxosuit actors.
//!
//! Every actor is a wasm module carrying a JWT in a custom section. The token
//! says who the actor is (its `M…` module key, the `sub`), who vouches for it
//! (an `A…` account key, the `iss`), what module it is (a hash of the code),
//! when it is valid, and which capabilities it may use. A host runs an actor
//! only after [`Verifier::verify_actor`] returns a [`VerifiedActor`].
//!
//! # A guided tour
//!
//! * [`keys`]: nkeys identities. [`KeyPair::generate`] makes an account,
//!   module, server, operator, service, user or cluster key; public keys are
//!   56 characters, seeds 58 (`SA…`, `SM…`).
//! * [`jwt`]: [`Claims<T>`] with a [`ClaimsBuilder`], and the metadata kinds
//!   [`Actor`], [`Account`], [`Operator`], [`WascapInvocation`] and
//!   [`CapabilityProvider`]. Tokens are bytewise the ones the public `wascap`
//!   crate writes.
//! * [`wasm`]: [`embed_claims`] signs a module; [`module_hash`] is what the
//!   token's `hash` must equal.
//! * [`proxy_wasm`]: Proxy-Wasm HTTP filters, signed like actors:
//!   [`proxy_wasm_abi`] reads a module's ABI marker export, and the
//!   [`PROXY_WASM_FILTER_TAG`] in the claims says a module was signed as a
//!   filter ([`VerifiedActor::is_proxy_wasm_filter`]).
//! * [`Verifier`]: the one door to trust. It fails closed and returns a
//!   distinct [`ClaimsError`] for each reason: unsigned, malformed, bad
//!   signature, a field outside the [`rules`] (invalid claim), tampered
//!   (hash mismatch), expired, not yet valid, wrong key kinds, self-issued,
//!   no trusted issuer configured, untrusted issuer.
//! * [`rules`]: what every field may hold (capability ids, tags, names,
//!   versions, call aliases, hashes, sizes), and [`display`]: how tools show
//!   token text without letting it panic them or rewrite the terminal.
//!
//! ```
//! use waxosuit_claims::{embed_claims, caps, Actor, Claims, KeyKind, KeyPair, Verifier};
//!
//! let account = KeyPair::generate(KeyKind::Account);
//! let module = KeyPair::generate(KeyKind::Module);
//! let claims = Claims::<Actor>::builder()
//!     .issuer(account.public_key())
//!     .subject(module.public_key())
//!     .metadata(Actor {
//!         caps: Some(vec![caps::KEY_VALUE.to_string()]),
//!         ..Actor::named("counter")
//!     })
//!     .build();
//! let wasm = b"\0asm\x01\0\0\0"; // the smallest valid module
//! let signed = embed_claims(wasm, &claims, &account)?;
//!
//! // A verifier trusts no one until told whom to trust:
//! let err = Verifier::new().verify_actor(&signed).unwrap_err();
//! assert_eq!(err.kind(), "no_trusted_issuer");
//!
//! // Accept actors from our own account:
//! let verifier = Verifier::new().trust_issuer(&account.public_key())?;
//! let actor = verifier.verify_actor(&signed)?;
//! assert_eq!(actor.public_key(), module.public_key());
//! assert!(actor.has_capability("wascc:keyvalue"));
//! # Ok::<(), waxosuit_claims::ClaimsError>(())
//! ```
//!
//! # Trust
//!
//! There is no implicit trust: [`Verifier::new`] refuses every actor and
//! provider archive with [`ClaimsError::NoTrustedIssuer`]. With
//! [`Verifier::trust_issuer`], [`Verifier::trust_operator`] or
//! [`Verifier::trust_operator_token`], the issuer must be trusted directly or
//! through an account token ([`Verifier::with_account_token`]) issued by a
//! trusted operator, whose subject is the issuer or lists it among its
//! `valid_signers`: operator → account → actor. [`Verifier::allow_any_issuer`]
//! accepts any correctly signed token, for development only.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod caps;
pub mod display;
mod error;
pub mod jwt;
pub mod keys;
pub mod proxy_wasm;
pub mod rules;
mod time;
mod verify;
pub mod wasm;

pub use error::ClaimsError;
pub use jwt::{
    Account, Actor, CapabilityProvider, Claims, ClaimsBuilder, Operator, TokenKind,
    WASCAP_REVISION, WascapInvocation,
};
pub use keys::{KeyKind, KeyPair};
pub use proxy_wasm::{PROXY_WASM_FILTER_TAG, ProxyWasmAbi, proxy_wasm_abi};
pub use time::{human_date, human_relative, now_secs};
pub use verify::{DEFAULT_CLOCK_SKEW, Verified, VerifiedActor, Verifier};
pub use wasm::{embed_claims, extract, module_hash, strip_signature};
