"""Engines for the pool's and Ray's tests, importable by a Ray actor's process (picklable builders).

``SlowSteps`` is the real tiny engine whose steps also take ``step_s`` of sleep: the time a GPU
would take, spent without holding the CPU, so that two workers on a 2-core machine really run
side by side (a stand-in for hardware we lack; the pictures are the tiny model's own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ldm3d_engine import EngineSettings, GenerateRequest, load_engine
from ldm3d_engine.types import CancelToken, Previews, RGBDResult


class SlowSteps:
    def __init__(self, real: Any, step_s: float) -> None:
        self.real = real
        self.step_s = step_s

    def __getattr__(self, name: str) -> Any:  # model_id, identity, preset, resolve, free_memory, …
        return getattr(self.real, name)

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        result: RGBDResult = self.real.generate(request, on_step=self._slow(on_step), cancel=cancel, previews=previews)
        return result

    def generate_between(
        self,
        first: GenerateRequest,
        second: GenerateRequest,
        t: float,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        slow = self._slow(on_step)
        result: RGBDResult = self.real.generate_between(
            first, second, t, on_step=slow, cancel=cancel, previews=previews
        )
        return result

    def _slow(self, on_step: Callable[[int, int], None] | None) -> Callable[[int, int], None]:
        def slow_step(step: int, total: int) -> None:
            time.sleep(self.step_s)
            if on_step is not None:
                on_step(step, total)

        return slow_step


def tiny(tiny_dir: str, model: str = "tiny") -> Any:
    """A new CPU engine of a built-in tiny model (each call loads its own: workers never share one)."""
    return load_engine(EngineSettings(model=model, device="cpu", tiny_dir=tiny_dir))


def tiny_with_dpt(tiny_dir: str) -> Any:
    """The tiny model with the tiny depth estimator beside it (``--depth-model tiny-dpt``)."""
    return load_engine(EngineSettings(model="tiny", device="cpu", tiny_dir=tiny_dir, depth_model="tiny-dpt"))


def slow_tiny(tiny_dir: str, step_s: float) -> SlowSteps:
    return SlowSteps(tiny(tiny_dir), step_s)


class HangsOn(SlowSteps):
    """A job whose prompt holds ``word`` hangs for ``hang_s`` without looking at its cancel token (a
    driver call that never returns); the others run as usual."""

    def __init__(self, real: Any, word: str, hang_s: float) -> None:
        super().__init__(real, 0.0)
        self.word = word
        self.hang_s = hang_s

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        if self.word in request.prompt:
            time.sleep(self.hang_s)
        return super().generate(request, on_step=on_step, cancel=cancel, previews=previews)


def hangs_on(tiny_dir: str, word: str, hang_s: float) -> HangsOn:
    return HangsOn(tiny(tiny_dir), word, hang_s)
