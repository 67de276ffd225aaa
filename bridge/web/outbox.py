"""Sending to WebSockets from the HTTP side's event loop, each socket at most a bounded number of
messages behind: a client that does not read (a tab in the background, a stalled OSCQuery
listener) misses messages rather than growing the bridge's memory. Shared by the OSCQuery LISTEN
stream (:mod:`bridge.web.http`) and the operator page (:mod:`bridge.web.page`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web


class Outbox:
    """Call only on the event loop's thread."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._backlog: dict[web.WebSocketResponse, int] = {}
        self._tasks: set[asyncio.Future[Any]] = set()

    def send(self, ws: web.WebSocketResponse, data: str | bytes) -> None:
        """Queue ``data`` for ``ws`` (text or binary frame), unless it is closed or ``limit`` behind."""
        backlog = self._backlog.get(ws, 0)
        if ws.closed or backlog >= self._limit:
            return
        self._backlog[ws] = backlog + 1
        self.keep(asyncio.ensure_future(self._send(ws, data)))

    def keep(self, task: asyncio.Future[Any]) -> None:
        """Hold ``task`` until it is done (the loop keeps only weak references to tasks)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, ws: web.WebSocketResponse) -> None:
        """``ws`` is gone: drop its count."""
        self._backlog.pop(ws, None)

    async def cancel(self) -> None:
        """Cancel every task it holds and wait for them to end (none is left pending on a closing loop)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, ws: web.WebSocketResponse, data: str | bytes) -> None:
        try:
            if isinstance(data, str):
                await ws.send_str(data)
            else:
                await ws.send_bytes(data)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            if ws in self._backlog:
                self._backlog[ws] -= 1
