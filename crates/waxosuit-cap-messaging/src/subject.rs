//! NATS subject syntax, and whether a subject or wildcard pattern can reach
//! a reserved prefix.
//!
//! NATS matches token by token (tokens are separated by `.`): a literal token
//! matches itself, `*` matches exactly one token, and `>`, only as the last
//! token, matches one or more tokens. A reserved prefix `P` stands for every
//! subject *under* it, `P.<one or more tokens>`, which is the pattern `P.>`;
//! the bare subject `P` is not reserved (no lattice plane uses it).
//!
//! A subject an actor uses is refused when **some** subject matches both it
//! and `P.>`; [`overlaps_prefix`] decides that exactly, without enumerating
//! subjects. So `>`, `*.>`, `waxosuit.>`, `*.control.*` and
//! `waxosuit.control.N1` overlap `waxosuit`, while `waxosuitx.a`, `foo.>`,
//! `waxosuit` and `*` (one token, but `waxosuit.>` needs two) do not.
//!
//! ```
//! use waxosuit_cap_messaging::subject::{Pattern, overlaps_prefix, validate};
//!
//! assert!(validate("*.control.*").is_ok());
//! assert!(overlaps_prefix("*.control.*", "waxosuit"));
//! assert!(overlaps_prefix(">", "staging.waxosuit"));
//! assert!(!overlaps_prefix("staging.*", "staging.waxosuit"));
//! assert!(validate("a..b").is_err());
//! assert!(Pattern::parse("orders.*").unwrap().matches("orders.new"));
//! ```

/// Why a string is not a usable NATS subject. The text completes "… is not
/// a valid NATS subject: …".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The subject is the empty string.
    #[error("it is empty")]
    Empty,
    /// Whitespace would split the subject in the NATS wire protocol, and
    /// control characters have no business in one.
    #[error("it contains whitespace or a control character")]
    Whitespace,
    /// `a..b`, `.a` or `a.`: NATS refuses empty tokens.
    #[error("it has an empty token (a leading, trailing or doubled `.`)")]
    EmptyToken,
    /// `a*` or `b>`: wildcards only work as whole tokens.
    #[error("`*` and `>` must be whole tokens")]
    PartialWildcard,
    /// `a.>.b`: `>` matches everything after it, so it must come last.
    #[error("`>` may only be the last token")]
    FullWildcardNotLast,
    /// Wildcards are for subscriptions; a message is sent to one subject.
    #[error("it contains a wildcard (`*` or `>`), which only subscriptions may use")]
    Wildcard,
    /// Longer than [`MAX_SUBJECT_BYTES`].
    #[error("it is {length} bytes long, more than the {MAX_SUBJECT_BYTES} allowed")]
    TooLong {
        /// The subject's length in bytes.
        length: usize,
    },
}

/// The longest subject (or pattern) an actor may use, in bytes. A NATS
/// server closes the connection of a client whose command line passes its
/// `max_control_line` (4 KiB by default), and a publish carries its subject
/// and its reply subject on that line: one over-long subject would drop the
/// binding's connection, with everything in flight on it, at every call.
pub const MAX_SUBJECT_BYTES: usize = 1024;

/// Most bytes of a refused subject an error repeats.
const SHOWN_SUBJECT_BYTES: usize = 256;

/// A subject as an error shows it: whole when short, else its first bytes
/// and its length (the caller chose how long it is).
pub fn shown(subject: &str) -> String {
    if subject.len() <= SHOWN_SUBJECT_BYTES {
        return subject.to_string();
    }
    let end = subject.floor_char_boundary(SHOWN_SUBJECT_BYTES);
    format!("{}… ({} bytes)", &subject[..end], subject.len())
}

/// Checks the syntax of a subject or subscription pattern the way a NATS
/// server does (wildcards allowed), and a little stricter: any whitespace or
/// control character is refused, not only the ASCII ones.
pub fn validate(subject: &str) -> Result<(), SubjectError> {
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    if subject.len() > MAX_SUBJECT_BYTES {
        return Err(SubjectError::TooLong {
            length: subject.len(),
        });
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SubjectError::Whitespace);
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            return Err(SubjectError::EmptyToken);
        }
        let whole_wildcard = token == "*" || token == ">";
        if !whole_wildcard && (token.contains('*') || token.contains('>')) {
            return Err(SubjectError::PartialWildcard);
        }
        if token == ">" && tokens.peek().is_some() {
            return Err(SubjectError::FullWildcardNotLast);
        }
    }
    Ok(())
}

/// Like [`validate`], and also refuses wildcards: the check for a subject a
/// message is published to (or names as its reply subject).
pub fn validate_literal(subject: &str) -> Result<(), SubjectError> {
    validate(subject)?;
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err(SubjectError::Wildcard);
    }
    Ok(())
}

