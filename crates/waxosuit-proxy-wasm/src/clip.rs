//! Filter-chosen text (an upstream's name, a callout's path, an error that
//! repeats it) as the host's warnings show it: a filter can make that text
//! as long as its memory, and one warning per request of a 64 KiB path is
//! a log flood of its own. So the log shows the first bytes, and a URL
//! never its query, where callers put keys and signatures.

use std::fmt;

/// Most bytes of filter-chosen text one warning shows.
pub(crate) const MAX_SHOWN_BYTES: usize = 256;

/// At most [`MAX_SHOWN_BYTES`] of a text, cut on a character boundary and
/// marked as cut.
pub(crate) struct Clipped<'a>(pub(crate) &'a str);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        if text.len() <= MAX_SHOWN_BYTES {
            return f.write_str(text);
        }
        let end = text.floor_char_boundary(MAX_SHOWN_BYTES);
        write!(f, "{}… ({} bytes)", &text[..end], text.len())
    }
}

/// A URL without its query or fragment, clipped.
pub(crate) struct ShownUrl<'a>(pub(crate) &'a str);

impl fmt::Display for ShownUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0.split(['?', '#']).next().unwrap_or_default();
        Clipped(url).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_shown_whole() {
        assert_eq!(Clipped("cluster").to_string(), "cluster");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        // 'é' is two bytes: byte 256 falls inside one.
        let text = format!("a{}", "é".repeat(400));
        let shown = Clipped(&text).to_string();
        assert!(
            shown.ends_with(&format!("… ({} bytes)", text.len())),
            "{shown}"
        );
        let kept = shown.split('…').next().unwrap();
        assert!(kept.len() <= MAX_SHOWN_BYTES && kept.len() >= MAX_SHOWN_BYTES - 1);
    }

    #[test]
    fn a_url_loses_its_query_and_fragment() {
        assert_eq!(
            ShownUrl("http://auth.internal/check?token=secret#x").to_string(),
            "http://auth.internal/check"
        );
        let long = format!("http://a/{}?key=secret", "p".repeat(70_000));
        let shown = ShownUrl(&long).to_string();
        assert!(!shown.contains("secret"));
        assert!(shown.len() < MAX_SHOWN_BYTES + 32, "{}", shown.len());
    }
}
