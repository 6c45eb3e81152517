//! Wire layout, round trips, liberal decoding and error behaviour of every
//! contract type.
//!
//! Round trips alone would pass even if a field were renamed on both sides,
//! so `assert_wire` also decodes the encoding generically and checks each
//! map key, in order, together with the MessagePack kind of its value (`bin`
//! vs `array` matters to old peers).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use proptest::prelude::*;
use serde::de::{DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use waxosuit_codec::capabilities::{
    CapabilityDescriptor, OP_GET_CAPABILITY_DESCRIPTOR, OperationDescriptor, OperationDirection,
};
use waxosuit_codec::invocation::{Entity, Invocation, InvocationResponse};
use waxosuit_codec::{
    CodecError, SYSTEM_ACTOR, blobstore, core, deserialize, eventstreams, extras, http, keyvalue,
    logging, messaging, serialize,
};

// ---------------------------------------------------------------------------
// Generic inspection of an encoding
// ---------------------------------------------------------------------------

/// The MessagePack kind of a value, as seen through serde.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nil,
    Bool,
    Int,
    Str,
    Bin,
    Array,
    Map,
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KindVisitor;
        impl<'de> Visitor<'de> for KindVisitor {
            type Value = Kind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any MessagePack value")
            }
            fn visit_unit<E>(self) -> Result<Kind, E> {
                Ok(Kind::Nil)
            }
            fn visit_none<E>(self) -> Result<Kind, E> {
                Ok(Kind::Nil)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
                Ok(Kind::Bool)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
                Ok(Kind::Int)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
                Ok(Kind::Int)
            }
            fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
                Ok(Kind::Str)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Kind, E> {
                Ok(Kind::Bin)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Kind::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Kind::Map)
            }
        }
        d.deserialize_any(KindVisitor)
    }
}

/// The top-level map of an encoding: keys in order with their value kinds.
struct Layout(Vec<(String, Kind)>);

impl<'de> Deserialize<'de> for Layout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct LayoutVisitor;
        impl<'de> Visitor<'de> for LayoutVisitor {
            type Value = Layout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map with string keys")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Layout, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Kind>()? {
                    entries.push(entry);
                }
                Ok(Layout(entries))
            }
        }
        d.deserialize_map(LayoutVisitor)
    }
}

use Kind::{Array, Bin, Bool, Int, Map, Nil, Str};

/// Asserts the encoding of `value` is a map with exactly `layout` and that it
/// decodes back to `value`.
fn assert_wire<T>(value: &T, layout: &[(&str, Kind)])
where
    T: Serialize + DeserializeOwned + PartialEq + fmt::Debug,
{
    let bytes = serialize(value).expect("serialize");
    let Layout(actual) = rmp_serde::from_slice(&bytes).expect("encoding is a map");
    let actual: Vec<(&str, Kind)> = actual.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        actual,
        layout,
        "wire layout of {}",
        std::any::type_name::<T>()
    );
    let back: T = deserialize(&bytes).expect("deserialize");
    assert_eq!(&back, value);
}

fn headers() -> HashMap<String, String> {
    HashMap::from([
        ("accept".to_string(), "application/json".to_string()),
        ("x-dummy".to_string(), "value".to_string()),
    ])
}

// ---------------------------------------------------------------------------
// Layout + round trip of every contract type
// ---------------------------------------------------------------------------

#[test]
fn http_types() {
    assert_wire(
        &http::Request {
            method: "POST".into(),
            path: "/users/7".into(),
            query_string: "a=1&b=2".into(),
            header: headers(),
            body: b"{\"name\":\"x\"}".to_vec(),
        },
        &[
            ("method", Str),
            ("path", Str),
            ("queryString", Str),
            ("header", Map),
            ("body", Bin),
        ],
    );
    assert_wire(
        &http::Response {
            status_code: 201,
            status: "Created".into(),
            header: headers(),
            body: vec![0, 1, 2, 255],
        },
        &[
            ("statusCode", Int),
            ("status", Str),
            ("header", Map),
            ("body", Bin),
        ],
    );
}

