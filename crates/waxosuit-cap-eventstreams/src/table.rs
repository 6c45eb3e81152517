//! The backend trait and the operation table: what `WriteEvent` and
//! `QueryStream` mean, whatever keeps the streams.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_codec::capabilities::{CapabilityDescriptor, OperationDirection};
use waxosuit_codec::eventstreams::{
    CAPABILITY_ID, Event, OP_DELIVER_EVENT, OP_QUERY_STREAM, OP_WRITE_EVENT, StreamQuery,
    StreamResults, WriteResponse,
};
use waxosuit_provider::ProviderError;

use crate::id::IdRange;

/// The largest `count` a query may ask for: Redis reads `COUNT` as a signed
/// 64-bit integer.
pub const MAX_COUNT: u64 = i64::MAX.unsigned_abs();

/// One event as a backend returns it, without its stream's name (the table
/// adds the name the actor used, which need not be the backend's key).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// The id the stream assigned, `<ms>-<seq>` ([`EventId`](crate::EventId)).
    pub id: String,
    /// The event's fields.
    pub values: HashMap<String, String>,
}

impl Entry {
    /// The event as an actor receives it, in `stream` as the actor names it.
    pub fn into_event(self, stream: &str) -> Event {
        Event {
            event_id: self.id,
            stream: stream.to_string(),
            values: self.values,
        }
    }
}

/// One binding's streams, as a backend keeps them.
///
/// [`dispatch`] decodes the request and checks what the contract forbids
/// before calling these, so they only ever see a non-empty stream name (as
/// the actor gave it: mapping it to a key is the backend's business, and so
/// is refusing names the backend reserves), at least one field, and a
/// limit within [`MAX_COUNT`]. Refusals the actor caused are
/// [`ProviderError::Backend`] whose message starts with the Redis error
/// class (`WRONGTYPE …`, `ERR …`); a store that does not answer is
/// [`ProviderError::Unavailable`]. The reference streams
/// ([`MemoryStreams`](crate::MemoryStreams)) are the executable definition.
#[async_trait]
pub trait Streams: Send + Sync {
    /// `XADD stream * field value …`: appends an event with `fields`
    /// (sorted by field name, each name once) to `stream`, creating the
    /// stream, and returns the id it was given:
    /// [`EventId::next_after`](crate::EventId::next_after) the stream's
    /// newest id at the store's clock, in milliseconds since the Unix
    /// epoch.
    async fn append(&self, stream: &str, fields: &[(&str, &str)]) -> Result<String, ProviderError>;

    /// `XRANGE stream start end [COUNT limit]`: the events of `stream`
    /// whose ids are within `range`, oldest first, at most `limit` of them
    /// (all without one); none for a stream that does not exist.
    async fn range(
        &self,
        stream: &str,
        range: IdRange,
        limit: Option<u64>,
    ) -> Result<Vec<Entry>, ProviderError>;
}

/// The operation table of `wascc:eventstreams`: decodes `payload` as
/// `operation`'s request, refuses what the contract forbids, runs it on
/// `streams` and encodes the reply. Every backend answers through this, so
/// replies and contract errors are the same bytes and texts everywhere.
/// The caller has already found the call's binding.
///
/// * `WriteEvent` ([`Event`] → [`WriteResponse`]): the event's `eventId`
///   is ignored; it needs at least one value (a Redis stream entry cannot
///   be empty) and a stream name.
/// * `QueryStream` ([`StreamQuery`] → [`StreamResults`], oldest first):
///   `range` selects by the millisecond in the ids ([`IdRange::of`]),
///   `count` `0` means every matching event.
///
/// # Errors
///
/// [`ProviderError::UnknownOperation`] for an operation outside the
/// contract (`DeliverEvent` goes to actors, not to the provider),
/// [`ProviderError::BadPayload`] for a request that does not decode,
/// [`ProviderError::Backend`] for an event without values, a stream
/// without a name and a `count` above [`MAX_COUNT`], and whatever the
/// backend returns.
pub async fn dispatch<S: Streams + ?Sized>(
    streams: &S,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, ProviderError> {
    match operation {
        OP_WRITE_EVENT => {
            let event: Event = decode(operation, payload)?;
            if event.values.is_empty() {
                return Err(ProviderError::backend(
                    CAPABILITY_ID,
                    format!(
                        "ERR an event needs at least one value; stream `{}` got none",
                        event.stream
                    ),
                ));
            }
            named(&event.stream)?;
            // Sorted so the stored field order does not depend on the hash
            // map's.
            let mut fields: Vec<(&str, &str)> = event
                .values
                .iter()
                .map(|(field, value)| (field.as_str(), value.as_str()))
                .collect();
            fields.sort_unstable();
            let event_id = streams.append(&event.stream, &fields).await?;
            encode(&WriteResponse { event_id })
        }
        OP_QUERY_STREAM => {
            let query: StreamQuery = decode(operation, payload)?;
            named(&query.stream_id)?;
            let limit = match query.count {
                0 => None,
                n if n <= MAX_COUNT => Some(n),
                // Redis' own reply to such a `COUNT`, which actors got
                // before the table refused it first.
                _ => {
                    return Err(ProviderError::backend(
                        CAPABILITY_ID,
                        "ERR value is not an integer or out of range",
                    ));
                }
            };
            let entries = streams
                .range(&query.stream_id, IdRange::of(query.range), limit)
                .await?;
            let events = entries
                .into_iter()
                .map(|entry| entry.into_event(&query.stream_id))
                .collect();
            encode(&StreamResults { events })
        }
        other => Err(ProviderError::unknown_operation(CAPABILITY_ID, other)),
    }
}

/// The descriptor of a `wascc:eventstreams` provider: the contract's three
/// operations under the backend's `name` and `long_description`.
pub fn descriptor(name: &str, long_description: &str) -> CapabilityDescriptor {
    CapabilityDescriptor::builder()
        .id(CAPABILITY_ID)
        .name(name)
        .version(env!("CARGO_PKG_VERSION"))
        .revision(1)
        .long_description(long_description)
        .with_operation(
            OP_WRITE_EVENT,
            OperationDirection::ToProvider,
            "Appends an event to a stream",
        )
        .with_operation(
            OP_QUERY_STREAM,
            OperationDirection::ToProvider,
            "Reads a stream's events, optionally within a time range",
        )
        .with_operation(
            OP_DELIVER_EVENT,
            OperationDirection::ToActor,
            "Delivers a new event of a subscribed stream",
        )
        .build()
}

/// Refuses a stream without a name (which no Redis key can be).
fn named(stream: &str) -> Result<(), ProviderError> {
    if stream.is_empty() {
        return Err(ProviderError::backend(
            CAPABILITY_ID,
            "ERR a stream needs a name",
        ));
    }
    Ok(())
}

fn decode<T: DeserializeOwned>(operation: &str, payload: &[u8]) -> Result<T, ProviderError> {
    waxosuit_codec::deserialize(payload).map_err(|e| ProviderError::BadPayload {
        capid: CAPABILITY_ID.to_string(),
        operation: operation.to_string(),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(reply: &T) -> Result<Vec<u8>, ProviderError> {
    waxosuit_provider::encode(CAPABILITY_ID, reply)
}
