"""What the bridge needs from an engine. ``ldm3d_engine.engine.Engine`` is one;
tests may hand in a small fake (for hardware we lack, or faults)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ldm3d_engine.types import CancelToken, GenerateRequest, Img2ImgRequest, ResolvedRequest, RGBDResult, UpscaleRequest


class EngineLike(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def identity(self) -> str:
        """The model, its configs and the engine version, hashed (keys a show's scene library)."""
        ...

    def resolve(self, request: GenerateRequest) -> ResolvedRequest: ...

    def resolve_upscale(self, request: UpscaleRequest, source: tuple[int, int]) -> ResolvedRequest: ...

    def free_memory(self) -> None: ...

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult: ...

    def img2img(
        self,
        request: Img2ImgRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult: ...

    def upscale(
        self,
        request: UpscaleRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult: ...
