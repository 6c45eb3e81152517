//! The in-memory reference streams: what every other backend is measured
//! against.
//!
//! [`MemoryStreams`] holds one binding's streams with the semantics of
//! Redis streams: ids `<ms>-<seq>` from a [`Clock`] in milliseconds since
//! the Unix epoch, growing strictly within each stream even when the clock
//! stands still or goes back ([`EventId::next_after`]), inclusive id ranges
//! and a limit on the events returned. Streams are independent: two may
//! hand out the same id.
//!
//! It is a definition, not a production store: nothing is ever trimmed and
//! nothing is delivered to actors (delivery needs a runtime to call them
//! back; each backend's own tests check it). It needs neither Tokio nor a
//! system clock, so the SDK's fake host builds it for `wasm32` and passes
//! its own clock, which tests move by hand.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use waxosuit_codec::eventstreams::{CAPABILITY_ID, Event};
use waxosuit_provider::ProviderError;

use crate::id::{EventId, IdRange};
use crate::table::{Entry, Streams};

/// Where the streams read the time for new ids: how long since the Unix
/// epoch. Any `Fn() -> Duration` is a clock.
pub trait Clock: Send + Sync + 'static {
    /// The time now.
    fn now(&self) -> Duration;
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Duration {
        self()
    }
}

/// The system's wall clock. (`wasm32-unknown-unknown` has none: pass a
/// clock of your own there.)
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    /// Zero for a system clock set before 1970.
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// One stream: its events, ids strictly growing.
#[derive(Default)]
struct Stream {
    events: Vec<(EventId, HashMap<String, String>)>,
}

impl Stream {
    fn newest(&self) -> EventId {
        self.events.last().map_or(EventId::MIN, |(id, _)| *id)
    }
}

/// One binding's streams, in memory. See the [module docs](self).
pub struct MemoryStreams {
    clock: Arc<dyn Clock>,
    streams: Mutex<HashMap<String, Stream>>,
}

