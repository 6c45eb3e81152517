//! The capability provider API of Waxosuit.
//!
//! A *capability provider* gives actors a piece of the outside world: an HTTP
//! server, a key-value store, a message broker. Actors never link against
//! it; they make waPC host calls naming a capability id (`wascc:keyvalue`)
//! and a binding name (`default`), and the host routes each call to the
//! provider registered under that pair, after checking the actor's signed
//! claims grant the capability.
//!
//! # A guided tour
//!
//! * [`CapabilityProvider`]: the trait. Its phases, in order:
//!   [`start`](CapabilityProvider::start) once when the host registers the
//!   provider (it receives an [`ActorDispatcher`] to call actors back),
//!   [`bind_actor`](CapabilityProvider::bind_actor) per binding with the
//!   binding's configuration, [`handle_call`](CapabilityProvider::handle_call)
//!   for each actor call, [`remove_actor`](CapabilityProvider::remove_actor),
//!   [`health`](CapabilityProvider::health) periodically, and
//!   [`shutdown`](CapabilityProvider::shutdown) once.
//! * [`BindRequest`] and [`ProviderCall`]: what a binding and a call carry.
//! * [`ProviderError`]: typed failures that reach the actor as host errors;
//!   [`decode`] and [`encode`] wrap the waSCC codec with errors naming the
//!   capability and the operation.
//!
//! Built-in providers, backends on real servers and dynamically loaded
//! plugins all implement this one trait, so they share code and behaviour.
//!
//! ```
//! use std::sync::Arc;
//! use async_trait::async_trait;
//! use waxosuit_codec::capabilities::CapabilityDescriptor;
//! use waxosuit_provider::*;
//!
//! /// Answers `Ping` with `Pong`.
//! struct Pinger;
//!
//! #[async_trait]
//! impl CapabilityProvider for Pinger {
//!     fn descriptor(&self) -> CapabilityDescriptor {
//!         CapabilityDescriptor::builder()
//!             .id("acme:ping")
//!             .name("Pinger")
//!             .version("1.0.0")
//!             .build()
//!     }
//!     async fn bind_actor(&self, _req: BindRequest) -> Result<(), ProviderError> {
//!         Ok(())
//!     }
//!     async fn remove_actor(&self, _actor: &str, _binding: &str) -> Result<(), ProviderError> {
//!         Ok(())
//!     }
//!     async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
//!         match call.operation.as_str() {
//!             "Ping" => Ok(b"Pong".to_vec()),
//!             _ => Err(ProviderError::unknown_operation("acme:ping", &call.operation)),
//!         }
//!     }
//! }
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::capabilities::CapabilityDescriptor;

pub use waxosuit_codec::core::CapabilityConfiguration;

mod throttle;
pub use throttle::{Throttle, WARN_EVERY};

/// A binding of an actor to a provider, with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRequest {
    /// The actor's `M…` public key.
    pub actor: String,
    /// The binding name (`default` unless named).
    pub binding: String,
    /// Configuration values from the manifest, plus the `__wascc_issuer`,
    /// `__wascc_capabilities`, `__wascc_name`, `__wascc_expires` and
    /// `__wascc_tags` keys the host adds from the actor's claims.
    pub values: HashMap<String, String>,
}

impl BindRequest {
    /// The largest payload the actor accepts, as the host passes it
    /// (`__waxosuit_max_payload`); `None` when absent or unreadable (an
    /// embedder's own bindings). A backend sizes what it reads for the
    /// actor by it, so a reply is refused before it is gathered, not after.
    pub fn actor_max_payload(&self) -> Option<usize> {
        self.values
            .get(waxosuit_codec::core::CONFIG_WAXOSUIT_MAX_PAYLOAD)
            .and_then(|v| v.trim().parse().ok())
    }

