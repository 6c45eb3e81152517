//! Host manifests for Waxosuit: the YAML or JSON file that says which actors a
//! host runs, which capabilities it offers and how actors are bound to them.
//!
//! # A guided tour
//!
//! * [`Manifest::from_path`] reads a file: `.yaml`, `.yml` or no extension is
//!   YAML, `.json` is JSON, anything else is tried as both.
//! * String values may use `${VAR}` and `${VAR:default}` (`${VAR:}` for an
//!   empty default). An unset variable without a default is an error, never
//!   an empty string. `$VAR` without braces is left as written. Tests and
//!   embedders pass their own environment to
//!   [`Manifest::from_str_with_env`] / [`Manifest::from_path_with_env`].
//! * The result is checked before it is returned: unknown fields (with a
//!   "did you mean"), malformed capability ids, duplicates, bindings to
//!   capabilities that are not declared, limits that could never work.
//!   Every [`ManifestError`] names the file and the field, e.g.
//!   `host.yaml: bindings[1].capability: …`.
//! * What comes out is plain data: [`Manifest`] with [`ActorEntry`] (paths
//!   resolved against the manifest's directory, with their [`ActorLimits`]),
//!   [`CapabilityEntry`] (a built-in capability by id or a native plugin by
//!   path), [`BindingEntry`] and, when the file has a `policy` section, a
//!   [`PolicySection`] (embedded Rego files or an OPA server). Whether files
//!   exist and plugins load is for the host to find out.
//! * Binding values that name files ([`PATH_VALUES`]: the blob store's
//!   `ROOT`, NATS messaging's `CREDSFILE`) are resolved against the
//!   manifest's directory too when relative, never against the host's
//!   working directory.
//!
//! ```
//! use std::path::Path;
//! use waxosuit_manifest::{CapabilitySource, Format, Manifest, ManifestError};
//!
//! let yaml = r#"
//! labels: { region: local }
//! actors:
//!   - ./build/kvcounter_signed.wasm
//!   - path: ./build/hello_signed.wasm
//!     limits: { deadline_ms: 500, max_instances: 8 }
//! capabilities:
//!   - id: wascc:http_server
//!   - id: wascc:keyvalue
//!     provider: memory
//! bindings:
//!   - actor: kvcounter
//!     capability: wascc:http_server
//!     values: { PORT: "${PORT:8080}" }
//! "#;
//! let env = |_: &str| None; // an empty environment
//! let manifest =
//!     Manifest::from_str_with_env(yaml, Format::Yaml, "/srv/host", "host.yaml", &env)?;
//!
//! assert_eq!(manifest.actors[0].path, Path::new("/srv/host/build/kvcounter_signed.wasm"));
//! assert_eq!(manifest.actors[1].limits.deadline_ms, Some(500));
//! assert!(matches!(
//!     &manifest.capabilities[1].kind,
//!     CapabilitySource::Builtin { provider: Some(p), .. } if p == "memory"
//! ));
//! assert_eq!(manifest.bindings[0].binding, "default");
//! assert_eq!(manifest.bindings[0].values["PORT"], "8080");
//!
//! // Mistakes are reported with the file and the field:
//! let err = Manifest::from_str_with_env(
//!     "bindings: [{ actor: kvcounter, capability: wascc:keyvalue }]",
//!     Format::Yaml, "/srv/host", "host.yaml", &env,
//! )
//! .unwrap_err();
//! assert!(matches!(err, ManifestError::Field { .. }));
//! assert!(err.to_string().starts_with("host.yaml: bindings[0].capability: "));
//! # Ok::<(), ManifestError>(())
//! ```
//!
//! # Compared with waSCC
//!
//! Every waSCC 0.14 manifest whose actors are files parses: capabilities given
//! as `path` (+ `binding_name`), bindings with and without `values`. Added are
//! built-in capabilities by `id` with an optional `provider`, per-actor
//! `limits`, a `binding_name` alias for `binding`, and numbers or booleans as
//! binding values. Stricter: an unset `${VAR}` without a default is an error
//! (waSCC left the text in place), as are unknown fields and `hostcore.`
//! labels (waSCC ignored them).
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod schema;
mod tree;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

pub use error::ManifestError;

use schema::{
    Count, RawActor, RawBinding, RawCapability, RawLimits, RawManifest, RawPolicy, Scalar,
};
use tree::{DeError, FieldPath, Node, NodeDe, ROOT_FIELD};

/// The binding name used when a capability or binding does not give one.
pub const DEFAULT_BINDING: &str = "default";

