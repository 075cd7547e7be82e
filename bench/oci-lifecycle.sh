#!/usr/bin/env bash
# corral's OCI runtime vs runc: `run` of /bin/true in a minimal busybox bundle (create + start
# + wait + delete), alternating the two runtimes in one run; prints each median and the
# ratio, then the runtime's own peak memory charged to the container's cgroup.
# Usage (root): bench/oci-lifecycle.sh [iterations]   (env CORRAL_BIN, RUNC_BIN override)
# Both runtimes get the same bundle (on disk) and a state root on the same private tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-50}
CORRAL=${CORRAL_BIN:-target/release/corral}
RUNC=${RUNC_BIN:-/usr/sbin/runc}
[ "$(id -u)" = 0 ] || { echo "oci-lifecycle: run as root" >&2; exit 1; }
[ -x "$CORRAL" ] || { echo "oci-lifecycle: $CORRAL missing (cargo build --release)" >&2; exit 1; }
[ -x "$RUNC" ] || { echo "oci-lifecycle: $RUNC missing (apt-get install runc)" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "oci-lifecycle: /bin/busybox missing (busybox-static)" >&2; exit 1; }
CORRAL=$(realpath "$CORRAL")

work=$(mktemp -d /tmp/corral-oci-bench.XXXXXX)
cg="corral-oci-bench-$$"
# Both state roots on one private tmpfs, as runc's default /run/runc and containerd's
# /run/containerd are: like for like, and no disk writeback in either runtime's timing.
mkdir -p "$work/state"
mount -t tmpfs -o size=16m,mode=0700 corral-oci-bench "$work/state"
cleanup() {
  "$RUNC" --root "$work/state/runc-root" delete --force "b-runc" >/dev/null 2>&1 || true
  "$CORRAL" oci --root "$work/state/corral-root" delete --force "b-corral" >/dev/null 2>&1 || true
  umount "$work/state" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/dev" "$work/bundle/rootfs/sys"
cp /bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/true"
"$CORRAL" oci spec --bundle "$work/bundle"
# Same config for both: no terminal, /bin/true, a cgroup path we can read afterwards.
sed -i -e 's/"terminal": true/"terminal": false/' \
  -e 's#"sh"#"/bin/true"#' "$work/bundle/config.json"
sed -i "s#\"linux\": {#\"linux\": {\n    \"cgroupsPath\": \"/$cg\",#" "$work/bundle/config.json"

us() { local t=${1/./}; echo $((10#$t)); }   # $EPOCHREALTIME (s.micro) -> microseconds

declare -a t_runc t_corral
cd "$work/bundle"
for ((i = 0; i < N + 2; i++)); do
  s=$EPOCHREALTIME; "$RUNC" --root "$work/state/runc-root" run "b-runc" >/dev/null; e=$EPOCHREALTIME
  [ "$i" -ge 2 ] && t_runc+=($(( $(us "$e") - $(us "$s") )))
  s=$EPOCHREALTIME; "$CORRAL" oci --root "$work/state/corral-root" run "b-corral" >/dev/null; e=$EPOCHREALTIME
  [ "$i" -ge 2 ] && t_corral+=($(( $(us "$e") - $(us "$s") )))
done
cd "$OLDPWD"

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }
mr=$(median "${t_runc[@]}"); mc=$(median "${t_corral[@]}")
printf 'run /bin/true (create+start+wait+delete), %d iterations each, alternating\n' "$N"
printf '  runc   median %8.2f ms\n' "$(echo "$mr / 1000" | bc -l)"
printf '  corral median %8.2f ms\n' "$(echo "$mc / 1000" | bc -l)"
printf '  ratio corral/runc: %.3f (goal <= 0.2)\n' "$(echo "$mc / $mr" | bc -l)"

# Binary startup alone: `--version` of each (no container), alternating.
declare -a v_runc v_corral
for ((i = 0; i < N; i++)); do
  s=$EPOCHREALTIME; "$RUNC" --version >/dev/null; e=$EPOCHREALTIME
  v_runc+=($(( $(us "$e") - $(us "$s") )))
  s=$EPOCHREALTIME; "$CORRAL" oci --version >/dev/null; e=$EPOCHREALTIME
  v_corral+=($(( $(us "$e") - $(us "$s") )))
done
vr=$(median "${v_runc[@]}"); vc=$(median "${v_corral[@]}")
printf 'startup (--version), %d iterations each\n' "$N"
printf '  runc   median %8.2f ms\n' "$(echo "$vr / 1000" | bc -l)"
printf '  corral median %8.2f ms\n' "$(echo "$vc / 1000" | bc -l)"

# Peak memory charged to the container's cgroup: create, start, wait for /bin/true to exit,
# read the cgroup's high-water mark, delete. /bin/true is the same for both runtimes.
peak() {
  local rt=$1 root=$2 id=$3 mem pid
  local -a cmd=("$rt")
  [ "$rt" = "$CORRAL" ] && cmd+=(oci)
  (cd "$work/bundle" && "${cmd[@]}" --root "$root" create "$id" </dev/null >/dev/null 2>&1)
  pid=$("${cmd[@]}" --root "$root" state "$id" | sed -n 's/.*"pid": \([0-9]*\).*/\1/p')
  if [ -d /sys/fs/cgroup/memory ] && [ -e "/sys/fs/cgroup/memory/$cg/memory.max_usage_in_bytes" ]; then
    mem="/sys/fs/cgroup/memory/$cg/memory.max_usage_in_bytes"
  else
    mem="/sys/fs/cgroup/$cg/memory.peak"
  fi
  "${cmd[@]}" --root "$root" start "$id"
  while "${cmd[@]}" --root "$root" state "$id" 2>/dev/null | grep -q '"running"'; do sleep 0.01; done
  cat "$mem"
  "${cmd[@]}" --root "$root" delete --force "$id" >/dev/null 2>&1
  : "$pid"
}
pr=$(peak "$RUNC" "$work/state/runc-root" b-runc)
pc=$(peak "$CORRAL" "$work/state/corral-root" b-corral)
printf 'peak memory charged to the container cgroup (runtime init + /bin/true)\n'
printf '  runc   %8.1f KiB\n' "$(echo "$pr / 1024" | bc -l)"
printf '  corral %8.1f KiB\n' "$(echo "$pc / 1024" | bc -l)"
