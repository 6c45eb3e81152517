//! Writing enums the way the original codec did.
//!
//! rmp-serde 1.x and rmp-serde 0.14 (the encoder of the original waSCC codec)
//! disagree only on enums: 1.x writes a variant's *name* (a bare string for a
//! unit variant), 0.14 wrote a one-entry map keyed by the variant *index*
//! (`{index: nil}` for a unit variant). [`serialize`](crate::serialize)
//! therefore cannot fix enums up by itself; an enum that crosses the wire
//! implements `Serialize` with the two functions here, as
//! [`OperationDirection`](crate::capabilities::OperationDirection) and
//! [`Entity`](crate::invocation::Entity) do. A derived `Deserialize` can stay:
//! under rmp-serde 1.x it accepts the index as well as the name.
//!
//! ```
//! use serde::{Deserialize, Serialize, Serializer};
//! use waxosuit_codec::wire;
//!
//! #[derive(Debug, PartialEq, Deserialize)]
//! enum Signal {
//!     Stop,
//!     Resume(u32),
//! }
//!
//! impl Serialize for Signal {
//!     fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
//!         match self {
//!             Signal::Stop => wire::serialize_unit_variant(s, "Signal", 0, "Stop"),
//!             Signal::Resume(at) => wire::serialize_data_variant(s, "Signal", 1, "Resume", at),
//!         }
//!     }
//! }
//!
//! assert_eq!(waxosuit_codec::serialize(&Signal::Stop)?, [0x81, 0x00, 0xc0]);
//! assert_eq!(waxosuit_codec::serialize(&Signal::Resume(7))?, [0x81, 0x01, 0x07]);
//! assert_eq!(waxosuit_codec::deserialize::<Signal>(&[0x81, 0x01, 0x07])?, Signal::Resume(7));
//! # Ok::<(), waxosuit_codec::CodecError>(())
//! ```
//!
//! Human-readable serializers (JSON, YAML) get serde's usual externally
//! tagged form instead (`"Stop"`, `{"Resume": 7}`), so listings and logs stay
//! readable; only binary formats, the ones that reach the wire, get indexes.

use serde::Serialize;
use serde::de::{Deserialize, Deserializer};
use serde::ser::{SerializeMap, Serializer};

/// Writes a variant without data: `{variant_index: nil}` in binary formats,
/// `"variant_name"` in human-readable ones.
///
/// # Errors
///
/// Whatever `serializer` reports.
pub fn serialize_unit_variant<S: Serializer>(
    serializer: S,
    enum_name: &'static str,
    variant_index: u32,
    variant_name: &'static str,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return serializer.serialize_unit_variant(enum_name, variant_index, variant_name);
    }
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry(&variant_index, &())?;
    map.end()
}

/// Writes a variant carrying `value`: `{variant_index: value}` in binary
/// formats, `{"variant_name": value}` in human-readable ones.
///
/// For a struct variant pass a struct holding its fields (a borrowed one
/// will do); it is then written as a map under the struct-map configuration,
/// exactly like the original struct variant.
///
/// # Errors
///
/// Whatever `serializer` or `value` reports.
pub fn serialize_data_variant<S, T>(
    serializer: S,
    enum_name: &'static str,
    variant_index: u32,
    variant_name: &'static str,
    value: &T,
) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: Serialize + ?Sized,
{
    if serializer.is_human_readable() {
        return serializer.serialize_newtype_variant(enum_name, variant_index, variant_name, value);
    }
    let mut map = serializer.serialize_map(Some(1))?;
    map.serialize_entry(&variant_index, value)?;
    map.end()
}

/// `deserialize_with` target for `Vec<u8>` fields that the original codec sent
/// as an array of integers (no `serde_bytes`).
///
/// Encoding stays an int array for compatibility, but on input we also take a
/// MessagePack `bin` (what a newer or non-Rust peer is likely to send for
/// "bytes"); `ByteBuf` accepts both shapes and caps its pre-allocation, so a
/// forged length prefix cannot make us reserve gigabytes.
pub(crate) fn bytes_from_array_or_bin<'de, D>(deserializer: D) -> Result<Vec<u8>, D::Error>
where
    D: Deserializer<'de>,
{
    serde_bytes::ByteBuf::deserialize(deserializer).map(serde_bytes::ByteBuf::into_vec)
}
