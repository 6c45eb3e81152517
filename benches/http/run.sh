#!/usr/bin/env bash
# HTTP throughput/latency benchmark: wrk against a native hyper hello world
# (the baseline) and against Waxosuit HTTP serving stacks, one at a time.
#
#   benches/http/run.sh                       # defaults: 2 wrk threads, 64 connections, 10 s
#   DURATION=30s CONNECTIONS=128 benches/http/run.sh
#   benches/http/run.sh soak                  # soak: 256 connections x 60 s on the hello actor
#
# The soak mode (issue 16; figures in docs/http-benchmarks.md) runs only
# `waxosuit up` with the hello actor: a 10 s warm-up at the same load, then
# wrk for SOAK_DURATION (60s) with SOAK_CONNECTIONS (256), sampling the
# host's RSS every 5 s. It prints requests, errors, p50/p99 and the RSS
# growth from the end of the warm-up to the end of the run, and exits 1 if
# there was any error or the RSS grew by 5 % or more.
#
# Environment: DURATION (10s), CONNECTIONS (64), THREADS (2), WARMUP (2s, "0"
# to skip), ROUNDS (1), POLICY (1; "0" skips the policy target), TRACING (1;
# "0" skips the target with every request traced and exported over OTLP to
# a local sink, `docs/observability.md`), FILTERS (1; "0" skips the targets
# with Proxy-Wasm filters in front of the hello actor: one pass-through
# filter, then the three example filters, `docs/proxy-wasm.md`),
# CARGO_TARGET_DIR (target/). Results are printed as a
# Markdown table; the ratio column is relative to the first target (the native
# baseline) of the same round. With ROUNDS > 1 the targets run in turn, round
# after round, so background load hits them alike, and a second table gives
# each target's medians.
#
# Adding a target is one call in the round loop of `main` at the bottom:
#   port=$(free_port)
#   bench_target "waxosuit up" "target/release/waxosuit up --port $port ..." "http://127.0.0.1:$port/"
# CMD runs in the background from the repository root; it must serve URL with
# a 2xx answer within READY_TIMEOUT seconds (default 60) and stop on SIGTERM.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-1}
ROUND=1
READY_TIMEOUT=${READY_TIMEOUT:-60}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
EXAMPLES="$TARGET_DIR/release/examples"

LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/waxosuit-http-bench.XXXXXX")
SERVER_PID=""

# Parallel arrays, one entry per benchmarked target.
NAMES=()
ROUND_OF=()
RPS=()
P99=()
CPU=()
ERRORS=()

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

stop_server() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # Give it a moment to drain, then make sure it is gone.
        for _ in $(seq 50); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
trap stop_server EXIT
trap 'stop_server; exit 130' INT TERM

ensure_wrk() {
    command -v wrk >/dev/null && return
    log "wrk not found; installing it with apt-get"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq wrk
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq wrk
    fi
    command -v wrk >/dev/null || die "could not install wrk"
}

# A free loopback TCP port (the kernel picks it; a race with another process
# grabbing it before the server does is possible but unlikely).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_ready() {
    local url=$1 deadline=$((SECONDS + READY_TIMEOUT))
    until curl -fsS -o /dev/null --max-time 2 ${HEADER:+-H "$HEADER"} "$url" 2>/dev/null; do
        kill -0 "$SERVER_PID" 2>/dev/null || die "server exited before answering $url (see $LOG_DIR)"
        ((SECONDS < deadline)) || die "$url did not answer within ${READY_TIMEOUT}s (see $LOG_DIR)"
        sleep 0.2
    done
}

# utime + stime of a process, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# wrk prints latencies as 812.00us, 1.23ms or 1.05s; normalise to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n
    }'
}

