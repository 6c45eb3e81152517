//! W3C trace context as any HTTP client or NATS publisher can send it:
//! `waxosuit_trace::parse_traceparent` on arbitrary `traceparent` and
//! `tracestate` values (the input is split at its first NUL byte).
//!
//! Checked, beyond "no panic, no unbounded allocation": what parses is a
//! valid, remote span context whose ids print back to the lower-case hex the
//! header carried, whose flags keep at most the sampled bit, and whose
//! `tracestate` is empty or within `MAX_TRACESTATE_LEN`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_trace::{MAX_TRACESTATE_LEN, parse_traceparent};

fuzz_target!(|data: &[u8]| {
    let (parent, state) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(parent) = std::str::from_utf8(parent) else {
        return;
    };
    let state = state.and_then(|s| std::str::from_utf8(s).ok());
    let Some(sc) = parse_traceparent(parent, state) else {
        return;
    };
    assert!(sc.is_valid() && sc.is_remote());
    let fields: Vec<&str> = parent.trim().split('-').collect();
    assert_eq!(sc.trace_id().to_string(), fields[1]);
    assert_eq!(sc.span_id().to_string(), fields[2]);
    assert!(sc.trace_flags().to_u8() <= 1);
    assert!(sc.trace_state().header().len() <= MAX_TRACESTATE_LEN);
});
