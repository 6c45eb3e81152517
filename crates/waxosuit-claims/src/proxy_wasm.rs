//! Proxy-Wasm HTTP filters: how a module says it is one, and how its claims
//! say it was signed as one.
//!
//! A Proxy-Wasm module exports an empty function whose *name* is its ABI
//! version, `proxy_abi_version_0_2_1` for instance; hosts (Envoy, and
//! Waxosuit) pick the ABI from that marker. [`proxy_wasm_abi`] finds it.
//!
//! Filters are signed like actors (`waxosuit claims sign`), and their claims
//! carry the tag [`PROXY_WASM_FILTER_TAG`]; that tag is what tells a host
//! that the module was signed to run as a filter and not as an actor
//! ([`crate::VerifiedActor::is_proxy_wasm_filter`]). Only ABI 0.2.x
//! ([`ProxyWasmAbi::is_supported`]) is supported; 0.1.0 is recognised so that
//! it can be refused by name.

use std::fmt;

use wasmparser::{Encoding, ExternalKind, Parser, Payload};

use crate::ClaimsError;
use crate::wasm::{check_magic, malformed};

/// The tag that marks claims signed for a Proxy-Wasm HTTP filter.
///
/// `waxosuit claims sign` adds it (once) to a module that exports a
/// Proxy-Wasm ABI marker ([`proxy_wasm_abi`]) and refuses it on any other
/// module: it is reserved. A host admits a module as a filter only when its
/// verified claims carry this tag, and refuses such a module as an actor, so
/// that a module signed for one role cannot be run in the other.
pub const PROXY_WASM_FILTER_TAG: &str = "proxy-wasm-filter";

/// A Proxy-Wasm ABI version, as named by a module's marker export.
///
/// Ordered oldest first. `Display` shows the dotted version (`0.2.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyWasmAbi {
    /// `proxy_abi_version_0_1_0`: the first ABI; **not supported** (see
    /// [`ProxyWasmAbi::is_supported`]).
    V0_1_0,
    /// `proxy_abi_version_0_2_0`.
    V0_2_0,
    /// `proxy_abi_version_0_2_1`.
    V0_2_1,
}

impl ProxyWasmAbi {
    /// Every ABI version known here, oldest first.
    pub const ALL: [ProxyWasmAbi; 3] = [
        ProxyWasmAbi::V0_1_0,
        ProxyWasmAbi::V0_2_0,
        ProxyWasmAbi::V0_2_1,
    ];

    /// The name of the marker export, e.g. `proxy_abi_version_0_2_1`.
    pub fn export_name(self) -> &'static str {
        match self {
            ProxyWasmAbi::V0_1_0 => "proxy_abi_version_0_1_0",
            ProxyWasmAbi::V0_2_0 => "proxy_abi_version_0_2_0",
            ProxyWasmAbi::V0_2_1 => "proxy_abi_version_0_2_1",
        }
    }

    /// The version whose marker export is named `name`, if any.
    pub fn from_export_name(name: &str) -> Option<ProxyWasmAbi> {
        Self::ALL.into_iter().find(|abi| abi.export_name() == name)
    }

    /// The dotted version, e.g. `0.2.1` (what `Display` writes).
    pub fn version(self) -> &'static str {
        match self {
            ProxyWasmAbi::V0_1_0 => "0.1.0",
            ProxyWasmAbi::V0_2_0 => "0.2.0",
            ProxyWasmAbi::V0_2_1 => "0.2.1",
        }
    }

    /// Whether Waxosuit runs filters of this ABI: 0.2.x only. Modules built
    /// for 0.1.0 must be rebuilt with a Proxy-Wasm SDK for ABI 0.2.x.
    pub fn is_supported(self) -> bool {
        !matches!(self, ProxyWasmAbi::V0_1_0)
    }
}

impl fmt::Display for ProxyWasmAbi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.version())
    }
}

