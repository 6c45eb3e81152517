//! `waxosuit up MANIFEST`: start a host from a manifest, serve until Ctrl-C
//! or SIGTERM, then drain and stop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use waxosuit_cap_blobstore_fs::FsBlobstore;
use waxosuit_cap_eventstreams_redis::RedisEventStreams;
use waxosuit_cap_extras::ExtrasProvider;
use waxosuit_cap_http_client::HttpClientProvider;
use waxosuit_cap_http_server::{ConnectionThreads, HttpServerProvider};
use waxosuit_cap_keyvalue_memory::MemoryKeyValue;
use waxosuit_cap_keyvalue_redis::RedisKeyValue;
use waxosuit_cap_logging::LoggingProvider;
use waxosuit_cap_messaging_memory::MemoryMessaging;
use waxosuit_cap_messaging_nats::NatsMessaging;
use waxosuit_claims::caps;
use waxosuit_host::{DEFAULT_BINDING, Host, HostBuilder};
use waxosuit_lattice::{FactoryError, Lattice, ProviderFactory};
use waxosuit_manifest::{CapabilitySource, FilterEntry, Manifest, Source};
use waxosuit_provider::CapabilityProvider;
use waxosuit_proxy_wasm::FilterHost;
use waxosuit_registry::ArtifactKind;
use waxosuit_runtime::{Limits, Runtime};

use crate::admin;
use crate::claims::TrustArgs;
use crate::limits::{self, LimitArgs};
use crate::registry::{Fetcher, PullArgs, read_source};

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The manifest (YAML or JSON).
    #[arg(env = "WAXOSUIT_MANIFEST")]
    manifest: PathBuf,
    #[command(flatten)]
    host: HostArgs,
}

/// The flags of a running host, shared by `up` and `run`. Every one can
/// also be set from its environment variable, so that a container is
/// configured without a command line.
#[derive(Debug, Args)]
pub(crate) struct HostArgs {
    /// Serve /livez, /readyz and /metrics on this address (e.g.
    /// 127.0.0.1:9090), or on 127.0.0.1 at this port.
    #[arg(long, value_name = "ADDR|PORT", env = "WAXOSUIT_ADMIN", value_parser = crate::admin::parse_addr)]
    admin: Option<SocketAddr>,
    /// Seconds between health checks of actors and providers.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECS",
        env = "WAXOSUIT_HEALTH_INTERVAL"
    )]
    health_interval: u64,
    /// Seconds to wait for in-flight requests when stopping; exits non-zero
    /// when they take longer.
    #[arg(
        long,
        default_value_t = 10,
        value_name = "SECS",
        env = "WAXOSUIT_DRAIN_TIMEOUT"
    )]
    drain_timeout: u64,
    /// Seconds between the stop signal and the drain during which /readyz
    /// is unready but new requests are still served: long enough for a load
    /// balancer (Kubernetes endpoints) to stop sending any.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SECS",
        env = "WAXOSUIT_SHUTDOWN_DELAY"
    )]
    shutdown_delay: u64,
    /// Threads serving HTTP connections, each connection on one of them for
    /// its whole life; all HTTP servers of the host share them (default: one
    /// per available core; 0 serves connections on the host's own worker
    /// threads).
    #[arg(long, value_name = "N", env = "WAXOSUIT_HTTP_THREADS")]
    http_threads: Option<usize>,
    /// The address HTTP bindings listen on when their values give no
    /// ADDRESS (default 127.0.0.1; a container needs 0.0.0.0).
    #[arg(long, value_name = "IP", env = "WAXOSUIT_HTTP_ADDRESS")]
    http_address: Option<std::net::IpAddr>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    trust: TrustArgs,
    #[command(flatten)]
    policy: crate::policy::PolicyArgs,
    #[command(flatten)]
    lattice: crate::lattice::JoinArgs,
    #[command(flatten)]
    pull: PullArgs,
    /// Load manifest `path:` plugins that are bare libraries, not signed
    /// .par archives. Development only: nothing vouches for that code.
    #[arg(
        long,
        env = "WAXOSUIT_ALLOW_UNSIGNED_PLUGINS",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_unsigned_plugins: bool,
}

/// Shared with the admin server.
pub(crate) struct Status {
    pub host: Host,
    /// Set once every actor is verified, allowed and bound.
    pub started: AtomicBool,
    /// Set when a stop signal arrived: the host no longer wants traffic.
    pub draining: AtomicBool,
}

/// What a host serves: a manifest's actors, or one actor named on the
/// command line (`waxosuit run`).
pub(crate) enum Workload {
    Manifest(PathBuf),
    Single {
        /// A file path or an `oci://` reference.
        actor: String,
        /// The port of its HTTP binding.
        port: u16,
    },
}

pub(crate) fn run(args: UpArgs) -> Result<ExitCode> {
    start(Workload::Manifest(args.manifest), args.host)
}

/// Starts a host serving `workload` and blocks until it has stopped.
pub(crate) fn start(workload: Workload, args: HostArgs) -> Result<ExitCode> {
    // Before any socket or file is opened, and before threads are made.
    crate::fds::raise_open_files_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Owned here rather than by a provider: actor calls run on them, so
    // other providers' I/O started during those calls lives there too.
    // They stop once `serve` has shut every provider down, outside async
    // code so that stopping can wait for them.
    let http = http_threads(args.http_threads);
    let stopped = runtime.block_on(serve(workload, args, http.clone()));
    if let Some(threads) = http {
        threads.shutdown(HTTP_THREADS_STOP);
    }
    stopped
}

/// How long to wait for the HTTP connection threads to exit at the end;
/// the host has drained its requests by then.
const HTTP_THREADS_STOP: Duration = Duration::from_secs(2);

/// The connection threads every HTTP server of the host shares; `None`
/// serves connections on the host's own workers (`--http-threads 0`).
type HttpThreads = Option<Arc<ConnectionThreads>>;

