//! The local, content-addressed cache of pulled artifacts.
//!
//! Layout under the host's cache directory (the one compiled modules use):
//!
//! ```text
//! oci/blobs/sha256/<hex>      a layer's bytes, named by their digest
//! oci/refs/<hex>.json         what a reference resolved to (manifest and
//!                             layer digests, kind, claims), named by the
//!                             SHA-256 of the reference's text
//! ```
//!
//! A blob is checked against its name every time it is read, so a damaged
//! or altered file is refused (and removed) rather than run; the host still
//! verifies the module's claims after that, as for any file. Files are
//! written to a temporary name and renamed, so a crash leaves no half file.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::client::{Resolved, sha256_digest};
use crate::error::RegistryError;
use crate::reference::{ArtifactRef, check_digest};

/// The cache rooted at `<dir>/oci`.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// What the cache knows about one reference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CachedRef {
    /// The reference, as text.
    pub reference: String,
    /// What its manifest said.
    pub resolved: Resolved,
}

impl Cache {
    /// The cache under `dir` (usually the compiled-module cache directory).
    pub fn new(dir: impl AsRef<Path>) -> Cache {
        Cache {
            root: dir.as_ref().join("oci"),
        }
    }

    /// The cache's own directory (`<dir>/oci`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with `digest` is kept.
    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, RegistryError> {
        check_digest(digest).map_err(|reason| RegistryError::InvalidReference {
            reference: digest.to_string(),
            reason,
        })?;
        let hex = &digest["sha256:".len()..];
        Ok(self.root.join("blobs").join("sha256").join(hex))
    }

    fn ref_path(&self, reference: &ArtifactRef) -> PathBuf {
        let name = sha256_digest(reference.to_string().as_bytes());
        self.root
            .join("refs")
            .join(format!("{}.json", &name["sha256:".len()..]))
    }

    /// The blob with `digest`, if present and intact. A blob whose bytes do
    /// not match its name is removed and reported absent.
    pub fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let path = self.blob_path(digest)?;
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RegistryError::Cache { path, source }),
        };
        if sha256_digest(&bytes) != digest {
            tracing::warn!(path = %path.display(), "a cached blob does not match its digest; removing it");
            let _ = std::fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// Stores `bytes` under `digest` (which the caller has checked).
    pub fn write_blob(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf, RegistryError> {
        let path = self.blob_path(digest)?;
        write_atomically(&path, bytes)?;
        Ok(path)
    }

    /// What `reference` resolved to when last pulled, if anything.
    pub fn lookup(&self, reference: &ArtifactRef) -> Result<Option<CachedRef>, RegistryError> {
        let path = self.ref_path(reference);
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RegistryError::Cache { path, source }),
        };
        match serde_json::from_slice::<CachedRef>(&text) {
            // The record is a file like any other: its digests must be
            // well formed, and a pinned reference's must be the pin.
            Ok(entry)
                if entry.reference == reference.to_string()
                    && check_digest(&entry.resolved.digest).is_ok()
                    && check_digest(&entry.resolved.layer_digest).is_ok()
                    && reference
                        .digest()
                        .is_none_or(|pin| pin == entry.resolved.digest) =>
            {
                Ok(Some(entry))
            }
            // Unreadable or for another reference: treat as absent; the
            // next pull rewrites it.
            _ => Ok(None),
        }
    }

    /// Records what `reference` resolved to.
    pub fn record(
        &self,
        reference: &ArtifactRef,
        resolved: &Resolved,
    ) -> Result<(), RegistryError> {
        let entry = CachedRef {
            reference: reference.to_string(),
            resolved: resolved.clone(),
        };
        let text = serde_json::to_vec_pretty(&entry).unwrap_or_default();
        write_atomically(&self.ref_path(reference), &text)
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    let cache_err = |path: &Path, source| RegistryError::Cache {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir).map_err(|e| cache_err(dir, e))?;
    let mut tmp = tempfile_in(dir).map_err(|e| cache_err(dir, e))?;
    tmp.1.write_all(bytes).map_err(|e| cache_err(&tmp.0, e))?;
    tmp.1.sync_all().map_err(|e| cache_err(&tmp.0, e))?;
    drop(tmp.1);
    std::fs::rename(&tmp.0, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp.0);
        cache_err(path, e)
    })
}

/// A new file in `dir` with a name no other writer uses.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Creates `dir` and its parents, readable and writable by this user only
/// (what runs from the cache must not be writable by others).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{ArtifactKind, ClaimsSummary};

    fn resolved(layer: &str) -> Resolved {
        Resolved {
            digest: sha256_digest(b"manifest"),
            kind: ArtifactKind::Actor,
            media_type: crate::media::WASM_LAYER.into(),
            layer_digest: layer.into(),
            size: 5,
            claims: ClaimsSummary::default(),
        }
    }

    #[test]
    fn blobs_and_references_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let digest = sha256_digest(b"hello");
        assert_eq!(cache.read_blob(&digest).unwrap(), None);
        let path = cache.write_blob(&digest, b"hello").unwrap();
        assert!(path.starts_with(dir.path().join("oci/blobs/sha256")));
        assert_eq!(cache.read_blob(&digest).unwrap().unwrap(), b"hello");

        let r = ArtifactRef::parse("oci://127.0.0.1:5000/a:1", false).unwrap();
        assert_eq!(cache.lookup(&r).unwrap(), None);
        cache.record(&r, &resolved(&digest)).unwrap();
        let entry = cache.lookup(&r).unwrap().unwrap();
        assert_eq!(entry.resolved.layer_digest, digest);
        let other = ArtifactRef::parse("oci://127.0.0.1:5000/a:2", false).unwrap();
        assert_eq!(cache.lookup(&other).unwrap(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("oci/blobs"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the cache is private: {mode:o}");
        }
    }

    #[test]
    fn a_record_that_contradicts_its_pin_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let layer = sha256_digest(b"hello");
        let pin = sha256_digest(b"manifest");
        let r = ArtifactRef::parse(&format!("oci://127.0.0.1:5000/a@{pin}"), false).unwrap();
        let mut entry = resolved(&layer);
        cache.record(&r, &entry).unwrap();
        assert!(cache.lookup(&r).unwrap().is_some());
        entry.digest = sha256_digest(b"another manifest");
        cache.record(&r, &entry).unwrap();
        assert_eq!(cache.lookup(&r).unwrap(), None);
        entry.layer_digest = "sha256:../../x".into();
        let tag = ArtifactRef::parse("oci://127.0.0.1:5000/a:1", false).unwrap();
        cache.record(&tag, &entry).unwrap();
        assert_eq!(cache.lookup(&tag).unwrap(), None);
    }

    #[test]
    fn an_altered_blob_is_refused_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let digest = sha256_digest(b"hello");
        let path = cache.write_blob(&digest, b"hello").unwrap();
        std::fs::write(&path, b"evil!").unwrap();
        assert_eq!(cache.read_blob(&digest).unwrap(), None);
        assert!(!path.exists());
    }

    #[test]
    fn a_digest_that_is_not_sha256_names_no_file() {
        let cache = Cache::new("/tmp/unused");
        assert!(cache.blob_path("sha256:../../etc/passwd").is_err());
        assert!(cache.blob_path("md5:abc").is_err());
    }
}