/// A subscription pattern: a subject whose tokens may be `*` (exactly one
/// token) or, as the last token, `>` (one or more remaining tokens).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// Parses a pattern, refusing what [`validate`] refuses.
    ///
    /// # Errors
    ///
    /// Why `text` is not a valid subject or pattern.
    pub fn parse(text: &str) -> Result<Pattern, SubjectError> {
        validate(text)?;
        Ok(Pattern {
            text: text.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a literal subject matches this pattern.
    pub fn matches(&self, subject: &str) -> bool {
        let mut tokens = subject.split('.');
        for wanted in self.text.split('.') {
            if wanted == ">" {
                // `>` needs at least one token to stand for.
                return tokens.next().is_some();
            }
            match tokens.next() {
                Some(token) if wanted == "*" || wanted == token => {}
                _ => return false,
            }
        }
        tokens.next().is_none()
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether some subject under `prefix` (that is, matched by `{prefix}.>`)
/// is also matched by `pattern`, with NATS semantics. A literal `pattern`
/// overlaps exactly when it is under `prefix`.
///
/// Both arguments must be valid ([`validate`]; `prefix` without wildcards,
/// as [`validate_literal`] checks); the result for other input means
/// nothing, so check first.
pub fn overlaps_prefix(pattern: &str, prefix: &str) -> bool {
    let mut pattern = pattern.split('.');
    for wanted in prefix.split('.') {
        match pattern.next() {
            // Fewer tokens than the prefix: nothing under it has that shape.
            None => return false,
            // `>` takes the rest of the prefix plus at least one more token.
            Some(">") => return true,
            Some("*") => {}
            Some(token) if token == wanted => {}
            Some(_) => return false,
        }
    }
    // The prefix is matched; `{prefix}.>` needs one or more further tokens,
    // and whatever the pattern has there (a literal, `*` or `>`) can be one.
    pattern.next().is_some()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn subjects_past_the_length_bound_are_refused() {
        let at = format!("a.{}", "b".repeat(MAX_SUBJECT_BYTES - 2));
        assert!(validate(&at).is_ok());
        let over = format!("{at}c");
        assert_eq!(
            validate(&over),
            Err(SubjectError::TooLong {
                length: MAX_SUBJECT_BYTES + 1
            })
        );
        assert!(Pattern::parse(&format!("{over}.>")).is_err());
        let shown = shown(&over);
        assert!(
            shown.ends_with(&format!("… ({} bytes)", over.len())),
            "{shown}"
        );
        assert!(shown.len() < 300);
        assert_eq!(super::shown("a.b"), "a.b");
    }

    #[test]
    fn syntax_follows_the_server() {
        for ok in [
            "a", "a.b", "a.*.c", "a.>", ">", "*", "_INBOX.x", "ü.ñ", "a-b_c",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("", SubjectError::Empty),
            ("a..b", SubjectError::EmptyToken),
            (".a", SubjectError::EmptyToken),
            ("a.", SubjectError::EmptyToken),
            (".", SubjectError::EmptyToken),
            ("a b", SubjectError::Whitespace),
            ("a\tb", SubjectError::Whitespace),
            ("a\r\nPUB x 1", SubjectError::Whitespace),
            ("a\u{0}b", SubjectError::Whitespace),
            ("a\u{a0}b", SubjectError::Whitespace),
            ("a.>.b", SubjectError::FullWildcardNotLast),
            (">.>", SubjectError::FullWildcardNotLast),
            ("a*", SubjectError::PartialWildcard),
            ("b>", SubjectError::PartialWildcard),
            ("a.**", SubjectError::PartialWildcard),
        ];
        for (subject, why) in bad {
            assert_eq!(validate(subject), Err(why), "{subject:?}");
        }
        assert_eq!(validate_literal("a.b"), Ok(()));
        assert_eq!(validate_literal("a.*"), Err(SubjectError::Wildcard));
        assert_eq!(validate_literal(">"), Err(SubjectError::Wildcard));
        assert_eq!(validate_literal("a..b"), Err(SubjectError::EmptyToken));
    }

    #[test]
    fn overlap_table() {
        // (pattern, prefix, overlaps)
        let cases = [
            // Everything-matching wildcards reach any prefix.
            (">", "waxosuit", true),
            ("*.>", "waxosuit", true),
            (">", "staging.waxosuit", true),
            ("*.>", "staging.waxosuit", true),
            ("*.*.>", "staging.waxosuit", true),
            ("*.*.*", "staging.waxosuit", true),
            // Under the prefix, literally or by wildcard.
            ("waxosuit.>", "waxosuit", true),
            ("waxosuit.*", "waxosuit", true),
            ("waxosuit.control.N1", "waxosuit", true),
            ("waxosuit.control.auction", "waxosuit", true),
            ("waxosuit._INBOX.abc.1", "waxosuit", true),
            ("waxosuit.events", "waxosuit", true),
            ("*.control.*", "waxosuit", true),
            ("*.bindings", "waxosuit", true),
            ("staging.>", "staging.waxosuit", true),
            ("staging.waxosuit.control.N1", "staging.waxosuit", true),
            ("*.waxosuit.events", "staging.waxosuit", true),
            ("staging.*.*", "staging.waxosuit", true),
            // Too short: `{prefix}.>` needs prefix + 1 tokens.
            ("waxosuit", "waxosuit", false),
            ("*", "waxosuit", false),
            ("staging.waxosuit", "staging.waxosuit", false),
            ("staging.*", "staging.waxosuit", false),
            ("*.*", "staging.waxosuit", false),
            // A different first token, or a near miss.
            ("waxosuitx.a", "waxosuit", false),
            ("waxosuitx.>", "waxosuit", false),
            ("xwaxosuit.a", "waxosuit", false),
            ("WAXOSUIT.control.x", "waxosuit", false),
            ("foo.>", "waxosuit", false),
            ("a.b.c", "waxosuit", false),
            ("a.waxosuit.control", "waxosuit", false),
            ("prod.waxosuit.control.x", "staging.waxosuit", false),
            ("staging.other.>", "staging.waxosuit", false),
            ("waxosuit.>", "staging.waxosuit", false),
        ];
        for (pattern, prefix, expected) in cases {
            assert_eq!(validate(pattern), Ok(()), "{pattern}");
            assert_eq!(
                overlaps_prefix(pattern, prefix),
                expected,
                "{pattern} against {prefix}"
            );
        }
    }

    /// A literal NATS matcher, straight from the definition.
    fn matches(pattern: &[&str], subject: &[&str]) -> bool {
        match (pattern.split_first(), subject.split_first()) {
            // `>` (always last) takes one or more tokens.
            (Some((&">", _)), Some(_)) => true,
            (Some((&"*", p)), Some((_, s))) => matches(p, s),
            (Some((t, p)), Some((u, s))) => t == u && matches(p, s),
            (None, None) => true,
            _ => false,
        }
    }

    /// Every literal subject of 1..=`max_len` tokens over `alphabet`.
    fn all_subjects(alphabet: &[&'static str], max_len: usize) -> Vec<Vec<&'static str>> {
        let mut all: Vec<Vec<&'static str>> = Vec::new();
        let mut layer: Vec<Vec<&'static str>> = vec![Vec::new()];
        for _ in 0..max_len {
            layer = layer
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |t| {
                        let mut next = s.clone();
                        next.push(*t);
                        next
                    })
                })
                .collect();
            all.extend(layer.iter().cloned());
        }
        all
    }

    fn pattern_strategy() -> impl Strategy<Value = Vec<&'static str>> {
        (
            prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*"]), 0..=4),
            any::<bool>(),
        )
            .prop_filter_map("a pattern has at least one token", |(mut tokens, tail)| {
                if tail {
                    tokens.push(">");
                }
                (!tokens.is_empty()).then_some(tokens)
            })
    }

    proptest! {
        /// The token walk agrees with "does any subject match both?", decided
        /// by brute force. A witness never needs more tokens than the longer
        /// of the two patterns (both end in `>` otherwise, and truncating
        /// keeps both matches), nor tokens outside the alphabet plus one
        /// fresh token (`z`) that no pattern names.
        #[test]
        fn overlap_agrees_with_brute_force(
            prefix in prop::collection::vec(prop::sample::select(vec!["a", "b"]), 1..=3),
            pattern in pattern_strategy(),
        ) {
            let mut reserved = prefix.clone();
            reserved.push(">");
            let longest = pattern.len().max(reserved.len());
            let expected = all_subjects(&["a", "b", "c", "z"], longest)
                .iter()
                .any(|s| matches(&pattern, s) && matches(&reserved, s));
            let pattern = pattern.join(".");
            let prefix = prefix.join(".");
            prop_assert_eq!(validate(&pattern), Ok(()));
            prop_assert_eq!(overlaps_prefix(&pattern, &prefix), expected, "{} against {}", pattern, prefix);
        }
    }

    proptest! {
        /// `Pattern::matches` agrees with the definition.
        #[test]
        fn pattern_matching_agrees_with_the_definition(
            pattern in pattern_strategy(),
            subject in prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..=5),
        ) {
            let compiled = Pattern::parse(&pattern.join(".")).unwrap();
            prop_assert_eq!(compiled.matches(&subject.join(".")), matches(&pattern, &subject));
        }
    }

    #[test]
    fn patterns_match_like_nats() {
        let m = |p: &str, s: &str| Pattern::parse(p).unwrap().matches(s);
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.b.c"));
        assert!(m("a.*.c", "a.b.c"));
        assert!(!m("a.*.c", "a.c"));
        assert!(m("a.>", "a.b.c.d"));
        assert!(!m("a.>", "a"));
        assert!(m(">", "anything.at.all"));
        assert!(!m("*", "x.y"));
    }

    #[test]
    fn brute_force_matcher_is_itself_right() {
        // The oracle must not be trivially true or false.
        assert!(matches(&["a", ">"], &["a", "b", "c"]));
        assert!(!matches(&["a", ">"], &["a"]));
        assert!(matches(&["*", "b"], &["x", "b"]));
        assert!(!matches(&["*", "b"], &["x", "b", "c"]));
        assert!(!matches(&["a"], &["b"]));
        assert_eq!(all_subjects(&["a", "b"], 2).len(), 2 + 4);
    }
}