    /// A configuration value, or an error naming the missing key.
    pub fn require(&self, capid: &str, key: &str) -> Result<&str, ProviderError> {
        self.values
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| ProviderError::Config {
                capid: capid.to_string(),
                actor: self.actor.clone(),
                key: key.to_string(),
                reason: format!("missing; add `{key}: …` to this binding's values"),
            })
    }

    /// A whole-number value of at least 1 (a quota or a rate), or `None`
    /// when the key is unset; anything else is an error naming the key.
    pub fn positive<T: std::str::FromStr + PartialEq + From<u8>>(
        &self,
        capid: &str,
        key: &str,
    ) -> Result<Option<T>, ProviderError> {
        let Some(raw) = self.values.get(key).map(|v| v.trim()) else {
            return Ok(None);
        };
        match raw.parse::<T>() {
            Ok(value) if value != T::from(0) => Ok(Some(value)),
            _ => Err(ProviderError::Config {
                capid: capid.to_string(),
                actor: self.actor.clone(),
                key: key.to_string(),
                reason: format!("is `{raw}`; give a whole number of at least 1"),
            }),
        }
    }
}

/// One call from an actor to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCall {
    /// The calling actor's `M…` public key.
    pub actor: String,
    /// The binding the call came through.
    pub binding: String,
    /// The operation name (`Get`, `Publish`, …).
    pub operation: String,
    /// The MessagePack payload.
    pub payload: Vec<u8>,
}

/// A provider's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Whether the provider can serve.
    pub healthy: bool,
    /// Why not, or any note.
    pub message: String,
}

impl Health {
    /// Healthy, no message.
    pub fn healthy() -> Health {
        Health {
            healthy: true,
            message: String::new(),
        }
    }

    /// Unhealthy, with a reason.
    pub fn unhealthy(message: impl Into<String>) -> Health {
        Health {
            healthy: false,
            message: message.into(),
        }
    }
}

/// Why a provider refused or failed a request. The text reaches the actor
/// as its host error and the operator in logs, so it names the capability
/// and says what to do.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProviderError {
    /// The actor has no binding with this provider.
    #[error(
        "actor {actor} is not bound to {capid} (binding `{binding}`); add a binding for it to \
         the manifest"
    )]
    NotBound {
        /// Capability id.
        capid: String,
        /// Actor key.
        actor: String,
        /// Binding name.
        binding: String,
    },
    /// The provider does not implement this operation.
    #[error("{capid} does not support the operation `{operation}`")]
    UnknownOperation {
        /// Capability id.
        capid: String,
        /// The operation asked for.
        operation: String,
    },
    /// The payload could not be decoded as the operation's request type.
    #[error("bad payload for {capid} `{operation}`: {reason}")]
    BadPayload {
        /// Capability id.
        capid: String,
        /// The operation.
        operation: String,
        /// What the decoder said.
        reason: String,
    },
    /// A binding's configuration is missing or invalid.
    #[error("invalid configuration for {capid} binding of actor {actor}: `{key}` {reason}")]
    Config {
        /// Capability id.
        capid: String,
        /// Actor key.
        actor: String,
        /// The configuration key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The backend (server, file system, …) cannot be reached right now.
    #[error("{capid} backend unavailable: {reason}")]
    Unavailable {
        /// Capability id.
        capid: String,
        /// Why.
        reason: String,
    },
    /// The backend refused or failed the request.
    #[error("{capid} backend error: {message}")]
    Backend {
        /// Capability id.
        capid: String,
        /// What the backend said.
        message: String,
    },
    /// The provider panicked or failed internally; the host caught it.
    #[error("{capid} provider failed internally: {message}")]
    Internal {
        /// Capability id.
        capid: String,
        /// What happened.
        message: String,
    },
}

impl ProviderError {
    /// Shorthand for [`ProviderError::UnknownOperation`].
    pub fn unknown_operation(capid: &str, operation: &str) -> ProviderError {
        ProviderError::UnknownOperation {
            capid: capid.to_string(),
            operation: operation.to_string(),
        }
    }

    /// Shorthand for [`ProviderError::Backend`].
    pub fn backend(capid: &str, message: impl std::fmt::Display) -> ProviderError {
        ProviderError::Backend {
            capid: capid.to_string(),
            message: message.to_string(),
        }
    }

    /// Shorthand for [`ProviderError::NotBound`].
    pub fn not_bound(capid: &str, actor: &str, binding: &str) -> ProviderError {
        ProviderError::NotBound {
            capid: capid.to_string(),
            actor: actor.to_string(),
            binding: binding.to_string(),
        }
    }
}

