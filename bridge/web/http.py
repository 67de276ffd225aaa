"""The bridge's HTTP side: the operator page, OSCQuery over HTTP and its LISTEN stream over a WebSocket.

aiohttp runs on its own thread (``ldm3d-http``) and event loop, so nothing here can
delay the OSC intake. It serves, on TCP (by default the same port number as OSC's
UDP port):

* ``GET /path`` and ``GET /path?ATTRIBUTE``: the OSCQuery namespace
  (:mod:`bridge.web.oscquery`); ``GET /?HOST_INFO``;
* a WebSocket upgraded at ``/``: ``{"COMMAND": "LISTEN", "DATA": "/ldm3d/steps"}``
  (and ``IGNORE``) in JSON text frames; every event on a listened address then
  arrives as a binary OSC message, the same message subscribers get over UDP;
* the operator page (:mod:`bridge.web.page`): ``GET /`` from a browser (``Accept:
  text/html``; OSCQuery clients ask for JSON) and ``/ui/…`` (its files), ``/ws`` (its
  JSON WebSocket) and ``/t/…`` (textures at content-addressed URLs);
* with visitors on, the visitor page (:mod:`bridge.web.visit`): ``/visit``, ``/visit/prompt``,
  ``/visit/status/…`` (no token: the public has none) and the operator's ``/qr/visit.svg``.

Access: the bridge's allowlist (a connection from outside it is closed at once, in
:mod:`bridge.web.connections`); the name a request reaches the bridge by (its
``Host``) must be an IP address, ``localhost``, this machine's name (``NAME`` or ``NAME.local``) or
a name in ``allow_origin`` (403 otherwise: a page that rebinds its own DNS name to the bridge's
address, DNS rebinding, is refused whatever its Origin says); with a token set, every request
carries it (``?token=…``, header ``X-Ldm3d-Token`` or ``Authorization: Bearer …``;
401 otherwise), except the page's own files, which hold no secret and must load so
that the page can ask for the token. A WebSocket upgrade from a browser page must
come from the page's own origin or one in ``allow_origin`` (403 otherwise), so another site open
in the operator's browser cannot drive the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import WSMsgType, hdrs, web, web_response

from bridge.errors import BridgeError
from bridge.osc.codec import Arg, encode_message
from bridge.settings import BridgeSettings, parse_networks
from bridge.web import visit
from bridge.web.connections import ConnectionGate, guarded
from bridge.web.oscquery import Node, host_info, query
from bridge.web.outbox import Outbox
from bridge.web.page import PageHub, StaticFiles

logger = logging.getLogger(__name__)

Values = Callable[[], Mapping[str, tuple[Arg, ...]]]
LoopErrorHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]
#: What every response's ``Server`` header says: not the versions of Python and aiohttp, which only help an attacker.
SERVER = "ldm3d-bridge"


class WebServer:
    def __init__(
        self,
        settings: BridgeSettings,
        nodes: Mapping[str, Node],
        values: Values,
        *,
        osc_port: int,
        name: str,
        page: PageHub | None = None,
        static: StaticFiles | None = None,
        visitors: visit.VisitorBackend | None = None,
        loop_errors: LoopErrorHandler | None = None,
    ) -> None:
        """``loop_errors``: the event loop's exception handler (asyncio's own errors, such as
        ``socket.accept() out of system resource``, each of which may come thousands of times a
        second: the bridge hands in its log throttle); None: asyncio's default."""
        self._settings = settings
        self._page = page
        self._visitors = visitors
        self._loop_errors = loop_errors
        self._static = static
        self._nodes = nodes
        self._values = values
        self._osc_port = osc_port
        self._name = name
        self._names = KnownNames(settings.allow_origin, settings.visitor_url)
        #: Connections in all and per host, refused early past the settings' bounds.
        self.gate = ConnectionGate(
            parse_networks(settings.allow), settings.http_max_connections, settings.http_connections_per_host
        )
        self._latest: dict[str, tuple[Arg, ...]] = {}
        self._lock = threading.Lock()
        self._listeners: dict[web.WebSocketResponse, set[str]] = {}
        self._outbox = Outbox(settings.http_max_unsent_bytes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.port = 0

    # -- life cycle (called from the bridge's threads) -------------------------

    def start(self, host: str, port: int) -> None:
        """Bind and serve; BridgeError when the port cannot be had."""
        self._thread = threading.Thread(target=self._run, args=(host, port), name="ldm3d-http", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            self._thread.join(5)
            raise BridgeError(
                f"cannot serve HTTP on {host}:{port}: {self._error} (another program on that TCP port? "
                "choose one with --http-port, or --no-http)"
            ) from self._error

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)

    def publish(self, address: str, args: tuple[Arg, ...]) -> None:
        """An event (thread-safe, never blocks): kept as the address's value and sent to its listeners."""
        with self._lock:
            self._latest[address] = args
        loop = self._loop
        if loop is not None and not loop.is_closed():  # one hop to the loop for the pages and the listeners
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is listening any more
                loop.call_soon_threadsafe(self._on_loop, address, args, time.time())

    # -- the loop's thread ---------------------------------------------------------

    def _run(self, host: str, port: int) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        # aiohttp's own answers (a malformed request's 400, made before any app sees it) name it too: its
        # default is this module global, read at every response (the signal below covers the app's answers)
        if isinstance(getattr(web_response, "SERVER_SOFTWARE", None), str):
            web_response.SERVER_SOFTWARE = SERVER  # type: ignore[attr-defined]
        app = web.Application(middlewares=[self._guard])
        app.on_response_prepare.append(_plain_server_header)
        if self._page is not None:
            self._page.attach(app, self._settings.http_max_unsent_bytes)
        if self._static is not None:
            app.router.add_get("/ui/{name:.+}", self._ui)
            if self._visitors is not None:
                visit.attach(app, self._visitors, self._static)
        app.router.add_get("/{path:.*}", self._get)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)  # (signals: the bridge handles them)
        if self._loop_errors is not None:
            loop.set_exception_handler(self._loop_errors)
        server: asyncio.Server | None = None
        try:
            loop.run_until_complete(runner.setup())
            assert runner.server is not None
            factory = guarded(runner.server, self.gate, self._settings.http_idle_s, self._settings.http_header_s)
            server = loop.run_until_complete(loop.create_server(factory, host, port, reuse_address=True))
        except Exception as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            if self._page is not None:  # its start-up task runs already: end it before the loop closes
                loop.run_until_complete(self._page.close_pages())
            loop.run_until_complete(runner.cleanup())
            loop.close()
            self._started.set()
            return
        self.port = int(server.sockets[0].getsockname()[1])
        self._runner, self._loop = runner, loop
        self._started.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for ws in list(self._listeners):
                loop.run_until_complete(ws.close())
            if self._page is not None:
                loop.run_until_complete(self._page.close_pages())
            loop.run_until_complete(runner.cleanup())
            loop.close()
            if self._page is not None:
                self._page.close()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)  # (not request.host: without one, aiohttp would ask DNS for ours)
        name = _host_name(host) if host is not None else ""
        if host is not None and not self._names.known(name):
            return web.Response(
                status=403,
                text=f"this bridge is not {name!r} (DNS rebinding?); to reach it by that name, start it with "
                f"--allow-origin {name}\n",
            )
        origin = request.headers.get(hdrs.ORIGIN)
        upgrade = _upgrade(request)
        if upgrade and origin is not None and not self._names.origin_allowed(origin, host or ""):  # OSCQuery's too
            return web.Response(status=403, text=f"WebSocket from {origin} refused: not this bridge's page\n")
        secret = self._settings.token
        if secret is not None and not self._page_file(request):
            header = request.headers.get(hdrs.AUTHORIZATION, "")
            given = (
                request.query.get("token")
                or request.headers.get("X-Ldm3d-Token")
                or (header[7:] if header.startswith("Bearer ") else "")
            )
            if not hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8")):
                return web.Response(status=401, text="this bridge needs its token: ?token=… or X-Ldm3d-Token\n")
        transport = request.transport
        if transport is not None:
            self.gate.begin(transport)  # not idle while it is handled (a WebSocket: while it is open)
        try:
            response: web.StreamResponse = await handler(request)
        finally:
            if transport is not None:
                self.gate.end(transport)
        return response

    def _page_file(self, request: web.Request) -> bool:
        """The page's own files (no secret in them): the page itself at ``/`` and ``/ui/…``; and the
        visitor page's routes, which the public uses without the token."""
        if self._static is None or _upgrade(request):
            return False  # an upgrade at `/` is the OSCQuery event stream, whatever its Accept header says
        if self._visitors is not None and visit.is_visitor_path(request.path):
            return True
        return request.path.startswith("/ui/") or (request.path == "/" and _wants_html(request))

    async def _ui(self, request: web.Request) -> web.StreamResponse:
        assert self._static is not None
        return self._static.response(request, request.match_info["name"])

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if _upgrade(request):
            return await self._websocket(request)
        if self._static is not None and request.path == "/" and _wants_html(request):
            return self._static.response(request, "index.html")
        attributes = [part for part in request.query_string.split("&") if part and "=" not in part]
        attribute = unquote(attributes[0]) if attributes else None
        if attribute == "HOST_INFO":
            return web.json_response(self._host_info(request))
        with self._lock:
            latest = dict(self._latest)
        status, body = query(unquote(request.path), attribute, self._nodes, {**latest, **self._values()})
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    def _host_info(self, request: web.Request) -> dict[str, Any]:
        local = request.transport.get_extra_info("sockname") if request.transport else None
        here = str(local[0]) if local else "127.0.0.1"
        osc_ip = self._settings.host if self._settings.host not in ("0.0.0.0", "::", "") else here
        return host_info(self._name, osc_ip, self._osc_port, here, self.port)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, compress=False)  # events are framed once for all listeners
        await ws.prepare(request)
        self._listeners[ws] = set()
        self._outbox.add(ws, request.transport, f"an OSCQuery listener at {request.remote}")
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    await self._command(ws, message.data)
        finally:
            self._listeners.pop(ws, None)
            self._outbox.forget(ws)
        return ws

    async def _command(self, ws: web.WebSocketResponse, text: str) -> None:
        try:
            command = json.loads(text)
            verb, path = command["COMMAND"], command["DATA"]
        except (ValueError, KeyError, TypeError, RecursionError):  # RecursionError: JSON nested too deep
            await ws.send_str(json.dumps({"ERROR": 'send {"COMMAND": "LISTEN" or "IGNORE", "DATA": "/ldm3d/…"}'}))
            return
        if verb == "LISTEN" and isinstance(path, str) and path in self._nodes:
            self._listeners[ws].add(path)
        elif verb == "IGNORE" and isinstance(path, str):
            self._listeners[ws].discard(path)
        else:
            await ws.send_str(json.dumps({"ERROR": f"cannot {verb} {path!r}"}))

    def _on_loop(self, address: str, args: tuple[Arg, ...], sent_at: float) -> None:
        if self._page is not None:
            self._page.event(address, args, sent_at)
        self._fan_out(address, args)

    def _fan_out(self, address: str, args: tuple[Arg, ...]) -> None:
        targets = [ws for ws, paths in self._listeners.items() if address in paths and not ws.closed]
        if targets:
            self._outbox.send_all(targets, encode_message(address, *args))