#[test]
fn keyvalue_types() {
    let kv = [("key", Str), ("value", Str)];
    let key = [("key", Str)];
    assert_wire(&keyvalue::GetRequest { key: "k".into() }, &key);
    assert_wire(
        &keyvalue::GetResponse {
            value: "v".into(),
            exists: true,
        },
        &[("value", Str), ("exists", Bool)],
    );
    assert_wire(
        &keyvalue::SetRequest {
            key: "k".into(),
            value: "v".into(),
            expires_s: 3600,
        },
        &[("key", Str), ("value", Str), ("expires", Int)],
    );
    assert_wire(
        &keyvalue::SetResponse { value: "v".into() },
        &[("value", Str)],
    );
    assert_wire(&keyvalue::DelRequest { key: "k".into() }, &key);
    assert_wire(&keyvalue::DelResponse { key: "k".into() }, &key);
    assert_wire(
        &keyvalue::AddRequest {
            key: "counter".into(),
            value: -42,
        },
        &[("key", Str), ("value", Int)],
    );
    assert_wire(
        &keyvalue::AddResponse { value: i32::MIN },
        &[("value", Int)],
    );
    assert_wire(
        &keyvalue::ListPushRequest {
            key: "l".into(),
            value: "x".into(),
        },
        &kv,
    );
    assert_wire(
        &keyvalue::ListDelItemRequest {
            key: "l".into(),
            value: "x".into(),
        },
        &kv,
    );
    assert_wire(&keyvalue::ListClearRequest { key: "l".into() }, &key);
    assert_wire(
        &keyvalue::ListRangeRequest {
            key: "l".into(),
            start: 0,
            stop: -1,
        },
        &[("key", Str), ("start", Int), ("stop", Int)],
    );
    assert_wire(
        &keyvalue::ListRangeResponse {
            values: vec!["a".into(), "b".into()],
        },
        &[("values", Array)],
    );
    assert_wire(
        &keyvalue::ListResponse { new_count: 3 },
        &[("newCount", Int)],
    );
    assert_wire(
        &keyvalue::SetAddRequest {
            key: "s".into(),
            value: "m".into(),
        },
        &kv,
    );
    assert_wire(
        &keyvalue::SetRemoveRequest {
            key: "s".into(),
            value: "m".into(),
        },
        &kv,
    );
    assert_wire(&keyvalue::SetQueryRequest { key: "s".into() }, &key);
    assert_wire(
        &keyvalue::SetQueryResponse {
            values: vec!["m".into()],
        },
        &[("values", Array)],
    );
    assert_wire(
        &keyvalue::SetIntersectionRequest {
            keys: vec!["s1".into(), "s2".into()],
        },
        &[("keys", Array)],
    );
    assert_wire(
        &keyvalue::SetUnionRequest {
            keys: vec!["s1".into(), "s2".into()],
        },
        &[("keys", Array)],
    );
    assert_wire(
        &keyvalue::SetOperationResponse { new_count: 1 },
        &[("newCount", Int)],
    );
    assert_wire(&keyvalue::KeyExistsQuery { key: "k".into() }, &key);
}

#[test]
fn messaging_types() {
    assert_wire(
        &messaging::BrokerMessage {
            subject: "orders.new".into(),
            reply_to: "_INBOX.1".into(),
            body: b"payload".to_vec(),
        },
        &[("subject", Str), ("replyTo", Str), ("body", Bin)],
    );
    assert_wire(
        &messaging::RequestMessage {
            subject: "user.profile.175".into(),
            body: b"raw query bytes".to_vec(),
            timeout_ms: 100,
        },
        &[("subject", Str), ("body", Bin), ("timeout", Int)],
    );
}

#[test]
fn logging_types() {
    assert_wire(
        &logging::WriteLogRequest {
            level: logging::LEVEL_DEBUG,
            body: "hello".into(),
        },
        &[("level", Int), ("body", Str)],
    );
}

#[test]
fn extras_types() {
    assert_wire(
        &extras::GeneratorRequest {
            guid: false,
            sequence: false,
            random: true,
            min: 10,
            max: 20,
        },
        &[
            ("guid", Bool),
            ("sequence", Bool),
            ("random", Bool),
            ("min", Int),
            ("max", Int),
        ],
    );
    assert_wire(
        &extras::GeneratorResult {
            guid: Some("8f7e…".into()),
            sequence_number: u64::MAX,
            random_number: 7,
        },
        &[
            ("guid", Str),
            ("sequenceNumber", Int),
            ("randomNumber", Int),
        ],
    );
}

#[test]
fn blobstore_types() {
    let chunk = blobstore::FileChunk {
        sequence_no: 5,
        container: "photos".into(),
        id: "cat.jpg".into(),
        total_bytes: 53_400,
        chunk_size: 1024,
        context: Some("dl-1".into()),
        chunk_bytes: vec![1, 2, 3, 4, 5],
    };
    assert_wire(
        &chunk,
        &[
            ("sequenceNo", Int),
            ("container", Str),
            ("id", Str),
            ("totalBytes", Int),
            ("chunkSize", Int),
            ("context", Str),
            ("chunkBytes", Bin),
        ],
    );
    // `context: None` is left out entirely, not written as nil.
    assert_wire(
        &blobstore::FileChunk {
            context: None,
            ..chunk
        },
        &[
            ("sequenceNo", Int),
            ("container", Str),
            ("id", Str),
            ("totalBytes", Int),
            ("chunkSize", Int),
            ("chunkBytes", Bin),
        ],
    );
    assert_wire(
        &blobstore::Container {
            id: "photos".into(),
        },
        &[("id", Str)],
    );
    assert_wire(
        &blobstore::ContainerList {
            containers: vec![blobstore::Container { id: "a".into() }],
        },
        &[("containers", Array)],
    );
    let blob = blobstore::Blob {
        id: "cat.jpg".into(),
        container: "photos".into(),
        byte_size: 9,
    };
    assert_wire(&blob, &[("id", Str), ("container", Str), ("byteSize", Int)]);
    assert_wire(
        &blobstore::BlobList { blobs: vec![blob] },
        &[("blobs", Array)],
    );
    assert_wire(
        &blobstore::StreamRequest {
            id: "cat.jpg".into(),
            container: "photos".into(),
            chunk_size: 4096,
            context: Some("ctx".into()),
        },
        &[
            ("id", Str),
            ("container", Str),
            ("chunkSize", Int),
            ("context", Str),
        ],
    );
    assert_wire(
        &blobstore::StreamRequest {
            id: "cat.jpg".into(),
            container: "photos".into(),
            chunk_size: 4096,
            context: None,
        },
        &[("id", Str), ("container", Str), ("chunkSize", Int)],
    );
    assert_wire(
        &blobstore::Transfer {
            blob_id: "cat.jpg".into(),
            container: "photos".into(),
            chunk_size: 1024,
            total_size: 4096,
            total_chunks: 4,
            context: Some("ctx".into()),
        },
        &[
            ("blobId", Str),
            ("container", Str),
            ("chunkSize", Int),
            ("totalSize", Int),
            ("totalChunks", Int),
            ("context", Str),
        ],
    );
}

