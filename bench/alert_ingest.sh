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
#   - the harness's load generator alone against a null server (nginx answering 200 to every
#     POST): its ceiling in that mode (`alerts.null-<mode>.accepted_per_s`). With one alert per
#     POST, that ceiling (a Python client, 8 threads) is about Alertmanager's own rate, so no
#     candidate can show 2x there through the harness: hence the next round.
# Fast-client round (WRK=1, mode batch1): the same alerts (tools/alert_wrk.lua: one distinct
#   label set per alert, 100 groups) sent by wrk (C, 1 thread, 8 keep-alive connections, for
#   WRK_SECONDS) to Alertmanager (the harness's example candidate script starts it as the
#   harness does) and to a fresh sluice, side by side: alerts/s and p99 of each
#   (`alerts.<system>-wrk-batch1.*`) and their ratio.
# Storm (mode storm): N_STORM=100000 alerts in batches of 64 through the harness to a fresh
#   sluice only; then checks, printed as figures: every alert stored and firing (from the
#   API; `lost`), incidents = the 100 groups, the whole load within 60 s, peak RSS within
#   STORM_RSS_MIB (512). The script exits non-zero if a check fails.
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
#   alerts.sluice.first_notification_minus_group_wait_<mode>, alerts.sluice.peak_rss_<mode>;
#   alerts.null-<mode>.accepted_per_s; alerts.{alertmanager,sluice}-wrk-batch1.{accepted_per_s,
#   post_p99}, alerts.ratio.accepted_per_s_wrk_batch1; alerts.sluice-storm.{lost, incidents,
#   load_seconds, peak_rss}.
# Goal: accepted_per_s ratio >= 2 in both modes; first notification <= group_wait + 50 ms.
#
# Knobs (env): SLUICE_BIN (default: a private copy of target/release/sluice, built first),
#   PEERS_DIR, MODES="batch64 batch1 storm", N_BATCH64=20000, N_BATCH1=5000, N_STORM=100000,
#   STORM_RSS_MIB=512, WRK=1, WRK_SECONDS=5, NULL=1, PD=1, PD_N=5000,
#   PEERS=alertmanager ("" = sluice only), ALERT_KEY (32 letters/digits), WAIT_MAX=60,
#   WAIT_IDLE (harness: wait for an idle CPU before each run).
# Scratch: bench/.work/ only (the harness's too, via PEERS_WORK).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

PEERS_DIR="${PEERS_DIR:-$(cd "$REPO_ROOT/.." && pwd)/shared/bench/peers}"
[ -f "$PEERS_DIR/alert_ingest.sh" ] || die "peer harness not found at $PEERS_DIR (set PEERS_DIR)"
MODES=${MODES:-"batch64 batch1 storm"}
N_BATCH64=${N_BATCH64:-20000}
N_BATCH1=${N_BATCH1:-5000}
N_STORM=${N_STORM:-100000}
STORM_RSS_MIB=${STORM_RSS_MIB:-512}
WRK=${WRK:-1}
WRK_SECONDS=${WRK_SECONDS:-5}
NULL=${NULL:-1}
FAILED_CHECKS=0
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
export PEERS_WORK="$BENCH_WORK/peers" GROUP_WAIT_S GROUP_INTERVAL_S WAIT_MAX

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

