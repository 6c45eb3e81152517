//! Inputs found by the fuzz suite (`fuzz/`, docs/fuzzing.md), kept so that
//! they stay fixed.

use waxosuit_lattice::protocol::{self, Command, Probe, WireInvocation};
use waxosuit_lattice::redact::{REDACTED, redact_value};
use waxosuit_nats::UrlCredentials;

/// What a NATS client would authenticate with if given `shown`.
fn nats_credentials(shown: &str) -> Option<UrlCredentials> {
    UrlCredentials::from_url(shown)
}

/// `lattice_redact`: a URL parser drops leading and trailing controls and
/// spaces and every tab and newline, so these are credentials to a client,
/// but were free text (whitespace inside) or had no `://` to the
/// redaction.
#[test]
fn credentials_hidden_by_tabs_newlines_and_controls_are_redacted() {
    for (value, secret) in [
        ("alice:hunter2@nats:4222\n", "hunter2"),
        ("alice:hunter2@nats:4222\r\n", "hunter2"),
        ("\talice:hunter2@nats:4222", "hunter2"),
        ("ali\nce:hunt\ter2@nats:4222", "hunt"),
        ("s3cr3t\r@nats:4222", "s3cr3t"),
        // The fuzzer's own find: NULs and a CR before a lone user.
        ("\0\0\0\0\0\r\u{fffd}@nats", "\u{fffd}"),
        ("redis:\t//app:hunter2@db:6379", "hunter2"),
        ("nats:/\n/app:hunter2@nats:4222", "hunter2"),
    ] {
        let shown = redact_value("URL", value);
        assert!(
            !shown.contains(secret),
            "{value:?} is shown as {shown:?}, which still holds {secret:?}"
        );
        assert!(shown.contains(REDACTED), "{value:?} → {shown:?}");
        match nats_credentials(&shown) {
            None => {}
            Some(UrlCredentials::UserPassword(_, password)) => assert_eq!(password, REDACTED),
            Some(UrlCredentials::Token(token)) => assert_eq!(token, REDACTED),
        }
    }
}

/// `lattice_redact`: for the WHATWG "special" schemes (`http`, `https`,
/// `ws`, `wss`, `ftp`) any number of slashes, even none, leads to the
/// authority, so `wss:/user:pw@host` carries credentials to the `url` crate
/// (and to async-nats, which parses a value containing `://` anywhere as
/// is); and without `://`, NATS clients read `nats://` + the value, where
/// the scheme becomes the user.
#[test]
fn special_scheme_authorities_and_both_readings_are_redacted() {
    for (value, secret) in [
        ("wss:/app:hunter2@nats:443/x://y", "hunter2"),
        ("https:/app:hunter2@api.example/x://y", "hunter2"),
        ("https:app:hunter2@api.example", "hunter2"),
        ("http:\\\\app:hunter2@api.example", "hunter2"),
        ("HTTPS:///app:hunter2@api.example", "hunter2"),
        // Found by the fuzzer: `https` is the user to NATS, `;…ts` to the
        // `url` crate.
        ("https:;\0$\0ts:ORs:ORZ:p%82iss@h1", ";\0$\0ts"),
    ] {
        let shown = redact_value("URL", value);
        assert!(
            !shown.contains(secret),
            "{value:?} is shown as {shown:?}, which still holds {secret:?}"
        );
        match nats_credentials(&shown) {
            None => {}
            Some(UrlCredentials::UserPassword(_, password)) => assert_eq!(password, REDACTED),
            Some(UrlCredentials::Token(token)) => assert_eq!(token, REDACTED),
        }
    }
}

/// What was right stays right.
#[test]
fn ordinary_values_are_shown_as_before() {
    for (value, shown) in [
        (
            "redis://app:hunter2@db:6379/0",
            "redis://app:<redacted>@db:6379/0",
        ),
        ("nats://tok@nats:4222", "nats://<redacted>@nats:4222"),
        ("alice:pw@nats:4222", "alice:<redacted>@nats:4222"),
        ("redis://db:6379", "redis://db:6379"),
        ("Contact admin@example.org", "Contact admin@example.org"),
        ("line one\nline two", "line one\nline two"),
        (
            "https://x/?token=abc#top",
            "https://x/?token=<redacted>#top",
        ),
    ] {
        assert_eq!(redact_value("URL", value), shown, "{value:?}");
    }
}

fn nested(depth: usize) -> Vec<u8> {
    // `{"x": [[[…nil…]]]}`: a field no message knows, skipped (recursively)
    // by the decoder, nested `depth` deep.
    let mut bytes = vec![0x81, 0xa1, b'x'];
    bytes.extend(std::iter::repeat_n(0x91, depth));
    bytes.push(0xc0);
    bytes
}

/// Found while fuzzing `lattice_decode`: with rmp-serde's default limit of
/// 1024 levels, a 1 KiB message nested 1000 deep overflowed a 2 MiB stack
/// (a tokio worker's) in a debug build and aborted the host; invocations are
/// decoded before they are authenticated. Now refused at 64 levels.
#[test]
fn deeply_nested_messages_are_refused_on_a_worker_sized_stack() {
    let worker = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            for depth in [65, 600, 1000, 1023, 100_000] {
                let bytes = nested(depth);
                assert!(
                    protocol::decode::<Probe>("probe", &bytes).is_err(),
                    "{depth}"
                );
                assert!(
                    protocol::decode::<Command>("command", &bytes).is_err(),
                    "{depth}"
                );
                assert!(
                    protocol::decode::<WireInvocation>("invocation", &bytes).is_err(),
                    "{depth}"
                );
            }
            // Real messages are nowhere near the limit.
            let probe: Probe = protocol::decode("probe", &nested(8)).expect("8 levels");
            assert_eq!(probe.v, None);
        })
        .expect("spawn");
    worker.join().expect("no stack overflow");
}
