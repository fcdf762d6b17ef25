#!/usr/bin/env bash
# switch.sh: a blue/green switch under constant load through sluice's proxy, beside nginx (reload)
# and HAProxy (runtime API), from one run of the shared harness $PEERS_DIR/switch_under_load.sh.
#
# Two nginx upstreams answer `version=A` / `version=B`; 8 keep-alive clients send a paced 2000 req/s
# while the proxy is switched K=30 times, one switch a second. The candidate is
# `sluice proxy --admin $SLUICE_ADMIN` and each switch
# is one `sluice switch --admin $SLUICE_ADMIN --to $TARGET_UPSTREAM` process: a PUT of the
# new route table to the admin API, so the switch latency includes that process's start-up.
#
# Knobs (env): PROXY_WORKERS=1, PEERS_DIR, SLUICE_PROXY_BIN (skip the build), plus the harness's
#   own (SWITCHES PAUSE WARMUP RATE CONNS TIMEOUT PEERS CHECK_DROPPED NGINX_RELOAD).
# Output: `switch.<system>.<figure> <value> <unit>` on stdout (system: nginx haproxy sluice); `#`
#   lines are context; logs on stderr. Scratch: bench/.work/ only (the harness's too).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

PEERS_DIR="${PEERS_DIR:-$(cd "$REPO_ROOT/.." && pwd)/shared/bench/peers}"
[ -f "$PEERS_DIR/switch_under_load.sh" ] || die "peer harness not found at $PEERS_DIR (set PEERS_DIR)"
setup_traps

proxy_bin
SLUICE_ADMIN="127.0.0.1:$(free_port)"
export SLUICE_ADMIN

echo "# goal: 0 failed requests and switch latency close to HAProxy's runtime API"
echo "# candidate: $SLUICE_PROXY_BIN proxy --admin $SLUICE_ADMIN; switch = $SLUICE_PROXY_BIN switch"
export PEERS_WORK="$BENCH_WORK/peers"
export CANDIDATE_NAME=sluice
export SWITCH_CANDIDATE_START='exec "$SLUICE_PROXY_BIN" proxy --listen "$LISTEN" --upstream "$UPSTREAM_A" --admin "$SLUICE_ADMIN" --workers "${WORKERS:-1}"'
export SWITCH_CANDIDATE_SWITCH='exec "$SLUICE_PROXY_BIN" switch --admin "$SLUICE_ADMIN" --to "$TARGET_UPSTREAM"'
log "peer harness: $PEERS_DIR/switch_under_load.sh (scratch $PEERS_WORK)"
run_fg bash "$PEERS_DIR/switch_under_load.sh" || die "the peer harness failed"
