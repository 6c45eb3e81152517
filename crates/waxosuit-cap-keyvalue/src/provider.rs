//! The provider over any backend, and the operation table.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::keyvalue::{
    AddRequest, AddResponse, CAPABILITY_ID, DelRequest, DelResponse, GetRequest, GetResponse,
    KeyExistsQuery, ListClearRequest, ListDelItemRequest, ListPushRequest, ListRangeRequest,
    ListRangeResponse, ListResponse, OP_ADD, OP_CLEAR, OP_DEL, OP_GET, OP_KEY_EXISTS, OP_LIST_DEL,
    OP_PUSH, OP_RANGE, OP_SET, OP_SET_ADD, OP_SET_INTERSECT, OP_SET_QUERY, OP_SET_REMOVE,
    OP_SET_UNION, SetAddRequest, SetIntersectionRequest, SetOperationResponse, SetQueryRequest,
    SetQueryResponse, SetRemoveRequest, SetRequest, SetResponse, SetUnionRequest,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, Bindings, CapabilityProvider, Health, ProviderCall, ProviderError,
};

use crate::keyspace::{Backend, Keyspace};

/// The `wascc:keyvalue` provider over the backend `B`. See the [crate
/// docs](crate).
pub struct KeyValueProvider<B: Backend> {
    backend: B,
    keyspaces: Bindings<Arc<B::Keyspace>>,
}

impl<B: Backend + std::fmt::Debug> std::fmt::Debug for KeyValueProvider<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueProvider")
            .field("backend", &self.backend)
            .field("bindings", &self.keyspaces.read_all(|all| all.len()))
            .finish()
    }
}

impl<B: Backend + Default> Default for KeyValueProvider<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend + Default> KeyValueProvider<B> {
    /// A provider over the backend's defaults, with no bindings.
    pub fn new() -> Self {
        Self::with_backend(B::default())
    }
}

impl<B: Backend> KeyValueProvider<B> {
    /// A provider over `backend`, with no bindings.
    pub fn with_backend(backend: B) -> Self {
        KeyValueProvider {
            backend,
            keyspaces: Bindings::new(CAPABILITY_ID),
        }
    }

    /// The backend, for what only it can tell (data held, connections).
    pub fn backend(&self) -> &B {
        &self.backend
    }
}

#[async_trait]
impl<B: Backend> CapabilityProvider for KeyValueProvider<B> {
    fn descriptor(&self) -> CapabilityDescriptor {
        let description = self.backend.description();
        CapabilityDescriptor::builder()
            .id(CAPABILITY_ID)
            .name(description.name)
            .version(env!("CARGO_PKG_VERSION"))
            .revision(1)
            .long_description(description.long_description)
            .with_operations(
                OperationDirection::ToProvider,
                &waxosuit_codec::keyvalue::OPERATIONS,
            )
            .build()
    }

    async fn start(&self, _dispatcher: Arc<dyn ActorDispatcher>) -> Result<(), ProviderError> {
        // Key-value stores never call actors back.
        self.backend.start().await
    }

    /// Opens the pair's keyspace; binding a bound pair again hands the
    /// backend the current keyspace ([`Backend::open`]).
    async fn bind_actor(&self, request: BindRequest) -> Result<(), ProviderError> {
        self.keyspaces
            .bind_with(&request.actor, &request.binding, |current| {
                self.backend.open(&request, current)
            })
    }

    /// Drops the pair's keyspace; what happens to its data is the
    /// backend's to say (the memory store drops it, Redis keeps it).
    async fn remove_actor(&self, actor: &str, binding: &str) -> Result<(), ProviderError> {
        self.keyspaces.remove(actor, binding).map(drop)
    }

    async fn handle_call(&self, call: ProviderCall) -> Result<Vec<u8>, ProviderError> {
        let keyspace = self.keyspaces.get(&call.actor, &call.binding)?;
        dispatch(&*keyspace, &call.operation, &call.payload).await
    }

