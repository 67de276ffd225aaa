"""The HTTP side's transport layer without a bridge (issue 33): the WebSocket outbox
(:mod:`bridge.web.outbox`: framing, the per-client bound, the drop, its log line) and the connection gate
(:mod:`bridge.web.connections`: who is let in, idle connections, requests whose headers never end).

Small fakes stand in for a connection's transport and a WebSocket; the timers run on an event loop whose
clock the test moves (:class:`SkewLoop`), so a 60-second idle bound takes no time. One test sends
hundreds of messages over a real loopback WebSocket. Each test takes well under a second (they are in
mutmut's selection)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import aiohttp
import pytest
from aiohttp import web

from bridge.settings import parse_networks
from bridge.web import outbox as outbox_module
from bridge.web.connections import ConnectionGate, GuardedProtocol, guarded
from bridge.web.outbox import DROP_GRACE_S, Outbox, frame

T = TypeVar("T")


class SkewLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still but for the test moving it (``skew``): timers fire without
    waiting, at exact times."""

    skew = 0.0

    def time(self) -> float:
        return 1000.0 + self.skew


def run(body: Callable[[], Awaitable[T]]) -> T:
    with asyncio.Runner(loop_factory=SkewLoop) as runner:
        return runner.run(body())  # type: ignore[arg-type]


async def advance(seconds: float) -> None:
    """Move the loop's clock ``seconds`` on and let what became due run."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, SkewLoop)
    loop.skew += seconds
    for _ in range(20):  # (a timeout's chain: the timer, the waiter, the cancelled close, the task)
        await asyncio.sleep(0)


class FakeTransport(asyncio.Transport):
    """A connection's transport: what is written waits in it (``unsent``) unless the peer reads."""

    def __init__(self, peer: tuple[str, int] | None = ("127.0.0.1", 50000), reads: bool = False) -> None:
        super().__init__()
        self.peer = peer
        self.reads = reads
        self.written: list[bytes] = []
        self.unsent = 0
        self.aborted = self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))
        if not self.reads:
            self.unsent += len(data)

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default


class FakeWs:
    """A WebSocket as the outbox sees it: ``closed``, and ``close`` (which may never finish, or fail)."""

    def __init__(self, hang: bool = False, fail: BaseException | None = None) -> None:
        self.closed = False
        self.hang = hang
        self.fail = fail
        self.close_calls: list[tuple[int, bytes]] = []

    async def close(self, *, code: int, message: bytes) -> bool:
        self.close_calls.append((code, message))
        if self.fail is not None:
            raise self.fail
        if self.hang:
            await asyncio.Event().wait()
        self.closed = True
        return True


def added(box: Outbox, transport: asyncio.BaseTransport | None = None, label: str = "page 1") -> Any:
    ws = FakeWs()
    box.add(cast(Any, ws), FakeTransport() if transport is None else transport, label)
    return ws


def transport_of(box: Outbox, ws: Any) -> FakeTransport:
    return cast(FakeTransport, box._clients[ws].transport)


# -- frames ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "head"), [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)])
def test_a_frame_carries_its_length_in_the_shortest_encoding(size: int, head: int) -> None:
    data = frame("x" * size)
    length = {2: b"", 4: b"\x7e", 10: b"\x7f"}[head] + size.to_bytes(max(head - 2, 1), "big")
    assert data == b"\x81" + length + b"x" * size


def test_text_is_utf8_and_bytes_are_a_binary_frame() -> None:
    assert (frame("é"), frame(b"\x00\x01")) == (b"\x81\x02\xc3\xa9", b"\x82\x02\x00\x01")
    assert [frame(b"\x00" * size)[0] for size in (125, 126, 65536)] == [0x82] * 3  # binary at every length


