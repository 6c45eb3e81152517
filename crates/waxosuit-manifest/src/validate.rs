//! The rules serde cannot express, and the step from the schema types to
//! the public ones: which fields go together, ids that are well formed,
//! duplicates, bindings to undeclared capabilities, limits that could never
//! work, and relative paths resolved against the manifest's directory.
//!
//! Separate from `parse.rs` because every rule lives here and nothing else
//! does: this is the file to read to learn what a manifest may say.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use crate::schema::{
    Count, RawActor, RawBinding, RawCapability, RawFilter, RawFilterLimits, RawLimits, RawManifest,
    RawPolicy, Scalar,
};
use crate::tree::{FieldPath, Node};
use crate::{
    ActorEntry, ActorLimits, BindingEntry, CapabilityEntry, CapabilitySource, DEFAULT_BINDING,
    DecisionLogTarget, FilterEntry, FilterLimits, HTTP_SERVER_CAPABILITY, MAX_FILTER_CHAIN,
    MAX_FILTER_CONFIG_BYTES, Manifest, ManifestError, PolicyBackend, PolicySection,
    REGISTRY_SCHEME, RESERVED_LABEL_PREFIX, Source, is_always_available, is_path_value,
};

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

/// Checks the rules serde cannot express and builds the public types.
pub(crate) struct Validator<'a> {
    pub(crate) file: &'a Path,
    pub(crate) base_dir: &'a Path,
}

