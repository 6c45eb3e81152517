//! Signature sections of wasm modules: `waxosuit_claims::extract`,
//! `module_hash` and `strip_signature` on arbitrary bytes, and
//! `Verifier::verify_actor`, which is how every module a host loads is read.
//!
//! Checked, beyond "no panic": the three functions accept and refuse the
//! same modules (an unsigned or ambiguous module aside); the hash is the
//! SHA-256 of the stripped module, which is a fixed point of stripping and
//! carries no signature; and any module they accept can be signed with
//! `embed_claims` and then verifies, with its token and hash intact.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use waxosuit_claims::{
    Actor, Claims, ClaimsError, Verifier, embed_claims, extract, module_hash, strip_signature,
};
use waxosuit_fuzz::{NOW, Signer, has_unsafe_chars};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        Verifier::new()
            .at_time(NOW)
            .trust_issuer(&Signer::Account.public_key())
            .expect("an account key")
    })
}

fn claims() -> &'static Claims<Actor> {
    static C: OnceLock<Claims<Actor>> = OnceLock::new();
    C.get_or_init(|| {
        Claims::<Actor>::builder()
            .issuer(Signer::Account.public_key())
            .subject(Signer::Module.public_key())
            .id("fuzz")
            .issued_at(NOW - 60)
            .metadata(Actor {
                caps: Some(vec!["wascc:keyvalue".to_string()]),
                ..Actor::named("fuzzed")
            })
            .build()
    })
}

fn check_error(e: &ClaimsError) {
    let message = e.to_string();
    assert!(!has_unsafe_chars(&message), "{message:?}");
    assert!(message.len() <= 4096, "{} bytes", message.len());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    data_encoding::HEXUPPER.encode(&sha2::Sha256::digest(bytes))
}

fuzz_target!(|data: &[u8]| {
    let extracted = extract(data);
    let hash = module_hash(data);
    let stripped = strip_signature(data);
    let verified = verifier().verify_actor(data);

    for e in [
        &extracted.as_ref().err(),
        &hash.as_ref().err(),
        &stripped.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        check_error(e);
    }
    if let Err(e) = &verified {
        check_error(e);
    }

    match (&hash, &stripped) {
        (Ok(hash), Ok(stripped)) => {
            // Stripping is idempotent, and what is left hashes the same.
            assert_eq!(strip_signature(stripped).as_ref().ok(), Some(stripped));
            assert_eq!(&sha256_hex(stripped), hash);
            assert_eq!(module_hash(stripped).as_ref().ok(), Some(hash));
            assert!(matches!(extract(stripped), Err(ClaimsError::Unsigned)));
            match &extracted {
                Ok(e) => assert_eq!(&e.module_hash, hash),
                Err(ClaimsError::Unsigned | ClaimsError::AmbiguousSignature { .. }) => {}
                Err(other) => panic!("extract refused what module_hash accepted: {other}"),
            }
            // Any module we can hash we can sign, and then it verifies.
            let signed = embed_claims(data, claims(), &Signer::Account.key_pair())
                .expect("embed_claims accepts what strip_signature accepts");
            let actor = verifier()
                .verify_actor(&signed)
                .expect("a freshly signed module verifies");
            assert_eq!(actor.metadata().module_hash, *hash);
            assert_eq!(actor.name(), "fuzzed");
            assert_eq!(module_hash(&signed).as_ref().ok(), Some(hash));
        }
        (Err(_), Err(_)) => {
            assert!(extracted.is_err());
            assert!(verified.is_err());
        }
        _ => panic!("module_hash and strip_signature disagree: {hash:?} / {stripped:?}"),
    }
    if let Ok(actor) = &verified {
        // Only our fixed account is trusted, and it signed what we signed.
        assert_eq!(actor.issuer(), Signer::Account.public_key());
        assert_eq!(Some(&actor.metadata().module_hash), hash.as_ref().ok());
    }
});
