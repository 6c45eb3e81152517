//! Proxy-Wasm filters in front of Waxosuit's HTTP actors.
//!
//! [Proxy-Wasm] is the contract Envoy, Istio, Kong and APISIX run
//! WebAssembly request filters under. This crate hosts filters built for
//! it (ABI 0.2.1, and 0.2.0, told apart by the module's marker export),
//! unchanged, in front of actors served by `wascc:http_server`.
//!
//! # A guided tour
//!
//! * [`FilterHost`] is made once per host from the actors' [`Runtime`]: the
//!   same wasmtime engine, epoch ticker (deadlines), allocator and fuel
//!   setting. [`FilterHost::load`] takes a module whose claims the host has
//!   verified (a [`VerifiedActor`] carrying the
//!   [`PROXY_WASM_FILTER_TAG`](waxosuit_claims::PROXY_WASM_FILTER_TAG)),
//!   checks its imports (the `env.proxy_*` functions and the WASI subset,
//!   nothing else), starts a VM and configures it: a filter that cannot
//!   start fails its load, not a request.
//! * A [`ProxyFilter`] is an
//!   [`HttpFilter`](waxosuit_cap_http_server::filter::HttpFilter) for the
//!   HTTP server's chains.
//!   It keeps **one VM per connection thread**, as Envoy keeps one per
//!   worker: a request's callbacks run on the thread that serves it, and
//!   the streams a thread serves share its VM and root context. Each
//!   request is an HTTP context: `proxy_on_context_create`, request
//!   headers (with `:method`, `:path`, `:authority`, `:scheme`), request
//!   body (whole, with `end_of_stream`), then the response's, then
//!   `proxy_on_done`, `proxy_on_log`, `proxy_on_delete`.
//! * `Pause` is honoured: the request waits, without holding the VM, until
//!   the filter resumes it (`proxy_continue_stream`, usually from
//!   `proxy_on_http_call_response`) or answers it
//!   (`proxy_send_local_response`), or until the request's deadline, which
//!   is a `504`. Nothing calls back into the filter from inside a host
//!   call: callouts, timers and queue notifications run once the callback
//!   has returned.
//! * Every callback runs under the filter's limits ([`FilterLimits`]):
//!   memory, wall-clock deadline, fuel. A callback that traps or exceeds
//!   them fails its request (`500`), and the VM is rebuilt for the next
//!   one; other requests, filters and listeners carry on.
//! * Shared data (with compare-and-swap), shared queues, metrics and
//!   callouts are per filter and bounded (the `MAX_*` constants); metrics
//!   appear in the host's `/metrics` through [`FilterHost::collector`].
//!   Callouts go through the host's HTTP client with the filter's
//!   `upstreams` as its only allowed destinations.
//!
//! `docs/proxy-wasm.md` lists every host function and what it answers.
//!
//! [Proxy-Wasm]: https://github.com/proxy-wasm/spec
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

mod abi;
mod callout;
mod clip;
mod filter;
mod head;
mod hostcalls;
mod metrics;
mod properties;
mod shared;
mod state;
mod vm;
mod wasi;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{ExternType, Linker, Module};
use waxosuit_claims::{ProxyWasmAbi, VerifiedActor};
use waxosuit_runtime::Runtime;

pub use abi::MetricKind;
pub use callout::MAX_CALLOUT_RESPONSE_BYTES;
pub use filter::ProxyFilter;
pub use hostcalls::{
    MAX_CALLOUT_TIMEOUT, MAX_CALLS_IN_FLIGHT, MAX_LOG_BYTES, MAX_MAP_BYTES, MAX_MAP_PAIRS,
    MAX_PROPERTY_BYTES, MIN_TICK,
};
pub use properties::PATHS as PROPERTY_PATHS;
pub use shared::{
    FilterMetrics, MAX_METRICS, MAX_NAME_BYTES, MAX_QUEUE_ITEMS, MAX_QUEUED_BYTES, MAX_QUEUES,
    MAX_SHARED_BYTES, MAX_SHARED_KEYS, MAX_VALUE_BYTES,
};
pub use wasi::MAX_RANDOM_BYTES;

