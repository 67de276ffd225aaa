"""The show desk: a loaded cue list, its current cue, auto-follow on the bridge's clock, and
pre-generation in idle time.

Showing a cue whose scene is in the library sends ``/ldm3d/ready`` with the scene's files at
once (the engine is not touched, so it works while a job runs). A cue not rendered yet becomes
a normal job that is written into the library; the dome keeps its world meanwhile, and if the
job fails the show's ``fallback`` cue is shown. The state (show file, current cue, running) is
kept in the library's database, so a restarted bridge announces the current world again and
goes on with the loop.

Pre-generation (``/ldm3d/show/pregen``) submits a missing scene whenever the queue is empty
and a worker idle (so with several workers, several scenes render at once), as a quiet job
(no progress, no messages); a live job that finds no idle worker cancels one of them
(:meth:`ShowDesk.yield_to_live`) and that scene is tried again later.

Slightly over our ~350-line rule: the show desk's clock, auto-follow and recall are one state
that one lock guards.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bridge.contract.engine_api import EngineLike
from bridge.contract.paths import resolve_input_path
from bridge.errors import BridgeError, NoShow, NotReady, NotSupported, RefusedPrompt, UnknownCue
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.job_ids import new_job_id
from bridge.output.writer import JobFiles, TextureWriter
from bridge.settings import BridgeSettings
from bridge.show.cues import Cue, Show, load_show
from bridge.show.library import SceneLibrary
from bridge.workers.jobs import Address, Job

logger = logging.getLogger(__name__)


class ShowDesk:
    def __init__(
        self,
        settings: BridgeSettings,
        library: SceneLibrary,
        writer: TextureWriter,
        notifier: Notifier,
        enqueue: Callable[[Job], None],
        engine: Callable[[], EngineLike | None],
        idle: Callable[[], bool],
        check_prompt: Callable[[str], None] = lambda prompt: None,
    ) -> None:
        self._settings = settings
        self.library = library
        self._writer = writer
        self._notifier = notifier
        self._enqueue = enqueue
        self._engine = engine
        self._idle = idle
        self._check_prompt = check_prompt
        self._lock = threading.RLock()
        self.show: Show | None = None
        self.current: int | None = None
        self.running = False
        #: ``shown``, ``rendering`` (its scene is being made) or ``failed`` (the fallback is shown).
        self.cue_state = ""
        self._shown_at = 0.0
        self._pregen = False
        #: Pre-generation jobs queued or running, by scene key.
        self._background: dict[str, Job] = {}
        self._resumed = False
        #: Cue number → scene key, and the keys in the library (both kept for the loaded show).
        self._keys: dict[str, str] = {}
        self._rendered: set[str] | None = None
        #: Scene keys a live job is rendering (cues shown before their scenes were made).
        self._live: set[str] = set()
        #: Cue number → its failures in a row (since the show was loaded; a success clears it).
        self._failures: dict[str, int] = {}

    # -- commands ------------------------------------------------------------

    def load(self, raw_path: str, sender: Address | None) -> None:
        folders = [Path(d) for d in self._settings.input_dirs]
        if not folders:
            raise NotSupported("/ldm3d/show/load is off: start the bridge with input_dirs (the folders it may read)")
        self._engine_or_refuse()
        show = self._checked(load_show(resolve_input_path(raw_path, folders)))
        with self._lock:
            self._resumed = True  # a show loaded now replaces the one saved before a restart
            self._use(show)
            self.running, self._pregen = True, False
            start = show.index(show.fallback) if show.fallback is not None else 0
            logger.info("show %r loaded from %s: %d cues", show.name, show.source, len(show.cues))
            self._show(start or 0, sender)

    def cue(self, number: str, sender: Address | None) -> None:
        with self._lock:
            show = self._loaded()
            index = show.index(number)
            if index is None:
                raise UnknownCue(
                    f"show {show.name!r} has no cue {number!r}; cues: {', '.join(c.number for c in show.cues)}"
                )
            self._show(index, sender)

    def go(self, sender: Address | None, step: int = 1) -> None:
        with self._lock:
            show = self._loaded()
            index = self._next(step)
            if index is None:
                where = "last" if step > 0 else "first"
                raise UnknownCue(f"cue {show.cues[self.current or 0].number!r} is the {where} of {show.name!r}")
            self._show(index, sender)

    def listing(self, sender: Address, bound: int | None) -> None:
        with self._lock:
            show = self._loaded()
            rendered = self._rendered_keys()
            for cue in show.cues:
                done = int(self._key(cue) in rendered) if rendered is not None else 0
                self._notifier.reply(sender, "/ldm3d/cue/info", cue.number, cue.name, done, bound=bound)

    def set_running(self, running: bool, sender: Address | None) -> None:
        with self._lock:
            self._loaded()
            self.running = running
            self._shown_at = time.monotonic()  # a resumed cue gets its full duration again
            self._save()
            self._announce_state(sender)

    def pregen(self, sender: Address | None) -> None:
        with self._lock:
            self._loaded()
            self._engine_or_refuse()
            self._pregen = True
            self._announce_state(sender)

    def state_args(self) -> tuple[Arg, ...]:
        """``/ldm3d/show/state``: show, current cue, its state, next cue, scenes rendered, total, looping, running,
        cues skipped (failed ``show_skip_after`` times in a row)."""
        with self._lock:
            show = self.show
            if show is None:
                return ("", "", "", "", 0, 0, 0, 0, 0)
            keys = {self._key(c) for c in show.cues} if self._engine() is not None else set()
            rendered = self._rendered_keys() or set()
            current = show.cues[self.current].number if self.current is not None else ""
            following = self._next(1)
            return (
                show.name,
                current,
                self.cue_state,
                show.cues[following].number if following is not None else "",
                len(keys & rendered),
                len(keys) if keys else len(show.cues),
                int(show.loop),
                int(self.running),
                len(self.skipped()),
            )

    def cues(self) -> list[dict[str, object]]:
        """Every cue of the loaded show: number, name, whether its scene is rendered, whether it is on screen."""
        with self._lock:
            show = self.show
            if show is None:
                return []
            rendered = self._rendered_keys()
            skipped = set(self.skipped())
            return [
                {
                    "number": cue.number,
                    "name": cue.name,
                    "rendered": rendered is not None and self._key(cue) in rendered,
                    "current": index == self.current,
                    "skipped": cue.number in skipped,
                }
                for index, cue in enumerate(show.cues)
            ]

    def scene_added(self, key: str) -> None:
        """A scene was written into the library (by the worker's writer thread)."""
        with self._lock:
            if self._rendered is not None:
                self._rendered.add(key)

    def yield_to_live(self) -> None:
        """A live job arrived and no worker is idle: a pre-generation job steps aside (tried again later)."""
        with self._lock:
            job = next((j for j in reversed(self._background.values()) if not j.cancel.cancelled), None)
        if job is not None:
            job.cancel.cancel()

    # -- the clock -------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Called by the bridge's monitor: resume after a restart, auto-follow, pre-generate."""
        with self._lock:
            if not self._resumed and self._engine() is not None:
                self._resumed = True
                self._resume()
            show = self.show
            if show is None or self.current is None:
                return
            cue = show.cues[self.current]
            due = cue.duration is not None and now - self._shown_at >= cue.duration
            # A failed cue (the fallback on screen) moves on like a shown one: a loop never stops by itself.
            if self.running and cue.follow and self.cue_state in ("shown", "failed") and due:
                following = self._next(1)
                if following is not None:
                    self._show(following, None)
            if self._pregen and self._idle():
                self._pregen_next()

    # -- inside ------------------------------------------------------------------

    def _loaded(self) -> Show:
        if self.show is None:
            raise NoShow("no show is loaded; send /ldm3d/show/load <cue file> first")
        return self.show

    def _engine_or_refuse(self) -> EngineLike:
        engine = self._engine()
        if engine is None:
            raise NotReady(
                "no worker has the model ready (loading, or restarting); cues can be shown once one has "
                "(see /ldm3d/state)"
            )
        return engine

    def _use(self, show: Show) -> None:
        self.show, self._keys, self._rendered, self._failures = show, {}, None, {}

    def skipped(self) -> list[str]:
        """The cues GO and auto-follow pass over: failed ``show_skip_after`` times in a row."""
        limit = self._settings.show_skip_after
        return [number for number, count in self._failures.items() if count >= limit]

    def _key(self, cue: Cue) -> str:
        key = self._keys.get(cue.number)
        if key is None:
            key = self._keys[cue.number] = cue.scene_key(self._engine_or_refuse().identity)
        return key

    def _rendered_keys(self) -> set[str] | None:
        if self.show is None or self._engine() is None:
            return None
        if self._rendered is None:
            self._rendered = self.library.rendered(self._key(c) for c in self.show.cues)
        return self._rendered

    def _next(self, step: int) -> int | None:
        show = self.show
        if show is None or self.current is None:
            return None
        skipped = set(self.skipped())
        index = self.current
        for _ in range(len(show.cues)):  # past the cues that keep failing, at most once round
            index += step
            if not 0 <= index < len(show.cues):
                if not show.loop:
                    return None
                index %= len(show.cues)
            if show.cues[index].number not in skipped:
                return index
        return None

    def _show(self, index: int, sender: Address | None) -> None:
        show = self._loaded()
        cue = show.cues[index]
        key = self._key(cue)
        self.current = index
        self._shown_at = time.monotonic()
        files = self._scene_files(key)
        if files is not None:
            self.cue_state = "shown"
            self._notifier.notify(sender, "/ldm3d/ready", *files.ready_args())
        else:
            self.cue_state = "rendering"
            if key not in self._live:  # the same cue asked again while it renders: one job
                background = self._background.get(key)
                if background is not None:  # pre-generation was making this very scene: it is made live now
                    background.cancel.cancel()
                elif not self._idle():
                    self.yield_to_live()
                self._live.add(key)
                self._render(cue, key, sender, quiet=False, on_done=lambda address: self._scene_job_ended(key, address))
        self._save()
        self._announce_state(sender)

    def _scene_files(self, key: str) -> JobFiles | None:
        scene = self.library.scene_id(key)
        return self._writer.find(scene) if scene is not None else None

    def _render(
        self, cue: Cue, key: str, sender: Address | None, *, quiet: bool, on_done: Callable[[str], None]
    ) -> Job:
        request = cue.request()
        job = Job(new_job_id(), request, sender, scene_key=key, quiet=quiet, upscale_after=cue.upscale, on_done=on_done)
        self._enqueue(job)
        return job

    def _scene_job_ended(self, key: str, address: str) -> None:
        """A cue's scene job ended: shown (its /ldm3d/ready went out), or the fallback instead."""
        with self._lock:
            self._live.discard(key)
            show = self.show
            if show is None or self.current is None or self._key(show.cues[self.current]) != key:
                return  # the show moved on meanwhile
            number = show.cues[self.current].number
            self._shown_at = time.monotonic()  # its duration runs from now, shown or failed
            if address == "/ldm3d/ready":
                self.cue_state = "shown"
                self._failures.pop(number, None)
            else:
                self.cue_state = "failed"
                self._failures[number] = self._failures.get(number, 0) + 1
                if self._failures[number] == self._settings.show_skip_after:
                    logger.warning(
                        "cue %s failed %d times in a row: GO and auto-follow skip it until the show is loaded again",
                        number,
                        self._failures[number],
                    )
                self._show_fallback()
            self._announce_state(None)

    def _show_fallback(self) -> None:
        show = self.show
        if show is None or show.fallback is None:
            return
        fallback = show.cue(show.fallback)
        files = self._scene_files(self._key(fallback)) if fallback is not None else None
        if files is not None:
            logger.warning("cue %s failed; showing the fallback cue %s", self.current, show.fallback)
            self._notifier.broadcast("/ldm3d/ready", *files.ready_args())

    def _pregen_next(self) -> None:
        show = self._loaded()
        rendered = self._rendered_keys() or set()
        keys = {self._key(cue) for cue in show.cues}
        missing = [(cue, key) for cue in show.cues if (key := self._key(cue)) not in rendered]
        if not missing:
            if not self._background:
                self._pregen = False
                logger.info("pre-generation of %r done: %d scenes", show.name, len(rendered))
                self._announce_state(None)
            return
        # Not one a worker already renders (for pre-generation, or live because its cue was shown).
        waiting = [(cue, key) for cue, key in missing if key not in self._background and key not in self._live]
        if not waiting:
            return
        cue, key = waiting[0]

        def done(address: str) -> None:
            with self._lock:
                self._background.pop(key, None)
                if address == "/ldm3d/ready" or address == "/ldm3d/cancelled":
                    made = len(keys & (self._rendered_keys() or set()))
                    self._notifier.broadcast("/ldm3d/show/progress", made, len(keys))
                else:  # a scene that fails would fail again: stop rather than loop on it
                    self._pregen = False
                    logger.warning("pre-generation stopped: cue %s failed", cue.number)

        self._background[key] = self._render(cue, key, None, quiet=True, on_done=done)

    def _resume(self) -> None:
        """After a restart: the saved show and cue, announced to the (restored) subscribers. Without a
        saved show, the ``show`` setting's cue file (``serve --show``) starts at its fallback (or first) cue."""
        state = self.library.load_state()
        source = state.get("show")
        configured = Path(self._settings.show).resolve() if self._settings.show else None
        if not source and configured is not None:
            state, source = {"show": str(configured), "cue": None, "running": True}, str(configured)
        if not source:
            return
        try:
            if configured is not None and Path(str(source)) == configured:  # the operator's own file
                show = load_show(configured)
            else:
                folders = [Path(d) for d in self._settings.input_dirs]
                if not folders:
                    raise NotSupported("the bridge has no input_dirs now")
                show = load_show(resolve_input_path(source, folders))  # still inside the input folders
            self._checked(show)
        except BridgeError as exc:
            logger.error("the saved show could not be loaded again: %s", exc)
            return
        self._use(show)
        self.running = bool(state.get("running", True))
        index = show.index(str(state.get("cue", ""))) if state.get("cue") is not None else None
        if index is None and show.fallback is not None:
            index = show.index(show.fallback)
        logger.info("resuming show %r at cue %s", show.name, state.get("cue"))
        self._show(index if index is not None else 0, None)

    def _checked(self, show: Show) -> Show:
        """``show``, once every cue's prompt passed the prompt rules (RefusedPrompt names the cue)."""
        for cue in show.cues:
            try:
                self._check_prompt(str(cue.params["prompt"]))
            except RefusedPrompt as exc:
                raise RefusedPrompt(f"show {show.name!r}, cue {cue.number}: {exc}") from None
        return show

    def _save(self) -> None:
        show = self.show
        cue = show.cues[self.current].number if show is not None and self.current is not None else None
        try:
            self.library.save_state(show=show.source if show else "", cue=cue, running=self.running)
        except Exception as exc:  # noqa: BLE001 - a show goes on without its saved state
            logger.warning("could not save the show's state: %s", exc)

    def _announce_state(self, sender: Address | None) -> None:
        self._notifier.notify(sender, "/ldm3d/show/state", *self.state_args())
