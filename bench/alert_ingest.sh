#!/usr/bin/env bash
# alert_ingest.sh: sluice's alert ingest (Alertmanager API v2 and PagerDuty Events v2) beside
# Prometheus Alertmanager 0.25 (Debian), from runs of the shared harness
# $PEERS_DIR/alert_ingest.sh (see its README, section 2, for the load and the sink).
#
# Method, for each MODE in MODES ("batch64 batch1"):
#   - a fresh `sluice server` (own session, 127.0.0.1, fresh data dir under bench/.work/alerts/,
#     SLUICE_ADMIN_TOKEN from `sluice tokens generate`), so incidents left by an earlier load
#     cannot absorb this one's alerts;
#   - tools/alert_bench_setup.sh: a repo whose sluice.yml groups alerts by [alertname, service]
#     (group_wait 2s, group_interval 5s) and sends them to a webhook channel in Alertmanager's
#     webhook format at http://127.0.0.1:$SINK_PORT/ (the harness's sink); project registered
#     with polling off, its first run awaited; an integration with key $ALERT_KEY;
#   - the harness with CANDIDATE_URL=<sluice>/integrations/$ALERT_KEY/api/v2/alerts and that
#     SINK_PORT: Alertmanager first, then sluice, the same load (N alerts, BATCH per POST,
#     8 keep-alive connections, 100 groups), each measured by the harness's own figures.
#     batch64: N=20000, BATCH=64 (Prometheus' batch size); batch1: N=5000, BATCH=1.
#   - sluice's peak RSS (VmHWM) and CPU time while the harness ran.
# PagerDuty (PD=1): one more fresh server; the harness's tools/alert_load.py --format pd sends
#   PD_N=5000 trigger events, one per POST, to <sluice>/integrations/$ALERT_KEY/v2/enqueue with
#   routing_key $ALERT_KEY, and the harness's sink counts the notifications. sluice.yml has
#   `rate_limit: 1000000` (its PagerDuty-style 429 throttle, default 600 events/min per routing
#   key, the most it allows, out of reach of this load). It is run here and
#   not through the harness's CANDIDATE_PD=1 because that sends the routing key
#   `bench0000000000000000000000000000`, 33 characters, which PagerDuty (and sluice) refuse:
#   a routing key is 32 characters. No Debian peer implements Events v2.
#
# Output (one figure per line; `#` lines are context; logs on stderr):
#   alerts.alertmanager-<mode>.<figure>, alerts.sluice-<mode>.<figure>: the harness's lines,
#     the subject suffixed with the mode (the harness names Alertmanager `alertmanager` in
#     every mode); alerts.sluice-pd.<figure>: the PagerDuty load;
#   alerts.sluice-<mode>.api_incidents, .api_alerts: sluice's open incidents and firing alerts
#     after the load, from its API (cf. alerts.alertmanager-<mode>.api_groups, .api_alerts);
#   alerts.ratio.accepted_per_s_<mode>: sluice's accepted alerts/s / Alertmanager's;
#   alerts.sluice.first_notification_minus_group_wait_<mode>, alerts.sluice.peak_rss_<mode>.
# Goal: accepted_per_s ratio >= 2 in both modes; first notification <= group_wait + 50 ms.
#
# Knobs (env): SLUICE_BIN (default: a private copy of target/release/sluice, built first),
#   PEERS_DIR, MODES="batch64 batch1", N_BATCH64=20000, N_BATCH1=5000, PD=1, PD_N=5000,
#   PEERS=alertmanager ("" = sluice only), ALERT_KEY (32 letters/digits), WAIT_MAX=60,
#   WAIT_IDLE (harness: wait for an idle CPU before each run).
# Scratch: bench/.work/ only (the harness's too, via PEERS_WORK).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

PEERS_DIR="${PEERS_DIR:-$(cd "$REPO_ROOT/.." && pwd)/shared/bench/peers}"
[ -f "$PEERS_DIR/alert_ingest.sh" ] || die "peer harness not found at $PEERS_DIR (set PEERS_DIR)"
MODES=${MODES:-"batch64 batch1"}
N_BATCH64=${N_BATCH64:-20000}
N_BATCH1=${N_BATCH1:-5000}
PD=${PD:-1}
PD_N=${PD_N:-5000}
PEERS=${PEERS-alertmanager}
ALERT_KEY=${ALERT_KEY:-bench000000000000000000000000000}
WAIT_MAX=${WAIT_MAX:-60}
GROUP_WAIT_S=2
GROUP_INTERVAL_S=5
[[ $ALERT_KEY =~ ^[A-Za-z0-9]{32}$ ]] || die "ALERT_KEY must be 32 letters or digits"
W="$BENCH_WORK/alerts"
rm -rf "$W"; mkdir -p "$W"
setup_traps

