#!/usr/bin/env bash
# Benchmark: `corral run --rm busybox true` end to end (CLI -> daemon -> shim -> OCI runtime)
# vs Debian's `podman run --rm` of the same busybox rootfs (overlay storage, cgroupfs cgroup
# manager, `--network none` for both: loopback only),
# alternating in one run. Prints medians and the ratio (goal: corral <= 0.5x podman), then
# the daemon's idle RSS. Usage: bench/run.sh [RUNS]   (default 20; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}

CORRAL=${CORRAL:-target/release/corral}
if [ ! -x "$CORRAL" ]; then
  cargo build --release -p corral >&2
fi
command -v podman >/dev/null || { echo "podman is missing: apt-get install podman" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "/bin/busybox is missing: apt-get install busybox-static" >&2; exit 1; }

WORK=$(mktemp -d /tmp/daemon-bench-$$-XXXX)
export CORRAL_ROOT=$WORK/corral-root CORRAL_RUN=$WORK/corral-run
PODMAN=(podman --root "$WORK/podman-root" --runroot "$WORK/podman-run" --storage-driver overlay
        --cgroup-manager cgroupfs --events-backend file)
cleanup() {
  [ -s "$CORRAL_RUN/corral.pid" ] && kill "$(cat "$CORRAL_RUN/corral.pid")" 2>/dev/null || true
  "${PODMAN[@]}" rm -af >/dev/null 2>&1 || true
  "${PODMAN[@]}" system reset -f >/dev/null 2>&1 || true
  umount -R "$WORK"/podman-root/overlay 2>/dev/null || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT

# The same busybox tree for both, imported into each one's image store.
mkdir -p "$WORK/rootfs/bin" "$WORK/rootfs/etc" "$WORK/rootfs/proc" "$WORK/rootfs/sys" "$WORK/rootfs/dev" "$WORK/rootfs/tmp"
cp /bin/busybox "$WORK/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$WORK/rootfs/bin/$a"; done
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
"${PODMAN[@]}" import -q "$WORK/rootfs.tar" localhost/busybox:latest >/dev/null
"$CORRAL" image import "$WORK/rootfs.tar" busybox:latest >/dev/null

now_ns() { date +%s%N; }
time_one() { local t0 t1; t0=$(now_ns); "$@" >/dev/null; t1=$(now_ns); echo $(( (t1 - t0) / 1000 )); }

# Warm up both (daemon start, image extraction, caches); not measured.
"$CORRAL" run --rm --network none busybox true
"${PODMAN[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/busybox true

: >"$WORK/corral.us"; : >"$WORK/podman.us"
for _ in $(seq "$RUNS"); do
  time_one "$CORRAL" run --rm --network none busybox true >>"$WORK/corral.us"
  time_one "${PODMAN[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 localhost/busybox true >>"$WORK/podman.us"
done

median() { grep -E "^[0-9]+$" "$1" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
C=$(median "$WORK/corral.us"); P=$(median "$WORK/podman.us")
echo "podman samples: $(wc -l <"$WORK/podman.us"), corral samples: $(wc -l <"$WORK/corral.us")" >&2
RT=${CORRAL_OCI_RUNTIME:-"corral oci (this build)"}
echo "runs: $RUNS each, alternating; corral's OCI runtime: $RT"
printf 'corral run --rm busybox true   median %8.1f ms\n' "$(echo "$C/1000" | bc -l)"
printf 'podman run --rm busybox true   median %8.1f ms\n' "$(echo "$P/1000" | bc -l)"
printf 'ratio corral/podman            %8.2f   (goal <= 0.50)\n' "$(echo "$C/$P" | bc -l)"
PID=$(cat "$CORRAL_RUN/corral.pid")
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
echo "corral daemon idle RSS         ${RSS} KiB"
