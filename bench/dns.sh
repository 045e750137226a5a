#!/usr/bin/env bash
# SecureCart's authoritative DNS against the servers a user would pick instead: `securecart
# dns` beside Knot DNS and NSD, all serving the same zone file, measured with dnsperf in one
# run.
#
#   bench/dns.sh                    # ROUNDS=3 DURATION=5 NAMES=10000 by default
#
# The zone has NAMES hosts (A and AAAA records) plus MX, TXT and a CNAME; the queries mix
# answers (A, AAAA, MX, TXT, CNAME), NODATA and NXDOMAIN.
#
# Fairness on a 2-core machine: every server runs one worker (Knot udp-workers 1, NSD
# server-count 1, securecart --workers 1) pinned to core $SERVER_CPU; dnsperf runs on the
# other core. One dnsperf thread saturates near 270k queries/s before Knot or NSD do, so
# servers are compared by their own CPU time per answered query (from /proc, the server
# process and its children), with queries per second beside it. NSD rate-limits answers by
# default: RRL is off here, as for the others. Rounds are interleaved and medians reported.
# Every run is bounded by DURATION; every process started here is stopped by its pid.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
NAMES=${NAMES:-10000}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE_PORT=${BASE_PORT:-18300}

SECURECART_PORT=$BASE_PORT
KNOT_PORT=$((BASE_PORT + 1))
NSD_PORT=$((BASE_PORT + 2))

log() { printf 'bench: %s\n' "$*" >&2; }

missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
command -v knotd >/dev/null || missing+=(knot)
command -v nsd >/dev/null || missing+=(nsd)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
log "building securecart (release)"
cargo build --release -q -p securecart
BIN=$PWD/target/release/securecart

WORK=$(mktemp -d "${TMPDIR:-/tmp}/securecart-dns-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
chmod 755 "$WORK"

ZONE=$WORK/bench.test.zone
python3 - "$ZONE" "$WORK/queries" "$NAMES" <<'PY'
import random, sys
zone, queries, names = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(7)
with open(zone, "w") as out:
    out.write("$ORIGIN bench.test.\n$TTL 300\n")
    out.write("@ IN SOA ns1 hostmaster 2026112501 7200 3600 1209600 60\n")
    out.write("@ IN NS ns1\n@ IN MX 10 mail\nns1 IN A 127.0.0.53\nmail IN A 127.0.0.25\n")
    out.write('@ IN TXT "v=spf1 mx -all"\nshop IN CNAME host1\n')
    for n in range(1, names + 1):
        out.write(f"host{n} IN A 127.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}\n")
        out.write(f"host{n} IN AAAA fd00::{n:x}\n")
with open(queries, "w") as out:
    for _ in range(100_000):
        draw = random.random()
        n = random.randint(1, names)
        if draw < 0.55:
            out.write(f"host{n}.bench.test A\n")
        elif draw < 0.75:
            out.write(f"host{n}.bench.test AAAA\n")
        elif draw < 0.80:
            out.write("bench.test MX\n")
        elif draw < 0.83:
            out.write("bench.test TXT\n")
        elif draw < 0.86:
            out.write("shop.bench.test A\n")
        elif draw < 0.92:
            out.write(f"host{n}.bench.test MX\n")  # NODATA
        else:
            out.write(f"nope{n}.bench.test A\n")  # NXDOMAIN
PY
chmod 644 "$ZONE"

cat >"$WORK/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$KNOT_PORT
    rundir: $WORK
    background-workers: 1
    udp-workers: 1
    tcp-workers: 1
database:
    storage: $WORK/knot-db
zone:
  - domain: bench.test
    file: $ZONE
    storage: $WORK
log:
  - target: stderr
    any: warning
CONF

cat >"$WORK/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$NSD_PORT
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$WORK"
    database: ""
    zonelistfile: "$WORK/nsd-zone.list"
    xfrdfile: "$WORK/nsd-xfrd.state"
    xfrdir: "$WORK"
    pidfile: "$WORK/nsd.pid"
    logfile: "$WORK/nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: bench.test
    zonefile: "$ZONE"
CONF

start() { # name command...
  local name=$1
  shift
  taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}
SECURECART_LOG=warn start securecart "$BIN" dns --workers 1 --zone "$ZONE" --listen "127.0.0.1:$SECURECART_PORT"
start knot knotd -c "$WORK/knot.conf"
start nsd nsd -d -c "$WORK/nsd.conf"

for target in "securecart:$SECURECART_PORT" "knot:$KNOT_PORT" "nsd:$NSD_PORT"; do
  port=${target##*:}
  for _ in $(seq 100); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" host1.bench.test A 2>/dev/null | grep -q 127 && break
    sleep 0.1
  done
  dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" host1.bench.test A | grep -q 127 || {
    log "${target%%:*} does not answer on port $port"
    cat "$WORK"/*.log >&2
    exit 1
  }
done

# CPU ticks of a process and all its descendants (NSD serves from a grandchild process).
cpu_ticks() {
  local total=0 child
  # utime and stime, counted after the command name, which may hold spaces ("nsd: server 1").
  [[ -r /proc/$1/stat ]] && total=$(sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }')
  for child in $(pgrep -P "$1" || true); do
    total=$((total + $(cpu_ticks "$child")))
  done
  echo "$total"
}
TICKS=$(getconf CLK_TCK)

RESULTS=$WORK/results.tsv
run() { # target port
  local target=$1 port=$2 pid_var="PID_$1" before after out
  before=$(cpu_ticks "${!pid_var}")
  out=$(taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries" -l "$DURATION" -c 1 -T 1 -q 200 2>&1)
  after=$(cpu_ticks "${!pid_var}")
  python3 - "$target" "$((after - before))" "$TICKS" >>"$RESULTS" <<PY
import re, sys
target, ticks, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
out = """$out"""
completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))
cpu_us = ticks / hz / max(completed, 1) * 1e6
print(f"{target}\t{qps:.0f}\t{latency*1e3:.3f}\t{cpu_us:.2f}\t{lost}")
PY
}

TARGETS=("securecart:$SECURECART_PORT" "knot:$KNOT_PORT" "nsd:$NSD_PORT")
for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  for target in "${TARGETS[@]}"; do run "${target%%:*}" "${target##*:}"; done
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$NAMES" <<'PY'
import statistics, sys
from collections import defaultdict
results, rounds, duration, names = sys.argv[1:5]
rows = defaultdict(list)
for line in open(results):
    target, qps, latency, cpu, lost = line.split("\t")
    rows[target].append((float(qps), float(latency), float(cpu), int(lost)))
median = {t: tuple(statistics.median(r[i] for r in runs) for i in range(4)) for t, runs in rows.items()}
print(f"Medians of {rounds} interleaved rounds of {duration} s, dnsperf -c 1 -T 1 -q 200; "
      f"one worker per server on its own core; {names} hosts in the zone.\n")
print("| server | queries/s | avg latency ms | server CPU µs/query | lost | securecart CPU ÷ server CPU |")
print("|---|---:|---:|---:|---:|---:|")
ours = median["securecart"][2]
for target in ("securecart", "knot", "nsd"):
    qps, latency, cpu, lost = median[target]
    ratio = "" if target == "securecart" else f"{ours / cpu:.2f}x"
    print(f"| {target} | {qps:,.0f} | {latency:.3f} | {cpu:.2f} | {lost:.0f} | {ratio} |")
PY
