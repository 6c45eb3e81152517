//! Where registry credentials come from: the environment first, then the
//! credentials a Docker `config.json` holds for the registry, else none.
//!
//! The environment's credentials are for one registry, which
//! [`HOST_ENV`] names: a reference only names the registry it is on, and
//! whoever wrote it (a vendor's manifest, a tag in a README) would
//! otherwise be handed the password for the asking. Set without it they
//! are not used, and contacting any registry fails with the fix (a host
//! whose references are all cached still starts).
//!
//! Credentials are never taken from a command line (they would show in
//! `ps` and shell history) and never printed; messages name where they came
//! from, not what they are.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use oci_client::secrets::RegistryAuth;

/// The user name for HTTP basic authentication, for the registry
/// [`HOST_ENV`] names.
pub const USER_ENV: &str = "WAXOSUIT_REGISTRY_USER";
/// The password that goes with [`USER_ENV`].
pub const PASSWORD_ENV: &str = "WAXOSUIT_REGISTRY_PASSWORD";
/// A bearer token sent as is, for the registry [`HOST_ENV`] names (in place
/// of a user and password).
pub const TOKEN_ENV: &str = "WAXOSUIT_REGISTRY_TOKEN";
/// The one registry (`host` or `host:port`) the credentials above go to;
/// required with them.
pub const HOST_ENV: &str = "WAXOSUIT_REGISTRY_HOST";

/// The largest Docker configuration file read.
const MAX_DOCKER_CONFIG: u64 = 1024 * 1024;

/// Credentials for one registry, and where they came from.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) auth: RegistryAuth,
    from: String,
}

impl Credentials {
    /// Where these came from (`WAXOSUIT_REGISTRY_USER/_PASSWORD`, or the
    /// Docker configuration file's path), for messages.
    pub fn source(&self) -> &str {
        &self.from
    }

    /// `basic` or `bearer`, for messages.
    pub fn scheme(&self) -> &'static str {
        match self.auth {
            RegistryAuth::Anonymous => "anonymous",
            RegistryAuth::Basic(..) => "basic",
            RegistryAuth::Bearer(_) => "bearer",
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({} from {})", self.scheme(), self.from)
    }
}