/// `--http-threads` as a set of threads, started with the first listener.
fn http_threads(count: Option<usize>) -> HttpThreads {
    match count {
        Some(0) => None,
        Some(count) => Some(Arc::new(ConnectionThreads::new(count))),
        None => Some(Arc::new(ConnectionThreads::per_core())),
    }
}

/// What a backend may need from the host's configuration.
#[derive(Debug, Clone)]
struct BackendContext {
    /// The lattice's subject prefix, which NATS messaging refuses to actors
    /// (the default one is refused anyway).
    lattice_prefix: Option<String>,
}

type Factory = fn(&BackendContext) -> Result<Arc<dyn CapabilityProvider>>;

/// The backends this build offers: capability id, the names a manifest's
/// `provider:` may use (the first is the embedded default), constructor.
/// `wascc:http_server` is handled apart because the CLI asks it for the
/// addresses it listens on.
const BACKENDS: &[(&str, &[&str], Factory)] = &[
    (caps::KEY_VALUE, &["memory"], |_| {
        Ok(Arc::new(MemoryKeyValue::new()))
    }),
    (caps::KEY_VALUE, &["redis"], |_| {
        Ok(Arc::new(RedisKeyValue::new()))
    }),
    (caps::EVENTSTREAMS, &["redis"], |_| {
        Ok(Arc::new(RedisEventStreams::new()))
    }),
    (caps::MESSAGING, &["memory"], |_| {
        Ok(Arc::new(MemoryMessaging::new()))
    }),
    (caps::MESSAGING, &["nats"], |ctx| {
        // Actors never reach the host's own planes, whatever server their
        // binding names.
        let nats = match &ctx.lattice_prefix {
            Some(prefix) => NatsMessaging::new()
                .reserve_prefix(prefix)
                .with_context(|| format!("cannot reserve the lattice prefix `{prefix}`"))?,
            None => NatsMessaging::new(),
        };
        Ok(Arc::new(nats))
    }),
    (caps::HTTP_CLIENT, &["hyper"], |_| {
        Ok(Arc::new(HttpClientProvider::new()))
    }),
    (caps::BLOB, &["fs"], |_| Ok(Arc::new(FsBlobstore::new()))),
    (caps::LOGGING, &["tracing"], |_| {
        Ok(Arc::new(LoggingProvider::new()))
    }),
    (caps::EXTRAS, &["builtin"], |_| {
        Ok(Arc::new(ExtrasProvider::new()))
    }),
];

/// Picks the backend for a capability entry.
fn backend(id: &str, provider: Option<&str>, ctx: &BackendContext) -> Result<Backend> {
    if id == caps::HTTP_SERVER {
        return match provider {
            None | Some("default" | "hyper") => Ok(Backend::Http),
            Some(other) => {
                bail!("no backend `{other}` for {id} in this build; available: hyper (the default)")
            }
        };
    }
    let offered: Vec<&(&str, &[&str], Factory)> =
        BACKENDS.iter().filter(|(cap, _, _)| *cap == id).collect();
    if offered.is_empty() {
        let known: Vec<&str> = std::iter::once(caps::HTTP_SERVER)
            .chain(BACKENDS.iter().map(|(cap, _, _)| *cap))
            .collect();
        bail!(
            "no provider for {id} in this build; the built-in capabilities are {}",
            known.join(", ")
        );
    }
    let wanted = provider.unwrap_or("default");
    let found = offered
        .iter()
        .enumerate()
        .find(|(i, (_, names, _))| names.contains(&wanted) || (wanted == "default" && *i == 0));
    match found {
        Some((_, (_, _, make))) => Ok(Backend::Other(make(ctx)?)),
        None => {
            let names: Vec<&str> = offered
                .iter()
                .flat_map(|(_, n, _)| n.iter().copied())
                .collect();
            bail!(
                "no backend `{wanted}` for {id} in this build; available: {} ({} is the default)",
                names.join(", "),
                names.first().copied().unwrap_or("none")
            )
        }
    }
}

enum Backend {
    Http,
    Other(Arc<dyn CapabilityProvider>),
}

/// The built-in backends, for `waxosuit lattice start provider`.
struct Backends {
    http_threads: HttpThreads,
    ctx: BackendContext,
}

/// An HTTP server provider on the host's connection threads.
fn http_server(threads: &HttpThreads) -> HttpServerProvider {
    match threads {
        Some(threads) => HttpServerProvider::with_shared_threads(Arc::clone(threads)),
        None => HttpServerProvider::with_connection_threads(0),
    }
}

impl ProviderFactory for Backends {
    fn create(
        &self,
        capid: &str,
        name: Option<&str>,
    ) -> Result<Arc<dyn CapabilityProvider>, FactoryError> {
        match backend(capid, name, &self.ctx).map_err(FactoryError::new)? {
            Backend::Http => Ok(Arc::new(http_server(&self.http_threads))),
            Backend::Other(p) => Ok(p),
        }
    }
}

/// The `provider:` of a manifest capability that another host of the
/// lattice serves.
const LATTICE_PROVIDER: &str = "lattice";

/// How long `up` waits for an actor on another host to announce itself
/// before reporting its binding as pending.
const REMOTE_ACTOR_WAIT: Duration = Duration::from_secs(15);

/// What every step of `serve` reads: the manifest, the flags, and what was
/// made from them before anything started.
struct Plan {
    args: HostArgs,
    manifest: Manifest,
    /// `waxosuit run`'s HTTP port: the bindings are made once the actor's
    /// claims say what it may use.
    single: Option<u16>,
    /// The manifest's path as shown in messages.
    file: String,
    trust: crate::claims::ResolvedTrust,
    policy: Option<crate::policy::Configured>,
    ctx: BackendContext,
    default_limits: Limits,
    /// Shared by every HTTP server started; owned by [`run`].
    http_threads: HttpThreads,
    /// Pulls the manifest's `oci://` references, when it has any.
    fetcher: Option<Fetcher>,
}