#[test]
fn eventstreams_types() {
    let event = eventstreams::Event {
        event_id: "1-0".into(),
        stream: "orders".into(),
        values: headers(),
    };
    assert_wire(
        &event,
        &[("eventId", Str), ("stream", Str), ("values", Map)],
    );
    assert_wire(
        &eventstreams::WriteResponse {
            event_id: "1-0".into(),
        },
        &[("eventId", Str)],
    );
    assert_wire(
        &eventstreams::StreamQuery {
            stream_id: "orders".into(),
            range: Some(eventstreams::TimeRange {
                min_time: 0,
                max_time: 1000,
            }),
            count: 42,
        },
        &[("streamId", Str), ("range", Map), ("count", Int)],
    );
    assert_wire(
        &eventstreams::StreamQuery {
            stream_id: "orders".into(),
            range: None,
            count: 0,
        },
        &[("streamId", Str), ("range", Nil), ("count", Int)],
    );
    assert_wire(
        &eventstreams::StreamResults {
            events: vec![event],
        },
        &[("events", Array)],
    );
    assert_wire(
        &eventstreams::TimeRange {
            min_time: 1,
            max_time: 2,
        },
        &[("minTime", Int), ("maxTime", Int)],
    );
}

#[test]
fn core_types() {
    assert_wire(
        &core::LiveUpdate {
            new_module: b"\0asm\x01\0\0\0".to_vec(),
        },
        &[("newModule", Array)],
    );
    assert_wire(
        &core::HealthRequest { placeholder: true },
        &[("placeholder", Bool)],
    );
    assert_wire(
        &core::CapabilityConfiguration {
            module: "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW".into(),
            values: HashMap::from([
                (
                    core::CONFIG_WASCC_CLAIMS_NAME.to_string(),
                    "demo".to_string(),
                ),
                ("PORT".to_string(), "8080".to_string()),
            ]),
        },
        &[("module", Str), ("values", Map)],
    );
}

fn sample_descriptor() -> CapabilityDescriptor {
    CapabilityDescriptor::builder()
        .id("wascc:testing")
        .name("test")
        .version("0.0.1")
        .revision(1)
        .long_description("this is a test")
        .with_operation(
            "OperationDumboDrop",
            OperationDirection::ToActor,
            "this is a test",
        )
        .with_operation("Up", OperationDirection::ToProvider, "")
        .with_operation("Either", OperationDirection::Both, "")
        .build()
}

#[test]
fn capability_types() {
    assert_wire(
        &sample_descriptor(),
        &[
            ("id", Str),
            ("name", Str),
            ("version", Str),
            ("revision", Int),
            ("long_description", Str),
            ("supported_operations", Array),
        ],
    );
    assert_wire(
        &OperationDescriptor::new("Get", OperationDirection::Both, "reads"),
        &[("name", Str), ("direction", Map), ("doctext", Str)],
    );
}

#[test]
fn descriptor_builder_sets_every_field() {
    let d = sample_descriptor();
    assert_eq!(d.id, "wascc:testing");
    assert_eq!(d.name, "test");
    assert_eq!(d.version, "0.0.1");
    assert_eq!(d.revision, 1);
    assert_eq!(d.long_description, "this is a test");
    assert_eq!(
        d.supported_operations[0],
        OperationDescriptor {
            name: "OperationDumboDrop".into(),
            direction: OperationDirection::ToActor,
            doctext: "this is a test".into(),
        }
    );
    assert_eq!(d.supported_operations.len(), 3);
}

#[test]
fn operation_directions_use_their_variant_index() {
    assert_eq!(
        serialize(&OperationDirection::ToActor).unwrap(),
        [0x81, 0x00, 0xc0]
    );
    assert_eq!(
        serialize(&OperationDirection::ToProvider).unwrap(),
        [0x81, 0x01, 0xc0]
    );
    assert_eq!(
        serialize(&OperationDirection::Both).unwrap(),
        [0x81, 0x02, 0xc0]
    );
}

