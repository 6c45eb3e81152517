//! Wasm guests for Waxosuit tests and benchmarks, built from source.
//!
//! * Rust guests live in the separate `guests/` workspace (and, for modules
//!   built with the original 2020 SDKs, `guests-legacy/`); `build.rs` compiles
//!   every member for `wasm32-unknown-unknown` into `<target-dir>/guests` and
//!   copies each `*.wasm` into `OUT_DIR`, generating one constant per artifact
//!   in [`guests`].
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
}
