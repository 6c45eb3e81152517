//! Drives `LoggingProvider` through the provider trait and checks the
//! `tracing` events it emits with a capturing layer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use waxosuit_cap_logging::{
    DEFAULT_MAX_LINE_BYTES, DEFAULT_MAX_LINES_PER_SECOND, DROP_SUMMARY_INTERVAL, LoggingProvider,
    TARGET,
};
use waxosuit_codec::capabilities::OperationDirection;
use waxosuit_codec::core::CONFIG_WASCC_CLAIMS_NAME;
use waxosuit_codec::logging::*;
use waxosuit_provider::{BindRequest, CapabilityProvider, ProviderCall, ProviderError};

const ACTOR: &str = "MGREETER";
const DEFAULT: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Captured {
    level: Level,
    target: String,
    fields: BTreeMap<String, String>,
}

/// Records every event it sees.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Capture {
    /// Installs the layer as this thread's subscriber; the tests run on a
    /// current-thread runtime, so the provider's events reach it.
    fn install() -> (Capture, DefaultGuard) {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::registry().with(capture.clone());
        let guard = tracing::subscriber::set_default(subscriber);
        (capture, guard)
    }

    fn events(&self) -> Vec<Captured> {
        self.0.lock().unwrap().clone()
    }
}

struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields(BTreeMap::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(Captured {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            fields: fields.0,
        });
    }
}

async fn bound(name: Option<&str>) -> LoggingProvider {
    let logging = LoggingProvider::new();
    let mut values = HashMap::from([("__wascc_issuer".to_string(), "AISSUER".to_string())]);
    if let Some(name) = name {
        values.insert(CONFIG_WASCC_CLAIMS_NAME.to_string(), name.to_string());
    }
    logging
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: DEFAULT.into(),
            values,
        })
        .await
        .unwrap();
    logging
}

async fn raw(
    logging: &LoggingProvider,
    actor: &str,
    operation: &str,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ProviderError> {
    logging
        .handle_call(ProviderCall {
            actor: actor.into(),
            binding: DEFAULT.into(),
            operation: operation.into(),
            payload,
        })
        .await
}

async fn write_log(
    logging: &LoggingProvider,
    actor: &str,
    level: u32,
    body: &str,
) -> Result<Vec<u8>, ProviderError> {
    let payload = waxosuit_codec::serialize(&WriteLogRequest {
        level,
        body: body.into(),
    })
    .unwrap();
    raw(logging, actor, OP_LOG, payload).await
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn descriptor_lists_write_log_as_actor_to_provider() {
    let descriptor = LoggingProvider::new().descriptor();
    assert_eq!(descriptor.id, CAPABILITY_ID);
    assert_eq!(descriptor.supported_operations.len(), 1);
    assert_eq!(descriptor.supported_operations[0].name, OP_LOG);
    assert_eq!(
        descriptor.supported_operations[0].direction,
        OperationDirection::ToProvider
    );
}

#[tokio::test]
async fn each_level_becomes_an_event_at_that_level_with_actor_fields() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    let levels = [
        (LEVEL_ERROR, Level::ERROR),
        (LEVEL_WARN, Level::WARN),
        (LEVEL_INFO, Level::INFO),
        (LEVEL_DEBUG, Level::DEBUG),
        (LEVEL_TRACE, Level::TRACE),
    ];
    for (level, _) in levels {
        let reply = write_log(&logging, ACTOR, level, &format!("line {level}"))
            .await
            .unwrap();
        assert!(reply.is_empty(), "WriteLog replies nothing");
    }
    let events = capture.events();
    assert_eq!(events.len(), levels.len(), "{events:#?}");
    for (event, (level, expected)) in events.iter().zip(levels) {
        assert_eq!(event.level, expected);
        assert_eq!(event.target, TARGET);
        let body = format!("line {level}");
        assert_eq!(
            event.fields,
            fields(&[
                ("actor", ACTOR),
                ("actor_name", "Greeter"),
                ("binding", DEFAULT),
                ("message", &body),
            ])
        );
    }
}

#[tokio::test]
async fn a_body_is_logged_verbatim_not_as_a_format_string() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    write_log(&logging, ACTOR, LEVEL_INFO, "{} 100% {actor}\nnext")
        .await
        .unwrap();
    assert_eq!(
        capture.events()[0].fields["message"],
        "{} 100% {actor}\nnext"
    );
}