    async fn health(&self) -> Health {
        self.backend.health().await
    }

    /// Drops every keyspace, then stops the backend; later calls are
    /// [`ProviderError::NotBound`].
    async fn shutdown(&self) {
        drop(self.keyspaces.drain());
        self.backend.shutdown().await;
    }
}

/// The operation table of `wascc:keyvalue`: decodes `payload` as
/// `operation`'s request, refuses what the contract forbids, runs it on
/// `keyspace` and encodes the reply. Every backend answers through this, so
/// replies and contract errors are the same bytes and texts everywhere.
///
/// # Errors
///
/// [`ProviderError::UnknownOperation`] for an operation outside the
/// contract, [`ProviderError::BadPayload`] for a request that does not
/// decode, [`ProviderError::Backend`] for `Set` with a negative expiry and
/// for `SetUnion` or `SetIntersection` without keys, and whatever the
/// keyspace returns.
pub async fn dispatch<K: Keyspace + ?Sized>(
    keyspace: &K,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, ProviderError> {
    let req = Request { operation, payload };
    match operation {
        OP_GET => {
            let GetRequest { key } = req.decode()?;
            let value = keyspace.get(&key).await?;
            encode(&GetResponse {
                exists: value.is_some(),
                value: value.unwrap_or_default(),
            })
        }
        OP_SET => {
            let SetRequest {
                key,
                value,
                expires_s,
            } = req.decode()?;
            let Ok(expires_s) = u32::try_from(expires_s) else {
                return Err(ProviderError::backend(
                    CAPABILITY_ID,
                    format!(
                        "ERR invalid expire time {expires_s} for key `{key}`; use 0 for none or \
                         a positive number of seconds"
                    ),
                ));
            };
            keyspace.set(&key, value.clone(), expires_s).await?;
            encode(&SetResponse { value })
        }
        OP_ADD => {
            let AddRequest { key, value } = req.decode()?;
            let value = keyspace.add(&key, value).await?;
            encode(&AddResponse { value })
        }
        OP_DEL => {
            let DelRequest { key } = req.decode()?;
            keyspace.del(&key).await?;
            encode(&DelResponse { key })
        }
        OP_CLEAR => {
            let ListClearRequest { key } = req.decode()?;
            keyspace.clear_list(&key).await?;
            encode(&DelResponse { key })
        }
        OP_RANGE => {
            let ListRangeRequest { key, start, stop } = req.decode()?;
            let values = keyspace.range(&key, start, stop).await?;
            encode(&ListRangeResponse { values })
        }
        OP_PUSH => {
            let ListPushRequest { key, value } = req.decode()?;
            let len = keyspace.push(&key, value).await?;
            encode(&ListResponse {
                new_count: count(len),
            })
        }
        OP_LIST_DEL => {
            let ListDelItemRequest { key, value } = req.decode()?;
            let len = keyspace.list_remove(&key, &value).await?;
            encode(&ListResponse {
                new_count: count(len),
            })
        }
        OP_SET_ADD => {
            let SetAddRequest { key, value } = req.decode()?;
            let added = keyspace.set_add(&key, value).await?;
            encode(&SetOperationResponse {
                new_count: i32::from(added),
            })
        }
        OP_SET_REMOVE => {
            let SetRemoveRequest { key, value } = req.decode()?;
            let removed = keyspace.set_remove(&key, &value).await?;
            encode(&SetOperationResponse {
                new_count: i32::from(removed),
            })
        }
        OP_SET_UNION => {
            let SetUnionRequest { keys } = req.decode()?;
            let keys = set_keys(operation, keys)?;
            let values = keyspace.set_union(&keys).await?;
            encode(&SetQueryResponse {
                values: sorted(values),
            })
        }
        OP_SET_INTERSECT => {
            let SetIntersectionRequest { keys } = req.decode()?;
            let keys = set_keys(operation, keys)?;
            let values = keyspace.set_intersection(&keys).await?;
            encode(&SetQueryResponse {
                values: sorted(values),
            })
        }
        OP_SET_QUERY => {
            let SetQueryRequest { key } = req.decode()?;
            let values = keyspace.set_members(&key).await?;
            encode(&SetQueryResponse {
                values: sorted(values),
            })
        }
        OP_KEY_EXISTS => {
            let KeyExistsQuery { key } = req.decode()?;
            let exists = keyspace.exists(&key).await?;
            encode(&GetResponse {
                value: String::new(),
                exists,
            })
        }
        other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
    }
}

/// A request not yet decoded.
struct Request<'a> {
    operation: &'a str,
    payload: &'a [u8],
}