#[test]
fn invocation_types() {
    let invocation = Invocation {
        origin: Entity::Capability {
            capid: "wascc:http_server".into(),
            binding: "default".into(),
        },
        target: Entity::Actor("MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW".into()),
        operation: http::OP_HANDLE_REQUEST.into(),
        msg: vec![0x80, 0xff, 0x00],
        id: "0f8b6f5e-1a2b-4c3d-8e9f-001122334455".into(),
        encoded_claims: "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.e30.sig".into(),
        host_id: "NAB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3Z".into(),
    };
    assert_wire(
        &invocation,
        &[
            ("origin", Map),
            ("target", Map),
            ("operation", Str),
            ("msg", Array),
            ("id", Str),
            ("encoded_claims", Str),
            ("host_id", Str),
        ],
    );
    assert_wire(
        &InvocationResponse::success(&invocation, vec![1, 2, 3]),
        &[("msg", Array), ("error", Nil), ("invocation_id", Str)],
    );
    let failed = InvocationResponse::error(&invocation, "boom");
    assert_eq!(failed.error.as_deref(), Some("boom"));
    assert!(failed.msg.is_empty());
    assert_eq!(failed.invocation_id, invocation.id);
    assert_wire(
        &failed,
        &[("msg", Array), ("error", Str), ("invocation_id", Str)],
    );
}

// ---------------------------------------------------------------------------
// Liberal decoding
// ---------------------------------------------------------------------------

/// Encodes an `http::Response` whose `statusCode` is written by `write_code`.
fn response_with_code(write_code: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::new();
    rmp::encode::write_map_len(&mut buf, 2).expect("write to Vec");
    rmp::encode::write_str(&mut buf, "statusCode").expect("write to Vec");
    write_code(&mut buf);
    rmp::encode::write_str(&mut buf, "status").expect("write to Vec");
    rmp::encode::write_str(&mut buf, "OK").expect("write to Vec");
    buf
}

#[test]
fn status_code_accepts_every_integer_width() {
    let encodings: Vec<Vec<u8>> = vec![
        response_with_code(|b| {
            rmp::encode::write_u16(b, 200).unwrap();
        }),
        response_with_code(|b| {
            rmp::encode::write_u32(b, 200).unwrap();
        }),
        response_with_code(|b| {
            rmp::encode::write_u64(b, 200).unwrap();
        }),
        response_with_code(|b| {
            rmp::encode::write_i16(b, 200).unwrap();
        }),
        response_with_code(|b| {
            rmp::encode::write_i64(b, 200).unwrap();
        }),
    ];
    for bytes in encodings {
        let response: http::Response = deserialize(&bytes).unwrap();
        assert_eq!(response.status_code, 200, "from {bytes:02x?}");
        // `header` and `body` are optional on input.
        assert!(response.header.is_empty() && response.body.is_empty());
    }
}

#[test]
fn integers_that_do_not_fit_are_rejected() {
    let too_big = response_with_code(|b| {
        rmp::encode::write_u64(b, u64::from(u32::MAX) + 1).unwrap();
    });
    assert!(matches!(
        deserialize::<http::Response>(&too_big),
        Err(CodecError::Deserialize { .. })
    ));
    let negative = response_with_code(|b| {
        rmp::encode::write_i8(b, -1).unwrap();
    });
    assert!(deserialize::<http::Response>(&negative).is_err());
}

#[test]
fn signed_fields_accept_wide_negative_encodings() {
    let mut buf = Vec::new();
    rmp::encode::write_map_len(&mut buf, 2).unwrap();
    rmp::encode::write_str(&mut buf, "key").unwrap();
    rmp::encode::write_str(&mut buf, "c").unwrap();
    rmp::encode::write_str(&mut buf, "value").unwrap();
    rmp::encode::write_i64(&mut buf, -5).unwrap();
    let add: keyvalue::AddRequest = deserialize(&buf).unwrap();
    assert_eq!(add.value, -5);
}

#[test]
fn enums_decode_from_names_as_well_as_indexes() {
    let cases: [(&[u8], OperationDirection); 7] = [
        (b"\x81\x00\xc0", OperationDirection::ToActor),
        (b"\x81\xcd\x00\x01\xc0", OperationDirection::ToProvider), // u16 index
        (b"\x81\xa8to_actor\xc0", OperationDirection::ToActor),
        (b"\x81\xa7ToActor\xc0", OperationDirection::ToActor),
        (b"\xabto_provider", OperationDirection::ToProvider), // rmp-serde 1.x form
        (b"\xa4Both", OperationDirection::Both),
        (b"\x81\xa4both\xc0", OperationDirection::Both),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            deserialize::<OperationDirection>(bytes).unwrap(),
            expected,
            "{bytes:02x?}"
        );
    }

    let capability = Entity::Capability {
        capid: "wascc:kv".into(),
        binding: "default".into(),
    };
    let by_name = b"\x81\xaaCapability\x82\xa5capid\xa8wascc:kv\xa7binding\xa7default";
    assert_eq!(deserialize::<Entity>(by_name).unwrap(), capability);
    // Struct variant fields as an array (no struct map) are accepted too.
    let as_array = b"\x81\x01\x92\xa8wascc:kv\xa7default";
    assert_eq!(deserialize::<Entity>(as_array).unwrap(), capability);
}

