//! `waxosuit run ACTOR`: one signed actor served over HTTP on `$PORT`, with
//! the embedded key-value store, and no manifest: the entry point of a
//! container under Knative or any platform that says which port to serve
//! on. Everything else (trust, limits, admin endpoints, draining) is the
//! same host as `waxosuit up`, with the same flags and variables.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use crate::up::{HostArgs, Workload};

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The signed actor: a file, or an `oci://` reference.
    #[arg(value_name = "ACTOR", env = "WAXOSUIT_ACTOR")]
    actor: String,
    /// The port its HTTP binding listens on.
    #[arg(long, value_name = "PORT", env = "PORT", default_value_t = 8080)]
    port: u16,
    #[command(flatten)]
    host: HostArgs,
}

pub(crate) fn run(args: RunArgs) -> Result<ExitCode> {
    crate::up::start(
        Workload::Single {
            actor: args.actor,
            port: args.port,
        },
        args.host,
    )
}
