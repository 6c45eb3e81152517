use std::collections::HashMap;

use waxosuit_codec::eventstreams::{self as es, Event, StreamQuery, StreamResults, WriteResponse};

use super::bound_client;
use crate::context::call_typed;
use crate::{HostCalls, Result};

/// Client for `wascc:eventstreams`: append-only streams of key/value events.
pub struct EventStreams<'a> {
    host: &'a dyn HostCalls,
    binding: String,
}

bound_client!(EventStreams);

impl EventStreams<'_> {
    /// Appends an event with `values` to `stream` and returns the id the
    /// store assigned.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn write_event(&self, stream: &str, values: HashMap<String, String>) -> Result<String> {
        let event = Event {
            event_id: String::new(),
            stream: stream.to_string(),
            values,
        };
        let reply: WriteResponse = call_typed(
            self.host,
            &self.binding,
            es::CAPABILITY_ID,
            es::OP_WRITE_EVENT,
            &event,
        )?;
        Ok(reply.event_id)
    }

    /// Every event of `stream`, oldest first.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn read_all(&self, stream: &str) -> Result<Vec<Event>> {
        self.query(stream, 0)
    }

    /// At most `count` events of `stream`, oldest first.
    ///
    /// # Errors
    ///
    /// The host call failed or its reply did not decode.
    pub fn read_limit(&self, stream: &str, count: u64) -> Result<Vec<Event>> {
        self.query(stream, count)
    }

    fn query(&self, stream: &str, count: u64) -> Result<Vec<Event>> {
        let query = StreamQuery {
            stream_id: stream.to_string(),
            range: None,
            count,
        };
        let results: StreamResults = call_typed(
            self.host,
            &self.binding,
            es::CAPABILITY_ID,
            es::OP_QUERY_STREAM,
            &query,
        )?;
        Ok(results.events)
    }
}
