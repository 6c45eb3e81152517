//! `waxosuit lattice …` (look at and steer a lattice) and the `--lattice`
//! options of `waxosuit up`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use futures_util::StreamExt;
use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_lattice::protocol::{Command as LatticeCommand, DEFAULT_PREFIX, PROTOCOL_VERSION};
use waxosuit_lattice::{LatticeClient, LatticeConfig, ProviderFactory, TrustPolicy};

use crate::keystore;

/// `waxosuit up` options for joining a lattice.
#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// Join the lattice on this NATS server (e.g. nats://127.0.0.1:4222).
    /// A URL with a password belongs in WAXOSUIT_LATTICE, not on the
    /// command line.
    #[arg(
        long = "lattice",
        value_name = "URL",
        env = "WAXOSUIT_LATTICE",
        hide_env_values = true
    )]
    pub url: Option<String>,
    /// Subject prefix: lattices with different prefixes share a server
    /// without seeing each other.
    #[arg(long = "lattice-prefix", value_name = "NS", env = "WAXOSUIT_LATTICE_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// NATS credentials file (.creds).
    #[arg(long = "creds", value_name = "FILE", env = "WAXOSUIT_LATTICE_CREDS")]
    pub creds: Option<PathBuf>,
    /// Timeout of every call across the lattice, in milliseconds.
    #[arg(
        long = "lattice-timeout-ms",
        value_name = "MS",
        env = "WAXOSUIT_LATTICE_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub timeout_ms: u64,
    /// This host's server key (a seed `SN…` or a .nk file). Invocations it
    /// sends are signed with it; other hosts must trust its public key.
    /// Generated for this run when absent.
    #[arg(
        long = "host-seed",
        value_name = "SEED_OR_FILE",
        env = "WAXOSUIT_HOST_SEED",
        hide_env_values = true
    )]
    pub host_seed: Option<String>,
    /// Accept invocations from this host key (N…); repeat, or comma-separate
    /// in WAXOSUIT_LATTICE_TRUST_HOSTS. A host always trusts itself.
    #[arg(
        long = "lattice-trust-host",
        value_name = "KEY",
        env = "WAXOSUIT_LATTICE_TRUST_HOSTS",
        value_delimiter = ','
    )]
    pub trust_hosts: Vec<String>,
    /// Accept commands, inventory questions and binding removals signed by
    /// this admin key (an operator `O…` or user `U…` public key, e.g. from
    /// `waxosuit keys gen user`); repeat, or comma-separate in
    /// WAXOSUIT_LATTICE_TRUST_ADMINS. The `waxosuit lattice` tools sign with it.
    #[arg(
        long = "lattice-trust-admin",
        value_name = "KEY",
        env = "WAXOSUIT_LATTICE_TRUST_ADMINS",
        value_delimiter = ','
    )]
    pub trust_admins: Vec<String>,
    /// Accept messages from any host that signs them (development only:
    /// anything that can publish on the NATS server can then call actors).
    #[arg(
        long = "lattice-trust-any-host",
        env = "WAXOSUIT_LATTICE_TRUST_ANY_HOST",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub trust_any: bool,
}

impl JoinArgs {
    /// This host's server key, when it joins a lattice: loaded from
    /// `--host-seed`, or generated for this run.
    pub(crate) fn identity(&self) -> Result<Option<KeyPair>> {
        if self.url.is_none() {
            return Ok(None);
        }
        let identity = match &self.host_seed {
            Some(seed) => keystore::load(seed, "host")?,
            None => KeyPair::generate(KeyKind::Server),
        };
        if identity.kind() != KeyKind::Server {
            bail!(
                "--host-seed must be a server key (SN…), not a {} key; create one with \
                 `waxosuit keys gen server`",
                identity.kind()
            );
        }
        Ok(Some(identity))
    }

    /// The lattice configuration for `identity` (from [`JoinArgs::identity`]).
    pub(crate) fn config(
        &self,
        identity: KeyPair,
        providers: std::sync::Arc<dyn ProviderFactory>,
    ) -> Result<Option<LatticeConfig>> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        if let Some(warning) = keystore::url_secret_warning(url, "--lattice", "WAXOSUIT_LATTICE") {
            eprintln!("{warning}");
        }
        let trust = if self.trust_any {
            TrustPolicy::any_host()
        } else {
            TrustPolicy::hosts(self.trust_hosts.iter().filter(|k| !k.trim().is_empty()))?
        }
        .with_admins(self.trust_admins.iter().filter(|k| !k.trim().is_empty()))?;
        let mut config = LatticeConfig::new(url.clone(), identity, trust);
        config.prefix = self.prefix.clone();
        config.creds = self.creds.clone();
        config.timeout = Duration::from_millis(self.timeout_ms.max(1));
        config.providers = Some(providers);
        Ok(Some(config))
    }
}