/// What `serve` started, in the order it stops them.
struct Running {
    host: Host,
    lattice: Option<Lattice>,
    /// HTTP servers by binding name, to show where actors listen.
    http_servers: Vec<(String, Arc<HttpServerProvider>)>,
    /// Loads the manifest's Proxy-Wasm filters.
    filters: FilterHost,
}

async fn serve(workload: Workload, args: HostArgs, http_threads: HttpThreads) -> Result<ExitCode> {
    let mut plan = plan(workload, args, http_threads)?;
    // Handlers from the start: a supervisor that sends SIGTERM as soon as it
    // reads "Ready." must get a drain, not the default action (death).
    let mut stop = StopSignals::install()?;
    let identity = plan.args.lattice.identity()?;
    let (host, filters) = build_host(&plan, identity.as_ref())?;
    let status = Arc::new(Status {
        host: host.clone(),
        started: AtomicBool::new(false),
        draining: AtomicBool::new(false),
    });
    let mut admin_task = None;
    let mut joined = None;
    // A pull or a compile can take long, or hang on a registry that never
    // answers: a stop signal ends the start-up at once.
    let started = tokio::select! {
        running = start_up(&mut plan, host.clone(), filters, identity, &status, &mut admin_task, &mut joined) => Some(running),
        () = stop.wait() => None,
    };
    let stopped = match started {
        Some(Ok(running)) => {
            status.started.store(true, Ordering::Release);
            run_until_stopped(&plan, &running, &status, stop).await
        }
        Some(Err(e)) => {
            // The other hosts are told at once, not left to find out from
            // calls that time out.
            if let Some(lattice) = joined {
                lattice.leave().await;
            }
            Err(e)
        }
        None => {
            println!("Stopping before the host was ready: nothing was served yet…");
            let first = tokio::time::Instant::now();
            let limit = Duration::from_secs(plan.args.drain_timeout);
            let stopping = async {
                if let Some(lattice) = joined {
                    lattice.leave().await;
                }
                host.shutdown().await;
            };
            tokio::select! {
                finished = tokio::time::timeout(limit, stopping) => {
                    if finished.is_err() {
                        tracing::warn!(?limit, "what had started did not stop in time");
                    }
                }
                // Another Ctrl-C or SIGTERM: the operator will not wait.
                () = stop.again(first) => {
                    tracing::warn!("stopped by a second signal before what had started had stopped");
                }
            }
            println!("Stopped.");
            Ok(ExitCode::SUCCESS)
        }
    };
    if let Some(task) = admin_task {
        task.abort();
    }
    stopped
}

/// Everything between the plan and "Ready.": the lattice (into `joined` as
/// soon as it is joined), the admin endpoints (into `admin_task` as soon as
/// they listen), providers, actors, filters and bindings.
async fn start_up(
    plan: &mut Plan,
    host: Host,
    filters: FilterHost,
    identity: Option<waxosuit_claims::KeyPair>,
    status: &Arc<Status>,
    admin_task: &mut Option<tokio::task::JoinHandle<()>>,
    joined: &mut Option<Lattice>,
) -> Result<Running> {
    let lattice = join_lattice(plan, &host, identity).await?;
    // For the caller to leave, should start-up fail or be stopped.
    joined.clone_from(&lattice);
    if let Some(addr) = plan.args.admin {
        let (bound, task) = admin::serve(addr, Arc::clone(status)).await?;
        println!("  admin       http://{bound}  (/livez /readyz /metrics)");
        *admin_task = Some(task);
    }
    let mut running = Running {
        host,
        lattice,
        http_servers: Vec::new(),
        filters,
    };
    start_providers(plan, &mut running).await?;
    start_actors(plan, &running.host).await?;
    if let Some(port) = plan.single {
        plan.manifest.bindings = single_actor_bindings(&running.host)?;
        let defaults = HttpDefaults {
            // Said outright: an HTTP binding without one is warned about.
            address: Some(
                plan.args
                    .http_address
                    .unwrap_or(waxosuit_cap_http_server::DEFAULT_ADDRESS),
            ),
            port: Some(port),
            drain_timeout: Duration::from_secs(plan.args.drain_timeout),
        };
        http_defaults(&mut plan.manifest, &defaults)?;
    }
    install_host_filters(plan, &running).await?;
    apply_bindings(plan, &running).await?;
    Ok(running)
}

