"""Decisions of the TouchDesigner side, in plain Python (no TouchDesigner imports), tested
outside TouchDesigner. The extension (ldm3d_ext.py) feeds it events and applies its actions.

Two buffers, A and B, each a pair of Movie File In TOPs (rgb, depth). The front buffer is on
screen; a new world loads into the back buffer; only once both of its textures have loaded
does a crossfade start; when the fade ends, the buffers swap roles. A job seen running (its
`/ldm3d/progress`, a preview or a morph frame: ``on_running``) whose `/ldm3d/ready` comes after a
newer world's is stale and ignored (job ids sort by time: with two workers, a job that finished
late must not replace the newer world). A ready for a job not seen running is a world sent on
purpose (`/ldm3d/recall`, a show's cue, the fallback: scene ids are as old as their render) and
is always shown, unless it is the world already on screen or on its way. A ready arriving during
a fade waits and loads into the new back buffer afterwards.

Which buffer is on screen is read from the Cross TOP's value (0 shows A, 1 shows B), never
remembered across a re-initialisation, so a reloaded extension with B on screen loads the
next world into A. The crossfade time is read at each switch; with Hold on, the world on
screen stays and the newest ready waits until Hold is released.

A morph plays through the same two buffers as a chain of steps (``on_morph``): each frame loads
into the back buffer and fades in, the fade of step k ending ``step_s`` × (k + 1) after the first
step began (a step whose files were read after its time fades over a whole ``step_s``, and the
rest of the chain moves later by as much). A newer world arriving during a morph cuts the chain
short after the step on screen: the newest always wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Jobs remembered as running (a bridge's queue is at most a few dozen).
MAX_RUNNING = 64


@dataclass(frozen=True)
class LoadBack:
    """Point the back buffer's Movie File In TOPs at these files."""

    buffer: str
    rgb: str
    depth: str


@dataclass(frozen=True)
class SetCross:
    """Cross TOPs' cross parameter: 0 shows buffer A, 1 shows buffer B."""

    value: float


@dataclass(frozen=True)
class Shown:
    """A world is now fully on screen."""

    job_id: str
    buffer: str


Action = LoadBack | SetCross | Shown


@dataclass
class _Job:
    id: str
    rgb: str
    depth: str
    loaded: set[str] = field(default_factory=set)
    #: A morph's step: its frame fades in over this many seconds (None: the Crossfade parameter).
    step_s: float | None = None


def _other(buffer: str) -> str:
    return "B" if buffer == "A" else "A"


