//! Runtime and per-actor limit flags shared by `call` and `up`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use waxosuit_runtime::{Limits, RuntimeConfig};

/// Environment variable naming the compiled-module cache directory.
pub(crate) const CACHE_DIR_ENV: &str = "WAXOSUIT_CACHE";

#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// Maximum linear memory per actor instance, in MiB (at most 256, what
    /// the host's instance slots hold).
    #[arg(
        long,
        value_name = "MIB",
        env = "WAXOSUIT_MAX_MEMORY_MIB",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(waxosuit_manifest::MAX_MEMORY_MIB))
    )]
    pub max_memory_mib: Option<u32>,
    /// Per-call deadline, in milliseconds.
    #[arg(long, value_name = "MS", env = "WAXOSUIT_DEADLINE_MS")]
    pub deadline_ms: Option<u64>,
    /// Fuel (instruction budget) per call; turns on fuel metering.
    #[arg(long, env = "WAXOSUIT_FUEL")]
    pub fuel: Option<u64>,
    /// Largest request or response payload, in KiB (under 2 GiB).
    #[arg(
        long,
        value_name = "KIB",
        env = "WAXOSUIT_MAX_PAYLOAD_KIB",
        value_parser = clap::value_parser!(u32).range(1..=i64::from(waxosuit_manifest::MAX_PAYLOAD_KIB))
    )]
    pub max_payload_kib: Option<u32>,
    /// Cache directory for compiled modules and pulled artifacts (default:
    /// $WAXOSUIT_CACHE, else ~/.cache/waxosuit).
    #[arg(long, value_name = "DIR", env = CACHE_DIR_ENV)]
    pub cache_dir: Option<PathBuf>,
    /// Do not use the compiled-module cache (pulled artifacts are still
    /// kept, by digest).
    #[arg(long, env = "WAXOSUIT_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_cache: bool,
}

impl LimitArgs {
    /// Applies the flags on top of `base`.
    pub(crate) fn apply(&self, mut limits: Limits) -> Limits {
        if let Some(mib) = self.max_memory_mib {
            limits = limits.max_memory(mib as usize * 1024 * 1024);
        }
        if let Some(ms) = self.deadline_ms {
            limits = limits.deadline(Duration::from_millis(ms));
        }
        if self.fuel.is_some() {
            limits = limits.fuel(self.fuel);
        }
        if let Some(kib) = self.max_payload_kib {
            limits = limits.max_payload(kib as usize * 1024);
        }
        limits
    }

    /// The cache directory, used or not for compiled modules: pulled
    /// artifacts are kept under it either way.
    pub(crate) fn cache_root(&self) -> PathBuf {
        self.cache_dir.clone().unwrap_or_else(default_cache_dir)
    }

    /// The runtime configuration these flags ask for.
    pub(crate) fn runtime_config(&self, fuel_anywhere: bool) -> RuntimeConfig {
        let mut config =
            RuntimeConfig::default().fuel_metering(self.fuel.is_some() || fuel_anywhere);
        if !self.no_cache {
            config = config.cache_dir(self.cache_dir.clone().unwrap_or_else(default_cache_dir));
        }
        config
    }
}

pub(crate) fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CACHE_DIR_ENV) {
        return PathBuf::from(dir);
    }
    crate::keystore::home_dir().join(".cache").join("waxosuit")
}

/// Limits from a manifest entry on top of `base`.
pub(crate) fn from_manifest(base: Limits, l: &waxosuit_manifest::ActorLimits) -> Limits {
    let mut limits = base;
    if let Some(mib) = l.max_memory_mib {
        limits = limits.max_memory(mib as usize * 1024 * 1024);
    }
    if let Some(ms) = l.deadline_ms {
        limits = limits.deadline(Duration::from_millis(ms));
    }
    if l.fuel.is_some() {
        limits = limits.fuel(l.fuel);
    }
    if let Some(kib) = l.max_payload_kib {
        limits = limits.max_payload(kib as usize * 1024);
    }
    let min = l.min_instances.map_or(limits.min_instances, |v| v as usize);
    let max = l.max_instances.map_or(limits.max_instances, |v| v as usize);
    limits.instances(min.min(max), max)
}

#[cfg(test)]
mod tests {
    use waxosuit_runtime::PoolingConfig;

    /// The manifest's ceilings are the runtime's pool, which `up` and
    /// `call` run with: a value within them always loads.
    #[test]
    fn the_manifest_ceilings_are_the_runtimes_pool() {
        let pool = PoolingConfig::default();
        assert_eq!(
            waxosuit_manifest::MAX_MEMORY_MIB as usize * 1024 * 1024,
            pool.max_memory_per_instance
        );
        assert_eq!(waxosuit_manifest::MAX_INSTANCES, pool.total_instances);
        assert!((waxosuit_manifest::MAX_PAYLOAD_KIB as usize * 1024) < i32::MAX as usize);
    }
}