/// Reads the manifest and the flags into a [`Plan`], printing the trust and
/// policy in force.
fn plan(workload: Workload, args: HostArgs, http_threads: HttpThreads) -> Result<Plan> {
    let (manifest, file, single) = match workload {
        Workload::Manifest(path) => {
            let mut manifest = Manifest::from_path(&path)?;
            let file = path.display().to_string();
            let defaults = HttpDefaults {
                address: args.http_address,
                port: port_from_env()?,
                drain_timeout: Duration::from_secs(args.drain_timeout),
            };
            http_defaults(&mut manifest, &defaults).with_context(|| format!("{file}: bindings"))?;
            (manifest, file, None)
        }
        Workload::Single { actor, port } => (single_actor_manifest(&actor), actor, Some(port)),
    };
    println!("Starting Waxosuit host from {file}");

    let trust = args.trust.resolve()?;
    for line in &trust.summary {
        println!("  trust       {line}");
    }
    let policy = args.policy.build(manifest.policy.as_ref(), &file)?;
    if let Some(policy) = &policy {
        println!("  policy      {}", policy.summary);
    }
    let ctx = BackendContext {
        lattice_prefix: args
            .lattice
            .url
            .as_ref()
            .map(|_| args.lattice.prefix.clone()),
    };
    let default_limits = args.limits.apply(Limits::default());
    let references = manifest
        .actors
        .iter()
        .map(|a| &a.source)
        .chain(manifest.capabilities.iter().filter_map(|c| match &c.kind {
            CapabilitySource::Plugin { source, .. } => Some(source),
            CapabilitySource::Builtin { .. } => None,
        }))
        .chain(filter_entries(&manifest).map(|(_, f)| &f.source))
        .any(|s| matches!(s, Source::Registry(_)));
    // Credentials and the registry client only when something is pulled.
    let fetcher = if references {
        Some(Fetcher::new(&args.pull, args.limits.cache_root())?)
    } else {
        None
    };
    if let Some(fetcher) = &fetcher {
        // Every reference checked before anything starts: a `:latest` in
        // the last actor must not leave providers half started.
        let actors = manifest
            .actors
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("actors[{i}]"), &a.source));
        let plugins = manifest
            .capabilities
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match &c.kind {
                CapabilitySource::Plugin { source, .. } => {
                    Some((format!("capabilities[{i}]"), source))
                }
                CapabilitySource::Builtin { .. } => None,
            });
        let filters = filter_entries(&manifest).map(|(at, f)| (at, &f.source));
        for (at, source) in actors.chain(plugins).chain(filters) {
            if let Source::Registry(reference) = source {
                fetcher
                    .check(reference)
                    .with_context(|| format!("{file}: {at}"))?;
            }
        }
    }
    Ok(Plan {
        fetcher,
        args,
        manifest,
        single,
        file,
        trust,
        policy,
        ctx,
        default_limits,
        http_threads,
    })
}

/// Every filter entry of the manifest with where it is written.
fn filter_entries(manifest: &Manifest) -> impl Iterator<Item = (String, &FilterEntry)> {
    let host_wide = manifest
        .http_filters
        .iter()
        .enumerate()
        .map(|(i, f)| (format!("http_filters[{i}]"), f));
    let per_binding = manifest
        .bindings
        .iter()
        .enumerate()
        .flat_map(|(b, binding)| {
            binding
                .filters
                .iter()
                .enumerate()
                .map(move |(i, f)| (format!("bindings[{b}].filters[{i}]"), f))
        });
    host_wide.chain(per_binding)
}

/// The host (runtime, trust, limits, labels, lattice identity and policy)
/// and the filter host on the same engine.
fn build_host(
    plan: &Plan,
    identity: Option<&waxosuit_claims::KeyPair>,
) -> Result<(Host, FilterHost)> {
    let fuel_anywhere = plan.manifest.actors.iter().any(|a| a.limits.fuel.is_some())
        || filter_entries(&plan.manifest).any(|(_, f)| f.limits.fuel.is_some());
    let engine = Runtime::new(plan.args.limits.runtime_config(fuel_anywhere))
        .context("cannot start the wasm runtime")?;
    let filters = FilterHost::new(&engine);
    let mut builder = HostBuilder::new()
        .runtime(engine)
        .verifier(plan.trust.verifier.clone())
        .default_limits(plan.default_limits)
        .auto_bind(caps::EXTRAS)
        .auto_bind(caps::LOGGING);
    for (k, v) in &plan.manifest.labels {
        builder = builder.label(k, v);
    }
    if let Some(identity) = identity {
        builder = builder.id(identity.public_key());
    }
    if let Some(policy) = &plan.policy {
        builder = builder.policy(Arc::clone(&policy.policy));
    }
    let host = builder.build()?;
    host.register_metrics(filters.collector());
    Ok((host, filters))
}

/// Joins the lattice when `--lattice` is given, printing whom it trusts.
async fn join_lattice(
    plan: &Plan,
    host: &Host,
    identity: Option<waxosuit_claims::KeyPair>,
) -> Result<Option<Lattice>> {
    let factory = Arc::new(Backends {
        http_threads: plan.http_threads.clone(),
        ctx: plan.ctx.clone(),
    });
    let config = match identity {
        Some(identity) => plan.args.lattice.config(identity, factory)?,
        None => None,
    };
    let Some(mut config) = config else {
        return Ok(None);
    };
    config.policy = plan.policy.as_ref().map(|p| Arc::clone(&p.policy));
    // Shown, not used: a URL may carry a password.
    let url = waxosuit_lattice::redact::redact_value("URL", &config.url);
    let prefix = config.prefix.clone();
    let any = config.trust.trusts_any();
    let trusted = config.trust.keys().count();
    let admins = config.trust.admin_keys().count();
    let lattice = Lattice::join(host.clone(), config).await?;
    println!(
        "  lattice     {url} as host {} (prefix `{prefix}`)",
        lattice.host_id()
    );
    if any {
        println!("              trusting invocations from ANY host (development only)");
    } else if trusted == 0 {
        println!(
            "              trusting only itself; add --lattice-trust-host for the other hosts"
        );
    } else {
        println!("              trusting {trusted} other host key(s)");
    }
    if admins == 0 {
        println!(
            "              no admin key trusted: `waxosuit lattice` commands are refused \
             (add --lattice-trust-admin U…)"
        );
    } else {
        println!("              trusting {admins} admin key(s) for commands and inventory");
    }
    Ok(Some(lattice))
}

