#!/usr/bin/env bash
# CI_CANDIDATE_SETUP for bench/ci_overhead.sh (run by the peer harness under `bash -c`, with
# LISTEN, WORKDIR, JOB_SCRIPT in the environment, and SLUICE_BIN exported by ci_overhead.sh).
# Makes $WORKDIR/repo (sluice.yml: project `trivial`, environment `main` on branch `main`, one
# service with one step whose `run:` is $JOB_SCRIPT), registers it with polling off and waits
# until the registration's own first run has finished, so it does not overlap the measurement.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
: "${LISTEN:?}" "${WORKDIR:?}" "${JOB_SCRIPT:?}" "${SLUICE_BIN:?}"
make_project_repo "$WORKDIR/repo" trivial "$JOB_SCRIPT"
"$SLUICE_BIN" project add "$WORKDIR/repo" --server "http://$LISTEN" --poll-interval 0 >&2
state=$(wait_runs_idle "http://$LISTEN" trivial 60) || die "the first run of project trivial did not finish within 60 s"
log "project trivial registered; first run finished ($state)"
