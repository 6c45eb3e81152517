//! Every waSCC contract type of `waxosuit-codec`, decoded from arbitrary
//! MessagePack with `waxosuit_codec::deserialize` (what the host, actors
//! and providers call on every payload). The first byte picks the type
//! (index into `waxosuit_fuzz::codec::CASES`, modulo its length); the rest is the payload.
//!
//! Checked, beyond "no panic, no stack overflow, no unbounded allocation":
//! whatever decodes re-encodes with `serialize` (which the crate promises
//! never fails for its contract types) and decodes back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_fuzz::codec::CASES;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    CASES[usize::from(selector) % CASES.len()].1(payload);
});
