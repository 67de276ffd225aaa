"""Depth jobs: any picture (a photo, a 360° photo, a camera frame) → the same RGBD result as a
generated world, its RGB kept as it is and its depth estimated (:mod:`ldm3d_engine.depth.estimator`).
Shared by both engines (LDM3D and the RGB-only CompVis LDMs)."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt

from ..errors import InvalidRequest
from ..presets import Preset
from ..types import CancelToken, DepthRequest, OnStep, RGBDResult, Timings
from ..validation import resolve_depth
from .estimator import DepthEstimator


def need_estimator(estimator: DepthEstimator | None, what: str) -> DepthEstimator:
    if estimator is None:
        raise InvalidRequest(
            "depth_model", f"{what} needs a depth estimator: start with --depth-model dpt-large (or tiny-dpt offline)"
        )
    return estimator


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
    return estimated.stamp(
        RGBDResult(
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
        )
    )
