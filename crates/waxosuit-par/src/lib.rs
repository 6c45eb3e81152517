//! Signed provider archives (`.par`) for Waxosuit native capability plugins.
//!
//! A provider archive is a gzip-compressed tar file holding `claims.jwt` and
//! one plugin library per target triple (`x86_64-unknown-linux-gnu.so`,
//! `aarch64-apple-darwin.dylib`, …). The claims are a
//! [`Claims<CapabilityProvider>`] issued by an account (`A…`) key to the
//! provider's service (`V…`) key, listing the capability id, vendor, name,
//! version and revision, and the uppercase hex SHA-256 of every library.
//!
//! # A guided tour
//!
//! * Build: [`ProviderArchive::create`], [`ProviderArchive::insert`] a
//!   library per target, [`ProviderArchive::sign`], then
//!   [`ProviderArchive::write`] (or [`to_bytes`](ProviderArchive::to_bytes)).
//! * Load: [`ProviderArchive::read`] (or
//!   [`from_bytes`](ProviderArchive::from_bytes)) parses without trusting
//!   anything; [`ProviderArchive::verify`] checks the signature, key roles,
//!   every claims field and the issuer's trust through the [`Verifier`]
//!   (exactly the rules an actor's issuer follows: trusted directly, through
//!   an operator → account chain, or any issuer in development mode), then
//!   every library's hash, and returns a [`VerifiedArchive`]. Only
//!   [`VerifiedArchive::library_for`] hands out library bytes, re-checking the
//!   hash of the target asked for.
//! * [`HOST_TARGET`] is the triple this crate was compiled for: the library
//!   a host loads.
//!
//! ```
//! use waxosuit_claims::{KeyKind, KeyPair, Verifier};
//! use waxosuit_par::ProviderArchive;
//!
//! let account = KeyPair::generate(KeyKind::Account);
//! let service = KeyPair::generate(KeyKind::Service);
//! let mut par = ProviderArchive::create("acme:inventory", "Acme", "Inventory")?;
//! par.insert("x86_64-unknown-linux-gnu", b"\x7fELF...".to_vec())?;
//! par.sign(&account, &service.public_key())?;
//! let bytes = par.to_bytes()?;
//!
//! let read = ProviderArchive::from_bytes(&bytes)?;
//! let verifier = Verifier::new().trust_issuer(&account.public_key())?;
//! let verified = read.verify(&verifier)?;
//! assert_eq!(verified.capid(), "acme:inventory");
//! assert_eq!(verified.library_for("x86_64-unknown-linux-gnu")?, b"\x7fELF...");
//! # Ok::<(), waxosuit_par::ParError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use data_encoding::HEXUPPER;
use sha2::{Digest, Sha256};
use waxosuit_claims::{
    CapabilityProvider, Claims, ClaimsError, KeyKind, KeyPair, TokenKind, Verified, Verifier, caps,
    rules,
};

/// The target triple this crate was compiled for.
pub const HOST_TARGET: &str = env!("WAXOSUIT_PAR_TARGET");

/// The archive entry holding the signed claims.
pub const CLAIMS_ENTRY: &str = "claims.jwt";

/// Largest archive (uncompressed) this crate reads; plugins are a few MiB,
/// and an archive is read into memory whole.
pub const MAX_ARCHIVE_BYTES: u64 = 512 * 1024 * 1024;

/// How many times its compressed size a gzip-compressed archive may
/// inflate to (past [`MIN_INFLATE_LIMIT`]). Libraries compress three to ten
/// times; a stream of zeros a thousand times, and an archive is read, and
/// each entry copied, before its signature is checked: without this, half a
/// megabyte of crafted gzip made the reader allocate a gigabyte.
pub const MAX_INFLATE_RATIO: u64 = 32;

/// The largest claims entry read: a signed token with a hash per target.
const MAX_CLAIMS_BYTES: u64 = 256 * 1024;

