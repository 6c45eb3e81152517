//! `waxosuit`: one command for keys, signed claims, and running actors.
//!
//! The subcommands live in their own modules: [`keys`] (`waxosuit keys gen`),
//! [`claims`] (`waxosuit claims sign|inspect|token`), [`up`] (a host from a
//! manifest, alone or in a lattice), [`lattice`] (`waxosuit lattice …`). Every error a user sees
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

mod admin;
mod call;
mod claims;
mod keys;
mod keystore;
mod lattice;
mod limits;
mod par;
mod policy;
mod up;

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
    /// Verify a signed module and make one call to it (no capabilities bound).
    Call(Box<call::CallArgs>),
    /// Start a host from a manifest and serve until Ctrl-C or SIGTERM.
    Up(Box<up::UpArgs>),
    /// Create, extend and inspect signed native provider archives (.par).
    #[command(subcommand)]
    Par(par::ParCommand),
    /// Look at and steer a lattice of hosts over NATS.
    Lattice(Box<lattice::LatticeArgs>),
}

// The host's request path allocates and frees small buffers on whichever
// Tokio worker a connection runs on; glibc's arenas turn frees of another
// thread's blocks into lock traffic (seen as futex calls under `wrk`).
// mimalloc frees cross-thread blocks without a lock.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keys(cmd) => keys::run(cmd),
        Command::Claims(cmd) => claims::run(cmd),
        Command::Call(args) => call::run(*args),
        Command::Up(args) => up::run(*args),
        Command::Par(cmd) => par::run(cmd),
        Command::Lattice(args) => lattice::run(*args),
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

/// Logs to stderr; `RUST_LOG` overrides the default (Waxosuit at info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,waxosuit=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
