//! `waxosuit_lattice::redact::redact_value` on arbitrary key/value pairs
//! (input: key, `\0`, value). Binding values travel the lattice in this
//! redacted form, so whatever it lets through is readable by every host and
//! tool.
//!
//! Checked, beyond "no panic":
//! * under a secret-looking key (`…PASSWORD…`, `…_KEY`, …) nothing of the
//!   value is shown;
//! * the shown value never carries usable URL credentials: read the way the
//!   consumers of these values read them — `async_nats::ServerAddr` (a value
//!   without `://` is taken as `nats://` + value) and the `url` crate both
//!   Redis and NATS clients parse with — its username and password are empty
//!   or the redaction marker. A value that is free text (whitespace inside
//!   it once the URL parser's own trimming is done) is not a URL to anyone
//!   and is left out of this check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxosuit_fuzz::split_at_byte;
use waxosuit_lattice::redact::{REDACTED, redact_value};

/// `REDACTED` as the `url` crate writes it in a userinfo.
const ENCODED: &str = "%3Credacted%3E";

/// What a URL parser reads from `value`: the WHATWG rules drop leading and
/// trailing C0 controls and spaces, and every tab and newline inside.
fn as_url_parser_sees_it(value: &str) -> String {
    value
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// The username and password a client would send for `value`, if any.
fn credentials(value: &str) -> Option<(String, Option<String>)> {
    let seen = as_url_parser_sees_it(value);
    let candidate = if seen.contains("://") {
        value.to_string()
    } else if seen.contains(char::is_whitespace) {
        // Free text, not a server address.
        return None;
    } else {
        // async-nats: `ServerAddr::from_str` prefixes `nats://`.
        format!("nats://{value}")
    };
    let url = url::Url::parse(&candidate).ok()?;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    Some((
        url.username().to_string(),
        url.password().map(str::to_string),
    ))
}

fn is_redacted(part: &str) -> bool {
    part.is_empty() || part == ENCODED || part == REDACTED
}

fuzz_target!(|data: &[u8]| {
    let (key, value) = split_at_byte(data, 0);
    let key = String::from_utf8_lossy(key);
    let value = String::from_utf8_lossy(value);
    let shown = redact_value(&key, &value);

    let upper = key.to_ascii_uppercase();
    if [
        "PASSWORD", "SECRET", "TOKEN", "CREDS", "SEED", "AUTH", "JWT",
    ]
    .iter()
    .any(|s| upper.contains(s))
        || upper.ends_with("_KEY")
    {
        assert!(
            shown.is_empty() || shown == REDACTED,
            "{key:?}={value:?} shown as {shown:?}"
        );
    }

    if let Some((user, password)) = credentials(&shown) {
        let leaked = match &password {
            // `user:password@`: the user may stay, the password may not.
            Some(password) => !is_redacted(password),
            // `token@`: a user alone is often a token itself.
            None => !is_redacted(&user),
        };
        assert!(
            !leaked,
            "credentials leak: {key:?}={value:?} shown as {shown:?} (user {user:?}, password {password:?})"
        );
    }
});
