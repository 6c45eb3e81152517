//! W3C trace context through NATS: what the provider publishes or requests
//! carries `traceparent` in its headers, as a plain async-nats client sees
//! it, and a delivery to an actor continues the trace of the message it
//! delivers. A real `nats-server` per test; spans are collected by an
//! OpenTelemetry layer over an in-memory exporter on the test's current
//! thread, where the provider's delivery tasks run too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use tokio::sync::mpsc;
use tracing::Instrument;
use waxosuit_cap_messaging_nats::NatsMessaging;
use waxosuit_codec::messaging::{
    BrokerMessage, CAPABILITY_ID, OP_PERFORM_REQUEST, OP_PUBLISH_MESSAGE, RequestMessage,
};
use waxosuit_provider::{
    ActorDispatcher, BindRequest, CapabilityProvider, DispatchError, ProviderCall, encode,
};
use waxosuit_test_servers::CollectedSpans;
use waxosuit_test_servers::{NatsServer, collect_spans, span_attribute};
use waxosuit_trace::FinishedSpan;

const WAIT: Duration = Duration::from_secs(10);
const ACTOR: &str = "MTRACED";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// Stands in for the host: opens a span of its own for the actor call, as
/// the host does, reports the subject, and answers `pong`.
struct Host {
    delivered: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl ActorDispatcher for Host {
    async fn dispatch(
        &self,
        _actor: &str,
        _operation: &str,
        payload: Vec<u8>,
    ) -> Result<Vec<u8>, DispatchError> {
        let _actor = tracing::info_span!("actor call").entered();
        let message: BrokerMessage = waxosuit_codec::deserialize(&payload).unwrap();
        self.delivered.send(message.subject).unwrap();
        Ok(b"pong".to_vec())
    }
}

struct Fixture {
    _server: NatsServer,
    provider: NatsMessaging,
    delivered: mpsc::UnboundedReceiver<String>,
    client: async_nats::Client,
}

async fn fixture(subscription: &str) -> Fixture {
    let server = NatsServer::start().unwrap();
    let provider = NatsMessaging::new();
    let (tx, delivered) = mpsc::unbounded_channel();
    provider
        .start(Arc::new(Host { delivered: tx }))
        .await
        .unwrap();
    provider
        .bind_actor(BindRequest {
            actor: ACTOR.into(),
            binding: "default".into(),
            values: HashMap::from([
                ("URL".to_string(), server.url()),
                ("SUBSCRIPTION".to_string(), subscription.to_string()),
            ]),
        })
        .await
        .unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    Fixture {
        _server: server,
        provider,
        delivered,
        client,
    }
}

/// A fixture whose actor subscribes to nothing, and a plain client's
/// subscription to `subject`, in place on the server.
async fn listening(subject: &'static str) -> (Fixture, async_nats::Subscriber) {
    let f = fixture("unused").await;
    let subscriber = f.client.subscribe(subject).await.unwrap();
    settle(&f.client).await;
    (f, subscriber)
}

async fn call(provider: &NatsMessaging, operation: &str, payload: Vec<u8>) -> Vec<u8> {
    provider
        .handle_call(ProviderCall {
            actor: ACTOR.into(),
            binding: "default".into(),
            operation: operation.into(),
            payload,
        })
        .await
        .unwrap()
}

async fn publish(provider: &NatsMessaging, subject: &str, reply_to: &str) {
    let message = BrokerMessage {
        subject: subject.into(),
        reply_to: reply_to.into(),
        body: b"hello".to_vec(),
    };
    let payload = encode(CAPABILITY_ID, &message).unwrap();
    call(provider, OP_PUBLISH_MESSAGE, payload).await;
}

async fn next(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, subscriber.next())
        .await
        .expect("no message in time")
        .unwrap()
}

/// Returns once the server has processed everything `client` sent (its
/// subscriptions included): `flush` alone only empties the socket buffer.
async fn settle(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, "".into()).await.unwrap();
    next(&mut echo).await;
}

async fn delivered(f: &mut Fixture) -> String {
    tokio::time::timeout(WAIT, f.delivered.recv())
        .await
        .expect("nothing delivered in time")
        .unwrap()
}

fn traceparent(message: &async_nats::Message) -> Option<String> {
    let value = message.headers.as_ref()?.get("traceparent")?;
    Some(value.as_str().to_string())
}

fn finished(exporter: &CollectedSpans, name: &str) -> FinishedSpan {
    let spans = exporter.finished();
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} among {spans:?}"))
        .clone()
}

#[tokio::test]
async fn a_publish_carries_the_trace_of_its_producer_span() {
    let (exporter, _guard) = collect_spans();
    let (f, mut subscriber) = listening("traced.out").await;

    let call = tracing::info_span!("capability call");
    let trace_id = waxosuit_trace::span_context(&call).unwrap().trace_id();
    let call_id = waxosuit_trace::span_context(&call).unwrap().span_id();
    publish(&f.provider, "traced.out", "answers.here")
        .instrument(call)
        .await;

    let message = next(&mut subscriber).await;
    assert_eq!(message.reply.as_deref(), Some("answers.here"));
    let traceparent = traceparent(&message).expect("no traceparent header");
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields[1], trace_id.to_string());

    let producer = finished(&exporter, "publish traced.out");
    assert_eq!(producer.span_kind, SpanKind::Producer);
    assert_eq!(producer.parent_span_id, call_id);
    assert_eq!(fields[2], producer.span_context.span_id().to_string());
    for (key, value) in [
        ("messaging.system", Value::from("nats")),
        ("messaging.operation.type", "publish".into()),
        ("messaging.destination.name", "traced.out".into()),
        ("messaging.message.body.size", Value::I64(5)),
    ] {
        assert_eq!(span_attribute(&producer, key), Some(value), "{key}");
    }
}

