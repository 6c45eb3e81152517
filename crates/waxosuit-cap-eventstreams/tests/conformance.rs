//! The suite against the reference streams, and against deliberately wrong
//! backends: each flaw must fail the check that covers it, or the suite
//! could not catch a wrong backend.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use waxosuit_cap_eventstreams::conformance::{self, BINDING, OTHER_BINDING, Report, Subject};
use waxosuit_cap_eventstreams::{Entry, IdRange, MemoryStreams, Streams, dispatch};
use waxosuit_codec::eventstreams::{
    Event, OP_QUERY_STREAM, OP_WRITE_EVENT, StreamQuery, StreamResults, WriteResponse,
};
use waxosuit_provider::ProviderError;

/// Two bindings, each answering through the operation table.
struct Bound {
    default: Arc<dyn Streams>,
    other: Arc<dyn Streams>,
}

impl Subject for Bound {
    async fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let streams = match binding {
            BINDING => &self.default,
            OTHER_BINDING => &self.other,
            other => return Err(format!("the suite used an unknown binding `{other}`")),
        };
        dispatch(&**streams, operation, &payload)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A clock that moves 1 ms each time it is read, as a real one might
/// between calls.
fn ticking() -> Arc<MemoryStreams> {
    let ms = Arc::new(AtomicU64::new(1_700_000_000_000));
    Arc::new(MemoryStreams::new(Arc::new(move || {
        Duration::from_millis(ms.fetch_add(1, Ordering::Relaxed))
    })))
}

fn standing() -> Arc<MemoryStreams> {
    Arc::new(MemoryStreams::new(Arc::new(|| Duration::ZERO)))
}

async fn run_reference(make: fn() -> Arc<MemoryStreams>) -> Report {
    conformance::run(&Bound {
        default: make(),
        other: make(),
    })
    .await
}

#[tokio::test]
async fn the_reference_passes_on_any_clock() {
    for (clock, make) in [
        (
            "system",
            (|| Arc::new(MemoryStreams::default())) as fn() -> _,
        ),
        ("standing at 0", standing),
        ("ticking", ticking),
    ] {
        let report = run_reference(make).await;
        assert!(report.is_pass(), "{clock} clock: {report}");
        assert_eq!(report.passed.len(), 10, "{report}");
    }
}

/// One way a backend can get the contract wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flaw {
    /// Newest first.
    Reversed,
    /// Ignores the query's `count`.
    Unlimited,
    /// Ignores the query's time range.
    Unranged,
    /// Ends a time range at `maxTime-0`, missing the rest of that
    /// millisecond.
    EndsAtSequenceZero,
    /// Numbers events `1`, `2`, … across every stream.
    CountedIds,
    /// `<ms>-<seq>`, but one sequence for all streams.
    SharedSequence,
    /// Drops fields with empty values.
    DropsEmptyValues,
}

/// The reference streams with one flaw.
struct Flawed {
    inner: Arc<MemoryStreams>,
    flaw: Flaw,
    /// For the id flaws: ids handed out, by the stream's events.
    ids: Arc<std::sync::Mutex<(u64, HashMap<String, String>)>>,
}

impl Flawed {
    fn renamed(&self, real: &str) -> String {
        self.ids
            .lock()
            .unwrap()
            .1
            .get(real)
            .cloned()
            .unwrap_or_else(|| real.to_string())
    }
}

#[async_trait]
impl Streams for Flawed {
    async fn append(&self, stream: &str, fields: &[(&str, &str)]) -> Result<String, ProviderError> {
        let kept: Vec<(&str, &str)> = fields
            .iter()
            .copied()
            .filter(|(_, v)| self.flaw != Flaw::DropsEmptyValues || !v.is_empty())
            .collect();
        let kept = if kept.is_empty() { fields } else { &kept };
        let real = self.inner.append(stream, kept).await?;
        let mut ids = self.ids.lock().unwrap();
        ids.0 += 1;
        let shown = match self.flaw {
            Flaw::CountedIds => ids.0.to_string(),
            Flaw::SharedSequence => {
                let ms = real.split('-').next().unwrap_or("0");
                format!("{ms}-{}", ids.0)
            }
            _ => real.clone(),
        };
        ids.1.insert(real, shown.clone());
        Ok(shown)
    }