/// The Proxy-Wasm ABI `module` declares, from its marker export: a
/// *function* export named `proxy_abi_version_0_2_1`,
/// `proxy_abi_version_0_2_0` or `proxy_abi_version_0_1_0`.
///
/// * `Ok(None)`: the module exports no marker, so it is not a Proxy-Wasm
///   module (an actor, say). Exports of other kinds (a global with a
///   marker's name) do not count.
/// * `Ok(Some(abi))`: the marker found; when a module exports several,
///   the newest wins (a module that also exports the 0.1.0 marker is still a
///   0.2.x module). `abi` may be unsupported
///   ([`ProxyWasmAbi::is_supported`]): callers that run filters must check.
/// * `Err`: the bytes are not a module that can be parsed, with the same
///   errors as [`crate::module_hash`]: [`ClaimsError::NotWasm`],
///   [`ClaimsError::MalformedModule`], [`ClaimsError::ComponentNotSupported`].
///
/// Signature sections play no part: a signed and an unsigned module give
/// the same answer.
pub fn proxy_wasm_abi(module: &[u8]) -> Result<Option<ProxyWasmAbi>, ClaimsError> {
    check_magic(module)?;
    let mut found: Option<ProxyWasmAbi> = None;
    for payload in Parser::new(0).parse_all(module) {
        match payload.map_err(|e| malformed(&e))? {
            Payload::Version {
                encoding: Encoding::Component,
                ..
            } => return Err(ClaimsError::ComponentNotSupported),
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.map_err(|e| malformed(&e))?;
                    if export.kind != ExternalKind::Func {
                        continue;
                    }
                    if let Some(abi) = ProxyWasmAbi::from_export_name(export.name) {
                        found = found.max(Some(abi));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(exports: &str) -> Vec<u8> {
        wat::parse_str(format!("(module {exports} (memory (export \"memory\") 1))")).unwrap()
    }

    #[test]
    fn each_marker_is_found_and_displayed() {
        for abi in ProxyWasmAbi::ALL {
            let m = module(&format!("(func (export \"{}\"))", abi.export_name()));
            assert_eq!(proxy_wasm_abi(&m).unwrap(), Some(abi));
        }
        assert_eq!(ProxyWasmAbi::V0_2_1.to_string(), "0.2.1");
        assert_eq!(ProxyWasmAbi::V0_2_0.to_string(), "0.2.0");
        assert_eq!(ProxyWasmAbi::V0_1_0.to_string(), "0.1.0");
        assert!(ProxyWasmAbi::V0_2_1.is_supported());
        assert!(ProxyWasmAbi::V0_2_0.is_supported());
        assert!(!ProxyWasmAbi::V0_1_0.is_supported());
        assert_eq!(
            ProxyWasmAbi::from_export_name("proxy_abi_version_0_2_1"),
            Some(ProxyWasmAbi::V0_2_1)
        );
        assert_eq!(
            ProxyWasmAbi::from_export_name("proxy_abi_version_0_3_0"),
            None
        );
    }

    #[test]
    fn modules_without_a_marker_function_are_not_filters() {
        assert_eq!(proxy_wasm_abi(b"\0asm\x01\0\0\0").unwrap(), None);
        let actor =
            module("(func (export \"__guest_call\") (param i32 i32) (result i32) i32.const 1)");
        assert_eq!(proxy_wasm_abi(&actor).unwrap(), None);
        // Near misses and non-function exports do not count.
        let near = module(
            "(func (export \"proxy_abi_version_0_2_2\")) \
             (func (export \"Proxy_abi_version_0_2_1\")) \
             (global (export \"proxy_abi_version_0_2_1\") i32 (i32.const 0))",
        );
        assert_eq!(proxy_wasm_abi(&near).unwrap(), None);
    }

    #[test]
    fn the_newest_of_several_markers_wins() {
        let m = module(
            "(func (export \"proxy_abi_version_0_1_0\")) \
             (func (export \"proxy_abi_version_0_2_1\")) \
             (func (export \"proxy_abi_version_0_2_0\"))",
        );
        assert_eq!(proxy_wasm_abi(&m).unwrap(), Some(ProxyWasmAbi::V0_2_1));
    }

    #[test]
    fn signature_sections_do_not_matter() {
        let m = module("(func (export \"proxy_abi_version_0_2_0\"))");
        let mut signed = m.clone();
        wasm_encoder::Section::append_to(
            &wasm_encoder::CustomSection {
                name: "jwt".into(),
                data: b"a.b.c".as_slice().into(),
            },
            &mut signed,
        );
        assert_eq!(proxy_wasm_abi(&signed).unwrap(), Some(ProxyWasmAbi::V0_2_0));
    }

    #[test]
    fn the_tag_in_verified_claims_marks_a_filter() {
        use crate::{Actor, Claims, KeyKind, KeyPair, Verifier, embed_claims};
        let account = KeyPair::generate(KeyKind::Account);
        let filter = module("(func (export \"proxy_abi_version_0_2_1\"))");
        let sign = |tags: &[&str]| {
            let claims = Claims::<Actor>::builder()
                .issuer(account.public_key())
                .subject(KeyPair::generate(KeyKind::Module).public_key())
                .metadata(Actor {
                    tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                    ..Actor::named("f")
                })
                .build();
            embed_claims(&filter, &claims, &account).unwrap()
        };
        let verifier = Verifier::new().trust_issuer(&account.public_key()).unwrap();
        let tagged = verifier
            .verify_actor(&sign(&["demo", PROXY_WASM_FILTER_TAG]))
            .unwrap();
        assert!(tagged.is_proxy_wasm_filter());
        assert!(tagged.metadata().is_proxy_wasm_filter());
        let untagged = verifier.verify_actor(&sign(&["demo"])).unwrap();
        assert!(!untagged.is_proxy_wasm_filter());
        let near = verifier
            .verify_actor(&sign(&["Proxy-Wasm-Filter", "proxy-wasm-filter "]))
            .unwrap();
        assert!(!near.is_proxy_wasm_filter(), "the tag is matched exactly");
        assert!(!Actor::default().is_proxy_wasm_filter());
    }

    #[test]
    fn unparsable_inputs_are_typed_errors() {
        assert!(matches!(proxy_wasm_abi(b""), Err(ClaimsError::NotWasm)));
        assert!(matches!(
            proxy_wasm_abi(b"not wasm at all"),
            Err(ClaimsError::NotWasm)
        ));
        let mut m = module("(func (export \"proxy_abi_version_0_2_1\"))");
        m.truncate(m.len() - 3);
        assert!(matches!(
            proxy_wasm_abi(&m),
            Err(ClaimsError::MalformedModule { .. })
        ));
        let c = wat::parse_str("(component)").unwrap();
        assert!(matches!(
            proxy_wasm_abi(&c),
            Err(ClaimsError::ComponentNotSupported)
        ));
    }
}
