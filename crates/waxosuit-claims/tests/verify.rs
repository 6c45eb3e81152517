//! Golden vectors, every rejection path, trust chains and a property test
//! over extraction + verification.

use std::time::Duration;

use data_encoding::BASE64URL_NOPAD;
use proptest::prelude::*;
use waxosuit_claims::{
    Account, Actor, CapabilityProvider, Claims, ClaimsError, KeyKind, KeyPair, Operator, Verifier,
    caps, display, embed_claims, module_hash, rules, strip_signature,
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

/// The default verifier at `NOW`: it trusts no issuer. The checks before
/// trust (format, signature, key roles, fields) still report their own errors.
fn strict() -> Verifier {
    Verifier::new().at_time(NOW)
}

/// A verifier at `NOW` that trusts `account`: the tests sign with
/// throw-away accounts and trust exactly that one, so a refusal they expect
/// is never the trust decision standing in for the check under test.
fn verifier_for(account: &KeyPair) -> Verifier {
    Verifier::new()
        .at_time(NOW)
        .trust_issuer(&account.public_key())
        .unwrap()
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

    let verified = verifier_for(&account).verify_actor(&signed).unwrap();
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
    verifier_for(&account).verify_actor(&twice).unwrap();
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
    let verified = verifier_for(&account).verify_actor(&signed).unwrap();
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
    let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
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
    let err = verifier_for(&account).verify_actor(&thief).unwrap_err();
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
    let err = verifier_for(&account).verify_actor(&forged).unwrap_err();
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
    let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
    assert!(matches!(err, ClaimsError::Expired { expires_at } if expires_at == NOW - 100));
    assert!(err.to_string().contains("2023-11-14T22:11:40Z"), "{err}");
    // Within the configured skew it is still accepted.
    verifier_for(&account)
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
    let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
    assert!(matches!(err, ClaimsError::NotYetValid { not_before } if not_before == NOW + 86_400));
    Verifier::new()
        .at_time(NOW + 86_400)
        .trust_issuer(&account.public_key())
        .unwrap()
        .verify_actor(&signed)
        .unwrap();
}

#[test]
fn issuer_that_is_not_an_account_key_is_refused() {
    let operator = KeyPair::generate(KeyKind::Operator);
    let module = KeyPair::generate(KeyKind::Module);
    let signed = sign(&code_module(), &operator, &module);
    let err = strict().verify_actor(&signed).unwrap_err();
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
    let err = strict().verify_actor(&signed).unwrap_err();
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
    let err = strict().verify_actor(&signed).unwrap_err();
    assert!(matches!(err, ClaimsError::SelfIssued { .. }), "{err}");
}

#[test]
fn untrusted_issuer_is_refused_when_a_trust_list_is_set() {
    let trusted = KeyPair::generate(KeyKind::Account);
    let stranger = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let v = strict().trust_issuer(&trusted.public_key()).unwrap();
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
        let err = strict().verify_actor(&m).unwrap_err();
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
        let err = strict().verify_actor(&signed[..cut]).unwrap_err();
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
        let err = strict().verify_actor(junk).unwrap_err();
        assert!(matches!(err, ClaimsError::NotWasm), "{err}");
    }
}

