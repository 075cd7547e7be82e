#!/usr/bin/env bash
# Image benchmark: corral vs buildah (build) and skopeo (pull), in one run, medians and ratios.
#   - the same 3-step Containerfile (COPY, RUN, CMD on a busybox base) built cold (no cache) and
#     again with the cache, by `corral build` and by `buildah bud --layers` (vfs storage in a
#     temp dir);
#   - a pull of a ~50 MB image from a local docker-registry on 127.0.0.1, by `corral image
#     pull` and by `skopeo copy` (to an OCI layout), each into an empty store.
# Goals (issue 6): corral <= 0.5x buildah cold, <= 0.1x with cache, <= 1.0x skopeo.
#
#   bench/image.sh [RUNS]        (default 5; needs root, buildah, skopeo, docker-registry;
#                                 CORRAL=path picks the binary, default the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
for tool in buildah skopeo docker-registry; do
  command -v "$tool" >/dev/null || { echo "bench/image.sh: $tool is missing (scripts/setup.sh --deps-only)" >&2; exit 1; }
done
corral=${CORRAL:-${CARGO_TARGET_DIR:-$PWD/target}/release/corral}
[ -x "$corral" ] || cargo build --release -p corral -q

work=$(mktemp -d /tmp/image-bench-$$.XXXXXX)
regpid=
cleanup() {
  [ -n "$regpid" ] && kill "$regpid" 2>/dev/null && wait "$regpid" 2>/dev/null || true
  for m in $(grep -o "$work[^ ]*" /proc/mounts 2>/dev/null | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export CORRAL_ROOT=$work/corral CORRAL_RUN=$work/run
bah=(buildah --root "$work/buildah" --runroot "$work/buildah-run" --storage-driver vfs)

# Times "$@" once, printing seconds.
t() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || { echo "bench/image.sh: failed: $*" >&2; "$@" >&2 || true; exit 1; }; e=$(date +%s%N); echo "scale=4; ($e - $s) / 1000000000" | bc; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { echo "scale=3; $1 / $2" | bc; }

echo "== corral: $corral"
echo "== setup: busybox base image in both stores"
CORRAL="$corral" scripts/busybox-image.sh localhost/busybox:latest >/dev/null
"$corral" image save --format oci -o "$work/busybox-oci.tar" localhost/busybox:latest
"${bah[@]}" pull -q "oci-archive:$work/busybox-oci.tar" >/dev/null
"${bah[@]}" tag "$("${bah[@]}" images -q | head -1)" localhost/busybox:latest

ctx=$work/ctx
mkdir -p "$ctx/app"
for i in $(seq 1 200); do head -c 4096 /dev/urandom > "$ctx/app/file$i"; done
cat > "$ctx/Containerfile" <<'CF'
FROM localhost/busybox:latest
COPY app/ /app/
RUN echo built > /app/stamp && ls /app | wc -l > /app/count
CMD ["/bin/sh"]
CF

echo "== build, cold ($runs runs each)"
c_cold=$(for _ in $(seq "$runs"); do t "$corral" build --no-cache -t bench:cold "$ctx"; done | median)
b_cold=$(for _ in $(seq "$runs"); do t "${bah[@]}" bud --layers --no-cache -t bench:cold "$ctx"; done | median)
echo "== build, with cache"
"$corral" build -t bench:warm "$ctx" >/dev/null
"${bah[@]}" bud --layers -t bench:warm "$ctx" >/dev/null 2>&1
c_warm=$(for _ in $(seq "$runs"); do t "$corral" build -t bench:warm "$ctx"; done | median)
b_warm=$(for _ in $(seq "$runs"); do t "${bah[@]}" bud --layers -t bench:warm "$ctx"; done | median)

echo "== pull of a ~50 MB image from a local registry"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<Y
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
Y
docker-registry serve "$work/registry.yml" > "$work/registry-access.log" 2> "$work/registry.log" &
regpid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/registry.log" && break; sleep 0.1; done
grep -q "listening on" "$work/registry.log" || { echo "registry did not start" >&2; cat "$work/registry.log" >&2; exit 1; }
mkdir -p "$work/big/data"
head -c $((50 * 1024 * 1024)) /dev/urandom > "$work/big/data/blob"
tar -C "$work/big" -cf "$work/big.tar" .
"$corral" image import "$work/big.tar" "127.0.0.1:$port/bench/big:1" >/dev/null
"$corral" image push --insecure "127.0.0.1:$port/bench/big:1" >/dev/null
ref=127.0.0.1:$port/bench/big:1
pull_corral() { rm -rf "$work/pull-root"; CORRAL_ROOT=$work/pull-root "$corral" image pull --insecure "$ref"; }
pull_skopeo() { rm -rf "$work/pull-oci"; skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$work/pull-oci:big"; }
c_pull=$(for _ in $(seq "$runs"); do t pull_corral; done | median)
s_pull=$(for _ in $(seq "$runs"); do t pull_skopeo; done | median)

printf '\n%-22s %10s %10s %8s %8s\n' "benchmark (median s)" corral peer ratio goal
printf '%-22s %10s %10s %8s %8s\n' "build cold vs buildah" "$c_cold" "$b_cold" "$(ratio "$c_cold" "$b_cold")" "<=0.5"
printf '%-22s %10s %10s %8s %8s\n' "build cached vs buildah" "$c_warm" "$b_warm" "$(ratio "$c_warm" "$b_warm")" "<=0.1"
printf '%-22s %10s %10s %8s %8s\n' "pull 50MB vs skopeo" "$c_pull" "$s_pull" "$(ratio "$c_pull" "$s_pull")" "<=1.0"
