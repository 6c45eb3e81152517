//! The `wascc:http_server` exchange: an actor's `HandleRequest` reply read
//! by the codec's `http::ResponseView` and turned into the HTTP response a
//! client gets (the provider's own `reply_to_http`, through its
//! `#[doc(hidden)]` `fuzzing` entry point), and the request as actors
//! decode it (`http::Request`).
//!
//! Input: a mode byte (even: reply, odd: request), then, for a reply, a
//! byte choosing the header-count limit and one choosing the header-bytes
//! limit, then the MessagePack.
//! Checked, beyond "no panic, no stack overflow, no unbounded allocation":
//! `ResponseView::decode` agrees with `deserialize::<Response>` (the same
//! value, or the same error, without limits; within them, a subset with
//! the same values, anything more refused with a limit error); a reply it
//! accepts is served with its body intact, and one it refuses is a `500`;
//! what decodes re-encodes and decodes to the same value.
#![no_main]

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use libfuzzer_sys::fuzz_target;
use waxosuit_cap_http_server::fuzzing::reply_to_http;
use waxosuit_codec::http::{Request, Response, ResponseLimits, ResponseView};
use waxosuit_codec::{CodecError, deserialize};
use waxosuit_fuzz::codec::round_trip;

/// What a client sees of a response: status, sorted headers and body.
type Seen = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

fn parts(response: hyper::Response<Full<Bytes>>) -> Seen {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, Vec<u8>)> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    let mut body = pin!(response.into_body());
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        let Ok(frame) = frame;
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    (status, headers, out)
}

fn reply(data: &[u8]) {
    let [count, bytes, rest @ ..] = data else {
        return;
    };
    let limits = ResponseLimits {
        max_headers: usize::from(*count),
        max_header_bytes: usize::from(*bytes) * 64,
    };
    let serde = deserialize::<Response>(rest);
    let unlimited = ResponseView::decode(rest, &ResponseLimits::UNLIMITED);
    assert_eq!(
        unlimited.map(ResponseView::into_response),
        serde,
        "ResponseView and deserialize disagree"
    );
    let view = ResponseView::decode(rest, &limits).map(ResponseView::into_response);
    match (&view, &serde) {
        (Ok(view), Ok(serde)) => assert_eq!(view, serde, "ResponseView changed the value"),
        (Ok(_), Err(e)) => panic!("ResponseView accepted what deserialize refuses: {e}"),
        (Err(e), _) if is_limit(e) => {}
        (Err(e), Ok(_)) => panic!("ResponseView refused what deserialize accepts: {e}"),
        (Err(e), Err(serde)) => assert_eq!(e, serde, "ResponseView and deserialize disagree"),
    }
    let served = parts(reply_to_http(
        rest.to_vec(),
        limits.max_headers,
        limits.max_header_bytes,
    ));
    match view {
        Ok(response) if served.0 != 500 => {
            assert_eq!(served.2, response.body, "a served reply lost its body")
        }
        Ok(_) => {}
        Err(_) => assert_eq!(served.0, 500, "a refused reply was served"),
    }
    let _ = round_trip::<Response>(rest);
}

fn is_limit(e: &CodecError) -> bool {
    matches!(
        e,
        CodecError::TooManyHeaders { .. } | CodecError::HeadersTooLarge { .. }
    )
}

fn request(data: &[u8]) {
    if let Some(request) = round_trip::<Request>(data) {
        let _ = (request.method.len(), request.path.len(), request.body.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        reply(rest);
    } else {
        request(rest);
    }
});
