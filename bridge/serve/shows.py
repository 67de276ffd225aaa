"""The show desk: a loaded cue list, its playhead (the current cue and the standby), auto-follow
on the bridge's clock, and what the dome shows when a cue cannot.

Showing a cue whose scene is in the library sends ``/ldm3d/ready`` with the scene's files at
once (the engine is not touched: it works while a job runs, and before the model has loaded,
with the model identity the library remembers). A cue not rendered yet becomes a normal job
written into the library; the dome keeps its world meanwhile, and if the job fails the show's
fallback is shown (else the dome keeps its world). GO fires the **standby**: after a cue fires,
the standby is its ``goto`` cue or the next one; ``/ldm3d/cue/standby`` moves it. A cue's
``prewait`` delays its firing, its ``fade`` is sent as ``/ldm3d/display/fade`` first.

The state (show file, current cue, standby, running, the countdown's elapsed time, the world on
screen) is kept in the library's database, so a restarted bridge announces the current world
again (or, while it renders, the last world it showed) and finishes the cue's remaining time.
Scene keys, rendering and pre-generation are :mod:`bridge.serve.scenes`; what the dome is sent when a
cue cannot show, :mod:`bridge.serve.worlds`; reading cue files, :mod:`bridge.serve.show_files`.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from bridge.contract.engine_api import EngineLike
from bridge.errors import BridgeError, LibraryBusy, NoShow, UnknownCue
from bridge.notify.limits import LogLimiter
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.writer import TextureWriter
from bridge.serve.scenes import SceneDesk
from bridge.serve.show_files import ShowFiles
from bridge.serve.worlds import DomeWorld
from bridge.settings import BridgeSettings
from bridge.show import order
from bridge.show.clock import CueClock
from bridge.show.cues import Cue, Show
from bridge.show.library import SceneLibrary
from bridge.workers.jobs import Address, Job

logger = logging.getLogger(__name__)

#: While a cue's countdown runs, its elapsed time is saved this often (a restart resumes from it).
SAVE_ELAPSED_S = 5.0


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
        display: dict[str, float | int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self.library = library
        self._notifier = notifier
        self._display = display if display is not None else {}
        self._now = clock
        self._lock = threading.RLock()
        self.scenes = SceneDesk(settings, library, writer, notifier, enqueue, engine, idle, self._lock)
        self.show: Show | None = None
        self.current: int | None = None
        self.standby: int | None = None
        self.running = False
        #: ``shown``, ``rendering`` (its scene is being made, or waits for the model), ``failed`` (the
        #: fallback is shown), ``prewait`` (fired, waiting its pre-wait), or "" (nothing fired yet).
        self.cue_state = ""
        self.countdown = CueClock()
        self._prewait_until: float | None = None
        self._prewait_sender: Address | None = None
        #: A cue fired before any model identity was known: fired again once one is.
        self._waits_for_model: Address | bool | None = False
        self._resumed = False
        self._saved_at = 0.0
        self.world = DomeWorld(writer, notifier, self.scenes)
        self._files = ShowFiles(settings, check_prompt)
        #: Cue number → its failures in a row (since the show was loaded; a success clears it).
        self._failures: dict[str, int] = {}
        #: The loaded show's fallback was looked for in the library (and rendered if missing).
        self._fallback_checked = False
        #: A locked scene library, as the clock meets it: logged once per 10 s.
        self._log = LogLimiter(logger)
        #: The show's place, when a locked library could not take it: saved by the monitor's tick.
        self._unsaved: dict[str, Any] | None = None

    # -- commands ------------------------------------------------------------

    def load(self, raw_path: str, sender: Address | None, fire: bool = True) -> None:
        show = self._files.requested(raw_path)
        with self._lock:
            if not self._resumed:  # before the monitor's first tick after a start
                self._resumed = True  # a show loaded now replaces the one saved before a restart,
                self._restore_last_world()  # but the world on the dome is still the saved one
            old, at = self.show, self.current
            kept = old.cues[at].number if old is not None and at is not None and old.source == show.source else None
            if old is not None and kept is not None and show.index(kept) is not None:  # the same file, its cue there
                self._reload(old, show, sender)
                return
            logger.info("show %r loaded from %s: %d cues", show.name, show.source, len(show.cues))
            self._use(show)
            self.running = True
            start = order.start_index(show)
            if fire:
                try:
                    self._trigger(start, sender)
                except LibraryBusy:  # loaded, nothing fired: its first cue stands by (GO, or load again)
                    self._stand_by(start)
                    self._announce_state(sender)
                    raise
            else:  # "load without firing"
                self._stand_by(start)
                self._save()
                self._announce_state(sender)
            self._make_fallback(sender)

    def cue(self, number: str, sender: Address | None) -> None:
        with self._lock:
            self._trigger(self._index(number), sender)

    def set_standby(self, number: str, sender: Address | None) -> None:
        """``/ldm3d/cue/standby``: the cue GO fires next (any cue, a skipped one too)."""
        with self._lock:
            self.standby = self._index(number)
            self._save()
            self._announce_state(sender)

    def go(self, sender: Address | None, step: int = 1) -> None:
        """GO (``step`` 1) fires the standby; back (-1) the cue before the current one."""
        with self._lock:
            show = self._loaded()
            index = self.standby if step > 0 else self._step(self.current, -1)
            if index is None:
                at = show.cues[self.current].number if self.current is not None else show.cues[0].number
                if step < 0:
                    raise UnknownCue(f"cue {at!r} is the first of {show.name!r}")
                raise UnknownCue(f"cue {at!r} is the last of {show.name!r}: nothing stands by (see /ldm3d/cue/standby)")
            self._trigger(index, sender)

    def listing(self, sender: Address, bound: int | None) -> None:
        """``/ldm3d/cue/list``: one ``/ldm3d/cue/info`` per cue, in order, then ``/ldm3d/cue/end <count>``.

        A confirmed sender (``bound`` None) gets every cue, paced within its host's send budget (none
        is dropped). To an unconfirmed one the whole answer is at most ``bound`` bytes (``reply_factor``
        times the request), all messages together: the infos that fit, then ``reply_too_large`` saying
        how many it got and that subscribing gets the whole list (no ``/ldm3d/cue/end``: it is cut)."""
        with self._lock:
            show = self._loaded()
            rendered = self.scenes.rendered_keys(show)

            def info(cue: Cue) -> tuple[str, tuple[Arg, ...]]:
                done = int(rendered is not None and self.scenes.key(cue) in rendered)
                return "/ldm3d/cue/info", (cue.number, cue.name, done)

            items = [info(cue) for cue in show.cues]
        self._notifier.reply_list(sender, items, ("/ldm3d/cue/end", (len(items),)), bound, "cues")

    def set_running(self, running: bool, sender: Address | None, *, restart: bool = False) -> None:
        """Pause (the countdown freezes where it is) or resume it: from where it stood, or, with
        ``restart`` (``/ldm3d/show/start``), with the cue's whole duration again."""
        with self._lock:
            self._loaded()
            now = self._now()
            self.running = running
            if not running:
                self.countdown.pause(now)
            elif restart:
                self.countdown.restart(now)
            else:
                self.countdown.resume(now)
            self._save()
            self._announce_state(sender)

    def pregen(self, sender: Address | None) -> None:
        with self._lock:
            self._loaded()
            self.scenes.start_pregen()
            self._announce_state(sender)

    def state_args(self) -> tuple[Arg, ...]:
        """``/ldm3d/show/state``: show, current cue, its state, standby cue, scenes rendered, total,
        looping, running, cues skipped (failed ``show_skip_after`` times in a row), seconds left of
        the current cue's duration or pre-wait (-1: no countdown)."""
        with self._lock:
            show = self.show
            if show is None:
                return ("", "", "", "", 0, 0, 0, 0, 0, -1.0)
            rendered = self._rendered_or_none(show)
            keys = {self.scenes.key(c) for c in show.cues} if rendered is not None else set()
            return (
                show.name,
                show.cues[self.current].number if self.current is not None else "",
                self.cue_state,
                show.cues[self.standby].number if self.standby is not None else "",
                len(keys & (rendered or set())),
                len(keys) if keys else len(show.cues),
                int(show.loop),
                int(self.running),
                len(self.skipped()),
                self._remaining(self._now()),
            )

    def cues(self) -> list[dict[str, object]]:
        """Every cue of the loaded show: number, name, rendered, on screen, standing by, skipped."""
        with self._lock:
            show = self.show
            if show is None:
                return []
            rendered = self._rendered_or_none(show)
            skipped = set(self.skipped())
            return [
                {
                    "number": cue.number,
                    "name": cue.name,
                    "rendered": rendered is not None and self.scenes.key(cue) in rendered,
                    "current": index == self.current,
                    "standby": index == self.standby,
                    "skipped": cue.number in skipped,
                }
                for index, cue in enumerate(show.cues)
            ]

    def _rendered_or_none(self, show: Show) -> set[str] | None:
        """The show's rendered keys, or None (as before the model) while the library is locked: the
        state, the page and OSCQuery answer at once."""
        try:
            return self.scenes.rendered_keys(show)
        except LibraryBusy:
            return None

    def close(self) -> None:
        """The bridge stops: the place in the show (and the countdown's elapsed time) is saved."""
        with self._lock:
            if self.show is not None:
                self._save()

    def scene_added(self, key: str) -> None:
        """A scene was written into the library (by the worker's writer thread)."""
        self.scenes.added(key)

    def yield_to_live(self) -> None:
        self.scenes.yield_to_live()

    def skipped(self) -> list[str]:
        """The cues GO and auto-follow pass over: failed ``show_skip_after`` times in a row."""
        limit = self._settings.show_skip_after
        return [number for number, count in self._failures.items() if count >= limit]

    # -- the clock -------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Called by the bridge's monitor: resume after a restart, pre-waits, auto-follow, a model
        that came (or changed), pre-generation, scene rows a locked library could not take. A locked
        library stops this tick where it needs it (logged once per 10 s); the next tick tries again."""
        for step in (self._tick, self._flush):
            try:
                step(now)
            except LibraryBusy as exc:
                self._log.warning("library_busy", time.monotonic(), "the show's clock retries at each tick: %s", exc)
            except sqlite3.Error as exc:  # not a lock (a full disk…): the rows stay pending, a start adopts them
                self._log.warning("library_error", time.monotonic(), "the scene library: %s", exc)

    def _flush(self, now: float) -> None:
        """Scene rows and the show's place that a locked library could not take when they came. The
        place is tried again without waiting, under the desk's lock (no newer place saved meanwhile
        can be overwritten by it), at every tick until the library is free."""
        with self._lock:
            if (values := self._unsaved) is not None:
                self.library.save_state(wait=False, **values)  # LibraryBusy: still locked, the next tick
                self._unsaved = None
        if self.library.pending and (written := self.library.flush()):
            logger.info("the scene library is free again: %d scenes recorded", written)

    def _tick(self, now: float) -> None:
        with self._lock:
            if self.scenes.identity_changed() and self.show is not None and self.current is not None:
                self._fire(self.current, None)  # another model: its own scene of the current cue
            if not self._resumed:
                self._resumed = True
                try:
                    self._resume()
                except LibraryBusy:
                    self._resumed = False  # again at the next tick
                    raise
            show = self.show
            if show is None:
                return
            self.scenes.pregen_tick(show)
            if self.current is None:  # nothing fired yet: a first failing cue will need the fallback
                if not self._fallback_checked:
                    self._make_fallback(None)
                return
            if self._waits_for_model is not False and self.scenes.ready():
                sender, self._waits_for_model = self._waits_for_model, False
                try:
                    self._fire(self.current, sender if isinstance(sender, tuple) else None)
                except LibraryBusy:
                    self._waits_for_model = sender  # fired at the next tick
                    raise
            if not self._fallback_checked:
                self._make_fallback(None)  # the model is here now (after the current cue's own job)
            if self._prewait_until is not None and now >= self._prewait_until:
                self._fire(self.current, self._prewait_sender)
            cue = show.cues[self.current]
            # A failed cue (the fallback on screen) moves on like a shown one: a loop never stops by itself.
            if self.running and cue.follow and self.cue_state in ("shown", "failed") and self.countdown.due(now):
                if self.standby is not None:
                    self._trigger(self.standby, None)
            elif self.running and self.countdown.length is not None and now - self._saved_at >= SAVE_ELAPSED_S:
                self._save()

    # -- firing ----------------------------------------------------------------

    def _trigger(self, index: int, sender: Address | None, standby: int | None = None) -> None:
        """``index`` is the current cue now; it fires at once, or after its pre-wait. ``standby``: the
        cue to stand by (a restart's saved one); None: the one that follows ``index``."""
        show = self._loaded()
        cue = show.cues[index]
        before = self.current, self.standby
        self.current, self.standby = index, standby if standby is not None else self._after(index)
        if cue.prewait > 0:
            self.cue_state = "prewait"
            self._prewait_until, self._prewait_sender = self._now() + cue.prewait, sender
            self.countdown.clear()
            self._save()
            self._announce_state(sender)
        else:
            try:
                self._fire(index, sender)
            except LibraryBusy:  # nothing fired: the playhead stays where it was
                self.current, self.standby = before
                raise

    def _fire(self, index: int, sender: Address | None, elapsed: float = 0.0) -> None:
        """Send the cue's world (or render it): its fade first, its countdown from when it shows."""
        show = self._loaded()
        cue = show.cues[index]
        files = self.scenes.files(cue)  # first (LibraryBusy changes nothing); also before the model, remembered
        self._prewait_until = None
        if cue.fade is not None and self._display.get("fade") != cue.fade:
            self._display["fade"] = cue.fade
            self._notifier.notify(sender, "/ldm3d/display/fade", cue.fade)
        if files is not None:
            self.cue_state = "shown"
            self.world.send(files, sender, cue.fade, cue.object.placement if cue.object else None)
            self.countdown.start(cue.duration, self._now(), running=self.running, elapsed=elapsed)
        elif not self.scenes.ready():  # made once a worker has the model (tick fires it again then)
            self.cue_state, self._waits_for_model = "rendering", sender
            self.countdown.clear()
            self.world.hold(self.show)
        else:
            self.cue_state = "rendering"
            self.countdown.clear()
            key = self.scenes.key(cue)
            self.scenes.render_live(cue, sender, lambda address: self._scene_job_ended(key, address))
        self._save()
        self._announce_state(sender)

    def _scene_job_ended(self, key: str, address: str) -> None:
        """A cue's scene job ended: shown (its /ldm3d/ready went out), or the fallback instead."""
        with self._lock:
            show = self.show
            if show is None or self.current is None or self.scenes.key(show.cues[self.current]) != key:
                return  # the show moved on meanwhile
            cue = show.cues[self.current]
            self.countdown.start(cue.duration, self._now(), running=self.running)  # from now, shown or failed
            if address == "/ldm3d/ready":
                self.cue_state = "shown"
                self._failures.pop(cue.number, None)
                with contextlib.suppress(LibraryBusy):  # (answered from memory while its row is pending)
                    self.world.shown(self.library.scene_id(key))
                    files = self.scenes.files(cue)
                    if files is not None:  # its world went out with the job's /ldm3d/ready: now its object
                        self.world.place(files, None, cue.object.placement if cue.object else None)
                self.world.sent = True
            else:
                self.cue_state = "failed"
                self._failures[cue.number] = self._failures.get(cue.number, 0) + 1
                if self._failures[cue.number] == self._settings.show_skip_after:
                    logger.warning(
                        "cue %s failed %d times in a row: GO and auto-follow skip it until the show is loaded again",
                        cue.number,
                        self._failures[cue.number],
                    )
                self.world.hold(self.show, after_failure=cue.number)
            self._save()
            self._announce_state(None)

    # -- loading and resuming ------------------------------------------------------

    def _reload(self, old: Show, show: Show, sender: Address | None) -> None:
        """The same cue file again (edited): the current cue and the standby stay, by number; a
        current cue whose world changed fires again, one that did not keeps its countdown."""
        assert self.current is not None
        playhead = self.current, self.standby
        number = old.cues[self.current].number
        standby = old.cues[self.standby].number if self.standby is not None else None
        before = self.scenes.key(old.cues[self.current]) if self.scenes.identity() else None
        self._use(show)
        index = show.index(number)
        assert index is not None
        self.current = index
        kept = show.index(standby) if standby is not None else None
        self.standby = kept if kept is not None else self._after(index)
        logger.info("show %r loaded again from %s: %d cues; still at cue %s", show.name, show.source,
                    len(show.cues), number)  # fmt: skip
        if before is None or self.scenes.key(show.cues[index]) != before:
            try:
                self._fire(index, sender)
            except LibraryBusy:  # not loaded again: the show stays as it was (load it again)
                self._use(old)
                self.current, self.standby = playhead
                raise
        else:
            self.countdown.length = show.cues[index].duration  # a changed duration counts from the same start
            self._save()
            self._announce_state(sender)
        self._make_fallback(sender)

    def _resume(self) -> None:
        """After a restart: the saved show, cue, standby and countdown, announced to the (restored)
        subscribers. Without a saved show, the ``show`` setting's cue file (``serve --show``) starts at
        its fallback (or first) cue."""
        state = self.library.load_state()
        source = state.get("show")
        configured = self._files.configured
        if not source and configured is not None:
            state, source = {}, str(configured)  # from its start: its fallback (or first) cue, running
        if not source:
            return
        try:
            show = self._files.saved(str(source))
        except BridgeError as exc:
            logger.error("the saved show could not be loaded again: %s", exc)
            return
        self._use(show)
        self.running = bool(state.get("running", True))
        self.world.last = _saved_world(state)
        saved = show.index(str(state.get("cue"))) if state.get("cue") is not None else None
        index = saved if saved is not None else order.start_index(show)
        logger.info("resuming show %r at cue %s", show.name, show.cues[index].number)
        self.current = index
        standby = show.index(str(state.get("standby"))) if state.get("standby") is not None else None
        self.standby = standby if standby is not None else self._after(index)
        if saved is not None and state.get("cue_state") == "prewait":
            self._trigger(index, None, standby)  # its pre-wait again, announced with the saved standby
        else:
            elapsed = state.get("elapsed")
            self._fire(index, None, elapsed=float(elapsed) if isinstance(elapsed, int | float) else 0.0)
        if self.cue_state == "rendering":
            self.world.hold(self.show)  # a restarted display is not left black while the cue renders
        self._make_fallback(None)

    def _restore_last_world(self) -> None:
        """The world the saved state names, without the saved show (a locked library: the newest job)."""
        try:
            self.world.last = _saved_world(self.library.load_state())
        except LibraryBusy:
            logger.warning("the scene library is locked: a first failing cue holds the newest job")

    def _make_fallback(self, sender: Address | None) -> None:
        """A fallback that is not rendered yet is rendered now, before anything else in idle time."""
        show = self.show
        if show is None or show.fallback is None or not self.scenes.ready():
            return
        self._fallback_checked = True
        fallback = show.cue(show.fallback)
        try:
            missing = (
                fallback is not None and self.scenes.files(fallback) is None and self.scenes.render_wanted(fallback)
            )
        except LibraryBusy:
            self._fallback_checked = False  # looked for again at the next tick
            return
        if fallback is not None and missing:
            self._notifier.notify(
                sender, "/ldm3d/warning", "", "fallback_not_rendered",
                f"the fallback cue {fallback.number} of {show.name!r} is not rendered yet; it is being rendered "
                "now (until then a failed cue keeps the world on screen)",
            )  # fmt: skip

    # -- inside ------------------------------------------------------------------

    def _stand_by(self, index: int) -> None:
        """Nothing fired: cue ``index`` stands by, the dome keeps its world."""
        self.current, self.standby, self.cue_state = None, index, ""
        self.countdown.clear()

    def _use(self, show: Show) -> None:
        self.show, self._failures, self._prewait_until, self._waits_for_model = show, {}, None, False
        self._fallback_checked = False
        self.scenes.use()

    def _loaded(self) -> Show:
        if self.show is None:
            raise NoShow("no show is loaded; send /ldm3d/show/load <cue file> first")
        return self.show

    def _index(self, number: str) -> int:
        show = self._loaded()
        index = show.index(number)
        if index is None:
            cues = ", ".join(c.number for c in show.cues)
            raise UnknownCue(f"show {show.name!r} has no cue {number!r}; cues: {cues}")
        return index

    def _after(self, index: int) -> int | None:
        return order.after(self._loaded(), index, set(self.skipped()))

    def _step(self, index: int | None, by: int) -> int | None:
        return order.step(self.show, index, by, set(self.skipped())) if self.show and index is not None else None

    def _remaining(self, now: float) -> float:
        if self.cue_state == "prewait" and self._prewait_until is not None:
            return round(max(0.0, self._prewait_until - now), 1)
        remaining = self.countdown.remaining(now)
        return -1.0 if remaining is None else round(remaining, 1)

    def _save(self) -> None:
        show = self.show
        now = self._now()
        self._saved_at = now

        def number(index: int | None) -> str | None:
            return show.cues[index].number if show is not None and index is not None else None

        values: dict[str, Any] = dict(
            show=show.source if show else "", cue=number(self.current), standby=number(self.standby),
            running=self.running, cue_state=self.cue_state, elapsed=round(self.countdown.elapsed(now), 2),
            world=self.world.last,
        )  # fmt: skip
        self._unsaved = None
        try:
            self.library.save_state(wait=False, **values)  # on the thread of the command: never waits
        except LibraryBusy as exc:  # saved by the monitor's tick once the library is free
            self._unsaved = values
            self._log.warning("library_busy", time.monotonic(), "the show's place is saved once it is free: %s", exc)
        except Exception as exc:  # noqa: BLE001 - a show goes on without its saved state
            logger.warning("could not save the show's state: %s", exc)

    def _announce_state(self, sender: Address | None) -> None:
        self._notifier.notify(sender, "/ldm3d/show/state", *self.state_args())


def _saved_world(state: Mapping[str, Any]) -> str | None:
    """The world a saved state names (``world.last``), or None."""
    world = state.get("world")
    return world if isinstance(world, str) else None


__all__ = ["Cue", "ShowDesk"]
