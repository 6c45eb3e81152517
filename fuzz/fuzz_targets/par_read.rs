//! Provider archives (`waxosuit-par`): `ProviderArchive::from_bytes` and
//! `read` on arbitrary bytes, then `verify` on whatever parses.
//!
//! Input: a mode byte, then
//! * `0`: the archive bytes as they are (gzip or plain tar);
//! * `1`: a plain tar whose header checksums the target fixes up before
//!   reading, so that mutations of the headers (entry types, sizes, GNU
//!   sparse maps, long names, PAX records) reach the reader instead of
//!   failing the checksum;
//! * `2`: `capid\nvendor\nname\nversion\ntarget\nlibrary…` built with the
//!   public API, signed by the fixed account for the fixed service key,
//!   written, and read back: what `sign` accepts must read back and verify.
//!
//! Checked, beyond "no panic, no hang, no unbounded allocation (the
//! libFuzzer RSS limit)": a verified archive hands out every library it
//! lists; an archive that parses survives `to_bytes` → `from_bytes`
//! unchanged; only trusted issuers verify.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_fuzz::{Signer, verifiers};
use waxosuit_par::ProviderArchive;

fn check(par: &ProviderArchive) {
    let _ = (par.capid(), par.token(), par.claims_unverified());
    for target in par.targets() {
        assert!(par.library_unverified(target).is_some());
    }
    let v = verifiers();
    for verifier in [&v.trusting, &v.any, &v.none] {
        match par.verify(verifier) {
            Ok(verified) => {
                assert!(
                    !std::ptr::eq(verifier, &v.none),
                    "a verifier trusting no one accepted"
                );
                let _ = (verified.name(), verified.vendor(), verified.version());
                let _ = (verified.revision(), verified.issuer(), verified.subject());
                for target in verified.targets() {
                    let library = verified
                        .library_for(target)
                        .expect("a verified archive hands out its libraries");
                    assert_eq!(Some(library), par.library_unverified(target));
                }
                let _ = verified.library_for_host();
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    // Whatever was read is written back and reads the same.
    if let Ok(bytes) = par.to_bytes() {
        let again = ProviderArchive::from_bytes(&bytes).expect("a written archive reads back");
        assert_eq!(again.token(), par.token());
        assert_eq!(again.targets(), par.targets());
        for target in par.targets() {
            assert_eq!(
                again.library_unverified(target),
                par.library_unverified(target)
            );
        }
    }
}

fn read(bytes: &[u8]) {
    let from_bytes = ProviderArchive::from_bytes(bytes);
    let from_reader = ProviderArchive::read(bytes);
    assert_eq!(from_bytes.is_ok(), from_reader.is_ok());
    match from_bytes {
        Ok(par) => check(&par),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Recomputes the checksum of every header block a tar reader would meet.
fn fix_checksums(mut tar: Vec<u8>) -> Vec<u8> {
    let mut pos = 0usize;
    while let Some(block) = tar.get_mut(pos..pos + 512) {
        if block.iter().all(|&b| b == 0) {
            break;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let Ok(size) = tar::Header::from_byte_slice(block).entry_size() else {
            break;
        };
        let Some(next) = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_add(511))
            .map(|s| s / 512 * 512)
            .and_then(|s| s.checked_add(pos + 512))
        else {
            break;
        };
        pos = next;
    }
    tar
}

fn build(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(6, '\n');
    let mut next = || parts.next().unwrap_or_default().to_string();
    let (capid, vendor, name, version, target) = (next(), next(), next(), next(), next());
    let library = next().into_bytes();
    let Ok(mut par) = ProviderArchive::create(&capid, &vendor, &name) else {
        return;
    };
    if !version.is_empty() {
        par.set_version(version);
    }
    if par.insert(&target, library.clone()).is_err() {
        return;
    }
    if par
        .sign(&Signer::Account.key_pair(), &Signer::Service.public_key())
        .is_err()
    {
        return;
    }
    let bytes = par.to_bytes().expect("a signed archive writes");
    let back = ProviderArchive::from_bytes(&bytes).expect("a written archive reads back");
    let verified = back
        .verify(&verifiers().trusting)
        .unwrap_or_else(|e| panic!("a freshly signed archive does not verify: {e}"));
    assert_eq!(verified.capid(), capid);
    assert_eq!(verified.library_for(&target).ok(), Some(&library[..]));
    check(&back);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => read(rest),
        1 => read(&fix_checksums(rest.to_vec())),
        _ => build(rest),
    }
});
