//! Where the CLI keeps generated seeds, and how it reads `SEED_OR_FILE` arguments.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use waxosuit_claims::{KeyKind, KeyPair};

/// Environment variable that overrides the keys directory.
pub(crate) const KEYS_DIR_ENV: &str = "WAXOSUIT_KEYS";

/// The file (in [`keys_dir`]) holding the account that `claims sign` and
/// `par create` sign with when `--issuer` is omitted. `up`, `call` and
/// `inspect` trust it automatically.
pub(crate) const ACCOUNT_FILE: &str = "account.nk";

/// The directory for generated keys: `$WAXOSUIT_KEYS`, else `~/.waxosuit/keys`.
pub(crate) fn keys_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(KEYS_DIR_ENV) {
        return PathBuf::from(dir);
    }
    home_dir().join(".waxosuit").join("keys")
}

/// The user's home: `$HOME`, else the account database's entry, else `/`.
/// Never the working directory: a checked-out repository holding
/// `.waxosuit/keys/account.nk` would otherwise become a trusted issuer for
/// whoever ran the CLI there without `HOME` (a service, a container).
pub(crate) fn home_dir() -> PathBuf {
    std::env::home_dir()
        .filter(|home| home.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Writes a seed to `path`, readable by the owner only from the first byte.
///
/// The seed goes into a fresh file created with `O_CREAT | O_EXCL` and mode
/// 0600 next to `path`, which is then renamed over `path`: `O_EXCL` never
/// follows a symbolic link (POSIX), the file is private before anything is
/// written, and a reader sees the old key or the new one, never half of one.
/// A `path` that is itself a symbolic link is refused rather than replaced,
/// since whoever placed it meant the seed to land somewhere else.
///
/// An existing key at `path` is replaced: only for `keys gen --force`; see
/// [`create_seed`] for a write that never replaces one.
pub(crate) fn write_seed(path: &Path, kp: &KeyPair) -> Result<()> {
    publish_seed(path, kp, Publish::Replace).map(drop)
}

/// Seeds written by this process, which numbers their temporary files.
static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether [`create_seed`] wrote the key or found one there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// The new key is at the path.
    New,
    /// A file was there already; it is left as it was.
    Exists,
}

/// [`write_seed`], except that a file already at `path` is kept: the new
/// file is published with a hard link, which fails if the name exists, so
/// two processes creating the same key at once cannot overwrite each other
/// (the loser finds the winner's key), and a key nobody asked to replace is
/// never lost.
pub(crate) fn create_seed(path: &Path, kp: &KeyPair) -> Result<Created> {
    publish_seed(path, kp, Publish::Create)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    Replace,
    Create,
}

fn publish_seed(path: &Path, kp: &KeyPair, how: Publish) -> Result<Created> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        bail!(
            "refusing to write a seed to {}: it is a symbolic link; remove the link or choose \
             another file",
            path.display()
        );
    }
    let seed = kp.seed()?;
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file to write the seed to", path.display()))?;
    // Unique per process and per write: writers racing for one key each
    // have a temporary file of their own.
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let written = write_new_private(&temp, seed.as_bytes()).and_then(|()| match how {
        Publish::Replace => fs::rename(&temp, path)
            .map(|()| Created::New)
            .with_context(|| format!("cannot move the new key file into {}", path.display())),
        Publish::Create => {
            let linked = match fs::hard_link(&temp, path) {
                Ok(()) => Ok(Created::New),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::Exists),
                // A file system without hard links (vfat, some network and
                // FUSE mounts): created in place, still never over a file
                // that is there (`O_EXCL`); a reader may meet it half
                // written for an instant.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::Unsupported | std::io::ErrorKind::PermissionDenied
                    ) =>
                {
                    match write_new_private(path, seed.as_bytes()) {
                        Ok(()) => Ok(Created::New),
                        Err(_) if fs::symlink_metadata(path).is_ok() => Ok(Created::Exists),
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e).with_context(|| {
                    format!("cannot move the new key file into {}", path.display())
                }),
            };
            // The name at `path` (or the file that was there) remains.
            let _ = fs::remove_file(&temp);
            linked
        }
    });
    if written.is_err() {
        // Leave no stray copy of the seed behind.
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Creates `path` (it must not exist: a link or a file left there is an
/// error, never followed) with mode 0600, writes `bytes` and a newline, and
/// flushes them to disk.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create the key file {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write the key file {}", path.display()))
}

/// Creates the keys directory (and its parents) private to the owner.
fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create key directory {}", dir.display()))
}

