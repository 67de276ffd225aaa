"""Sending to WebSockets from the HTTP side's event loop, cheaply and with each client's memory bounded.

Shared by the OSCQuery LISTEN stream (:mod:`bridge.web.http`) and the operator page
(:mod:`bridge.web.page`). A client is :meth:`Outbox.add`-ed with its connection's transport; then:

* **framed once**: a message for many clients is encoded and framed once (a WebSocket frame from a
  server is not masked, and these are not compressed, so every client gets the same bytes) and
  written straight to each client's transport: one ``write`` per client, no task, no coroutine
  (2,000 pages cost 2,000 writes of shared bytes, not 2,000 tasks that each encode, compress
  and send; docs/performance.md, "The operator page");
* **bounded**: a client that does not read (a stalled tab, a script that never reads) leaves its
  bytes in its transport's buffer, in the bridge's memory. Once what waits there would pass
  ``max_unsent`` bytes, the client is disconnected: a close frame (1008, with the reason), and its
  connection aborted :data:`DROP_GRACE_S` later whatever it does, which frees the buffer. Logged
  once per client, and at most one line per :data:`LOG_EVERY_S` for all (with how many more).

A client is sent to only once added: a connection that has no transport left (it closed while
its handshake went on) gets nothing, as it could read nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, web

logger = logging.getLogger(__name__)

#: A client past its bound gets this long to take its close frame before its connection is aborted.
DROP_GRACE_S = 2.0
#: At most one log line per this many seconds about dropped clients (a crowd of stalled ones at once).
LOG_EVERY_S = 10.0

_TEXT, _BINARY = 0x1, 0x2


def frame(data: str | bytes) -> bytes:
    """One unmasked, uncompressed, final WebSocket frame (RFC 6455, 5.2): text for ``str``, binary for ``bytes``."""
    payload, opcode = (data.encode("utf-8"), _TEXT) if isinstance(data, str) else (data, _BINARY)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


@dataclass
class _Client:
    transport: asyncio.Transport
    #: Who it is, for the log: "the operator page 7 from 192.168.1.20".
    label: str
    dropped: bool = False


class Outbox:
    """Call only on the event loop's thread."""

    def __init__(self, max_unsent: int = 4 << 20) -> None:
        self.max_unsent = max_unsent
        self._clients: dict[web.WebSocketResponse, _Client] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._logged_at = -LOG_EVERY_S
        self._not_logged = 0

    def add(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, label: str) -> None:
        """From now on ``ws`` gets its messages written to ``transport`` (its connection's), bounded."""
        if isinstance(transport, asyncio.Transport):
            self._clients[ws] = _Client(transport, label)
        else:
            logger.debug("%s left during its handshake: it is sent nothing", label)

    def forget(self, ws: web.WebSocketResponse) -> None:
        """``ws`` is gone. Were its connection still open with bytes it never read, it is aborted:
        nobody will read them (aiohttp's heartbeat gave up on it), and they hold memory."""
        client = self._clients.pop(ws, None)
        if client is not None and not client.transport.is_closing() and client.transport.get_write_buffer_size():
            client.transport.abort()

    def unsent(self, ws: web.WebSocketResponse) -> int:
        """Bytes written to ``ws`` that its connection still holds (it has not taken them yet); 0 for
        a client not added, dropped or closed (nothing more is written to it anyway)."""
        client = self._clients.get(ws)
        if client is None or client.dropped or client.transport.is_closing():
            return 0
        return int(client.transport.get_write_buffer_size())

    def send(self, ws: web.WebSocketResponse, data: str | bytes) -> None:
        """Send ``data`` to ``ws`` (a text frame for ``str``, binary for ``bytes``)."""
        self.write(ws, frame(data))

    def send_all(self, clients: list[web.WebSocketResponse], data: str | bytes) -> None:
        """Send ``data`` to each of ``clients``: framed once."""
        framed = frame(data)
        for ws in clients:
            self.write(ws, framed)

    def write(self, ws: web.WebSocketResponse, frames: bytes) -> bool:
        """Write ready-made ``frames`` (see :func:`frame`) to an added client; False when it is closed,
        not added, or dropped now for being too far behind."""
        client = self._clients.get(ws)
        if client is None or client.dropped or ws.closed or client.transport.is_closing():
            return False
        unsent = client.transport.get_write_buffer_size()
        if unsent and unsent + len(frames) > self.max_unsent:  # (a client that keeps up may get a big one)
            self._drop(ws, client, unsent)
            return False
        client.transport.write(frames)
        return True

    def keep(self, task: asyncio.Future[Any]) -> None:
        """Hold ``task`` until it is done (the loop keeps only weak references to tasks)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Cancel every task it holds and wait for them to end (none is left pending on a closing loop)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _drop(self, ws: web.WebSocketResponse, client: _Client, unsent: int) -> None:
        client.dropped = True
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            more = f" ({self._not_logged} more since the last such line)" if self._not_logged else ""
            logger.warning(
                "disconnected %s: it does not read what it is sent (%d bytes waiting, more than %d)%s",
                client.label,
                unsent,
                self.max_unsent,
                more,
            )
            self._logged_at, self._not_logged = now, 0
        else:
            self._not_logged += 1
        self.keep(asyncio.ensure_future(self._close(ws, client.transport)))

    async def _close(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        reason = f"too slow: more than {self.max_unsent} bytes not read".encode()
        try:
            with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason), DROP_GRACE_S)
        finally:
            transport.abort()  # frees what it never read, however the close went
