//! NATS subject syntax and matching, so that an actor moved from the
//! embedded broker to a NATS binding sees the same subjects match.

use std::fmt;

/// Why a subject or subscription pattern is not valid NATS syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subject `{subject}`: {reason}")]
pub struct SubjectError {
    /// The subject as given.
    pub subject: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A subscription pattern: a subject whose tokens may be `*` (exactly one
/// token) or, as the last token, `>` (one or more remaining tokens).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// Parses a pattern, rejecting what a NATS server would reject.
    pub fn parse(text: &str) -> Result<Pattern, SubjectError> {
        check(text, true)?;
        Ok(Pattern {
            text: text.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a concrete subject (no wildcards) matches this pattern.
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

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Checks a subject that messages are published to: wildcards are not
/// allowed there, as in NATS.
pub fn check_publish_subject(subject: &str) -> Result<(), SubjectError> {
    check(subject, false)
}

fn check(text: &str, wildcards: bool) -> Result<(), SubjectError> {
    let fail = |reason| {
        Err(SubjectError {
            subject: text.to_string(),
            reason,
        })
    };
    if text.is_empty() {
        return fail("it is empty");
    }
    if text.chars().any(char::is_whitespace) {
        return fail("it contains whitespace");
    }
    let count = text.split('.').count();
    for (i, token) in text.split('.').enumerate() {
        if token.is_empty() {
            return fail("it has an empty token (leading, trailing or doubled `.`)");
        }
        let wildcard = token == "*" || token == ">";
        if !wildcard && (token.contains('*') || token.contains('>')) {
            return fail("`*` and `>` must be whole tokens");
        }
        if wildcard && !wildcards {
            return fail("wildcards can be subscribed to, not published to");
        }
        if token == ">" && i + 1 != count {
            return fail("`>` may only be the last token");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, subject: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(subject)
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.b.c"));
        assert!(!m("a.b", "a"));
        assert!(!m("a.b", "a.c"));
    }

    #[test]
    fn star_matches_exactly_one_token() {
        assert!(m("a.*.c", "a.b.c"));
        assert!(!m("a.*.c", "a.c"));
        assert!(!m("a.*.c", "a.b.x.c"));
        assert!(m("*", "x"));
        assert!(!m("*", "x.y"));
    }

    #[test]
    fn gt_matches_one_or_more_remaining_tokens() {
        assert!(m("a.>", "a.b"));
        assert!(m("a.>", "a.b.c.d"));
        assert!(!m("a.>", "a"));
        assert!(m(">", "anything.at.all"));
        assert!(m("*.b.>", "x.b.y"));
        assert!(!m("*.b.>", "x.c.y"));
    }

    #[test]
    fn malformed_subjects_are_rejected() {
        for bad in ["", "a..b", ".a", "a.", "a b", "a.>.c", "a*", "x.b>"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_publish_subject("a.*").is_err());
        assert!(check_publish_subject("a.>").is_err());
        assert!(check_publish_subject("_INBOX.abc.1").is_ok());
    }
}
