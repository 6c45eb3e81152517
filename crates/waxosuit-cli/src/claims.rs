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
    Account, Actor, Claims, ClaimsError, KeyKind, KeyPair, Operator, Verifier, caps, human_date,
    human_relative, now_secs,
};

use crate::keystore;

const DAY: u64 = 86_400;

#[derive(Debug, Subcommand)]
pub enum ClaimsCommand {
    /// Embed signed claims into a wasm module.
    Sign(Box<SignArgs>),
    /// Show and verify the claims of a signed module (or of a token file).
    Inspect(InspectArgs),
    /// Mint an account or operator token (the provenance chain).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct SignArgs {
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

#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Trust actors issued by this account key (repeatable). With any trust
    /// option set, untrusted issuers are refused.
    #[arg(long = "trusted-issuer", value_name = "ACCOUNT_KEY")]
    pub(crate) trusted_issuers: Vec<String>,
    /// Trust accounts issued by this operator: an `O…` key, or a file holding
    /// a self-signed operator token (repeatable).
    #[arg(long = "trusted-operator", value_name = "KEY_OR_FILE")]
    trusted_operators: Vec<String>,
    /// A file holding an account token that links an issuer to a trusted operator (repeatable).
    #[arg(long = "account-token", value_name = "FILE")]
    account_tokens: Vec<PathBuf>,
}

