//! `wascc:keyvalue`: a key-value store with atomic counters, lists and sets.
//!
//! Every operation is actor → provider. The request and response type for
//! each operation:
//!
//! | Operation | Request | Response |
//! |---|---|---|
//! | [`OP_GET`] | [`GetRequest`] | [`GetResponse`] |
//! | [`OP_SET`] | [`SetRequest`] | [`SetResponse`] |
//! | [`OP_ADD`] | [`AddRequest`] | [`AddResponse`] |
//! | [`OP_DEL`] | [`DelRequest`] | [`DelResponse`] |
//! | [`OP_CLEAR`] | [`ListClearRequest`] | [`DelResponse`] |
//! | [`OP_RANGE`] | [`ListRangeRequest`] | [`ListRangeResponse`] |
//! | [`OP_PUSH`] | [`ListPushRequest`] | [`ListResponse`] |
//! | [`OP_LIST_DEL`] | [`ListDelItemRequest`] | [`ListResponse`] |
//! | [`OP_SET_ADD`] | [`SetAddRequest`] | [`SetOperationResponse`] |
//! | [`OP_SET_REMOVE`] | [`SetRemoveRequest`] | [`SetOperationResponse`] |
//! | [`OP_SET_UNION`] | [`SetUnionRequest`] | [`SetQueryResponse`] |
//! | [`OP_SET_INTERSECT`] | [`SetIntersectionRequest`] | [`SetQueryResponse`] |
//! | [`OP_SET_QUERY`] | [`SetQueryRequest`] | [`SetQueryResponse`] |
//! | [`OP_KEY_EXISTS`] | [`KeyExistsQuery`] | [`GetResponse`] (`value` empty) |

use serde::{Deserialize, Serialize};

/// Capability id of key-value providers.
pub const CAPABILITY_ID: &str = "wascc:keyvalue";

/// Atomically add to an integer value.
pub const OP_ADD: &str = "Add";
/// Read a value.
pub const OP_GET: &str = "Get";
/// Write a value.
pub const OP_SET: &str = "Set";
/// Delete a key.
pub const OP_DEL: &str = "Del";
/// Delete a list.
pub const OP_CLEAR: &str = "Clear";
/// Read a range of a list.
pub const OP_RANGE: &str = "Range";
/// Push onto a list.
pub const OP_PUSH: &str = "Push";
/// Delete every occurrence of an item from a list.
pub const OP_LIST_DEL: &str = "ListItemDelete";
/// Add a member to a set.
pub const OP_SET_ADD: &str = "SetAdd";
/// Remove a member from a set.
pub const OP_SET_REMOVE: &str = "SetRemove";
/// Union of several sets.
pub const OP_SET_UNION: &str = "SetUnion";
/// Intersection of several sets.
pub const OP_SET_INTERSECT: &str = "SetIntersection";
/// Members of a set.
pub const OP_SET_QUERY: &str = "SetQuery";
/// Whether a key exists.
pub const OP_KEY_EXISTS: &str = "KeyExists";

/// Every operation of the contract with a one-line description, in the
/// order providers list them in their descriptors.
pub const OPERATIONS: [(&str, &str); 14] = [
    (OP_GET, "Reads a string value"),
    (
        OP_SET,
        "Writes a string value, with an optional expiry in seconds",
    ),
    (OP_ADD, "Atomically adds to an integer value"),
    (OP_DEL, "Deletes a key of any type"),
    (OP_CLEAR, "Deletes a list"),
    (OP_RANGE, "Reads a range of a list, stop inclusive"),
    (OP_PUSH, "Pushes an item onto the head of a list"),
    (
        OP_LIST_DEL,
        "Deletes every occurrence of an item from a list",
    ),
    (OP_SET_ADD, "Adds a member to a set"),
    (OP_SET_REMOVE, "Removes a member from a set"),
    (OP_SET_UNION, "Unites sets"),
    (OP_SET_INTERSECT, "Intersects sets"),
    (OP_SET_QUERY, "Lists the members of a set"),
    (OP_KEY_EXISTS, "Tells whether a key exists"),
];

/// Request for [`OP_GET`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRequest {
    /// The key to read.
    pub key: String,
}

/// Response to [`OP_GET`] and [`OP_KEY_EXISTS`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetResponse {
    /// The stored value; empty when the key does not exist.
    pub value: String,
    /// Whether the key exists, which an empty `value` cannot tell.
    pub exists: bool,
}

/// Request for [`OP_SET`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRequest {
    /// The key to write.
    pub key: String,
    /// The value to store.
    pub value: String,
    /// Time to live in seconds, `0` for none. Sent as `expires`: the Rust
    /// name carries the unit, the wire name is the original's.
    #[serde(rename = "expires")]
    pub expires_s: i32,
}

/// Response to [`OP_SET`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetResponse {
    /// The value that was stored.
    pub value: String,
}

/// Request for [`OP_DEL`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelRequest {
    /// The key to delete.
    pub key: String,
}

/// Response to [`OP_DEL`] and [`OP_CLEAR`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DelResponse {
    /// The key that was deleted.
    pub key: String,
}

/// Request for [`OP_ADD`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddRequest {
    /// The counter's key.
    pub key: String,
    /// The amount to add (may be negative).
    pub value: i32,
}

/// Response to [`OP_ADD`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResponse {
    /// The counter's value after the addition.
    pub value: i32,
}

/// Request for [`OP_PUSH`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPushRequest {
    /// The list's key.
    pub key: String,
    /// The item to push.
    pub value: String,
}

/// Request for [`OP_LIST_DEL`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListDelItemRequest {
    /// The list's key.
    pub key: String,
    /// The item whose occurrences are removed.
    pub value: String,
}

/// Request for [`OP_CLEAR`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClearRequest {
    /// The list's key.
    pub key: String,
}

/// Request for [`OP_RANGE`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRangeRequest {
    /// The list's key.
    pub key: String,
    /// Index of the first item.
    pub start: i32,
    /// Index of the last item, inclusive (negative counts from the end).
    pub stop: i32,
}

/// Response to [`OP_RANGE`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRangeResponse {
    /// The items in the range.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Response to [`OP_PUSH`] and [`OP_LIST_DEL`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    /// The list's length after the operation.
    pub new_count: i32,
}

/// Request for [`OP_SET_ADD`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetAddRequest {
    /// The set's key.
    pub key: String,
    /// The member to add.
    pub value: String,
}

/// Request for [`OP_SET_REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetRemoveRequest {
    /// The set's key.
    pub key: String,
    /// The member to remove.
    pub value: String,
}

/// Request for [`OP_SET_QUERY`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetQueryRequest {
    /// The set's key.
    pub key: String,
}

/// Response to [`OP_SET_QUERY`], [`OP_SET_UNION`] and [`OP_SET_INTERSECT`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetQueryResponse {
    /// The members.
    #[serde(default)]
    pub values: Vec<String>,
}

/// Request for [`OP_SET_INTERSECT`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetIntersectionRequest {
    /// The keys of the sets to intersect.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Request for [`OP_SET_UNION`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetUnionRequest {
    /// The keys of the sets to unite.
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Response to [`OP_SET_ADD`] and [`OP_SET_REMOVE`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetOperationResponse {
    /// The number of members affected, as reported by the store.
    pub new_count: i32,
}

/// Request for [`OP_KEY_EXISTS`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyExistsQuery {
    /// The key to test.
    pub key: String,
}
