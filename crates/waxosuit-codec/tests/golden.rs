//! The MessagePack golden vectors of spec §13.2, produced by running the
//! original `wascc-codec` 0.8.1 on rmp-serde 0.14.4. Each vector must be
//! reproduced byte for byte by `serialize` and decode back to the same value.
//!
//! Expected bytes are written in the spec's notation — hex bytes and quoted
//! strings — so they can be compared with the spec by eye.

use std::collections::HashMap;

use waxosuit_codec::capabilities::OperationDirection;
use waxosuit_codec::invocation::{Entity, Invocation, InvocationResponse};
use waxosuit_codec::{core, deserialize, extras, http, keyvalue, serialize};

/// Parses `85 a6 "method" a3 "GET"` into bytes.
fn spec_bytes(notation: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for token in notation.split_whitespace() {
        if let Some(text) = token.strip_prefix('"') {
            let text = text.strip_suffix('"').expect("unterminated string");
            out.extend_from_slice(text.as_bytes());
        } else {
            out.push(u8::from_str_radix(token, 16).expect("bad hex byte"));
        }
    }
    out
}

fn assert_golden<T>(value: &T, notation: &str)
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let expected = spec_bytes(notation);
    let actual = serialize(value).expect("serialize");
    assert_eq!(
        actual, expected,
        "encoding of {value:?} differs from the golden vector"
    );
    let decoded: T = deserialize(&expected).expect("deserialize golden vector");
    assert_eq!(&decoded, value);
}

#[test]
fn spec_notation_parser_reads_hex_and_strings() {
    assert_eq!(
        spec_bytes(r#"a2 "OK" c4 00"#),
        vec![0xa2, b'O', b'K', 0xc4, 0x00]
    );
}

#[test]
fn http_request() {
    let request = http::Request {
        method: "GET".into(),
        path: "/foo".into(),
        query_string: "a=1".into(),
        header: HashMap::new(),
        body: b"hi".to_vec(),
    };
    assert_golden(
        &request,
        r#"85 a6 "method" a3 "GET" a4 "path" a4 "/foo" ab "queryString" a3 "a=1" a6 "header" 80 a4 "body" c4 02 68 69"#,
    );
}

#[test]
fn http_response() {
    let response = http::Response {
        status_code: 200,
        status: "OK".into(),
        header: HashMap::new(),
        body: Vec::new(),
    };
    assert_golden(
        &response,
        r#"84 aa "statusCode" cc c8 a6 "status" a2 "OK" a6 "header" 80 a4 "body" c4 00"#,
    );
    // The helper must produce the very same value.
    assert_eq!(http::Response::ok(), response);
}

#[test]
fn keyvalue_set_request() {
    let request = keyvalue::SetRequest {
        key: "k".into(),
        value: "v".into(),
        expires_s: 0,
    };
    assert_golden(
        &request,
        r#"83 a3 "key" a1 "k" a5 "value" a1 "v" a7 "expires" 00"#,
    );
}

#[test]
fn core_capability_configuration() {
    let config = core::CapabilityConfiguration {
        module: "M".into(),
        values: HashMap::new(),
    };
    assert_golden(&config, r#"82 a6 "module" a1 "M" a6 "values" 80"#);
}

#[test]
fn core_live_update_is_an_int_array() {
    let update = core::LiveUpdate {
        new_module: vec![0, 97],
    };
    assert_golden(&update, r#"81 a9 "newModule" 92 00 61"#);
}

#[test]
fn extras_generator_result() {
    let result = extras::GeneratorResult {
        guid: None,
        sequence_number: 5,
        random_number: 0,
    };
    assert_golden(
        &result,
        r#"83 a4 "guid" c0 ae "sequenceNumber" 05 ac "randomNumber" 00"#,
    );
}

#[test]
fn operation_direction_unit_variant_is_index_to_nil() {
    assert_golden(&OperationDirection::ToActor, "81 00 c0");
}

#[test]
fn entity_actor() {
    assert_golden(&Entity::Actor("M1".into()), r#"81 00 a2 "M1""#);
}

#[test]
fn entity_capability() {
    let entity = Entity::Capability {
        capid: "wascc:kv".into(),
        binding: "default".into(),
    };
    assert_golden(
        &entity,
        r#"81 01 82 a5 "capid" a8 "wascc:kv" a7 "binding" a7 "default""#,
    );
}

#[test]
fn invocation() {
    let invocation = Invocation {
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
    };
    // The spec elides the target's bytes with "…"; they are the
    // `entity_capability` vector.
    assert_golden(
        &invocation,
        concat!(
            r#"87 a6 "origin" 81 00 a2 "M1" "#,
            r#"a6 "target" 81 01 82 a5 "capid" a8 "wascc:kv" a7 "binding" a7 "default" "#,
            r#"a9 "operation" a3 "Get" a3 "msg" 93 01 02 cc c8 "#,
            r#"a2 "id" a1 "i" ae "encoded_claims" a1 "j" a7 "host_id" a1 "N""#,
        ),
    );
}

#[test]
fn invocation_response() {
    let response = InvocationResponse {
        msg: Vec::new(),
        error: Some("e".into()),
        invocation_id: "i".into(),
    };
    assert_golden(
        &response,
        r#"83 a3 "msg" 90 a5 "error" a1 "e" ad "invocation_id" a1 "i""#,
    );
}

#[test]
fn name_keyed_entity_from_the_spec_decodes() {
    // §13.2: "The decoder also accepts enum variants keyed by name".
    let decoded: Entity = deserialize(&spec_bytes(r#"81 a5 "Actor" a2 "M1""#)).unwrap();
    assert_eq!(decoded, Entity::Actor("M1".into()));
}
