//! Where the CLI keeps generated seeds, and how it reads `SEED_OR_FILE` arguments.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use waxosuit_claims::{KeyKind, KeyPair};

/// Environment variable that overrides the keys directory.
pub const KEYS_DIR_ENV: &str = "WAXOSUIT_KEYS";

/// The directory for generated keys: `$WAXOSUIT_KEYS`, else `~/.waxosuit/keys`.
pub fn keys_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(KEYS_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".waxosuit").join("keys")
}

/// Writes a seed to `path` readable by the owner only.
pub fn write_seed(path: &Path, kp: &KeyPair) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create key directory {}", dir.display()))?;
    }
    let seed = kp.seed()?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    file.write_all(seed.as_bytes())?;
    file.write_all(b"\n")?;
    #[cfg(unix)]
    {
        // `mode` only applies on creation; an existing file keeps its bits.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Reads a `SEED_OR_FILE` argument: a literal `S…` seed, or a file holding one.
pub fn load(arg: &str, role: &str) -> Result<KeyPair> {
    let looks_like_seed = arg.len() == 58 && arg.starts_with('S') && !Path::new(arg).exists();
    if looks_like_seed {
        return KeyPair::from_seed(arg).with_context(|| format!("invalid {role} seed"));
    }
    let text = fs::read_to_string(arg).with_context(|| {
        format!(
            "cannot read the {role} key file `{arg}` (pass a seed `S…` or a path to a .nk file)"
        )
    })?;
    KeyPair::from_seed(text.trim()).with_context(|| format!("invalid {role} seed in `{arg}`"))
}

/// Loads `name.nk` from the keys directory, generating it on first use.
/// Returns the key and a note for the user when a key was generated.
pub fn load_or_generate(name: &str, kind: KeyKind) -> Result<(KeyPair, Option<PathBuf>)> {
    let path = keys_dir().join(format!("{name}.nk"));
    if path.exists() {
        let kp = load(&path.to_string_lossy(), kind.name())?;
        if kp.kind() != kind {
            bail!(
                "{} holds {} key, but {} key is needed; move it away or pass the key explicitly",
                path.display(),
                kp.kind(),
                kind
            );
        }
        return Ok((kp, None));
    }
    let kp = KeyPair::generate(kind);
    write_seed(&path, &kp)?;
    Ok((kp, Some(path)))
}

/// A file-name-safe form of an actor name.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "actor".to_string() } else { s }
}