/// The manifest's providers, plus the always-available built-ins.
async fn start_providers(plan: &Plan, running: &mut Running) -> Result<()> {
    let (file, host) = (&plan.file, &running.host);
    let mut declared: Vec<(String, String)> = Vec::new();
    for (i, entry) in plan.manifest.capabilities.iter().enumerate() {
        let (id, provider) = match &entry.kind {
            CapabilitySource::Builtin { id, provider } => (id.clone(), provider.clone()),
            CapabilitySource::Plugin {
                source,
                declared: shown,
            } => {
                let at = || format!("{file}: capabilities[{i}]: `path: {shown}`");
                let plugin = load_plugin(plan, host, source, shown)
                    .await
                    .with_context(at)?;
                let d = plugin.descriptor();
                host.add_provider(&entry.binding_name, plugin)
                    .await
                    .with_context(|| format!("{file}: capabilities[{i}]"))?;
                println!(
                    "  provider    {} (binding `{}`): {} {} (plugin {shown}, loaded on first binding)",
                    d.id, entry.binding_name, d.name, d.version
                );
                declared.push((d.id, entry.binding_name.clone()));
                continue;
            }
        };
        if provider.as_deref() == Some(LATTICE_PROVIDER) {
            // Served by another host of the lattice: nothing to start here.
            if running.lattice.is_none() {
                bail!(
                    "{file}: capabilities[{i}]: `provider: {LATTICE_PROVIDER}` means another host \
                     of a lattice provides {id}; start this host with --lattice URL, or pick a \
                     local backend"
                );
            }
            println!(
                "  provider    {id} (binding `{}`): on another host of the lattice",
                entry.binding_name
            );
            declared.push((id, entry.binding_name.clone()));
            continue;
        }
        let backend = backend(&id, provider.as_deref(), &plan.ctx)
            .with_context(|| format!("{file}: capabilities[{i}]"))?;
        let provider: Arc<dyn CapabilityProvider> = match backend {
            Backend::Http => {
                let http = Arc::new(http_server(&plan.http_threads));
                running
                    .http_servers
                    .push((entry.binding_name.clone(), Arc::clone(&http)));
                http
            }
            Backend::Other(p) => p,
        };
        let descriptor = provider.descriptor();
        host.add_provider(&entry.binding_name, provider)
            .await
            .with_context(|| format!("{file}: capabilities[{i}]"))?;
        println!(
            "  provider    {id} (binding `{}`): {} {}",
            entry.binding_name, descriptor.name, descriptor.version
        );
        declared.push((id, entry.binding_name.clone()));
    }
    for id in [caps::LOGGING, caps::EXTRAS] {
        if !declared
            .iter()
            .any(|(d, b)| d == id && b == DEFAULT_BINDING)
        {
            let Backend::Other(p) = backend(id, None, &plan.ctx)? else {
                continue;
            };
            host.add_provider(DEFAULT_BINDING, p).await?;
        }
    }
    Ok(())
}

/// The manifest's actors, each with its limits.
async fn start_actors(plan: &Plan, host: &Host) -> Result<()> {
    for (i, entry) in plan.manifest.actors.iter().enumerate() {
        // `waxosuit run` has no manifest to point into.
        let at = if plan.single.is_some() {
            plan.file.clone()
        } else {
            format!("{}: actors[{i}]", plan.file)
        };
        let bytes = match &entry.source {
            Source::File(path) => std::fs::read(path).with_context(|| {
                format!(
                    "{at}: cannot read {} (build and sign the actor first)",
                    path.display()
                )
            })?,
            Source::Registry(reference) => read_source(
                plan.fetcher.as_ref(),
                reference,
                ArtifactKind::Actor,
                |line| println!("  pulled      {line}"),
            )
            .await
            .with_context(|| at.clone())?,
        };
        let limits = limits::from_manifest(plan.default_limits, &entry.limits);
        let info = host
            .add_actor(&bytes, &entry.declared, Some(limits))
            .await
            .with_context(|| at.clone())?;
        let granted: Vec<String> = info
            .capabilities
            .iter()
            .map(|c| caps::display_name(c))
            .collect();
        println!(
            "  actor       {} {}  caps: {}",
            info.name,
            info.key,
            if granted.is_empty() {
                "none".to_string()
            } else {
                granted.join(", ")
            }
        );
    }
    Ok(())
}

/// `http_filters:`, in front of every HTTP server's bindings.
async fn install_host_filters(plan: &Plan, running: &Running) -> Result<()> {
    if plan.manifest.http_filters.is_empty() {
        return Ok(());
    }
    let chain = crate::filters::load_chain(
        &running.host,
        &running.filters,
        plan.fetcher.as_ref(),
        &plan.manifest.http_filters,
        &format!("{}: http_filters", plan.file),
    )
    .await?;
    for (_, http) in &running.http_servers {
        http.set_host_filters(chain.clone());
    }
    Ok(())
}

/// A binding's own `filters:`, set on the HTTP servers of its binding name
/// before it is bound.
async fn install_binding_filters(
    plan: &Plan,
    running: &Running,
    i: usize,
    b: &waxosuit_manifest::BindingEntry,
    key: &str,
) -> Result<()> {
    if b.filters.is_empty() {
        return Ok(());
    }
    let chain = crate::filters::load_chain(
        &running.host,
        &running.filters,
        plan.fetcher.as_ref(),
        &b.filters,
        &format!("{}: bindings[{i}].filters", plan.file),
    )
    .await?;
    for (binding, http) in &running.http_servers {
        if *binding == b.binding {
            http.set_filters(key, &b.binding, chain.clone());
        }
    }
    Ok(())
}

