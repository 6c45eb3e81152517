//! The lattice messages, as a table the `lattice_decode` target indexes
//! with its first byte (and the corpus generator uses to file seeds).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use waxosuit_lattice::protocol::{
    self, ActorEntry, AuctionBid, AuctionRequest, BindingChange, BindingEntry, CloudEvent, Command,
    CommandReply, Discover, Here, HostEntry, InventoryKind, Probe, ProviderEntry, Response,
    Subjects, ValuesRequest, ValuesResponse, WireInvocation,
};
use waxosuit_lattice::redact;

/// Decodes a bus message; what decodes must re-encode and decode to the same value.
pub fn msgpack<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = match protocol::decode("fuzz", payload) {
        Ok(v) => v,
        Err(e) => {
            let _ = e.to_string();
            return None;
        }
    };
    let bytes = protocol::encode(&value).expect("a decoded message encodes");
    let back: T = protocol::decode("fuzz", &bytes).expect("what encode wrote decodes");
    assert_eq!(back, value, "MessagePack round trip changed the message");
    Some(value)
}

/// Decodes a JSON message; what decodes must re-encode and decode to the same value.
pub fn json<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = serde_json::from_slice(payload).ok()?;
    let bytes = serde_json::to_vec(&value).expect("a decoded message encodes");
    let back: T = serde_json::from_slice(&bytes).expect("what serde_json wrote decodes");
    assert_eq!(back, value, "JSON round trip changed the message");
    Some(value)
}

fn check_redacted(entry: &BindingEntry) {
    let (shown, keys) = redact::redact(&entry.values);
    assert_eq!(shown.len(), entry.values.len());
    for key in &keys {
        assert_ne!(shown[key], entry.values[key]);
    }
}

fn subjects(text: &[u8]) -> bool {
    let text = String::from_utf8_lossy(text);
    let mut parts = text.split('\n');
    let prefix = parts.next().unwrap_or_default();
    let Ok(s) = Subjects::new(prefix) else {
        return false;
    };
    assert_eq!(s.prefix(), prefix);
    let a = parts.next().unwrap_or_default();
    let b = parts.next().unwrap_or_default();
    for subject in [
        s.actor(a),
        s.provider(a, b),
        s.at(&s.actor(a), b),
        s.chunks_of(a),
        s.values(a),
        s.control(a),
        s.inventory(InventoryKind::Actors),
    ] {
        let own = &subject[prefix.len()..];
        assert!(
            !own.contains(['*', '>']) && !own.contains(char::is_whitespace),
            "{subject:?} from {text:?}"
        );
    }
    true
}

fn invocation(p: &[u8]) -> bool {
    let Some(inv) = msgpack::<WireInvocation>(p) else {
        return false;
    };
    let _ = (inv.origin.url(), inv.target.url());
    let _ = protocol::invocation_hash(&inv.origin.url(), &inv.target.url(), &inv.msg);
    if let Some(proof) = &inv.session {
        let _ = protocol::proof_digest(proof);
    }
    true
}

fn binding_change(p: &[u8]) -> bool {
    let Some(change) = json::<BindingChange>(p) else {
        return false;
    };
    if let BindingChange::Put(entry) = &change {
        check_redacted(entry);
    }
    true
}

fn cloud_event(p: &[u8]) -> bool {
    let Ok(event) = serde_json::from_slice::<CloudEvent>(p) else {
        return false;
    };
    let text = serde_json::to_string(&event).expect("an event encodes");
    serde_json::from_str::<CloudEvent>(&text).expect("what serde_json wrote decodes");
    true
}

fn binding_entries(p: &[u8]) -> bool {
    let Some(entries) = json::<Vec<BindingEntry>>(p) else {
        return false;
    };
    entries.iter().for_each(check_redacted);
    true
}

/// The plaintext of sealed binding values (`bindings.rs`).
fn sealed_values(p: &[u8]) -> bool {
    let Some(values) = json::<BTreeMap<String, String>>(p) else {
        return false;
    };
    let (shown, _) = redact::redact(&values);
    assert_eq!(shown.len(), values.len());
    true
}

/// One decoder per message: `true` when `payload` decodes.
pub const CASES: &[crate::Case] = &[
    ("Probe", |p| protocol::decode::<Probe>("probe", p).is_ok()),
    ("WireInvocation", invocation),
    ("Response", |p| msgpack::<Response>(p).is_some()),
    ("Command", |p| msgpack::<Command>(p).is_some()),
    ("Discover", |p| msgpack::<Discover>(p).is_some()),
    ("Here", |p| msgpack::<Here>(p).is_some()),
    ("CommandReply", |p| msgpack::<CommandReply>(p).is_some()),
    ("BindingChange", binding_change),
    ("CloudEvent", cloud_event),
    ("Vec<HostEntry>", |p| json::<Vec<HostEntry>>(p).is_some()),
    ("Vec<ActorEntry>", |p| json::<Vec<ActorEntry>>(p).is_some()),
    ("Vec<ProviderEntry>", |p| {
        json::<Vec<ProviderEntry>>(p).is_some()
    }),
    ("Vec<BindingEntry>", binding_entries),
    ("ValuesRequest", |p| json::<ValuesRequest>(p).is_some()),
    ("ValuesResponse", |p| json::<ValuesResponse>(p).is_some()),
    ("AuctionRequest", |p| json::<AuctionRequest>(p).is_some()),
    ("AuctionBid", |p| json::<AuctionBid>(p).is_some()),
    ("sealed values", sealed_values),
    ("Subjects", subjects),
];