/// Reads a `SEED_OR_FILE` argument: a literal `S…` seed, or a file holding one.
///
/// A literal seed that came from the command line (rather than, say, an
/// environment variable behind the option) still works, but is reported:
/// every user of the machine can read a process's arguments.
pub(crate) fn load(arg: &str, role: &str) -> Result<KeyPair> {
    // Env files often leave a newline or a space after the value.
    let arg = if Path::new(arg).exists() {
        arg
    } else {
        arg.trim()
    };
    let looks_like_seed = arg.len() == 58 && arg.starts_with('S') && !Path::new(arg).exists();
    if looks_like_seed {
        let kp = KeyPair::from_seed(arg).with_context(|| format!("invalid {role} seed"))?;
        if on_command_line(arg) {
            eprintln!("{}", command_line_seed_warning(role));
        }
        return Ok(kp);
    }
    // Never echo something that may be a (mistyped) seed.
    let shown = if arg.starts_with('S') && arg.len() >= 50 {
        "(a value that looks like a seed but is not a valid one)"
    } else {
        arg
    };
    let text = fs::read_to_string(arg).with_context(|| {
        format!(
            "cannot read the {role} key file `{shown}` (pass a seed `S…` or a path to a .nk file)"
        )
    })?;
    KeyPair::from_seed(text.trim()).with_context(|| format!("invalid {role} seed in `{arg}`"))
}

/// Whether `value` is (the end of) one of this process's arguments:
/// `--issuer SA…`, `--issuer=SA…` and `-iSA…` all leave it there.
fn on_command_line(value: &str) -> bool {
    std::env::args_os()
        .skip(1)
        .any(|a| a.to_string_lossy().ends_with(value))
}

/// A warning when `url`, the value of `flag`, carries a password or token
/// and was given on the command line (rather than in the environment
/// variable the flag also reads), which every user of the machine can read.
pub(crate) fn url_secret_warning(url: &str, flag: &str, variable: &str) -> Option<String> {
    // One server or a comma list of them, any of which may carry it.
    let carries = url.split(',').any(|one| {
        one.split_once("://")
            .and_then(|(_, rest)| rest.split(['/', '?', '#']).next())
            .is_some_and(|authority| authority.contains('@'))
    });
    if !carries || !on_command_line(url) {
        return None;
    }
    Some(format!(
        "warning: the {flag} URL carries a password or token and was given on the command line, \
         where every user of this machine can read it in the process list (ps, \
         /proc/PID/cmdline) and your shell may keep it in its history; set {variable} in the \
         environment instead, or use a credentials file (--creds)"
    ))
}

fn command_line_seed_warning(role: &str) -> String {
    format!(
        "warning: the {role} seed was given on the command line, where every user of this \
         machine can read it in the process list (ps, /proc/PID/cmdline) and your shell may keep \
         it in its history; \
         pass the path of a file holding it instead (mode 0600, e.g. from `waxosuit keys gen \
         KIND --output DIR`), or an environment variable where the option reads one"
    )
}

/// Loads `name.nk` from the keys directory, generating it on first use.
/// Returns the key and a note for the user when a key was generated.
pub(crate) fn load_or_generate(name: &str, kind: KeyKind) -> Result<(KeyPair, Option<PathBuf>)> {
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
    match create_seed(&path, &kp)? {
        Created::New => Ok((kp, Some(path))),
        // Another process made it first: use that one, as every signer must.
        Created::Exists => load_or_generate(name, kind),
    }
}

/// What the keys directory says about the local account ([`ACCOUNT_FILE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalAccount {
    /// There is no account file (nothing has been signed here yet).
    Absent(PathBuf),
    /// The account file holds this account's seed.
    Found {
        /// Its `A…` public key.
        key: String,
        /// The file.
        path: PathBuf,
    },
    /// There is a file, but it cannot be trusted as the local account.
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
}

/// The local account in [`keys_dir`].
pub(crate) fn local_account() -> LocalAccount {
    local_account_in(&keys_dir())
}

