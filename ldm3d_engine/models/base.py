"""What every engine shares: what it is (model, device, dtype, identity), its request checks, and
depth jobs with the depth estimator beside it. The LDM3D engine, the CompVis LDM engine and the
depth-only engine of ``ldm3d-bridge depth`` are built on it."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..backends.devices import Placement, is_out_of_memory
from ..depth.estimator import DepthEstimator
from ..depth.jobs import depth_result, need_estimator
from ..errors import OutOfMemory, UnsafeContent
from ..presets import FOLDER_DEFAULTS, Preset
from ..safety.checker import SafetyChecker
from ..types import CancelToken, DepthRequest, GenerateRequest, OnStep, ResolvedRequest, RGBDResult, UpscaleRequest
from ..validation import resolve_depth, resolve_text, resolve_upscale
from ..version import VERSION
from .loading import ModelLocation


class EngineBase:
    """Subclasses set ``preset``, ``placement``, ``location`` (or override :attr:`model_id`),
    ``estimator`` (None: no depth jobs) and ``_lock`` (one job at a time). The loader sets
    ``safety`` (the image safety checker every picture passes) and, without one, ``safety_status``."""

    preset: Preset
    placement: Placement
    location: ModelLocation
    estimator: DepthEstimator | None
    _lock: threading.Lock
    safety: SafetyChecker | None = None
    #: What a result says when no checker runs: ``off`` (turned off) or ``no checker`` (none found).
    safety_status: str = "no checker"

    @property
    def model_id(self) -> str:
        return self.location.model_id

    @property
    def device(self) -> str:
        return self.placement.label

    @property
    def dtype(self) -> str:
        return self.placement.dtype_name

    @property
    def depth_model(self) -> str | None:
        """The depth estimator's model, or None when none is loaded."""
        return self.estimator.model_id if self.estimator is not None else None

    def hashed_identity(self, described: dict[str, Any]) -> str:
        """``model_id@hash`` of what makes the engine's pictures what they are (``described``, plus
        the preset and the engine's version): a show's scene library keys its scenes with it."""
        everything = {**described, "preset": dataclasses.asdict(self.preset), "engine": VERSION}
        text = json.dumps(everything, sort_keys=True, default=str)
        return f"{self.model_id}@{hashlib.sha256(text.encode()).hexdigest()[:32]}"

    def checked(self, result: RGBDResult) -> RGBDResult:
        """``result`` once the safety checker passed its picture (stamped ``passed``, its time in
        ``timings.safety_s``), or stamped with why nothing ran. Raises :class:`UnsafeContent`,
        dropping the picture, when the checker flags any view of it."""
        if self.safety is None:
            return dataclasses.replace(result, safety=self.safety_status)
        verdict = self.safety.check(result.rgb, wrap=result.request.seamless)
        if verdict.flagged:
            raise UnsafeContent(
                f"the safety checker ({self.safety.model_id}) flagged the picture ({verdict.flagged_views} of "
                f"{verdict.views} views); it was dropped: try another prompt or seed"
            )
        timings = dataclasses.replace(result.timings, safety_s=verdict.seconds)
        return dataclasses.replace(result, safety="passed", timings=timings)

    # -- checks ------------------------------------------------------------

    def resolve(self, request: GenerateRequest) -> ResolvedRequest:
        """Fill the preset's defaults into ``request`` and check every field."""
        return resolve_text(self.preset, request)

    def resolve_upscale(self, request: UpscaleRequest, source: tuple[int, int]) -> ResolvedRequest:
        """Check an upscale of a ``source`` (width, height) image, as ``upscale`` will."""
        return resolve_upscale(self.preset, request, source)

    def resolve_depth(self, request: DepthRequest, size: tuple[int, int]) -> ResolvedRequest:
        """Check a depth job of a ``size`` (width, height) picture, as :meth:`estimate_depth` will."""
        return resolve_depth(self.preset, request, size)

    # -- jobs ----------------------------------------------------------------

    def estimate_depth(
        self,
        request: DepthRequest,
        rgb: npt.NDArray[np.uint8],
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult:
        """A depth job: ``rgb`` kept as it is, its depth estimated (needs the estimator)."""
        estimator = need_estimator(self.estimator, "a depth job")
        with self._lock:
            result = depth_result(
                estimator,
                self.preset,
                request,
                rgb,
                device=self.device,
                dtype=self.dtype,
                on_step=on_step,
                cancel=cancel,
            )
            return self.checked(result)

    @contextlib.contextmanager
    def out_of_memory_named(self, req: ResolvedRequest) -> Iterator[None]:
        """Inside: a device out-of-memory error frees the cache and becomes :class:`OutOfMemory`,
        naming the device and the size."""
        try:
            yield
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                self.free_memory()
                raise OutOfMemory(f"out of memory on {self.device} at {req.width}×{req.height}: {exc}") from exc
            raise

    def free_memory(self) -> None:
        """Return cached device memory to the driver (after an out-of-memory error)."""
        gc.collect()
        if self.placement.device.type == "cuda":
            torch.cuda.empty_cache()


class DepthOnly(EngineBase):
    """A depth estimator on its own, without a diffusion model (``ldm3d-bridge depth``): depth jobs only."""

    def __init__(self, estimator: DepthEstimator) -> None:
        self.estimator = estimator
        self.placement = estimator.placement
        self.preset = dataclasses.replace(FOLDER_DEFAULTS, name="depth-only", seamless=False)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.estimator.model_id if self.estimator is not None else ""
