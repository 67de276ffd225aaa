"""The operator page's side of the HTTP server: its files, its textures and its JSON WebSocket.

Runs on the HTTP server's event loop (:mod:`bridge.web.http`); nothing here blocks it:
files are hashed and textures derived on a small thread pool. The bridge hands in a
:class:`PageBackend`; this module knows nothing of jobs or queues beyond the JSON it
passes on. The WebSocket at ``/ws`` speaks JSON text frames (docs/web.md):

page → bridge   ``{"id": 7, "address": "/ldm3d/generate", "args": ["a forest", "steps", 20]}``:
                any OSC message of the contract, carried out as if it came over UDP
bridge → page   ``{"type": "hello", …}`` once, then ``{"type": "event", "address", "args", "t"}``
                for every event the OSC subscribers get (``/ldm3d/ready`` adds ``"world"``
                with the texture URLs), ``{"type": "reply", "re": 7, "address", "args"}``
                for the answers to this page's own messages, ``{"type": "status", …}``
                whenever the queue, the running job or the show changes, and ``{"type":
                "preview", …}`` for each preview of a world as it forms (:mod:`bridge.web.forming`);
                ``/ldm3d/morph/frame`` adds ``"frame"`` with its texture URLs (:mod:`bridge.web.morphs`);
                ``/ldm3d/object/ready`` adds ``"object"``: its GLB's URL and its placement, which the hello
                carries too for the object on the dome (:mod:`bridge.web.objects`).

Sending is cheap with many pages (docs/performance.md, "The operator page"): each message is
encoded and framed once and the same bytes written to every page (:mod:`bridge.web.outbox`); what
is pending goes out together, at the next turn of the loop, or within :data:`COALESCE_S` for
progress-like messages, of which only the newest of each kind waits (a job's progress, the
heartbeat, the status). A page that does not read is disconnected once ``http_max_unsent_bytes``
wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Protocol

from aiohttp import WSMsgType, web

from bridge.errors import BadArguments, UnknownJob
from bridge.osc.codec import Arg, Message
from bridge.web import morphs
from bridge.web.forming import Newest, preview_message
from bridge.web.objects import ObjectFolders
from bridge.web.outbox import Outbox, frame
from bridge.web.textures import TextureStore

logger = logging.getLogger(__name__)

#: Progress-like messages wait at most this long to go out together (the newest of each kind only).
COALESCE_S = 0.1
#: Events of which only the newest waiting matters, each address with whether its job id (the first
#: argument) tells them apart.
COALESCED = {
    "/ldm3d/progress": True,
    "/ldm3d/progress/fraction": False,
    "/ldm3d/state": False,
    "/ldm3d/busy": False,
    "/ldm3d/show/progress": False,
    "/ldm3d/preview": True,
}
#: A job's final messages: no preview of it reaches a page after one of these.
ENDS = ("/ldm3d/ready", "/ldm3d/cancelled", "/ldm3d/error")
#: How often the queue, the running job and the show are compared with what the pages were told.
STATUS_EVERY_S = 0.25
#: Jobs in the page's history when it connects.
HISTORY = 24
#: The longest JSON message a page may send (a prompt is at most a few kB).
MAX_MESSAGE = 64 * 1024

Address = tuple[str, int]


@dataclass(frozen=True)
class World:
    """A finished job (or a show's scene) as the page shows it."""

    job_id: str
    rgb: Path
    depth: Path
    #: What the page shows beside it: prompt, width, height, seed, seamless, created, mode, model, scene.
    info: dict[str, Any]


@dataclass
class _Pending:
    """A message waiting to go out, framed once: for every page (``to`` None) or for one."""

    frame: bytes
    key: str | None = None
    to: int | None = None
    #: A preview of this job: a page that is behind is not written it (it gets the newest once it catches up).
    job: str | None = None


class PageBackend(Protocol):
    """What the bridge offers the page (all called on the HTTP thread; none may block)."""

    def hello(self) -> dict[str, Any]:
        """The bridge's identity, ranges, stage and display: what a page needs to draw its controls."""

    def status(self) -> dict[str, Any]:
        """The queue (each job's id, prompt, position), the running job, the state, the show's cues."""

    def world(self, job_id: str) -> World | None:
        """A finished job or scene (reads its meta.json: call off the loop)."""

    def history(self, limit: int) -> list[str]:
        """The newest finished jobs' ids, newest first."""

    def on_screen(self) -> str | None:
        """The id of the world last announced with ``/ldm3d/ready`` (after a restart: latest.json's)."""

    def command(self, page: Address, message: Message) -> None:
        """Carry out one message from a page; its answers come back through :meth:`PageHub.reply`."""


class PageHub:
    def __init__(self, backend: PageBackend, output: Path | None = None) -> None:
        """``output``: the bridge's output folder, whose morphs the page may play (None: no ``/morph/`` routes)."""
        self._backend = backend
        self._textures = TextureStore()
        self._morphs = morphs.MorphFolders(output, self._textures) if output is not None else None
        self._objects = ObjectFolders(output, self._textures) if output is not None else None
        self._object: dict[str, Any] | None = None  # the object last announced, as offered (None: cleared)
        self._object_known = False  # one was announced, or cleared, since start-up
        self._newest = Newest()
        self._release_at: asyncio.TimerHandle | None = None
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ldm3d-http-io")
        self._pages: dict[int, web.WebSocketResponse] = {}
        self._outbox = Outbox()
        self._pending: list[_Pending] = []
        self._flush_at: asyncio.TimerHandle | asyncio.Handle | None = None
        self._flush_now = False
        self._numbers = iter(range(1, 1 << 62))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._handling: tuple[int, Any] | None = None
        self._ready_lock: asyncio.Lock | None = None
        self._last_status = ""
        self._screen: str | None = None
        self._screen_lock = threading.Lock()

    # -- wiring (on the loop's thread) -------------------------------------------------

    def attach(self, app: web.Application, max_unsent: int | None = None) -> None:
        """Serve the page's socket and textures on ``app``; a page is disconnected once more than
        ``max_unsent`` bytes wait for it (None: the outbox's default)."""
        if max_unsent is not None:
            self._outbox.max_unsent = max_unsent
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/t/{name}", self._texture)
        if self._morphs is not None:
            morphs.attach(app, self._morphs, self._pool)
        app.on_startup.append(self._started)

    async def _started(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._ready_lock = asyncio.Lock()
        self._outbox.keep(asyncio.ensure_future(self._watch_status()))

    def close(self) -> None:
        """After the loop stopped: end the file threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def close_pages(self) -> None:
        if self._release_at is not None:
            self._release_at.cancel()
        for ws in list(self._pages.values()):
            await ws.close()
        await self._outbox.cancel()

    # -- from the bridge's threads ---------------------------------------------------------

    def reply(self, page: Address, address: str, args: tuple[Arg, ...]) -> None:
        """An answer for one page (thread-safe, never blocks)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        number = page[1]
        re = self._handling[1] if self._handling and self._handling[0] == number else None
        if threading.get_ident() != self._thread:
            re = None
        message = {"type": "reply", "re": re, "address": address, "args": list(args)}
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._send, number, json.dumps(message))

    def preview(self, job_id: str, step: int, total: int, rgb: bytes, depth: bytes) -> None:
        """A preview of a job's world as it forms, for every page (the preview desk's observer: on its
        thread; encodes there and never blocks)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._pages:
            return
        try:
            text = preview_message(job_id, step, total, rgb, depth)
        except (OSError, ValueError) as exc:  # (the desk encoded them: not expected)
            logger.debug("a preview of job %s cannot go to the pages: %s", job_id, exc)
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._preview, job_id, text)

    # -- the loop's thread -------------------------------------------------------------------

    def event(self, address: str, args: tuple[Arg, ...], sent_at: float) -> None:
        """An event every page gets (the HTTP server hands each one on here, on the loop's thread)."""
        if address in ENDS and args and isinstance(args[0], str) and args[0]:
            self._newest.ended(args[0])  # before its end is written: no preview of it may follow
        if address == "/ldm3d/ready" and args:
            self._outbox.keep(asyncio.ensure_future(self._ready(str(args[0]), args, sent_at)))
            return
        if address == "/ldm3d/morph/frame" and len(args) > 1 and self._morphs is not None:
            self._outbox.keep(asyncio.ensure_future(self._morph_frame(args, sent_at)))
            return
        if address in ("/ldm3d/object/ready", "/ldm3d/object/clear") and self._objects is not None:
            self._outbox.keep(asyncio.ensure_future(self._object_event(address, args, sent_at)))
            return
        key = None
        if address in COALESCED:
            key = f"{address} {args[0]!r}" if COALESCED[address] and args else address
        self._queue(json.dumps({"type": "event", "address": address, "args": list(args), "t": sent_at}), key)

    async def _ready(self, job_id: str, args: tuple[Arg, ...], sent_at: float) -> None:
        assert self._ready_lock is not None
        async with self._ready_lock:  # in the order they were announced
            with self._screen_lock:
                self._screen = job_id
            world = await self._world(job_id)
            event = {"type": "event", "address": "/ldm3d/ready", "args": list(args), "t": sent_at}
            self._queue(json.dumps({**event, "world": world}))

    async def _morph_frame(self, args: tuple[Arg, ...], sent_at: float) -> None:
        """``/ldm3d/morph/frame`` with the frame's texture URLs (in order with the frames and the ready)."""
        assert self._ready_lock is not None
        async with self._ready_lock:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self._pool, self._frame_now, str(args[0]), args[1])
            event = {"type": "event", "address": "/ldm3d/morph/frame", "args": list(args), "t": sent_at}
            self._queue(json.dumps({**event, "frame": found}))

    async def _object_event(self, address: str, args: tuple[Arg, ...], sent_at: float) -> None:
        """``/ldm3d/object/ready`` with the object's GLB URL and placement, and ``/ldm3d/object/clear``: in
        order with each other and with the worlds they follow."""
        assert self._ready_lock is not None and self._objects is not None
        async with self._ready_lock:
            event: dict[str, Any] = {"type": "event", "address": address, "args": list(args), "t": sent_at}
            ready = address == "/ldm3d/object/ready" and bool(args)
            self._object_known, self._object = True, None
            if ready:
                loop = asyncio.get_running_loop()
                event["object"] = await loop.run_in_executor(self._pool, self._objects.offer_ready, args)
                self._object = event["object"]  # a later page's hello: the same object, where it was announced
            self._queue(json.dumps(event))

    def _frame_now(self, morph_id: str, index: Arg) -> dict[str, Any] | None:
        assert self._morphs is not None
        try:
            return self._morphs.offer_frame(morph_id, index if isinstance(index, int) else str(index))
        except (BadArguments, UnknownJob) as exc:  # pruned at once, or not written: the event goes without
            logger.debug("morph frame %s/%s not offered to the pages: %s", morph_id, index, exc)
            return None

    def _preview(self, job_id: str, text: str) -> None:
        if not self._newest.is_ended(job_id):
            self._queue(text, key=f"preview {job_id}", job=job_id)

    async def _world(self, job_id: str) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._world_now, job_id)

    def _world_now(self, job_id: str) -> dict[str, Any] | None:
        try:
            world = self._backend.world(job_id)
        except Exception:  # one job that cannot be shown never closes every page's connection
            logger.exception("cannot offer job %s to the page", job_id)
            return None
        if world is None:
            return None
        try:
            sources = (("rgb", world.rgb), ("thumb", world.rgb), ("depth", world.depth))
            urls = {kind: self._textures.url(path, kind) for kind, path in sources}
        except OSError as exc:
            logger.warning("cannot offer job %s to the page: %s", job_id, exc)
            return None
        if self._morphs is not None and self._morphs.has(job_id):
            urls["morph"] = f"/morph/{job_id}"  # a morph's world: the page can play the way it came
        return {"job_id": world.job_id, **world.info, **urls}

    def _send(self, number: int, text: str) -> None:
        """``text`` for page ``number`` only (a reply), in order with what every page is sent."""
        if number in self._pages:
            self._queue(text, to=number)

    def _queue(self, text: str, key: str | None = None, to: int | None = None, job: str | None = None) -> None:
        """``text`` for every page (``to`` None) or one, framed once; it goes out at the next turn of the
        loop, or, with a ``key`` (only the newest of each key waits), within :data:`COALESCE_S`. ``job``:
        a preview of that job (a page that is behind gets only the newest, later)."""
        if not self._pages:
            return
        if key is not None:
            self._pending = [p for p in self._pending if p.key != key]
        self._pending.append(_Pending(frame(text), key, to, job))
        loop = asyncio.get_running_loop()
        if key is None and not self._flush_now:
            if self._flush_at is not None:
                self._flush_at.cancel()
            self._flush_at, self._flush_now = loop.call_soon(self._flush), True
        elif self._flush_at is None:
            self._flush_at = loop.call_later(COALESCE_S, self._flush)

    def _flush(self) -> None:
        """Write what is pending: one write per page, the same bytes for every page without a reply."""
        pending, self._pending = self._pending, []
        self._flush_at, self._flush_now = None, False
        everyone = b"".join(p.frame for p in pending if p.to is None)
        own = {p.to for p in pending if p.to is not None}
        previews = [p.job for p in pending if p.job is not None]
        for number, ws in list(self._pages.items()):
            data = everyone
            behind = bool(previews) and self._outbox.unsent(ws) > 0
            if number in own or behind:
                data = self._frames_for(pending, number, behind)
            else:
                for job in previews:
                    self._newest.sent(number, job)
            if data:
                self._outbox.write(ws, data)
        if len(self._newest) and self._release_at is None:
            self._release_at = asyncio.get_running_loop().call_later(COALESCE_S, self._release)

    def _frames_for(self, pending: list[_Pending], number: int, behind: bool) -> bytes:
        """What page ``number`` is written of ``pending``: its own and everyone's, in order; a page that
        is ``behind`` gets no preview now (the newest of each job is held for it)."""
        parts: list[bytes] = []
        for p in pending:
            if p.to is not None and p.to != number:
                continue
            if p.job is not None:
                if behind:
                    self._newest.hold(number, p.job, p.frame)
                    continue
                self._newest.sent(number, p.job)
            parts.append(p.frame)
        return b"".join(parts)

    def _release(self) -> None:
        """Write each held preview to its page once the page has taken what it was written before."""
        self._release_at = None
        self._newest.release(self._pages, self._outbox)
        if len(self._newest):
            self._release_at = asyncio.get_running_loop().call_later(COALESCE_S, self._release)

    async def _watch_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            if not self._pages:
                continue
            try:
                status = self._backend.status()
                text = json.dumps({"type": "status", **status})
                same = json.dumps({"type": "status", **_steady(status)})
            except Exception:  # the pages' status must go on
                logger.exception("the page status failed")
                continue
            if same != self._last_status:  # time passing is no change: pages count it themselves
                self._last_status = same
                self._queue(text, key="status")

    async def _hello(self, number: int) -> str:
        backend = self._backend
        with self._screen_lock:
            screen = self._screen
        loop = asyncio.get_running_loop()
        ids = await loop.run_in_executor(self._pool, backend.history, HISTORY)
        screen = screen or await loop.run_in_executor(self._pool, backend.on_screen)
        history = [w for w in [await self._world(job_id) for job_id in ids] if w is not None]
        world = await self._world(screen) if screen else None
        thing = None
        if self._objects is not None:
            thing = self._object
            if not self._object_known:
                thing = await loop.run_in_executor(self._pool, self._objects.offer_newest)
        hello = {"type": "hello", "page": number, **backend.hello(), "world": world, "history": history}
        hello["object"] = thing
        return json.dumps({**hello, "status": backend.status()})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # not compressed: the frames are built once for every page (and a deflate context costs each page memory)
        ws = web.WebSocketResponse(heartbeat=10.0, max_msg_size=MAX_MESSAGE, compress=False)
        await ws.prepare(request)
        number = next(self._numbers)
        page: Address = (f"page:{request.remote or '?'}", number)
        hello = await self._hello(number)
        try:
            await ws.send_str(hello)
        except ConnectionError:  # it left before its hello (aiohttp's reset error is a ConnectionResetError)
            return ws
        self._pages[number] = ws
        self._outbox.add(ws, request.transport, f"the operator page {number} from {request.remote}")
        logger.info("an operator page connected from %s (page %d)", request.remote, number)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._command(number, page, message.data)
        finally:
            self._pages.pop(number, None)
            self._outbox.forget(ws)
        return ws

    def _command(self, number: int, page: Address, text: str) -> None:
        data: Any = None
        try:
            data = json.loads(text)
            address, args = data["address"], data.get("args", [])
            if not isinstance(address, str) or not isinstance(args, list):
                raise TypeError
            message = Message(address, tuple(_arg(a) for a in args))
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # Recursion: nested JSON
            re = data.get("id") if isinstance(data, dict) else None
            usage = 'send {"id": n, "address": "/ldm3d/…", "args": [strings and numbers]}'
            error = {"type": "reply", "re": re, "address": "/ldm3d/error", "args": ["", "bad_arguments", usage]}
            self._send(number, json.dumps(error))
            return
        self._handling = (number, data.get("id"))
        try:
            self._backend.command(page, message)
        finally:
            self._handling = None

    async def _texture(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(self._pool, self._textures.get, request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="no such texture (the job may have been removed)\n")
        data, content_type = found
        response = web.Response(body=data, content_type=content_type)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        if content_type != "image/jpeg":
            response.enable_compression()
        return response


def _arg(value: Any) -> Arg:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):  # JSON may carry a lone surrogate ("\\ud800"): refused as not text by the parser,
        return value  # naming the argument (bridge.contract.arguments.check_text)
    if isinstance(value, int | float):
        return value
    raise TypeError(f"not an OSC argument: {value!r}")


