#!/usr/bin/env bash
# Real-browser end-to-end test: starts a whole SecureCart deployment of the default topology
# (securecart.toml, moved to loopback blocks and ports of its own, so that it never collides
# with a developer's default `securecart up`, and with faster health checks, a smaller
# cache, and a page-load limit of 10 past which the web ACL challenges: the browser shops
# through everything the default deploys, web ACL, card-testing rule, challenge, shield,
# cache and DNS), drives headless Chromium through it with
# tests/browser/shop.mjs, then stops the deployment and checks that nothing is left behind.
#
#   tests/browser/run.sh [path-to-securecart-binary]     (default target/debug/securecart)
#
# Run it from the repository root. Needs node >= 20, npm, and Debian's /usr/bin/chromium
# (no browser is ever downloaded). Screenshots go to $SCREENSHOT_DIR, by default
# target/browser-screenshots. Exits with shop.mjs's status, or 1 if the deployment did not
# start, did not stop on SIGTERM within 20 s, or left a process behind.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
BIN="${1:-target/debug/securecart}"
case "$BIN" in /*) ;; *) BIN="$PWD/$BIN" ;; esac
BIN_NAME="$(basename "$BIN")"   # what the components' command lines contain
cd "$REPO"

START_TIMEOUT_S=90
STOP_TIMEOUT_S=20
TEST_TIMEOUT_S=240   # shop.mjs bounds each scenario itself; this bounds the whole run

log() { printf 'run.sh: %s\n' "$*" >&2; }

[[ -x "$BIN" ]] || { log "no securecart binary at $BIN (build it, or pass its path)"; exit 1; }
command -v node >/dev/null || { log "node is not installed"; exit 1; }
[[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]] || { log "no chromium at ${CHROMIUM_PATH:-/usr/bin/chromium} (apt-get install chromium)"; exit 1; }

if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
  log "installing npm dependencies"
  (cd "$HERE" && timeout 300 npm ci --no-audit --no-fund)
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/securecart-browser.XXXXXX")"
TOPOLOGY="$WORK/topology.toml"
# The edge's http listener is the `port = 8080` after `name = "http"`; the services' are
# the others.
sed -e 's/127\.1\./127.61./g' -e 's/127\.2\./127.62./g' \
  -e 's/^name = "securecart-local"$/name = "securecart-browser-test"/' \
  -e 's/^admin_port = 9090$/admin_port = 19090/' \
  -e '/^name = "http"$/{n;s/^port = 8080$/port = 18080/}' \
  -e 's/^port = 8080$/port = 18081/' -e 's/^port = 8443$/port = 18443/' \
  -e 's/^port = 5353$/port = 15353/' \
  -e 's/interval_ms = 1000, timeout_ms = 500/interval_ms = 500, timeout_ms = 400/' \
  -e 's/^memory_mib = 256$/memory_mib = 64/' \
  -e 's/limit = 300, window_seconds = 300, keys = \["ip"\]/limit = 10, window_seconds = 300, keys = ["ip"]/' \
  securecart.toml >"$TOPOLOGY"
for moved in 'port = 18080' 'port = 18081' 'port = 18443' 'port = 15353' 'admin_port = 19090' '127.61.0.0/16' 'limit = 10, window_seconds = 300'; do
  grep -qF "$moved" "$TOPOLOGY" || { log "the default topology no longer has what this script moves ($moved)"; exit 1; }
done
# Every address in the test's blocks, no default port left (a line the substitutions did
# not match, with a comment after its value, say).
if grep -vE '^[[:space:]]*#' "$TOPOLOGY" | grep -oE '127\.[0-9]+\.' | grep -qvE '^127\.(61|62)\.' ||
  grep -vE '^[[:space:]]*#' "$TOPOLOGY" | grep -qE 'port = (8080|8443|5353|9090)\b'; then
  log "the moved topology still has a default address or port"; exit 1
fi
# A topology that does not validate fails here, with the file, line and field.
"$BIN" check "$TOPOLOGY" >/dev/null
DATA="$WORK/data"
UP_LOG="$WORK/up.log"
UP_PID=""
TEST_PID=""     # the `timeout ... node shop.mjs` while it runs
CHILD_PIDS=""   # every component pid that `status --json` ever reported
STATUS_JSON=""
TEST_STATUS=1   # until shop.mjs says otherwise

# Prints the pids of the components in a `status --json` document on stdin.
component_pids() {
  node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      const j = JSON.parse(s);
      console.log((j.components || []).map((c) => c.pid).filter((p) => Number.isInteger(p) && p > 0).join(" "));
    });'
}

# True if pid is alive and still a securecart process (not a zombie, not a reused pid).
is_ours_alive() {
  local pid="$1" cmd
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)"
  [[ "$cmd" == *"$BIN_NAME"* ]]
}

remember_pids() {
  local json pids
  json="$(timeout 10 "$BIN" status --data-dir "$DATA" --json 2>/dev/null)" || return 0
  pids="$(component_pids <<<"$json" 2>/dev/null)" || return 0
  CHILD_PIDS="$(printf '%s %s\n' "$CHILD_PIDS" "$pids" | tr ' ' '\n' | grep -E '^[0-9]+$' | sort -un | tr '\n' ' ' || true)"
}

# Pids of live processes started with our (unique) data directory on their command line:
# catches components that `status` never got to report.
pids_with_our_data_dir() {
  local f pid cmd
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"; pid="${pid%/cmdline}"
    [[ "$pid" == "$$" || "$pid" == "$UP_PID" ]] && continue
    cmd="$(tr '\0' ' ' 2>/dev/null <"$f" || true)"
    [[ "$cmd" == *"--data-dir $DATA "* || "$cmd" == *"--data-dir $DATA" ]] && echo "$pid"
  done
}

cleanup() {
  local rc=$? failed=0 up_rc i left=()
  trap - EXIT INT TERM
  set +e
  if [[ -n "$TEST_PID" ]] && kill -0 "$TEST_PID" 2>/dev/null; then
    kill -TERM "$TEST_PID"   # timeout passes it on to node, which closes its browser
    for ((i = 0; i < 100; i++)); do kill -0 "$TEST_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$TEST_PID" 2>/dev/null && kill -KILL "$TEST_PID"
    wait "$TEST_PID" 2>/dev/null
  fi
  if [[ -n "$UP_PID" ]]; then
    # Pick up replicas that the supervisor restarted since the first look.
    kill -0 "$UP_PID" 2>/dev/null && remember_pids
    if kill -0 "$UP_PID" 2>/dev/null; then
      kill -TERM "$UP_PID"
      for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
        kill -0 "$UP_PID" 2>/dev/null || break
        sleep 0.1
      done
      if kill -0 "$UP_PID" 2>/dev/null; then
        log "securecart up (pid $UP_PID) did not exit within ${STOP_TIMEOUT_S}s of SIGTERM; killing it"
        kill -KILL "$UP_PID"
        failed=1
      fi
    else
      log "securecart up (pid $UP_PID) had already exited before the teardown"
      failed=1
    fi
    wait "$UP_PID" 2>/dev/null
    up_rc=$?
    if ((failed == 0 && up_rc != 0)); then
      log "securecart up exited with status $up_rc after SIGTERM (expected 0)"
      failed=1
    fi
    # `up` should have stopped every child before exiting; allow a moment for reaping.
    for ((i = 0; i < 30; i++)); do
      left=()
      for pid in $(printf '%s\n' $CHILD_PIDS $(pids_with_our_data_dir) | sort -un); do
        is_ours_alive "$pid" && left+=("$pid")
      done
      ((${#left[@]} == 0)) && break
      sleep 0.1
    done
    if ((${#left[@]})); then
      log "processes left behind after securecart up stopped: ${left[*]}"
      ps -o pid,ppid,stat,args -p "$(IFS=,; echo "${left[*]}")" >&2
      # They are ours: do not leave them running.
      kill -KILL "${left[@]}" 2>/dev/null
      failed=1
    fi
  fi
  if ((rc == 0 && TEST_STATUS == 0 && failed == 0)); then
    rm -rf "$WORK"
    exit 0
  fi
  if [[ -f "$UP_LOG" ]]; then
    log "last 80 lines of $UP_LOG:"
    tail -n 80 "$UP_LOG" >&2
  fi
  log "FAILED (work directory kept: $WORK)"
  if ((rc != 0)); then exit "$rc"; fi
  if ((TEST_STATUS != 0)); then exit "$TEST_STATUS"; fi
  exit 1
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "starting securecart up (data dir $DATA, log $UP_LOG)"
started=$SECONDS
"$BIN" up --config "$TOPOLOGY" --data-dir "$DATA" >"$UP_LOG" 2>&1 </dev/null &
UP_PID=$!

deadline=$((SECONDS + START_TIMEOUT_S))
until timeout 10 "$BIN" status --data-dir "$DATA" >/dev/null 2>&1; do
  if ! kill -0 "$UP_PID" 2>/dev/null; then
    log "securecart up exited before the deployment became healthy"
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    log "the deployment was not healthy within ${START_TIMEOUT_S}s"
    timeout 10 "$BIN" status --data-dir "$DATA" >&2 || true
    exit 1
  fi
  sleep 0.5
done
log "deployment healthy after $((SECONDS - started))s"

STATUS_JSON="$(timeout 10 "$BIN" status --data-dir "$DATA" --json)"
CHILD_PIDS="$(component_pids <<<"$STATUS_JSON")"
[[ -n "$CHILD_PIDS" ]] || { log "status --json listed no component pids"; exit 1; }
for pid in $CHILD_PIDS; do
  is_ours_alive "$pid" || { log "status says healthy, but component pid $pid is not running"; exit 1; }
done
BASE_URL="$(node -e '
  const j = JSON.parse(process.argv[1]);
  const e = (j.entry_points || []).find((p) => p.region === "us-east-1");
  if (!e || !e.url) process.exit(1);
  console.log(e.url);' "$STATUS_JSON")" || { log "status --json has no us-east-1 entry point"; exit 1; }
log "storefront of us-east-1: $BASE_URL"

# In the background and waited for, so that a signal to this script is handled at once.
BASE_URL="$BASE_URL" timeout --kill-after=10 "$TEST_TIMEOUT_S" node "$HERE/shop.mjs" &
TEST_PID=$!
set +e
wait "$TEST_PID"
TEST_STATUS=$?
set -e
TEST_PID=""
((TEST_STATUS == 124)) && log "shop.mjs did not finish within ${TEST_TIMEOUT_S}s"
exit "$TEST_STATUS"
