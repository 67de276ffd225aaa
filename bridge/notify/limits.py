"""Rate limits and counters for the intake. Pure: the clock is passed in.

Every table here is bounded, so a flood from many (spoofed) sources cannot
grow the bridge's memory: the least recently seen keys are forgotten first.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens per second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        tokens, last = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)


class Counters:
    """Named counts, thread-safe, read as one consistent snapshot."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._counts.items()))


class LogLimiter:
    """Log each kind at most once per ``interval`` seconds, with how many were not logged."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, max_kinds: int = 256) -> None:
        self._logger = logger
        self._interval = interval
        self.max_kinds = max_kinds
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, kind: str, now: float, message: str, *args: object) -> None:
        self._log(logging.WARNING, kind, now, False, message, args)

    def exception(self, kind: str, now: float, message: str, *args: object) -> None:
        """Like :meth:`warning` at ERROR level, with the traceback of the exception being handled."""
        self._log(logging.ERROR, kind, now, True, message, args)

    def _log(self, level: int, kind: str, now: float, trace: bool, message: str, args: tuple[object, ...]) -> None:
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            if kind not in self._last and len(self._last) >= self.max_kinds:
                oldest = next(iter(self._last))  # bounded: the oldest kind is forgotten
                del self._last[oldest]
                self._suppressed.pop(oldest, None)
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        self._logger.log(level, message, *args, exc_info=trace)
        if suppressed:
            self._logger.warning("%d more %s not logged in the last %.0f s", suppressed, kind, self._interval)
