#!/usr/bin/env bash
# `corral app up -d` to all-ready for a 3-service Compose app (busybox httpd behind a published
# port, a busybox nc TCP echo behind a published port, a worker without ports), then
# `app down`; ROUNDS times against one warm daemon in a private root. `app up -d` returns only
# once every replica runs and every published service's replicas accept connections through
# the balancer's backends. Prints each round and the medians. Goal: up < 1 s.
# Usage: bench/app-up.sh [ROUNDS (default 5)]        CORRAL=path/to/corral to skip the build
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench/app-up.sh: needs root (containers)" >&2; exit 1; }
if [ -z "${CORRAL:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
  cargo build --release -q -p corral
  CORRAL=$CARGO_TARGET_DIR/release/corral
fi

WORK=$(mktemp -d /tmp/corral-bench-app.XXXXXX)
export CORRAL_ROOT=$WORK/root CORRAL_RUN=$WORK/run
APP=bench$$
cleanup() {
  "$CORRAL" app down -p "$APP" >/dev/null 2>&1 || true
  "$CORRAL" network prune >/dev/null 2>&1 || true
  if [ -f "$CORRAL_RUN/corral.pid" ]; then kill "$(cat "$CORRAL_RUN/corral.pid")" 2>/dev/null || true; fi
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEB=$(free_port); ECHO=$(free_port)
mkdir -p "$WORK/proj"
cat > "$WORK/proj/compose.yaml" <<YAML
services:
  web:
    image: busybox
    command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
    ports: ["$WEB:8080"]
  echo:
    image: busybox
    command: ["nc", "-ll", "-p", "7", "-e", "cat"]
    ports: ["$ECHO:7"]
  worker:
    image: busybox
    command: ["sleep", "3600"]
YAML
CORRAL=$CORRAL scripts/busybox-image.sh >/dev/null
cd "$WORK/proj"
"$CORRAL" ps >/dev/null   # start the daemon outside the measurement

ups=(); downs=()
for i in $(seq 1 "$ROUNDS"); do
  t0=$(date +%s.%N)
  "$CORRAL" app up -d -p "$APP" >/dev/null
  t1=$(date +%s.%N)
  curl -sf "http://127.0.0.1:$WEB/" >/dev/null || { echo "round $i: web not answering" >&2; exit 1; }
  "$CORRAL" app down -p "$APP" >/dev/null 2>&1
  t2=$(date +%s.%N)
  up=$(echo "$t1 - $t0" | bc); down=$(echo "$t2 - $t1" | bc)
  ups+=("$up"); downs+=("$down")
  printf 'round %d: up %.3f s, down %.3f s\n' "$i" "$up" "$down"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf 'median: app up to all-ready %.3f s (goal < 1 s), app down %.3f s\n' "$(median "${ups[@]}")" "$(median "${downs[@]}")"
