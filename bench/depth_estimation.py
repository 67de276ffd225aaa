"""Depth estimation on the CPU: DPT-Large and DPT-Hybrid, a picture and a 360° picture.

    .venv/bin/python bench/depth_estimation.py [--size 1024x512] [--models large] [--threads N]

``--models`` takes ``large`` (the default: the bridge's default estimator), ``hybrid`` or both
(``large,hybrid``: docs/performance.md's table). The weights are random (nothing is downloaded), the
architectures are those of ``Intel/dpt-large`` (ViT-L/16, 343 M parameters) and
``Intel/dpt-hybrid-midas`` (ResNet + ViT-B, 123 M) at their 384×384 input: a forward pass costs the
same with trained weights. For each model, through our
``DepthEstimator`` (the image processor, the model, our post-processing):

* ``picture``: one ``--size`` picture estimated whole (the baseline: one pass of the model);
* ``360°``: the same size as an equirect picture, 10 perspective views blended back;

and, for each model, the 360° time split into the model's part (the image processor, the passes, the
post-processing: ten times a picture's) and the 360° geometry's (rendering the views, projecting
them back, aligning, blending). Then, without any model (an estimator that costs nothing), the
360° geometry alone at ``--size`` and at 2048×1024 (the widest it blends at; larger pictures are
blended at 2048 and resized), each the best of 3 runs. Ratios are against the picture baseline of
the same model, measured in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from ldm3d_engine.backends.devices import resolve_placement
from ldm3d_engine.depth.equirect import equirect_depth
from ldm3d_engine.depth.estimator import DepthEstimator

ARCHITECTURES = {
    "large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "backbone_out_indices": [5, 11, 17, 23],
        "neck_hidden_sizes": [256, 512, 1024, 1024],
        "fusion_hidden_size": 256,
        "image_size": 384,
    },
    "hybrid": {
        "is_hybrid": True,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "backbone_out_indices": [2, 5, 8, 11],
        "neck_hidden_sizes": [256, 512, 768, 768],
        "readout_type": "project",
        "image_size": 384,
    },
}


def estimator(name: str) -> DepthEstimator:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessorPil

    torch.manual_seed(0)
    model = DPTForDepthEstimation(DPTConfig(**ARCHITECTURES[name])).eval().requires_grad_(False)
    processor = DPTImageProcessorPil(
        size={"height": 384, "width": 384},
        keep_aspect_ratio=False,
        resample=2,  # bilinear, as Intel/dpt-large's preprocessor_config.json says
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    return DepthEstimator(model, processor, resolve_placement("cpu", None), f"dpt-{name} (random weights)")


def timed(run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


def timed_360(est: DepthEstimator, rgb: npt.NDArray[np.uint8]) -> tuple[float, float]:
    """A 360° estimate's wall time, and the part of it spent in the model (``raw_depth``: the image
    processor, the pass, the resize of its output), counted around each view's call."""
    spent = [0.0]
    model_part = est.raw_depth

    def counted(picture: npt.NDArray[np.uint8]) -> torch.Tensor:
        t0 = time.perf_counter()
        out = model_part(picture)
        spent[0] += time.perf_counter() - t0
        return out

    est.raw_depth = counted  # type: ignore[method-assign,assignment]
    try:
        total = timed(lambda: est.estimate(rgb, equirect=True))
    finally:
        del est.raw_depth  # the class's method again
    return total, spent[0]


def geometry(width: int, height: int, size: int = 384) -> float:
    """The 360° path without a model (every view answers one fixed random depth): best of 3."""
    picture = torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
    answer = torch.rand(size, size, generator=torch.Generator().manual_seed(1))
    return min(timed(lambda: equirect_depth(picture, lambda view: answer, size)) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x512")
    parser.add_argument("--models", default="large")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    print(f"CPU, {torch.get_num_threads()} threads; a {width}×{height} picture; random weights, real architectures")
    print(f"{'model':<8} {'picture s':>10} {'360° s':>8} {'360°/picture':>13}  per view  (of the 360° s)")
    for name in args.models.split(","):
        est = estimator(name)
        est.estimate(rgb, equirect=False)  # warm-up: first-call allocations
        whole = timed(lambda: est.estimate(rgb, equirect=False))  # noqa: B023 (called at once)
        sphere, model = timed_360(est, rgb)
        print(
            f"{name:<8} {whole:>10.2f} {sphere:>8.2f} {sphere / whole:>12.1f}×  {sphere / 10:.2f} s"
            f"  (model {model:.2f} s, 360° geometry {sphere - model:.2f} s)"
        )
    print(
        f"\nthe 360° path's own work at {width}×{height} (views, projection, alignment, blend): "
        f"{geometry(width, height):.2f} s"
    )
    if (width, height) != (2048, 1024):
        print(f"the 360° path's own work at 2048×1024 (the widest it blends at): {geometry(2048, 1024):.2f} s")


if __name__ == "__main__":
    main()
