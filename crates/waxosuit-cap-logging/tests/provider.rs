//! Drives `LoggingProvider` through the provider trait and checks the
//! `tracing` events it emits with a capturing layer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use waxosuit_cap_logging::{LoggingProvider, TARGET};
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
