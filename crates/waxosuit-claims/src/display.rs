//! Showing text that came from a token to a person, safely.
//!
//! Everything in a token is chosen by whoever signed it (or forged it), and
//! tools print it: in error messages, tables, logs. A name holding a terminal
//! escape sequence, a right-to-left override or a megabyte of text must not
//! rewrite the screen, reorder what is shown, or drown the message around it.
//! [`escape`] makes any string printable and bounded; it never panics,
//! whatever the input (it works on `char`s, never on byte offsets).
//! [`escape_unsafe`] escapes only what would act on a terminal or a reader,
//! unbounded, for whole lines of text (log lines, error messages).

use std::borrow::Cow;

/// How many characters of a value messages show before cutting it short.
pub const DISPLAY_CHARS: usize = 64;

/// `value` made safe to print: control characters, bidirectional and other
/// invisible formatting characters, combining marks and backslashes are
/// escaped the way Rust's `escape_debug` writes them (`\n`, `\u{202e}`,
/// `\\`); quotes are kept. The escaped text is at most `max_chars`
/// characters: when `value` needs more, it is cut at a whole character and
/// `…(N characters)` is appended, N being the length of `value` itself.
///
/// The bound is on what is *shown*, not on what was read: one hostile
/// character escapes to as many as ten (`\u{10ffff}`), so a bound on the
/// input alone would let a short value fill ten times the room.
///
/// ```
/// use waxosuit_claims::display::escape;
///
/// assert_eq!(escape("counter", 64), "counter");
/// assert_eq!(escape("evil\u{1b}[2J\u{202e}", 64), "evil\\u{1b}[2J\\u{202e}");
/// assert_eq!(escape("abcdef", 3), "abc…(6 characters)");
/// assert_eq!(escape("a\u{1b}b", 4), "a…(3 characters)");
/// ```
pub fn escape(value: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max_chars.saturating_mul(4)));
    let mut shown_chars = 0usize;
    let mut one = String::new();
    for (read, c) in value.chars().enumerate() {
        one.clear();
        push_escaped(&mut one, c);
        // Escapes are ASCII, an unescaped character is one `char`.
        let width = one.chars().count();
        if shown_chars + width > max_chars {
            // Count what is left without keeping it; the total is what the
            // reader needs to judge the value.
            let total = read + value.chars().skip(read).count();
            out.push_str(&format!("…({total} characters)"));
            return out;
        }
        shown_chars += width;
        out.push_str(&one);
    }
    out
}

/// A value given where a public key (or a key's file) belongs, as an error
/// shows it: escaped and cut like any value, except that anything shaped
/// like an nkeys seed (`S` then the kind, 58 characters) is never echoed.
/// A seed pasted into the wrong flag or trust list would otherwise land in
/// the terminal, the container log or CI output.
///
/// ```
/// use waxosuit_claims::display::shown_key;
///
/// let seed = "SAAGNW3MSSQ6Z6HGQ64UNG4DXZ7XJIM6WSKQQ7KQSTFKA3LV4AJGW6KQ6Y";
/// assert!(!shown_key(seed).contains(&seed[2..]));
/// assert_eq!(shown_key("not a key"), "not a key");
/// let path = "Secrets/operators/the-operator-token-of-team-platform";
/// assert_eq!(shown_key(path), path);
/// ```
pub fn shown_key(value: &str) -> String {
    // Seed-shaped: `S`, then nothing but the base32 alphabet, about as long
    // as a seed (a mistyped one included); a file path never is.
    let trimmed = value.trim();
    let seed_like = trimmed.starts_with('S')
        && (50..=64).contains(&trimmed.len())
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
    if seed_like {
        return "(a seed, which is secret and must never be given as a key: give its public \
                key, the `Public Key:` that `waxosuit keys gen` printed with it)"
            .to_string();
    }
    escape(value, 60)
}