/// What any gzip-compressed archive may inflate to, whatever its size.
pub const MIN_INFLATE_LIMIT: u64 = 64 * 1024 * 1024;

/// Why an archive cannot be built, read or trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParError {
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The claims token is malformed, badly signed, expired, has the wrong
    /// key kinds, or a field outside the claims rules.
    #[error("the archive's claims are invalid: {0}")]
    Claims(#[from] ClaimsError),
    /// The claims are sound but the verifier does not trust their issuer
    /// ([`ClaimsError::NoTrustedIssuer`] or [`ClaimsError::UntrustedIssuer`],
    /// whose message says what to pass).
    #[error(transparent)]
    Untrusted(ClaimsError),
    /// The archive holds no claims token.
    #[error("the archive is not signed (no {CLAIMS_ENTRY}); sign it with `waxosuit par create`")]
    Unsigned,
    /// A library's hash differs from the one in the signed claims.
    #[error(
        "the {target} library was tampered with: hash mismatch (signed {expected}, actual {actual})"
    )]
    HashMismatch {
        /// Target triple.
        target: String,
        /// Hash in the claims.
        expected: String,
        /// Hash of the bytes in the archive.
        actual: String,
    },
    /// A library is in the archive but not in the signed claims.
    #[error("the {target} library is not covered by the signature; re-sign the archive")]
    UnsignedLibrary {
        /// Target triple.
        target: String,
    },
    /// No library for a target.
    #[error("the archive has no library for {target} (it has: {available})")]
    MissingLibrary {
        /// Target triple asked for.
        target: String,
        /// Targets present, comma separated.
        available: String,
    },
    /// A capability id is not `namespace:name`.
    #[error(
        "invalid capability id `{capid}`: expected `namespace:name` (A-Z a-z 0-9 _ - ., at most \
         128 characters), e.g. `acme:inventory`"
    )]
    InvalidCapid {
        /// What was given.
        capid: String,
    },
    /// A target triple is empty, too long, or holds something other than
    /// `A-Z a-z 0-9 _ - .` (it becomes a file name).
    #[error(
        "invalid target triple `{target}`: expected 1 to 64 characters of A-Z a-z 0-9 _ - ., \
         e.g. `x86_64-unknown-linux-gnu`"
    )]
    InvalidTarget {
        /// What was given.
        target: String,
    },
    /// The archive holds an entry that is neither claims nor a library.
    #[error("unexpected entry `{name}` in the archive")]
    UnexpectedEntry {
        /// The entry's path.
        name: String,
    },
    /// The archive is larger than [`MAX_ARCHIVE_BYTES`].
    #[error("the archive exceeds {MAX_ARCHIVE_BYTES} bytes")]
    TooLarge,
    /// The gzip-compressed archive inflates past [`MAX_INFLATE_RATIO`] times
    /// its size (and [`MIN_INFLATE_LIMIT`]).
    #[error(
        "the archive's {compressed} compressed bytes inflate to more than {limit} bytes \
         ({MAX_INFLATE_RATIO} times their size): refused before its signature is checked, as a \
         decompression bomb; a real provider archive compresses far less"
    )]
    Inflates {
        /// The compressed size.
        compressed: u64,
        /// What it was allowed to inflate to.
        limit: u64,
    },
    /// A signing key has the wrong kind.
    #[error("the {role} key must be {expected} key, got {actual} key")]
    WrongKey {
        /// `issuer` or `subject`.
        role: &'static str,
        /// The kind needed.
        expected: KeyKind,
        /// The kind given.
        actual: KeyKind,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ParError {
    let context = context.into();
    move |source| ParError::Io { context, source }
}

/// The uppercase hex SHA-256 of a library, as the claims record it.
pub fn library_hash(bytes: &[u8]) -> String {
    HEXUPPER.encode(&Sha256::digest(bytes))
}

/// The entry name of a target's library: `<triple>.so`, `.dylib` or `.dll`.
pub fn library_file_name(target: &str) -> String {
    let ext = if target.contains("windows") {
        "dll"
    } else if target.contains("apple") || target.contains("darwin") {
        "dylib"
    } else {
        "so"
    };
    format!("{target}.{ext}")
}

fn check_target(target: &str) -> Result<(), ParError> {
    if rules::is_valid_target_triple(target) {
        Ok(())
    } else {
        Err(ParError::InvalidTarget {
            target: waxosuit_claims::display::escape(target, rules::MAX_TARGET_CHARS),
        })
    }
}

/// A provider archive in memory; nothing in it is trusted until
/// [`verify`](ProviderArchive::verify) says so.
#[derive(Debug, Clone)]
pub struct ProviderArchive {
    metadata: CapabilityProvider,
    libraries: BTreeMap<String, Vec<u8>>,
    token: Option<String>,
}

impl ProviderArchive {
    /// An empty, unsigned archive for capability `capid`.
    pub fn create(capid: &str, vendor: &str, name: &str) -> Result<ProviderArchive, ParError> {
        if !caps::is_namespaced_capability_id(capid) {
            return Err(ParError::InvalidCapid {
                capid: waxosuit_claims::display::escape(capid, rules::MAX_CAPABILITY_ID_CHARS),
            });
        }
        Ok(ProviderArchive {
            metadata: CapabilityProvider {
                name: Some(name.to_string()),
                capid: capid.to_string(),
                vendor: vendor.to_string(),
                rev: None,
                ver: None,
                target_hashes: Default::default(),
            },
            libraries: BTreeMap::new(),
            token: None,
        })
    }

    /// Sets the version string (takes effect at the next [`sign`](Self::sign)).
    pub fn set_version(&mut self, ver: impl Into<String>) {
        self.metadata.ver = Some(ver.into());
    }

    /// Sets the revision (takes effect at the next [`sign`](Self::sign)).
    pub fn set_revision(&mut self, rev: i32) {
        self.metadata.rev = Some(rev);
    }

    /// Adds or replaces the library for `target`. The existing signature is
    /// kept but no longer covers the new bytes, so the archive fails
    /// verification until it is [signed](Self::sign) again.
    pub fn insert(&mut self, target: &str, library: Vec<u8>) -> Result<(), ParError> {
        check_target(target)?;
        self.libraries.insert(target.to_string(), library);
        Ok(())
    }

    /// Signs the archive: `issuer` (an account key) vouches that `subject`
    /// (the provider's `V…` service public key) is the provider with these
    /// libraries. Claims no verifier would accept (an empty vendor, a name
    /// with control characters, …) are refused with
    /// [`ClaimsError::InvalidClaim`] before anything is signed.
    pub fn sign(&mut self, issuer: &KeyPair, subject: &str) -> Result<(), ParError> {
        if issuer.kind() != KeyKind::Account {
            return Err(ParError::WrongKey {
                role: "issuer",
                expected: KeyKind::Account,
                actual: issuer.kind(),
            });
        }
        let subject_kind = KeyKind::of_public_key(subject)?;
        if subject_kind != KeyKind::Service {
            return Err(ParError::WrongKey {
                role: "subject",
                expected: KeyKind::Service,
                actual: subject_kind,
            });
        }
        let mut metadata = self.metadata.clone();
        metadata.target_hashes = self
            .libraries
            .iter()
            .map(|(t, bytes)| (t.clone(), library_hash(bytes)))
            .collect();
        metadata.validate()?;
        let claims = Claims::<CapabilityProvider>::builder()
            .issuer(issuer.public_key())
            .subject(subject)
            .metadata(metadata.clone())
            .build();
        self.token = Some(claims.encode(issuer)?);
        self.metadata = metadata;
        Ok(())
    }

    /// The signed token, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The claims as written, **unverified** (for tools that display them).
    pub fn claims_unverified(&self) -> Result<Claims<CapabilityProvider>, ParError> {
        let token = self.token.as_deref().ok_or(ParError::Unsigned)?;
        Ok(Claims::decode_unverified(token)?)
    }

    /// The capability id.
    pub fn capid(&self) -> &str {
        &self.metadata.capid
    }

    /// Targets with a library, sorted.
    pub fn targets(&self) -> Vec<&str> {
        self.libraries.keys().map(String::as_str).collect()
    }

    /// A library's bytes, **unverified** (for tools and hashing).
    pub fn library_unverified(&self, target: &str) -> Option<&[u8]> {
        self.libraries.get(target).map(Vec::as_slice)
    }

    /// Writes the archive as gzip-compressed tar. An unsigned archive is
    /// refused: it could never be loaded.
    pub fn write<W: Write>(&self, w: W) -> Result<(), ParError> {
        let token = self.token.as_deref().ok_or(ParError::Unsigned)?;
        let gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        append(&mut tar, CLAIMS_ENTRY, token.as_bytes())?;
        for (target, bytes) in &self.libraries {
            append(&mut tar, &library_file_name(target), bytes)?;
        }
        let gz = tar.into_inner().map_err(io("cannot finish the archive"))?;
        gz.finish().map_err(io("cannot finish the archive"))?;
        Ok(())
    }

    /// [`write`](Self::write) into a byte vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ParError> {
        let mut out = Vec::new();
        self.write(&mut out)?;
        Ok(out)
    }

    /// Writes the archive to `path`.
    pub fn write_path(&self, path: impl AsRef<Path>) -> Result<(), ParError> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(io(format!("cannot write {}", path.display())))
    }

    /// Reads an archive (gzip-compressed or plain tar). Checks only its
    /// shape; call [`verify`](Self::verify) before trusting it.
    pub fn read<R: Read>(r: R) -> Result<ProviderArchive, ParError> {
        let mut raw = Vec::new();
        r.take(MAX_ARCHIVE_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(io("cannot read the archive"))?;
        if raw.len() as u64 > MAX_ARCHIVE_BYTES {
            return Err(ParError::TooLarge);
        }
        Self::from_bytes(&raw)
    }

    /// Reads an archive from `path`.
    pub fn read_path(path: impl AsRef<Path>) -> Result<ProviderArchive, ParError> {
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(io(format!("cannot open {}", path.display())))?;
        Self::read(file)
    }

    /// Parses archive bytes (gzip-compressed or plain tar).
    pub fn from_bytes(bytes: &[u8]) -> Result<ProviderArchive, ParError> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let compressed = bytes.len() as u64;
            let inflate_limit = compressed
                .saturating_mul(MAX_INFLATE_RATIO)
                .max(MIN_INFLATE_LIMIT);
            let limit = inflate_limit.min(MAX_ARCHIVE_BYTES);
            let mut tar_bytes = Vec::new();
            flate2::read::GzDecoder::new(bytes)
                .take(limit + 1)
                .read_to_end(&mut tar_bytes)
                .map_err(io("cannot decompress the archive"))?;
            if tar_bytes.len() as u64 > limit {
                return Err(if limit == MAX_ARCHIVE_BYTES {
                    ParError::TooLarge
                } else {
                    ParError::Inflates { compressed, limit }
                });
            }
            Self::from_tar(&tar_bytes)
        } else {
            Self::from_tar(bytes)
        }
    }

    fn from_tar(bytes: &[u8]) -> Result<ProviderArchive, ParError> {
        let mut archive = tar::Archive::new(bytes);
        let mut token = None;
        let mut libraries = BTreeMap::new();
        let entries = archive
            .entries()
            .map_err(io("cannot read the archive entries"))?;
        for entry in entries {
            let entry = entry.map_err(io("cannot read an archive entry"))?;
            let name = entry
                .path()
                .map_err(io("cannot read an entry name"))?
                .to_string_lossy()
                .into_owned();
            // Only regular files: a GNU sparse entry's holes are filled with
            // zeros by the reader, so a tiny archive could make this read
            // allocate gigabytes before any signature was checked (found by
            // the `par_read` fuzz target). Links and directories are no
            // claims and no library either.
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(ParError::UnexpectedEntry { name });
            }
            // What the entry is, from its name, before a byte of it is read.
            let target = if name == CLAIMS_ENTRY {
                None
            } else {
                let target = [".so", ".dylib", ".dll"]
                    .iter()
                    .find_map(|ext| name.strip_suffix(ext))
                    .filter(|t| check_target(t).is_ok() && library_file_name(t) == name)
                    .ok_or_else(|| ParError::UnexpectedEntry { name: name.clone() })?;
                Some(target.to_string())
            };
            // Claims are a token of a few KiB, whatever the entry says.
            let most = if target.is_none() {
                MAX_CLAIMS_BYTES
            } else {
                MAX_ARCHIVE_BYTES
            };
            let mut content = Vec::new();
            entry
                .take(most + 1)
                .read_to_end(&mut content)
                .map_err(io(format!("cannot read entry `{name}`")))?;
            if content.len() as u64 > most {
                return Err(ParError::UnexpectedEntry { name });
            }
            match target {
                None => {
                    let text = String::from_utf8(content)
                        .map_err(|_| ParError::UnexpectedEntry { name: name.clone() })?;
                    token = Some(text.trim().to_string());
                }
                Some(target) => {
                    libraries.insert(target, content);
                }
            }
        }
        let token = token.ok_or(ParError::Unsigned)?;
        let claims = Claims::<CapabilityProvider>::decode_unverified(&token)?;
        let metadata = claims.metadata()?.clone();
        Ok(ProviderArchive {
            metadata,
            libraries,
            token: Some(token),
        })
    }

    /// Verifies the archive with `verifier`
    /// ([`Verifier::verify_provider`]): signature, validity window, key roles
    /// (account → service), every claims field, and the issuer's trust, by
    /// the same rules as an actor's issuer (a default verifier trusts no one:
    /// [`ParError::Untrusted`]); then every library's hash against the signed
    /// claims.
    pub fn verify(&self, verifier: &Verifier) -> Result<VerifiedArchive, ParError> {
        let token = self.token.as_deref().ok_or(ParError::Unsigned)?;
        let claims = verifier.verify_provider(token).map_err(|e| match e {
            ClaimsError::NoTrustedIssuer { .. } | ClaimsError::UntrustedIssuer { .. } => {
                ParError::Untrusted(e)
            }
            other => ParError::Claims(other),
        })?;
        let hashes = &claims.metadata().target_hashes;
        for (target, bytes) in &self.libraries {
            let expected = hashes
                .get(target)
                .ok_or_else(|| ParError::UnsignedLibrary {
                    target: target.clone(),
                })?;
            check_hash(target, expected, bytes)?;
        }
        Ok(VerifiedArchive {
            claims,
            libraries: self.libraries.clone(),
        })
    }
}