class WorldSwitcher:
    def __init__(self, crossfade_s: float = 2.0, cross: float = 0.0) -> None:
        self.crossfade_s = max(0.0, crossfade_s)
        self.front = "B" if cross >= 0.5 else "A"  # what the Cross TOPs show now
        self.hold = False
        self.shown: str | None = None
        self.loading: _Job | None = None
        self.waiting: _Job | None = None
        self.fading: _Job | None = None
        self.chain: list[_Job] = []  # a morph's steps still to load, in order
        self._running: dict[str, None] = {}  # jobs seen running whose world has not come (oldest first)
        self._fade_start = 0.0
        self._fade_s = self.crossfade_s  # the running fade's length
        self._next_due: float | None = None  # when the morph's next step should be fully on screen
        self.status = "waiting for the bridge"
        self.error = ""

    @property
    def back(self) -> str:
        return _other(self.front)

    def newest(self) -> str:
        """The newest job id on screen, loading, fading in or waiting ("" when none): previews and
        readies of that job or older ones are stale."""
        ids = [j.id for j in (self.loading, self.waiting, self.fading, *self.chain) if j is not None]
        if self.shown is not None:
            ids.append(self.shown)
        return max(ids, default="")

    def sync(self, cross: float) -> None:
        """Take the front buffer from the Cross TOPs' value (unless a fade of ours is running)."""
        if self.fading is None:
            self.front = "B" if cross >= 0.5 else "A"

    def set_hold(self, hold: bool) -> list[Action]:
        """Hold on: keep the world on screen, the newest ready waits. Off: the waiting one loads."""
        self.hold = hold
        if hold or self.fading is not None or self.loading is not None:
            return []
        return self._next()

    def _next(self) -> list[Action]:
        """Load what waits: the newest world, else the morph's next step."""
        if self.waiting is not None:
            waiting, self.waiting = self.waiting, None
            return self._load(waiting)
        if self.chain:
            return self._load(self.chain.pop(0))
        return []

    def on_running(self, job_id: str) -> None:
        """A job of the bridge is running (its progress, a preview, a morph frame was heard)."""
        self._running[job_id] = None
        while len(self._running) > MAX_RUNNING:
            del self._running[next(iter(self._running))]

    def _stale(self, job_id: str) -> bool:
        """Whether the world of ``job_id``, arriving now, must not be shown (see the module's rule)."""
        live = self._running.pop(job_id, 0) is None
        in_flight = [j.id for j in (self.loading, self.waiting, self.fading, *self.chain) if j is not None]
        if job_id in in_flight or (job_id == self.shown and not in_flight):
            return True  # on screen already, or on its way
        return live and job_id <= self.newest()  # a job that finished after a newer world

    def on_ready(self, job_id: str, rgb: str, depth: str) -> list[Action]:
        if self._stale(job_id):
            return []
        job = _Job(job_id, rgb, depth)
        self.chain = []  # a morph still playing stops after the step on screen
        if self.fading is not None or self.hold:
            self.waiting = job
            return []
        return self._load(job)

    def on_morph(self, morph_id: str, frames: list[tuple[str, str]], step_s: float) -> list[Action]:
        """Morph ``morph_id`` arrived: play ``frames`` ((rgb, depth) in order, the last the world it
        arrives at) as a chain of crossfades, one every ``step_s`` seconds."""
        if self._stale(morph_id) or not frames:
            return []
        self.chain = [_Job(morph_id, rgb, depth, step_s=max(0.0, step_s)) for rgb, depth in frames]
        self.waiting, self._next_due = None, None
        if self.fading is not None or self.hold:
            return []
        return self._next()

    def _load(self, job: _Job) -> list[Action]:
        self.loading = job
        return [LoadBack(self.back, job.rgb, job.depth)]

    def on_loaded(
        self, buffer: str, kind: str, path: str, now: float, crossfade_s: float | None = None
    ) -> list[Action]:
        """A texture of ``buffer`` finished loading ``path``; ``kind`` is "rgb" or "depth".
        ``crossfade_s``: the Crossfade parameter now (read at each switch)."""
        job = self.loading
        if job is None or buffer != self.back or path != (job.rgb if kind == "rgb" else job.depth):
            return []  # a late load of a file no longer wanted
        job.loaded.add(kind)
        if job.loaded != {"rgb", "depth"}:
            return []
        if crossfade_s is not None:
            self.crossfade_s = max(0.0, crossfade_s)
        self._fade_s = self.crossfade_s
        if job.step_s is not None:  # a morph's step: keep to the chain's clock
            due = self._next_due if self._next_due is not None and self._next_due > now else now + job.step_s
            self._fade_s, self._next_due = due - now, due + job.step_s
        self.loading, self.fading, self._fade_start = None, job, now
        return self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """Call every frame: advances the crossfade."""
        job = self.fading
        if job is None:
            return []
        t = 1.0 if self._fade_s <= 0 else min(1.0, (now - self._fade_start) / self._fade_s)
        target_b = self.back == "B"
        actions: list[Action] = [SetCross(t if target_b else 1.0 - t)]
        if t >= 1.0:
            self.front, self.shown, self.fading = self.back, job.id, None
            actions.append(Shown(job.id, self.front))
            if not self.hold:
                actions += self._next()
        return actions

    def on_state(self, state: str, queue: int, running: str, model: str, workers: tuple[int, int] | None = None) -> str:
        """``workers``: alive, in all (a bridge with several GPUs); shown when there are several or one is down."""
        detail = f", running {running}" if running else ""
        if workers is not None and (workers[1] > 1 or workers[0] < workers[1]):
            detail += f" · workers {workers[0]}/{workers[1]}"
        self.status = f"{state} · {model} · queue {queue}{detail}"
        return self.status

    def on_error(self, job_id: str, code: str, message: str) -> str:
        self.error = f"{code}: {message}" + (f" (job {job_id})" if job_id else "")
        return self.error


