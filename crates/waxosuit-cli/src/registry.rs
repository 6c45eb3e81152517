//! `waxosuit push` and `waxosuit pull`, and the flags every command that
//! accepts an `oci://` reference shares (`up`, `call`, `lattice start
//! actor`).

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use parking_lot::Mutex;
use waxosuit_claims::Verifier;
use waxosuit_par::ProviderArchive;
use waxosuit_registry::{
    Artifact, ArtifactKind, ArtifactRef, Cache, ClaimsSummary, CredentialStore, Fetched, Progress,
    PullPolicy, Puller, Registry, RegistryOptions, Transfer,
};

/// How registries are reached; shared by every command that takes a
/// reference.
#[derive(Debug, Clone, Args)]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to this registry (HOST or HOST:PORT; repeatable, or
    /// comma-separated in the variable). Development only: anything on the
    /// path can then change what a tag names.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST[:PORT]",
        env = "WAXOSUIT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure: Vec<String>,
    /// Accept `:latest` and untagged references, whose content can change
    /// between two starts.
    #[arg(long, env = "WAXOSUIT_ALLOW_LATEST", value_parser = clap::builder::BoolishValueParser::new())]
    allow_latest: bool,
    /// The largest artifact pulled, in MiB.
    #[arg(
        long,
        value_name = "MIB",
        default_value_t = 256,
        env = "WAXOSUIT_MAX_ARTIFACT_MIB"
    )]
    max_artifact_mib: u64,
    /// The longest one push, manifest fetch or layer download may take, in
    /// seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 300,
        env = "WAXOSUIT_REGISTRY_TIMEOUT"
    )]
    registry_timeout: u64,
}

/// `--pull`, for the commands that run what they pull.
#[derive(Debug, Clone, Args)]
pub(crate) struct PullArgs {
    /// When to contact the registry for an `oci://` reference: `missing`
    /// uses the local cache when it has the reference (a restart needs no
    /// network), `always` resolves every tag again, `never` uses the cache
    /// only.
    #[arg(
        long = "pull",
        value_name = "always|missing|never",
        default_value = "missing",
        env = "WAXOSUIT_PULL"
    )]
    policy: PullPolicy,
    #[command(flatten)]
    registry: RegistryArgs,
}

impl RegistryArgs {
    fn client(&self) -> Result<Registry> {
        let credentials = CredentialStore::from_env()?;
        let insecure: Vec<String> = self
            .insecure
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if !insecure.is_empty() {
            eprintln!(
                "WARNING: speaking plain HTTP to {} (--insecure-registry): development only",
                insecure.join(", ")
            );
        }
        Ok(Registry::new(
            credentials,
            RegistryOptions {
                insecure,
                max_artifact_bytes: self.max_artifact_mib.saturating_mul(1024 * 1024),
                deadline: std::time::Duration::from_secs(self.registry_timeout.max(1)),
                ..RegistryOptions::default()
            },
        ))
    }

    fn parse(&self, text: &str) -> Result<ArtifactRef> {
        Ok(ArtifactRef::parse(text, self.allow_latest)?)
    }

    /// Warns once per registry that credentials go out unencrypted.
    fn warn_clear_text(&self, registry: &Registry, reference: &ArtifactRef) {
        if registry.is_insecure(reference.registry())
            && let Some(creds) = registry.credentials().for_registry(reference.registry())
        {
            eprintln!(
                "WARNING: sending the credentials from {} to {} over plain HTTP",
                creds.source(),
                reference.registry()
            );
        }
    }
}

/// Fetches the `oci://` references of one command (one start of a host),
/// printing what it pulled.
pub(crate) struct Fetcher {
    args: RegistryArgs,
    puller: Puller,
    registry: Registry,
}

impl Fetcher {
    /// A fetcher caching under `cache_root` (the cache directory).
    pub(crate) fn new(args: &PullArgs, cache_root: PathBuf) -> Result<Fetcher> {
        let registry = args.registry.client()?;
        let puller = Puller::new(registry.clone(), Cache::new(cache_root), args.policy);
        Ok(Fetcher {
            args: args.registry.clone(),
            puller,
            registry,
        })
    }

    /// Refuses a reference that could never be pulled (malformed, or a
    /// moving tag without `--allow-latest`), before anything starts.
    pub(crate) fn check(&self, text: &str) -> Result<()> {
        self.args.parse(text).map(|_| ())
    }