fn check_hash(target: &str, expected: &str, bytes: &[u8]) -> Result<(), ParError> {
    let actual = library_hash(bytes);
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ParError::HashMismatch {
            target: target.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<(), ParError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, name, bytes)
        .map_err(io(format!("cannot add {name} to the archive")))
}

/// An archive whose signature, issuer and library hashes were checked.
#[derive(Debug, Clone)]
pub struct VerifiedArchive {
    claims: Verified<CapabilityProvider>,
    libraries: BTreeMap<String, Vec<u8>>,
}

impl VerifiedArchive {
    /// The verified claims.
    pub fn claims(&self) -> &Verified<CapabilityProvider> {
        &self.claims
    }

    /// The capability id.
    pub fn capid(&self) -> &str {
        &self.claims.metadata().capid
    }

    /// The provider's name (the capability id when unnamed).
    pub fn name(&self) -> &str {
        self.claims
            .metadata()
            .name
            .as_deref()
            .unwrap_or_else(|| self.capid())
    }

    /// The vendor.
    pub fn vendor(&self) -> &str {
        &self.claims.metadata().vendor
    }

    /// The version string (empty when unset).
    pub fn version(&self) -> &str {
        self.claims.metadata().ver.as_deref().unwrap_or("")
    }

    /// The revision (0 when unset or negative).
    pub fn revision(&self) -> u32 {
        self.claims
            .metadata()
            .rev
            .and_then(|r| u32::try_from(r).ok())
            .unwrap_or(0)
    }

