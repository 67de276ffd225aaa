"""bench/reliability.py's HTTP side besides the idle flood (issue #30): WebSocket clients that never
read, DNS rebinding and deeply nested JSON, against a served bridge (bench/reliability_served.py).

Every connection is to 127.0.0.1; other hosts are other loopback addresses as source. The names in
Host and Origin are strings sent, never resolved."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import threading
import time

import aiohttp

from bench.reliability_served import Served, lines_with, new_lines
from tests.raw_websocket import gone, never_reads


def slow_readers(served: Served, count: int, changes: int, max_unsent: int) -> None:
    """Section 7: ``count`` pages that never read while a reading page makes ``changes`` state changes."""
    size = 32 * 1024  # a state change each: a prompt this long, sent to every page (a page's message is ≤ 64 kB)
    print(
        f"\n7. Slow readers: {count} pages that never read (4 KiB receive buffer), 1 that reads, {changes} state "
        f"changes of {size // 1024} kB (http_max_unsent_bytes {max_unsent})"
    )
    since = len(served.lines())
    time.sleep(0.3)
    before = served.rss_mb()
    stalled = [never_reads(served.http_port, source="127.0.0.4") for _ in range(count)]
    peak, stop = [before], threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            peak[0] = max(peak[0], served.rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    async def changing() -> tuple[int, float]:
        heard, started = 0, time.monotonic()
        url = f"http://127.0.0.1:{served.http_port}/ws"
        async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
            while json.loads(await ws.receive_str(timeout=30)).get("type") != "hello":
                pass
            for i in range(changes):
                prompt = f"{i:05d} " + "a harbour at dusk " * (size // 18)
                await ws.send_str(json.dumps({"id": i, "address": "/ldm3d/prompt", "args": [prompt]}))
                while True:
                    message = json.loads(await ws.receive_str(timeout=30))
                    if message.get("type") == "event" and message.get("address") == "/ldm3d/prompt":
                        heard += message["args"][0] == prompt
                        break
        return heard, time.monotonic() - started

    try:
        heard, took = asyncio.run(changing())
        dropped = sum(gone(s, 5) for s in stalled)
    finally:
        for s in stalled:
            s.close()
    time.sleep(0.3)
    stop.set()
    sampler.join(5)
    after = served.rss_mb()
    lines = new_lines(served, since)
    print(
        f"   {dropped} of {count} disconnected; the reading page heard {heard} of {changes} changes "
        f"({took:.1f} s)\n   the bridge's memory {before:.0f} MB before, {peak[0]:.0f} MB at the peak, "
        f"{after:.0f} MB after; log lines {len(lines)} ({lines_with(lines, 'does not read')} 'does not read', "
        f"{lines_with(lines, 'Traceback')} tracebacks)"
    )


def _status(port: int, path: str, host: str, origin: str | None, upgrade: bool) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        if origin:
            connection.putheader("Origin", origin)
        if upgrade:
            for key, value in (("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13"),
                               ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode())):  # fmt: skip
                connection.putheader(key, value)
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def rebinding(served: Served) -> None:
    """Section 8: requests naming evil.example in Host and Origin, and the same naming 127.0.0.1."""
    print("\n8. DNS rebinding: Host and Origin both evil.example:PORT (a page whose name now points here)")
    port = served.http_port
    requests = [  # (what, path, a WebSocket upgrade)
        ("OSCQuery namespace", "/ldm3d", False),
        ("OSCQuery HOST_INFO", "/?HOST_INFO", False),
        ("the page's WebSocket", "/ws", True),
        ("OSCQuery's event stream", "/", True),
    ]
    evil, ours = f"evil.example:{port}", f"127.0.0.1:{port}"
    refused = [_status(port, path, evil, f"http://{evil}", up) for _, path, up in requests]
    control = [_status(port, path, ours, f"http://{ours}", up) for _, path, up in requests]
    print(
        f"   {len(requests)} requests ({', '.join(w for w, *_ in requests)}): "
        f"{sum(s == 403 for s in refused)} refused (403), {sum(s < 400 for s in refused)} answered {refused}"
        f"\n   the same naming {ours}: {control}"
    )


def nested_json(served: Served, count: int) -> None:
    """Section 9: ``count`` messages nested 5,000 deep on each WebSocket; the answers and the log."""
    print(f"\n9. Deeply nested JSON: {count} messages of '[' × 5000 on the page's WebSocket and on OSCQuery's")
    since = len(served.lines())
    deep = "[" * 5000

    async def send_all(path: str, is_answer: str) -> tuple[int, bool]:
        url = f"http://127.0.0.1:{served.http_port}{path}"
        answers = 0
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            for _ in range(count):
                await ws.send_str(deep)
            deadline = time.monotonic() + 30
            while answers < count and time.monotonic() < deadline:
                message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                answers += is_answer in message.data
            open_after = not ws.closed
            if path == "/ws" and open_after:  # still answering
                await ws.send_str(json.dumps({"id": 1, "address": "/ldm3d/ping", "args": []}))
                while "/ldm3d/pong" not in (await ws.receive_str(timeout=10)):
                    pass
        return answers, open_after

    started = time.monotonic()
    page, page_open = asyncio.run(send_all("/ws", "bad_arguments"))
    listen, listen_open = asyncio.run(send_all("/", '"ERROR"'))
    took = time.monotonic() - started
    time.sleep(0.3)
    lines = new_lines(served, since)
    print(
        f"   page: {page} answered bad_arguments, socket {'open' if page_open else 'CLOSED'} (a ping answered after); "
        f"OSCQuery: {listen} answered ERROR, socket {'open' if listen_open else 'CLOSED'}; {took:.1f} s"
        f"\n   log lines {len(lines)} ({sum(len(line) + 1 for line in lines)} bytes), "
        f"{lines_with(lines, 'Traceback')} tracebacks, {lines_with(lines, 'RecursionError')} RecursionError"
    )
