//! What a backend implements: a keyspace per binding, and how to open one.

use std::sync::Arc;

use async_trait::async_trait;
use waxosuit_provider::{BindRequest, Health, ProviderError};

/// One binding's keys, as a backend stores them.
///
/// [`dispatch`](crate::dispatch) calls these after decoding and checking a
/// request, so a keyspace never sees what the contract forbids: `set`'s
/// `expires_s` is the number of seconds (`0` for none, never negative), and
/// `set_union` and `set_intersection` get at least one key. Results are
/// plain values; the operation table turns them into the contract's replies
/// (lengths clamped to `i32`, set members sorted).
///
/// Errors are [`ProviderError`]s: a refusal the actor caused (a wrong type,
/// a value that is not an integer, a quota) is
/// [`ProviderError::Backend`] whose message starts with Redis' error class
/// (`WRONGTYPE …`, `ERR …`), because actors written for the 2020 Redis
/// provider branch on it; a backend that cannot answer is
/// [`ProviderError::Unavailable`].
#[async_trait]
pub trait Keyspace: Send + Sync + 'static {
    /// `GET`: the string at `key`, `None` when missing; another type is a
    /// `WRONGTYPE` error.
    async fn get(&self, key: &str) -> Result<Option<String>, ProviderError>;

    /// `SET` (`SET … EX` when `expires_s > 0`): replaces whatever the key
    /// held, of any type, and its time to live.
    async fn set(&self, key: &str, value: String, expires_s: u32) -> Result<(), ProviderError>;

    /// `INCRBY`: a missing key counts as 0 and the time to live is kept. A
    /// value that is not a canonical decimal integer, or a result outside
    /// `i32`, is an `ERR` error and leaves the value as it was.
    async fn add(&self, key: &str, delta: i32) -> Result<i32, ProviderError>;

    /// `DEL`, of any type; a missing key is no error.
    async fn del(&self, key: &str) -> Result<(), ProviderError>;

    /// `DEL` of a list only: another type is a `WRONGTYPE` error and is
    /// kept, so a list helper pointed at the wrong key cannot wipe a counter.
    async fn clear_list(&self, key: &str) -> Result<(), ProviderError>;

    /// `LRANGE key start stop`: inclusive, negative indices from the end,
    /// out-of-range indices clamped; a missing key is an empty list.
    async fn range(&self, key: &str, start: i32, stop: i32) -> Result<Vec<String>, ProviderError>;

    /// `LPUSH`: prepends, returns the new length.
    async fn push(&self, key: &str, value: String) -> Result<u64, ProviderError>;

    /// `LREM key 0 value`: removes every occurrence, returns the length
    /// left; an emptied list disappears.
    async fn list_remove(&self, key: &str, value: &str) -> Result<u64, ProviderError>;

    /// `SADD`: whether the member was new.
    async fn set_add(&self, key: &str, member: String) -> Result<bool, ProviderError>;

    /// `SREM`: whether the member was there; an emptied set disappears.
    async fn set_remove(&self, key: &str, member: &str) -> Result<bool, ProviderError>;

    /// `SMEMBERS`, in any order; a missing key is an empty set.
    async fn set_members(&self, key: &str) -> Result<Vec<String>, ProviderError>;

    /// `SUNION` of at least one key, in any order.
    async fn set_union(&self, keys: &[String]) -> Result<Vec<String>, ProviderError>;

    /// `SINTER` of at least one key, in any order; a missing key empties
    /// the result, and every key is still type-checked.
    async fn set_intersection(&self, keys: &[String]) -> Result<Vec<String>, ProviderError>;

    /// `EXISTS`, of any type.
    async fn exists(&self, key: &str) -> Result<bool, ProviderError>;
}

/// What the provider's descriptor says about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Description {
    /// A short name (`"Waxosuit Redis key-value store"`).
    pub name: &'static str,
    /// A sentence or two on where the data lives and what it keeps apart.
    pub long_description: &'static str,
}

/// A key-value backend: opens a [`Keyspace`] per binding.
///
/// [`KeyValueProvider`](crate::KeyValueProvider) keeps the keyspaces, routes
/// calls and answers unknown pairs with [`ProviderError::NotBound`]; the
/// backend only says how a binding's values become a keyspace.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The keyspace of one binding.
    type Keyspace: Keyspace;

    /// For the provider's descriptor.
    fn description(&self) -> Description;

    /// Called once when the host registers the provider (background tasks
    /// start here, on the host's runtime).
    async fn start(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Opens the keyspace of `request`'s (actor, binding) pair from the
    /// binding's values. `current` is the pair's keyspace when it is bound
    /// already: a backend that keeps data in the keyspace itself applies
    /// the new values to it and returns it, so re-binding keeps the data.
    /// Runs under the provider's binding lock, so it must not block on I/O:
    /// a backend on a server connects on first use, not here.
    fn open(
        &self,
        request: &BindRequest,
        current: Option<&Arc<Self::Keyspace>>,
    ) -> Result<Arc<Self::Keyspace>, ProviderError>;

    /// The backend's health, over every keyspace open.
    async fn health(&self) -> Health {
        Health::healthy()
    }

    /// Stops background work and releases connections; called once, after
    /// the provider dropped every keyspace.
    async fn shutdown(&self) {}
}