    /// The signing account.
    pub fn issuer(&self) -> &str {
        self.claims.issuer()
    }

    /// The provider's service key.
    pub fn subject(&self) -> &str {
        self.claims.subject()
    }

    /// Targets with a library, sorted.
    pub fn targets(&self) -> Vec<&str> {
        self.libraries.keys().map(String::as_str).collect()
    }

    /// The library for `target`, its hash checked again against the claims.
    pub fn library_for(&self, target: &str) -> Result<&[u8], ParError> {
        let bytes = self
            .libraries
            .get(target)
            .ok_or_else(|| ParError::MissingLibrary {
                target: target.to_string(),
                available: self.targets().join(", "),
            })?;
        let expected = self
            .claims
            .metadata()
            .target_hashes
            .get(target)
            .ok_or_else(|| ParError::UnsignedLibrary {
                target: target.to_string(),
            })?;
        check_hash(target, expected, bytes)?;
        Ok(bytes)
    }

    /// The library for [`HOST_TARGET`].
    pub fn library_for_host(&self) -> Result<&[u8], ParError> {
        self.library_for(HOST_TARGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "x86_64-unknown-linux-gnu";

    /// A gzip-compressed tar whose one library entry is `zeros` zero bytes,
    /// written as it is compressed (nothing that size is ever in memory).
    fn gzipped_zeros(zeros: u64) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let mut builder = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(zeros);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(
                &mut header,
                library_file_name(T),
                std::io::repeat(0).take(zeros),
            )
            .unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_inflated() {
        // 80 MiB of zeros in about 80 KB: a thousand times its size.
        let bomb = gzipped_zeros(80 << 20);
        assert!(bomb.len() < 1 << 20, "{}", bomb.len());
        let err = ProviderArchive::from_bytes(&bomb).unwrap_err();
        let ParError::Inflates { compressed, limit } = err else {
            panic!("expected Inflates, got {err}");
        };
        assert_eq!(compressed, bomb.len() as u64);
        assert_eq!(limit, MIN_INFLATE_LIMIT);
        assert!(err_text(&bomb).contains("decompression bomb"));
        // Within the floor, an archive inflates as far as it needs: this
        // one reaches the claims check (it has none), not the bound.
        let small = gzipped_zeros(8 << 20);
        assert!(matches!(
            ProviderArchive::from_bytes(&small),
            Err(ParError::Unsigned)
        ));
    }

    /// A plain tar of one entry `name` holding `len` zero bytes.
    fn tar_of(name: &str, len: u64) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(len);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, std::io::repeat(0).take(len))
            .unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn entries_are_judged_by_name_and_claims_by_size_before_they_are_kept() {
        for (name, len) in [("notes.txt", 1 << 20), (CLAIMS_ENTRY, MAX_CLAIMS_BYTES + 1)] {
            let err = ProviderArchive::from_bytes(&tar_of(name, len)).unwrap_err();
            assert!(
                matches!(&err, ParError::UnexpectedEntry { name: n } if n == name),
                "{name}: {err}"
            );
        }
        // A claims entry of an ordinary size is read (and found not a token).
        let err = ProviderArchive::from_bytes(&tar_of(CLAIMS_ENTRY, 4096)).unwrap_err();
        assert!(!matches!(err, ParError::UnexpectedEntry { .. }), "{err}");
    }

    fn err_text(bytes: &[u8]) -> String {
        ProviderArchive::from_bytes(bytes).unwrap_err().to_string()
    }

    struct Keys {
        account: KeyPair,
        service: KeyPair,
    }

    impl Keys {
        /// A verifier trusting exactly this test's account.
        fn trusting(&self) -> Verifier {
            Verifier::new()
                .trust_issuer(&self.account.public_key())
                .unwrap()
        }
    }

    fn keys() -> Keys {
        Keys {
            account: KeyPair::generate(KeyKind::Account),
            service: KeyPair::generate(KeyKind::Service),
        }
    }

    fn signed(k: &Keys) -> ProviderArchive {
        let mut par = ProviderArchive::create("acme:inventory", "Acme", "Inventory").unwrap();
        par.set_version("1.2.3");
        par.set_revision(4);
        par.insert(T, b"library-bytes".to_vec()).unwrap();
        par.insert("aarch64-apple-darwin", b"mac".to_vec()).unwrap();
        par.sign(&k.account, &k.service.public_key()).unwrap();
        par
    }

    #[test]
    fn round_trip_then_verify() {
        let k = keys();
        let bytes = signed(&k).to_bytes().unwrap();
        let par = ProviderArchive::from_bytes(&bytes).unwrap();
        let v = par.verify(&k.trusting()).unwrap();
        assert_eq!(v.capid(), "acme:inventory");
        assert_eq!(
            (v.vendor(), v.name(), v.version()),
            ("Acme", "Inventory", "1.2.3")
        );
        assert_eq!(v.revision(), 4);
        assert_eq!(v.subject(), k.service.public_key());
        assert_eq!(v.targets(), vec!["aarch64-apple-darwin", T]);
        assert_eq!(v.library_for(T).unwrap(), b"library-bytes");
        assert!(matches!(
            v.library_for("riscv64gc-unknown-linux-gnu"),
            Err(ParError::MissingLibrary { .. })
        ));
    }

    #[test]
    fn a_tampered_library_is_refused_naming_the_hash_mismatch() {
        let k = keys();
        let mut par = ProviderArchive::from_bytes(&signed(&k).to_bytes().unwrap()).unwrap();
        par.insert(T, b"evil".to_vec()).unwrap();
        let tampered = ProviderArchive::from_bytes(&par.to_bytes().unwrap()).unwrap();
        let err = tampered.verify(&k.trusting()).unwrap_err();
        assert!(matches!(err, ParError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("hash mismatch"), "{err}");
    }

    #[test]
    fn a_library_added_after_signing_is_refused() {
        let k = keys();
        let mut par = signed(&k);
        par.insert("riscv64gc-unknown-linux-gnu", b"x".to_vec())
            .unwrap();
        let err = par.verify(&k.trusting()).unwrap_err();
        assert!(matches!(err, ParError::UnsignedLibrary { .. }), "{err}");
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let k = keys();
        let par = signed(&k);
        let token = par.token().unwrap();
        // Flip one character of the signature segment.
        let mut chars: Vec<char> = token.chars().collect();
        let last = chars.len() - 2;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        let mut forged = par.clone();
        forged.token = Some(chars.into_iter().collect());
        let err = forged.verify(&k.trusting()).unwrap_err();
        assert!(
            matches!(err, ParError::Claims(ClaimsError::BadSignature { .. })),
            "{err}"
        );
    }

    #[test]
    fn untrusted_or_unconfigured_issuers_are_refused() {
        let k = keys();
        let par = signed(&k);
        let other = KeyPair::generate(KeyKind::Account).public_key();
        let err = par
            .verify(&Verifier::new().trust_issuer(&other).unwrap())
            .unwrap_err();
        assert!(
            matches!(
                err,
                ParError::Untrusted(ClaimsError::UntrustedIssuer { .. })
            ),
            "{err}"
        );
        let err = par.verify(&Verifier::new()).unwrap_err();
        assert!(
            matches!(
                err,
                ParError::Untrusted(ClaimsError::NoTrustedIssuer { .. })
            ),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains("--trusted-issuer"), "{text}");
        assert!(text.contains(&k.account.public_key()), "{text}");
    }

    #[test]
    fn operator_chains_and_any_issuer_are_honoured() {
        let k = keys();
        let par = signed(&k);
        par.verify(&Verifier::new().allow_any_issuer()).unwrap();
        let operator = KeyPair::generate(KeyKind::Operator);
        let account_token = Claims::<waxosuit_claims::Account>::builder()
            .issuer(operator.public_key())
            .subject(k.account.public_key())
            .metadata(waxosuit_claims::Account::default())
            .build()
            .encode(&operator)
            .unwrap();
        let chained = Verifier::new()
            .trust_operator(&operator.public_key())
            .unwrap()
            .with_account_token(account_token);
        assert_eq!(
            par.verify(&chained).unwrap().issuer(),
            k.account.public_key()
        );
    }

    #[test]
    fn invalid_claims_are_refused_when_signing_and_when_verifying() {
        let k = keys();
        let mut par = ProviderArchive::create("acme:x", "", "X").unwrap();
        par.insert(T, b"lib".to_vec()).unwrap();
        let err = par.sign(&k.account, &k.service.public_key()).unwrap_err();
        assert!(
            matches!(&err, ParError::Claims(ClaimsError::InvalidClaim { field, .. }) if field == "vendor"),
            "{err}"
        );
        // The same claims signed by hand, as a hostile packager would.
        let mut hostile = signed(&k);
        let mut meta = hostile.metadata.clone();
        meta.vendor = "\u{1b}]0;owned\u{7}".into();
        hostile.token = Some(
            Claims::<CapabilityProvider>::builder()
                .issuer(k.account.public_key())
                .subject(k.service.public_key())
                .metadata(meta)
                .build()
                .encode(&k.account)
                .unwrap(),
        );
        let err = hostile.verify(&k.trusting()).unwrap_err();
        assert!(
            matches!(&err, ParError::Claims(ClaimsError::InvalidClaim { field, .. }) if field == "vendor"),
            "{err}"
        );
        assert!(!err.to_string().contains('\u{1b}'), "{err}");
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused() {
        let k = keys();
        let mut par = ProviderArchive::create("acme:x", "Acme", "X").unwrap();
        let err = par.sign(&k.service, &k.service.public_key()).unwrap_err();
        assert!(
            matches!(err, ParError::WrongKey { role: "issuer", .. }),
            "{err}"
        );
        let module = KeyPair::generate(KeyKind::Module).public_key();
        let err = par.sign(&k.account, &module).unwrap_err();
        assert!(
            matches!(
                err,
                ParError::WrongKey {
                    role: "subject",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for capid in [
            "nocolon",
            "a:b:c",
            "a b:c",
            &format!("a:{}", "b".repeat(200)),
        ] {
            assert!(
                matches!(
                    ProviderArchive::create(capid, "v", "n"),
                    Err(ParError::InvalidCapid { .. })
                ),
                "{capid}"
            );
        }
        let mut par = ProviderArchive::create("a:b", "v", "n").unwrap();
        for target in ["../etc", "", &"x".repeat(65)] {
            assert!(matches!(
                par.insert(target, vec![]),
                Err(ParError::InvalidTarget { .. })
            ));
        }
        assert!(matches!(par.to_bytes(), Err(ParError::Unsigned)));
    }

    #[test]
    fn file_names_follow_the_target() {
        assert_eq!(library_file_name(T), format!("{T}.so"));
        assert_eq!(
            library_file_name("aarch64-apple-darwin"),
            "aarch64-apple-darwin.dylib"
        );
        assert_eq!(
            library_file_name("x86_64-pc-windows-msvc"),
            "x86_64-pc-windows-msvc.dll"
        );
        assert!(!HOST_TARGET.is_empty());
    }
}
