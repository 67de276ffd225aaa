"""A show's scenes: their keys (which need the model's identity), which are rendered, and the
jobs that render them, live or in idle time (pre-generation).

The model identity comes from a ready worker's engine. The library remembers the last one for
the model settings it was made with, so after a restart rendered cues recall at once, before
the model has loaded; when the engine is up and its identity differs (another revision of the
model, a new engine version), every key is worked out again and :meth:`identity_changed` says
so once.

Pre-generation (``/ldm3d/show/pregen``) submits a missing scene whenever the queue is empty and a
worker idle (so with several workers, several scenes render at once), as a quiet job (no
progress, no messages), the show's fallback first. A live job that finds no idle worker cancels
one of them (:meth:`SceneDesk.yield_to_live`) and that scene is tried again later. A scene whose
job fails is passed over for the rest of that run and reported at its end
(``/ldm3d/warning "" scenes_failed …``).

Called with the show desk's lock held (it is handed in), except :meth:`added` and the jobs'
``on_done`` callbacks, which take it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bridge.contract.engine_api import EngineLike
from bridge.contract.morphs import DEFAULT_SECONDS, MorphRequest
from bridge.errors import LibraryBusy
from bridge.notify.notifier import Notifier
from bridge.output.job_ids import new_job_id
from bridge.output.writer import JobFiles, TextureWriter
from bridge.settings import BridgeSettings
from bridge.show.cues import Cue, Show
from bridge.show.library import SceneLibrary, identity_of
from bridge.workers.jobs import Address, Job
from ldm3d_engine.types import GenerateRequest

logger = logging.getLogger(__name__)


class SceneDesk:
    def __init__(
        self,
        settings: BridgeSettings,
        library: SceneLibrary,
        writer: TextureWriter,
        notifier: Notifier,
        enqueue: Callable[[Job], None],
        engine: Callable[[], EngineLike | None],
        idle: Callable[[], bool],
        lock: threading.RLock,
    ) -> None:
        self._library = library
        self._writer = writer
        self._notifier = notifier
        self._enqueue = enqueue
        self._engine = engine
        self._idle = idle
        self._lock = lock
        #: What the remembered identity belongs to: the settings that pick the model and its defaults.
        self._model = identity_of(settings)
        #: The object model a cue's object is made with (part of such a scene's key).
        self._object_model = settings.object_model
        try:
            self._identity: str | None = library.remembered_identity(settings)
        except LibraryBusy:  # recall before the model is a comfort: the engine's identity comes with it
            self._identity = None
        self._changed = False
        #: A show was loaded (the identity is remembered from then on).
        self._in_use = False
        #: Cue number → scene key, and the keys in the library (both kept for the loaded show).
        self._keys: dict[str, str] = {}
        self._rendered: set[str] | None = None
        #: Scene keys a live job is rendering (cues shown before their scenes were made).
        self._live: set[str] = set()
        #: Pre-generation: on, its jobs queued or running (by scene key), the cues that failed this run.
        self.pregen_on = False
        self._background: dict[str, Job] = {}
        self._failed: dict[str, str] = {}
        #: A scene made quietly until it is rendered (the fallback): a job of it that steps aside for a
        #: live one is queued again in idle time; one that fails is not (until the show is loaded again).
        self._wanted: Cue | None = None

    # -- identity and keys ---------------------------------------------------------

    def identity(self) -> str | None:
        """The model's identity: a ready engine's, else the one remembered for these settings."""
        engine = self._engine()
        if engine is not None and engine.identity != self._identity:
            if self._identity is not None:
                logger.warning("the model is not the one the scene library remembers: every scene key is new")
                self._changed = True
            self._identity, self._keys, self._rendered = engine.identity, {}, None
            self._remember()
        return self._identity

    def _remember(self) -> None:
        """Keep the identity in the library for the next start (only once a show is used: a bridge
        that never runs one leaves no library behind)."""
        if not self._in_use or self._engine() is None or self._identity is None:
            return
        try:
            self._library.save_state(identity=self._identity, identity_of=self._model)
        except Exception as exc:  # noqa: BLE001 - recall before the model is a comfort, not a need
            logger.warning("could not remember the model's identity: %s", exc)

    def ready(self) -> bool:
        """A worker has the model ready: scenes can be made (their keys from its own identity)."""
        return self._engine() is not None and self.identity() is not None

    def identity_changed(self) -> bool:
        """True once after a ready engine's identity replaced the remembered one."""
        self.identity()
        changed, self._changed = self._changed, False
        return changed

    def key(self, cue: Cue) -> str:
        key = self._keys.get(cue.number)
        if key is None:
            identity = self.identity()
            assert identity is not None, "no model identity yet"
            key = self._keys[cue.number] = cue.scene_key(identity, self._object_model)
        return key

    def rendered_keys(self, show: Show) -> set[str] | None:
        """The keys of ``show``'s cues that have a scene; None while no model identity is known."""
        if self.identity() is None:
            return None
        if self._rendered is None:
            self._rendered = self._library.rendered(self.key(c) for c in show.cues)
        return self._rendered

    def files(self, cue: Cue) -> JobFiles | None:
        """The cue's scene, when it is rendered (and the model known)."""
        if self.identity() is None:
            return None
        scene = self._library.scene_id(self.key(cue))
        return self._writer.find(scene) if scene is not None else None

    def use(self) -> None:
        """A show was loaded: its keys are worked out afresh, pre-generation is off."""
        self._keys, self._rendered, self.pregen_on, self._failed, self._wanted = {}, None, False, {}, None
        if not self._in_use:
            self._in_use = True
            self._remember()

    def added(self, key: str) -> None:
        """A scene was written into the library (by the worker's writer thread)."""
        with self._lock:
            if self._rendered is not None:
                self._rendered.add(key)

    # -- rendering ---------------------------------------------------------------------

    def render_live(self, cue: Cue, sender: Address | None, on_done: Callable[[str], None]) -> None:
        """Render the cue's scene now, ahead of pre-generation; asked again while it renders: one job."""
        key = self.key(cue)
        if key in self._live:
            return
        background = self._background.get(key)
        if background is not None:  # pre-generation was making this very scene: it is made live now
            background.cancel.cancel()
        elif not self._idle():
            self.yield_to_live()
        self._live.add(key)

        def done(address: str) -> None:
            with self._lock:
                self._live.discard(key)
            on_done(address)

        self._render(cue, key, sender, quiet=False, on_done=done)

    def render_quiet(self, cue: Cue) -> bool:
        """Render the cue's scene in the background unless it is rendered or being rendered; True
        when a job was queued."""
        key = self.key(cue)
        if key in self._live or key in self._background or self._library.scene_id(key) is not None:
            return False
        self._background[key] = self._render(cue, key, None, quiet=True, on_done=lambda a: self._ended(cue, key, a))
        return True

    def render_wanted(self, cue: Cue) -> bool:
        """Render the cue's scene quietly, now and in idle time until it is made (see ``_wanted``);
        True when a job was queued now."""
        self._wanted = cue
        return self.render_quiet(cue)

    def yield_to_live(self) -> None:
        """A live job arrived and no worker is idle: a pre-generation job steps aside (tried again later)."""
        with self._lock:
            job = next((j for j in reversed(self._background.values()) if not j.cancel.cancelled), None)
        if job is not None:
            job.cancel.cancel()

    def _render(
        self, cue: Cue, key: str, sender: Address | None, *, quiet: bool, on_done: Callable[[str], None]
    ) -> Job:
        job = Job(new_job_id(), scene_request(cue), sender, scene_key=key, quiet=quiet, upscale_after=cue.upscale,
                  on_done=on_done)  # fmt: skip
        if cue.object is not None:  # made after the world, in the same job, into the scene's folder
            job.object_after, job.placement = cue.object.request(), cue.object.placement
        self._enqueue(job)
        return job

    # -- pre-generation ------------------------------------------------------------------

    def start_pregen(self) -> None:
        self.pregen_on, self._failed = True, {}

    def pregen_tick(self, show: Show) -> None:
        """Called by the show desk's clock: the next missing scene when a worker is idle."""
        if not self._idle() or (self._wanted is None and not self.pregen_on):
            return
        rendered = self.rendered_keys(show)
        if rendered is None:
            return  # no model yet
        if (wanted := self._wanted) is not None:
            key = self.key(wanted)
            if key in self._failed or key in rendered:
                self._wanted = None  # made, or it failed (it would fail again)
            elif key not in self._background and key not in self._live:
                self.render_quiet(wanted)  # it stepped aside for a live job: now it is idle time again
                return
        if not self.pregen_on:
            return
        first = [c for c in show.cues if c.number == show.fallback]  # the fallback before any other
        order = first + [c for c in show.cues if c.number != show.fallback]
        missing = [c for c in order if self.key(c) not in rendered and self.key(c) not in self._failed]
        waiting = [c for c in missing if self.key(c) not in self._background and self.key(c) not in self._live]
        if waiting:
            self.render_quiet(waiting[0])
        elif not missing and not self._background:
            self.pregen_on = False
            keys = {self.key(c) for c in show.cues}
            logger.info("pre-generation of %r done: %d of %d scenes", show.name, len(keys & rendered), len(keys))
            if self._failed:
                numbers = ", ".join(dict.fromkeys(self._failed.values()))
                logger.warning("pre-generation of %r: cues %s could not be rendered", show.name, numbers)
                self._notifier.broadcast(
                    "/ldm3d/warning", "", "scenes_failed",
                    f"pre-generation of {show.name!r} is done but cues {numbers} could not be rendered "
                    "(their errors went to the log); showing them tries again",
                )  # fmt: skip

    def _ended(self, cue: Cue, key: str, address: str) -> None:
        with self._lock:
            self._background.pop(key, None)
            if address not in ("/ldm3d/ready", "/ldm3d/cancelled"):
                self._failed[key] = cue.number  # a scene that fails would fail again: not in this run
                logger.warning("pre-generation: cue %s failed; going on with the others", cue.number)
            if self.pregen_on and self._rendered is not None:
                keys = set(self._keys.values())
                self._notifier.broadcast("/ldm3d/show/progress", len(keys & self._rendered), len(keys))


def scene_request(cue: Cue) -> GenerateRequest | MorphRequest:
    """What renders a cue's scene: its world, or (``morph = true``) the morph from the cue before it,
    played over the cue's fade."""
    if cue.morph_from is None:
        return cue.request()
    before = cue.morph_from
    seconds = cue.fade if cue.fade else DEFAULT_SECONDS
    return MorphRequest(before.request(), cue.request(), cue.morph_frames, seconds, f"cue {before.number}", None)