#[test]
fn unsigned_module_is_refused() {
    let err = strict().verify_actor(&code_module()).unwrap_err();
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

#[test]
fn the_default_verifier_trusts_no_issuer() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let signed = sign(&code_module(), &account, &module);

    let v = strict();
    assert!(!v.has_trust_list() && !v.allows_any_issuer());
    let err = v.verify_actor(&signed).unwrap_err();
    assert!(
        matches!(&err, ClaimsError::NoTrustedIssuer { what: "actor", issuer } if *issuer == account.public_key()),
        "{err}"
    );
    assert_eq!(err.kind(), "no_trusted_issuer");
    let text = err.to_string();
    for needle in [
        "no issuer is trusted",
        "--trusted-issuer",
        "local keystore's account",
        "--allow-any-issuer",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in: {text}");
    }
    // The same refusal for a token presented without its module (lattice).
    let jwt = token_of(&signed);
    assert!(matches!(
        v.verify_remote_actor_token(&jwt),
        Err(ClaimsError::NoTrustedIssuer { .. })
    ));

    // Trusting another account turns it into an untrusted-issuer refusal.
    let other = KeyPair::generate(KeyKind::Account);
    let err = strict()
        .trust_issuer(&other.public_key())
        .unwrap()
        .verify_actor(&signed)
        .unwrap_err();
    assert!(matches!(err, ClaimsError::UntrustedIssuer { .. }), "{err}");

    // Explicit development mode accepts it, and says so.
    let any = strict().allow_any_issuer();
    assert!(any.allows_any_issuer());
    assert_eq!(
        any.verify_actor(&signed).unwrap().issuer(),
        account.public_key()
    );
    // Allow-any does not relax anything else.
    let mut tampered = signed.clone();
    let at = tampered.windows(2).position(|w| w == [0x41, 0x2a]).unwrap();
    tampered[at + 1] ^= 1;
    assert!(matches!(
        any.verify_actor(&tampered),
        Err(ClaimsError::ModuleHashMismatch { .. })
    ));
}

#[test]
fn account_tokens_need_a_trusted_operator_unless_any_issuer_is_allowed() {
    let operator = KeyPair::generate(KeyKind::Operator);
    let account = KeyPair::generate(KeyKind::Account);
    let jwt = account_token(&operator, &account, &[]);

    let err = strict().verify_account(&jwt).unwrap_err();
    assert!(
        matches!(&err, ClaimsError::NoTrustedIssuer { what: "account token", issuer } if *issuer == operator.public_key()),
        "{err}"
    );
    assert!(err.to_string().contains("--trusted-operator"), "{err}");
    // Trusting only issuers (accounts) does not make an operator trusted.
    let err = strict()
        .trust_issuer(&account.public_key())
        .unwrap()
        .verify_account(&jwt)
        .unwrap_err();
    assert!(matches!(err, ClaimsError::NoTrustedIssuer { .. }), "{err}");

    strict().allow_any_issuer().verify_account(&jwt).unwrap();
    strict()
        .trust_operator(&operator.public_key())
        .unwrap()
        .verify_account(&jwt)
        .unwrap();
    let stranger = KeyPair::generate(KeyKind::Operator);
    let err = strict()
        .trust_operator(&stranger.public_key())
        .unwrap()
        .verify_account(&jwt)
        .unwrap_err();
    assert!(matches!(err, ClaimsError::UntrustedIssuer { .. }), "{err}");
}

fn provider_token(issuer: &KeyPair, subject: &str, meta: CapabilityProvider) -> String {
    Claims::<CapabilityProvider>::builder()
        .issuer(issuer.public_key())
        .subject(subject)
        .issued_at(NOW)
        .metadata(meta)
        .build()
        .encode(issuer)
        .unwrap()
}

fn provider_meta() -> CapabilityProvider {
    CapabilityProvider {
        name: Some("Inventory".into()),
        capid: "acme:inventory".into(),
        vendor: "Acme".into(),
        rev: Some(1),
        ver: Some("1.0.0".into()),
        target_hashes: [("x86_64-unknown-linux-gnu".to_string(), "ab".repeat(32))].into(),
    }
}