# storm_checks DIR N: the storm's checks, from the harness's and server_report's figures
storm_checks() {
  local d=$1 n=$2 accepted rate alerts inc secs hwm ok=1
  accepted=$(fig "$d/figures.txt" sluice-storm accepted)
  rate=$(fig "$d/figures.txt" sluice-storm accepted_per_s)
  alerts=$(fig "$d/report.txt" sluice-storm api_alerts)
  inc=$(fig "$d/report.txt" sluice-storm api_incidents)
  hwm=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SPID/status")
  secs=$(awk -v n="${accepted:-0}" -v r="${rate:-0}" 'BEGIN { printf "%.2f", (r > 0 ? n / r : 0) }')
  echo "alerts.sluice-storm.lost $(( n - ${alerts:-0} )) alerts"
  echo "alerts.sluice-storm.incidents ${inc:-0} incidents"
  echo "alerts.sluice-storm.load_seconds $secs s"
  echo "alerts.sluice-storm.peak_rss $hwm MiB"
  [ "${accepted:-0}" = "$n" ] || { log "storm: ${accepted:-0} of $n alerts accepted"; ok=0; }
  [ "${alerts:-0}" = "$n" ] || { log "storm: ${alerts:-0} of $n alerts stored and firing"; ok=0; }
  [ "${inc:-0}" = 100 ] || { log "storm: ${inc:-0} incidents, expected 100 (the groups)"; ok=0; }
  awk -v s="$secs" 'BEGIN { exit !(s > 0 && s < 60) }' || { log "storm: the load took $secs s (limit 60)"; ok=0; }
  [ "$hwm" -le "$STORM_RSS_MIB" ] || { log "storm: peak RSS $hwm MiB over the bound of $STORM_RSS_MIB MiB"; ok=0; }
  echo "# storm checks: $([ $ok = 1 ] && echo "all passed" || echo FAILED) (none lost, incidents = groups, < 60 s, peak RSS <= $STORM_RSS_MIB MiB)"
  [ $ok = 1 ] || FAILED_CHECKS=$((FAILED_CHECKS + 1))
}

# null_ceiling MODE N BATCH: the harness's load generator against nginx answering 200
null_ceiling() {
  local mode=$1 n=$2 batch=$3 port d="$W/null" npid
  command -v nginx >/dev/null || { log "nginx not installed: no null-server ceiling"; return 0; }
  mkdir -p "$d"; port=$(free_port)
  cat > "$d/nginx.conf" <<NGINX
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
daemon off;
events { worker_connections 1024; }
http { access_log off; client_body_buffer_size 64k; client_max_body_size 16m;
  server { listen 127.0.0.1:$port; location / { return 200 "ok"; } } }
NGINX
  start_bg nginx-null "$d/nginx.log" nginx -c "$d/nginx.conf" -p "$d"
  npid=$LAST_PID
  wait_http "http://127.0.0.1:$port/" 15 || die "the null server did not start"
  run_fg timeout 300 "$PY" "$PEERS_DIR/tools/alert_load.py" --url "http://127.0.0.1:$port/api/v2/alerts" \
    --name "null-$mode" --n "$n" --batch "$batch" --concurrency 8 > "$d/$mode.txt" || log "null ceiling: the load failed"
  grep -E "^alerts\.null-$mode\.(accepted_per_s|post_p99) " "$d/$mode.txt" || true
  stop_pid "$npid"
}

# wrk_one NAME URL: one fast-client round of WRK_SECONDS, one alert per POST
wrk_one() {
  local name=$1 url=$2 out req err secs p99
  out=$(BATCH=1 timeout $((WRK_SECONDS + 30)) wrk -t1 -c8 -d"${WRK_SECONDS}s" --timeout 10s \
    -s "$BENCH_DIR/tools/alert_wrk.lua" "$url" 2>&1) || { log "wrk against $name failed: $out"; return 0; }
  req=$(awk '$1 == "wrk.requests" { print $2 }' <<<"$out")
  err=$(awk '$1 == "wrk.errors" { print $2 }' <<<"$out")
  secs=$(awk '$1 == "wrk.seconds" { print $2 }' <<<"$out")
  p99=$(awk '$1 == "wrk.p99_ms" { print $2 }' <<<"$out")
  echo "alerts.$name-wrk-batch1.accepted_per_s $(awk -v r="$req" -v e="$err" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? (r - e) / s : 0) }') alerts/s"
  echo "alerts.$name-wrk-batch1.errors $err requests"
  echo "alerts.$name-wrk-batch1.post_p99 $p99 ms"
}

