//! On-disk cache of compiled modules.
//!
//! An entry is `<dir>/modules/<sha256(module)>-<engine fingerprint>.cwasm`: the output
//! of [`Module::serialize`], one byte saying whether the module is the
//! pre-initialised form (see `snapshot`), and the SHA-256 of both. The
//! fingerprint hashes wasmtime's precompile-compatibility hash (its version
//! plus every codegen-relevant `Config` setting) and this crate's version, so
//! an engine never sees an artifact compiled for another configuration.
//!
//! This is the only module of the crate that uses `unsafe`:
//! [`Module::deserialize`] trusts its input to be machine code wasmtime
//! produced. The trailing checksum guarantees that the bytes are exactly the
//! ones this process family wrote (a torn or corrupted file is detected and
//! recompiled); the directory entries live in must be writable only by the
//! host, like its binaries. So they live in `modules`, a directory of the
//! host's own (made mode 0700, refused when it is someone else's or others
//! may write to it, checked again before each read), whatever the configured
//! directory is: a Kubernetes `emptyDir` (root's, mode 0777) or a shared
//! volume.

#![expect(
    unsafe_code,
    reason = "loading compiled modules from the cache needs Module::deserialize"
)]

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::snapshot::Prepared;

/// How a module was obtained when an actor was loaded or swapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheOutcome {
    /// The runtime has no cache directory; the module was compiled.
    Disabled,
    /// The compiled module was loaded from the cache; no compilation.
    Hit,
    /// No entry existed; the module was compiled and the entry written.
    Miss,
    /// An entry existed but was unusable (corrupt, truncated, incompatible);
    /// it was ignored, the module compiled and the entry rewritten.
    Rewritten,
}

/// Hex SHA-256 of the module bytes: the cache key and a stable module id.
pub(crate) fn module_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Feeds `Hash` output into SHA-256 so the fingerprint is stable across runs
/// (std's `DefaultHasher` makes no such promise).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        // Only `write` matters: the digest is taken from the inner state.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Fingerprint of everything besides the module bytes that the compiled code
/// depends on.
pub(crate) fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    // The entry layout: entries of an older layout must not parse as this one.
    hasher
        .0
        .update(b"entry: artifact, pre-initialised flag, sha256");
    let digest = hasher.0.finalize();
    hex(&digest[..8])
}

/// The compiled-module cache of one engine.
#[derive(Debug)]
pub(crate) struct ModuleCache {
    dir: Option<PathBuf>,
    fingerprint: String,
}

/// Entry name suffix for modules prepared with pre-initialisation off, so
/// runtimes configured either way never share an entry.
const PLAIN_SUFFIX: &str = "-plain";

impl ModuleCache {
    pub(crate) fn new(
        dir: Option<PathBuf>,
        engine: &Engine,
        preinitialize: bool,
    ) -> Result<Self, String> {
        let dir = match dir {
            Some(parent) => {
                fs::create_dir_all(&parent).map_err(|e| {
                    format!("cannot create cache directory {}: {e}", parent.display())
                })?;
                let own = parent.join(MODULES_DIR);
                make_private_dir(&own)?;
                check_private(&own)?;
                Some(own)
            }
            None => None,
        };
        let mut fingerprint = engine_fingerprint(engine);
        if !preinitialize {
            fingerprint.push_str(PLAIN_SUFFIX);
        }
        Ok(Self { dir, fingerprint })
    }

    fn entry_path(&self, dir: &Path, hash: &str) -> PathBuf {
        dir.join(format!("{hash}-{}.cwasm", self.fingerprint))
    }

    /// Path of the cache entry for a module hash, if the cache is enabled.
    pub(crate) fn path_for(&self, hash: &str) -> Option<PathBuf> {
        self.dir.as_deref().map(|dir| self.entry_path(dir, hash))
    }

    /// Loads the prepared module for `hash` from the cache, or builds it
    /// with `build` (and writes the entry). Build errors are returned as text.
    pub(crate) fn load_or_build(
        &self,
        engine: &Engine,
        hash: &str,
        build: impl FnOnce() -> Result<Prepared, String>,
    ) -> Result<(Prepared, CacheOutcome), String> {
        let Some(path) = self.path_for(hash) else {
            return build().map(|p| (p, CacheOutcome::Disabled));
        };
        // Checked again: the directory may have been replaced since start.
        if let Some(dir) = &self.dir
            && let Err(reason) = check_private(dir)
        {
            tracing::warn!(%reason, "compiled-module cache not used for this load");
            return build().map(|p| (p, CacheOutcome::Disabled));
        }
        let outcome = match fs::read(&path) {
            Ok(entry) => match load_entry(engine, &entry) {
                Some(prepared) => return Ok((prepared, CacheOutcome::Hit)),
                None => {
                    tracing::warn!(path = %path.display(), "ignoring unusable compiled-module cache entry");
                    CacheOutcome::Rewritten
                }
            },
            Err(_) => CacheOutcome::Miss,
        };
        let prepared = build()?;
        if !prepared.cacheable {
            return Ok((prepared, outcome));
        }
        // A failed write only costs the next start a compilation.
        if let Err(e) = write_entry(&path, &prepared) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write compiled-module cache entry");
        }
        Ok((prepared, outcome))
    }
}

/// The directory of the host's own under the configured one.
const MODULES_DIR: &str = "modules";

/// Makes `dir` (not its parents) readable and writable by this user only,
/// unless it exists.
fn make_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "cannot create cache directory {}: {e}",
            dir.display()
        )),
    }
}

