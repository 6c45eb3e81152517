//! The `wascc:logging` provider of Waxosuit: actors' log lines as `tracing`
//! events.
//!
//! Actors cannot write to the host's output themselves; the waSCC SDKs
//! send each log record as a `WriteLog` call instead. This provider turns
//! each one into a [`tracing`] event, so actor output lands wherever the
//! host's subscriber sends everything else, filtered the same way.
//!
//! # A guided tour
//!
//! * [`LoggingProvider::new`] builds the provider; register it with the host
//!   like any [`CapabilityProvider`].
//! * [`bind_actor`](CapabilityProvider::bind_actor) remembers the actor's
//!   name from the `__wascc_name` value the host adds from its claims;
//!   calls from actors without a binding fail with
//!   [`ProviderError::NotBound`].
//! * `WriteLog` ([`waxosuit_codec::logging::OP_LOG`]) emits one event with
//!   target [`TARGET`] at the request's level (1 error, 2 warn, 3 info,
//!   4 debug, 5 trace) carrying the fields `actor` (the actor's public key),
//!   `actor_name` (empty when the claims carry none), `binding`, and the
//!   body as the event's message. Any other level is refused with
//!   [`ProviderError::BadPayload`] rather than silently dropped or
//!   promoted, so a broken SDK shows up at its caller. The reply is empty.
//!
//! * **Quotas** (binding values; the auto-bound `default` binding takes
//!   them from a manifest binding to `wascc:logging` like any other):
//!
//!   | Key | Default | Meaning |
//!   |---|---|---|
//!   | [`MAX_LINES_PER_SECOND`] | 100 | lines the binding may write per second, on average |
//!   | [`MAX_LINE_BYTES`] | 8192 | longest body kept; the rest is cut off |
//!
//!   The rate is a token bucket holding one second's worth of lines: a
//!   burst of up to `MAX_LINES_PER_SECOND` lines passes at once, then lines
//!   pass as fast as the bucket refills. A line over the rate is **dropped**
//!   and its `WriteLog` fails with a [`ProviderError::Backend`] naming the
//!   quota, the actor, the binding and the value to raise: the contract's
//!   reply is empty, so an error is the only signal an actor can see (the
//!   SDKs let a handler ignore it). Dropped lines are not lost silently to
//!   the operator either: at most one warning per second per binding, at
//!   target [`TARGET`], says how many were dropped (and one more when the
//!   binding is removed with drops not yet reported).
//!
//!   A body longer than `MAX_LINE_BYTES` is not refused: its first
//!   `MAX_LINE_BYTES` bytes (cut at a character boundary) are logged,
//!   followed by a marker saying how many bytes were cut and which value to
//!   raise, and the call succeeds. The line did reach the log, so failing
//!   the call would tell the actor something untrue.
//!
//! Select actor output with a filter on the target, e.g.
//! `RUST_LOG=waxosuit::actor=debug`.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_logging::LoggingProvider;
//! use waxosuit_codec::logging::{CAPABILITY_ID, LEVEL_INFO, OP_LOG, WriteLogRequest};
//! use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, encode};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let logging = LoggingProvider::new();
//! logging
//!     .bind_actor(BindRequest {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         values: HashMap::from([("__wascc_name".into(), "Greeter".into())]),
//!     })
//!     .await?;
//! let request = WriteLogRequest { level: LEVEL_INFO, body: "hello".into() };
//! let reply = logging
//!     .handle_call(ProviderCall {
//!         actor: "MACTOR".into(),
//!         binding: "default".into(),
//!         operation: OP_LOG.into(),
//!         payload: encode(CAPABILITY_ID, &request)?,
//!     })
//!     .await?;
//! assert!(reply.is_empty());
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use tokio::time::Instant;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::core::CONFIG_WASCC_CLAIMS_NAME;
use waxosuit_codec::logging::{
    CAPABILITY_ID, LEVEL_DEBUG, LEVEL_ERROR, LEVEL_INFO, LEVEL_TRACE, LEVEL_WARN, OP_LOG,
    WriteLogRequest,
};
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError, decode};

/// The `tracing` target of every actor log event.
pub const TARGET: &str = "waxosuit::actor";

/// Binding value: lines per second the binding may write, on average
/// (at least 1); default [`DEFAULT_MAX_LINES_PER_SECOND`].
pub const MAX_LINES_PER_SECOND: &str = "MAX_LINES_PER_SECOND";
/// Binding value: the longest body, in bytes, logged whole (at least 1);
/// default [`DEFAULT_MAX_LINE_BYTES`].
pub const MAX_LINE_BYTES: &str = "MAX_LINE_BYTES";
/// [`MAX_LINES_PER_SECOND`] when the binding does not set it.
pub const DEFAULT_MAX_LINES_PER_SECOND: u32 = 100;
/// [`MAX_LINE_BYTES`] when the binding does not set it (8 KiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 * 1024;
/// Dropped lines are reported at most once per this interval per binding.
pub const DROP_SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// Why a `WriteLog` was refused; phrased for the actor, which sees it as
/// its host error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// The binding wrote faster than its [`MAX_LINES_PER_SECOND`].
    #[error(
        "line dropped: actor {actor} (binding `{binding}`) writes more than {limit} lines per \
         second, its quota MAX_LINES_PER_SECOND; log less, or raise MAX_LINES_PER_SECOND in \
         this wascc:logging binding's values"
    )]
    RateLimited {
        /// The actor's key.
        actor: String,
        /// The binding name.
        binding: String,
        /// The binding's MAX_LINES_PER_SECOND.
        limit: u32,
    },
}

