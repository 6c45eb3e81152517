//! Native plugin libraries for Waxosuit tests, built from source.
//!
//! `build.rs` compiles the separate `plugins/` workspace (cdylib crates)
//! for the host target into `<target-dir>/plugins` and copies each library
//! into `OUT_DIR`; [`plugins`] holds one path constant per library. No
//! binary is checked in.
//!
//! * [`plugins::ACME_INVENTORY`]: the `acme:inventory` sample (`GetStock`,
//!   `Reserve`, `CallActor`, `Panic`).
//! * [`plugins::KEYVALUE_MEMORY`]: the built-in in-memory `wascc:keyvalue`
//!   provider exported with `export_provider!`.
//! * [`plugins::ABI_MISMATCH`]: exports a table of ABI version 999.
#![deny(missing_docs)]

pub mod plugins {
    //! Paths of the built plugin libraries.
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

#[cfg(test)]
mod tests {
    use super::plugins;

    #[test]
    fn every_plugin_library_was_built() {
        for path in [
            plugins::ACME_INVENTORY,
            plugins::KEYVALUE_MEMORY,
            plugins::ABI_MISMATCH,
        ] {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "{path} is missing or empty");
        }
    }
}
