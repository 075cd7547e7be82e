#!/usr/bin/env bash
# TCP throughput (Debian's iperf3) over corral's bridge against the peers the issue names, in
# one run; medians in Gbit/s and the ratios corral/peer:
#  1. container<->container: two `corral run` containers on a corral network, against two
#     podman containers on a podman (netavark) bridge network, both from the same root
#     filesystem (iperf3 and its libraries). If podman cannot run a container here, the peer
#     is two network namespaces on a plain Linux bridge, and the report says so.
#  2. container<->VM: a corral container and a VM (`corral vm create --network`: a tap on the
#     network's bridge, virtio-net, the guest's address as `ip=` on its command line, booted
#     under the software CPU, which is how Linux boots on this host), against the same
#     container and QEMU (`qemu-system-x86_64 -accel tcg -M microvm`, virtio-net on a tap of
#     the same bridge, no vhost), with the same kernel and initramfs (busybox, iperf3 and its
#     libraries copied in through ldd), one vCPU and 256 MiB each. Both directions: the
#     container sends to the guest's iperf3 server, then receives from it (-R).
# Bounded: RUNS runs of SECS seconds per pair and direction; every iperf3 has a timeout; traffic
# only on the bridges and taps this script makes (a private daemon with its own root, link
# prefix, nftables table and pool). Usage (root):
#   bench/net.sh                 env: RUNS (3), SECS (5), VM_SECS (SECS),
#                                     CORRAL (default $CARGO_TARGET_DIR/release/corral, built),
#                                     CORRAL_GUEST_KERNEL (default /var/lib/corral/kernels/vmlinux
#                                     from scripts/guest-kernel.sh, else ../shared/guest's)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-5}
VM_SECS=${VM_SECS:-$SECS}
MARKER=CORRAL-NET-BENCH-READY
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
CORRAL=${CORRAL:-$CARGO_TARGET_DIR/release/corral}
KERNEL=${CORRAL_GUEST_KERNEL:-/var/lib/corral/kernels/vmlinux}
[ -s "$KERNEL" ] || KERNEL=$(realpath -m ../shared/guest/vmlinux-microvm)

[ "$(id -u)" = 0 ] || { echo "bench/net.sh needs root" >&2; exit 1; }
for t in iperf3 ip nft cpio qemu-system-x86_64 python3 /bin/busybox; do
  command -v "$t" >/dev/null || { echo "bench/net.sh needs $t (scripts/setup.sh)" >&2; exit 1; }
done
[ -s "$KERNEL" ] || { echo "guest kernel $KERNEL missing (scripts/guest-kernel.sh)" >&2; exit 1; }
if [ ! -x "$CORRAL" ]; then
  nice -n 10 cargo build -q --release -p corral
fi
CORRAL=$(realpath "$CORRAL")

P=cbn$(($$ % 10000))
WORK=$(mktemp -d "${TMPDIR:-/tmp}/net-bench.XXXXXX")
export CORRAL_ROOT=$WORK/root CORRAL_RUN=$WORK/run CORRAL_NET_PREFIX=$P
# The VMM's choice of CPU backend goes to its vmm.log (the daemon and VMM inherit this).
export RUST_LOG=${RUST_LOG:-warn,corral::commands::vmm=info}
QEMU_PID=""
PODMAN_NET=""

corral() { "$CORRAL" "$@"; }

