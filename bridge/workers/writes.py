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
from pathlib import Path
from queue import Queue
from typing import Any

from bridge.contract.morphs import MorphRequest
from bridge.errors import WriteFailed
from bridge.notify.limits import LogLimiter
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.meshes import ObjectWriter
from bridge.output.sequences import MorphFrames
from bridge.output.writer import JobFiles, TextureWriter
from bridge.placement import DEFAULT_PLACEMENT
from bridge.workers.jobs import Address, Job, WorldAndObject
from ldm3d_engine.object_types import MeshResult
from ldm3d_engine.types import RGBDResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finished:
    """A computed job waiting for the writer thread (a morph: its last frame, the world it arrives at;
    an object job: its mesh, written into ``objects/`` and announced with ``/ldm3d/object/ready``)."""

    job: Job
    result: RGBDResult | MeshResult | WorldAndObject
    extra: dict[str, Any]
    notify: list[Address | None]


@dataclass(frozen=True)
class Frame:
    """A morph's frame (not its last) waiting for the writer thread: written, then ``/ldm3d/morph/frame``."""

    job: Job
    index: int
    result: RGBDResult
    notify: list[Address | None]


@dataclass(frozen=True)
class Discard:
    """A morph ended without arriving: its frames written so far are removed (after any still waiting)."""

    job: Job


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
        self._items: Queue[Finished | Frame | Discard | None] = Queue(maxsize=backlog)
        self._frames = MorphFrames(writer)
        self._objects = ObjectWriter(writer)
        self.thread = threading.Thread(target=self._loop, name="ldm3d-writer", daemon=True)
        self._log = LogLimiter(logger)

    def put(self, item: Finished | Frame | Discard) -> None:
        """Hand over a finished job or a morph's frame (blocks while ``backlog`` results wait)."""
        self._items.put(item)

    def close(self) -> None:
        """Write every pending job, then end the thread."""
        if self.thread.ident is not None:
            self._items.put(None)
            self.thread.join()

    def _loop(self) -> None:
        self._objects.prepare()  # staging folders of a crashed run
        while (item := self._items.get()) is not None:
            if isinstance(item, Discard):
                self._frames.discard(item.job.id)
                continue
            if isinstance(item, Frame):
                self._frame(item)
                continue
            if isinstance(item.result, MeshResult):
                self._object(item, item.result)
                continue
            job = item.job
            world = item.result.world if isinstance(item.result, WorldAndObject) else item.result
            address: str
            args: tuple[Arg, ...]
            try:
                if isinstance(job.request, MorphRequest):
                    files = self._arrive(item, job.request)
                elif job.scene_key is not None:
                    files = self._writer.write_scene(
                        job.id, world, {**item.extra, "scene_key": job.scene_key}, self._inside(item)
                    )
                    self._on_scene(job.scene_key, files)
                else:
                    files = self._writer.write(job.id, world, item.extra, fmt=job.format)
            except WriteFailed as exc:
                address, args = failed(job, exc.code, str(exc))
            except Exception as exc:  # noqa: BLE001 - the writer thread must go on
                self._log.exception("write", time.monotonic(), "writing job %s failed", job.id)
                address, args = failed(job, "write_failed", f"{type(exc).__name__}: {exc}")
            else:
                t = world.timings
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
            if address != "/ldm3d/ready" and isinstance(job.request, MorphRequest):
                self._frames.discard(job.id)
            if job.claim_outcome():
                self._notifier.event(item.notify, address, *args)
                job.finished(address)

    def _inside(self, item: Finished) -> Callable[[Path], None] | None:
        """What a scene's folder holds besides its world: a cue's object (``object/``), or nothing."""
        both = item.result
        if not isinstance(both, WorldAndObject):
            return None
        placement = item.job.placement or DEFAULT_PLACEMENT
        return lambda folder: self._objects.write_into(folder, item.job.id, both.mesh, placement)

    def _object(self, item: Finished, result: MeshResult) -> None:
        """Write an object job's folder, then ``/ldm3d/object/ready`` (or ``write_failed``)."""
        job = item.job
        address: str
        args: tuple[Arg, ...]
        try:
            files = self._objects.write(job.id, result, item.extra, job.placement or DEFAULT_PLACEMENT)
        except WriteFailed as exc:
            address, args = failed(job, exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - the writer thread must go on
            self._log.exception("write", time.monotonic(), "writing object %s failed", job.id)
            address, args = failed(job, "write_failed", f"{type(exc).__name__}: {exc}")
        else:
            t = result.timings
            logger.info(
                "object %s ready in %.2f s (denoise %.2f, mesh %.2f; %d vertices): %s",
                job.id,
                time.time() - job.created,
                t.denoising_s,
                t.meshing_s,
                len(result.vertices),
                files.folder,
            )
            address, args = "/ldm3d/object/ready", files.ready_args()
        if job.claim_outcome():
            self._notifier.event(item.notify, address, *args)
            job.finished(address)

    def _frame(self, item: Frame) -> None:
        """Write a morph's frame and announce it (a frame that cannot be written is logged and skipped:
        the morph goes on; its end says whether it arrived)."""
        job, request = item.job, item.job.request
        assert isinstance(request, MorphRequest)
        t = request.position(item.index)
        try:
            files = self._frames.write(job.id, item.index, t, item.result, request.describe(), job.format)
        except WriteFailed as exc:
            self._log.warning(
                "frame", time.monotonic(), "frame %d of morph %s was not written: %s", item.index, job.id, exc
            )
            return
        args = (
            job.id,
            item.index,
            request.frames,
            request.seconds,
            files.announced(files.rgb),
            files.announced(files.depth),
        )
        job.unless_ended(lambda: self._notifier.event(item.notify, "/ldm3d/morph/frame", *args))

    def _arrive(self, item: Finished, request: MorphRequest) -> JobFiles:
        """A morph's last frame: into its sequence (announced), then its job folder (the world it arrives at)."""
        last, result = request.frames - 1, item.result
        assert isinstance(result, RGBDResult), "a morph's frames are worlds"
        self._frame(Frame(item.job, last, result, item.notify))
        job = item.job
        info = {**request.describe(), "sequence": self._frames.manifest(job.id)}
        if job.scene_key is None:
            files = self._writer.write(job.id, result, {**item.extra, "morph": info}, fmt=job.format)
        else:  # a morph cue's scene: its frames stay in morphs/<scene id>/ (scenes are never pruned)
            extra = {**item.extra, "morph": info, "scene_key": job.scene_key}
            files = self._writer.write_scene(job.id, result, extra)
            self._on_scene(job.scene_key, files)
        self._frames.finish(job.id)
        return files


def failed(job: Job, code: str, message: str) -> tuple[str, tuple[Arg, ...]]:
    """The ``/ldm3d/error`` that ends ``job`` (logged)."""
    logger.warning("job %s: %s: %s", job.id, code, message)
    return "/ldm3d/error", (job.id, code, message)
