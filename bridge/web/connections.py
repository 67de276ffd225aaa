"""The HTTP side's connections, bounded: how many in all and per host, and how long one may sit idle.

aiohttp's server accepts every connection and keeps an idle one for ever; a host on the show
network (or a visitor's phone) that opens a thousand connections and sends nothing would take
every file descriptor of the bridge, and the next world could not be written. Here each
connection passes a :class:`ConnectionGate` before aiohttp sees it:

* refused at once (closed, no byte read) when its host is outside ``allow``, or when the bridge
  holds ``http_max_connections`` in all or ``http_connections_per_host`` from that host;
* closed when it has received nothing for ``http_idle_s`` while no request is being handled on it
  and nothing waits to be sent to it: a keep-alive connection nobody uses, one that never sent a
  request, or half of one. (A slow download is not idle; a WebSocket is a request being handled
  for as long as it is open, and its heartbeat closes it when its peer is gone.)
* closed when a request has not arrived whole (its request line and headers, so that a handler
  starts) ``http_header_s`` after its first byte: a client that trickles a byte now and then is
  never idle, and would otherwise hold its place for ever.

:class:`GuardedProtocol` wraps aiohttp's own protocol and passes every call on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from bridge.contract.access import allowed

logger = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConnectionGate:
    """Counts the open connections, in all and per host, and the requests being handled on each
    (used on the event loop's thread only)."""

    def __init__(self, networks: Sequence[Network], total: int, per_host: int) -> None:
        self._networks = networks
        self.total = total
        self.per_host = per_host
        self._open: Counter[str] = Counter()
        self._busy: Counter[object] = Counter()
        #: Requests begun on each open connection (a connection sees its next request start).
        self._begun: Counter[object] = Counter()

    def admit(self, host: str) -> bool:
        if not allowed(host, self._networks) or self._open.total() >= self.total or self._open[host] >= self.per_host:
            return False
        self._open[host] += 1
        return True

    def release(self, host: str) -> None:
        _take_one(self._open, host)

    def begin(self, transport: object) -> None:
        """A request is being handled on ``transport`` (the HTTP server's middleware says so)."""
        self._busy[transport] += 1
        self._begun[transport] += 1

    def end(self, transport: object) -> None:
        _take_one(self._busy, transport)

    def begun(self, transport: object) -> int:
        """How many requests have begun on ``transport``."""
        return self._begun[transport]

    def forget(self, transport: object) -> None:
        """``transport``'s connection is closed."""
        self._begun.pop(transport, None)

    def busy(self, transport: object) -> bool:
        return transport in self._busy


def _take_one(counts: Counter[Any], key: object) -> None:
    """One less of ``key``; at none it is forgotten (the tables hold open connections only)."""
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the gate and an idle timer."""

    def __init__(self, factory: Callable[[], Any], gate: ConnectionGate, idle_s: float, header_s: float) -> None:
        self._factory = factory
        self._inner: Any = None
        self._gate = gate
        self._idle_s = idle_s
        self._header_s = header_s
        #: The loop's time of a waiting request's first byte, and how many requests had begun then.
        self._reading: tuple[float, int] | None = None
        self._host: str | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peer = transport.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        if not self._gate.admit(host):
            transport.abort()  # nothing read, nothing answered: the cheapest refusal
            return
        self._host, self._transport = host, transport
        self._inner = self._factory()  # aiohttp's protocol, made only for a connection let in
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._arm()
        if self._late():
            return
        self._inner.data_received(data)

    def _late(self) -> bool:
        """A request that has not begun ``header_s`` after its first byte came: its connection is closed."""
        transport = self._transport
        if transport is None or self._gate.busy(transport):
            self._reading = None  # a request being handled reads its body, or a WebSocket its frames
            return False
        now, begun = asyncio.get_running_loop().time(), self._gate.begun(transport)
        if self._reading is None or self._reading[1] != begun:  # the first byte of a new request
            self._reading = (now, begun)
            return False
        if now - self._reading[0] <= self._header_s:
            return False
        logger.debug("closed a connection from %s: no whole request %.0f s after its first byte", self._host,
                     self._header_s)  # fmt: skip
        transport.close()
        return True

    def eof_received(self) -> bool | None:
        if self._inner is None:
            return None
        result: bool | None = self._inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self._host is None:
            return  # refused: aiohttp never saw it
        if self._timer is not None:
            self._timer.cancel()
        self._gate.release(self._host)
        if self._transport is not None:
            self._gate.forget(self._transport)
        self._host = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._idle_s, self._idle)

    def _idle(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._gate.busy(transport) or transport.get_write_buffer_size() > 0:  # handling, or sending
            self._arm()
            return
        transport.close()


def guarded(
    factory: Callable[[], Any], gate: ConnectionGate, idle_s: float, header_s: float
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server``: aiohttp's ``factory`` behind ``gate``."""
    return lambda: GuardedProtocol(factory, gate, idle_s, header_s)