impl TrustArgs {
    pub fn verifier(&self) -> Result<Verifier> {
        let mut v = Verifier::new();
        for key in &self.trusted_issuers {
            v = v.trust_issuer(key)?;
        }
        for op in &self.trusted_operators {
            v = if op.len() == 56 && op.starts_with('O') && !Path::new(op).exists() {
                v.trust_operator(op)?
            } else {
                let jwt = fs::read_to_string(op)
                    .with_context(|| format!("cannot read operator token file `{op}`"))?;
                v.trust_operator_token(jwt.trim())
                    .with_context(|| format!("operator token `{op}` is not valid"))?
            };
        }
        for path in &self.account_tokens {
            let jwt = fs::read_to_string(path)
                .with_context(|| format!("cannot read account token file {}", path.display()))?;
            v = v.with_account_token(jwt.trim());
        }
        Ok(v)
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
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
pub struct TokenArgs {
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

pub fn run(cmd: ClaimsCommand) -> Result<ExitCode> {
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
    if bytes.starts_with(b"\0asm") {
        inspect_module(&args, &verifier, &bytes)
    } else {
        let text = String::from_utf8(bytes).map_err(|_| ClaimsError::NotWasm)?;
        inspect_token(&args, &verifier, text.trim())
    }
}

fn inspect_module(args: &InspectArgs, verifier: &Verifier, bytes: &[u8]) -> Result<ExitCode> {
    let verdict = verifier.verify_actor(bytes);
    // Show what the token says even when it does not verify, clearly marked,
    // so a person can see *why* (which issuer, which dates).
    let claims = match &verdict {
        Ok(v) => Some(v.claims().clone()),
        Err(_) => waxosuit_claims::extract(bytes)
            .ok()
            .and_then(|e| Claims::<Actor>::decode_unverified(&e.jwt).ok()),
    };
    let now = now_secs();
    if args.json {
        let mut out = json!({ "file": args.file.display().to_string(), "valid": verdict.is_ok() });
        if let Some(c) = &claims {
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
        if let Err(e) = &verdict {
            out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else if let Some(c) = &claims {
        let meta = c.metadata.clone().unwrap_or_default();
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        let title = match &verdict {
            Ok(_) => format!("{} - Module", meta.name.as_deref().unwrap_or("(unnamed)")),
            Err(_) => format!(
                "{} - Module (NOT VALID)",
                meta.name.as_deref().unwrap_or("(unnamed)")
            ),
        };
        table.set_header(vec![title, String::new()]);
        table.add_row(vec!["Account".to_string(), c.issuer.clone()]);
        table.add_row(vec!["Module".to_string(), c.subject.clone()]);
        let version = match (&meta.ver, meta.rev) {
            (Some(v), Some(r)) => format!("{v} ({r})"),
            (Some(v), None) => v.clone(),
            (None, Some(r)) => format!("({r})"),
            (None, None) => "-".to_string(),
        };
        table.add_row(vec!["Version".to_string(), version]);
        table.add_row(vec!["Expires".to_string(), when(c.expires, now, "never")]);
        table.add_row(vec![
            "Can Be Used".to_string(),
            when(c.not_before, now, "immediately"),
        ]);
        table.add_row(vec!["Hash".to_string(), meta.module_hash.clone()]);
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
        let tags = meta.tag_list();
        table.add_row(vec![
            "Tags".to_string(),
            if tags.is_empty() {
                "None".to_string()
            } else {
                tags.join(", ")
            },
        ]);
        if let Some(alias) = &meta.call_alias {
            table.add_row(vec!["Call Alias".to_string(), alias.clone()]);
        }
        outln!("{table}");
    }
    match verdict {
        Ok(v) => {
            if !args.json {
                let trust = if verifier.has_trust_list() {
                    "issuer trusted"
                } else {
                    "no trust list configured: any account accepted"
                };
                outln!("Signature valid ({trust}).");
            }
            let _ = v;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {} is not valid: {e}", args.file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn inspect_token(args: &InspectArgs, verifier: &Verifier, jwt: &str) -> Result<ExitCode> {
    // Try the kinds a token file can hold, reporting the error of the kind
    // whose key roles match the token's issuer.
    let op = verifier.verify_operator(jwt);
    let acct = verifier.verify_account(jwt);
    let (kind, issuer, subject, name, signers, expires, error) = match (&op, &acct) {
        (Ok(v), _) => (
            "operator",
            v.issuer().to_string(),
            v.subject().to_string(),
            v.metadata().name.clone(),
            v.metadata().valid_signers.clone().unwrap_or_default(),
            v.claims().expires,
            None,
        ),
        (_, Ok(v)) => (
            "account",
            v.issuer().to_string(),
            v.subject().to_string(),
            v.metadata().name.clone(),
            v.metadata().valid_signers.clone().unwrap_or_default(),
            v.claims().expires,
            None,
        ),
        (Err(op_err), Err(acct_err)) => {
            let raw = Claims::<Account>::decode_unverified(jwt);
            let self_signed = raw.as_ref().is_ok_and(|c| c.issuer == c.subject);
            let err = if self_signed { op_err } else { acct_err };
            let (issuer, subject, name, signers, expires) = match raw {
                Ok(c) => {
                    let m = c.metadata.clone().unwrap_or_default();
                    (
                        c.issuer,
                        c.subject,
                        m.name,
                        m.valid_signers.unwrap_or_default(),
                        c.expires,
                    )
                }
                Err(_) => Default::default(),
            };
            let kind = if self_signed { "operator" } else { "account" };
            (kind, issuer, subject, name, signers, expires, Some(err))
        }
    };
    if args.json {
        let mut out = json!({
            "kind": kind, "issuer": issuer, "subject": subject, "name": name,
            "valid_signers": signers, "expires": expires, "valid": error.is_none(),
        });
        if let Some(e) = error {
            out["error"] = json!({ "kind": e.kind(), "message": e.to_string() });
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut table = Table::new();
        table.load_preset(UTF8_FULL_CONDENSED);
        table.set_header(vec![
            format!(
                "{} - {kind} token{}",
                name.as_deref().unwrap_or("(unnamed)"),
                if error.is_some() { " (NOT VALID)" } else { "" }
            ),
            String::new(),
        ]);
        table.add_row(vec!["Issuer".to_string(), issuer]);
        table.add_row(vec!["Subject".to_string(), subject]);
        table.add_row(vec![
            "Expires".to_string(),
            when(expires, now_secs(), "never"),
        ]);
        table.add_row(vec![
            "Valid Signers".to_string(),
            if signers.is_empty() {
                "None".to_string()
            } else {
                signers.join("\n")
            },
        ]);
        outln!("{table}");
    }
    match error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => {
            eprintln!("error: {} is not valid: {e}", args.file.display());
            Ok(ExitCode::FAILURE)
        }
    }
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
