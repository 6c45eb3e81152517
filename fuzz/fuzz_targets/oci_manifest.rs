//! What a registry reference and a registry's manifest can hold:
//! `ArtifactRef::parse` on any text (a manifest's `oci://` entry) and
//! `Resolved::from_manifest` on any bytes (what a registry answers). The
//! input is split at its first NUL byte: reference, then manifest.
//!
//! Checked, beyond "no panic, no unbounded allocation": a reference that
//! parses prints as `oci://…` and parses back to itself; a refused one is
//! refused for a reason the user can act on. A manifest that is accepted
//! names exactly one layer of a kind this host reads, with a SHA-256
//! digest, and of the kind asked for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_registry::{ArtifactKind, ArtifactRef, RegistryError, Resolved};

fuzz_target!(|data: &[u8]| {
    let (text, body) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let reference = match ArtifactRef::parse(text, true) {
        Ok(reference) => {
            let shown = reference.to_string();
            assert!(shown.starts_with("oci://"), "{shown}");
            let again = ArtifactRef::parse(&shown, true).expect("a printed reference parses");
            assert_eq!(again, reference, "{text:?} → {shown}");
            // Refusing `:latest` only ever refuses more.
            if ArtifactRef::parse(text, false).is_ok() {
                assert!(reference.digest().is_some() || reference.tag() != Some("latest"));
            }
            reference
        }
        Err(err) => {
            assert!(
                matches!(
                    err,
                    RegistryError::InvalidReference { .. } | RegistryError::Unpinned { .. }
                ),
                "{err}"
            );
            // Messages show a bounded prefix of what was given.
            assert!(err.to_string().len() < 2048);
            ArtifactRef::parse("oci://127.0.0.1:5000/fuzz/target:1", false)
                .expect("a valid reference")
        }
    };
    for want in [
        None,
        Some(ArtifactKind::Actor),
        Some(ArtifactKind::ProviderArchive),
    ] {
        let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        if let Ok(resolved) = Resolved::from_manifest(&reference, body, digest.to_string(), want) {
            assert_eq!(
                ArtifactKind::of_layer(&resolved.media_type),
                Some(resolved.kind)
            );
            assert!(want.is_none_or(|w| w == resolved.kind));
            let hex = resolved
                .layer_digest
                .strip_prefix("sha256:")
                .expect("sha256");
            assert_eq!(hex.len(), 64);
        }
    }
});
