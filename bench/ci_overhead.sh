#!/usr/bin/env bash
# ci_overhead.sh: sluice's CI overhead, beside Buildbot's, from one run of the shared peer harness.
#
# Part 1, per-job overhead: runs $PEERS_DIR/ci_overhead.sh (shared/bench/peers, see its README)
# with sluice as the candidate, so Buildbot's and sluice's figures come out of the same
# invocation (N=50 trivial one-step jobs each, interleaved with the bare job script):
#   CI_CANDIDATE_START  sluice server --listen $LISTEN --data-dir $WORKDIR/data
#   CI_CANDIDATE_SETUP  tools/sluice_ci_setup.sh: a git repo with sluice.yml (project `trivial`,
#                       env `main` on branch main, one service, one step running $JOB_SCRIPT),
#                       `sluice project add --poll-interval 0`, wait for the first run to finish
#   CI_CANDIDATE_RUN    sluice run trivial --server http://$LISTEN   (no terminal: one request
#                       that returns when the run is done; exit 0 only if it succeeded)
# Part 2, webhook -> first step: a separate sluice server and project with a webhook secret;
# WEBHOOK_N=20 pushes (a commit, then a signed generic webhook), each timed from just before the
# POST to the wall-clock stamp written by the step's first action (tools/webhook_latency.py).
#
# Knobs (env): SLUICE_BIN (default: target/release/sluice, built if missing), PEERS_DIR,
#   N=50 WARMUP=2 PEERS=buildbot ("" = sluice only) JOB_CMD=true POLL_MS=5 (peer harness knobs),
#   WEBHOOK_N=20 WEBHOOK_WARMUP=2, SKIP_CI=1 / SKIP_WEBHOOK=1 to run one part only.
# Output: `ci.<system>.<figure> <value> <unit>` on stdout, `#` lines are context; logs on stderr.
# Scratch: bench/.work/ only (the peer harness's too, via PEERS_WORK).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

PEERS_DIR="${PEERS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/bench/peers}"
[ -f "$PEERS_DIR/ci_overhead.sh" ] || die "peer harness not found at $PEERS_DIR (set PEERS_DIR)"
WEBHOOK_N=${WEBHOOK_N:-20}
WEBHOOK_WARMUP=${WEBHOOK_WARMUP:-2}
mkdir -p "$BENCH_WORK"
setup_traps
sluice_bin

echo "# goal: per-job overhead <= 7 ms (Laminar), webhook -> first step <= 100 ms"
echo "# sluice: $("$SLUICE_BIN" --version 2>/dev/null) ($SLUICE_BIN)"

# ---------------- part 1: per-job overhead, Buildbot and sluice in one harness run -------------
if [ "${SKIP_CI:-0}" != 1 ]; then
  q() { printf '%q' "$1"; }
  export PEERS_WORK="$BENCH_WORK/peers"
  export CANDIDATE_NAME=sluice
  export CI_CANDIDATE_START='exec "$SLUICE_BIN" server --listen "$LISTEN" --data-dir "$WORKDIR/data"'
  export CI_CANDIDATE_SETUP="exec $(q "$BENCH_DIR/tools/sluice_ci_setup.sh")"
  export CI_CANDIDATE_RUN='exec "$SLUICE_BIN" run trivial --server "http://$LISTEN"'
  log "peer harness: $PEERS_DIR/ci_overhead.sh (scratch $PEERS_WORK)"
  run_fg bash "$PEERS_DIR/ci_overhead.sh" || die "the peer harness failed"
fi

# ---------------- part 2: webhook -> first step -------------------------------------------------
if [ "${SKIP_WEBHOOK:-0}" != 1 ]; then
  W="$BENCH_WORK/webhook"
  rm -rf "$W"; mkdir -p "$W/stamps"
  PORT=$(free_port); SERVER="http://127.0.0.1:$PORT"
  SECRET="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
  make_project_repo "$W/repo" hooked "date +%s%N > $W/stamps/\$SLUICE_COMMIT"
  start_bg sluice-webhook "$W/server.log" "$SLUICE_BIN" server --listen "127.0.0.1:$PORT" --data-dir "$W/data"
  WPID=$LAST_PID
  wait_http "$SERVER/healthz" 30 || { tail -n 20 "$W/server.log" >&2; die "sluice server did not answer /healthz"; }
  "$SLUICE_BIN" project add "$W/repo" --server "$SERVER" --poll-interval 0 --webhook-secret "$SECRET" >/dev/null \
    || die "project add failed"
  wait_runs_idle "$SERVER" hooked 60 >/dev/null || die "the first run of project hooked did not finish"
  machine_note
  echo "# sluice webhook: generic webhook (HMAC-SHA256 signed) after a new commit, WEBHOOK_N=$WEBHOOK_N after $WEBHOOK_WARMUP warm-up, project polling off; latency = POST sent -> step's first action (date +%s%N), one wall clock"
  run_fg timeout 600 "$PY" "$BENCH_DIR/tools/webhook_latency.py" --url "$SERVER" --project hooked \
    --secret "$SECRET" --repo "$W/repo" --stamps "$W/stamps" --n "$WEBHOOK_N" --warmup "$WEBHOOK_WARMUP" \
    --name sluice --out "$W/webhook.json" || { tail -n 20 "$W/server.log" >&2; die "webhook latency run failed"; }
  machine_note
  stop_pid "$WPID"
fi