/// Refuses a directory of entries that is not a directory of this user's
/// own that only this user may write: an entry is native code run as it is
/// found (its checksum is a plain hash anyone can compute), so whoever may
/// put a file there may run code in this host.
#[cfg(unix)]
fn check_private(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let fix = "remove it (the host makes it again, its own) or choose another cache directory";
    let meta = fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot read cache directory {}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!(
            "cache directory {} is not a directory (a symbolic link?); {fix}",
            dir.display()
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "cache directory {} belongs to user {}, not to this user ({me}): compiled modules \
             found there would run as native code; {fix}",
            dir.display(),
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "cache directory {} may be written by others (mode {:o}): compiled modules found \
             there would run as native code; `chmod 700` it, or {fix}",
            dir.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> Result<(), String> {
    Ok(())
}

const CHECKSUM_LEN: usize = 32;

fn load_entry(engine: &Engine, entry: &[u8]) -> Option<Prepared> {
    let split = entry.len().checked_sub(CHECKSUM_LEN)?;
    let (body, checksum) = entry.split_at(split);
    if Sha256::digest(body).as_slice() != checksum {
        return None;
    }
    let (&flag, artifact) = body.split_last()?;
    let preinitialized = match flag {
        0 => false,
        1 => true,
        _ => return None,
    };
    // SAFETY: `artifact` is byte-for-byte what `Module::serialize` produced in
    // `write_entry` for an engine with the same fingerprint (the checksum
    // above rules out torn writes and corruption), which is the contract of
    // `Module::deserialize`. wasmtime additionally checks its own header and
    // rejects artifacts from other versions or configurations.
    let module = unsafe { Module::deserialize(engine, artifact) }.ok()?;
    Some(Prepared {
        module,
        preinitialized,
        cacheable: true,
    })
}

fn write_entry(path: &Path, prepared: &Prepared) -> Result<(), String> {
    let mut body = prepared.module.serialize().map_err(|e| format!("{e:#}"))?;
    body.push(u8::from(prepared.preinitialized));
    let checksum = Sha256::digest(&body);
    let dir = path.parent().ok_or("cache path has no parent")?;
    // Write to a unique temporary file and rename, so concurrent writers and
    // readers only ever see complete entries.
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}-{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry"),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(&body)?;
        file.write_all(&checksum)
    });
    let result = written.and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        // Best effort: a leftover temporary file is harmless but untidy.
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn entries_live_in_a_private_directory_whatever_the_configured_one() {
        use std::os::unix::fs::PermissionsExt;
        let engine = Engine::default();
        let root = tempfile::tempdir().unwrap();
        // An emptyDir is mode 0777: the entries go to a directory of our own.
        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let cache = ModuleCache::new(Some(shared.clone()), &engine, true).unwrap();
        let own = shared.join(MODULES_DIR);
        assert_eq!(cache.path_for("h").unwrap().parent(), Some(own.as_path()));
        let mode = fs::metadata(&own).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // Opened up (or planted open) by someone: refused, at start and on load.
        fs::set_permissions(&own, fs::Permissions::from_mode(0o777)).unwrap();
        let err = ModuleCache::new(Some(shared.clone()), &engine, true).unwrap_err();
        assert!(err.contains("may be written by others (mode 777)"), "{err}");
        let (_, outcome) = cache
            .load_or_build(&engine, "h", || {
                Ok(Prepared {
                    module: Module::new(&engine, b"\0asm\x01\0\0\0").unwrap(),
                    preinitialized: false,
                    cacheable: true,
                })
            })
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Disabled);
        assert_eq!(
            fs::read_dir(&own).unwrap().count(),
            0,
            "an entry was written"
        );
        // A link in its place: refused.
        fs::remove_dir(&own).unwrap();
        std::os::unix::fs::symlink(root.path(), &own).unwrap();
        let err = ModuleCache::new(Some(shared.clone()), &engine, true).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        // Another user's (only root may give a directory away).
        fs::remove_file(&own).unwrap();
        fs::create_dir(&own).unwrap();
        fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
        if rustix::process::geteuid().is_root()
            && std::os::unix::fs::chown(&own, Some(65534), None).is_ok()
        {
            let err = ModuleCache::new(Some(shared), &engine, true).unwrap_err();
            assert!(err.contains("belongs to user 65534"), "{err}");
        }
    }

    #[test]
    fn hex_is_lowercase_and_complete() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        assert_eq!(module_hash(b"").len(), 64);
    }

    #[test]
    fn truncated_or_tampered_entries_are_rejected() {
        let engine = Engine::default();
        assert!(load_entry(&engine, b"short").is_none());
        let mut entry = vec![0u8; 64];
        let digest = Sha256::digest(&entry[..32]);
        entry[32..].copy_from_slice(&digest);
        // Checksum matches but the artifact is not a wasmtime artifact.
        assert!(load_entry(&engine, &entry).is_none());
        entry[0] = 1;
        assert!(load_entry(&engine, &entry).is_none());

        // A real artifact with an intact checksum but an unknown flag byte.
        let module = Module::new(&engine, b"\0asm\x01\0\0\0").expect("compiles");
        let mut body = module.serialize().expect("serializes");
        body.push(2);
        let mut entry = body.clone();
        entry.extend_from_slice(&Sha256::digest(&body));
        assert!(load_entry(&engine, &entry).is_none());
        let last = body.len() - 1;
        body[last] = 1;
        let mut entry = body.clone();
        entry.extend_from_slice(&Sha256::digest(&body));
        assert!(load_entry(&engine, &entry).is_some_and(|p| p.preinitialized));
        body[last] = 0;
        let mut entry = body.clone();
        entry.extend_from_slice(&Sha256::digest(&body));
        assert!(load_entry(&engine, &entry).is_some_and(|p| !p.preinitialized));
    }
}
