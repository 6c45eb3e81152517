//! Binding values as they may be shown to the lattice: keys kept, secrets
//! replaced by [`REDACTED`].
//!
//! Binding values configure providers and often hold credentials: a Redis
//! password in a `URL`, a NATS `CREDSFILE`, an API token. Inventory answers,
//! binding broadcasts and events carry only this redacted form (and list
//! which keys were redacted); the real values travel only to the hosts that
//! serve the provider, encrypted to them ([`crate::bindings`]).

use std::collections::BTreeMap;

/// What a redacted value (or the secret part of one) is replaced by.
pub const REDACTED: &str = "<redacted>";

/// Key names whose values are secret as a whole (compared upper-case, as
/// substrings: `REDIS_PASSWORD`, `API_TOKEN`, `NATS_CREDSFILE`…).
const SECRET_KEYS: [&str; 16] = [
    "PASSWORD",
    "PASSWD",
    "PASS",
    "SECRET",
    "TOKEN",
    "CREDS",
    "CREDENTIAL",
    "PRIVATE",
    "APIKEY",
    "API_KEY",
    "SEED",
    "AUTH",
    "NKEY",
    "JWT",
    "BEARER",
    "COOKIE",
];

/// Query parameter names whose values are secret (compared lower-case, as
/// substrings: `api_key`, `client_secret`, `X-Amz-Signature`…).
const SECRET_PARAMS: [&str; 7] = ["pass", "secret", "token", "key", "auth", "sig", "cred"];

/// The redacted form of `values` and the keys whose values were changed.
pub fn redact(values: &BTreeMap<String, String>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut redacted = Vec::new();
    for (key, value) in values {
        let shown = redact_value(key, value);
        if shown != *value {
            redacted.push(key.clone());
        }
        out.insert(key.clone(), shown);
    }
    (out, redacted)
}

/// One value: wholly redacted under a secret-looking key, otherwise with
/// URL credentials and secret query parameters redacted.
pub fn redact_value(key: &str, value: &str) -> String {
    let upper = key.to_ascii_uppercase();
    if SECRET_KEYS.iter().any(|s| upper.contains(s))
        || upper.ends_with("_KEY")
        || looks_like_a_credential(value)
    {
        return if value.is_empty() {
            String::new()
        } else {
            REDACTED.to_string()
        };
    }
    redact_url(value)
}

/// An nkeys seed (`SU…`, `SA…`: 58 base32 characters) or a JWT, whatever key
/// it is under.
fn looks_like_a_credential(value: &str) -> bool {
    let value = value.trim();
    let base32 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
    };
    let seed = value.len() == 58 && value.starts_with('S') && base32(value);
    let jwt = value.starts_with("eyJ") && value.split('.').count() == 3;
    seed || jwt
}

/// `scheme://user:password@host/…?token=…` → `scheme://user:<redacted>@host/…?token=<redacted>`;
/// a user without a password (often a token itself) is redacted too.
fn redact_url(value: &str) -> String {
    // NATS and Redis clients parse URLs the WHATWG way, which drops leading
    // and trailing controls and spaces, and every tab and newline: redact
    // what they read, or `alice:pw@nats:4222\n` (free text as written) and
    // `redis:\t//u:pw@db` (no `://` as written) keep their password.
    if value.contains('@') {
        let read = as_clients_read_it(value);
        if read != value && (read.contains("://") || !read.contains(char::is_whitespace)) {
            return redact_url_as_written(&read);
        }
    }
    redact_url_as_written(value)
}

fn redact_url_as_written(value: &str) -> String {
    let parsed = match url_authority(value) {
        Some((after, special)) => redact_authority(value, after, special),
        None => match value.find("://") {
            Some(scheme_end) => redact_authority(value, scheme_end + 3, false),
            None => redact_query(value),
        },
    };
    // Without `://`, NATS clients read `nats://` + the value, so the start
    // of `user:password@host` is an authority too (and `https:u:pw@host`
    // has a user both ways): redact it as well.
    // Whether it is free text is decided on what is shown, as a client
    // would read it: whitespace that was only in a redacted query (a form
    // feed in a token) must not leave the user part of what is now a
    // well-formed address.
    if !parsed.contains("://")
        && parsed.contains('@')
        && !as_clients_read_it(&parsed).contains(char::is_whitespace)
    {
        return redact_authority(&parsed, 0, false);
    }
    parsed
}

