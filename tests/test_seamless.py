"""Seamless wrap: with it, the model is a cylinder, so rolling the starting
latents by k columns rolls the picture by 8·k pixels. Without it, it does not."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from ldm3d_engine import GenerateRequest
from ldm3d_engine.engine import Engine

K = 4  # latent columns; a multiple of 2 per UNet downsampling (the tiny UNet downsamples once)


def _pair(engine: Engine, seamless: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    req = engine.resolve(
        GenerateRequest("a desert", seed=21, width=256, height=128, steps=4, scheduler="ddim", seamless=seamless)
    )
    latents = engine.initial_latents(req)
    a = engine.generate_from_latents(req, latents)
    b = engine.generate_from_latents(req, torch.roll(latents, shifts=K, dims=3))
    return a.depth_float, b.depth_float, a.rgb, b.rgb


# 6-channel depth is rebuilt from rounded bytes, so a 1e-6 difference at a rounding
# boundary of the high byte moves a pixel by one high-byte step (256/65535).
@pytest.mark.parametrize(("model", "depth_tol"), [("tiny-pano", 1e-4), ("tiny-6c", 257 / 65535)])
def test_rolled_latents_roll_the_output_when_seamless(
    load_tiny: Callable[[str], Engine], model: str, depth_tol: float
) -> None:
    depth_a, depth_b, rgb_a, rgb_b = _pair(load_tiny(model), seamless=True)
    diff = np.abs(np.roll(depth_a, 8 * K, axis=1) - depth_b)
    assert diff.max() <= depth_tol
    assert (diff > 1e-4).mean() < 1e-3
    assert np.abs(np.roll(rgb_a, 8 * K, axis=1).astype(int) - rgb_b.astype(int)).max() <= 1


def test_without_seamless_the_edges_break_the_invariant(load_tiny: Callable[[str], Engine]) -> None:
    depth_a, depth_b, _, _ = _pair(load_tiny("tiny-pano"), seamless=False)
    assert np.abs(np.roll(depth_a, 8 * K, axis=1) - depth_b).max() > 0.05


def test_seamless_is_switched_off_again_after_the_job(load_tiny: Callable[[str], Engine]) -> None:
    engine = load_tiny("tiny-pano")
    plain = GenerateRequest("a desert", seed=3, width=128, height=64, steps=2, seamless=False)
    before = engine.generate(plain)
    engine.generate(GenerateRequest("a desert", seed=3, width=128, height=64, steps=2, seamless=True))
    assert np.array_equal(engine.generate(plain).rgb, before.rgb)
