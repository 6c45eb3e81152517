#!/usr/bin/env bash
# Builds every fuzz target (fuzz/, see docs/fuzzing.md) and runs each one
# briefly on its seed corpus: a crash, a timeout (10 s per input) or an RSS
# above 2 GiB fails the script. Stable Rust only: cargo-fuzz's nightly flags
# are enabled with RUSTC_BOOTSTRAP=1. Installs cargo-fuzz when missing.
#
#   scripts/fuzz-smoke.sh                   # every target, 20 s each
#   FUZZ_SECONDS=60 scripts/fuzz-smoke.sh claims_jwt par_read
#
# Environment: FUZZ_SECONDS (default 20), FUZZ_SANITIZER (address | none,
# default address), CARGO_TARGET_DIR (fuzz builds go to its `fuzz/`
# subdirectory, default target/fuzz: their flags differ from every other
# build, so they never share artifacts).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
export CARGO_INCREMENTAL=0

if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

start=$(date +%s)
# One build for every target; `cargo fuzz run` below then only checks it.
cargo fuzz build --fuzz-dir fuzz --sanitizer "$sanitizer"
echo "fuzz build: $(( $(date +%s) - start )) s"

failed=()
for target in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the committed seeds stay as they are.
  work="$CARGO_TARGET_DIR/smoke-corpus/$target"
  mkdir -p "$work"
  echo "==== $target (${seconds} s)"
  if ! cargo fuzz run --fuzz-dir fuzz --sanitizer "$sanitizer" "$target" \
      "$work" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 2>&1 | tail -n 25; then
    failed+=("$target")
  fi
done

echo "fuzz smoke: ${#targets[@]} targets in $(( $(date +%s) - start )) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz smoke FAILED: ${failed[*]} (crash inputs under fuzz/artifacts/)" >&2
  exit 1
fi
