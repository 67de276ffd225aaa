"""What the page's intake shares with OSC's, and what the HTTP side says of itself (issue 30, point 11).

* A prompt (or a negative prompt, or any string) holding a lone UTF-16 surrogate, which the page's JSON
  can carry (``"\\ud800"``), is refused at intake as ``bad_arguments`` naming the field; it failed in the
  tokenizer as ``engine_failed`` with a traceback. OSC over UDP cannot carry one: its strings are decoded
  as strict UTF-8, which refuses an encoded surrogate (``malformed_packet``).
* One job-rate budget per client host, whether its jobs come over UDP or from its page.
* The ``Server`` header names the bridge, not Python's and aiohttp's versions: on aiohttp's own
  answers too (a malformed request's 400, made before the application sees it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bridge.serve.server import Bridge

Start = Callable[..., Bridge]


async def _ask(ws: aiohttp.ClientWebSocketResponse, n: int, text: str) -> list[Any]:
    """Send one raw JSON message with id ``n``; the args of its reply (the first one with that id)."""
    await ws.send_str(text)
    while True:
        message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        data = json.loads(message.data)
        if data.get("type") == "reply" and data.get("re") == n:
            return [data["address"], *data["args"]]


def _page(bridge: Bridge, body: Callable[[aiohttp.ClientWebSocketResponse], Any], source: str = "127.0.0.1") -> Any:
    async def run() -> Any:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.ws_connect(f"http://127.0.0.1:{bridge.http_port}/ws") as ws,
        ):
            hello = json.loads((await ws.receive(timeout=30)).data)
            assert hello["type"] == "hello"
            return await body(ws)

    return asyncio.run(run())


def test_a_lone_surrogate_is_refused_at_intake_naming_the_field(
    start_bridge: Start, client_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = start_bridge(http=True, width=64, height=64)
    cases = {  # raw JSON (json.dumps would escape the surrogate the same way), and the field the answer names
        "prompt": ('["a \\ud800 sky"]', "/ldm3d/generate: the prompt", "generate"),
        "negative": ('["a sky", "negative", "x\\udfff"]', "option 'negative'", "generate"),
        "a high one alone at the end": ('["a sky \\ud83d"]', "the prompt", "generate"),
        "the stage's prompt": ('["a \\udc00"]', "/ldm3d/prompt: the value", "prompt"),
        "the stage's negative prompt": ('["a \\udc00"]', "/ldm3d/negative: the value", "negative"),
        "an upscale's prompt": ('["20261122-031502-123-0007", "prompt", "\\ud800"]', "option 'prompt'", "upscale"),
        "a cue number (no parser reads it as text)": ('["\\ud800"]', "argument 1", "cue/standby"),
    }

    async def body(ws: aiohttp.ClientWebSocketResponse) -> dict[str, list[Any]]:
        out = {}
        for n, (name, (args, _, address)) in enumerate(cases.items(), 1):
            out[name] = await _ask(ws, n, f'{{"id": {n}, "address": "/ldm3d/{address}", "args": {args}}}')
        ok = await _ask(ws, 99, json.dumps({"id": 99, "address": "/ldm3d/generate", "args": ["a sky 🌊 é"]}))
        out["a real emoji (a surrogate pair in JSON) is text"] = ok
        return out

    with caplog.at_level(logging.WARNING):
        out = _page(bridge, body)
    for name, (_, field, _) in cases.items():
        address, job, code, message = out[name]
        assert (address, job, code) == ("/ldm3d/error", "", "bad_arguments"), (name, out[name])
        assert field in message and "not text" in message and "surrogate" in message, (name, message)
    assert out["a real emoji (a surrogate pair in JSON) is text"][0] == "/ldm3d/accepted"
    assert bridge.stage.get()["prompt"] == "" and len(bridge.queue) <= 1  # nothing of the refused ones kept
    snapshot = bridge.counters.snapshot()
    assert snapshot["error_bad_arguments"] == len(cases) and "internal_error" not in snapshot
    assert "Traceback" not in caplog.text and "engine_failed" not in caplog.text

    # UDP: an encoded surrogate (ED A0 80) is not UTF-8: the packet is refused before any parser sees it
    osc = client_for(bridge)
    text = "a \ud800 sky!".encode("utf-8", "surrogatepass")  # what a sender that does not check would send
    data = b"/ldm3d/generate\x00,s\x00\x00" + text + b"\x00" * (4 - len(text) % 4)  # well formed but for it
    osc.send_raw(data)
    reply = osc.receive(10)
    assert reply is not None and reply.address == "/ldm3d/error" and reply.args[1] == "malformed_packet", reply
    assert "utf-8" in str(reply.args[2]).lower(), reply  # refused for its encoding, not its sizes


def test_a_host_has_one_job_budget_for_its_osc_and_its_page(start_bridge: Start, client_for: Any) -> None:
    """Issue 30: the page and UDP were separate budgets for one host. A host that spent its burst over UDP
    is refused on its page too; another host's page is not."""
    bridge = start_bridge(http=True, client_jobs_per_s=0.01, client_jobs_burst=2, queue_size=8, width=64, height=64)
    osc = client_for(bridge)
    for n in range(2):
        osc.send("/ldm3d/generate", f"over udp {n}", "steps", 2)
        reply = osc.receive(10)
        assert reply is not None and reply.address == "/ldm3d/accepted", reply

    def generate(ws: aiohttp.ClientWebSocketResponse) -> Any:
        return _ask(ws, 1, json.dumps({"id": 1, "address": "/ldm3d/generate", "args": ["from the page", "steps", 2]}))

    same_host = _page(bridge, generate)
    assert same_host[:3] == ["/ldm3d/error", "", "rate_limited"] and "127.0.0.1" in same_host[3], same_host
    other_host = _page(bridge, generate, source="127.0.0.2")
    assert other_host[0] == "/ldm3d/accepted", other_host
    osc.send("/ldm3d/generate", "over udp again", "steps", 2)  # and the page's job counted for its host
    reply = osc.receive(10)
    assert reply is not None and reply.args[1:2] == ("rate_limited",), reply