#[derive(Debug, Args)]
pub(crate) struct LatticeArgs {
    /// NATS server of the lattice. A URL with a password belongs in
    /// WAXOSUIT_LATTICE, not on the command line.
    #[arg(
        long,
        value_name = "URL",
        env = "WAXOSUIT_LATTICE",
        hide_env_values = true,
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    url: String,
    /// Subject prefix of the lattice.
    #[arg(long, value_name = "NS", env = "WAXOSUIT_LATTICE_PREFIX", default_value = DEFAULT_PREFIX, global = true)]
    prefix: String,
    /// NATS credentials file.
    #[arg(
        long,
        value_name = "FILE",
        env = "WAXOSUIT_LATTICE_CREDS",
        global = true
    )]
    creds: Option<PathBuf>,
    /// How long to wait for answers, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        env = "WAXOSUIT_LATTICE_TIMEOUT_MS",
        default_value_t = 1000,
        global = true
    )]
    timeout_ms: u64,
    /// The key that signs every request (a seed `SU…`/`SO…`, or a file
    /// holding one): an admin key the hosts trust with
    /// `--lattice-trust-admin`. Prefer a file or the environment: a seed on
    /// the command line is visible in the process list.
    #[arg(
        long,
        value_name = "SEED_OR_FILE",
        env = "WAXOSUIT_LATTICE_SEED",
        hide_env_values = true,
        global = true
    )]
    seed: Option<String>,
    /// Believe answers and events only from this host key (N…); repeat, or
    /// comma-separate in WAXOSUIT_LATTICE_TRUST_HOSTS. A command sent to one
    /// host is believed from that host only.
    #[arg(
        long = "lattice-trust-host",
        value_name = "KEY",
        env = "WAXOSUIT_LATTICE_TRUST_HOSTS",
        value_delimiter = ',',
        global = true
    )]
    trust_hosts: Vec<String>,
    /// Believe answers and events from any host that signs them
    /// (development only: anyone on the NATS server can run a host).
    #[arg(long = "lattice-trust-any-host", global = true)]
    trust_any: bool,
    /// JSON output for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: LatticeSub,
}

