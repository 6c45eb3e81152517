//! Test-only crate: its integration tests check that modules signed by
//! Waxosuit verify with the public `wascap` 0.13 crate and the reverse.
