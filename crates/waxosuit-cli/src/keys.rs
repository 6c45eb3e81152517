//! `waxosuit keys gen`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use waxosuit_claims::{KeyKind, KeyPair};

use crate::keystore;

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Generate a key pair and print its public key and seed.
    Gen(GenArgs),
}

#[derive(Debug, Args)]
pub(crate) struct GenArgs {
    /// account, module, server, operator, service, user or cluster.
    kind: KeyKind,
    /// Write the seed to `DIR/NAME.nk` (mode 0600) instead of printing it.
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// File name (without .nk) for --output; defaults to the kind.
    #[arg(long)]
    name: Option<String>,
    /// Replace a key already at the --output file. Without it an existing
    /// key is kept and the command fails: everything signed with that key,
    /// and every host trusting it, would be cut off from its seed.
    #[arg(long, requires = "output")]
    force: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Gen(args) => gen_key(args),
    }
}

fn gen_key(args: GenArgs) -> Result<ExitCode> {
    let kp = KeyPair::generate(args.kind);
    let public = kp.public_key();
    let seed = kp.seed()?;
    let written = match &args.output {
        Some(dir) => {
            let name = args.name.as_deref().unwrap_or(args.kind.name());
            let path = dir.join(format!("{}.nk", keystore::slug(name)));
            if args.force {
                keystore::write_seed(&path, &kp)?;
            } else if keystore::create_seed(&path, &kp)? == keystore::Created::Exists {
                anyhow::bail!(
                    "{} already holds a key, which is kept: replacing it would cut off \
                     everything signed with it and every host trusting it; choose another \
                     --name or --output, or pass --force to replace it",
                    path.display()
                );
            }
            Some(path)
        }
        None => None,
    };
    if args.json {
        let mut out = serde_json::json!({ "kind": args.kind.name(), "public_key": public });
        match &written {
            Some(path) => out["seed_file"] = path.display().to_string().into(),
            None => out["seed"] = seed.into(),
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("Public Key: {public}");
        match &written {
            Some(path) => outln!("Seed written to {} (mode 0600)", path.display()),
            None => outln!("Seed: {seed}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
