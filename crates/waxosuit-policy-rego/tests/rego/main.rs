//! `waxosuit-policy-rego` seen from a host: loading policy sets, the
//! decisions they make, and the example policies under `examples/policies`.

mod decisions;
mod examples;
mod loading;

use std::path::PathBuf;

use waxosuit_policy_rego::RegoEngine;

/// This crate's test fixtures (shared with the OPA backend's tests).
fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The policy set both backends are tested against.
fn fixture_engine() -> RegoEngine {
    RegoEngine::from_files(
        &[fixture("invoke.rego"), fixture("start.rego")],
        &[fixture("data.json")],
    )
    .unwrap()
}

fn sources(policies: &[(&str, &str)]) -> Result<RegoEngine, waxosuit_policy_rego::RegoError> {
    RegoEngine::from_sources(
        policies
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect(),
        vec![],
    )
}
