//! Event ids and id ranges, as Redis streams define them.
//!
//! An id is `<ms>-<seq>`: the milliseconds since the Unix epoch at which the
//! event was added, and a sequence number among the events of that
//! millisecond. Ids grow strictly within a stream (never across streams), so
//! they order the stream, and a query by time is a query by id range.

use std::fmt;
use std::str::FromStr;

use waxosuit_codec::eventstreams::TimeRange;

/// A stream event's id, `<ms>-<seq>`. Orders as Redis does: by `ms`, then
/// by `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    /// Milliseconds since the Unix epoch (by the store's clock).
    pub ms: u64,
    /// Position among the events of the same millisecond, from 0.
    pub seq: u64,
}

impl EventId {
    /// `0-0`, below every id a stream hands out.
    pub const MIN: EventId = EventId { ms: 0, seq: 0 };
    /// The last possible id; a stream that reached it takes no more events.
    pub const MAX: EventId = EventId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The id `XADD stream *` assigns when the stream's newest id is `self`
    /// ([`EventId::MIN`] for a new stream) and the clock reads `now_ms`:
    /// `<now_ms>-0` when the clock is past the newest id's millisecond,
    /// otherwise the next id after the newest (the clock may lag behind it,
    /// or events come within one millisecond). A new stream written at
    /// millisecond 0 starts at `0-1`, as `0-0` is never an id. `None` when
    /// `self` is [`EventId::MAX`].
    pub fn next_after(self, now_ms: u64) -> Option<EventId> {
        if now_ms > self.ms {
            Some(EventId { ms: now_ms, seq: 0 })
        } else if self.seq < u64::MAX {
            Some(EventId {
                ms: self.ms,
                seq: self.seq + 1,
            })
        } else if self.ms < u64::MAX {
            Some(EventId {
                ms: self.ms + 1,
                seq: 0,
            })
        } else {
            None
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// A text that is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an event id; expected `<milliseconds>-<sequence>`, two decimal numbers \
     such as `1700000000000-0`"
)]
pub struct EventIdError {
    /// The text that did not parse.
    pub text: String,
}

impl FromStr for EventId {
    type Err = EventIdError;

    /// Parses `<ms>-<seq>`, each part decimal digits only (no sign) within
    /// `u64`.
    fn from_str(text: &str) -> Result<EventId, EventIdError> {
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u64>().ok()
        };
        text.split_once('-')
            .and_then(|(ms, seq)| {
                Some(EventId {
                    ms: number(ms)?,
                    seq: number(seq)?,
                })
            })
            .ok_or_else(|| EventIdError {
                text: text.to_string(),
            })
    }
}

/// The events a query selects: ids from `start` to `end`, both inclusive
/// (`XRANGE stream start end`). Empty when `start > end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// The first id selected.
    pub start: EventId,
    /// The last id selected.
    pub end: EventId,
}

impl IdRange {
    /// Every event (`XRANGE stream - +`).
    pub const ALL: IdRange = IdRange {
        start: EventId::MIN,
        end: EventId::MAX,
    };

    /// A query's range: every event without one; with one, every event
    /// whose millisecond is within `minTime..=maxTime`, every sequence
    /// number of both (`minTime-0` to `maxTime-18446744073709551615`).
    pub fn of(range: Option<TimeRange>) -> IdRange {
        match range {
            None => IdRange::ALL,
            Some(TimeRange { min_time, max_time }) => IdRange {
                start: EventId {
                    ms: min_time,
                    seq: 0,
                },
                end: EventId {
                    ms: max_time,
                    seq: u64::MAX,
                },
            },
        }
    }

    /// Whether `id` is selected.
    pub fn contains(&self, id: EventId) -> bool {
        self.start <= id && id <= self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_print_as_redis_writes_them() {
        let id: EventId = "1700000000000-3".parse().unwrap();
        assert_eq!(
            id,
            EventId {
                ms: 1_700_000_000_000,
                seq: 3
            }
        );
        assert_eq!(id.to_string(), "1700000000000-3");
        assert_eq!(
            EventId::MAX.to_string().parse::<EventId>(),
            Ok(EventId::MAX)
        );
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "+1-0",
            "1-+0",
            "a-0",
            " 1-0",
            "18446744073709551616-0",
        ] {
            let err = bad.parse::<EventId>().unwrap_err();
            assert_eq!(err.text, bad);
            assert!(err.to_string().contains("<milliseconds>-<sequence>"));
        }
    }

    #[test]
    fn ids_order_by_millisecond_then_sequence() {
        let id = |ms, seq| EventId { ms, seq };
        assert!(id(1, 9) < id(2, 0));
        assert!(id(2, 0) < id(2, 1));
        assert!(EventId::MIN < id(0, 1));
    }

    #[test]
    fn the_next_id_follows_xadd() {
        let id = |ms, seq| EventId { ms, seq };
        assert_eq!(EventId::MIN.next_after(0), Some(id(0, 1)), "never 0-0");
        assert_eq!(EventId::MIN.next_after(5), Some(id(5, 0)));
        assert_eq!(id(5, 0).next_after(5), Some(id(5, 1)));
        assert_eq!(id(9, 2).next_after(5), Some(id(9, 3)), "a clock behind");
        assert_eq!(id(5, u64::MAX).next_after(5), Some(id(6, 0)));
        assert_eq!(id(u64::MAX, 7).next_after(0), Some(id(u64::MAX, 8)));
        assert_eq!(EventId::MAX.next_after(u64::MAX), None);
    }

    #[test]
    fn time_ranges_cover_whole_milliseconds() {
        let range = IdRange::of(Some(TimeRange {
            min_time: 10,
            max_time: 20,
        }));
        let id = |ms, seq| EventId { ms, seq };
        assert!(!range.contains(id(9, u64::MAX)));
        assert!(range.contains(id(10, 0)));
        assert!(range.contains(id(20, u64::MAX)));
        assert!(!range.contains(id(21, 0)));
        let backwards = IdRange::of(Some(TimeRange {
            min_time: 20,
            max_time: 10,
        }));
        assert!(!backwards.contains(id(15, 0)));
        assert!(IdRange::of(None).contains(EventId::MAX));
        assert_eq!(IdRange::of(None), IdRange::ALL);
    }
}