impl fmt::Debug for MemoryStreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStreams")
            .field("streams", &self.streams.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStreams {
    /// Streams on the [`SystemClock`].
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl MemoryStreams {
    /// No streams yet; ids read the time from `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryStreams {
            clock,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Every event of `stream`, oldest first; none for a missing stream.
    pub fn events(&self, stream: &str) -> Vec<Event> {
        self.streams.lock().get(stream).map_or_else(Vec::new, |s| {
            s.events
                .iter()
                .map(|(id, values)| Event {
                    event_id: id.to_string(),
                    stream: stream.to_string(),
                    values: values.clone(),
                })
                .collect()
        })
    }

    /// Runs one encoded call through the [operation table](crate::dispatch)
    /// now, for callers that are not async (the SDK's fake host). Memory
    /// streams never wait, so the call is complete on its first poll.
    ///
    /// # Errors
    ///
    /// As [`dispatch`](crate::dispatch).
    pub fn call_now(&self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, ProviderError> {
        let call = std::pin::pin!(crate::dispatch(self, operation, payload));
        match call.poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => result,
            // Unreachable: nothing in memory streams awaits anything.
            Poll::Pending => Err(ProviderError::Internal {
                capid: CAPABILITY_ID.to_string(),
                message: format!("the in-memory `{operation}` did not complete at once"),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl Streams for MemoryStreams {
    async fn append(&self, stream: &str, fields: &[(&str, &str)]) -> Result<String, ProviderError> {
        let now = self.now_ms();
        let mut streams = self.streams.lock();
        let newest = streams.get(stream).map_or(EventId::MIN, Stream::newest);
        // Redis' words for a stream at the last possible id; nothing is
        // added.
        let id = newest.next_after(now).ok_or_else(|| {
            ProviderError::backend(
                CAPABILITY_ID,
                "ERR The stream has exhausted the last possible ID, unable to add more items",
            )
        })?;
        let values = fields
            .iter()
            .map(|(field, value)| (field.to_string(), value.to_string()))
            .collect();
        streams
            .entry(stream.to_string())
            .or_default()
            .events
            .push((id, values));
        Ok(id.to_string())
    }

    async fn range(
        &self,
        stream: &str,
        range: IdRange,
        limit: Option<u64>,
    ) -> Result<Vec<Entry>, ProviderError> {
        let streams = self.streams.lock();
        let Some(stream) = streams.get(stream) else {
            return Ok(Vec::new());
        };
        // Ids grow along the vector, so the range is one slice of it.
        let from = stream.events.partition_point(|(id, _)| *id < range.start);
        let to = stream.events.partition_point(|(id, _)| *id <= range.end);
        let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(stream
            .events
            .get(from..to.max(from))
            .unwrap_or_default()
            .iter()
            .take(limit)
            .map(|(id, values)| Entry {
                id: id.to_string(),
                values: values.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use waxosuit_codec::eventstreams::{
        OP_QUERY_STREAM, OP_WRITE_EVENT, StreamQuery, StreamResults, TimeRange, WriteResponse,
    };

    use super::*;

    /// Streams on a clock the test sets, in milliseconds.
    fn streams_at(ms: &Arc<AtomicU64>) -> MemoryStreams {
        let ms = Arc::clone(ms);
        MemoryStreams::new(Arc::new(move || {
            Duration::from_millis(ms.load(Ordering::Relaxed))
        }))
    }

    fn write(streams: &MemoryStreams, stream: &str) -> Result<String, ProviderError> {
        let event = Event {
            event_id: String::new(),
            stream: stream.into(),
            values: HashMap::from([("n".to_string(), "1".to_string())]),
        };
        let reply =
            streams.call_now(OP_WRITE_EVENT, &waxosuit_codec::serialize(&event).unwrap())?;
        let WriteResponse { event_id } = waxosuit_codec::deserialize(&reply).unwrap();
        Ok(event_id)
    }

    fn query(streams: &MemoryStreams, stream: &str, range: Option<(u64, u64)>) -> Vec<String> {
        let query = StreamQuery {
            stream_id: stream.into(),
            range: range.map(|(min_time, max_time)| TimeRange { min_time, max_time }),
            count: 0,
        };
        let reply = streams
            .call_now(OP_QUERY_STREAM, &waxosuit_codec::serialize(&query).unwrap())
            .unwrap();
        let StreamResults { events } = waxosuit_codec::deserialize(&reply).unwrap();
        events.into_iter().map(|e| e.event_id).collect()
    }

    #[test]
    fn ids_follow_the_clock_and_never_repeat() {
        let ms = Arc::new(AtomicU64::new(0));
        let streams = streams_at(&ms);
        assert_eq!(write(&streams, "s").unwrap(), "0-1");
        assert_eq!(write(&streams, "s").unwrap(), "0-2");
        assert_eq!(write(&streams, "t").unwrap(), "0-1", "ids are per stream");
        ms.store(1_500, Ordering::Relaxed);
        assert_eq!(write(&streams, "s").unwrap(), "1500-0");
        assert_eq!(write(&streams, "s").unwrap(), "1500-1");
        ms.store(1_000, Ordering::Relaxed);
        assert_eq!(
            write(&streams, "s").unwrap(),
            "1500-2",
            "a clock set back does not go back"
        );
        assert_eq!(
            query(&streams, "s", Some((1_000, 1_500))),
            ["1500-0", "1500-1", "1500-2"]
        );
        assert_eq!(query(&streams, "s", Some((0, 0))), ["0-1", "0-2"]);
        assert_eq!(streams.events("s").len(), 5);
        assert!(streams.events("missing").is_empty());
    }

    #[test]
    fn a_stream_at_the_last_id_takes_no_more_events() {
        let ms = Arc::new(AtomicU64::new(u64::MAX));
        let streams = streams_at(&ms);
        streams
            .streams
            .lock()
            .entry("full".into())
            .or_default()
            .events
            .push((
                EventId::MAX,
                HashMap::from([("n".to_string(), "1".to_string())]),
            ));
        let err = write(&streams, "full").unwrap_err();
        assert_eq!(
            err.to_string(),
            "wascc:eventstreams backend error: ERR The stream has exhausted the last possible \
             ID, unable to add more items"
        );
        assert_eq!(streams.events("full").len(), 1, "nothing added");
        assert_eq!(write(&streams, "fresh").unwrap(), format!("{}-0", u64::MAX));
    }

    #[test]
    fn the_system_clock_reads_the_unix_time() {
        // 2020-01-01: any machine running this is later.
        assert!(SystemClock.now() > Duration::from_secs(1_577_836_800));
        let id: EventId = write(&MemoryStreams::default(), "s")
            .unwrap()
            .parse()
            .unwrap();
        assert!(id.ms > 1_577_836_800_000);
    }
}
