//! What every capability's conformance suite shares: the two bindings a
//! suite drives, the [`Subject`] it drives (any implementation that takes
//! encoded calls, a provider through [`ProviderSubject`]), and the
//! [`Report`] it returns. The suites themselves live in the contract crates
//! (`waxosuit-cap-keyvalue`, `-messaging`, `-blobstore`, `-eventstreams`),
//! next to the operations they check.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use crate::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};

/// The binding every check uses.
pub const BINDING: &str = "default";
/// A second binding of the same actor, which must not see what [`BINDING`] stores.
pub const OTHER_BINDING: &str = "other";

/// What the suite drives: one actor's two bindings ([`BINDING`] and
/// [`OTHER_BINDING`]), bound and empty.
pub trait Subject {
    /// Sends `operation` with `payload` on `binding`; an error is the text
    /// the actor would read.
    fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, String>>;
}

/// A [`CapabilityProvider`] as a subject: calls go to its
/// [`handle_call`](CapabilityProvider::handle_call) for one actor.
#[derive(Clone, Copy)]
pub struct ProviderSubject<'a> {
    provider: &'a dyn CapabilityProvider,
    actor: &'a str,
}

impl fmt::Debug for ProviderSubject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderSubject")
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl<'a> ProviderSubject<'a> {
    /// Binds `actor` to `provider` under [`BINDING`] and [`OTHER_BINDING`],
    /// each with `values` (a server's URL, say).
    ///
    /// # Errors
    ///
    /// What the provider's `bind_actor` returns.
    pub async fn bind(
        provider: &'a dyn CapabilityProvider,
        actor: &'a str,
        values: &[(&str, &str)],
    ) -> Result<ProviderSubject<'a>, ProviderError> {
        let values: HashMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for binding in [BINDING, OTHER_BINDING] {
            provider
                .bind_actor(BindRequest {
                    actor: actor.to_string(),
                    binding: binding.to_string(),
                    values: values.clone(),
                })
                .await?;
        }
        Ok(ProviderSubject { provider, actor })
    }
}

impl Subject for ProviderSubject<'_> {
    async fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.provider
            .handle_call(ProviderCall {
                actor: self.actor.to_string(),
                binding: binding.to_string(),
                operation: operation.to_string(),
                payload,
            })
            .await
            .map_err(|e| e.to_string())
    }
}

/// Typed calls over a [`Subject`]: each request encoded as an actor's SDK
/// encodes it, each reply decoded, and failures worded for a [`Report`].
/// A suite wraps it in its own client with the capability's operations.
pub struct Calls<'a, S>(pub &'a S);

impl<S> fmt::Debug for Calls<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

impl<S: Subject> Calls<'_, S> {
    /// `op` with `req` encoded, on `binding`; the reply as it came.
    pub async fn raw<Q: serde::Serialize>(
        &self,
        binding: &str,
        op: &str,
        req: &Q,
    ) -> Result<Vec<u8>, String> {
        let payload = waxosuit_codec::serialize(req).map_err(|e| format!("encoding {op}: {e}"))?;
        self.0.call(binding, op, payload).await
    }

    /// `op` on `binding`, which must succeed with a reply of type `R`.
    pub async fn ok_on<Q: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        binding: &str,
        op: &str,
        req: &Q,
    ) -> Result<R, String> {
        let reply = self
            .raw(binding, op, req)
            .await
            .map_err(|e| format!("`{op}` failed: {e}"))?;
        waxosuit_codec::deserialize(&reply).map_err(|e| format!("`{op}` replied undecodably: {e}"))
    }

    /// `op` on [`BINDING`], which must fail with a backend error of Redis
    /// class `class` ([`has_class`]).
    pub async fn refused<Q: serde::Serialize>(
        &self,
        op: &str,
        req: &Q,
        class: &str,
    ) -> Result<(), String> {
        match self.raw(BINDING, op, req).await {
            Ok(_) => Err(format!("`{op}` succeeded; expected a {class} refusal")),
            Err(text) if has_class(&text, class) => Ok(()),
            Err(text) => Err(format!(
                "`{op}` failed with {text:?}; expected a {class} refusal"
            )),
        }
    }
}

/// Whether an actor's error text is a backend error whose message starts
/// with the Redis error class `class` (`WRONGTYPE`, `ERR`).
pub fn has_class(text: &str, class: &str) -> bool {
    text.split_once("backend error: ")
        .is_some_and(|(_, message)| message.split_whitespace().next() == Some(class))
}

/// `Ok` if `got` is `want`, otherwise a failure naming `what` and both.
pub fn expect<T: PartialEq + fmt::Debug + ?Sized>(
    what: &str,
    got: &T,
    want: &T,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, expected {want:?}"))
    }
}

/// One check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check's name.
    pub check: &'static str,
    /// What was expected and what came.
    pub message: String,
}

/// What a conformance suite found, check by check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks that passed.
    pub passed: Vec<&'static str>,
    /// The checks that failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Adds one check's outcome: passed, or failed with its message.
    pub fn record(&mut self, check: &'static str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.passed.push(check),
            Err(message) => self.failures.push(Failure { check, message }),
        }
    }

    /// Whether every check passed.
    pub fn is_pass(&self) -> bool {
        self.failures.is_empty()
    }

    /// Whether the check named `check` failed.
    pub fn failed(&self, check: &str) -> bool {
        self.failures.iter().any(|f| f.check == check)
    }

    /// Panics, listing every failure, unless every check passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.is_pass(), "conformance failed:\n{self}");
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} checks passed, {} failed",
            self.passed.len(),
            self.failures.len()
        )?;
        for failure in &self.failures {
            writeln!(f, "  {}: {}", failure.check, failure.message)?;
        }
        Ok(())
    }
}
