#!/usr/bin/env bash
# Builds corral's guest kernel: Debian's linux-source-6.12, `make tinyconfig` plus
# scripts/guest/microvm.config, into an uncompressed ELF vmlinux with everything built in.
# Cached: skipped when OUT_DIR/vmlinux exists and was built from the same source tarball,
# fragment and this script (their sha256 is kept in OUT_DIR/vmlinux.inputs).
# Usage: scripts/guest-kernel.sh OUT_DIR
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT_DIR=${1:?usage: guest-kernel.sh OUT_DIR}
SRC_TARBALL=${CORRAL_LINUX_SOURCE:-/usr/src/linux-source-6.12.tar.xz}
FRAGMENT="$HERE/guest/microvm.config"
JOBS=${JOBS:-$(nproc)}

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ ! -f "$SRC_TARBALL" ]; then
  echo "guest-kernel.sh: $SRC_TARBALL is missing (apt-get install linux-source-6.12)" >&2
  exit 1
fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
inputs=$(cat "$SRC_TARBALL.sha256" 2>/dev/null || true; ls -l --time-style=+%s "$SRC_TARBALL" | awk '{print $5, $6}'; sha256sum "$FRAGMENT" "$0" | awk '{print $1}')
if [ -s "$OUT_DIR/vmlinux" ] && [ "$(cat "$OUT_DIR/vmlinux.inputs" 2>/dev/null)" = "$inputs" ]; then
  log "Guest kernel: $OUT_DIR/vmlinux is up to date"
  exit 0
fi

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/corral-kernel.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
log "Guest kernel: unpacking $(basename "$SRC_TARBALL")"
tar -xf "$SRC_TARBALL" -C "$BUILD" --strip-components=1
cd "$BUILD"
make -s tinyconfig
scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" >/dev/null
make -s olddefconfig
# Every `=y` line of the fragment must survive dependency resolution.
missing=$(grep -E '^CONFIG_[A-Z0-9_]+=y' "$FRAGMENT" | while read -r line; do
  grep -qx "$line" .config || echo "$line"
done)
if [ -n "$missing" ]; then
  echo "guest-kernel.sh: options dropped by Kconfig (unmet dependencies):" >&2
  echo "$missing" >&2
  exit 1
fi
log "Guest kernel: building vmlinux with $JOBS jobs (a few minutes)"
make -s -j "$JOBS" vmlinux
install -m 0644 vmlinux "$OUT_DIR/vmlinux.tmp"
install -m 0644 .config "$OUT_DIR/vmlinux.config"
mv "$OUT_DIR/vmlinux.tmp" "$OUT_DIR/vmlinux"
printf '%s\n' "$inputs" > "$OUT_DIR/vmlinux.inputs"
log "Guest kernel: $OUT_DIR/vmlinux"