/// The manifest's bindings (lattice-wide when in a lattice), printing
/// where each HTTP actor listens.
async fn apply_bindings(plan: &Plan, running: &Running) -> Result<()> {
    let (file, host, lattice) = (&plan.file, &running.host, &running.lattice);
    for (i, b) in plan.manifest.bindings.iter().enumerate() {
        let key = match (host.resolve_actor(&b.actor), lattice) {
            (Ok(key), _) => key,
            // Another host of the lattice may run it: only a key names it there.
            (Err(_), Some(_)) if waxosuit_runtime::ActorKey::is_valid(&b.actor) => {
                waxosuit_runtime::ActorKey::new(b.actor.clone())?
            }
            (Err(e), lattice) => {
                let hint = if lattice.is_some() {
                    "; an actor on another host of the lattice must be named by its module key (M…)"
                } else {
                    ""
                };
                return Err(anyhow!("{file}: bindings[{i}].actor: {e}{hint}"));
            }
        };
        install_binding_filters(plan, running, i, b, &key).await?;
        let local = host.actors().into_iter().find(|a| a.key == key);
        let already = local.as_ref().is_some_and(|a| {
            a.bindings
                .iter()
                .any(|r| r.capid == b.capability && r.binding == b.binding)
        });
        if already {
            // Auto-bound built-in (extras, logging): re-bind only to pass values.
            if b.values.is_empty() {
                continue;
            }
            host.remove_binding(&key, &b.capability, &b.binding).await?;
        }
        match lattice {
            Some(lattice) => lattice
                .put_binding(&key, &b.capability, &b.binding, b.values.clone())
                .await
                .with_context(|| format!("{file}: bindings[{i}]"))?,
            None => host
                .set_binding(&key, &b.capability, &b.binding, b.values.clone())
                .await
                .with_context(|| format!("{file}: bindings[{i}]"))?,
        }
        let name = match &local {
            Some(a) => a.name.clone(),
            None => format!("{key} (on another host)"),
        };
        let listening = listening(running, b, &key, local.is_none()).await;
        println!(
            "  binding     {name} → {} (binding `{}`){listening}",
            b.capability, b.binding
        );
        if b.capability == caps::HTTP_SERVER
            && let Some(chain) = running
                .http_servers
                .iter()
                .filter(|(binding, _)| *binding == b.binding)
                .map(|(_, http)| http.filter_names(&key, &b.binding))
                .find(|names| !names.is_empty())
        {
            println!("  filters     {} → {name}", chain.join(" → "));
        }
    }
    Ok(())
}

/// Where `key` listens through an HTTP binding `b`, waiting a while for an
/// actor that runs on another host of the lattice to appear.
async fn listening(
    running: &Running,
    b: &waxosuit_manifest::BindingEntry,
    key: &str,
    remote: bool,
) -> String {
    let http: Vec<&Arc<HttpServerProvider>> = running
        .http_servers
        .iter()
        .filter(|(binding, _)| *binding == b.binding && b.capability == caps::HTTP_SERVER)
        .map(|(_, http)| http)
        .collect();
    let mut address = http.iter().find_map(|h| h.bound_address(key));
    if address.is_none() && remote && !http.is_empty() {
        // The listener opens once the actor's host has announced it.
        println!("  waiting     for actor {key} to appear in the lattice…");
        let deadline = tokio::time::Instant::now() + REMOTE_ACTOR_WAIT;
        while address.is_none() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            address = http.iter().find_map(|h| h.bound_address(key));
        }
    }
    match address {
        Some(addr) => format!("  listening on http://{addr}"),
        None if remote && !http.is_empty() => {
            "  (pending: the actor has not appeared in the lattice yet)".to_string()
        }
        None => String::new(),
    }
}

/// Serves until Ctrl-C or SIGTERM, then leaves the lattice and drains.
async fn run_until_stopped(
    plan: &Plan,
    running: &Running,
    status: &Status,
    mut stop: StopSignals,
) -> Result<ExitCode> {
    let health = running
        .host
        .spawn_health_checks(Duration::from_secs(plan.args.health_interval.max(1)));
    println!("Ready. Press Ctrl-C to stop.");

    stop.wait().await;
    let first = tokio::time::Instant::now();
    // Unready first, so that a load balancer stops sending new requests
    // while the ones in flight finish.
    status.draining.store(true, Ordering::Release);
    let delay = Duration::from_secs(plan.args.shutdown_delay);
    if !delay.is_zero() {
        // Endpoints learn of the stop only after it: until they have, new
        // connections still arrive and are served. A second signal ends the
        // wait.
        println!(
            "Stopping: unready, still serving for {} s (--shutdown-delay)…",
            delay.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.again(first) => {}
        }
    }
    println!("Stopping: draining in-flight requests…");
    if let Some(lattice) = &running.lattice {
        // Out of the queue groups first, so no new calls arrive from the lattice.
        lattice.leave().await;
    }
    let limit = Duration::from_secs(plan.args.drain_timeout);
    let drained = tokio::select! {
        drained = tokio::time::timeout(limit, running.host.shutdown()) => drained.is_ok(),
        // Another Ctrl-C or SIGTERM: the operator will not wait.
        _ = stop.again(first) => {
            health.abort();
            bail!("stopped by a second signal before in-flight work had finished");
        }
    };
    health.abort();
    if drained {
        println!("Stopped.");
        Ok(ExitCode::SUCCESS)
    } else {
        Err(anyhow!(
            "in-flight work did not finish within {} s (--drain-timeout); stopped anyway",
            plan.args.drain_timeout
        ))
    }
}

/// The environment variable a platform (Knative, Cloud Run, Heroku) uses
/// to tell a process which port to serve on.
const PORT_ENV: &str = "PORT";

/// `$PORT`, when it is set.
fn port_from_env() -> Result<Option<u16>> {
    match std::env::var(PORT_ENV) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            anyhow!("{PORT_ENV}=`{text}` is not a TCP port number (0 to 65535); unset it or fix it")
        }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("{PORT_ENV} is not valid text; unset it or set a port number")
        }
    }
}

/// How much longer than `--drain-timeout` an HTTP binding drains by default.
const BINDING_DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// What the host's flags and environment say of HTTP bindings whose
/// values leave it open.
struct HttpDefaults {
    /// `--http-address`.
    address: Option<std::net::IpAddr>,
    /// `$PORT`.
    port: Option<u16>,
    /// `--drain-timeout`: a binding drains a second longer than the host
    /// waits, so that the host's own limit decides (and says so, exiting
    /// non-zero) rather than the binding quietly cutting connections.
    drain_timeout: Duration,
}

