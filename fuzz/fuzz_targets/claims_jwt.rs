//! Claims JWTs: `Claims::decode_unverified`, every `Verifier` entry point
//! that takes a token, and the display helpers tools print token text with.
//!
//! Input: one mode byte, then
//! * `0`: the token text itself (forged tokens never get past the signature,
//!   so this exercises the splitting, base64, header and size checks);
//! * `1`: the claims JSON of a token signed by one of the fixed keys (the
//!   next byte picks it), so the rules, key roles, validity window and trust
//!   decisions behind the signature are reached too;
//! * `2`: like `1`, with the header taken from the input as well (up to the
//!   first `\n`).
//!
//! Checked: nothing panics; every error's message is free of control,
//! bidirectional and zero-width characters and bounded in length whatever
//! the token holds; a verified token's metadata passes its own rules and its
//! issuer really is trusted; `escape` is bounded and safe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_claims::display::{DISPLAY_CHARS, escape, quoted};
use waxosuit_claims::jwt::TokenKind;
use waxosuit_claims::{
    Account, Actor, CapabilityProvider, Claims, ClaimsError, KeyKind, Operator, Verifier,
    WascapInvocation, caps, human_date, human_relative,
};
use waxosuit_fuzz::{HEADER_JSON, NOW, Signer, has_unsafe_chars, split_at_byte, verifiers};

/// Longest message any `ClaimsError` may produce, whatever the input.
const MAX_MESSAGE_CHARS: usize = 4096;

fn check_error(e: &ClaimsError) {
    let _ = e.kind();
    let message = e.to_string();
    assert!(
        !has_unsafe_chars(&message),
        "error message carries unsafe characters: {message:?}"
    );
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS,
        "error message of {} characters",
        message.chars().count()
    );
}

fn check_escape(value: &str) {
    for max in [0, 1, DISPLAY_CHARS] {
        let shown = escape(value, max);
        assert!(!has_unsafe_chars(&shown), "escape({value:?}) = {shown:?}");
        // At most `\u{10ffff}` (10 characters) per character kept, plus the
        // `…(N characters)` suffix.
        assert!(shown.chars().count() <= max * 10 + 32, "{shown:?}");
        let count = value.chars().count();
        if count > max {
            assert!(
                shown.ends_with(&format!("…({count} characters)")),
                "{shown:?}"
            );
        } else {
            // Nothing dropped: every character shows as at least one.
            assert!(
                shown.chars().count() >= count,
                "{value:?} was cut: {shown:?}"
            );
        }
    }
    let q = quoted(value);
    assert!(!has_unsafe_chars(&q) && q.starts_with('"') && q.ends_with('"'));
}

/// What `waxosuit claims inspect` shows of a decoded token.
fn show<T>(claims: &Claims<T>) {
    for text in [&claims.id, &claims.issuer, &claims.subject] {
        check_escape(text);
    }
    for t in [Some(claims.issued_at), claims.expires, claims.not_before]
        .into_iter()
        .flatten()
    {
        let _ = human_date(t);
        let _ = human_relative(t, NOW);
    }
}

fn show_actor(actor: &Actor) {
    for text in [&actor.name, &actor.ver, &actor.call_alias]
        .into_iter()
        .flatten()
    {
        check_escape(text);
    }
    check_escape(&actor.module_hash);
    for capid in actor.capabilities() {
        let _ = caps::display_name(capid);
        let _ = caps::is_valid_capability_id(capid);
        check_escape(capid);
    }
    for tag in actor.tag_list() {
        check_escape(tag);
    }
}

fn decode<T: TokenKind>(token: &str) -> Option<Claims<T>> {
    match Claims::<T>::decode_unverified(token) {
        Ok(claims) => {
            show(&claims);
            if let Ok(meta) = claims.metadata()
                && let Err(e) = meta.validate()
            {
                check_error(&e);
            }
            Some(claims)
        }
        Err(e) => {
            check_error(&e);
            None
        }
    }
}

