//! The `wascc:http_server` exchange: an actor's `HandleRequest` reply turned
//! into the HTTP response a client gets (the provider's own
//! `reply_to_http`, through its `#[doc(hidden)]` `fuzzing` entry point), and
//! the request as actors decode it (`http::Request`).
//!
//! Input: a mode byte (even: reply, odd: request), then, for a reply, a
//! byte choosing the header-count limit and one choosing the header-bytes
//! limit, then the MessagePack.
//! Checked, beyond "no panic, no stack overflow, no unbounded allocation":
//! the in-place reader the provider uses for the usual layout gives the same
//! response (status, header multiset, body) as the codec-based reference,
//! so it accepts and refuses exactly what the codec does within the limits;
//! a reply the codec decodes within the limits is served with its body
//! intact; what decodes re-encodes and decodes to the same value.
#![no_main]

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use libfuzzer_sys::fuzz_target;
use waxosuit_cap_http_server::fuzzing::{codec_reply_to_http, reply_to_http};
use waxosuit_codec::http::{Request, Response};
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
    let max_headers = usize::from(*count);
    let max_header_bytes = usize::from(*bytes) * 64;
    let served = parts(reply_to_http(rest.to_vec(), max_headers, max_header_bytes));
    let reference = parts(codec_reply_to_http(rest, max_headers, max_header_bytes));
    assert_eq!(served, reference, "in-place reader and codec disagree");
    if let Some(response) = round_trip::<Response>(rest)
        && served.0 != 500
    {
        assert_eq!(served.2, response.body, "a served reply lost its body");
    }
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