def test_hundreds_of_messages_reach_two_reading_clients_whole_and_in_order() -> None:
    """A real loopback WebSocket: 600 messages of every length encoding (text and binary), framed once
    for both clients; each hears all of them, in order, and neither is dropped."""
    messages: list[str | bytes] = [
        (f"{n:04d}" + "y" * (n * 137 % 70000)) if n % 3 else f"{n:04d}".encode() * (n % 40) for n in range(600)
    ]

    async def body() -> list[list[str | bytes]]:
        box = Outbox(max_unsent=1 << 20)
        joined: list[web.WebSocketResponse] = []
        ready = asyncio.Event()

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(compress=False)
            await ws.prepare(request)
            box.add(ws, request.transport, "a test client")
            joined.append(ws)
            if len(joined) == 2:
                ready.set()
            async for _ in ws:
                pass
            box.forget(ws)
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]

        async def read(ws: aiohttp.ClientWebSocketResponse) -> list[str | bytes]:
            got: list[str | bytes] = []
            while len(got) < len(messages):
                message = await ws.receive(timeout=10)
                got.append(message.data)
            return got

        try:
            async with aiohttp.ClientSession() as session:
                a = await session.ws_connect(f"http://127.0.0.1:{port}/")
                b = await session.ws_connect(f"http://127.0.0.1:{port}/")
                await asyncio.wait_for(ready.wait(), 10)
                readers = asyncio.gather(read(a), read(b))
                for n, message in enumerate(messages):
                    box.send_all(joined, message)
                    if n % 20 == 0:
                        await asyncio.sleep(0.001)  # the readers take what waits
                got = await readers
                await a.close()
                await b.close()
                return list(got)
        finally:
            await runner.cleanup()

    heard = asyncio.run(body())  # (a real clock: real sockets)
    assert heard == [messages, messages]


# -- the bound ---------------------------------------------------------------------------------------


def test_a_client_that_does_not_read_is_written_up_to_its_bound_and_no_further() -> None:
    """Bound 100, frames of 50 bytes: two fit exactly (100 waiting), the third would pass it: dropped."""

    async def body() -> tuple[list[bool], int, list[int]]:
        box = Outbox(max_unsent=100)
        ws = added(box)
        transport = transport_of(box, ws)
        results = [box.write(ws, b"f" * 50) for _ in range(4)]
        await advance(0)
        return results, box.unsent(ws), [len(w) for w in transport.written]

    assert run(body) == ([True, True, False, False], 0, [50, 50])


def test_a_client_that_keeps_up_may_get_one_frame_bigger_than_the_bound() -> None:
    async def body() -> tuple[bool, bool]:
        box = Outbox(max_unsent=100)
        ws = added(box)
        first = box.write(ws, b"f" * 500)  # nothing waits: written
        second = box.write(ws, b"g")  # 500 wait: past the bound
        return first, second

    assert run(body) == (True, False)


def test_the_default_bound_is_four_mebibytes() -> None:
    async def body() -> tuple[bool, bool]:
        box = Outbox()
        ws, other = added(box), added(box)
        transport_of(box, ws).unsent = transport_of(box, other).unsent = (4 << 20) - 10
        return box.write(ws, b"x" * 10), box.write(other, b"x" * 11)

    assert run(body) == (True, False)


def test_a_dropped_client_gets_a_1008_close_naming_the_bound_and_its_connection_aborted() -> None:
    async def body() -> tuple[list[tuple[int, bytes]], bool]:
        box = Outbox(max_unsent=100)
        ws = added(box)
        transport = transport_of(box, ws)
        transport.unsent = 80
        box.write(ws, b"x" * 30)
        await advance(0)
        return ws.close_calls, transport.aborted

    assert run(body) == ([(1008, b"too slow: more than 100 bytes not read")], True)