/// Capabilities every host provides itself; bindings may use them without a
/// `capabilities` entry.
pub const ALWAYS_AVAILABLE: [&str; 2] = ["wascc:extras", "wascc:logging"];

/// Label keys with this prefix are the host's own (`hostcore.os`,
/// `hostcore.arch`, …) and may not be set by a manifest.
pub const RESERVED_LABEL_PREFIX: &str = "hostcore.";

/// Whether bindings to `capability_id` need no `capabilities` entry.
pub fn is_always_available(capability_id: &str) -> bool {
    ALWAYS_AVAILABLE.contains(&capability_id)
}

/// Binding values that name a file or directory, as `(capability id, key)`.
///
/// A relative value of one of these is resolved against the manifest's
/// directory, like actor and plugin paths, so that a host started from
/// another working directory still finds the files next to its manifest:
/// `ROOT: ./blobs` in `/srv/host/host.yaml` reaches the provider as
/// `/srv/host/blobs`. Absolute values are kept as written; an empty value is
/// kept too, for the provider to refuse with its own message. A value
/// starting with `~` is refused, because nothing would expand it: write
/// `${HOME}/…` instead.
///
/// Only these keys of these capabilities are touched: a key of the same
/// name elsewhere (a plugin's `ROOT`, say) may mean anything.
pub const PATH_VALUES: [(&str, &str); 2] = [
    // waxosuit-cap-blobstore-fs: the directory holding the containers.
    ("wascc:blobstore", "ROOT"),
    // waxosuit-cap-messaging-nats: the NATS credentials file.
    ("wascc:messaging", "CREDSFILE"),
];

/// Whether `key` of a binding to `capability_id` names a file or directory
/// (see [`PATH_VALUES`]).
pub fn is_path_value(capability_id: &str, key: &str) -> bool {
    PATH_VALUES
        .iter()
        .any(|&(capability, path_key)| capability == capability_id && path_key == key)
}

/// The syntax a manifest is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2 (a single document).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format a file name implies: `.yaml`, `.yml` or no extension is
    /// YAML, `.json` is JSON (case-insensitively); `None` for anything else.
    pub fn from_path(path: &Path) -> Option<Format> {
        let Some(ext) = path.extension() else {
            return Some(Format::Yaml);
        };
        let ext = ext.to_str()?;
        if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") {
            Some(Format::Yaml)
        } else if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// A parsed, expanded and validated host manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Host labels. Never contains a `hostcore.` key.
    pub labels: BTreeMap<String, String>,
    /// Actors to start, in file order. May be empty.
    pub actors: Vec<ActorEntry>,
    /// Capabilities to load, in file order.
    pub capabilities: Vec<CapabilityEntry>,
    /// Actor-to-capability bindings, in file order.
    pub bindings: Vec<BindingEntry>,
    /// The `policy` section, if the file has one.
    pub policy: Option<PolicySection>,
    /// The manifest file, as given (the name errors use).
    pub source: PathBuf,
}

/// An actor to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorEntry {
    /// The module's path, resolved against the manifest's directory.
    pub path: PathBuf,
    /// The path as written in the manifest (after `${VAR}` expansion).
    pub declared: String,
    /// Per-actor limits; unset ones take the host's defaults.
    pub limits: ActorLimits,
}

/// Per-actor resource limits. `None` means "the host's default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActorLimits {
    /// Linear memory ceiling per instance, in MiB (at least 1).
    pub max_memory_mib: Option<u32>,
    /// Wall-clock budget per invocation, in milliseconds (at least 1).
    pub deadline_ms: Option<u64>,
    /// Fuel (instruction budget) per invocation (at least 1).
    pub fuel: Option<u64>,
    /// Largest accepted invocation payload, in KiB (at least 1).
    pub max_payload_kib: Option<u32>,
    /// Instances kept ready; may be 0.
    pub min_instances: Option<u32>,
    /// Most instances run at once (at least 1, and not below
    /// `min_instances`).
    pub max_instances: Option<u32>,
}

/// A capability the host should offer under one binding name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityEntry {
    /// Where the capability comes from.
    pub kind: CapabilitySource,
    /// The binding name actors use to reach this instance (`default` unless
    /// given).
    pub binding_name: String,
}

impl CapabilityEntry {
    /// The capability id, for built-in capabilities. A plugin's id is only
    /// known once the host has loaded it.
    pub fn id(&self) -> Option<&str> {
        match &self.kind {
            CapabilitySource::Builtin { id, .. } => Some(id),
            CapabilitySource::Plugin { .. } => None,
        }
    }
}

