#!/usr/bin/env bash
# Lays out the root file system of the waxosuit image in ROOTFS: the binary,
# the shared libraries it links (and the dynamic loader), CA certificates, a
# non-root user and a writable cache directory. scripts/build-image.sh
# (umoci, no Docker) and the Dockerfile both use it, so the two images hold
# the same files.
#
#   scripts/image-rootfs.sh [--no-strip] ROOTFS BINARY
set -euo pipefail

die() {
  printf 'image-rootfs.sh: %s\n' "$*" >&2
  exit 1
}

# 65532 is the uid distroless images use for "nonroot"; the Dockerfile,
# scripts/build-image.sh and deploy/ use the same number.
readonly IMAGE_UID=65532
readonly IMAGE_USER=waxosuit
readonly BIN_PATH=/usr/local/bin/waxosuit
readonly CACHE_DIR=/var/cache/waxosuit
readonly CA=/etc/ssl/certs/ca-certificates.crt

strip_binary=true
if [[ ${1:-} == --no-strip ]]; then
  strip_binary=false
  shift
fi
(($# == 2)) || die "usage: scripts/image-rootfs.sh [--no-strip] ROOTFS BINARY"
rootfs=$1
binary=$2

[[ $(id -u) == 0 ]] || die "run as root: the files need their owners (root, and uid $IMAGE_UID for $CACHE_DIR)"
command -v ldd >/dev/null 2>&1 || die "\`ldd\` is not installed; it finds the binary's libraries (Debian: apt-get install libc-bin)"
[[ -f $binary && -x $binary ]] || die "$binary is not an executable file"
[[ -f $CA ]] || die "$CA is missing (Debian: apt-get install ca-certificates)"
mkdir -p "$rootfs"

install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"
install -m 0755 "$binary" "$rootfs$BIN_PATH"
# Debug information is most of a debug build (~230 MB of which ~110 MB is
# left); the symbol table stays, so a panic's backtrace still names functions.
if $strip_binary && command -v strip >/dev/null 2>&1; then
  strip --strip-debug "$rootfs$BIN_PATH"
fi

# The libraries as the binary links them on this machine, copied to the same
# paths, so the loader finds them without an ld.so.cache. glibc >= 2.34 has
# the files/dns NSS modules inside libc: name lookups need nothing more.
libs=$(ldd "$binary") || die "ldd $binary failed (is it a dynamically linked executable for this machine?)"
while read -r line; do
  case "$line" in
    *"=> not found"*) die "ldd: a library of $binary is missing here: $line" ;;
    *"=> /"*) path=${line#*=> }; path=${path%% (*} ;;
    /*) path=${line%% (*} ;;
    *) continue ;;
  esac
  install -d -m 0755 "$rootfs$(dirname "$path")"
  # -L: the file itself, not a symlink into a tree the image does not have
  # (Debian's /lib64/ld-linux-x86-64.so.2 points into /lib/x86_64-linux-gnu).
  cp -L "$path" "$rootfs$path"
done <<<"$libs"

install -m 0644 "$CA" "$rootfs$CA"

printf 'root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n' \
  "$IMAGE_USER" "$IMAGE_UID" "$IMAGE_UID" "$IMAGE_USER" "$IMAGE_USER" >"$rootfs/etc/passwd"
printf 'root:x:0:\n%s:x:%d:\n' "$IMAGE_USER" "$IMAGE_UID" >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs/etc/passwd" "$rootfs/etc/group" "$rootfs/etc/nsswitch.conf"
install -d -m 1777 "$rootfs/tmp"
install -d -m 0700 -o "$IMAGE_UID" -g "$IMAGE_UID" "$rootfs/home/$IMAGE_USER"
install -d -m 0755 "$rootfs/var/cache"
install -d -m 0755 -o "$IMAGE_UID" -g "$IMAGE_UID" "$rootfs$CACHE_DIR"
