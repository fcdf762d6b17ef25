#!/usr/bin/env bash
# alert_bench_setup.sh SERVER DIR SINK_URL KEY: prepares a running sluice server for
# bench/alert_ingest.sh and prints the integration's Alertmanager URL on stdout.
#
#   1. DIR/repo: a git repo (branch main) whose sluice.yml has project `bench`, environment
#      `production` on main, one service `svc` with one step `true`, and an `alerts:` section:
#      group_by [alertname, service], group_wait ${GROUP_WAIT_S}s, group_interval
#      ${GROUP_INTERVAL_S}s, rate_limit 1000000 (the PagerDuty endpoint's 429 throttle, default
#      600 events per routing key and minute, set out of reach: the bench measures throughput),
#      and one webhook channel `sink` posting to SINK_URL in Alertmanager's webhook format
#      (version 4), which is what the peer harness's sink counts.
#   2. `sluice project add --poll-interval 0` (polling off: no background noise), then waits
#      (at most 60 s) until the registration's own first run has finished.
#   3. POST /api/v1/projects/bench/integrations {"name":"bench","key":KEY}.
# Needs SLUICE_BIN and SLUICE_TOKEN (an admin API token) in the environment. Logs on stderr.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ $# -eq 4 ] || die "usage: alert_bench_setup.sh SERVER DIR SINK_URL KEY"
SERVER=$1 DIR=$2 SINK_URL=$3 KEY=$4
: "${SLUICE_BIN:?}" "${SLUICE_TOKEN:?}"
GROUP_WAIT_S=${GROUP_WAIT_S:-2}
GROUP_INTERVAL_S=${GROUP_INTERVAL_S:-5}

R="$DIR/repo"
rm -rf "$R"; mkdir -p "$R"
git_q -C "$R" init -q -b main
cat > "$R/sluice.yml" <<EOF
project: bench
environments:
  production:
    branch: main
services:
  svc:
    steps:
      build:
        run: "true"
alerts:
  group_by: [alertname, service]
  group_wait: ${GROUP_WAIT_S}s
  group_interval: ${GROUP_INTERVAL_S}s
  rate_limit: 1000000
  channels:
    sink:
      webhook: $SINK_URL
      format: alertmanager
EOF
git_q -C "$R" add -A
git_q -C "$R" commit -q -m "bench: alerts"

"$SLUICE_BIN" project add "$R" --server "$SERVER" --poll-interval 0 >&2 || die "project add failed"
state=$(wait_runs_idle "$SERVER" bench 60) || die "the first run of project bench did not finish within 60 s"
log "project bench registered; first run finished ($state)"

"$PY" - "$SERVER" "$KEY" <<'PYEOF'
import json, os, sys, urllib.request
server, key = sys.argv[1], sys.argv[2]
req = urllib.request.Request(
    server + "/api/v1/projects/bench/integrations", method="POST",
    data=json.dumps({"name": "bench", "key": key}).encode(),
    headers={"content-type": "application/json",
             "authorization": "Bearer " + os.environ["SLUICE_TOKEN"]})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        doc = json.load(r)
except urllib.error.HTTPError as e:
    sys.exit(f"creating the integration failed: {e.code} {e.read().decode(errors='replace')}")
print(doc["alertmanager_url"])
PYEOF