#[test]
fn unknown_enum_variants_are_rejected() {
    assert!(deserialize::<OperationDirection>(b"\x81\x03\xc0").is_err());
    assert!(deserialize::<OperationDirection>(b"\x81\xa8sideways\xc0").is_err());
    assert!(deserialize::<Entity>(b"\x81\x02\xa2M1").is_err());
    // A unit variant carrying data is not a unit variant.
    assert!(deserialize::<OperationDirection>(b"\x81\x00\x05").is_err());
}

#[test]
fn structs_decode_from_arrays() {
    let request = http::Request {
        method: "GET".into(),
        path: "/".into(),
        query_string: String::new(),
        header: headers(),
        body: b"x".to_vec(),
    };
    // rmp-serde's default (no struct map) writes structs as arrays, as the
    // Gantry protocol did.
    let as_array = rmp_serde::to_vec(&request).unwrap();
    assert_eq!(as_array[0], 0x95, "fixture must really be an array");
    assert_eq!(deserialize::<http::Request>(&as_array).unwrap(), request);
}

#[test]
fn byte_fields_accept_both_bin_and_int_arrays() {
    // `body` is `bin` on the wire, but an int array is accepted.
    let body_as_array =
        b"\x85\xa6method\xa3GET\xa4path\xa1/\xabqueryString\xa0\xa6header\x80\xa4body\x92\x68\x69";
    assert_eq!(
        deserialize::<http::Request>(body_as_array).unwrap().body,
        b"hi"
    );
    // `newModule` is an int array on the wire, but `bin` is accepted.
    let module_as_bin = b"\x81\xa9newModule\xc4\x02\x00\x61";
    assert_eq!(
        deserialize::<core::LiveUpdate>(module_as_bin)
            .unwrap()
            .new_module,
        [0, 97]
    );
    let msg_as_bin = b"\x83\xa3msg\xc4\x01\x07\xa5error\xc0\xadinvocation_id\xa1i";
    assert_eq!(
        deserialize::<InvocationResponse>(msg_as_bin).unwrap().msg,
        [7]
    );
    // An int array element that is not a byte is not silently truncated.
    let not_a_byte = b"\x81\xa9newModule\x91\xcd\x01\x00";
    assert!(deserialize::<core::LiveUpdate>(not_a_byte).is_err());
}

#[test]
fn unknown_fields_are_ignored_and_defaults_fill_gaps() {
    // A newer peer may add fields; an older one may omit defaulted ones.
    let bytes = b"\x83\xa6module\xa1M\xa5extra\x93\x01\x02\x03\xa4more\x81\xa1k\xc0";
    let config: core::CapabilityConfiguration = deserialize(bytes).unwrap();
    assert_eq!(
        config,
        core::CapabilityConfiguration {
            module: "M".into(),
            values: HashMap::new()
        }
    );
    let minimal = b"\x83\xa6method\xa3GET\xa4path\xa1/\xabqueryString\xa0";
    let request: http::Request = deserialize(minimal).unwrap();
    assert!(request.header.is_empty() && request.body.is_empty());
}

// ---------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------

fn golden_invocation() -> Vec<u8> {
    serialize(&Invocation {
        origin: Entity::Actor("M1".into()),
        target: Entity::Capability {
            capid: "wascc:kv".into(),
            binding: "default".into(),
        },
        operation: "Get".into(),
        msg: vec![1, 2, 200],
        id: "i".into(),
        encoded_claims: "j".into(),
        host_id: "N".into(),
    })
    .expect("serialize")
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = golden_invocation();
    for len in 0..bytes.len() {
        let result = deserialize::<Invocation>(&bytes[..len]);
        assert!(
            matches!(result, Err(CodecError::Deserialize { .. })),
            "prefix of {len} bytes gave {result:?}"
        );
    }
    assert!(deserialize::<Invocation>(&bytes).is_ok());
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut bytes = golden_invocation();
    bytes.extend_from_slice(&[0xc0, 0xc0]);
    assert_eq!(
        deserialize::<Invocation>(&bytes).unwrap_err(),
        CodecError::TrailingBytes {
            type_name: std::any::type_name::<Invocation>(),
            trailing: 2
        }
    );
}

#[test]
fn wrong_types_are_errors_naming_the_type_and_the_cause() {
    // `method` is an integer instead of a string.
    let bytes = b"\x83\xa6method\x07\xa4path\xa1/\xabqueryString\xa0";
    let err = deserialize::<http::Request>(bytes).unwrap_err();
    assert!(matches!(err, CodecError::Deserialize { .. }));
    let text = err.to_string();
    assert!(text.contains("waxosuit_codec::http::Request"), "{text}");
    assert!(text.contains("failed to deserialize"), "{text}");
    // A missing required field names the field.
    let missing = b"\x81\xa6method\xa3GET";
    let text = deserialize::<http::Request>(missing)
        .unwrap_err()
        .to_string();
    assert!(text.contains("path"), "{text}");
    // A scalar where a struct is expected.
    assert!(deserialize::<keyvalue::GetRequest>(b"\x2a").is_err());
    // A map where a string is expected.
    assert!(deserialize::<keyvalue::GetRequest>(b"\x81\xa3key\x80").is_err());
}

