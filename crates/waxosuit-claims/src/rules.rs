//! What each field of a token may hold.
//!
//! A token's fields are used as map keys, routing names, file names and
//! table cells long after verification, so the [`Verifier`](crate::Verifier)
//! checks every one of them (and [`embed_claims`](crate::embed_claims)
//! refuses to sign what would not pass). A field outside these rules fails
//! with [`ClaimsError::InvalidClaim`], naming the field, the value (escaped
//! and cut short) and what is allowed.
//!
//! The bounds are generous for real modules (a wascap-signed actor uses a
//! fraction of each) and small enough that nothing downstream has to worry
//! about size.

use crate::display::{is_unsafe_char, quoted};
use crate::keys::KeyKind;
use crate::{ClaimsError, caps};

/// Largest token accepted, in bytes. Real actor tokens are under 2 KiB.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;
/// Most capability ids (and callable actor keys) an actor may be granted.
pub const MAX_CAPS: usize = 256;
/// Longest capability id, `namespace:name`, in characters.
pub const MAX_CAPABILITY_ID_CHARS: usize = 128;
/// Most tags on an actor.
pub const MAX_TAGS: usize = 64;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 128;
/// Longest name (of an actor, account, operator or provider), in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Longest version string (`ver`), in characters.
pub const MAX_VERSION_CHARS: usize = 64;
/// Longest `call_alias`, in characters.
pub const MAX_CALL_ALIAS_CHARS: usize = 64;
/// Most `valid_signers` on an account or operator token.
pub const MAX_SIGNERS: usize = 64;
/// Most target triples in a provider archive's claims.
pub const MAX_TARGETS: usize = 32;
/// Longest target triple, in characters.
pub const MAX_TARGET_CHARS: usize = 64;

/// What a text field (name, tag, version, vendor) may hold, for messages.
fn text_rule(max: usize) -> String {
    format!(
        "1 to {max} characters, without control, bidirectional-override or zero-width characters"
    )
}

/// Whether `alias` may be a `call_alias`: 1 to [`MAX_CALL_ALIAS_CHARS`]
/// characters of `A-Z a-z 0-9 _ . - /`. A `:` would make it a capability id,
/// and a 56-character alias starting with `M` would be routed as a module
/// key, so neither is allowed.
pub fn is_valid_call_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias.len() <= MAX_CALL_ALIAS_CHARS
        && alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
        && !looks_like_module_key(alias)
}

/// The rule [`is_valid_call_alias`] checks, for messages.
pub const CALL_ALIAS_RULE: &str = "1 to 64 characters of A-Z a-z 0-9 _ . - / (no `:`), and not \
                                   56 characters starting with `M` (that is a module key's shape)";

