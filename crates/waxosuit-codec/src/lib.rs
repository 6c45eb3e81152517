//! # waxosuit-codec
//!
//! The capability contracts that Waxosuit actors, the host and capability
//! providers exchange, kept **wire-compatible with the 2020 waSCC ecosystem**
//! (`wascc-codec` 0.8 on rmp-serde 0.14). An actor built with the original
//! `wascc-actor` SDK and a provider written for `wascc-host` read and write
//! exactly the bytes this crate reads and writes.
//!
//! ## What is in here
//!
//! * One module per well-known capability — [`http`], [`keyvalue`],
//!   [`messaging`], [`logging`], [`extras`], [`blobstore`], [`eventstreams`] —
//!   each with its capability id (`wascc:keyvalue`, …), its bare operation
//!   names (`Get`, `Set`, `HandleRequest`, …) and its request/response types.
//! * [`core`]: the host ↔ actor/provider lifecycle (`BindActor`,
//!   `RemoveActor`, `HealthRequest`, …) and [`core::CapabilityConfiguration`]
//!   with the `__wascc_*` claim keys the host injects.
//! * [`capabilities`]: the [`capabilities::CapabilityDescriptor`] a provider
//!   returns from `GetCapabilityDescriptor`, with a builder.
//! * [`invocation`]: the [`invocation::Invocation`] envelope and its
//!   [`invocation::Entity`] endpoints, as sent between hosts.
//! * [`serialize`] / [`deserialize`]: the only way payloads should be turned
//!   into bytes and back, and [`wire`] for writing your own enums the way
//!   the original codec did.
//! * For an HTTP server's hot path, [`http::RequestWriter`] and
//!   [`http::ResponseView`] write and read the same bytes in place, without
//!   the structs in between; `deserialize` stays the authority on what a
//!   reply may be, and the view bounds what a hostile one can cost.
//!
//! This crate is a pure data library: no I/O, no `unsafe`, and it builds for
//! `wasm32-unknown-unknown` so the guest SDK can share it with the host.
//!
//! ## Wire rules
//!
//! Payloads are MessagePack, laid out the way rmp-serde 0.14 with
//! `with_struct_map()` laid them out:
//!
//! * a struct is a **map** keyed by field name, in declaration order; names
//!   are camelCase where the original said so (`queryString`, `statusCode`)
//!   and snake_case elsewhere (`long_description`, `encoded_claims`);
//! * byte fields the original marked `serde_bytes` (`body`, `chunkBytes`) are
//!   MessagePack `bin`; the others (`newModule`, `Invocation::msg`) are arrays
//!   of integers;
//! * an enum is a one-entry map `{variant_index: value}`, a unit variant's
//!   value being `nil` — *not* the variant name that rmp-serde 1.x writes.
//!   The encoder underneath is rmp-serde 1.x, so this holds for enums whose
//!   `Serialize` goes through [`wire`] (all enums of this crate), not for a
//!   plain `#[derive(Serialize)]` enum;
//! * integers take the most compact encoding, `None` is `nil`.
//!
//! Decoding is deliberately more liberal than encoding: any integer width that
//! fits, enum variants keyed by index or by name, structs as maps or as
//! arrays, and `bin` where an integer array is expected. Trailing bytes after
//! the value are rejected (see [`CodecError::TrailingBytes`]).
//!
//! Maps are `HashMap`s as in the original, so a map with several entries is
//! encoded in an unspecified order; compare decoded values, not bytes, when a
//! payload carries such a map.
//!
//! ## Example
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_codec::{deserialize, http, serialize};
//!
//! let request = http::Request {
//!     method: "GET".to_string(),
//!     path: "/foo".to_string(),
//!     query_string: "a=1".to_string(),
//!     header: HashMap::new(),
//!     body: b"hi".to_vec(),
//! };
//! let bytes = serialize(&request)?;
//!
//! // A five-entry map whose keys are the camelCase field names…
//! assert_eq!(bytes[0], 0x85);
//! assert_eq!(&bytes[1..8], b"\xa6method");
//! // …and whose body is a two-byte `bin`, not an array.
//! assert_eq!(&bytes[bytes.len() - 4..], b"\xc4\x02hi");
//!
//! let back: http::Request = deserialize(&bytes)?;
//! assert_eq!(back, request);
//! # Ok::<(), waxosuit_codec::CodecError>(())
//! ```