@pytest.mark.parametrize("hang", [True, False])
def test_a_dropped_client_that_does_not_take_its_close_is_aborted_after_the_grace(hang: bool) -> None:
    """``ws.close`` waits for the peer's close frame: a peer that never answers is aborted at
    DROP_GRACE_S (2 s), not before; one that answers at once, at once."""

    async def body() -> tuple[bool, bool]:
        box = Outbox(max_unsent=10)
        ws = FakeWs(hang=hang)
        transport = FakeTransport()
        box.add(cast(Any, ws), transport, "page")
        transport.unsent = 10
        box.write(cast(Any, ws), b"x")
        await advance(0)  # the close begins, its grace with it
        await advance(DROP_GRACE_S - 0.1)
        before = transport.aborted
        await advance(0.2)
        after = transport.aborted
        await box.cancel()
        return before, after

    assert DROP_GRACE_S == 2.0
    assert run(body) == (not hang, True)


@pytest.mark.parametrize("fail", [ConnectionResetError("gone"), RuntimeError("closing"), TimeoutError()])
def test_a_close_that_fails_still_aborts_and_raises_nothing(fail: BaseException) -> None:
    async def body() -> tuple[bool, list[BaseException | None]]:
        box = Outbox(max_unsent=10)
        ws = FakeWs(fail=fail)
        transport = FakeTransport()
        box.add(cast(Any, ws), transport, "page")
        transport.unsent = 10
        tasks_before = set(box._tasks)
        box.write(cast(Any, ws), b"x")
        tasks = list(box._tasks - tasks_before)
        await advance(0)
        return transport.aborted, [t.exception() for t in tasks if t.done()]

    assert run(body) == (True, [None])


def test_unsent_counts_what_waits_and_nothing_for_a_client_not_added_dropped_or_closing() -> None:
    async def body() -> list[int]:
        box = Outbox(max_unsent=100)
        ws, dropped, closing = added(box), added(box), added(box)
        box.write(ws, b"x" * 30)
        transport_of(box, dropped).unsent = 90
        box.write(dropped, b"x" * 20)
        transport_of(box, closing).unsent = 40
        transport_of(box, closing).closed = True
        counts = [box.unsent(ws), box.unsent(cast(Any, FakeWs())), box.unsent(dropped), box.unsent(closing)]
        await box.cancel()
        return counts

    assert run(body) == [30, 0, 0, 0]


def test_nothing_is_written_to_a_closed_socket_a_closing_transport_or_a_client_not_added() -> None:
    async def body() -> list[bool]:
        box = Outbox()
        closed, closing = added(box), added(box)
        closed.closed = True
        transport_of(box, closing).closed = True
        return [box.write(closed, b"x"), box.write(closing, b"x"), box.write(cast(Any, FakeWs()), b"x")]

    assert run(body) == [False, False, False]


