#!/usr/bin/env bash
# The edge's web application firewall against the one a user would pick instead: `securecart
# proxy --waf` (the managed web ACL) beside nginx with ModSecurity v3 and the OWASP Core Rule
# Set at paranoia level 1 (Debian's libnginx-mod-http-modsecurity and modsecurity-crs), and
# beside securecart with the WAF off, all in front of the same origin, measured with wrk in
# one run.
#
#   bench/waf.sh                    # ROUNDS=3 DURATION=5 CONNECTIONS=64 by default
#
# Cases: a benign GET with a query string, and a benign POST of a 2 KiB form. Before the
# rounds, an injection is checked to be refused by both WAFs (and the benign requests to
# pass), so that each really inspects.
#
# Fairness on a 2-core machine, as bench/proxy.sh: every proxy runs one worker pinned to core
# $PROXY_CPU; wrk and the origin (nginx answering from memory) share the other core. Rounds
# are interleaved and medians reported, with each server's own CPU time per request. Every
# run is bounded by DURATION; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE_PORT=${BASE_PORT:-18600}

ORIGIN_PORT=$BASE_PORT
WAF_PORT=$((BASE_PORT + 1))
PLAIN_PORT=$((BASE_PORT + 2))
MODSEC_PORT=$((BASE_PORT + 3))

# shellcheck source=bench/common.sh
source bench/common.sh
need nginx nginx-light
need /usr/lib/nginx/modules/ngx_http_modsecurity_module.so libnginx-mod-http-modsecurity
need /usr/share/modsecurity-crs/rules modsecurity-crs
need wrk wrk
need curl curl
WORK_NAME=waf
prepare

{
  nginx_start origin 8192
  cat <<CONF
  client_body_buffer_size 64k;
  server {
    listen 127.0.0.1:$ORIGIN_PORT;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
CONF
} >"$WORK/origin.conf"

# ModSecurity v3 with CRS at its default paranoia level 1, blocking (anomaly scoring).
cat >"$WORK/modsec.conf" <<CONF
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecResponseBodyAccess Off
SecAuditEngine Off
SecDebugLogLevel 0
SecArgumentSeparator &
SecCookieFormat 0
# (libmodsecurity 3 has no IncludeOptional, which Debian's owasp-crs.load uses.)
Include /etc/modsecurity/crs/crs-setup.conf
Include /usr/share/modsecurity-crs/rules/*.conf
CONF

{
  nginx_start nginx 16384 "load_module /usr/lib/nginx/modules/ngx_http_modsecurity_module.so;"
  cat <<CONF
  client_body_buffer_size 64k;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$MODSEC_PORT;
    modsecurity on;
    modsecurity_rules_file $WORK/modsec.conf;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
} >"$WORK/nginx.conf"

# A benign 2 KiB form: a checkout's fields and a product review.
python3 - "$WORK/form" <<'PY'
import sys, urllib.parse
review = ("Lovely wool coat, warm and light. The sleeves are a little long for me (I'm 1.60 m), "
          "but the shop's tailor fixed that. Would buy again - 5/5! ") * 12
fields = {"email": "ada@example.com", "name": "Ada O'Brien", "address": "1 Main St, Apt 2",
          "city": "Springfield", "card_token": "tok_visa", "review": review}
body = urllib.parse.urlencode(fields)[:2048]
open(sys.argv[1], "w").write(body)
PY
cat >"$WORK/post.lua" <<LUA
local file = io.open("$WORK/form", "r")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
LUA
QUERY="/api/catalog/products?q=red+wool+coat&category=women&page=2&per_page=24&sort=price"

start origin "$LOAD_CPU" nginx -c "$WORK/origin.conf" -p "$WORK"
start modsec "$PROXY_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK"
SECURECART_LOG=warn start waf "$PROXY_CPU" "$BIN" proxy --workers 1 --waf \
  --listen "127.0.0.1:$WAF_PORT" --upstream "http://127.0.0.1:$ORIGIN_PORT"
SECURECART_LOG=warn start plain "$PROXY_CPU" "$BIN" proxy --workers 1 \
  --listen "127.0.0.1:$PLAIN_PORT" --upstream "http://127.0.0.1:$ORIGIN_PORT"

for port in $ORIGIN_PORT $WAF_PORT $PLAIN_PORT $MODSEC_PORT; do
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port$QUERY" >/dev/null && break
    sleep 0.1
  done
done
for port in $WAF_PORT $MODSEC_PORT; do
  benign=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$QUERY")
  posted=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/x-www-form-urlencoded' \
    --data-binary "@$WORK/form" "http://127.0.0.1:$port/api/checkout")
  attack=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/search?q=1%27%20OR%20%271%27%3D%271")
  if [[ $benign != 200 || $posted != 200 || $attack != 403 ]]; then
    log "port $port: benign GET $benign, benign POST $posted, injection $attack (want 200, 200, 403)"
    cat "$WORK"/*.log >&2
    exit 1
  fi
done

keep_pinned
RESULTS=$WORK/results.tsv
TARGETS=("securecart:$WAF_PORT" "securecart_off:$PLAIN_PORT" "nginx_modsecurity:$MODSEC_PORT")
pid_of() { case $1 in securecart) echo "$PID_waf" ;; securecart_off) echo "$PID_plain" ;; nginx_modsecurity) echo "$PID_modsec" ;; esac; }
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for target in "${TARGETS[@]}"; do
    name=${target%%:*}
    measure get "$name" "$(pid_of "$name")" "http://127.0.0.1:${target##*:}$QUERY"
  done
  for target in "${TARGETS[@]}"; do
    name=${target%%:*}
    measure post-2k "$name" "$(pid_of "$name")" "http://127.0.0.1:${target##*:}/api/checkout" -s "$WORK/post.lua"
  done
done

echo "Medians of $ROUNDS interleaved rounds of $DURATION s, wrk -t1 -c$CONNECTIONS; one worker per proxy on its own core. securecart: proxy --waf (the managed web ACL); securecart_off: the same proxy without it; nginx_modsecurity: nginx with ModSecurity v3 and CRS at paranoia level 1."
echo
medians_table "get post-2k" "securecart securecart_off nginx_modsecurity"
