"""Decisions of the TouchDesigner side, in plain Python (no TouchDesigner imports), tested
outside TouchDesigner. The extension (ldm3d_ext.py) feeds it events and applies its actions.

Two buffers, A and B, each a pair of Movie File In TOPs (rgb, depth). The front buffer is on
screen; a new world loads into the back buffer; only once both of its textures have loaded
does a crossfade start; when the fade ends, the buffers swap roles. A `/ldm3d/ready` for a job
older than the one shown, loading or waiting is stale and ignored (job ids sort by time).
A ready arriving during a fade waits and loads into the new back buffer afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


def _other(buffer: str) -> str:
    return "B" if buffer == "A" else "A"


class WorldSwitcher:
    def __init__(self, crossfade_s: float = 2.0) -> None:
        self.crossfade_s = max(0.0, crossfade_s)
        self.front = "A"
        self.shown: str | None = None
        self.loading: _Job | None = None
        self.waiting: _Job | None = None
        self.fading: _Job | None = None
        self._fade_start = 0.0
        self.status = "waiting for the bridge"
        self.error = ""

    @property
    def back(self) -> str:
        return _other(self.front)

    def _newest(self) -> str:
        ids = [j.id for j in (self.loading, self.waiting, self.fading) if j is not None]
        if self.shown is not None:
            ids.append(self.shown)
        return max(ids, default="")

    def on_ready(self, job_id: str, rgb: str, depth: str) -> list[Action]:
        if job_id <= self._newest():
            return []  # stale or repeated: an older world must never replace a newer one
        job = _Job(job_id, rgb, depth)
        if self.fading is not None:
            self.waiting = job
            return []
        self.loading = job
        return [LoadBack(self.back, rgb, depth)]

    def on_loaded(self, buffer: str, kind: str, path: str, now: float) -> list[Action]:
        """A texture of ``buffer`` finished loading ``path``; ``kind`` is "rgb" or "depth"."""
        job = self.loading
        if job is None or buffer != self.back or path != (job.rgb if kind == "rgb" else job.depth):
            return []  # a late load of a file no longer wanted
        job.loaded.add(kind)
        if job.loaded != {"rgb", "depth"}:
            return []
        self.loading, self.fading, self._fade_start = None, job, now
        return self.tick(now)

    def tick(self, now: float) -> list[Action]:
        """Call every frame: advances the crossfade."""
        job = self.fading
        if job is None:
            return []
        t = 1.0 if self.crossfade_s == 0 else min(1.0, (now - self._fade_start) / self.crossfade_s)
        target_b = self.back == "B"
        actions: list[Action] = [SetCross(t if target_b else 1.0 - t)]
        if t >= 1.0:
            self.front, self.shown, self.fading = self.back, job.id, None
            actions.append(Shown(job.id, self.front))
            if self.waiting is not None:
                waiting, self.waiting = self.waiting, None
                actions += self.on_ready(waiting.id, waiting.rgb, waiting.depth)
        return actions

    def on_state(self, state: str, queue: int, running: str, model: str) -> str:
        detail = f", running {running}" if running else ""
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

    def on_subscribed(self, lease_s: float, now: float) -> None:
        self.next_at = now + max(self.retry_s, lease_s / 2)