def _server_headers(port: int, request: bytes) -> tuple[str, list[str]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return lines[0], [line for line in lines[1:] if line.lower().startswith("server:")]


def test_every_answer_names_the_server_ldm3d_bridge_without_versions(start_bridge: Start) -> None:
    bridge = start_bridge(http=True, token="s3cret")
    port = bridge.http_port
    assert port is not None
    host = f"Host: 127.0.0.1:{port}\r\n"
    upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    requests = {
        "the page": f"GET / HTTP/1.1\r\n{host}Accept: text/html\r\n\r\n",
        "no token": f"GET /ldm3d HTTP/1.1\r\n{host}\r\n",
        "another name": "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
        "no texture": f"GET /t/{'0' * 32}.jpg?token=s3cret HTTP/1.1\r\n{host}\r\n",
        "a method": f"DELETE /ldm3d?token=s3cret HTTP/1.1\r\n{host}Content-Length: 0\r\n\r\n",
        "the page's socket": f"GET /ws?token=s3cret HTTP/1.1\r\n{host}{upgrade}Sec-WebSocket-Version: 13\r\n\r\n",
        "a bad socket version": f"GET /ws?token=s3cret HTTP/1.1\r\n{host}{upgrade}Sec-WebSocket-Version: 99\r\n\r\n",
        "not HTTP": "GARBAGE\r\n\r\n",  # aiohttp's own 400, before the application sees anything
        "a header too long": f"GET / HTTP/1.1\r\n{host}X-Long: {'a' * 20000}\r\n\r\n",
    }
    seen = {name: _server_headers(port, text.encode()) for name, text in requests.items()}
    statuses = {name: status.split(" ")[1] for name, (status, _) in seen.items()}
    assert statuses == {
        "the page": "200", "no token": "401", "another name": "403", "no texture": "404", "a method": "405",
        "the page's socket": "101", "a bad socket version": "400", "not HTTP": "400", "a header too long": "400",
    }  # fmt: skip
    for name, (_, server) in seen.items():
        assert server == ["Server: ldm3d-bridge"], (name, server)
