#!/usr/bin/env python3
"""Start-up time of `sluice server` to its first 200 on /healthz (stdlib only).

usage: cold_start.py --bin SLUICE --work DIR [--n 20] [--mode fresh|warm] [--out f.json]

Per iteration: pick a free loopback port; t0 = perf_counter(); spawn `SLUICE server --listen
127.0.0.1:PORT --data-dir D` in its own session; then, in a tight loop bounded by --timeout,
connect and send `GET /healthz` (connection refused -> sleep 0.2 ms and retry) until one answer
is `200`; the time from t0 to that answer is the start-up time. Then SIGTERM to its process
group and wait. `fresh`: a new empty data directory each time (creates the SQLite database and
runs the migrations); `warm`: the same data directory every time (created by a first, unmeasured
start). Prints `name median p95 min max` in ms on stdout and writes the samples to --out.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from benchstats import quantile


def pct(v, p):
    return quantile(v, p / 100.0)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


REQ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def healthz(port):
    """True on a 200 answer, False on refused/not yet; raises nothing."""
    s = socket.socket()
    s.settimeout(2.0)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(REQ)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    except OSError:
        return False
    finally:
        s.close()


def start_once(binary, data_dir, log, timeout):
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    ms = None
    try:
        while time.perf_counter() - t0 < timeout:
            if healthz(port):
                ms = (time.perf_counter() - t0) * 1000.0
                break
            if p.poll() is not None:
                break
            time.sleep(0.0002)
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--mode", choices=["fresh", "warm"], default="fresh")
    ap.add_argument("--timeout", type=float, default=10.0, help="per start, seconds")
    ap.add_argument("--budget", type=float, default=300.0, help="total seconds")
    ap.add_argument("--out")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    log = open(os.path.join(a.work, f"{a.mode}.log"), "ab")
    warm_dir = os.path.join(a.work, "warm-data")
    if a.mode == "warm":
        shutil.rmtree(warm_dir, ignore_errors=True)
        if start_once(a.bin, warm_dir, log, a.timeout) is None:
            print("the first (unmeasured) start failed", file=sys.stderr)
            sys.exit(1)
    v = []
    t_start = time.monotonic()
    for i in range(a.n):
        if time.monotonic() - t_start > a.budget:
            print(f"budget exhausted after {i} starts", file=sys.stderr)
            break
        if a.mode == "fresh":
            d = os.path.join(a.work, f"fresh-{i}")
            shutil.rmtree(d, ignore_errors=True)
        else:
            d = warm_dir
        ms = start_once(a.bin, d, log, a.timeout)
        if ms is None:
            print(f"start {i} ({a.mode}) did not answer 200 on /healthz within {a.timeout}s", file=sys.stderr)
            sys.exit(1)
        v.append(ms)
        if a.mode == "fresh":
            shutil.rmtree(d, ignore_errors=True)
    if a.out:
        json.dump(v, open(a.out, "w"))
    print(f"{a.mode} {pct(v, 50):.2f} {pct(v, 95):.2f} {min(v):.2f} {max(v):.2f} {len(v)}")


if __name__ == "__main__":
    main()
