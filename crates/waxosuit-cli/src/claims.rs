//! `waxosuit claims sign | inspect | token`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use serde_json::json;
use waxosuit_claims::{
    Account, Actor, Claims, ClaimsError, KeyKind, KeyPair, Operator, Verifier, caps, display,
    human_date, human_relative, now_secs,
};

use crate::keystore;

const DAY: u64 = 86_400;

#[derive(Debug, Subcommand)]
pub(crate) enum ClaimsCommand {
    /// Embed signed claims into a wasm module.
    Sign(Box<SignArgs>),
    /// Show and verify the claims of a signed module (or of a token file).
    Inspect(InspectArgs),
    /// Mint an account or operator token (the provenance chain).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The module to sign.
    input: PathBuf,
    /// Where to write the signed module.
    #[arg(short, long)]
    output: PathBuf,
    /// The actor's name.
    #[arg(short, long)]
    name: String,
    /// Account seed (or .nk file) that issues the actor; generated and kept in
    /// the keys directory when omitted.
    #[arg(short, long, value_name = "SEED_OR_FILE")]
    issuer: Option<String>,
    /// Module seed (or .nk file): the actor's identity; generated and kept in
    /// the keys directory (one per actor name) when omitted.
    #[arg(short, long, value_name = "SEED_OR_FILE")]
    subject: Option<String>,
    /// Capability id the actor may use (repeatable), e.g. `acme:inventory`.
    #[arg(short, long = "cap", value_name = "CAPID")]
    caps: Vec<String>,
    /// Tag (repeatable).
    #[arg(short, long = "tag")]
    tags: Vec<String>,
    /// Revision number.
    #[arg(short, long)]
    rev: Option<i32>,
    /// Version string.
    #[arg(short, long)]
    ver: Option<String>,
    /// Alias other actors may call this one by.
    #[arg(long)]
    call_alias: Option<String>,
    /// Expire after this many days (default: never).
    #[arg(short = 'x', long, value_name = "DAYS")]
    expires_in_days: Option<u64>,
    /// Not valid until this many days from now (default: at once).
    #[arg(short = 'b', long, value_name = "DAYS")]
    not_before_days: Option<u64>,
    /// Mark the module as a portable capability provider.
    #[arg(long)]
    provider: bool,
    /// Grant wascc:http_server.
    #[arg(long)]
    http_server: bool,
    /// Grant wascc:http_client.
    #[arg(long)]
    http_client: bool,
    /// Grant wascc:keyvalue.
    #[arg(long)]
    keyvalue: bool,
    /// Grant wascc:messaging.
    #[arg(long)]
    messaging: bool,
    /// Grant wascc:logging.
    #[arg(long)]
    logging: bool,
    /// Grant wascc:blobstore.
    #[arg(long)]
    blobstore: bool,
    /// Grant wascc:extras.
    #[arg(long)]
    extras: bool,
    /// Grant wascc:eventstreams.
    #[arg(long)]
    eventstreams: bool,
}

/// Whom `up`, `call` and the `inspect` commands trust to issue actors and
/// provider archives. There is no implicit trust: an issuer is trusted only
/// when it is the local keystore's account, named here, or vouched for by a
/// trusted operator; `--allow-any-issuer` is the explicit, loud exception.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// Trust actors and provider archives issued by this account key
    /// (repeatable). The local keystore's account (the keys directory's
    /// account.nk, which `claims sign` uses without --issuer) is trusted
    /// without being named.
    #[arg(long = "trusted-issuer", value_name = "ACCOUNT_KEY")]
    trusted_issuers: Vec<String>,
    /// Trust accounts issued by this operator: an `O…` key, or a file holding
    /// a self-signed operator token (repeatable).
    #[arg(long = "trusted-operator", value_name = "KEY_OR_FILE")]
    trusted_operators: Vec<String>,
    /// A file holding an account token that links an issuer to a trusted operator (repeatable).
    #[arg(long = "account-token", value_name = "FILE")]
    account_tokens: Vec<PathBuf>,
    /// Accept actors and provider archives from ANY issuer, as long as they
    /// are correctly signed. Development only: anyone with a key pair can
    /// then run code here.
    #[arg(
        long,
        env = "WAXOSUIT_ALLOW_ANY_ISSUER",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_any_issuer: bool,
}

