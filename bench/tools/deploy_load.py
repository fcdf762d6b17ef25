#!/usr/bin/env python3
"""deploy_load.py: a constant, paced HTTP/1.1 load on one address, every request recorded.

Used by bench/deploy_under_load.sh while it deploys the service behind ADDR again and again.

- Open-loop pacing: request i is due at t0 + i / RATE. CONNS keep-alive connections (asyncio
  raw protocol, one request in flight per connection) take the due requests in turn; a request
  that finds no free connection waits for one, so a slow phase delays requests (and shows as
  latency) instead of dropping them, and the pace catches up afterwards (the total count stays
  RATE x duration unless the service stalls for longer than the run).
- Every request ends as ok (status 200 and a body starting with `version=`) or failed, with its
  kind: `refused` (connect refused), `reset` (connection reset/broken pipe), `eof` (the server
  closed the connection before the whole response), `timeout` (no complete response within
  TIMEOUT = 2 s), `http_<status>` (any other status), `bad_body`, `connect_error` (other). No
  retries: a failed request is counted once; its connection is closed and the next request on
  that slot opens a new one.
- Bounded: it stops at --duration seconds, after --max-requests requests, or on SIGTERM/SIGINT
  (then it sends nothing more, waits up to TIMEOUT for requests in flight, and writes its
  result). --stop-file: stop when this file appears.

Output (--out, JSON): requests, ok, failed, failures by kind, per-version ok counts, rps over
the run, latency quantiles of ok requests, and every failure with its time (unix ms), kind,
detail and whether the connection was reused, for matching against deploy phases. One summary
line on stdout: `requests ok failed rps p50_ms p99_ms`.
"""
import argparse
import asyncio
import json
import os
import signal
import sys
import time


class Conn(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self):
        self.transport = None
        self.buf = bytearray()
        self.waiter = None  # future for the response in progress
        self.closed = False
        self.lost_exc = None
        self.uses = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        self._try_complete()

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc):
        self.closed = True
        self.lost_exc = exc
        w = self.waiter
        if w is not None and not w.done():
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                w.set_exception(_Fail("reset", repr(exc)))
            elif exc is not None:
                w.set_exception(_Fail("reset", repr(exc)))
            else:
                w.set_exception(_Fail("eof", "closed by peer after %d bytes" % len(self.buf)))

    def _try_complete(self):
        w = self.waiter
        if w is None or w.done():
            return
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            return
        head = bytes(self.buf[:i])
        lower = head.lower()
        j = lower.find(b"content-length:")
        if j < 0:
            # this load expects a Content-Length on every response
            n = 0
        else:
            n = int(lower[j + 15:].split(b"\r\n", 1)[0].strip() or b"0")
        if len(self.buf) < i + 4 + n:
            return
        body = bytes(self.buf[i + 4:i + 4 + n])
        del self.buf[:i + 4 + n]
        try:
            status = int(head.split(b" ", 2)[1])
        except Exception:
            status = 0
        close = b"connection: close" in lower
        w.set_result((status, body, close))

    def request(self, req):
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.uses += 1
        self.transport.write(req)
        return self.waiter

    def close(self):
        if self.transport is not None and not self.closed:
            self.transport.close()


class _Fail(Exception):
    def __init__(self, kind, detail):
        super().__init__(kind)
        self.kind = kind
        self.detail = detail


def quantile(sorted_vals, q):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


