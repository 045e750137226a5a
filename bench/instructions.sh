#!/usr/bin/env bash
# What one proxied request costs each proxy in its own code, counted rather than timed:
# `securecart proxy`, nginx and HAProxy each run under valgrind's cachegrind (L1 caches of
# 32 KiB, an L2 of 1 MiB, as on this machine's cores) and answer REQUESTS, then 3 x
# REQUESTS, keep-alive GETs of a small answer from the same origin, one at a time over one
# connection. The difference of the two runs, per request, leaves out start-up and
# shut-down: the instructions each proxy runs in user space, and its L1 instruction and
# data cache misses. The kernel's share (system calls, TCP over loopback) is not counted.
#
#   bench/instructions.sh                 # REQUESTS=1000 by default
#
# Instruction counts move by well under 1% from run to run whatever else the machine does
# (cache misses move more), so a change to the edge's request path can be measured where
# wrk's rounds differ by more than it. securecart also runs its health checks (a request
# to the origin every 5 s), of which the longer run holds a few more: some tens of
# instructions per request in its figure.
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${REQUESTS:-1000}
BASE_PORT=${BASE_PORT:-18400}
ORIGIN_PORT=$BASE_PORT
PROXY_PORT=$((BASE_PORT + 1))

# shellcheck source=bench/common.sh
source bench/common.sh
need valgrind valgrind
need nginx nginx-light
need haproxy haproxy
need curl curl
WORK_NAME=instructions
prepare

{
  nginx_start origin 1024
  cat <<CONF
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    location = /small { default_type text/plain; return 200 "hello, world\n"; }
  }
}
CONF
} >"$WORK/origin.conf"
# nginx in one process (no master), so that cachegrind sees the worker's requests.
{
  nginx_start nginx 1024 "master_process off;"
  cat <<CONF
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 16; }
  server {
    listen 127.0.0.1:$PROXY_PORT;
CONF
  nginx_proxy_location
  echo "  }"
  echo "}"
} >"$WORK/nginx.conf"
haproxy_proxy 1000 "$ORIGIN_PORT" "127.0.0.1:$PROXY_PORT" >"$WORK/haproxy.cfg"
cat >"$WORK/client.py" <<'PY'
import http.client, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
connection = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(count):
    connection.request("GET", "/small")
    answer = connection.getresponse()
    answer.read()
    if answer.status != 200:
        sys.exit(f"answer {answer.status}")
PY

start origin 0 nginx -c "$WORK/origin.conf" -p "$WORK"

# run NAME COUNT COMMAND...: COMMAND under cachegrind, answering COUNT requests (after the
# readiness check's), then stopped; its counts in $WORK/NAME-COUNT.out.
run() {
  local name=$1 count=$2
  shift 2
  valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 \
    --LL=1048576,16,64 --cachegrind-out-file="$WORK/$name-$count.out" "$@" \
    >"$WORK/$name-$count.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  local ready=""
  for _ in $(seq 200); do
    if curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$PROXY_PORT/small"; then
      ready=yes
      break
    fi
    sleep 0.2
  done
  [[ -n $ready ]] || { log "$name did not answer"; cat "$WORK/$name-$count.log" >&2; exit 1; }
  timeout 600 python3 "$WORK/client.py" "$PROXY_PORT" "$count"
  kill -TERM "$pid"
  # Bounded: a proxy that does not stop within a minute is killed (and its counts lost).
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" || true
  # Stopped: no longer for the cleanup at exit, which might find its pid reused.
  local kept=() other
  for other in "${PIDS[@]}"; do
    [[ $other == "$pid" ]] || kept+=("$other")
  done
  PIDS=("${kept[@]}")
}

for count in "$REQUESTS" $((3 * REQUESTS)); do
  log "securecart, $count requests"
  SECURECART_LOG=warn run securecart "$count" "$BIN" proxy --workers 1 \
    --listen "127.0.0.1:$PROXY_PORT" --upstream "http://127.0.0.1:$ORIGIN_PORT" --health-path /small
  log "nginx, $count requests"
  run nginx "$count" nginx -c "$WORK/nginx.conf" -p "$WORK"
  log "haproxy, $count requests"
  run haproxy "$count" haproxy -db -f "$WORK/haproxy.cfg"
done

echo "Per proxied request (the difference of $REQUESTS and $((3 * REQUESTS)) keep-alive GETs of a small answer), user space only, from cachegrind:"
echo
python3 - "$WORK" "$REQUESTS" <<'PY'
import sys
work, requests = sys.argv[1], int(sys.argv[2])
def summary(path):
    events = None
    for line in open(path):
        if line.startswith("events:"):
            events = line.split()[1:]
        if line.startswith("summary:"):
            return dict(zip(events, map(int, line.split()[1:])))
    sys.exit(f"no summary in {path}")
rows = {}
for name in ("securecart", "nginx", "haproxy"):
    low = summary(f"{work}/{name}-{requests}.out")
    high = summary(f"{work}/{name}-{3 * requests}.out")
    each = {key: (high[key] - low[key]) / (2 * requests) for key in low}
    rows[name] = (each["Ir"], each["I1mr"], each["D1mr"] + each["D1mw"])
ours = rows["securecart"][0]
print("| proxy | instructions | L1 instruction misses | L1 data misses | securecart ÷ proxy (instructions) |")
print("|---|---:|---:|---:|---:|")
for name, (instructions, code, data) in rows.items():
    ratio = "" if name == "securecart" else f"{ours / instructions:.2f}x"
    print(f"| {name} | {instructions:,.0f} | {code:,.0f} | {data:,.0f} | {ratio} |")
PY
