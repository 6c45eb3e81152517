//! Where claims live in a module, and what the module hash covers.
//!
//! The token is the payload of a custom section named `jwt` (waSCC, wascap
//! < 0.9) or `wasmcloud_jwt` (wascap ≥ 0.9); both are read. Signing removes
//! every such section and appends one new `jwt` section at the end.
//!
//! The module hash is the uppercase hex SHA-256 of the module with all those
//! sections removed, every other section copied byte for byte (its size
//! re-encoded as minimal LEB128, as wascap ≥ 0.9 does). The original wascap
//! hashed parity-wasm's *re-serialization* instead; for the modules that
//! parity-wasm round-trips unchanged (which is what rustc/LLVM and the golden
//! vector produce) the two hashes agree. A legacy token whose hash only
//! parity-wasm could reproduce fails verification with
//! [`ClaimsError::ModuleHashMismatch`]: we fail closed rather than skip the
//! check as later wascap does for old revisions. Re-sign such modules with
//! `waxosuit claims sign`.

use sha2::{Digest, Sha256};
use wasm_encoder::Section;
use wasmparser::{Encoding, Parser, Payload};

use crate::jwt::{Actor, Claims, TokenKind};
use crate::{ClaimsError, KeyPair};

/// Section name wascap < 0.9 and waSCC use, and the one we write.
pub const SECTION_JWT: &str = "jwt";
/// Section name wascap ≥ 0.9 writes.
pub const SECTION_WASMCLOUD_JWT: &str = "wasmcloud_jwt";

const WASM_MAGIC: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

fn is_jwt_section(name: &str) -> bool {
    name == SECTION_JWT || name == SECTION_WASMCLOUD_JWT
}

/// A module split into the bytes that are hashed and the tokens it carries.
struct Split {
    stripped: Vec<u8>,
    /// The distinct tokens. A set, not a list searched for each section:
    /// a module of tiny `jwt` sections made that search quadratic, before
    /// any signature is checked.
    tokens: std::collections::HashSet<String>,
}

/// Refuses bytes that do not even start like a wasm module.
pub(crate) fn check_magic(module: &[u8]) -> Result<(), ClaimsError> {
    if module.len() < 8 || module[..4] != WASM_MAGIC[..4] {
        return Err(ClaimsError::NotWasm);
    }
    Ok(())
}

/// The parser's complaint as this crate's error.
pub(crate) fn malformed(e: &wasmparser::BinaryReaderError) -> ClaimsError {
    ClaimsError::MalformedModule {
        offset: e.offset(),
        reason: e.message().to_string(),
    }
}

fn split(module: &[u8]) -> Result<Split, ClaimsError> {
    check_magic(module)?;
    let mut stripped = Vec::with_capacity(module.len());
    let mut tokens = std::collections::HashSet::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| malformed(&e))?;
        match &payload {
            Payload::Version { encoding, .. } => {
                if *encoding == Encoding::Component {
                    return Err(ClaimsError::ComponentNotSupported);
                }
                stripped.extend_from_slice(&WASM_MAGIC);
                continue;
            }
            Payload::CustomSection(c) if is_jwt_section(c.name()) => {
                let token = std::str::from_utf8(c.data()).map_err(|_| {
                    ClaimsError::malformed_token(format!(
                        "the `{}` section is not UTF-8 text",
                        c.name()
                    ))
                })?;
                let token = token.trim();
                if !tokens.contains(token) {
                    tokens.insert(token.to_string());
                }
                continue;
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            let past_end = || ClaimsError::MalformedModule {
                offset: range.start,
                reason: "section runs past the end of the file".to_string(),
            };
            let start = usize::try_from(range.start).map_err(|_| past_end())?;
            let end = usize::try_from(range.end).map_err(|_| past_end())?;
            let data = module.get(start..end).ok_or_else(past_end)?;
            wasm_encoder::RawSection { id, data }.append_to(&mut stripped);
        }
    }
    Ok(Split { stripped, tokens })
}

fn hex_sha256(bytes: &[u8]) -> String {
    data_encoding::HEXUPPER.encode(&Sha256::digest(bytes))
}

/// The module hash that a signature over `module` must carry.
pub fn module_hash(module: &[u8]) -> Result<String, ClaimsError> {
    Ok(hex_sha256(&split(module)?.stripped))
}

/// `module` without any signature section: what the hash covers.
pub fn strip_signature(module: &[u8]) -> Result<Vec<u8>, ClaimsError> {
    Ok(split(module)?.stripped)
}

/// The module with its embedded token, split apart but **not verified**.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// The compact JWT.
    pub jwt: String,
    /// The hash of the module as found (to compare with the token's).
    pub module_hash: String,
}

