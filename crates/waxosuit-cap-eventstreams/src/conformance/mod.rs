//! The conformance suite of `wascc:eventstreams`: what every backend must
//! answer, checked through encoded calls as an actor makes them.
//!
//! [`run`] drives a [`Subject`] (anything that takes an operation and its
//! MessagePack payload for one of two bindings of one actor) through
//! `WriteEvent` and `QueryStream`, their edge cases and their refusals, and
//! returns a [`Report`] naming each check that failed and why. Errors are
//! compared as the actor reads them: the error's text, whose Redis class
//! (`ERR`) follows `backend error: `.
//!
//! ```
//! use std::collections::HashMap;
//! use waxosuit_cap_eventstreams::MemoryStreams;
//! use waxosuit_cap_eventstreams::conformance::{self, BINDING, OTHER_BINDING, Subject};
//!
//! /// Two bindings of the reference streams.
//! struct Reference(HashMap<&'static str, MemoryStreams>);
//!
//! impl Subject for Reference {
//!     async fn call(&self, binding: &str, op: &str, payload: Vec<u8>) -> Result<Vec<u8>, String> {
//!         self.0[binding].call_now(op, &payload).map_err(|e| e.to_string())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let subject = Reference(HashMap::from([
//!     (BINDING, MemoryStreams::default()),
//!     (OTHER_BINDING, MemoryStreams::default()),
//! ]));
//! conformance::run(&subject).await.assert_passed();
//! # }
//! ```
//!
//! The subject must start empty: both bindings bound, no streams. Each
//! check uses streams of its own, so checks do not depend on one another's
//! order. The store's clock is not the suite's to move, so time ranges are
//! checked against the milliseconds in the ids the backend handed out, and
//! that those are the Unix time is left to each backend's own tests, as is
//! delivery (`DeliverEvent`), which the SDK's fake host cannot make.

mod checks;

pub use waxosuit_provider::conformance::{Failure, Report};

use waxosuit_codec::eventstreams::{
    Event, OP_QUERY_STREAM, OP_WRITE_EVENT, StreamQuery, StreamResults, TimeRange, WriteResponse,
};

use crate::EventId;

pub use waxosuit_provider::conformance::{BINDING, OTHER_BINDING, ProviderSubject, Subject};
use waxosuit_provider::conformance::{Calls, expect};

type Outcome = Result<(), String>;

/// Runs every check against `subject`.
pub async fn run(subject: &impl Subject) -> Report {
    let s = Client(Calls(subject));
    let mut report = Report::default();
    report.record("events_round_trip", checks::round_trip(&s).await);
    report.record("event_ids", checks::event_ids(&s).await);
    report.record("streams_are_separate", checks::separate_streams(&s).await);
    report.record("count_limits", checks::count_limits(&s).await);
    report.record("time_ranges", checks::time_ranges(&s).await);
    report.record("events_need_values", checks::events_need_values(&s).await);
    report.record("streams_need_names", checks::streams_need_names(&s).await);
    report.record("bindings_are_isolated", checks::isolation(&s).await);
    report.record("unknown_operation", checks::unknown_operation(&s).await);
    report.record("undecodable_request", checks::bad_payload(&s).await);
    report
}

/// Typed calls over a subject.
struct Client<'a, S>(Calls<'a, S>);

// The shared calls (`raw`, `ok_on`, `refused`) and this capability's own.
impl<'a, S> std::ops::Deref for Client<'a, S> {
    type Target = Calls<'a, S>;

    fn deref(&self) -> &Calls<'a, S> {
        &self.0
    }
}

impl<S: Subject> Client<'_, S> {
    /// Writes `values` to `stream` on `binding`; returns the id.
    async fn write_on(
        &self,
        binding: &str,
        stream: &str,
        values: &[(&str, &str)],
    ) -> Result<String, String> {
        let r: WriteResponse = self
            .ok_on(binding, OP_WRITE_EVENT, &event(stream, values))
            .await?;
        Ok(r.event_id)
    }

    async fn write(&self, stream: &str, values: &[(&str, &str)]) -> Result<String, String> {
        self.write_on(BINDING, stream, values).await
    }

    /// `n` events `{"n": "0"}`, `{"n": "1"}`, … written to `stream`;
    /// returns their ids.
    async fn write_numbered(&self, stream: &str, n: usize) -> Result<Vec<String>, String> {
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            ids.push(self.write(stream, &[("n", &i.to_string())]).await?);
        }
        Ok(ids)
    }

    async fn query_on(
        &self,
        binding: &str,
        stream: &str,
        range: Option<(u64, u64)>,
        count: u64,
    ) -> Result<Vec<Event>, String> {
        let r: StreamResults = self
            .ok_on(binding, OP_QUERY_STREAM, &query(stream, range, count))
            .await?;
        if let Some(e) = r.events.iter().find(|e| e.stream != stream) {
            return Err(format!(
                "a query of stream `{stream}` returned an event of stream `{}`",
                e.stream
            ));
        }
        Ok(r.events)
    }

    async fn query(
        &self,
        stream: &str,
        range: Option<(u64, u64)>,
        count: u64,
    ) -> Result<Vec<Event>, String> {
        self.query_on(BINDING, stream, range, count).await
    }

    /// The ids of a query's events.
    async fn ids(
        &self,
        stream: &str,
        range: Option<(u64, u64)>,
        count: u64,
    ) -> Result<Vec<String>, String> {
        Ok(ids(&self.query(stream, range, count).await?))
    }
}

fn event(stream: &str, values: &[(&str, &str)]) -> Event {
    Event {
        event_id: String::new(),
        stream: stream.to_string(),
        values: values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn query(stream: &str, range: Option<(u64, u64)>, count: u64) -> StreamQuery {
    StreamQuery {
        stream_id: stream.to_string(),
        range: range.map(|(min_time, max_time)| TimeRange { min_time, max_time }),
        count,
    }
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.event_id.clone()).collect()
}

/// `id` as an [`EventId`], or what is wrong with it.
fn parse_id(what: &str, id: &str) -> Result<EventId, String> {
    id.parse().map_err(|e| format!("{what}: {e}"))
}
