#!/usr/bin/env bash
# Runs every test: the workspace (host crates, with guest fixtures built from
# source for wasm32) and the example actors' native handler tests.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
cargo test --workspace --locked
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
CARGO_TARGET_DIR="$target_dir/examples-native" cargo test --locked --manifest-path examples/Cargo.toml
