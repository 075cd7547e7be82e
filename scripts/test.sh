#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests and end-to-end runs of the binary.
# Tests that need root, KVM, a network namespace or a guest kernel run here and fail loudly
# when those are missing; set CORRAL_SKIP_HOST_TESTS=1 to skip them explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && [ "${CORRAL_SKIP_HOST_TESTS:-0}" != 1 ]; then
  scripts/setup.sh --deps-only
fi
# Tests use the shared ready-made kernel until the project's own is built.
if [ -z "${CORRAL_GUEST_KERNEL:-}" ]; then
  for k in "${CORRAL_ROOT:-/var/lib/corral}/kernels/vmlinux" ../shared/guest/vmlinux-microvm; do
    if [ -s "$k" ]; then export CORRAL_GUEST_KERNEL=$(realpath "$k"); break; fi
  done
fi
cargo test --workspace --all-targets