impl From<LoggingError> for ProviderError {
    fn from(error: LoggingError) -> ProviderError {
        ProviderError::backend(CAPABILITY_ID, error)
    }
}

/// A token bucket of lines plus the count of lines it refused that no
/// warning has reported yet. Time is passed in, so it is tested without
/// sleeping.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last summary.
    dropped: u64,
    /// When the last summary was written; `None` before the first.
    summarised: Option<Instant>,
}

/// What [`Bucket::admit`] decided about one line.
#[derive(Debug, PartialEq, Eq)]
struct Admission {
    allowed: bool,
    /// Lines dropped since the last summary, when a summary is due now.
    summary: Option<u64>,
}

impl Bucket {
    fn new(lines_per_second: u32, now: Instant) -> Bucket {
        let rate = f64::from(lines_per_second);
        Bucket {
            rate,
            // Full at the start: an actor's first burst is its business.
            tokens: rate,
            refilled: now,
            dropped: 0,
            summarised: None,
        }
    }

    fn admit(&mut self, now: Instant) -> Admission {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        // Capacity is one second's worth, so an idle actor cannot save up
        // an arbitrarily large burst.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        } else {
            self.dropped += 1;
        }
        let due = self
            .summarised
            .is_none_or(|at| now.saturating_duration_since(at) >= DROP_SUMMARY_INTERVAL);
        let summary = if self.dropped > 0 && due {
            self.summarised = Some(now);
            Some(std::mem::take(&mut self.dropped))
        } else {
            None
        };
        Admission { allowed, summary }
    }
}

/// One binding: the actor's name for its events, and its quotas.
#[derive(Debug)]
struct Bound {
    name: String,
    lines_per_second: u32,
    max_line_bytes: usize,
    bucket: Mutex<Bucket>,
}

/// Bindings by actor key, then by binding name.
type Bindings = HashMap<String, HashMap<String, Arc<Bound>>>;

/// The `wascc:logging` provider. See the [crate docs](crate).
#[derive(Debug, Default)]
pub struct LoggingProvider {
    bindings: RwLock<Bindings>,
}

impl LoggingProvider {
    /// A provider with no bindings.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Emits the event. `tracing` needs the level as a constant at each call
/// site, hence one macro call per level.
fn emit(level: u32, actor: &str, actor_name: &str, binding: &str, body: &str) -> bool {
    match level {
        LEVEL_ERROR => tracing::error!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_WARN => tracing::warn!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_INFO => tracing::info!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_DEBUG => tracing::debug!(target: TARGET, actor, actor_name, binding, "{body}"),
        LEVEL_TRACE => tracing::trace!(target: TARGET, actor, actor_name, binding, "{body}"),
        _ => return false,
    }
    true
}

/// The operator's side of dropped lines: one warning per interval.
fn summarise(actor: &str, binding: &Bound, binding_name: &str, dropped: u64) {
    tracing::warn!(
        target: TARGET,
        actor,
        actor_name = binding.name.as_str(),
        binding = binding_name,
        dropped,
        "{dropped} log line(s) dropped: the actor writes more than {} lines per second \
         (MAX_LINES_PER_SECOND); raise it in the wascc:logging binding's values to keep them",
        binding.lines_per_second
    );
}

/// `body` cut to at most `max` bytes at a character boundary, with a marker
/// saying what was cut; `body` itself when it fits.
fn cap_line(body: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if body.len() <= max {
        return body.into();
    }
    let end = body.floor_char_boundary(max);
    format!(
        "{}… [{} more bytes cut: the line is over MAX_LINE_BYTES ({max}); raise it in the \
         wascc:logging binding's values to keep them]",
        &body[..end],
        body.len() - end
    )
    .into()
}

/// A positive whole-number binding value, or `default` when unset.
fn positive<T: std::str::FromStr + PartialEq + From<u8>>(
    request: &BindRequest,
    key: &str,
    default: T,
) -> Result<T, ProviderError> {
    Ok(request.positive(CAPABILITY_ID, key)?.unwrap_or(default))
}

#[async_trait]
impl CapabilityProvider for LoggingProvider {
    fn descriptor(&self) -> CapabilityDescriptor {
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name("Waxosuit tracing logger")
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(
                "Writes actors' log records as `tracing` events with target `waxosuit::actor`, \
                 tagged with the actor's key and name, within per-binding rate and line-length \
                 quotas.",
            )
            .with_operation(
                OP_LOG,
                OperationDirection::ToProvider,
                "Writes a log record at level 1 (error) to 5 (trace)",
            )
            .build()
    }

