#!/usr/bin/env bash
# The public HTTP cache test suite (npm `http-cache-tests`, pinned in package.json) against
# `securecart proxy --cache --cache-set-cookie`: starts the suite's origin server and the proxy in front of it
# on free loopback ports, runs the suite's command-line client through the proxy, and
# scores the run with summary.mjs, which fails if the share of required tests passed falls
# below the committed baseline.json.
#
#   tests/cache-conformance/run.sh [path-to-securecart-binary] [--update]
#
# --update rewrites baseline.json and RESULTS.md from this run. The suite's raw results go
# to target/cache-conformance.json. Every process started here is stopped by its pid.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/debug/securecart}"
UPDATE="${2:-}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
cd "$REPO"

log() { printf 'cache-conformance: %s\n' "$*" >&2; }

[[ -x "$BIN" ]] || { log "no securecart binary at $BIN (build it, or pass its path)"; exit 1; }
command -v node >/dev/null || { log "node is not installed"; exit 1; }
if [[ ! -d "$HERE/node_modules/http-cache-tests" ]]; then
  log "installing npm dependencies"
  (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund)
fi
SUITE="$HERE/node_modules/http-cache-tests"

free_port() {
  node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })'
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/securecart-cache-conformance.XXXXXX")"
ORIGIN_PID=""
PROXY_PID=""
cleanup() {
  for pid in $PROXY_PID $ORIGIN_PID; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in $PROXY_PID $ORIGIN_PID; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

ORIGIN_PORT="$(free_port)"
PROXY_PORT="$(free_port)"
(cd "$SUITE" && exec env npm_config_port="$ORIGIN_PORT" npm_package_config_protocol=http \
  npm_config_pidfile="$WORK/origin.pid" node --import "$HERE/loopback.mjs" server/server.mjs) \
  >"$WORK/origin.log" 2>&1 &
ORIGIN_PID=$!
# --cache-set-cookie: the suite asks that answers setting cookies be stored, as RFC 9111
# allows; securecart does not store them unless told to, as nginx and Varnish do not.
SECURECART_LOG=warn "$BIN" proxy --cache --cache-set-cookie --listen "127.0.0.1:$PROXY_PORT" \
  --upstream "http://127.0.0.1:$ORIGIN_PORT" --admin 127.0.0.1:0 >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!

for _ in $(seq 100); do
  if curl -s -o /dev/null "http://127.0.0.1:$ORIGIN_PORT/" && curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/"; then
    break
  fi
  sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$PROXY_PORT/" || {
  log "the origin or the proxy did not start"
  cat "$WORK/origin.log" "$WORK/proxy.log" >&2
  exit 1
}

log "running the suite through 127.0.0.1:$PROXY_PORT"
mkdir -p target
(cd "$SUITE" && timeout 300 env npm_package_config_id= npm_config_base="http://127.0.0.1:$PROXY_PORT" \
  node --no-warnings cli.mjs) >target/cache-conformance.json
node "$HERE/summary.mjs" target/cache-conformance.json $UPDATE