/// Whether `hash` is a module or library hash as tokens carry it: 64
/// uppercase hexadecimal digits (SHA-256).
pub fn is_valid_module_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// Whether `target` is a target triple a provider archive may name: 1 to
/// [`MAX_TARGET_CHARS`] characters of `A-Z a-z 0-9 _ . -` (it becomes a file
/// name inside the archive).
pub fn is_valid_target_triple(target: &str) -> bool {
    !target.is_empty()
        && target.len() <= MAX_TARGET_CHARS
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// 56 characters starting with `M`: what the host routes as an actor key.
pub(crate) fn looks_like_module_key(s: &str) -> bool {
    s.len() == 56 && s.starts_with('M')
}

/// Checks the fields of one token of kind `kind` ("actor", "account", …).
pub(crate) struct Check {
    kind: &'static str,
}

impl Check {
    pub(crate) fn new(kind: &'static str) -> Check {
        Check { kind }
    }

    fn fail(
        &self,
        field: impl Into<String>,
        value: String,
        allowed: impl Into<String>,
    ) -> ClaimsError {
        ClaimsError::InvalidClaim {
            kind: self.kind,
            field: field.into(),
            value,
            allowed: allowed.into(),
        }
    }

    /// A free-text field: non-empty, bounded, nothing that changes how the
    /// text around it is shown.
    pub(crate) fn text(
        &self,
        field: &str,
        value: &str,
        max_chars: usize,
    ) -> Result<(), ClaimsError> {
        let ok = !value.is_empty()
            && value.chars().count() <= max_chars
            && !value.chars().any(is_unsafe_char);
        if ok {
            Ok(())
        } else {
            Err(self.fail(field, quoted(value), text_rule(max_chars)))
        }
    }

    pub(crate) fn optional_text(
        &self,
        field: &str,
        value: Option<&str>,
        max_chars: usize,
    ) -> Result<(), ClaimsError> {
        value.map_or(Ok(()), |v| self.text(field, v, max_chars))
    }

    pub(crate) fn count(&self, field: &str, len: usize, max: usize) -> Result<(), ClaimsError> {
        if len <= max {
            Ok(())
        } else {
            Err(self.fail(
                field,
                format!("{len} entries"),
                format!("at most {max} entries"),
            ))
        }
    }

    pub(crate) fn revision(&self, rev: Option<i32>) -> Result<(), ClaimsError> {
        match rev {
            Some(r) if r < 0 => Err(self.fail("rev", r.to_string(), "a revision of 0 or more")),
            _ => Ok(()),
        }
    }

    pub(crate) fn module_hash(&self, field: &str, hash: &str) -> Result<(), ClaimsError> {
        if is_valid_module_hash(hash) {
            Ok(())
        } else {
            Err(self.fail(
                field,
                quoted(hash),
                "64 uppercase hexadecimal digits (a SHA-256 hash)",
            ))
        }
    }

    /// A provider library's hash: compared case-insensitively when loading
    /// (so either case is accepted), but it must be a SHA-256 in hex.
    pub(crate) fn library_hash(&self, field: &str, hash: &str) -> Result<(), ClaimsError> {
        if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err(self.fail(
                field,
                quoted(hash),
                "64 hexadecimal digits (a SHA-256 hash)",
            ))
        }
    }

    /// An actor's grant: a capability id or a callable actor's module key.
    pub(crate) fn capability(&self, field: &str, capid: &str) -> Result<(), ClaimsError> {
        if caps::is_valid_capability_id(capid) {
            Ok(())
        } else {
            Err(self.fail(field, quoted(capid), caps::CAPABILITY_ID_RULE))
        }
    }

    /// A provider's capability: `namespace:name` only (never an actor key).
    pub(crate) fn namespaced_capability(
        &self,
        field: &str,
        capid: &str,
    ) -> Result<(), ClaimsError> {
        if caps::is_namespaced_capability_id(capid) {
            Ok(())
        } else {
            Err(self.fail(
                field,
                quoted(capid),
                format!(
                    "a capability id `namespace:name` of at most {MAX_CAPABILITY_ID_CHARS} \
                     characters of A-Z a-z 0-9 _ - . (e.g. `acme:inventory`)"
                ),
            ))
        }
    }

    pub(crate) fn call_alias(&self, alias: &str) -> Result<(), ClaimsError> {
        if is_valid_call_alias(alias) {
            Ok(())
        } else {
            Err(self.fail("call_alias", quoted(alias), CALL_ALIAS_RULE))
        }
    }

    pub(crate) fn key(&self, field: &str, key: &str, kind: KeyKind) -> Result<(), ClaimsError> {
        match KeyKind::of_public_key(key) {
            Ok(actual) if actual == kind => Ok(()),
            _ => Err(self.fail(
                field,
                quoted(key),
                format!(
                    "{kind} public key (56 characters starting with `{}`)",
                    kind.prefix()
                ),
            )),
        }
    }

    pub(crate) fn target(&self, field: &str, target: &str) -> Result<(), ClaimsError> {
        if is_valid_target_triple(target) {
            Ok(())
        } else {
            Err(self.fail(
                field,
                quoted(target),
                format!(
                    "a target triple of 1 to {MAX_TARGET_CHARS} characters of A-Z a-z 0-9 _ - ."
                ),
            ))
        }
    }

    pub(crate) fn token_size(&self, len: usize) -> Result<(), ClaimsError> {
        if len <= MAX_TOKEN_BYTES {
            Ok(())
        } else {
            Err(self.fail(
                "token",
                format!("{len} bytes"),
                format!("at most {MAX_TOKEN_BYTES} bytes"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyPair;

    #[test]
    fn call_aliases() {
        for ok in ["payments", "acme/counter", "a.b-c_d", "M", &"a".repeat(64)] {
            assert!(is_valid_call_alias(ok), "{ok}");
        }
        let module_shaped = format!("M{}", "A".repeat(55));
        for bad in [
            "",
            "wascc:keyvalue",
            "has space",
            "é",
            &"a".repeat(65),
            &module_shaped,
            "tab\there",
        ] {
            assert!(!is_valid_call_alias(bad), "{bad:?}");
        }
        // A real module key is refused too: it would route as that key.
        let real = KeyPair::generate(KeyKind::Module).public_key();
        assert!(!is_valid_call_alias(&real));
    }

    #[test]
    fn hashes() {
        assert!(is_valid_module_hash(&"AB12".repeat(16)));
        assert!(!is_valid_module_hash(&"ab12".repeat(16)));
        assert!(!is_valid_module_hash(&"AB12".repeat(15)));
        assert!(!is_valid_module_hash(&"ÉÉ".repeat(16)));
    }

    #[test]
    fn text_fields() {
        let check = Check::new("actor");
        check.text("name", "Counter — v2 ☕", 128).unwrap();
        for bad in ["", "a\u{0}b", "rtl\u{202e}", "zw\u{200b}", &"x".repeat(129)] {
            let err = check.text("name", bad, 128).unwrap_err();
            assert!(
                matches!(&err, ClaimsError::InvalidClaim { field, .. } if field == "name"),
                "{err}"
            );
        }
    }

    #[test]
    fn invalid_claims_name_field_value_and_rule() {
        let err = Check::new("actor")
            .capability("caps[3]", "bogus\u{1b}[2J")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("caps[3]"), "{text}");
        assert!(text.contains("bogus\\u{1b}[2J"), "{text}");
        assert!(text.contains("namespace:name"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert_eq!(err.kind(), "invalid_claim");
    }
}
