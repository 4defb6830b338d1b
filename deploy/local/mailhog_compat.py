"""A MailHog-compatible mail catcher: SMTP in, MailHog's HTTP API out, messages in memory.

MailHog itself cannot be built here: its v1.0.1 dependencies (github.com/ian-kent/*) are not
served by the reachable Go module proxy, and v1.1.0-beta1 is not published there. This
stand-in keeps MailHog's command-line flags and the API parts Murmur uses, with MailHog's
JSON shapes:

- GET /api/v2/messages?start=0&limit=50 -> {total, count, start, items: [message]}
- GET /api/v2/search?kind=from|to|containing&query=...&start=&limit= -> same shape
- GET /api/v1/messages, GET /api/v1/messages/{id}
- DELETE /api/v1/messages, DELETE /api/v1/messages/{id}

Run: python -m deploy.local.mailhog_compat -smtp-bind-addr 127.0.0.1:1025
     -api-bind-addr 127.0.0.1:8025 -ui-bind-addr 127.0.0.1:8025
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.message
import email.policy
import html
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

Json = dict[str, Any]


def _path(address: str) -> Json:
    mailbox, _, domain = address.strip().strip("<>").partition("@")
    return {"Relays": None, "Mailbox": mailbox, "Domain": domain, "Params": ""}


def _headers(text: str) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    last: str | None = None
    for line in text.split("\r\n") if "\r\n" in text else text.split("\n"):
        if line[:1] in (" ", "\t") and last is not None:
            headers[last][-1] += " " + line.strip()
        elif ":" in line:
            name, _, value = line.partition(":")
            last = name.strip()
            headers.setdefault(last, []).append(value.strip())
    return headers


def _content(raw: str) -> Json:
    """MailHog's Content: headers as lists, body as sent (no transfer decoding)."""
    sep = "\r\n\r\n" if "\r\n\r\n" in raw else "\n\n"
    head, _, body = raw.partition(sep)
    return {"Headers": _headers(head), "Body": body, "Size": len(raw), "MIME": None}


def _mime(raw: str) -> Json | None:
    parsed = email.message_from_string(raw, policy=email.policy.compat32)
    if not parsed.is_multipart():
        return None
    parts = []
    for part in parsed.get_payload():
        if isinstance(part, email.message.Message):
            parts.append(_content(part.as_string()))
    return {"Parts": parts}


@dataclass
class Message:
    helo: str
    mail_from: str
    rcpt_to: list[str]
    data: str
    id: str = field(default_factory=lambda: f"{secrets.token_urlsafe(12)}@mailhog.local")
    created: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> Json:
        return {
            "ID": self.id,
            "From": _path(self.mail_from),
            "To": [_path(rcpt) for rcpt in self.rcpt_to],
            "Content": _content(self.data),
            "Created": self.created.isoformat().replace("+00:00", "Z"),
            "MIME": _mime(self.data),
            "Raw": {
                "From": self.mail_from,
                "To": self.rcpt_to,
                "Data": self.data,
                "Helo": self.helo,
            },
        }

    def matches(self, kind: str, query: str) -> bool:
        query = query.lower()
        headers = _content(self.data)["Headers"]
        if kind == "from":
            fields = [self.mail_from, *headers.get("From", [])]
        elif kind == "to":
            fields = [*self.rcpt_to, *headers.get("To", []), *headers.get("Cc", [])]
        else:
            fields = [self.data]
        return any(query in value.lower() for value in fields)


class Store:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    def newest_first(self) -> list[Message]:
        return list(reversed(self.messages))


class Handler:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        data = content.decode("utf-8", "replace") if isinstance(content, bytes) else content
        self.store.messages.append(
            Message(
                helo=str(session.host_name or ""),
                mail_from=str(envelope.mail_from or ""),
                rcpt_to=[str(rcpt) for rcpt in envelope.rcpt_tos],
                data=data,
            )
        )
        return "250 Ok: queued"


def _page(request: Request) -> tuple[int, int]:
    try:
        start = max(0, int(request.query_params.get("start", "0")))
        limit = max(0, min(250, int(request.query_params.get("limit", "50"))))
    except ValueError:
        return 0, 50
    return start, limit


def _listing(messages: list[Message], request: Request) -> JSONResponse:
    start, limit = _page(request)
    items = [message.to_json() for message in messages[start : start + limit]]
    return JSONResponse(
        {"total": len(messages), "count": len(items), "start": start, "items": items}
    )