    /// Binds with the name from the claims and the quotas from the values;
    /// binding again replaces both and starts a fresh rate budget.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        let lines_per_second =
            positive(&request, MAX_LINES_PER_SECOND, DEFAULT_MAX_LINES_PER_SECOND)?;
        let max_line_bytes = positive(&request, MAX_LINE_BYTES, DEFAULT_MAX_LINE_BYTES)?;
        let name = request
            .values
            .get(CONFIG_WASCC_CLAIMS_NAME)
            .cloned()
            .unwrap_or_default();
        let bound = Bound {
            name,
            lines_per_second,
            max_line_bytes,
            bucket: Mutex::new(Bucket::new(lines_per_second, Instant::now())),
        };
        self.bindings
            .write()
            .entry(request.actor)
            .or_default()
            .insert(request.binding, Arc::new(bound));
        Ok(())
    }

    /// Forgets the binding, reporting drops not yet reported; an unknown
    /// one is [`ProviderError::NotBound`].
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        let removed = {
            let mut bindings = self.bindings.write();
            let of_actor = bindings
                .get_mut(actor)
                .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
            let removed = of_actor
                .remove(binding)
                .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, actor, binding))?;
            if of_actor.is_empty() {
                bindings.remove(actor);
            }
            removed
        };
        let dropped = std::mem::take(&mut removed.bucket.lock().dropped);
        if dropped > 0 {
            summarise(actor, &removed, binding, dropped);
        }
        Ok(())
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let bound = self
            .bindings
            .read()
            .get(&call.actor)
            .and_then(|bindings| bindings.get(&call.binding))
            .cloned()
            .ok_or_else(|| ProviderError::not_bound(CAPABILITY_ID, &call.actor, &call.binding))?;
        if call.operation != OP_LOG {
            return Err(ProviderError::unknown_operation(
                CAPABILITY_ID,
                &call.operation,
            ));
        }
        // Before decoding: a flood of lines over the rate should cost as
        // little as possible.
        let admission = bound.bucket.lock().admit(Instant::now());
        if let Some(dropped) = admission.summary {
            summarise(&call.actor, &bound, &call.binding, dropped);
        }
        if !admission.allowed {
            return Err(LoggingError::RateLimited {
                actor: call.actor,
                binding: call.binding,
                limit: bound.lines_per_second,
            }
            .into());
        }
        let request: WriteLogRequest = decode(CAPABILITY_ID, &call)?;
        let body = cap_line(&request.body, bound.max_line_bytes);
        if emit(
            request.level,
            &call.actor,
            &bound.name,
            &call.binding,
            &body,
        ) {
            Ok(Vec::new())
        } else {
            Err(ProviderError::BadPayload {
                capid: CAPABILITY_ID.to_string(),
                operation: call.operation,
                reason: format!(
                    "log level {} is not one of 1 (error), 2 (warn), 3 (info), 4 (debug), \
                     5 (trace)",
                    request.level
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_passes_a_burst_then_the_rate_and_summarises_once_per_interval() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(10, t0);
        for _ in 0..10 {
            assert_eq!(
                bucket.admit(t0),
                Admission {
                    allowed: true,
                    summary: None
                }
            );
        }
        // The first drop is reported at once, later ones within the
        // interval wait for the next summary.
        assert_eq!(
            bucket.admit(t0),
            Admission {
                allowed: false,
                summary: Some(1)
            }
        );
        for _ in 0..99 {
            assert!(bucket.admit(t0).summary.is_none());
        }
        // 100 ms refills one line; the summary is not due yet.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            bucket.admit(t1),
            Admission {
                allowed: true,
                summary: None
            }
        );
        // A second after the last summary, the next call reports the 99.
        let t2 = t0 + DROP_SUMMARY_INTERVAL;
        let admission = bucket.admit(t2);
        assert!(admission.allowed, "refilled by then");
        assert_eq!(admission.summary, Some(99));
        // A long pause refills no more than one second's worth.
        let t3 = t2 + Duration::from_secs(3600);
        let passed = (0..100).filter(|_| bucket.admit(t3).allowed).count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary_with_a_marker() {
        assert_eq!(cap_line("short", 5), "short");
        let cut = cap_line("abcdef", 4);
        assert!(cut.starts_with("abcd… [2 more bytes cut"), "{cut}");
        assert!(cut.contains("MAX_LINE_BYTES (4)"), "{cut}");
        // `é` is two bytes; cutting inside it would not be a `str`.
        let cut = cap_line("aéb", 2);
        assert!(cut.starts_with("a… [3 more bytes cut"), "{cut}");
    }
}
