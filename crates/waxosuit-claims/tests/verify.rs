//! Golden vectors, every rejection path, trust chains and a property test
//! over extraction + verification.

use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use proptest::prelude::*;
use waxosuit_claims::{
    Account, Actor, Claims, ClaimsError, KeyKind, KeyPair, Operator, Verifier, caps, embed_claims,
    module_hash, strip_signature,
};

const EMPTY_MODULE: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const NOW: u64 = 1_700_000_000;

fn code_module() -> Vec<u8> {
    wat::parse_str(
        r#"(module
             (memory (export "memory") 1)
             (func (export "answer") (result i32) i32.const 42))"#,
    )
    .unwrap()
}

fn actor_claims(issuer: &KeyPair, subject: &KeyPair) -> Claims<Actor> {
    Claims::<Actor>::builder()
        .issuer(issuer.public_key())
        .subject(subject.public_key())
        .issued_at(NOW)
        .metadata(Actor {
            caps: Some(vec![caps::KEY_VALUE.to_string()]),
            tags: Some(vec!["test".to_string()]),
            ..Actor::named("tester")
        })
        .build()
}

fn sign(module: &[u8], issuer: &KeyPair, subject: &KeyPair) -> Vec<u8> {
    embed_claims(module, &actor_claims(issuer, subject), issuer).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new().at_time(NOW)
}

/// Re-embeds an arbitrary token without recomputing anything.
fn with_token(module: &[u8], jwt: &str) -> Vec<u8> {
    let mut out = strip_signature(module).unwrap();
    // custom section: id 0, size, name length, name, payload
    let mut body = vec![3u8];
    body.extend_from_slice(b"jwt");
    body.extend_from_slice(jwt.as_bytes());
    out.push(0);
    let mut size = body.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&body);
    out
}

fn token_of(module: &[u8]) -> String {
    waxosuit_claims::extract(module).unwrap().jwt
}

// ---------------------------------------------------------------- golden --

#[test]
fn golden_vector_13_1_reproduces_byte_for_byte() {
    let account = KeyPair::from_raw_seed(KeyKind::Account, [1; 32]).unwrap();
    let module = KeyPair::from_raw_seed(KeyKind::Module, [2; 32]).unwrap();
    assert_eq!(
        account.seed().unwrap(),
        "SAAACAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAKM5I"
    );
    assert_eq!(
        account.public_key(),
        "ACFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVYYOU"
    );
    assert_eq!(
        module.seed().unwrap(),
        "SMAAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAWDLE"
    );
    assert_eq!(
        module.public_key(),
        "MCATS5YOVB6ROX2WUNKGNQ2MP3GMXDMKSG2O4N5CLX3A6W4PZGZZJPUL"
    );

    let claims = Claims::<Actor>::builder()
        .id("JTIJTIJTIJTIJTIJTIJTIJ")
        .issued_at(1_600_000_000)
        .issuer(account.public_key())
        .subject(module.public_key())
        .metadata(Actor {
            name: Some("demo".into()),
            tags: Some(vec![]),
            caps: Some(vec!["wascc:http_server".into()]),
            rev: Some(1),
            ver: Some("0.1.0".into()),
            ..Actor::default()
        })
        .build();
    let signed = embed_claims(&EMPTY_MODULE, &claims, &account).unwrap();

    let expected_hash = "93A44BBB96C751218E4C00D479E4C14358122A389ACCA16205B1E4D0DC5F9476";
    assert_eq!(module_hash(&EMPTY_MODULE).unwrap(), expected_hash);
    let expected_jwt = "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.eyJqdGkiOiJKVElKVElKVElKVElKVElKVElKVElKIiwiaWF0IjoxNjAwMDAwMDAwLCJpc3MiOiJBQ0ZJUlk2NU9RRTdERlA1S0xOUzJQRjJMVlpNVVpZSlg0T1pJRVEzNk4ySVFBTlVCNVhWWVlPVSIsInN1YiI6Ik1DQVRTNVlPVkI2Uk9YMldVTktHTlEyTVAzR01YRE1LU0cyTzRONUNMWDNBNlc0UFpHWlpKUFVMIiwid2FzY2FwIjp7Im5hbWUiOiJkZW1vIiwiaGFzaCI6IjkzQTQ0QkJCOTZDNzUxMjE4RTRDMDBENDc5RTRDMTQzNTgxMjJBMzg5QUNDQTE2MjA1QjFFNEQwREM1Rjk0NzYiLCJ0YWdzIjpbXSwiY2FwcyI6WyJ3YXNjYzpodHRwX3NlcnZlciJdLCJyZXYiOjEsInZlciI6IjAuMS4wIiwicHJvdiI6ZmFsc2V9fQ.WpgrpljcE74h_F5gUgbQX_yyisVpbnClB8LDGCe7SY9ut779HZNSxuafs1ruHTNukpNOcadweS2iBfR8nCzfAg";
    assert_eq!(expected_jwt.len(), 597);

    let mut expected_module = EMPTY_MODULE.to_vec();
    expected_module.extend_from_slice(&[0x00, 0xd9, 0x04, 0x03, b'j', b'w', b't']);
    expected_module.extend_from_slice(expected_jwt.as_bytes());
    assert_eq!(signed, expected_module);

    let claims_json = BASE64URL_NOPAD
        .decode(expected_jwt.split('.').nth(1).unwrap().as_bytes())
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&claims_json).unwrap(),
        r#"{"jti":"JTIJTIJTIJTIJTIJTIJTIJ","iat":1600000000,"iss":"ACFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVYYOU","sub":"MCATS5YOVB6ROX2WUNKGNQ2MP3GMXDMKSG2O4N5CLX3A6W4PZGZZJPUL","wascap":{"name":"demo","hash":"93A44BBB96C751218E4C00D479E4C14358122A389ACCA16205B1E4D0DC5F9476","tags":[],"caps":["wascc:http_server"],"rev":1,"ver":"0.1.0","prov":false}}"#
    );

    let verified = Verifier::new().verify_actor(&signed).unwrap();
    assert_eq!(verified.public_key(), module.public_key());
    assert_eq!(verified.name(), "demo");
    assert_eq!(
        verified.claims(),
        &Claims {
            metadata: Some(Actor {
                module_hash: expected_hash.into(),
                ..claims.metadata.clone().unwrap()
            }),
            ..claims
        }
    );
}

