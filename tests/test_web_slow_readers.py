"""WebSocket clients that do not read (issue 30, point 6), and what every page is sent, framed once.

A client whose unsent bytes pass ``http_max_unsent_bytes`` is disconnected and its memory freed;
a page that reads is not touched. Real bridges (tiny model, loopback), a raw socket that never reads
(a small receive buffer, so the bytes pile up in the bridge and not in the kernel), and aiohttp
clients as the reading pages."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bridge.serve.server import Bridge
from bridge.web.outbox import frame
from tests.raw_websocket import gone, never_reads

Start = Callable[..., Bridge]
#: The smallest bound the settings allow: the test needs fewer bytes to pass it.
BOUND = 65536


async def _until(ws: aiohttp.ClientWebSocketResponse, test: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        message = await ws.receive(timeout=30)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data = json.loads(message.data)
        if test(data):
            return data


def _dropped_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bridge.web.outbox"]


def test_a_page_that_never_reads_is_disconnected_and_a_reading_page_is_not(
    start_bridge: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 30, point 6: 10 sockets that never read and 600 large state changes took the bridge from
    429 to 623 MB. Now the one that does not read is disconnected once more than the bound waits for it
    (its connection aborted: what it never read is freed), and the page beside it hears every change."""
    bridge = start_bridge(http=True, http_max_unsent_bytes=BOUND)
    web = bridge._web
    assert web is not None and bridge.http_port is not None
    hub = web._page
    assert hub is not None
    stalled = never_reads(bridge.http_port)

    async def flood() -> tuple[int, int]:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{bridge.http_port}/ws") as ws,
        ):
            await _until(ws, lambda m: m["type"] == "hello")
            sent = heard = 0
            deadline = time.monotonic() + 60
            while not _dropped_logged(caplog):  # each change 32 kB, to every page: the stalled one falls behind
                assert time.monotonic() < deadline and sent < 2000, f"not dropped after {sent} changes"
                sent += 1
                prompt = f"{sent:05d} " + "a harbour at dusk " * 1800
                await ws.send_str(json.dumps({"id": sent, "address": "/ldm3d/prompt", "args": [prompt]}))
                event = await _until(ws, lambda m: m.get("type") == "event" and m["address"] == "/ldm3d/prompt")
                heard += event["args"][0] == prompt
            # the bridge lets go of the stalled connection by itself, while it still has not read a byte (what
            # waited for it is freed: a close alone would wait for ever for it to read), and only of that one
            deadline = time.monotonic() + 10
            while web.gate._open.total() > 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert web.gate._open.total() == 1 and len(hub._pages) == 1
            for _ in range(20):  # and after it: the reading page goes on as before
                sent += 1
                await ws.send_str(json.dumps({"id": sent, "address": "/ldm3d/prompt", "args": [f"after {sent}"]}))
                event = await _until(ws, lambda m: m.get("type") == "event" and m["address"] == "/ldm3d/prompt")
                heard += event["args"][0] == f"after {sent}"
            await ws.send_str(json.dumps({"id": 0, "address": "/ldm3d/ping", "args": []}))
            await _until(ws, lambda m: m.get("address") == "/ldm3d/pong")
            return sent, heard

    try:
        with caplog.at_level(logging.WARNING, logger="bridge.web.outbox"):
            sent, heard = asyncio.run(flood())
            assert gone(stalled, 10), "the bridge did not close the connection that does not read"
        assert heard == sent  # the reading page heard every change, in order
        logged = _dropped_logged(caplog)
        assert len(logged) == 1 and "does not read" in logged[0] and f"more than {BOUND}" in logged[0]
        deadline = time.monotonic() + 10
        while (hub._pages or web.gate._open) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not hub._pages and not hub._outbox._clients  # both pages forgotten (the reader closed too) …
        assert web.gate._open.total() == 0  # … and no connection is held: what was unsent is freed
    finally:
        stalled.close()