# wrk_rounds: Alertmanager, then a fresh sluice, each under wrk with one alert per POST
wrk_rounds() {
  command -v wrk >/dev/null || apt-get install -y -q wrk >&2 || { log "wrk not installable: no fast-client round"; return 0; }
  local d="$W/wrk" am_port sink_port apid spid am sl url
  mkdir -p "$d/am" "$d/sluice"
  echo "# fast-client round: wrk -t1 -c8 -d${WRK_SECONDS}s, one distinct alert per POST (tools/alert_wrk.lua), Alertmanager then sluice"
  if [ -n "$PEERS" ]; then
    am_port=$(free_port); sink_port=$(free_port)
    start_bg sink-wrk "$d/sink.log" "$PY" "$PEERS_DIR/tools/alert_sink.py" "$sink_port"
    spid=$LAST_PID
    LISTEN="127.0.0.1:$am_port" WEBHOOK_URL="http://127.0.0.1:$sink_port/" WORKDIR="$d/am" GROUP_BY=alertname,service \
      GROUP_WAIT="${GROUP_WAIT_S}s" GROUP_INTERVAL="${GROUP_INTERVAL_S}s" REPEAT_INTERVAL=4h \
      start_bg alertmanager-wrk "$d/am.log" bash "$PEERS_DIR/examples/candidate_alert_alertmanager.sh"
    apid=$LAST_PID
    wait_http "http://127.0.0.1:$am_port/-/ready" 60 || die "Alertmanager did not start for the wrk round"
    wrk_one alertmanager "http://127.0.0.1:$am_port/api/v2/alerts" | tee "$d/am.txt"
    stop_pid "$apid"; stop_pid "$spid"
  fi
  sink_port=$(free_port)
  start_server "$d/sluice"
  url=$(GROUP_WAIT_S=$GROUP_WAIT_S GROUP_INTERVAL_S=$GROUP_INTERVAL_S \
    "$BENCH_DIR/tools/alert_bench_setup.sh" "$SERVER" "$d/sluice" "http://127.0.0.1:$sink_port/" "$ALERT_KEY") \
    || die "wrk: setting up sluice failed"
  wrk_one sluice "$url" | tee "$d/sluice.txt"
  echo "alerts.sluice-wrk-batch1.peak_rss $(awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$SPID/status") MiB"
  stop_pid "$SPID"
  am=$(awk '$1 == "alerts.alertmanager-wrk-batch1.accepted_per_s" { print $2 }' "$d/am.txt" 2>/dev/null || true)
  sl=$(awk '$1 == "alerts.sluice-wrk-batch1.accepted_per_s" { print $2 }' "$d/sluice.txt")
  if [ -n "$am" ] && [ -n "$sl" ]; then
    echo "alerts.ratio.accepted_per_s_wrk_batch1 $(awk -v a="$sl" -v b="$am" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') x"
  fi
}

for mode in $MODES; do
  case $mode in
    batch64) n=$N_BATCH64; batch=64; peers=$PEERS ;;
    batch1) n=$N_BATCH1; batch=1; peers=$PEERS ;;
    storm) n=$N_STORM; batch=64; peers="" ;;
    *) die "unknown mode $mode (batch64, batch1 or storm)" ;;
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
  SINK_PORT=$SINK_PORT CANDIDATE_URL=$am_url CANDIDATE_NAME="sluice-$mode" CANDIDATE_PD=0 N=$n BATCH=$batch PEERS=$peers \
    run_fg timeout 900 bash "$PEERS_DIR/alert_ingest.sh" > "$D/harness.out" || rc=$?
  sed "s/^alerts\.alertmanager\./alerts.alertmanager-$mode./" "$D/harness.out" | tee "$D/figures.txt"
  [ "$rc" = 0 ] || { tail -n 20 "$D/server.log" >&2; die "$mode: the peer harness failed (rc=$rc)"; }
  server_report "$mode" "$D" | tee "$D/report.txt"
  am=$(fig "$D/figures.txt" "alertmanager-$mode" accepted_per_s)
  sl=$(fig "$D/figures.txt" "sluice-$mode" accepted_per_s)
  if [ -n "$am" ] && [ -n "$sl" ]; then
    echo "alerts.ratio.accepted_per_s_$mode $(awk -v a="$sl" -v b="$am" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') x"
  fi
  fn=$(fig "$D/figures.txt" "sluice-$mode" first_notification_minus_group_wait)
  [ -n "$fn" ] && echo "alerts.sluice.first_notification_minus_group_wait_$mode $fn s"
  if [ "$mode" = storm ]; then storm_checks "$D" "$n"; fi
  stop_pid "$SPID"
  if [ "$mode" != storm ] && [ "$NULL" = 1 ]; then null_ceiling "$mode" "$n" "$batch"; fi
  if [ "$mode" = batch1 ] && [ "$WRK" = 1 ]; then wrk_rounds; fi
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

[ "$FAILED_CHECKS" = 0 ] || die "$FAILED_CHECKS check(s) failed (see the log above)"
