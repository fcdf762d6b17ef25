"""A tiny SMTP sink for sluice-notify's delivery tests (aiosmtpd, stdlib email parser).

Usage: smtp_sink.py OUT_DIR
Listens on 127.0.0.1 on a free port, prints the port on the first line of stdout, then
serves until killed. Requires AUTH (user "sluice", password "s3cret", allowed without TLS
because it only listens on loopback). Each accepted message is parsed and written to
OUT_DIR/<n>.json (atomically) before the server answers 250, so a client whose send
returned success can read the file at once.
"""

import asyncio
import email
import json
import logging
import os
import sys
import warnings
from email import policy

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

OUT = sys.argv[1]
# Plain-text AUTH is deliberate here (loopback only); keep the test output quiet about it.
warnings.filterwarnings("ignore")
logging.getLogger("mail.log").setLevel(logging.ERROR)
USER, PASSWORD = b"sluice", b"s3cret"


class Handler:
    def __init__(self):
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        plain = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        date = msg["date"]
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": [str(a) for a in msg["to"].addresses] if msg["to"] else [],
            "message_id": msg["message-id"],
            "in_reply_to": msg["in-reply-to"],
            "references": msg["references"],
            "auto_submitted": msg["auto-submitted"],
            "date_s": int(date.datetime.timestamp()) if date is not None else None,
            "content_type": msg.get_content_type(),
            "parts": [p.get_content_type() for p in msg.iter_parts()],
            "plain": plain.get_content() if plain is not None else None,
            "html": html.get_content() if html is not None else None,
        }
        path = os.path.join(OUT, f"{self.count}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK stored"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER
        and auth_data.password == PASSWORD
    )
    # handled=False makes aiosmtpd answer 535 itself on failure.
    return AuthResult(success=ok, handled=False)


async def main():
    loop = asyncio.get_running_loop()
    handler = Handler()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=False,
        ),
        "127.0.0.1",
        0,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