/// Where a capability comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilitySource {
    /// A capability the host embeds, named by id (`wascc:keyvalue`).
    Builtin {
        /// The capability id, `namespace:name`.
        id: String,
        /// Which backend to use (e.g. `memory`); `None` for the embedded
        /// default. The host decides which names it knows.
        provider: Option<String>,
    },
    /// A native plugin library (waSCC's `path:` form). The parser accepts it;
    /// whether the host can load it is the host's call.
    Plugin {
        /// The library's path, resolved against the manifest's directory.
        path: PathBuf,
        /// The path as written in the manifest (after `${VAR}` expansion).
        declared: String,
    },
}

/// Binds an actor to a capability's binding, with configuration values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingEntry {
    /// The actor's public key (`M…`) or its name from its claims.
    pub actor: String,
    /// The capability id.
    pub capability: String,
    /// The binding name (`default` unless given).
    pub binding: String,
    /// Configuration handed to the provider. Numbers and booleans in the file
    /// arrive as their text; relative paths in the keys listed in
    /// [`PATH_VALUES`] arrive resolved against the manifest's directory.
    pub values: BTreeMap<String, String>,
}

/// The `policy` section: where the host's policy decisions are made (see
/// `docs/policy.md`).
///
/// ```yaml
/// policy:
///   policies: [./policies/authz.rego]   # embedded Rego, or instead:
///   data: [./policies/data.json]        # opa_url: http://127.0.0.1:8181
///   cache_ttl_ms: 10000                 #   opa_timeout_ms: 1000
///   decision_log: ./decisions.log       # or `-` for standard output
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySection {
    /// Which engine decides.
    pub backend: PolicyBackend,
    /// `cache_ttl_ms`: how long invocation decisions are reused; `Some(0)`
    /// disables the cache, `None` takes the host's default.
    pub cache_ttl_ms: Option<u64>,
    /// `decision_log`: where evaluated decisions are written, if anywhere.
    pub decision_log: Option<DecisionLogTarget>,
}

/// The engine of a [`PolicySection`]; a manifest names exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyBackend {
    /// Rego policies evaluated in the host (`policies`, `data`).
    Embedded {
        /// The `.rego` files, resolved against the manifest's directory, in
        /// file order. Never empty.
        policies: Vec<PathBuf>,
        /// JSON data files merged into `data`, resolved likewise.
        data: Vec<PathBuf>,
    },
    /// An OPA server asked over its Data API (`opa_url`, `opa_timeout_ms`).
    Opa {
        /// The server's base URL (`http://…` or `https://…`).
        url: String,
        /// Time limit per decision in milliseconds (at least 1); `None`
        /// takes the host's default.
        timeout_ms: Option<u64>,
    },
}

/// Where a decision log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionLogTarget {
    /// `-`: standard output.
    Stdout,
    /// A file, resolved against the manifest's directory, appended to.
    File(PathBuf),
}

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Manifest {
    /// Reads, expands (from the process environment) and validates the
    /// manifest at `path`. Relative paths inside it are resolved against the
    /// directory the manifest is in.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        Self::from_path_with_env(path, &process_env)
    }

    /// [`Manifest::from_path`] with `env` in place of the process
    /// environment: `env(name)` returns the variable's value, or `None` when
    /// it is unset.
    pub fn from_path_with_env(
        path: impl AsRef<Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let node = match Format::from_path(path) {
            Some(format) => parse(&text, format, path)?,
            None => parse_unknown(&text, path)?,
        };
        build(node, &manifest_dir(path), path, env)
    }

    /// Parses `text` as if it were a file named `origin` in `base_dir`:
    /// relative paths are resolved against `base_dir` and errors name
    /// `origin`. Expands from the process environment.
    pub fn from_str(
        text: &str,
        format: Format,
        base_dir: impl AsRef<Path>,
        origin: impl Into<PathBuf>,
    ) -> Result<Manifest, ManifestError> {
        Self::from_str_with_env(text, format, base_dir, origin, &process_env)
    }

    /// [`Manifest::from_str`] with `env` in place of the process environment.
    pub fn from_str_with_env(
        text: &str,
        format: Format,
        base_dir: impl AsRef<Path>,
        origin: impl Into<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Manifest, ManifestError> {
        let origin = origin.into();
        let node = parse(text, format, &origin)?;
        build(node, base_dir.as_ref(), &origin, env)
    }

    /// The built-in capability declared with `id` under `binding_name`.
    pub fn capability(&self, id: &str, binding_name: &str) -> Option<&CapabilityEntry> {
        self.capabilities
            .iter()
            .find(|c| c.id() == Some(id) && c.binding_name == binding_name)
    }

    /// The bindings naming `actor` (a public key or a name, compared as
    /// written).
    pub fn bindings_for<'a>(&'a self, actor: &'a str) -> impl Iterator<Item = &'a BindingEntry> {
        self.bindings.iter().filter(move |b| b.actor == actor)
    }
}