def _render_message(raw: str) -> str:
    parsed = email.message_from_string(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    head = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(str(parsed.get(name, '')))}</td></tr>"
        for name in ("Subject", "From", "To", "Date", "Message-ID")
    )
    parts = []
    html_part = parsed.get_body(preferencelist=("html",))
    if html_part is not None:
        # srcdoc keeps the mail's markup away from this page; links open at the top level.
        parts.append(
            "<h2>HTML</h2><iframe style='width:100%;height:22em;border:1px solid #ccc' "
            "sandbox='allow-popups allow-top-navigation-by-user-activation' "
            f"srcdoc='{html.escape(html_part.get_content())}'></iframe>"
        )
    text_part = parsed.get_body(preferencelist=("plain",))
    if text_part is not None:
        text = html.escape(text_part.get_content())
        linked = re.sub(r"(https?://[^\s<>&]+(?:&amp;[^\s<>&]+)*)", r"<a href='\1'>\1</a>", text)
        parts.append(f"<h2>Text</h2><pre style='white-space:pre-wrap'>{linked}</pre>")
    return (
        "<!doctype html><title>MailHog (Murmur dev)</title><p><a href='/'>&larr; all mail</a></p>"
        f"<table>{head}</table>{''.join(parts)}"
    )


def build_app(store: Store) -> Starlette:
    async def v2_messages(request: Request) -> Response:
        return _listing(store.newest_first(), request)

    async def v2_search(request: Request) -> Response:
        kind = request.query_params.get("kind", "")
        if kind not in ("from", "to", "containing"):
            return JSONResponse({"error": "kind must be from, to or containing"}, status_code=400)
        query = request.query_params.get("query", "")
        found = [m for m in store.newest_first() if m.matches(kind, query)]
        return _listing(found, request)

    async def v1_messages(request: Request) -> Response:
        if request.method == "DELETE":
            store.messages.clear()
            return Response(status_code=200)
        return JSONResponse([m.to_json() for m in store.newest_first()])

    async def v1_message(request: Request) -> Response:
        wanted = request.path_params["id"]
        for message in store.messages:
            if message.id == wanted:
                if request.method == "DELETE":
                    store.messages.remove(message)
                    return Response(status_code=200)
                return JSONResponse(message.to_json())
        return JSONResponse({"error": "message not found"}, status_code=404)

    async def index(request: Request) -> Response:
        rows = "".join(
            f"<tr><td>{html.escape(m.created.isoformat())}</td>"
            f"<td>{html.escape(m.mail_from)}</td><td>{html.escape(', '.join(m.rcpt_to))}</td>"
            f"<td><a href='/view/{html.escape(m.id)}'>"
            f"{html.escape(' '.join(_content(m.data)['Headers'].get('Subject', [])) or '(none)')}"
            "</a></td></tr>"
            for m in store.newest_first()
        )
        return HTMLResponse(
            "<!doctype html><title>MailHog (Murmur dev)</title><h1>Caught mail</h1>"
            f"<table><tr><th>When</th><th>From</th><th>To</th><th>Subject</th></tr>{rows}</table>"
        )

    async def view(request: Request) -> Response:
        """One message: headers, its HTML part in a sandboxed frame, and its text part."""
        wanted = request.path_params["id"]
        message = next((m for m in store.messages if m.id == wanted), None)
        if message is None:
            return HTMLResponse("<!doctype html><p>No such message.</p>", status_code=404)
        return HTMLResponse(_render_message(message.data))

    return Starlette(
        routes=[
            Route("/", index),
            Route("/view/{id}", view),
            Route("/api/v2/messages", v2_messages),
            Route("/api/v2/search", v2_search),
            Route("/api/v1/messages", v1_messages, methods=["GET", "DELETE"]),
            Route("/api/v1/messages/{id}", v1_message, methods=["GET", "DELETE"]),
        ]
    )


def _split(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(smtp_addr: str, api_addr: str, ui_addr: str, hostname: str) -> None:
    store = Store()
    app = build_app(store)
    loop = asyncio.get_running_loop()
    smtp_host, smtp_port = _split(smtp_addr)
    smtp = await loop.create_server(
        lambda: SMTP(Handler(store), hostname=hostname, ident="MailHog (Murmur dev)"),
        host=smtp_host,
        port=smtp_port,
    )
    servers = []
    for addr in dict.fromkeys([api_addr, ui_addr]):
        host, port = _split(addr)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        servers.append(uvicorn.Server(config))
    print(f"MAILHOG READY smtp {smtp_addr} api {api_addr}", flush=True)
    try:
        # uvicorn handles SIGTERM/SIGINT: serve() returns and the SMTP server closes below.
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        smtp.close()
        await smtp.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-smtp-bind-addr", dest="smtp", default="127.0.0.1:1025")
    parser.add_argument("-api-bind-addr", dest="api", default="127.0.0.1:8025")
    parser.add_argument("-ui-bind-addr", dest="ui", default="127.0.0.1:8025")
    parser.add_argument("-hostname", dest="hostname", default="mailhog.example")
    args = parser.parse_args()
    asyncio.run(serve(args.smtp, args.api, args.ui, args.hostname))


if __name__ == "__main__":
    main()