#[test]
fn provider_tokens_follow_the_actor_trust_rules() {
    let account = KeyPair::generate(KeyKind::Account);
    let service = KeyPair::generate(KeyKind::Service).public_key();
    let jwt = provider_token(&account, &service, provider_meta());

    let err = strict().verify_provider(&jwt).unwrap_err();
    assert!(
        matches!(
            err,
            ClaimsError::NoTrustedIssuer {
                what: "capability provider archive",
                ..
            }
        ),
        "{err}"
    );
    let verified = verifier_for(&account).verify_provider(&jwt).unwrap();
    assert_eq!(verified.metadata().capid, "acme:inventory");
    strict().allow_any_issuer().verify_provider(&jwt).unwrap();

    // Through an operator → account chain.
    let operator = KeyPair::generate(KeyKind::Operator);
    strict()
        .trust_operator(&operator.public_key())
        .unwrap()
        .with_account_token(account_token(&operator, &account, &[]))
        .verify_provider(&jwt)
        .unwrap();

    // The subject must be a service key.
    let module = KeyPair::generate(KeyKind::Module).public_key();
    let err = verifier_for(&account)
        .verify_provider(&provider_token(&account, &module, provider_meta()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClaimsError::WrongKeyKind {
                expected: KeyKind::Service,
                ..
            }
        ),
        "{err}"
    );

    // Its fields are checked like an actor's.
    for (field, meta) in [
        (
            "capid",
            CapabilityProvider {
                capid: "nocolon".into(),
                ..provider_meta()
            },
        ),
        (
            "capid",
            CapabilityProvider {
                capid: module.clone(),
                ..provider_meta()
            },
        ),
        (
            "vendor",
            CapabilityProvider {
                vendor: "\u{1b}[2J".into(),
                ..provider_meta()
            },
        ),
        (
            "rev",
            CapabilityProvider {
                rev: Some(-1),
                ..provider_meta()
            },
        ),
        (
            "target_hashes",
            CapabilityProvider {
                target_hashes: [("../../etc".to_string(), "ab".repeat(32))].into(),
                ..provider_meta()
            },
        ),
        (
            "target_hashes[x86_64-unknown-linux-gnu]",
            CapabilityProvider {
                target_hashes: [("x86_64-unknown-linux-gnu".to_string(), "zz".into())].into(),
                ..provider_meta()
            },
        ),
    ] {
        let err = verifier_for(&account)
            .verify_provider(&provider_token(&account, &service, meta))
            .unwrap_err();
        assert!(
            matches!(&err, ClaimsError::InvalidClaim { kind: "capability provider", field: f, .. } if f == field),
            "{field}: {err}"
        );
    }
}

/// Signs `meta` for `code_module()` **without** the checks `embed_claims`
/// makes, the way a hostile signer would.
fn hostile_module(account: &KeyPair, subject: &str, meta: Actor) -> Vec<u8> {
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(subject)
        .issued_at(NOW)
        .metadata(Actor {
            module_hash: module_hash(&code_module()).unwrap(),
            ..meta
        })
        .build();
    with_token(&code_module(), &claims.encode(account).unwrap())
}

/// 56 bytes starting with `M` whose 8th byte is inside `é`: the shape that
/// made `caps::display_name` panic.
fn non_ascii_module_shape() -> String {
    let s = format!("MAAAAAA\u{e9}{}", "A".repeat(47));
    assert_eq!(s.len(), 56);
    s
}

