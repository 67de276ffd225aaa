"""Our sampling loop against diffusers' deprecated StableDiffusionLDM3DPipeline.

Same tiny 4-channel weights, DDIM, same seed: RGB and depth must agree to float
tolerance. Pinned to diffusers 0.42.1 (constraints.txt), where the pipeline still
imports; its "np" output is the one path of it that works for 4 channels."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from ldm3d_engine import GenerateRequest
from ldm3d_engine.engine import Engine
from ldm3d_engine.schedulers import make_scheduler

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize(("guidance", "negative"), [(7.5, ""), (5.0, "fog, blur"), (1.0, "")])
def test_matches_diffusers_ldm3d_pipeline(load_tiny: Callable[[str], Engine], guidance: float, negative: str) -> None:
    engine = load_tiny("tiny")
    pipe = diffusers.StableDiffusionLDM3DPipeline(
        vae=engine.vae,
        text_encoder=engine.text_encoder,
        tokenizer=engine.tokenizer,
        unet=engine.unet,
        scheduler=make_scheduler("ddim", engine.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    prompt, seed, steps = "a lighthouse on a cliff", 1234, 6
    expected = pipe(
        prompt,
        negative_prompt=negative or None,
        height=96,
        width=128,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    ours = engine.generate(
        GenerateRequest(
            prompt,
            negative_prompt=negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=128,
            height=96,
            scheduler="ddim",
        )
    )
    exp_rgb = np.asarray(expected.rgb)[0]
    exp_depth = np.asarray(expected.depth)[0, ..., 0]
    assert exp_rgb.shape == (96, 128, 3)
    assert np.abs(ours.rgb.astype(np.int16) - np.rint(exp_rgb * 255).astype(np.int16)).max() <= 1
    assert np.abs(ours.depth_float - exp_depth).max() < 1e-5
    assert len(np.unique(ours.depth)) > 256  # a real comparison, not two flat images
