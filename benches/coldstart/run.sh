#!/usr/bin/env bash
# Scale from zero: process start → first request answered, for the hello
# actor under `waxosuit run` (the container entry point), against a native
# hyper hello world started the same way (the baseline).
#
#   benches/coldstart/run.sh              # ROUNDS=10
#
# Targets, run in turn round after round so background load hits them alike:
#   native hyper     the baseline: a native binary, nothing to compile
#   waxosuit cold    an empty compiled-module cache (a new pod, no volume)
#   waxosuit warm    the cache left by an earlier start (a volume kept
#                    between starts, or the cache baked into the image)
# Every start is a new process; the figure is the median over ROUNDS of the
# milliseconds from just before exec to the first 2xx answer
# (first_response.py), with the ratio to the native baseline's median.
# Figures and history: docs/deployment.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-10}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/waxosuit-coldstart.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

log() { printf '==> %s\n' "$*" >&2; }

log "building the CLI, the native baseline and the hello actor (release)"
cargo build --release --locked -p waxosuit-cli
cargo build --release --locked -p waxosuit-cap-http-server --example native_hello
CARGO_TARGET_DIR="$TARGET_DIR/examples" \
  cargo build --release --locked --target wasm32-unknown-unknown --manifest-path examples/Cargo.toml -p hello
waxosuit="$TARGET_DIR/release/waxosuit"
native="$TARGET_DIR/release/examples/native_hello"

export WAXOSUIT_KEYS="$WORK/keys"
"$waxosuit" claims sign "$TARGET_DIR/examples/wasm32-unknown-unknown/release/hello.wasm" \
  -o "$WORK/hello_signed.wasm" --name hello --ver 0.1.0 --http-server >/dev/null
# The keystore's account is trusted without being named.
export WAXOSUIT_ACTOR="$WORK/hello_signed.wasm"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# once NAME: one start of NAME, its milliseconds appended to $WORK/NAME.
once() {
  local name=$1 port ms
  port=$(free_port)
  case $name in
    native) ms=$(python3 benches/coldstart/first_response.py "http://127.0.0.1:$port/" -- "$native" "$port") ;;
    cold)
      rm -rf "$WORK/cache"
      ms=$(WAXOSUIT_CACHE="$WORK/cache" PORT=$port \
        python3 benches/coldstart/first_response.py "http://127.0.0.1:$port/" -- "$waxosuit" run) ;;
    warm)
      ms=$(WAXOSUIT_CACHE="$WORK/warm-cache" PORT=$port \
        python3 benches/coldstart/first_response.py "http://127.0.0.1:$port/" -- "$waxosuit" run) ;;
  esac
  echo "$ms" >>"$WORK/$name"
}

median() {
  sort -g "$1" | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Fills the warm cache; not counted.
once warm && rm -f "$WORK/warm"
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for name in native cold warm; do once "$name"; done
done

base=$(median "$WORK/native")
printf '\n| target | start → first response, median of %s (ms) | min | max | ratio to native |\n' "$ROUNDS"
printf '|---|---|---|---|---|\n'
for name in native cold warm; do
  m=$(median "$WORK/$name")
  printf '| %s | %s | %s | %s | %.1f |\n' "$name" "$m" "$(sort -g "$WORK/$name" | head -1)" \
    "$(sort -g "$WORK/$name" | tail -1)" "$(awk -v a="$m" -v b="$base" 'BEGIN { print a / b }')"
done
