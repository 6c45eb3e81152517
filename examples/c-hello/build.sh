#!/usr/bin/env bash
# Builds examples/c-hello/hello.c into a waPC actor module (unsigned).
#
#   examples/c-hello/build.sh [OUTPUT_DIR]     (default: examples/c-hello/build)
#
# Writes OUTPUT_DIR/c_hello.wasm. Needs clang with the WebAssembly target
# and wasm-ld (Debian/Ubuntu: `apt-get install clang lld`). CC and WASM_LD
# override the tools found.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sdk="$here/../../sdk/c"
out="${1:-$here/build}"

# Debian's `clang` package provides `clang`, `clang-14` only `clang-14`;
# likewise `lld` provides `wasm-ld` and `lld-14` only `wasm-ld-14`.
find_tool() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}
versions=(19 18 17 16 15 14)

cc="${CC:-}"
if [[ -z "$cc" ]]; then
    cc="$(find_tool clang "${versions[@]/#/clang-}")" || {
        echo "build.sh: clang not found (looked for clang, clang-19 … clang-14); install it, e.g. \`apt-get install clang lld\`, or set CC" >&2
        exit 1
    }
fi

ld="${WASM_LD:-}"
if [[ -z "$ld" ]]; then
    ld="$(find_tool wasm-ld "${versions[@]/#/wasm-ld-}")" || {
        for candidate in /usr/lib/llvm-*/bin/wasm-ld; do
            if [[ -x "$candidate" ]]; then ld="$candidate"; fi
        done
        [[ -n "$ld" ]] || {
            echo "build.sh: wasm-ld not found (looked for wasm-ld, wasm-ld-19 … wasm-ld-14, /usr/lib/llvm-*/bin/wasm-ld); install lld, e.g. \`apt-get install lld\`, or set WASM_LD" >&2
            exit 1
        }
    }
fi
cc_path="$(command -v "$cc" || true)"
[[ -n "$cc_path" && -x "$cc_path" ]] || { echo "build.sh: CC=$cc is not an executable" >&2; exit 1; }
# clang looks for a program named exactly `wasm-ld`; an absolute
# -fuse-ld makes a versioned one (wasm-ld-14) work too.
ld_path="$(command -v "$ld" || true)"
[[ -n "$ld_path" && -x "$ld_path" ]] || { echo "build.sh: WASM_LD=$ld is not an executable" >&2; exit 1; }

mkdir -p "$out"
# -nostdlib/-ffreestanding: no libc exists for this target here, and the
# host accepts no imports but `wapc`. --no-entry: a reactor, not a
# command; the host calls __guest_call. --strip-all keeps the module
# small (the host never reads names). -Werror: a warning in 200 lines of
# bounds-checking C is worth stopping for.
"$cc_path" --target=wasm32 -O2 -std=c11 -ffreestanding -nostdlib \
    -Wall -Wextra -Werror \
    -I "$sdk" \
    -fuse-ld="$ld_path" \
    -Wl,--no-entry \
    -Wl,--export=__guest_call \
    -Wl,--strip-all \
    -o "$out/c_hello.wasm" \
    "$here/hello.c"
echo "$out/c_hello.wasm"
