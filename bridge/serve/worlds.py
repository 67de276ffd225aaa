"""The world on the dome, as the show desk knows it: the last one it sent, and what to send when
the current cue cannot show (a failed cue, a cue still rendering after a restart).

In order: the show's fallback; else, when no world went out since start-up (a restart), the last
world the desk sent (kept in the library's state), the newest job (``latest.json``), the
built-in world. After a failure without a fallback, a dome that has a world keeps it. A cue's
object follows its world (``/ldm3d/object/ready``); a world without one clears the object a cue put
there (``/ldm3d/object/clear``).
"""

from __future__ import annotations

import logging

from bridge.errors import LibraryBusy
from bridge.notify.notifier import Notifier
from bridge.output.meshes import scene_object_args
from bridge.output.sequences import MorphFrames
from bridge.output.writer import JobFiles, TextureWriter
from bridge.placement import Placement
from bridge.serve.scenes import SceneDesk
from bridge.show.builtin import builtin_world
from bridge.show.cues import Show
from bridge.workers.jobs import Address

logger = logging.getLogger(__name__)


class DomeWorld:
    def __init__(self, writer: TextureWriter, notifier: Notifier, scenes: SceneDesk) -> None:
        self._writer = writer
        self._notifier = notifier
        self._scenes = scenes
        self._morphs = MorphFrames(writer)
        #: The world the desk last sent (a scene or job id; saved with the show's place).
        self.last: str | None = None
        #: A world went out since start-up.
        self.sent = False
        #: A cue's object is on the dome (sent since start-up): a world without one clears it.
        self.object_on = False

    def send(
        self, files: JobFiles, sender: Address | None, seconds: float | None = None, placement: Placement | None = None
    ) -> None:
        """Send a world; a morph cue's scene first plays its frames again (``/ldm3d/morph/frame`` each, over
        ``seconds``: the cue's fade, else as it was rendered). Then its object (:meth:`place`)."""
        self.shown(files.job_id)
        morph = self._morphs.complete(files.job_id)
        if morph is not None:
            rendered_s, frames = morph
            for frame in frames:
                index, rgb, depth = int(frame["index"]), str(frame["rgb"]), str(frame["depth"])
                args = (files.job_id, index, len(frames), seconds or rendered_s, rgb, depth)
                self._notifier.notify(sender, "/ldm3d/morph/frame", *args)
        self._notifier.notify(sender, "/ldm3d/ready", *files.ready_args())
        self.place(files, sender, placement)

    def place(self, files: JobFiles, sender: Address | None, placement: Placement | None) -> None:
        """After a world: the object its scene holds, at ``placement`` (a cue's object), with
        ``/ldm3d/object/ready``; else, when a cue's object is on the dome, ``/ldm3d/object/clear``."""
        args = scene_object_args(files, placement) if placement is not None else None
        if args is not None:
            self._notifier.notify(sender, "/ldm3d/object/ready", *args)
            self.object_on = True
        elif self.object_on:
            self._notifier.notify(sender, "/ldm3d/object/clear")
            self.object_on = False

    def shown(self, world: str | None) -> None:
        """A world went out (its ``/ldm3d/ready`` sent by the worker, for a cue just rendered)."""
        self.last, self.sent = world or self.last, True

    def hold(self, show: Show | None, after_failure: str | None = None) -> None:
        """Send what the dome shows when the current cue cannot (see the module's order)."""
        fallback = show.cue(show.fallback) if show is not None and show.fallback is not None else None
        try:
            files = self._scenes.files(fallback) if fallback is not None and self._scenes.identity() else None
        except LibraryBusy:
            files = None  # a locked library: the last world, as without a fallback
        from_fallback = files is not None
        if files is None and self.sent:
            return
        if files is None:
            latest = self._writer.latest()
            for world in (self.last, latest.get("job_id") if latest else None):
                files = self._writer.find(str(world)) if world else None
                if files is not None:
                    break
            else:
                files = builtin_world(self._writer)
        if files is not None:
            if after_failure is not None:
                what = f"the fallback cue {fallback.number}" if fallback and from_fallback else f"world {files.job_id}"
                logger.warning("cue %s failed; showing %s", after_failure, what)
            placement = fallback.object.placement if from_fallback and fallback and fallback.object else None
            self.send(files, None, placement=placement)