/// Everything credentials may be looked up in, read once per command.
#[derive(Clone, Default)]
pub struct CredentialStore {
    env: Option<Credentials>,
    /// The one registry the environment's credentials are for.
    env_host: Option<String>,
    /// The variable of credentials set for no named registry: none are
    /// used, and [`check_scoped`](Self::check_scoped) says so.
    unscoped: Option<&'static str>,
    docker: BTreeMap<String, Credentials>,
    /// Registries the Docker configuration leaves to a credential helper,
    /// which this host does not run.
    helpers: BTreeMap<String, String>,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("env", &self.env)
            .field("docker", &self.docker.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Credentials that cannot be used as given.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// One of the user and password variables without the other.
    #[error("{set} is set but {unset} is not; set both (or neither, to use ~/.docker/config.json)")]
    HalfSet {
        /// The variable that is set.
        set: &'static str,
        /// The one that is missing.
        unset: &'static str,
    },
    /// Credentials in the environment without the registry they are for.
    #[error(
        "{set} is set but {HOST_ENV} is not: name the one registry (host or host:port) these credentials are for, e.g. {HOST_ENV}=ghcr.io; they are never sent to whatever registry a reference names"
    )]
    Unscoped {
        /// The variable that is set.
        set: &'static str,
    },
    /// The Docker configuration file exists but cannot be used.
    #[error(
        "cannot use the Docker configuration {path}: {reason} (fix or move it, or point DOCKER_CONFIG at another directory)"
    )]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl CredentialStore {
    /// No credentials at all: every registry is asked anonymously.
    pub fn anonymous() -> CredentialStore {
        CredentialStore::default()
    }

    /// Reads the process environment and the Docker configuration file
    /// (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    pub fn from_env() -> Result<CredentialStore, CredentialError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let docker_path = match std::env::var_os("DOCKER_CONFIG") {
            Some(dir) => Some(PathBuf::from(dir).join("config.json")),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".docker").join("config.json")),
        };
        CredentialStore::from_parts(
            var(USER_ENV),
            var(PASSWORD_ENV),
            var(TOKEN_ENV),
            var(HOST_ENV).as_deref(),
            docker_path.as_deref(),
        )
    }

    /// [`CredentialStore::from_env`] with its inputs given: the user,
    /// password and token of the environment, the registry they are for
    /// (`host` or `host:port`, required with them), and the Docker
    /// configuration file, read for the other registries.
    pub fn from_parts(
        user: Option<String>,
        password: Option<String>,
        token: Option<String>,
        host: Option<&str>,
        docker_config: Option<&Path>,
    ) -> Result<CredentialStore, CredentialError> {
        let env = match (user, password, token) {
            (Some(user), Some(password), _) => Some(Credentials {
                auth: RegistryAuth::Basic(user, password),
                from: format!("{USER_ENV}/{PASSWORD_ENV}"),
            }),
            (Some(_), None, _) => {
                return Err(CredentialError::HalfSet {
                    set: USER_ENV,
                    unset: PASSWORD_ENV,
                });
            }
            (None, Some(_), _) => {
                return Err(CredentialError::HalfSet {
                    set: PASSWORD_ENV,
                    unset: USER_ENV,
                });
            }
            (None, None, Some(token)) => Some(Credentials {
                auth: RegistryAuth::Bearer(token),
                from: TOKEN_ENV.to_string(),
            }),
            (None, None, None) => None,
        };
        let env_host = host.map(str::trim).filter(|h| !h.is_empty()).map(normalise);
        let unscoped = match &env {
            Some(env) if env_host.is_none() => Some(match env.auth {
                RegistryAuth::Bearer(_) => TOKEN_ENV,
                _ => USER_ENV,
            }),
            _ => None,
        };
        let mut store = CredentialStore {
            env: if unscoped.is_some() { None } else { env },
            env_host,
            unscoped,
            ..CredentialStore::default()
        };
        if let Some(path) = docker_config {
            store.read_docker_config(path)?;
        }
        Ok(store)
    }

    /// Fails when the environment holds credentials for no named registry:
    /// the registry client checks it before contacting any registry, so
    /// that the user learns why no credentials were sent, and how to fix it.
    pub fn check_scoped(&self) -> Result<(), CredentialError> {
        match self.unscoped {
            Some(set) => Err(CredentialError::Unscoped { set }),
            None => Ok(()),
        }
    }

    /// The credentials for `registry` (`host` or `host:port`), if any.
    pub fn for_registry(&self, registry: &str) -> Option<&Credentials> {
        let key = normalise(registry);
        if let Some(env) = &self.env
            && self.env_host.as_ref() == Some(&key)
        {
            return Some(env);
        }
        self.docker.get(&key)
    }

    /// The credential helper the Docker configuration names for
    /// `registry`, which this host does not run, if any.
    pub fn helper_for(&self, registry: &str) -> Option<&str> {
        self.helpers.get(&normalise(registry)).map(String::as_str)
    }

    fn read_docker_config(&mut self, path: &Path) -> Result<(), CredentialError> {
        let bad = |reason: String| CredentialError::DockerConfig {
            path: path.to_path_buf(),
            reason,
        };
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(bad(e.to_string())),
        };
        if meta.len() > MAX_DOCKER_CONFIG {
            return Err(bad(format!(
                "it is {} bytes, over the {MAX_DOCKER_CONFIG} read",
                meta.len()
            )));
        }
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let config: DockerConfig = serde_json::from_slice(&text).map_err(|e| {
            // Line and column only: serde's message can quote a value,
            // and values here are secrets.
            bad(format!(
                "not a Docker configuration (JSON error at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let from = path.display().to_string();
        for (key, entry) in config.auths {
            let registry = normalise(&key);
            let auth = if let Some(token) = entry.registrytoken.filter(|t| !t.is_empty()) {
                RegistryAuth::Bearer(token)
            } else if let (Some(user), Some(password)) = (entry.username, entry.password) {
                RegistryAuth::Basic(user, password)
            } else if let Some(encoded) = entry.auth.filter(|a| !a.is_empty()) {
                let decoded = data_encoding::BASE64
                    .decode(encoded.trim().as_bytes())
                    .map_err(|_| bad(format!("the `auth` of `{registry}` is not base64")))?;
                let decoded = String::from_utf8(decoded)
                    .map_err(|_| bad(format!("the `auth` of `{registry}` is not UTF-8")))?;
                let Some((user, password)) = decoded.split_once(':') else {
                    return Err(bad(format!(
                        "the `auth` of `{registry}` is not `user:password` in base64"
                    )));
                };
                RegistryAuth::Basic(user.to_string(), password.to_string())
            } else {
                // An identity token needs an OAuth exchange this client does
                // not make; the registry is asked anonymously instead.
                continue;
            };
            self.docker.insert(
                registry,
                Credentials {
                    auth,
                    from: from.clone(),
                },
            );
        }
        for (key, helper) in config.cred_helpers {
            self.helpers.insert(normalise(&key), helper);
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

/// A registry as the Docker configuration's keys name it, reduced to
/// `host[:port]`: `https://index.docker.io/v1/` and `docker.io` are one.
fn normalise(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        (dir, path)
    }

    #[test]
    fn the_environment_goes_to_its_one_registry_and_needs_both_halves() {
        let store = CredentialStore::from_parts(
            Some("u".into()),
            Some("p".into()),
            None,
            Some("Registry.Example:5000"),
            None,
        )
        .unwrap();
        let creds = store.for_registry("registry.example:5000").unwrap();
        assert_eq!(creds.auth, RegistryAuth::Basic("u".into(), "p".into()));
        assert!(creds.source().contains(USER_ENV));
        // Named for one registry, they go nowhere else.
        assert!(store.for_registry("other.example").is_none());
        assert!(store.for_registry("registry.example").is_none());
        // Never shown, not even in Debug output.
        assert!(!format!("{store:?}{creds:?}").contains("\"p\""));

        let half = |user: Option<&str>, password: Option<&str>| {
            CredentialStore::from_parts(
                user.map(Into::into),
                password.map(Into::into),
                None,
                Some("r"),
                None,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(half(Some("u"), None).contains(PASSWORD_ENV));
        assert!(half(None, Some("p")).contains(USER_ENV));

        let store =
            CredentialStore::from_parts(None, None, Some("tok".into()), Some("r"), None).unwrap();
        assert_eq!(
            store.for_registry("r").unwrap().auth,
            RegistryAuth::Bearer("tok".into())
        );
        // The registry alone, without credentials, hands nothing out.
        let store = CredentialStore::from_parts(None, None, None, Some("r"), None).unwrap();
        assert!(store.for_registry("r").is_none());
    }

    #[test]
    fn credentials_for_no_named_registry_are_refused_with_the_fix() {
        for (user, password, token, set) in [
            (Some("u"), Some("p"), None, USER_ENV),
            (None, None, Some("tok"), TOKEN_ENV),
        ] {
            for host in [None, Some(""), Some("  ")] {
                let store = CredentialStore::from_parts(
                    user.map(Into::into),
                    password.map(Into::into),
                    token.map(Into::into),
                    host,
                    None,
                )
                .unwrap();
                // Given to no registry, and said when one is contacted.
                assert!(store.for_registry("registry.example").is_none());
                let err = store.check_scoped().unwrap_err();
                assert!(matches!(err, CredentialError::Unscoped { .. }), "{err}");
                let text = err.to_string();
                assert!(text.contains(set) && text.contains(HOST_ENV), "{text}");
                assert!(!text.contains("\"p\"") && !text.contains("tok\""), "{text}");
            }
        }
    }

    #[test]
    fn docker_config_credentials_are_found_by_registry() {
        let (_dir, path) = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "127.0.0.1:5000": {"username": "alice", "password": "pw"},
                "ghcr.io": {"registrytoken": "tkn"},
                "quay.io": {"identitytoken": "refresh"}
            },
            "credHelpers": {"gcr.io": "gcloud"}}"#,
        );
        let store = CredentialStore::from_parts(None, None, None, None, Some(&path)).unwrap();
        assert_eq!(
            store.for_registry("docker.io").unwrap().auth,
            RegistryAuth::Basic("hub".into(), "secret".into())
        );
        assert_eq!(
            store.for_registry("127.0.0.1:5000").unwrap().auth,
            RegistryAuth::Basic("alice".into(), "pw".into())
        );
        assert_eq!(
            store.for_registry("ghcr.io").unwrap().auth,
            RegistryAuth::Bearer("tkn".into())
        );
        assert!(store.for_registry("quay.io").is_none());
        assert!(store.for_registry("127.0.0.1:5001").is_none());
        assert_eq!(store.helper_for("gcr.io"), Some("gcloud"));
    }

    #[test]
    fn a_broken_docker_config_is_refused_naming_the_file() {
        let (_dir, path) = config("{not json");
        let err = CredentialStore::from_parts(None, None, None, None, Some(&path)).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
        // A value in the wrong place is not quoted back.
        let (_dir, path) = config(r#"{"auths": {"r": "c2VjcmV0OnBhc3N3b3Jk"}}"#);
        let err = CredentialStore::from_parts(None, None, None, None, Some(&path)).unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        let (_dir, path) = config(r#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#);
        let err = CredentialStore::from_parts(None, None, None, None, Some(&path)).unwrap_err();
        assert!(err.to_string().contains("user:password"), "{err}");
        // A missing file is simply no credentials.
        let store = CredentialStore::from_parts(
            None,
            None,
            None,
            None,
            Some(Path::new("/nonexistent/c.json")),
        )
        .unwrap();
        assert!(store.for_registry("r").is_none());
    }
}
