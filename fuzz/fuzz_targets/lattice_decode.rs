//! Lattice messages as a host reads them off NATS, before and after
//! authentication: `waxosuit_lattice::protocol::decode` (MessagePack) for
//! `Probe`, `WireInvocation`, `Response`, `Command`, `Discover`, `Here` and
//! `CommandReply`, and `serde_json` for `BindingChange`, `CloudEvent`,
//! inventory entries, `ValuesRequest`/`ValuesResponse`, auctions and the
//! sealed binding values. The first byte picks the message (index into
//! `waxosuit_fuzz::lattice::CASES`, modulo its length); the rest is the payload. One more case builds NATS
//! subjects from arbitrary text with `protocol::Subjects`.
//!
//! Checked, beyond "no panic, no stack overflow, no unbounded allocation":
//! a decoded message re-encodes and decodes to the same value (except
//! `CloudEvent`, whose free JSON holds floats), the helpers run on it
//! (URLs, digests, redaction), and subjects never gain wildcards or spaces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_fuzz::lattice::CASES;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    CASES[usize::from(selector) % CASES.len()].1(payload);
});