/// A backend URL fit for messages and logs: user name, password and query
/// (which may carry a password, e.g. `?pass=`) removed. Errors that reach
/// actors and logs must never echo credentials from a binding's `URL`.
///
/// A URL that fails to parse is the one most likely shown, and its password
/// is often why: raw base64 or a generated secret holding `/`, `?`, `#` or
/// `@`, none of which ends the user information then. So everything up to
/// the *last* `@` is hidden (hiding a host that only looked like user
/// information is the safe mistake), and only then is the query cut.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // No scheme: not a URL any backend takes, and perhaps a bare
        // `user:password@host`.
        return "<unparsable URL>".to_string();
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !is_scheme {
        // `user:pa://ss@db`: what looks like a scheme holds a secret.
        return "<unparsable URL>".to_string();
    }
    let query = rest.find(['?', '#']);
    let (hidden, rest) = match rest.rfind('@') {
        // An `@` past a `?` or `#` may be the password's or the query's:
        // nothing after the scheme can be shown safely.
        Some(at) if query.is_some_and(|q| q < at) => return format!("{scheme}://***"),
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    if hidden {
        format!("{scheme}://***@{rest}")
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Decodes `call`'s payload as `T`, with an error naming capability and operation.
pub fn decode<T: DeserializeOwned>(capid: &str, call: &ProviderCall) -> Result<T, ProviderError> {
    waxosuit_codec::deserialize(&call.payload).map_err(|e| ProviderError::BadPayload {
        capid: capid.to_string(),
        operation: call.operation.clone(),
        reason: e.to_string(),
    })
}

/// Encodes a reply.
pub fn encode<T: Serialize>(capid: &str, value: &T) -> Result<Vec<u8>, ProviderError> {
    waxosuit_codec::serialize(value).map_err(|e| ProviderError::Internal {
        capid: capid.to_string(),
        message: format!("cannot encode the reply: {e}"),
    })
}

/// A provider's per-binding state, keyed by (actor key, binding name).
///
/// Every provider keeps one entry per binding and must answer calls from an
/// unknown pair with [`ProviderError::NotBound`]; this table does both, so
/// providers differ only in what they keep per binding. Entries are kept by
/// actor, then by binding name, so a call is routed from the borrowed
/// strings it carries without allocating.
#[derive(Debug)]
pub struct Bindings<T> {
    capid: &'static str,
    map: RwLock<HashMap<String, HashMap<String, T>>>,
}

/// Every binding of a [`Bindings`] table, seen under its read lock
/// ([`Bindings::read_all`]).
#[derive(Debug)]
pub struct BindingsView<'a, T> {
    map: &'a HashMap<String, HashMap<String, T>>,
}

impl<'a, T> BindingsView<'a, T> {
    /// The pair's state, if bound.
    pub fn get(&self, actor: &str, binding: &str) -> Option<&'a T> {
        self.map.get(actor)?.get(binding)
    }

    /// Each binding's state, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &'a T> + use<'a, T> {
        self.map.values().flat_map(HashMap::values)
    }

    /// `(actor, binding, state)` of each binding, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str, &'a T)> + use<'a, T> {
        self.map.iter().flat_map(|(actor, bindings)| {
            bindings
                .iter()
                .map(move |(binding, value)| (actor.as_str(), binding.as_str(), value))
        })
    }

    /// How many bindings there are.
    pub fn len(&self) -> usize {
        self.map.values().map(HashMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.values().all(HashMap::is_empty)
    }
}

impl<T> Bindings<T> {
    /// An empty table for the capability `capid` (named in its errors).
    pub fn new(capid: &'static str) -> Bindings<T> {
        Bindings {
            capid,
            map: RwLock::new(HashMap::new()),
        }
    }

    /// Stores `value` for the pair, returning what it replaces.
    pub fn insert(&self, actor: String, binding: String, value: T) -> Option<T> {
        self.map
            .write()
            .entry(actor)
            .or_default()
            .insert(binding, value)
    }

    /// Binds the pair to what `make` builds from the pair's current state
    /// (`None` when unbound), under the table's write lock so that two binds
    /// of one pair cannot interleave; an error from `make` leaves the table
    /// as it was.
    pub fn bind_with<E>(
        &self,
        actor: &str,
        binding: &str,
        make: impl FnOnce(Option<&T>) -> Result<T, E>,
    ) -> Result<(), E> {
        let mut map = self.map.write();
        let current = map.get(actor).and_then(|bindings| bindings.get(binding));
        let value = make(current)?;
        map.entry(actor.to_string())
            .or_default()
            .insert(binding.to_string(), value);
        Ok(())
    }

