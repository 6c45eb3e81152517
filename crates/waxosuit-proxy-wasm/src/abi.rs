//! The Proxy-Wasm ABI's numbers and wire formats (0.2.0 and 0.2.1), and what
//! a filter module may import.

/// `proxy_status_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub(crate) enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    Unimplemented = 12,
}

impl Status {
    pub(crate) fn code(self) -> i32 {
        self as i32
    }
}

/// `proxy_action_t`.
pub(crate) const ACTION_CONTINUE: i32 = 0;

/// `proxy_buffer_type_t`.
pub(crate) mod buffer {
    pub(crate) const HTTP_REQUEST_BODY: i32 = 0;
    pub(crate) const HTTP_RESPONSE_BODY: i32 = 1;
    pub(crate) const HTTP_CALL_RESPONSE_BODY: i32 = 4;
    pub(crate) const VM_CONFIGURATION: i32 = 6;
    pub(crate) const PLUGIN_CONFIGURATION: i32 = 7;
}

/// `proxy_map_type_t`.
pub(crate) mod map {
    pub(crate) const HTTP_REQUEST_HEADERS: i32 = 0;
    pub(crate) const HTTP_REQUEST_TRAILERS: i32 = 1;
    pub(crate) const HTTP_RESPONSE_HEADERS: i32 = 2;
    pub(crate) const HTTP_RESPONSE_TRAILERS: i32 = 3;
    pub(crate) const HTTP_CALL_RESPONSE_HEADERS: i32 = 6;
    pub(crate) const HTTP_CALL_RESPONSE_TRAILERS: i32 = 7;
}

/// `proxy_stream_type_t`.
pub(crate) mod stream {
    pub(crate) const HTTP_REQUEST: i32 = 0;
    pub(crate) const HTTP_RESPONSE: i32 = 1;
}

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down, or is set.
    Gauge,
    /// A distribution of recorded values.
    Histogram,
}