#[test]
fn signing_a_signed_module_replaces_the_signature() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let once = sign(&code_module(), &account, &module);
    let twice = sign(&once, &account, &module);
    assert_eq!(
        module_hash(&once).unwrap(),
        module_hash(&code_module()).unwrap()
    );
    assert_eq!(strip_signature(&twice).unwrap(), code_module());
    verifier().verify_actor(&twice).unwrap();
}

#[test]
fn call_alias_and_wascap_revision_are_preserved() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .wascap_revision(3)
        .metadata(Actor {
            call_alias: Some("acme/counter".into()),
            ..Actor::named("counter")
        })
        .build();
    let signed = embed_claims(&code_module(), &claims, &account).unwrap();
    let verified = Verifier::new().verify_actor(&signed).unwrap();
    assert_eq!(verified.claims().wascap_revision, Some(3));
    assert_eq!(
        verified.metadata().call_alias.as_deref(),
        Some("acme/counter")
    );
}

// ------------------------------------------------------------ rejections --

#[test]
fn flipped_byte_in_code_section_is_a_hash_mismatch() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let mut signed = sign(&code_module(), &account, &module);
    // i32.const 42 is encoded 0x41 0x2a
    let at = signed
        .windows(2)
        .position(|w| w == [0x41, 0x2a])
        .expect("constant in code");
    signed[at + 1] ^= 0x01;
    let err = verifier().verify_actor(&signed).unwrap_err();
    assert!(
        matches!(err, ClaimsError::ModuleHashMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("changed after signing"));
}

#[test]
fn jwt_moved_from_another_module_is_a_hash_mismatch() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let donor = sign(&EMPTY_MODULE, &account, &module);
    let thief = with_token(&code_module(), &token_of(&donor));
    let err = verifier().verify_actor(&thief).unwrap_err();
    assert!(
        matches!(err, ClaimsError::ModuleHashMismatch { .. }),
        "{err}"
    );
}

#[test]
fn valid_hash_but_wrong_signing_key_is_a_bad_signature() {
    let account = KeyPair::generate(KeyKind::Account);
    let attacker = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let genuine = token_of(&sign(&code_module(), &account, &module));
    // The attacker signs the same claims with their key, then claims to be `account`.
    let forged_by_attacker = token_of(&sign(&code_module(), &attacker, &module));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    parts[2] = forged_by_attacker.split('.').nth(2).unwrap();
    let forged = with_token(&code_module(), &parts.join("."));
    let err = verifier().verify_actor(&forged).unwrap_err();
    assert!(
        matches!(&err, ClaimsError::BadSignature { issuer } if *issuer == account.public_key()),
        "{err}"
    );
}

