#!/usr/bin/env bash
# The whole test suite: unit tests, integration tests and end-to-end runs of the binary.
# Tests that need root, KVM, a network namespace or a guest kernel run here and fail loudly
# when those are missing; set CORRAL_SKIP_HOST_TESTS=1 to skip them explicitly.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && [ "${CORRAL_SKIP_HOST_TESTS:-0}" != 1 ]; then
  scripts/setup.sh --deps-only
fi
# VM tests boot the project's own guest kernel (built once, then cached by its inputs; the
# shared ready-made one lacks what some tests check, e.g. the VT for Ctrl-Alt-Del).
if [ -z "${CORRAL_GUEST_KERNEL:-}" ]; then
  kernels="${CORRAL_ROOT:-/var/lib/corral}/kernels"
  if [ "$(id -u)" = 0 ] && [ "${CORRAL_SKIP_HOST_TESTS:-0}" != 1 ]; then
    scripts/guest-kernel.sh "$kernels"
  fi
  for k in "$kernels/vmlinux" ../shared/guest/vmlinux-microvm; do
    if [ -s "$k" ]; then export CORRAL_GUEST_KERNEL=$(realpath "$k"); break; fi
  done
fi
# The guest agent, static, for the VM tests' initramfs.
CORRAL_AGENT_BIN=$(scripts/agent.sh)
export CORRAL_AGENT_BIN
cargo test --workspace --all-targets
