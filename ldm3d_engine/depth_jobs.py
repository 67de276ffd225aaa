"""Depth jobs: any picture (a photo, a 360° photo, a camera frame) → the same RGBD result as a
generated world, its RGB kept as it is and its depth estimated (:mod:`ldm3d_engine.estimator`).
Shared by both engines (LDM3D and the RGB-only CompVis LDMs)."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from .denoise import OnStep
from .equirect import VIEWS
from .errors import InvalidRequest
from .estimator import DepthEstimator
from .presets import Preset
from .types import CancelToken, DepthRequest, ResolvedRequest, RGBDResult, Timings

#: The smallest side a depth job takes (a DPT model sees its own input size anyway).
MIN_SIDE = 16
#: The largest side (an 8K equirect photo is 8192×4096).
MAX_SIDE = 8192


def need_estimator(estimator: DepthEstimator | None, what: str) -> DepthEstimator:
    if estimator is None:
        raise InvalidRequest(
            "depth_model", f"{what} needs a depth estimator: start with --depth-model dpt-large (or tiny-dpt offline)"
        )
    return estimator


def resolve_depth(preset: Preset, request: DepthRequest, size: tuple[int, int]) -> ResolvedRequest:
    width, height = size
    for name, value in (("width", width), ("height", height)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise InvalidRequest(name, f"the image's {name} {value} is outside {MIN_SIDE}..{MAX_SIDE}")
    equirect = preset.seamless if request.equirect is None else request.equirect
    if equirect and width != 2 * height:
        raise InvalidRequest(
            "equirect",
            f"a 360° (equirectangular) image is twice as wide as high; this one is {width}×{height} "
            "(send equirect 0 for an ordinary picture)",
        )
    steps = len(VIEWS) if equirect else 1  # progress counts the pictures the model sees
    return ResolvedRequest(
        prompt="", negative_prompt="", seed=0, steps=steps, guidance=0.0, width=width, height=height,
        scheduler="", seamless=equirect, mode="depth",
    )  # fmt: skip


def depth_result(
    estimator: DepthEstimator,
    preset: Preset,
    request: DepthRequest,
    rgb: npt.NDArray[np.uint8],
    *,
    device: str,
    dtype: str,
    on_step: OnStep | None = None,
    cancel: CancelToken | None = None,
) -> RGBDResult:
    """Estimate the depth of ``rgb`` (H×W×3) and return it with the picture as a result."""
    req = resolve_depth(preset, request, (rgb.shape[1], rgb.shape[0]))
    t0 = time.perf_counter()
    estimated = estimator.estimate(rgb, equirect=req.seamless, on_step=on_step, cancel=cancel)
    return RGBDResult(
        rgb=np.ascontiguousarray(rgb),
        depth=estimated.depth,
        depth_float=estimated.depth_float,
        request=req,
        prompt_used="",
        prompt_truncated=False,
        negative_truncated=False,
        model_id=estimator.model_id,
        preset=preset.name,
        device=device,
        dtype=dtype,
        depth_layout="estimated",
        timings=Timings(0.0, 0.0, 0.0, time.perf_counter() - t0),
        depth_source=estimated.description,
    )
