//! `waxosuit claims sign | inspect | token`: the subcommand's arguments and
//! the two commands that mint something, `sign` (claims embedded into a
//! module) and `token` (an account or operator token).
//!
//! What is shared with other commands lives in its own module: [`trust`]
//! holds the `--trusted-*` options that `up`, `call` and `par` take too, and
//! [`inspect`] verifies a module or token and renders what it finds, which
//! is most of the code that must treat claims as hostile input.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use waxosuit_claims::{
    Account, Actor, Claims, KeyKind, KeyPair, Operator, PROXY_WASM_FILTER_TAG, ProxyWasmAbi, caps,
};

use crate::keystore;

mod inspect;
mod trust;

use inspect::InspectArgs;
pub(crate) use inspect::safe_json;
pub(crate) use trust::{ResolvedTrust, TrustArgs};

const DAY: u64 = 86_400;

#[derive(Debug, Subcommand)]
pub(crate) enum ClaimsCommand {
    /// Embed signed claims into a wasm module: an actor, or a Proxy-Wasm
    /// filter (a module exporting `proxy_abi_version_0_2_*`, tagged
    /// `proxy-wasm-filter` automatically).
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
    /// Tag (repeatable). `proxy-wasm-filter` is added to Proxy-Wasm modules
    /// automatically and refused on any other module.
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
        ClaimsCommand::Inspect(args) => inspect::inspect(args),
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

fn sign(mut args: SignArgs) -> Result<ExitCode> {
    let module = fs::read(&args.input)
        .with_context(|| format!("cannot read module {}", args.input.display()))?;
    let filter_abi = filter_abi(&args, &module)?;
    if filter_abi.is_some() && !args.tags.iter().any(|t| t == PROXY_WASM_FILTER_TAG) {
        args.tags.push(PROXY_WASM_FILTER_TAG.to_string());
    }
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
    let kind = match filter_abi {
        Some(abi) => format!("Proxy-Wasm filter {} (ABI {abi})", subject.public_key()),
        None => format!("actor {}", subject.public_key()),
    };
    eprintln!(
        "Signed {} as {kind} → {}",
        args.input.display(),
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether `module` is a Proxy-Wasm filter, and whether `args` fit what it
/// is: `Some(abi)` for a module exporting a supported ABI marker, which is
/// signed as a filter (tagged [`PROXY_WASM_FILTER_TAG`]) and may not be
/// granted anything; `None` for any other module, which may not carry that
/// tag. A module of the unsupported ABI 0.1.0 is refused.
fn filter_abi(args: &SignArgs, module: &[u8]) -> Result<Option<ProxyWasmAbi>> {
    let input = args.input.display();
    let abi =
        waxosuit_claims::proxy_wasm_abi(module).with_context(|| format!("cannot sign {input}"))?;
    let Some(abi) = abi else {
        if args.tags.iter().any(|t| t == PROXY_WASM_FILTER_TAG) {
            bail!(
                "cannot sign {input} with `--tag {PROXY_WASM_FILTER_TAG}`: the tag is reserved \
                 for modules exporting a Proxy-Wasm ABI marker (`{}` or `{}`), and this module \
                 exports none; drop the tag to sign it as an actor, or build the filter with a \
                 proxy-wasm SDK 0.2.x",
                ProxyWasmAbi::V0_2_1.export_name(),
                ProxyWasmAbi::V0_2_0.export_name(),
            );
        }
        return Ok(None);
    };
    if !abi.is_supported() {
        bail!(
            "cannot sign {input}: it is a Proxy-Wasm module for ABI {abi} (it exports `{}`), and \
             ABI {abi} is not supported; rebuild it with a proxy-wasm SDK 0.2.x (ABI 0.2.0 or \
             0.2.1)",
            abi.export_name()
        );
    }
    let flags = [
        (args.http_server, "--http-server"),
        (args.http_client, "--http-client"),
        (args.keyvalue, "--keyvalue"),
        (args.messaging, "--messaging"),
        (args.logging, "--logging"),
        (args.blobstore, "--blobstore"),
        (args.extras, "--extras"),
        (args.eventstreams, "--eventstreams"),
        (args.provider, "--provider"),
    ];
    let mut refused: Vec<String> = flags
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, flag)| flag.to_string())
        .collect();
    refused.extend(args.caps.iter().map(|cap| format!("--cap {cap}")));
    if let Some(alias) = &args.call_alias {
        refused.push(format!("--call-alias {alias}"));
    }
    if !refused.is_empty() {
        bail!(
            "cannot sign {input} as asked: it is a Proxy-Wasm filter (ABI {abi}), and a filter \
             calls no capability provider and is called by no actor, so it cannot be granted \
             capabilities, an alias or the provider mark; drop {}",
            refused.join(", ")
        );
    }
    Ok(Some(abi))
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
                Some(s) if is_kind(s, KeyKind::Account) && !Path::new(s).exists() => {
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

/// Whether `text` is a public key of `kind` (encoding and checksum
/// checked), as opposed to a file name.
fn is_kind(text: &str, kind: KeyKind) -> bool {
    KeyKind::of_public_key(text).is_ok_and(|k| k == kind)
}

#[cfg(test)]
mod test_support {
    //! Helpers the `trust` and `inspect` tests share.

    use waxosuit_claims::{Actor, KeyKind, KeyPair};
    use waxosuit_test_fixtures::hostile;

    /// The smallest module: the claims are the point here.
    pub(super) const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// [`MODULE`] signed by `account` with `meta`, for a fresh module key.
    pub(super) fn signed_by(account: &KeyPair, meta: Actor) -> Vec<u8> {
        let module = KeyPair::generate(KeyKind::Module).public_key();
        hostile::signed_module(MODULE, account, &module, meta, None, None)
    }
}
