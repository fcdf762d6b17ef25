#!/usr/bin/env bash
# Makes a Docker Engine available on the local socket, idempotently, for the Docker tests.
#
# Runs as root on Debian bookworm without systemd (CI machines): installs Debian's
# `docker.io` (the daemon) and `busybox-static` (the root filesystem of the test images; no
# image can be pulled here) if missing, running `apt-get update` at most once. If no daemon
# answers on the socket, it starts `dockerd --host unix:///var/run/docker.sock` in a session
# of its own (log: /tmp/sluice-dockerd.log), then polls `GET /_ping` until it answers, for at
# most DOCKER_WAIT_SECS seconds (default 60). Exits non-zero with a message saying what to
# look at when the daemon does not come up. Output goes to stderr.
set -euo pipefail

log() { echo "docker.sh: $*" >&2; }

export DEBIAN_FRONTEND=noninteractive
SOCK=/var/run/docker.sock
LOG=/tmp/sluice-dockerd.log
WAIT="${DOCKER_WAIT_SECS:-60}"

# One GET /_ping over the unix socket; succeeds only on the daemon's "OK".
ping() {
  if command -v curl >/dev/null 2>&1; then
    [ "$(curl -sS --max-time 2 --unix-socket "$SOCK" http://localhost/_ping 2>/dev/null)" = OK ]
  else
    python3 - "$SOCK" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
sys.exit(0 if data.startswith(b"HTTP/1.") and data.endswith(b"OK") else 1)
PY
  fi
}

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || need+=(busybox-static)
if [ "${#need[@]}" -gt 0 ]; then
  updated=0
  if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    log "no apt package lists yet; running apt-get update"
    apt-get update >&2
    updated=1
  fi
  log "installing ${need[*]}"
  if ! apt-get install -y --no-install-recommends "${need[@]}" >&2; then
    if [ "$updated" = 1 ]; then
      log "apt-get install ${need[*]} failed; see the messages above"
      exit 1
    fi
    log "apt-get install failed; updating package lists once and retrying"
    apt-get update >&2
    apt-get install -y --no-install-recommends "${need[@]}" >&2
  fi
fi

if ping; then
  log "a Docker daemon already answers on $SOCK"
  exit 0
fi

if pgrep -x dockerd >/dev/null 2>&1; then
  log "dockerd runs but does not answer on $SOCK yet; waiting for it"
else
  # A stale socket or pid file of a dead daemon makes a new one refuse to start.
  rm -f "$SOCK" /var/run/docker.pid
  log "starting dockerd (log: $LOG)"
  setsid dockerd --host "unix://$SOCK" </dev/null >>"$LOG" 2>&1 &
fi

deadline=$((SECONDS + WAIT))
while [ "$SECONDS" -lt "$deadline" ]; do
  if ping; then
    log "dockerd answers on $SOCK"
    exit 0
  fi
  sleep 0.5
done

log "dockerd did not answer GET /_ping on $SOCK within ${WAIT}s; the last lines of $LOG:"
tail -n 20 "$LOG" >&2 2>/dev/null || true
log "check that this runs as root with cgroups and iptables available, then run .ci/docker.sh again"
exit 1