    /// The artifact `text` names, which must be a `want`; `say` receives
    /// the line to print about it.
    pub(crate) async fn fetch(
        &self,
        text: &str,
        want: Option<ArtifactKind>,
        say: impl Fn(&str),
    ) -> Result<Fetched> {
        let reference = self.args.parse(text)?;
        self.args.warn_clear_text(&self.registry, &reference);
        let bar = TermProgress::new(format!("pulling {reference}"));
        let fetched = self
            .puller
            .fetch(&reference, want, bar.as_ref().map(TermProgress::callback))
            .await;
        if let Some(bar) = &bar {
            bar.finish();
        }
        let fetched = fetched?;
        let whence = match (fetched.contacted_registry, fetched.downloaded) {
            (false, _) => "from the cache",
            (true, false) => "resolved at the registry, layer cached",
            (true, true) => "from the registry",
        };
        say(&format!(
            "{reference} {} ({}, {whence})",
            short(&fetched.resolved.digest),
            size(fetched.resolved.size)
        ));
        Ok(fetched)
    }
}

/// `sha256:` and the first 12 hex digits, as image tools show digests.
fn short(digest: &str) -> &str {
    digest.get(.."sha256:".len() + 12).unwrap_or(digest)
}

fn size(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} B")
    }
}

/// A one-line progress display on stderr, drawn only when stderr is a
/// terminal (logs and pipes get the summary line alone).
struct TermProgress {
    label: String,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl TermProgress {
    fn new(label: String) -> Option<Arc<TermProgress>> {
        std::io::stderr().is_terminal().then(|| {
            Arc::new(TermProgress {
                label,
                start: Instant::now(),
                last: Mutex::new(None),
            })
        })
    }

    fn callback(self: &Arc<Self>) -> Progress {
        let this = Arc::clone(self);
        Arc::new(move |t: Transfer| this.draw(t))
    }

    fn draw(&self, t: Transfer) {
        let now = Instant::now();
        let mut last = self.last.lock();
        // At most ten redraws a second, and always the last one.
        if last.is_some_and(|at| now.duration_since(at).as_millis() < 100) && t.done < t.total {
            return;
        }
        *last = Some(now);
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-3);
        let rate = (t.done as f64 / secs) as u64;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}  {} / {}  {}/s",
            self.label,
            size(t.done),
            size(t.total),
            size(rate)
        );
        let _ = err.flush();
    }

    fn finish(&self) {
        if self.last.lock().is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// `waxosuit push FILE REF`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// A signed actor (`.wasm`) or provider archive (`.par`).
    file: PathBuf,
    /// Where to push it: `oci://REGISTRY/REPOSITORY:TAG`.
    reference: String,
    /// Print the result as JSON (digest, size, media type, claims).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `waxosuit pull REF`.
#[derive(Debug, Args)]
pub(crate) struct PullCmdArgs {
    /// What to pull: `oci://REGISTRY/REPOSITORY:TAG` or `…@sha256:DIGEST`.
    reference: String,
    /// Also write the artifact to this file (it always goes to the local
    /// cache, where `up` and `call` find it).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the result as JSON (digest, size, media type, claims, file).
    #[arg(long)]
    json: bool,
    /// Cache directory (default: $WAXOSUIT_CACHE, else ~/.cache/waxosuit).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// What a file given to `push` is, checked before anything is sent: the
/// signature and the hashes must hold (whoever the issuer is; trust is
/// each host's decision).
fn artifact_of(path: &Path) -> Result<Artifact> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let integrity = Verifier::new().allow_any_issuer();
    if bytes.starts_with(b"\0asm") {
        let verified = integrity.verify_actor(&bytes).with_context(|| {
            format!(
                "{} is not a correctly signed actor, so it is not pushed (sign it with \
                 `waxosuit claims sign`)",
                path.display()
            )
        })?;
        let meta = verified.metadata();
        return Ok(Artifact {
            kind: ArtifactKind::Actor,
            claims: ClaimsSummary {
                name: meta.name.clone(),
                version: meta.ver.clone(),
                issuer: verified.issuer().to_string(),
                subject: verified.subject().to_string(),
                capability: None,
            },
            bytes: Bytes::from(bytes),
            targets: Vec::new(),
        });
    }
    let archive = ProviderArchive::from_bytes(&bytes).with_context(|| {
        format!(
            "{} is neither a wasm module nor a provider archive (.par)",
            path.display()
        )
    })?;
    let verified = archive.verify(&integrity).with_context(|| {
        format!(
            "{} is not a correctly signed provider archive, so it is not pushed",
            path.display()
        )
    })?;
    Ok(Artifact {
        kind: ArtifactKind::ProviderArchive,
        claims: ClaimsSummary {
            name: Some(verified.name().to_string()),
            version: Some(verified.version().to_string()).filter(|v| !v.is_empty()),
            issuer: verified.issuer().to_string(),
            subject: verified.subject().to_string(),
            capability: Some(verified.capid().to_string()),
        },
        targets: verified.targets().iter().map(|t| t.to_string()).collect(),
        bytes: Bytes::from(bytes),
    })
}

/// The same integrity check on pulled bytes: a layer whose bytes differ
/// from what its embedded JWT hashes is refused here, and by the host's
/// full verification (with trust and policy) when it runs.
fn check_pulled(
    kind: ArtifactKind,
    bytes: &[u8],
    reference: &ArtifactRef,
) -> Result<ClaimsSummary> {
    let integrity = Verifier::new().allow_any_issuer();
    match kind {
        ArtifactKind::Actor => {
            let verified = integrity
                .verify_actor(bytes)
                .with_context(|| format!("refusing {reference}: the actor's claims do not hold"))?;
            let meta = verified.metadata();
            Ok(ClaimsSummary {
                name: meta.name.clone(),
                version: meta.ver.clone(),
                issuer: verified.issuer().to_string(),
                subject: verified.subject().to_string(),
                capability: None,
            })
        }
        ArtifactKind::ProviderArchive => {
            let verified = ProviderArchive::from_bytes(bytes)
                .and_then(|a| a.verify(&integrity))
                .with_context(|| {
                    format!("refusing {reference}: the provider archive's claims do not hold")
                })?;
            Ok(ClaimsSummary {
                name: Some(verified.name().to_string()),
                version: Some(verified.version().to_string()).filter(|v| !v.is_empty()),
                issuer: verified.issuer().to_string(),
                subject: verified.subject().to_string(),
                capability: Some(verified.capid().to_string()),
            })
        }
    }
}

pub(crate) fn push(args: PushArgs) -> Result<ExitCode> {
    let artifact = artifact_of(&args.file)?;
    let reference = args.registry.parse(&args.reference)?;
    let registry = args.registry.client()?;
    args.registry.warn_clear_text(&registry, &reference);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bar = TermProgress::new(format!("pushing {reference}"));
    let pushed = runtime.block_on(registry.push(
        &reference,
        &artifact,
        bar.as_ref().map(TermProgress::callback),
    ));
    if let Some(bar) = &bar {
        bar.finish();
    }
    let pushed = pushed?;
    if args.json {
        let out = serde_json::json!({
            "reference": pushed.reference,
            "digest": pushed.digest,
            "pinned": reference.pinned(&pushed.digest).to_string(),
            "layer_digest": pushed.layer_digest,
            "size": pushed.size,
            "media_type": pushed.media_type,
            "kind": artifact.kind,
            "claims": artifact.claims,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "pushed {} ({}, {}) to {reference}",
            args.file.display(),
            artifact.kind,
            size(pushed.size)
        );
        outln!("  digest  {}", pushed.digest);
        outln!("  pinned  {}", reference.pinned(&pushed.digest));
        if pushed.layer_existed {
            outln!("  (the registry had the layer already; only the manifest was sent)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn pull(args: PullCmdArgs) -> Result<ExitCode> {
    let reference = args.registry.parse(&args.reference)?;
    let pull = PullArgs {
        policy: PullPolicy::Always,
        registry: args.registry.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::limits::default_cache_dir);
    let fetcher = Fetcher::new(&pull, cache)?;
    let fetched = runtime.block_on(fetcher.fetch(&args.reference, None, |_| {}))?;
    let claims = check_pulled(fetched.resolved.kind, &fetched.bytes, &reference)?;
    if let Some(output) = &args.output {
        std::fs::write(output, &fetched.bytes)
            .with_context(|| format!("cannot write {}", output.display()))?;
    }
    let file = args.output.clone().unwrap_or_else(|| fetched.path.clone());
    if args.json {
        let out = serde_json::json!({
            "reference": reference.to_string(),
            "digest": fetched.resolved.digest,
            "pinned": reference.pinned(&fetched.resolved.digest).to_string(),
            "layer_digest": fetched.resolved.layer_digest,
            "size": fetched.resolved.size,
            "media_type": fetched.resolved.media_type,
            "kind": fetched.resolved.kind,
            "claims": claims,
            "file": file,
            "downloaded": fetched.downloaded,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "pulled {reference} ({}, {}, {} by {})",
            fetched.resolved.kind,
            size(fetched.resolved.size),
            claims.name.as_deref().unwrap_or("unnamed"),
            claims.issuer
        );
        outln!("  digest  {}", fetched.resolved.digest);
        outln!("  file    {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a module or archive from a path or, for `oci://…`, through
/// `fetcher`.
pub(crate) async fn read_source(
    fetcher: Option<&Fetcher>,
    text: &str,
    want: ArtifactKind,
    say: impl Fn(&str),
) -> Result<Vec<u8>> {
    if !waxosuit_registry::is_reference(text) {
        return std::fs::read(text).with_context(|| format!("cannot read the module {text}"));
    }
    let Some(fetcher) = fetcher else {
        bail!("{text}: registry references are not accepted here");
    };
    Ok(fetcher.fetch(text, Some(want), say).await?.bytes)
}
