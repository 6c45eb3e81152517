//! Well-known capability ids and their display names.

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
pub fn display_name(capid: &str) -> String {
    if let Some((_, name)) = WELL_KNOWN.iter().find(|(id, _)| *id == capid) {
        return (*name).to_string();
    }
    if capid.len() == 56 && capid.starts_with('M') {
        return format!("Actor {}…", &capid[..8]);
    }
    capid.to_string()
}

/// Whether `capid` is of the `namespace:name` form (or an actor key) that
/// capability ids must have.
pub fn is_valid_capability_id(capid: &str) -> bool {
    let actor_key = capid.len() == 56 && capid.starts_with('M');
    let namespaced = match capid.split_once(':') {
        Some((ns, name)) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            };
            ok(ns) && ok(name)
        }
        None => false,
    };
    actor_key || namespaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(display_name(KEY_VALUE), "K/V Store");
        assert_eq!(display_name("acme:inventory"), "acme:inventory");
        let actor = format!("M{}", "A".repeat(55));
        assert_eq!(display_name(&actor), "Actor MAAAAAAA…");
    }

    #[test]
    fn capability_id_shapes() {
        assert!(is_valid_capability_id("wascc:keyvalue"));
        assert!(is_valid_capability_id("acme:inventory-v2"));
        assert!(!is_valid_capability_id("keyvalue"));
        assert!(!is_valid_capability_id("wascc:"));
        assert!(!is_valid_capability_id("a b:c"));
    }
}
