//! Well-known capability ids and their display names.

use crate::keys::KeyKind;

/// `wascc:messaging`
pub const MESSAGING: &str = "wascc:messaging";
/// `wascc:keyvalue`
pub const KEY_VALUE: &str = "wascc:keyvalue";
/// `wascc:http_server`
pub const HTTP_SERVER: &str = "wascc:http_server";
/// `wascc:http_client`
pub const HTTP_CLIENT: &str = "wascc:http_client";
/// `wascc:blobstore`
pub const BLOB: &str = "wascc:blobstore";
/// `wascc:eventstreams`
pub const EVENTSTREAMS: &str = "wascc:eventstreams";
/// `wascc:extras`
pub const EXTRAS: &str = "wascc:extras";
/// `wascc:logging`
pub const LOGGING: &str = "wascc:logging";

/// The well-known ids with the names the original `wascap caps` table used.
pub const WELL_KNOWN: [(&str, &str); 8] = [
    (MESSAGING, "Messaging"),
    (KEY_VALUE, "K/V Store"),
    (HTTP_SERVER, "HTTP Server"),
    (HTTP_CLIENT, "HTTP Client"),
    (BLOB, "Blob Store"),
    (EVENTSTREAMS, "Event Streams"),
    (EXTRAS, "Extras"),
    (LOGGING, "Logging"),
];

/// A display name for a capability id: the well-known name, "Actor MXYZ…"
/// for an actor-to-actor grant, or the id itself for custom capabilities.
///
/// Safe for any input, including ids from tokens that fail verification:
/// anything that is not a well-known id or a real module key is shown
/// escaped and cut short ([`crate::display::escape`]).
pub fn display_name(capid: &str) -> String {
    if let Some((_, name)) = WELL_KNOWN.iter().find(|(id, _)| *id == capid) {
        return (*name).to_string();
    }
    if is_module_key(capid) {
        // A decoded module key is 56 ASCII characters, so any prefix is a
        // character boundary; `chars` keeps that true even if it were not.
        let head: String = capid.chars().take(8).collect();
        return format!("Actor {head}…");
    }
    crate::display::escape(capid, crate::rules::MAX_CAPABILITY_ID_CHARS)
}

/// What [`is_valid_capability_id`] accepts, for messages.
pub const CAPABILITY_ID_RULE: &str = "a capability id `namespace:name` of at most 128 characters \
                                      of A-Z a-z 0-9 _ - . (e.g. `acme:inventory`), or a callable \
                                      actor's module public key (56 characters starting with `M`)";

/// Whether `capid` may be granted to an actor: a `namespace:name`
/// capability id ([`is_namespaced_capability_id`]), or the public key of a
/// module (an actor it may call) that decodes as one, not merely something
/// 56 characters long starting with `M`.
pub fn is_valid_capability_id(capid: &str) -> bool {
    is_module_key(capid) || is_namespaced_capability_id(capid)
}

/// Whether `capid` is `namespace:name`: both parts non-empty, made of
/// `A-Z a-z 0-9 _ - .`, at most
/// [`MAX_CAPABILITY_ID_CHARS`](crate::rules::MAX_CAPABILITY_ID_CHARS) in all.
/// This is what a capability provider may implement.
pub fn is_namespaced_capability_id(capid: &str) -> bool {
    if capid.len() > crate::rules::MAX_CAPABILITY_ID_CHARS {
        return false;
    }
    match capid.split_once(':') {
        Some((ns, name)) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            };
            ok(ns) && ok(name)
        }
        None => false,
    }
}

fn is_module_key(s: &str) -> bool {
    crate::rules::looks_like_module_key(s)
        && KeyKind::of_public_key(s).is_ok_and(|kind| kind == KeyKind::Module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(display_name(KEY_VALUE), "K/V Store");
        assert_eq!(display_name("acme:inventory"), "acme:inventory");
        let actor = crate::KeyPair::generate(KeyKind::Module).public_key();
        assert_eq!(display_name(&actor), format!("Actor {}…", &actor[..8]));
        // Shaped like a key but not one: shown as it is, not as an actor.
        let fake = format!("M{}", "A".repeat(55));
        assert_eq!(display_name(&fake), fake);
    }

    #[test]
    fn display_name_never_panics_on_hostile_ids() {
        // 56 bytes starting with `M`, with a multi-byte character across
        // byte 8: slicing `[..8]` used to panic here.
        let hostile = format!("MAAAAAA\u{e9}{}", "A".repeat(47));
        assert_eq!(hostile.len(), 56);
        assert!(!hostile.is_char_boundary(8));
        assert_eq!(display_name(&hostile), hostile);
        assert_eq!(display_name("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        let long = "x".repeat(1000);
        assert!(display_name(&long).ends_with("…(1000 characters)"));
    }

    #[test]
    fn capability_id_shapes() {
        assert!(is_valid_capability_id("wascc:keyvalue"));
        assert!(is_valid_capability_id("acme:inventory-v2"));
        assert!(!is_valid_capability_id("keyvalue"));
        assert!(!is_valid_capability_id("wascc:"));
        assert!(!is_valid_capability_id("a b:c"));
        assert!(!is_valid_capability_id("a:b:c"));
        assert!(!is_valid_capability_id(&format!("a:{}", "b".repeat(127))));
        let module = crate::KeyPair::generate(KeyKind::Module).public_key();
        assert!(is_valid_capability_id(&module));
        assert!(!is_namespaced_capability_id(&module));
        let account = crate::KeyPair::generate(KeyKind::Account).public_key();
        assert!(!is_valid_capability_id(&account));
        assert!(!is_valid_capability_id(&format!("M{}", "A".repeat(55))));
        assert!(!is_valid_capability_id(&format!(
            "MAAAAAA\u{e9}{}",
            "A".repeat(47)
        )));
    }
}