    /// Removes the pair's state; an unknown pair is [`ProviderError::NotBound`].
    pub fn remove(&self, actor: &str, binding: &str) -> Result<T, ProviderError> {
        let mut map = self.map.write();
        let bindings = map
            .get_mut(actor)
            .ok_or_else(|| ProviderError::not_bound(self.capid, actor, binding))?;
        let value = bindings
            .remove(binding)
            .ok_or_else(|| ProviderError::not_bound(self.capid, actor, binding))?;
        if bindings.is_empty() {
            map.remove(actor);
        }
        Ok(value)
    }

    /// The pair's state; an unknown pair is [`ProviderError::NotBound`].
    pub fn get(&self, actor: &str, binding: &str) -> Result<T, ProviderError>
    where
        T: Clone,
    {
        self.map
            .read()
            .get(actor)
            .and_then(|bindings| bindings.get(binding))
            .cloned()
            .ok_or_else(|| ProviderError::not_bound(self.capid, actor, binding))
    }

    /// Whether the pair is bound.
    pub fn contains(&self, actor: &str, binding: &str) -> bool {
        self.map
            .read()
            .get(actor)
            .is_some_and(|bindings| bindings.contains_key(binding))
    }

    /// Runs `f` over every binding under the read lock (routing, health).
    pub fn read_all<R>(&self, f: impl FnOnce(BindingsView<'_, T>) -> R) -> R {
        f(BindingsView {
            map: &self.map.read(),
        })
    }

    /// Removes and returns every binding (shutdown).
    pub fn drain(&self) -> Vec<T> {
        self.map
            .write()
            .drain()
            .flat_map(|(_, bindings)| bindings.into_values())
            .collect()
    }
}

/// Why the host could not deliver a provider's call to an actor.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DispatchError {
    /// No actor with this key runs in the host.
    #[error("no actor {actor} is running in this host")]
    ActorNotFound {
        /// The actor key.
        actor: String,
    },
    /// The actor is not bound to the dispatching provider.
    #[error("actor {actor} is not bound to {capid} (binding `{binding}`)")]
    NotBound {
        /// The actor key.
        actor: String,
        /// Capability id of the dispatching provider.
        capid: String,
        /// Binding name.
        binding: String,
    },
    /// The actor returned an error or trapped.
    #[error("actor {actor} failed to handle `{operation}`: {message}")]
    Actor {
        /// The actor key.
        actor: String,
        /// The operation.
        operation: String,
        /// The error.
        message: String,
    },
    /// The host is stopping and takes no new calls.
    #[error("the host is shutting down")]
    ShuttingDown,
}

/// The host's side of provider → actor calls (`HandleRequest`,
/// `DeliverMessage`, `ReceiveChunk`, …). The host gives each registered
/// provider its own dispatcher, which knows the provider's capability id and
/// binding and only reaches actors bound to it.
#[async_trait]
pub trait ActorDispatcher: Send + Sync + 'static {
    /// Calls `operation` on `actor` with a MessagePack payload.
    async fn dispatch(
        &self,
        actor: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError>;
}

/// A capability provider. See the [crate docs](crate) for the lifecycle.
///
/// Every method must be cancel-safe enough that the host can drop a call
/// that exceeded its deadline; errors are values, and a panic in a method is
/// caught by the host and reported as [`ProviderError::Internal`].
#[async_trait]
pub trait CapabilityProvider: Send + Sync + 'static {
    /// What the provider is and which operations it supports.
    fn descriptor(&self) -> CapabilityDescriptor;

    /// Called once when the host registers the provider.
    async fn start(&self, dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        let _ = dispatcher;
        Ok(())
    }

    /// Binds an actor with its configuration.
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError>;

    /// Removes an actor's binding and releases what it held.
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError>;

    /// Handles one call from a bound actor.
    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError>;

    /// Reports health; called periodically.
    async fn health(&self) -> Health {
        Health::healthy()
    }

    /// Stops serving; called once. In-flight work should be drained.
    async fn shutdown(&self) {}
}

pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_removes_credentials_and_queries() {
        assert_eq!(
            redact_url("redis://user:s3cret@db.example:6380/2"),
            "redis://***@db.example:6380/2"
        );
        assert_eq!(redact_url("redis://:p@ss@host/"), "redis://***@host/");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?pass=s3cret"),
            "redis+unix:///run/redis.sock"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("nonsense"), "<unparsable URL>");
    }

    #[test]
    fn passwords_holding_url_delimiters_are_hidden_too() {
        for (url, shown) in [
            // Raw base64 with `/` and `=`: the URL does not parse, and the
            // error that says so must not quote it.
            ("redis://:abc/def==@db:6379", "redis://***@db:6379"),
            ("redis://:ab#cd@db", "redis://***"),
            ("redis://:ab?cd@db/0", "redis://***"),
            ("nats://u:p/w@h:4222", "nats://***@h:4222"),
            ("rediss://user:a@b@c@db.example", "rediss://***@db.example"),
            // An `@` in the query: whose it is cannot be told.
            ("redis://db/0?user=a@b", "redis://***"),
            (
                "redis+unix:///run/redis.sock?pass=p@ssw0rd",
                "redis+unix://***",
            ),
            ("user:s3cret@db:6379", "<unparsable URL>"),
            ("user:pa://ss@db", "<unparsable URL>"),
        ] {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            for secret in [
                "abc", "def", "ab", "cd", "p/w", "s3cret", "a@b@c", "ssw0rd", "pa",
            ] {
                if url.contains(secret) && !shown.contains(secret) {
                    assert!(!redacted.contains(secret), "{url} → {redacted}");
                }
            }
        }
    }

    #[test]
    fn bindings_answer_not_bound_for_unknown_pairs() {
        let table = Bindings::new("acme:thing");
        assert!(table.insert("MA".into(), "default".into(), 1).is_none());
        assert_eq!(table.insert("MA".into(), "default".into(), 2), Some(1));
        assert_eq!(table.get("MA", "default"), Ok(2));
        assert!(table.contains("MA", "default"));
        let err = table.get("MA", "cache").unwrap_err();
        assert_eq!(err, ProviderError::not_bound("acme:thing", "MA", "cache"));
        assert_eq!(table.remove("MA", "default"), Ok(2));
        assert!(table.remove("MA", "default").is_err());
        table.insert("MB".into(), "default".into(), 3);
        assert_eq!(table.read_all(|m| m.len()), 1);
        assert_eq!(
            table.read_all(|m| m
                .iter()
                .map(|(a, b, v)| (a.to_string(), b.to_string(), *v))
                .collect::<Vec<_>>()),
            vec![("MB".to_string(), "default".to_string(), 3)]
        );
        let refused: Result<(), &str> = table.bind_with("MB", "default", |_| Err("no"));
        assert_eq!(refused, Err("no"));
        assert_eq!(table.get("MB", "default"), Ok(3));
        table
            .bind_with("MB", "default", |old| {
                Ok::<_, ()>(old.copied().unwrap_or(0) + 1)
            })
            .unwrap();
        assert_eq!(table.get("MB", "default"), Ok(4));
        assert_eq!(table.drain(), vec![4]);
        assert!(!table.contains("MB", "default"));
    }

    #[test]
    fn require_names_the_missing_key() {
        let req = BindRequest {
            actor: "MX".into(),
            binding: "default".into(),
            values: HashMap::new(),
        };
        let err = req.require("wascc:keyvalue", "URL").unwrap_err();
        assert!(err.to_string().contains("`URL`"), "{err}");
        assert!(err.to_string().contains("wascc:keyvalue"), "{err}");
    }

    #[test]
    fn decode_errors_name_capability_and_operation() {
        let call = ProviderCall {
            actor: "MX".into(),
            binding: "default".into(),
            operation: "Get".into(),
            payload: vec![0xc1],
        };
        let err =
            decode::<waxosuit_codec::keyvalue::GetRequest>("wascc:keyvalue", &call).unwrap_err();
        assert!(
            matches!(&err, ProviderError::BadPayload { operation, .. } if operation == "Get"),
            "{err}"
        );
    }
}