class SubscriptionKeeper:
    """When to send ``/ldm3d/subscribe``: at once, then again at half the lease the bridge granted.

    The bridge lets a subscription lapse unless it is renewed (``/ldm3d/subscribed host port lease_s``);
    until an answer arrives, the subscription is retried every ``retry_s`` seconds."""

    def __init__(self, retry_s: float = 5.0) -> None:
        self.retry_s = retry_s
        self.next_at = 0.0

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def sent(self, now: float) -> None:
        self.next_at = now + self.retry_s

    def now(self, now: float) -> None:
        """Subscribe at the next frame (the bridge restarted or went quiet), then retry until answered."""
        self.next_at = now

    def on_subscribed(self, lease_s: float, now: float) -> None:
        self.next_at = now + max(self.retry_s, lease_s / 2)


class BridgeWatch:
    """Notices a bridge that went quiet (``missed`` heartbeats) or restarted (a new boot id in
    ``/ldm3d/state``): either way TouchDesigner must subscribe again."""

    def __init__(self, period_s: float = 2.0, missed: int = 3) -> None:
        self.period_s = period_s
        self.missed = missed
        self.boot_id: str | None = None
        self.last: float | None = None
        self.online = False

    def on_state(self, boot_id: str, now: float) -> bool:
        """A heartbeat; True when the bridge restarted since the last one (subscribe again)."""
        if self.last is not None and now > self.last:
            self.period_s = min(max(now - self.last, 0.5), 60.0)  # the bridge's own heartbeat period
        restarted = self.boot_id is not None and boot_id != self.boot_id
        self.boot_id, self.last, self.online = boot_id, now, True
        return restarted

    def tick(self, now: float) -> bool:
        """True once when the heartbeat stops (subscribe again: a restarted bridge knows us not)."""
        if self.online and self.last is not None and now - self.last > self.missed * self.period_s:
            self.online = False
            return True
        return False


class Dimmer:
    """Blackout as a fade: the world's brightness (the GLSL MAT's ``uBrightness``) moves toward 0 while
    Blackout is on and back to 1 when it is off, a full swing taking ``fade_s`` seconds (0: at once)."""

    def __init__(self) -> None:
        self.level = 1.0
        self._last: float | None = None

    def tick(self, blackout: bool, fade_s: float, now: float) -> float:
        target = 0.0 if blackout else 1.0
        if self._last is None or fade_s <= 0:
            self.level = target
        else:
            step = max(0.0, now - self._last) / fade_s
            self.level = min(self.level + step, target) if target > self.level else max(self.level - step, target)
        self._last = now
        return self.level


#: The oldest TouchDesigner the network is made for: 2023.11000 (Python 3.11, sequence parameters,
#: the Movie File In TOP's isFullyPreRead).
MIN_TOUCHDESIGNER = (2023, 11000)


def version_problem(version: str, build: str, minimum: tuple[int, int] = MIN_TOUCHDESIGNER) -> str | None:
    """What to say in the Textport when TouchDesigner ``version``.``build`` (``app.version``,
    ``app.build``) is older than ``minimum``; None when it is recent enough."""
    try:
        found = (int(str(version).strip()), int(str(build).strip()))
    except ValueError:
        return (
            f"ldm3d: cannot read the TouchDesigner version {version!r}.{build!r}; "
            f"the network needs {minimum[0]}.{minimum[1]} or newer"
        )
    if found >= minimum:
        return None
    return (
        f"ldm3d: TouchDesigner {found[0]}.{found[1]} is older than {minimum[0]}.{minimum[1]}, the oldest this network "
        "is made for; parameters it needs may be missing (the builder lists them). Update TouchDesigner."
    )
