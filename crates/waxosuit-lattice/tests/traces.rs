//! Traces across hosts joined over a real `nats-server`: a call from one
//! host to another is one trace, from the caller's client span to the
//! serving host's server span, and a trace header added or altered in
//! transit is refused like a tampered payload and opens no span.
//!
//! This test binary installs, once, a global subscriber whose
//! tracing-opentelemetry layer exports to memory; tests run in parallel, so
//! each picks its own spans by trace id or by its hosts' subjects. (Without
//! any layer, no trace header is sent: see `lattice.rs`.)

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use common::*;
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use tracing::Instrument;
use waxosuit_claims::KeyPair;
use waxosuit_lattice::antiforgery::{self, Binding};
use waxosuit_lattice::propagation::{self, MAX_TRACEPARENT_LEN};
use waxosuit_lattice::protocol::{
    self, ErrorKind, PROTOCOL_VERSION, Response, WireEntity, WireInvocation,
};
use waxosuit_test_servers::CollectedSpans;
use waxosuit_test_servers::span_attribute;
use waxosuit_trace::FinishedSpan;

const WAIT: Duration = Duration::from_secs(5);

fn exporter() -> CollectedSpans {
    static EXPORTER: OnceLock<CollectedSpans> = OnceLock::new();
    EXPORTER
        .get_or_init(|| {
            let spans = CollectedSpans::default();
            tracing::subscriber::set_global_default(waxosuit_test_servers::span_recorder(&spans))
                .expect("no other global subscriber in this test binary");
            spans
        })
        .clone()
}

fn spans() -> Vec<FinishedSpan> {
    exporter().finished()
}

fn text(span: &FinishedSpan, key: &str) -> Option<String> {
    span_attribute(span, key).map(|v| v.as_str().into_owned())
}

fn named(name: &str) -> Vec<FinishedSpan> {
    spans().into_iter().filter(|s| s.name == name).collect()
}

/// The finished spans named `name` in `trace`, once there are `n`.
async fn wait_for(name: &str, trace: TraceId, n: usize) -> Vec<FinishedSpan> {
    let found = || {
        named(name)
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .collect::<Vec<_>>()
    };
    eventually(&format!("{n} `{name}` spans"), || async {
        found().len() >= n
    })
    .await;
    found()
}

fn ids(span: &tracing::Span) -> (TraceId, SpanId) {
    let sc = waxosuit_trace::span_context(span).unwrap();
    (sc.trace_id(), sc.span_id())
}

fn traceparent(trace: TraceId, span: SpanId) -> String {
    format!("00-{trace}-{span}-01")
}

fn headers(traceparent: Option<&str>, tracestate: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(tp) = traceparent {
        h.insert("traceparent", tp);
    }
    if let Some(ts) = tracestate {
        h.insert("tracestate", ts);
    }
    h
}

/// Publishes `body` with `headers` on `subject` naming `reply` and returns
/// the first answer there, decoded, or `None` within [`WAIT`].
async fn send_with(
    nats: &async_nats::Client,
    subject: &str,
    reply: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Option<Response> {
    let mut sub = nats.subscribe(reply.to_string()).await.unwrap();
    nats.publish_with_reply_and_headers(subject.to_string(), reply.to_string(), headers, body)
        .await
        .unwrap();
    let msg = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut sub))
        .await
        .ok()??;
    Some(protocol::decode("response", &msg.payload).expect("a decodable response"))
}

/// With the span exporter installed: two hosts, A and B, the echo actor on
/// B, and an attacker's client watching the subject A's calls to it use.
struct EchoOnB {
    net: Net,
    a: Node,
    b: Node,
    key: String,
    subject: String,
    nats: async_nats::Client,
    spy: async_nats::Subscriber,
}