impl Validator<'_> {
    fn error(&self, field: impl Into<String>, message: impl Into<String>) -> ManifestError {
        ManifestError::Field {
            file: self.file.to_path_buf(),
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn manifest(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
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
        let http_filters = self.filters("http_filters", raw.http_filters.unwrap_or_default())?;
        let policy = raw.policy.map(|raw| self.policy(raw)).transpose()?;
        Ok(Manifest {
            labels,
            actors,
            capabilities,
            bindings,
            http_filters,
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
        let field = if raw.object {
            format!("{at}.path")
        } else {
            at.clone()
        };
        let source = self.source(&field, &raw.path)?;
        let limits = self.limits(&format!("{at}.limits"), raw.limits.unwrap_or_default())?;
        Ok(ActorEntry {
            source,
            declared: raw.path,
            limits,
        })
    }

    /// A path, or a registry reference of a plausible shape.
    fn source(&self, field: &str, declared: &str) -> Result<Source, ManifestError> {
        let Some(rest) = declared.strip_prefix(REGISTRY_SCHEME) else {
            return Ok(Source::File(resolve(self.base_dir, declared)));
        };
        if rest.is_empty() {
            return Err(self.error(
                field,
                "a registry reference is oci://REGISTRY/REPOSITORY:TAG (or …@sha256:DIGEST)",
            ));
        }
        if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.error(
                field,
                "a registry reference has no spaces or control characters",
            ));
        }
        Ok(Source::Registry(declared.to_string()))
    }

    /// Refuses a limit given as 0, naming it and why 0 cannot work.
    fn refuse_zeros(
        &self,
        at: &str,
        checks: &[(&str, Option<u64>, &str)],
    ) -> Result<(), ManifestError> {
        for (name, limit, why) in checks {
            if *limit == Some(0) {
                return Err(self.error(
                    format!("{at}.{name}"),
                    format!("must be at least 1 ({why}); leave it out to use the host's default"),
                ));
            }
        }
        Ok(())
    }

    fn limits(&self, at: &str, raw: RawLimits) -> Result<ActorLimits, ManifestError> {
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
        self.refuse_zeros(at, &zero_checks)?;
        // Past these the host could never honour the value: it fails at
        // load naming a runtime setting, or (min_instances in the billions)
        // tries to reserve room for that many instances at once.
        let ceilings = [
            (
                "max_memory_mib",
                limits.max_memory_mib,
                crate::MAX_MEMORY_MIB,
                "the host's instance slots hold at most 256 MiB of linear memory",
            ),
            (
                "max_payload_kib",
                limits.max_payload_kib,
                crate::MAX_PAYLOAD_KIB,
                "waPC lengths are 32-bit signed, so a payload stays under 2 GiB",
            ),
            (
                "min_instances",
                limits.min_instances,
                crate::MAX_INSTANCES,
                "the host's instance pool holds 1,000 instances for all actors together",
            ),
            (
                "max_instances",
                limits.max_instances,
                crate::MAX_INSTANCES,
                "the host's instance pool holds 1,000 instances for all actors together",
            ),
        ];
        for (name, value, ceiling, why) in ceilings {
            if let Some(value) = value
                && value > ceiling
            {
                return Err(self.error(
                    format!("{at}.{name}"),
                    format!("is {value}, more than {ceiling} ({why}); lower it"),
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
                        source: self.source(&format!("{at}.path"), &path)?,
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
            let filters = match raw.filters {
                Some(filters)
                    if !filters.is_empty() && raw.capability != HTTP_SERVER_CAPABILITY =>
                {
                    return Err(self.error(
                        format!("{at}.filters"),
                        format!(
                            "filters only apply to HTTP server bindings \
                             (`{HTTP_SERVER_CAPABILITY}`), and this binding is to {}; remove \
                             `filters` here, or move them to the actor's \
                             `{HTTP_SERVER_CAPABILITY}` binding",
                            raw.capability
                        ),
                    ));
                }
                Some(filters) => self.filters(&format!("{at}.filters"), filters)?,
                None => Vec::new(),
            };
            entries.push(BindingEntry {
                actor: raw.actor,
                capability: raw.capability,
                binding,
                values,
                filters,
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

/// The Proxy-Wasm filter chains: the top-level `http_filters` and a
/// binding's `filters`.
impl Validator<'_> {
    /// A chain at `at` (`http_filters`, `bindings[0].filters`).
    fn filters(&self, at: &str, raw: Vec<RawFilter>) -> Result<Vec<FilterEntry>, ManifestError> {
        if raw.len() > MAX_FILTER_CHAIN {
            let fix = if at == "http_filters" {
                "merge filters that do related work into one module"
            } else {
                "merge filters that do related work into one module, or move filters every \
                 HTTP binding needs into the top-level `http_filters` (a chain of its own)"
            };
            return Err(self.error(
                at,
                format!(
                    "has {} filters, more than the {MAX_FILTER_CHAIN} a chain may hold (every \
                     filter runs on every request); {fix}",
                    raw.len()
                ),
            ));
        }
        raw.into_iter()
            .enumerate()
            .map(|(index, filter)| self.filter(&format!("{at}[{index}]"), filter))
            .collect()
    }

    fn filter(&self, at: &str, raw: RawFilter) -> Result<FilterEntry, ManifestError> {
        let field = if raw.object {
            format!("{at}.path")
        } else {
            at.to_owned()
        };
        if raw.path.trim().is_empty() {
            return Err(self.error(
                field,
                "the filter path is empty; give a signed Proxy-Wasm module's path or an \
                 oci:// reference",
            ));
        }
        let source = self.source(&field, &raw.path)?;
        let config = match raw.config {
            None => Vec::new(),
            Some(config) => self.filter_config(&format!("{at}.config"), config)?,
        };
        let mut upstreams = BTreeMap::new();
        for (name, url) in raw.upstreams.unwrap_or_default() {
            self.upstream(&format!("{at}.upstreams"), &name, &url)?;
            upstreams.insert(name, url);
        }
        let limits = self.filter_limits(&format!("{at}.limits"), raw.limits.unwrap_or_default())?;
        Ok(FilterEntry {
            source,
            declared: raw.path,
            config,
            upstreams,
            limits,
        })
    }

    /// A string as its bytes, anything else as its JSON text.
    fn filter_config(&self, at: &str, config: Node) -> Result<Vec<u8>, ManifestError> {
        let bytes = match config {
            Node::Str(text) => text.into_bytes(),
            other => {
                if let Some(path) = other.non_finite(&FieldPath::new(at)) {
                    return Err(self.error(
                        path.into_string(),
                        "JSON has no NaN or infinity, and a `config` that is not a string is \
                         handed to the filter as JSON; write a finite number, or quote the \
                         whole `config` as a string",
                    ));
                }
                serde_json::to_vec(&other).map_err(|e| {
                    self.error(
                        at,
                        format!("cannot be written as JSON ({e}); quote it as a string"),
                    )
                })?
            }
        };
        if bytes.len() > MAX_FILTER_CONFIG_BYTES {
            return Err(self.error(
                at,
                format!(
                    "is {} bytes, more than the {MAX_FILTER_CONFIG_BYTES} (1 MiB) a filter is \
                     configured with; keep large data out of the manifest and have the filter \
                     fetch it from one of its `upstreams`",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes)
    }

    /// An upstream cluster name and its base URL; `at` is the `upstreams`
    /// mapping.
    fn upstream(&self, at: &str, name: &str, url: &str) -> Result<(), ManifestError> {
        if name.is_empty() {
            return Err(self.error(at, "an upstream name must not be empty"));
        }
        let field = format!("{at}.{name}");
        if name.len() > 255 || !name.bytes().all(is_upstream_name_byte) {
            return Err(self.error(
                field,
                "is not an upstream name: use 1 to 255 ASCII letters, digits, `.`, `_` and `-` \
                 (the filter names the upstream this way in proxy_http_call)",
            ));
        }
        if let Err(problem) = check_upstream_url(url) {
            return Err(self.error(
                field,
                format!(
                    "`{url}` {problem}; give the upstream's base URL, e.g. \
                     `http://127.0.0.1:9000` or `https://auth.example.com/v1`"
                ),
            ));
        }
        Ok(())
    }

    fn filter_limits(&self, at: &str, raw: RawFilterLimits) -> Result<FilterLimits, ManifestError> {
        let limits = FilterLimits {
            max_memory_mib: value(raw.max_memory_mib),
            deadline_ms: value(raw.deadline_ms),
            fuel: value(raw.fuel),
            max_body_kib: value(raw.max_body_kib),
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
                "every callback would time out at once",
            ),
            (
                "fuel",
                limits.fuel,
                "the filter could not execute a single instruction",
            ),
            (
                "max_body_kib",
                limits.max_body_kib.map(u64::from),
                "no body could be buffered",
            ),
        ];
        self.refuse_zeros(at, &zero_checks)?;
        if let Some(mib) = limits.max_memory_mib
            && mib > crate::MAX_MEMORY_MIB
        {
            return Err(self.error(
                format!("{at}.max_memory_mib"),
                format!(
                    "is {mib}, more than {} (filters run in the host's instance slots, which \
                     hold at most 256 MiB of linear memory); lower it",
                    crate::MAX_MEMORY_MIB
                ),
            ));
        }
        Ok(limits)
    }
}

/// A limit as written, without its parsing wrapper.
fn value<T>(count: Option<Count<T>>) -> Option<T> {
    count.map(|Count(v)| v)
}

fn is_upstream_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Whether `url` is a usable base URL for an upstream: `http://` or
/// `https://`, a host (a name, an IPv4 address or a bracketed IPv6 one) with
/// an optional port, an optional path, and nothing else. On refusal, what is
/// wrong, phrased to follow the URL in a message.
fn check_upstream_url(url: &str) -> Result<(), &'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters");
    }
    let scheme_end = url.find("://").ok_or("is not an http:// or https:// URL")?;
    let scheme = &url[..scheme_end];
    if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
        return Err("is not an http:// or https:// URL");
    }
    if url.contains('?') || url.contains('#') {
        return Err(
            "has a query or fragment, which a base URL cannot have (the filter gives the path \
             and query of each call)",
        );
    }
    let rest = &url[scheme_end + 3..];
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err("has no host");
    }
    if authority.contains('@') {
        return Err(
            "has credentials in it; pass them to the filter in its `config` instead, for it to \
             send as headers",
        );
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (address, after) = bracketed
            .split_once(']')
            .ok_or("has an IPv6 address without its closing `]`")?;
        if address.is_empty()
            || !address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err("has a malformed IPv6 address");
        }
        match after {
            "" => (address, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (address, Some(port)),
                None => return Err("has text after its IPv6 address's `]`"),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("has a host that is not a name or an IP address");
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err("has a port that is not a number from 1 to 65535");
    }
    Ok(())
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
                CapabilitySource::Plugin { source: a, .. },
                CapabilitySource::Plugin { source: b, .. },
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
    fn upstream_urls() {
        for ok in [
            "http://127.0.0.1:9000",
            "https://auth.example.com",
            "https://auth.example.com/",
            "HTTP://Auth.Example.com:443/v1/check",
            "http://[::1]:9000/x",
            "http://[fe80::1]",
            "http://auth_svc.internal",
        ] {
            assert_eq!(check_upstream_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1:9000",
            "ftp://host",
            "grpc://host:1",
            "http://",
            "http:///path",
            "http://:9000",
            "http://host:",
            "http://host:0",
            "http://host:65536",
            "http://host:x",
            "http://host:9000?x=1",
            "http://host/#frag",
            "http://user:pw@host",
            "http://ho st",
            " http://host",
            "http://host\t",
            "http://[::1",
            "http://[]:80",
            "http://[::1]x",
            "http://a:b:c",
            "http://hôst",
        ] {
            assert!(check_upstream_url(bad).is_err(), "{bad:?}");
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
}
