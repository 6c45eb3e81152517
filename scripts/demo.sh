#!/usr/bin/env bash
# Builds the example actors from source, signs them and serves them with
# `waxosuit up` on embedded defaults (in-memory key-value store, no external
# server). Ctrl-C drains in-flight requests and stops.
#
#   kv-counter  http://127.0.0.1:8080/   (curl it twice: the counter rises)
#   hello       http://127.0.0.1:8081/
#   iot-sensor  http://127.0.0.1:8082/sensors/<id>  (POST /readings/<id> '{"value": 21.5}')
#   kv-counter behind three Proxy-Wasm filters  http://127.0.0.1:8083/
#               (curl -H 'Authorization: Bearer demo-token' …; without it: 403)
#   admin       http://127.0.0.1:9090/metrics  /readyz  /livez
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "Installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
step "Building the waxosuit CLI (release)"
cargo build --release --locked -p waxosuit-cli
waxosuit="$target_dir/release/waxosuit"

step "Building the example actors from source (wasm32)"
CARGO_TARGET_DIR="$target_dir/examples" \
  cargo build --release --locked --target wasm32-unknown-unknown --manifest-path examples/Cargo.toml
wasm="$target_dir/examples/wasm32-unknown-unknown/release"

step "Building the example Proxy-Wasm filters from source (wasm32, public proxy-wasm SDK)"
CARGO_TARGET_DIR="$target_dir/filters" \
  cargo build --release --locked --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml
filters="$target_dir/filters/wasm32-unknown-unknown/release"

step "Signing them (keys are kept in ${WAXOSUIT_KEYS:=$PWD/build/keys})"
export WAXOSUIT_KEYS
mkdir -p build
"$waxosuit" claims sign "$wasm/kvcounter.wasm" -o build/kvcounter_signed.wasm \
  --name kvcounter --ver 0.1.0 --http-server --keyvalue --logging
"$waxosuit" claims sign "$wasm/hello.wasm" -o build/hello_signed.wasm \
  --name hello --ver 0.1.0 --http-server
"$waxosuit" claims sign "$wasm/iot_sensor.wasm" -o build/iot_sensor_signed.wasm \
  --name iot-sensor --ver 0.1.0 --http-server --keyvalue --logging --extras
for f in filter_authz filter_add_header filter_json_rewrite; do
  "$waxosuit" claims sign "$filters/$f.wasm" -o "build/${f}_signed.wasm" --name "${f//_/-}" --ver 0.1.0
done
"$waxosuit" claims inspect build/kvcounter_signed.wasm

step "Serving (Ctrl-C to stop); try: curl http://127.0.0.1:8080/"
exec "$waxosuit" up examples/demo.yaml --admin "${WAXOSUIT_ADMIN:-127.0.0.1:9090}"