/// [`escape`] with [`DISPLAY_CHARS`], wrapped in double quotes: how error
/// messages show an offending value, so that an empty or blank value is
/// still visible.
pub fn quoted(value: &str) -> String {
    format!("\"{}\"", escape(value, DISPLAY_CHARS))
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        // Quotes are harmless on a terminal and common in names.
        '"' | '\'' => out.push(c),
        _ => {
            let escaped = c.escape_debug();
            // `escape_debug` leaves printable characters alone; should it
            // ever consider one of ours printable, it is still escaped.
            if escaped.len() == 1 && is_unsafe_char(c) {
                out.extend(c.escape_unicode());
            } else {
                out.extend(escaped);
            }
        }
    }
}

/// `text` with every character of [`is_unsafe_char`] escaped as Rust writes
/// it (`\n`, `\r`, `\u{202e}`), but those `keep` accepts (a tab, say);
/// borrowed when nothing needs escaping. Unlike [`escape`], backslashes and
/// quotes stay as they are and nothing is cut: for text that is shown
/// whole, such as a log line, where only what acts on the terminal (or
/// starts a line of its own) must not pass.
///
/// ```
/// use waxosuit_claims::display::escape_unsafe;
///
/// let line = "ok\n2026-12-07 ERROR forged\t\u{1b}[2J";
/// assert_eq!(
///     escape_unsafe(line, |c| c == '\t'),
///     "ok\\n2026-12-07 ERROR forged\t\\u{1b}[2J"
/// );
/// assert!(matches!(escape_unsafe("C:\\plain", |_| false), std::borrow::Cow::Borrowed(_)));
/// ```
pub fn escape_unsafe(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let escaped = |c: char| is_unsafe_char(c) && !keep(c);
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !escaped(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.extend(c.escape_unicode()),
        }
    }
    Cow::Owned(out)
}

/// Characters that change how surrounding text is shown rather than showing
/// themselves: controls (C0, DEL, C1), bidirectional embeddings, overrides,
/// isolates and marks, zero-width characters and the byte-order mark.
/// Claims text fields may not contain them ([`crate::rules`]), and displays
/// escape them.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_unchanged() {
        for s in [
            "counter",
            "Café au lait",
            "日本語のアクター",
            "say \"hi\" it's",
            "",
        ] {
            assert_eq!(escape(s, DISPLAY_CHARS), s);
        }
    }

    #[test]
    fn controls_and_direction_overrides_are_escaped() {
        assert_eq!(escape("a\nb\tc", 64), "a\\nb\\tc");
        assert_eq!(escape("\u{1b}[31m", 64), "\\u{1b}[31m");
        assert_eq!(escape("abc\u{202e}fed", 64), "abc\\u{202e}fed");
        assert_eq!(escape("zero\u{200b}width", 64), "zero\\u{200b}width");
        assert_eq!(escape("back\\slash", 64), "back\\\\slash");
        assert_eq!(escape("\u{85}", 64), "\\u{85}");
    }

    #[test]
    fn long_values_are_cut_on_characters_not_bytes() {
        let long = "é".repeat(100);
        let shown = escape(&long, 10);
        assert_eq!(shown, format!("{}…(100 characters)", "é".repeat(10)));
        assert_eq!(escape("abc", 3), "abc");
        assert_eq!(escape("abcd", 0), "…(4 characters)");
    }

    #[test]
    fn escapes_count_against_the_bound() {
        // 128 characters that each escape to ten: the bound holds on what is
        // shown, and an escape is never split.
        let hostile = "\u{10ffff}".repeat(128);
        let shown = escape(&hostile, 128);
        assert_eq!(
            shown,
            format!("{}…(128 characters)", "\\u{10ffff}".repeat(12))
        );
        assert_eq!(escape("a\u{1b}", 5), "a…(2 characters)");
        assert_eq!(escape("a\u{1b}", 7), "a\\u{1b}");
    }

    #[test]
    fn quoted_shows_empty_values() {
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted(" "), "\" \"");
    }
}
