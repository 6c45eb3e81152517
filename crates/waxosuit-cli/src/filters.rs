//! The manifest's Proxy-Wasm filters (`http_filters:` and a binding's
//! `filters:`): read or pulled, admitted by the host (claims, trust,
//! policy), then loaded on the actors' engine.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use waxosuit_cap_http_server::filter::HttpFilter;
use waxosuit_host::Host;
use waxosuit_manifest::{FilterEntry, Source};
use waxosuit_proxy_wasm::{FilterHost, FilterLimits, FilterSettings};
use waxosuit_registry::ArtifactKind;

use crate::registry::{Fetcher, read_source};

/// How `limits:` of a manifest entry apply over the defaults.
fn limits(entry: &FilterEntry) -> FilterLimits {
    let defaults = FilterLimits::default();
    let l = &entry.limits;
    FilterLimits {
        max_memory: l
            .max_memory_mib
            .map_or(defaults.max_memory, |mib| (mib as usize) << 20),
        deadline: l
            .deadline_ms
            .map_or(defaults.deadline, Duration::from_millis),
        fuel: l.fuel.or(defaults.fuel),
        max_body: l
            .max_body_kib
            .map_or(defaults.max_body, |kib| (kib as usize) << 10),
    }
}

/// Loads one chain; `at` names it in errors (`bindings[2].filters`).
pub(crate) async fn load_chain(
    host: &Host,
    filters: &FilterHost,
    fetcher: Option<&Fetcher>,
    entries: &[FilterEntry],
    at: &str,
) -> Result<Vec<Arc<dyn HttpFilter>>> {
    let mut chain: Vec<Arc<dyn HttpFilter>> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let here = || format!("{at}[{i}] (`{}`)", entry.declared);
        let bytes = match &entry.source {
            Source::File(path) => std::fs::read(path).with_context(|| {
                format!(
                    "{}: cannot read {} (build the filter and sign it with `waxosuit claims \
                     sign` first)",
                    here(),
                    path.display()
                )
            })?,
            Source::Registry(reference) => {
                read_source(fetcher, reference, ArtifactKind::Actor, |line| {
                    println!("  pulled      {line}");
                })
                .await
                .with_context(here)?
            }
        };
        let claims = host
            .admit_filter(&bytes, &entry.declared)
            .await
            .with_context(here)?;
        let settings = FilterSettings {
            config: entry.config.clone(),
            upstreams: entry.upstreams.clone(),
            limits: limits(entry),
        };
        let filter = filters
            .load(&claims, &bytes, settings)
            .await
            .with_context(here)?;
        println!(
            "  filter      {} {}  Proxy-Wasm ABI {}{}",
            filter.name(),
            filter.key(),
            filter.abi(),
            if entry.upstreams.is_empty() {
                String::new()
            } else {
                format!(
                    "  upstreams: {}",
                    entry
                        .upstreams
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        chain.push(filter as Arc<dyn HttpFilter>);
    }
    Ok(chain)
}
