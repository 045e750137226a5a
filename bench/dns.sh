#!/usr/bin/env bash
# SecureCart's authoritative DNS against the servers a user would pick instead: `securecart
# dns` beside Knot DNS, NSD and PowerDNS, measured with dnsperf in one run.
#
#   bench/dns.sh                    # ROUNDS=3 DURATION=5 NAMES=10000 by default
#   RATE=60000 bench/dns.sh         # every server offered the same queries per second
#
# Plain records: every server serves the same zone file of NAMES hosts (A and AAAA records)
# plus MX, TXT and a CNAME; the queries mix answers (A, AAAA, MX, TXT, CNAME), NODATA and
# NXDOMAIN. Dynamic answers: weighted records (1:3) and records chosen by the client's
# network from EDNS Client Subnet, as securecart's weighted and latency records (from a
# topology's [dns] section), Knot's geoip module (weighted and subnet modes) and PowerDNS
# LUA records give them.
#
# Fairness on a 2-core machine: every server runs one worker (Knot udp-workers 1, NSD
# server-count 1, PowerDNS one receiver and one distributor thread, securecart --workers 1)
# pinned to core $SERVER_CPU (and put back there once the servers answer: Knot pins its UDP
# workers itself, its first to core 0, which was dnsperf's until 2026-11-28; see
# keep_pinned); dnsperf runs on the other core. One dnsperf thread saturates near 270k
# queries/s before Knot or NSD do, so servers are compared by their own CPU time per
# answered query (from /proc, the server process and its children), with queries per
# second beside it. NSD rate-limits answers by
# default: RRL is off here, as for the others. Rounds are interleaved and medians reported.
# Every run is bounded by DURATION; every process started here is stopped by its pid.
#
# At full load securecart's CPU per query moves between two levels from one dnsperf run to
# the next (about 4.7 and 5.6 µs on plain records here, the rate about 175,000 and 152,000
# a second, on 2026-11-27), each lasting a few runs, while Knot's moved less: its core is
# about 87% busy at both, so the rate dnsperf sets decides the figure. The table gives each
# server's range over the rounds beside the median; more rounds (ROUNDS=7) steady it.
#
# At full load a server that answers faster keeps fewer queries waiting, so each of its
# system calls carries fewer of them and it wakes more often: its CPU per query is not
# measured at the throughput of a slower one. RATE offers every server the same queries
# per second (dnsperf -Q; below the slowest's full speed, it compares them at equal work).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
RATE=${RATE:-}
DURATION=${DURATION:-5}
NAMES=${NAMES:-10000}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE_PORT=${BASE_PORT:-18300}

SECURECART_PORT=$BASE_PORT
KNOT_PORT=$((BASE_PORT + 1))
NSD_PORT=$((BASE_PORT + 2))
PDNS_PORT=$((BASE_PORT + 3))
DYNAMIC_PORT=$((BASE_PORT + 4))      # securecart with policy records, on 127.201.0.2
KNOT_GEO_PORT=$((BASE_PORT + 5))
PDNS_LUA_PORT=$((BASE_PORT + 6))

# shellcheck source=bench/common.sh
source bench/common.sh
need dnsperf dnsperf
need dig dnsutils
need knotd knot
need nsd nsd
need pdns_server pdns-server pdns-backend-bind
need "/usr/lib/*/knot/modules-*/geoip.so" knot-module-geoip
WORK_NAME=dns-bench
prepare

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

# The dynamic zone: placeholders for w and s, which the policies answer.
DYNAMIC_ZONE=$WORK/dynamic/bench.test.zone
mkdir -p "$WORK/dynamic"
cat >"$DYNAMIC_ZONE" <<ZONE
\$ORIGIN bench.test.
\$TTL 60
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@ IN NS ns1
ns1 IN A 127.0.0.53
w IN A 127.1.0.1
s IN A 127.1.0.1
ZONE
cat >"$WORK/geo-weighted.conf" <<CONF
w.bench.test:
  - weight: 1
    A: 127.1.0.1
  - weight: 3
    A: 127.2.0.1
CONF
cat >"$WORK/geo-subnet.conf" <<CONF
s.bench.test:
  - net: 127.202.0.0/16
    A: 127.2.0.1
  - net: 0.0.0.0/0
    A: 127.1.0.1
CONF
cat >"$WORK/knot-geo.conf" <<CONF
server:
    listen: 127.0.0.1@$KNOT_GEO_PORT
    rundir: $WORK/dynamic
    background-workers: 1
    udp-workers: 1
    tcp-workers: 1
    edns-client-subnet: on
database:
    storage: $WORK/dynamic/knot-db
mod-geoip:
  - id: weighted
    config-file: $WORK/geo-weighted.conf
    mode: weighted
  - id: subnet
    config-file: $WORK/geo-subnet.conf
    mode: subnet