impl MetricKind {
    pub(crate) fn from_abi(value: i32) -> Option<MetricKind> {
        match value {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }
}

/// The `env` host functions of ABI 0.2.1 (0.2.0 is the same set without
/// `proxy_get_log_level`); every one is linked.
pub(crate) const HOST_FUNCTIONS: &[&str] = &[
    "proxy_log",
    "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds",
    "proxy_set_effective_context",
    "proxy_done",
    "proxy_get_buffer_bytes",
    "proxy_get_buffer_status",
    "proxy_set_buffer_bytes",
    "proxy_get_header_map_pairs",
    "proxy_set_header_map_pairs",
    "proxy_get_header_map_size",
    "proxy_get_header_map_value",
    "proxy_add_header_map_value",
    "proxy_replace_header_map_value",
    "proxy_remove_header_map_value",
    "proxy_continue_stream",
    "proxy_close_stream",
    "proxy_get_status",
    "proxy_send_local_response",
    "proxy_http_call",
    "proxy_grpc_call",
    "proxy_grpc_stream",
    "proxy_grpc_send",
    "proxy_grpc_cancel",
    "proxy_grpc_close",
    "proxy_set_shared_data",
    "proxy_get_shared_data",
    "proxy_register_shared_queue",
    "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_metric",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_call_foreign_function",
    // ABI 0.1.0 names some SDK builds still import: the two `continue`s
    // resume the stream, route-cache clearing is a no-op (`Ok`), and
    // `proxy_get_configuration` answers `Unimplemented` (0.2 reads it as a
    // buffer).
    "proxy_continue_request",
    "proxy_continue_response",
    "proxy_get_configuration",
    "proxy_clear_route_cache",
];

/// The WASI module name.
pub(crate) const WASI: &str = "wasi_snapshot_preview1";

/// The WASI functions a filter may import: the subset `docs/proxy-wasm.md`
/// describes. Everything else is refused at load.
pub(crate) const WASI_SUBSET: &[&str] = &[
    "fd_write",
    "clock_time_get",
    "random_get",
    "environ_sizes_get",
    "environ_get",
    "args_sizes_get",
    "args_get",
    "proc_exit",
];

/// Headers, pairs in order: the ABI's serialized map is a `u32` count, a
/// (`u32` key size, `u32` value size) per pair, then each key and value
/// followed by a NUL.
pub(crate) fn serialize_pairs<'a, I>(pairs: impl Fn() -> I, count: usize) -> Vec<u8>
where
    I: Iterator<Item = (&'a str, &'a [u8])>,
{
    let mut out = Vec::with_capacity(pairs_size(pairs()));
    out.extend_from_slice(&u32_len(count).to_le_bytes());
    for (key, value) in pairs() {
        out.extend_from_slice(&u32_len(key.len()).to_le_bytes());
        out.extend_from_slice(&u32_len(value.len()).to_le_bytes());
    }
    for (key, value) in pairs() {
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// The length [`serialize_pairs`] produces.
pub(crate) fn pairs_size<'a>(pairs: impl Iterator<Item = (&'a str, &'a [u8])>) -> usize {
    4 + pairs
        .map(|(k, v)| 8 + k.len() + 1 + v.len() + 1)
        .sum::<usize>()
}

/// [`serialize_pairs`] of owned pairs.
pub(crate) fn serialize_map(pairs: &[(String, Vec<u8>)]) -> Vec<u8> {
    serialize_pairs(
        || pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        pairs.len(),
    )
}

/// [`pairs_size`] of owned pairs.
pub(crate) fn serialized_map_size(pairs: &[(String, Vec<u8>)]) -> usize {
    pairs_size(pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
}

fn u32_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Parses a serialized map, lower-casing keys. `None` if it is malformed,
/// has a key that is not UTF-8, or holds more than `max_pairs` pairs.
pub(crate) fn parse_map(data: &[u8], max_pairs: usize) -> Option<Vec<(String, Vec<u8>)>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(u32::from_le_bytes(data.get(..4)?.try_into().ok()?)).ok()?;
    // The count is the guest's word: it must fit the bytes given before
    // anything is allocated for it.
    if count > max_pairs || count.checked_mul(8)?.checked_add(4)? > data.len() {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 8;
        let key = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
        let value = u32::from_le_bytes(data.get(at + 4..at + 8)?.try_into().ok()?);
        sizes.push((usize::try_from(key).ok()?, usize::try_from(value).ok()?));
    }
    let mut at = 4 + count * 8;
    let mut pairs = Vec::with_capacity(count);
    for (key_len, value_len) in sizes {
        let key = data.get(at..at.checked_add(key_len)?)?;
        at += key_len + 1;
        let value = data.get(at..at.checked_add(value_len)?)?;
        at += value_len + 1;
        let key = std::str::from_utf8(key).ok()?.to_ascii_lowercase();
        pairs.push((key, value.to_vec()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip_and_keys_are_lower_cased() {
        let pairs = vec![
            (":path".to_string(), b"/a?b".to_vec()),
            ("x-empty".to_string(), Vec::new()),
        ];
        let bytes = serialize_map(&pairs);
        assert_eq!(bytes.len(), serialized_map_size(&pairs));
        assert_eq!(parse_map(&bytes, 10), Some(pairs));
        let mixed = serialize_map(&[("Powered-By".to_string(), b"proxy-wasm".to_vec())]);
        assert_eq!(
            parse_map(&mixed, 10),
            Some(vec![("powered-by".to_string(), b"proxy-wasm".to_vec())])
        );
    }

    #[test]
    fn hostile_maps_are_refused_not_trusted() {
        // A count far beyond the data, sizes past the end, too many pairs.
        assert_eq!(parse_map(&u32::MAX.to_le_bytes(), usize::MAX), None);
        let mut lying = serialize_map(&[("a".to_string(), b"b".to_vec())]);
        lying[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(parse_map(&lying, 10), None);
        let many: Vec<_> = (0..5).map(|i| (i.to_string(), Vec::new())).collect();
        assert_eq!(parse_map(&serialize_map(&many), 4), None);
        assert_eq!(parse_map(&[1, 0], 4), None);
    }
}
