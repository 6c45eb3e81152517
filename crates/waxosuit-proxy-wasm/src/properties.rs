//! `proxy_get_property`: the attributes a filter may read, by path
//! (segments joined with `.` here, NUL-separated on the wire). Strings are
//! their UTF-8 bytes; integers are 8 bytes little-endian, as in Envoy.

use crate::head;
use crate::state::VmState;

/// Every property path this host answers, for the docs and tests.
pub const PATHS: &[&str] = &[
    "request.path",
    "request.url_path",
    "request.query",
    "request.host",
    "request.scheme",
    "request.method",
    "request.protocol",
    "request.headers",
    "request.size",
    "response.code",
    "response.headers",
    "response.size",
    "source.address",
    "source.port",
    "plugin_name",
    "plugin_root_id",
    "plugin_vm_id",
    "waxosuit.actor",
    "waxosuit.actor_name",
    "waxosuit.binding",
    "waxosuit.filter_key",
];

fn int(value: u64) -> Vec<u8> {
    value.to_le_bytes().to_vec()
}

/// The value at `path` for the effective context, or `None`.
pub(crate) fn lookup(state: &VmState, path: &str) -> Option<Vec<u8>> {
    let filter = &state.filter;
    match path {
        "plugin_name" | "plugin_root_id" => return Some(filter.name.clone().into_bytes()),
        "plugin_vm_id" => return Some(Vec::new()),
        "waxosuit.filter_key" => return Some(filter.key.clone().into_bytes()),
        _ => {}
    }
    let Some(stream) = state.streams.get(&state.effective) else {
        return state.properties.get(path).cloned();
    };
    if let Some(value) = stream.properties.get(path) {
        return Some(value.clone());
    }
    let req = &stream.request;
    let full_path = req.pseudo(head::PATH).unwrap_or_default();
    let value = match path {
        "request.path" => full_path.to_vec(),
        "request.url_path" => full_path.split(|b| *b == b'?').next()?.to_vec(),
        "request.query" => match full_path.iter().position(|b| *b == b'?') {
            Some(at) => full_path[at + 1..].to_vec(),
            None => Vec::new(),
        },
        "request.host" => req.pseudo(head::AUTHORITY)?.to_vec(),
        "request.scheme" => req.pseudo(head::SCHEME)?.to_vec(),
        "request.method" => req.pseudo(head::METHOD)?.to_vec(),
        "request.protocol" => b"HTTP/1.1".to_vec(),
        "request.headers" => req.serialize(),
        "request.size" => int(stream.request_body.len() as u64),
        "response.code" => {
            let code = stream.response.pseudo(head::STATUS)?;
            int(std::str::from_utf8(code).ok()?.parse().ok()?)
        }
        "response.headers" => stream.response.serialize(),
        "response.size" => int(stream.response_body.len() as u64),
        "source.address" => stream.info.source?.to_string().into_bytes(),
        "source.port" => int(u64::from(stream.info.source?.port())),
        "waxosuit.actor" => stream.info.target.actor.as_bytes().to_vec(),
        "waxosuit.actor_name" => stream.info.target.actor_name.as_bytes().to_vec(),
        "waxosuit.binding" => stream.info.target.binding.as_bytes().to_vec(),
        _ => return state.properties.get(path).cloned(),
    };
    Some(value)
}