/// Fills what the manifest leaves open in its HTTP bindings: `ADDRESS`
/// from `--http-address`, `DRAIN_TIMEOUT_MS` from `--drain-timeout`, and
/// `PORT` from `$PORT`, which only one binding can take: with several
/// bindings open, the manifest must say which one (`PORT: "${PORT}"`).
/// Nothing changes when it fails.
fn http_defaults(manifest: &mut Manifest, defaults: &HttpDefaults) -> Result<()> {
    use waxosuit_cap_http_server::{ADDRESS, DRAIN_TIMEOUT_MS, PORT};
    let http = |b: &waxosuit_manifest::BindingEntry| b.capability == caps::HTTP_SERVER;
    let open: Vec<usize> = manifest
        .bindings
        .iter()
        .enumerate()
        .filter(|(_, b)| http(b) && !b.values.contains_key(PORT))
        .map(|(i, _)| i)
        .collect();
    if let (Some(_), [_, _, ..]) = (defaults.port, open.as_slice()) {
        let at: Vec<String> = open.iter().map(|i| format!("bindings[{i}]")).collect();
        bail!(
            "${PORT_ENV} is set but {} HTTP bindings give no PORT ({}); give each a PORT, \
             e.g. `PORT: \"${{PORT}}\"` for the one that should take it",
            open.len(),
            at.join(", ")
        );
    }
    for binding in manifest.bindings.iter_mut().filter(|b| http(b)) {
        if let Some(address) = defaults.address {
            binding
                .values
                .entry(ADDRESS.to_string())
                .or_insert_with(|| address.to_string());
        }
        binding
            .values
            .entry(DRAIN_TIMEOUT_MS.to_string())
            .or_insert_with(|| {
                defaults
                    .drain_timeout
                    .saturating_add(BINDING_DRAIN_MARGIN)
                    .as_millis()
                    .to_string()
            });
    }
    if let (Some(port), [one]) = (defaults.port, open.as_slice()) {
        manifest.bindings[*one]
            .values
            .insert(PORT.to_string(), port.to_string());
    }
    Ok(())
}

/// `waxosuit run`'s manifest: the actor, an HTTP server and the embedded
/// key-value store; the bindings follow from its claims once it is loaded.
fn single_actor_manifest(actor: &str) -> Manifest {
    let source = if actor.starts_with(waxosuit_manifest::REGISTRY_SCHEME) {
        Source::Registry(actor.to_string())
    } else {
        Source::File(PathBuf::from(actor))
    };
    let builtin = |id: &str, provider: Option<&str>| waxosuit_manifest::CapabilityEntry {
        kind: CapabilitySource::Builtin {
            id: id.to_string(),
            provider: provider.map(str::to_string),
        },
        binding_name: DEFAULT_BINDING.to_string(),
    };
    Manifest {
        actors: vec![waxosuit_manifest::ActorEntry {
            source,
            declared: actor.to_string(),
            limits: Default::default(),
        }],
        capabilities: vec![
            builtin(caps::HTTP_SERVER, None),
            builtin(caps::KEY_VALUE, Some("memory")),
        ],
        source: PathBuf::from(actor),
        ..Manifest::default()
    }
}

/// The bindings `waxosuit run` makes for its one actor: HTTP (its values
/// are [`http_defaults`]'), and the embedded key-value store when its
/// claims grant it.
fn single_actor_bindings(host: &Host) -> Result<Vec<waxosuit_manifest::BindingEntry>> {
    let actor = host
        .actors()
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("the actor did not start"))?;
    let binding = |capability: &str| waxosuit_manifest::BindingEntry {
        actor: actor.key.to_string(),
        capability: capability.to_string(),
        binding: DEFAULT_BINDING.to_string(),
        values: Default::default(),
        filters: Vec::new(),
    };
    if !actor.capabilities.iter().any(|c| c == caps::HTTP_SERVER) {
        bail!(
            "actor {} is not signed for {}: `waxosuit run` serves HTTP actors; sign it with \
             --cap {} or describe what it uses in a manifest for `waxosuit up`",
            actor.name,
            caps::HTTP_SERVER,
            caps::HTTP_SERVER
        );
    }
    let mut bindings = vec![binding(caps::HTTP_SERVER)];
    for capability in &actor.capabilities {
        match capability.as_str() {
            caps::HTTP_SERVER | caps::LOGGING | caps::EXTRAS => {}
            caps::KEY_VALUE => bindings.push(binding(caps::KEY_VALUE)),
            other => println!(
                "  note        {} is granted {} but `waxosuit run` binds only HTTP and the \
                 embedded key-value store; use `waxosuit up` with a manifest to bind it",
                actor.name,
                caps::display_name(other)
            ),
        }
    }
    Ok(bindings)
}

/// A manifest's `path:` capability: a signed archive from a file or a
/// registry (checked by policy, then verified and registered), or a bare
/// library (only with `--allow-unsigned-plugins`).
async fn load_plugin(
    plan: &Plan,
    host: &Host,
    source: &Source,
    shown: &str,
) -> Result<Arc<waxosuit_plugin_host::PluginProvider>> {
    let archive = match source {
        Source::File(path) if path.extension().is_none_or(|e| e != "par") => {
            return crate::par::load_unsigned_library(
                path,
                plan.args.allow_unsigned_plugins,
                &plugin_staging(plan),
            );
        }
        Source::File(path) => waxosuit_par::ProviderArchive::read_path(path)?,
        Source::Registry(reference) => {
            let bytes = read_source(
                plan.fetcher.as_ref(),
                reference,
                ArtifactKind::ProviderArchive,
                |line| println!("  pulled      {line}"),
            )
            .await?;
            waxosuit_par::ProviderArchive::from_bytes(&bytes)?
        }
    };
    if let Some(policy) = &plan.policy {
        check_archive(&archive, &plan.trust.verifier, &policy.policy, host, shown).await?;
    }
    crate::par::load_archive(&archive, shown, &plan.trust.verifier, &plugin_staging(plan))
}

