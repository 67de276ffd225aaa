"""The public visitor page's side of the HTTP server (``serve --visitors``).

Routes, on the HTTP server's event loop (:mod:`bridge.web.http`):

* ``GET /visit``: the page (``static/visit/``: one prompt box and a friendly status);
* ``POST /visit/prompt`` ``{"prompt": "…"}``: ``{"ok": true, "ticket": "…"}``, or ``{"ok": false,
  "code": "…", "message": "…"}`` with an HTTP status (400 a prompt too long or empty, 422 refused
  by the prompt rules, 429 too soon after the device's last one, 503 the queue is full or no
  worker is alive); a body over 4 KiB is 413;
* ``GET /visit/config``: ``{"max_chars": 200, "interval_s": 30.0}``;
* ``GET /visit/status/<ticket>``: ``{"state": "…", "text": "…"}`` for that ticket only;
* ``GET /qr/visit.svg`` (the operator's, behind the token like the rest): the visitor page's
  address as a QR code, and ``GET /qr/visit.txt`` the address itself.

The visitor's routes need no token (the public has none) but stay inside the allowed networks.
A visitor's device is its network address. Nothing here knows of jobs: the bridge hands in a
:class:`VisitorBackend`.
"""

from __future__ import annotations

import json
import logging
from typing import Protocol

from aiohttp import hdrs, web

from bridge.errors import BridgeError
from bridge.web.page import StaticFiles

logger = logging.getLogger(__name__)

#: The largest request body a visitor may send.
MAX_BODY = 4096
#: HTTP status of each refusal a visitor may meet (others: 503).
STATUS = {"bad_arguments": 400, "refused_prompt": 422, "rate_limited": 429}
#: What a visitor reads for a refusal whose own message is for operators.
PLAIN = "The installation cannot take prompts right now. Please try again in a little while."


class VisitorBackend(Protocol):
    def submit(self, prompt: str, device: str) -> str:
        """The prompt's ticket; a :class:`BridgeError` whose message a visitor may read (or not: see PLAIN)."""

    def status(self, ticket: str) -> dict[str, object]:
        """What the visitor's page shows for ``ticket``."""

    def visitor_url(self, host: str) -> str:
        """The visitor page's address, as the QR code gives it (``host``: the Host the operator used)."""

    def config(self) -> dict[str, object]:
        """What the page needs to know before a prompt: ``max_chars``, ``interval_s``."""


def attach(app: web.Application, backend: VisitorBackend, static: StaticFiles) -> None:
    """Add the visitor routes to ``app`` (the page's files from ``static``)."""
    visit = _Visit(backend, static)
    for path in ("/visit", "/visit/"):
        app.router.add_get(path, visit.page)
    app.router.add_get("/visit/config", visit.config)
    app.router.add_post("/visit/prompt", visit.prompt)
    app.router.add_get("/visit/status/{ticket}", visit.status)
    app.router.add_get("/qr/visit.svg", visit.qr)
    app.router.add_get("/qr/visit.txt", visit.url)


def is_visitor_path(path: str) -> bool:
    """The routes the public may use without the token."""
    return path in ("/visit", "/visit/", "/visit/prompt", "/visit/config") or path.startswith("/visit/status/")


class _Visit:
    def __init__(self, backend: VisitorBackend, static: StaticFiles) -> None:
        self._backend = backend
        self._static = static

    async def page(self, request: web.Request) -> web.Response:
        return self._static.response(request, "visit/index.html")

    async def prompt(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _refusal(413, "bad_arguments", "That is too long to send.")
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _refusal(413, "bad_arguments", "That is too long to send.")
        try:
            data = json.loads(body)
            prompt = data["prompt"]
            if not isinstance(prompt, str):
                raise TypeError(prompt)
            prompt.encode("utf-8")  # lone surrogates from a hand-made request
        except (ValueError, KeyError, TypeError, RecursionError, UnicodeError):
            return _refusal(400, "bad_arguments", 'Send {"prompt": "what you would like to see"}.')
        try:
            ticket = self._backend.submit(prompt, request.remote or "")
        except BridgeError as exc:
            status = STATUS.get(exc.code, 503)
            return _refusal(status, exc.code, str(exc) if exc.code in STATUS else PLAIN)
        return web.json_response({"ok": True, "ticket": ticket})

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(self._backend.config())

    async def status(self, request: web.Request) -> web.Response:
        ticket = request.match_info["ticket"][:64]
        return web.json_response(self._backend.status(ticket), headers={"Cache-Control": "no-store"})

    async def qr(self, request: web.Request) -> web.Response:
        import io

        import segno

        url = self._backend.visitor_url(_host(request))
        out = io.BytesIO()
        segno.make(url, error="m").save(out, kind="svg", scale=6, border=2, title=url)
        return web.Response(body=out.getvalue(), content_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    async def url(self, request: web.Request) -> web.Response:
        return web.Response(text=self._backend.visitor_url(_host(request)) + "\n")


def _host(request: web.Request) -> str:
    """The address the operator reached the bridge by (never request.host: without a Host header it asks DNS)."""
    host = request.headers.get(hdrs.HOST)
    if host:
        return host
    local = request.transport.get_extra_info("sockname") if request.transport else None
    return f"{local[0]}:{local[1]}" if local else "127.0.0.1"


def _refusal(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"ok": False, "code": code, "message": message}, status=status)
