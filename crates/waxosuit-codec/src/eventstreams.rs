//! `wascc:eventstreams`: append-only event streams.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Capability id of event stream providers.
pub const CAPABILITY_ID: &str = "wascc:eventstreams";

/// Provider → actor: deliver an [`Event`].
pub const OP_DELIVER_EVENT: &str = "DeliverEvent";
/// Actor → provider: append an [`Event`]; replies with a [`WriteResponse`].
pub const OP_WRITE_EVENT: &str = "WriteEvent";
/// Actor → provider: run a [`StreamQuery`]; replies with [`StreamResults`].
pub const OP_QUERY_STREAM: &str = "QueryStream";

/// An immutable event in a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The event's id, assigned by the store (empty when writing).
    pub event_id: String,
    /// The stream the event belongs to.
    pub stream: String,
    /// The event's fields.
    #[serde(default)]
    pub values: HashMap<String, String>,
}

/// Response to [`OP_WRITE_EVENT`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteResponse {
    /// The id the store assigned to the event.
    pub event_id: String,
}

/// Payload of [`OP_QUERY_STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamQuery {
    /// The stream to read.
    pub stream_id: String,
    /// Only events inside this time range; `nil` for all.
    #[serde(default)]
    pub range: Option<TimeRange>,
    /// Maximum number of events; `0` means as many as the provider allows.
    pub count: u64,
}

/// Response to [`OP_QUERY_STREAM`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamResults {
    /// The matching events.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// A time window, in milliseconds since the Unix epoch: the unit of Redis
/// stream ids, which the original `wascc-streams-redis` provider used as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeRange {
    /// Events at or after this time.
    pub min_time: u64,
    /// Events at or before this time.
    pub max_time: u64,
}
