"""The operator page while a world forms and when a morph arrives (issue 35, the page's side).

Real bridges on loopback with the tiny model (slowed per step where a job must last long enough to be
watched): the ``preview`` messages a page gets over its WebSocket, what a page that does not read gets
of them, the ``/morph/…`` routes, and the page itself in Debian's Chromium (tests/browser.py): a forming
preview on the sphere, then the world; a morph played frame by frame."""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.osc.client import OscClient
from bridge.output.images import read_depth16
from bridge.serve.server import Bridge
from tests import test_web_page
from tests.engines import SlowSteps
from tests.raw_websocket import never_reads
from tests.test_web_page import _canvas, _drawn

#: The browser tests' fixtures (Chromium, a page of a bridge), shared with tests/test_web_page.py.
browser, open_page = test_web_page.browser, test_web_page.open_page
Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
OpenPage = Callable[..., Any]


class RawPage:
    """An operator page's WebSocket on a raw socket (tests/raw_websocket.py): its messages are read on a
    thread while ``reading`` is set; until then what the bridge sends waits in the bridge."""

    def __init__(self, port: int, reading: bool = True) -> None:
        self.sock = never_reads(port)
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, Any]] = []
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = b""
        while not self._stop:
            if not self.reading.wait(0.1):
                continue
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while (parsed := _frame(buffer)) is not None:
                opcode, payload, buffer = parsed
                if opcode == 0x1:
                    self.messages.append({**json.loads(payload), "_at": time.monotonic()})
                elif opcode == 0x9:  # a ping: pong (masked, as clients must)
                    mask = os.urandom(4)
                    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                    self.sock.sendall(bytes((0x8A, 0x80 | len(payload))) + mask + body)

    def of(self, job_id: str, kind: str) -> list[dict[str, Any]]:
        """This page's messages about ``job_id``: ``preview`` messages, or events at address ``kind``."""
        if kind == "preview":
            return [m for m in list(self.messages) if m["type"] == "preview" and m["job"] == job_id]
        return [m for m in list(self.messages) if m.get("address") == kind and m["args"][:1] == [job_id]]

    def wait(self, test: Callable[[], object], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        self._thread.join(5)


def _frame(buffer: bytes) -> tuple[int, bytes, bytes] | None:
    """The first whole server frame of ``buffer`` (unmasked): opcode, payload, the rest; None: not whole yet."""
    if len(buffer) < 2:
        return None
    size, head = buffer[1] & 0x7F, 2
    if size == 126:
        size, head = int.from_bytes(buffer[2:4], "big"), 4
    elif size == 127:
        size, head = int.from_bytes(buffer[2:10], "big"), 10
    if len(buffer) < head + size:
        return None
    return buffer[0] & 0x0F, buffer[head : head + size], buffer[head + size :]


def _job(client: OscClient, *message: Any) -> str:
    client.send(*message)
    answer = client.wait_for(["/ldm3d/accepted", "/ldm3d/error"], 10)[-1]
    assert answer.address == "/ldm3d/accepted", answer
    return str(answer.args[0])


def _slow(start_bridge: Start, load_tiny: Callable[[str], Any], step_s: float, **settings: Any) -> Bridge:
    """A bridge with its page whose tiny model takes ``step_s`` more a step (the session's engine: no load)."""
    engine = lambda: SlowSteps(load_tiny("tiny"), step_s)  # noqa: E731
    return start_bridge(engine_factory=engine, progress_hz=1000.0, http=True, **settings)


def _page_socket(bridge: Bridge, number: int) -> Any:
    assert bridge._web is not None and bridge._web._page is not None
    return bridge._web._page._pages[number]


# -- (a) the preview messages -----------------------------------------------------------------------


def test_a_page_gets_each_preview_in_order_as_pictures_and_none_after_the_end(
    start_bridge: Start, load_tiny: Callable[[str], Any], client_for: ClientFor
) -> None:
    bridge = _slow(start_bridge, load_tiny, 0.1)
    assert bridge.http_port is not None
    page = RawPage(bridge.http_port)
    client = client_for(bridge)
    try:
        page.wait(lambda: page.messages)  # its hello
        job = _job(client, "/ldm3d/generate", "a glacier", "steps", 12, "preview_every", 3, "seed", 5)
        page.wait(lambda: page.of(job, "/ldm3d/ready"))
        time.sleep(0.5)  # anything late would have come by now
        order = [m for m in page.messages if m.get("job") == job or m.get("args", [None])[:1] == [job]]
        previews = [m for m in order if m["type"] == "preview"]
        steps = [m["step"] for m in previews]
        assert len(steps) >= 2 and steps == sorted(set(steps)) and set(steps) <= {3, 6, 9}, steps
        assert order.index(previews[-1]) < order.index(page.of(job, "/ldm3d/ready")[0])
        assert not [m for m in order[order.index(page.of(job, "/ldm3d/ready")[0]) :] if m["type"] == "preview"]
        slot = Path(bridge.settings.output).resolve() / "previews" / "0"
        for m in previews:
            assert m["total"] == 12 and (m["width"], m["height"]) == (8, 8)  # the 64×64 world's latent size
            assert m["rgb"].startswith("data:image/png;base64,")
            rgb = Image.open(io.BytesIO(base64.b64decode(m["rgb"].split(",", 1)[1])))
            assert rgb.format == "PNG" and rgb.mode == "RGB" and rgb.size == (8, 8)
            assert len(base64.b64decode(m["depth"])) == 8 * 8 * 2
        last = previews[-1]  # the slot holds the last preview written: the page got the same, value for value
        depth = np.frombuffer(base64.b64decode(last["depth"]), "<u2").reshape(8, 8)
        np.testing.assert_array_equal(depth, read_depth16(slot / "depth.png"))
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(base64.b64decode(last["rgb"].split(",", 1)[1])))),
            np.asarray(Image.open(slot / "rgb.png")),
        )
        # a cancelled job: its previews stop at its end too
        job = _job(client, "/ldm3d/generate", "a storm", "steps", 40, "preview_every", 1)
        page.wait(lambda: page.of(job, "preview"))
        client.send("/ldm3d/cancel", job)
        page.wait(lambda: page.of(job, "/ldm3d/cancelled"))
        time.sleep(0.5)
        end = page.of(job, "/ldm3d/cancelled")[0]["_at"]
        assert not [m for m in page.of(job, "preview") if m["_at"] > end]
    finally:
        page.close()


