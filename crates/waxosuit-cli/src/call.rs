//! `waxosuit call`: verify a module and make one waPC call, with no
//! capabilities bound.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use waxosuit_host::{HostBuilder, HostError};
use waxosuit_runtime::{Limits, Runtime};

use crate::claims::TrustArgs;
use crate::limits::LimitArgs;
use crate::registry::{Fetcher, read_source};
use waxosuit_registry::ArtifactKind;

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The signed actor module: a file, or `oci://REGISTRY/REPOSITORY:TAG`
    /// (or `…@sha256:DIGEST`).
    module: String,
    /// The operation to call.
    operation: String,
    /// Payload given as a string.
    #[arg(short, long, conflicts_with = "data_file")]
    data: Option<String>,
    /// Payload read from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    pull: crate::registry::PullArgs,
}

pub(crate) fn run(args: CallArgs) -> Result<ExitCode> {
    let payload = match (&args.data, &args.data_file) {
        (Some(d), _) => d.clone().into_bytes(),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            buf
        }
        (None, Some(f)) => {
            std::fs::read(f).with_context(|| format!("cannot read payload file {}", f.display()))?
        }
        (None, None) => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Said on every run, on stderr (stdout is the reply): whom this call
    // trusts, and loudly so when it is anyone.
    let trust = args.trust.resolve()?;
    for line in &trust.summary {
        eprintln!("{line}");
    }
    runtime.block_on(async move {
        let fetcher = if waxosuit_registry::is_reference(&args.module) {
            Some(Fetcher::new(&args.pull, args.limits.cache_root())?)
        } else {
            None
        };
        let module = read_source(
            fetcher.as_ref(),
            &args.module,
            ArtifactKind::Actor,
            |line| eprintln!("pulled {line}"),
        )
        .await?;
        let engine = Runtime::new(args.limits.runtime_config(false))
            .context("cannot start the wasm runtime")?;
        let limits = args.limits.apply(Limits::default()).instances(1, 1);
        let host = HostBuilder::new()
            .runtime(engine)
            .verifier(trust.verifier)
            .default_limits(limits)
            .build()?;
        let actor = host.add_actor(&module, &args.module, None).await?;
        match host.call_actor(&actor.key, &args.operation, &payload).await {
            Ok(reply) => {
                std::io::stdout().lock().write_all(&reply)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                let what = match &e {
                    HostError::ActorFailed { .. } => "guest error",
                    HostError::Runtime { .. } => "runtime error",
                    _ => "error",
                };
                // The actor wrote the message: shown, not obeyed.
                eprintln!("{what}: {}", crate::shown_text(&e.to_string()));
                Ok(ExitCode::FAILURE)
            }
        }
    })
}
