#!/usr/bin/env bash
# The main job: a tour of corral on this host — images, containers with a published port,
# a microVM booting Linux, and a load-balanced multi-replica app — each step checked.
# Usage: scripts/demo.sh   (after scripts/setup.sh; CORRAL=path overrides the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
CORRAL=${CORRAL:-target/release/corral}
export CORRAL
ROOT_DIR=${CORRAL_ROOT:-/var/lib/corral}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/corral-demo.XXXXXX")

step() { printf '\n\033[1m## %s\033[0m\n' "$*"; }
run() { printf '\033[2m$ corral %s\033[0m\n' "$*"; "$CORRAL" "$@"; }
fail() { echo "demo: $*" >&2; exit 1; }

cleanup() {
  "$CORRAL" rm -f demo-web >/dev/null 2>&1 || true
  "$CORRAL" vm rm -f demo-vm >/dev/null 2>&1 || true
  "$CORRAL" app down -p demo >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Polls an HTTP URL until it answers (bounded: 100 tries, 10 s).
wait_http() {
  for _ in $(seq 100); do
    if curl -fsS --max-time 1 "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  fail "$1 did not answer"
}

step "corral version"
run version

step "corral doctor: what this host can run"
run doctor

step "Images: busybox from Debian's busybox-static, and a web image built from a Containerfile"
scripts/busybox-image.sh busybox:latest >/dev/null
run build -t corral-demo/web demo/web
run image ls

step "Containers: one-shot, then a web server on a published port"
run run --rm busybox echo "hello from a container"
cleanup
run run -d --name demo-web -p 127.0.0.1:8088:8080 corral-demo/web
printf '$ curl http://127.0.0.1:8088/\n'
wait_http http://127.0.0.1:8088/
run ps
run rm -f demo-web

step "A microVM: the guest kernel boots busybox (KVM when it can run Linux, else corral's software CPU)"
kernel="$ROOT_DIR/kernels/vmlinux"
[ -s "$kernel" ] || fail "no guest kernel at $kernel (run scripts/setup.sh)"
mkdir -p "$WORK/initramfs/bin" "$WORK/initramfs/proc" "$WORK/initramfs/sys" "$WORK/initramfs/dev"
cp /bin/busybox "$WORK/initramfs/bin/busybox"
ln -s busybox "$WORK/initramfs/bin/sh"
cp demo/guest-init.sh "$WORK/initramfs/init"
(cd "$WORK/initramfs" && find . | cpio -o -H newc --quiet) > "$WORK/initramfs.cpio"
run vm run --kernel "$kernel" --initrd "$WORK/initramfs.cpio" --memory 256M --accel auto \
  --cmdline "console=ttyS0 reboot=k panic=-1 quiet" < /dev/null | tee "$WORK/vm.log"
grep -q "corral-demo-vm:" "$WORK/vm.log" || fail "the VM did not reach its /init"

step "The same guest through the daemon with corral's guest agent: heartbeat and guest memory in the inventory, a command, shutdown through the agent"
cp "$(scripts/agent.sh)" "$WORK/initramfs/bin/corral-agent"
cp demo/guest-agent-init.sh "$WORK/initramfs/init"
(cd "$WORK/initramfs" && find . | cpio -o -H newc --quiet) > "$WORK/agent-initramfs.cpio"
"$CORRAL" vm rm -f demo-vm >/dev/null 2>&1 || true
run vm create demo-vm --kernel "$kernel" --initrd "$WORK/agent-initramfs.cpio" --memory 256M \
  --cmdline "console=ttyS0 panic=-1 quiet"
run vm start demo-vm
# The agent beats every 2 s once the guest's /init started it (bounded: 120 s).
beating() {
  "$CORRAL" vm ls --format json > "$WORK/vms.json"
  grep -q '"heartbeat": "[0-9]*s ago"' "$WORK/vms.json"
}
for _ in $(seq 240); do beating && break; sleep 0.5; done
run vm ls
beating || fail "no heartbeat from the guest agent"
run vm exec demo-vm -- /bin/busybox uname -sr
run vm shutdown demo-vm
run vm rm demo-vm

step "An app: Compose file, 3 web replicas behind corral's load balancer on :9890"
run app up -d -p demo -f demo/compose.yml
wait_http http://127.0.0.1:9890/ >/dev/null
for _ in 1 2 3 4 5 6; do curl -fsS --max-time 2 http://127.0.0.1:9890/; done | tee "$WORK/answers"
[ "$(sort -u "$WORK/answers" | wc -l)" -eq 3 ] || fail "expected answers from 3 replicas"
run app ps -p demo
run app down -p demo

step "Done: images, containers, a microVM and a load-balanced app on one host"
