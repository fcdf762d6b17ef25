#!/usr/bin/env python3
"""Webhook -> first-step latency of a sluice server (stdlib only).

usage: webhook_latency.py --url http://127.0.0.1:PORT --project P --secret S --repo DIR
                          --stamps DIR [--n 20] [--warmup 2] [--name sluice] [--out f.json]

The project's only step must start with `date +%s%N > STAMPS/$SLUICE_COMMIT`. Per iteration:
 1. commit a change to a tracked file in --repo (outside the clock: a push has already happened
    when a git host sends its webhook);
 2. t0 = time.time_ns(), then POST /hooks/generic/<project> with X-Sluice-Delivery (unique),
    X-Sluice-Signature: sha256=<hex HMAC-SHA256(secret, body)> and {"ref":"refs/heads/main"}
    on one keep-alive connection;
 3. wait for STAMPS/<sha> (the step's first action writes the wall clock, same clock as t0):
    latency = stamp - t0;
 4. wait until the run is terminal (so runs never overlap) and read its `step.started` event
    (time_ms, ms resolution) as a second, server-side view of the same latency.
Prints `ci.<name>.<figure> <value> <unit>` lines on stdout; progress on stderr.
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

from benchstats import quantile


def pct(v, p):
    return quantile(v, p / 100.0)


GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@localhost",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@localhost", GIT_CONFIG_NOSYSTEM="1")


def git(repo, *args):
    return subprocess.run(["git", "-C", repo, *args], check=True, env=GIT_ENV,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE).stdout.decode().strip()


class Api:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def get_json(self, path):
        st, data = self.request("GET", path)
        if st != 200:
            raise RuntimeError(f"GET {path}: {st} {data[:200]!r}")
        return json.loads(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--stamps", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--name", default="sluice")
    ap.add_argument("--timeout", type=float, default=30.0, help="per iteration, seconds")
    ap.add_argument("--budget", type=float, default=300.0, help="total seconds")
    ap.add_argument("--out")
    a = ap.parse_args()

    api = Api(a.url)
    secret = a.secret.encode()
    body = b'{"ref":"refs/heads/main"}'
    sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    hook = f"/hooks/generic/{urllib.parse.quote(a.project)}"
    q_proj = urllib.parse.quote(a.project)
    ev = api.get_json(f"/api/v1/events?limit=10000&project={q_proj}")
    last_seq = max([e["seq"] for e in ev], default=0)
    res = {"first_step_ms": [], "event_ms": [], "ack_ms": [], "run_total_ms": []}
    start = time.monotonic()
    for i in range(a.warmup + a.n):
        if time.monotonic() - start > a.budget:
            print(f"budget of {a.budget}s exhausted after {i} iterations", file=sys.stderr)
            break
        with open(os.path.join(a.repo, "counter"), "w") as f:
            f.write(f"{i} {time.time_ns()}\n")
        git(a.repo, "commit", "-q", "-a", "-m", f"bench push {i}")
        sha = git(a.repo, "rev-parse", "HEAD")
        stamp_path = os.path.join(a.stamps, sha)
        headers = {"Content-Type": "application/json", "X-Sluice-Delivery": f"bench-{os.getpid()}-{i}-{sha[:12]}",
                   "X-Sluice-Signature": sig}
        t0 = time.time_ns()
        st, data = api.request("POST", hook, body=body, headers=headers)
        t_ack = time.time_ns()
        if st != 202:
            print(f"webhook {i}: HTTP {st}: {data[:300]!r}", file=sys.stderr)
            sys.exit(1)
        # 3. the step's first action
        deadline = time.monotonic() + a.timeout
        stamp = None
        while time.monotonic() < deadline:
            try:
                with open(stamp_path) as f:
                    txt = f.read().strip()
                if txt:
                    stamp = int(txt)
                    break
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.0005)
        if stamp is None:
            print(f"webhook {i}: the step never started for commit {sha} within {a.timeout}s", file=sys.stderr)
            sys.exit(1)
        # 4. wait for the run to end; its step.started event
        run = None
        while time.monotonic() < deadline:
            runs = api.get_json(f"/api/v1/runs?project={q_proj}&limit=5")
            run = next((r for r in runs if r["commit"] == sha), None)
            if run and run["status"] not in ("queued", "running"):
                break
            time.sleep(0.005)
        if not run or run["status"] != "succeeded":
            print(f"webhook {i}: run for {sha} did not succeed: {run}", file=sys.stderr)
            sys.exit(1)
        evs = api.get_json(f"/api/v1/events?limit=10000&project={q_proj}&after={last_seq}")
        last_seq = max([e["seq"] for e in evs], default=last_seq)
        def kind(e):  # the API answers `step_started`; the query parameter takes `step.started`
            return e["kind"].replace("_", ".")
        started = [e for e in evs if kind(e) == "step.started" and e["payload"].get("run") == run["id"]]
        finished = [e for e in evs if kind(e) == "run.finished" and e["payload"].get("run") == run["id"]]
        lat = (stamp - t0) / 1e6
        tag = "warm-up" if i < a.warmup else "measured"
        print(f"{tag} {i}: run #{run['id']} first step after {lat:.2f} ms (ack {(t_ack - t0) / 1e6:.2f} ms)", file=sys.stderr)
        if i < a.warmup:
            continue
        res["first_step_ms"].append(lat)
        res["ack_ms"].append((t_ack - t0) / 1e6)
        if started:
            res["event_ms"].append(started[0]["time_ms"] - t0 / 1e6)
        if finished:
            res["run_total_ms"].append(finished[0]["time_ms"] - t0 / 1e6)
    if not res["first_step_ms"]:
        print("no measured iteration", file=sys.stderr)
        sys.exit(1)
    if a.out:
        json.dump(res, open(a.out, "w"))
    n = a.name
    v = res["first_step_ms"]
    print(f"ci.{n}.webhook_pushes {len(v)} pushes")
    print(f"ci.{n}.webhook_to_first_step_median {pct(v, 50):.2f} ms")
    print(f"ci.{n}.webhook_to_first_step_p95 {pct(v, 95):.2f} ms")
    print(f"ci.{n}.webhook_ack_median {pct(res['ack_ms'], 50):.2f} ms")
    if res["event_ms"]:
        print(f"ci.{n}.webhook_to_step_started_event_median {pct(res['event_ms'], 50):.1f} ms")
    if res["run_total_ms"]:
        print(f"ci.{n}.webhook_to_run_finished_median {pct(res['run_total_ms'], 50):.1f} ms")


if __name__ == "__main__":
    main()
