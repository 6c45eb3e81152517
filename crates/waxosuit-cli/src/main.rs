//! `waxosuit`: one command for keys, signed claims, and running actors.
//!
//! The subcommands live in their own modules: [`keys`] (`waxosuit keys gen`),
//! [`claims`] (`waxosuit claims sign|inspect|token`). Every error a user sees
//! says what failed and what to do; `--json` output is for scripts.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` that reports a closed stdout (`waxosuit … | head`) as an error
/// instead of panicking; `main` then exits quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod claims;
mod keys;
mod keystore;

/// Waxosuit: a secure host for signed WebAssembly actors.
#[derive(Debug, Parser)]
#[command(name = "waxosuit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate nkeys identities (account, module, server, operator, ...).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Sign modules, inspect signatures, mint account and operator tokens.
    #[command(subcommand)]
    Claims(claims::ClaimsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(cmd) => keys::run(cmd),
        Command::Claims(cmd) => claims::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
