//! Wasm guests for Waxosuit tests and benchmarks, built from source.
//!
//! * Rust guests live in the separate `guests/` workspace (and, for modules
//!   built with the original 2020 SDKs, `guests-legacy/`); `build.rs` compiles
//!   every member for `wasm32-unknown-unknown` into `<target-dir>/guests` and
//!   copies each `*.wasm` into `OUT_DIR`, generating one constant per artifact
//!   in [`guests`].
//! * Proxy-Wasm HTTP filters, built with the public `proxy-wasm` SDK, live in
//!   `filters/` (the example filters) and `guests-filters/` (test filters);
//!   `build.rs` compiles both for `wasm32-wasip1` and
//!   `wasm32-unknown-unknown`, and [`filter`] returns either build.
//! * Hand-written `.wat` guests live in `wat/` and are assembled on demand with
//!   the `wat` crate, which reports a precise parse error if one is broken.
//!
//! * [`hostile`] generates hostile claims (proptest strategies) and signs
//!   them the way an attacker would, for tests that must not panic on them.
//!
//! No binary is checked in: every byte here is reproducible from source.

pub mod hostile;

pub mod guests {
    //! Compiled Rust guests, one constant per `guests/` artifact.
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The `wapc-echo` guest (`guests/wapc-echo`, `wapc-guest` 1.x).
///
/// Operations registered in `wapc_init`: `echo`, `error`, `panic`, `loop`,
/// `grow`, `ping` (host call `default`/`test:ping`/`Ping`), `forward` (the
/// host call described by the payload `binding\nnamespace\noperation\nbody`)
/// and `HealthRequest` (echo).
pub fn wapc_echo() -> &'static [u8] {
    guests::WAPC_ECHO
}

/// The `http-probe` guest (`guests/http-probe`, built with `waxosuit-actor`):
/// an HTTP actor whose routes `/`, `/error`, `/trap`, `/malformed`,
/// `/spin?n=N` and `/kv` exercise the host's HTTP failure paths.
pub fn http_probe() -> &'static [u8] {
    guests::HTTP_PROBE
}

/// An example actor from `examples/` by crate name (e.g. `"messaging-echo"`).
///
/// # Panics
///
/// Panics if there is no such example, which is a bug in the calling test.
pub fn example(name: &str) -> &'static [u8] {
    match name {
        "hello" => guests::HELLO,
        "kvcounter" => guests::KVCOUNTER,
        "iot-sensor" => guests::IOT_SENSOR,
        "messaging-echo" => guests::MESSAGING_ECHO,
        "http-fetch" => guests::HTTP_FETCH,
        "blob-notes" => guests::BLOB_NOTES,
        "event-log" => guests::EVENT_LOG,
        other => panic!("no example actor named {other:?} in examples/"),
    }
}

/// The target a Proxy-Wasm filter was compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterTarget {
    /// `wasm32-wasip1`: the module also imports `wasi_snapshot_preview1`
    /// and exports `proxy_on_memory_allocate`.
    Wasip1,
    /// `wasm32-unknown-unknown`: only `env` (Proxy-Wasm) imports; the SDK
    /// exports its allocator as `malloc`.
    Unknown,
}

/// A Proxy-Wasm (ABI 0.2.1) HTTP filter by crate name, built for `target`.
///
/// Example filters (`filters/`): `"filter-authz"`, `"filter-add-header"`,
/// `"filter-json-rewrite"`. Test filters (`guests-filters/`, each described
/// in its crate documentation): `"pw-headers"`, `"pw-config"`, `"pw-body"`,
/// `"pw-callout"`, `"pw-tick-shared"`, `"pw-metrics"`, `"pw-passthrough"`,
/// `"pw-misbehave"`, `"pw-props"`.
///
/// # Panics
///
/// Panics if there is no such filter, which is a bug in the calling test.
pub fn filter(name: &str, target: FilterTarget) -> &'static [u8] {
    use FilterTarget::{Unknown, Wasip1};
    match (name, target) {
        ("filter-authz", Wasip1) => guests::FILTER_AUTHZ_WASIP1,
        ("filter-authz", Unknown) => guests::FILTER_AUTHZ_UNKNOWN,
        ("filter-add-header", Wasip1) => guests::FILTER_ADD_HEADER_WASIP1,
        ("filter-add-header", Unknown) => guests::FILTER_ADD_HEADER_UNKNOWN,
        ("filter-json-rewrite", Wasip1) => guests::FILTER_JSON_REWRITE_WASIP1,
        ("filter-json-rewrite", Unknown) => guests::FILTER_JSON_REWRITE_UNKNOWN,
        ("pw-headers", Wasip1) => guests::PW_HEADERS_WASIP1,
        ("pw-headers", Unknown) => guests::PW_HEADERS_UNKNOWN,
        ("pw-config", Wasip1) => guests::PW_CONFIG_WASIP1,
        ("pw-config", Unknown) => guests::PW_CONFIG_UNKNOWN,
        ("pw-body", Wasip1) => guests::PW_BODY_WASIP1,
        ("pw-body", Unknown) => guests::PW_BODY_UNKNOWN,
        ("pw-callout", Wasip1) => guests::PW_CALLOUT_WASIP1,
        ("pw-callout", Unknown) => guests::PW_CALLOUT_UNKNOWN,
        ("pw-tick-shared", Wasip1) => guests::PW_TICK_SHARED_WASIP1,
        ("pw-tick-shared", Unknown) => guests::PW_TICK_SHARED_UNKNOWN,
        ("pw-metrics", Wasip1) => guests::PW_METRICS_WASIP1,
        ("pw-metrics", Unknown) => guests::PW_METRICS_UNKNOWN,
        ("pw-passthrough", Wasip1) => guests::PW_PASSTHROUGH_WASIP1,
        ("pw-passthrough", Unknown) => guests::PW_PASSTHROUGH_UNKNOWN,
        ("pw-misbehave", Wasip1) => guests::PW_MISBEHAVE_WASIP1,
        ("pw-misbehave", Unknown) => guests::PW_MISBEHAVE_UNKNOWN,
        ("pw-props", Wasip1) => guests::PW_PROPS_WASIP1,
        ("pw-props", Unknown) => guests::PW_PROPS_UNKNOWN,
        (other, _) => {
            panic!("no Proxy-Wasm filter named {other:?} in filters/ or guests-filters/")
        }
    }
}

