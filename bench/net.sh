#!/usr/bin/env bash
# TCP throughput between two "containers" (network namespaces) over corral's bridge, and the
# same pair through podman's network (netavark), in one run: median Gbit/s and the ratio.
# Falls back to a plain `ip link add type bridge` pair when podman cannot run a container.
# Bounded: RUNS iperf3 runs of SECS seconds per side. Traffic stays on the bridges.
# Usage (root): bench/net.sh   [RUNS=3 SECS=5]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-5}
P=cbn$$
TMP=$(mktemp -d)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

for t in iperf3 ip nft; do command -v $t >/dev/null || { echo "bench/net.sh needs $t (scripts/setup.sh)" >&2; exit 1; }; done
[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root" >&2; exit 1; }

cargo build -q --release -p corral-net --example netctl
NETCTL=$CARGO_TARGET_DIR/release/examples/netctl

cleanup() {
  set +e
  ip netns del ${P}a 2>/dev/null; ip netns del ${P}b 2>/dev/null
  ip netns del ${P}x 2>/dev/null; ip netns del ${P}y 2>/dev/null
  ip link del ${P}br 2>/dev/null
  "$NETCTL" "$TMP/state" "$P" prune >/dev/null 2>&1
  if [ -n "${PODMAN_OK:-}" ]; then
    podman rm -f ${P}srv >/dev/null 2>&1; podman network rm -f ${P}net >/dev/null 2>&1
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# A free /24 in 10.216.0.0/16 that no host route covers.
free_subnet() {
  local i
  for i in $(seq "$1" 250); do
    ip route | grep -q "^10\.216\.$i\." || { echo "10.216.$i"; return; }
  done
  echo "no free subnet" >&2; exit 1
}

# iperf3 client in netns $1 to $2: Gbit/s received.
gbps() {
  "$@" | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# --- corral: two netns attached to a corral network ---
ip netns add ${P}a; ip netns add ${P}b
S1=$(free_subnet 10)
"$NETCTL" "$TMP/state" "$P" create bench "$S1.0/24" >/dev/null
"$NETCTL" "$TMP/state" "$P" attach a bench /run/netns/${P}a >/dev/null
B_IP=$("$NETCTL" "$TMP/state" "$P" attach b bench /run/netns/${P}b)
for _ in $(seq "$RUNS"); do
  ip netns exec ${P}b iperf3 -s -1 -B "$B_IP" >/dev/null 2>&1 &
  srv=$!
  until ip netns exec ${P}b ss -ltn | grep -q ":5201 "; do sleep 0.05; done
  gbps ip netns exec ${P}a iperf3 -c "$B_IP" -t "$SECS" -J >>"$TMP/corral"
  wait $srv
done
CORRAL=$(median <"$TMP/corral")

# --- peer: podman's bridge network, else a plain Linux bridge ---
PEER=""
ROOTFS=$TMP/rootfs
mkdir -p "$ROOTFS/usr/bin" "$ROOTFS/etc" "$ROOTFS/tmp"
cp /usr/bin/iperf3 "$ROOTFS/usr/bin/"
for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
  mkdir -p "$ROOTFS$(dirname "$lib")"; cp -L "$lib" "$ROOTFS$lib"
done
S2=$(free_subnet 100)
if command -v podman >/dev/null && podman network create --subnet "$S2.0/24" ${P}net >/dev/null 2>&1; then
  PODMAN_OK=1
  if podman run -d --name ${P}srv --network ${P}net --rootfs "$ROOTFS" /usr/bin/iperf3 -s >/dev/null 2>"$TMP/podman.err"; then
    SRV_IP=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' ${P}srv)
    for _ in $(seq "$RUNS"); do
      gbps podman run --rm --network ${P}net --rootfs "$ROOTFS" /usr/bin/iperf3 -c "$SRV_IP" -t "$SECS" -J >>"$TMP/peer" || break
    done
    [ -s "$TMP/peer" ] && PEER="podman (netavark)"
  else
    echo "podman run failed: $(head -c 300 "$TMP/podman.err")" >&2
  fi
fi
if [ -z "$PEER" ]; then
  ip netns add ${P}x; ip netns add ${P}y
  ip link add ${P}br type bridge; ip addr add "$S2.1/24" dev ${P}br; ip link set ${P}br up
  n=2
  for ns in x y; do
    ip link add ${P}v$ns type veth peer name ${P}p$ns
    ip link set ${P}v$ns master ${P}br up
    ip link set ${P}p$ns netns ${P}$ns
    ip -n ${P}$ns link set ${P}p$ns name eth0
    ip -n ${P}$ns addr add "$S2.$n/24" dev eth0
    ip -n ${P}$ns link set eth0 up; ip -n ${P}$ns link set lo up
    n=$((n + 1))
  done
  : >"$TMP/peer"
  for _ in $(seq "$RUNS"); do
    ip netns exec ${P}y iperf3 -s -1 -B "$S2.3" >/dev/null 2>&1 &
    srv=$!
    until ip netns exec ${P}y ss -ltn | grep -q ":5201 "; do sleep 0.05; done
    gbps ip netns exec ${P}x iperf3 -c "$S2.3" -t "$SECS" -J >>"$TMP/peer"
    wait $srv
  done
  PEER="plain Linux bridge"
fi
PEERV=$(median <"$TMP/peer")

echo "container<->container TCP, iperf3 -t $SECS, median of $RUNS"
printf '  corral bridge        %6s Gbit/s  (runs: %s)\n' "$CORRAL" "$(tr '\n' ' ' <"$TMP/corral")"
printf '  %-20s %6s Gbit/s  (runs: %s)\n' "$PEER" "$PEERV" "$(tr '\n' ' ' <"$TMP/peer")"
awk -v a="$CORRAL" -v b="$PEERV" 'BEGIN { printf "  ratio corral/peer    %6.2fx (goal >= 1.0x)\n", a / b }'
echo "  VM virtio-net: not measured yet (needs the VMM's virtio-net)"
