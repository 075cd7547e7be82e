#!/usr/bin/env bash
# Boot time on a software CPU: corral --accel emu vs QEMU TCG (-M microvm,acpi=off), same
# kernel, initramfs and memory, alternating, RUNS runs each; prints the medians and the ratio.
# Time is from launch to the guest's marker line (the initramfs's /init prints it, then
# reboots so both VMMs exit).
# Usage: bench/vm-boot-emu.sh [RUNS]   (env: CORRAL, CORRAL_GUEST_KERNEL, MEM)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
CORRAL=${CORRAL:-target/release/corral}
KERNEL=${CORRAL_GUEST_KERNEL:-/var/lib/corral/kernels/vmlinux}
MEM=${MEM:-256}
MARKER=CORRAL-BENCH-MARKER
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 1; }
[ -x "$CORRAL" ] || { echo "$CORRAL missing: cargo build --release -p corral" >&2; exit 1; }
[ -s "$KERNEL" ] || { echo "guest kernel $KERNEL missing" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cpuemu-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/root/bin" "$WORK/root/proc" "$WORK/root/dev"
cp /bin/busybox "$WORK/root/bin/busybox"
cat > "$WORK/root/init" <<INIT
#!/bin/busybox sh
/bin/busybox echo $MARKER
/bin/busybox reboot -f
INIT
chmod +x "$WORK/root/init"
(cd "$WORK/root" && find . | cpio -o -H newc --quiet > "$WORK/initramfs.cpio")
CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"

# Prints milliseconds from launch to the marker for the command in "$@".
time_to_marker() {
  local start end
  start=$(date +%s%N)
  # grep leaves at the marker; the VMM may then die of SIGPIPE, which is not a failure.
  if { "$@" 2>/dev/null || true; } | grep -q -m1 "$MARKER"; then
    end=$(date +%s%N)
    echo $(( (end - start) / 1000000 ))
  else
    echo "run failed: $*" >&2
    echo 999999
  fi
}

corral_run() {
  timeout 300 "$CORRAL" vm run --kernel "$KERNEL" --initrd "$WORK/initramfs.cpio" --memory "${MEM}M" \
    --cmdline "$CMDLINE" --accel emu --serial stdio </dev/null
}
qemu_run() {
  timeout 300 qemu-system-x86_64 -accel tcg -M microvm,acpi=off -cpu max -m "$MEM" -nodefaults -nographic \
    -no-reboot -serial stdio -kernel "$KERNEL" -initrd "$WORK/initramfs.cpio" -append "$CMDLINE" </dev/null
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }

: > "$WORK/corral.ms"; : > "$WORK/qemu.ms"
for i in $(seq "$RUNS"); do
  time_to_marker corral_run >> "$WORK/corral.ms"
  time_to_marker qemu_run >> "$WORK/qemu.ms"
  echo "run $i: corral $(tail -1 "$WORK/corral.ms") ms, qemu $(tail -1 "$WORK/qemu.ms") ms"
done
C=$(median < "$WORK/corral.ms")
Q=$(median < "$WORK/qemu.ms")
echo "boot to marker, median of $RUNS: corral --accel emu ${C} ms, qemu tcg ${Q} ms, ratio $(awk -v c="$C" -v q="$Q" 'BEGIN {printf "%.2f", c / q}')x (goal <= 2x)"