/// The local account in `dir`: the account `claims sign` uses without
/// `--issuer`, whose public key hosts trust automatically. A file that is not
/// an account seed, or that other users could rewrite (and so choose whom
/// this machine trusts), is reported as unusable instead.
pub(crate) fn local_account_in(dir: &Path) -> LocalAccount {
    let path = dir.join(ACCOUNT_FILE);
    let unusable = |reason: String| LocalAccount::Unusable {
        path: path.clone(),
        reason,
    };
    let meta = match fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return LocalAccount::Absent(path),
        Err(e) => return unusable(e.to_string()),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode();
        if mode & 0o022 != 0 {
            return unusable(format!(
                "other users may write to it (mode {:o}); `chmod 600` it",
                mode & 0o777
            ));
        }
        // Trusted because it is this user's own: a file another user owns
        // (placed in a shared or pre-existing directory) is their key.
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me && meta.uid() != 0 {
            return unusable(format!(
                "it belongs to user {}, not to this user ({me}); only an account file of your \
                 own is trusted automatically",
                meta.uid()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => return unusable(e.to_string()),
    };
    match KeyPair::from_seed(text.trim()) {
        Ok(kp) if kp.kind() == KeyKind::Account => LocalAccount::Found {
            key: kp.public_key(),
            path,
        },
        Ok(kp) => unusable(format!("it holds {} key, not an account key", kp.kind())),
        Err(e) => unusable(e.to_string()),
    }
}

/// A file-name-safe form of an actor name.
pub(crate) fn slug(name: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// `create_seed` never replaces a key: two processes making the same
    /// key at once both end up with the one that was written first.
    #[test]
    fn a_created_seed_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("account.nk");
        let first = KeyPair::generate(KeyKind::Account);
        assert_eq!(create_seed(&path, &first).unwrap(), Created::New);
        let second = KeyPair::generate(KeyKind::Account);
        assert_eq!(create_seed(&path, &second).unwrap(), Created::Exists);
        let kept = KeyPair::from_seed(fs::read_to_string(&path).unwrap().trim()).unwrap();
        assert_eq!(kept.public_key(), first.public_key());
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        // No temporary copy of either seed is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["account.nk"]);

        // Racing threads: one key wins, all see it.
        let raced = dir.path().join("keys").join("raced.nk");
        let made: Vec<Created> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let raced = &raced;
                    scope.spawn(move || {
                        create_seed(raced, &KeyPair::generate(KeyKind::Module)).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            made.iter().filter(|c| **c == Created::New).count(),
            1,
            "{made:?}"
        );
    }

    #[test]
    fn seeds_are_written_private_and_replace_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("account.nk");
        let first = KeyPair::generate(KeyKind::Account);
        write_seed(&path, &first).unwrap();
        assert_eq!(
            KeyPair::from_seed(fs::read_to_string(&path).unwrap().trim())
                .unwrap()
                .public_key(),
            first.public_key()
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("keys")), 0o700);
            // An existing world-readable file is replaced by a private one,
            // not rewritten in place with its old mode.
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        }
        let second = KeyPair::generate(KeyKind::Account);
        write_seed(&path, &second).unwrap();
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with(&second.seed().unwrap())
        );
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("keys"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("account.nk")]);
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere.txt");
        fs::write(&target, "precious\n").unwrap();
        let link = dir.path().join("account.nk");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let err = write_seed(&link, &KeyPair::generate(KeyKind::Account)).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        // A dangling link (where the seed would be created) is refused too.
        let dangling = dir.path().join("module.nk");
        std::os::unix::fs::symlink(dir.path().join("not-yet"), &dangling).unwrap();
        assert!(write_seed(&dangling, &KeyPair::generate(KeyKind::Module)).is_err());
        assert!(!dir.path().join("not-yet").exists());

        // A link planted where the temporary file goes is not followed either.
        // (Links at every name the next writes of this process may use.)
        let path = dir.path().join("server.nk");
        let next = WRITES.load(std::sync::atomic::Ordering::Relaxed);
        for n in next..next + 1000 {
            let planted = dir
                .path()
                .join(format!(".server.nk.{}.{n}.tmp", std::process::id()));
            std::os::unix::fs::symlink(&target, &planted).unwrap();
        }
        assert!(write_seed(&path, &KeyPair::generate(KeyKind::Server)).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
        assert!(!path.exists());
    }

    #[test]
    fn the_local_account_is_found_only_when_it_is_a_private_account_seed() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            local_account_in(dir.path()),
            LocalAccount::Absent(dir.path().join(ACCOUNT_FILE))
        );
        let account = KeyPair::generate(KeyKind::Account);
        write_seed(&dir.path().join(ACCOUNT_FILE), &account).unwrap();
        assert_eq!(
            local_account_in(dir.path()),
            LocalAccount::Found {
                key: account.public_key(),
                path: dir.path().join(ACCOUNT_FILE)
            }
        );

        write_seed(
            &dir.path().join(ACCOUNT_FILE),
            &KeyPair::generate(KeyKind::Module),
        )
        .unwrap();
        assert!(
            matches!(local_account_in(dir.path()), LocalAccount::Unusable { reason, .. } if reason.contains("not an account key"))
        );
        fs::write(dir.path().join(ACCOUNT_FILE), "garbage").unwrap();
        assert!(matches!(
            local_account_in(dir.path()),
            LocalAccount::Unusable { .. }
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            write_seed(&dir.path().join(ACCOUNT_FILE), &account).unwrap();
            fs::set_permissions(
                dir.path().join(ACCOUNT_FILE),
                fs::Permissions::from_mode(0o666),
            )
            .unwrap();
            assert!(
                matches!(local_account_in(dir.path()), LocalAccount::Unusable { reason, .. } if reason.contains("chmod 600"))
            );
            // Another user's file, private to them: their key, not ours.
            // (Only root may give a file away; elsewhere this part is moot.)
            write_seed(&dir.path().join(ACCOUNT_FILE), &account).unwrap();
            if rustix::process::geteuid().is_root()
                && std::os::unix::fs::chown(dir.path().join(ACCOUNT_FILE), Some(65534), None)
                    .is_ok()
            {
                assert!(
                    matches!(local_account_in(dir.path()), LocalAccount::Unusable { reason, .. } if reason.contains("belongs to user 65534"))
                );
            }
        }
    }

    #[test]
    fn the_command_line_warning_says_why_and_what_to_do() {
        let text = command_line_seed_warning("account");
        for needle in ["command line", "ps", "file", "environment variable"] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        // Test binaries are not run with seeds as arguments.
        assert!(!on_command_line(
            "SAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
        ));
    }
}
