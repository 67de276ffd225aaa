"""What the bridge needs from an engine. ``ldm3d_engine.engine.Engine`` is one;
tests may hand in a small fake (for hardware we lack, or faults)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ldm3d_engine.types import CancelToken, GenerateRequest, ResolvedRequest, RGBDResult


class EngineLike(Protocol):
    @property
    def model_id(self) -> str: ...

    def resolve(self, request: GenerateRequest) -> ResolvedRequest: ...

    def free_memory(self) -> None: ...

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult: ...
