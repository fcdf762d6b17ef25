#!/usr/bin/env bash
# deploy_under_load.sh: failed requests and deploy durations while sluice deploys a service again
# and again under a constant load, for each strategy (rolling, blue_green, canary).
#
# Method: one `sluice server` (own session, 127.0.0.1, scratch bench/.work/deploy/) and a git repo
# whose sluice.yml has three services, one per strategy (svc-rolling, svc-bluegreen, svc-canary),
# each exposed by sluice's proxy on its own free loopback port in environment `staging` (branch
# main), replicas 2, HTTP health check /healthz every 100 ms, stop_grace 2s. The app is a tiny
# asyncio HTTP/1.1 keep-alive server (python3, stdlib) that answers `version=<release>` and shuts
# down gracefully on SIGTERM. Two commits give releases 1 and 2 of every service. Then, for each
# strategy in turn: tools/deploy_load.py keeps RATE=1000 req/s (paced, keep-alive, no retries,
# 2 s timeout) on that service's address while DEPLOYS=50 consecutive
# `sluice deploy SVC --env staging --release N` alternate releases 1 and 2; each deploy is
# followed through GET /api/v1/deployments until it has ended.
#   duration = request sent (just before `sluice deploy` starts) -> the deployment's finished_ms
#   (server clock = same machine clock); the server-side span created_ms -> finished_ms is
#   printed too.
# Goal: 0 failed requests; deploy durations are reported (median, p95). With the defaults the
# whole run takes about 3 minutes (rolling ~25 s, blue_green ~50 s, canary ~65 s, rollbacks
# ~20 s, set-up ~5 s).
# Blue-green switch time: every blue-green deployment records, on its `bluegreen.switched`
# decision, the time from the last green instance passing its health check to the new route
# table being in the proxy (`switch_after_ready_ms`); printed as median/p95/max (goal <= 10 ms).
# Rollback while blue is warm: a fourth service (blue-green, keep_warm 120 s) is deployed
# ROLLBACKS=10 times; each time, once its deployment is keeping blue warm,
# `POST /api/v1/rollbacks` is sent and GET is repeated on its address until the previous
# release answers: request -> first answer of the previous release, median/p95/max (goal
# <= 1 s).
#
# Runtimes: all of the above runs once per runtime in RUNTIMES, on the same server. `process`:
# the services above (names and figures unchanged). `docker`: four more services (docker-rolling,
# docker-bluegreen, docker-canary, docker-rollback) with the same settings plus `runtime: docker`
# and `env: { BIND: 0.0.0.0 }`: each instance is a container of the server's base image
# (`sluice server --base-image`), the release artifact mounted at /app, `sh -c start`, published on
# 127.0.0.1:PORT (the app listens on ${BIND:-127.0.0.1}:$PORT, so inside a container on all its
# addresses). No image can be pulled: the script imports one (`docker import` of a root
# filesystem: busybox-static + this host's /usr/bin/python3, the libraries ldd lists for it and
# its extension modules, its standard library), tagged sluice-bench-python:<hash of the files'
# paths, sizes and mtimes>, so it is built once and reused; it is never removed. Figures of the
# docker runtime are `deploy.docker-<strategy>.<figure>` (and `deploy.docker-rollback_warm.*`).
# Docker needs a reachable daemon (docker CLI + `docker version`): without one a `#` line says
# why and docker is skipped, unless CI is set (then the script fails). Containers outlive
# `sluice server` like processes do: on exit (also on INT/TERM) every container labelled
# `sluice.runtime=sluice-<instance-id of the data dir>:` is removed.
#
# Knobs (env): SLUICE_BIN (default target/release/sluice, built if missing), DEPLOYS=50,
#   RATE=1000 (req/s), CONNS=32 (keep-alive connections of the load), STRATEGIES="rolling
#   blue_green canary", DEPLOY_TIMEOUT=60 (s, one deploy), STRATEGY_LIMIT=900 (s, hard limit of
#   one strategy's deploy loop; the load stops at STRATEGY_LIMIT+30 s whatever happens),
#   ROLLBACKS=10 (0 skips the rollback figures), RUNTIMES="process docker".
# Output: `deploy.<strategy>.<figure> <value> <unit>` (process) and
#   `deploy.docker-<strategy>.<figure> <value> <unit>` (docker) on stdout, `#` lines are context;
#   logs on stderr; details (every deploy, every failed request) under bench/.work/deploy/
#   (<strategy>/ and docker-<strategy>/).
set -euo pipefail
source "$(cd "$(dirname "$0")" && pwd)/tools/lib.sh"

