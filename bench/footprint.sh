#!/usr/bin/env bash
# footprint.sh: sluice's footprint on this machine, with the release binary.
#  (a) binary size;
#  (b) start-up to the first 200 on /healthz, median over STARTS=20 starts each with a fresh data
#      directory (database created, migrations run) and with a warm one (existing database);
#      polled in a tight bounded loop (tools/cold_start.py);
#  (c) idle RSS: one server, one project registered (a small git repo with a valid sluice.yml,
#      default poll interval), after its first run has finished and IDLE_S=5 s of idle:
#      VmRSS from /proc/<pid>/status (plus VmHWM, threads and the anonymous/file split).
# Goals: idle RSS <= 30 MB, cold start <= 100 ms.
#
# Knobs (env): SLUICE_BIN (default target/release/sluice, built if missing), STARTS=20, IDLE_S=5.
# Output: `footprint.sluice.<figure> <value> <unit>` on stdout, `#` context lines; logs on stderr.
# Scratch: bench/.work/footprint/ only.
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

STARTS=${STARTS:-20}
IDLE_S=${IDLE_S:-5}
W="$BENCH_WORK/footprint"
rm -rf "$W"; mkdir -p "$W"
setup_traps
sluice_bin

echo "# goal: idle RSS <= 30 MB, cold start <= 100 ms"
echo "# sluice: $("$SLUICE_BIN" --version 2>/dev/null) ($SLUICE_BIN)"
machine_note

# (a) binary size
bytes=$(stat -c %s "$SLUICE_BIN")
"$PY" -c "import sys; b=int(sys.argv[1]); print(f'footprint.sluice.binary_size {b/1048576:.2f} MB'); print(f'# binary: {b} bytes (MB = 2^20 bytes in every footprint figure); {sys.argv[2]}')" "$bytes" "$(file -b "$SLUICE_BIN" 2>/dev/null | cut -d, -f1-2,6- || true)"

# (b) start-up to first 200 on /healthz
for mode in fresh warm; do
  run_fg timeout 600 "$PY" "$BENCH_DIR/tools/cold_start.py" --bin "$SLUICE_BIN" --work "$W/start" \
    --n "$STARTS" --mode "$mode" --out "$W/start-$mode.json" > "$W/start-$mode.txt" || die "start-up measurement ($mode) failed"
  read -r _ med p95 mn mx n < "$W/start-$mode.txt"
  fig=$([ "$mode" = fresh ] && echo cold_start || echo warm_start)
  echo "footprint.sluice.${fig}_median $med ms"
  echo "footprint.sluice.${fig}_p95 $p95 ms"
  echo "# $fig ($mode data dir): n=$n min $mn ms, max $mx ms; spawn -> first 200 on GET /healthz"
done

# (c) idle RSS with one project registered
PORT=$(free_port); SERVER="http://127.0.0.1:$PORT"
make_project_repo "$W/repo" idle "echo built \$SLUICE_COMMIT"
start_bg sluice-idle "$W/server.log" "$SLUICE_BIN" server --listen "127.0.0.1:$PORT" --data-dir "$W/data"
SPID=$LAST_PID
wait_http "$SERVER/healthz" 30 || { tail -n 20 "$W/server.log" >&2; die "sluice server did not answer /healthz"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
rss_start=$(status_kb "$SPID" VmRSS)
"$SLUICE_BIN" project add "$W/repo" --server "$SERVER" >/dev/null || die "project add failed"
wait_runs_idle "$SERVER" idle 60 >/dev/null || die "the first run of project idle did not finish"
log "first run finished; idle for ${IDLE_S}s"
sleep "$IDLE_S"
kill -0 "$SPID" 2>/dev/null || die "the server exited"
rss=$(status_kb "$SPID" VmRSS); hwm=$(status_kb "$SPID" VmHWM); threads=$(status_kb "$SPID" Threads)
anon=$(status_kb "$SPID" RssAnon); file=$(status_kb "$SPID" RssFile)
mb() { "$PY" -c "import sys; print(f'{int(sys.argv[1])/1024:.1f}')" "$1"; }
echo "footprint.sluice.idle_rss $(mb "$rss") MB"
echo "footprint.sluice.peak_rss $(mb "$hwm") MB"
echo "footprint.sluice.rss_after_start $(mb "$rss_start") MB"
echo "footprint.sluice.threads $threads threads"
echo "# idle RSS: VmRSS of pid $SPID after one project (poll interval 5 s) and its first run, then ${IDLE_S}s idle; RssAnon $(mb "$anon") MB, RssFile $(mb "$file") MB (MB = 2^20 bytes)"
stop_pid "$SPID"
machine_note
