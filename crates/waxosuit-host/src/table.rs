//! The running actors and the way into them: the table, and the middleware
//! and metrics that every call into an actor goes through.
//!
//! These live apart from the rest of the host so that a provider's
//! dispatcher can hold them strongly. The host owns its providers and they
//! own their dispatchers, so a dispatcher holding the host itself would be
//! a reference cycle; and upgrading a `Weak` host on every request wrote a
//! reference count shared by every core, a cache-line transfer per request
//! under load (`docs/http-benchmarks.md`). Nothing in here owns a provider,
//! so holding it keeps no cycle alive.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;
use tracing::Instrument;
use waxosuit_runtime::RuntimeError;

use crate::HostError;
use crate::gate::Gate;
use crate::host::ActorEntry;
use crate::metrics::Metrics;
use crate::policy::{Entity, Middleware, MiddlewareCall, Side, after, before};
use crate::read_mostly::ReadMostly;
use crate::spans;

/// The running actors by module key, and what a call into one passes
/// through.
pub(crate) struct ActorTable {
    pub(crate) entries: ReadMostly<FxHashMap<String, Arc<ActorEntry>>>,
    pub(crate) middlewares: Vec<Arc<dyn Middleware>>,
    pub(crate) metrics: Metrics,
    /// Policy, consulted on every invocation into or out of an actor.
    pub(crate) gate: Option<Arc<Gate>>,
}

impl ActorTable {
    pub(crate) fn new(
        middlewares: Vec<Arc<dyn Middleware>>,
        gate: Option<Arc<Gate>>,
    ) -> ActorTable {
        ActorTable {
            entries: ReadMostly::default(),
            middlewares,
            metrics: Metrics::new(),
            gate,
        }
    }

    /// A running actor by module key.
    pub(crate) fn get(&self, key: &str) -> Option<Arc<ActorEntry>> {
        self.entries.load().get(key).cloned()
    }

    /// Invokes an actor through middleware, with metrics.
    pub(crate) async fn invoke_actor(
        &self,
        origin: impl FnOnce() -> Entity,
        entry: &ActorEntry,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        let started = Instant::now();
        let key = entry.runtime.key().as_str();
        let span = spans::actor(entry, key, operation);
        let result = if self.middlewares.is_empty() {
            // Pinned where it is made and polled inside the span, rather
            // than moved whole into `.instrument()`'s wrapper on every call.
            let mut run = pin!(self.run_actor(entry, operation, payload));
            poll_fn(|cx| span.in_scope(|| run.as_mut().poll(cx))).await
        } else {
            let inv = MiddlewareCall {
                origin: origin(),
                target: Entity::Actor(key.to_string()),
                operation: operation.to_string(),
                payload: payload.to_vec(),
            };
            self.actor_chain(entry, inv).instrument(span.clone()).await
        };
        spans::finish(&span, &result);
        entry.series.record(
            &self.metrics,
            key,
            "",
            operation,
            started.elapsed(),
            result.is_ok(),
        );
        result
    }

    async fn actor_chain(
        &self,
        entry: &ActorEntry,
        inv: MiddlewareCall,
    ) -> Result<Vec<u8>, HostError> {
        let (inv, halted) = before(&self.middlewares, Side::Actor, inv).await?;
        let result = match halted {
            Some(result) => result,
            None => self.run_actor(entry, &inv.operation, &inv.payload).await,
        };
        after(&self.middlewares, Side::Actor, &inv, result).await
    }

    async fn run_actor(
        &self,
        entry: &ActorEntry,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, HostError> {
        entry
            .runtime
            .call(operation, payload)
            .await
            .map_err(|error| {
                let claims = entry.claims();
                match error {
                    RuntimeError::GuestError { message, .. } => HostError::ActorFailed {
                        actor: claims.public_key().to_string(),
                        name: claims.name().to_string(),
                        operation: operation.to_string(),
                        message,
                    },
                    error => HostError::Runtime {
                        actor: claims.public_key().to_string(),
                        name: claims.name().to_string(),
                        error: Box::new(error),
                    },
                }
            })
    }
}