DEPLOYS=${DEPLOYS:-50}
RATE=${RATE:-1000}
CONNS=${CONNS:-32}
STRATEGIES=${STRATEGIES:-"rolling blue_green canary"}
DEPLOY_TIMEOUT=${DEPLOY_TIMEOUT:-60}
STRATEGY_LIMIT=${STRATEGY_LIMIT:-900}
ROLLBACKS=${ROLLBACKS:-10}
RUNTIMES=${RUNTIMES:-"process docker"}
W="$BENCH_WORK/deploy"
# instances and the proxy daemon outlive `sluice server` by design (docs/deploys.md): on exit,
# after the server, stop the process group of every process whose working directory is under
# this run's data dir (instances) or whose command line names a file in it (the proxy daemon)
stop_instances() {
  local p c
  for p in /proc/[0-9]*; do
    c=$(readlink "$p/cwd" 2>/dev/null) || continue
    case $c in
      "$W/data/"*) ;;
      *) c=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
         case $c in *" $W/data/"*) ;; *) continue ;; esac ;;
    esac
    kill -TERM -- "-${p#/proc/}" 2>/dev/null || kill -TERM "${p#/proc/}" 2>/dev/null || true
  done
}
DOCKER=$(command -v docker || true)
# containers outlive the server too: remove (SIGKILL) every container of this run's data dir,
# i.e. labelled sluice.runtime=sluice-<instance-id>: (crates/runtime/src/docker.rs)
stop_containers() {
  local id ids
  [ -n "$DOCKER" ] && [ -s "$W/data/instance-id" ] || return 0
  id=$(tr -d ' \n' < "$W/data/instance-id")
  [ -n "$id" ] || return 0
  ids=$(timeout 30 "$DOCKER" ps -aq --filter "label=sluice.runtime=sluice-$id:" 2>/dev/null) || return 0
  [ -z "$ids" ] && return 0
  # shellcheck disable=SC2086
  timeout 60 "$DOCKER" rm -f $ids >/dev/null 2>&1 || log "could not remove containers: $ids"
}
_cleanup_all() { cleanup; stop_instances; stop_containers; }
[ -d "$W/data" ] && { stop_instances; stop_containers; }   # left over by an interrupted earlier run
rm -rf "$W"; mkdir -p "$W"
setup_traps
trap _cleanup_all EXIT
sluice_bin

# ---------------- runtimes: process always; docker needs a daemon and an image -----------------
RTS=()
for rt in $RUNTIMES; do
  case $rt in
    process) RTS+=(process) ;;
    docker)
      why=""
      if [ -z "$DOCKER" ]; then why="no docker CLI on PATH"
      elif ! v=$(timeout 10 "$DOCKER" version --format '{{.Server.Version}}' 2>&1); then
        why="no reachable Docker daemon ($(echo "$v" | tail -n 1); start one: bash .ci/docker.sh)"
      fi
      if [ -n "$why" ]; then
        [ -n "${CI:-}" ] && die "RUNTIMES has docker but $why (CI is set: not skipping)"
        echo "# docker: skipped: $why"
      else
        RTS+=(docker)
      fi ;;
    *) die "unknown runtime $rt (process, docker)" ;;
  esac
