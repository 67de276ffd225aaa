"""Depth for any image: DPT (transformers' ``DPTForDepthEstimation``) on the engine's device.

LDM3D learned its depth from DPT-Large, whose output is relative inverse depth (larger =
nearer, up to an unknown scale and shift; not metres). :meth:`DepthEstimator.estimate` keeps
that meaning and maps it to our convention: min–max over the picture, the nearest point 1.0
(65535 in 16 bits), the farthest 0.0. An equirect picture goes through
:mod:`ldm3d_engine.depth.equirect` (perspective views, each view's planar inverse depth turned into
inverse range — distance from the centre — aligned and blended back: no seam at 0°/360°), so a
360° picture's depth is min–max of inverse range.

Pre-processing is the model folder's own image processor (size, resampling, mean and std as its
``preprocessor_config.json`` says); post-processing is ours and matches transformers'
``post_process_depth_estimation`` (bicubic to the picture's size), tested against it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..backends.devices import Placement
from ..errors import Cancelled
from ..presets import EQUIRECT_VIEWS as VIEWS
from ..types import CancelToken, RGBDResult
from .equirect import equirect_depth

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EstimatedDepth:
    #: 0..1, 1 = nearest (min–max of the model's relative inverse depth).
    depth_float: npt.NDArray[np.float32]
    depth: npt.NDArray[np.uint16]
    #: The estimator's model (``Intel/dpt-large``…).
    model_id: str
    #: ``whole picture`` or ``10 perspective views blended`` (a 360° picture).
    method: str

    def stamp(self, result: RGBDResult) -> RGBDResult:
        """``result`` marked as having this estimate for its depth (``depth_source`` ``dpt``)."""
        return dataclasses.replace(result, depth_source="dpt", depth_model=self.model_id, depth_method=self.method)


def to_depth16(raw: npt.NDArray[np.floating[Any]]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint16]]:
    """Relative inverse depth → (0..1 float, 16-bit), nearest = 1.0 / 65535; a flat picture → 0.5."""
    raw = np.nan_to_num(raw.astype(np.float64))
    low, high = float(raw.min()), float(raw.max())
    unit = np.full(raw.shape, 0.5) if high - low < 1e-12 else (raw - low) / (high - low)
    return unit.astype(np.float32), np.round(unit * 65535).astype(np.uint16)


class DepthEstimator:
    """One DPT model and its image processor on one device."""

    def __init__(self, model: Any, processor: Any, placement: Placement, model_id: str) -> None:
        self.model = model
        self.processor = processor
        self.placement = placement
        self.model_id = model_id
        size = getattr(processor, "size", None)
        height = getattr(size, "height", None) or (size.get("height") if isinstance(size, dict) else None)
        #: The side of the square pictures the model takes (384 for dpt-large).
        self.input_size = int(height or model.config.image_size)

    def predict(self, rgb: npt.NDArray[np.uint8]) -> torch.Tensor:
        """The model's raw output for one picture (its own input size), on the CPU, float32."""
        inputs = self.processor(images=rgb, return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.placement.device, next(self.model.parameters()).dtype)
        with torch.inference_mode():
            predicted: torch.Tensor = self.model(pixel_values=pixels).predicted_depth
        return predicted.float().cpu()

    def raw_depth(self, rgb: npt.NDArray[np.uint8]) -> torch.Tensor:
        """Relative inverse depth at the picture's size (bicubic from the model's output, as
        transformers' ``post_process_depth_estimation`` does)."""
        predicted = self.predict(rgb)
        resized = torch.nn.functional.interpolate(
            predicted[:, None], size=rgb.shape[:2], mode="bicubic", align_corners=False
        )
        return resized[0, 0]

    def estimate(
        self,
        rgb: npt.NDArray[np.uint8],
        *,
        equirect: bool,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> EstimatedDepth:
        """Depth of an H×W×3 picture in our convention; ``equirect``: a 360° picture (perspective
        views blended back). ``on_step`` counts views (1 for a plain picture); ``cancel`` is checked
        between views."""
        if not equirect:
            if cancel is not None and cancel.cancelled:
                raise Cancelled(0, 1)
            raw = self.raw_depth(rgb).numpy()
            if on_step is not None:
                on_step(1, 1)
            unit, sixteen = to_depth16(raw)
            return EstimatedDepth(unit, sixteen, self.model_id, "whole picture")

        size = self.input_size

        def one_view(picture: torch.Tensor) -> torch.Tensor:
            view = (picture.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            return self.raw_depth(view)

        def after_view(done: int, total: int) -> None:
            if on_step is not None:
                on_step(done, total)
            if cancel is not None and cancel.cancelled and done < total:
                raise Cancelled(done, total)

        image = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1).float() / 255
        raw = equirect_depth(image, one_view, size, after_view=after_view).numpy()
        unit, sixteen = to_depth16(raw)
        return EstimatedDepth(unit, sixteen, self.model_id, f"{len(VIEWS)} perspective views blended")


def load_processor(folder: str) -> Any:
    """The folder's image processor as ``AutoImageProcessor`` gives it on this installation: the
    torchvision backend when torchvision is installed, else the Pillow one (their resizes differ
    slightly). Said explicitly, so transformers does not warn about falling back."""
    import transformers
    from transformers import AutoImageProcessor

    if int(transformers.__version__.split(".")[0]) < 5:  # pragma: no cover - no `backend` yet: its own choice
        return AutoImageProcessor.from_pretrained(folder)
    backend = "torchvision" if importlib.util.find_spec("torchvision") is not None else "pil"
    processor = AutoImageProcessor.from_pretrained(folder, backend=backend)
    logger.debug("image processor %s (%s backend)", type(processor).__name__, backend)
    return processor


def load_estimator(folder: str, placement: Placement, model_id: str) -> DepthEstimator:
    """DPT from a folder in transformers' layout (``config.json``, weights, ``preprocessor_config.json``)."""
    from transformers import DPTForDepthEstimation

    processor = load_processor(folder)
    model = DPTForDepthEstimation.from_pretrained(folder, dtype=placement.dtype)
    model.to(placement.device).eval().requires_grad_(False)
    model = placement.runtime.prepare(model, "dpt")
    logger.info("depth estimator %s on %s (%s)", model_id, placement.label, placement.dtype_name)
    return DepthEstimator(model, processor, placement, model_id)
