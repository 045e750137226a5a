# What the benchmark scripts share; sourced by them, not run. Each script sets WORK_NAME,
# calls `need` for the commands it needs, then `prepare`.

log() { printf 'bench: %s\n' "$*" >&2; }

# need COMMAND PACKAGE...: install PACKAGE... with apt-get (at `prepare`) if COMMAND is
# missing (a path instead of a command: if nothing exists there).
MISSING=()
need() {
  local probe=$1
  shift
  if [[ $probe == /* ]]; then
    compgen -G "$probe" >/dev/null || MISSING+=("$@")
  else
    command -v "$probe" >/dev/null || MISSING+=("$@")
  fi
}
# What these shared functions use themselves: CPU time of a process tree (`pgrep`) and
# the results' tables (`python3`).
need pgrep procps
need python3 python3

# Installs what is missing, builds securecart (BIN), makes the work directory (WORK) and
# stops every process started with `start` when the script exits. SECURECART_BIN=PATH
# measures that binary instead (another commit's build, to compare two).
PIDS=()
prepare() {
  if ((${#MISSING[@]})); then
    log "installing ${MISSING[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null
  fi
  if [[ -n ${SECURECART_BIN:-} ]]; then
    BIN=$(realpath "$SECURECART_BIN")
    log "measuring $BIN"
  else
    log "building securecart (release)"
    cargo build --release -q -p securecart
    BIN=$PWD/target/release/securecart
  fi
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/securecart-$WORK_NAME.XXXXXX")
  chmod 755 "$WORK"
  trap cleanup EXIT
}

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

# nginx_start NAME CONNECTIONS [DIRECTIVE...]: what every nginx configuration here begins
# with, up to inside its `http` block: one worker in the foreground, its pid and error log
# in $WORK under NAME, CONNECTIONS per worker, no access log, a million requests per
# connection. The DIRECTIVEs (`load_module ...;`, `master_process off;`) come first. The
# caller writes the rest of the `http` block and its closing brace.
nginx_start() {
  local name=$1 connections=$2
  shift 2
  printf '%s\n' "$@" "worker_processes 1;" "daemon off;" "pid $WORK/$name.pid;" \
    "error_log $WORK/$name-error.log warn;" "events { worker_connections $connections; }" \
    "http {" "  access_log off;" "  keepalive_requests 1000000;"
}

# nginx_proxy_location: the location every nginx reverse proxy here has, in front of an
# `upstream origin` block: keep-alive to the origin, and the client's address, scheme and
# port in X-Forwarded-For, -Proto and -Port, as the edge (and ALB) add them to each request.
# The edge also adds a `traceparent`, which the peers are not asked for: nginx's own request
# id (`$request_id`) calls getpid() three times per request, through OpenSSL's RAND_bytes.
nginx_proxy_location() {
  cat <<'CONF'
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
    }
CONF
}

# haproxy_proxy MAXCONN ORIGIN_PORT BIND...: HAProxy's configuration as the same reverse
# proxy (one thread, keep-alive both ways, connections to the origin reused, the same
# headers added to each request as nginx_proxy_location's), listening on each BIND
# (`ADDRESS:PORT` and its options).
haproxy_proxy() {
  local maxconn=$1 origin=$2 bind
  shift 2
  printf '%s
' global "  nbthread 1" "  maxconn $maxconn" defaults "  mode http" \
    "  timeout connect 2s" "  timeout client 30s" "  timeout server 30s" \
    "  option http-keep-alive" "  option forwardfor" "  http-reuse always" "frontend web"
  for bind in "$@"; do
    echo "  bind $bind"
  done
  printf '%s
' "  http-request set-header X-Forwarded-Proto https if { ssl_fc }" \
    "  http-request set-header X-Forwarded-Proto http if !{ ssl_fc }" \
    "  http-request set-header X-Forwarded-Port %[dst_port]" \
    "  default_backend origin" "backend origin" "  server origin 127.0.0.1:$origin"
}

# start NAME CPU COMMAND...: runs COMMAND pinned to CPU, its output in $WORK/NAME.log and
# its pid in PID_NAME.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  STARTED+=("$name:$cpu")
  eval "PID_$name=$!"
}
STARTED=()

# keep_pinned: puts back on its core every thread of a process started with `start` (and
# of its children) that left it, and says which. Call it once the servers answer: a
# server may pin its own threads as it starts, whatever taskset said. Knot DNS does: it
# puts UDP worker i on core i mod the number of cores, so its one worker ran on core 0,
# beside dnsperf, until 2026-11-28.
keep_pinned() {
  local entry name cpu pid task allowed
  for entry in "${STARTED[@]}"; do
    name=${entry%:*} cpu=${entry##*:}
    pid=PID_$name
    for pid in ${!pid} $(pgrep -P "${!pid}" || true); do
      for task in /proc/"$pid"/task/*; do
        allowed=$(awk '/^Cpus_allowed_list:/ { print $2 }' "$task/status" 2>/dev/null) || continue
        if [[ -n $allowed && $allowed != "$cpu" ]]; then
          log "$name: thread ${task##*/} ($(cat "$task/comm" 2>/dev/null)) had moved to core $allowed; back to core $cpu"
          taskset -cp "$cpu" "${task##*/}" >/dev/null || log "$name: thread ${task##*/} is gone"
        fi
      done
    done
  done
}

# cpu_ticks PID: the CPU time of a process and all its descendants (nginx and NSD serve
# from child processes), in clock ticks: utime and stime, read after the command name,
# which may hold spaces ("nsd: server 1").
cpu_ticks() {
  local total=0 child
  [[ -r /proc/$1/stat ]] && total=$(sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }')
  for child in $(pgrep -P "$1" || true); do
    total=$((total + $(cpu_ticks "$child")))
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)

# core_ticks CPU: the busy and the total clock ticks of core CPU so far (/proc/stat: user to
# steal, where guest time is already in user; all but idle and iowait are busy), as
# "BUSY TOTAL".
core_ticks() {
  # printf with %.0f: mawk prints numbers past 2^31 in exponent form (after months of uptime).
  awk -v cpu="cpu$1" '$1 == cpu { total = 0; for (i = 2; i <= 9; i++) total += $i; printf "%.0f %.0f\n", total - $5 - $6, total }' /proc/stat
}

# measure CASE TARGET PID URL [WRK ARGS...]: one wrk run of $DURATION seconds over
# $CONNECTIONS connections from core $LOAD_CPU against URL. Appends a line to $RESULTS:
# case, target, requests/s, p50 ms, p99 ms, the CPU time PID (and its children) spent per
# request in µs, the errors wrk saw (failed requests and non-2xx/3xx answers), and how busy
# core $LOAD_CPU was, in percent: near 100, wrk (and what shares its core) may be what
# limits the rate; the server's CPU per request times the rate tells how busy its own core
# was.
measure() {
  local case=$1 target=$2 pid=$3 url=$4 before after load_before load_after out
  shift 4
  before=$(cpu_ticks "$pid")
  load_before=$(core_ticks "$LOAD_CPU")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$@" "$url")
  load_after=$(core_ticks "$LOAD_CPU")
  after=$(cpu_ticks "$pid")
  python3 - "$case" "$target" "$((after - before))" "$TICKS" "$out" $load_before $load_after >>"$RESULTS" <<'PY'
import re, sys
case, target, ticks, hz, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
busy_before, total_before, busy_after, total_after = map(int, sys.argv[6:10])
load_busy = 100 * (busy_after - busy_before) / max(total_after - total_before, 1)
def seconds(text):
    found = re.match(r"([\d.]+)(us|ms|s|m)", text)
    if not found:
        sys.exit(f"cannot read wrk latency {text!r} for {case} {target}:\n{out}")
    value, unit = found.groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
total = int(re.search(r"(\d+) requests in", out).group(1))
errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
errors += int(non2xx.group(1)) if non2xx else 0
# The distribution's lines only: "88.50%" in the stats above must not match.
p50 = seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
p99 = seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
cpu_us = ticks / hz / max(total, 1) * 1e6
print(f"{case}\t{target}\t{rps:.0f}\t{p50*1e3:.3f}\t{p99*1e3:.3f}\t{cpu_us:.2f}\t{errors}\t{load_busy:.0f}")
PY
}

# medians_table "CASE..." "TARGET...": the medians of $RESULTS as a Markdown table, with
# securecart's requests/s as a ratio to each other target's.
medians_table() {
  python3 - "$RESULTS" "$1" "$2" <<'PY'
import statistics, sys
from collections import defaultdict
results, cases, targets = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows = defaultdict(list)
for line in open(results):
    case, target, *values = line.rstrip("\n").split("\t")
    rows[(case, target)].append([float(v) for v in values])
def median(case, target, column):
    return statistics.median(row[column] for row in rows[(case, target)])
print("| case | target | req/s | p50 ms | p99 ms | server CPU µs/req | errors | load core busy | securecart ÷ target (req/s) |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for case in cases:
    ours = median(case, "securecart", 0) if (case, "securecart") in rows else None
    for target in targets:
        if (case, target) not in rows:
            continue
        rps = median(case, target, 0)
        ratio = "" if target == "securecart" or ours is None else f"{ours / rps:.2f}x"
        print(f"| {case} | {target} | {rps:,.0f} | {median(case, target, 1):.2f} | {median(case, target, 2):.2f} | "
              f"{median(case, target, 3):.1f} | {int(sum(r[4] for r in rows[(case, target)]))} | "
              f"{median(case, target, 5):.0f}% | {ratio} |")
PY
}