fn verified<T>(result: Result<T, ClaimsError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            check_error(&e);
            None
        }
    }
}

fn check(token: &str) {
    let actor = decode::<Actor>(token);
    if let Some(Ok(meta)) = actor.as_ref().map(Claims::metadata) {
        show_actor(meta);
    }
    decode::<Account>(token);
    decode::<Operator>(token);
    decode::<WascapInvocation>(token);
    decode::<CapabilityProvider>(token);

    let v = verifiers();
    // The module hash the token claims, so that a well-formed token can pass
    // the hash comparison, and one it cannot match.
    let claimed_hash = actor
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| m.module_hash.clone())
        .unwrap_or_default();
    for verifier in [&v.trusting, &v.any, &v.none] {
        for hash in [claimed_hash.as_str(), "0".repeat(64).as_str()] {
            if let Some(ok) = verified(verifier.verify_actor_token(token, hash)) {
                assert_eq!(ok.metadata().module_hash, hash);
                assert!(ok.metadata().validate().is_ok());
                assert_eq!(
                    KeyKind::of_public_key(ok.issuer()).ok(),
                    Some(KeyKind::Account)
                );
                assert_eq!(
                    KeyKind::of_public_key(ok.subject()).ok(),
                    Some(KeyKind::Module)
                );
                assert_ne!(ok.issuer(), ok.subject());
                assert!(
                    !std::ptr::eq(verifier, &v.none),
                    "a verifier trusting no one accepted an actor"
                );
                if std::ptr::eq(verifier, &v.trusting) {
                    assert!(
                        ok.issuer() == Signer::Account.public_key()
                            || ok.issuer() == Signer::ChainedAccount.public_key(),
                        "untrusted issuer accepted: {}",
                        ok.issuer()
                    );
                }
                let _ = (
                    ok.name(),
                    ok.capabilities(),
                    ok.has_capability("wascc:keyvalue"),
                );
                show_actor(ok.metadata());
                let _ = ok.claims().expires.map(|t| human_relative(t, NOW));
            }
        }
        if let Some(ok) = verified(verifier.verify_remote_actor_token(token)) {
            assert!(ok.metadata().validate().is_ok());
            assert!(!std::ptr::eq(verifier, &v.none));
        }
        if let Some(ok) = verified(verifier.verify_provider(token)) {
            assert!(ok.metadata().validate().is_ok());
            assert_eq!(
                KeyKind::of_public_key(ok.subject()).ok(),
                Some(KeyKind::Service)
            );
            assert!(!std::ptr::eq(verifier, &v.none));
        }
        if let Some(ok) = verified(verifier.verify_account(token)) {
            assert!(ok.metadata().validate().is_ok());
            assert!(!std::ptr::eq(verifier, &v.none));
        }
        verified(verifier.verify_operator(token));
        verified(verifier.verify_token::<WascapInvocation>(token, KeyKind::Server, None));
        verified(verifier.verify_token::<Actor>(token, KeyKind::Account, Some(KeyKind::Module)));
    }
    if let Some(trusting) = verified(Verifier::new().at_time(NOW).trust_operator_token(token)) {
        // Whatever it now trusts, it must still refuse garbage.
        assert!(trusting.verify_actor_token("x.y.z", "").is_err());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => check(&String::from_utf8_lossy(rest)),
        1 => {
            let Some((&who, claims)) = rest.split_first() else {
                return;
            };
            let token =
                waxosuit_fuzz::sign_token(Signer::from_byte(who), HEADER_JSON.as_bytes(), claims);
            check(&token);
        }
        _ => {
            let Some((&who, rest)) = rest.split_first() else {
                return;
            };
            let (header, claims) = split_at_byte(rest, b'\n');
            check(&waxosuit_fuzz::sign_token(
                Signer::from_byte(who),
                header,
                claims,
            ));
        }
    }
});
