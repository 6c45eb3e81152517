//! Signed actors and provider archives in OCI registries.
//!
//! # A guided tour
//!
//! An actor is a signed `.wasm` file and a provider is a signed `.par`
//! archive; both can live in any registry that speaks the OCI Distribution
//! API (Docker's `registry`, Harbor, GHCR, ECR, Zot…), named by a reference
//! such as `oci://registry.example:5000/team/hello:1.2.0`.
//!
//! * [`ArtifactRef`] parses a reference. Tags move, so `:latest` and
//!   untagged references are refused unless the caller allows them; a
//!   digest (`…@sha256:…`) pins the content.
//! * [`media`] is how the artifacts look in a registry: an actor is the
//!   CNCF Wasm OCI artifact (config `application/vnd.wasm.config.v0+json`,
//!   one `application/wasm` layer); a provider archive has its own
//!   documented types. A pull also accepts the layer types wasmCloud and
//!   waSCC pushed. The claims' name, version, issuer and subject are
//!   annotations, for people and tools; the host never trusts them.
//! * [`Registry`] pushes on the `oci-client` crate and pulls on a small
//!   client of its own that bounds every read (manifests, layers, error
//!   answers, token answers), checks a token service's scheme on the very
//!   challenge it answers, and never follows a redirect from HTTPS to plain
//!   HTTP. It treats the registry as untrusted transport: manifests and
//!   layers are checked against their digests, sizes are bounded before and
//!   during download, and a manifest of anything else is refused with its
//!   media types named.
//! * [`CredentialStore`] finds credentials: `WAXOSUIT_REGISTRY_USER` and
//!   `_PASSWORD` (or `_TOKEN`) for the one registry
//!   `WAXOSUIT_REGISTRY_HOST` names (required with them), else a Docker
//!   `config.json`, else none.
//!   Token exchanges (`WWW-Authenticate: Bearer`) go only to HTTPS token
//!   services (or plain HTTP ones on hosts named insecure).
//!   HTTPS always, except for registries named as insecure.
//! * [`Cache`] keeps pulled layers by digest under the host's cache
//!   directory, and [`Puller`] applies a [`PullPolicy`] so that a restart
//!   needs no network and a tag is resolved once per start.
//!
//! What comes out of a pull is bytes; the host then verifies them exactly
//! as it verifies a local file: claims, module hash, issuer trust, policy.
//! A layer whose bytes differ from what its embedded JWT hashes is refused
//! there.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod auth;
mod cache;
mod client;
mod error;
mod fetch;
pub mod media;
mod puller;
mod reference;

pub use auth::{
    CredentialError, CredentialStore, Credentials, HOST_ENV, PASSWORD_ENV, TOKEN_ENV, USER_ENV,
};
pub use cache::{Cache, CachedRef};
pub use client::{
    Artifact, DEFAULT_MAX_ARTIFACT_BYTES, MAX_MANIFEST_BYTES, Progress, Pushed, Registry,
    RegistryOptions, Resolved, Transfer, sha256_digest,
};
pub use error::RegistryError;
pub use fetch::{MAX_ERROR_BYTES, MAX_TOKEN_ANSWER_BYTES, MAX_TOKEN_BYTES};
pub use media::{ArtifactKind, ClaimsSummary};
pub use puller::{Fetched, PullPolicy, Puller};
pub use reference::{ArtifactRef, MAX_REFERENCE_LEN, SCHEME, is_reference};
