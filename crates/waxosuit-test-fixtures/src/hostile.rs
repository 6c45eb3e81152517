//! Hostile claims for property tests: what a malicious or careless signer
//! can put in a token, as `proptest` strategies.
//!
//! Every strategy mixes ordinary values with arbitrary Unicode, control and
//! direction-override characters, empty and over-long strings, and strings
//! shaped almost like keys, so a test can assert that signing, verifying and
//! showing claims never panic and refuse what breaks the rules with a typed
//! error. [`signed_module`] signs such claims the way an attacker would:
//! without the checks `embed_claims` makes.
//!
//! `proptest` is re-exported so that crates whose manifests do not list it
//! can still drive these strategies (`use waxosuit_test_fixtures::proptest`).

pub use proptest;

use proptest::prelude::*;
use waxosuit_claims::{Actor, Claims, KeyKind, KeyPair, caps, module_hash};

/// Text as a hostile signer writes it: ordinary words, arbitrary Unicode,
/// controls and direction overrides, empty, and too long.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9._/-]{0,15}",
        2 => any::<String>(),
        2 => ".{0,40}",
        1 => Just(String::new()),
        1 => "[a-z\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}\\u{200b}]{1,12}",
        1 => "[a-zé]{120,140}",
        1 => Just("x".repeat(3000)),
    ]
}

/// A real module key (`M…`) from 32 random seed bytes.
pub fn module_key() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|seed| {
        KeyPair::from_raw_seed(KeyKind::Module, seed)
            .map(|k| k.public_key())
            .unwrap_or_default()
    })
}

/// Strings shaped like keys, and some that only look like them: real module
/// keys, keys with one character changed, base32 noise, 56 bytes that start
/// with `M` but are not ASCII, keys of another kind, lower-cased or cut short.
pub fn near_miss_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => module_key(),
        2 => (module_key(), 1usize..56, "[A-Z2-7]").prop_map(|(k, at, c)| {
            k.chars()
                .enumerate()
                .map(|(i, old)| if i == at { c.chars().next().unwrap_or(old) } else { old })
                .collect::<String>()
        }),
        1 => "M[A-Z2-7]{55}",
        1 => "[A-Z]{0,6}".prop_map(|head| {
            let mut s = format!("M{head}\u{e9}");
            while s.len() < 56 {
                s.push('A');
            }
            s
        }),
        1 => any::<[u8; 32]>().prop_map(|seed| {
            KeyPair::from_raw_seed(KeyKind::Account, seed)
                .map(|k| k.public_key())
                .unwrap_or_default()
        }),
        1 => module_key().prop_map(|k| k.to_lowercase()),
        1 => module_key().prop_map(|k| k.chars().take(55).collect::<String>()),
    ]
}

/// A capability id as a token might list it: well-known, custom, a key (or
/// a near miss), or any text at all.
pub fn capability() -> impl Strategy<Value = String> {
    let well_known: Vec<String> = caps::WELL_KNOWN
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    prop_oneof![
        3 => proptest::sample::select(well_known),
        3 => "[a-z]{1,8}:[a-z_.-]{1,12}",
        3 => near_miss_key(),
        2 => text(),
    ]
}

/// Actor metadata with every field hostile or absent (the hash is left for
/// [`signed_module`] to fill in).
pub fn actor() -> impl Strategy<Value = Actor> {
    (
        proptest::option::of(text()),
        proptest::option::of(proptest::collection::vec(text(), 0..4)),
        proptest::option::of(proptest::collection::vec(capability(), 0..5)),
        proptest::option::of(-2i32..5),
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![text(), near_miss_key()]),
        any::<bool>(),
    )
        .prop_map(|(name, tags, caps, rev, ver, call_alias, provider)| Actor {
            name,
            tags,
            caps,
            rev,
            ver,
            call_alias,
            provider,
            ..Actor::default()
        })
}

/// A token time: ordinary, or anything up to `u64::MAX`.
pub fn time() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(prop_oneof![
        3 => 1_500_000_000u64..2_500_000_000,
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ])
}

/// `module` signed by `account` for `subject` with `meta` (its hash set to
/// the module's) and these times, **without** the checks `embed_claims`
/// makes: what a hostile signer produces.
///
/// # Panics
///
/// Panics if `module` is not a wasm module or the token cannot be encoded,
/// which is a bug in the calling test.
pub fn signed_module(
    module: &[u8],
    account: &KeyPair,
    subject: &str,
    meta: Actor,
    expires: Option<u64>,
    not_before: Option<u64>,
) -> Vec<u8> {
    let mut claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(subject)
        .metadata(Actor {
            module_hash: module_hash(module).expect("a wasm module"),
            ..meta
        })
        .build();
    claims.expires = expires;
    claims.not_before = not_before;
    let jwt = claims.encode(account).expect("encode");
    let mut out = waxosuit_claims::strip_signature(module).expect("a wasm module");
    append_custom_section(&mut out, "jwt", jwt.as_bytes());
    out
}

/// `module` with a custom section `name` holding `data` appended (a large
/// one pads a module to a size a test needs; sign the result afterwards).
pub fn with_custom_section(module: &[u8], name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = module.to_vec();
    append_custom_section(&mut out, name, data);
    out
}

/// A custom section: id 0, its size, the name's length, the name, the data.
fn append_custom_section(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    fn leb128(out: &mut Vec<u8>, mut n: usize) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::with_capacity(name.len() + data.len() + 5);
    leb128(&mut body, name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(data);
    out.push(0);
    leb128(out, body.len());
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use waxosuit_claims::Verifier;

    #[test]
    fn a_signed_module_is_what_the_verifier_reads() {
        let account = KeyPair::generate(KeyKind::Account);
        let module = KeyPair::generate(KeyKind::Module);
        let signed = signed_module(
            b"\0asm\x01\0\0\0",
            &account,
            &module.public_key(),
            Actor::named("x"),
            None,
            None,
        );
        let v = Verifier::new()
            .trust_issuer(&account.public_key())
            .unwrap()
            .verify_actor(&signed)
            .unwrap();
        assert_eq!(v.name(), "x");
    }
}
