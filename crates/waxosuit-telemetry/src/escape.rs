//! Log lines that stay one line and show what they say.
//!
//! A log line's values come from actors (what they write through
//! `wascc:logging`, the errors they return) and from the network. A line
//! feed in one starts what a reader, `grep` or a log shipper takes for a
//! line of its own: a forged one, with any time, level and text. A
//! carriage return, a bidirectional override or an invisible character
//! changes what a terminal shows. `tracing-subscriber` escapes terminal
//! escape sequences in the message and in errors only, and no line breaks,
//! so the fields are formatted escaped ([`EscapedFields`]) and each line is
//! escaped whole as it is written: the text lines of [`crate::text`] (with
//! or without trace export) and, without loss, the JSON lines.
//!
//! The characters are those claims may not hold and tools escape when they
//! show them ([`waxosuit_claims::display::is_unsafe_char`]): controls,
//! bidirectional and invisible formatting characters, and the Unicode line
//! and paragraph separators. A tab is kept; it breaks no line.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;
use std::sync::Arc;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use waxosuit_claims::display::{escape_unsafe, is_unsafe_char};

use crate::text::Sink;

/// `line` (one formatted line, without its final line feed) with every
/// character that would break it or change how it shows escaped as Rust
/// writes it: `\n`, `\r`, `\u{202e}`. `ESC` is kept when `colours`: the
/// writer's own colour sequences, the fields' having been escaped by
/// [`EscapedFields`] before.
pub(crate) fn escape_line(line: &str, colours: bool) -> Cow<'_, str> {
    escape_unsafe(line, |c| c == '\t' || (colours && c == '\x1b'))
}

/// `json` (one serialized JSON value) with the characters of
/// [`escape_line`] that `serde_json` leaves as they are (it escapes C0
/// controls only) written as JSON escapes, `\u0085`: the same value to any
/// JSON reader, and nothing a terminal or a line-based tool acts on.
pub(crate) fn escape_json(json: &str) -> Cow<'_, str> {
    let escaped = |c: char| c != '\t' && is_unsafe_char(c);
    if !json.chars().any(escaped) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if escaped(c) {
            // Outside strings a JSON text holds only ASCII punctuation,
            // digits and letters, so every such character is in a string.
            // Past the Basic Multilingual Plane, JSON wants a surrogate pair.
            let mut units = [0_u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An event's fields as `tracing-subscriber` writes them (`message`, then
/// `key=value`), every character of [`escape_line`] escaped, `ESC`
/// included: `tracing-subscriber` escapes terminal sequences in the message
/// and in errors, not in values given as `%value`, and with colours on the
/// line's own styling cannot be told from a value's afterwards. Field names
/// are not styled.
pub(crate) struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut plain = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut plain), fields)?;
        writer.write_str(&escape_line(&plain, false))
    }
}

/// A `tracing-subscriber` writer that escapes each line ([`escape_line`])
/// before it reaches `sink`: the `fmt` layer writes a line per event
/// through a writer of its own, which buffers it and writes it when the
/// event is done.
pub(crate) struct EscapingWriter {
    sink: Sink,
    colours: bool,
}

impl EscapingWriter {
    pub(crate) fn new(sink: Sink, colours: bool) -> EscapingWriter {
        EscapingWriter { sink, colours }
    }
}

impl<'a> MakeWriter<'a> for EscapingWriter {
    type Writer = LineBuffer;

    fn make_writer(&'a self) -> LineBuffer {
        LineBuffer {
            bytes: Vec::with_capacity(160),
            sink: Arc::clone(&self.sink),
            colours: self.colours,
        }
    }
}

/// One event's line, written to the sink, escaped, when dropped.
pub(crate) struct LineBuffer {
    bytes: Vec<u8>,
    sink: Sink,
    colours: bool,
}

impl io::Write for LineBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.bytes.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineBuffer {
    fn drop(&mut self) {
        if self.bytes.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.bytes);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let mut out = escape_line(line, self.colours).into_owned();
        out.push('\n');
        (self.sink)(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_are_borrowed_unchanged() {
        let line = "2026-12-07T03:40:00.000000Z  WARN bind failed\tport=8080 path=C:\\x";
        assert!(matches!(escape_line(line, false), Cow::Borrowed(l) if l == line));
        let json = r#"{"message":"a\nb ü"}"#;
        assert!(matches!(escape_json(json), Cow::Borrowed(j) if j == json));
    }

    #[test]
    fn breaks_and_hidden_characters_are_escaped() {
        let hostile =
            "ok\n2026-12-07T00:00:00Z ERROR forged\r\u{85}\u{2028}\u{202e}\u{200b}\u{7f}\u{0}";
        assert_eq!(
            escape_line(hostile, false),
            "ok\\n2026-12-07T00:00:00Z ERROR forged\\r\\u{85}\\u{2028}\\u{202e}\\u{200b}\\u{7f}\\u{0}"
        );
        // The writer's colours stay when it writes them, and only then.
        assert_eq!(
            escape_line("\x1b[31mERROR\x1b[0m", true),
            "\x1b[31mERROR\x1b[0m"
        );
        assert_eq!(escape_line("\x1b[2J", false), "\\u{1b}[2J");
    }

    #[test]
    fn json_escapes_are_lossless() {
        let value = "a\u{85}b\u{2028}c\u{202e}d\u{7f}e\u{feff}";
        let json = serde_json::json!({ "message": value }).to_string();
        let escaped = escape_json(&json);
        assert!(escaped.is_ascii(), "{escaped}");
        assert!(
            escaped.contains(r"\u0085") && escaped.contains(r"\u202e"),
            "{escaped}"
        );
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back["message"], value);
    }
}
