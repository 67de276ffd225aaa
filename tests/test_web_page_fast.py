"""The operator page's hub, without a bridge (issue 33: in the mutation selection).

:class:`bridge.web.page.PageHub` with a small :class:`~bridge.web.page.PageBackend` handed in. Two ways in:

* pages the hub writes to through fake connections (a transport that keeps what it is written and says
  how much it has not sent yet): what each page is written, and when (coalescing, previews held for a
  page that is behind, replies for one page);
* the hub's routes served by aiohttp's test server on the loopback, with a real WebSocket client: the
  hello, the commands and their replies, the textures.

The pure parts (``_arg``, ``_steady``, :class:`~bridge.web.page.StaticFiles`, ``page_files``) directly."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import logging
import struct
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import pytest
from aiohttp import ClientWebSocketResponse, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from PIL import Image

from bridge.osc.codec import Message
from bridge.web.morphs import MorphFolders
from bridge.web.objects import ObjectFolders
from bridge.web.page import COALESCE_S, HISTORY, PageHub, StaticFiles, World, _arg, _steady, page_files
from bridge.web.textures import TextureStore

J1, J2, J3 = "20261207-101500-000-0001", "20261207-101501-000-0002", "20261207-101502-000-0003"
Address = tuple[str, int]


# -- a backend, and worlds on disk ------------------------------------------------------------------------


class Backend:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.worlds: dict[str, World] = {}
        self.ids: list[str] = []
        self.screen: str | None = None
        self.state: dict[str, Any] = {"queue": [], "running": None}
        self.status_fails = False
        self.commands: list[tuple[Address, Message]] = []
        self.limits: list[int] = []
        self.on_command: Callable[[Address, Message], None] | None = None
        #: The threads the backend's reads ran on (the hub's own pool, never the loop's).
        self.threads: set[str] = set()

    def add_world(self, job_id: str, **info: Any) -> World:
        folder = self.root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rgb.png").write_bytes(b"rgb of " + job_id.encode())
        (folder / "depth.png").write_bytes(b"depth of " + job_id.encode())
        world = World(job_id, folder / "rgb.png", folder / "depth.png", {"prompt": f"prompt {job_id}", **info})
        self.worlds[job_id] = world
        return world

    def hello(self) -> dict[str, Any]:
        return {"bridge": "test", "version": "1"}

    def status(self) -> dict[str, Any]:
        if self.status_fails:
            raise RuntimeError("status broke")
        return dict(self.state)

    def world(self, job_id: str) -> World | None:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        if job_id == "broken":
            raise RuntimeError("meta.json broke")
        return self.worlds.get(job_id)

    def history(self, limit: int) -> list[str]:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        self.limits.append(limit)
        return list(self.ids)

    def on_screen(self) -> str | None:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        return self.screen

    def command(self, page: Address, message: Message) -> None:
        self.commands.append((page, message))
        if self.on_command is not None:
            self.on_command(page, message)


def _offered(hub: PageHub, world: World, **extra: str) -> dict[str, Any]:
    """What a page is told of ``world`` (its URLs as the hub's store gives them)."""
    urls = {
        kind: hub._textures.url(path, kind)
        for kind, path in (("rgb", world.rgb), ("thumb", world.rgb), ("depth", world.depth))
    }
    return {"job_id": world.job_id, **world.info, **urls, **extra}


# -- fake pages: what the hub writes to each -----------------------------------------------------------------


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.unsent = 0
        self.data = b""
        self.writes = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += bytes(data)
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass


class _Socket:
    closed = False

    async def close(self) -> None:
        self.closed = True


def _messages(data: bytes) -> list[dict[str, Any]]:
    """The JSON text frames in ``data`` (unmasked, as a server writes them)."""
    found = []
    while data:
        size, start = data[1] & 0x7F, 2
        if size == 126:
            size, start = struct.unpack("!H", data[2:4])[0], 4
        elif size == 127:
            size, start = struct.unpack("!Q", data[2:10])[0], 10
        assert data[0] == 0x81
        found.append(json.loads(data[start : start + size]))
        data = data[start + size :]
    return found


class Pages:
    """A hub started on the running loop, and fake pages added to it."""

    def __init__(self, hub: PageHub) -> None:
        self.hub = hub
        self.transports: dict[int, _Transport] = {}

    def add(self, number: int) -> _Transport:
        ws, transport = _Socket(), _Transport()
        self.hub._pages[number] = cast(web.WebSocketResponse, ws)
        self.hub._outbox.add(cast(web.WebSocketResponse, ws), transport, f"page {number}")
        self.transports[number] = transport
        return transport

    def told(self, number: int, status: bool = False) -> list[dict[str, Any]]:
        """What page ``number`` was written (the status, which the hub sends by itself, only if ``status``)."""
        return [m for m in _messages(self.transports[number].data) if status or m["type"] != "status"]

    def addresses(self, number: int) -> list[str]:
        return [m.get("address", m["type"]) for m in self.told(number)]


@asynccontextmanager
async def _hub(backend: Backend, output: Path | None = None) -> AsyncIterator[Pages]:
    hub = PageHub(backend, output)
    app = web.Application()
    hub.attach(app)
    await hub._started(app)
    try:
        yield Pages(hub)
    finally:
        await hub.close_pages()
        hub.close()


def _run(scenario: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


RGB, DEPTH = _png(np.zeros((2, 2, 3), np.uint8)), _png(np.full((2, 2), 7, np.uint16))


# -- events ------------------------------------------------------------------------------------------------


def test_an_event_goes_to_every_page_at_the_next_turn_of_the_loop(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        async with _hub(Backend(tmp_path)) as pages:
            pages.add(1), pages.add(2)
            pages.hub.event("/ldm3d/queued", (J1, 2), 12.5)
            pages.hub.event("/ldm3d/started", (J1,), 13.0)
            await _turns()
            return pages.told(1), pages.told(2), pages.transports[1].writes

    one, two, writes = _run(scenario)
    assert (
        one
        == two
        == [
            {"type": "event", "address": "/ldm3d/queued", "args": [J1, 2], "t": 12.5},
            {"type": "event", "address": "/ldm3d/started", "args": [J1], "t": 13.0},
        ]
    )
    assert writes == 1  # what is pending goes out together


def test_without_pages_nothing_is_framed(tmp_path: Path) -> None:
    async def scenario() -> int:
        async with _hub(Backend(tmp_path)) as pages:
            pages.hub.event("/ldm3d/queued", (J1, 2), 1.0)
            return len(pages.hub._pending)

    assert _run(scenario) == 0


def test_progress_is_coalesced_per_job_and_state_per_address_within_the_window(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with _hub(Backend(tmp_path)) as pages:
            pages.add(1)
            hub = pages.hub
            hub.event("/ldm3d/progress", (J1, 1, 10), 1.0)
            hub.event("/ldm3d/progress", (J2, 2, 10), 1.0)
            hub.event("/ldm3d/state", ("busy",), 1.0)
            hub.event("/ldm3d/progress", (J1, 2, 10), 1.1)
            hub.event("/ldm3d/state", ("idle",), 1.1)
            hub.event("/ldm3d/progress", (), 1.2)
            hub.event("/ldm3d/progress", (), 1.3)
            await _turns()
            early = pages.told(1)
            await asyncio.sleep(COALESCE_S + 0.05)
            return early, pages.told(1)

    early, later = _run(scenario)
    assert early == []  # progress waits up to COALESCE_S
    assert [(m["address"], m["args"], m["t"]) for m in later] == [
        ("/ldm3d/progress", [J2, 2, 10], 1.0),
        ("/ldm3d/progress", [J1, 2, 10], 1.1),
        ("/ldm3d/state", ["idle"], 1.1),
        ("/ldm3d/progress", [], 1.3),
    ]


def test_an_event_that_is_not_coalesced_takes_waiting_progress_with_it_at_once(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with _hub(Backend(tmp_path)) as pages:
            pages.add(1)
            pages.hub.event("/ldm3d/progress", (J1, 1, 10), 1.0)
            pages.hub.event("/ldm3d/queued", (J2, 1), 1.0)
            pages.hub.event("/ldm3d/busy", (1,), 1.0)  # joins the flush already due
            await _turns()
            return pages.addresses(1)

    assert _run(scenario) == ["/ldm3d/progress", "/ldm3d/queued", "/ldm3d/busy"]


def test_events_of_a_kind_the_hub_adds_to_go_as_they_are_without_their_folders(tmp_path: Path) -> None:
    """Without an output folder (no morphs, no objects), and with too few arguments, the events pass plain."""

    async def scenario() -> list[dict[str, Any]]:
        async with _hub(Backend(tmp_path)) as pages:
            pages.add(1)
            for address, args in (
                ("/ldm3d/ready", ()),
                ("/ldm3d/morph/frame", (J1, 0)),
                ("/ldm3d/object/ready", (J1,)),
                ("/ldm3d/object/clear", ()),
                ("/ldm3d/error", ()),
                ("/ldm3d/cancelled", (7,)),
            ):
                pages.hub.event(address, args, 2.0)
            await _turns()
            return pages.told(1)

    assert [sorted(m) for m in _run(scenario)] == [["address", "args", "t", "type"]] * 6


def test_a_ready_world_is_announced_with_its_textures_and_is_the_screen_for_new_pages(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    world = backend.add_world(J1, seed=5)
    backend.add_world(J2)
    backend.screen = J2  # latest.json's, before the ready

    async def scenario() -> tuple[PageHub, list[dict[str, Any]], str]:
        async with _hub(backend) as pages:
            pages.add(1)
            pages.hub.event("/ldm3d/ready", (J1, "a.png", "b.png"), 3.0)
            pages.hub.event("/ldm3d/ready", (J3,), 3.5)  # gone already: no world
            await asyncio.sleep(0.1)
            return pages.hub, pages.told(1), await pages.hub._hello(2)

    hub, told, hello = _run(scenario)
    assert told == [
        {
            "type": "event",
            "address": "/ldm3d/ready",
            "args": [J1, "a.png", "b.png"],
            "t": 3.0,
            "world": _offered(hub, world),
        },
        {"type": "event", "address": "/ldm3d/ready", "args": [J3], "t": 3.5, "world": None},
    ]
    assert json.loads(hello)["world"] is None  # J3 is on the screen now, and gone


def test_the_world_on_screen_is_the_last_announced_not_latest_json(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    world = backend.add_world(J1)
    backend.add_world(J2)
    backend.screen = J2

    async def scenario() -> tuple[PageHub, dict[str, Any], dict[str, Any]]:
        async with _hub(backend) as pages:
            before = json.loads(await pages.hub._hello(1))
            pages.hub.event("/ldm3d/ready", (J1,), 3.0)
            await asyncio.sleep(0.05)
            return pages.hub, before, json.loads(await pages.hub._hello(2))

    hub, before, after = _run(scenario)
    assert (before["world"]["job_id"], after["world"]) == (J2, _offered(hub, world))


def test_a_world_the_backend_cannot_read_or_whose_files_are_gone_is_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = Backend(tmp_path)
    gone = backend.add_world(J2)
    gone.rgb.unlink()
    hub = PageHub(backend)
    with caplog.at_level(logging.WARNING, logger="bridge.web.page"):
        found = [hub._world_now("broken"), hub._world_now(J2), hub._world_now(J3)]
    hub.close()
    assert found == [None, None, None]
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == [
        "cannot offer job broken to the page",
        f"cannot offer job {J2} to the page",
    ]
    assert "No such file or directory" in caplog.records[1].getMessage()
    assert [r.levelname for r in caplog.records] == ["ERROR", "WARNING"]


def test_a_morphs_world_offers_the_way_it_came(tmp_path: Path) -> None:
    backend = Backend(tmp_path / "worlds")
    world = backend.add_world(J1)
    backend.add_world(J2)
    (tmp_path / "out" / "morphs" / J1).mkdir(parents=True)
    (tmp_path / "out" / "morphs" / J1 / "morph.json").write_text('{"written": []}')
    hub = PageHub(backend, tmp_path / "out")
    found = [hub._world_now(J1), hub._world_now(J2)]
    hub.close()
    assert found[0] == _offered(hub, world, morph=f"/morph/{J1}") and "morph" not in (found[1] or {})


def _morph(output: Path, morph_id: str) -> None:
    folder = output / "morphs" / morph_id / "0000"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"width": 4, "height": 2, "seed": 1}))
    (folder / "rgb.png").write_bytes(b"rgb")
    (folder / "depth.png").write_bytes(b"depth")
    (output / "morphs" / morph_id / "morph.json").write_text(json.dumps({"written": [{"index": 0, "t": 0.0}]}))


def test_a_morph_frame_is_announced_with_its_textures_or_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _morph(tmp_path / "out", J1)

    async def scenario() -> tuple[PageHub, list[dict[str, Any]]]:
        async with _hub(Backend(tmp_path), tmp_path / "out") as pages:
            pages.add(1)
            for args in ((J1, 0, 0.0), (J1, "0"), (J1, 1.0, 0.5), (J1, 3, 0.5), (J1,)):
                pages.hub.event("/ldm3d/morph/frame", args, 4.0)
            await asyncio.sleep(0.1)
            return pages.hub, pages.told(1)

    with caplog.at_level(logging.DEBUG, logger="bridge.web.page"):
        hub, told = _run(scenario)
    frame = hub._morphs.offer_frame(J1, 0) if hub._morphs else None
    assert frame is not None
    assert told == [
        {"type": "event", "address": "/ldm3d/morph/frame", "args": [J1], "t": 4.0},  # (not one the bridge sends)
        {"type": "event", "address": "/ldm3d/morph/frame", "args": [J1, 0, 0.0], "t": 4.0, "frame": frame},
        {"type": "event", "address": "/ldm3d/morph/frame", "args": [J1, "0"], "t": 4.0, "frame": frame},
        {"type": "event", "address": "/ldm3d/morph/frame", "args": [J1, 1.0, 0.5], "t": 4.0, "frame": None},
        {"type": "event", "address": "/ldm3d/morph/frame", "args": [J1, 3, 0.5], "t": 4.0, "frame": None},
    ]
    assert [m for m in caplog.messages if m.startswith("morph frame")] == [
        f"morph frame {J1}/1.0 not offered to the pages: frame '1.0' is not a frame number (0, 1, 2 …)",
        f"morph frame {J1}/3 not offered to the pages: morph {J1} has no frame 3 (written: 0)",
    ]


def _object(output: Path, job_id: str) -> None:
    folder = output / "objects" / job_id
    folder.mkdir(parents=True)
    (folder / "mesh.glb").write_bytes(b"glTF " + job_id.encode())
    (folder / "meta.json").write_text(json.dumps({"prompt": job_id}))


def test_an_object_is_announced_placed_and_a_later_page_is_told_of_it_until_a_clear(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _object(out, J1)
    _object(out, J2)  # the newest on disk

    async def scenario() -> tuple[PageHub, list[Any], list[dict[str, Any]]]:
        async with _hub(Backend(tmp_path), out) as pages:
            hub = pages.hub
            hellos = [json.loads(await hub._hello(1))["object"]]
            pages.add(1)
            hub.event("/ldm3d/object/ready", (J1, "a.obj", "a.glb", 10.0, 5.0, 0.6, 0.3, 45.0), 5.0)
            await asyncio.sleep(0.05)
            hellos.append(json.loads(await hub._hello(2))["object"])
            hub.event("/ldm3d/object/clear", (), 6.0)
            await asyncio.sleep(0.05)
            hellos.append(json.loads(await hub._hello(3))["object"])
            hub.event("/ldm3d/object/ready", (), 7.0)  # (not one the bridge sends)
            await asyncio.sleep(0.05)
            return hub, hellos, pages.told(1)

    hub, hellos, told = _run(scenario)
    assert hub._objects is not None
    placed = hub._objects.offer_ready((J1, "a.obj", "a.glb", 10.0, 5.0, 0.6, 0.3, 45.0))
    assert placed is not None and placed["placement"]["yaw"] == 10.0
    assert hellos == [hub._objects.offer(J2), placed, None]
    assert told == [
        {
            "type": "event",
            "address": "/ldm3d/object/ready",
            "args": [J1, "a.obj", "a.glb", 10.0, 5.0, 0.6, 0.3, 45.0],
            "t": 5.0,
            "object": placed,
        },
        {"type": "event", "address": "/ldm3d/object/clear", "args": [], "t": 6.0},
        {"type": "event", "address": "/ldm3d/object/ready", "args": [], "t": 7.0},
    ]


# -- previews ------------------------------------------------------------------------------------------


def _preview_from_a_thread(hub: PageHub, job_id: str, step: int, rgb: bytes = RGB, depth: bytes = DEPTH) -> None:
    thread = threading.Thread(target=hub.preview, args=(job_id, step, 10, rgb, depth))
    thread.start()
    thread.join()


def test_previews_reach_every_page_the_newest_per_job_and_none_after_the_jobs_end(tmp_path: Path) -> None:
    async def scenario() -> list[tuple[str, int, int]]:
        async with _hub(Backend(tmp_path)) as pages:
            pages.add(1)
            hub = pages.hub
            _preview_from_a_thread(hub, J1, 1)
            _preview_from_a_thread(hub, J1, 2)
            _preview_from_a_thread(hub, J2, 1)
            await asyncio.sleep(COALESCE_S + 0.05)
            for end, job in (("/ldm3d/ready", J1), ("/ldm3d/cancelled", J2), ("/ldm3d/error", J3)):
                hub.event(end, (job,), 1.0)
                _preview_from_a_thread(hub, job, 3)
            await asyncio.sleep(COALESCE_S + 0.05)
            return [(m["job"], m["step"], m["total"]) for m in pages.told(1) if m["type"] == "preview"]

    assert _run(scenario) == [(J1, 2, 10), (J2, 1, 10)]


def test_a_preview_that_does_not_decode_goes_nowhere_and_without_pages_is_not_decoded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with _hub(Backend(tmp_path)) as pages:
            _preview_from_a_thread(pages.hub, J1, 1, depth=b"no png")  # no page: not even looked at
            pages.add(1)
            _preview_from_a_thread(pages.hub, J1, 2, depth=b"no png")
            _preview_from_a_thread(pages.hub, J1, 3, depth=_png(np.zeros((2, 2, 3), np.uint8)))
            await asyncio.sleep(COALESCE_S + 0.05)
            return pages.told(1)

    with caplog.at_level(logging.DEBUG, logger="bridge.web.page"):
        told = _run(scenario)
    previews = [m for m in caplog.messages if m.startswith("a preview")]
    assert told == [] and len(previews) == 2
    assert previews[0].startswith(f"a preview of job {J1} cannot go to the pages: cannot identify image file")


def test_a_preview_before_the_server_started_is_dropped(tmp_path: Path) -> None:
    hub = PageHub(Backend(tmp_path))
    hub._pages[1] = cast(web.WebSocketResponse, _Socket())
    hub.preview(J1, 1, 10, RGB, DEPTH)
    hub.reply(("page:x", 1), "/ldm3d/ok", ())
    hub.close()
    assert hub._pending == []


def test_a_page_that_is_behind_gets_only_the_newest_preview_once_it_caught_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.web.page.STATUS_EVERY_S", 60.0)  # no status: its flush would release it too

    async def scenario() -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        async with _hub(Backend(tmp_path)) as pages:
            _, slow = pages.add(1), pages.add(2)
            slow.unsent = 1
            hub = pages.hub
            for step in (1, 2):
                _preview_from_a_thread(hub, J1, step)
                hub.event("/ldm3d/queued", (J2, step), 1.0)  # written at once, with the preview
                await _turns()
            behind = [(m["type"], m.get("step")) for m in pages.told(2)]
            await asyncio.sleep(COALESCE_S * 2.5)  # the release tried, and tries again
            still = [(m["type"], m.get("step")) for m in pages.told(2)]
            slow.unsent = 0
            await asyncio.sleep(COALESCE_S * 2.5)
            caught = [(m["type"], m.get("step")) for m in pages.told(2)]
            return [(m["type"], m.get("step")) for m in pages.told(1)], behind, still, caught

    fast, behind, still, caught = _run(scenario)
    assert fast == [("event", None), ("preview", 1), ("event", None), ("preview", 2)]
    assert behind == still == [("event", None), ("event", None)]
    assert caught == [("event", None), ("event", None), ("preview", 2)]


def test_a_newer_preview_written_to_a_page_that_caught_up_replaces_the_one_held(tmp_path: Path) -> None:
    async def scenario() -> list[Any]:
        async with _hub(Backend(tmp_path)) as pages:
            slow = pages.add(1)
            slow.unsent = 100
            hub = pages.hub
            _preview_from_a_thread(hub, J1, 1)
            hub.event("/ldm3d/queued", (J2, 1), 1.0)
            await _turns()
            slow.unsent = 0
            _preview_from_a_thread(hub, J1, 2)
            hub.event("/ldm3d/queued", (J2, 2), 1.0)
            await asyncio.sleep(COALESCE_S * 2.5)
            return [(m["type"], m.get("step")) for m in pages.told(1)]

    assert _run(scenario) == [("event", None), ("event", None), ("preview", 2)]  # never the older one


def test_a_page_with_a_reply_waiting_gets_the_preview_too_unless_behind(tmp_path: Path) -> None:
    async def scenario() -> list[list[Any]]:
        async with _hub(Backend(tmp_path)) as pages:
            _, two = pages.add(1), pages.add(2)
            two.unsent = 100
            hub = pages.hub
            _preview_from_a_thread(hub, J1, 1)
            await _turns()  # the preview waits first
            hub._send(1, json.dumps({"type": "reply", "re": 1}))
            hub._send(2, json.dumps({"type": "reply", "re": 2}))
            await asyncio.sleep(COALESCE_S * 2.5)
            return [[(m["type"], m.get("step") or m.get("re")) for m in pages.told(n)] for n in (1, 2)]

    one, two = _run(scenario)
    assert one == [("preview", 1), ("reply", 1)]
    assert two == [("reply", 2)]  # held for it: it is behind


def test_a_newer_preview_with_a_reply_to_a_page_that_caught_up_replaces_the_one_held(tmp_path: Path) -> None:
    async def scenario() -> list[Any]:
        async with _hub(Backend(tmp_path)) as pages:
            slow = pages.add(1)
            slow.unsent = 100
            hub = pages.hub
            _preview_from_a_thread(hub, J1, 1)
            hub.event("/ldm3d/queued", (J2, 1), 1.0)
            await _turns()
            slow.unsent = 0
            _preview_from_a_thread(hub, J1, 2)
            hub._send(1, json.dumps({"type": "reply", "re": 5}))
            await asyncio.sleep(COALESCE_S * 2.5)
            return [(m["type"], m.get("step") or m.get("re")) for m in pages.told(1)]

    assert _run(scenario) == [("event", None), ("reply", 5), ("preview", 2)]  # never the older one


# -- replies ---------------------------------------------------------------------------------------------


def test_replies_go_to_their_page_only_in_order_with_the_events(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with _hub(Backend(tmp_path)) as pages:
            pages.add(1), pages.add(2)
            hub = pages.hub
            hub.event("/ldm3d/queued", (J1, 1), 1.0)
            hub.reply(("page:127.0.0.1", 1), "/ldm3d/queued", (J1, 1))  # from the loop, outside a command
            hub.reply(("page:127.0.0.1", 9), "/ldm3d/queued", (J1, 1))  # a page that left
            hub.event("/ldm3d/started", (J1,), 2.0)
            hub.reply(("page:127.0.0.1", 2), "/ldm3d/status", ("idle",))
            await _turns()
            return pages.told(1), pages.told(2)

    one, two = _run(scenario)
    assert [m.get("address") for m in one] == ["/ldm3d/queued", "/ldm3d/started", "/ldm3d/queued"]
    assert one[2] == {"type": "reply", "re": None, "address": "/ldm3d/queued", "args": [J1, 1]}
    assert [(m["type"], m["address"]) for m in two] == [
        ("event", "/ldm3d/queued"),
        ("event", "/ldm3d/started"),
        ("reply", "/ldm3d/status"),
    ]


# -- status ------------------------------------------------------------------------------------------------


def test_the_status_goes_out_when_it_changes_not_when_only_time_passes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.web.page.STATUS_EVERY_S", 0.04)  # (0.25 s: the test would take seconds)
    backend = Backend(tmp_path)
    backend.state = {"queue": [], "show": {"cue": 1, "remaining": 30.0}, "moderation": [{"id": 1, "waited_s": 1.0}]}

    async def scenario() -> list[dict[str, Any]]:
        async with _hub(backend) as pages:
            await asyncio.sleep(0.1)  # no page: nothing
            pages.add(1)
            await asyncio.sleep(0.2)
            backend.state = {
                **backend.state,
                "show": {"cue": 1, "remaining": 29.0},
                "moderation": [{"id": 1, "waited_s": 2.0}],
            }
            await asyncio.sleep(0.15)
            backend.status_fails = True
            await asyncio.sleep(0.1)
            backend.status_fails = False
            backend.state = {**backend.state, "queue": [J1]}
            await asyncio.sleep(0.2)
            return pages.told(1, status=True)

    with caplog.at_level(logging.ERROR, logger="bridge.web.page"):
        told = _run(scenario)
    assert "the page status failed" in caplog.messages
    assert [(m["type"], m["queue"], m["show"]["remaining"]) for m in told] == [
        ("status", [], 30.0),
        ("status", [J1], 29.0),
    ]


def test_a_status_with_nothing_that_counts_by_itself_is_as_it_is() -> None:
    status = {"queue": [1], "show": None, "moderation": None, "running": {"remaining": 3}}
    assert _steady(status) == status
    assert _steady({"show": {"cue": 2, "remaining": 1.0}, "moderation": [{"id": 3, "waited_s": 4.0, "p": "x"}]}) == {
        "show": {"cue": 2},
        "moderation": [{"id": 3, "p": "x"}],
    }


# -- the hello ------------------------------------------------------------------------------------------------


def test_the_hello_has_the_backends_identity_the_screen_the_history_the_object_and_the_status(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    worlds = [backend.add_world(J1), backend.add_world(J2)]
    backend.ids = [J2, "broken", J3, J1]
    backend.screen = J1
    backend.state = {"queue": [J3]}

    async def scenario() -> tuple[PageHub, dict[str, Any]]:
        async with _hub(backend) as pages:
            return pages.hub, json.loads(await pages.hub._hello(4))

    hub, hello = _run(scenario)
    assert hello == {
        "type": "hello",
        "page": 4,
        "bridge": "test",
        "version": "1",
        "world": _offered(hub, worlds[0]),
        "history": [_offered(hub, worlds[1]), _offered(hub, worlds[0])],
        "object": None,
        "status": {"queue": [J3]},
    }
    assert backend.limits == [HISTORY]
    assert backend.threads == {"ldm3d-http-io"}  # the backend's reads: on the hub's pool, never on the loop


def test_a_fresh_bridge_says_hello_with_nothing_on_screen(tmp_path: Path) -> None:
    async def scenario() -> dict[str, Any]:
        async with _hub(Backend(tmp_path), tmp_path / "out") as pages:
            return cast(dict[str, Any], json.loads(await pages.hub._hello(1)))

    hello = _run(scenario)
    assert (hello["world"], hello["history"], hello["object"]) == (None, [], None)


# -- the WebSocket and the routes --------------------------------------------------------------------------


@asynccontextmanager
async def _served(
    backend: Backend, output: Path | None = None, **attach: Any
) -> AsyncIterator[tuple[PageHub, TestClient[web.Request, web.Application]]]:
    hub = PageHub(backend, output)
    app = web.Application()
    hub.attach(app, **attach)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            yield hub, client
            await hub.close_pages()
    finally:
        hub.close()


async def _next(ws: ClientWebSocketResponse) -> dict[str, Any]:
    return cast(dict[str, Any], await ws.receive_json(timeout=5))


def test_a_page_says_hello_and_its_messages_are_carried_out_with_replies_to_it(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    hub_box: list[PageHub] = []

    def answer(page: Address, message: Message) -> None:
        hub_box[0].reply(page, "/ldm3d/queued", (J1, 1))
        hub_box[0].reply((page[0], 99), "/ldm3d/other", ())  # another page (not connected)
        if message.address == "/ldm3d/cancel":
            thread = threading.Thread(target=hub_box[0].reply, args=(page, "/ldm3d/cancelled", (J1,)))
            thread.start()
            thread.join()

    backend.on_command = answer

    async def scenario() -> tuple[list[Any], list[Any], list[Any], int]:
        async with _served(backend) as (hub, client):
            hub_box.append(hub)
            first = await client.ws_connect("/ws")
            second = await client.ws_connect("/ws")
            hellos = [(await _next(first))["page"], (await _next(second))["page"]]
            await first.send_json({"id": 7, "address": "/ldm3d/generate", "args": ["a forest", "steps", 20, 0.5, True]})
            await first.send_bytes(b"binary: not a message")
            await first.send_json({"id": 8, "address": "/ldm3d/cancel"})
            replies = [await _next(first), await _next(first), await _next(first)]
            await second.close()
            await first.close()
            await asyncio.sleep(0.05)
            return hellos, replies, backend.commands, len(hub._pages)

    hellos, replies, commands, left = _run(scenario)
    assert hellos == [1, 2]
    assert commands == [
        (("page:127.0.0.1", 1), Message("/ldm3d/generate", ("a forest", "steps", 20, 0.5, 1))),
        (("page:127.0.0.1", 1), Message("/ldm3d/cancel", ())),
    ]
    assert replies == [
        {"type": "reply", "re": 7, "address": "/ldm3d/queued", "args": [J1, 1]},
        {"type": "reply", "re": 8, "address": "/ldm3d/queued", "args": [J1, 1]},
        {"type": "reply", "re": None, "address": "/ldm3d/cancelled", "args": [J1]},  # from another thread
    ]
    assert left == 0


USAGE = 'send {"id": n, "address": "/ldm3d/…", "args": [strings and numbers]}'


@pytest.mark.parametrize(
    ("text", "re"),
    [
        ("{not json", None),
        ('["/ldm3d/status"]', None),
        ('{"id": 3}', 3),
        ('{"id": 4, "address": 5}', 4),
        ('{"id": 5, "address": "/ldm3d/status", "args": "x"}', 5),
        ('{"id": 6, "address": "/ldm3d/status", "args": [{"a": 1}]}', 6),
        ('{"id": 7, "address": "/ldm3d/status", "args": [null]}', 7),
        ("[" * 5000 + "]" * 5000, None),
    ],
)
def test_a_message_that_is_not_one_is_answered_with_how_to_send_one(tmp_path: Path, text: str, re: int | None) -> None:
    backend = Backend(tmp_path)

    async def scenario() -> dict[str, Any]:
        async with _served(backend) as (_, client):
            ws = await client.ws_connect("/ws", max_msg_size=0)
            await _next(ws)
            await ws.send_str(text)
            answer = await _next(ws)
            await ws.close()
            return answer

    assert _run(scenario) == {
        "type": "reply",
        "re": re,
        "address": "/ldm3d/error",
        "args": ["", "bad_arguments", USAGE],
    }
    assert backend.commands == []


def test_a_message_without_args_has_none(tmp_path: Path) -> None:
    hub = PageHub(Backend(tmp_path))
    hub._command(1, ("page:x", 1), '{"address": "/ldm3d/status"}')
    hub.close()
    assert cast(Backend, hub._backend).commands == [(("page:x", 1), Message("/ldm3d/status", ()))]
    assert hub._handling is None


def test_json_values_become_osc_arguments() -> None:
    assert [_arg(True), _arg(False), _arg("é"), _arg(3), _arg(2.5)] == [1, 0, "é", 3, 2.5]
    assert [type(_arg(True)), type(_arg(3)), type(_arg(2.5))] == [int, int, float]
    for bad in (None, [1], {"a": 1}):
        with pytest.raises(TypeError) as caught:
            _arg(bad)
        assert str(caught.value) == f"not an OSC argument: {bad!r}"


def test_textures_are_served_immutable_and_depth_compressed_jpeg_not(tmp_path: Path) -> None:
    backend = Backend(tmp_path)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((4, 8, 3), np.uint8)).save(rgb)
    depth = tmp_path / "depth.png"
    Image.fromarray(np.full((4, 8), 7, np.uint16)).save(depth)

    async def scenario() -> list[tuple[int, str | None, str | None, str | None, bytes]]:
        async with _served(backend) as (hub, client):
            answers = []
            for path in (hub._textures.url(rgb, "rgb"), hub._textures.url(depth, "depth"), "/t/" + "0" * 32 + ".jpg"):
                response = await client.get(path, headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
                h = response.headers
                answers.append(
                    (
                        response.status,
                        h.get("Cache-Control"),
                        h.get("Content-Encoding"),
                        h.get("Content-Type"),
                        await response.read(),
                    )
                )
            return answers

    jpeg, u16, missing = _run(scenario)
    assert jpeg[:4] == (200, "public, max-age=31536000, immutable", None, "image/jpeg") and jpeg[4][:2] == b"\xff\xd8"
    assert u16[:4] == (200, "public, max-age=31536000, immutable", "gzip", "application/octet-stream")
    assert gzip.decompress(u16[4]) == np.full((4, 8), 7, "<u2").tobytes()
    assert (missing[0], missing[4]) == (404, b"no such texture (the job may have been removed)\n")


def test_the_morph_routes_are_there_only_with_an_output_folder(tmp_path: Path) -> None:
    async def scenario(output: Path | None) -> int:
        async with _served(Backend(tmp_path), output) as (_, client):
            return (await client.get("/morph/nope")).status

    assert [asyncio.run(scenario(None)), asyncio.run(scenario(tmp_path / "out"))] == [404, 400]


def test_a_page_that_does_not_read_is_disconnected_at_the_bound_it_was_attached_with(tmp_path: Path) -> None:
    hub = PageHub(Backend(tmp_path))
    hub.attach(web.Application(), max_unsent=1234)
    bounded = hub._outbox.max_unsent
    default = PageHub(Backend(tmp_path))
    default.attach(web.Application())
    hub.close()
    default.close()
    assert (bounded, default._outbox.max_unsent) == (1234, 4 << 20)


# -- the page's own files ---------------------------------------------------------------------------------------


def test_the_page_files_are_the_static_folder_and_the_shared_glsl() -> None:
    files = page_files()
    assert {"index.html", "app.js", "style.css", "ldm3d_displace.glsl", "visit/index.html"} <= set(files)
    assert files["ldm3d_displace.glsl"].read_text().strip() and all(p.is_file() for p in files.values())
    assert "vendor" not in files


def _static(tmp_path: Path) -> StaticFiles:
    names = {
        "index.html": "<html>é</html>" * 50,
        "app.js": "let a = 1;",
        "style.css": "p {}",
        "x.glsl": "void",
        "i.svg": "<svg/>",
        "d.json": "{}",
        "n.txt": "t",
        "LICENSE": "MIT",
    }
    files = {}
    for name, text in names.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        files[name] = tmp_path / name
    return StaticFiles(files)


def test_each_file_is_served_with_its_type_an_etag_and_no_cache(tmp_path: Path) -> None:
    static = _static(tmp_path)
    request = make_mocked_request("GET", "/ui/")
    answers = {name: static.response(request, name) for name in static.names()}
    assert static.names() == ["LICENSE", "app.js", "d.json", "i.svg", "index.html", "n.txt", "style.css", "x.glsl"]
    assert {name: a.content_type for name, a in answers.items()} == {
        "LICENSE": "text/plain",
        "app.js": "text/javascript",
        "d.json": "application/json",
        "i.svg": "image/svg+xml",
        "index.html": "text/html",
        "n.txt": "text/plain",
        "style.css": "text/css",
        "x.glsl": "text/plain",
    }
    index = answers["index.html"]
    data = (tmp_path / "index.html").read_bytes()
    import hashlib

    etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
    assert (index.status, index.body, index.charset) == (200, data, "utf-8")
    assert {k: index.headers[k] for k in ("Cache-Control", "ETag", "Vary")} == {
        "Cache-Control": "no-cache",
        "ETag": etag,
        "Vary": "Accept-Encoding",
    }
    assert "Content-Encoding" not in index.headers


def test_a_file_the_browser_has_is_304_and_one_asked_gzipped_is_gzipped_once(tmp_path: Path) -> None:
    static = _static(tmp_path)
    etag = static.response(make_mocked_request("GET", "/"), "index.html").headers["ETag"]
    again = static.response(make_mocked_request("GET", "/", headers={"If-None-Match": etag}), "index.html")
    other = static.response(make_mocked_request("GET", "/", headers={"If-None-Match": '"old"'}), "index.html")
    zipped = make_mocked_request("GET", "/", headers={"Accept-Encoding": "br, gzip"})
    first, second = static.response(zipped, "index.html"), static.response(zipped, "index.html")
    data = (tmp_path / "index.html").read_bytes()
    assert (again.status, again.body, again.headers["ETag"], again.headers["Cache-Control"]) == (
        304,
        None,
        etag,
        "no-cache",
    )
    assert other.status == 200
    assert (first.headers["Content-Encoding"], gzip.decompress(cast(bytes, first.body))) == ("gzip", data)
    assert first.body == second.body == gzip.compress(data, 9, mtime=0)
    assert static._packed.keys() == {"index.html"}


def test_a_file_not_on_the_page_is_404_naming_it(tmp_path: Path) -> None:
    answer = _static(tmp_path).response(make_mocked_request("GET", "/"), "secret.txt")
    assert (answer.status, answer.text) == (404, "no file 'secret.txt' on this page\n")


def test_a_page_is_logged_uncompressed_bounded_and_forgotten_when_it_leaves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> tuple[int, Any, int, int]:
        async with _served(Backend(tmp_path)) as (hub, client):
            ws = await client.ws_connect("/ws", compress=15)  # (the page never asks; a script might)
            await _next(ws)
            compressed = ws.compress
            await ws.send_str(" " * (64 * 1024 + 1))
            closed = await ws.receive(timeout=5)
            await asyncio.sleep(0.05)
            return compressed, closed.data, len(hub._pages), len(hub._outbox._clients)

    with caplog.at_level(logging.INFO, logger="bridge.web.page"):
        compressed, code, pages, clients = _run(scenario)
    assert (compressed, code, pages, clients) == (0, 1009, 0, 0)  # 1009: message too big
    assert "an operator page connected from 127.0.0.1 (page 1)" in caplog.messages


class _Textures(TextureStore):
    threads: ClassVar[set[str]] = set()

    def get(self, name: str) -> tuple[bytes, str] | None:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        return super().get(name)


class _Objects(ObjectFolders):
    threads: ClassVar[set[str]] = set()

    def offer_newest(self) -> dict[str, Any] | None:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        return super().offer_newest()

    def offer_ready(self, args: tuple[Any, ...]) -> dict[str, Any] | None:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        return super().offer_ready(args)


class _Morphs(MorphFolders):
    threads: ClassVar[set[str]] = set()

    def offer(self, morph_id: str) -> dict[str, Any]:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        return super().offer(morph_id)

    def offer_frame(self, morph_id: str, index: str | int) -> dict[str, Any]:
        self.threads.add(threading.current_thread().name.rpartition("_")[0])
        return super().offer_frame(morph_id, index)


def test_every_file_is_read_on_the_hubs_own_pool(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _object(out, J2)
    _morph(out, J1)
    textures = _Textures()
    hub = PageHub(Backend(tmp_path), out)
    hub._textures = textures
    hub._objects, hub._morphs = _Objects(out, textures), _Morphs(out, textures)
    app = web.Application()
    hub.attach(app)

    async def scenario() -> list[int]:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            ws = await client.ws_connect("/ws")
            hello = await _next(ws)
            hub.event("/ldm3d/morph/frame", (J1, 0), 1.0)
            hub.event("/ldm3d/object/ready", (J2, "a.obj", "a.glb"), 2.0)
            told = [await _next(ws), await _next(ws)]
            paths = (hello["object"]["glb"], f"/morph/{J1}", f"/morph/{J1}/0")
            statuses = [(await client.get(path)).status for path in paths]
            await ws.close()
            await hub.close_pages()
            return [*statuses, len(told)]

    try:
        assert _run(scenario) == [200, 200, 200, 2]
    finally:
        hub.close()
    assert [textures.threads, _Objects.threads, _Morphs.threads] == [{"ldm3d-http-io"}] * 3