cleanup() {
  set +e
  [ -n "$QEMU_PID" ] && kill "$QEMU_PID" 2>/dev/null && wait "$QEMU_PID" 2>/dev/null
  if [ -S "$CORRAL_RUN/corral.sock" ]; then
    for v in ${P}vm ${P}qemu; do
      corral vm off $v >/dev/null 2>&1; corral vm rm $v >/dev/null 2>&1
    done
    for c in $(corral ps -a --format json 2>/dev/null | python3 -c 'import json,sys; [print(c["id"]) for c in json.load(sys.stdin)]'); do
      corral rm -f "$c" >/dev/null 2>&1
    done
    corral network prune >/dev/null 2>&1
    pid=$(cat "$CORRAL_RUN/corral.pid" 2>/dev/null)
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  fi
  if [ -n "$PODMAN_NET" ]; then
    podman rm -f ${P}srv >/dev/null 2>&1; podman network rm -f "$PODMAN_NET" >/dev/null 2>&1
  fi
  ip netns del ${P}x 2>/dev/null; ip netns del ${P}y 2>/dev/null; ip link del ${P}br 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# A free /24 in 10.216.0.0/16 that no host route covers, from the $1-th on.
free_subnet() {
  local i
  for i in $(seq "$1" 250); do
    ip route | grep -q "^10\.216\.$i\." || { echo "10.216.$i"; return; }
  done
  echo "no free subnet" >&2; exit 1
}
# Gbit/s received, from iperf3 -J on stdin.
gbps() {
  python3 -c '
import json, sys
text = sys.stdin.read()
try:
    d = json.loads(text)
    print("%.3f" % (d["end"]["sum_received"]["bits_per_second"] / 1e9))
except (ValueError, KeyError) as e:
    sys.exit("iperf3 gave no result: %s" % ((d.get("error") if isinstance(locals().get("d"), dict) else None) or text[-300:] or e))
'
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "n/a"}'; }
runs() { tr '\n' ' ' <"$1"; }
# Field $2 of instance $1's network attachment.
inspect_net() {
  corral inspect "$1" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['network']['$2'])"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "n/a") printf "%.2fx", a / b; else print "n/a" }'; }

# --- the root filesystem both container engines run: iperf3, its libraries, /tmp ---
ROOTFS=$WORK/rootfs
mkdir -p "$ROOTFS/usr/bin" "$ROOTFS/etc" "$ROOTFS/tmp"
chmod 1777 "$ROOTFS/tmp"
copy_iperf3() {
  cp /usr/bin/iperf3 "$1/usr/bin/"
  local lib
  for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
    mkdir -p "$1$(dirname "$lib")"; cp -L "$lib" "$1$lib"
  done
}
copy_iperf3 "$ROOTFS"
echo 'root:x:0:0:root:/:/usr/bin/iperf3' >"$ROOTFS/etc/passwd"
tar --owner=0 --group=0 -C "$ROOTFS" -cf "$WORK/rootfs.tar" .

S1=$(free_subnet 10)
export CORRAL_NET_POOL=$S1.0/24
corral image import "$WORK/rootfs.tar" ${P}-iperf3:bench >/dev/null
corral network create ${P}n >/dev/null
IMG=${P}-iperf3:bench

# iperf3 client in a corral container on the network: Gbit/s to $1 (extra args after).
corral_client() {
  local to=$1; shift
  timeout $((VM_SECS + SECS + 120)) "$CORRAL" run --rm --network ${P}n "$IMG" \
    /usr/bin/iperf3 -c "$to" -J "$@" | gbps
}

# --- 1. container<->container over corral's bridge ---
corral run -d --name ${P}srv --network ${P}n "$IMG" /usr/bin/iperf3 -s >/dev/null
SRV_IP=$(inspect_net ${P}srv ip)
: >"$WORK/corral-cc"
for _ in $(seq "$RUNS"); do
  corral_client "$SRV_IP" -t "$SECS" >>"$WORK/corral-cc"
done
corral rm -f ${P}srv >/dev/null

# --- the peer: podman's bridge network, else a plain Linux bridge ---
PEER=""
PEER_NOTE=""
S2=$(free_subnet 100)
# runc cannot raise the hard NOFILE/NPROC limits here, so podman's defaults are lowered.
# The root filesystem is podman's first argument after --rootfs and the options.
PODMAN_RUN=(podman run --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
: >"$WORK/peer-cc"
if command -v podman >/dev/null && podman network create --subnet "$S2.0/24" ${P}pn >/dev/null 2>"$WORK/podman.err"; then
  PODMAN_NET=${P}pn
  if "${PODMAN_RUN[@]}" -d --name ${P}srv --network ${P}pn --rootfs "$ROOTFS" /usr/bin/iperf3 -s >/dev/null 2>"$WORK/podman.err"; then
    PSRV_IP=$(podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' ${P}srv)
    for _ in $(seq "$RUNS"); do
      timeout $((SECS + 60)) "${PODMAN_RUN[@]}" --rm --network ${P}pn --rootfs "$ROOTFS" /usr/bin/iperf3 -c "$PSRV_IP" -t "$SECS" -J 2>>"$WORK/podman.err" \
        | gbps >>"$WORK/peer-cc" || break
    done
  fi
  [ -s "$WORK/peer-cc" ] && PEER="podman $(podman --version | awk '{print $3}') ($(podman info --format '{{.Host.NetworkBackend}}') bridge)"
fi
if [ -z "$PEER" ]; then
  PEER_NOTE="podman could not run a container here ($(tail -n1 "$WORK/podman.err" 2>/dev/null | head -c 200)); the peer is a plain Linux bridge with two veth netns, NOT podman"
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
  : >"$WORK/peer-cc"
  for _ in $(seq "$RUNS"); do
    timeout $((SECS + 60)) ip netns exec ${P}y iperf3 -s -1 -B "$S2.3" >/dev/null 2>&1 &
    srv=$!
    until ip netns exec ${P}y ss -ltn | grep -q ":5201 "; do sleep 0.05; done
    timeout $((SECS + 60)) ip netns exec ${P}x iperf3 -c "$S2.3" -t "$SECS" -J | gbps >>"$WORK/peer-cc"
    wait $srv
  done
  PEER="plain Linux bridge"
fi

# --- 2. container<->VM: the guest's initramfs ---
GUEST=$WORK/guest
mkdir -p "$GUEST"/{bin,usr/bin,proc,sys,dev,tmp}
cp /bin/busybox "$GUEST/bin/busybox"
copy_iperf3 "$GUEST"
cat >"$GUEST/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
ip link set eth0 up
for a in \$(cat /proc/cmdline); do
  case \$a in ip=*) v=\${a#ip=}; IP=\${v%%:*}; r=\${v#*::}; GW=\${r%%:*}; r=\${r#*:}; MASK=\${r%%:*};; esac
done
# A kernel with CONFIG_IP_PNP has applied ip= already; one without gets it here.
if ! ip -4 addr show dev eth0 | grep -q "inet \$IP/"; then
  eval \$(ipcalc -p "\$IP" "\$MASK")
  ip addr add "\$IP/\$PREFIX" dev eth0
  ip route add default via "\$GW"
fi
iperf3 -s >/dev/null 2>&1 &
until netstat -ltn | grep -q ':5201 '; do sleep 1; done
echo $MARKER \$IP
sleep 3600
poweroff -f
EOF
chmod +x "$GUEST/init"
(cd "$GUEST" && find . | cpio -o -H newc --quiet >"$WORK/guest.cpio")
CMDLINE="console=ttyS0 quiet panic=-1"

# Wait (bounded) for the guest's marker in $1; the time it took on stdout.
wait_marker() {
  local start=$SECONDS
  until grep -q "$MARKER" "$1" 2>/dev/null; do
    if [ $((SECONDS - start)) -gt 600 ]; then
      echo "the guest never got ready; its console:" >&2; tail -n 30 "$1" >&2; exit 1
    fi
    sleep 1
  done
  echo $((SECONDS - start))
}

# Client runs to the guest at $1 into files $2 (container->VM) and $3 (VM->container).
vm_runs() {
  : >"$2"; : >"$3"
  for _ in $(seq "$RUNS"); do
    corral_client "$1" -t "$VM_SECS" >>"$2"
    corral_client "$1" -t "$VM_SECS" -R >>"$3"
  done
}

# corral's VM.
corral vm create ${P}vm --kernel "$KERNEL" --initrd "$WORK/guest.cpio" --cmdline "$CMDLINE" \
  --memory 256M --cpus 1 --network ${P}n >/dev/null
VM_IP=$(inspect_net ${P}vm ip)
corral vm start ${P}vm >/dev/null
VM_BOOT=$(wait_marker "$CORRAL_ROOT/vms/${P}vm/logs/serial.log")
VM_BACKEND=$(sed 's/\x1b\[[0-9;]*m//g' "$CORRAL_ROOT/vms/${P}vm/logs/vmm.log" | grep -o -m1 'backend [a-z]*:[^;"]*' || true)
vm_runs "$VM_IP" "$WORK/corral-cv" "$WORK/corral-vc"
corral vm off ${P}vm >/dev/null
corral vm rm ${P}vm >/dev/null

# QEMU on a tap corral makes on the same bridge (a VM defined, never started: its tap, address
# and MAC come from corral's IPAM like any VM's).
corral vm create ${P}qemu --kernel "$KERNEL" --initrd "$WORK/guest.cpio" --cmdline "$CMDLINE" \
  --memory 256M --cpus 1 --network ${P}n >/dev/null
Q_IP=$(inspect_net ${P}qemu ip)
Q_TAP=$(inspect_net ${P}qemu host_link)
Q_MAC=$(inspect_net ${P}qemu mac)
Q_GW=$(inspect_net ${P}qemu gateway)
Q_MASK=$(python3 -c "import ipaddress; print(ipaddress.ip_network('0.0.0.0/$(inspect_net ${P}qemu prefix_len)').netmask)")
qemu-system-x86_64 -accel tcg -M microvm,acpi=off -cpu max -m 256 -smp 1 -nodefaults \
  -display none -no-reboot -serial "file:$WORK/qemu-serial.log" \
  -kernel "$KERNEL" -initrd "$WORK/guest.cpio" \
  -append "$CMDLINE ip=$Q_IP::$Q_GW:$Q_MASK::eth0:off" \
  -netdev "tap,id=n0,ifname=$Q_TAP,script=no,downscript=no,vhost=off" \
  -device "virtio-net-device,netdev=n0,mac=$Q_MAC" </dev/null >"$WORK/qemu.out" 2>&1 &
QEMU_PID=$!
Q_BOOT=$(wait_marker "$WORK/qemu-serial.log")
vm_runs "$Q_IP" "$WORK/qemu-cv" "$WORK/qemu-vc"
kill "$QEMU_PID"; wait "$QEMU_PID" 2>/dev/null || true; QEMU_PID=""
corral vm rm ${P}qemu >/dev/null

CC=$(median <"$WORK/corral-cc"); PC=$(median <"$WORK/peer-cc")
CV=$(median <"$WORK/corral-cv"); QV=$(median <"$WORK/qemu-cv")
VC=$(median <"$WORK/corral-vc"); QC=$(median <"$WORK/qemu-vc")
echo "bench/net.sh: iperf3 TCP throughput, median of $RUNS runs ($CORRAL, kernel $KERNEL)"
echo "container<->container, -t $SECS s"
printf '  %-44s %8s Gbit/s  (runs: %s)\n' "corral bridge (corral run)" "$CC" "$(runs "$WORK/corral-cc")"
printf '  %-44s %8s Gbit/s  (runs: %s)\n' "$PEER" "$PC" "$(runs "$WORK/peer-cc")"
[ -n "$PEER_NOTE" ] && echo "  NOTE: $PEER_NOTE"
printf '  %-44s %8s (goal >= 1.0x)\n' "ratio corral/peer" "$(ratio "$CC" "$PC")"
echo "container<->VM, -t $VM_SECS s, 1 vCPU, 256 MiB, virtio-net on a tap of corral's bridge"
echo "  corral VM: ${VM_BACKEND:-backend not logged}; guest ready after ${VM_BOOT} s"
echo "  QEMU: TCG, -M microvm, virtio-net-device, tap, vhost=off; guest ready after ${Q_BOOT} s"
printf '  %-44s %8s Gbit/s  (runs: %s)\n' "container->VM  corral VM" "$CV" "$(runs "$WORK/corral-cv")"
printf '  %-44s %8s Gbit/s  (runs: %s)\n' "container->VM  QEMU" "$QV" "$(runs "$WORK/qemu-cv")"
printf '  %-44s %8s (goal >= 1.0x)\n' "ratio corral/QEMU" "$(ratio "$CV" "$QV")"
printf '  %-44s %8s Gbit/s  (runs: %s)\n' "VM->container  corral VM (-R)" "$VC" "$(runs "$WORK/corral-vc")"
printf '  %-44s %8s Gbit/s  (runs: %s)\n' "VM->container  QEMU (-R)" "$QC" "$(runs "$WORK/qemu-vc")"
printf '  %-44s %8s (goal >= 1.0x)\n' "ratio corral/QEMU" "$(ratio "$VC" "$QC")"