#[test]
fn expired_token_is_refused_with_its_date() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .issued_at(NOW - 1000)
        .expires_at(NOW - 100)
        .metadata(Actor::named("old"))
        .build();
    let signed = embed_claims(&code_module(), &claims, &account).unwrap();
    let err = verifier().verify_actor(&signed).unwrap_err();
    assert!(matches!(err, ClaimsError::Expired { expires_at } if expires_at == NOW - 100));
    assert!(err.to_string().contains("2023-11-14T22:11:40Z"), "{err}");
    // Within the configured skew it is still accepted.
    verifier()
        .with_clock_skew(Duration::from_secs(200))
        .verify_actor(&signed)
        .unwrap();
}

#[test]
fn not_yet_valid_token_is_refused() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .issued_at(NOW)
        .valid_in(Duration::from_secs(86_400))
        .metadata(Actor::named("future"))
        .build();
    let signed = embed_claims(&code_module(), &claims, &account).unwrap();
    let err = verifier().verify_actor(&signed).unwrap_err();
    assert!(matches!(err, ClaimsError::NotYetValid { not_before } if not_before == NOW + 86_400));
    Verifier::new()
        .at_time(NOW + 86_400)
        .verify_actor(&signed)
        .unwrap();
}

#[test]
fn issuer_that_is_not_an_account_key_is_refused() {
    let operator = KeyPair::generate(KeyKind::Operator);
    let module = KeyPair::generate(KeyKind::Module);
    let signed = sign(&code_module(), &operator, &module);
    let err = verifier().verify_actor(&signed).unwrap_err();
    assert!(
        matches!(
            err,
            ClaimsError::WrongKeyKind {
                expected: KeyKind::Account,
                actual: KeyKind::Operator,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn subject_that_is_not_a_module_key_is_refused() {
    let account = KeyPair::generate(KeyKind::Account);
    let server = KeyPair::generate(KeyKind::Server);
    let signed = sign(&code_module(), &account, &server);
    let err = verifier().verify_actor(&signed).unwrap_err();
    assert!(
        matches!(
            err,
            ClaimsError::WrongKeyKind {
                expected: KeyKind::Module,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn self_issued_token_is_refused() {
    let module = KeyPair::generate(KeyKind::Module);
    let signed = sign(&code_module(), &module, &module);
    let err = verifier().verify_actor(&signed).unwrap_err();
    assert!(matches!(err, ClaimsError::SelfIssued { .. }), "{err}");
}

#[test]
fn untrusted_issuer_is_refused_when_a_trust_list_is_set() {
    let trusted = KeyPair::generate(KeyKind::Account);
    let stranger = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let v = verifier().trust_issuer(&trusted.public_key()).unwrap();
    v.verify_actor(&sign(&code_module(), &trusted, &module))
        .unwrap();
    let err = v
        .verify_actor(&sign(&code_module(), &stranger, &module))
        .unwrap_err();
    assert!(
        matches!(&err, ClaimsError::UntrustedIssuer { issuer } if *issuer == stranger.public_key()),
        "{err}"
    );
}

#[test]
fn garbage_jwt_is_a_malformed_token() {
    for garbage in ["not a jwt", "a.b.c", "....", ""] {
        let m = with_token(&code_module(), garbage);
        let err = verifier().verify_actor(&m).unwrap_err();
        assert!(
            matches!(err, ClaimsError::MalformedToken { .. }),
            "{garbage:?}: {err}"
        );
    }
}

#[test]
fn truncated_module_is_malformed() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let signed = sign(&code_module(), &account, &module);
    for cut in [9, 20, signed.len() / 2, signed.len() - 1] {
        let err = verifier().verify_actor(&signed[..cut]).unwrap_err();
        assert!(
            matches!(err, ClaimsError::MalformedModule { .. }),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn non_wasm_file_is_refused() {
    for junk in [
        &b""[..],
        b"#!/bin/sh\necho hi\n",
        b"\x7fELF\x02\x01\x01\0\0\0",
    ] {
        let err = verifier().verify_actor(junk).unwrap_err();
        assert!(matches!(err, ClaimsError::NotWasm), "{err}");
    }
}

#[test]
fn unsigned_module_is_refused() {
    let err = verifier().verify_actor(&code_module()).unwrap_err();
    assert!(matches!(err, ClaimsError::Unsigned));
    assert!(err.to_string().contains("waxosuit claims sign"));
}

// ----------------------------------------------------------------- trust --

fn operator_token(op: &KeyPair, signers: &[&KeyPair]) -> String {
    Claims::<Operator>::builder()
        .issuer(op.public_key())
        .subject(op.public_key())
        .metadata(Operator {
            name: Some("ops".into()),
            valid_signers: Some(signers.iter().map(|k| k.public_key()).collect()),
        })
        .build()
        .encode(op)
        .unwrap()
}

fn account_token(by: &KeyPair, account: &KeyPair, signers: &[&KeyPair]) -> String {
    Claims::<Account>::builder()
        .issuer(by.public_key())
        .subject(account.public_key())
        .metadata(Account {
            name: Some("team".into()),
            valid_signers: Some(signers.iter().map(|k| k.public_key()).collect()),
        })
        .build()
        .encode(by)
        .unwrap()
}

#[test]
fn operator_account_actor_chain_is_trusted() {
    let operator = KeyPair::generate(KeyKind::Operator);
    let op_signing = KeyPair::generate(KeyKind::Operator);
    let account = KeyPair::generate(KeyKind::Account);
    let account_signing = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);

    let v = Verifier::new()
        .trust_operator_token(&operator_token(&operator, &[&op_signing]))
        .unwrap()
        .with_account_token(account_token(&op_signing, &account, &[&account_signing]));

    // Issued by the account itself, and by one of its valid signers.
    v.verify_actor(&sign(&code_module(), &account, &module))
        .unwrap();
    v.verify_actor(&sign(&code_module(), &account_signing, &module))
        .unwrap();

    // An account vouched for by an operator nobody trusts does not count.
    let rogue_op = KeyPair::generate(KeyKind::Operator);
    let rogue_account = KeyPair::generate(KeyKind::Account);
    let v = v.with_account_token(account_token(&rogue_op, &rogue_account, &[]));
    let err = v
        .verify_actor(&sign(&code_module(), &rogue_account, &module))
        .unwrap_err();
    assert!(matches!(err, ClaimsError::UntrustedIssuer { .. }), "{err}");
    assert!(matches!(
        v.verify_account(&account_token(&rogue_op, &rogue_account, &[])),
        Err(ClaimsError::UntrustedIssuer { .. })
    ));
}

#[test]
fn operator_token_must_be_self_signed_by_an_operator() {
    let account = KeyPair::generate(KeyKind::Account);
    let bogus = Claims::<Operator>::builder()
        .issuer(account.public_key())
        .subject(account.public_key())
        .metadata(Operator::default())
        .build()
        .encode(&account)
        .unwrap();
    assert!(matches!(
        Verifier::new().trust_operator_token(&bogus),
        Err(ClaimsError::WrongKeyKind { .. })
    ));
    assert!(matches!(
        Verifier::new().trust_issuer(&KeyPair::generate(KeyKind::Module).public_key()),
        Err(ClaimsError::WrongKeyKind { .. })
    ));
    assert!(matches!(
        Verifier::new().trust_operator("OBOGUS"),
        Err(ClaimsError::InvalidKey { .. })
    ));
}

// -------------------------------------------------------------- property --

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// Whatever is done to a signed module, verification either refuses it
    /// with an error (never a panic) or accepts exactly the signed code and claims.
    #[test]
    fn mutated_modules_never_verify_as_something_else(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let account = KeyPair::from_raw_seed(KeyKind::Account, [7; 32]).unwrap();
        let module = KeyPair::from_raw_seed(KeyKind::Module, [8; 32]).unwrap();
        let original = sign(&code_module(), &account, &module);
        let mut bytes = original.clone();
        for (at, mask) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        if let Ok(v) = verifier().verify_actor(&bytes) {
            prop_assert_eq!(strip_signature(&bytes).unwrap(), code_module());
            prop_assert_eq!(v.public_key(), module.public_key());
            prop_assert_eq!(v.issuer(), account.public_key());
            prop_assert_eq!(v.capabilities(), &[caps::KEY_VALUE.to_string()][..]);
        }
    }

    /// Arbitrary bytes never panic extraction or verification.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut with_magic = EMPTY_MODULE.to_vec();
        with_magic.extend_from_slice(&bytes);
        prop_assert!(verifier().verify_actor(&bytes).is_err());
        let _ = verifier().verify_actor(&with_magic);
    }
}