#[tokio::test]
async fn an_actor_without_a_name_claim_logs_an_empty_name() {
    let (capture, _guard) = Capture::install();
    let logging = bound(None).await;
    write_log(&logging, ACTOR, LEVEL_WARN, "hi").await.unwrap();
    let events = capture.events();
    assert_eq!(events[0].fields["actor_name"], "");
    assert_eq!(events[0].fields["actor"], ACTOR);
}

#[tokio::test]
async fn unknown_levels_are_refused_and_log_nothing() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    for level in [0, 6, u32::MAX] {
        let result = write_log(&logging, ACTOR, level, "lost?").await;
        match result {
            Err(ProviderError::BadPayload {
                capid,
                operation,
                reason,
            }) => {
                assert_eq!(capid, CAPABILITY_ID);
                assert_eq!(operation, OP_LOG);
                assert!(reason.contains(&format!("level {level}")), "{reason}");
            }
            other => panic!("level {level}: {other:?}"),
        }
    }
    assert!(capture.events().is_empty(), "{:#?}", capture.events());
}

#[tokio::test]
async fn unbound_actors_are_refused_and_log_nothing() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    assert_eq!(
        write_log(&logging, "MSTRANGER", LEVEL_ERROR, "x").await,
        Err(ProviderError::not_bound(
            CAPABILITY_ID,
            "MSTRANGER",
            DEFAULT
        ))
    );
    let other_binding = logging
        .handle_call(ProviderCall {
            actor: ACTOR.into(),
            binding: "audit".into(),
            operation: OP_LOG.into(),
            payload: waxosuit_codec::serialize(&WriteLogRequest {
                level: 1,
                body: "x".into(),
            })
            .unwrap(),
        })
        .await;
    assert_eq!(
        other_binding,
        Err(ProviderError::not_bound(CAPABILITY_ID, ACTOR, "audit"))
    );
    assert!(capture.events().is_empty());
}

#[tokio::test]
async fn bad_payloads_and_unknown_operations_are_refused() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    let garbage = raw(&logging, ACTOR, OP_LOG, vec![0xc1]).await;
    assert!(
        matches!(&garbage, Err(ProviderError::BadPayload { operation, .. }) if operation == OP_LOG),
        "{garbage:?}"
    );
    let empty = raw(&logging, ACTOR, OP_LOG, Vec::new()).await;
    assert!(
        matches!(empty, Err(ProviderError::BadPayload { .. })),
        "{empty:?}"
    );
    assert_eq!(
        raw(&logging, ACTOR, "Log", Vec::new()).await,
        Err(ProviderError::unknown_operation(CAPABILITY_ID, "Log"))
    );
    assert!(capture.events().is_empty());
}

#[tokio::test]
async fn removal_unbinds_and_rebinding_picks_up_a_new_name() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    logging.remove_actor(ACTOR, DEFAULT).await.unwrap();
    assert_eq!(
        write_log(&logging, ACTOR, LEVEL_INFO, "x").await,
        Err(ProviderError::not_bound(CAPABILITY_ID, ACTOR, DEFAULT))
    );
    assert_eq!(
        logging.remove_actor(ACTOR, DEFAULT).await,
        Err(ProviderError::not_bound(CAPABILITY_ID, ACTOR, DEFAULT))
    );
    logging
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: DEFAULT.into(),
            values: HashMap::from([(
                CONFIG_WASCC_CLAIMS_NAME.to_string(),
                "Greeter v2".to_string(),
            )]),
        })
        .await
        .unwrap();
    write_log(&logging, ACTOR, LEVEL_INFO, "back")
        .await
        .unwrap();
    let events = capture.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].fields["actor_name"], "Greeter v2");
}

