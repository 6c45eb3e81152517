//! The contract's conformance suite on a real `redis-server`, and the one
//! thing about ids the suite leaves to backends: which clock they carry.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use waxosuit_cap_eventstreams::EventId;
use waxosuit_cap_eventstreams::conformance::{self, ProviderSubject};
use waxosuit_cap_eventstreams_redis::{CONFIG_URL, RedisEventStreams};
use waxosuit_codec::eventstreams::{Event, OP_WRITE_EVENT, WriteResponse};
use waxosuit_provider::{CapabilityProvider, ProviderCall};
use waxosuit_test_servers::RedisServer;

#[tokio::test]
async fn redis_passes_the_conformance_suite() {
    let redis = RedisServer::start().unwrap();
    let provider = RedisEventStreams::new();
    let url = redis.url();
    let subject = ProviderSubject::bind(&provider, "MCONFORMANCE", &[(CONFIG_URL, &url)])
        .await
        .unwrap();
    let report = conformance::run(&subject).await;
    report.assert_passed();
    assert_eq!(report.passed.len(), 10, "{report}");
    provider.shutdown().await;
}

fn unix_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

#[tokio::test]
async fn ids_carry_the_unix_time_in_milliseconds() {
    let redis = RedisServer::start().unwrap();
    let provider = RedisEventStreams::new();
    let url = redis.url();
    let _subject = ProviderSubject::bind(&provider, "MCLOCK", &[(CONFIG_URL, &url)])
        .await
        .unwrap();
    let event = Event {
        event_id: String::new(),
        stream: "clock".into(),
        values: HashMap::from([("n".to_string(), "1".to_string())]),
    };
    let before = unix_ms();
    let reply = provider
        .handle_call(ProviderCall {
            actor: "MCLOCK".into(),
            binding: conformance::BINDING.into(),
            operation: OP_WRITE_EVENT.into(),
            payload: waxosuit_codec::serialize(&event).unwrap(),
        })
        .await
        .unwrap();
    let after = unix_ms();
    let WriteResponse { event_id } = waxosuit_codec::deserialize(&reply).unwrap();
    let id: EventId = event_id.parse().unwrap();
    // The server runs on this machine, on the same clock.
    assert!(
        (before..=after).contains(&id.ms),
        "{id} not within {before}..={after}"
    );
    assert_eq!(id.seq, 0, "a new stream starts at `<ms>-0`");
    provider.shutdown().await;
}
