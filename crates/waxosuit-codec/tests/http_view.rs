//! `ResponseView::decode` and `RequestWriter` against serde: the in-place
//! paths must read and write exactly what `deserialize` and `serialize` do.
//!
//! * Any `Response` written by `serialize` is read in place, to the same
//!   value.
//! * Without limits, `decode` and `deserialize` agree on every input
//!   (random bytes, damaged encodings, and replies assembled from the
//!   layouts serde accepts: arrays, unknown keys, other integer and string
//!   forms, repeated keys): the same value, or the same error.
//! * Within limits, `decode` accepts a subset of what `deserialize`
//!   accepts, with the same values; what it refuses on top is refused with
//!   a limit error, and what `deserialize` refuses it refuses too.
//! * Any `Request` written by `RequestWriter` decodes to the request it
//!   describes, and is byte-identical to `serialize`'s when the header map
//!   has at most one entry (larger maps have no fixed order).

use std::collections::HashMap;

use proptest::prelude::*;
use waxosuit_codec::http::{
    Request, RequestHead, RequestWriter, Response, ResponseBody, ResponseLimits, ResponseView,
};
use waxosuit_codec::{CodecError, deserialize, serialize};

fn response() -> impl Strategy<Value = Response> {
    (
        any::<u32>(),
        ".{0,40}",
        prop::collection::hash_map(".{0,12}", ".{0,40}", 0..12),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(status_code, status, header, body)| Response {
            status_code,
            status,
            header,
            body,
        })
}

/// Checks `decode` against `deserialize` on `bytes`, unlimited and within
/// `limits`.
fn agrees(bytes: &[u8], limits: &ResponseLimits) -> Result<(), TestCaseError> {
    let serde = deserialize::<Response>(bytes);
    let unlimited = ResponseView::decode(bytes, &ResponseLimits::UNLIMITED);
    prop_assert_eq!(
        unlimited.map(ResponseView::into_response),
        serde.clone(),
        "unlimited decode and deserialize disagree"
    );
    match (ResponseView::decode(bytes, limits), serde) {
        (Ok(view), Ok(expected)) => {
            prop_assert!(view.headers().len() <= limits.max_headers);
            let bytes: usize = view.headers().map(|(n, v)| n.len() + v.len()).sum();
            prop_assert!(bytes <= limits.max_header_bytes);
            prop_assert_eq!(view.into_response(), expected);
        }
        (Ok(view), Err(e)) => {
            prop_assert!(false, "decode accepted {view:?}, deserialize refused: {e}");
        }
        (Err(e), Ok(_)) => prop_assert!(
            matches!(
                e,
                CodecError::TooManyHeaders { .. } | CodecError::HeadersTooLarge { .. }
            ),
            "decode refused what deserialize accepts, and not for a limit: {e}"
        ),
        (Err(e), Err(expected)) => {
            if !matches!(
                e,
                CodecError::TooManyHeaders { .. } | CodecError::HeadersTooLarge { .. }
            ) {
                prop_assert_eq!(e, expected);
            }
        }
    }
    Ok(())
}

/// Limits that bite as often as not.
fn limits() -> impl Strategy<Value = ResponseLimits> {
    prop_oneof![(0usize..8, 0usize..40), (8usize..10_000, 40usize..100_000)].prop_map(
        |(max_headers, max_header_bytes)| ResponseLimits {
            max_headers,
            max_header_bytes,
        },
    )
}

/// A MessagePack value of the kinds a `Response` field may hold, or not.
#[derive(Debug, Clone)]
enum Value {
    Nil,
    Uint(u64),
    Int(i64),
    Str(String),
    Bin(Vec<u8>),
    Float(f64),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
}

fn write(buf: &mut Vec<u8>, value: &Value) {
    use rmp::encode;
    match value {
        Value::Nil => encode::write_nil(buf).unwrap(),
        Value::Uint(v) => {
            encode::write_uint(buf, *v).unwrap();
        }
        Value::Int(v) => {
            encode::write_sint(buf, *v).unwrap();
        }
        Value::Str(s) => encode::write_str(buf, s).unwrap(),
        Value::Bin(b) => encode::write_bin(buf, b).unwrap(),
        Value::Float(f) => encode::write_f64(buf, *f).unwrap(),
        Value::Array(items) => {
            encode::write_array_len(buf, items.len() as u32).unwrap();
            for item in items {
                write(buf, item);
            }
        }
        Value::Map(entries) => {
            encode::write_map_len(buf, entries.len() as u32).unwrap();
            for (k, v) in entries {
                write(buf, k);
                write(buf, v);
            }
        }
    }
}

