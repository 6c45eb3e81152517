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
//! * Proxy-Wasm HTTP filters: the top-level `http_filters` chain runs in
//!   front of every `wascc:http_server` binding, then a binding's own
//!   `filters` (only HTTP server bindings may have them). Each entry is a
//!   path or `oci://` reference like an actor, or a mapping with `path`,
//!   `config` (a string handed to the filter as is; a mapping or list as its
//!   JSON text), `upstreams` (name → base URL for `proxy_http_call`) and
//!   `limits`; see [`FilterEntry`]. A chain holds at most
//!   [`MAX_FILTER_CHAIN`] filters.
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
//!     filters:
//!       - path: ./build/authz_signed.wasm
//!         config: { tokens: [t1], strict: true }
//!         upstreams: { auth: "http://127.0.0.1:9000" }
//!         limits: { deadline_ms: 100 }
//! http_filters: [./build/add_header_signed.wasm]
//! "#;
//! let env = |_: &str| None; // an empty environment
//! let manifest =
//!     Manifest::from_str_with_env(yaml, Format::Yaml, "/srv/host", "host.yaml", &env)?;
//!
//! assert_eq!(manifest.actors[0].source.path(), Some(Path::new("/srv/host/build/kvcounter_signed.wasm")));
//! assert_eq!(manifest.actors[1].limits.deadline_ms, Some(500));
//! assert!(matches!(
//!     &manifest.capabilities[1].kind,
//!     CapabilitySource::Builtin { provider: Some(p), .. } if p == "memory"
//! ));
//! assert_eq!(manifest.bindings[0].binding, "default");
//! assert_eq!(manifest.bindings[0].values["PORT"], "8080");
//! let authz = &manifest.bindings[0].filters[0];
//! assert_eq!(authz.config, br#"{"tokens":["t1"],"strict":true}"#);
//! assert_eq!(authz.upstreams["auth"], "http://127.0.0.1:9000");
//! assert_eq!(manifest.http_filters[0].declared, "./build/add_header_signed.wasm");
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
//! `limits`, a `binding_name` alias for `binding`, numbers or booleans as
//! binding values, and Proxy-Wasm HTTP filters (`http_filters`,
//! `filters`). Stricter: an unset `${VAR}` without a default is an error
//! (waSCC left the text in place), as are unknown fields and `hostcore.`
//! labels (waSCC ignored them).
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod error;
mod parse;
mod schema;
mod tree;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::ManifestError;

use parse::{build, manifest_dir, parse, parse_unknown};

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
    /// `http_filters`: the host-wide Proxy-Wasm filter chain, in file order.
    /// It runs in front of every `wascc:http_server` binding, before that
    /// binding's own [`BindingEntry::filters`]. At most [`MAX_FILTER_CHAIN`]
    /// entries; may be empty.
    pub http_filters: Vec<FilterEntry>,
    /// The `policy` section, if the file has one.
    pub policy: Option<PolicySection>,
    /// The manifest file, as given (the name errors use).
    pub source: PathBuf,
}

/// Where a module or a provider archive comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file, resolved against the manifest's directory.
    File(PathBuf),
    /// A registry reference, `oci://registry/repository:tag` or
    /// `…@sha256:…`, as written. Only its shape is checked here; the host
    /// parses it, decides whether its tag is acceptable, and pulls it.
    Registry(String),
}

impl Source {
    /// The file, when this is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::File(path) => Some(path),
            Source::Registry(_) => None,
        }
    }
}

/// The prefix of a registry reference in place of a path.
pub const REGISTRY_SCHEME: &str = "oci://";

/// An actor to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorEntry {
    /// The module: a path resolved against the manifest's directory, or a
    /// registry reference.
    pub source: Source,
    /// The path as written in the manifest (after `${VAR}` expansion).
    pub declared: String,
    /// Per-actor limits; unset ones take the host's defaults.
    pub limits: ActorLimits,
}

/// The largest `limits.max_memory_mib`: each of the host's instance slots
/// holds a linear memory of at most 256 MiB.
pub const MAX_MEMORY_MIB: u32 = 256;

/// The largest `limits.min_instances` and `limits.max_instances`: the
/// host's instance pool holds 1,000 instances, for all actors together.
pub const MAX_INSTANCES: u32 = 1_000;

/// The largest `limits.max_payload_kib`: waPC lengths are `i32`, so a
/// payload stays under 2 GiB.
pub const MAX_PAYLOAD_KIB: u32 = 2 * 1024 * 1024 - 1;