use crate::state::{FilterInfo, VmState};
use crate::vm::VmTemplate;

/// What one filter may use per callback and per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    /// Linear memory ceiling of each VM, in bytes.
    pub max_memory: usize,
    /// Wall-clock budget of one callback.
    pub deadline: Duration,
    /// Fuel per callback, when the runtime meters fuel.
    pub fuel: Option<u64>,
    /// Largest request or response body the filter buffers; a larger
    /// request is answered `413`, a larger response fails (`500`).
    pub max_body: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            max_memory: 16 << 20,
            deadline: Duration::from_millis(100),
            fuel: None,
            max_body: 1 << 20,
        }
    }
}

/// How one filter is to run: from the manifest's entry.
#[derive(Debug, Clone, Default)]
pub struct FilterSettings {
    /// `proxy_on_configure`'s bytes.
    pub config: Vec<u8>,
    /// Cluster name → base URL, for `proxy_http_call`.
    pub upstreams: BTreeMap<String, String>,
    /// Limits.
    pub limits: FilterLimits,
}

/// Why a filter did not load. Each names the filter and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Its claims do not mark it as a filter.
    #[error(
        "module {key} (`{name}`) is signed as an actor, not as a Proxy-Wasm filter; sign the \
         filter module with `waxosuit claims sign`, which tags Proxy-Wasm modules"
    )]
    NotAFilter {
        /// The module's key.
        key: String,
        /// Its name.
        name: String,
    },
    /// No supported ABI marker.
    #[error(
        "filter `{name}` ({key}) does not export `proxy_abi_version_0_2_1` or \
         `proxy_abi_version_0_2_0`; build it with a Proxy-Wasm SDK of the 0.2 line (the Rust \
         `proxy-wasm` crate 0.2.x, Go or C++ SDKs for ABI 0.2.1)"
    )]
    NoAbi {
        /// The module's key.
        key: String,
        /// Its name.
        name: String,
    },
    /// It imports something outside the host contract.
    #[error(
        "filter `{name}` ({key}) imports `{module}.{import}`, which this host does not \
         provide: filters get the `env.proxy_*` functions of ABI 0.2.1 and a WASI subset \
         ({subset}); rebuild it without that dependency (no files, sockets, threads or \
         environment)"
    )]
    Import {
        /// The module's key.
        key: String,
        /// Its name.
        name: String,
        /// The import's module.
        module: String,
        /// The import's name.
        import: String,
        /// The WASI functions allowed.
        subset: String,
    },
    /// wasmtime refused the module.
    #[error("filter `{name}` ({key}) is not a valid module for this engine: {reason}")]
    Compile {
        /// The module's key.
        key: String,
        /// Its name.
        name: String,
        /// wasmtime's reason.
        reason: String,
    },
    /// Its limits cannot be applied.
    #[error("filter `{name}`: {reason}")]
    Limits {
        /// Its name.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An `upstreams` entry is unusable.
    #[error("filter `{filter}`, upstream `{upstream}`: {reason}")]
    Upstream {
        /// The filter's name.
        filter: String,
        /// The upstream's name.
        upstream: String,
        /// What is wrong.
        reason: String,
    },
    /// Its VM could not start or refused its configuration.
    #[error("filter `{name}` ({key}) failed to start: {reason}")]
    Start {
        /// The module's key.
        key: String,
        /// Its name.
        name: String,
        /// What happened.
        reason: String,
    },
}

/// Loads filters on the actors' engine. See the [crate docs](crate).
pub struct FilterHost {
    runtime: Runtime,
    linker: Arc<Linker<VmState>>,
    metrics: metrics::Loaded,
}

impl std::fmt::Debug for FilterHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterHost").finish_non_exhaustive()
    }
}

impl FilterHost {
    /// A filter host on `runtime`'s engine.
    ///
    /// # Panics
    ///
    /// Never: linking the fixed set of host functions cannot fail.
    #[must_use]
    pub fn new(runtime: &Runtime) -> FilterHost {
        let mut linker = Linker::new(runtime.engine());
        #[allow(clippy::expect_used)]
        hostcalls::link(&mut linker).expect("the Proxy-Wasm host functions have distinct names");
        FilterHost {
            runtime: runtime.clone(),
            linker: Arc::new(linker),
            metrics: Arc::default(),
        }
    }

