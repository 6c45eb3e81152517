#!/usr/bin/env bash
# Builds an OCI image of the waxosuit CLI without Docker: an OCI image
# layout made with umoci, holding the binary, the shared libraries it links
# (and the dynamic loader), CA certificates, a non-root user and a writable
# cache directory. Optionally pushes it with skopeo.
#
# The Dockerfile at the repository root builds the same image with Docker;
# keep the user, entrypoint, port and environment of the two in step
# (crates/waxosuit-cli/tests/container_image.rs checks that they agree).
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/build-image.sh [OPTIONS]

Builds an OCI image layout of the waxosuit CLI with umoci (no Docker).

Options:
  --binary PATH     The waxosuit binary to package
                    (default: $WAXOSUIT_BINARY, else target/release/waxosuit)
  --layout DIR      The OCI image layout to write; an existing layout there is
                    replaced (default: $WAXOSUIT_IMAGE_LAYOUT, else
                    target/image/waxosuit)
  --tag TAG         Also tag the image TAG (repeatable); it is always tagged
                    with the binary's version (`waxosuit --version`)
  --push REF        Push the image to REGISTRY/REPO[:TAG] with skopeo
                    (without :TAG, the version tag is pushed)
  --insecure        Push over plain HTTP / without TLS verification
                    (a local test registry only)
  --no-strip        Keep the binary's debug information (by default the copy
                    in the image is `strip --strip-debug`ed when strip exists:
                    a debug build shrinks from ~230 MB to ~30 MB; the symbols
                    stay, so panics still show function names)
  -h, --help        This help

Needs: umoci, ldd, and for --push skopeo. Runs as root: the layer records
file ownership, and the cache directory belongs to the image's user.
EOF
}

die() {
  printf 'build-image.sh: %s\n' "$*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 ||
    die "\`$1\` is not installed; it is needed $2 (Debian: apt-get install $3)"
}

# As scripts/image-rootfs.sh lays them out.
readonly IMAGE_UID=65532
readonly BIN_PATH=/usr/local/bin/waxosuit
readonly CACHE_DIR=/var/cache/waxosuit
readonly CA=/etc/ssl/certs/ca-certificates.crt
readonly HTTP_PORT=8080

repo_root=$(cd "$(dirname "$0")/.." && pwd)

binary="${WAXOSUIT_BINARY:-$repo_root/target/release/waxosuit}"
layout="${WAXOSUIT_IMAGE_LAYOUT:-$repo_root/target/image/waxosuit}"
extra_tags=()
push_ref=""
insecure=false
strip_binary=true