# bench_target NAME CMD URL: starts CMD in the background, waits until URL
# answers, runs wrk against URL, records req/s and p99, stops CMD.
bench_target() {
    local name=$1 cmd=$2 url=$3
    local slug=${name//[^A-Za-z0-9]/_}.r$ROUND
    log "$name: starting: $cmd"
    bash -c "exec $cmd" >"$LOG_DIR/$slug.server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$url"
    if [[ "$WARMUP" != "0" ]]; then
        wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" ${HEADER:+-H "$HEADER"} "$url" >/dev/null
    fi
    log "$name: wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency $url"
    local out="$LOG_DIR/$slug.wrk.txt" ticks_before ticks_after
    # Server CPU time per request is steadier than req/s on a shared
    # machine: it does not depend on how much CPU wrk or others got.
    ticks_before=$(cpu_ticks "$SERVER_PID")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency ${HEADER:+-H "$HEADER"} "$url" | tee "$out" >&2
    ticks_after=$(cpu_ticks "$SERVER_PID")
    stop_server

    local rps p99 non2xx sock
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    [[ -n "$rps" && -n "$p99" ]] || die "cannot parse wrk output in $out"
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    sock=$(awk '/Socket errors:/ { sub(/^.*Socket errors: /, ""); print }' "$out")
    local requests
    requests=$(awk '/requests in/ { print $1 }' "$out")
    NAMES+=("$name")
    ROUND_OF+=("$ROUND")
    CPU+=("$(awk -v t=$((ticks_after - ticks_before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')")
    RPS+=("$rps")
    P99+=("$(to_ms "$p99")")
    ERRORS+=("${non2xx:-0} non-2xx${sock:+; socket errors: $sock}")
}

# The median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2
    }'
}

print_table() {
    local baseline=${NAMES[0]} i j base
    printf '\n| round | target | req/s | p99 latency (ms) | ratio to %s | server CPU µs/request | errors |\n' "$baseline"
    printf '|---:|---|---:|---:|---:|---:|---|\n'
    for i in "${!NAMES[@]}"; do
        base=""
        for j in "${!NAMES[@]}"; do
            if [[ "${NAMES[$j]}" == "$baseline" && "${ROUND_OF[$j]}" == "${ROUND_OF[$i]}" ]]; then
                base=${RPS[$j]}
            fi
        done
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "${ROUND_OF[$i]}" "${NAMES[$i]}" "${RPS[$i]}" \
            "${P99[$i]}" "$(awk -v a="${RPS[$i]}" -v b="$base" 'BEGIN { printf "%.3f", a / b }')" \
            "${CPU[$i]}" "${ERRORS[$i]}"
    done

    if ((ROUNDS > 1)); then
        local name rps p99 cpu base_rps=""
        printf '\nMedians over %s rounds:\n\n' "$ROUNDS"
        printf '| target | req/s | p99 latency (ms) | ratio to %s | server CPU µs/request |\n' "$baseline"
        printf '|---|---:|---:|---:|---:|\n'
        # Target names in first-seen order.
        local -a seen=()
        for name in "${NAMES[@]}"; do
            [[ " ${seen[*]-} " == *" $name "* ]] || seen+=("$name")
        done
        for name in "${seen[@]}"; do
            local -a r=() p=() c=()
            for i in "${!NAMES[@]}"; do
                if [[ "${NAMES[$i]}" == "$name" ]]; then
                    r+=("${RPS[$i]}")
                    p+=("${P99[$i]}")
                    c+=("${CPU[$i]}")
                fi
            done
            rps=$(median "${r[@]}")
            p99=$(median "${p[@]}")
            cpu=$(median "${c[@]}")
            [[ -n "$base_rps" ]] || base_rps=$rps
            printf '| %s | %s | %s | %s | %s |\n' "$name" "$rps" "$p99" \
                "$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.3f", a / b }')" "$cpu"
        done
    fi

    printf '\nwrk -t%s -c%s -d%s --latency (warm-up %s), %s round(s); %s CPU(s): %s; wrk and server on the same machine.\n' \
        "$THREADS" "$CONNECTIONS" "$DURATION" "$WARMUP" "$ROUNDS" "$(nproc)" \
        "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'Raw wrk output and server logs: %s\n' "$LOG_DIR"
}