/// Per-actor resource limits. `None` means "the host's default".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActorLimits {
    /// Linear memory ceiling per instance, in MiB (1 to [`MAX_MEMORY_MIB`]).
    pub max_memory_mib: Option<u32>,
    /// Wall-clock budget per invocation, in milliseconds (at least 1).
    pub deadline_ms: Option<u64>,
    /// Fuel (instruction budget) per invocation (at least 1).
    pub fuel: Option<u64>,
    /// Largest accepted invocation payload, in KiB (1 to
    /// [`MAX_PAYLOAD_KIB`]).
    pub max_payload_kib: Option<u32>,
    /// Instances kept ready; may be 0, at most [`MAX_INSTANCES`].
    pub min_instances: Option<u32>,
    /// Most instances run at once (1 to [`MAX_INSTANCES`], and not below
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
        /// The library or archive: a path resolved against the manifest's
        /// directory, or a registry reference (to a signed `.par`).
        source: Source,
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
    /// `filters`: this binding's Proxy-Wasm filter chain, in file order,
    /// run after the host-wide [`Manifest::http_filters`]. Only a binding to
    /// [`HTTP_SERVER_CAPABILITY`] may have one; at most [`MAX_FILTER_CHAIN`]
    /// entries; usually empty.
    pub filters: Vec<FilterEntry>,
}

/// The capability whose bindings may have HTTP filters.
pub const HTTP_SERVER_CAPABILITY: &str = "wascc:http_server";

/// The most filters one chain may hold: the host-wide `http_filters`, or one
/// binding's `filters` (so a request passes at most twice this many).
pub const MAX_FILTER_CHAIN: usize = 16;

/// The largest [`FilterEntry::config`], in bytes (1 MiB), after a mapping or
/// list is turned into its JSON text.
pub const MAX_FILTER_CONFIG_BYTES: usize = 1024 * 1024;

/// A Proxy-Wasm filter in an HTTP filter chain: an entry of the top-level
/// `http_filters` or of a binding's `filters`.
///
/// ```yaml
/// filters:
///   - ./build/passthrough_signed.wasm          # a bare path, like an actor
///   - oci://registry.example.com/filters/authz:1.0
///   - path: ./build/authz_signed.wasm
///     config: { tokens: [t1] }                 # or a string, handed over as is
///     upstreams: { auth: "http://127.0.0.1:9000" }
///     limits: { max_memory_mib: 16, deadline_ms: 100, fuel: 100000000, max_body_kib: 1024 }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterEntry {
    /// The module: a path resolved against the manifest's directory, or a
    /// registry reference (as for [`ActorEntry::source`]).
    pub source: Source,
    /// The path or reference as written in the manifest (after `${VAR}`
    /// expansion).
    pub declared: String,
    /// What the filter receives in `proxy_on_configure`: a string `config`
    /// as its UTF-8 bytes; a mapping, list, number or boolean as its JSON
    /// text (mappings keep the file's key order); empty when `config` is
    /// absent or null. At most [`MAX_FILTER_CONFIG_BYTES`].
    pub config: Vec<u8>,
    /// `upstreams`: cluster name (as the filter passes it to
    /// `proxy_http_call`) → base URL, `http://` or `https://` with a host and
    /// no query or fragment. Names are 1 to 255 ASCII letters, digits, `.`,
    /// `_` and `-`.
    pub upstreams: BTreeMap<String, String>,
    /// Per-filter limits; unset ones take the host's defaults.
    pub limits: FilterLimits,
}

/// Per-filter resource limits. `None` means "the host's default"; a value
/// given is at least 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterLimits {
    /// Linear memory ceiling of the filter's instance, in MiB.
    pub max_memory_mib: Option<u32>,
    /// Wall-clock budget of one callback into the filter (one
    /// `proxy_on_request_headers`, say), in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Fuel (instruction budget) for running the filter.
    pub fuel: Option<u64>,
    /// Largest request or response body the filter buffers, in KiB.
    pub max_body_kib: Option<u32>,
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
        let text = read_bounded(path).map_err(|source| ManifestError::Read {
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

/// The most bytes of a manifest file read: a manifest is a few kilobytes,
/// and a path given by mistake (a log, a device) must not be read whole.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// The file's text, refused past [`MAX_MANIFEST_BYTES`].
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "the file is larger than {} MiB, far more than a manifest needs; \
                 is this the right file?",
                MAX_MANIFEST_BYTES >> 20
            ),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