#[test]
fn every_actor_field_is_validated_with_a_typed_error() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let callee = KeyPair::generate(KeyKind::Module).public_key();
    let base = || Actor {
        caps: Some(vec![caps::KEY_VALUE.into(), callee.clone()]),
        tags: Some(vec!["ok".into()]),
        ver: Some("1.0".into()),
        rev: Some(2),
        call_alias: Some("acme/counter".into()),
        ..Actor::named("tester")
    };
    // The base passes, both ways in.
    verifier_for(&account)
        .verify_actor(&hostile_module(&account, &module.public_key(), base()))
        .unwrap();

    let long = "x".repeat(10_000);
    let cases: Vec<(&str, Actor)> = vec![
        (
            "caps[1]",
            Actor {
                caps: Some(vec![caps::KEY_VALUE.into(), non_ascii_module_shape()]),
                ..base()
            },
        ),
        (
            "caps[0]",
            Actor {
                caps: Some(vec![format!("M{}", "A".repeat(55))]),
                ..base()
            },
        ),
        (
            "caps[0]",
            Actor {
                caps: Some(vec![account.public_key()]),
                ..base()
            },
        ),
        (
            "caps[0]",
            Actor {
                caps: Some(vec!["payments".into()]),
                ..base()
            },
        ),
        (
            "caps[0]",
            Actor {
                caps: Some(vec![long.clone()]),
                ..base()
            },
        ),
        (
            "caps",
            Actor {
                caps: Some(vec![caps::LOGGING.into(); 257]),
                ..base()
            },
        ),
        (
            "tags[1]",
            Actor {
                tags: Some(vec!["ok".into(), "bell\u{7}".into()]),
                ..base()
            },
        ),
        (
            "tags[0]",
            Actor {
                tags: Some(vec!["x".repeat(129)]),
                ..base()
            },
        ),
        (
            "tags",
            Actor {
                tags: Some(vec!["t".into(); 65]),
                ..base()
            },
        ),
        (
            "name",
            Actor {
                name: Some(String::new()),
                ..base()
            },
        ),
        (
            "name",
            Actor {
                name: Some("evil\u{202e}lanimret".into()),
                ..base()
            },
        ),
        (
            "ver",
            Actor {
                ver: Some("v".repeat(65)),
                ..base()
            },
        ),
        (
            "ver",
            Actor {
                ver: Some("1.0\n".into()),
                ..base()
            },
        ),
        (
            "rev",
            Actor {
                rev: Some(-1),
                ..base()
            },
        ),
        (
            "call_alias",
            Actor {
                call_alias: Some("acme:counter".into()),
                ..base()
            },
        ),
        (
            "call_alias",
            Actor {
                call_alias: Some(callee.clone()),
                ..base()
            },
        ),
        (
            "call_alias",
            Actor {
                call_alias: Some(String::new()),
                ..base()
            },
        ),
        (
            "call_alias",
            Actor {
                call_alias: Some("naïve".into()),
                ..base()
            },
        ),
    ];
    for (field, meta) in cases {
        let signed = hostile_module(&account, &module.public_key(), meta.clone());
        let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
        assert!(
            matches!(&err, ClaimsError::InvalidClaim { kind: "actor", field: f, .. } if f == field),
            "{field}: {err}"
        );
        let text = err.to_string();
        assert!(text.contains("allowed:"), "{text}");
        assert!(
            text.chars().count() < 1000,
            "the message is bounded: {text}"
        );
        assert!(
            !text.chars().any(waxosuit_claims::display::is_unsafe_char),
            "{text:?}"
        );
        // Signing refuses the same claims before writing anything.
        let claims = Claims::<Actor>::builder()
            .issuer(account.public_key())
            .subject(module.public_key())
            .metadata(meta)
            .build();
        let err = embed_claims(&code_module(), &claims, &account).unwrap_err();
        assert!(
            matches!(&err, ClaimsError::InvalidClaim { field: f, .. } if f == field),
            "{field}: {err}"
        );
    }

    // A hash that is not uppercase hex is refused as such, not as a mismatch.
    let claims = Claims::<Actor>::builder()
        .issuer(account.public_key())
        .subject(module.public_key())
        .metadata(Actor {
            module_hash: module_hash(&code_module()).unwrap().to_lowercase(),
            ..base()
        })
        .build();
    let signed = with_token(&code_module(), &claims.encode(&account).unwrap());
    let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
    assert!(
        matches!(&err, ClaimsError::InvalidClaim { field, .. } if field == "hash"),
        "{err}"
    );
}