while (($#)); do
  case "$1" in
    --binary) (($# >= 2)) || die "--binary needs a path"; binary=$2; shift 2 ;;
    --layout) (($# >= 2)) || die "--layout needs a directory"; layout=$2; shift 2 ;;
    --tag) (($# >= 2)) || die "--tag needs a tag"; extra_tags+=("$2"); shift 2 ;;
    --push) (($# >= 2)) || die "--push needs REGISTRY/REPO[:TAG]"; push_ref=$2; shift 2 ;;
    --insecure) insecure=true; shift ;;
    --no-strip) strip_binary=false; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

# Paths given are relative to where the script was started; from here on
# it works in the repository.
binary=$(realpath -m -- "$binary")
layout=$(realpath -m -- "$layout")
cd "$repo_root"

if $insecure && [[ -z $push_ref ]]; then
  die "--insecure only applies to --push"
fi

[[ -f $binary ]] || die "no waxosuit binary at $binary (build it: cargo build --release -p waxosuit-cli, or pass --binary)"
[[ -x $binary ]] || die "$binary is not executable"

# OCI tags: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}
valid_tag() { [[ $1 =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]]; }

version_line=$("$binary" --version) || die "$binary --version failed"
version=${version_line#waxosuit }
[[ $version != "$version_line" ]] || die "unexpected \`--version\` output: $version_line"
valid_tag "$version" || die "the version \`$version\` is not a valid image tag"
for t in "${extra_tags[@]}"; do
  valid_tag "$t" || die "\`$t\` is not a valid image tag ([A-Za-z0-9_][A-Za-z0-9._-]*, at most 128)"
done

if [[ -n $push_ref ]]; then
  [[ $push_ref != *@* ]] || die "--push takes REGISTRY/REPO[:TAG], not a digest"
  [[ $push_ref == */* ]] || die "--push needs REGISTRY/REPO[:TAG], e.g. 127.0.0.1:5000/waxosuit:test"
  last=${push_ref##*/}
  if [[ $last == *:* ]]; then
    push_tag=${last##*:}
    valid_tag "$push_tag" || die "\`$push_tag\` in --push is not a valid tag"
  else
    push_tag=$version
    push_ref="$push_ref:$version"
  fi
fi

[[ $(id -u) == 0 ]] || die "run as root: the image's files need their owners (root, and uid $IMAGE_UID for $CACHE_DIR)"
need umoci "to build the image layout" umoci
[[ -z $push_ref ]] || need skopeo "for --push" skopeo

# Only ever replace something that is an OCI layout: --layout may be a typo
# for a directory worth keeping.
if [[ -e $layout ]]; then
  [[ -f $layout/oci-layout ]] || die "$layout exists and is not an OCI image layout; remove it or choose another --layout"
  rm -rf "$layout"
fi
mkdir -p "$(dirname "$layout")"

work=$(mktemp -d "${TMPDIR:-/tmp}/waxosuit-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A working tag, removed at the end, so the layout holds only the real tags.
build_ref="$layout:waxosuit-build-$$"
umoci init --layout "$layout"
umoci new --image "$build_ref"
umoci unpack --image "$build_ref" "$work/bundle" >/dev/null
no_strip=()
$strip_binary || no_strip=(--no-strip)
scripts/image-rootfs.sh "${no_strip[@]}" "$work/bundle/rootfs" "$binary"

umoci repack --image "$build_ref" "$work/bundle" >/dev/null

revision=$(git -C "$repo_root" rev-parse HEAD 2>/dev/null || echo unknown)
if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
  created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else
  created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
fi
source_url=$(sed -n 's/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
license=$(sed -n 's/^license *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)

meta=(
  "org.opencontainers.image.title=waxosuit"
  "org.opencontainers.image.description=Host for signed WebAssembly actors"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.created=$created"
  "org.opencontainers.image.source=$source_url"
  "org.opencontainers.image.licenses=$license"
)
config_args=(
  --config.user "$IMAGE_UID:$IMAGE_UID"
  --config.entrypoint "$BIN_PATH"
  --config.exposedports "$HTTP_PORT/tcp"
  --config.env "PATH=/usr/local/bin"
  --config.env "SSL_CERT_FILE=$CA"
  --config.env "WAXOSUIT_CACHE=$CACHE_DIR"
  --config.env "WAXOSUIT_HTTP_ADDRESS=0.0.0.0"
  --config.env "PORT=$HTTP_PORT"
  --config.stopsignal SIGTERM
  --created "$created"
  --history.created_by "scripts/build-image.sh"
)
for m in "${meta[@]}"; do
  config_args+=(--config.label "$m" --manifest.annotation "$m")
done
umoci config --image "$build_ref" "${config_args[@]}"

tags=("$version" "${extra_tags[@]}")
[[ -z $push_ref ]] || tags+=("$push_tag")
for t in "${tags[@]}"; do
  umoci tag --image "$build_ref" "$t"
done
umoci rm --image "$build_ref"
umoci gc --layout "$layout"

printf 'Built %s (waxosuit %s), tags: %s\n' "$layout" "$version" "$(umoci ls --layout "$layout" | sort | tr '\n' ' ')"

if [[ -n $push_ref ]]; then
  tls=()
  if $insecure; then
    tls=(--dest-tls-verify=false)
  fi
  # --preserve-digests: the registry must serve the digest built here, or
  # the push fails rather than silently re-encoding the image.
  skopeo copy --quiet --preserve-digests "${tls[@]}" \
    --digestfile "$work/digest" "oci:$layout:$push_tag" "docker://$push_ref"
  printf 'Pushed %s@%s\n' "$push_ref" "$(cat "$work/digest")"
fi
