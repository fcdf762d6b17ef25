"""Drives sluice through the real PagerDuty client library `pdpyras` (from PyPI).

Used by tests/compat.rs: one call per run, so the test can check sluice's state between
calls. The library is pointed at sluice by replacing its base URL (`url`), nothing else, so
the requests are exactly what it sends to events.pagerduty.com.

    python pd_client.py BASE_URL ROUTING_KEY trigger [DEDUP_KEY]
    python pd_client.py BASE_URL ROUTING_KEY acknowledge DEDUP_KEY
    python pd_client.py BASE_URL ROUTING_KEY resolve DEDUP_KEY
    python pd_client.py BASE_URL ROUTING_KEY change

Prints one JSON line: the call, what the library returned, and the HTTP status and body
sluice answered with; or, when the library raised, the exception's class with that status
and body. Exits 0 in both cases (the test judges the outcome); 2 on bad usage.
"""

import json
import sys
import warnings

# pdpyras 5.x warns on import that it is deprecated in favour of `pagerduty`.
warnings.simplefilter("ignore")

import pdpyras  # noqa: E402


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    base, key, call = argv[1], argv[2], argv[3]
    dedup = argv[4] if len(argv) > 4 else None

    if call == "change":
        session = pdpyras.ChangeEventsAPISession(key)
    else:
        session = pdpyras.EventsAPISession(key)
    session.url = base
    # Never let the library's retry logic hide sluice's first answer.
    session.max_network_attempts = 0
    seen = []
    session.hooks["response"].append(lambda r, *a, **kw: seen.append(r))

    out = {"call": call, "library": "pdpyras", "version": pdpyras.__version__}
    try:
        if call == "trigger":
            returned = session.trigger(
                "checkout is failing",
                "web-1",
                dedup_key=dedup,
                severity="critical",
                custom_details={"errors": 42, "region": "eu"},
            )
        elif call == "acknowledge":
            returned = session.acknowledge(dedup)
        elif call == "resolve":
            returned = session.resolve(dedup)
        elif call == "change":
            returned = session.submit(
                "deployed checkout v2",
                source="ci",
                custom_details={"version": "2"},
                links=[{"href": "https://ci.invalid/42", "text": "build 42"}],
            )
        else:
            print(f"unknown call {call!r}", file=sys.stderr)
            return 2
        out["returned"] = returned
    except pdpyras.PDClientError as e:
        out["error"] = type(e).__name__
        if e.response is not None:
            seen.append(e.response)
    if seen:
        r = seen[-1]
        out["status"] = r.status_code
        out["path"] = r.request.path_url
        try:
            out["body"] = r.json()
        except ValueError:
            out["body"] = r.text
        out["sent"] = json.loads(r.request.body) if r.request.body else None
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
