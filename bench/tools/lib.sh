# shellcheck shell=bash
# Shared helpers for sluice's own benchmark scripts (bench/*.sh). Sourced, not executed.
#
#   BENCH_DIR, REPO_ROOT, BENCH_WORK (scratch, git-ignored), PY (python3, stdlib only)
#   log/die               messages on stderr
#   sluice_bin            sets and exports SLUICE_BIN (builds target/release/sluice if missing)
#   free_port             a free TCP port on 127.0.0.1
#   start_bg NAME LOG CMD...   CMD in its own session (setsid); LAST_PID = its pid = its pgid
#   stop_pid PID          TERM its process group, KILL after 5 s
#   setup_traps           stop everything started with start_bg on EXIT/INT/TERM/HUP
#   wait_http URL S       until URL answers 2xx (at most S seconds)
#   make_project_repo DIR PROJECT RUN   a git repo (branch main) with a one-step sluice.yml
#   wait_runs_idle SERVER PROJECT S     until PROJECT has >= 1 run and none queued/running
#   machine_note          a `# host:` context line (load, CPU busy %, UTC time)

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$BENCH_DIR/.." && pwd)"
BENCH_WORK="${BENCH_WORK:-$BENCH_DIR/.work}"
PY="$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || command -v python3 )"
export BENCH_DIR REPO_ROOT BENCH_WORK PY

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

sluice_bin() {
  if [ -z "${SLUICE_BIN:-}" ]; then
    SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/sluice"
    case $SLUICE_BIN in /*) ;; *) SLUICE_BIN="$REPO_ROOT/$SLUICE_BIN" ;; esac
    if [ ! -x "$SLUICE_BIN" ]; then
      log "building $SLUICE_BIN (cargo build --release -p sluice)"
      (cd "$REPO_ROOT" && cargo build --release -p sluice >&2) || die "cargo build --release -p sluice failed"
    fi
  fi
  [ -x "$SLUICE_BIN" ] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
  SLUICE_BIN="$(cd "$(dirname "$SLUICE_BIN")" && pwd)/$(basename "$SLUICE_BIN")"
  export SLUICE_BIN
}

# proxy_bin: unless SLUICE_PROXY_BIN is set, builds the release binary and points
# SLUICE_PROXY_BIN at a private copy of it, so that other work rebuilding the shared target dir
# cannot swap it during the run.
proxy_bin() {
  if [ -z "${SLUICE_PROXY_BIN:-}" ]; then
    log "cargo build --release -p sluice"
    (cd "$REPO_ROOT" && cargo build --release -q -p sluice) >&2 || die "build failed"
    mkdir -p "$BENCH_WORK/bin"
    cp "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/sluice" "$BENCH_WORK/bin/sluice-proxy-bench"
    SLUICE_PROXY_BIN="$BENCH_WORK/bin/sluice-proxy-bench"
  fi
  [ -x "$SLUICE_PROXY_BIN" ] || die "no proxy binary at $SLUICE_PROXY_BIN"
  export SLUICE_PROXY_BIN
}

free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

_STARTED_PIDS=()
start_bg() {
  local name=$1 logf=$2; shift 2
  setsid "$@" >"$logf" 2>&1 < /dev/null &
  LAST_PID=$!
  _STARTED_PIDS+=("$LAST_PID")
  log "started $name pid=$LAST_PID"
}

stop_pid() {
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local i
  for ((i=${#_STARTED_PIDS[@]}-1; i>=0; i--)); do stop_pid "${_STARTED_PIDS[$i]}"; done
  _STARTED_PIDS=()
}

# run_fg CMD... : a waited-for child, so INT/TERM interrupt the wait at once
_FG_PID=""
run_fg() {
  local rc=0
  "$@" &
  _FG_PID=$!
  wait "$_FG_PID" || rc=$?
  _FG_PID=""
  return $rc
}

_on_signal() {
  [ -n "$_FG_PID" ] && kill -TERM -- "-$_FG_PID" 2>/dev/null; [ -n "$_FG_PID" ] && kill -TERM "$_FG_PID" 2>/dev/null
  exit 130
}

setup_traps() { trap cleanup EXIT; trap _on_signal INT TERM HUP; }

wait_http() {
  "$PY" - "$1" "${2:-30}" <<'PYEOF'
import sys, time, urllib.request
url, limit = sys.argv[1], float(sys.argv[2]); end = time.monotonic() + limit
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if 200 <= r.status < 300:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
sys.exit(1)
PYEOF
}

git_q() { GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench \
  GIT_COMMITTER_EMAIL=bench@localhost GIT_CONFIG_NOSYSTEM=1 HOME="$BENCH_WORK" git "$@"; }

# make_project_repo DIR PROJECT RUN : a fresh repo on branch main whose sluice.yml has project
# PROJECT, environment `main` (branch main) and service `job` with one step `job` running RUN.
make_project_repo() {
  local dir=$1 project=$2 run=$3
  rm -rf "$dir"; mkdir -p "$dir"
  git_q -C "$dir" init -q -b main
  {
    echo "project: $project"
    echo "environments:"
    echo "  main:"
    echo "    branch: main"
    echo "services:"
    echo "  job:"
    echo "    steps:"
    echo "      job:"
    echo "        run: $("$PY" -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$run")"
  } > "$dir/sluice.yml"
  echo 0 > "$dir/counter"
  git_q -C "$dir" add -A
  git_q -C "$dir" commit -q -m "bench: $project"
}

# wait_runs_idle SERVER PROJECT S : until the project has at least one run and none is queued
# or running (at most S seconds); prints the number of runs
wait_runs_idle() {
  local server=$1 project=$2 max=${3:-60} i out
  for ((i = 0; i < max * 10; i++)); do
    out=$("$SLUICE_BIN" runs --project "$project" --server "$server" --output json 2>/dev/null || echo '[]')
    if "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r and all(x["status"] not in ("queued","running") for x in r) else 1)' "$out"; then
      "$PY" -c 'import json,sys; r=json.loads(sys.argv[1]); print(len(r), r[0]["status"])' "$out"
      return 0
    fi
    sleep 0.1
  done
  return 1
}

cpu_busy_pct() {
  local u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2 tot idle
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
  sleep "${1:-1}"
  read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
  tot=$(( (u2+n2+s2+i2+w2+q2+sq2+st2) - (u1+n1+s1+i1+w1+q1+sq1+st1) ))
  idle=$(( (i2+w2) - (i1+w1) ))
  echo $(( tot > 0 ? 100 * (tot - idle) / tot : 0 ))
}

machine_note() {
  echo "# host: $(nproc) cores, load avg $(cut -d' ' -f1-3 /proc/loadavg), cpu busy (1 s sample, all processes) $(cpu_busy_pct 1)%, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