/// A [`TrustArgs`] turned into a verifier, with what it trusts in words.
#[derive(Debug)]
pub(crate) struct ResolvedTrust {
    /// The verifier for actors, provider archives and account tokens.
    pub verifier: Verifier,
    /// One line per trusted party (or the warning that any issuer is
    /// accepted, or that none is), for the caller to print at start-up.
    pub summary: Vec<String>,
}

impl TrustArgs {
    /// The verifier these options describe (see [`TrustArgs::resolve`]).
    pub(crate) fn verifier(&self) -> Result<Verifier> {
        Ok(self.resolve()?.verifier)
    }

    /// The verifier these options describe, trusting the local keystore's
    /// account too, and a summary of whom it trusts.
    pub(crate) fn resolve(&self) -> Result<ResolvedTrust> {
        self.resolve_with(&keystore::local_account(), &keystore::keys_dir())
    }

    fn resolve_with(
        &self,
        local: &keystore::LocalAccount,
        keys_dir: &Path,
    ) -> Result<ResolvedTrust> {
        let mut v = Verifier::new();
        let mut summary = Vec::new();
        if self.allow_any_issuer {
            v = v.allow_any_issuer();
            summary.push(
                "WARNING: accepting actors and provider archives from ANY issuer \
                 (--allow-any-issuer or WAXOSUIT_ALLOW_ANY_ISSUER; development only)"
                    .to_string(),
            );
        }
        match local {
            keystore::LocalAccount::Found { key, path } => {
                v = v.trust_issuer(key)?;
                summary.push(format!(
                    "trusting actors and provider archives issued by {key} (the local \
                     keystore's account, {})",
                    path.display()
                ));
            }
            keystore::LocalAccount::Unusable { path, reason } => summary.push(format!(
                "note: not trusting the local keystore's account {}: {reason}",
                path.display()
            )),
            keystore::LocalAccount::Absent(_) => {}
        }
        for key in &self.trusted_issuers {
            v = v.trust_issuer(key).with_context(|| {
                format!(
                    "--trusted-issuer `{}` is not an account key",
                    display::escape(key, 60)
                )
            })?;
            if !matches!(local, keystore::LocalAccount::Found { key: k, .. } if k == key) {
                summary.push(format!(
                    "trusting actors and provider archives issued by {key} (--trusted-issuer)"
                ));
            }
        }
        for op in &self.trusted_operators {
            v = if op.len() == 56 && op.starts_with('O') && !Path::new(op).exists() {
                summary.push(format!(
                    "trusting accounts vouched for by operator {op} (--trusted-operator)"
                ));
                v.trust_operator(op)?
            } else {
                let jwt = fs::read_to_string(op)
                    .with_context(|| format!("cannot read operator token file `{op}`"))?;
                let v = v
                    .trust_operator_token(jwt.trim())
                    .with_context(|| format!("operator token `{op}` is not valid"))?;
                let key = Claims::<Operator>::decode_unverified(jwt.trim())
                    .map(|c| c.subject)
                    .unwrap_or_default();
                summary.push(format!(
                    "trusting accounts vouched for by operator {key} and its valid signers \
                     (--trusted-operator {op})"
                ));
                v
            };
        }
        for path in &self.account_tokens {
            let jwt = fs::read_to_string(path)
                .with_context(|| format!("cannot read account token file {}", path.display()))?;
            let account = Claims::<Account>::decode_unverified(jwt.trim())
                .map(|c| display::escape(&c.subject, 60))
                .unwrap_or_else(|_| "(unreadable)".to_string());
            summary.push(format!(
                "offering the account token for {account} (--account-token {}); it counts \
                 only if a trusted operator issued it",
                path.display()
            ));
            v = v.with_account_token(jwt.trim());
        }
        if !self.allow_any_issuer && !v.has_trust_list() {
            summary.push(format!(
                "trusting NO issuer: every actor and provider archive will be refused; trust \
                 one with --trusted-issuer A…, sign with `waxosuit claims sign` (its account, \
                 {}, is then trusted automatically), or pass --allow-any-issuer (development \
                 only)",
                keys_dir.join(keystore::ACCOUNT_FILE).display()
            ));
        }
        Ok(ResolvedTrust {
            verifier: v,
            summary,
        })
    }
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A signed .wasm module, or a file holding an account/operator token.
    file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    trust: TrustArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TokenKindArg {
    /// An account token, issued by an operator.
    Account,
    /// A self-signed operator token.
    Operator,
}

#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// account or operator.
    kind: TokenKindArg,
    /// Friendly name.
    #[arg(short, long)]
    name: String,
    /// Operator seed (or .nk file) that signs; generated in the keys directory when omitted.
    #[arg(short, long, value_name = "SEED_OR_FILE")]
    issuer: Option<String>,
    /// For an account token: the account seed/.nk file, or its public key.
    /// Generated in the keys directory when omitted.
    #[arg(short, long, value_name = "KEY_SEED_OR_FILE")]
    subject: Option<String>,
    /// Additional signing key allowed to act for the subject (repeatable).
    #[arg(long = "signer", value_name = "PUBLIC_KEY")]
    signers: Vec<String>,
    /// Expire after this many days (default: never).
    #[arg(short = 'x', long, value_name = "DAYS")]
    expires_in_days: Option<u64>,
    /// Write the token here instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub(crate) fn run(cmd: ClaimsCommand) -> Result<ExitCode> {
    match cmd {
        ClaimsCommand::Sign(args) => sign(*args),
        ClaimsCommand::Inspect(args) => inspect(args),
        ClaimsCommand::Token(args) => token(args),
    }
}

