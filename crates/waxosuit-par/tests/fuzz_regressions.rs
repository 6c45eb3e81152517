//! Inputs found by the fuzz suite (`fuzz/`, docs/fuzzing.md), kept so that
//! they stay fixed.

use waxosuit_claims::{KeyKind, KeyPair};
use waxosuit_par::{ParError, ProviderArchive};

const TARGET_LIB: &str = "x86_64-unknown-linux-gnu.so";

fn octal(field: &mut [u8; 12], value: u64) {
    field.copy_from_slice(format!("{value:011o}\0").as_bytes());
}

/// A GNU sparse entry of `hole` bytes that are all a hole: a 512-byte
/// header and no data, which a tar reader expands to `hole` zeros.
fn sparse_entry(name: &str, hole: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).expect("a short name");
    header.set_mode(0o644);
    header.set_size(0);
    header.set_entry_type(tar::EntryType::GNUSparse);
    let gnu = header.as_gnu_mut().expect("a GNU header");
    octal(&mut gnu.sparse[0].offset, hole);
    octal(&mut gnu.sparse[0].numbytes, 0);
    octal(&mut gnu.realsize, hole);
    header.set_cksum();
    header.as_bytes().to_vec()
}

fn regular_entry(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).expect("a short name");
    header.set_mode(0o644);
    header.set_size(bytes.len() as u64);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn signed_token() -> String {
    let account = KeyPair::generate(KeyKind::Account);
    let service = KeyPair::generate(KeyKind::Service);
    let mut par = ProviderArchive::create("acme:inventory", "Acme", "Inventory").expect("create");
    par.sign(&account, &service.public_key()).expect("sign");
    par.token().expect("signed").to_string()
}

/// `par_read`: tar readers fill the holes of a GNU sparse entry with zeros,
/// so a 1.5 KiB archive declaring a 1 GiB hole made `from_bytes` allocate
/// and zero 1 GiB (out of memory at libFuzzer's 2 GiB limit), before any
/// signature was checked. Entries must now be regular files.
#[test]
fn a_sparse_entry_is_refused_before_its_holes_are_read() {
    let mut tar = regular_entry("claims.jwt", signed_token().as_bytes());
    // 64 MiB: enough to tell reading from refusing without straining CI.
    tar.extend(sparse_entry(TARGET_LIB, 64 << 20));
    tar.extend([0; 1024]);
    match ProviderArchive::from_bytes(&tar) {
        Err(ParError::UnexpectedEntry { name }) => assert_eq!(name, TARGET_LIB),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(par) => panic!(
            "accepted, with a library of {} bytes",
            par.library_unverified("x86_64-unknown-linux-gnu")
                .map_or(0, <[u8]>::len)
        ),
    }
}

/// The fuzzer's own input: a sparse `claims.jwt` of 1 GiB, nothing else.
#[test]
fn a_sparse_claims_entry_of_a_gibibyte_is_refused_at_once() {
    let mut tar = sparse_entry("claims.jwt", (1 << 30) - 1);
    tar.extend([0; 1024]);
    assert!(matches!(
        ProviderArchive::from_bytes(&tar),
        Err(ParError::UnexpectedEntry { .. })
    ));
}

/// Links, directories and the like are no claims and no library either.
#[test]
fn only_regular_files_are_entries() {
    for kind in [
        tar::EntryType::Link,
        tar::EntryType::Symlink,
        tar::EntryType::Directory,
        tar::EntryType::Fifo,
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_path(TARGET_LIB).expect("a short name");
        header.set_size(0);
        header.set_entry_type(kind);
        header.set_cksum();
        let mut tar = regular_entry("claims.jwt", signed_token().as_bytes());
        tar.extend_from_slice(header.as_bytes());
        tar.extend([0; 1024]);
        assert!(
            matches!(
                ProviderArchive::from_bytes(&tar),
                Err(ParError::UnexpectedEntry { .. })
            ),
            "{kind:?}"
        );
    }
}
