"""Depth estimation on the CPU: DPT-Large and DPT-Hybrid, a picture and a 360° picture.

    .venv/bin/python bench/depth_estimation.py [--size 1024x512] [--models large,hybrid] [--threads N]

The weights are random (nothing is downloaded), the architectures are those of ``Intel/dpt-large``
(ViT-L/16, 343 M parameters) and ``Intel/dpt-hybrid-midas`` (ResNet + ViT-B, 123 M) at their 384×384
input: a forward pass costs the same with trained weights. For each model, through our
``DepthEstimator`` (the image processor, the model, our post-processing):

* ``picture``: one ``--size`` picture estimated whole (the baseline: one pass of the model);
* ``360°``: the same size as an equirect picture, 10 perspective views blended back;

and once, without any model (a zero-time estimator), what the 360° path adds of its own:
rendering the views, projecting them back, aligning and blending at ``--size``. Ratios are
against the picture baseline of the same model, measured in the same run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import time

import numpy as np
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
        resample=3,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    return DepthEstimator(model, processor, resolve_placement("cpu", None), f"dpt-{name} (random weights)")


def timed(run: object) -> float:
    t0 = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1024x512")
    parser.add_argument("--models", default="large,hybrid")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    print(f"CPU, {torch.get_num_threads()} threads; a {width}×{height} picture; random weights, real architectures")
    print(f"{'model':<8} {'picture s':>10} {'360° s':>8} {'360°/picture':>13}  per view")
    for name in args.models.split(","):
        est = estimator(name)
        est.estimate(rgb, equirect=False)  # warm-up: first-call allocations
        whole = timed(lambda est=est: est.estimate(rgb, equirect=False))
        sphere = timed(lambda est=est: est.estimate(rgb, equirect=True))
        print(f"{name:<8} {whole:>10.2f} {sphere:>8.2f} {sphere / whole:>12.1f}×  {sphere / 10:.2f} s")
    image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    zero = timed(lambda: equirect_depth(image, lambda picture: torch.zeros(picture.shape[1:]), 384))
    print(f"\nthe 360° path's own work at {width}×{height} (views, projection, alignment, blend): {zero:.2f} s")


if __name__ == "__main__":
    main()
