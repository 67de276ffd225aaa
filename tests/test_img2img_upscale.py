"""RGBD image-to-image and LDM3D-SR ×4 upscaling on the tiny models."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from ldm3d_engine import GenerateRequest, InvalidRequest
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.types import Img2ImgRequest, RGBDResult, UpscaleRequest

Loader = Callable[[str], Engine]


@pytest.fixture(scope="module")
def source(load_tiny: Loader) -> RGBDResult:
    return load_tiny("tiny").generate(GenerateRequest("a reef", seed=1, width=64, height=64, steps=4))


def _distance(a: RGBDResult, b: RGBDResult) -> float:
    return float(np.abs(a.depth_float - b.depth_float).mean())


def test_strength_zero_is_the_vae_round_trip_whatever_the_seed_or_prompt(load_tiny: Loader, source: RGBDResult) -> None:
    # Nothing is denoised, so nothing is drawn: the input's posterior mean, decoded.
    engine = load_tiny("tiny")
    a = engine.img2img(Img2ImgRequest("a reef", seed=2, steps=10, strength=0.0), source.rgb, source.depth)
    b = engine.img2img(Img2ImgRequest("a desert", seed=9, steps=3, strength=0.0), source.rgb, source.depth)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)  # nothing was denoised
    assert a.request.mode == "img2img" and a.request.strength == 0.0 and (a.width, a.height) == (64, 64)


def test_higher_strength_moves_further_from_the_input(load_tiny: Loader, source: RGBDResult) -> None:
    engine = load_tiny("tiny")
    kept = engine.img2img(Img2ImgRequest("a reef", seed=2, steps=10, strength=0.0), source.rgb, source.depth)
    distances = [
        _distance(
            engine.img2img(Img2ImgRequest("a reef", seed=2, steps=10, strength=s), source.rgb, source.depth), kept
        )
        for s in (0.1, 0.3, 0.5)
    ]
    assert 0 < distances[0] < distances[1] < distances[2], distances


def test_strength_one_forgets_the_input_like_text_to_image(load_tiny: Loader, source: RGBDResult) -> None:
    engine = load_tiny("tiny")
    seen: list[tuple[int, int]] = []
    full = engine.img2img(
        Img2ImgRequest("a cave", seed=5, steps=10, strength=1.0),
        source.rgb,
        source.depth,
        on_step=lambda s, t: seen.append((s, t)),
    )
    text = engine.generate(GenerateRequest("a cave", seed=5, steps=10, width=64, height=64))
    assert seen[-1] == (10, 10) and len(seen) == 10  # every step of the schedule ran
    assert _distance(full, source) > 0.5 * _distance(text, source)


def test_without_depth_a_flat_depth_stands_in_and_says_so(load_tiny: Loader, source: RGBDResult) -> None:
    r = load_tiny("tiny-6c").img2img(Img2ImgRequest("a reef", seed=2, steps=4, strength=0.5), source.rgb)
    assert r.depth_source == "flat 0.5 (no depth map was given)"
    assert len(np.unique(r.depth)) > 256


def test_img2img_resizes_to_the_requested_size_and_checks_strength(load_tiny: Loader, source: RGBDResult) -> None:
    engine = load_tiny("tiny")
    r = engine.img2img(Img2ImgRequest("x", steps=2, strength=0.5, width=128, height=96), source.rgb, source.depth)
    assert r.rgb.shape == (96, 128, 3)
    with pytest.raises(InvalidRequest, match=r"strength 1\.5 is out of range; allowed 0\.\.1"):
        engine.img2img(Img2ImgRequest("x", strength=1.5), source.rgb, source.depth)


def test_upscale_is_four_times_with_16_bit_depth(load_tiny: Loader, source: RGBDResult) -> None:
    steps: list[int] = []
    r = load_tiny("tiny-sr").upscale(
        UpscaleRequest(seed=3, steps=4), source.rgb, source.depth, on_step=lambda s, t: steps.append(s)
    )
    assert r.rgb.shape == (256, 256, 3) and r.depth.shape == (256, 256) and r.depth.dtype == np.uint16
    assert len(np.unique(r.depth)) > 256 and steps == [1, 2, 3, 4]
    assert r.request.mode == "upscale" and r.request.noise_level == 20
    assert r.prompt_used == "high quality high resolution uhd 4k image"


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (UpscaleRequest(noise_level=351), "noise level 351 is out of range; allowed 0..350"),
        (UpscaleRequest(noise_level=-1), "allowed 0..350"),
    ],
)
def test_upscale_refusals(load_tiny: Loader, source: RGBDResult, request_: UpscaleRequest, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        load_tiny("tiny-sr").upscale(request_, source.rgb, source.depth)


def test_upscale_checks_the_output_size_and_the_model(load_tiny: Loader, source: RGBDResult) -> None:
    big = np.zeros((512, 512, 3), np.uint8)
    with pytest.raises(InvalidRequest, match=r"the ×4 output of a 512×512 source \(ask for scale 2 .*\): width 2048"):
        load_tiny("tiny-sr").upscale(UpscaleRequest(), big, np.zeros((512, 512), np.uint16))
    with pytest.raises(InvalidRequest, match="does not upscale"):
        load_tiny("tiny").upscale(UpscaleRequest(), source.rgb, source.depth)
    with pytest.raises(InvalidRequest, match="is an upscaler"):
        load_tiny("tiny-sr").generate(GenerateRequest("x"))


K = 8  # latent columns: a multiple of 8 pixels' worth for the VAE encoder's three downsamplings


@pytest.mark.parametrize("mode", ["img2img", "upscale"])
def test_img2img_and_upscale_keep_the_seamless_invariant(load_tiny: Loader, mode: str) -> None:
    pano = load_tiny("tiny-pano")
    src = pano.generate(GenerateRequest("a canyon", seed=4, width=256, height=128, steps=2))
    if mode == "img2img":
        engine, scale = pano, 1
        run = lambda rgb, depth, noise: engine.img2img(  # noqa: E731
            Img2ImgRequest("a canyon", seed=7, steps=3, strength=0.5, scheduler="ddim"), rgb, depth, noise=noise
        )
        shape = (1, 4, 128 // 8, 256 // 8)
    else:
        engine, scale = load_tiny("tiny-sr"), 4
        small_rgb, small_depth = src.rgb[::4, ::4].copy(), src.depth[::4, ::4].copy()  # 64×32 → 256×128
        src = RGBDResult(**{**src.__dict__, "rgb": small_rgb, "depth": small_depth})
        run = lambda rgb, depth, noise: engine.upscale(  # noqa: E731
            UpscaleRequest(seed=7, steps=3, scheduler="ddim", seamless=True), rgb, depth, noise=noise
        )
        shape = (1, 4, 128 // 8, 256 // 8)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    shift_px = 8 * K // scale  # in the source image
    a = run(src.rgb, src.depth, noise)
    b = run(np.roll(src.rgb, shift_px, axis=1), np.roll(src.depth, shift_px, axis=1), torch.roll(noise, K, dims=3))
    diff = np.abs(np.roll(a.depth_float, 8 * K, axis=1) - b.depth_float)
    assert diff.max() < 1e-3, diff.max()