done
[ ${#RTS[@]} -gt 0 ] || { echo "# nothing to run (RUNTIMES=$RUNTIMES)"; exit 0; }

# bench_image: the reference of the base image for the docker runtime (busybox + this host's
# python3 with its libraries and standard library), imported first when no image of the same
# content hash exists
bench_image() {
  local exe name stdlib list hash ref stage a f
  exe=$(readlink -f /usr/bin/python3) || die "the docker image needs /usr/bin/python3"
  name=$(basename "$exe"); stdlib=/usr/lib/$name
  [ -f "$stdlib/os.py" ] || die "the docker image needs the standard library at $stdlib"
  [ -x /bin/busybox ] || die "the docker image needs /bin/busybox (apt-get install busybox-static)"
  list="$W/image.files"
  {
    echo /bin/busybox; echo "$exe"
    find "$stdlib" \( -name __pycache__ -o -name site-packages -o -name dist-packages \
      -o -path "$stdlib/test" -o -path "$stdlib/idlelib" -o -path "$stdlib/tkinter" \
      -o -path "$stdlib/turtledemo" -o -path "$stdlib/ensurepip" -o -path "$stdlib/lib2to3" \
      -o -path "$stdlib/pydoc_data" \) -prune -o -type f -print
    { echo "$exe"; find "$stdlib/lib-dynload" -name '*.so'; } | xargs -r ldd 2>/dev/null \
      | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $2 ~ /^\(0x/ { print $1 }'
  } | sort -u > "$list"
  hash=$( { echo "deploy_under_load-image-1"; xargs -r -d '\n' stat -L -c '%n %s %Y' < "$list"; } | sha256sum | cut -c1-16)
  ref="sluice-bench-python:$hash"
  if "$DOCKER" image inspect "$ref" >/dev/null 2>&1; then echo "$ref"; return 0; fi
  log "importing $ref ($(wc -l < "$list") files)"
  stage="$W/rootfs"; rm -rf "$stage"; mkdir -p "$stage"/{tmp,root,proc,sys,dev,etc,app,bin,usr/bin}
  chmod 1777 "$stage/tmp"
  xargs -r -d '\n' cp -L --parents -t "$stage" < "$list" || die "copying the image's files failed"
  for a in $(/bin/busybox --list-full); do
    f="$stage/$a"; [ -e "$f" ] || [ -L "$f" ] || { mkdir -p "$(dirname "$f")"; ln -s /bin/busybox "$f"; }
  done
  ln -sfn "$name" "$stage/usr/bin/python3"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$stage/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$stage/etc/group"
  tar -C "$stage" -cf - . | "$DOCKER" import -c 'CMD ["/bin/sh"]' \
    -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'LABEL sluice.bench-image=deploy_under_load' - "$ref" >/dev/null || die "docker import of $ref failed"
  rm -rf "$stage"
  echo "$ref"
}
IMAGE=""
case " ${RTS[*]} " in *" docker "*) IMAGE=$(bench_image) || die "could not make the docker image" ;; esac

# distinct free ports: server + one exposed address per service (4 per runtime)
NPORTS=$((1 + 4 * ${#RTS[@]}))
PORTS=()
for _ in $(seq 1 $((NPORTS * 2))); do
  p=$(free_port)
  case " ${PORTS[*]:-} " in *" $p "*) continue ;; esac
  PORTS+=("$p")
  [ ${#PORTS[@]} -eq "$NPORTS" ] && break
done
[ ${#PORTS[@]} -eq "$NPORTS" ] || die "could not find $NPORTS distinct free ports"
SERVER="http://127.0.0.1:${PORTS[0]}"
# per runtime: service and exposed address of each strategy (keys "<runtime>/<strategy>") and of
# the rollback service; SUBJ: the figures' subject (process: the strategy, as before)
declare -A SVC ADDR RB_SVC RB_ADDR SUBJ
k=1
for rt in "${RTS[@]}"; do
  pre=svc; [ "$rt" = process ] || pre=$rt
  for strat in rolling blue_green canary; do
    SVC[$rt/$strat]="$pre-${strat/_/}"; ADDR[$rt/$strat]="127.0.0.1:${PORTS[$k]}"; k=$((k + 1))
    if [ "$rt" = process ]; then SUBJ[$rt/$strat]=$strat; else SUBJ[$rt/$strat]=$rt-$strat; fi
  done
  RB_SVC[$rt]="$pre-rollback"; RB_ADDR[$rt]="127.0.0.1:${PORTS[$k]}"; k=$((k + 1))
done
PROJECT=deployload

echo "# goal: 0 failed requests under >= $RATE req/s during $DEPLOYS consecutive deploys per strategy; deploy duration median/p95 reported"
echo "# sluice: $("$SLUICE_BIN" --version 2>/dev/null) ($SLUICE_BIN)"
echo "# python: $("$PY" --version 2>&1) ($PY) for the app and the load"
echo "# runtimes: ${RTS[*]}${IMAGE:+; docker $("$DOCKER" version --format '{{.Server.Version}}' 2>/dev/null), base image $IMAGE}"

# ---------------- the repository: app, sluice.yml, two releases --------------------------------
R="$W/repo"
mkdir -p "$R"
git_q -C "$R" init -q -b main
cat > "$R/app.py" <<'PYEOF'
# Tiny fast HTTP/1.1 keep-alive server (asyncio raw protocol) for bench/deploy_under_load.sh.
# GET /healthz -> "ok", anything else -> "version=<version.txt>". Listens on ${BIND:-127.0.0.1}:$PORT
# (BIND=0.0.0.0 in a container, whose port is published on the host's loopback).
# SIGTERM: stop accepting, answer requests already received (with Connection: close), close
# idle keep-alive connections after 200 ms, exit when none is left (at most 1.5 s).
import asyncio, os, signal, sys
HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = open(os.path.join(HERE, "version.txt")).read().strip()
MAIN = ("version=%s\n" % VERSION).encode()
CONNS = set()
DRAINING = False

def resp(body, close):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n"
            % (len(body), b"Connection: close\r\n" if close else b"")) + body

class Http(asyncio.Protocol):
    def connection_made(self, t):
        self.t = t; self.buf = b""; CONNS.add(self)
    def connection_lost(self, exc):
        CONNS.discard(self)
    def data_received(self, data):
        self.buf += data
        out = []
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = self.buf[:i]; self.buf = self.buf[i + 4:]
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            path = parts[1] if len(parts) > 1 else b"/"
            lower = head.lower()
            j = lower.find(b"content-length:")
            if j >= 0:  # skip a request body (GETs have none)
                self.buf = self.buf[int(lower[j + 15:].split(b"\r\n", 1)[0].strip() or 0):]
            close = DRAINING or b"connection: close" in lower
            out.append(resp(b"ok\n" if path == b"/healthz" else MAIN, close))
            if close:
                self.t.write(b"".join(out)); self.t.close(); return
        if out:
            self.t.write(b"".join(out))

async def main():
    global DRAINING
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Http, os.environ.get("BIND") or "127.0.0.1", int(os.environ["PORT"]),
                                   backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    DRAINING = True
    srv.close()
    end = loop.time() + 1.5
    await asyncio.sleep(0.2)
    for c in list(CONNS):
        if not c.buf:
            c.t.close()
    while CONNS and loop.time() < end:
        await asyncio.sleep(0.02)
    sys.exit(0)

asyncio.run(main())
PYEOF
# The services' package steps of one run share the checkout and run at the same time: each packs
# into its own directory.
# The docker services run the same artifact in the server's base image (python3 is on its PATH)
# and listen on all of the container's addresses.
svc_yml() { # NAME PORT STRATEGY-YAML RUNTIME
  cat <<EOF
  $1:
    steps:
      package:
        run: mkdir -p out-$1 && cp app.py version.txt out-$1/
        artifacts: ["out-$1/**"]
    deploy:
EOF
  if [ "$4" = docker ]; then
    echo "      runtime: docker"
    echo "      env: { BIND: 0.0.0.0 }"
    echo "      start: exec python3 out-$1/app.py"
  else
    echo "      start: exec $PY out-$1/app.py"
  fi
  cat <<EOF
      replicas: 2
      health: { http: /healthz, interval: 100ms, timeout: 1s }
      stop_grace: 2s
      progress_deadline: 30s
      strategy: $3
      environments:
        staging: { expose: "$2" }
EOF
}
{
  echo "project: $PROJECT"
  echo "environments:"
  echo "  staging:"
  echo "    branch: main"
  echo "services:"
  for rt in "${RTS[@]}"; do
    svc_yml "${SVC[$rt/rolling]}" "${ADDR[$rt/rolling]}" "{ rolling: { max_surge: 1, max_unavailable: 0 } }" "$rt"
    svc_yml "${SVC[$rt/blue_green]}" "${ADDR[$rt/blue_green]}" "{ blue_green: { keep_warm: 500ms } }" "$rt"
    svc_yml "${SVC[$rt/canary]}" "${ADDR[$rt/canary]}" "{ canary: { steps: [{ weight: 50, pause: 500ms }, { weight: 100 }], analysis: { max_error_rate: 0.01, min_requests: 100, insufficient_traffic: pass, interval: 250ms } } }" "$rt"
    svc_yml "${RB_SVC[$rt]}" "${RB_ADDR[$rt]}" "{ blue_green: { keep_warm: 120s } }" "$rt"
  done
} > "$R/sluice.yml"
echo 1 > "$R/version.txt"
git_q -C "$R" add -A
git_q -C "$R" commit -q -m "release 1"

# ---------------- server, project, releases 1 and 2 ---------------------------------------------
# the server's admin API token (SLUICE_ADMIN_TOKEN) is the CLI's and the API calls' token
SLUICE_TOKEN=$("$SLUICE_BIN" tokens generate) || die "sluice tokens generate failed"
export SLUICE_TOKEN SLUICE_ADMIN_TOKEN="$SLUICE_TOKEN"
start_bg sluice-deploy "$W/server.log" "$SLUICE_BIN" server --listen "127.0.0.1:${PORTS[0]}" --data-dir "$W/data" \
  ${IMAGE:+--base-image "$IMAGE"}
wait_http "$SERVER/healthz" 30 || { tail -n 20 "$W/server.log" >&2; die "sluice server did not answer /healthz"; }

# wait_serving V S: every service serves release V (stable = desired = V, 2/2 ready, no deployment)
wait_serving() {
  "$PY" - "$SERVER" "$1" "$2" $((3 * ${#RTS[@]})) <<'PYEOF'
import json, sys, time, urllib.request
_o = urllib.request.build_opener(); _o.addheaders = [("authorization", "Bearer " + __import__("os").environ["SLUICE_TOKEN"])]; urllib.request.install_opener(_o)
server, v, limit, n = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
end = time.monotonic() + limit
last = None
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(server + "/api/v1/status", timeout=2) as r:
            st = json.load(r)
        # the rollback services keep blue warm for 120 s after each deploy: not waited for
        st = [t for t in st if not t["service"].endswith("-rollback")]
        last = [(t["service"], t["stable_version"], t["ready"], t["deployment"] is not None) for t in st]
        if len(st) == n and all(t["stable_version"] == v and t["desired_version"] == v
                                and t["ready"] == t["replicas"] and t["deployment"] is None for t in st):
            sys.exit(0)
    except Exception as e:
        last = repr(e)
    time.sleep(0.1)
print("status:", last, file=sys.stderr)
sys.exit(1)
PYEOF
}

"$SLUICE_BIN" project add "$R" --server "$SERVER" --poll-interval 0 >/dev/null || die "project add failed"
log "waiting for release 1 of the services to serve"
wait_serving 1 120 || { tail -n 30 "$W/server.log" >&2; die "release 1 did not serve within 120 s"; }
echo 2 > "$R/version.txt"
git_q -C "$R" commit -q -am "release 2"
"$SLUICE_BIN" run "$PROJECT" --server "$SERVER" >&2 || die "the pipeline of release 2 failed"
log "waiting for release 2 of the services to serve"
wait_serving 2 120 || { tail -n 30 "$W/server.log" >&2; die "release 2 did not serve within 120 s"; }

# ---------------- per strategy: load + DEPLOYS deploys -------------------------------------------
# wait_deployment SVC VERSION AFTER_ID S: prints "id status created_ms finished_ms strategy" of the
# first deployment of SVC/staging with id > AFTER_ID and version VERSION once it has ended
wait_deployment() {
  "$PY" - "$SERVER" "$PROJECT" "$1" "$2" "$3" "$4" <<'PYEOF'
import json, sys, time, urllib.request
_o = urllib.request.build_opener(); _o.addheaders = [("authorization", "Bearer " + __import__("os").environ["SLUICE_TOKEN"])]; urllib.request.install_opener(_o)
server, project, svc, v, after, limit = sys.argv[1:7]
v, after, end = int(v), int(after), time.monotonic() + float(limit)
url = f"{server}/api/v1/deployments?project={project}&service={svc}&env=staging&limit=5"
while time.monotonic() < end:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            ds = json.load(r)
        for d in ds:
            if d["id"] > after and d["version"] == v and d["status"] != "running":
                print(d["id"], d["status"], d["created_ms"], d["finished_ms"], d["strategy"])
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.02)
sys.exit(1)
PYEOF
}
last_deployment_id() {
  "$PY" - "$SERVER" "$PROJECT" "$1" <<'PYEOF'
import json, sys, urllib.request
_o = urllib.request.build_opener(); _o.addheaders = [("authorization", "Bearer " + __import__("os").environ["SLUICE_TOKEN"])]; urllib.request.install_opener(_o)
server, project, svc = sys.argv[1:4]
with urllib.request.urlopen(f"{server}/api/v1/deployments?project={project}&service={svc}&env=staging&limit=1", timeout=5) as r:
    ds = json.load(r)
print(ds[0]["id"] if ds else 0)
PYEOF
}
now_ms() { date +%s%3N; }

# per runtime (loop bodies not indented): every strategy, then the rollback figures
for rt in "${RTS[@]}"; do
for strat in $STRATEGIES; do
  svc=${SVC[$rt/$strat]:-}; addr=${ADDR[$rt/$strat]:-}; subj=${SUBJ[$rt/$strat]:-}
  [ -n "$svc" ] || die "unknown strategy $strat (rolling, blue_green, canary)"
  D="$W/$subj"; mkdir -p "$D"
  machine_note
  start_bg "load-$subj" "$D/load.log" "$PY" "$BENCH_DIR/tools/deploy_load.py" --addr "$addr" \
    --rate "$RATE" --conns "$CONNS" --timeout 2 --duration $((STRATEGY_LIMIT + 30)) --out "$D/load.json"
  LPID=$LAST_PID
  sleep 1
  kill -0 "$LPID" 2>/dev/null || { cat "$D/load.log" >&2; die "the load generator exited"; }
  log "$subj: $DEPLOYS deploys of $svc under $RATE req/s on $addr"
  : > "$D/deploys.tsv"
  t_limit=$(( $(date +%s) + STRATEGY_LIMIT ))
  for ((i = 1; i <= DEPLOYS; i++)); do
    if [ "$(date +%s)" -ge "$t_limit" ]; then log "$subj: STRATEGY_LIMIT=${STRATEGY_LIMIT}s reached after $((i - 1)) deploys"; break; fi
    v=$(( i % 2 == 1 ? 1 : 2 ))   # release 2 serves at the start
    prev=$(last_deployment_id "$svc")
    t0=$(now_ms)
    rc=0
    timeout "$DEPLOY_TIMEOUT" "$SLUICE_BIN" deploy "$svc" --env staging --release "$v" --server "$SERVER" \
      > "$D/cli.out" 2> "$D/cli.err" || rc=$?
    t1=$(now_ms)
    cli_id=$(sed -n 's/^deployment #\([0-9]*\) .*/\1/p' "$D/cli.out" | tail -n 1)
    if res=$(wait_deployment "$svc" "$v" "$prev" "$DEPLOY_TIMEOUT"); then
      read -r id status created finished dstrat <<< "$res"
    else
      id=0; status=timeout; created=0; finished=0; dstrat=-
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$v" "$rc" "$t0" "$t1" "$id" "$status" \
      "$created" "$finished" "${cli_id:-0}" "$dstrat" >> "$D/deploys.tsv"
    [ "$status" = succeeded ] || log "$subj: deploy $i (v$v): deployment #$id $status (cli rc=$rc: $(tail -n 1 "$D/cli.out" "$D/cli.err" 2>/dev/null | tr '\n' ' '))"
  done
  sleep 1
  stop_pid "$LPID"
  [ -s "$D/load.json" ] || { cat "$D/load.log" >&2; die "the load generator wrote no result"; }
  # figures + failure attribution (deployment and its latest decision before each failure)
  PYTHONPATH="$BENCH_DIR/tools" "$PY" - "$subj" "$D" "$SERVER" "$strat" <<'PYEOF'
import json, sys, urllib.request
_o = urllib.request.build_opener(); _o.addheaders = [("authorization", "Bearer " + __import__("os").environ["SLUICE_TOKEN"])]; urllib.request.install_opener(_o)
subj, d, server, strat = sys.argv[1:5]
load = json.load(open(f"{d}/load.json"))
rows = [l.rstrip("\n").split("\t") for l in open(f"{d}/deploys.tsv") if l.strip()]
deps = [dict(i=int(r[0]), v=int(r[1]), rc=int(r[2]), t0=int(r[3]), t1=int(r[4]), id=int(r[5]),
             status=r[6], created=int(r[7]), finished=int(r[8]), cli_id=int(r[9]), strategy=r[10])
        for r in rows]
from benchstats import quantile as q
ok = [x for x in deps if x["status"] == "succeeded"]
dur = [x["finished"] - x["t0"] for x in ok]
srv = [x["finished"] - x["created"] for x in ok]
cli = [x["t1"] - x["t0"] for x in deps]
P = f"deploy.{subj}"
print(f"{P}.failed_requests {load['failed']} requests")
print(f"{P}.duration_median {q(dur, .5):.0f} ms")
print(f"{P}.duration_p95 {q(dur, .95):.0f} ms")
print(f"{P}.deploys {len(ok)} deploys")
print(f"{P}.deploys_failed {len(deps) - len(ok)} deploys")
print(f"{P}.requests {load['requests']} requests")
print(f"{P}.rps {load['rps']:.0f} req/s")
events = {}
def events_of(i):
    """The events of deployment #i, fetched once ([] when they cannot be had)."""
    if i not in events:
        try:
            with urllib.request.urlopen(f"{server}/api/v1/deployments/{i}", timeout=5) as r:
                events[i] = json.load(r)["events"]
        except Exception:
            events[i] = []
    return events[i]
if strat == "blue_green":
    sw = []
    for x in ok:
        sw += [e["payload"]["switch_after_ready_ms"] for e in events_of(x["id"])
               if e["payload"].get("kind") == "bluegreen.switched" and e["payload"].get("switch_after_ready_ms") is not None]
    if sw:
        print(f"{P}.switch_after_ready_median {q(sw, .5):.0f} ms")
        print(f"{P}.switch_after_ready_p95 {q(sw, .95):.0f} ms")
        print(f"{P}.switch_after_ready_max {max(sw)} ms")
        print(f"# {subj}: switch time recorded on {len(sw)}/{len(ok)} deployments (goal <= 10 ms)")
lat = load["latency_ms"]
print(f"# {subj}: server-side span (created -> finished) median {q(srv, .5):.0f} ms, p95 {q(srv, .95):.0f} ms; "
      f"duration min {min(dur) if dur else 0} ms, max {max(dur) if dur else 0} ms; strategies recorded: {sorted(set(x['strategy'] for x in deps))}")
stale = [x for x in deps if x["cli_id"] and x["cli_id"] != x["id"]]
early = [x for x in ok if x["t1"] < x["finished"]]
print(f"# {subj}: `sluice deploy` wall median {q(cli, .5):.0f} ms; it reported another (older) deployment than the one it caused "
      f"in {len(stale)}/{len(deps)} deploys and returned before its deployment had finished in {len(early)}/{len(ok)}")
print(f"# {subj}: load {load['requests']} requests in {load['elapsed_s']} s over {load['conns']} keep-alive connections "
      f"(lowest 1-s count {load['min_rps_1s']}); ok {load['ok']}, failed {load['failed']}{' ' + json.dumps(load['kinds']) if load['kinds'] else ''}; "
      f"answers by release {load['versions']}; latency of ok requests p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
bad = [x for x in deps if x["status"] != "succeeded"]
for x in bad[:10]:
    print(f"# {subj}: deploy {x['i']} (v{x['v']}) deployment #{x['id']} {x['status']}")
fails = load["failures"]
if fails:
    def decisions(i):
        return [(e["time_ms"], e["payload"].get("what") or e["kind"]) for e in events_of(i)]
    groups = {}
    for f in fails:
        t = f["t_ms"]
        dep = next((x for x in deps if x["t0"] - 50 <= t <= (x["finished"] or x["t1"]) + 3000), None)
        if dep and dep["id"]:
            before = [w for (tm, w) in decisions(dep["id"]) if tm <= t]
            where = f"deployment #{dep['id']} v{dep['v']}, after: {before[-1] if before else 'requested'}"
        else:
            where = "outside any deployment"
        f["where"] = where
        key = (where, f["kind"])
        groups[key] = groups.get(key, 0) + 1
    for (where, kind), n in sorted(groups.items(), key=lambda kv: -kv[1])[:15]:
        print(f"# {subj}: failed {n} x {kind} ({where})")
    json.dump(fails, open(f"{d}/failures.json", "w"), indent=1)
    print(f"# {subj}: every failed request with its time and detail: {d}/failures.json")
PYEOF
  machine_note
done

# ---------------- rollback while blue is warm (per runtime) --------------------------------------
if [ "$ROLLBACKS" -gt 0 ]; then
  rbsubj=rollback_warm; [ "$rt" = process ] || rbsubj=$rt-rollback_warm
  log "$rbsubj: $ROLLBACKS deploys of ${RB_SVC[$rt]}, each rolled back while blue is warm"
  PYTHONPATH="$BENCH_DIR/tools" "$PY" - "$SERVER" "$PROJECT" "${RB_SVC[$rt]}" "${RB_ADDR[$rt]}" "$ROLLBACKS" "$rbsubj" <<'PYEOF'
import http.client, json, sys, time, urllib.request
_o = urllib.request.build_opener(); _o.addheaders = [("authorization", "Bearer " + __import__("os").environ["SLUICE_TOKEN"])]; urllib.request.install_opener(_o)
server, project, svc, addr, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
subj = sys.argv[6]
host, port = addr.split(":")
def api(method, path, body=None):
    req = urllib.request.Request(server + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r) if r.status != 204 else None
def answer():
    c = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        c.request("GET", "/")
        return c.getresponse().read().decode().strip()
    except Exception:
        return None
    finally:
        c.close()
from benchstats import quantile as q
times, not_warm = [], 0
LATEST = f"/api/v1/deployments?project={project}&service={svc}&env=staging&limit=1"
for i in range(n):
    ds = api("GET", LATEST)
    dep = ds[0] if ds and ds[0]["status"] == "running" and ds[0]["phase"] == "keeping_warm" else None
    end = time.monotonic() + 60
    if dep is None:
        cur = answer()
        old = int(cur.split("=")[1]) if cur and cur.startswith("version=") else 2
        new = 1 if old == 2 else 2
        prev = ds[0]["id"] if ds else 0
        api("POST", "/api/v1/deployments", {"project": project, "service": svc, "env": "staging", "version": new})
    else:
        # the deploy of release 2 at set-up is still keeping blue warm: roll that one back
        old, new, end = dep["from_version"], dep["version"], 0
    while time.monotonic() < end:
        ds = [d for d in api("GET", LATEST) if d["id"] > prev]
        if ds and ds[0]["phase"] == "keeping_warm":
            dep = ds[0]; break
        if ds and ds[0]["status"] != "running":
            break
        time.sleep(0.02)
    if dep is None:
        print(f"# rollback {i}: the deploy of v{new} never kept blue warm", file=sys.stderr); not_warm += 1; continue
    t0 = time.monotonic()
    api("POST", "/api/v1/rollbacks", {"project": project, "service": svc, "env": "staging"})
    while time.monotonic() - t0 < 30 and answer() != f"version={old}":
        time.sleep(0.002)
    times.append((time.monotonic() - t0) * 1000)
    # let the aborted deployment finish before the next one
    end = time.monotonic() + 30
    while time.monotonic() < end:
        ds = api("GET", f"/api/v1/deployments?project={project}&service={svc}&env=staging&limit=1&running=true")
        if not ds:
            break
        time.sleep(0.05)
P = f"deploy.{subj}"
if times:
    print(f"{P}.median {q(times, .5):.0f} ms")
    print(f"{P}.p95 {q(times, .95):.0f} ms")
    print(f"{P}.max {max(times):.0f} ms")
print(f"{P}.rollbacks {len(times)} rollbacks")
print(f"# {subj}: request -> first answer of the previous release, {len(times)} rollbacks "
      f"while blue was warm ({not_warm} deploys never reached keeping_warm); goal <= 1000 ms")
PYEOF
fi
done   # runtimes
