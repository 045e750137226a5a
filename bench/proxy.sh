#!/usr/bin/env bash
# The edge as a reverse proxy against the proxies a user would pick instead: SecureCart's
# `securecart proxy` beside nginx and HAProxy, all in front of the same origin, measured
# with wrk in one run.
#
#   bench/proxy.sh                  # ROUNDS=3 DURATION=5 CONNECTIONS=64 by default
#
# Cases: 13-byte answers over keep-alive connections, 16 KiB answers, a new connection per
# request, and HTTPS (TLS 1.3, ECDSA P-256, keep-alive) with the origin behind in plain HTTP.
#
# Fairness on a 2-core machine: every proxy runs one worker (nginx worker_processes 1,
# HAProxy nbthread 1, securecart --workers 1) pinned to core $PROXY_CPU; wrk and the origin
# (nginx serving fixed answers) share the other core. Rounds are interleaved (each case runs
# every target in turn, round after round) and medians reported, with the server's own CPU
# time per request beside the throughput, because the load generator may saturate first.
# Every run is bounded by DURATION; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-2000}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE_PORT=${BASE_PORT:-18100}

ORIGIN_PORT=$BASE_PORT
SECURECART_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
HAPROXY_PORT=$((BASE_PORT + 3))
SECURECART_TLS_PORT=$((BASE_PORT + 4))
NGINX_TLS_PORT=$((BASE_PORT + 5))
HAPROXY_TLS_PORT=$((BASE_PORT + 6))

# shellcheck source=bench/common.sh
source bench/common.sh
need nginx nginx-light
need haproxy haproxy
need wrk wrk
need curl curl
need openssl openssl
WORK_NAME=bench
prepare