#[derive(Debug, Subcommand)]
enum LatticeSub {
    /// List what the lattice runs.
    List {
        #[arg(value_enum)]
        what: What,
    },
    /// Print lattice events as they happen (Ctrl-C to stop).
    Watch,
    /// Start an actor or a provider on a host (chosen, or by auction).
    #[command(subcommand)]
    Start(StartSub),
    /// Stop an actor or a provider on a host.
    #[command(subcommand)]
    Stop(StopSub),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum What {
    Hosts,
    Actors,
    Providers,
    Bindings,
}

#[derive(Debug, Args)]
struct Placement {
    /// The host to run it on (server key N…).
    #[arg(long, value_name = "HOST", conflicts_with = "constraint")]
    host: Option<String>,
    /// Hold an auction among hosts whose labels match (repeatable `key=value`).
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
    constraint: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
enum StartSub {
    /// Start a signed actor module (the host verifies it).
    Actor {
        /// The signed module: a file, or `oci://REGISTRY/REPOSITORY:TAG`
        /// (pulled here, through the local cache, then sent to the host).
        module: String,
        #[command(flatten)]
        placement: Placement,
        #[command(flatten)]
        pull: crate::registry::PullArgs,
        /// Cache directory for pulled artifacts (default: $WAXOSUIT_CACHE,
        /// else ~/.cache/waxosuit).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Start a provider from the host's built-in backends.
    Provider {
        /// Capability id (e.g. wascc:keyvalue).
        capid: String,
        /// Backend (e.g. memory, redis); the host's default when absent.
        #[arg(long)]
        backend: Option<String>,
        /// Binding name.
        #[arg(long, default_value = "default")]
        binding: String,
        #[command(flatten)]
        placement: Placement,
    },
}

#[derive(Debug, Subcommand)]
enum StopSub {
    /// Stop an actor.
    Actor {
        /// Module key (M…).
        actor: String,
        /// The host running it.
        #[arg(long, value_name = "HOST")]
        host: String,
    },
    /// Stop a provider.
    Provider {
        /// Capability id.
        capid: String,
        /// Binding name.
        #[arg(long, default_value = "default")]
        binding: String,
        /// The host running it.
        #[arg(long, value_name = "HOST")]
        host: String,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(crate) fn run(args: LatticeArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: LatticeArgs) -> Result<ExitCode> {
    if let Some(warning) = keystore::url_secret_warning(&args.url, "--url", "WAXOSUIT_LATTICE") {
        eprintln!("{warning}");
    }
    let Some(seed) = &args.seed else {
        bail!(
            "lattice requests are signed: pass --seed FILE (or set WAXOSUIT_LATTICE_SEED) with \
             an admin key the hosts trust. Create one with `waxosuit keys gen user --output \
             DIR`, then start the hosts with `--lattice-trust-admin U…` (its public key)"
        );
    };
    let identity = keystore::load(seed, "lattice admin")?;
    // Whom to believe: the hosts named, or anyone (development, loudly).
    // Commands to one named host need no list: only that host is believed.
    let needs_list = !matches!(
        args.command,
        LatticeSub::Stop(_)
            | LatticeSub::Start(StartSub::Actor {
                placement: Placement { host: Some(_), .. },
                ..
            })
            | LatticeSub::Start(StartSub::Provider {
                placement: Placement { host: Some(_), .. },
                ..
            })
    );
    let trust = if args.trust_any {
        eprintln!(
            "WARNING: believing answers and events from ANY host that signs them \
             (--lattice-trust-any-host, development only)"
        );
        TrustPolicy::any_host()
    } else {
        let hosts: Vec<&String> = args
            .trust_hosts
            .iter()
            .filter(|k| !k.trim().is_empty())
            .collect();
        if hosts.is_empty() && needs_list {
            bail!(
                "whose answers should be believed? pass --lattice-trust-host N… for each host \
                 (or set WAXOSUIT_LATTICE_TRUST_HOSTS), or --lattice-trust-any-host for \
                 development; the hosts print their key at start (`lattice … as host N…`)"
            );
        }
        TrustPolicy::hosts(hosts)?
    };
    let client = LatticeClient::connect(
        &args.url,
        &args.prefix,
        args.creds.as_deref(),
        Duration::from_millis(args.timeout_ms.max(1)),
        identity,
        trust,
    )
    .await?;
    match args.command {
        LatticeSub::List { what } => list(&client, what, args.json).await,
        LatticeSub::Watch => watch(&client, args.json).await,
        LatticeSub::Start(StartSub::Actor {
            module,
            placement,
            pull,
            cache_dir,
        }) => {
            let fetcher = if waxosuit_registry::is_reference(&module) {
                let cache = cache_dir.unwrap_or_else(crate::limits::default_cache_dir);
                Some(crate::registry::Fetcher::new(&pull, cache)?)
            } else {
                None
            };
            let bytes = crate::registry::read_source(
                fetcher.as_ref(),
                &module,
                waxosuit_registry::ArtifactKind::Actor,
                |line| eprintln!("pulled {line}"),
            )
            .await?;
            // Hosts already running this actor do not bid.
            let key = waxosuit_claims::extract(&bytes)
                .ok()
                .and_then(|e| {
                    waxosuit_claims::Claims::<waxosuit_claims::Actor>::decode_unverified(&e.jwt)
                        .ok()
                })
                .map(|c| c.subject);
            let host = place(&client, placement, key).await?;
            let reply = client.start_actor(&host, bytes).await?;
            answer(reply)
        }
        LatticeSub::Start(StartSub::Provider {
            capid,
            backend,
            binding,
            placement,
        }) => {
            let host = place(&client, placement, None).await?;
            let reply = client
                .command(
                    &host,
                    LatticeCommand::StartProvider {
                        v: PROTOCOL_VERSION,
                        capid,
                        backend,
                        binding,
                    },
                )
                .await?;
            answer(reply)
        }
        LatticeSub::Stop(StopSub::Actor { actor, host }) => {
            let reply = client
                .command(
                    &host,
                    LatticeCommand::StopActor {
                        v: PROTOCOL_VERSION,
                        actor,
                    },
                )
                .await?;
            answer(reply)
        }
        LatticeSub::Stop(StopSub::Provider {
            capid,
            binding,
            host,
        }) => {
            let reply = client
                .command(
                    &host,
                    LatticeCommand::StopProvider {
                        v: PROTOCOL_VERSION,
                        capid,
                        binding,
                    },
                )
                .await?;
            answer(reply)
        }
    }
}

/// The host to start something on: the one named, or the auction's winner.
async fn place(
    client: &LatticeClient,
    placement: Placement,
    actor: Option<String>,
) -> Result<String> {
    if let Some(host) = placement.host {
        return Ok(host);
    }
    let constraints: BTreeMap<String, String> = placement.constraint.into_iter().collect();
    let bids = client.auction(constraints.clone(), actor).await?;
    let Some(winner) = bids.first() else {
        let wanted: Vec<String> = constraints
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        bail!(
            "no host of the lattice bid{}; check `waxosuit lattice list hosts` for their labels",
            if wanted.is_empty() {
                String::new()
            } else {
                format!(" for {}", wanted.join(", "))
            }
        );
    };
    eprintln!("auction: {} host(s) bid; chose {}", bids.len(), winner.host);
    Ok(winner.host.clone())
}

fn answer(reply: waxosuit_lattice::protocol::CommandReply) -> Result<ExitCode> {
    if reply.ok {
        outln!("{} (host {})", reply.message, reply.host);
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("host {} refused: {}", reply.host, reply.message)
    }
}

async fn list(client: &LatticeClient, what: What, json: bool) -> Result<ExitCode> {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    let text = match what {
        What::Hosts => {
            let hosts = client.hosts().await?;
            if json {
                serde_json::to_string_pretty(&hosts)?
            } else {
                table.set_header(["host", "uptime", "labels"]);
                for h in &hosts {
                    let labels: Vec<String> =
                        h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    table.add_row([h.id.clone(), humantime_secs(h.uptime_ms), labels.join(", ")]);
                }
                format!("{table}\n{} host(s)", hosts.len())
            }
        }
        What::Actors => {
            let actors = client.actors().await?;
            if json {
                serde_json::to_string_pretty(&actors)?
            } else {
                table.set_header(["actor", "key", "host"]);
                for a in &actors {
                    table.add_row([a.name.clone(), a.key.clone(), a.host.clone()]);
                }
                format!("{table}\n{} instance(s)", actors.len())
            }
        }
        What::Providers => {
            let providers = client.providers().await?;
            if json {
                serde_json::to_string_pretty(&providers)?
            } else {
                table.set_header(["capability", "binding", "provider", "host"]);
                for p in &providers {
                    table.add_row([
                        p.capid.clone(),
                        p.binding.clone(),
                        format!("{} {}", p.name, p.version),
                        p.host.clone(),
                    ]);
                }
                format!("{table}\n{} instance(s)", providers.len())
            }
        }
        What::Bindings => {
            let bindings = client.bindings().await?;
            if json {
                serde_json::to_string_pretty(&bindings)?
            } else {
                // Values may hold secrets: the table shows their keys only.
                table.set_header(["actor", "capability", "binding", "values"]);
                for b in &bindings {
                    let keys: Vec<&str> = b.values.keys().map(String::as_str).collect();
                    table.add_row([
                        b.actor.clone(),
                        b.capid.clone(),
                        b.binding.clone(),
                        keys.join(", "),
                    ]);
                }
                format!("{table}\n{} binding(s)", bindings.len())
            }
        }
    };
    outln!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn humantime_secs(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

async fn watch(client: &LatticeClient, json: bool) -> Result<ExitCode> {
    let mut events = client.watch().await?;
    eprintln!("watching lattice events (Ctrl-C to stop)");
    // Refused events come from whoever can publish on the bus: at most one
    // warning a second, with a count, so they cannot flood the terminal.
    let mut refused = 0u64;
    let mut last_warning: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            event = events.next() => {
                let Some(event) = event else { bail!("the lattice connection closed") };
                match event {
                    Ok(e) if json => outln!("{}", serde_json::to_string(&e)?),
                    Ok(e) => {
                        let host = e.source.rsplit('/').next().unwrap_or_default();
                        let kind = e.kind.strip_prefix("dev.waxosuit.").unwrap_or(&e.kind);
                        outln!("{}  {kind:<17} {}  (host {host})", e.time, e.subject);
                    }
                    Err(e) => {
                        refused += 1;
                        if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                            eprintln!("warning: {e} ({refused} refused so far)");
                            last_warning = Some(std::time::Instant::now());
                        }
                    }
                }
            }
        }
    }
}
