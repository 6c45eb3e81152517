//! `waxosuit`: one command for keys, signed claims, and running actors.
//!
//! The subcommands live in their own modules: [`keys`] (`waxosuit keys gen`),
//! [`claims`] (`waxosuit claims sign|inspect|token`), [`up`] (a host from a
//! manifest, alone or in a lattice), [`lattice`] (`waxosuit lattice …`),
//! [`registry`] (`waxosuit push|pull`, and `oci://` references everywhere),
//! [`new`] (`waxosuit new actor`: a project from a template). Every error a user sees
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
mod fds;
mod filters;
mod keys;
mod keystore;
mod lattice;
mod limits;
mod new;
mod par;
mod policy;
mod registry;
mod run;
mod telemetry;
mod up;

/// Waxosuit: a secure host for signed WebAssembly actors.
#[derive(Debug, Parser)]
#[command(name = "waxosuit", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    telemetry: telemetry::TelemetryArgs,
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
    /// Serve one signed actor over HTTP on $PORT with the embedded
    /// key-value store, no manifest (the container entry point).
    Run(Box<run::RunArgs>),
    /// Create, extend and inspect signed native provider archives (.par).
    #[command(subcommand)]
    Par(par::ParCommand),
    /// Look at and steer a lattice of hosts over NATS.
    Lattice(Box<lattice::LatticeArgs>),
    /// Push a signed actor or provider archive to an OCI registry.
    Push(Box<registry::PushArgs>),
    /// Pull an actor or provider archive from an OCI registry into the
    /// local cache (and a file).
    Pull(Box<registry::PullCmdArgs>),
    /// Create a new project from a built-in template.
    #[command(subcommand)]
    New(new::NewCommand),
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
        Command::Up(args) => with_telemetry(&cli.telemetry, || up::run(*args)),
        Command::Run(args) => with_telemetry(&cli.telemetry, || run::run(*args)),
        Command::Par(cmd) => par::run(cmd),
        Command::Lattice(args) => with_telemetry(&cli.telemetry, || lattice::run(*args)),
        Command::Push(args) => registry::push(*args),
        Command::Pull(args) => registry::pull(*args),
        Command::New(cmd) => new::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", shown_error(&format!("{err:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Runs a command with logs on stderr and, when configured, trace export;
/// the spans still queued are exported before the process exits, however
/// the command ended (Ctrl-C and SIGTERM end `up` by returning here).
fn with_telemetry(
    args: &telemetry::TelemetryArgs,
    command: impl FnOnce() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let mut telemetry = args.install()?;
    let result = command();
    telemetry.shutdown();
    result
}

/// An error's text as the terminal is to show it. It can hold what an
/// actor, a registry, a collector or a peer sent (an actor's error message
/// is passed on as the actor returned it), so the characters that would
/// drive the terminal or change what it shows are escaped as Rust writes
/// them: controls, carriage returns, bidirectional and invisible
/// characters. Line feeds and tabs are kept: some messages list things on
/// lines of their own.
pub(crate) fn shown_error(text: &str) -> String {
    shown(text, true)
}

/// Text another party wrote, as the terminal is to show it: as
/// [`shown_error`], line feeds escaped too, so that it cannot add lines
/// that look like the tool's own.
pub(crate) fn shown_text(text: &str) -> String {
    shown(text, false)
}

fn shown(text: &str, lines: bool) -> String {
    waxosuit_claims::display::escape_unsafe(text, |c| c == '\t' || (lines && c == '\n'))
        .into_owned()
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn an_error_cannot_drive_the_terminal_or_reorder_what_it_shows() {
        let returned = "actor failed: \x1b]0;owned\x07\x1b[2J\rdone \u{202e}exe.txt\u{9b}";
        assert_eq!(
            super::shown_error(&format!("{returned}\n  next:\tkept")),
            "actor failed: \\u{1b}]0;owned\\u{7}\\u{1b}[2J\\rdone \\u{202e}exe.txt\\u{9b}\n  next:\tkept"
        );
        assert_eq!(super::shown_error("plain: text"), "plain: text");
        assert_eq!(
            super::shown_text("oops\nerror: forged\tx"),
            "oops\\nerror: forged\tx"
        );
    }

    /// A container is configured through its environment: a flag of a
    /// running host that only a command line can set is a bug.
    #[test]
    fn every_flag_of_a_running_host_can_come_from_the_environment() {
        let cli = super::Cli::command();
        let builtin = ["help", "version"];
        let missing = |cmd: &clap::Command| -> Vec<String> {
            cmd.get_arguments()
                .filter(|a| a.get_env().is_none() && !builtin.contains(&a.get_id().as_str()))
                .map(|a| a.get_id().to_string())
                .collect()
        };
        assert_eq!(missing(&cli), Vec::<String>::new(), "global flags");
        for name in ["up", "run"] {
            let cmd = cli.find_subcommand(name).expect(name);
            assert_eq!(missing(cmd), Vec::<String>::new(), "`waxosuit {name}`");
        }
    }
}
