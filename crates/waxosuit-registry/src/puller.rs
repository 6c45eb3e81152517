//! Turning a reference into bytes for one start of a host: the pull policy,
//! the cache, and "a tag is resolved once per start".

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::sync::Mutex;

use crate::cache::Cache;
use crate::client::{Progress, Registry, Resolved};
use crate::error::RegistryError;
use crate::media::ArtifactKind;
use crate::reference::ArtifactRef;

/// When a reference is fetched from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Resolve every reference at the registry once per start; download a
    /// layer only when it is not cached already.
    Always,
    /// Use the cache when it has the reference; ask the registry otherwise
    /// (the default: a restart needs no network).
    #[default]
    Missing,
    /// Use the cache only; a reference it lacks is an error.
    Never,
}

impl FromStr for PullPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Ok(PullPolicy::Always),
            "missing" => Ok(PullPolicy::Missing),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "`{s}` is not a pull policy; use always, missing or never"
            )),
        }
    }
}

/// An artifact ready to load.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The reference it was fetched for.
    pub reference: ArtifactRef,
    /// What the manifest said.
    pub resolved: Resolved,
    /// The layer's bytes (digest checked).
    pub bytes: Vec<u8>,
    /// Where the cache keeps them.
    pub path: PathBuf,
    /// Whether the registry was asked (false: served from the cache).
    pub contacted_registry: bool,
    /// Whether the layer was downloaded (false: it was cached).
    pub downloaded: bool,
}

/// Fetches references for one start of a host (or one command), through
/// the cache.
pub struct Puller {
    cache: Cache,
    policy: PullPolicy,
    registry: Registry,
    /// What each reference resolved to during this start.
    resolved: Mutex<HashMap<ArtifactRef, Resolved>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("cache", &self.cache)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Puller {
    /// A puller over `registry`, caching in `cache`.
    pub fn new(registry: Registry, cache: Cache, policy: PullPolicy) -> Puller {
        Puller {
            cache,
            policy,
            registry,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The cache in use.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The bytes `reference` names, which must be a `want` (either kind
    /// when `None`).
    pub async fn fetch(
        &self,
        reference: &ArtifactRef,
        want: Option<ArtifactKind>,
        progress: Option<Progress>,
    ) -> Result<Fetched, RegistryError> {
        // One resolution per reference per start, whatever the policy: two
        // actors naming the same tag run the same content.
        let mut memo = self.resolved.lock().await;
        let known = match memo.get(reference) {
            Some(resolved) => Some(resolved.clone()),
            None if self.policy != PullPolicy::Always => {
                self.cache.lookup(reference)?.map(|entry| entry.resolved)
            }
            None => None,
        };
        if let Some(resolved) = known {
            check_kind(reference, &resolved, want)?;
            if let Some(bytes) = self.cache.read_blob(&resolved.layer_digest)? {
                let path = self.cache.blob_path(&resolved.layer_digest)?;
                memo.insert(reference.clone(), resolved.clone());
                return Ok(Fetched {
                    reference: reference.clone(),
                    resolved,
                    bytes,
                    path,
                    contacted_registry: false,
                    downloaded: false,
                });
            }
        }
        if self.policy == PullPolicy::Never {
            return Err(RegistryError::NotCached {
                reference: reference.to_string(),
                cache: self.cache.root().to_path_buf(),
            });
        }
        let resolved = self.registry.resolve(reference, want).await?;
        let (bytes, downloaded) = match self.cache.read_blob(&resolved.layer_digest)? {
            Some(bytes) => (bytes, false),
            None => {
                let bytes = self
                    .registry
                    .fetch_layer(reference, &resolved, progress)
                    .await?;
                self.cache.write_blob(&resolved.layer_digest, &bytes)?;
                (bytes, true)
            }
        };
        self.cache.record(reference, &resolved)?;
        // The pinned form too, so `…@sha256:` finds it offline.
        let pinned = reference.pinned(&resolved.digest);
        if pinned != *reference {
            self.cache.record(&pinned, &resolved)?;
        }
        memo.insert(reference.clone(), resolved.clone());
        Ok(Fetched {
            reference: reference.clone(),
            path: self.cache.blob_path(&resolved.layer_digest)?,
            resolved,
            bytes,
            contacted_registry: true,
            downloaded,
        })
    }
}

fn check_kind(
    reference: &ArtifactRef,
    resolved: &Resolved,
    want: Option<ArtifactKind>,
) -> Result<(), RegistryError> {
    match want {
        Some(want) if want != resolved.kind => Err(RegistryError::WrongMediaType {
            reference: reference.to_string(),
            expected: format!("a {want}"),
            found: format!(
                "it holds a {} (layer `{}`)",
                resolved.kind, resolved.media_type
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_parse_in_any_case_and_name_the_choices() {
        assert_eq!("Always".parse::<PullPolicy>(), Ok(PullPolicy::Always));
        assert_eq!("missing".parse::<PullPolicy>(), Ok(PullPolicy::Missing));
        assert_eq!("NEVER".parse::<PullPolicy>(), Ok(PullPolicy::Never));
        let err = "sometimes".parse::<PullPolicy>().unwrap_err();
        assert!(err.contains("always, missing or never"), "{err}");
    }
}
