//! `wascc:extras`: GUIDs, random numbers and sequence numbers.
//!
//! Actors cannot produce these themselves (no entropy, no shared state), so
//! the host provides them built in. Request and result are flat structs with
//! flags rather than enums because enums encode unpredictably across
//! MessagePack libraries of other languages.

use serde::{Deserialize, Serialize};

/// Capability id of the built-in extras provider.
pub const CAPABILITY_ID: &str = "wascc:extras";

/// Actor → provider: generate a UUID v4 string.
pub const OP_REQUEST_GUID: &str = "RequestGuid";
/// Actor → provider: next value of the actor's own sequence, starting at 0.
pub const OP_REQUEST_SEQUENCE: &str = "RequestSequence";
/// Actor → provider: a random number in `[min, max)`.
pub const OP_REQUEST_RANDOM: &str = "RequestRandom";

/// Payload of the extras operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorRequest {
    /// Ask for a GUID.
    pub guid: bool,
    /// Ask for a sequence number.
    pub sequence: bool,
    /// Ask for a random number.
    pub random: bool,
    /// Lower bound (inclusive) of the random number.
    pub min: u32,
    /// Upper bound (exclusive) of the random number.
    pub max: u32,
}

/// Response to the extras operations; only the requested field is set.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorResult {
    /// The GUID, for [`OP_REQUEST_GUID`]; encoded as `nil` otherwise.
    pub guid: Option<String>,
    /// The sequence number, for [`OP_REQUEST_SEQUENCE`]; `0` otherwise.
    pub sequence_number: u64,
    /// The random number, for [`OP_REQUEST_RANDOM`]; `0` otherwise.
    pub random_number: u32,
}
