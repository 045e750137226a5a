#!/usr/bin/env bash
# The edge as a CDN cache against the caches a user would pick instead: `securecart proxy
# --cache` beside Varnish 7 (malloc storage) and nginx's proxy_cache, all in front of the
# same origin, serving cache hits, measured with wrk in one run.
#
#   bench/cache.sh                  # ROUNDS=3 DURATION=5 CONNECTIONS=64 by default
#
# Cases: hits on a 1 KiB, a 16 KiB and a 1 MiB object (the origin says max-age=3600), over
# keep-alive connections. Every cache is warmed and checked to answer from its store before
# the rounds start.
#
# Fairness on a 2-core machine, as bench/proxy.sh: every cache runs on core $PROXY_CPU
# (nginx worker_processes 1, securecart --workers 1, Varnish's threads pinned there); wrk
# and the origin (nginx serving files) share the other core. Rounds are interleaved and
# medians reported, with each server's own CPU time per request beside the throughput.
# nginx serves its cached files with sendfile, as its usual configurations do; Varnish and
# securecart serve from memory. Every run is bounded by DURATION; every process started
# here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE_PORT=${BASE_PORT:-18200}

ORIGIN_PORT=$BASE_PORT
SECURECART_PORT=$((BASE_PORT + 1))
NGINX_PORT=$((BASE_PORT + 2))
VARNISH_PORT=$((BASE_PORT + 3))

# shellcheck source=bench/common.sh
source bench/common.sh
need nginx nginx-light
need varnishd varnish
need wrk wrk
need curl curl
WORK_NAME=cache
prepare

mkdir -p "$WORK/objects" "$WORK/nginx-cache"
head -c 1024 /dev/urandom >"$WORK/objects/1k"
head -c 16384 /dev/urandom >"$WORK/objects/16k"
head -c 1048576 /dev/urandom >"$WORK/objects/1m"
# nginx workers and Varnish's child run as unprivileged users.
chmod 755 "$WORK/objects"
chmod 644 "$WORK"/objects/*
chown -R www-data "$WORK/nginx-cache" 2>/dev/null || chmod 777 "$WORK/nginx-cache"

{
  nginx_start origin 8192
  cat <<CONF
  sendfile on;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    root $WORK/objects;
    default_type application/octet-stream;
    add_header Cache-Control "max-age=3600";
  }
}
CONF
} >"$WORK/origin.conf"

{
  nginx_start nginx 16384
  cat <<CONF
  sendfile on;
  proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=1h use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache bench;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
CONF
} >"$WORK/nginx.conf"

start origin "$LOAD_CPU" nginx -c "$WORK/origin.conf" -p "$WORK"
start nginx "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK"
start varnish "$PROXY_CPU" varnishd -F -n "$WORK/varnish" -a "127.0.0.1:$VARNISH_PORT" \
  -b "127.0.0.1:$ORIGIN_PORT" -s malloc,512m -p thread_pools=1
SECURECART_LOG=warn start securecart "$PROXY_CPU" "$BIN" proxy --workers 1 --cache --cache-memory 512 \
  --listen "127.0.0.1:$SECURECART_PORT" --upstream "http://127.0.0.1:$ORIGIN_PORT" --health-path /1k

# Every target answers; then each cache is warmed and must answer the second request from
# its store (securecart's X-Cache, nginx's $upstream_cache_status, Varnish's two
# transaction ids in X-Varnish).
for port in $ORIGIN_PORT $SECURECART_PORT $NGINX_PORT $VARNISH_PORT; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/1k" >/dev/null && break
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$port/1k" >/dev/null || { log "nothing answers on port $port"; cat "$WORK"/*.log >&2; exit 1; }
done
for object in 1k 16k 1m; do
  for port in $SECURECART_PORT $NGINX_PORT $VARNISH_PORT; do
    curl -sf "http://127.0.0.1:$port/$object" >/dev/null
    headers=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$port/$object")
    if ! grep -qiE '^x-cache: hit|^x-varnish: [0-9]+ [0-9]+' <<<"$headers"; then
      log "port $port did not answer /$object from its cache:"
      echo "$headers" >&2
      exit 1
    fi
  done
done

CPU_origin=$PID_origin
keep_pinned
RESULTS=$WORK/results.tsv
TARGETS=("origin:$ORIGIN_PORT" "securecart:$SECURECART_PORT" "nginx:$NGINX_PORT" "varnish:$VARNISH_PORT")
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for object in 1k 16k 1m; do
    for target in "${TARGETS[@]}"; do
      name=${target%%:*}
      pid_var="PID_$name"
      measure "$object" "$name" "${!pid_var}" "http://127.0.0.1:${target##*:}/$object"
    done
  done
done

echo "Medians of $ROUNDS interleaved rounds of $DURATION s, wrk -t1 -c$CONNECTIONS, every answer a cache hit; one core per cache (the origin row: the origin serving its files directly)."
echo
medians_table "1k 16k 1m" "origin securecart nginx varnish"