#[tokio::test]
async fn a_request_carries_the_trace_of_its_client_span() {
    let (exporter, _guard) = collect_spans();
    // A plain responder answering with the traceparent it received.
    let (f, mut requests) = listening("traced.service").await;
    let responder = f.client.clone();
    tokio::spawn(async move {
        let request = requests.next().await.unwrap();
        let seen = traceparent(&request).unwrap_or_else(|| "-".to_string());
        responder
            .publish(request.reply.unwrap(), seen.into())
            .await
            .unwrap();
    });

    let call = tracing::info_span!("capability call");
    let trace_id = waxosuit_trace::span_context(&call).unwrap().trace_id();
    let message = RequestMessage {
        subject: "traced.service".into(),
        body: b"ping".to_vec(),
        timeout_ms: 5000,
    };
    let payload = encode(CAPABILITY_ID, &message).unwrap();
    let reply = call_request(&f.provider, payload).instrument(call).await;

    let reply = String::from_utf8(reply).unwrap();
    let fields: Vec<&str> = reply.split('-').collect();
    assert_eq!(fields.len(), 4, "the responder saw {reply:?}");
    assert_eq!(fields[1], trace_id.to_string());
    let client = finished(&exporter, "send traced.service");
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(fields[2], client.span_context.span_id().to_string());
    assert_eq!(
        span_attribute(&client, "messaging.operation.type"),
        Some("send".into())
    );
}

async fn call_request(provider: &NatsMessaging, payload: Vec<u8>) -> Vec<u8> {
    call(provider, OP_PERFORM_REQUEST, payload).await
}

#[tokio::test]
async fn a_delivery_continues_the_trace_of_the_message_and_holds_the_actor_call() {
    let (exporter, _guard) = collect_spans();
    let mut f = fixture("traced.in.>").await;

    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{TRACE}-{PARENT}-01").as_str());
    // A request, so the actor's answer is published inside the span too.
    let reply = f
        .client
        .request_with_headers("traced.in.x", headers, "body".into());
    let reply = tokio::time::timeout(WAIT, reply)
        .await
        .expect("no reply in time")
        .unwrap();
    assert_eq!(&reply.payload[..], b"pong");
    assert_eq!(delivered(&mut f).await, "traced.in.x");

    let consumer = finished(&exporter, "process traced.in.x");
    assert_eq!(consumer.span_kind, SpanKind::Consumer);
    assert_eq!(
        consumer.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(consumer.parent_span_id, SpanId::from_hex(PARENT).unwrap());
    for (key, value) in [
        ("messaging.system", Value::from("nats")),
        ("messaging.operation.type", "process".into()),
        ("messaging.destination.name", "traced.in.x".into()),
        ("messaging.message.body.size", Value::I64(4)),
        ("waxosuit.actor.key", ACTOR.into()),
    ] {
        assert_eq!(span_attribute(&consumer, key), Some(value), "{key}");
    }
    assert_eq!(consumer.status, Status::Unset);
    let actor = finished(&exporter, "actor call");
    assert_eq!(actor.parent_span_id, consumer.span_context.span_id());

    // Without a traceparent, a delivery starts a trace of its own.
    f.client
        .publish("traced.in.y", "plain".into())
        .await
        .unwrap();
    assert_eq!(delivered(&mut f).await, "traced.in.y");
    let consumer = finished(&exporter, "process traced.in.y");
    assert_eq!(consumer.parent_span_id, SpanId::INVALID);
}

#[tokio::test]
async fn a_delivery_with_two_traceparents_starts_a_trace_and_tracestates_are_combined() {
    let (exporter, _guard) = collect_spans();
    let mut f = fixture("traced.dup.>").await;
    // The same header twice, in two cases of its name: no one parent.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{TRACE}-{PARENT}-01").as_str());
    headers.insert(
        "Traceparent",
        format!("00-{}-{PARENT}-01", "1".repeat(32)).as_str(),
    );
    f.client
        .publish_with_headers("traced.dup.a", headers, "x".into())
        .await
        .unwrap();
    assert_eq!(delivered(&mut f).await, "traced.dup.a");
    let consumer = finished(&exporter, "process traced.dup.a");
    assert_eq!(consumer.parent_span_id, SpanId::INVALID);
    for foreign in [TRACE.to_string(), "1".repeat(32)] {
        assert_ne!(
            consumer.span_context.trace_id(),
            TraceId::from_hex(&foreign).unwrap()
        );
    }
    // One parent, its list in two values: one list. A value the grammar
    // refuses drops the list, not the parent.
    for (subject, states, expected) in [
        (
            "traced.dup.b",
            &["congo=t61", "rojo=1"][..],
            "congo=t61,rojo=1",
        ),
        ("traced.dup.c", &["congo=t61", "bad key=1"][..], ""),
    ] {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", format!("00-{TRACE}-{PARENT}-01").as_str());
        for state in states {
            headers.append("tracestate", *state);
        }
        f.client
            .publish_with_headers(subject, headers, "x".into())
            .await
            .unwrap();
        assert_eq!(delivered(&mut f).await, subject);
        let consumer = finished(&exporter, &format!("process {subject}"));
        assert_eq!(consumer.parent_span_id, SpanId::from_hex(PARENT).unwrap());
        assert_eq!(consumer.span_context.trace_state().header(), expected);
    }
}

#[tokio::test]
async fn without_a_tracing_layer_messages_have_no_headers() {
    let (f, mut subscriber) = listening("plain.out").await;

    publish(&f.provider, "plain.out", "")
        .instrument(tracing::info_span!("capability call"))
        .await;
    let message = next(&mut subscriber).await;
    assert!(message.headers.is_none(), "{:?}", message.headers);
    assert_eq!(&message.payload[..], b"hello");
}