async def _plain_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """``Server: ldm3d-bridge``: not the versions of Python and aiohttp, which only help an attacker."""
    response.headers[hdrs.SERVER] = SERVER


class KnownNames:
    """The names the bridge answers to: IP addresses (no DNS name can be rebound to them),
    ``localhost``, this machine's name (``NAME``, ``NAME.local``), and the hosts of ``allow_origin``
    (names or origins) and of ``visitor_url``. Read once; never resolved."""

    def __init__(self, allow_origin: tuple[str, ...], visitor_url: str | None = None) -> None:
        machine = socket.gethostname().lower().rstrip(".")
        listed = [*allow_origin, *([visitor_url] if visitor_url else [])]
        self.origins = {entry.rstrip("/").lower() for entry in allow_origin if "://" in entry}
        self.names = {"localhost", machine, machine.split(".")[0] + ".local", *(_entry_name(e) for e in listed)}

    def known(self, name: str) -> bool:
        if not name:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in self.names

    def origin_allowed(self, origin: str, host: str) -> bool:
        """A browser page's origin: the bridge's own (the same host and port it asks), or one listed."""
        return urlsplit(origin).netloc.lower() == host.lower() or origin.rstrip("/").lower() in self.origins


def _host_name(host: str) -> str:
    """``Host``'s name without its port (``[::1]:9000`` → ``::1``), lower-case."""
    name = host.strip().lower()
    if name.startswith("["):
        return name[1 : name.find("]")] if "]" in name else ""
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    return name.rstrip(".")  # "dome.local." (zeroconf's form) is "dome.local"


def _entry_name(entry: str) -> str:
    """An ``allow_origin`` entry's name: ``http://dome.lan:9000`` or ``dome.lan`` → ``dome.lan``."""
    return (urlsplit(entry).hostname or "") if "://" in entry else _host_name(entry)


def _wants_html(request: web.Request) -> bool:
    """A browser opening the page (OSCQuery clients ask for JSON, or for anything)."""
    return "text/html" in request.headers.get(hdrs.ACCEPT, "")


def _upgrade(request: web.Request) -> bool:
    """A WebSocket upgrade (the header's value in any case, as RFC 6455 allows)."""
    return request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