zone:
  - domain: bench.test
    file: $DYNAMIC_ZONE
    storage: $WORK/dynamic
    module: [mod-geoip/weighted, mod-geoip/subnet]
log:
  - target: stderr
    any: warning
CONF

# PowerDNS: the bind backend on the same zone files; LUA records for the dynamic zone.
mkdir -p "$WORK/pdns" "$WORK/pdns-lua"
touch "$WORK/pdns/pdns.conf" "$WORK/pdns-lua/pdns.conf"
echo "zone \"bench.test\" { type master; file \"$ZONE\"; };" >"$WORK/pdns/named.conf"
LUA_ZONE=$WORK/pdns-lua/bench.test.zone
cat >"$LUA_ZONE" <<'ZONE'
$ORIGIN bench.test.
$TTL 60
@ IN SOA ns1 hostmaster 1 7200 3600 1209600 60
@ IN NS ns1
ns1 IN A 127.0.0.53
w IN LUA A "pickwrandom({{1, '127.1.0.1'}, {3, '127.2.0.1'}})"
s IN LUA A ";if netmask({'127.202.0.0/16'}) then return '127.2.0.1' end return '127.1.0.1'"
ZONE
echo "zone \"bench.test\" { type master; file \"$LUA_ZONE\"; };" >"$WORK/pdns-lua/named.conf"
pdns() { # config dir, port, extra flags...
  local dir=$1 port=$2
  shift 2
  echo pdns_server --config-dir="$dir" --daemon=no --guardian=no --disable-syslog \
    --socket-dir="$dir" --local-address="127.0.0.1:$port" --launch=bind \
    --bind-config="$dir/named.conf" --receiver-threads=1 --distributor-threads=1 \
    --setuid= --setgid= "$@"
}

# securecart's dynamic records live in a topology's [dns] section: the default topology on
# loopback blocks of its own, with the benchmark's records.
sed -e 's/127\.1\./127.201./g' -e 's/127\.2\./127.202./g' -e '/^\[dns\]/,$d' securecart.toml >"$WORK/topology.toml"
cat >>"$WORK/topology.toml" <<CONF
[dns]
zone = "bench.test"
port = $DYNAMIC_PORT

[[dns.records]]
name = "w"
type = "A"
set_identifier = "one"
weight = 1
values = ["127.1.0.1"]

[[dns.records]]
name = "w"
type = "A"
set_identifier = "three"
weight = 3
values = ["127.2.0.1"]

[[dns.records]]
name = "s"
type = "A"
set_identifier = "us"
latency = "us-east-1"
values = ["127.1.0.1"]

[[dns.records]]
name = "s"
type = "A"
set_identifier = "eu"
latency = "eu-west-1"
values = ["127.2.0.1"]
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

SECURECART_LOG=warn start securecart "$SERVER_CPU" "$BIN" dns --workers 1 --zone "$ZONE" --listen "127.0.0.1:$SECURECART_PORT"
start knot "$SERVER_CPU" knotd -c "$WORK/knot.conf"
start nsd "$SERVER_CPU" nsd -d -c "$WORK/nsd.conf"
# shellcheck disable=SC2046
start pdns "$SERVER_CPU" $(pdns "$WORK/pdns" "$PDNS_PORT")
SECURECART_LOG=warn start dynamic "$SERVER_CPU" "$BIN" dns --workers 1 --region us-east-1 --config "$WORK/topology.toml"
start knot_geo "$SERVER_CPU" knotd -c "$WORK/knot-geo.conf"
# shellcheck disable=SC2046
start pdns_lua "$SERVER_CPU" $(pdns "$WORK/pdns-lua" "$PDNS_LUA_PORT" --enable-lua-records=yes --edns-subnet-processing=yes)