// ---------------------------------------------------------------- quotas --

async fn bind_with(logging: &LoggingProvider, actor: &str, values: &[(&str, &str)]) {
    logging
        .bind_actor(BindRequest {
            actor: actor.into(),
            binding: DEFAULT.into(),
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .await
        .unwrap();
}

#[track_caller]
fn assert_rate_limited(result: Result<Vec<u8>, ProviderError>, actor: &str, limit: u32) {
    match result {
        Err(ProviderError::Backend { capid, message }) => {
            assert_eq!(capid, CAPABILITY_ID);
            for needle in [
                "line dropped",
                actor,
                "binding `default`",
                &format!("more than {limit} lines per second"),
                "raise MAX_LINES_PER_SECOND",
            ] {
                assert!(message.contains(needle), "`{needle}` not in: {message}");
            }
        }
        other => panic!("expected a rate-limit error, got {other:?}"),
    }
}

fn summaries(events: &[Captured]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e.fields.get("dropped"))
        .map(|d| d.parse().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_flood_is_cut_to_the_rate_with_an_error_per_line_and_one_summary_per_second() {
    let (capture, _guard) = Capture::install();
    let logging = LoggingProvider::new();
    bind_with(&logging, ACTOR, &[("MAX_LINES_PER_SECOND", "50")]).await;
    bind_with(&logging, "MQUIET", &[]).await;

    let mut passed = 0;
    for i in 0..10_000 {
        match write_log(&logging, ACTOR, LEVEL_INFO, &format!("line {i}")).await {
            Ok(_) => passed += 1,
            refused => assert_rate_limited(refused, ACTOR, 50),
        }
    }
    // The clock is paused: exactly one second's worth went through.
    assert_eq!(passed, 50);
    let events = capture.events();
    assert_eq!(
        events.len(),
        51,
        "50 lines and one summary, not 10,000 events"
    );
    assert_eq!(
        summaries(&events),
        [1],
        "the first drop is reported at once"
    );
    let summary = events
        .iter()
        .find(|e| e.fields.contains_key("dropped"))
        .unwrap();
    assert_eq!(summary.level, Level::WARN);
    assert_eq!(summary.target, TARGET);
    assert_eq!(summary.fields["actor"], ACTOR);
    assert!(
        summary.fields["message"].contains("MAX_LINES_PER_SECOND"),
        "{summary:?}"
    );

    // Another actor's budget is its own.
    write_log(&logging, "MQUIET", LEVEL_INFO, "still heard")
        .await
        .unwrap();

    // A second later the bucket has refilled and the rest of the drops are
    // reported in one line.
    tokio::time::advance(DROP_SUMMARY_INTERVAL).await;
    write_log(&logging, ACTOR, LEVEL_INFO, "after the pause")
        .await
        .unwrap();
    let events = capture.events();
    assert_eq!(summaries(&events), [1, 9_949]);
    let lines: Vec<&str> = events
        .iter()
        .filter(|e| !e.fields.contains_key("dropped") && e.fields["actor"] == ACTOR)
        .map(|e| e.fields["message"].as_str())
        .collect();
    assert_eq!(lines.len(), 51);
    assert_eq!(lines[0], "line 0");
    assert_eq!(lines[49], "line 49");
    assert_eq!(lines[50], "after the pause");
}

#[tokio::test(start_paused = true)]
async fn the_default_rate_is_a_hundred_lines_per_second() {
    let (_capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    let mut passed = 0;
    for _ in 0..1_000 {
        if write_log(&logging, ACTOR, LEVEL_DEBUG, "x").await.is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, DEFAULT_MAX_LINES_PER_SECOND);
    assert_rate_limited(
        write_log(&logging, ACTOR, LEVEL_DEBUG, "x").await,
        ACTOR,
        DEFAULT_MAX_LINES_PER_SECOND,
    );
    // Half a second refills half the budget.
    tokio::time::advance(std::time::Duration::from_millis(500)).await;
    let mut passed = 0;
    for _ in 0..1_000 {
        if write_log(&logging, ACTOR, LEVEL_DEBUG, "x").await.is_ok() {
            passed += 1;
        }
    }
    assert_eq!(passed, DEFAULT_MAX_LINES_PER_SECOND / 2);
}

#[tokio::test(start_paused = true)]
async fn removing_a_binding_reports_the_drops_not_yet_reported() {
    let (capture, _guard) = Capture::install();
    let logging = LoggingProvider::new();
    bind_with(&logging, ACTOR, &[("MAX_LINES_PER_SECOND", "1")]).await;
    write_log(&logging, ACTOR, LEVEL_INFO, "kept")
        .await
        .unwrap();
    for _ in 0..5 {
        assert_rate_limited(
            write_log(&logging, ACTOR, LEVEL_INFO, "lost").await,
            ACTOR,
            1,
        );
    }
    assert_eq!(
        summaries(&capture.events()),
        [1],
        "the rest wait for the interval"
    );
    logging.remove_actor(ACTOR, DEFAULT).await.unwrap();
    assert_eq!(summaries(&capture.events()), [1, 4], "flushed on removal");
}

#[tokio::test]
async fn a_long_line_is_cut_to_max_line_bytes_and_still_logged() {
    let (capture, _guard) = Capture::install();
    let logging = bound(Some("Greeter")).await;
    let huge = "é".repeat(32 * 1024); // 64 KiB of two-byte characters
    write_log(&logging, ACTOR, LEVEL_INFO, &huge).await.unwrap();

    let logging_small = LoggingProvider::new();
    bind_with(&logging_small, "MSMALL", &[("MAX_LINE_BYTES", "100")]).await;
    write_log(&logging_small, "MSMALL", LEVEL_INFO, &"x".repeat(101))
        .await
        .unwrap();
    write_log(&logging_small, "MSMALL", LEVEL_INFO, &"y".repeat(100))
        .await
        .unwrap();

    let events = capture.events();
    let message = &events[0].fields["message"];
    let (kept, marker) = message.split_once('…').unwrap();
    assert_eq!(kept.len(), DEFAULT_MAX_LINE_BYTES);
    assert_eq!(kept, "é".repeat(DEFAULT_MAX_LINE_BYTES / 2));
    assert!(
        marker.contains(&format!(
            "{} more bytes cut",
            huge.len() - DEFAULT_MAX_LINE_BYTES
        )),
        "{marker}"
    );
    assert!(marker.contains("MAX_LINE_BYTES (8192)"), "{marker}");
    assert!(message.len() < DEFAULT_MAX_LINE_BYTES + 200);

    assert!(events[1].fields["message"].starts_with(&format!("{}…", "x".repeat(100))));
    assert_eq!(
        events[2].fields["message"],
        "y".repeat(100),
        "at the limit: whole"
    );
}

#[tokio::test]
async fn quota_values_must_be_positive_whole_numbers() {
    let logging = LoggingProvider::new();
    for (key, bad) in [
        ("MAX_LINES_PER_SECOND", "0"),
        ("MAX_LINES_PER_SECOND", "fast"),
        ("MAX_LINES_PER_SECOND", "-1"),
        ("MAX_LINE_BYTES", "0"),
        ("MAX_LINE_BYTES", "1.5"),
    ] {
        let err = logging
            .bind_actor(BindRequest {
                actor: ACTOR.into(),
                binding: DEFAULT.into(),
                values: HashMap::from([(key.to_string(), bad.to_string())]),
            })
            .await
            .unwrap_err();
        match &err {
            ProviderError::Config { key: k, reason, .. } => {
                assert_eq!(k, key);
                assert!(reason.contains(&format!("`{bad}`")), "{err}");
                assert!(reason.contains("at least 1"), "{err}");
            }
            other => panic!("{key}={bad}: {other:?}"),
        }
    }
    // Nothing was bound by the refused attempts.
    assert!(matches!(
        write_log(&logging, ACTOR, LEVEL_INFO, "x").await,
        Err(ProviderError::NotBound { .. })
    ));
}