fn scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Nil),
        any::<u64>().prop_map(Value::Uint),
        (0u64..600).prop_map(Value::Uint),
        any::<i64>().prop_map(Value::Int),
        (-5i64..600).prop_map(Value::Int),
        "[a-zA-Z-]{0,6}".prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..6).prop_map(Value::Bin),
        any::<f64>().prop_map(Value::Float),
    ]
    .boxed()
}

fn header_map() -> BoxedStrategy<Value> {
    let text = prop_oneof![
        8 => "[a-c]{0,3}".prop_map(Value::Str),
        2 => "[a-c]{0,3}".prop_map(|s| Value::Bin(s.into_bytes())),
        1 => prop::collection::vec(any::<u8>(), 0..3).prop_map(Value::Bin),
        1 => scalar(),
    ];
    prop::collection::vec((text.clone(), text), 0..6)
        .prop_map(Value::Map)
        .boxed()
}

/// Each field's value: mostly a form serde accepts for it, sometimes not.
fn status_code() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (0..=u64::from(u32::MAX)).prop_map(Value::Uint),
        2 => (0i64..1000).prop_map(Value::Int),
        1 => scalar(),
    ]
    .boxed()
}

fn status() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => "[ -~]{0,40}".prop_map(Value::Str),
        1 => "[a-z]{0,5}".prop_map(|s| Value::Bin(s.into_bytes())),
        1 => scalar(),
    ]
    .boxed()
}

fn header() -> BoxedStrategy<Value> {
    prop_oneof![6 => header_map(), 1 => scalar()].boxed()
}

fn body() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bin),
        1 => "[a-z]{0,5}".prop_map(Value::Str),
        1 => prop::collection::vec((0u64..256).prop_map(Value::Uint), 0..4).prop_map(Value::Array),
        1 => scalar(),
    ]
    .boxed()
}

/// A field key: its name as `str` mostly, else as `bin` or as its index,
/// which serde accepts too.
fn key(name: &'static str, index: u64) -> BoxedStrategy<Value> {
    prop_oneof![
        8 => Just(Value::Str(name.to_string())),
        1 => Just(Value::Bin(name.as_bytes().to_vec())),
        1 => Just(Value::Uint(index)),
    ]
    .boxed()
}

/// Replies assembled from the layouts serde accepts and their near misses:
/// a map of the fields in any order (optional ones missing, a key repeated,
/// an unknown key added) or an array of them (trailing ones missing), and
/// sometimes a byte after the value.
fn assembled() -> impl Strategy<Value = Vec<u8>> {
    let fields = (
        (key("statusCode", 0), status_code()),
        (key("status", 1), status()),
        prop::option::of((key("header", 2), header())),
        prop::option::of((key("body", 3), body())),
        prop::option::of((
            prop_oneof![
                Just(Value::Str("other".into())),
                Just(Value::Uint(7)),
                Just(Value::Nil)
            ],
            field_value(),
        )),
        any::<bool>(),
    )
        .prop_flat_map(|(code, status, header, body, extra, repeat)| {
            let mut fields = vec![code, status];
            fields.extend(header);
            fields.extend(body);
            fields.extend(extra);
            if repeat {
                let again = fields[0].clone();
                fields.push(again);
            }
            Just(fields).prop_shuffle()
        });
    let as_map = fields.prop_map(Value::Map);
    let as_array = (status_code(), status(), header(), body(), 0usize..5).prop_map(
        |(code, status, header, body, len)| {
            let mut items = vec![code, status, header, body];
            items.truncate(len);
            Value::Array(items)
        },
    );
    (
        prop_oneof![3 => as_map, 1 => as_array],
        prop::option::weighted(0.1, scalar()),
    )
        .prop_map(|(value, trailing)| {
            let mut buf = Vec::new();
            write(&mut buf, &value);
            if let Some(extra) = trailing {
                write(&mut buf, &extra);
            }
            buf
        })
}