fn key_or_generated(arg: Option<&str>, role: &str, file: &str, kind: KeyKind) -> Result<KeyPair> {
    match arg {
        Some(arg) => keystore::load(arg, role),
        None => {
            let (kp, generated) = keystore::load_or_generate(file, kind)?;
            let path = keystore::keys_dir().join(format!("{file}.nk"));
            match generated {
                Some(p) => eprintln!(
                    "Generated {role} key {} in {}",
                    kp.public_key(),
                    p.display()
                ),
                None => eprintln!(
                    "Using {role} key {} from {}",
                    kp.public_key(),
                    path.display()
                ),
            }
            Ok(kp)
        }
    }
}

fn sign(args: SignArgs) -> Result<ExitCode> {
    let module = fs::read(&args.input)
        .with_context(|| format!("cannot read module {}", args.input.display()))?;
    let issuer = key_or_generated(
        args.issuer.as_deref(),
        "account",
        "account",
        KeyKind::Account,
    )?;
    let module_file = format!("{}_module", keystore::slug(&args.name));
    let subject = key_or_generated(
        args.subject.as_deref(),
        "module",
        &module_file,
        KeyKind::Module,
    )?;
    if issuer.kind() != KeyKind::Account {
        bail!(
            "--issuer must be an account seed (SA…), got {} key; generate one with `waxosuit keys gen account`",
            issuer.kind()
        );
    }
    if subject.kind() != KeyKind::Module {
        bail!(
            "--subject must be a module seed (SM…), got {} key; generate one with `waxosuit keys gen module`",
            subject.kind()
        );
    }

    let mut capabilities: Vec<String> = [
        (args.http_server, caps::HTTP_SERVER),
        (args.http_client, caps::HTTP_CLIENT),
        (args.keyvalue, caps::KEY_VALUE),
        (args.messaging, caps::MESSAGING),
        (args.logging, caps::LOGGING),
        (args.blobstore, caps::BLOB),
        (args.extras, caps::EXTRAS),
        (args.eventstreams, caps::EVENTSTREAMS),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, id)| id.to_string())
    .collect();
    for cap in args.caps {
        if !caps::is_valid_capability_id(&cap) {
            bail!(
                "`{cap}` is not a capability id: use `namespace:name` (e.g. `acme:inventory`) or an actor's M… key"
            );
        }
        if !capabilities.contains(&cap) {
            capabilities.push(cap);
        }
    }

    let mut builder = Claims::<Actor>::builder()
        .issuer(issuer.public_key())
        .subject(subject.public_key())
        .wascap_revision(waxosuit_claims::WASCAP_REVISION)
        .metadata(Actor {
            caps: Some(capabilities),
            tags: Some(args.tags),
            rev: args.rev,
            ver: args.ver,
            call_alias: args.call_alias,
            provider: args.provider,
            ..Actor::named(args.name)
        });
    if let Some(days) = args.expires_in_days {
        builder = builder.expires_in(Duration::from_secs(days.saturating_mul(DAY)));
    }
    if let Some(days) = args.not_before_days {
        builder = builder.valid_in(Duration::from_secs(days.saturating_mul(DAY)));
    }
    let signed = waxosuit_claims::embed_claims(&module, &builder.build(), &issuer)
        .with_context(|| format!("cannot sign {}", args.input.display()))?;
    fs::write(&args.output, &signed)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    eprintln!(
        "Signed {} as actor {} → {}",
        args.input.display(),
        subject.public_key(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn inspect(args: InspectArgs) -> Result<ExitCode> {
    let bytes =
        fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let verifier = args.trust.verifier()?;
    let file = args.file.display().to_string();
    let now = now_secs();
    let error = if bytes.starts_with(b"\0asm") {
        let report = module_report(&file, &bytes, &verifier);
        if args.json {
            outln!("{}", safe_json(&module_json(&report))?);
        } else {
            outln!("{}", module_table(&report, now));
        }
        report.verdict.err()
    } else {
        let text = String::from_utf8(bytes).map_err(|_| ClaimsError::NotWasm)?;
        let report = token_report(text.trim(), &verifier);
        if args.json {
            outln!("{}", safe_json(&token_json(&report))?);
        } else {
            outln!("{}", token_table(&report, now));
        }
        report.error
    };
    match error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {file} is not valid: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `value` as pretty JSON that is safe to print on a terminal: besides what
/// JSON escapes itself, every character that could move the cursor or turn
/// the reading direction ([`display::is_unsafe_char`]: DEL, C1 controls,
/// bidirectional overrides, zero-width characters) is written as a `\uXXXX`
/// escape. A JSON parser reads back exactly the same value.
pub(crate) fn safe_json(value: &serde_json::Value) -> Result<String> {
    let raw = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        // Outside strings pretty JSON holds only spaces and newlines, and
        // serde_json escapes newlines inside them: a raw unsafe character
        // other than '\n' can only be inside a string, where `\uXXXX`
        // means that same character. All of them are in the BMP.
        if c != '\n' && display::is_unsafe_char(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// How many characters of a claims value a table cell shows.
const CELL_CHARS: usize = 128;

/// A claims value as a table shows it: escaped and bounded, since the token
/// may be hostile (and is shown even when it fails verification).
fn cell(value: &str) -> String {
    display::escape(value, CELL_CHARS)
}

/// What `claims inspect` knows about a signed module: the claims as found
/// (verified, or decoded without trust when verification failed, so a person
/// can see *why*: which issuer, which dates, which field) and the verdict.
#[derive(Debug)]
pub(crate) struct ModuleReport {
    file: String,
    claims: Option<Claims<Actor>>,
    verdict: Result<(), ClaimsError>,
    any_issuer: bool,
}

/// Verifies `bytes` with `verifier` and keeps whatever can be shown.
pub(crate) fn module_report(file: &str, bytes: &[u8], verifier: &Verifier) -> ModuleReport {
    let (claims, verdict) = match verifier.verify_actor(bytes) {
        Ok(v) => (Some(v.claims().clone()), Ok(())),
        Err(e) => (
            waxosuit_claims::extract(bytes)
                .ok()
                .and_then(|x| Claims::<Actor>::decode_unverified(&x.jwt).ok()),
            Err(e),
        ),
    };
    ModuleReport {
        file: file.to_string(),
        claims,
        verdict,
        any_issuer: verifier.allows_any_issuer(),
    }
}

/// The report as `--json` prints it. Values are the token's own (JSON
/// escapes them); capability names are the display names.
pub(crate) fn module_json(report: &ModuleReport) -> serde_json::Value {
    let mut out = json!({ "file": report.file, "valid": report.verdict.is_ok() });
    if let Some(c) = &report.claims {
        let meta = c.metadata.clone().unwrap_or_default();
        out["claims"] = json!({
            "account": c.issuer,
            "module": c.subject,
            "name": meta.name,
            "version": meta.ver,
            "revision": meta.rev,
            "hash": meta.module_hash,
            "issued_at": c.issued_at,
            "expires": c.expires,
            "not_before": c.not_before,
            "capabilities": meta.capabilities().iter()
                .map(|id| json!({ "id": id, "name": caps::display_name(id) }))
                .collect::<Vec<_>>(),
            "tags": meta.tag_list(),
            "call_alias": meta.call_alias,
            "provider": meta.provider,
        });
    }
    if let Err(e) = &report.verdict {
        out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
    }
    if report.any_issuer {
        out["any_issuer_accepted"] = json!(true);
    }
    out
}

/// The report as a table, followed by the verdict line when it is valid
/// (the error itself goes to stderr). Every claims value is escaped.
pub(crate) fn module_table(report: &ModuleReport, now: u64) -> String {
    let mut out = String::new();
    if let Some(c) = &report.claims {
        let meta = c.metadata.clone().unwrap_or_default();
        let name = meta
            .name
            .as_deref()
            .map_or_else(|| "(unnamed)".to_string(), cell);
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let title = if report.verdict.is_ok() {
            format!("{name} - Module")
        } else {
            format!("{name} - Module (NOT VALID)")
        };
        table.set_header(vec![title, String::new()]);
        table.add_row(vec!["Account".to_string(), cell(&c.issuer)]);
        table.add_row(vec!["Module".to_string(), cell(&c.subject)]);
        let version = match (meta.ver.as_deref().map(cell), meta.rev) {
            (Some(v), Some(r)) => format!("{v} ({r})"),
            (Some(v), None) => v,
            (None, Some(r)) => format!("({r})"),
            (None, None) => "-".to_string(),
        };
        table.add_row(vec!["Version".to_string(), version]);
        table.add_row(vec!["Expires".to_string(), when(c.expires, now, "never")]);
        table.add_row(vec![
            "Can Be Used".to_string(),
            when(c.not_before, now, "immediately"),
        ]);
        table.add_row(vec!["Hash".to_string(), cell(&meta.module_hash)]);
        let capabilities: Vec<String> = meta
            .capabilities()
            .iter()
            .map(|id| caps::display_name(id))
            .collect();
        table.add_row(vec![
            "Capabilities".to_string(),
            if capabilities.is_empty() {
                "None".to_string()
            } else {
                capabilities.join("\n")
            },
        ]);
        let tags: Vec<String> = meta.tag_list().iter().map(|t| cell(t)).collect();
        table.add_row(vec![
            "Tags".to_string(),
            if tags.is_empty() {
                "None".to_string()
            } else {
                tags.join(", ")
            },
        ]);
        if let Some(alias) = &meta.call_alias {
            table.add_row(vec!["Call Alias".to_string(), cell(alias)]);
        }
        out.push_str(&table.to_string());
    }
    if report.verdict.is_ok() {
        let trust = if report.any_issuer {
            "ANY issuer accepted: --allow-any-issuer, development only"
        } else {
            "issuer trusted"
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!("Signature valid ({trust})."));
    }
    out
}

/// What `claims inspect` knows about an account or operator token file.
#[derive(Debug)]
pub(crate) struct TokenReport {
    kind: &'static str,
    issuer: String,
    subject: String,
    name: Option<String>,
    signers: Vec<String>,
    expires: Option<u64>,
    error: Option<ClaimsError>,
}

/// Verifies `jwt` as an operator token, else as an account token, reporting
/// the error of the kind whose key roles match the token's issuer.
pub(crate) fn token_report(jwt: &str, verifier: &Verifier) -> TokenReport {
    let (op, acct) = (verifier.verify_operator(jwt), verifier.verify_account(jwt));
    let verified = |kind,
                    issuer: &str,
                    subject: &str,
                    name: &Option<String>,
                    signers: &Option<Vec<String>>,
                    expires| {
        TokenReport {
            kind,
            issuer: issuer.to_string(),
            subject: subject.to_string(),
            name: name.clone(),
            signers: signers.clone().unwrap_or_default(),
            expires,
            error: None,
        }
    };
    match (op, acct) {
        (Ok(v), _) => verified(
            "operator",
            v.issuer(),
            v.subject(),
            &v.metadata().name,
            &v.metadata().valid_signers,
            v.claims().expires,
        ),
        (_, Ok(v)) => verified(
            "account",
            v.issuer(),
            v.subject(),
            &v.metadata().name,
            &v.metadata().valid_signers,
            v.claims().expires,
        ),
        (Err(op_err), Err(acct_err)) => {
            let raw = Claims::<Account>::decode_unverified(jwt);
            let self_signed = raw.as_ref().is_ok_and(|c| c.issuer == c.subject);
            let (kind, error) = if self_signed {
                ("operator", op_err)
            } else {
                ("account", acct_err)
            };
            let mut report = TokenReport {
                kind,
                issuer: String::new(),
                subject: String::new(),
                name: None,
                signers: Vec::new(),
                expires: None,
                error: Some(error),
            };
            if let Ok(c) = raw {
                let m = c.metadata.clone().unwrap_or_default();
                report.issuer = c.issuer;
                report.subject = c.subject;
                report.name = m.name;
                report.signers = m.valid_signers.unwrap_or_default();
                report.expires = c.expires;
            }
            report
        }
    }
}

/// The token report as `--json` prints it.
pub(crate) fn token_json(report: &TokenReport) -> serde_json::Value {
    let mut out = json!({
        "kind": report.kind, "issuer": report.issuer, "subject": report.subject,
        "name": report.name, "valid_signers": report.signers, "expires": report.expires,
        "valid": report.error.is_none(),
    });
    if let Some(e) = &report.error {
        out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
    }
    out
}

/// The token report as a table; every token value is escaped.
pub(crate) fn token_table(report: &TokenReport, now: u64) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        format!(
            "{} - {} token{}",
            report
                .name
                .as_deref()
                .map_or_else(|| "(unnamed)".to_string(), cell),
            report.kind,
            if report.error.is_some() {
                " (NOT VALID)"
            } else {
                ""
            }
        ),
        String::new(),
    ]);
    table.add_row(vec!["Issuer".to_string(), cell(&report.issuer)]);
    table.add_row(vec!["Subject".to_string(), cell(&report.subject)]);
    table.add_row(vec![
        "Expires".to_string(),
        when(report.expires, now, "never"),
    ]);
    let signers: Vec<String> = report.signers.iter().map(|s| cell(s)).collect();
    table.add_row(vec![
        "Valid Signers".to_string(),
        if signers.is_empty() {
            "None".to_string()
        } else {
            signers.join("\n")
        },
    ]);
    table.to_string()
}

fn token(args: TokenArgs) -> Result<ExitCode> {
    let issuer = key_or_generated(
        args.issuer.as_deref(),
        "operator",
        "operator",
        KeyKind::Operator,
    )?;
    if issuer.kind() != KeyKind::Operator {
        bail!(
            "--issuer must be an operator seed (SO…), got {} key; generate one with `waxosuit keys gen operator`",
            issuer.kind()
        );
    }
    for signer in &args.signers {
        let expected = match args.kind {
            TokenKindArg::Account => KeyKind::Account,
            TokenKindArg::Operator => KeyKind::Operator,
        };
        let kind = KeyKind::of_public_key(signer)?;
        if kind != expected {
            bail!("--signer {signer} is {kind} key, but {expected} key is needed here");
        }
    }
    let signers = Some(args.signers.clone());
    let expires = args
        .expires_in_days
        .map(|d| Duration::from_secs(d.saturating_mul(DAY)));
    let jwt = match args.kind {
        TokenKindArg::Operator => {
            let mut b = Claims::<Operator>::builder()
                .issuer(issuer.public_key())
                .subject(issuer.public_key())
                .metadata(Operator {
                    name: Some(args.name.clone()),
                    valid_signers: signers,
                });
            if let Some(d) = expires {
                b = b.expires_in(d);
            }
            b.build().encode(&issuer)?
        }
        TokenKindArg::Account => {
            let subject = match args.subject.as_deref() {
                Some(s) if s.len() == 56 && s.starts_with('A') && !Path::new(s).exists() => {
                    KeyPair::from_public_key(s)?.public_key()
                }
                other => {
                    let file = format!("{}_account", keystore::slug(&args.name));
                    key_or_generated(other, "account", &file, KeyKind::Account)?.public_key()
                }
            };
            if KeyKind::of_public_key(&subject)? != KeyKind::Account {
                bail!("--subject must be an account key or seed");
            }
            let mut b = Claims::<Account>::builder()
                .issuer(issuer.public_key())
                .subject(subject)
                .metadata(Account {
                    name: Some(args.name.clone()),
                    valid_signers: signers,
                });
            if let Some(d) = expires {
                b = b.expires_in(d);
            }
            b.build().encode(&issuer)?
        }
    };
    match &args.output {
        Some(path) => {
            fs::write(path, format!("{jwt}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("Wrote token to {}", path.display());
        }
        None => outln!("{jwt}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn when(at: Option<u64>, now: u64, none: &str) -> String {
    match at {
        None => none.to_string(),
        Some(t) => format!("{} ({})", human_date(t), human_relative(t, now)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use clap::Parser;
    use waxosuit_test_fixtures::hostile::{self, proptest};

    use self::proptest::prelude::*;
    use super::*;
    use crate::keystore::{LocalAccount, local_account_in, write_seed};
    use waxosuit_claims::TokenKind;

    /// The smallest module: the claims are the point here.
    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        trust: TrustArgs,
    }

    fn trust_args(args: &[&str]) -> TrustArgs {
        Cli::try_parse_from(std::iter::once("waxosuit").chain(args.iter().copied()))
            .unwrap()
            .trust
    }

    fn signed_by(account: &KeyPair, meta: Actor) -> Vec<u8> {
        let module = KeyPair::generate(KeyKind::Module).public_key();
        hostile::signed_module(MODULE, account, &module, meta, None, None)
    }

    #[test]
    fn the_local_keystore_account_is_trusted_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let account = KeyPair::generate(KeyKind::Account);
        write_seed(&dir.path().join(keystore::ACCOUNT_FILE), &account).unwrap();
        let local = local_account_in(dir.path());
        let trust = trust_args(&[]).resolve_with(&local, dir.path()).unwrap();
        assert_eq!(trust.summary.len(), 1, "{:?}", trust.summary);
        let line = &trust.summary[0];
        assert!(line.contains(&account.public_key()), "{line}");
        assert!(line.contains("the local keystore's account"), "{line}");
        assert!(line.contains(&dir.path().display().to_string()), "{line}");
        trust
            .verifier
            .verify_actor(&signed_by(&account, Actor::named("mine")))
            .unwrap();
        // Anyone else's actor is refused as untrusted.
        let stranger = KeyPair::generate(KeyKind::Account);
        let err = trust
            .verifier
            .verify_actor(&signed_by(&stranger, Actor::named("theirs")))
            .unwrap_err();
        assert!(matches!(err, ClaimsError::UntrustedIssuer { .. }), "{err}");
    }

    #[test]
    fn with_nothing_trusted_the_summary_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let trust = trust_args(&[])
            .resolve_with(
                &LocalAccount::Absent(dir.path().join("account.nk")),
                dir.path(),
            )
            .unwrap();
        let text = trust.summary.join("\n");
        for needle in [
            "trusting NO issuer",
            "--trusted-issuer",
            "waxosuit claims sign",
            "--allow-any-issuer",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let err = trust
            .verifier
            .verify_actor(&signed_by(
                &KeyPair::generate(KeyKind::Account),
                Actor::named("x"),
            ))
            .unwrap_err();
        assert!(matches!(err, ClaimsError::NoTrustedIssuer { .. }), "{err}");

        // An unusable keystore file is reported, not trusted.
        let unusable = LocalAccount::Unusable {
            path: dir.path().join("account.nk"),
            reason: "it holds a module key, not an account key".into(),
        };
        let trust = trust_args(&[]).resolve_with(&unusable, dir.path()).unwrap();
        assert!(
            trust.summary[0].starts_with("note: not trusting"),
            "{:?}",
            trust.summary
        );
        assert!(!trust.verifier.has_trust_list());
    }

    #[test]
    fn explicit_issuers_and_allow_any_are_summarised() {
        let dir = tempfile::tempdir().unwrap();
        let absent = LocalAccount::Absent(dir.path().join("account.nk"));
        let account = KeyPair::generate(KeyKind::Account);
        let trust = trust_args(&["--trusted-issuer", &account.public_key()])
            .resolve_with(&absent, dir.path())
            .unwrap();
        assert_eq!(trust.summary.len(), 1, "{:?}", trust.summary);
        assert!(trust.summary[0].contains("(--trusted-issuer)"));
        trust
            .verifier
            .verify_actor(&signed_by(&account, Actor::named("x")))
            .unwrap();

        let trust = trust_args(&["--allow-any-issuer"])
            .resolve_with(&absent, dir.path())
            .unwrap();
        assert!(trust.verifier.allows_any_issuer());
        assert!(
            trust.summary[0]
                .starts_with("WARNING: accepting actors and provider archives from ANY issuer"),
            "{:?}",
            trust.summary
        );
        assert!(!trust.summary.iter().any(|l| l.contains("NO issuer")));

        let err = trust_args(&["--trusted-issuer", "AOOPS"])
            .resolve_with(&absent, dir.path())
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("--trusted-issuer `AOOPS`"),
            "{err:#}"
        );
    }

    /// The module whose `claims inspect` used to panic: a 56-byte non-ASCII
    /// `caps` entry starting with `M` (`display_name` sliced `[..8]`).
    #[test]
    fn inspect_shows_and_refuses_the_caps_entry_that_used_to_panic() {
        let account = KeyPair::generate(KeyKind::Account);
        let hostile_cap = format!("MAAAAAA\u{e9}{}", "A".repeat(47));
        assert_eq!(hostile_cap.len(), 56);
        let bytes = signed_by(
            &account,
            Actor {
                caps: Some(vec![caps::KEY_VALUE.into(), hostile_cap.clone()]),
                ..Actor::named("sneaky")
            },
        );
        let verifier = Verifier::new().trust_issuer(&account.public_key()).unwrap();
        let report = module_report("sneaky.wasm", &bytes, &verifier);
        assert!(
            matches!(&report.verdict, Err(ClaimsError::InvalidClaim { field, .. }) if field == "caps[1]"),
            "{:?}",
            report.verdict
        );
        let table = module_table(&report, 1_700_000_000);
        assert!(table.contains("sneaky - Module (NOT VALID)"), "{table}");
        assert!(table.contains("K/V Store"), "{table}");
        assert!(table.contains(&hostile_cap), "shown as it is: {table}");
        assert!(!table.contains("Signature valid"), "{table}");
        let json = module_json(&report);
        assert_eq!(json["valid"], false);
        assert_eq!(json["error"]["kind"], "invalid_claim");
        assert_eq!(
            json["claims"]["capabilities"][1]["id"],
            hostile_cap.as_str()
        );
    }

    static ACCOUNT: LazyLock<KeyPair> = LazyLock::new(|| KeyPair::generate(KeyKind::Account));

    fn assert_shows_safely(text: &str) -> Result<(), TestCaseError> {
        // Tables are multi-line; nothing else that moves the cursor or the
        // reading direction may come from the token.
        prop_assert!(
            !text
                .chars()
                .any(|c| c != '\n' && display::is_unsafe_char(c)),
            "unescaped token text in: {text:?}"
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

        /// `claims inspect`'s rendering of any signed module, valid or not:
        /// no panic, nothing unescaped, the verdict `InvalidClaim` exactly
        /// when a field breaks the rules, and JSON that round-trips.
        #[test]
        fn inspect_renders_hostile_modules_without_panicking(
            meta in hostile::actor(),
            subject in prop_oneof![3 => hostile::module_key(), 1 => hostile::near_miss_key()],
            expires in hostile::time(),
            not_before in hostile::time(),
        ) {
            // What the verifier will judge: the metadata with the module's hash.
            let invalid = Actor {
                module_hash: waxosuit_claims::module_hash(MODULE).unwrap(),
                ..meta.clone()
            }
            .validate()
            .is_err();
            let subject_ok = KeyKind::of_public_key(&subject).is_ok_and(|k| k == KeyKind::Module);
            let bytes = hostile::signed_module(MODULE, &ACCOUNT, &subject, meta, expires, not_before);
            let verifier = Verifier::new().trust_issuer(&ACCOUNT.public_key()).unwrap();
            let report = module_report("hostile.wasm", &bytes, &verifier);
            if subject_ok {
                let is_invalid_claim = matches!(report.verdict, Err(ClaimsError::InvalidClaim { .. }));
                prop_assert_eq!(is_invalid_claim, invalid, "{:?}", report.verdict);
            }
            let table = module_table(&report, 1_700_000_000);
            assert_shows_safely(&table)?;
            prop_assert_eq!(table.contains("(NOT VALID)"), report.verdict.is_err());
            if let Err(e) = &report.verdict {
                assert_shows_safely(&e.to_string())?;
            }
            let value = module_json(&report);
            let json = safe_json(&value).unwrap();
            assert_shows_safely(&json)?;
            let back: serde_json::Value = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &value, "safe JSON reads back as the same value");
        }

        /// The same for account tokens with hostile names and signers.
        #[test]
        fn inspect_renders_hostile_account_tokens_without_panicking(
            name in proptest::option::of(hostile::text()),
            signers in proptest::collection::vec(hostile::near_miss_key(), 0..3),
            expires in hostile::time(),
        ) {
            let operator = KeyPair::from_raw_seed(KeyKind::Operator, [9; 32]).unwrap();
            let mut claims = Claims::<Account>::builder()
                .issuer(operator.public_key())
                .subject(ACCOUNT.public_key())
                .metadata(Account { name, valid_signers: Some(signers) })
                .build();
            claims.expires = expires;
            let jwt = claims.encode(&operator).unwrap();
            let verifier = Verifier::new().trust_operator(&operator.public_key()).unwrap();
            let report = token_report(&jwt, &verifier);
            assert_shows_safely(&token_table(&report, 1_700_000_000))?;
            let value = token_json(&report);
            let json = safe_json(&value).unwrap();
            assert_shows_safely(&json)?;
            prop_assert_eq!(serde_json::from_str::<serde_json::Value>(&json).unwrap(), value);
        }
    }
}