# The full host: the `hello` example actor, built from source and signed
# with throw-away keys, behind `wascc:http_server` via `waxosuit up`.
prepare_host() {
    rustup target list --installed | grep -qx wasm32-unknown-unknown ||
        rustup target add wasm32-unknown-unknown
    CARGO_TARGET_DIR="$TARGET_DIR/examples" cargo build --release --locked \
        --target wasm32-unknown-unknown --manifest-path examples/Cargo.toml -p hello
    WAXOSUIT_KEYS="$LOG_DIR/keys" "$TARGET_DIR/release/waxosuit" claims sign \
        "$TARGET_DIR/examples/wasm32-unknown-unknown/release/hello.wasm" \
        -o "$LOG_DIR/hello_signed.wasm" --name hello --http-server 2>/dev/null
    # wrk is one client standing in for many: its share of the in-flight
    # places is raised to all of them, or the soak's 256 connections would
    # get 503s past half (MAX_IN_FLIGHT_PER_CLIENT, docs/http-server.md).
    cat >"$LOG_DIR/host.yaml" <<'YAML'
actors:
  - path: ./hello_signed.wasm
    limits: { max_instances: 8 }
capabilities:
  - id: wascc:http_server
bindings:
  - actor: hello
    capability: wascc:http_server
    values: { ADDRESS: 127.0.0.1, PORT: "${BENCH_PORT}", MAX_IN_FLIGHT_PER_CLIENT: "256" }
YAML
    if [[ "${FILTERS:-1}" != "0" ]]; then
        prepare_filters
    fi
    # A per-invocation policy that allows every request: what consulting
    # policy on each call costs (decisions come from the cache after the
    # first; docs/policy.md).
    cat >"$LOG_DIR/allow.rego" <<'REGO'
package waxosuit.invoke

default allow := false

allow if {
    input.direction == "inbound"
    input.capability == "wascc:http_server"
    input.operation == "HandleRequest"
}
REGO
}

# Proxy-Wasm filters built from source with the public SDK, signed, and two
# manifests: the hello actor behind one pass-through filter, and behind the
# three example filters (authorization, a JSON field rewrite that leaves the
# hello actor's text alone, and a header added host-wide).
prepare_filters() {
    rustup target list --installed | grep -qx wasm32-unknown-unknown ||
        rustup target add wasm32-unknown-unknown
    CARGO_TARGET_DIR="$TARGET_DIR/filters" cargo build --release --locked \
        --target wasm32-unknown-unknown --manifest-path guests-filters/Cargo.toml -p pw-passthrough
    CARGO_TARGET_DIR="$TARGET_DIR/filters" cargo build --release --locked \
        --target wasm32-unknown-unknown --manifest-path filters/Cargo.toml
    local f
    for f in pw_passthrough filter_authz filter_add_header filter_json_rewrite; do
        WAXOSUIT_KEYS="$LOG_DIR/keys" "$TARGET_DIR/release/waxosuit" claims sign \
            "$TARGET_DIR/filters/wasm32-unknown-unknown/release/$f.wasm" \
            -o "$LOG_DIR/${f}_signed.wasm" --name "$f" 2>/dev/null
    done
    cat "$LOG_DIR/host.yaml" >"$LOG_DIR/passthrough.yaml"
    cat >>"$LOG_DIR/passthrough.yaml" <<'YAML'
    filters: [./pw_passthrough_signed.wasm]
YAML
    cat "$LOG_DIR/host.yaml" >"$LOG_DIR/examples.yaml"
    cat >>"$LOG_DIR/examples.yaml" <<'YAML'
    filters:
      - { path: ./filter_authz_signed.wasm, config: { tokens: [bench] } }
      - { path: ./filter_json_rewrite_signed.wasm, config: { field: greeting, value: bench } }
http_filters:
  - { path: ./filter_add_header_signed.wasm, config: { name: x-served-by, value: waxosuit } }
YAML
}

