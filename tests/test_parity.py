"""Our sampling loop against the references, on the same tiny weights and seeds.

* text → RGBD: diffusers' deprecated ``StableDiffusionLDM3DPipeline`` loaded with
  ``from_pretrained`` from the model folder itself, so it samples with the folder's own scheduler
  (PNDM for ``tiny``/``tiny-6c``, as Intel/ldm3d ships; DDIM for ``tiny-pano``), while our engine
  runs its defaults. 4 channels: RGB and depth; 6 channels: RGB (that pipeline's depth is broken).
* img2img: diffusers' ``StableDiffusionImg2ImgPipeline`` on the 6-channel modules (with 4 channels
  it would take the image for latents): step count ``int(steps × strength)`` and a sampled latent.
* LDM3D-SR: the order of operations of diffusers' community ``StableDiffusionUpscaleLDM3DPipeline``
  (``examples/community/pipeline_stable_diffusion_upscale_ldm3d.py``; not shipped in the diffusers
  package), written out below from diffusers' own parts: the resize to ``target_res`` by
  ``VaeImageProcessorLDM3D`` (asked for bilinear, which that class drops: Pillow's Lanczos runs),
  a VAE sample drawn with the generator, then the starting noise.

diffusers is pinned to 0.42.1 (constraints.txt), where the LDM3D pipeline still imports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldm3d_engine import GenerateRequest
from ldm3d_engine.depth.packing import vae_input
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.types import Img2ImgRequest, UpscaleRequest

diffusers = pytest.importorskip("diffusers")

Loader = Callable[[str], Engine]


def _pipeline(engine: Engine, cls: type | None = None) -> object:
    # Without the folder's safety checker: diffusers 0.42's LDM3D pipeline fails in run_safety_checker
    # (its image processor's numpy_to_depth raises TypeError on the post-processed picture), and our
    # engine's check is tested on its own (tests/test_safety.py, docs/fidelity.md).
    pipe = (cls or diffusers.StableDiffusionLDM3DPipeline).from_pretrained(
        str(engine.location.folder), safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _rgb_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == (*theirs.shape[:2], 3)
    assert np.abs(ours.astype(np.int16) - np.rint(theirs[..., :3] * 255).astype(np.int16)).max() <= 1


@pytest.mark.parametrize(("guidance", "negative"), [(7.5, ""), (5.0, "fog, blur"), (1.0, "")])
def test_text_to_rgbd_matches_the_pipeline_with_the_folders_own_scheduler(
    load_tiny: Loader, guidance: float, negative: str
) -> None:
    engine = load_tiny("tiny")
    pipe = _pipeline(engine)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler"  # type: ignore[attr-defined]
    prompt, seed, steps = "a lighthouse on a cliff", 1234, 6
    expected = pipe(  # type: ignore[operator]
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
            prompt, negative_prompt=negative, seed=seed, steps=steps, guidance=guidance, width=128, height=96
        )
    )
    assert ours.request.scheduler == "pndm"
    _rgb_close(ours.rgb, np.asarray(expected.rgb)[0])
    # (our UNet runs its attention with one fused Q/K/V projection: float rounding apart)
    assert np.abs(ours.depth_float - np.asarray(expected.depth)[0, ..., 0]).max() < 1e-4
    assert len(np.unique(ours.depth)) > 256  # a real comparison, not two flat images


@pytest.mark.parametrize("model", ["tiny-6c", "tiny-pano"])
def test_six_channel_and_ddim_models_match_the_pipeline_too(load_tiny: Loader, model: str) -> None:
    engine = load_tiny(model)
    pipe = _pipeline(engine)
    size = {"width": 128, "height": 64}
    expected = pipe(  # type: ignore[operator]
        "a canyon", num_inference_steps=4, guidance_scale=7.0, generator=torch.Generator().manual_seed(5),
        output_type="np", **size,
    )  # fmt: skip
    ours = engine.generate(GenerateRequest("a canyon", seed=5, steps=4, guidance=7.0, seamless=False, **size))
    # the pano preset adds "360 view of" to the prompt: give the pipeline the same words
    if ours.prompt_used != "a canyon":
        expected = pipe(  # type: ignore[operator]
            ours.prompt_used, num_inference_steps=4, guidance_scale=7.0, generator=torch.Generator().manual_seed(5),
            output_type="np", **size,
        )  # fmt: skip
    _rgb_close(ours.rgb, np.asarray(expected.rgb)[0])


@pytest.mark.parametrize(("steps", "strength", "ran"), [(10, 0.75, 7), (6, 0.5, 3)])
def test_img2img_matches_diffusers_img2img(load_tiny: Loader, steps: int, strength: float, ran: int) -> None:
    engine = load_tiny("tiny-6c")
    source = engine.generate(GenerateRequest("a reef", seed=1, width=64, height=64, steps=3))
    pipe = _pipeline(engine, diffusers.StableDiffusionImg2ImgPipeline)
    # the pipeline takes a [0, 1] tensor in the VAE's own channel packing (6 channels here)
    image = (vae_input(source.rgb, source.depth, engine.depth_layout, (64, 64), wrap=False) + 1.0) / 2.0
    passes: list[int] = []
    expected = pipe(  # type: ignore[operator]
        "a cave", image=image, strength=strength, num_inference_steps=steps, guidance_scale=7.5,
        generator=torch.Generator().manual_seed(9), output_type="np",
        callback_on_step_end=lambda p, i, t, kw: passes.append(i) or kw,
    ).images[0]  # fmt: skip
    seen: list[tuple[int, int]] = []
    ours = engine.img2img(
        Img2ImgRequest("a cave", seed=9, steps=steps, strength=strength, guidance=7.5),
        source.rgb,
        source.depth,
        on_step=lambda s, t: seen.append((s, t)),
    )
    assert seen[-1] == (ran, ran)  # int(steps × strength), not rounded
    assert len(passes) == ran + 1  # PNDM: one pass more than steps, in both
    _rgb_close(ours.rgb, expected)
    hi, lo = (np.rint(np.clip(expected[..., c], 0, 1) * 255).astype(np.int32) for c in (4, 5))
    assert np.abs(ours.depth.astype(np.int32) - (hi * 256 + lo)).max() <= 256  # one high-byte step at most


def _reference_upscale(
    engine: Engine, rgb: np.ndarray, depth: np.ndarray, target: tuple[int, int], seed: int, steps: int, level: int
) -> np.ndarray:
    """The community LDM3D-SR pipeline's steps, in its order, on diffusers' parts (see the module doc)."""
    from diffusers.image_processor import VaeImageProcessorLDM3D

    width, height = target
    processor = VaeImageProcessorLDM3D(vae_scale_factor=8, resample="bilinear")  # as the community pipeline
    assert processor.config.resample == "lanczos"  # the argument is dropped: Lanczos is what runs
    low_rgb, low_depth = processor.preprocess(Image.fromarray(rgb), Image.fromarray(depth), target_res=[height, width])
    generator = torch.Generator().manual_seed(seed)
    embeds = []
    for text in ("", engine.prompt_for_model("high quality high resolution uhd 4k image")):
        ids = engine.tokenizer(text, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        embeds.append(engine.text_encoder(ids.input_ids)[0])
    prompt_embeds = torch.cat(embeds)
    scheduler = diffusers.PNDMScheduler.from_config(engine.scheduler_config)
    scheduler.set_timesteps(steps)
    image_latents = engine.vae.encode(torch.cat([low_rgb, low_depth], 1)).latent_dist.sample(generator)
    image_latents = torch.cat([image_latents * engine.vae.config.scaling_factor] * 2)
    latents = torch.randn((1, 4, height // 8, width // 8), generator=generator) * scheduler.init_noise_sigma
    labels = torch.tensor([level, level])
    for t in scheduler.timesteps:
        model_in = torch.cat([scheduler.scale_model_input(torch.cat([latents] * 2), t), image_latents], 1)
        uncond, cond = engine.unet(model_in, t, encoder_hidden_states=prompt_embeds, class_labels=labels)[0].chunk(2)
        latents = scheduler.step(uncond + engine.preset.guidance * (cond - uncond), t, latents).prev_sample
    image = engine.vae.decode(latents / engine.vae.config.scaling_factor)[0]
    return (image[0].permute(1, 2, 0).clamp(-1, 1).numpy() + 1.0) / 2.0  # type: ignore[no-any-return]


@pytest.mark.parametrize(("target", "request_"), [((128, 128), UpscaleRequest(scale=2)), ((96, 160), None)])
def test_upscale_matches_the_ldm3d_sr_reference(
    load_tiny: Loader, target: tuple[int, int], request_: UpscaleRequest | None
) -> None:
    engine = load_tiny("tiny-sr")
    assert engine.preset.native_scheduler == "pndm"
    low = load_tiny("tiny").generate(GenerateRequest("lemons", seed=3, width=64, height=64, steps=2))
    seed, steps, level = 11, 4, 20
    width, height = target
    asked = request_ or UpscaleRequest(width=width, height=height)
    ours = engine.upscale(
        UpscaleRequest(**{**asked.__dict__, "seed": seed, "steps": steps, "noise_level": level}), low.rgb, low.depth
    )
    with torch.inference_mode():
        expected = _reference_upscale(engine, low.rgb, low.depth, target, seed, steps, level)
    assert (ours.width, ours.height) == target and ours.request.scheduler == "pndm"
    _rgb_close(ours.rgb, expected)
    assert np.abs(ours.depth_float - expected[..., 3]).max() < 1e-4
    assert len(np.unique(ours.depth)) > 256


def test_with_attention_masks_the_prompts_end_token_is_attended_as_diffusers_does(tiny_dir: Path) -> None:
    from ldm3d_engine import EngineSettings, load_engine

    engine = load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))  # its own: the config changes
    engine.text_encoder.config.use_attention_mask = True  # as some text encoders ask
    pipe = _pipeline(engine)
    pipe.text_encoder.config.use_attention_mask = True  # type: ignore[attr-defined]
    with torch.inference_mode():
        theirs, _ = pipe.encode_prompt("a red house", "cpu", 1, False)  # type: ignore[attr-defined]
        ours, _ = engine._prompts.encode("a red house")
        # the old mask, ids != pad id: CLIP pads with its end-of-text token, so that hid the prompt's own
        ids = engine.tokenizer("a red house", padding="max_length", max_length=77, return_tensors="pt").input_ids
        hidden_end = engine.text_encoder(ids, attention_mask=(ids != engine.tokenizer.pad_token_id).long())[0]
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(hidden_end, theirs, atol=1e-3)