head -c 16384 /dev/urandom | base64 -w 0 | head -c 16384 >"$WORK/16k"
# One ECDSA P-256 certificate for every proxy's HTTPS listener.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/haproxy.pem"
# nginx workers run as an unprivileged user: let them read the origin's file.
chmod 644 "$WORK/16k" "$WORK"/*.pem

# The origin: nginx answering from memory and the page cache, on the load generator's core.
{
  nginx_start origin 8192
  cat <<CONF
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    location = /small { default_type text/plain; return 200 "hello, world\n"; }
    location = /16k { default_type application/octet-stream; alias $WORK/16k; }
  }
}
CONF
} >"$WORK/origin.conf"

{
  nginx_start nginx 16384
  cat <<CONF
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    listen 127.0.0.1:$NGINX_TLS_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
CONF
  nginx_proxy_location
  echo "  }"
  echo "}"
} >"$WORK/nginx.conf"

haproxy_proxy 8000 "$ORIGIN_PORT" "127.0.0.1:$HAPROXY_PORT" \
  "127.0.0.1:$HAPROXY_TLS_PORT ssl crt $WORK/haproxy.pem alpn http/1.1" >"$WORK/haproxy.cfg"

start origin "$LOAD_CPU" nginx -c "$WORK/origin.conf" -p "$WORK"
start nginx "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK"
start haproxy "$PROXY_CPU" haproxy -f "$WORK/haproxy.cfg"
SECURECART_LOG=warn start securecart "$PROXY_CPU" "$BIN" proxy --workers 1 \
  --listen "127.0.0.1:$SECURECART_PORT" --upstream "http://127.0.0.1:$ORIGIN_PORT" --health-path /small
# The TLS listener is a second process: `securecart proxy` has one listener.
SECURECART_LOG=warn start securecart_tls "$PROXY_CPU" "$BIN" proxy --workers 1 \
  --listen "127.0.0.1:$SECURECART_TLS_PORT" --upstream "http://127.0.0.1:$ORIGIN_PORT" --health-path /small \
  --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem"

for url in "http://127.0.0.1:"{$ORIGIN_PORT,$SECURECART_PORT,$NGINX_PORT,$HAPROXY_PORT}/small \
  "https://127.0.0.1:"{$SECURECART_TLS_PORT,$NGINX_TLS_PORT,$HAPROXY_TLS_PORT}/small; do
  for _ in $(seq 100); do
    curl -sfk "$url" >/dev/null && break
    sleep 0.1
  done
  curl -sfk "$url" >/dev/null || { log "nothing answers at $url"; cat "$WORK"/*.log >&2; exit 1; }
done

# The processes whose CPU time a target costs (with their children: nginx's worker).
CPU_origin=$PID_origin
CPU_nginx=$PID_nginx
CPU_haproxy=$PID_haproxy
CPU_securecart=$PID_securecart
CPU_securecart_tls=$PID_securecart_tls

keep_pinned
RESULTS=$WORK/results.tsv
run() { # case target port path [extra wrk args]
  local case=$1 target=$2 port=$3 path=$4 scheme=http
  shift 4
  local pid_var="CPU_$target"
  if [[ $case == https ]]; then
    scheme=https
    [[ $target == securecart ]] && pid_var=CPU_securecart_tls
  fi
  measure "$case" "$target" "${!pid_var}" "$scheme://127.0.0.1:$port$path" "$@"
}

TARGETS=("origin:$ORIGIN_PORT" "securecart:$SECURECART_PORT" "nginx:$NGINX_PORT" "haproxy:$HAPROXY_PORT")
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for target in "${TARGETS[@]}"; do run small "${target%%:*}" "${target##*:}" /small; done
  for target in "${TARGETS[@]}"; do run 16k "${target%%:*}" "${target##*:}" /16k; done
  for target in "${TARGETS[@]}"; do run new-connection "${target%%:*}" "${target##*:}" /small -H "Connection: close"; done
  for target in "securecart:$SECURECART_TLS_PORT" "nginx:$NGINX_TLS_PORT" "haproxy:$HAPROXY_TLS_PORT"; do
    run https "${target%%:*}" "${target##*:}" /small
  done
done

# Memory with idle client connections: open many keep-alive connections that sent one
# request each, and read the proxy's resident memory before and after. nginx and HAProxy
# allocate their connection tables up front, so the total matters as much as the increase.
# Resident memory of a process and its children (nginx's master and worker), in KiB.
rss_kib() {
  local total child
  total=$(awk '/^VmRSS:/ { print $2 }' "/proc/$1/status")
  for child in $(pgrep -P "$1" || true); do
    total=$((total + $(rss_kib "$child")))
  done
  echo "$total"
}
idle_memory() { # target port
  local pid_var="CPU_$1" before after
  before=$(rss_kib "${!pid_var}")
  python3 - "$2" "$IDLE_CONNECTIONS" "$WORK/idle-$1.done" <<'PY' &
import socket, sys, time, os
port, count, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sockets = []
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /small HTTP/1.1\r\nHost: bench\r\n\r\n")
    sockets.append(s)
for s in sockets:
    s.settimeout(10)
    s.recv(4096)
open(done, "w").close()
time.sleep(3)
PY
  local idle_pid=$!
  for _ in $(seq 200); do [[ -e "$WORK/idle-$1.done" ]] && break; sleep 0.05; done
  sleep 0.5
  after=$(rss_kib "${!pid_var}")
  wait "$idle_pid" || true
  echo "$1	$before	$after	$(( (after - before) * 1024 / IDLE_CONNECTIONS ))"
}
MEMORY=$WORK/memory.tsv
for target in securecart nginx haproxy; do
  case $target in securecart) port=$SECURECART_PORT ;; nginx) port=$NGINX_PORT ;; haproxy) port=$HAPROXY_PORT ;; esac
  idle_memory "$target" "$port" >>"$MEMORY"
done

echo "Medians of $ROUNDS interleaved rounds of $DURATION s, wrk -t1 -c$CONNECTIONS; one worker per proxy on its own core."
echo
medians_table "small 16k new-connection https" "origin securecart nginx haproxy"
python3 - "$MEMORY" "$IDLE_CONNECTIONS" <<'PY'
import sys
memory, idle = sys.argv[1:3]
print(f"\n| proxy | resident memory, idle | with {idle} idle client connections | added per connection |")
print("|---|---:|---:|---:|")
for line in open(memory):
    target, before, after, per_connection = line.split()
    print(f"| {target} | {int(before):,} KiB | {int(after):,} KiB | {int(per_connection):,} bytes |")
PY
