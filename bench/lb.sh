#!/usr/bin/env bash
# corral's HTTP balancer against HAProxy: same 3 nginx backends on 127.0.0.1, round robin,
# keep-alive on both sides, X-Forwarded-For added by both; wrk runs alternate between the two.
# Prints req/s, p50 and p99 per run, the medians, and the ratios corral/HAProxy.
# Usage: bench/lb.sh [ROUNDS (default 3)] [DURATION (default 5s)] [CONNECTIONS (default 50)]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
DURATION=${2:-5s}
CONNS=${3:-50}
for tool in nginx haproxy wrk; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "bench/lb.sh: $tool is missing (scripts/setup.sh --deps-only installs it)" >&2; exit 1; }
done
PATH=$PATH:/usr/sbin

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p corral-lb --example corral-lb
LB_BIN=$CARGO_TARGET_DIR/release/examples/corral-lb

WORK=$(mktemp -d /tmp/corral-bench-lb.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench/lb.sh: nothing listens on port $1" >&2; exit 1
}

B1=$(free_port); B2=$(free_port); B3=$(free_port); HA=$(free_port); CO=$(free_port)

# Three tiny backends: one nginx master, one worker, three ports.
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
  client_body_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$B1; location / { return 200 "backend 1\n"; } }
  server { listen 127.0.0.1:$B2; location / { return 200 "backend 2\n"; } }
  server { listen 127.0.0.1:$B3; location / { return 200 "backend 3\n"; } }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" 2>"$WORK/nginx.err" &
PIDS+=($!)

CORES=$(nproc)
cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread $CORES
  maxconn 4096
defaults
  mode http
  timeout connect 3s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend web
  bind 127.0.0.1:$HA
  default_backend app
backend app
  balance roundrobin
  server b1 127.0.0.1:$B1
  server b2 127.0.0.1:$B2
  server b3 127.0.0.1:$B3
EOF
haproxy -f "$WORK/haproxy.cfg" -q &
PIDS+=($!)

cat > "$WORK/corral-lb.toml" <<EOF
[[service]]
name = "web"
listen = "127.0.0.1:$CO"
mode = "http"
algorithm = "round_robin"
backends = ["127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3"]
EOF
"$LB_BIN" "$WORK/corral-lb.toml" >"$WORK/corral-lb.out" &
PIDS+=($!)

for p in $B1 $B2 $B3 $HA $CO; do wait_port "$p"; done
for p in $HA $CO; do
  body=$(curl -fsS "http://127.0.0.1:$p/" 2>/dev/null || python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$p/').read().decode(),end='')")
  case "$body" in "backend "*) ;; *) echo "bench/lb.sh: port $p answered '$body'" >&2; exit 1;; esac
done

# wrk prints latencies with units; convert to microseconds.
to_us() { awk -v v="$1" 'BEGIN { n=v+0; u=v; sub(/^[0-9.]+/, "", u);
  if (u=="us") print n; else if (u=="ms") print n*1000; else if (u=="s") print n*1000000; else print n }'; }

run_wrk() { # PORT -> "rps p50_us p99_us"
  local out
  out=$(wrk -t1 -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$1/")
  if echo "$out" | grep -q 'Non-2xx\|Socket errors'; then
    echo "bench/lb.sh: errors during run on port $1:" >&2; echo "$out" | grep 'Non-2xx\|Socket errors' >&2
  fi
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(to_us "$(echo "$out" | awk '$1=="50%" {print $2}')")
  p99=$(to_us "$(echo "$out" | awk '$1=="99%" {print $2}')")
  echo "$rps $p50 $p99"
}

median() { sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# Warm both up once (connection pools, page cache).
wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$HA/" >/dev/null
wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$CO/" >/dev/null

printf '%-8s %5s %12s %10s %10s\n' peer round req/s p50_us p99_us
: > "$WORK/haproxy.res"; : > "$WORK/corral.res"
for r in $(seq 1 "$ROUNDS"); do
  for peer in haproxy corral; do
    port=$HA; [ "$peer" = corral ] && port=$CO
    res=$(run_wrk "$port")
    echo "$res" >> "$WORK/$peer.res"
    read -r rps p50 p99 <<<"$res"
    printf '%-8s %5s %12s %10s %10s\n' "$peer" "$r" "$rps" "$p50" "$p99"
  done
done

col() { awk -v c="$2" '{print $c}' "$WORK/$1.res" | median; }
H_RPS=$(col haproxy 1); H_P50=$(col haproxy 2); H_P99=$(col haproxy 3)
C_RPS=$(col corral 1); C_P50=$(col corral 2); C_P99=$(col corral 3)
echo
printf 'median   haproxy: %s req/s  p50 %s us  p99 %s us\n' "$H_RPS" "$H_P50" "$H_P99"
printf 'median   corral:  %s req/s  p50 %s us  p99 %s us\n' "$C_RPS" "$C_P50" "$C_P99"
awk -v cr="$C_RPS" -v hr="$H_RPS" -v c5="$C_P50" -v h5="$H_P50" -v c9="$C_P99" -v h9="$H_P99" 'BEGIN {
  printf "ratio    corral/haproxy: req/s %.2fx (goal >= 1.0)  p50 %.2fx  p99 %.2fx (goal <= 1.0)\n", cr/hr, c5/h5, c9/h9 }'