# -- (c) a page that does not read -------------------------------------------------------------------


def test_a_page_that_does_not_read_gets_the_newest_preview_late_not_a_queue(
    start_bridge: Start, load_tiny: Callable[[str], Any], client_for: ClientFor
) -> None:
    """A page that has not taken what it was sent is written no preview; the newest of each job is held
    for it (one, replaced by each newer) and written once it catches up. A reading page beside it gets
    every preview. (The stalled page must catch up within aiohttp's heartbeat, 10 s, or it is closed:
    the jobs are short.)"""
    bridge = _slow(start_bridge, load_tiny, 0.05)
    assert bridge.http_port is not None and bridge._web is not None and bridge._web._page is not None
    hub = bridge._web._page
    stalled = RawPage(bridge.http_port, reading=False)
    deadline = time.monotonic() + 10
    while len(hub._pages) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    (number,) = hub._pages
    reader = RawPage(bridge.http_port)
    client = client_for(bridge)
    try:
        ws = _page_socket(bridge, number)
        # the bridge's end of its connection keeps a small kernel buffer (no autotuning to megabytes): what
        # the page does not take soon waits in the bridge, and the page catches up fast once it reads
        connection = hub._outbox._clients[ws].transport.get_extra_info("socket")
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
        for n in range(400):
            if hub._outbox.unsent(ws) > 0:
                break
            bridge.notifier.broadcast("/ldm3d/prompt", f"{n:04d} " + "x" * 8000)
            time.sleep(0.01)
        assert 0 < hub._outbox.unsent(ws) < bridge.settings.http_max_unsent_bytes
        first = _job(client, "/ldm3d/generate", "dunes", "steps", 8, "preview_every", 1)
        held: list[int] = []
        while not reader.of(first, "/ldm3d/ready"):
            held.append(len(_held(hub, number)))
            time.sleep(0.01)
        assert len(reader.of(first, "preview")) >= 3
        assert max(held) == 1 and hub._newest.held(number) == []  # one at most; none after the job's end
        second = _job(client, "/ldm3d/generate", "dunes", "steps", 24, "preview_every", 1)
        reader.wait(lambda: [m for m in reader.of(second, "preview") if m["step"] >= 4])
        newest = max(m["step"] for m in reader.of(second, "preview"))
        (kept,) = _held(hub, number)  # the one preview held for it: the newest, not the first
        assert json.loads(_frame(kept.frame)[1])["step"] >= newest  # type: ignore[index]
        stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        stalled.reading.set()  # it catches up now
        reader.wait(lambda: reader.of(second, "/ldm3d/ready"))
        stalled.wait(lambda: stalled.of(second, "/ldm3d/ready"))
        assert stalled.of(first, "preview") == []  # behind for the whole job: none of its previews queued
        steps = [m["step"] for m in stalled.of(second, "preview")]
        assert steps and steps[0] >= newest, (steps, newest)  # its first: the newest, not the oldest waiting
        assert steps == sorted(set(steps)) and len(steps) < len(reader.of(second, "preview"))
        ready = stalled.of(second, "/ldm3d/ready")[0]
        assert stalled.messages.index(stalled.of(second, "preview")[-1]) < stalled.messages.index(ready)
    finally:
        stalled.close()
        reader.close()