/// Where plugin libraries are staged for `dlopen`: under the cache
/// directory, the one place the host writes.
fn plugin_staging(plan: &Plan) -> PathBuf {
    plan.args.limits.cache_root().join("plugins")
}

async fn check_archive(
    archive: &waxosuit_par::ProviderArchive,
    verifier: &waxosuit_claims::Verifier,
    policy: &waxosuit_policy::Policy,
    host: &Host,
    shown: &str,
) -> Result<()> {
    let verified = archive
        .verify(verifier)
        .with_context(|| format!("refusing the provider archive {shown}"))?;
    let claims = verified.claims();
    let info = host.info();
    let input = waxosuit_policy::input::ProviderInput {
        token: claims.jwt().to_string(),
        claims: serde_json::to_value(claims.claims())?,
        capability: verified.capid().to_string(),
        source: shown.to_string(),
        host: waxosuit_policy::input::HostFacts {
            id: info.id,
            labels: info.labels,
        },
    };
    policy
        .check(
            waxosuit_policy::DecisionPoint::Provider,
            serde_json::to_value(&input)?,
        )
        .await?;
    Ok(())
}

/// How long after the first stop signal another one still counts as the
/// same stop.
const SECOND_SIGNAL_GAP: Duration = Duration::from_millis(500);

/// SIGINT and SIGTERM, listened for from the moment of [`StopSignals::install`].
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
                terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Resolves at the next Ctrl-C or SIGTERM that comes at least
    /// [`SECOND_SIGNAL_GAP`] after `first`: a supervisor that sends SIGINT
    /// and SIGTERM together means one stop, not two.
    async fn again(&mut self, first: tokio::time::Instant) {
        loop {
            self.wait().await;
            if first.elapsed() >= SECOND_SIGNAL_GAP {
                return;
            }
        }
    }

    /// Resolves at the next Ctrl-C or SIGTERM (one that came before the
    /// call included).
    async fn wait(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::from_str_with_env(
            text,
            waxosuit_manifest::Format::Yaml,
            ".",
            "test.yaml",
            &|_| None,
        )
        .unwrap()
    }

    const TWO_OPEN: &str = r#"
actors: [ ./a.wasm, ./b.wasm ]
capabilities: [ { id: wascc:http_server }, { id: wascc:keyvalue } ]
bindings:
  - { actor: a, capability: wascc:http_server }
  - { actor: a, capability: wascc:keyvalue }
  - { actor: b, capability: wascc:http_server }
"#;

    #[test]
    fn port_goes_to_the_one_http_binding_that_gives_none() {
        let mut m = manifest(
            r#"
actors: [ ./a.wasm, ./b.wasm ]
capabilities: [ { id: wascc:http_server }, { id: wascc:keyvalue } ]
bindings:
  - { actor: a, capability: wascc:http_server, values: { PORT: 9000, ADDRESS: 127.0.0.1 } }
  - { actor: a, capability: wascc:keyvalue }
  - { actor: b, capability: wascc:http_server }
"#,
        );
        http_defaults(
            &mut m,
            &HttpDefaults {
                address: Some("0.0.0.0".parse().unwrap()),
                port: Some(8080),
                drain_timeout: Duration::from_secs(7),
            },
        )
        .unwrap();
        let values = |i: usize| m.bindings[i].values.clone();
        assert_eq!(values(0)["PORT"], "9000");
        assert_eq!(values(0)["ADDRESS"], "127.0.0.1");
        assert_eq!(values(0)["DRAIN_TIMEOUT_MS"], "8000");
        assert!(values(1).is_empty(), "not an HTTP binding: {:?}", values(1));
        assert_eq!(values(2)["PORT"], "8080");
        assert_eq!(values(2)["ADDRESS"], "0.0.0.0");
    }

    #[test]
    fn port_with_two_open_http_bindings_is_refused_and_changes_nothing() {
        let mut m = manifest(TWO_OPEN);
        let before = m.clone();
        let err = http_defaults(
            &mut m,
            &HttpDefaults {
                address: Some("0.0.0.0".parse().unwrap()),
                port: Some(8080),
                drain_timeout: Duration::from_secs(7),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("2 HTTP bindings give no PORT (bindings[0], bindings[2])"),
            "{err}"
        );
        assert!(err.contains(r#"PORT: "${PORT}""#), "{err}");
        assert_eq!(m, before);
    }

    #[test]
    fn without_port_or_address_only_the_drain_timeout_is_filled_in() {
        let mut m = manifest(TWO_OPEN);
        let defaults = HttpDefaults {
            address: None,
            port: None,
            drain_timeout: Duration::from_secs(7),
        };
        http_defaults(&mut m, &defaults).unwrap();
        for i in [0, 2] {
            let values: Vec<(&str, &str)> = m.bindings[i]
                .values
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(values, [("DRAIN_TIMEOUT_MS", "8000")]);
        }
        assert!(m.bindings[1].values.is_empty());
    }

    #[test]
    fn the_single_actor_manifest_reads_files_and_references() {
        let m = single_actor_manifest("./hello_signed.wasm");
        assert_eq!(
            m.actors[0].source,
            Source::File(PathBuf::from("./hello_signed.wasm"))
        );
        let ids: Vec<Option<&str>> = m.capabilities.iter().map(|c| c.id()).collect();
        assert_eq!(ids, [Some(caps::HTTP_SERVER), Some(caps::KEY_VALUE)]);
        assert!(m.bindings.is_empty());
        let m = single_actor_manifest("oci://127.0.0.1:5000/hello:1.0");
        assert_eq!(
            m.actors[0].source,
            Source::Registry("oci://127.0.0.1:5000/hello:1.0".to_string())
        );
    }
}