impl Request<'_> {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        waxosuit_codec::deserialize(self.payload).map_err(|e| ProviderError::BadPayload {
            capid: CAPABILITY_ID.to_string(),
            operation: self.operation.to_string(),
            reason: e.to_string(),
        })
    }
}

fn encode<T: Serialize>(reply: &T) -> Result<Vec<u8>, ProviderError> {
    waxosuit_provider::encode(CAPABILITY_ID, reply)
}

/// Most distinct keys one `SetUnion` or `SetIntersection` may name.
pub const MAX_SET_KEYS: usize = 64;

/// The keys of `SUNION` or `SINTER`, each once: naming a key again changes
/// neither result, and a request of a few megabytes could otherwise name
/// one key millions of times, each sent to the backend with the binding's
/// prefix and each walked by it. At least one (Redis would say "wrong
/// number of arguments"; this names the operation), at most
/// [`MAX_SET_KEYS`].
fn set_keys(operation: &str, keys: Vec<String>) -> Result<Vec<String>, ProviderError> {
    let mut seen = std::collections::HashSet::with_capacity(keys.len().min(MAX_SET_KEYS + 1));
    let mut distinct = Vec::new();
    for key in keys {
        if seen.contains(&key) {
            continue;
        }
        if distinct.len() == MAX_SET_KEYS {
            return Err(ProviderError::backend(
                CAPABILITY_ID,
                format!(
                    "ERR `{operation}` names more than {MAX_SET_KEYS} distinct keys; split it \
                     into calls of at most {MAX_SET_KEYS} and combine their results"
                ),
            ));
        }
        seen.insert(key.clone());
        distinct.push(key);
    }
    if distinct.is_empty() {
        return Err(ProviderError::backend(
            CAPABILITY_ID,
            format!("ERR `{operation}` needs at least one key"),
        ));
    }
    Ok(distinct)
}

/// Set members in a stable order, which Redis does not promise: an actor's
/// output does not change with the backend or with Redis' hash seed.
fn sorted(mut members: Vec<String>) -> Vec<String> {
    members.sort_unstable();
    members
}

/// Lengths travel as `i32`; a longer list is reported as `i32::MAX` rather
/// than wrapped to a negative length.
fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keys_are_distinct_and_bounded() {
        let keys = |n: usize| (0..n).map(|i| format!("k{i}")).collect::<Vec<_>>();
        assert_eq!(
            set_keys("SetUnion", vec!["a".into(), "b".into(), "a".into()]).unwrap(),
            ["a", "b"]
        );
        assert_eq!(set_keys("SetUnion", keys(MAX_SET_KEYS)).unwrap().len(), 64);
        let err = set_keys("SetIntersection", keys(MAX_SET_KEYS + 1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`SetIntersection` names more than 64 distinct keys; split it"),
            "{err}"
        );
        let err = set_keys("SetUnion", Vec::new()).unwrap_err().to_string();
        assert!(err.contains("needs at least one key"), "{err}");
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        assert_eq!(count(5), 5);
        assert_eq!(count(u64::from(i32::MAX.unsigned_abs()) + 1), i32::MAX);
    }
}