def _held(hub: Any, number: int) -> list[Any]:
    """The previews the hub holds for page ``number`` (read from this thread: retried if the loop's
    thread changed them meanwhile)."""
    for _ in range(10):
        try:
            return list(hub._newest.held(number))
        except RuntimeError:  # changed during the read
            time.sleep(0.01)
    raise AssertionError("the held previews kept changing")


# -- (d) the morph routes ------------------------------------------------------------------------------


def _get(bridge: Bridge, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bridge.http_port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _morph(client: OscClient, frames: int = 3, seconds: float = 2.0) -> tuple[str, str, str]:
    """Two worlds and a morph between them (its ready waited for): their ids."""
    client.subscribe_self()
    ids = []
    for prompt, seed in (("a desert", 1), ("a forest", 2)):
        client.send("/ldm3d/generate", prompt, "seed", seed, "steps", 4)
        ids.append(str(client.wait_for(["/ldm3d/ready"], 60)[-1].args[0]))
    client.send("/ldm3d/morph", ids[0], ids[1], "frames", frames, "seconds", seconds)
    morph = str(client.wait_for(["/ldm3d/ready"], 120)[-1].args[0])
    return ids[0], ids[1], morph


def test_the_morph_routes_serve_its_frames_and_refuse_what_is_not_one(
    start_bridge: Start, client_for: ClientFor
) -> None:
    bridge = start_bridge(http=True)
    first, second, morph = _morph(client_for(bridge))
    status, body = _get(bridge, f"/morph/{morph}")
    manifest = json.loads(body)
    assert status == 200 and manifest["complete"] and manifest["frames"] == 3 and manifest["from"] == first
    assert manifest["frame_seconds"] == pytest.approx(1.0) and [f["index"] for f in manifest["written"]] == [0, 1, 2]
    status, body = _get(bridge, f"/morph/{morph}/1")
    frame = json.loads(body)
    assert status == 200 and frame == manifest["written"][1] and (frame["width"], frame["height"]) == (64, 64)
    folder = Path(bridge.settings.output).resolve() / "morphs" / morph / "0001"
    status, depth = _get(bridge, frame["depth"])  # the same textures as a world's: exact 16-bit depth …
    assert status == 200 and depth == read_depth16(next(folder.glob("depth.*"))).astype("<u2").tobytes()
    status, rgb = _get(bridge, frame["rgb"])  # … and a JPEG of the RGB
    assert status == 200 and Image.open(io.BytesIO(rgb)).size == (64, 64)
    refused = {
        f"/morph/{morph}/3": 404,  # not written (3 frames: 0, 1, 2)
        f"/morph/{morph}/-1": 400,
        f"/morph/{morph}/1.0": 400,
        f"/morph/{morph}/00001": 400,
        f"/morph/{morph}/x": 400,
        "/morph/20990101-000000-000-zzzz": 404,  # a job id, no such morph
        f"/morph/{first}": 404,  # a world, not a morph
        "/morph/not-a-job": 400,
        "/morph/..": 400,
        f"/morph/{morph}%2F..%2F..%2F{first}/0": 400,
        f"/morph/{morph}/..%2F..%2F{first}": 400,
    }
    for path, code in refused.items():
        status, body = _get(bridge, path)
        assert status in (code, 404) and b"width" not in body, (path, status, body)
        if status != 404:
            assert status == code, path
    assert _get(bridge, f"/morph/{morph}/-1")[1].decode().strip().startswith("frame '-1' is not a frame number")
    # a frame folder that leads out of the morphs folder (a link) is not served
    trick = "20990101-000000-000-0aaa"
    fake = Path(bridge.settings.output).resolve() / "morphs" / trick
    fake.mkdir()
    (fake / "0000").symlink_to(Path(bridge.settings.output).resolve() / second)
    (fake / "morph.json").write_text(json.dumps({"morph_id": trick, "frames": 2, "written": [{"index": 0, "t": 0}]}))
    assert _get(bridge, f"/morph/{trick}/0")[0] == 404
    assert json.loads(_get(bridge, f"/morph/{trick}")[1])["written"] == []
    # the morph's world says it can be played, in the page's history
    hub = bridge._web._page if bridge._web else None
    assert hub is not None
    played, plain = hub._world_now(morph), hub._world_now(second)
    assert played is not None and plain is not None
    assert played["morph"] == f"/morph/{morph}" and "morph" not in plain


def test_the_morph_routes_need_the_token(start_bridge: Start) -> None:
    bridge = start_bridge(http=True, token="s3cret")
    assert _get(bridge, "/morph/20990101-000000-000-zzzz")[0] == 401


# -- (b) and (e) the page in Chromium ---------------------------------------------------------------------


def test_the_viewer_shows_the_world_forming_then_the_world(
    start_bridge: Start, load_tiny: Callable[[str], Any], client_for: ClientFor, open_page: OpenPage
) -> None:
    bridge = _slow(start_bridge, load_tiny, 0.1)
    page = open_page(bridge)
    page.wait_for_timeout(300)
    empty = _canvas(page)
    client = client_for(bridge)
    job = _job(client, "/ldm3d/generate", "a glacier", "steps", 24, "preview_every", 2)
    page.wait_for_function("id => document.querySelector('#view').dataset.forming === id", arg=job, timeout=20000)
    assert page.locator("#forming").is_visible() and "forming · step" in page.locator("#forming").inner_text()
    page.wait_for_timeout(600)  # its fade in
    forming = _canvas(page)
    assert np.abs(forming - empty).mean() > 2, "the forming world is not on the canvas"
    page.wait_for_function(
        "id => new Set(window.ldm3d.formed.filter(f => f.job === id).map(f => f.step)).size >= 3", arg=job
    )
    _drawn(page, job)
    page.wait_for_function("!document.querySelector('#view').dataset.forming")
    assert not page.locator("#forming").is_visible()
    page.wait_for_timeout(1300)  # the crossfade to the world
    world = _canvas(page)
    assert np.abs(world - forming).mean() > 2, "the world did not replace the forming picture"
    steps = [f["step"] for f in page.evaluate("id => window.ldm3d.formed.filter(f => f.job === id)", job)]
    assert steps == sorted(steps) and all(s % 2 == 0 and 0 < s < 24 for s in steps)
    # the Forming button turns them off on this page
    page.click("#forming-toggle")
    assert page.get_attribute("#forming-toggle", "aria-pressed") == "false"
    job = _job(client, "/ldm3d/generate", "a glacier", "steps", 8, "preview_every", 2)
    _drawn(page, job)
    assert page.evaluate("id => window.ldm3d.formed.filter(f => f.job === id).length", job) == 0


def test_the_page_plays_a_morph_frame_by_frame_when_it_arrives_and_again_from_history(
    start_bridge: Start, client_for: ClientFor, open_page: OpenPage
) -> None:
    bridge = start_bridge(http=True)
    page = open_page(bridge)
    client = client_for(bridge)
    _, _, morph = _morph(client, frames=4, seconds=1.5)
    played = "id => window.ldm3d.morphShown.filter(f => f.morph_id === id && f.playing)"
    page.wait_for_function(f"id => ({played})(id).length >= 4", arg=morph, timeout=20000)
    shown = page.evaluate(played, morph)
    assert [f["index"] for f in shown] == [0, 1, 2, 3]
    gaps = [(b["at"] - a["at"]) / 1000 for a, b in itertools.pairwise(shown)]
    assert all(g > 0.35 for g in gaps), gaps  # frame_seconds (0.5) apart: not all at once
    _drawn(page, morph)  # it ends on the world it arrives at
    page.wait_for_function("window.ldm3d.playing === null")
    assert page.evaluate("window.ldm3d.viewer.world.job_id") == morph
    card = page.locator(f"#history .card[data-job='{morph}'] button.play")
    card.click()
    page.wait_for_function(f"id => ({played})(id).length >= 8", arg=morph, timeout=20000)
    assert [f["index"] for f in page.evaluate(played, morph)][4:] == [0, 1, 2, 3]
    assert not page.locator("#live").is_hidden()  # played here only: the page says it is not the dome
    page.click("#live")  # back to live, and the morph recalled onto the dome: the world, no playing again
    page.wait_for_function("window.ldm3d.playing === null")
    drawn = page.evaluate("window.ldm3d.drawn.length")
    client.send("/ldm3d/recall", morph)
    page.wait_for_function("n => window.ldm3d.drawn.length > n", arg=drawn)
    page.wait_for_timeout(500)
    assert len(page.evaluate(played, morph)) == 8 and page.evaluate("window.ldm3d.playing") is None
