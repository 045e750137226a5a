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

# Installs what is missing, builds securecart (BIN), makes the work directory (WORK) and
# stops every process started with `start` when the script exits.
PIDS=()
prepare() {
  if ((${#MISSING[@]})); then
    log "installing ${MISSING[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null
  fi
  log "building securecart (release)"
  cargo build --release -q -p securecart
  BIN=$PWD/target/release/securecart
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

# start NAME CPU COMMAND...: runs COMMAND pinned to CPU, its output in $WORK/NAME.log and
# its pid in PID_NAME.
start() {
  local name=$1 cpu=$2
  shift 2
  taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
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