#[test]
fn an_oversized_token_is_refused_before_it_is_parsed() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    // 64 KiB of tags: each is valid, the whole is not.
    let meta = Actor {
        tags: Some(vec!["t".repeat(100); 1000]),
        ..Actor::named("big")
    };
    let signed = hostile_module(&account, &module.public_key(), meta);
    let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
    assert!(
        matches!(&err, ClaimsError::InvalidClaim { field, .. } if field == "token"),
        "{err}"
    );
    assert!(err.to_string().contains("at most 65536 bytes"), "{err}");
}

#[test]
fn account_and_operator_tokens_have_their_fields_checked() {
    let operator = KeyPair::generate(KeyKind::Operator);
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    let bad_signers = Claims::<Account>::builder()
        .issuer(operator.public_key())
        .subject(account.public_key())
        .metadata(Account {
            name: Some("team".into()),
            valid_signers: Some(vec![module.public_key()]),
        })
        .build()
        .encode(&operator)
        .unwrap();
    let err = strict()
        .trust_operator(&operator.public_key())
        .unwrap()
        .verify_account(&bad_signers)
        .unwrap_err();
    assert!(
        matches!(&err, ClaimsError::InvalidClaim { kind: "account", field, .. } if field == "valid_signers[0]"),
        "{err}"
    );
    let bad_name = Claims::<Operator>::builder()
        .issuer(operator.public_key())
        .subject(operator.public_key())
        .metadata(Operator {
            name: Some("\u{1b}]0;pwned\u{7}".into()),
            valid_signers: None,
        })
        .build()
        .encode(&operator)
        .unwrap();
    let err = strict().trust_operator_token(&bad_name).unwrap_err();
    assert!(
        matches!(&err, ClaimsError::InvalidClaim { kind: "operator", field, .. } if field == "name"),
        "{err}"
    );
}

#[test]
fn dates_beyond_the_calendar_do_not_panic_the_messages() {
    let account = KeyPair::generate(KeyKind::Account);
    let module = KeyPair::generate(KeyKind::Module);
    for nbf in [253_402_300_800, u64::MAX] {
        let claims = Claims::<Actor>::builder()
            .issuer(account.public_key())
            .subject(module.public_key())
            .issued_at(NOW)
            .not_before(nbf)
            .metadata(Actor::named("far"))
            .build();
        let signed = embed_claims(&code_module(), &claims, &account).unwrap();
        let err = verifier_for(&account).verify_actor(&signed).unwrap_err();
        assert!(matches!(err, ClaimsError::NotYetValid { .. }), "{err}");
        assert!(err.to_string().contains(&nbf.to_string()), "{err}");
    }
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
        if let Ok(v) = verifier_for(&account).verify_actor(&bytes) {
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
        prop_assert!(strict().verify_actor(&bytes).is_err());
        let _ = strict().verify_actor(&with_magic);
    }
}

// ------------------------------------------------------ hostile claims --

/// Text as a hostile signer writes it: ordinary words, arbitrary Unicode,
/// controls and direction overrides, empty, and too long.
fn hostile_text() -> impl Strategy<Value = String> {
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

/// Strings shaped like keys, and some that only look like them.
fn near_miss_key() -> impl Strategy<Value = String> {
    let module_key = any::<[u8; 32]>().prop_map(|seed| {
        KeyPair::from_raw_seed(KeyKind::Module, seed)
            .unwrap()
            .public_key()
    });
    prop_oneof![
        // A real module key.
        2 => module_key.clone(),
        // One character changed: the checksum no longer holds.
        2 => (module_key.clone(), 1usize..56, "[A-Z2-7]").prop_map(|(k, at, c)| {
            let mut chars: Vec<char> = k.chars().collect();
            chars[at] = c.chars().next().unwrap();
            chars.into_iter().collect::<String>()
        }),
        // Base32 noise of the right length.
        1 => "M[A-Z2-7]{55}",
        // 56 bytes starting with `M` but not ASCII (the old panic).
        1 => "[A-Z]{0,6}".prop_map(|head| {
            let mut s = format!("M{head}\u{e9}");
            while s.len() < 56 {
                s.push('A');
            }
            s
        }),
        // Another kind of key, or a key in the wrong case, or cut short.
        1 => any::<[u8; 32]>().prop_map(|seed| {
            KeyPair::from_raw_seed(KeyKind::Account, seed).unwrap().public_key()
        }),
        1 => module_key.clone().prop_map(|k| k.to_lowercase()),
        1 => module_key.prop_map(|k| k[..55].to_string()),
    ]
}

fn capability() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(caps::WELL_KNOWN.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>()),
        3 => "[a-z]{1,8}:[a-z_.-]{1,12}",
        3 => near_miss_key(),
        2 => hostile_text(),
    ]
}

