#!/usr/bin/env bash
# Start-up benchmark of corral's KVM VMM against QEMU's microvm, on the same tiny PVH guest
# (crates/vmm/guests/hello.S: prints one line on COM1, then resets through the i8042).
#
#   bench/vmm-start.sh            # 20 alternating runs each (RUNS=N to change, CORRAL=bin)
#
# Prints, for each VMM, the median wall time from launch to the guest's line, and the ratio
# corral/QEMU (goal: <= 0.25). Then, with a 128 MiB guest that stays up (idle.S): the VMM's RSS
# (Firecracker's spec: <= 5 MiB overhead) and the time until `corral vmm` is ready, i.e. its
# control socket is bound and the guest runs (wall ms, and CPU ms of the process; Firecracker
# quotes 8 CPU ms).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
TARGET=${CARGO_TARGET_DIR:-target}
QEMU=${QEMU:-qemu-system-x86_64}

command -v "$QEMU" >/dev/null || { echo "vmm-start: $QEMU not found (apt-get install qemu-system-x86)" >&2; exit 1; }
command -v as >/dev/null || { echo "vmm-start: binutils (as, ld) not found" >&2; exit 1; }
[ -e /dev/kvm ] || { echo "vmm-start: /dev/kvm is missing" >&2; exit 1; }

# CORRAL=path/to/corral uses an existing release binary instead of building one.
if [ -z "${CORRAL:-}" ]; then
  cargo build --release -q -p corral
  CORRAL="$TARGET/release/corral"
fi

WORK=$(mktemp -d /tmp/vmm-bench-$$.XXXX)
cleanup() {
  [ -n "${VMM_PID:-}" ] && kill "$VMM_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for g in hello idle; do
  as --64 -o "$WORK/$g.o" "crates/vmm/guests/$g.S"
  ld -m elf_x86_64 -T crates/vmm/guests/guest.ld -o "$WORK/$g.elf" "$WORK/$g.o"
done

# Microseconds from launch of "$@" to its first stdout line containing the marker.
time_to_line() {
  local marker=$1; shift
  local t0 t1 line pid
  t0=${EPOCHREALTIME/./}
  exec {out}< <(exec "$@" 2>/dev/null </dev/null)
  pid=$!
  while IFS= read -r -u "$out" line; do
    [[ $line == *"$marker"* ]] && break
  done
  t1=${EPOCHREALTIME/./}
  kill "$pid" 2>/dev/null || true
  exec {out}<&-
  wait "$pid" 2>/dev/null || true
  echo $((t1 - t0))
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

corral_cmd=("$CORRAL" vm run --kernel "$WORK/hello.elf" --accel kvm --memory 128M --serial stdio)
qemu_cmd=("$QEMU" -enable-kvm -M microvm -cpu host,-arch-capabilities -m 128M -nodefaults
          -no-user-config -nographic -serial stdio -no-reboot -kernel "$WORK/hello.elf")

: >"$WORK/corral.us"; : >"$WORK/qemu.us"
for i in $(seq "$RUNS"); do
  time_to_line "corral-guest: hello" "${corral_cmd[@]}" >>"$WORK/corral.us"
  time_to_line "corral-guest: hello" "${qemu_cmd[@]}" >>"$WORK/qemu.us"
done
c=$(median <"$WORK/corral.us"); q=$(median <"$WORK/qemu.us")
printf 'launch to guest line, median of %d runs each (alternating):\n' "$RUNS"
printf '  corral --accel kvm : %8.2f ms\n' "$(echo "$c / 1000" | bc -l)"
printf '  qemu microvm (kvm) : %8.2f ms\n' "$(echo "$q / 1000" | bc -l)"
printf '  ratio corral/qemu  : %8.3f  (goal <= 0.25)\n' "$(echo "$c / $q" | bc -l)"

# Footprint and readiness of `corral vmm` with a 128 MiB guest that stays up.
cat >"$WORK/vm.toml" <<TOML
kernel = "$WORK/idle.elf"
memory = "128M"
accel = "kvm"
serial = "stdio"
TOML
cpu_ns() { # CPU time of every thread of process $1, from schedstat
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END {print s+0}'
}
ready_wall=(); ready_cpu=(); rss=(); anon=()
for i in $(seq 5); do
  t0=${EPOCHREALTIME/./}
  exec {out}< <(exec "$CORRAL" vmm --config "$WORK/vm.toml" --control-socket "$WORK/ctl.sock" </dev/null 2>/dev/null)
  VMM_PID=$!
  IFS= read -r -u "$out" line
  t1=${EPOCHREALTIME/./}
  [ -S "$WORK/ctl.sock" ] || { echo "vmm-start: control socket missing after the guest line" >&2; exit 1; }
  ready_cpu+=("$(cpu_ns "$VMM_PID")")
  ready_wall+=($((t1 - t0)))
  rss+=("$(awk '/VmRSS/ {print $2}' /proc/"$VMM_PID"/status)")
  anon+=("$(awk '/RssAnon/ {print $2}' /proc/"$VMM_PID"/status)")
  kill -TERM "$VMM_PID"; wait "$VMM_PID" || true; VMM_PID=
  exec {out}<&-
done
qrss=(); qanon=()
for i in 1 2 3; do
  exec {out}< <(exec "$QEMU" -enable-kvm -M microvm -cpu host,-arch-capabilities -m 128M -nodefaults \
    -no-user-config -nographic -serial stdio -kernel "$WORK/idle.elf" </dev/null 2>/dev/null)
  VMM_PID=$!
  IFS= read -r -u "$out" line
  qrss+=("$(awk '/VmRSS/ {print $2}' /proc/"$VMM_PID"/status)")
  qanon+=("$(awk '/RssAnon/ {print $2}' /proc/"$VMM_PID"/status)")
  kill "$VMM_PID"; wait "$VMM_PID" 2>/dev/null || true; VMM_PID=
  exec {out}<&-
done
printf '128 MiB guest, median of 5 (QEMU: 3):\n'
printf '  corral vmm RSS              : %8.2f MiB\n' "$(echo "$(printf '%s\n' "${rss[@]}" | median) / 1024" | bc -l)"
printf '  qemu microvm RSS            : %8.2f MiB\n' "$(echo "$(printf '%s\n' "${qrss[@]}" | median) / 1024" | bc -l)"
# VmRSS counts the shared binary's page-cache pages the kernel maps around each fault; the
# private (anonymous) part is what each further VM costs.
printf '  corral vmm private (anon)   : %8.2f MiB\n' "$(echo "$(printf '%s\n' "${anon[@]}" | median) / 1024" | bc -l)"
printf '  qemu microvm private (anon) : %8.2f MiB\n' "$(echo "$(printf '%s\n' "${qanon[@]}" | median) / 1024" | bc -l)"
printf '  control socket ready (wall) : %8.2f ms\n' "$(echo "$(printf '%s\n' "${ready_wall[@]}" | median) / 1000" | bc -l)"
printf '  control socket ready (CPU)  : %8.2f ms\n' "$(echo "$(printf '%s\n' "${ready_cpu[@]}" | median) / 1000000" | bc -l)"