    async fn range(
        &self,
        stream: &str,
        range: IdRange,
        limit: Option<u64>,
    ) -> Result<Vec<Entry>, ProviderError> {
        let range = match self.flaw {
            Flaw::Unranged => IdRange::ALL,
            Flaw::EndsAtSequenceZero => IdRange {
                end: waxosuit_cap_eventstreams::EventId {
                    seq: 0,
                    ..range.end
                },
                ..range
            },
            _ => range,
        };
        let limit = if self.flaw == Flaw::Unlimited {
            None
        } else {
            limit
        };
        let mut entries = if self.flaw == Flaw::Reversed {
            let mut all = self.inner.range(stream, range, None).await?;
            all.reverse();
            all.truncate(limit.map_or(usize::MAX, |n| n as usize));
            all
        } else {
            self.inner.range(stream, range, limit).await?
        };
        for entry in &mut entries {
            entry.id = self.renamed(&entry.id);
        }
        Ok(entries)
    }
}

async fn run_flawed(flaw: Flaw, make: fn() -> Arc<MemoryStreams>) -> Report {
    let flawed = || {
        Arc::new(Flawed {
            inner: make(),
            flaw,
            ids: Arc::default(),
        })
    };
    conformance::run(&Bound {
        default: flawed(),
        other: flawed(),
    })
    .await
}

#[tokio::test]
async fn each_flaw_fails_the_check_that_covers_it() {
    for (flaw, check) in [
        (Flaw::Reversed, "events_round_trip"),
        (Flaw::Reversed, "count_limits"),
        (Flaw::Unlimited, "count_limits"),
        (Flaw::Unranged, "time_ranges"),
        (Flaw::CountedIds, "event_ids"),
        (Flaw::SharedSequence, "event_ids"),
        (Flaw::DropsEmptyValues, "events_round_trip"),
    ] {
        // Whatever the clock: whether ids share a millisecond is not the
        // suite's to choose.
        for make in [standing, ticking] {
            let report = run_flawed(flaw, make).await;
            assert!(report.failed(check), "{flaw:?} passed {check}: {report}");
        }
    }
}

#[tokio::test]
async fn a_range_cut_short_fails_when_ids_share_a_millisecond() {
    // With every event in a millisecond of its own, `maxTime-0` is the
    // whole millisecond, and the flaw cannot show: the Redis run of the
    // suite catches it only when writes come faster than 1 ms apart.
    let report = run_flawed(Flaw::EndsAtSequenceZero, standing).await;
    assert!(report.failed("time_ranges"), "{report}");
    assert_eq!(report.failures.len(), 1, "{report}");
}

/// Bindings sharing their streams.
struct Shared(MemoryStreams);

impl Subject for Shared {
    async fn call(&self, _: &str, operation: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        self.0
            .call_now(operation, &payload)
            .map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn shared_bindings_fail_the_isolation_check() {
    let report = conformance::run(&Shared(MemoryStreams::default())).await;
    assert!(report.failed("bindings_are_isolated"), "{report}");
    assert_eq!(report.failures.len(), 1, "{report}");
}

/// The SDK's fake host before it used the reference: ids `1`, `2`, …
/// across streams and bindings, no time ranges, no refusals, its own
/// error texts.
#[derive(Default)]
struct OldFake {
    state: std::sync::Mutex<(u64, HashMap<String, Vec<Event>>)>,
}

impl Subject for OldFake {
    async fn call(&self, _: &str, operation: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut state = self.state.lock().unwrap();
        let de = |e: waxosuit_codec::CodecError| e.to_string();
        let reply = match operation {
            OP_WRITE_EVENT => {
                let mut event: Event = waxosuit_codec::deserialize(&payload).map_err(de)?;
                state.0 += 1;
                event.event_id = state.0.to_string();
                let event_id = event.event_id.clone();
                state.1.entry(event.stream.clone()).or_default().push(event);
                waxosuit_codec::serialize(&WriteResponse { event_id })
            }
            OP_QUERY_STREAM => {
                let query: StreamQuery = waxosuit_codec::deserialize(&payload).map_err(de)?;
                let stream = state.1.get(&query.stream_id).cloned().unwrap_or_default();
                let limit = match query.count {
                    0 => stream.len(),
                    n => n as usize,
                };
                waxosuit_codec::serialize(&StreamResults {
                    events: stream.into_iter().take(limit).collect(),
                })
            }
            _ => {
                return Err(format!(
                    "wascc:eventstreams does not support operation {operation}"
                ));
            }
        };
        reply.map_err(de)
    }
}

#[tokio::test]
async fn the_old_fake_host_fails() {
    let report = conformance::run(&OldFake::default()).await;
    for check in [
        "event_ids",
        "time_ranges",
        "count_limits",
        "events_need_values",
        "streams_need_names",
        "bindings_are_isolated",
        "unknown_operation",
        "undecodable_request",
    ] {
        assert!(
            report.failed(check),
            "the old fake passed {check}: {report}"
        );
    }
}