fn hostile_actor() -> impl Strategy<Value = Actor> {
    (
        proptest::option::of(hostile_text()),
        proptest::option::of(proptest::collection::vec(hostile_text(), 0..4)),
        proptest::option::of(proptest::collection::vec(capability(), 0..5)),
        proptest::option::of(-2i32..5),
        proptest::option::of(hostile_text()),
        proptest::option::of(prop_oneof![hostile_text(), near_miss_key()]),
    )
        .prop_map(|(name, tags, caps, rev, ver, call_alias)| Actor {
            name,
            tags,
            caps,
            rev,
            ver,
            call_alias,
            ..Actor::default()
        })
}

/// The rules, restated independently of the crate: what the test expects.
fn expected_field_error(meta: &Actor) -> Option<String> {
    let text_ok = |s: &str, max: usize| {
        !s.is_empty()
            && s.chars().count() <= max
            && !s.chars().any(|c| {
                c.is_control()
                    || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
            })
    };
    let is_module_key = |s: &str| KeyKind::of_public_key(s).is_ok_and(|k| k == KeyKind::Module);
    let namespaced = |s: &str| {
        s.len() <= 128
            && s.split_once(':').is_some_and(|(a, b)| {
                [a, b].iter().all(|p| {
                    !p.is_empty()
                        && p.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                })
            })
    };
    if meta.name.as_deref().is_some_and(|n| !text_ok(n, 128)) {
        return Some("name".into());
    }
    if let Some(i) = meta.tag_list().iter().position(|t| !text_ok(t, 128)) {
        return Some(format!("tags[{i}]"));
    }
    if let Some(i) = meta
        .capabilities()
        .iter()
        .position(|c| !(is_module_key(c) || namespaced(c)))
    {
        return Some(format!("caps[{i}]"));
    }
    if meta.rev.is_some_and(|r| r < 0) {
        return Some("rev".into());
    }
    if meta.ver.as_deref().is_some_and(|v| !text_ok(v, 64)) {
        return Some("ver".into());
    }
    if let Some(alias) = &meta.call_alias {
        let ok = !alias.is_empty()
            && alias.len() <= 64
            && alias
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
            && !(alias.len() == 56 && alias.starts_with('M'));
        if !ok {
            return Some("call_alias".into());
        }
    }
    None
}

/// The signer of every hostile case (key derivation is slow in debug builds).
static HOSTILE_KEYS: std::sync::LazyLock<(KeyPair, KeyPair)> = std::sync::LazyLock::new(|| {
    (
        KeyPair::from_raw_seed(KeyKind::Account, [3; 32]).unwrap(),
        KeyPair::from_raw_seed(KeyKind::Module, [4; 32]).unwrap(),
    )
});

fn assert_printable(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !text.chars().any(display::is_unsafe_char),
        "unescaped text reached a message: {text:?}"
    );
    Ok(())
}

