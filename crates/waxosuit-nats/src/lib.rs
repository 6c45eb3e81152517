//! What the lattice and the NATS messaging backend share about NATS, so
//! both read a server URL the same way and bound what a subscription holds
//! the same way.
//!
//! * [`UrlCredentials::from_url`]: `nats://user:password@host` or
//!   `nats://token@host`. `async-nats` parses such a URL but does not send
//!   the credentials, so a connection would silently go anonymous; callers
//!   hand them to `ConnectOptions` themselves, as `nats.go` does.
//! * [`with_url_credentials`] does exactly that, and [`without_credentials`]
//!   is the URL to connect to: `async-nats` keeps the URL it was given and
//!   writes it, password included, in its own debug lines about failed
//!   reconnects.
//! * [`pending`]: subscriptions whose undelivered messages are bounded in
//!   bytes as well as in number ([`PendingSubscriber`]), since one message
//!   may be as large as the server allows.
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use async_nats::ConnectOptions;

pub mod pending;

pub use pending::{DropReport, Dropped, PendingBudget, PendingSubscriber};

/// Credentials found in a server URL.
#[derive(Debug, PartialEq, Eq)]
pub enum UrlCredentials {
    /// `user:password@`.
    UserPassword(String, String),
    /// `token@`.
    Token(String),
}

impl UrlCredentials {
    /// The credentials in `url`, percent-decoded; `None` when it has none
    /// (or is not a NATS URL).
    pub fn from_url(url: &str) -> Option<UrlCredentials> {
        let addr: async_nats::ServerAddr = url.parse().ok()?;
        let user = percent_decode(addr.username()?);
        Some(match addr.password() {
            Some(password) => UrlCredentials::UserPassword(user, percent_decode(password)),
            None => UrlCredentials::Token(user),
        })
    }
}

/// `options` with the credentials of `url`, if it has any.
pub fn with_url_credentials(options: ConnectOptions, url: &str) -> ConnectOptions {
    match UrlCredentials::from_url(url) {
        Some(UrlCredentials::UserPassword(user, password)) => {
            options.user_and_password(user, password)
        }
        Some(UrlCredentials::Token(token)) => options.token(token),
        None => options,
    }
}

/// `url` (one server or a comma list) without user information, for
/// `ConnectOptions::connect` once [`with_url_credentials`] has taken it: the
/// client keeps the address it connects to, and its `Debug` (which
/// `async-nats` logs at debug level on every failed reconnect) shows the
/// password of a URL that has one. A part that does not parse is kept as it
/// is, for the client to refuse.
pub fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|one| match one.trim().parse::<async_nats::ServerAddr>() {
            Ok(addr) if addr.username().is_some() || addr.password().is_some() => {
                let mut bare = addr.into_inner();
                // Neither fails on a URL that had them.
                let _ = bare.set_password(None);
                let _ = bare.set_username("");
                bare.to_string()
            }
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// URL userinfo arrives percent-encoded (`p%40ss` for `p@ss`); a `%` not
/// followed by two hex digits is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_credentials_are_decoded() {
        assert_eq!(
            UrlCredentials::from_url("nats://waxosuit-actors:p%40ss%2Fw0rd@nats:4222"),
            Some(UrlCredentials::UserPassword(
                "waxosuit-actors".into(),
                "p@ss/w0rd".into()
            ))
        );
        assert_eq!(
            UrlCredentials::from_url("nats://s3cr3t-token@127.0.0.1:4222"),
            Some(UrlCredentials::Token("s3cr3t-token".into()))
        );
        assert_eq!(UrlCredentials::from_url("nats://127.0.0.1:4222"), None);
        assert_eq!(UrlCredentials::from_url("not a url"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("a%zzb%4"), "a%zzb%4");
        assert_eq!(percent_decode("%C3%BC"), "ü");
    }

    #[test]
    fn the_url_connected_to_has_no_credentials() {
        for (url, bare) in [
            ("nats://u:S3CRET@nats:4222", "nats://nats:4222"),
            ("nats://S3CRET@127.0.0.1:4222", "nats://127.0.0.1:4222"),
            (
                "nats://u:S3CRET@a:4222,nats://b:4222",
                "nats://a:4222,nats://b:4222",
            ),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://:S3CRET@nats:4222", "nats://nats:4222"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_credentials(url), bare, "{url}");
            assert!(!format!("{:?}", without_credentials(url)).contains("S3CRET"));
        }
        // The credentials still reach the options.
        assert!(UrlCredentials::from_url("nats://u:S3CRET@nats:4222").is_some());
    }
}
