#!/usr/bin/env bash
# Runs every test: the workspace (host crates, with guest fixtures built from
# source for wasm32) and the example actors' native handler tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# Some tests start real redis-server, nats-server and docker-registry (the
# CNCF Distribution registry) processes on loopback; the container image is
# built with umoci and pushed with skopeo; the C example actor builds with
# clang and wasm-ld (lld); the AssemblyScript actor and the Knative manifest
# validator need Node.js and npm. Each command, then its Debian package.
missing=()
for pair in redis-server:redis-server nats-server:nats-server docker-registry:docker-registry \
  umoci:umoci skopeo:skopeo clang:clang wasm-ld:lld node:nodejs npm:npm; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
# The manifest validators run in a Python venv (scripts/validate-deploy.sh).
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3 python3-venv)
if ((${#missing[@]})); then
  echo "installing ${missing[*]} (Debian packages) for the integration tests" >&2
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
# Guests build for wasm32-unknown-unknown; the Proxy-Wasm filters
# (filters/, guests-filters/) also for wasm32-wasip1.
for target in wasm32-unknown-unknown wasm32-wasip1; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
done
cargo test --workspace --locked
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
CARGO_TARGET_DIR="$target_dir/examples-native" cargo test --locked --manifest-path examples/Cargo.toml
