"""The image safety checker: diffusers' ``StableDiffusionSafetyChecker`` (a CLIP vision model and
its concept embeddings) run on every picture before it leaves the engine.

The pipelines run it on one centre crop of the picture (the feature extractor's 224×224), which
for a 2:1 panorama sees only its middle half. Here the picture is cut into square views along its
long side, half a view apart (a 360° panorama also across its seam), and a picture is flagged when
any view is: a 1024×512 panorama is four views, a square picture one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..backends.devices import Placement
from ..errors import UnknownModel

logger = logging.getLogger(__name__)


def views(rgb: npt.NDArray[np.uint8], wrap: bool) -> list[npt.NDArray[np.uint8]]:
    """Square views of ``rgb`` (H×W×3) along its long side, half a side apart, covering all of it;
    ``wrap`` (a 360° picture): also the views across the left/right seam."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    long = max(height, width)
    if long == side:
        return [rgb]
    step = max(1, side // 2)
    if wrap and width > height:
        starts = list(range(0, width, step))
        columns = [np.arange(start, start + side) % width for start in starts]
        return [np.ascontiguousarray(rgb[:, cols]) for cols in columns]
    starts = list(range(0, long - side + 1, step))
    if starts[-1] != long - side:
        starts.append(long - side)
    if width > height:
        return [rgb[:, s : s + side] for s in starts]
    return [rgb[s : s + side, :] for s in starts]


@dataclass(frozen=True)
class Verdict:
    flagged: bool
    #: How many views were flagged, of how many checked.
    flagged_views: int
    views: int
    seconds: float


class SafetyChecker:
    """A loaded checker. ``check`` is thread-compatible (the engine calls it under its job lock)."""

    def __init__(self, model: Any, processor: Any, device: torch.device, model_id: str) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.model_id = model_id

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype  # type: ignore[no-any-return]

    def embed(self, pictures: list[npt.NDArray[np.uint8]]) -> torch.Tensor:
        """The unit embeddings (float32, on the CPU) the checker compares with its concepts, one per
        picture: what a test sets a concept to, to make it flag a known picture."""
        pixels = self.processor(images=pictures, return_tensors="pt").pixel_values
        with torch.inference_mode():
            pooled = self.model.vision_model(pixels.to(self.device, self.dtype))[1]
            projected = self.model.visual_projection(pooled)
        return torch.nn.functional.normalize(projected.float()).cpu()

    def check(self, rgb: npt.NDArray[np.uint8], wrap: bool = False) -> Verdict:
        """Run the checker on the views of ``rgb``; flagged when any view is."""
        t0 = time.perf_counter()
        pictures = views(rgb, wrap)
        pixels = self.processor(images=pictures, return_tensors="pt").pixel_values
        with torch.inference_mode():
            placeholder = torch.zeros(len(pictures), 1)  # the images it would black out: not ours
            # forward_onnx: forward's thresholds and special-care adjustment over the whole batch,
            # without its per-image rounding and its "a black image will be returned" warning.
            _, flags = self.model.forward_onnx(pixels.to(self.device, self.dtype), placeholder)
        flagged = int(torch.as_tensor(flags).sum().item())
        return Verdict(flagged > 0, flagged, len(pictures), time.perf_counter() - t0)


def checker_folders(folder: Path) -> tuple[Path, Path] | None:
    """The checker's and the feature extractor's folders in ``folder``: a pipeline folder
    (``safety_checker/`` + ``feature_extractor/``) or a checker on its own (``config.json`` +
    ``preprocessor_config.json``, as ``CompVis/stable-diffusion-safety-checker``); None: neither."""
    checker, extractor = folder / "safety_checker", folder / "feature_extractor"
    if (checker / "config.json").is_file() and (extractor / "preprocessor_config.json").is_file():
        return checker, extractor
    if (folder / "config.json").is_file() and (folder / "preprocessor_config.json").is_file():
        return folder, folder
    return None


def load_checker(folder: Path, model_id: str, placement: Placement, on_cpu: bool = False) -> SafetyChecker:
    """The checker in ``folder`` (see :func:`checker_folders`) on the engine's torch device (the CPU
    with ``on_cpu``, and for OpenVINO), in fp16 on a GPU and fp32 elsewhere."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    try:  # transformers 5: the Pillow processor, which needs no torchvision (same maths)
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - transformers 4
        from transformers import CLIPImageProcessor as Processor

    found = checker_folders(folder)
    if found is None:
        raise UnknownModel(
            f"{model_id!r} has no safety checker: expected safety_checker/ and feature_extractor/ in {folder}, "
            "or config.json and preprocessor_config.json (a checker on its own)"
        )
    device = torch.device("cpu") if on_cpu else placement.device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        model = StableDiffusionSafetyChecker.from_pretrained(str(found[0]), torch_dtype=dtype)
        processor = Processor.from_pretrained(str(found[1]))
    except (OSError, ValueError) as exc:
        raise UnknownModel(f"could not load the safety checker of {model_id!r} from {folder}: {exc}") from exc
    model.to(device).eval().requires_grad_(False)
    logger.info("safety checker of %s loaded on %s (%s)", model_id, device, str(dtype).removeprefix("torch."))
    return SafetyChecker(model, processor, device, model_id)