    /// Loads the filter `module`, whose claims the caller verified.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the filter and the fix.
    pub async fn load(
        &self,
        claims: &VerifiedActor,
        module: &[u8],
        settings: FilterSettings,
    ) -> Result<Arc<ProxyFilter>, LoadError> {
        let key = claims.public_key().to_string();
        let name = claims.name().to_string();
        if !claims.is_proxy_wasm_filter() {
            return Err(LoadError::NotAFilter { key, name });
        }
        let config = self.runtime.config();
        let limits = settings.limits;
        if limits.fuel.is_some() && !config.fuel_metering {
            return Err(LoadError::Limits {
                name,
                reason: "limits.fuel is set but the host does not meter fuel; drop it, or start \
                         the host with fuel metering on"
                    .into(),
            });
        }
        if let Some(pool) = config.pooling
            && limits.max_memory > pool.max_memory_per_instance
        {
            return Err(LoadError::Limits {
                name,
                reason: format!(
                    "limits.max_memory_mib ({} MiB) is above the host's per-instance memory \
                     ({} MiB); lower it",
                    limits.max_memory >> 20,
                    pool.max_memory_per_instance >> 20
                ),
            });
        }
        let compiled =
            Module::new(self.runtime.engine(), module).map_err(|e| LoadError::Compile {
                key: key.clone(),
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        // The newest marker the module exports, as signing read it.
        let Some(abi) = compiled
            .exports()
            .filter_map(|e| ProxyWasmAbi::from_export_name(e.name()))
            .max()
            .filter(|abi| abi.is_supported())
        else {
            return Err(LoadError::NoAbi { key, name });
        };
        for import in compiled.imports() {
            let allowed = match import.module() {
                "env" => abi::HOST_FUNCTIONS.contains(&import.name()),
                abi::WASI => abi::WASI_SUBSET.contains(&import.name()),
                _ => false,
            };
            if !allowed || !matches!(import.ty(), ExternType::Func(_)) {
                return Err(LoadError::Import {
                    key,
                    name,
                    module: import.module().to_string(),
                    import: import.name().to_string(),
                    subset: abi::WASI_SUBSET.join(", "),
                });
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&compiled)
            .map_err(|e| LoadError::Compile {
                key: key.clone(),
                name: name.clone(),
                reason: format!("{e:#}"),
            })?;
        let callouts = callout::Callouts::new(&name, &key, &settings.upstreams).await?;
        let info = Arc::new(FilterInfo {
            name: name.clone(),
            key: key.clone(),
            config: settings.config,
            upstreams: settings.upstreams,
            limits,
            abi,
            shared: shared::Shared::default(),
            log_budget: waxosuit_runtime::console::ConsoleBudget::new(),
        });
        let metrics = Arc::clone(&info.shared.metrics);
        let template = VmTemplate {
            runtime: self.runtime.clone(),
            pre,
            deadline_ticks: vm::ticks(limits.deadline, config.epoch_tick),
            fuel: limits.fuel,
            fuel_metering: config.fuel_metering,
            info,
        };
        let filter = ProxyFilter::start(filter::FilterInner::new(template, callouts)).map_err(
            |vm::Failed(reason)| LoadError::Start {
                key: key.clone(),
                name: name.clone(),
                reason,
            },
        )?;
        self.metrics
            .lock()
            .push((name.clone(), Arc::downgrade(&metrics)));
        tracing::info!(filter = %name, filter_key = %key, abi = %abi, "Proxy-Wasm filter loaded");
        Ok(Arc::new(filter))
    }

    /// The filters' metrics for a Prometheus registry (the host's
    /// `/metrics`): every filter loaded by this host, now or later.
    pub fn collector(&self) -> Box<dyn prometheus_client::collector::Collector> {
        Box::new(metrics::FiltersCollector(Arc::clone(&self.metrics)))
    }
}