/// The directory relative paths in the manifest at `path` are resolved
/// against. Made absolute so that the resolved paths stay right if the host
/// later changes its working directory.
fn manifest_dir(path: &Path) -> PathBuf {
    // `absolute` only fails without a usable working directory; relative
    // resolution is then the best that can be done.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `declared` resolved against `base`. `.` components are dropped so paths
/// read cleanly; `..` is kept because collapsing it is wrong across symlinks.
fn resolve(base: &Path, declared: &str) -> PathBuf {
    let declared = Path::new(declared);
    let mut out = if declared.is_absolute() {
        PathBuf::new()
    } else {
        base.to_path_buf()
    };
    for component in declared.components() {
        if component != Component::CurDir {
            out.push(component);
        }
    }
    out
}

fn parse(text: &str, format: Format, file: &Path) -> Result<Node, ManifestError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| json_syntax(&e, file)),
        Format::Yaml => serde_norway::from_str(text).map_err(|e| yaml_syntax(&e, file)),
    }
}

/// For a file whose name does not say its format: JSON if it parses as JSON,
/// else YAML if it is a YAML mapping. (Almost any text is a YAML scalar, so
/// "parses as YAML" alone would accept a file that is neither.)
fn parse_unknown(text: &str, file: &Path) -> Result<Node, ManifestError> {
    let json = match serde_json::from_str::<Node>(text) {
        Ok(node) => return Ok(node),
        Err(e) => e.to_string(),
    };
    let yaml = match serde_norway::from_str::<Node>(text) {
        Ok(node @ Node::Map(_)) => return Ok(node),
        Ok(other) => format!("the document is {}, not a mapping", other.kind()),
        Err(e) => e.to_string(),
    };
    Err(ManifestError::UnrecognizedFormat {
        file: file.to_path_buf(),
        json,
        yaml,
    })
}

fn json_syntax(error: &serde_json::Error, file: &Path) -> ManifestError {
    let (line, column) = (error.line(), error.column());
    let position = (line > 0).then_some((line, column));
    syntax(file, error.to_string(), position)
}

fn yaml_syntax(error: &serde_norway::Error, file: &Path) -> ManifestError {
    let position = error.location().map(|l| (l.line(), l.column()));
    syntax(file, error.to_string(), position)
}

/// Both parsers put "at line L column C" into their messages; the position
/// is moved into the error's fields instead of being said twice.
fn syntax(file: &Path, message: String, position: Option<(usize, usize)>) -> ManifestError {
    let message = match position {
        Some((line, column)) => {
            message.replacen(&format!(" at line {line} column {column}"), "", 1)
        }
        None => message,
    };
    ManifestError::Syntax {
        file: file.to_path_buf(),
        line: position.map(|p| p.0),
        column: position.map(|p| p.1),
        message,
    }
}

fn build(
    mut node: Node,
    base_dir: &Path,
    file: &Path,
    env: Env<'_>,
) -> Result<Manifest, ManifestError> {
    let field_error = |field: String, message: String| ManifestError::Field {
        file: file.to_path_buf(),
        field,
        message,
    };
    match &node {
        Node::Map(_) => {}
        Node::Null => {
            return Err(field_error(
                ROOT_FIELD.to_owned(),
                "the manifest is empty; expected a mapping with `actors`, `capabilities`, \
                 `bindings`, `labels` and/or `policy`"
                    .to_owned(),
            ));
        }
        other => {
            return Err(field_error(
                ROOT_FIELD.to_owned(),
                format!(
                    "expected a mapping with `actors`, `capabilities`, `bindings`, `labels` \
                     and/or `policy`, found {}",
                    other.kind()
                ),
            ));
        }
    }

    tree::expand_tree(&mut node, &FieldPath::root(), env).map_err(|(field, var)| {
        ManifestError::Env {
            file: file.to_path_buf(),
            field,
            var,
        }
    })?;

    let raw: RawManifest =
        serde_path_to_error::deserialize(NodeDe(&node)).map_err(|e| schema_error(e, file))?;

    Validator { file, base_dir }.manifest(raw)
}

