//! What can go wrong, each with the reference, the registry's answer and
//! what to do.

use std::path::PathBuf;

use oci_client::errors::{OciDistributionError, OciErrorCode};

use crate::auth::{PASSWORD_ENV, USER_ENV};
use crate::reference::shown;

/// A registry operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The credentials in the environment cannot be used as given.
    #[error("{reference}: {source}")]
    Credentials {
        /// The reference.
        reference: String,
        /// What is wrong with them.
        source: crate::auth::CredentialError,
    },
    /// The text is not a reference this host accepts.
    #[error(
        "`{reference}` is not a valid registry reference: {reason} (write oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST)"
    )]
    InvalidReference {
        /// The reference as given (cut short).
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tag that can move (`:latest`, or none) without `--allow-latest`.
    #[error(
        "refusing `{reference}`: {why}; name a version tag or pin a digest (…@sha256:…), or pass --allow-latest"
    )]
    Unpinned {
        /// The reference as given.
        reference: String,
        /// Why it is not pinned.
        why: String,
    },
    /// The registry refused the credentials, or wants some.
    #[error("{reference}: the registry {registry} refused access ({answer}); {hint}")]
    Unauthorized {
        /// The reference.
        reference: String,
        /// The registry host.
        registry: String,
        /// What the registry answered.
        answer: String,
        /// Where credentials come from, and how to give others.
        hint: String,
    },
    /// The registry's token service is not HTTPS: credentials would cross
    /// the network in clear text to it.
    #[error(
        "{reference}: the registry names the token service {realm}, which is not HTTPS; not asking it (credentials and tokens would cross the network in clear text; name its host with --insecure-registry if this is a development setup on plain HTTP)"
    )]
    InsecureRealm {
        /// The reference.
        reference: String,
        /// The realm URL the registry named.
        realm: String,
    },
    /// No such repository, tag, digest or blob.
    #[error(
        "{reference}: not found in the registry ({answer}); check the repository and tag, or push it first with `waxosuit push`"
    )]
    NotFound {
        /// The reference.
        reference: String,
        /// What the registry answered.
        answer: String,
    },
    /// The manifest is not one of a Waxosuit artifact.
    #[error("{reference} is not {expected}: {found}")]
    WrongMediaType {
        /// The reference.
        reference: String,
        /// What was wanted ("an actor", "an actor or a provider archive").
        expected: String,
        /// What the manifest holds, with its media types named.
        found: String,
    },
    /// Content whose digest is not the one that names it.
    #[error(
        "{reference}: digest mismatch for the {what}: expected {expected}, got {actual}; the registry (or the cache) returned other content than the reference pins, so nothing was used"
    )]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The manifest or the layer.
        what: &'static str,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A manifest or layer larger than this host accepts.
    #[error(
        "{reference}: the {what} is {size} bytes, over the limit of {limit}; raise --max-artifact-mib if this artifact is right"
    )]
    TooLarge {
        /// The reference.
        reference: String,
        /// The manifest or the layer.
        what: &'static str,
        /// Its size, as announced or as counted.
        size: u64,
        /// The limit.
        limit: u64,
        /// What to do, when something can be done.
        hint: &'static str,
    },
    /// The registry took longer than the deadline.
    #[error(
        "{reference}: {action} took longer than {after:?}; check the registry, or raise --registry-timeout for a slow link"
    )]
    TimedOut {
        /// The reference.
        reference: String,
        /// What was being done.
        action: &'static str,
        /// The deadline.
        after: std::time::Duration,
    },
    /// `--pull never` and the reference is not in the cache.
    #[error(
        "{reference} is not in the local cache ({cache}) and --pull never forbids fetching it; run `waxosuit pull {reference}` first or use --pull missing"
    )]
    NotCached {
        /// The reference.
        reference: String,
        /// The cache directory.
        cache: PathBuf,
    },
    /// The file given to push is neither a signed actor nor an archive.
    #[error("{0}")]
    NotAnArtifact(String),
    /// Any other failure talking to the registry.
    #[error("{reference}: {action} failed{hint}")]
    Transport {
        /// The reference.
        reference: String,
        /// What was being done.
        action: &'static str,
        /// Advice, when the failure suggests some (plain HTTP, say).
        hint: String,
        /// The client's error.
        #[source]
        source: OciDistributionError,
    },
    /// The local cache could not be read or written.
    #[error("registry cache {path} cannot be used")]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What to tell a user whose credentials were refused or missing.
pub(crate) fn auth_hint(registry: &str, had_credentials: Option<&str>) -> String {
    match had_credentials {
        Some(from) => format!(
            "the credentials came from {from}; check them, or set {USER_ENV} and {PASSWORD_ENV} \
             to others"
        ),
        None => format!(
            "no credentials were sent; set {USER_ENV} and {PASSWORD_ENV}, or log in to \
             {registry} so that ~/.docker/config.json (or $DOCKER_CONFIG/config.json) holds them"
        ),
    }
}

/// Sorts a client error into the kinds a user acts on differently.
pub(crate) fn classify(
    reference: &str,
    registry: &str,
    action: &'static str,
    insecure: bool,
    credentials: Option<&str>,
    err: OciDistributionError,
) -> RegistryError {
    let unauthorized = |answer: String| RegistryError::Unauthorized {
        reference: reference.to_string(),
        registry: registry.to_string(),
        answer,
        hint: auth_hint(registry, credentials),
    };
    let not_found = |answer: String| RegistryError::NotFound {
        reference: reference.to_string(),
        answer,
    };
    match &err {
        OciDistributionError::UnauthorizedError { .. } => {
            return unauthorized("401 Unauthorized".to_string());
        }
        OciDistributionError::AuthenticationFailure(answer) => {
            return unauthorized(shown(answer));
        }
        OciDistributionError::ImageManifestNotFoundError(answer) => {
            return not_found(shown(answer));
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 | 403 => return unauthorized(format!("{code}: {}", shown(message.trim()))),
            404 => return not_found(format!("{code}: {}", shown(message.trim()))),
            _ => {}
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let answer = envelope
                .errors
                .iter()
                .take(4)
                .map(|e| format!("{:?}: {}", e.code, shown(&e.message)))
                .collect::<Vec<_>>()
                .join("; ");
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                return unauthorized(answer);
            }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                return not_found(answer);
            }
        }
        OciDistributionError::RequestError(e) => match e.status().map(|s| s.as_u16()) {
            Some(code @ (401 | 403)) => return unauthorized(format!("HTTP {code}")),
            Some(404) => return not_found("HTTP 404".to_string()),
            _ => {}
        },
        _ => {}
    }
    let hint = if !insecure
        && matches!(&err, OciDistributionError::RequestError(e) if e.status().is_none())
    {
        format!(
            " (if {registry} serves plain HTTP, name it with --insecure-registry {registry}; \
             development only)"
        )
    } else {
        String::new()
    };
    RegistryError::Transport {
        reference: reference.to_string(),
        action,
        hint,
        source: err,
    }
}
