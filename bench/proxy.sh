#!/usr/bin/env bash
# proxy.sh: sluice's reverse-proxy throughput and latency, beside nginx and HAProxy, from one run
# of the shared peer harness $PEERS_DIR/proxy_overhead.sh (shared/bench/peers, see its README).
#
# Every target proxies to the same nginx upstream (`return 200 "ok"`, one worker) and gets a warm-up
# (wrk -t1 -c64 -d2s) then `wrk -t2 -c64 -d10s --latency`; ROUNDS interleaves the targets and reports
# medians. The candidate is `sluice proxy` (built here with `cargo build --release -p sluice`)
# on a runtime of $WORKERS
# threads (a current-thread runtime for 1, the match for one nginx worker / one HAProxy thread).
#
# Knobs (env): ROUNDS=3 (the machine is noisy), PROXY_WORKERS=1, PEERS_DIR, SLUICE_PROXY_BIN (skip
#   the build and use this binary), plus the harness's own (DURATION THREADS CONNS WARMUP TARGETS).
# Output: `proxy.<system>.<figure> <value> <unit>` on stdout (system: direct nginx haproxy sluice);
#   `#` lines are context; logs on stderr. Scratch: bench/.work/ only (the harness's too).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

PEERS_DIR="${PEERS_DIR:-$(cd "$REPO_ROOT/.." && pwd)/shared/bench/peers}"
[ -f "$PEERS_DIR/proxy_overhead.sh" ] || die "peer harness not found at $PEERS_DIR (set PEERS_DIR)"
export ROUNDS="${ROUNDS:-3}"
setup_traps

proxy_bin

echo "# goal: sluice rps >= nginx rps with the same number of workers"
echo "# candidate: $SLUICE_PROXY_BIN proxy --workers \$WORKERS"
export PEERS_WORK="$BENCH_WORK/peers"
export CANDIDATE_NAME=sluice
export PROXY_CANDIDATE_CMD='exec "$SLUICE_PROXY_BIN" proxy --listen "$LISTEN" --upstream "$UPSTREAM" --workers "${WORKERS:-1}"'
log "peer harness: $PEERS_DIR/proxy_overhead.sh (ROUNDS=$ROUNDS, scratch $PEERS_WORK)"
run_fg bash "$PEERS_DIR/proxy_overhead.sh" || die "the peer harness failed"
