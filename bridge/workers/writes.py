"""The writer thread: the one place finished jobs become files (one writer for every worker).

Workers hand over what they computed (arrays, never files: a worker may be a Ray actor on
another machine, and the shared folder is this machine's); the writer writes each job's
folder atomically, then sends ``/ldm3d/ready`` (or ``write_failed``), in the order jobs
finished. At most ``backlog`` results wait, so a slow disk slows the workers down rather
than filling the memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from queue import Queue
from typing import Any

from bridge.errors import WriteFailed
from bridge.notify.limits import LogLimiter
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.writer import JobFiles, TextureWriter
from bridge.workers.jobs import Address, Job
from ldm3d_engine.types import RGBDResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """A computed job waiting for the writer thread."""

    job: Job
    result: RGBDResult
    extra: dict[str, Any]
    notify: list[Address | None]


class Writes:
    def __init__(
        self,
        writer: TextureWriter,
        notifier: Notifier,
        on_scene: Callable[[str, JobFiles], None],
        backlog: int = 2,
    ) -> None:
        self._writer = writer
        self._notifier = notifier
        #: A scene's folder is complete: record it in the show's library.
        self._on_scene = on_scene
        self._items: Queue[Finished | None] = Queue(maxsize=backlog)
        self.thread = threading.Thread(target=self._loop, name="ldm3d-writer", daemon=True)
        self._log = LogLimiter(logger)

    def put(self, item: Finished) -> None:
        """Hand over a finished job (blocks while ``backlog`` results wait)."""
        self._items.put(item)

    def close(self) -> None:
        """Write every pending job, then end the thread."""
        if self.thread.ident is not None:
            self._items.put(None)
            self.thread.join()

    def _loop(self) -> None:
        while (item := self._items.get()) is not None:
            job = item.job
            address: str
            args: tuple[Arg, ...]
            try:
                if job.scene_key is not None:
                    files = self._writer.write_scene(job.id, item.result, {**item.extra, "scene_key": job.scene_key})
                    self._on_scene(job.scene_key, files)
                else:
                    files = self._writer.write(job.id, item.result, item.extra, fmt=job.format)
            except WriteFailed as exc:
                address, args = failed(job, exc.code, str(exc))
            except Exception as exc:  # noqa: BLE001 - the writer thread must go on
                self._log.exception("write", time.monotonic(), "writing job %s failed", job.id)
                address, args = failed(job, "write_failed", f"{type(exc).__name__}: {exc}")
            else:
                t = item.result.timings
                logger.info(
                    "job %s ready in %.2f s (text %.2f, denoise %.2f, decode %.2f): %s",
                    job.id,
                    time.time() - job.created,
                    t.text_encoding_s,
                    t.denoising_s,
                    t.decoding_s,
                    files.folder,
                )
                address, args = "/ldm3d/ready", files.ready_args()
            if job.claim_outcome():
                self._notifier.event(item.notify, address, *args)
                job.finished(address)


def failed(job: Job, code: str, message: str) -> tuple[str, tuple[Arg, ...]]:
    """The ``/ldm3d/error`` that ends ``job`` (logged)."""
    logger.warning("job %s: %s: %s", job.id, code, message)
    return "/ldm3d/error", (job.id, code, message)
