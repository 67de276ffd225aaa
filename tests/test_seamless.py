"""Seamless wrap: with it, the model is a cylinder, so rolling the starting
latents by k columns rolls the picture by 8·k pixels. Without it, it does not."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from ldm3d_engine import GenerateRequest, InvalidRequest
from ldm3d_engine.models.ldm3d import Engine

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


def _three_downsampler_unet() -> torch.nn.Module:
    """Intel's UNet layout (four blocks, three of them halving the latents), with small channels."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()


def _roll_error(unet: torch.nn.Module, latent_width: int) -> float:
    """How far the wrapped UNet is from rolling its output when its input is rolled by 8 latent columns."""
    from ldm3d_engine.sampling.seamless import wrap_width

    x = torch.randn(1, 4, 8, latent_width, generator=torch.Generator().manual_seed(latent_width))
    text = torch.randn(1, 77, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode(), wrap_width([unet], True):
        a = unet(x, 500, encoder_hidden_states=text).sample
        b = unet(torch.roll(x, 8, dims=3), 500, encoder_hidden_states=text).sample
    return float((torch.roll(a, 8, dims=3) - b).abs().max())


def test_every_seamless_width_the_checks_accept_wraps_exactly_on_intels_unet_layout() -> None:
    from ldm3d_engine.presets import PRESETS
    from ldm3d_engine.validation import resolve_text

    unet = _three_downsampler_unet()
    pano = dataclasses.replace(PRESETS["ldm3d-pano"], native_scheduler="ddim", wrap_multiple=8 * 2**3)

    def accepted(width: int) -> bool:
        try:
            resolve_text(pano, GenerateRequest("x", width=width, height=512))
        except InvalidRequest:
            return False
        return True

    widths = [w for w in range(pano.min_size, pano.max_width + 1, 8) if accepted(w)]
    assert widths == list(range(256, 2049, 64))  # 29 widths, every one a multiple of 64
    errors = {w: _roll_error(unet, w // 8) for w in widths}
    assert max(errors.values()) < 1e-4, errors
    # the negative control: a width the old check (multiples of 8) let through has a seam
    assert _roll_error(unet, 1000 // 8) > 1e-2
    with pytest.raises(InvalidRequest, match=r"width 1000 cannot wrap seamlessly on ldm3d-pano.*nearest: 960 or 1024"):
        resolve_text(pano, GenerateRequest("x", width=1000, height=512))
    with pytest.raises(InvalidRequest, match=r"height 520 cannot wrap.*nearest: 512 or 576"):
        resolve_text(pano, GenerateRequest("x", width=1024, height=520))
    assert resolve_text(pano, GenerateRequest("x", width=1000, height=520, seamless=False)).width == 1000


def test_the_engine_reads_the_wrap_multiple_from_its_unet(load_tiny: Callable[[str], Engine]) -> None:
    engine = load_tiny("tiny-pano")  # two blocks: one downsampling
    assert engine.preset.wrap_multiple == 16
    with pytest.raises(InvalidRequest, match=r"width 136 cannot wrap seamlessly.*multiples of 16.*nearest: 128 or 144"):
        engine.generate(GenerateRequest("a desert", width=136, height=64, steps=1))