#: The page's files, in the package.
STATIC = Path(__file__).with_name("static")


def page_files() -> dict[str, Path]:
    """name under ``/ui/`` → file: the page, three.js and the shared displacement GLSL."""
    files = {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file()}
    files["ldm3d_displace.glsl"] = Path(str(resources.files("bridge.render.glsl").joinpath("ldm3d_displace.glsl")))
    return files


class StaticFiles:
    """The page's own files, read once with an ETag (gzipped at their first request); revalidated by the browser
    at every load (``no-cache``), so an upgraded bridge serves its new page at once."""

    TYPES: ClassVar[dict[str, str]] = {
        ".html": "text/html",
        ".js": "text/javascript",
        ".css": "text/css",
        ".glsl": "text/plain",
        ".svg": "image/svg+xml",
        ".json": "application/json",
        ".txt": "text/plain",
        "": "text/plain",  # LICENSE
    }

    def __init__(self, files: dict[str, Path]) -> None:
        self._files: dict[str, tuple[bytes, str, str]] = {}
        #: Compressed on first request (not at start-up: most bridges never serve the page).
        self._packed: dict[str, bytes] = {}
        for name, path in files.items():
            data = path.read_bytes()
            etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
            self._files[name] = (data, etag, self.TYPES[path.suffix])

    def names(self) -> list[str]:
        return sorted(self._files)

    def response(self, request: web.Request, name: str) -> web.Response:
        found = self._files.get(name)
        if found is None:
            return web.Response(status=404, text=f"no file {name!r} on this page\n")
        data, etag, content_type = found
        headers = {"Cache-Control": "no-cache", "ETag": etag, "Vary": "Accept-Encoding"}
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            headers["Content-Encoding"] = "gzip"
            packed = self._packed.get(name)
            if packed is None:
                packed = self._packed[name] = gzip.compress(data, 9, mtime=0)
            data = packed
        return web.Response(body=data, headers=headers, content_type=content_type, charset="utf-8")


def _steady(status: dict[str, Any]) -> dict[str, Any]:
    """A status without what changes by itself as time passes (a show's seconds left, how long each
    prompt has waited for moderation): a page counts those on from the last status it got."""
    steady = dict(status)
    if isinstance(show := status.get("show"), dict):
        steady["show"] = {k: v for k, v in show.items() if k != "remaining"}
    if isinstance(waiting := status.get("moderation"), list):
        steady["moderation"] = [{k: v for k, v in item.items() if k != "waited_s"} for item in waiting]
    return steady