async fn echo_on_b() -> EchoOnB {
    exporter();
    let net = Net::new(2);
    let a = net.node(0, &[]).await;
    let b = net.node(1, &[]).await;
    let (module, key) = net.echo_actor(&[]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    let subject = call_subject(&b, &key);
    let nats = net.attacker().await;
    let spy = nats.subscribe(subject.clone()).await.unwrap();
    synced_with_server(&nats).await;
    EchoOnB {
        net,
        a,
        b,
        key,
        subject,
        nats,
        spy,
    }
}

/// A fresh invocation of `echo` on `target`, signed by `host` for `subject`
/// and `reply`, binding the trace headers `(traceparent, tracestate)`.
fn signed(
    host: &KeyPair,
    target: &str,
    subject: &str,
    reply: &str,
    trace: (Option<&str>, Option<&str>),
) -> Bytes {
    let mut inv = WireInvocation {
        v: PROTOCOL_VERSION,
        id: nuid::next().to_string(),
        origin: WireEntity::Host(host.public_key()),
        target: WireEntity::Actor(target.to_string()),
        operation: "echo".into(),
        msg: b"hand-made".to_vec(),
        encoded_claims: String::new(),
        host_id: host.public_key(),
        chunked: None,
        session: None,
        session_token: None,
    };
    let binding = propagation::binding(trace.0, trace.1);
    inv.encoded_claims =
        antiforgery::sign_traced(host, &inv, Binding { subject, reply }, binding.as_deref())
            .unwrap();
    protocol::encode(&inv).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_another_host_is_one_trace_from_client_span_to_server_span() {
    let EchoOnB {
        net: _net,
        a,
        b,
        key,
        subject,
        nats: _nats,
        mut spy,
    } = echo_on_b().await;

    // Signed (first contact), then session-tagged, then chunked (1.5 MiB,
    // over the server's 1 MiB), then a guest error: all in one root span.
    let root = tracing::info_span!("test root");
    let big = vec![7u8; 3 << 19];
    async {
        for payload in [b"one".to_vec(), b"two".to_vec(), big.clone()] {
            let reply = a.lattice.call_actor(&key, "echo", payload.clone()).await;
            assert!(reply.unwrap() == payload, "the echo came back altered");
        }
        a.lattice
            .call_actor(&key, "fail", b"boom".to_vec())
            .await
            .unwrap_err();
    }
    .instrument(root.clone())
    .await;
    let (trace, root_id) = ids(&root);
    drop(root);

    let client_name = format!("lattice actor {key}");
    let server_name = format!("lattice serve actor {key}");
    let clients = wait_for(&client_name, trace, 4).await;
    let servers = wait_for(&server_name, trace, 4).await;
    assert_eq!((clients.len(), servers.len()), (4, 4));
    for client in &clients {
        assert_eq!(client.span_kind, SpanKind::Client);
        assert_eq!(
            client.parent_span_id, root_id,
            "the caller's span is its parent"
        );
        assert_eq!(text(client, "messaging.system").as_deref(), Some("nats"));
        assert_eq!(
            text(client, "messaging.destination.name").as_deref(),
            Some(subject.as_str())
        );
        assert_eq!(
            text(client, "waxosuit.lattice.target_host").as_deref(),
            Some(b.lattice.host_id())
        );
        // Exactly one server span on B is its child, in the same trace.
        let children: Vec<_> = servers
            .iter()
            .filter(|s| s.parent_span_id == client.span_context.span_id())
            .collect();
        assert_eq!(children.len(), 1, "{client:?}");
        let server = children[0];
        assert_eq!(server.span_kind, SpanKind::Server);
        assert!(server.parent_span_is_remote);
        assert_eq!(
            text(server, "waxosuit.lattice.origin_host").as_deref(),
            Some(a.lattice.host_id())
        );
        assert_eq!(
            text(server, "messaging.destination.name").as_deref(),
            Some(subject.as_str())
        );
        assert_eq!(
            span_attribute(server, "waxosuit.operation"),
            span_attribute(client, "waxosuit.operation")
        );
        assert_eq!(
            span_attribute(server, "waxosuit.lattice.chunked"),
            span_attribute(client, "waxosuit.lattice.chunked")
        );
        match text(client, "waxosuit.operation").as_deref() {
            Some("echo") => {
                assert_eq!(client.status, Status::Unset);
                assert_eq!(server.status, Status::Unset);
            }
            Some("fail") => {
                for span in [client, server] {
                    let Status::Error { description } = &span.status else {
                        panic!("a failed call's span is not an error: {span:?}");
                    };
                    assert!(
                        description.contains("failed to handle `fail`"),
                        "{description}"
                    );
                }
            }
            other => panic!("unexpected operation {other:?}"),
        }
    }
    let chunked: Vec<_> = clients
        .iter()
        .map(|c| span_attribute(c, "waxosuit.lattice.chunked"))
        .collect();
    assert_eq!(
        chunked
            .iter()
            .filter(|c| **c == Some(Value::Bool(true)))
            .count(),
        1,
        "{chunked:?}"
    );
    assert_eq!(
        chunked
            .iter()
            .filter(|c| **c == Some(Value::Bool(false)))
            .count(),
        3,
        "{chunked:?}"
    );

    // On the wire: the first call's header names its client span.
    let first = next(&mut spy).await;
    let sent = first.headers.expect("a traced call carries headers");
    let tp = sent.get("traceparent").expect("a traceparent header");
    let parsed = waxosuit_trace::parse_traceparent(tp.as_str(), None).unwrap();
    assert_eq!(parsed.trace_id(), trace);
    assert!(
        clients
            .iter()
            .any(|c| c.span_context.span_id() == parsed.span_id()),
        "the header names one of the client spans"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_call_from_an_actor_is_a_client_span_on_its_host_and_a_server_span_on_the_provider_host()
 {
    exporter();
    let net = Net::new(2);
    let b = net.node(0, &[]).await;
    let c = net.node(1, &[]).await;
    let pinger = Pinger::new("C");
    c.host
        .add_provider("default", pinger.clone())
        .await
        .unwrap();
    let (module, key) = net.echo_actor(&[PING]);
    b.host.add_actor(&module, "echo", None).await.unwrap();
    b.lattice
        .put_binding(&key, PING, "", Default::default())
        .await
        .unwrap();
    eventually("C binds the remote actor", || async {
        pinger.bound.lock().unwrap().contains(&key)
    })
    .await;
    assert_eq!(
        b.host.call_actor(&key, "ping", b"").await.unwrap(),
        b"pong from C"
    );
    let provider_subject = {
        let s = c.lattice.subjects();
        s.at(&s.provider(PING, "default"), c.lattice.host_id())
    };
    let client = format!("lattice {PING} default");
    eventually("B's client span for the provider call", || async {
        named(&client).iter().any(|s| {
            text(s, "messaging.destination.name").as_deref() == Some(provider_subject.as_str())
        })
    })
    .await;
    let client = named(&client)
        .into_iter()
        .find(|s| {
            text(s, "messaging.destination.name").as_deref() == Some(provider_subject.as_str())
        })
        .unwrap();
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(text(&client, "waxosuit.operation").as_deref(), Some("Ping"));
    assert_eq!(
        text(&client, "waxosuit.lattice.target_host").as_deref(),
        Some(c.lattice.host_id())
    );
    let servers = wait_for(
        &format!("lattice serve {PING} default"),
        client.span_context.trace_id(),
        1,
    )
    .await;
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].parent_span_id, client.span_context.span_id());
    assert_eq!(servers[0].span_kind, SpanKind::Server);
    assert_eq!(
        text(&servers[0], "waxosuit.lattice.origin_host").as_deref(),
        Some(b.lattice.host_id())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_header_added_altered_or_removed_in_transit_is_refused_and_opens_no_span() {
    let EchoOnB {
        net,
        a,
        b,
        key,
        subject,
        nats,
        mut spy,
    } = echo_on_b().await;

    let root = tracing::info_span!("test root");
    async {
        for payload in [b"one".to_vec(), b"two".to_vec()] {
            a.lattice.call_actor(&key, "echo", payload).await.unwrap();
        }
    }
    .instrument(root)
    .await;
    let signed_call = next(&mut spy).await;
    let tagged_call = next(&mut spy).await;
    let first: WireInvocation = protocol::decode("invocation", &signed_call.payload).unwrap();
    assert!(!first.encoded_claims.is_empty(), "first contact is signed");
    let later: WireInvocation = protocol::decode("invocation", &tagged_call.payload).unwrap();
    assert!(later.session.is_some(), "later calls are tagged");
    eventually("B's two server spans", || async {
        server_spans(&subject).len() == 2
    })
    .await;

    // The captured calls (already run once), published again to the same
    // inbox with their trace header altered or removed. Were the headers
    // not covered, both would pass authentication and be refused only as
    // replays; as it is, they are refused as tampered.
    let evil_trace = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let evil = traceparent(evil_trace, SpanId::from_hex("b7ad6b7169203331").unwrap());
    let before = served(&b.host, "echo");
    for (captured, expected) in [
        (&signed_call, "trace headers"),
        (&tagged_call, "does not match"),
    ] {
        let reply = captured.reply.clone().unwrap().to_string();
        let mut altered = captured.headers.clone().unwrap();
        altered.insert("traceparent", evil.as_str());
        let mut with_state = captured.headers.clone().unwrap();
        with_state.insert("tracestate", "evil=1");
        for h in [altered, with_state, HeaderMap::new()] {
            let r = send_with(&nats, &subject, &reply, h, captured.payload.clone())
                .await
                .expect("a refusal");
            let e = r.error.expect("refused");
            assert_eq!(e.kind, ErrorKind::Forged, "{}", e.message);
            assert!(e.message.contains(expected), "{}", e.message);
        }
    }
    assert_eq!(b.lattice.refusals("invocation", "replayed"), 0);
    assert_eq!(b.lattice.refusals("invocation", "mismatch"), 3);
    assert_eq!(b.lattice.refusals("invocation", "bad_signature"), 3);

    // Fresh calls signed with A's key (never seen by B, so no replay guard
    // is involved): one signed for trace T1 but sent with T2, one signed
    // without a trace context but sent with one added, one with an
    // oversized header: refused. The same call sent as signed runs, and
    // its server span continues T1.
    let t1_trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let t1_parent = SpanId::from_hex("00f067aa0ba902b7").unwrap();
    let t1 = traceparent(t1_trace, t1_parent);
    let host_a = net.identity(0);
    let cases: [(Option<&str>, HeaderMap, &str); 3] = [
        (Some(&t1), headers(Some(&evil), None), "trace headers"),
        (None, headers(Some(&evil), None), "trace headers"),
        (
            Some(&t1),
            headers(
                Some(&format!("{t1}-{}", "0".repeat(MAX_TRACEPARENT_LEN))),
                None,
            ),
            "bytes long",
        ),
    ];
    for (bound, sent, expected) in cases {
        let reply = nats.new_inbox();
        let body = signed(&host_a, &key, &subject, &reply, (bound, None));
        let r = send_with(&nats, &subject, &reply, sent, body)
            .await
            .unwrap();
        let e = r.error.expect("refused");
        assert!(e.message.contains(expected), "{}", e.message);
    }
    assert_eq!(served(&b.host, "echo"), before, "a tampered call ran");
    let reply = nats.new_inbox();
    let body = signed(&host_a, &key, &subject, &reply, (Some(&t1), Some("k=v")));
    let r = send_with(
        &nats,
        &subject,
        &reply,
        headers(Some(&t1), Some("k=v")),
        body,
    )
    .await
    .unwrap();
    assert_eq!(r.error, None);
    assert_eq!(r.msg, b"hand-made");
    let continued = wait_for(&format!("lattice serve actor {key}"), t1_trace, 1).await;
    assert_eq!(continued[0].parent_span_id, t1_parent);
    assert_eq!(continued[0].span_context.trace_state().get("k"), Some("v"));

    // No server span for anything refused: B has exactly the three it ran,
    // and none in the trace the attacker named.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server_spans(&subject).len(), 3);
    assert!(
        spans()
            .iter()
            .all(|s| s.span_context.trace_id() != evil_trace),
        "a span continued the attacker's trace"
    );
}

/// The server spans of calls received on `subject`.
fn server_spans(subject: &str) -> Vec<FinishedSpan> {
    spans()
        .into_iter()
        .filter(|s| {
            s.span_kind == SpanKind::Server
                && text(s, "messaging.destination.name").as_deref() == Some(subject)
        })
        .collect()
}
