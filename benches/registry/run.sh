#!/usr/bin/env bash
# Start-up benchmark: time from `waxosuit up` to the first served request for
# the hello actor, pulled from a local registry, against the same actor read
# from a local file (the baseline) in the same run.
#
#   benches/registry/run.sh              # 11 runs of each case
#   RUNS=21 benches/registry/run.sh
#
# Four cases, run in turn (so background load hits them alike):
#   file cold      ./hello_signed.wasm, no compiled-module cache
#   registry cold  oci://…/hello:0.1.0, empty cache: pull, verify, compile
#   file warm      ./hello_signed.wasm, compiled module cached
#   registry warm  oci://…/hello:0.1.0, layer and compiled module cached
#                  (`--pull missing`: the registry is not contacted)
#
# Each run starts `waxosuit up` (release build) in the background and polls
# GET / every 2 ms until it answers 200; the time is from the spawn to that
# answer, then the host is stopped with SIGTERM. Needs `docker-registry`
# (Debian package) and `curl`. Figures: docs/registry.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
RUNS=${RUNS:-11}
target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"

command -v docker-registry >/dev/null || { echo "install docker-registry (apt-get install docker-registry)" >&2; exit 1; }

echo "building the CLI and the hello example (release)…" >&2
cargo build --release --locked -q -p waxosuit-cli
CARGO_TARGET_DIR="$target_dir/examples" \
  cargo build --release --locked -q --target wasm32-unknown-unknown --manifest-path examples/Cargo.toml
waxosuit="$target_dir/release/waxosuit"

work=$(mktemp -d)
registry_pid=""
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

reg_port=$(free_port)
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$reg_port
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$reg_port/v2/" >/dev/null && break; sleep 0.05; done
registry="127.0.0.1:$reg_port"

export WAXOSUIT_KEYS="$work/keys"
"$waxosuit" claims sign "$target_dir/examples/wasm32-unknown-unknown/release/hello.wasm" \
  -o "$work/hello_signed.wasm" --name hello --ver 0.1.0 --http-server >/dev/null
"$waxosuit" push "$work/hello_signed.wasm" "oci://$registry/bench/hello:0.1.0" \
  --insecure-registry "$registry" >/dev/null 2>&1

http_port=$(free_port)
manifest() { # $1: the actor's path or reference
  cat <<EOF
actors: [ "$1" ]
capabilities: [ { id: wascc:http_server } ]
bindings:
  - { actor: hello, capability: wascc:http_server, values: { PORT: "$http_port" } }
EOF
}
manifest "$work/hello_signed.wasm" >"$work/file.yaml"
manifest "oci://$registry/bench/hello:0.1.0" >"$work/registry.yaml"

now_ns() { date +%s%N; }

# One start: prints the milliseconds from spawn to the first 200.
first_request() { # $1 manifest, $2 cache dir, then extra flags
  local manifest=$1 cache=$2
  shift 2
  local start end
  start=$(now_ns)
  "$waxosuit" up "$manifest" --cache-dir "$cache" --insecure-registry "$registry" "$@" \
    >"$work/up.log" 2>&1 &
  local pid=$!
  until curl -sf -o /dev/null "http://127.0.0.1:$http_port/"; do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/up.log" >&2; exit 1; fi
    sleep 0.002
  done
  end=$(now_ns)
  kill -TERM "$pid"
  wait "$pid" || true
  echo $(((end - start) / 1000000))
}

declare -A times
for case in file_cold registry_cold file_warm registry_warm; do times[$case]=""; done
warm_file="$work/warm-file" warm_registry="$work/warm-registry"
# Fill the warm caches once.
first_request "$work/file.yaml" "$warm_file" >/dev/null
first_request "$work/registry.yaml" "$warm_registry" >/dev/null

for run in $(seq "$RUNS"); do
  times[file_cold]+=" $(first_request "$work/file.yaml" "$work/c$run-f" --no-cache)"
  times[registry_cold]+=" $(first_request "$work/registry.yaml" "$work/c$run-r")"
  times[file_warm]+=" $(first_request "$work/file.yaml" "$warm_file")"
  times[registry_warm]+=" $(first_request "$work/registry.yaml" "$warm_registry")"
  rm -rf "$work/c$run-f" "$work/c$run-r"
  echo "run $run/$RUNS done" >&2
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -n | awk 'NR==1{min=$1} {max=$1} END {print min "–" max}'; }

echo
echo "| case | median ms | min–max ms | ratio to the file case |"
echo "|---|---|---|---|"
for temp in cold warm; do
  base=$(echo "${times[file_$temp]}" | median)
  for source in file registry; do
    m=$(echo "${times[${source}_$temp]}" | median)
    r=$(echo "${times[${source}_$temp]}" | minmax)
    ratio=$(awk -v a="$m" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    echo "| $source $temp | $m | $r | $ratio |"
  done
done