/// `value` as the WHATWG URL parser (the `url` crate, hence Redis and NATS
/// clients) reads it: leading and trailing controls and spaces dropped,
/// every tab and newline removed.
fn as_clients_read_it(value: &str) -> String {
    value
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// `value` with the password (or the lone user) of the authority that
/// starts at `after` redacted, and its query.
fn redact_authority(value: &str, after: usize, special: bool) -> String {
    let delimiters: &[char] = if special {
        &['/', '?', '#', '\\']
    } else {
        &['/', '?', '#']
    };
    let authority_end = value[after..]
        .find(delimiters)
        .map_or(value.len(), |i| after + i);
    let authority = &value[after..authority_end];
    let mut out = String::with_capacity(value.len());
    out.push_str(&value[..after]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(REDACTED),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&redact_query(&value[authority_end..]));
    out
}

/// Where a URL parser finds the authority of `value`, and whether its
/// scheme is one of the WHATWG "special" ones: after `scheme://`, or, for
/// `http`, `https`, `ws`, `wss` and `ftp`, after any run of `/` and `\`
/// (`https:/user:pw@host` has credentials too). `None` when `value` does
/// not start with a scheme followed by an authority.
fn url_authority(value: &str) -> Option<(usize, bool)> {
    let colon = value.find(':')?;
    let scheme = &value[..colon];
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid {
        return None;
    }
    let rest = &value[colon + 1..];
    if ["http", "https", "ws", "wss", "ftp"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
    {
        let slashes = rest.len() - rest.trim_start_matches(['/', '\\']).len();
        return Some((colon + 1 + slashes, true));
    }
    rest.starts_with("//").then_some((colon + 3, false))
}

fn redact_query(rest: &str) -> String {
    let Some(q) = rest.find('?') else {
        return rest.to_string();
    };
    let (path, query) = rest.split_at(q + 1);
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    let params: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, v))
                if !v.is_empty()
                    && SECRET_PARAMS
                        .iter()
                        .any(|s| name.to_ascii_lowercase().contains(s)) =>
            {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}{}{fragment}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz finding (`lattice_redact`, 2026-12-05): whitespace only in a
    /// redacted query (a form feed in the token) made the value look like
    /// free text, so the user part of the address before it was shown.
    #[test]
    fn whitespace_in_a_redacted_query_does_not_spare_the_user() {
        let value = "\u{1a}\tsecret-user@host:4222?token=abc\u{c}def";
        let shown = redact_value("URL", value);
        assert!(!shown.contains("secret-user"), "{shown:?}");
        assert!(!shown.contains("abc"), "{shown:?}");
    }

    #[test]
    fn credentials_in_urls_keys_and_queries_are_redacted_and_the_rest_kept() {
        for (key, value, shown) in [
            (
                "URL",
                "redis://:hunter2@db:6379/0",
                "redis://:<redacted>@db:6379/0",
            ),
            (
                "URL",
                "redis://app:hunter2@db:6379",
                "redis://app:<redacted>@db:6379",
            ),
            (
                "URL",
                "nats://s3cr3ttoken@nats:4222",
                "nats://<redacted>@nats:4222",
            ),
            ("URL", "redis://db:6379/0", "redis://db:6379/0"),
            (
                "URL",
                "https://api.example/x?token=abc&page=2#top",
                "https://api.example/x?token=<redacted>&page=2#top",
            ),
            ("CREDSFILE", "/etc/nats/app.creds", "<redacted>"),
            ("REDIS_PASSWORD", "hunter2", "<redacted>"),
            ("api_token", "abc", "<redacted>"),
            ("SIGNING_KEY", "abc", "<redacted>"),
            ("KEY_PREFIX", "tenant-a:", "tenant-a:"),
            ("PORT", "8080", "8080"),
            ("ROOT", "/srv/blobs", "/srv/blobs"),
            ("ALLOWED_HOSTS", "api.example", "api.example"),
            ("PASSWORD", "", ""),
            ("URL", "alice:pw@nats:4222", "alice:<redacted>@nats:4222"),
            (
                "URL",
                "https://x/?client_secret=abc&api_key=d&q=1",
                "https://x/?client_secret=<redacted>&api_key=<redacted>&q=1",
            ),
            ("NATS_AUTH", "abc", "<redacted>"),
            ("USER_NKEY", "abc", "<redacted>"),
            (
                "SOMETHING",
                "SUAMLK3GZ2W5A6RUSBBEBSA4O7RMSSNMBW7LC6LOD4DEBB52BE4EFZOLDU",
                "<redacted>",
            ),
            (
                "SOMETHING",
                "eyJhbGciOiJlZDI1NTE5In0.eyJzdWIiOiJ4In0.c2ln",
                "<redacted>",
            ),
        ] {
            assert_eq!(redact_value(key, value), shown, "{key}={value}");
        }
        let values = BTreeMap::from([
            ("URL".to_string(), "redis://:pw@db".to_string()),
            ("PORT".to_string(), "1".to_string()),
        ]);
        let (shown, keys) = redact(&values);
        assert_eq!(keys, vec!["URL".to_string()]);
        assert_eq!(shown["PORT"], "1");
        assert!(!shown["URL"].contains("pw"));
    }

    #[test]
    fn odd_values_never_panic_and_never_leak_the_userinfo() {
        for value in [
            "://",
            "a://@",
            "x://:@",
            "redis://a@b@c/d",
            "?",
            "?=&=",
            "é://ü:ö@ß",
        ] {
            let shown = redact_value("URL", value);
            if let Some(at) = value.rfind('@') {
                let start = value.find("://").map_or(0, |i| i + 3);
                if at > start {
                    assert!(shown.contains(REDACTED), "{value} → {shown}");
                }
            }
        }
    }
}
