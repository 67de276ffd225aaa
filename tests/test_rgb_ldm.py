"""The CompVis latent diffusion models as RGBD sources: our loop against diffusers' own pipelines on
the tiny stand-ins (``tiny-ldm``: the ldm-celebahq-256 layout; ``tiny-ldm-text``: ldm-text2im-large-256),
their depth from the depth estimator, and what they refuse."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ldm3d_engine import EngineSettings, GenerateRequest, InvalidRequest, UnknownModel, load_engine
from ldm3d_engine.types import Img2ImgRequest


@pytest.fixture(scope="module")
def uncond(tiny_dir: Path) -> Iterator[Any]:
    yield load_engine(EngineSettings(model="tiny-ldm", tiny_dir=str(tiny_dir)))


@pytest.fixture(scope="module")
def text(tiny_dir: Path) -> Iterator[Any]:
    yield load_engine(EngineSettings(model="tiny-ldm-text", tiny_dir=str(tiny_dir)))


def _as_uint8(images: np.ndarray) -> np.ndarray:
    return np.round(images[0] * 255).astype(np.uint8)  # type: ignore[no-any-return]


def test_unconditional_matches_ldm_pipeline(uncond: Any) -> None:
    from diffusers import LDMPipeline

    pipe = LDMPipeline.from_pretrained(str(uncond.location.folder))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(num_inference_steps=5, generator=torch.Generator().manual_seed(7), output_type="np").images
    ours = uncond.generate(GenerateRequest("ignored", seed=7, steps=5))
    assert ours.rgb.shape == (128, 128, 3)
    assert np.abs(ours.rgb.astype(int) - _as_uint8(theirs).astype(int)).max() <= 1
    assert ours.rgb.std() > 20  # a picture, not a flat colour


def test_a_ddim_folder_without_clip_sample_runs_with_diffusers_defaults(
    tiny_dir: Path, tmp_path: Path, uncond: Any
) -> None:
    """A model's own DDIM config is taken as it is, as ``from_pretrained`` takes it: without a
    ``clip_sample`` key DDIM clips its x0 estimate (diffusers' default). We once forced it off."""
    from diffusers import LDMPipeline

    folder = tmp_path / "no-clip"
    shutil.copytree(uncond.location.folder, folder)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    del config["clip_sample"]
    config_file.write_text(json.dumps(config))
    pipe = LDMPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.clip_sample is True
    theirs = pipe(num_inference_steps=5, generator=torch.Generator().manual_seed(7), output_type="np").images
    engine = load_engine(EngineSettings(model=str(folder), tiny_dir=str(tiny_dir), depth_model="tiny-dpt"))
    ours = engine.generate(GenerateRequest("", seed=7, steps=5))
    assert np.abs(ours.rgb.astype(int) - _as_uint8(theirs).astype(int)).max() <= 1


def test_euler_on_a_compvis_model_matches_ldm_pipeline_with_euler(uncond: Any) -> None:
    """Euler starts from noise × ``init_noise_sigma`` (about 84 for this schedule, not 1 as for DDIM) and scales
    each model input: ``LDMPipeline`` does both, so with Euler in it the pictures agree."""
    from diffusers import EulerDiscreteScheduler, LDMPipeline

    scheduler = EulerDiscreteScheduler.from_config(uncond.scheduler_config)
    pipe = LDMPipeline(vqvae=uncond.vqvae, unet=uncond.unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(num_inference_steps=5, generator=torch.Generator().manual_seed(7), output_type="np").images
    ours = uncond.generate(GenerateRequest("", seed=7, steps=5, scheduler="euler"))
    assert scheduler.init_noise_sigma > 2
    assert np.abs(ours.rgb.astype(int) - _as_uint8(theirs).astype(int)).max() <= 1


def test_text_to_image_matches_ldm_text_pipeline(text: Any) -> None:
    from diffusers import DDIMScheduler, LDMTextToImagePipeline

    pipe = LDMTextToImagePipeline(
        vqvae=text.vqvae,
        bert=text.bert,
        tokenizer=text._prompts._tokenizer,
        unet=text.unet,
        scheduler=DDIMScheduler.from_config(text.scheduler_config),
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        "a red forest at dawn", num_inference_steps=5, guidance_scale=6.0, eta=0.0,
        generator=torch.Generator().manual_seed(11), output_type="np",
    ).images  # fmt: skip
    # The reference draws DDIM's eta noise from torch's global generator; compare at eta 0.
    engine = dataclasses.replace(text.preset, eta=0.0)
    text.preset, saved = engine, text.preset
    try:
        ours = text.generate(GenerateRequest("a red forest at dawn", seed=11, steps=5, guidance=6.0))
    finally:
        text.preset = saved
    assert np.abs(ours.rgb.astype(int) - _as_uint8(theirs).astype(int)).max() <= 1


def test_text_model_follows_the_prompt_and_repeats_a_seed_with_eta(text: Any) -> None:
    assert text.preset.eta == 0.3  # the model card's
    a = text.generate(GenerateRequest("a red forest", seed=5, steps=4))
    again = text.generate(GenerateRequest("a red forest", seed=5, steps=4))
    other = text.generate(GenerateRequest("a blue sea", seed=5, steps=4))
    assert np.array_equal(a.rgb, again.rgb)  # eta's noise comes from the job's seed
    assert not np.array_equal(a.rgb, other.rgb)
    assert a.prompt_ignored is False and a.prompt_used == "a red forest"


def test_pndm_in_place_of_the_models_ddim_makes_a_world_in_any_number_of_steps(text: Any) -> None:
    """The folder's scheduler is DDIM, whose config says nothing of PNDM's Runge-Kutta warm-up: PNDM
    asked for instead runs without it (as Intel's PNDM configs and CompVis's PLMS), so 1 to 3 steps work."""
    for steps in (1, 2, 3, 4):
        world = text.generate(GenerateRequest("a red forest", seed=5, steps=steps, scheduler="pndm"))
        assert world.rgb.shape == (128, 128, 3) and world.rgb.std() > 0, steps


def test_unconditional_model_ignores_the_prompt_and_says_so(uncond: Any) -> None:
    a = uncond.generate(GenerateRequest("a red forest", seed=3, steps=3))
    b = uncond.generate(GenerateRequest("a blue sea", seed=3, steps=3))
    assert np.array_equal(a.rgb, b.rgb)
    assert a.prompt_ignored is True and a.prompt_used == ""


def test_depth_comes_from_the_estimator(uncond: Any) -> None:
    result = uncond.generate(GenerateRequest("", seed=4, steps=3))
    assert (result.depth_source, result.depth_model, result.depth_method) == (
        "dpt",
        "builtin:tiny-dpt",
        "whole picture",
    )
    assert result.depth.dtype == np.uint16 and result.depth.shape == (128, 128)
    assert result.depth.max() == 65535 and result.depth.min() == 0
    direct = uncond.estimator.estimate(result.rgb, equirect=False)
    assert np.array_equal(result.depth, direct.depth)  # the depth of the very picture returned
    assert result.timings.depth_s > 0


def test_what_an_rgb_model_refuses(uncond: Any, text: Any) -> None:
    with pytest.raises(InvalidRequest, match="makes RGB only and has no RGBD image-to-image"):
        text.img2img(Img2ImgRequest("x"), np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(InvalidRequest, match="width 256 is not allowed for tiny-ldm"):
        uncond.generate(GenerateRequest("", width=256))
    with pytest.raises(InvalidRequest, match=r"guidance 0.5 is below 1"):
        text.generate(GenerateRequest("x", guidance=0.5))


def test_a_folder_says_what_it_is(tiny_dir: Path, tmp_path: Path, uncond: Any) -> None:
    """A local copy loads as a CompVis LDM by its model_index.json (not by its name), at its native size;
    an LDM3D preset on it is refused."""
    folder = tmp_path / "my-faces"
    shutil.copytree(uncond.location.folder, folder)
    engine = load_engine(EngineSettings(model=str(folder), tiny_dir=str(tiny_dir), depth_model="tiny-dpt"))
    assert engine.preset.family == "ldm" and (engine.preset.width, engine.preset.height) == (128, 128)
    assert engine.generate(GenerateRequest("", seed=1, steps=2)).prompt_ignored
    with pytest.raises(UnknownModel, match=r"is a CompVis LDM folder .* but preset 'ldm3d-pano' is for LDM3D models"):
        load_engine(EngineSettings(model=str(folder), preset="ldm3d-pano", tiny_dir=str(tiny_dir)))
    shutil.rmtree(folder / "vqvae")
    with pytest.raises(UnknownModel, match=r"not a complete LDMPipeline \(CompVis LDM\) folder: missing vqvae/"):
        load_engine(EngineSettings(model=str(folder), tiny_dir=str(tiny_dir)))
