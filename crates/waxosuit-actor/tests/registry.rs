//! Dispatch by operation name, typed decoding and error texts.

use serde::{Deserialize, Serialize};
use waxosuit_actor::codec::core::HealthRequest;
use waxosuit_actor::codec::messaging::BrokerMessage;
use waxosuit_actor::testing::{FakeHost, http_request};
use waxosuit_actor::{Ctx, Error, Registry, Result, http};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Add {
    a: i32,
    b: i32,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Sum {
    total: i32,
}

fn add(_: &Ctx, req: Add) -> Result<Sum> {
    let total = req.a.checked_add(req.b).ok_or("overflow")?;
    Ok(Sum { total })
}

fn registry() -> Registry {
    Registry::from_init(|r| {
        r.on::<Add, Sum>("Add", add)
            .on_raw("Reverse", |_, bytes| {
                Ok(bytes.iter().rev().copied().collect())
            })
            .on_http_request(|_, req| {
                Ok(http::Response {
                    body: req.path.into_bytes(),
                    ..http::Response::ok()
                })
            })
            .on_message(|ctx, msg| {
                ctx.console_log(&format!("got {}", msg.subject));
                Ok(())
            });
    })
}

#[test]
fn dispatches_typed_and_raw_operations_by_name() {
    let fake = FakeHost::new();
    let registry = registry();
    let sum: Sum = registry
        .invoke(&fake.ctx(), "Add", &Add { a: 2, b: 40 })
        .unwrap();
    assert_eq!(sum, Sum { total: 42 });

    let reply = registry.dispatch(&fake.ctx(), "Reverse", b"abc").unwrap();
    assert_eq!(reply, b"cba");

    let response: http::Response = registry
        .invoke(
            &fake.ctx(),
            "HandleRequest",
            &http_request("GET", "/x?y=1", ""),
        )
        .unwrap();
    assert_eq!(response.status_code, 200);
    assert_eq!(response.body, b"/x");

    let message = BrokerMessage {
        subject: "news".into(),
        reply_to: String::new(),
        body: b"hi".to_vec(),
    };
    let payload = waxosuit_codec::serialize(&message).unwrap();
    let reply = registry
        .dispatch(&fake.ctx(), "DeliverMessage", &payload)
        .unwrap();
    assert!(reply.is_empty(), "notifications reply with nothing");
    assert_eq!(fake.console(), ["got news"]);
}

#[test]
fn wire_payload_is_the_codec_encoding() {
    // The bytes a waSCC provider would send: a struct map {"a": 1, "b": 2}.
    let payload = [0x82, 0xa1, b'a', 0x01, 0xa1, b'b', 0x02];
    let reply = registry()
        .dispatch(&FakeHost::new().ctx(), "Add", &payload)
        .unwrap();
    assert_eq!(reply, [0x81, 0xa5, b't', b'o', b't', b'a', b'l', 0x03]);
}

#[test]
fn unknown_operation_is_a_guest_error_naming_it() {
    let err = registry()
        .dispatch(&FakeHost::new().ctx(), "Nope", b"")
        .unwrap_err();
    assert!(matches!(&err, Error::UnknownOperation { operation } if operation == "Nope"));
    assert_eq!(
        err.to_string(),
        r#"no handler registered for operation "Nope""#
    );
}

#[test]
fn undecodable_payload_never_reaches_the_handler() {
    let fake = FakeHost::new();
    let registry = Registry::from_init(|r| {
        r.on::<Add, Sum>("Add", |ctx, req| {
            ctx.console_log("handler ran");
            add(ctx, req)
        });
    });
    // A map missing field "b".
    let err = registry
        .dispatch(&fake.ctx(), "Add", &[0x81, 0xa1, b'a', 0x01])
        .unwrap_err();
    assert!(matches!(&err, Error::InvalidPayload { operation, .. } if operation == "Add"));
    let text = err.to_string();
    assert!(
        text.starts_with(r#"invalid payload for operation "Add": "#),
        "{text}"
    );
    assert!(text.contains("Add"), "{text}");
    assert!(fake.console().is_empty());

    // Not MessagePack at all.
    let err = registry.dispatch(&fake.ctx(), "Add", &[0xc1]).unwrap_err();
    assert!(matches!(err, Error::InvalidPayload { .. }));

    // Trailing garbage after a valid request.
    let mut payload = waxosuit_codec::serialize(&Add { a: 1, b: 2 }).unwrap();
    payload.push(0);
    let err = registry.dispatch(&fake.ctx(), "Add", &payload).unwrap_err();
    assert!(matches!(err, Error::InvalidPayload { .. }));
}

#[test]
fn handler_errors_keep_their_text() {
    let err = registry()
        .invoke::<_, Sum>(&FakeHost::new().ctx(), "Add", &Add { a: i32::MAX, b: 1 })
        .unwrap_err();
    assert!(matches!(err, Error::Handler(_)));
    assert_eq!(err.to_string(), "overflow");
    assert_eq!(Error::msg(format_args!("bad {}", 7)).to_string(), "bad 7");
    assert_eq!(Error::from(String::from("s")).to_string(), "s");
}

#[test]
fn host_errors_propagate_through_handlers_with_context() {
    let fake = FakeHost::new();
    fake.fail("wascc:keyvalue", "Add", "store offline");
    let registry = Registry::from_init(|r| {
        r.on_raw("Count", |ctx, _| {
            let n = ctx.kv().add("n", 1)?;
            Ok(n.to_string().into_bytes())
        });
    });
    let err = registry.dispatch(&fake.ctx(), "Count", b"").unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"host call Add on wascc:keyvalue (binding "default") failed: store offline"#
    );
}

#[test]
fn health_is_answered_by_default_and_can_be_replaced() {
    let fake = FakeHost::new();
    let health = waxosuit_codec::serialize(&HealthRequest { placeholder: true }).unwrap();

    let registry = Registry::new();
    assert!(registry.handles("HealthRequest"));
    assert_eq!(registry.operations().collect::<Vec<_>>(), ["HealthRequest"]);
    assert_eq!(
        registry
            .dispatch(&fake.ctx(), "HealthRequest", &health)
            .unwrap(),
        b""
    );

    let sick = Registry::from_init(|r| {
        r.on_health(|_, _| Err("database unreachable".into()));
    });
    let err = sick
        .dispatch(&fake.ctx(), "HealthRequest", &health)
        .unwrap_err();
    assert_eq!(err.to_string(), "database unreachable");
}

#[test]
fn registering_again_replaces_the_handler() {
    let fake = FakeHost::new();
    let mut registry = Registry::new();
    registry.on_raw("Op", |_, _| Ok(b"first".to_vec()));
    registry.on_raw("Op", |_, _| Ok(b"second".to_vec()));
    assert_eq!(
        registry.dispatch(&fake.ctx(), "Op", b"").unwrap(),
        b"second"
    );
    let debug = format!("{registry:?}");
    assert!(debug.contains("\"HealthRequest\", \"Op\""), "{debug}");
}

#[test]
fn response_encoding_errors_are_reported() {
    use std::collections::HashMap;
    // JSON cannot have non-string keys; MessagePack can, so use a type whose
    // Serialize fails outright.
    struct Unserializable;
    impl Serialize for Unserializable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let registry = Registry::from_init(|r| {
        r.on::<HashMap<String, String>, Unserializable>("Bad", |_, _| Ok(Unserializable));
    });
    let payload = waxosuit_codec::serialize(&HashMap::<String, String>::new()).unwrap();
    let err = registry
        .dispatch(&FakeHost::new().ctx(), "Bad", &payload)
        .unwrap_err();
    assert!(matches!(err, Error::Codec(_)));
    assert!(err.to_string().contains("refused"), "{err}");
}

#[test]
fn http_handlers_speak_the_original_wire_format() {
    // Golden encodings of wascc-codec 0.8.1 (spec §13.2): the request a
    // waSCC HTTP server provider sends, and `Response::ok()`.
    let mut request = vec![0x85];
    for (key, value) in [("method", "GET"), ("path", "/foo"), ("queryString", "a=1")] {
        push_str(&mut request, key);
        push_str(&mut request, value);
    }
    push_str(&mut request, "header");
    request.push(0x80);
    push_str(&mut request, "body");
    request.extend_from_slice(&[0xc4, 0x02, b'h', b'i']);

    let registry = Registry::from_init(|r| {
        r.on_http_request(|_, req| {
            assert_eq!(
                (req.path.as_str(), req.query_string.as_str()),
                ("/foo", "a=1")
            );
            assert_eq!(req.body, b"hi");
            Ok(http::Response::ok())
        });
    });
    let reply = registry
        .dispatch(&FakeHost::new().ctx(), "HandleRequest", &request)
        .unwrap();

    let mut expected = vec![0x84];
    push_str(&mut expected, "statusCode");
    expected.extend_from_slice(&[0xcc, 0xc8]);
    push_str(&mut expected, "status");
    push_str(&mut expected, "OK");
    push_str(&mut expected, "header");
    expected.push(0x80);
    push_str(&mut expected, "body");
    expected.extend_from_slice(&[0xc4, 0x00]);
    assert_eq!(reply, expected);
}

/// Appends a MessagePack fixstr.
fn push_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(0xa0 | u8::try_from(s.len()).unwrap());
    buf.extend_from_slice(s.as_bytes());
}
