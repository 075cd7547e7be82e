#!/usr/bin/env bash
# Builds the guest agent `corral-agent` as a static binary (glibc's static libc; no musl
# target is needed) for the guests' initramfs, and prints its path. Usage: scripts/agent.sh
# The explicit --target keeps these flags off the host build (its own folder under the
# target dir), so `cargo build` of the rest stays cached.
set -euo pipefail
cd "$(dirname "$0")/.."
triple=x86_64-unknown-linux-gnu
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --quiet -p corral-agent --bin corral-agent --profile agent --target "$triple" >&2
out="${CARGO_TARGET_DIR:-target}/$triple/agent/corral-agent"
if LC_ALL=C readelf -l "$out" 2>/dev/null | grep -q 'Requesting program interpreter'; then
  echo "scripts/agent.sh: $out is not static" >&2
  exit 1
fi
realpath "$out"