# (name, server, port, a question it answers)
for target in "securecart 127.0.0.1 $SECURECART_PORT host1" "knot 127.0.0.1 $KNOT_PORT host1" \
  "nsd 127.0.0.1 $NSD_PORT host1" "pdns 127.0.0.1 $PDNS_PORT host1" \
  "dynamic 127.201.0.2 $DYNAMIC_PORT w" "knot_geo 127.0.0.1 $KNOT_GEO_PORT w" "pdns_lua 127.0.0.1 $PDNS_LUA_PORT w"; do
  read -r name server port question <<<"$target"
  for _ in $(seq 100); do
    dig +short +time=1 +tries=1 @"$server" -p "$port" "$question.bench.test" A 2>/dev/null | grep -q 127 && break
    sleep 0.1
  done
  dig +short +time=1 +tries=1 @"$server" -p "$port" "$question.bench.test" A | grep -q 127 || {
    log "$name does not answer on $server port $port"
    cat "$WORK"/*.log >&2
    exit 1
  }
done
keep_pinned
# EDNS Client Subnet 127.202.0.0/24 (family 1, source 24, scope 0): the eu answer.
ECS=8:000118007fca00
printf 's.bench.test A\n' >"$WORK/subnet-queries"
printf 'w.bench.test A\n' >"$WORK/weighted-queries"
for target in "dynamic 127.201.0.2 $DYNAMIC_PORT" "knot_geo 127.0.0.1 $KNOT_GEO_PORT" "pdns_lua 127.0.0.1 $PDNS_LUA_PORT"; do
  read -r name server port <<<"$target"
  answer=$(dig +short +subnet=127.202.0.0/24 @"$server" -p "$port" s.bench.test A)
  [[ $answer == 127.2.0.1 ]] || { log "$name answers s.bench.test with '$answer' for 127.202.0.0/24"; exit 1; }
done

RESULTS=$WORK/results.tsv
run() { # case target server port queries [dnsperf args]
  local case=$1 target=$2 server=$3 port=$4 queries=$5 pid_var="PID_$2" before after out
  shift 5
  # Dynamic answers come from the servers started for them.
  if [[ $case != plain ]]; then
    case $target in
      securecart) pid_var=PID_dynamic ;;
      knot) pid_var=PID_knot_geo ;;
      pdns) pid_var=PID_pdns_lua ;;
    esac
  fi
  before=$(cpu_ticks "${!pid_var}")
  # shellcheck disable=SC2086 # RATE adds two words, or none
  out=$(taskset -c "$LOAD_CPU" dnsperf -s "$server" -p "$port" -d "$queries" -l "$DURATION" -c 1 -T 1 -q 200 ${RATE:+-Q $RATE} "$@" 2>&1)
  after=$(cpu_ticks "${!pid_var}")
  python3 - "$case" "$target" "$((after - before))" "$TICKS" >>"$RESULTS" <<PY
import re, sys
case, target, ticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = """$out"""
completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))
qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))
latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))
cpu_us = ticks / hz / max(completed, 1) * 1e6
print(f"{case}\t{target}\t{qps:.0f}\t{latency*1e3:.3f}\t{cpu_us:.2f}\t{lost}")
PY
}

for round in $(seq "$ROUNDS"); do
  log "round $round of $ROUNDS"
  run plain securecart 127.0.0.1 "$SECURECART_PORT" "$WORK/queries"
  run plain knot 127.0.0.1 "$KNOT_PORT" "$WORK/queries"
  run plain nsd 127.0.0.1 "$NSD_PORT" "$WORK/queries"
  run plain pdns 127.0.0.1 "$PDNS_PORT" "$WORK/queries"
  run weighted securecart 127.201.0.2 "$DYNAMIC_PORT" "$WORK/weighted-queries"
  run weighted knot 127.0.0.1 "$KNOT_GEO_PORT" "$WORK/weighted-queries"
  run weighted pdns 127.0.0.1 "$PDNS_LUA_PORT" "$WORK/weighted-queries"
  run subnet securecart 127.201.0.2 "$DYNAMIC_PORT" "$WORK/subnet-queries" -E "$ECS"
  run subnet knot 127.0.0.1 "$KNOT_GEO_PORT" "$WORK/subnet-queries" -E "$ECS"
  run subnet pdns 127.0.0.1 "$PDNS_LUA_PORT" "$WORK/subnet-queries" -E "$ECS"
done

python3 - "$RESULTS" "$ROUNDS" "$DURATION" "$NAMES" "$RATE" <<'PY'
import statistics, sys
from collections import defaultdict
results, rounds, duration, names, rate = sys.argv[1:6]
rows = defaultdict(list)
for line in open(results):
    case, target, qps, latency, cpu, lost = line.split("\t")
    rows[(case, target)].append((float(qps), float(latency), float(cpu), int(lost)))
median = {key: tuple(statistics.median(r[i] for r in runs) for i in range(4)) for key, runs in rows.items()}
offered = f" -Q {rate} (every server offered {int(rate):,} queries/s)" if rate else ""
print(f"Medians of {rounds} interleaved rounds of {duration} s, dnsperf -c 1 -T 1 -q 200{offered}; "
      f"one worker per server on its own core; {names} hosts in the plain zone.\n")
print("| case | server | queries/s | avg latency ms | server CPU µs/query | its range | lost | securecart CPU ÷ server CPU |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
names = {"securecart": "securecart", "knot": "Knot DNS", "nsd": "NSD", "pdns": "PowerDNS"}
for case in ("plain", "weighted", "subnet"):
    ours = median[(case, "securecart")][2]
    for target in ("securecart", "knot", "nsd", "pdns"):
        if (case, target) not in median:
            continue
        qps, latency, cpu, lost = median[(case, target)]
        cpus = [run[2] for run in rows[(case, target)]]
        ratio = "" if target == "securecart" else f"{ours / cpu:.2f}x"
        print(f"| {case} | {names[target]} | {qps:,.0f} | {latency:.3f} | {cpu:.2f} | {min(cpus):.2f} to {max(cpus):.2f} | {lost:.0f} | {ratio} |")
PY
