"""Tests for the price API: unit tests and real HTTP requests against a running server.
Writes a JUnit XML report when given --junit PATH."""
import json
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
from xml.sax.saxutils import quoteattr

import app


class PriceTest(unittest.TestCase):
    def test_single_item(self):
        self.assertEqual(app.price(1), 250)

    def test_bulk_discount(self):
        self.assertEqual(app.price(10), 2250)

    def test_negative_is_refused(self):
        with self.assertRaises(ValueError):
            app.price(-1)


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = app.serve(0)
        cls.port = cls.server.server_address[1]
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()

    def get(self, path):
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5)

    def test_health(self):
        self.assertEqual(self.get("/healthz").read(), b"ok\n")

    def test_price_endpoint(self):
        body = json.loads(self.get("/api/price?qty=4").read())
        self.assertEqual(body["total_cents"], 1000)

    def test_bad_quantity_is_400(self):
        with self.assertRaises(urllib.error.HTTPError) as cm:
            self.get("/api/price?qty=lots")
        self.assertEqual(cm.exception.code, 400)


class JUnitResult(unittest.TextTestResult):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.cases = []
        self._start = 0.0

    def startTest(self, test):
        self._start = time.monotonic()
        super().startTest(test)

    def _record(self, test, kind, detail=""):
        cls = type(test).__name__
        name = test._testMethodName
        self.cases.append((cls, name, time.monotonic() - self._start, kind, detail))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def write_junit(path, cases):
    failures = sum(1 for c in cases if c[3] == "failure")
    errors = sum(1 for c in cases if c[3] == "error")
    skipped = sum(1 for c in cases if c[3] == "skipped")
    out = [f'<testsuite name="api" tests="{len(cases)}" failures="{failures}" '
           f'errors="{errors}" skipped="{skipped}">']
    for cls, name, secs, kind, detail in cases:
        out.append(f'  <testcase classname="{cls}" name="{name}" time="{secs:.3f}">')
        if kind in ("failure", "error"):
            out.append(f"    <{kind} message={quoteattr(detail.splitlines()[-1])}/>")
        elif kind == "skipped":
            out.append("    <skipped/>")
        out.append("  </testcase>")
    out.append("</testsuite>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    junit = None
    if "--junit" in sys.argv:
        junit = sys.argv[sys.argv.index("--junit") + 1]
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    runner = unittest.TextTestRunner(resultclass=JUnitResult, verbosity=2, stream=sys.stdout)
    result = runner.run(suite)
    if junit:
        write_junit(junit, result.cases)
    sys.exit(0 if result.wasSuccessful() else 1)