#[test]
fn garbage_is_an_error() {
    for garbage in [
        &b""[..],
        b"\xc1", // the one byte MessagePack never uses
        b"\xff\xff\xff\xff",
        b"GET / HTTP/1.1\r\n",
        b"\xdb\xff\xff\xff\xff",     // str32 claiming 4 GiB
        b"\xc6\xff\xff\xff\xff\x00", // bin32 claiming 4 GiB
        b"\xdd\xff\xff\xff\xff\x00", // array32 claiming 4 G elements
        b"\xdf\xff\xff\xff\xff",     // map32 claiming 4 G entries
    ] {
        assert!(
            deserialize::<http::Request>(garbage).is_err(),
            "{garbage:02x?}"
        );
        assert!(
            deserialize::<Invocation>(garbage).is_err(),
            "{garbage:02x?}"
        );
        assert!(
            deserialize::<core::LiveUpdate>(garbage).is_err(),
            "{garbage:02x?}"
        );
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // An unknown field whose value is 100 000 nested one-element arrays.
    let mut bytes = b"\x82\xa3key\xa1k\xa1x".to_vec();
    bytes.extend(std::iter::repeat_n(0x91, 100_000));
    bytes.push(0xc0);
    let err = deserialize::<keyvalue::GetRequest>(&bytes).unwrap_err();
    assert!(err.to_string().contains("depth"), "{err}");
}

#[test]
fn nesting_up_to_the_limit_is_accepted() {
    // 60 levels of nested arrays in an ignored field: far deeper than any
    // contract, still inside the limit.
    let mut bytes = b"\x82\xa3key\xa1k\xa1x".to_vec();
    bytes.extend(std::iter::repeat_n(0x91, 60));
    bytes.push(0xc0);
    assert_eq!(
        deserialize::<keyvalue::GetRequest>(&bytes).unwrap().key,
        "k"
    );
}

#[test]
fn serialize_failures_are_reported() {
    /// A type whose encoding always fails, as a custom `Serialize` might.
    struct Unencodable;
    impl Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused"))
        }
    }
    let err = serialize(&Unencodable).unwrap_err();
    assert!(matches!(err, CodecError::Serialize { .. }));
    assert!(err.to_string().contains("Unencodable"), "{err}");
    assert!(err.to_string().contains("refused"), "{err}");
}

// ---------------------------------------------------------------------------
// Helpers, JSON forms and names
// ---------------------------------------------------------------------------

