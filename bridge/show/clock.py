"""A cue's countdown on a clock you pass in: how long it has been shown, paused and resumed.

Pure (no threads, no real time): the show desk hands in ``now`` (``time.monotonic()`` in the
bridge, any number in tests), so a test can walk a whole show through hours in microseconds.

The countdown only counts while it runs: a paused show (``/ldm3d/show/pause``) freezes it and
``/ldm3d/show/resume`` goes on from where it stood; ``elapsed`` is what a restarted bridge
saves and hands back, so a resumed cue finishes its remaining time instead of starting again.
"""

from __future__ import annotations


class CueClock:
    def __init__(self) -> None:
        #: Seconds the cue is shown for (its ``duration``), or None: no countdown (waits for GO).
        self.length: float | None = None
        self._elapsed = 0.0
        #: When the count last (re)started; None while paused or stopped.
        self._since: float | None = None

    def start(self, length: float | None, now: float, *, running: bool, elapsed: float = 0.0) -> None:
        """A new countdown of ``length`` seconds, ``elapsed`` of which are already gone; counting
        at once when ``running``, else frozen until :meth:`resume`."""
        self.length = length
        self._elapsed = max(0.0, elapsed)
        self._since = now if running else None

    def clear(self) -> None:
        """No countdown (a cue still rendering, or none shown)."""
        self.length, self._elapsed, self._since = None, 0.0, None

    def pause(self, now: float) -> None:
        if self._since is not None:
            self._elapsed += max(0.0, now - self._since)
            self._since = None

    def resume(self, now: float) -> None:
        if self._since is None:
            self._since = now

    def restart(self, now: float) -> None:
        """The whole length again, counting from ``now``."""
        self._elapsed, self._since = 0.0, now

    def elapsed(self, now: float) -> float:
        running = max(0.0, now - self._since) if self._since is not None else 0.0
        return self._elapsed + running

    def remaining(self, now: float) -> float | None:
        """Seconds left, or None without a countdown."""
        if self.length is None:
            return None
        return max(0.0, self.length - self.elapsed(now))

    def due(self, now: float) -> bool:
        """The countdown has run out (never without one)."""
        return self.length is not None and self.elapsed(now) >= self.length
