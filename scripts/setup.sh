#!/usr/bin/env bash
# Installs what corral needs on a Debian 12 host and builds the release binary.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--deps-only]
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT_DIR=${CORRAL_ROOT:-/var/lib/corral}
PACKAGES=(
  # the host tools corral drives or builds on
  busybox-static e2fsprogs nftables iproute2 cpio curl
  # network tests (ping between namespaces) and bench/net.sh
  iputils-ping iperf3
  # bench/app-up.sh
  curl
  # kernel build (scripts/guest-kernel.sh)
  linux-source-6.12 bc bison flex libelf-dev libssl-dev xz-utils
  # the tiny test guests (crates/vmm/guests, assembled by its build.rs)
  binutils
  # peers the tests and benchmarks compare against
  runc containerd qemu-system-x86 haproxy wrk nginx hyperfine docker-registry podman buildah skopeo
)

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages)
  if [ -z "$missing" ]; then
    log "Debian packages: all present"
    return
  fi
  log "Installing Debian packages: $(echo $missing | tr '\n' ' ')"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

install_guest_kernel() {
  local kernels="$ROOT_DIR/kernels"
  mkdir -p "$kernels"
  if [ -x scripts/guest-kernel.sh ]; then
    scripts/guest-kernel.sh "$kernels"
  elif [ ! -s "$kernels/vmlinux" ] && [ -s ../shared/guest/vmlinux-microvm ]; then
    log "Guest kernel: using ../shared/guest/vmlinux-microvm"
    cp ../shared/guest/vmlinux-microvm "$kernels/vmlinux"
  fi
}

build_release() {
  log "Building corral (release)"
  cargo build --release --workspace --bins
  ln -sf corral target/release/corral-runc
  log "Building the guest agent (static, for guests' initramfs)"
  scripts/agent.sh
}

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs packages and writes $ROOT_DIR)" >&2; exit 1; }
install_packages
[ "${1:-}" = "--deps-only" ] && exit 0
install_guest_kernel
build_release
log "Done: target/release/corral"
