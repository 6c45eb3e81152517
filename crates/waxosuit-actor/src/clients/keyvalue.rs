use waxosuit_codec::keyvalue::{
    self as kv, AddRequest, AddResponse, DelRequest, GetRequest, GetResponse, KeyExistsQuery,
    ListClearRequest, ListDelItemRequest, ListPushRequest, ListRangeRequest, ListRangeResponse,
    ListResponse, SetAddRequest, SetIntersectionRequest, SetOperationResponse, SetQueryRequest,
    SetQueryResponse, SetRemoveRequest, SetRequest, SetUnionRequest,
};

use super::bound_client;
use crate::context::{call_encoded, call_typed};
use crate::{HostCalls, Result};

/// Client for `wascc:keyvalue`: strings, atomic counters, lists and sets.
///
/// The semantics are those of the Redis-backed waSCC provider: lists grow at
/// the front ([`list_push`](Self::list_push) is `LPUSH`), ranges are
/// inclusive and accept negative indexes, and a key holds one kind of value
/// at a time.
pub struct KeyValue<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(KeyValue);

impl KeyValue<'_> {
    fn call<Req, Resp>(&self, operation: &str, request: &Req) -> Result<Resp>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        call_typed(
            self.host,
            &self.binding,
            kv::CAPABILITY_ID,
            operation,
            request,
        )
    }

    fn call_ignoring_reply<Req: serde::Serialize>(
        &self,
        operation: &str,
        request: &Req,
    ) -> Result<()> {
        call_encoded(
            self.host,
            &self.binding,
            kv::CAPABILITY_ID,
            operation,
            request,
        )
        .map(drop)
    }

    /// The string stored at `key`, or `None` if the key does not exist.
    ///
    /// # Errors
    ///
    /// The host call failed (e.g. `key` holds a list) or its reply did not
    /// decode.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let reply: GetResponse = self.call(
            kv::OP_GET,
            &GetRequest {
                key: key.to_string(),
            },
        )?;
        Ok(reply.exists.then_some(reply.value))
    }

    /// Stores `value` at `key`, replacing whatever was there.
    ///
    /// `expires` is a time to live in seconds; `None` keeps the value until
    /// it is deleted. Whether it is honoured is up to the provider (the
    /// original Redis provider ignored it).
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn set(&self, key: &str, value: &str, expires: Option<u32>) -> Result<()> {
        let request = SetRequest {
            key: key.to_string(),
            value: value.to_string(),
            // The wire field is an i32; a TTL beyond 68 years is "forever"
            // in practice, so saturating is kinder than failing.
            expires_s: expires.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
        };
        self.call_ignoring_reply(kv::OP_SET, &request)
    }

    /// Atomically adds `delta` (which may be negative) to the integer at
    /// `key`, a missing key counting as 0, and returns the new value.
    ///
    /// # Errors
    ///
    /// The host call failed, e.g. because `key` does not hold an integer.
    pub fn add(&self, key: &str, delta: i32) -> Result<i32> {
        let reply: AddResponse = self.call(
            kv::OP_ADD,
            &AddRequest {
                key: key.to_string(),
                value: delta,
            },
        )?;
        Ok(reply.value)
    }

    /// The original SDK's name for [`add`](Self::add).
    ///
    /// # Errors
    ///
    /// As for [`add`](Self::add).
    pub fn atomic_add(&self, key: &str, delta: i32) -> Result<i32> {
        self.add(key, delta)
    }

    /// Deletes `key`, whatever it holds; deleting a missing key succeeds.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn del(&self, key: &str) -> Result<()> {
        self.call_ignoring_reply(
            kv::OP_DEL,
            &DelRequest {
                key: key.to_string(),
            },
        )
    }

    /// Whether `key` exists, whatever it holds.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn exists(&self, key: &str) -> Result<bool> {
        let reply: GetResponse = self.call(
            kv::OP_KEY_EXISTS,
            &KeyExistsQuery {
                key: key.to_string(),
            },
        )?;
        Ok(reply.exists)
    }

    /// Pushes `value` onto the **front** of the list at `key` (creating it)
    /// and returns the list's new length.
    ///
    /// # Errors
    ///
    /// The host call failed, e.g. because `key` holds a string.
    pub fn list_push(&self, key: &str, value: &str) -> Result<i32> {
        let reply: ListResponse = self.call(
            kv::OP_PUSH,
            &ListPushRequest {
                key: key.to_string(),
                value: value.to_string(),
            },
        )?;
        Ok(reply.new_count)
    }

    /// The items of the list at `key` from index `start` to `stop`, both
    /// inclusive; negative indexes count from the end (`-1` is the last
    /// item), so `list_range(key, 0, -1)` is the whole list. A missing key is
    /// an empty list.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn list_range(&self, key: &str, start: i32, stop: i32) -> Result<Vec<String>> {
        let reply: ListRangeResponse = self.call(
            kv::OP_RANGE,
            &ListRangeRequest {
                key: key.to_string(),
                start,
                stop,
            },
        )?;
        Ok(reply.values)
    }

    /// Removes every occurrence of `value` from the list at `key` and
    /// returns the list's new length.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn list_del_item(&self, key: &str, value: &str) -> Result<i32> {
        let reply: ListResponse = self.call(
            kv::OP_LIST_DEL,
            &ListDelItemRequest {
                key: key.to_string(),
                value: value.to_string(),
            },
        )?;
        Ok(reply.new_count)
    }

    /// Deletes the list at `key`.
    ///
    /// # Errors
    ///
    /// The host call failed.
    pub fn list_clear(&self, key: &str) -> Result<()> {
        self.call_ignoring_reply(
            kv::OP_CLEAR,
            &ListClearRequest {
                key: key.to_string(),
            },
        )
    }

    /// Adds `value` to the set at `key`; returns how many members were added
    /// (1, or 0 if it was already there).
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn set_add(&self, key: &str, value: &str) -> Result<i32> {
        let reply: SetOperationResponse = self.call(
            kv::OP_SET_ADD,
            &SetAddRequest {
                key: key.to_string(),
                value: value.to_string(),
            },
        )?;
        Ok(reply.new_count)
    }

    /// Removes `value` from the set at `key`; returns how many members were
    /// removed (1, or 0 if it was absent).
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn set_remove(&self, key: &str, value: &str) -> Result<i32> {
        let reply: SetOperationResponse = self.call(
            kv::OP_SET_REMOVE,
            &SetRemoveRequest {
                key: key.to_string(),
                value: value.to_string(),
            },
        )?;
        Ok(reply.new_count)
    }

    /// The members of the set at `key` (empty if it does not exist), in the
    /// provider's order.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn set_members(&self, key: &str) -> Result<Vec<String>> {
        let reply: SetQueryResponse = self.call(
            kv::OP_SET_QUERY,
            &SetQueryRequest {
                key: key.to_string(),
            },
        )?;
        Ok(reply.values)
    }

    /// The members of the union of the sets at `keys`.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn set_union(&self, keys: &[&str]) -> Result<Vec<String>> {
        let reply: SetQueryResponse = self.call(
            kv::OP_SET_UNION,
            &SetUnionRequest {
                keys: keys.iter().map(|k| (*k).to_string()).collect(),
            },
        )?;
        Ok(reply.values)
    }

    /// The members of the intersection of the sets at `keys`.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn set_intersect(&self, keys: &[&str]) -> Result<Vec<String>> {
        let reply: SetQueryResponse = self.call(
            kv::OP_SET_INTERSECT,
            &SetIntersectionRequest {
                keys: keys.iter().map(|k| (*k).to_string()).collect(),
            },
        )?;
        Ok(reply.values)
    }
}