async def run(a):
    loop = asyncio.get_running_loop()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: deploy_load\r\n\r\n" % (a.path, a.addr)).encode()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    st = {
        "requests": 0, "ok": 0, "failed": 0, "kinds": {}, "versions": {},
        "failures": [], "lat": [], "per_second": {},
    }
    free = asyncio.Queue()
    for _ in range(a.conns):
        free.put_nowait(None)  # a slot without a connection yet

    async def one(slot_conn, t_due):
        conn = slot_conn
        reused = conn is not None and not conn.closed
        t_start = time.monotonic()
        try:
            if conn is None or conn.closed:
                reused = False
                try:
                    _, conn = await asyncio.wait_for(
                        loop.create_connection(Conn, host, port), a.timeout)
                except ConnectionRefusedError as e:
                    conn = None
                    raise _Fail("refused", repr(e))
                except asyncio.TimeoutError:
                    conn = None
                    raise _Fail("timeout", "connect")
                except OSError as e:
                    conn = None
                    raise _Fail("connect_error", repr(e))
            remaining = a.timeout - (time.monotonic() - t_start)
            try:
                status, body, close = await asyncio.wait_for(conn.request(req), max(0.01, remaining))
            except asyncio.TimeoutError:
                raise _Fail("timeout", "response")
            if status != 200:
                raise _Fail("http_%d" % status, body[:200].decode("utf-8", "replace"))
            if not body.startswith(b"version="):
                raise _Fail("bad_body", body[:200].decode("utf-8", "replace"))
            ver = body[8:].strip().decode("utf-8", "replace")
            st["ok"] += 1
            st["versions"][ver] = st["versions"].get(ver, 0) + 1
            st["lat"].append((time.monotonic() - t_start) * 1000.0)
            if close:
                conn.close()
                conn = None
        except _Fail as f:
            st["failed"] += 1
            st["kinds"][f.kind] = st["kinds"].get(f.kind, 0) + 1
            if len(st["failures"]) < 10000:
                st["failures"].append({
                    "t_ms": int(time.time() * 1000), "kind": f.kind, "detail": f.detail,
                    "reused_conn": reused, "conn_uses": conn.uses if conn else 0,
                    "late_ms": round((t_start - t_due) * 1000.0, 1),
                })
            if conn is not None:
                conn.close()
                conn = None
        finally:
            sec = str(int(time.time()))
            st["per_second"][sec] = st["per_second"].get(sec, 0) + 1
            free.put_nowait(conn)

    t0 = time.monotonic()
    t_end = t0 + a.duration
    period = 1.0 / a.rate
    i = 0
    tasks = set()
    while not stop.is_set():
        now = time.monotonic()
        if now >= t_end or i >= a.max_requests:
            break
        if a.stop_file and i % 200 == 0 and os.path.exists(a.stop_file):
            break
        due = t0 + i * period
        if due > now:
            await asyncio.sleep(due - now)
            continue
        slot = await free.get()
        st["requests"] += 1
        i += 1
        t = asyncio.ensure_future(one(slot, due))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    t_stop = time.monotonic()
    if tasks:
        await asyncio.wait(tasks, timeout=a.timeout + 1)
    # close the idle connections
    while not free.empty():
        c = free.get_nowait()
        if c is not None:
            c.close()
    elapsed = max(1e-9, t_stop - t0)
    lat = sorted(st["lat"])
    out = {
        "addr": a.addr, "rate_target": a.rate, "conns": a.conns, "timeout_s": a.timeout,
        "start_ms": int((time.time() - (time.monotonic() - t0)) * 1000),
        "elapsed_s": round(elapsed, 3),
        "requests": st["requests"], "ok": st["ok"], "failed": st["failed"],
        "rps": round(st["requests"] / elapsed, 1),
        "kinds": st["kinds"], "versions": st["versions"],
        "latency_ms": {
            "p50": round(quantile(lat, 0.5), 2), "p90": round(quantile(lat, 0.9), 2),
            "p99": round(quantile(lat, 0.99), 2), "p999": round(quantile(lat, 0.999), 2),
            "max": round(lat[-1], 2) if lat else 0.0,
        },
        "min_rps_1s": min(list(st["per_second"].values())[1:-1] or [0]),
        "failures": st["failures"],
    }
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=1)
    print(out["requests"], out["ok"], out["failed"], out["rps"], out["latency_ms"]["p50"],
          out["latency_ms"]["p99"])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--addr", required=True, help="HOST:PORT")
    p.add_argument("--path", default="/")
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    p.add_argument("--conns", type=int, default=32, help="keep-alive connections")
    p.add_argument("--timeout", type=float, default=2.0, help="per-request time limit, s")
    p.add_argument("--duration", type=float, default=600.0, help="hard limit, s")
    p.add_argument("--max-requests", type=int, default=10_000_000)
    p.add_argument("--stop-file", default="")
    p.add_argument("--out", default="")
    a = p.parse_args()
    asyncio.run(run(a))


if __name__ == "__main__":
    sys.exit(main())