# Resident set size of a process, in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

soak() {
    local duration=${SOAK_DURATION:-60s} connections=${SOAK_CONNECTIONS:-256}
    ensure_wrk
    command -v curl >/dev/null || die "curl is needed to wait for servers to come up"
    log "building release binaries"
    cargo build --release --locked -p waxosuit-cli
    prepare_host
    local port url
    port=$(free_port)
    url="http://127.0.0.1:$port/"
    env BENCH_PORT="$port" RUST_LOG=warn WAXOSUIT_KEYS="$LOG_DIR/keys" WAXOSUIT_CACHE="$LOG_DIR/cache" \
        "$TARGET_DIR/release/waxosuit" up "$LOG_DIR/host.yaml" >"$LOG_DIR/soak.server.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "$url"
    log "soak: warm-up wrk -t$THREADS -c$connections -d10s"
    wrk -t"$THREADS" -c"$connections" -d10s "$url" >/dev/null
    local rss_start rss_peak rss_end sample out="$LOG_DIR/soak.wrk.txt"
    rss_start=$(rss_kib "$SERVER_PID")
    rss_peak=$rss_start
    log "soak: wrk -t$THREADS -c$connections -d$duration --latency $url (RSS after warm-up: $rss_start KiB)"
    wrk -t"$THREADS" -c"$connections" -d"$duration" --latency "$url" >"$out" &
    local wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        sleep 5
        sample=$(rss_kib "$SERVER_PID") || die "the host died during the soak (see $LOG_DIR)"
        ((sample > rss_peak)) && rss_peak=$sample
        printf '%s RSS %s KiB\n' "$(date -u +%H:%M:%S)" "$sample" >>"$LOG_DIR/soak.rss.txt"
    done
    wait "$wrk_pid"
    rss_end=$(rss_kib "$SERVER_PID")
    stop_server
    cat "$out" >&2

    local requests rps p50 p99 non2xx sock growth
    requests=$(awk '/requests in/ { print $1 }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    p50=$(awk '$1 == "50%" { print $2 }' "$out")
    p99=$(awk '$1 == "99%" { print $2 }' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
    sock=$(awk '/Socket errors:/ { sub(/^.*Socket errors: /, ""); print }' "$out")
    [[ -n "$requests" && -n "$p99" ]] || die "cannot parse wrk output in $out"
    growth=$(awk -v a="$rss_start" -v b="$rss_end" 'BEGIN { printf "%.2f", (b - a) * 100 / a }')
    printf '\n| soak | requests | req/s | p50 (ms) | p99 (ms) | errors | RSS after warm-up | RSS peak | RSS at end | growth |\n'
    printf '|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n'
    printf '| wrk -t%s -c%s -d%s | %s | %s | %s | %s | %s non-2xx%s | %s KiB | %s KiB | %s KiB | %s %% |\n' \
        "$THREADS" "$connections" "$duration" "$requests" "$rps" "$(to_ms "$p50")" "$(to_ms "$p99")" \
        "${non2xx:-0}" "${sock:+; socket errors: $sock}" "$rss_start" "$rss_peak" "$rss_end" "$growth"
    printf 'RSS samples and logs: %s\n' "$LOG_DIR"
    local failed=0
    if [[ -n "$non2xx" || -n "$sock" ]]; then
        log "soak FAILED: errors during the run"
        failed=1
    fi
    if awk -v g="$growth" 'BEGIN { exit !(g >= 5) }'; then
        log "soak FAILED: RSS grew by $growth % (bound: < 5 %)"
        failed=1
    fi
    return "$failed"
}

main() {
    if [[ "${1:-}" == soak ]]; then
        soak
        return
    fi
    ensure_wrk
    command -v curl >/dev/null || die "curl is needed to wait for servers to come up"
    log "building release binaries"
    cargo build --release -p waxosuit-cap-http-server --example native_hello --example provider_echo
    cargo build --release -p waxosuit-test-servers --example otlp_sink
    cargo build --release --locked -p waxosuit-cli
    prepare_host

    local port
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        # The baseline must come first: ratios are relative to it.
        port=$(free_port)
        bench_target "native hyper" "$EXAMPLES/native_hello $port" "http://127.0.0.1:$port/"
        # Not a baseline: the stock server above is. This one serves the way
        # the provider does (a single-worker runtime per core), to show how
        # much of the gap that architecture closes by itself.
        port=$(free_port)
        bench_target "native hyper, per-core" "$EXAMPLES/native_hello $port per-core" \
            "http://127.0.0.1:$port/"
        port=$(free_port)
        bench_target "provider + echo dispatcher" "$EXAMPLES/provider_echo $port" "http://127.0.0.1:$port/"
        # The keys directory that signed the actor: `up` trusts its account.
        port=$(free_port)
        bench_target "waxosuit up (hello actor)" \
            "env BENCH_PORT=$port RUST_LOG=warn WAXOSUIT_KEYS=$LOG_DIR/keys WAXOSUIT_CACHE=$LOG_DIR/cache $TARGET_DIR/release/waxosuit up $LOG_DIR/host.yaml" \
            "http://127.0.0.1:$port/"
        if [[ "${POLICY:-1}" != "0" ]]; then
            port=$(free_port)
            bench_target "waxosuit up + allow policy" \
                "env BENCH_PORT=$port RUST_LOG=warn WAXOSUIT_KEYS=$LOG_DIR/keys WAXOSUIT_CACHE=$LOG_DIR/cache $TARGET_DIR/release/waxosuit up $LOG_DIR/host.yaml --policy $LOG_DIR/allow.rego" \
                "http://127.0.0.1:$port/"
        fi
        if [[ "${FILTERS:-1}" != "0" ]]; then
            port=$(free_port)
            bench_target "waxosuit up + pass-through filter" \
                "env BENCH_PORT=$port RUST_LOG=warn WAXOSUIT_KEYS=$LOG_DIR/keys WAXOSUIT_CACHE=$LOG_DIR/cache $TARGET_DIR/release/waxosuit up $LOG_DIR/passthrough.yaml" \
                "http://127.0.0.1:$port/"
            port=$(free_port)
            HEADER="Authorization: Bearer bench" bench_target "waxosuit up + 3 example filters" \
                "env BENCH_PORT=$port RUST_LOG=warn WAXOSUIT_KEYS=$LOG_DIR/keys WAXOSUIT_CACHE=$LOG_DIR/cache $TARGET_DIR/release/waxosuit up $LOG_DIR/examples.yaml" \
                "http://127.0.0.1:$port/"
        fi
        if [[ "${TRACING:-1}" != "0" ]]; then
            # Every request sampled (always_on) and exported over OTLP/HTTP
            # to a sink on this machine that answers and counts.
            local sink_port sink_pid
            sink_port=$(free_port)
            "$EXAMPLES/otlp_sink" "$sink_port" 2>"$LOG_DIR/otlp_sink.r$ROUND.log" &
            sink_pid=$!
            port=$(free_port)
            bench_target "waxosuit up + tracing" \
                "env BENCH_PORT=$port RUST_LOG=warn OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sink_port OTEL_TRACES_SAMPLER=always_on WAXOSUIT_KEYS=$LOG_DIR/keys WAXOSUIT_CACHE=$LOG_DIR/cache $TARGET_DIR/release/waxosuit up $LOG_DIR/host.yaml" \
                "http://127.0.0.1:$port/"
            kill "$sink_pid" 2>/dev/null || true
            wait "$sink_pid" 2>/dev/null || true
        fi
    done

    print_table
}

main "$@"
