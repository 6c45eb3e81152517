//! The fake host's `wascc:eventstreams` is the contract's reference streams
//! behind the host's operation table: it passes the same conformance suite
//! as the host's providers, and its ids follow the fake's clock.

use std::collections::HashMap;
use std::time::Duration;

use waxosuit_actor::testing::FakeHost;
use waxosuit_actor::{Error, HostCalls};
use waxosuit_cap_eventstreams::conformance;
use waxosuit_codec::eventstreams::{
    CAPABILITY_ID, OP_QUERY_STREAM, StreamQuery, StreamResults, TimeRange,
};

struct Fake(FakeHost);

impl conformance::Subject for Fake {
    async fn call(
        &self,
        binding: &str,
        operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        self.0
            .host_call(binding, CAPABILITY_ID, operation, &payload)
            .map_err(|e| match e {
                Error::HostCall { message, .. } => message,
                other => other.to_string(),
            })
    }
}

#[test]
fn the_fake_event_streams_pass_the_conformance_suite() {
    let report = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(conformance::run(&Fake(FakeHost::new())));
    report.assert_passed();
}

fn values(n: u32) -> HashMap<String, String> {
    HashMap::from([("n".to_string(), n.to_string())])
}

#[test]
fn ids_follow_the_fake_clock_and_time_ranges_select_by_it() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let events = ctx.events();
    assert_eq!(events.write_event("s", values(0)).unwrap(), "0-1");
    fake.advance_time(Duration::from_millis(1_500));
    assert_eq!(events.write_event("s", values(1)).unwrap(), "1500-0");
    assert_eq!(events.write_event("s", values(2)).unwrap(), "1500-1");
    assert_eq!(
        events.write_event("t", values(3)).unwrap(),
        "1500-0",
        "ids are per stream"
    );

    let query = StreamQuery {
        stream_id: "s".into(),
        range: Some(TimeRange {
            min_time: 1_000,
            max_time: 2_000,
        }),
        count: 0,
    };
    let reply = fake
        .host_call(
            "default",
            CAPABILITY_ID,
            OP_QUERY_STREAM,
            &waxosuit_codec::serialize(&query).unwrap(),
        )
        .unwrap();
    let StreamResults { events: found } = waxosuit_codec::deserialize(&reply).unwrap();
    let ids: Vec<&str> = found.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["1500-0", "1500-1"]);
}

#[test]
fn refusals_read_as_the_hosts() {
    let fake = FakeHost::new();
    let ctx = fake.ctx();
    let err = ctx.events().write_event("s", HashMap::new()).unwrap_err();
    assert!(
        matches!(&err, Error::HostCall { message, .. } if message
            == "wascc:eventstreams backend error: ERR an event needs at least one value; stream \
                `s` got none"),
        "{err:?}"
    );
    assert!(ctx.events().read_all("s").unwrap().is_empty());
    // Bindings do not share streams.
    ctx.events().write_event("s", values(1)).unwrap();
    assert!(
        ctx.events()
            .binding("audit")
            .read_all("s")
            .unwrap()
            .is_empty(),
        "another binding's stream"
    );
}
