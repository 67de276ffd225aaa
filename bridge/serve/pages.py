"""What the operator page sees of the bridge, and how its messages are carried out.

The page (:mod:`bridge.web.page`) speaks the OSC contract itself: each message it sends
is parsed by :func:`bridge.contract.protocol.parse` and handed to the same handler the
UDP intake uses, so an action behaves the same from a tablet page, TouchOSC or
TouchDesigner. A page's sender address is ``("page:<its IP>", <page number>)``: job
limits count per IP as for OSC clients, and the notifier hands replies for it to the
page instead of sending UDP (:data:`bridge.notify.notifier.PAGE_PREFIX`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bridge import __version__
from bridge.contract import protocol
from bridge.contract.arguments import check_text
from bridge.contract.morphs import MorphRequest
from bridge.contract.ranges import Ranges
from bridge.errors import BridgeError, NotSupported
from bridge.notify.limits import Counters, LogLimiter
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Message
from bridge.output.writer import TextureWriter
from bridge.serve.shows import ShowDesk
from bridge.serve.stage import Stage
from bridge.serve.visitors import VisitorDesk
from bridge.settings import BridgeSettings
from bridge.web.page import World
from bridge.workers.jobs import Address, Job, JobQueue
from bridge.workers.pool import WorkerPool
from ldm3d_engine.object_types import ObjectRequest
from ldm3d_engine.types import DepthRequest, Img2ImgRequest, UpscaleRequest

logger = logging.getLogger(__name__)

#: From ``/ldm3d/show/state``'s arguments to the page's names.
SHOW_STATE = ("show", "cue", "cue_state", "standby", "rendered", "total", "loop", "running", "skipped", "remaining")
#: From ``/ldm3d/worker``'s arguments to the page's names.
WORKER = ("index", "where", "state", "job")


class PageDesk:
    """The bridge as :class:`bridge.web.page.PageBackend` sees it."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        writer: TextureWriter,
        queue: JobQueue,
        stage: Stage,
        ranges: Ranges,
        display: dict[str, float | int],
        notifier: Notifier,
        counters: Counters,
        pool: WorkerPool,
        shows: ShowDesk,
        state_args: Callable[[], tuple[str, int, str, str, str, int, int]],
        handle: Callable[[protocol.Command, Address], None],
        boot_id: str,
        upscale: bool,
        visitors: VisitorDesk | None = None,
    ) -> None:
        self._settings = settings
        self._writer = writer
        self._queue = queue
        self._stage = stage
        self._ranges = ranges
        self._display = display
        self._notifier = notifier
        self._counters = counters
        self._pool = pool
        self._shows = shows
        self._state_args = state_args
        self._handle = handle
        self._boot_id = boot_id
        self._upscale = upscale
        self._visitors = visitors
        self._log = LogLimiter(logger)

    def hello(self) -> dict[str, Any]:
        ranges = asdict(self._ranges)
        ranges["defaults"] = dict(self._ranges.defaults)
        return {
            "bridge": __version__,
            "boot": self._boot_id,
            "model": self._settings.model,
            "heartbeat_s": self._settings.heartbeat_s,
            "ranges": ranges,
            "stage": self._stage.get(),
            "display": dict(self._display),
            "upscale": self._upscale,
            "queue_mode": self._settings.queue_mode,
            "visitors": {"moderate": self._settings.moderate} if self._visitors is not None else None,
        }

    def status(self) -> dict[str, Any]:
        state, _, _, _, _, alive, total = self._state_args()
        waiting = [_job(job) for job in self._queue.snapshot()]
        show = dict(zip(SHOW_STATE, self._shows.state_args(), strict=True))
        return {
            "state": state,
            "running": [_job(job) for job in self._pool.running],
            "workers": {
                "alive": alive,
                "total": total,
                "each": [dict(zip(WORKER, args, strict=True)) for args in self._pool.worker_args()],
            },
            "queue": [{**job, "position": n} for n, job in enumerate(waiting, 1)],
            "show": {**show, "cues": self._shows.cues()} if show["show"] else None,
            "moderation": [
                {"ticket": t, "prompt": p, "device": d, "waited_s": w} for t, p, d, w in self._visitors.waiting()
            ]
            if self._visitors is not None
            else None,
        }

    def world(self, job_id: str) -> World | None:
        """A job or scene whose folder reads (one that does not is skipped: the writer logs it once)."""
        found = self._writer.find_with_meta(job_id)
        if found is None:
            return None
        files, meta = found
        prompt = meta.get("prompt", "")
        info = {
            "prompt": prompt if isinstance(prompt, str) else "",
            "width": files.width,
            "height": files.height,
            "seed": files.seed,
            "seamless": files.seamless,
            "created": meta.get("created", ""),
            "mode": meta.get("mode", ""),
            "steps": meta.get("steps"),
            "scene": files.folder.parent == self._writer.scenes,
        }
        return World(files.job_id, files.rgb, files.depth, info)

    def history(self, limit: int) -> list[str]:
        """The newest ``limit`` jobs whose folders read, newest first (a bad one is skipped, not counted)."""
        ids: list[str] = []
        for job_id in reversed(self._writer.job_ids()):
            if len(ids) >= limit:
                break
            if self._writer.find(job_id) is not None:
                ids.append(job_id)
        return ids

    def on_screen(self) -> str | None:
        latest = self._writer.latest()
        job_id = latest.get("job_id") if latest else None
        return job_id if isinstance(job_id, str) else None

    def command(self, page: Address, message: Message) -> None:
        """One message from a page, carried out; every failure answered with ``/ldm3d/error``."""
        self._counters.add("page_messages")
        try:
            command = protocol.parse(message)
            for n, arg in enumerate(message.args, 1):  # what parse() did not read as text (JSON can hold a
                if isinstance(arg, str):  # lone surrogate; UDP cannot): refused here, never met downstream
                    check_text(arg, f"{message.address}: argument {n}")
            if isinstance(command, protocol.Subscribe | protocol.Unsubscribe):
                raise NotSupported(f"{message.address}: a page hears every event already; this is for OSC clients")
            self._handle(command, page)
        except BridgeError as exc:
            self._counters.add(f"error_{exc.code}")
            self._notifier.reply(page, "/ldm3d/error", "", exc.code, str(exc))
        except Exception:  # noqa: BLE001 - a page's message never breaks the HTTP side; logged and answered
            self._counters.add("internal_error")
            self._log.exception("page", time.monotonic(), "internal error on %s from a page", message.address[:64])
            message_text = "the bridge failed on this message; it is logged and the bridge carries on"
            self._notifier.reply(page, "/ldm3d/error", "", "internal_error", message_text)


def _job(job: Job) -> dict[str, Any]:
    request = job.request
    kind = "img2img" if isinstance(request, Img2ImgRequest) else "text"
    if isinstance(request, UpscaleRequest):
        kind = "upscale"
    if isinstance(request, ObjectRequest):
        kind = "object"
    if isinstance(request, DepthRequest):
        return {"id": job.id, "prompt": Path(job.inputs["image"]).name, "kind": "depth", "background": job.quiet}
    if isinstance(request, MorphRequest):
        prompt = f"{request.first.prompt} → {request.second.prompt}"
        return {"id": job.id, "prompt": prompt, "kind": "morph", "background": job.quiet}
    return {"id": job.id, "prompt": request.prompt, "kind": kind, "background": job.quiet}