def test_many_stalled_clients_are_all_dropped_with_one_log_line(
    start_bridge: Start, caplog: pytest.LogCaptureFixture
) -> None:
    """Five pages and an OSCQuery listener that never read, and 600 large state changes (as in the issue):
    each is disconnected once past the bound (the listener by its own outbox), and the log says so in one
    line for the pages, not one per page."""
    bridge = start_bridge(http=True, http_max_unsent_bytes=BOUND)
    assert bridge._web is not None and bridge.http_port is not None
    port = bridge.http_port
    stalled = [never_reads(port) for _ in range(5)]
    listener = never_reads(port, "/")
    try:
        listener.sendall(_masked(json.dumps({"COMMAND": "LISTEN", "DATA": "/ldm3d/prompt"}).encode()))
        time.sleep(0.3)
        with caplog.at_level(logging.WARNING, logger="bridge.web.outbox"):
            for n in range(600):
                bridge.notifier.broadcast("/ldm3d/prompt", f"{n:04d} " + "x" * 32000)
                if n % 50 == 0:
                    time.sleep(0.02)
            assert all(gone(s, 10) for s in [*stalled, listener])
        logged = _dropped_logged(caplog)
        assert len([line for line in logged if "operator page" in line]) == 1, logged  # the other 4 counted
        assert len([line for line in logged if "OSCQuery listener" in line]) == 1, logged
    finally:
        for s in [*stalled, listener]:
            s.close()


def _masked(payload: bytes) -> bytes:
    """A client's text frame (clients mask theirs), short payloads only."""
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes((0x81, 0x80 | len(payload))) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_frames_carry_every_size_exactly(size: int) -> None:
    """The frames written straight to the transports, at each length encoding's edges (7, 16 and 64 bits)."""
    text = "é" * (size // 2) + "x" * (size % 2)  # UTF-8: `size` bytes
    data = frame(text)
    header = 2 if size < 126 else 4 if size < 65536 else 10
    assert len(data) == header + size and data[0] == 0x81 and data[header:] == text.encode()
    length = data[1] if size < 126 else int.from_bytes(data[2:header], "big")
    assert length == size and (data[1] == {2: size, 4: 126, 10: 127}[header])
    assert frame(b"\x00\x01")[:2] == b"\x82\x02"  # bytes: a binary frame


def test_pages_hear_big_and_small_events_intact_and_each_job_to_its_last_step(start_bridge: Start) -> None:
    """What two pages hear, through the shared frames: messages at each length encoding's edges arrive
    intact and in order, a page's reply comes to it alone, and a job's progress (coalesced: only the
    newest waits) still reaches its last step before its /ldm3d/ready."""
    bridge = start_bridge(http=True, width=64, height=64)
    sizes = [1, 100, 70, 65530, 70_000]

    # read every message of both pages up to the job's /ldm3d/ready
    async def record() -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{bridge.http_port}/ws"
            async with session.ws_connect(url) as a, session.ws_connect(url) as b:
                pages = {"a": a, "b": b}
                for ws in pages.values():
                    await _until(ws, lambda m: m["type"] == "hello")
                for n, size in enumerate(sizes):
                    bridge.notifier.broadcast("/ldm3d/prompt", str(n) * size)
                await a.send_str(json.dumps({"id": 5, "address": "/ldm3d/generate", "args": ["a reef", "steps", 5]}))
                for name, ws in pages.items():
                    while not out[name] or out[name][-1].get("address") != "/ldm3d/ready":
                        message = await ws.receive(timeout=60)
                        assert message.type == aiohttp.WSMsgType.TEXT, message
                        out[name].append(json.loads(message.data))
        return out

    out = asyncio.run(record())
    for name in ("a", "b"):
        prompts = [m["args"][0] for m in out[name] if m.get("address") == "/ldm3d/prompt"]
        assert prompts == [str(n) * size for n, size in enumerate(sizes)], name
        progress = [m["args"] for m in out[name] if m.get("address") == "/ldm3d/progress"]
        assert progress and progress[-1][1:] == [5, 5]  # the last step is never coalesced away
        steps = [p[1] for p in progress]
        assert steps == sorted(set(steps))  # in order, none twice
    replies = {name: [m for m in out[name] if m["type"] == "reply"] for name in out}
    assert [m["address"] for m in replies["a"]] == ["/ldm3d/accepted"] and replies["a"][0]["re"] == 5
    assert replies["b"] == []  # a page's reply goes to it alone


def test_the_bound_is_a_setting_with_a_floor() -> None:
    from bridge.settings import BridgeSettings, SettingsError

    assert BridgeSettings().http_max_unsent_bytes == 4 * 1024 * 1024
    with pytest.raises(SettingsError, match="http_max_unsent_bytes"):
        BridgeSettings(http_max_unsent_bytes=1000).check()