/// Any value, for a field serde ignores.
fn field_value() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => scalar(),
        2 => header_map(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
    ]
    .boxed()
}

/// A `Response` encoding with a few bytes changed, cut or inserted.
fn damaged() -> impl Strategy<Value = Vec<u8>> {
    (
        response(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    )
        .prop_map(|(response, edits)| {
            let mut bytes = serialize(&response).unwrap();
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn serialized_responses_are_read_in_place_to_the_same_value(response in response()) {
        let bytes = serialize(&response).unwrap();
        let view = ResponseView::decode(&bytes, &ResponseLimits::UNLIMITED).unwrap();
        prop_assert_eq!(view.body(), &response.body[..]);
        prop_assert_eq!(view.clone().into_response(), response);
        prop_assert!(matches!(view.into_body(), ResponseBody::InReply(_)));
    }

    #[test]
    fn random_bytes_are_judged_like_deserialize(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        limits in limits(),
    ) {
        agrees(&bytes, &limits)?;
    }

    #[test]
    fn damaged_responses_are_judged_like_deserialize(bytes in damaged(), limits in limits()) {
        agrees(&bytes, &limits)?;
    }

    #[test]
    fn assembled_replies_are_judged_like_deserialize(bytes in assembled(), limits in limits()) {
        agrees(&bytes, &limits)?;
    }

    #[test]
    fn written_requests_decode_to_what_they_describe(
        method in "[A-Z]{1,8}",
        path in ".{0,300}",
        query_string in ".{0,40}",
        fields in prop::collection::vec(("[a-d]{1,2}", prop::collection::vec(any::<u8>(), 0..40)), 0..8),
        body in prop::collection::vec(any::<u8>(), 0..600),
        stream in any::<bool>(),
    ) {
        // Grouped by name, as an HTTP header map yields them.
        let mut fields = fields;
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expected: HashMap<String, String> = HashMap::new();
        for (name, value) in &fields {
            let value = String::from_utf8_lossy(value);
            expected
                .entry(name.clone())
                .and_modify(|joined| {
                    joined.push_str(", ");
                    joined.push_str(&value);
                })
                .or_insert_with(|| value.into_owned());
        }
        let head = RequestHead { method: &method, path: &path, query_string: &query_string, body_capacity: 0 };
        let writer = RequestWriter::new(
            &head,
            expected.len(),
            fields.iter().map(|(n, v)| (n.as_str(), v.as_slice())),
        ).unwrap();
        let bytes = if stream {
            let mut streamed = writer.stream_body(None).unwrap();
            for chunk in body.chunks(100) {
                streamed.push(chunk).unwrap();
            }
            streamed.finish().unwrap()
        } else {
            writer.finish(&body).unwrap()
        };
        let request = Request { method, path, query_string, header: expected, body };
        if request.header.len() <= 1 {
            prop_assert_eq!(&bytes, &serialize(&request).unwrap());
        }
        prop_assert_eq!(deserialize::<Request>(&bytes).unwrap(), request);
    }
}

/// A reply that announces four billion headers and holds none costs what
/// its bytes cost: the count is the input's word, not a size to reserve
/// (the fuzzer's `http_reply` found `decode` reserving 120 GB for it).
#[test]
fn an_announced_header_count_reserves_nothing_it_does_not_hold() {
    let mut reply = Vec::new();
    reply.push(0x83); // map of 3
    for (key, value) in [
        ("statusCode", &[0xcc, 200][..]),
        ("status", &[0xa2, b'O', b'K']),
    ] {
        reply.push(0xa0 | key.len() as u8);
        reply.extend_from_slice(key.as_bytes());
        reply.extend_from_slice(value);
    }
    reply.push(0xa6);
    reply.extend_from_slice(b"header");
    reply.extend_from_slice(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'a']);
    let unlimited = ResponseView::decode(&reply, &ResponseLimits::UNLIMITED);
    let reference = deserialize::<Response>(&reply);
    assert!(unlimited.is_err() && reference.is_err(), "{unlimited:?}");
}