# a private copy of the binary: other work rebuilding the shared target dir cannot swap it
if [ -z "${SLUICE_BIN:-}" ]; then
  log "cargo build --release -p sluice"
  (cd "$REPO_ROOT" && timeout 3600 cargo build --release -q -p sluice) >&2 || die "build failed"
  mkdir -p "$BENCH_WORK/bin"
  cp "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/sluice" "$BENCH_WORK/bin/sluice-alert-bench"
  SLUICE_BIN="$BENCH_WORK/bin/sluice-alert-bench"
fi
sluice_bin
SLUICE_TOKEN=$("$SLUICE_BIN" tokens generate) || die "sluice tokens generate failed"
export SLUICE_TOKEN SLUICE_ADMIN_TOKEN="$SLUICE_TOKEN"
export PEERS_WORK="$BENCH_WORK/peers" GROUP_WAIT_S GROUP_INTERVAL_S WAIT_MAX PEERS

echo "# goal: sluice accepts >= 2x Alertmanager's alerts/s in both modes; first notification <= group_wait + 50 ms"
echo "# sluice: $("$SLUICE_BIN" --version 2>/dev/null) ($SLUICE_BIN); journal: SQLite in a fresh data dir per mode, on $(df -T "$W" | awk 'NR==2 {print $2 " (" $1 ")"}')"

# cpu_s PID: user+sys CPU seconds of a process so far
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat"; }
# fig FILE NAME FIGURE: the value of `alerts.NAME.FIGURE` in FILE (empty when absent)
fig() { awk -v k="alerts.$2.$3" '$1 == k { print $2 }' "$1" | tail -n 1; }

# start_server DIR: a fresh sluice server; sets SERVER and SPID
start_server() {
  local d=$1 port
  port=$(free_port)
  SERVER="http://127.0.0.1:$port"
  start_bg "sluice-$(basename "$d")" "$d/server.log" "$SLUICE_BIN" server --listen "127.0.0.1:$port" --data-dir "$d/data"
  SPID=$LAST_PID
  wait_http "$SERVER/healthz" 30 || { tail -n 20 "$d/server.log" >&2; die "sluice server did not answer /healthz"; }
}

# server_report MODE DIR: peak RSS, CPU, threads and the incidents sluice holds after the load
server_report() {
  local mode=$1 d=$2 hwm threads cpu1
  hwm=$(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SPID/status")
  threads=$(awk '/^Threads:/ { print $2 }' "/proc/$SPID/status")
  cpu1=$(cpu_s "$SPID")
  echo "alerts.sluice.peak_rss_$mode $hwm MiB"
  "$PY" - "$SERVER" "$mode" <<'PYEOF' || log "$mode: could not read sluice's incidents and alerts"
import json, os, sys, urllib.request
server, mode = sys.argv[1], sys.argv[2]
def get(path):
    req = urllib.request.Request(server + path, headers={"authorization": "Bearer " + os.environ["SLUICE_TOKEN"]})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)
inc = get("/api/v1/incidents?project=bench&open=true&limit=1000")
alerts, before = 0, None
for _ in range(200):  # bounded: 200 pages of 1000
    page = get("/api/v1/alerts?project=bench&firing=true&limit=1000" + (f"&before={before}" if before else ""))
    if not page:
        break
    alerts += len(page)
    before = min(a["id"] for a in page)
print(f"alerts.sluice-{mode}.api_incidents {len(inc)} incidents")
print(f"alerts.sluice-{mode}.api_alerts {alerts} alerts")
PYEOF
  echo "# sluice-$mode: server CPU while measured $(awk -v a="$CPU0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }') s (user+sys), threads $threads, data dir $(du -sh "$d/data" | cut -f1)"
}

