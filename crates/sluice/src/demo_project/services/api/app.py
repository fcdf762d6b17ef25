"""The demo shop's price API: a small, real HTTP service.

GET /healthz            -> 200 "ok"
GET /version            -> 200 the commit this release was built from
GET /api/price?qty=N    -> 200 {"qty": N, "unit_cents": 250, "total_cents": ...}
An unexpected error answers 500 with {"error": ...}.
Listens on 127.0.0.1:$PORT (default 8080); on SIGTERM it drains for a second, then stops.
"""
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

UNIT_CENTS = 250
HERE = os.path.dirname(os.path.abspath(__file__))


def price(qty):
    """Total price in cents for qty items, with 10% off from 10 items."""
    if qty < 0:
        raise ValueError("qty must not be negative")
    total = qty * UNIT_CENTS
    if qty >= 10:
        total = total * 9 // 10
    return total


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        try:
            self.route(urlparse(self.path))
        except Exception as e:  # a bug answers 500 instead of dropping the connection
            self._send(500, json.dumps({"error": f"internal error: {e!r}"}))

    def route(self, url):
        if url.path == "/healthz":
            return self._send(200, "ok\n", "text/plain")
        if url.path == "/version":
            try:
                with open(os.path.join(HERE, "VERSION")) as f:
                    return self._send(200, f.read(), "text/plain")
            except OSError:
                return self._send(200, "dev\n", "text/plain")
        if url.path == "/api/price":
            try:
                qty = int(parse_qs(url.query).get("qty", ["1"])[0])
                total = price(qty)
            except ValueError as e:
                return self._send(400, json.dumps({"error": str(e)}))
            body = {"qty": qty, "unit_cents": UNIT_CENTS, "total_cents": total}
            return self._send(200, json.dumps(body))
        return self._send(404, json.dumps({"error": "not found"}))

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in progress


def serve(port):
    return Server(("127.0.0.1", port), Handler)


def stop_gracefully(server, drain_seconds):
    """On SIGTERM keep serving for drain_seconds (requests routed here just before the
    proxy moved traffic away still arrive), then stop and finish the requests in progress."""
    def on_term(signum, frame):
        threading.Timer(drain_seconds, server.shutdown).start()
    signal.signal(signal.SIGTERM, on_term)


if __name__ == "__main__":
    server = serve(int(os.environ.get("PORT", "8080")))
    stop_gracefully(server, 1.0)
    print("listening on", server.server_address, flush=True)
    server.serve_forever()
    server.server_close()