// Examples in the docs are the first code readers copy; keep them warning-free.
#![doc(test(attr(deny(warnings))))]

pub mod blobstore;
pub mod capabilities;
pub mod core;
mod error;
pub mod eventstreams;
pub mod extras;
pub mod http;
pub mod invocation;
pub mod keyvalue;
pub mod logging;
pub mod messaging;
mod msgpack;
pub mod wire;

pub use error::CodecError;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Nesting limit for [`deserialize`]; see there.
const MAX_NESTING_DEPTH: usize = 64;

/// The `actor` argument of every call the host itself makes to a provider
/// (`BindActor`, `RemoveActor`, `GetCapabilityDescriptor`); providers compare
/// against it to tell host calls from actor calls.
pub const SYSTEM_ACTOR: &str = "system";

/// Serializes `item` to MessagePack exactly as the waSCC codec did.
///
/// Use this (not `rmp_serde::to_vec*`) for every payload that crosses a
/// host, actor or provider boundary: only this configuration reproduces the
/// original struct-as-map layout, and the contract enums rely on a binary
/// serializer to pick their index-keyed encoding.
///
/// Enums defined outside this crate are written by index only if their
/// `Serialize` uses [`wire`]; a derived one comes out keyed by variant name,
/// which waSCC-era decoders accept but which is not byte-identical.
///
/// # Errors
///
/// [`CodecError::Serialize`] if `item`'s `Serialize` implementation fails, for
/// example a map whose keys cannot be encoded or a custom implementation that
/// reports an error. The contract types of this crate never fail.
pub fn serialize<T>(item: &T) -> Result<Vec<u8>, CodecError>
where
    T: Serialize + ?Sized,
{
    let mut buf = Vec::new();
    item.serialize(&mut rmp_serde::Serializer::new(&mut buf).with_struct_map())
        .map_err(|e| CodecError::Serialize {
            type_name: ::core::any::type_name::<T>(),
            reason: e.to_string(),
        })?;
    Ok(buf)
}

/// Deserializes a MessagePack payload produced by [`serialize`] or by any
/// waSCC-era peer.
///
/// The whole slice must be one value; see the crate docs for what encodings
/// are accepted. Arrays and maps nested more than 64 levels deep are
/// rejected: the deepest contract type needs 4, and the limit keeps hostile
/// input from exhausting the stack (decoding is recursive).
///
/// # Errors
///
/// [`CodecError::Deserialize`] for input that is truncated, not MessagePack,
/// nested too deeply, or does not match `T`; [`CodecError::TrailingBytes`]
/// if bytes follow the value.
pub fn deserialize<T>(buf: &[u8]) -> Result<T, CodecError>
where
    T: DeserializeOwned,
{
    let type_name = ::core::any::type_name::<T>();
    // The reader-based deserializer (rather than the borrowing one) is used
    // because it reports how far it read, which the trailing-bytes check
    // needs; it copies `bin`/`str` data incrementally, so a forged length
    // prefix cannot trigger a large allocation either.
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(buf));
    // rmp-serde's own limit (1024 levels) is deeper than a 2 MiB thread stack
    // survives in a debug build, so hostile input such as 100 000 nested
    // one-element arrays in an ignored field would abort the process.
    de.set_max_depth(MAX_NESTING_DEPTH);
    let value = T::deserialize(&mut de).map_err(|e| CodecError::Deserialize {
        type_name,
        reason: e.to_string(),
    })?;
    let consumed = usize::try_from(de.position()).unwrap_or(buf.len());
    let trailing = buf.len().saturating_sub(consumed);
    if trailing > 0 {
        return Err(CodecError::TrailingBytes {
            type_name,
            trailing,
        });
    }
    Ok(value)
}