/// Finds the embedded token and computes the module hash; checks nothing else.
///
/// Fails with [`ClaimsError::Unsigned`] when there is no token, and with
/// [`ClaimsError::AmbiguousSignature`] when sections disagree (a second token
/// smuggled in beside the first must not be silently ignored).
pub fn extract(module: &[u8]) -> Result<Extracted, ClaimsError> {
    let Split { stripped, tokens } = split(module)?;
    let jwt = match tokens.len() {
        0 => return Err(ClaimsError::Unsigned),
        1 => tokens.into_iter().next().unwrap_or_default(),
        count => return Err(ClaimsError::AmbiguousSignature { count }),
    };
    Ok(Extracted {
        jwt,
        module_hash: hex_sha256(&stripped),
    })
}

/// Signs `module`: sets the module hash in `claims`, encodes them with
/// `issuer`, and returns the module with the token as its last section
/// (replacing any earlier signature).
///
/// Claims that no [`Verifier`](crate::Verifier) would accept are refused
/// before signing: fields outside [`crate::rules`] with
/// [`ClaimsError::InvalidClaim`], a signer that is not the issuer with
/// [`ClaimsError::SignerMismatch`].
pub fn embed_claims(
    module: &[u8],
    claims: &Claims<Actor>,
    issuer: &KeyPair,
) -> Result<Vec<u8>, ClaimsError> {
    let mut out = strip_signature(module)?;
    let mut claims = claims.clone();
    let mut meta = claims.metadata()?.clone();
    meta.module_hash = hex_sha256(&out);
    meta.validate()?;
    claims.metadata = Some(meta);
    let jwt = claims.encode(issuer)?;
    wasm_encoder::CustomSection {
        name: SECTION_JWT.into(),
        data: jwt.as_bytes().into(),
    }
    .append_to(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_wasm_and_truncated_inputs_are_typed_errors() {
        assert!(matches!(module_hash(b""), Err(ClaimsError::NotWasm)));
        assert!(matches!(
            module_hash(b"hello world"),
            Err(ClaimsError::NotWasm)
        ));
        let mut m = wat::parse_str("(module (func (export \"f\")))").unwrap();
        m.truncate(m.len() - 3);
        assert!(matches!(
            module_hash(&m),
            Err(ClaimsError::MalformedModule { .. })
        ));
    }

    #[test]
    fn components_are_refused() {
        let c = wat::parse_str("(component)").unwrap();
        assert!(matches!(
            module_hash(&c),
            Err(ClaimsError::ComponentNotSupported)
        ));
    }

    #[test]
    fn hash_ignores_signature_sections_but_not_other_custom_sections() {
        let base = wat::parse_str("(module (func (export \"f\")))").unwrap();
        let mut with_jwt = base.clone();
        wasm_encoder::CustomSection {
            name: "wasmcloud_jwt".into(),
            data: b"x.y.z".as_slice().into(),
        }
        .append_to(&mut with_jwt);
        assert_eq!(module_hash(&base).unwrap(), module_hash(&with_jwt).unwrap());
        let mut with_other = base.clone();
        wasm_encoder::CustomSection {
            name: "producers".into(),
            data: b"x".as_slice().into(),
        }
        .append_to(&mut with_other);
        assert_ne!(
            module_hash(&base).unwrap(),
            module_hash(&with_other).unwrap()
        );
        assert_eq!(strip_signature(&with_jwt).unwrap(), base);
    }

    #[test]
    fn two_different_tokens_are_ambiguous_but_duplicates_are_not() {
        let mut m = wat::parse_str("(module)").unwrap();
        for (name, data) in [("jwt", "a.b.c"), ("wasmcloud_jwt", "a.b.c")] {
            wasm_encoder::CustomSection {
                name: name.into(),
                data: data.as_bytes().into(),
            }
            .append_to(&mut m);
        }
        assert_eq!(extract(&m).unwrap().jwt, "a.b.c");
        wasm_encoder::CustomSection {
            name: "jwt".into(),
            data: b"d.e.f".as_slice().into(),
        }
        .append_to(&mut m);
        assert!(matches!(
            extract(&m),
            Err(ClaimsError::AmbiguousSignature { count: 2 })
        ));
    }

    #[test]
    fn many_small_signature_sections_cost_linear_time() {
        // 200,000 distinct tokens in 2 MB: checking each against the ones
        // before took ~2·10¹⁰ comparisons (minutes); a set takes a moment.
        let mut m = wat::parse_str("(module)").unwrap();
        for i in 0..200_000_u32 {
            wasm_encoder::CustomSection {
                name: "jwt".into(),
                data: format!("{i:05x}").as_bytes().into(),
            }
            .append_to(&mut m);
        }
        let started = std::time::Instant::now();
        assert!(matches!(
            extract(&m),
            Err(ClaimsError::AmbiguousSignature { count: 200_000 })
        ));
        // A guard against the hang, not a figure: a debug build on a
        // loaded machine takes about a second; the list took minutes.
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }

    #[test]
    fn unsigned_module() {
        let m = wat::parse_str("(module)").unwrap();
        assert!(matches!(extract(&m), Err(ClaimsError::Unsigned)));
    }
}