/// The classic waSCC key-value counter built with the public `wascc-actor`
/// 0.7 SDK (`guests-legacy/kvcounter`): `HandleRequest` → `AtomicAdd` of the
/// path on `wascc:keyvalue` → `{"counter": N}`.
pub fn wascc_kvcounter() -> &'static [u8] {
    guests::WASCC_KVCOUNTER
}

macro_rules! wat_fixture {
    ($($(#[$doc:meta])* $name:ident => $file:literal),* $(,)?) => {
        $(
            $(#[$doc])*
            ///
            /// # Panics
            ///
            /// Panics if the checked-in `.wat` source does not assemble, which
            /// is a bug in the fixture itself.
            pub fn $name() -> Vec<u8> {
                let source = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/wat/", $file));
                wat::parse_str(source)
                    .unwrap_or_else(|e| panic!("fixture wat/{} is invalid: {e}", $file))
            }
        )*
    };
}

wat_fixture! {
    /// Hand-written echo guest on the 8-argument ABI (`wat/echo.wat`):
    /// `echo`, `ping`, `fail`, `trap`, `loop`, `zero`, `none`.
    wat_echo => "echo.wat",
    /// Echo guest "v2" that prefixes every reply with `v2:` (`wat/echo-v2.wat`).
    wat_echo_v2 => "echo-v2.wat",
    /// Guest on the 4-argument legacy `__host_call`, calling `"test:ping!Ping"`.
    wat_legacy4 => "legacy4.wat",
    /// Guest on the 6-argument `__host_call` (namespace `test:ping`, op `Ping`).
    wat_legacy6 => "legacy6.wat",
    /// Guest importing `wasi_snapshot_preview1.fd_write`, which must be refused.
    wat_wasi => "wasi.wat",
    /// Guest importing `wapc.__open_socket`, a name outside the contract.
    wat_unknown_wapc_import => "unknown-wapc-import.wat",
    /// Guest importing `wapc.__guest_response` with a wrong signature.
    wat_wrong_signature => "wrong-signature.wat",
    /// Guest passing out-of-bounds pointers and invalid UTF-8 to the host.
    wat_bad_pointers => "bad-pointers.wat",
    /// Guest whose `_start`/`wapc_init` leave state in memory and private
    /// globals without calling the host (`peek`, `poke`).
    wat_stateful_init => "stateful-init.wat",
    /// Guest whose `wapc_init` calls the host and keeps the reply.
    wat_init_host_call => "init-host-call.wat",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_a_wasm_module() {
        let all: Vec<(&str, Vec<u8>)> = vec![
            ("wapc_echo", wapc_echo().to_vec()),
            ("wat_echo", wat_echo()),
            ("wat_echo_v2", wat_echo_v2()),
            ("wat_legacy4", wat_legacy4()),
            ("wat_legacy6", wat_legacy6()),
            ("wat_wasi", wat_wasi()),
            ("wat_unknown_wapc_import", wat_unknown_wapc_import()),
            ("wat_wrong_signature", wat_wrong_signature()),
            ("wat_bad_pointers", wat_bad_pointers()),
            ("wat_stateful_init", wat_stateful_init()),
            ("wat_init_host_call", wat_init_host_call()),
        ];
        for (name, bytes) in all {
            assert_eq!(&bytes[..4], b"\0asm", "{name} is not a wasm module");
        }
    }

    #[test]
    fn every_filter_is_built_for_both_targets() {
        let names = [
            "filter-authz",
            "filter-add-header",
            "filter-json-rewrite",
            "pw-headers",
            "pw-config",
            "pw-body",
            "pw-callout",
            "pw-tick-shared",
            "pw-metrics",
            "pw-passthrough",
            "pw-misbehave",
            "pw-props",
        ];
        for name in names {
            let wasip1 = filter(name, FilterTarget::Wasip1);
            let unknown = filter(name, FilterTarget::Unknown);
            assert_eq!(
                &wasip1[..4],
                b"\0asm",
                "{name} (wasip1) is not a wasm module"
            );
            assert_eq!(
                &unknown[..4],
                b"\0asm",
                "{name} (unknown) is not a wasm module"
            );
            assert_ne!(wasip1, unknown, "{name}: both targets gave the same module");
        }
    }

    #[test]
    #[should_panic(expected = "no Proxy-Wasm filter named")]
    fn an_unknown_filter_panics() {
        let _ = filter("pw-nope", FilterTarget::Unknown);
    }
}
