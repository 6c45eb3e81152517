//! Interop both ways with the public `wascap` 0.13 crate.

use waxosuit_claims::{self as ours, KeyKind, Verifier};

fn module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (func (export "__guest_call") (param i32 i32) (result i32) i32.const 1))"#,
    )
    .unwrap()
}

/// The claims as JSON values, so the two crates' structs can be compared field by field.
fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap()
}

#[test]
fn a_module_we_sign_is_accepted_by_wascap_with_identical_claims() {
    let account = ours::KeyPair::generate(KeyKind::Account);
    let subject = ours::KeyPair::generate(KeyKind::Module);
    let claims = ours::Claims::<ours::Actor>::builder()
        .issuer(account.public_key())
        .subject(subject.public_key())
        .expires_in(std::time::Duration::from_secs(3600))
        .wascap_revision(ours::WASCAP_REVISION)
        .metadata(ours::Actor {
            caps: Some(vec!["wascc:http_server".into(), "wascc:keyvalue".into()]),
            tags: Some(vec!["demo".into()]),
            rev: Some(4),
            ver: Some("1.2.3".into()),
            ..ours::Actor::named("counter")
        })
        .build();
    let signed = ours::embed_claims(&module(), &claims, &account).unwrap();

    let token = wascap::wasm::extract_claims(&signed)
        .expect("wascap parses and hash-checks our module")
        .expect("wascap finds our token");
    let validation = wascap::jwt::validate_token::<wascap::jwt::Actor>(&token.jwt).unwrap();
    assert!(validation.signature_valid);
    assert!(!validation.expired);
    assert!(!validation.cannot_use_yet);

    let ours_verified = Verifier::new()
        .trust_issuer(&account.public_key())
        .unwrap()
        .verify_actor(&signed)
        .unwrap();
    assert_eq!(json(&token.claims), json(ours_verified.claims()));
    let meta = token.claims.metadata.as_ref().unwrap();
    assert_eq!(meta.module_hash, ours::module_hash(&module()).unwrap());
    assert_eq!(
        meta.caps.as_deref(),
        Some(
            &[
                "wascc:http_server".to_string(),
                "wascc:keyvalue".to_string()
            ][..]
        )
    );
    assert_eq!(token.claims.subject, subject.public_key());
}

#[test]
fn a_module_wascap_signs_is_verified_and_inspected_by_us() {
    let account = nkeys03::KeyPair::new_account();
    let subject = nkeys03::KeyPair::new_module();
    let signed = wascap::wasm::sign_buffer_with_claims(
        "wascap-signed".to_string(),
        module(),
        &subject,
        &account,
        Some(30),
        None,
        vec!["wascc:messaging".into(), "acme:inventory".into()],
        vec!["interop".into()],
        false,
        Some(7),
        Some("0.7.0".into()),
        Some("acme/thing".into()),
    )
    .unwrap();
    let theirs = wascap::wasm::extract_claims(&signed).unwrap().unwrap();

    let verified = Verifier::new()
        .trust_issuer(&account.public_key())
        .unwrap()
        .verify_actor(&signed)
        .unwrap();
    assert_eq!(json(verified.claims()), json(&theirs.claims));
    assert_eq!(verified.public_key(), subject.public_key());
    assert_eq!(verified.name(), "wascap-signed");
    assert!(verified.has_capability("acme:inventory"));
    assert_eq!(
        verified.metadata().call_alias.as_deref(),
        Some("acme/thing")
    );
    assert_eq!(verified.jwt(), theirs.jwt);

    // Tampering with what wascap signed is caught by us too.
    let mut tampered = signed.clone();
    let at = tampered.windows(2).position(|w| w == [0x41, 0x01]).unwrap();
    tampered[at + 1] = 0x00;
    assert!(matches!(
        Verifier::new()
            .trust_issuer(&account.public_key())
            .unwrap()
            .verify_actor(&tampered),
        Err(ours::ClaimsError::ModuleHashMismatch { .. })
    ));
    // And by default, a wascap-signed module is no more trusted than ours.
    assert!(matches!(
        Verifier::new().verify_actor(&signed),
        Err(ours::ClaimsError::NoTrustedIssuer { .. })
    ));
}

#[test]
fn tokens_minted_by_either_side_decode_on_the_other() {
    // Account tokens: wascap's `Claims<Account>` JSON is what ours decodes, and back.
    let operator = ours::KeyPair::generate(KeyKind::Operator);
    let account = ours::KeyPair::generate(KeyKind::Account);
    let jwt = ours::Claims::<ours::Account>::builder()
        .issuer(operator.public_key())
        .subject(account.public_key())
        .metadata(ours::Account {
            name: Some("team".into()),
            valid_signers: Some(vec![]),
        })
        .build()
        .encode(&operator)
        .unwrap();
    let v = wascap::jwt::validate_token::<wascap::jwt::Account>(&jwt).unwrap();
    assert!(v.signature_valid);
    let theirs = wascap::jwt::Claims::<wascap::jwt::Account>::decode(&jwt).unwrap();
    assert_eq!(theirs.metadata.unwrap().name.as_deref(), Some("team"));
    Verifier::new()
        .trust_operator(&operator.public_key())
        .unwrap()
        .verify_account(&jwt)
        .unwrap();
}