proptest! {
    // Each case signs and verifies three times; in a debug build Ed25519
    // dominates, so this many cases keeps the run under ~20 s.
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Random caps, tags, names, aliases, versions and keys never panic
    /// signing, verification or display; whatever breaks a rule is refused
    /// with `InvalidClaim` naming the first offending field, the same way by
    /// `embed_claims` and by the `Verifier`, and everything else verifies.
    #[test]
    fn hostile_claims_are_refused_with_a_typed_error_and_never_panic(
        meta in hostile_actor(),
        subject in prop_oneof![3 => Just(None), 1 => near_miss_key().prop_map(Some)],
    ) {
        let (account, module) = &*HOSTILE_KEYS;
        let subject = subject.unwrap_or_else(|| module.public_key());
        let expected = expected_field_error(&meta);
        let subject_ok = KeyKind::of_public_key(&subject).is_ok_and(|k| k == KeyKind::Module);

        // Display first: it must cope with anything.
        for capid in meta.capabilities() {
            let shown = caps::display_name(capid);
            assert_printable(&shown)?;
            prop_assert!(shown.chars().count() <= rules::MAX_CAPABILITY_ID_CHARS + 30);
        }
        for text in meta.tag_list().iter().chain(meta.name.iter()).chain(meta.ver.iter()) {
            assert_printable(&display::escape(text, display::DISPLAY_CHARS))?;
        }

        // Signing through the checked path.
        let claims = Claims::<Actor>::builder()
            .issuer(account.public_key())
            .subject(subject.clone())
            .issued_at(NOW)
            .metadata(meta.clone())
            .build();
        match (embed_claims(&code_module(), &claims, account), &expected) {
            (Ok(signed), None) => {
                let verdict = verifier_for(account).verify_actor(&signed);
                if subject_ok {
                    let v = verdict.unwrap();
                    prop_assert_eq!(v.capabilities(), meta.capabilities());
                } else {
                    let err = verdict.unwrap_err();
                    let is_key_error = matches!(
                        err,
                        ClaimsError::InvalidKey { .. } | ClaimsError::WrongKeyKind { .. } | ClaimsError::SelfIssued { .. }
                    );
                    prop_assert!(is_key_error, "{}", err);
                    assert_printable(&err.to_string())?;
                }
            }
            (Err(ClaimsError::InvalidClaim { field, .. }), Some(want)) => prop_assert_eq!(&field, want),
            (other, want) => prop_assert!(false, "embed_claims gave {:?}, expected an error in {:?}", other.map(drop), want),
        }

        // Signing the way a hostile signer would, then verifying.
        let signed = hostile_module(account, &subject, meta.clone());
        let verdict = verifier_for(account).verify_actor(&signed);
        match (&verdict, &expected, subject_ok) {
            (Ok(_), None, true) => {}
            (Err(ClaimsError::InvalidClaim { field, .. }), Some(want), true) => prop_assert_eq!(field, want),
            // A bad subject key is found before the fields are read.
            (Err(ClaimsError::InvalidKey { .. } | ClaimsError::WrongKeyKind { .. } | ClaimsError::SelfIssued { .. }), _, false) => {}
            (other, want, _) => prop_assert!(false, "verify gave {:?}, expected {:?}", other.as_ref().map(drop), want),
        }
        if let Err(e) = &verdict {
            assert_printable(&e.to_string())?;
            prop_assert!(e.to_string().chars().count() < 1500);
        }
        // Without trust, a well-formed module is refused for its issuer only.
        if expected.is_none() && subject_ok {
            let refused = matches!(strict().verify_actor(&signed), Err(ClaimsError::NoTrustedIssuer { .. }));
            prop_assert!(refused);
        }
    }

    /// Any string passed as a capability id, key or text is shown without
    /// panicking, bounded and escaped.
    #[test]
    fn display_never_panics(s in prop_oneof![hostile_text(), near_miss_key(), any::<String>()]) {
        assert_printable(&caps::display_name(&s))?;
        assert_printable(&display::escape(&s, 8))?;
        let _ = caps::is_valid_capability_id(&s);
        let _ = rules::is_valid_call_alias(&s);
        if let Err(e) = KeyKind::of_public_key(&s) {
            assert_printable(&e.to_string())?;
        }
    }
}