#[test]
fn http_response_helpers() {
    let cases = [
        (http::Response::ok(), 200, "OK"),
        (http::Response::not_found(), 404, "Not Found"),
        (http::Response::bad_request(), 400, "Bad Request"),
    ];
    for (response, code, status) in cases {
        assert_eq!(response.status_code, code);
        assert_eq!(response.status, status);
        assert!(response.body.is_empty() && response.header.is_empty());
    }
    let error = http::Response::internal_server_error("database down");
    assert_eq!(
        (error.status_code, error.status.as_str()),
        (500, "Internal Server Error")
    );
    assert_eq!(error.body, b"database down");

    #[derive(Serialize)]
    struct Greeting {
        hello: &'static str,
    }
    let json = http::Response::json(&Greeting { hello: "world" }, 201, "Created").unwrap();
    assert_eq!((json.status_code, json.status.as_str()), (201, "Created"));
    assert_eq!(json.body, br#"{"hello":"world"}"#);
}

#[test]
fn http_json_reports_unrepresentable_payloads() {
    let payload = BTreeMap::from([((1, 2), "tuple keys are not JSON")]);
    let err = http::Response::json(&payload, 200, "OK").unwrap_err();
    assert!(matches!(err, CodecError::Json { .. }));
    assert!(err.to_string().contains("JSON"), "{err}");
}

#[test]
fn descriptor_json_matches_the_original_codec() {
    // Verbatim from wascc-codec's `descriptor_certify_desired_json_format`.
    let d = CapabilityDescriptor {
        name: "test".into(),
        id: "wascc:testing".into(),
        version: "0.0.1".into(),
        revision: 1,
        long_description: "this is a test".into(),
        supported_operations: vec![OperationDescriptor {
            direction: OperationDirection::ToActor,
            doctext: "this is a test".into(),
            name: "OperationDumboDrop".into(),
        }],
    };
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(
        json,
        "{\"id\":\"wascc:testing\",\"name\":\"test\",\"version\":\"0.0.1\",\"revision\":1,\"long_description\":\"this is a test\",\"supported_operations\":[{\"name\":\"OperationDumboDrop\",\"direction\":\"to_actor\",\"doctext\":\"this is a test\"}]}"
    );
    assert_eq!(
        serde_json::from_str::<CapabilityDescriptor>(&json).unwrap(),
        d
    );
}

#[test]
fn entity_json_uses_variant_names() {
    let actor = Entity::Actor("M1".into());
    assert_eq!(serde_json::to_string(&actor).unwrap(), r#"{"Actor":"M1"}"#);
    let cap = Entity::Capability {
        capid: "wascc:kv".into(),
        binding: "default".into(),
    };
    let json = serde_json::to_string(&cap).unwrap();
    assert_eq!(
        json,
        r#"{"Capability":{"capid":"wascc:kv","binding":"default"}}"#
    );
    assert_eq!(serde_json::from_str::<Entity>(&json).unwrap(), cap);
}

#[test]
fn entity_urls() {
    let target = Entity::Capability {
        capid: "wascc:messaging".into(),
        binding: "default".into(),
    };
    let invocation = Invocation {
        origin: Entity::Actor("MXYZ".into()),
        target,
        operation: "OP_TESTING".into(),
        ..Invocation::default()
    };
    // The expected URL is the one in wascc-host's own unit test.
    assert_eq!(
        invocation.target_url(),
        "wasmbus://wascc/messaging/default/OP_TESTING"
    );
    assert_eq!(invocation.origin_url(), "wasmbus://MXYZ");
    let odd = Entity::Capability {
        capid: "Acme:Big Store".into(),
        binding: "Hot Cache".into(),
    };
    assert_eq!(odd.url(), "wasmbus://acme/big_store/hot_cache");
}

#[test]
fn operation_names_and_capability_ids_are_the_wascc_ones() {
    let names = [
        (core::OP_BIND_ACTOR, "BindActor"),
        (core::OP_REMOVE_ACTOR, "RemoveActor"),
        (core::OP_HEALTH_REQUEST, "HealthRequest"),
        (core::OP_PERFORM_LIVE_UPDATE, "PerformLiveUpdate"),
        (core::OP_IDENTIFY_CAPABILITY, "IdentifyCapability"),
        (core::OP_INITIALIZE, "Initialize"),
        (
            core::OP_GET_CAPABILITY_DESCRIPTOR,
            "GetCapabilityDescriptor",
        ),
        (OP_GET_CAPABILITY_DESCRIPTOR, "GetCapabilityDescriptor"),
        (core::CONFIG_WASCC_CLAIMS_ISSUER, "__wascc_issuer"),
        (
            core::CONFIG_WASCC_CLAIMS_CAPABILITIES,
            "__wascc_capabilities",
        ),
        (core::CONFIG_WASCC_CLAIMS_NAME, "__wascc_name"),
        (core::CONFIG_WASCC_CLAIMS_EXPIRES, "__wascc_expires"),
        (core::CONFIG_WASCC_CLAIMS_TAGS, "__wascc_tags"),
        (SYSTEM_ACTOR, "system"),
        (http::SERVER_CAPABILITY_ID, "wascc:http_server"),
        (http::CLIENT_CAPABILITY_ID, "wascc:http_client"),
        (http::OP_HANDLE_REQUEST, "HandleRequest"),
        (http::OP_PERFORM_REQUEST, "PerformRequest"),
        (keyvalue::CAPABILITY_ID, "wascc:keyvalue"),
        (keyvalue::OP_GET, "Get"),
        (keyvalue::OP_SET, "Set"),
        (keyvalue::OP_ADD, "Add"),
        (keyvalue::OP_DEL, "Del"),
        (keyvalue::OP_CLEAR, "Clear"),
        (keyvalue::OP_RANGE, "Range"),
        (keyvalue::OP_PUSH, "Push"),
        (keyvalue::OP_LIST_DEL, "ListItemDelete"),
        (keyvalue::OP_SET_ADD, "SetAdd"),
        (keyvalue::OP_SET_REMOVE, "SetRemove"),
        (keyvalue::OP_SET_UNION, "SetUnion"),
        (keyvalue::OP_SET_INTERSECT, "SetIntersection"),
        (keyvalue::OP_SET_QUERY, "SetQuery"),
        (keyvalue::OP_KEY_EXISTS, "KeyExists"),
        (messaging::CAPABILITY_ID, "wascc:messaging"),
        (messaging::OP_PUBLISH_MESSAGE, "Publish"),
        (messaging::OP_PERFORM_REQUEST, "Request"),
        (messaging::OP_DELIVER_MESSAGE, "DeliverMessage"),
        (logging::CAPABILITY_ID, "wascc:logging"),
        (logging::OP_LOG, "WriteLog"),
        (extras::CAPABILITY_ID, "wascc:extras"),
        (extras::OP_REQUEST_GUID, "RequestGuid"),
        (extras::OP_REQUEST_RANDOM, "RequestRandom"),
        (extras::OP_REQUEST_SEQUENCE, "RequestSequence"),
        (blobstore::CAPABILITY_ID, "wascc:blobstore"),
        (blobstore::OP_CREATE_CONTAINER, "CreateContainer"),
        (blobstore::OP_REMOVE_CONTAINER, "RemoveContainer"),
        (blobstore::OP_REMOVE_OBJECT, "RemoveObject"),
        (blobstore::OP_LIST_OBJECTS, "ListObjects"),
        (blobstore::OP_UPLOAD_CHUNK, "UploadChunk"),
        (blobstore::OP_START_DOWNLOAD, "StartDownload"),
        (blobstore::OP_START_UPLOAD, "StartUpload"),
        (blobstore::OP_RECEIVE_CHUNK, "ReceiveChunk"),
        (blobstore::OP_GET_OBJECT_INFO, "GetObjectInfo"),
        (eventstreams::CAPABILITY_ID, "wascc:eventstreams"),
        (eventstreams::OP_WRITE_EVENT, "WriteEvent"),
        (eventstreams::OP_QUERY_STREAM, "QueryStream"),
        (eventstreams::OP_DELIVER_EVENT, "DeliverEvent"),
    ];
    for (actual, expected) in names {
        assert_eq!(actual, expected);
    }
    let levels = [
        logging::LEVEL_ERROR,
        logging::LEVEL_WARN,
        logging::LEVEL_INFO,
        logging::LEVEL_DEBUG,
        logging::LEVEL_TRACE,
    ];
    assert_eq!(levels, [1, 2, 3, 4, 5]);
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

fn entity() -> impl Strategy<Value = Entity> {
    prop_oneof![
        ".{0,60}".prop_map(Entity::Actor),
        (".{0,30}", ".{0,30}").prop_map(|(capid, binding)| Entity::Capability { capid, binding }),
    ]
}

fn direction() -> impl Strategy<Value = OperationDirection> {
    prop_oneof![
        Just(OperationDirection::ToActor),
        Just(OperationDirection::ToProvider),
        Just(OperationDirection::Both),
    ]
}

proptest! {
    #[test]
    fn http_request_round_trips(
        method in "[A-Z]{0,8}",
        path in ".{0,40}",
        query_string in ".{0,40}",
        header in proptest::collection::hash_map(".{0,10}", ".{0,20}", 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let request = http::Request { method, path, query_string, header, body };
        let back: http::Request = deserialize(&serialize(&request).unwrap()).unwrap();
        prop_assert_eq!(back, request);
    }

    #[test]
    fn invocation_round_trips(
        origin in entity(),
        target in entity(),
        operation in ".{0,20}",
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        id in ".{0,36}",
        encoded_claims in ".{0,100}",
        host_id in ".{0,56}",
        error in proptest::option::of(".{0,40}"),
    ) {
        let invocation = Invocation { origin, target, operation, msg, id, encoded_claims, host_id };
        let back: Invocation = deserialize(&serialize(&invocation).unwrap()).unwrap();
        prop_assert_eq!(&back, &invocation);
        let response = InvocationResponse { error, ..InvocationResponse::success(&invocation, invocation.msg.clone()) };
        let back: InvocationResponse = deserialize(&serialize(&response).unwrap()).unwrap();
        prop_assert_eq!(back, response);
    }

    #[test]
    fn file_chunk_round_trips(
        sequence_no in any::<u64>(),
        total_bytes in any::<u64>(),
        chunk_size in any::<u64>(),
        context in proptest::option::of(".{0,20}"),
        chunk_bytes in proptest::collection::vec(any::<u8>(), 0..1000),
    ) {
        let chunk = blobstore::FileChunk {
            sequence_no, container: "c".into(), id: "b".into(), total_bytes, chunk_size, context, chunk_bytes,
        };
        let back: blobstore::FileChunk = deserialize(&serialize(&chunk).unwrap()).unwrap();
        prop_assert_eq!(back, chunk);
    }

    #[test]
    fn descriptor_round_trips(
        revision in any::<u32>(),
        ops in proptest::collection::vec((".{0,16}", direction(), ".{0,30}"), 0..8),
    ) {
        let descriptor = ops.into_iter().fold(
            CapabilityDescriptor::builder().id("x:y").revision(revision),
            |b, (name, dir, doc)| b.with_operation(name, dir, doc),
        ).build();
        let back: CapabilityDescriptor = deserialize(&serialize(&descriptor).unwrap()).unwrap();
        prop_assert_eq!(back, descriptor);
    }

    #[test]
    fn kv_integers_round_trip(expires_s in any::<i32>(), value in any::<i32>(), stop in any::<i32>()) {
        let set = keyvalue::SetRequest { key: "k".into(), value: "v".into(), expires_s };
        prop_assert_eq!(deserialize::<keyvalue::SetRequest>(&serialize(&set).unwrap()).unwrap(), set);
        let add = keyvalue::AddResponse { value };
        prop_assert_eq!(deserialize::<keyvalue::AddResponse>(&serialize(&add).unwrap()).unwrap(), add);
        let range = keyvalue::ListRangeRequest { key: "l".into(), start: 0, stop };
        prop_assert_eq!(deserialize::<keyvalue::ListRangeRequest>(&serialize(&range).unwrap()).unwrap(), range);
    }

    /// Arbitrary bytes must produce a value or an error, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = deserialize::<Invocation>(&bytes);
        let _ = deserialize::<http::Request>(&bytes);
        let _ = deserialize::<CapabilityDescriptor>(&bytes);
        let _ = deserialize::<blobstore::FileChunk>(&bytes);
        let _ = deserialize::<eventstreams::StreamQuery>(&bytes);
    }

    /// Mutating one byte of a valid encoding never panics either; this
    /// reaches deeper into the decoder than random bytes do.
    #[test]
    fn corrupted_encodings_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = golden_invocation();
        let i = index.index(bytes.len());
        bytes[i] = byte;
        let _ = deserialize::<Invocation>(&bytes);
    }
}