def test_a_client_gone_during_its_handshake_is_sent_nothing(caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox()
    ws = FakeWs()
    with caplog.at_level(logging.DEBUG, logger="bridge.web.outbox"):
        box.add(cast(Any, ws), None, "the operator page 3")
    assert (box.write(cast(Any, ws), b"x"), caplog.messages) == (
        False,
        ["the operator page 3 left during its handshake: it is sent nothing"],
    )


def test_send_and_send_all_write_one_frame_shared_by_every_client() -> None:
    async def body() -> list[list[bytes]]:
        box = Outbox()
        a, b, c = added(box), added(box), added(box)
        box.send_all([a, b], "hi")
        box.send(c, b"\x07")
        return [transport_of(box, ws).written for ws in (a, b, c)]

    written = run(body)
    assert written == [[b"\x81\x02hi"], [b"\x81\x02hi"], [b"\x82\x01\x07"]] and written[0][0] is written[1][0]


@pytest.mark.parametrize(("unsent", "closing", "aborted"), [(5, False, True), (0, False, False), (5, True, False)])
def test_a_forgotten_client_is_aborted_only_if_bytes_wait_on_an_open_connection(
    unsent: int, closing: bool, aborted: bool
) -> None:
    async def body() -> tuple[bool, bool]:
        box = Outbox()
        ws = added(box)
        transport = transport_of(box, ws)
        transport.unsent, transport.closed = unsent, closing
        box.forget(ws)
        box.forget(ws)  # twice, or a client never added: nothing happens
        return transport.aborted, box.write(ws, b"x")

    assert run(body) == (aborted, False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_drops_are_logged_at_most_once_per_ten_seconds_with_how_many_more(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The first drop at once (even on a clock that starts at 0), the next two counted, then a line at
    exactly 10 s that says so, then at 20 s a line without the count (it starts again)."""
    clock = FakeClock()
    monkeypatch.setattr(outbox_module, "time", clock)

    async def body() -> None:
        box = Outbox(max_unsent=10)
        for n, at in enumerate([0.0, 4.0, 9.9, 10.0, 20.0]):
            clock.now = at
            ws = added(box, label=f"page {n}")
            transport_of(box, ws).unsent = 10 + n
            box.write(ws, b"x")
        await box.cancel()

    with caplog.at_level(logging.WARNING, logger="bridge.web.outbox"):
        run(body)
    line = "disconnected page {}: it does not read what it is sent ({} bytes waiting, more than 10){}"
    assert caplog.messages == [
        line.format(0, 10, ""),
        line.format(3, 13, " (2 more since the last such line)"),
        line.format(4, 14, ""),
    ]


def test_cancel_ends_every_task_held_and_returns() -> None:
    async def body() -> tuple[bool, int]:
        box = Outbox()
        task = asyncio.ensure_future(asyncio.Event().wait())
        box.keep(task)
        await box.cancel()
        await asyncio.sleep(0)
        return task.cancelled(), len(box._tasks)

    assert run(body) == (True, 0)


# -- the connection gate -----------------------------------------------------------------------------


def test_the_gate_admits_the_allowlist_only_up_to_its_bounds_in_all_and_per_host() -> None:
    gate = ConnectionGate(parse_networks(["10.0.0.0/8"]), total=3, per_host=2)
    seen = [gate.admit(h) for h in ("192.168.1.2", "10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3")]
    gate.release("10.0.0.1")
    seen += [gate.admit("10.0.0.3"), gate.admit("10.0.0.1")]
    gate.release("10.0.0.2")
    gate.release("10.0.0.1")
    gate.release("10.0.0.1")
    seen += [gate.admit("10.0.0.1"), gate.admit("10.0.0.1"), gate.admit("10.0.0.1")]
    assert seen == [False, True, True, False, True, False, True, False, True, True, False]


def test_the_gate_counts_requests_being_handled_and_begun_on_each_connection() -> None:
    gate = ConnectionGate([], total=10, per_host=10)
    a, b = object(), object()
    gate.begin(a)
    gate.begin(a)
    gate.end(a)
    states = [gate.busy(a), gate.begun(a), gate.busy(b), gate.begun(b)]
    gate.end(a)
    states += [gate.busy(a), gate.begun(a)]
    gate.forget(a)
    gate.forget(b)  # never begun: nothing to forget
    states += [gate.begun(a)]
    assert states == [True, 2, False, 0, False, 2, 0]


class FakeInner:
    """aiohttp's protocol for one connection, as the guard sees it: every call recorded."""

    def __init__(self, eof: bool | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.eof = eof

    def connection_made(self, transport: Any) -> None:
        self.calls.append(("made", transport))

    def data_received(self, data: bytes) -> None:
        self.calls.append(("data", data))

    def eof_received(self) -> bool | None:
        self.calls.append(("eof", None))
        return self.eof

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append(("lost", exc))

    def pause_writing(self) -> None:
        self.calls.append(("pause", None))

    def resume_writing(self) -> None:
        self.calls.append(("resume", None))


class Made:
    def __init__(self, eof: bool | None = None) -> None:
        self.inners: list[FakeInner] = []
        self.eof = eof

    def __call__(self) -> FakeInner:
        self.inners.append(FakeInner(self.eof))
        return self.inners[-1]


def test_a_refused_connection_is_aborted_unread_and_aiohttp_never_sees_it() -> None:
    async def body() -> tuple[bool, int, bool | None, int]:
        gate = ConnectionGate(parse_networks(["10.0.0.0/8"]), total=5, per_host=5)
        made = Made()
        protocol = guarded(made, gate, 60.0, 20.0)()
        transport = FakeTransport(("192.168.1.9", 4000))
        protocol.connection_made(transport)
        eof = protocol.eof_received()
        protocol.pause_writing()
        protocol.resume_writing()
        protocol.connection_lost(None)
        return transport.aborted, len(made.inners), eof, gate._open.total()

    assert run(body) == (True, 0, None, 0)


def test_a_connection_without_a_peer_name_is_refused_by_an_allowlist() -> None:
    async def body() -> bool:
        gate = ConnectionGate(parse_networks(["10.0.0.0/8", "127.0.0.0/8"]), total=5, per_host=5)
        transport = FakeTransport(None)
        GuardedProtocol(Made(), gate, 60.0, 20.0).connection_made(transport)
        return transport.aborted

    assert run(body) is True


def test_an_admitted_connection_passes_every_call_on_and_frees_its_place_when_lost() -> None:
    async def body() -> tuple[list[tuple[str, Any]], bool | None, list[bool]]:
        gate = ConnectionGate([], total=5, per_host=1)
        made = Made(eof=True)
        transport = FakeTransport(("10.0.0.1", 4000))
        protocol = GuardedProtocol(made, gate, 60.0, 20.0)
        protocol.connection_made(transport)
        second = FakeTransport(("10.0.0.1", 4001))
        GuardedProtocol(made, gate, 60.0, 20.0).connection_made(second)  # one per host: refused
        protocol.data_received(b"GET / HTTP/1.1\r\n")
        eof = protocol.eof_received()
        protocol.pause_writing()
        protocol.resume_writing()
        error = ConnectionResetError("peer")
        gate.begin(transport)
        protocol.connection_lost(error)
        third = FakeTransport(("10.0.0.1", 4002))
        GuardedProtocol(Made(), gate, 60.0, 20.0).connection_made(third)
        assert made.inners[0].calls[-1] == ("lost", error)
        return made.inners[0].calls[:-1], eof, [second.aborted, third.aborted, gate.begun(transport) == 0]

    calls, eof, states = run(body)
    assert [c[0] for c in calls] == ["made", "data", "eof", "pause", "resume"]
    assert calls[1] == ("data", b"GET / HTTP/1.1\r\n") and eof is True
    assert states == [True, False, True]


def test_an_idle_connection_is_closed_after_idle_s_and_each_byte_restarts_the_count() -> None:
    async def body() -> list[bool]:
        gate = ConnectionGate([], total=5, per_host=5)
        transport = FakeTransport()
        protocol = GuardedProtocol(Made(), gate, 60.0, 1000.0)
        protocol.connection_made(transport)
        seen = []
        await advance(59.0)
        seen.append(transport.closed)
        protocol.data_received(b"G")
        await advance(59.0)  # 118 s after it opened, 59 s after its byte
        seen.append(transport.closed)
        await advance(1.5)
        seen.append(transport.closed)
        return seen

    assert run(body) == [False, False, True]


def test_a_connection_lost_has_its_idle_timer_cancelled() -> None:
    async def body() -> bool:
        gate = ConnectionGate([], total=5, per_host=5)
        transport = FakeTransport()
        protocol = GuardedProtocol(Made(), gate, 60.0, 1000.0)
        protocol.connection_made(transport)
        protocol.connection_lost(None)
        await advance(61.0)
        return transport.closed  # nothing ran on the connection gone

    assert run(body) is False


@pytest.mark.parametrize("why", ["busy", "sending"])
def test_a_connection_handling_a_request_or_sending_is_not_idle(why: str) -> None:
    async def body() -> list[bool]:
        gate = ConnectionGate([], total=5, per_host=5)
        transport = FakeTransport()
        protocol = GuardedProtocol(Made(), gate, 60.0, 1000.0)
        protocol.connection_made(transport)
        if why == "busy":
            gate.begin(transport)
        else:
            transport.unsent = 1
        seen = []
        await advance(61.0)
        seen.append(transport.closed)
        await advance(61.0)  # re-armed, and still not idle
        seen.append(transport.closed)
        gate.end(transport)
        transport.unsent = 0
        await advance(61.0)
        seen.append(transport.closed)
        return seen

    assert run(body) == [False, False, True]


def test_the_idle_timer_leaves_a_connection_already_closing_alone() -> None:
    async def body() -> list[bool]:
        gate = ConnectionGate([], total=5, per_host=5)
        transport = FakeTransport()
        protocol = GuardedProtocol(Made(), gate, 60.0, 1000.0)
        protocol.connection_made(transport)
        transport.aborted = True
        await advance(61.0)
        return [transport.closed]

    assert run(body) == [False]


def test_a_request_whose_headers_trickle_past_header_s_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    """header_s 5: bytes at 0, 3 and exactly 5 s are passed on; the next, at 5.5 s, closes the connection
    and is not passed on. A connection whose request began starts counting again at its next byte."""

    async def body() -> tuple[list[bytes], bool, list[bytes], bool]:
        gate = ConnectionGate([], total=5, per_host=5)
        made = Made()
        slow = FakeTransport()
        protocol = guarded(made, gate, 60.0, 5.0)()
        protocol.connection_made(slow)
        for step, byte in ((0.0, b"a"), (3.0, b"b"), (2.0, b"c"), (0.5, b"d")):
            await advance(step)
            protocol.data_received(byte)
        passed = [data for name, data in made.inners[0].calls if name == "data"]

        keeps = FakeTransport()
        other = GuardedProtocol(made, gate, 60.0, 5.0)
        other.connection_made(keeps)
        other.data_received(b"GET")
        await advance(4.0)
        gate.begin(keeps)  # its request began: its body (or a WebSocket's frames) may take their time
        await advance(10.0)
        other.data_received(b"body")
        gate.end(keeps)
        await advance(10.0)
        other.data_received(b"G")  # a second request's first byte: a new count
        await advance(5.0)
        other.data_received(b"ET")
        return passed, slow.closed, [d for n, d in made.inners[1].calls if n == "data"], keeps.closed

    with caplog.at_level(logging.DEBUG, logger="bridge.web.connections"):
        passed, closed, other_passed, other_closed = run(body)
    assert (passed, closed) == ([b"a", b"b", b"c"], True)
    assert (other_passed, other_closed) == ([b"GET", b"body", b"G", b"ET"], False)
    assert caplog.messages == ["closed a connection from 127.0.0.1: no whole request 5 s after its first byte"]


def test_a_request_being_handled_restarts_the_header_count_after_it() -> None:
    """Bytes while a request is handled are not a new request's first byte: the count starts at the next
    byte after it (here 1 s after the last, so 4 more seconds are allowed, not 5 from the earlier one)."""

    async def body() -> bool:
        gate = ConnectionGate([], total=5, per_host=5)
        transport = FakeTransport()
        protocol = GuardedProtocol(Made(), gate, 60.0, 5.0)
        protocol.connection_made(transport)
        protocol.data_received(b"GET")
        gate.begin(transport)
        await advance(1.0)
        protocol.data_received(b"body")
        gate.end(transport)
        gate.forget(transport)  # (begun back to 0, as at the first request)
        await advance(1.0)
        protocol.data_received(b"x")
        await advance(4.5)
        protocol.data_received(b"y")
        return transport.closed

    assert run(body) is False


def test_a_keep_alive_connections_next_request_long_after_the_first_is_not_late() -> None:
    """A request that came in one packet and was handled (begun and ended between two packets): the next
    request's first byte, 30 s later, starts a new count."""

    async def body() -> bool:
        gate = ConnectionGate([], total=5, per_host=5)
        transport = FakeTransport()
        protocol = GuardedProtocol(Made(), gate, 60.0, 5.0)
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        gate.begin(transport)
        gate.end(transport)
        await advance(30.0)
        protocol.data_received(b"GET /again HTTP/1.1\r\n")
        return transport.closed

    assert run(body) is False
