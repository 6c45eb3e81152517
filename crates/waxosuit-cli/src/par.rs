//! `waxosuit par create|insert|inspect`: signed provider archives (`.par`)
//! for native capability plugins, and loading them for `waxosuit up`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use waxosuit_claims::{KeyKind, KeyPair, Verifier, display};
use waxosuit_par::{ProviderArchive, library_hash};
use waxosuit_plugin_host::PluginProvider;

use crate::claims::TrustArgs;
use crate::keystore;

#[derive(Debug, Subcommand)]
pub(crate) enum ParCommand {
    /// Create a signed provider archive from a plugin library.
    Create(Box<CreateArgs>),
    /// Add or replace a target's library in an archive, and re-sign it.
    Insert(InsertArgs),
    /// Show an archive's claims, targets and hashes, and whether it is valid.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    /// Capability id the plugin implements (`namespace:name`).
    #[arg(long)]
    capid: String,
    /// Who makes the plugin.
    #[arg(long)]
    vendor: String,
    /// Friendly name.
    #[arg(long)]
    name: String,
    /// Version string.
    #[arg(long)]
    ver: Option<String>,
    /// Revision number.
    #[arg(long)]
    rev: Option<i32>,
    /// Target triple of the library (e.g. x86_64-unknown-linux-gnu).
    #[arg(long)]
    target: String,
    /// The plugin library (.so, .dylib, .dll).
    #[arg(long)]
    library: PathBuf,
    /// Account seed (or .nk file) that signs; the keys directory's
    /// `account.nk` when omitted.
    #[arg(long, value_name = "SEED_OR_FILE")]
    issuer: Option<String>,
    /// Service seed (or .nk file) identifying the provider; generated in the
    /// keys directory when omitted.
    #[arg(long, value_name = "SEED_OR_FILE")]
    subject: Option<String>,
    /// Where to write the archive.
    #[arg(short, long, value_name = "OUT.par")]
    output: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct InsertArgs {
    /// The archive to change (rewritten in place unless `--output` is given).
    archive: PathBuf,
    /// Target triple of the library.
    #[arg(long)]
    target: String,
    /// The plugin library.
    #[arg(long)]
    library: PathBuf,
    /// Account seed (or .nk file) that re-signs; the keys directory's
    /// `account.nk` when omitted.
    #[arg(long, value_name = "SEED_OR_FILE")]
    issuer: Option<String>,
    /// Service seed (or .nk file); the archive's current subject when omitted.
    #[arg(long, value_name = "SEED_OR_FILE")]
    subject: Option<String>,
    /// Write the result here instead of over the input.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// The archive.
    archive: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Whom to trust as the archive's issuer: judged exactly as `up` would
    /// judge it before loading the library.
    #[command(flatten)]
    trust: TrustArgs,
}

pub(crate) fn run(cmd: ParCommand) -> Result<ExitCode> {
    match cmd {
        ParCommand::Create(args) => create(*args),
        ParCommand::Insert(args) => insert(args),
        ParCommand::Inspect(args) => inspect(args),
    }
}

fn key(arg: Option<&str>, role: &str, file: &str, kind: KeyKind) -> Result<KeyPair> {
    let kp = match arg {
        Some(arg) => keystore::load(arg, role)?,
        None => {
            let (kp, generated) = keystore::load_or_generate(file, kind)?;
            if let Some(path) = generated {
                eprintln!(
                    "Generated {role} key {} in {}",
                    kp.public_key(),
                    path.display()
                );
            }
            kp
        }
    };
    if kp.kind() != kind {
        bail!("--{role} must be {kind} key, got {} key", kp.kind());
    }
    Ok(kp)
}

fn read_library(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the library {}", path.display()))
}

fn create(args: CreateArgs) -> Result<ExitCode> {
    let library = read_library(&args.library)?;
    let issuer = key(
        args.issuer.as_deref(),
        "issuer",
        "account",
        KeyKind::Account,
    )?;
    let service_file = format!("{}_provider", keystore::slug(&args.capid));
    let subject = key(
        args.subject.as_deref(),
        "subject",
        &service_file,
        KeyKind::Service,
    )?;
    let mut par = ProviderArchive::create(&args.capid, &args.vendor, &args.name)?;
    if let Some(ver) = args.ver {
        par.set_version(ver);
    }
    if let Some(rev) = args.rev {
        par.set_revision(rev);
    }
    par.insert(&args.target, library)?;
    par.sign(&issuer, &subject.public_key())?;
    par.write_path(&args.output)?;
    println!(
        "Wrote {} ({} for {}), signed by {}",
        args.output.display(),
        args.capid,
        args.target,
        issuer.public_key()
    );
    Ok(ExitCode::SUCCESS)
}

fn insert(args: InsertArgs) -> Result<ExitCode> {
    let mut par = ProviderArchive::read_path(&args.archive)
        .with_context(|| format!("cannot read {}", args.archive.display()))?;
    // Re-signing hashes every library anew: an archive whose signature or
    // hashes no longer hold (a library swapped after signing) would come
    // out signed by this issuer. Integrity first, whoever signed it and
    // whenever (an expired archive is re-signed to renew it).
    let integrity = Verifier::new()
        .allow_any_issuer()
        .with_clock_skew(std::time::Duration::from_secs(u64::MAX));
    par.verify(&integrity).with_context(|| {
        format!(
            "{} does not verify, so it is not re-signed (that would vouch for \
                 whatever it now holds); rebuild it from its libraries with \
                 `waxosuit par create`",
            args.archive.display()
        )
    })?;
    let current = par.claims_unverified()?;
    let issuer = key(
        args.issuer.as_deref(),
        "issuer",
        "account",
        KeyKind::Account,
    )?;
    let subject = match args.subject.as_deref() {
        Some(arg) => key(Some(arg), "subject", "", KeyKind::Service)?.public_key(),
        None => current.subject,
    };
    par.insert(&args.target, read_library(&args.library)?)?;
    par.sign(&issuer, &subject)?;
    let out = args.output.unwrap_or(args.archive);
    par.write_path(&out)?;
    println!(
        "Wrote {} with targets {}, signed by {}",
        out.display(),
        par.targets().join(", "),
        issuer.public_key()
    );
    Ok(ExitCode::SUCCESS)
}

/// How many characters of an archive's claims value a table cell shows.
const CELL_CHARS: usize = 128;

fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let par = ProviderArchive::read_path(&args.archive)
        .with_context(|| format!("cannot read {}", args.archive.display()))?;
    let claims = par.claims_unverified()?;
    let meta = claims.metadata()?.clone();
    let verifier = args.trust.verifier()?;
    let verdict = par.verify(&verifier).map(drop);
    let targets: Vec<(String, String)> = par
        .targets()
        .into_iter()
        .map(|t| {
            let hash = par
                .library_unverified(t)
                .map(library_hash)
                .unwrap_or_default();
            (t.to_string(), hash)
        })
        .collect();
    if args.json {
        let json = serde_json::json!({
            "capid": meta.capid,
            "vendor": meta.vendor,
            "name": meta.name,
            "version": meta.ver,
            "revision": meta.rev,
            "issuer": claims.issuer,
            "subject": claims.subject,
            "targets": targets.iter().map(|(t, h)| serde_json::json!({"target": t, "sha256": h})).collect::<Vec<_>>(),
            "issuer_checked": !verifier.allows_any_issuer(),
            "valid": verdict.is_ok(),
            "reason": verdict.as_ref().err().map(ToString::to_string),
        });
        outln!("{}", crate::claims::safe_json(&json)?);
    } else {
        // The claims are shown before they are judged: escape them.
        let cell = |v: &str| display::escape(v, CELL_CHARS);
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        let mut row = |k: &str, v: String| {
            table.add_row(vec![k.to_string(), v]);
        };
        row("Capability", cell(&meta.capid));
        row("Vendor", cell(&meta.vendor));
        row("Name", cell(meta.name.as_deref().unwrap_or_default()));
        row(
            "Version",
            format!(
                "{} (rev {})",
                meta.ver.as_deref().map_or_else(|| "-".into(), cell),
                meta.rev.unwrap_or(0)
            ),
        );
        row("Issuer", cell(&claims.issuer));
        row("Subject", cell(&claims.subject));
        for (t, h) in &targets {
            row("Target", format!("{}\n{h}", cell(t)));
        }
        let status = match (&verdict, verifier.allows_any_issuer()) {
            (Ok(()), false) => "valid (signature, trusted issuer, hashes)".to_string(),
            (Ok(()), true) => "valid (signature, hashes); ANY issuer accepted: \
                               --allow-any-issuer, development only"
                .to_string(),
            (Err(e), _) => format!("INVALID: {e}"),
        };
        row("Status", status);
        outln!("{table}");
    }
    Ok(if verdict.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Verifies a provider archive read from `shown` (a path or a registry
/// reference) and registers it lazily.
/// Its library is staged under `staging` when it loads.
pub(crate) fn load_archive(
    archive: &ProviderArchive,
    shown: &str,
    verifier: &Verifier,
    staging: &Path,
) -> Result<Arc<PluginProvider>> {
    let verified = archive
        .verify(verifier)
        .with_context(|| format!("refusing the provider archive {shown}"))?;
    if verifier.allows_any_issuer() {
        eprintln!(
            "WARNING: loading the provider archive {shown} signed by {}, trusted only because \
             --allow-any-issuer accepts ANY issuer (development only)",
            verified.issuer()
        );
    }
    Ok(Arc::new(
        PluginProvider::from_archive(&verified)?.stage_in(staging),
    ))
}

/// Loads a manifest's `path:` capability that is a bare library (not a
/// `.par`): only with `allow_unsigned`, loudly, since nothing vouches for it.
pub(crate) fn load_unsigned_library(
    path: &Path,
    allow_unsigned: bool,
    staging: &Path,
) -> Result<Arc<PluginProvider>> {
    if !allow_unsigned {
        bail!(
            "{} is an unsigned native library; package it with `waxosuit par create` and \
             declare the .par, or pass --allow-unsigned-plugins (development only)",
            path.display()
        );
    }
    eprintln!(
        "WARNING: loading the UNSIGNED native plugin {}: nothing vouches for this code, and it \
         runs with the host's privileges (--allow-unsigned-plugins)",
        path.display()
    );
    tracing::warn!(path = %path.display(), "loading an unsigned native plugin");
    let provider = tokio::task::block_in_place(|| {
        PluginProvider::from_unsigned_library_in(path, Some(staging))
    })?;
    Ok(Arc::new(provider))
}
