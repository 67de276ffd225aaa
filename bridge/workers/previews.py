"""Previews of a world as it forms: from the workers to the preview slots, the OSC clients and the pages.

A worker's engine hands over a :class:`~ldm3d_engine.types.Preview` every few steps (``preview_every``)
on its own thread; :meth:`PreviewDesk.previews_for` makes the callback. It only leaves the preview
in the worker's mailbox (one place: a newer preview replaces one not yet sent, so a slow disk or
client drops previews, never queues them) and returns, so the sampler never waits. The desk's one
thread then, for each mailbox:

1. encodes the RGB (8-bit) and depth (16-bit) as PNG and replaces ``previews/<worker>/rgb.png`` and
   ``depth.png`` in the output folder, each atomically (a fixed slot per worker: TouchDesigner can
   keep a Movie File In TOP on it);
2. sends ``/ldm3d/preview <job id> <step> <total> <rgb path> <depth path>`` to the job's sender and
   the subscribers, unless the job has ended: no preview follows a job's ``/ldm3d/ready``,
   ``/ldm3d/cancelled`` or ``/ldm3d/error`` (checked under the job's own lock, the one its final
   message is claimed under);
3. hands the PNGs to the observers (the operator pages, over their WebSocket: no files), under
   the same lock, so no observer hears of a preview after the job's end either.

Previews come at most ``progress_hz`` times a second per job, as progress does; pre-generation
(quiet jobs) has none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bridge.notify.limits import LogLimiter
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.formats import encode_png
from bridge.output.writer import TextureWriter
from bridge.workers.jobs import Job
from ldm3d_engine.types import Preview, Previews

logger = logging.getLogger(__name__)

#: The folder of the preview slots, in the output folder.
PREVIEW_DIR = "previews"
#: Told of every preview sent: (job id, step, total, RGB PNG, 16-bit depth PNG).
PreviewObserver = Callable[[str, int, int, bytes, bytes], None]


@dataclass
class _Waiting:
    job: Job
    preview: Preview


class PreviewDesk:
    def __init__(self, writer: TextureWriter, notifier: Notifier, default_every: int, max_hz: float) -> None:
        self._writer = writer
        self._notifier = notifier
        self._default_every = default_every
        self._interval = 1.0 / max_hz
        self._mailboxes: dict[int, _Waiting] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="ldm3d-previews", daemon=True)
        self._log = LogLimiter(logger)
        #: Told of every preview sent (the operator pages); called on the desk's thread.
        self.observers: list[PreviewObserver] = []
        #: Previews dropped because a newer one of the same worker came first (a slow disk or page).
        self.dropped = 0

    @property
    def root(self) -> Path:
        return self._writer.root / PREVIEW_DIR

    def start(self) -> None:
        """Clear the slots of an earlier run (stale pictures), then start the thread."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.thread.start()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def previews_for(self, job: Job, slot: int) -> Previews | None:
        """What the engine is handed for ``job`` on worker ``slot``: None when the job wants no previews
        (``preview_every`` 0, or pre-generation)."""
        every = self._default_every if job.preview_every is None else job.preview_every
        if every <= 0 or job.quiet:
            return None
        last = [float("-inf")]

        def send(preview: Preview) -> None:  # on the engine's thread: never blocks
            now = time.monotonic()
            if now - last[0] < self._interval:
                return
            last[0] = now
            with self._cond:
                if slot in self._mailboxes:
                    self.dropped += 1
                self._mailboxes[slot] = _Waiting(job, preview)
                self._cond.notify()

        return Previews(every, send)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._mailboxes and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                waiting, self._mailboxes = self._mailboxes, {}
            for slot, item in waiting.items():
                try:
                    self._deliver(slot, item)
                except Exception:  # noqa: BLE001 - a preview never stops the desk
                    self._log.exception("preview", time.monotonic(), "a preview of job %s failed", item.job.id)

    def _deliver(self, slot: int, item: _Waiting) -> None:
        job, preview = item.job, item.preview
        if job.ended or job.cancel.cancelled:
            return
        rgb, depth = encode_png(preview.rgb), encode_png(preview.depth)
        folder = self.root / str(slot)
        folder.mkdir(parents=True, exist_ok=True)
        paths: list[str] = []
        for name, data in (("rgb.png", rgb), ("depth.png", depth)):
            if not _replace(folder / name, data):
                self._log.warning(
                    "preview_locked", time.monotonic(), "the preview slot %s is held open by a reader; skipped", folder
                )
                return
            paths.append(self._writer.announced(folder / name))
        args: tuple[Arg, ...] = (job.id, preview.step, preview.total, *paths)
        targets = [job.sender, *self._notifier.subscribers]

        def announce() -> None:  # under the job's lock: its final message cannot come first
            self._notifier.event(targets, "/ldm3d/preview", *args)
            for observer in list(self.observers):
                observer(job.id, preview.step, preview.total, rgb, depth)

        job.unless_ended(announce)


def _replace(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a reader sees the old or
    the new picture. False when the rename is refused (Windows, while a reader holds the file open)."""
    tmp = path.with_name(f".ldm3d-{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        for attempt in range(3):
            try:
                os.replace(tmp, path)
                return True
            except PermissionError:
                time.sleep(0.01 * (attempt + 1))
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