for mode in $MODES; do
  case $mode in
    batch64) n=$N_BATCH64; batch=64 ;;
    batch1) n=$N_BATCH1; batch=1 ;;
    *) die "unknown mode $mode (batch64 or batch1)" ;;
  esac
  D="$W/$mode"; mkdir -p "$D"
  SINK_PORT=$(free_port)
  start_server "$D"
  am_url=$(GROUP_WAIT_S=$GROUP_WAIT_S GROUP_INTERVAL_S=$GROUP_INTERVAL_S \
    "$BENCH_DIR/tools/alert_bench_setup.sh" "$SERVER" "$D" "http://127.0.0.1:$SINK_PORT/" "$ALERT_KEY") \
    || { tail -n 20 "$D/server.log" >&2; die "$mode: setting up sluice failed"; }
  echo "# mode $mode: N=$n alerts, BATCH=$batch alerts per POST, 8 keep-alive connections, 100 groups; sluice at $am_url"
  CPU0=$(cpu_s "$SPID")
  log "$mode: peer harness $PEERS_DIR/alert_ingest.sh (Alertmanager, then sluice)"
  rc=0
  SINK_PORT=$SINK_PORT CANDIDATE_URL=$am_url CANDIDATE_NAME="sluice-$mode" CANDIDATE_PD=0 N=$n BATCH=$batch \
    run_fg timeout 900 bash "$PEERS_DIR/alert_ingest.sh" > "$D/harness.out" || rc=$?
  sed "s/^alerts\.alertmanager\./alerts.alertmanager-$mode./" "$D/harness.out" | tee "$D/figures.txt"
  [ "$rc" = 0 ] || { tail -n 20 "$D/server.log" >&2; die "$mode: the peer harness failed (rc=$rc)"; }
  server_report "$mode" "$D"
  am=$(fig "$D/figures.txt" "alertmanager-$mode" accepted_per_s)
  sl=$(fig "$D/figures.txt" "sluice-$mode" accepted_per_s)
  if [ -n "$am" ] && [ -n "$sl" ]; then
    echo "alerts.ratio.accepted_per_s_$mode $(awk -v a="$sl" -v b="$am" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') x"
  fi
  fn=$(fig "$D/figures.txt" "sluice-$mode" first_notification_minus_group_wait)
  [ -n "$fn" ] && echo "alerts.sluice.first_notification_minus_group_wait_$mode $fn s"
  stop_pid "$SPID"
done

if [ "$PD" = 1 ]; then
  D="$W/pd"; mkdir -p "$D"
  SINK_PORT=$(free_port)
  start_server "$D"
  am_url=$(GROUP_WAIT_S=$GROUP_WAIT_S GROUP_INTERVAL_S=$GROUP_INTERVAL_S \
    "$BENCH_DIR/tools/alert_bench_setup.sh" "$SERVER" "$D" "http://127.0.0.1:$SINK_PORT/" "$ALERT_KEY") \
    || { tail -n 20 "$D/server.log" >&2; die "pd: setting up sluice failed"; }
  start_bg sink-pd "$D/sink.log" "$PY" "$PEERS_DIR/tools/alert_sink.py" "$SINK_PORT"
  SINKPID=$LAST_PID
  wait_http "http://127.0.0.1:$SINK_PORT/stats" 15 || die "the sink did not start"
  pd_url="${am_url%/api/v2/alerts}/v2/enqueue"
  echo "# mode pd: PD_N=$PD_N PagerDuty Events v2 triggers, one per POST, 8 keep-alive connections, routing_key $ALERT_KEY, to $pd_url"
  echo "# mode pd: sluice.yml sets alerts.rate_limit: 1000000 (default 600 events per routing key and minute, answered 429 beyond, as PagerDuty does): this measures throughput, not the throttle"
  echo "# mode pd: a PagerDuty event's labels are source, component, group and class (no alertname), so group_by [alertname, service] groups them by service (component) alone: 10 groups, not the 100 alert_load.py expects"
  machine_note
  CPU0=$(cpu_s "$SPID")
  run_fg timeout $((180 + WAIT_MAX)) "$PY" "$PEERS_DIR/tools/alert_load.py" --url "$pd_url" --name sluice-pd \
    --format pd --routing-key "$ALERT_KEY" --n "$PD_N" --distinct "$PD_N" --concurrency 8 \
    --sink "http://127.0.0.1:$SINK_PORT" --group-wait "$GROUP_WAIT_S" --quiet $((GROUP_INTERVAL_S + 3)) \
    --wait-max "$WAIT_MAX" | tee "$D/figures.txt" || die "pd: the load failed"
  server_report pd "$D"
  fn=$(fig "$D/figures.txt" sluice-pd first_notification_minus_group_wait)
  [ -n "$fn" ] && echo "alerts.sluice.first_notification_minus_group_wait_pd $fn s"
  machine_note
  stop_pid "$SPID"
  stop_pid "$SINKPID"
fi