fn schema_error(error: serde_path_to_error::Error<DeError>, file: &Path) -> ManifestError {
    let path = error.path().to_string();
    let at = if path == "." { String::new() } else { path };
    match error.into_inner() {
        DeError::UnknownField { name, expected } => {
            // serde_path_to_error records the key before it is rejected, so
            // the path already ends with it; an empty path would only come
            // from a deserializer that does not, and then the key alone is
            // the best pointer.
            let field = if at.is_empty() { name.clone() } else { at };
            ManifestError::UnknownField {
                file: file.to_path_buf(),
                field,
                suggestion: suggest(&name, expected),
                name,
                expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
        DeError::Custom(message) => ManifestError::Field {
            file: file.to_path_buf(),
            field: if at.is_empty() {
                ROOT_FIELD.to_owned()
            } else {
                at
            },
            message,
        },
    }
}

/// The valid name `name` was most likely meant to be, if any is close.
fn suggest(name: &str, expected: &[&str]) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    expected
        .iter()
        .map(|candidate| (strsim::jaro_winkler(&lower, candidate), *candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate.to_owned())
}

/// Checks the rules serde cannot express and builds the public types.
struct Validator<'a> {
    file: &'a Path,
    base_dir: &'a Path,
}

impl Validator<'_> {
    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Field {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    fn manifest(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        let labels = self.labels(raw.labels.unwrap_or_default())?;
        let actors = raw
            .actors
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, actor)| self.actor(i, actor))
            .collect::<Result<Vec<_>, _>>()?;
        let capabilities = self.capabilities(raw.capabilities.unwrap_or_default())?;
        let bindings = self.bindings(raw.bindings.unwrap_or_default(), &capabilities)?;
        let policy = raw.policy.map(|raw| self.policy(raw)).transpose()?;
        Ok(Manifest {
            labels,
            actors,
            capabilities,
            bindings,
            policy,
            source: self.file.to_path_buf(),
        })
    }

    fn policy(&self, raw: RawPolicy) -> Result<PolicySection, ManifestError> {
        let backend = match (raw.policies, raw.opa_url) {
            (Some(_), Some(_)) => {
                return Err(self.error(
                    "policy",
                    "has both `policies` (Rego evaluated in the host) and `opa_url` (an OPA \
                     server); choose one backend",
                ));
            }
            (None, None) => {
                return Err(self.error(
                    "policy",
                    "needs `policies` (a list of .rego files evaluated in the host) or \
                     `opa_url` (an OPA server to ask); remove the section for no policy",
                ));
            }
            (Some(policies), None) => {
                if raw.opa_timeout_ms.is_some() {
                    return Err(self.error(
                        "policy.opa_timeout_ms",
                        "only applies with `opa_url`; embedded policies are evaluated in the \
                         host",
                    ));
                }
                if policies.is_empty() {
                    return Err(self.error(
                        "policy.policies",
                        "is empty; list at least one .rego file, or remove the `policy` section",
                    ));
                }
                PolicyBackend::Embedded {
                    policies: self.files("policy.policies", "policy", policies)?,
                    data: self.files("policy.data", "data", raw.data.unwrap_or_default())?,
                }
            }
            (None, Some(url)) => {
                if raw.data.is_some() {
                    return Err(self.error(
                        "policy.data",
                        "only applies to embedded `policies`; an OPA server loads its own data",
                    ));
                }
                let url = url.trim().to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(self.error(
                        "policy.opa_url",
                        format!(
                            "`{url}` is not an http:// or https:// URL; give OPA's address, e.g. \
                             `http://127.0.0.1:8181`"
                        ),
                    ));
                }
                let timeout_ms = raw.opa_timeout_ms.map(|Count(ms)| ms);
                if timeout_ms == Some(0) {
                    return Err(self.error(
                        "policy.opa_timeout_ms",
                        "must be at least 1 (every decision would time out); leave it out to \
                         use the host's default",
                    ));
                }
                PolicyBackend::Opa { url, timeout_ms }
            }
        };
        let decision_log = match raw.decision_log {
            None => None,
            Some(target) if target.trim().is_empty() => {
                return Err(self.error(
                    "policy.decision_log",
                    "must not be empty; give a file path, or `-` for standard output",
                ));
            }
            Some(target) if target.trim() == "-" => Some(DecisionLogTarget::Stdout),
            Some(target) => Some(DecisionLogTarget::File(resolve(self.base_dir, &target))),
        };
        Ok(PolicySection {
            backend,
            cache_ttl_ms: raw.cache_ttl_ms.map(|Count(ms)| ms),
            decision_log,
        })
    }

    /// A list of file paths, each non-empty, resolved against the manifest's
    /// directory.
    fn files(
        &self,
        at: &str,
        what: &str,
        declared: Vec<String>,
    ) -> Result<Vec<PathBuf>, ManifestError> {
        declared
            .iter()
            .enumerate()
            .map(|(index, path)| {
                if path.trim().is_empty() {
                    Err(self.error(
                        format!("{at}[{index}]"),
                        format!("the {what} path is empty"),
                    ))
                } else {
                    Ok(resolve(self.base_dir, path))
                }
            })
            .collect()
    }

    fn labels(
        &self,
        raw: BTreeMap<String, Scalar>,
    ) -> Result<BTreeMap<String, String>, ManifestError> {
        let mut labels = BTreeMap::new();
        for (key, Scalar(value)) in raw {
            if key.trim().is_empty() {
                return Err(self.error("labels", "a label key must not be empty"));
            }
            if key.starts_with(RESERVED_LABEL_PREFIX) {
                return Err(self.error(
                    format!("labels.{key}"),
                    format!(
                        "label keys starting with `{RESERVED_LABEL_PREFIX}` are reserved for the \
                         labels the host sets itself (os, arch, …); choose another key"
                    ),
                ));
            }
            labels.insert(key, value);
        }
        Ok(labels)
    }

    fn actor(&self, index: usize, raw: RawActor) -> Result<ActorEntry, ManifestError> {
        let at = format!("actors[{index}]");
        if raw.path.trim().is_empty() {
            let field = if raw.object { format!("{at}.path") } else { at };
            return Err(self.error(field, "the actor path is empty"));
        }
        let limits = self.limits(&format!("{at}.limits"), raw.limits.unwrap_or_default())?;
        Ok(ActorEntry {
            path: resolve(self.base_dir, &raw.path),
            declared: raw.path,
            limits,
        })
    }

    fn limits(&self, at: &str, raw: RawLimits) -> Result<ActorLimits, ManifestError> {
        fn value<T>(count: Option<Count<T>>) -> Option<T> {
            count.map(|Count(v)| v)
        }
        let limits = ActorLimits {
            max_memory_mib: value(raw.max_memory_mib),
            deadline_ms: value(raw.deadline_ms),
            fuel: value(raw.fuel),
            max_payload_kib: value(raw.max_payload_kib),
            min_instances: value(raw.min_instances),
            max_instances: value(raw.max_instances),
        };
        let zero_checks = [
            (
                "max_memory_mib",
                limits.max_memory_mib.map(u64::from),
                "a module cannot run in 0 MiB",
            ),
            (
                "deadline_ms",
                limits.deadline_ms,
                "every invocation would time out at once",
            ),
            (
                "fuel",
                limits.fuel,
                "the actor could not execute a single instruction",
            ),
            (
                "max_payload_kib",
                limits.max_payload_kib.map(u64::from),
                "no invocation would fit",
            ),
            (
                "max_instances",
                limits.max_instances.map(u64::from),
                "the actor could never run",
            ),
        ];
        for (name, limit, why) in zero_checks {
            if limit == Some(0) {
                return Err(self.error(
                    format!("{at}.{name}"),
                    format!("must be at least 1 ({why}); leave it out to use the host's default"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (limits.min_instances, limits.max_instances)
            && min > max
        {
            return Err(self.error(
                format!("{at}.min_instances"),
                format!("min_instances ({min}) is greater than max_instances ({max})"),
            ));
        }
        Ok(limits)
    }

    fn capabilities(&self, raw: Vec<RawCapability>) -> Result<Vec<CapabilityEntry>, ManifestError> {
        let mut entries: Vec<CapabilityEntry> = Vec::with_capacity(raw.len());
        for (index, raw) in raw.into_iter().enumerate() {
            let at = format!("capabilities[{index}]");
            let kind = match (raw.id, raw.path) {
                (Some(_), Some(_)) => {
                    return Err(self.error(
                        at,
                        "has both `id` and `path`; use `id` for a built-in capability or `path` \
                         for a native plugin, not both",
                    ));
                }
                (None, None) => {
                    return Err(self.error(
                        at,
                        "needs either `id` (a built-in capability such as `wascc:keyvalue`) or \
                         `path` (a native plugin library)",
                    ));
                }
                (Some(id), None) => {
                    self.check_capability_id(&format!("{at}.id"), &id)?;
                    if let Some(provider) = &raw.provider
                        && provider.trim().is_empty()
                    {
                        return Err(self.error(
                            format!("{at}.provider"),
                            "must not be empty; leave it out for the embedded default",
                        ));
                    }
                    CapabilitySource::Builtin {
                        id,
                        provider: raw.provider,
                    }
                }
                (None, Some(path)) => {
                    if raw.provider.is_some() {
                        return Err(self.error(
                            format!("{at}.provider"),
                            "only applies to built-in capabilities (`id`); a plugin library is \
                             its own provider",
                        ));
                    }
                    if path.trim().is_empty() {
                        return Err(self.error(format!("{at}.path"), "the plugin path is empty"));
                    }
                    CapabilitySource::Plugin {
                        path: resolve(self.base_dir, &path),
                        declared: path,
                    }
                }
            };
            let binding_name = match raw.binding_name {
                None => DEFAULT_BINDING.to_owned(),
                Some(name) if name.trim().is_empty() => {
                    return Err(self.error(
                        format!("{at}.binding_name"),
                        format!("must not be empty; leave it out for `{DEFAULT_BINDING}`"),
                    ));
                }
                Some(name) => name,
            };
            let entry = CapabilityEntry { kind, binding_name };
            if let Some(first) = entries.iter().position(|e| {
                e.kind.same_source(&entry.kind) && e.binding_name == entry.binding_name
            }) {
                let what = match &entry.kind {
                    CapabilitySource::Builtin { id, .. } => format!("capability {id}"),
                    CapabilitySource::Plugin { declared, .. } => format!("plugin `{declared}`"),
                };
                return Err(self.error(
                    at,
                    format!(
                        "duplicates capabilities[{first}]: {what} is declared twice with binding \
                         name `{}`; give one of them another `binding_name`",
                        entry.binding_name
                    ),
                ));
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn check_capability_id(&self, field: &str, id: &str) -> Result<(), ManifestError> {
        if is_capability_id(id) {
            Ok(())
        } else {
            Err(self.error(
                field,
                format!(
                    "`{id}` is not a capability id; expected `namespace:name` made of letters, \
                     digits, `_`, `-` and `.` (e.g. `wascc:keyvalue`)"
                ),
            ))
        }
    }

    fn bindings(
        &self,
        raw: Vec<RawBinding>,
        capabilities: &[CapabilityEntry],
    ) -> Result<Vec<BindingEntry>, ManifestError> {
        let mut entries = Vec::with_capacity(raw.len());
        let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
        for (index, raw) in raw.into_iter().enumerate() {
            let at = format!("bindings[{index}]");
            if raw.actor.trim().is_empty() {
                return Err(self.error(
                    format!("{at}.actor"),
                    "must not be empty; give the actor's public key (`M…`) or its name",
                ));
            }
            self.check_capability_id(&format!("{at}.capability"), &raw.capability)?;
            let binding = match raw.binding {
                None => DEFAULT_BINDING.to_owned(),
                Some(name) if name.trim().is_empty() => {
                    return Err(self.error(
                        format!("{at}.binding"),
                        format!("must not be empty; leave it out for `{DEFAULT_BINDING}`"),
                    ));
                }
                Some(name) => name,
            };
            if !is_declared(capabilities, &raw.capability, &binding) {
                let add = if binding == DEFAULT_BINDING {
                    format!("- id: {}", raw.capability)
                } else {
                    format!("- id: {}\n  binding_name: {binding}", raw.capability)
                };
                return Err(self.error(
                    format!("{at}.capability"),
                    format!(
                        "capability {} (binding `{binding}`) is not declared under \
                         `capabilities`; add `{add}`",
                        raw.capability
                    ),
                ));
            }
            let key = (raw.actor.clone(), raw.capability.clone(), binding.clone());
            if let Some(first) = seen.get(&key) {
                return Err(self.error(
                    at,
                    format!(
                        "duplicates bindings[{first}]: actor `{}` is already bound to {} \
                         (binding `{binding}`); merge their `values`",
                        raw.actor, raw.capability
                    ),
                ));
            }
            seen.insert(key, index);
            let mut values = BTreeMap::new();
            for (name, Scalar(value)) in raw.values.unwrap_or_default() {
                let value = if is_path_value(&raw.capability, &name) {
                    self.path_value(&format!("{at}.values.{name}"), value)?
                } else {
                    value
                };
                values.insert(name, value);
            }
            entries.push(BindingEntry {
                actor: raw.actor,
                capability: raw.capability,
                binding,
                values,
            });
        }
        Ok(entries)
    }
}

impl Validator<'_> {
    /// A binding value naming a file or directory (see [`PATH_VALUES`]),
    /// resolved against the manifest's directory when relative.
    fn path_value(&self, field: &str, value: String) -> Result<String, ManifestError> {
        if value.trim().is_empty() || Path::new(&value).is_absolute() {
            return Ok(value);
        }
        if value.starts_with('~') {
            return Err(self.error(
                field,
                format!(
                    "`{value}` starts with `~`, which is not expanded here; write the full path, \
                     or `${{HOME}}{}`",
                    value.trim_start_matches('~')
                ),
            ));
        }
        let resolved = resolve(self.base_dir, &value);
        // A binding value is text: a path that is not UTF-8 cannot be
        // handed on, and keeping the value as written would silently
        // resolve it against the working directory instead.
        resolved.to_str().map(str::to_owned).ok_or_else(|| {
            self.error(
                field,
                format!(
                    "`{value}` resolved against the manifest's directory gives `{}`, which is \
                     not valid UTF-8; give an absolute path",
                    resolved.display()
                ),
            )
        })
    }
}

impl CapabilitySource {
    /// Same capability, ignoring the provider choice: two providers for one
    /// id under one binding name would still collide at the host.
    fn same_source(&self, other: &CapabilitySource) -> bool {
        match (self, other) {
            (CapabilitySource::Builtin { id: a, .. }, CapabilitySource::Builtin { id: b, .. }) => {
                a == b
            }
            (
                CapabilitySource::Plugin { path: a, .. },
                CapabilitySource::Plugin { path: b, .. },
            ) => a == b,
            _ => false,
        }
    }
}

/// Whether a binding to `capability` under `binding` has something to bind
/// to. A plugin's capability id is unknown until the host loads it, so any
/// plugin under the same binding name might provide it (waSCC manifests
/// declare all capabilities that way); the host checks again once loaded.
fn is_declared(capabilities: &[CapabilityEntry], capability: &str, binding: &str) -> bool {
    is_always_available(capability)
        || capabilities.iter().any(|c| {
            c.binding_name == binding
                && match &c.kind {
                    CapabilitySource::Builtin { id, .. } => id == capability,
                    CapabilitySource::Plugin { .. } => true,
                }
        })
}

/// `namespace:name`, each part non-empty ASCII letters, digits, `_`, `-`, `.`.
fn is_capability_id(id: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    id.split_once(':')
        .is_some_and(|(namespace, name)| part(namespace) && part(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_ids() {
        for ok in [
            "wascc:keyvalue",
            "wascc:http_server",
            "acme.io:blob-store",
            "a:b",
            "A1:B2",
        ] {
            assert!(is_capability_id(ok), "{ok}");
        }
        for bad in [
            "",
            "keyvalue",
            ":kv",
            "wascc:",
            "wascc:key value",
            "a:b:c",
            "wascc:kv/x",
            "wäscc:kv",
        ] {
            assert!(!is_capability_id(bad), "{bad}");
        }
    }

    #[test]
    fn resolution_drops_dot_components_and_keeps_absolute_paths() {
        let base = Path::new("/srv/host");
        assert_eq!(
            resolve(base, "./build/a.wasm"),
            Path::new("/srv/host/build/a.wasm")
        );
        assert_eq!(
            resolve(base, "../x/./a.wasm"),
            Path::new("/srv/host/../x/a.wasm")
        );
        assert_eq!(resolve(base, "/opt/a.wasm"), Path::new("/opt/a.wasm"));
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(
            Format::from_path(Path::new("host.yaml")),
            Some(Format::Yaml)
        );
        assert_eq!(Format::from_path(Path::new("host.YML")), Some(Format::Yaml));
        assert_eq!(Format::from_path(Path::new("manifest")), Some(Format::Yaml));
        assert_eq!(
            Format::from_path(Path::new("host.json")),
            Some(Format::Json)
        );
        assert_eq!(Format::from_path(Path::new("host.conf")), None);
    }

    #[test]
    fn suggestions_only_when_close() {
        let expected = ["actor", "capability", "binding", "binding_name", "values"];
        assert_eq!(suggest("bindng", &expected).as_deref(), Some("binding"));
        assert_eq!(suggest("Values", &expected).as_deref(), Some("values"));
        assert_eq!(suggest("zzz", &expected), None);
    }
}
