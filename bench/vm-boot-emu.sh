#!/usr/bin/env bash
# The software CPU against QEMU TCG (-M microvm,acpi=off), same kernel, initramfs, memory and
# vCPU count, alternating in one run:
#  1. boot: launch to the guest's marker line (the initramfs's /init prints it, then reboots
#     so both VMMs exit), RUNS runs each; medians and the ratio corral/QEMU (goal <= 2x);
#  2. compute: a static guest program (bench/guest/mips.c) runs a known number of
#     instructions, timed by the host between the guest's start and result lines (and by the
#     guest's own clock, printed alongside), MIPS_RUNS runs each; medians and the ratio.
# Usage: bench/vm-boot-emu.sh [RUNS]
#   env: CORRAL (default target/release/corral: cargo build --release -p corral),
#        CORRAL_GUEST_KERNEL, MEM (MiB, 256), CPUS (1), MIPS_RUNS (3), ITERATIONS (20000000)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
MIPS_RUNS=${MIPS_RUNS:-3}
ITERATIONS=${ITERATIONS:-20000000}
CORRAL=${CORRAL:-${CARGO_TARGET_DIR:-target}/release/corral}
KERNEL=${CORRAL_GUEST_KERNEL:-/var/lib/corral/kernels/vmlinux}
[ -s "$KERNEL" ] || KERNEL=/work/shared/guest/vmlinux-microvm
MEM=${MEM:-256}
CPUS=${CPUS:-1}
MARKER=CORRAL-BENCH-MARKER
command -v qemu-system-x86_64 >/dev/null || { echo "qemu-system-x86_64 missing (apt-get install qemu-system-x86)" >&2; exit 1; }
command -v cc >/dev/null || { echo "cc missing (apt-get install gcc libc6-dev)" >&2; exit 1; }
[ -x "$CORRAL" ] || { echo "$CORRAL missing: cargo build --release -p corral" >&2; exit 1; }
[ -s "$KERNEL" ] || { echo "guest kernel $KERNEL missing (scripts/guest-kernel.sh)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cpuemu-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# initramfs NAME INIT-BODY: a busybox initramfs whose /init runs INIT-BODY, then reboots.
initramfs() {
  local root="$WORK/root-$1"
  mkdir -p "$root/bin" "$root/proc" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  [ -x "$WORK/mips" ] && cp "$WORK/mips" "$root/bin/mips"
  printf '#!/bin/busybox sh\n%s\n/bin/busybox reboot -f\n' "$2" > "$root/init"
  chmod +x "$root/init"
  (cd "$root" && find . | cpio -o -H newc --quiet > "$WORK/$1.cpio")
}
cc -O2 -static -o "$WORK/mips" bench/guest/mips.c
initramfs boot "/bin/busybox echo $MARKER"
initramfs mips "/bin/mips $ITERATIONS"
CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"

# corral_run|qemu_run INITRAMFS: the VM with the console on stdout.
corral_run() {
  timeout 300 "$CORRAL" vm run --kernel "$KERNEL" --initrd "$WORK/$1.cpio" --memory "${MEM}M" \
    --cpus "$CPUS" --cmdline "$CMDLINE" --accel emu --serial stdio </dev/null
}
qemu_run() {
  timeout 300 qemu-system-x86_64 -accel tcg -M microvm,acpi=off -cpu max -m "$MEM" -smp "$CPUS" \
    -nodefaults -nographic -no-reboot -serial stdio -kernel "$KERNEL" -initrd "$WORK/$1.cpio" \
    -append "$CMDLINE" </dev/null
}

# Milliseconds from launch to the marker for "$@".
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

# "HOST GUEST" MIPS for "$@": HOST from the host's clock between the guest's start and result
# lines, GUEST as the guest measured it ("0 0" when the lines are missing).
mips_of() {
  local line t0=0 t1 found=0
  while IFS= read -r line; do
    line=${line%$'\r'}
    case $line in
      *CORRAL-MIPS-START*) t0=${EPOCHREALTIME/./} ;;
      *"CORRAL-MIPS "*)
        t1=${EPOCHREALTIME/./}
        set -- $line
        echo "$(awk -v n="$((ITERATIONS * 7))" -v us="$((t1 - t0))" 'BEGIN {printf "%.1f", n / us}') $2"
        found=1 ;;
    esac
  done < <("$@" 2>/dev/null)
  [ "$found" = 1 ] || echo "0 0"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "n/a"}'; }

echo "kernel $KERNEL, ${MEM} MiB, $CPUS vCPU(s), corral $CORRAL"
: > "$WORK/corral.ms"; : > "$WORK/qemu.ms"
for i in $(seq "$RUNS"); do
  time_to_marker corral_run boot >> "$WORK/corral.ms"
  time_to_marker qemu_run boot >> "$WORK/qemu.ms"
  echo "boot run $i: corral $(tail -1 "$WORK/corral.ms") ms, qemu $(tail -1 "$WORK/qemu.ms") ms"
done
: > "$WORK/corral.mips"; : > "$WORK/qemu.mips"
for i in $(seq "$MIPS_RUNS"); do
  mips_of corral_run mips >> "$WORK/corral.mips"
  mips_of qemu_run mips >> "$WORK/qemu.mips"
  echo "compute run $i (host clock, guest clock): corral $(tail -1 "$WORK/corral.mips") MIPS, qemu $(tail -1 "$WORK/qemu.mips") MIPS"
done
C=$(median < "$WORK/corral.ms")
Q=$(median < "$WORK/qemu.ms")
CM=$(cut -d' ' -f1 "$WORK/corral.mips" | median)
QM=$(cut -d' ' -f1 "$WORK/qemu.mips" | median)
CG=$(cut -d' ' -f2 "$WORK/corral.mips" | median)
QG=$(cut -d' ' -f2 "$WORK/qemu.mips" | median)
echo "boot to marker, median of $RUNS: corral --accel emu ${C} ms, qemu tcg ${Q} ms, ratio $(ratio "$C" "$Q")x (goal <= 2x)"
echo "guest loop ($((ITERATIONS * 7)) instructions), median of $MIPS_RUNS, host clock: corral ${CM} MIPS, qemu tcg ${QM} MIPS, corral/qemu $(ratio "$CM" "$QM") (guest clocks: corral ${CG}, qemu ${QG})"
