"""The CompVis engine's own rules, fast: its loop around stand-in parts, no model built or loaded.

``RGBLatentEngine`` is handed a UNet that predicts no noise and records what it is given, an
autoencoder whose ``decode`` records the latents and returns a picture of the test's choosing, and a
depth estimator that returns a fixed estimate. Under Euler a UNet that predicts no noise leaves the
latents where they start, so the decoded latents are the starting noise × ``init_noise_sigma``.
The real tiny models against diffusers' own pipelines: ``tests/test_rgb_ldm.py`` (a few seconds each)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler  # imported once by the test module, not in each test

from ldm3d_engine import GenerateRequest, InvalidRequest
from ldm3d_engine.backends.devices import Placement
from ldm3d_engine.backends.runtime import Runtime
from ldm3d_engine.depth.estimator import EstimatedDepth
from ldm3d_engine.errors import OutOfMemory
from ldm3d_engine.models.compvis import RGBLatentEngine
from ldm3d_engine.models.loading import ModelLocation
from ldm3d_engine.offline.tiny_rgb import DDIM_LDM
from ldm3d_engine.presets import FOLDER_DEFAULTS, get_preset
from ldm3d_engine.sampling.preview import FIT_PICTURES
from ldm3d_engine.sampling.schedulers import make_scheduler
from ldm3d_engine.types import CancelToken, Img2ImgRequest, Previews, UpscaleRequest

SIDE = 128  # the tiny-ldm preset's pictures: latents of 16 × 16


class Config(dict[str, Any]):
    """A model config read both ways, as diffusers' FrozenDict."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class Unet:
    """Predicts no noise; records every input."""

    def __init__(self, in_channels: int = 3) -> None:
        self.config = Config(in_channels=in_channels, sample_size=16, down_block_types=("Down", "AttnDown"))
        self.inputs: list[torch.Tensor] = []
        self.conditions: list[torch.Tensor | None] = []
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)  # what a seamless picture wraps along the width
        self.wrapped: list[bool] = []
        self.pause_s = 0.0
        self.fails: BaseException | None = None

    def __call__(
        self, x: torch.Tensor, t: Any, class_labels: Any = None, return_dict: bool = False,
        encoder_hidden_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:  # fmt: skip
        self.inputs.append(x.clone())
        self.conditions.append(encoder_hidden_states)
        self.wrapped.append("_conv_forward" in vars(self.conv))  # patched while a seamless job runs
        time.sleep(self.pause_s)
        if self.fails is not None:
            raise self.fails
        return (torch.zeros_like(x),)

    def modules(self) -> list[torch.nn.Module]:
        return [self.conv]


class Autoencoder:
    """Four blocks (latents 1/8 of the picture); ``decode`` records its latents and returns ``picture``."""

    dtype = torch.float32
    pause_s = 0.0

    def __init__(self, picture: torch.Tensor) -> None:
        self.config = Config(block_out_channels=(8, 16, 32, 32), scaling_factor=0.5)
        self.picture = picture
        self.decoded: list[torch.Tensor] = []

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        self.decoded.append(latents.clone())
        time.sleep(self.pause_s)
        return SimpleNamespace(sample=self.picture)

    def modules(self) -> list[torch.nn.Module]:
        return []


class Estimator:
    model_id = "stand-in-dpt"
    model = SimpleNamespace(config=Config(layers=1))

    def __init__(self) -> None:
        self.equirect: list[bool] = []
        self.cancels: list[Any] = []
        self.pause_s = 0.0

    def estimate(self, rgb: np.ndarray, *, equirect: bool, cancel: Any = None) -> EstimatedDepth:
        self.equirect.append(equirect)
        self.cancels.append(cancel)
        time.sleep(self.pause_s)
        h, w = rgb.shape[:2]
        return EstimatedDepth(np.full((h, w), 0.25, np.float32), np.full((h, w), 7, np.uint16), self.model_id, "whole")


class Prompts:
    """The text encoder: a 1×77×8 embedding per text, the same for each; ``cut`` says the text was cut."""

    def __init__(self, cut: str | None = None) -> None:
        self.cut = cut
        self.texts: list[str] = []

    def encode(self, text: str) -> tuple[torch.Tensor, str | None]:
        self.texts.append(text)
        return torch.full((1, 77, 8), float(len(self.texts))), self.cut


def grey(value: float = 0.0) -> torch.Tensor:
    return torch.full((1, 3, SIDE, SIDE), value)


def engine(
    preset: str = "tiny-ldm", picture: torch.Tensor | None = None, bert: Any = None, in_channels: int = 3,
    dtype: torch.dtype = torch.float32, scheduler: dict[str, Any] | None = None, tokenizer: Any = None,
) -> RGBLatentEngine:  # fmt: skip
    return RGBLatentEngine(
        unet=Unet(in_channels),
        vqvae=Autoencoder(grey() if picture is None else picture),
        scheduler_config=dict(DDIM_LDM if scheduler is None else scheduler),
        estimator=cast(Any, Estimator()),
        placement=Placement(torch.device("cpu"), dtype),
        location=ModelLocation(
            Path("/nowhere"), f"builtin:{preset}", get_preset(preset) if preset else FOLDER_DEFAULTS
        ),
        bert=bert,
        tokenizer=tokenizer,
    )


def text_engine(prompts: Prompts, picture: torch.Tensor | None = None) -> RGBLatentEngine:
    bert = SimpleNamespace(config=Config(d_model=8))
    e = engine("tiny-ldm-text", picture=picture, bert=bert, in_channels=4)
    e._prompts = cast(Any, prompts)
    return e


def unet(e: RGBLatentEngine) -> Unet:
    return cast(Unet, e.unet)


def vqvae(e: RGBLatentEngine) -> Autoencoder:
    return cast(Autoencoder, e.vqvae)


def test_under_euler_the_starting_noise_is_scaled_by_init_noise_sigma() -> None:
    e = engine()
    result = e.generate(GenerateRequest("", seed=7, steps=2, scheduler="euler"))
    euler = make_scheduler("euler", DDIM_LDM)
    euler.set_timesteps(2)
    assert isinstance(euler, EulerDiscreteScheduler)
    sigma = float(euler.init_noise_sigma)
    start = e.initial_latents(result.request)
    assert sigma > 2  # not 1, as for DDIM
    # The UNet predicts no noise: Euler leaves the latents where they started (decoded ÷ the scaling factor).
    torch.testing.assert_close(vqvae(e).decoded[0], start * sigma / 0.5)


def test_under_ddim_the_first_unet_input_is_the_starting_noise_itself() -> None:
    e = engine()
    result = e.generate(GenerateRequest("", seed=7, steps=2))
    assert len(unet(e).inputs) == 2
    torch.testing.assert_close(unet(e).inputs[0], e.initial_latents(result.request))


def test_the_starting_noise_is_the_seeds_drawn_in_fp32_for_an_unconditional_model() -> None:
    e = engine(dtype=torch.float64)
    req = e.resolve(GenerateRequest("", seed=11))
    expected = torch.randn((1, 3, 16, 16), generator=torch.Generator().manual_seed(11), dtype=torch.float32)
    start = e.initial_latents(req)
    assert start.dtype == torch.float64
    torch.testing.assert_close(start, expected.double())


def test_the_starting_noise_of_a_text_model_is_drawn_in_its_own_dtype() -> None:
    e = text_engine(Prompts())
    e.placement = Placement(torch.device("cpu"), torch.float64)
    req = e.resolve(GenerateRequest("a sea", seed=11, width=128, height=256))
    expected = torch.randn((1, 4, 32, 16), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    torch.testing.assert_close(e.initial_latents(req), expected)


def test_the_picture_is_the_decoded_latents_from_minus_one_to_one_in_bytes() -> None:
    picture = torch.zeros((1, 3, SIDE, SIDE))
    picture[0, :, 0, :4] = torch.tensor([-2.0, -1.0, 0.0, 1.0])
    picture[0, :, 1, 0] = 3.0
    picture[0, 1, 1, 1] = 0.5
    result = engine(picture=picture).generate(GenerateRequest("", seed=1, steps=1))
    assert result.rgb.dtype == np.uint8 and result.rgb.shape == (SIDE, SIDE, 3)
    assert result.rgb[0, :4, 0].tolist() == [0, 0, 128, 255]
    assert (result.rgb[1, 0].tolist(), result.rgb[1, 1].tolist()) == ([255, 255, 255], [128, 191, 128])


def test_an_unconditional_picture_says_its_prompt_was_ignored_and_its_depth_estimated() -> None:
    e = engine()
    result = e.generate(GenerateRequest("a castle", seed=1, steps=1, seamless=True))
    assert (result.prompt_used, result.prompt_ignored, result.prompt_truncated) == ("", True, False)
    assert (result.depth_layout, result.depth_source, result.depth_model) == ("estimated", "dpt", "stand-in-dpt")
    assert (result.model_id, result.preset, result.device, result.dtype) == (
        "builtin:tiny-ldm",
        "tiny-ldm",
        "cpu",
        "float32",
    )
    assert result.negative_truncated is False and result.safety == "no checker"
    assert cast(Estimator, e.estimator).equirect == [True]  # a 360° picture's depth is estimated as one
    assert unet(e).conditions == [None]


def test_a_text_model_without_guidance_encodes_the_prompt_alone() -> None:
    prompts = Prompts()
    e = text_engine(prompts)
    result = e.generate(GenerateRequest("a sea", seed=1, steps=1, guidance=1.0))
    assert prompts.texts == ["a sea"]
    assert (result.prompt_used, result.prompt_ignored, result.prompt_truncated) == ("a sea", False, False)
    condition = unet(e).conditions[0]
    assert unet(e).inputs[0].shape[0] == 1 and condition is not None and condition.shape[0] == 1


def test_a_guided_text_model_encodes_the_negative_prompt_first() -> None:
    prompts = Prompts()
    e = text_engine(prompts)
    e.generate(GenerateRequest("a sea", seed=1, steps=1, guidance=1.5, negative_prompt="fog"))
    assert prompts.texts == ["a sea", "fog"]
    condition = unet(e).conditions[0]
    assert condition is not None and condition[:, 0, 0].tolist() == [2.0, 1.0]  # [uncond, cond]


def test_a_cut_prompt_is_said_with_what_the_model_saw() -> None:
    e = text_engine(Prompts(cut="a sea of"))
    result = e.generate(GenerateRequest("a sea of " * 40, seed=1, steps=1, guidance=3.0))
    assert (result.prompt_used, result.prompt_truncated, result.negative_truncated) == ("a sea of", True, True)


def test_a_text_model_refuses_guidance_below_one() -> None:
    e = text_engine(Prompts())
    with pytest.raises(InvalidRequest, match=r"guidance 0.5 is below 1; use 1 \(no guidance\) or more") as refused:
        e.generate(GenerateRequest("a sea", guidance=0.5))
    assert refused.value.field == "guidance"
    assert unet(e).inputs == []


def test_an_unconditional_model_takes_any_guidance_it_ignores() -> None:
    e = engine()
    e.preset = dataclasses.replace(e.preset, guidance=0.5)
    e.generate(GenerateRequest("", seed=1, steps=1))
    assert len(unet(e).inputs) == 1


def test_progress_counts_the_steps_and_a_cancel_stops_the_loop() -> None:
    e = engine()
    seen: list[tuple[int, int]] = []
    e.generate(GenerateRequest("", seed=1, steps=3), on_step=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Exception, match=r"[Cc]ancel"):
        e.generate(GenerateRequest("", seed=1, steps=3), cancel=cancel)


def test_the_eta_noise_is_drawn_from_the_seed_plus_one() -> None:
    """DDIM with eta > 0 draws step noise: from the job's own generator (seed + 1, the starting noise
    drew from seed), not torch's global one, so a seed repeats its picture."""
    e = text_engine(Prompts())
    result = e.generate(GenerateRequest("a sea", seed=3, steps=3, guidance=1.0))
    assert e.preset.eta == 0.3
    ddim = make_scheduler("ddim", DDIM_LDM)
    ddim.set_timesteps(3)
    latents, generator = e.initial_latents(result.request), torch.Generator().manual_seed(4)
    for t in ddim.timesteps:  # what the loop does with a UNet that predicts no noise
        latents = ddim.step(torch.zeros_like(latents), t, latents, eta=0.3, generator=generator).prev_sample
    torch.testing.assert_close(vqvae(e).decoded[0], latents / 0.5)


def test_progress_counts_the_jobs_steps_not_the_unet_passes() -> None:
    e = engine()
    seen: list[tuple[int, int]] = []
    e.generate(
        GenerateRequest("", seed=1, steps=4, scheduler="pndm"), on_step=lambda done, total: seen.append((done, total))
    )
    assert len(unet(e).inputs) == 5 and seen[-1] == (4, 4)  # PNDM in place of DDIM (PLMS, no Runge-Kutta): 5 passes


def test_the_backend_is_told_after_each_step() -> None:
    class Counting(Runtime):
        steps = 0

        def after_step(self) -> None:
            self.steps += 1

    e = engine()
    runtime = Counting()
    e.placement = Placement(torch.device("cpu"), torch.float32, runtime)
    e.generate(GenerateRequest("", seed=1, steps=3))
    assert runtime.steps == 3


def test_previews_come_from_the_fitted_map_with_a_flat_depth() -> None:
    e = engine()
    e.vqvae = Pooling(kl=False)
    sent: list[Any] = []
    e.generate(GenerateRequest("", seed=1, steps=3), previews=Previews(1, sent.append))
    assert [(p.step, p.total) for p in sent] == [(1, 3), (2, 3)]  # the last step makes the world itself
    assert sent[0].rgb.shape == (16, 16, 3) and set(np.unique(sent[0].depth)) == {32768}


def test_a_folder_without_a_preset_runs_at_its_native_size() -> None:
    e = engine(preset="", bert=SimpleNamespace(config=Config()), in_channels=4)
    assert (e.vae_scale, e.preset.width, e.preset.height, e.preset.min_size) == (8, 128, 128, 128)
    assert (e.preset.max_width, e.preset.max_height) == (128, 128)


def test_a_preset_keeps_its_size_and_the_wrap_multiple_is_the_whole_downsampling() -> None:
    e = engine("tiny-ldm-text", bert=SimpleNamespace(config=Config()), in_channels=4)
    assert (e.preset.max_width, e.preset.wrap_multiple, e.preset.native_scheduler) == (256, 16, "ddim")
    unet = Unet()
    unet.config["down_block_types"] = ("Down",) * 4  # 3 downsamplings in the UNet, 3 in the autoencoder
    e = RGBLatentEngine(
        unet=unet, vqvae=Autoencoder(grey()), scheduler_config=DDIM_LDM, estimator=cast(Any, Estimator()),
        placement=Placement(torch.device("cpu"), torch.float32),
        location=ModelLocation(Path("/nowhere"), "builtin:tiny-ldm", get_preset("tiny-ldm")),
    )  # fmt: skip
    assert e.preset.wrap_multiple == 64


class Tokenizer:
    """A word-piece tokenizer's calls as the prompt encoder makes them: 77 ids, or one per word and two more."""

    def __call__(self, text: str, **kwargs: Any) -> SimpleNamespace:
        if kwargs.get("return_tensors") == "pt":
            return SimpleNamespace(input_ids=torch.arange(77)[None])
        return SimpleNamespace(input_ids=list(range(len(text.split()) + 2)))


class Bert:
    config = Config(d_model=8)

    def __call__(self, ids: torch.Tensor, attention_mask: Any = None) -> tuple[torch.Tensor]:
        return (torch.ones(1, 77, 8),)


def test_a_text_model_encodes_its_prompt_with_its_tokenizer_and_text_encoder_in_its_dtype() -> None:
    e = engine("tiny-ldm-text", bert=Bert(), in_channels=4, tokenizer=Tokenizer(), dtype=torch.float64)
    result = e.generate(GenerateRequest("a sea", seed=1, steps=1, guidance=1.0))
    condition = unet(e).conditions[0]
    assert condition is not None and condition.dtype == torch.float64 and condition.shape == (1, 77, 8)
    assert (result.prompt_used, result.prompt_truncated) == ("a sea", False)


@pytest.mark.parametrize(
    ("preset", "bert", "message"),
    [
        ("tiny-ldm", SimpleNamespace(config=Config()),
         "preset 'tiny-ldm' is for unconditional models; 'builtin:tiny-ldm' is text-conditioned"),
        ("tiny-ldm-text", None,
         "preset 'tiny-ldm-text' is for text-conditioned models; 'builtin:tiny-ldm-text' is unconditional"),
    ],
)  # fmt: skip
def test_a_preset_for_the_other_kind_of_model_is_refused(preset: str, bert: Any, message: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        engine(preset, bert=bert)
    assert (refused.value.field, str(refused.value)) == ("model", message)


def test_a_scheduler_the_engine_does_not_run_is_refused() -> None:
    with pytest.raises(Exception, match=r"^builtin:tiny-ldm's scheduler_config.json names 'LMSDiscreteScheduler'"):
        engine(scheduler={**DDIM_LDM, "_class_name": "LMSDiscreteScheduler"})


def test_img2img_upscale_and_morphs_are_refused() -> None:
    e = engine()
    rgb = np.zeros((SIDE, SIDE, 3), np.uint8)
    refusals = []
    runs: tuple[Callable[[], Any], ...] = (
        lambda: e.img2img(Img2ImgRequest("a sea"), rgb),
        lambda: e.upscale(UpscaleRequest(), rgb, np.zeros((SIDE, SIDE), np.uint16)),
        lambda: e.generate_between(GenerateRequest("a"), GenerateRequest("b"), 0.5),
    )
    for run in runs:
        with pytest.raises(InvalidRequest) as refused:
            run()
        refusals.append((refused.value.field, str(refused.value)))
    assert refusals == [
        ("model", "tiny-ldm makes RGB only and has no RGBD image-to-image; use an LDM3D model for img2img"),
        ("model", "builtin:tiny-ldm is not an upscaler; use --upscale-model ldm3d-sr"),
        ("model", "builtin:tiny-ldm makes RGB only; morphs run on the LDM3D models"),
    ]


def test_the_identity_names_the_model_and_changes_with_its_configs() -> None:
    a, b = engine(), engine()
    assert a.identity == b.identity and a.identity.startswith("builtin:tiny-ldm@")
    b_id = b.identity
    c = engine()
    cast(Any, c.unet).config["sample_size"] = 32
    d = engine(scheduler={**DDIM_LDM, "beta_end": 0.02})
    e = engine()
    cast(Any, e.estimator).model = SimpleNamespace(config=Config(layers=2))
    f = engine()
    f.vqvae.config["scaling_factor"] = 0.25
    assert len({b_id, c.identity, d.identity, e.identity, f.identity}) == 5


def test_the_identity_of_a_text_model_includes_its_text_encoder() -> None:
    a = engine("tiny-ldm-text", bert=SimpleNamespace(config=Config(d_model=8)), in_channels=4)
    b = engine("tiny-ldm-text", bert=SimpleNamespace(config=Config(d_model=16)), in_channels=4)
    assert a.identity != b.identity


class Pooling(Autoencoder):
    """An autoencoder whose latent is the picture averaged over 8 × 8 pixels (×0.5, its scaling factor,
    taken off by the engine): the preview map that fits it exactly is RGB = latent + 0.5."""

    def __init__(self, kl: bool) -> None:
        super().__init__(grey())
        self.kl = kl
        self.encoded = 0

    def encode(self, x: torch.Tensor) -> SimpleNamespace:
        self.encoded += 1
        latent = torch.nn.functional.avg_pool2d(x, 8)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=latent)) if self.kl else SimpleNamespace(latents=latent)

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(sample=torch.nn.functional.interpolate(latents, scale_factor=8.0))


@pytest.mark.parametrize("kl", [False, True])  # a VQ autoencoder's latents, a KL one's mean
def test_the_preview_map_is_fitted_once_against_the_autoencoder(kl: bool) -> None:
    e = engine()
    e.vqvae = Pooling(kl)
    fitted = e.preview_map()
    assert e.preview_map() is fitted and cast(Pooling, e.vqvae).encoded == FIT_PICTURES  # once
    expected = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]], np.float32)
    np.testing.assert_allclose(fitted.weights, expected, atol=1e-4)  # the depth of a preview: flat, 0.5


@pytest.mark.parametrize("seamless", [True, False])
def test_a_seamless_picture_runs_with_its_convolutions_wrapped(seamless: bool) -> None:
    e = engine()
    e.generate(GenerateRequest("", seed=1, steps=1, seamless=seamless))
    assert unet(e).wrapped == [seamless]


def test_running_out_of_memory_names_the_device_and_the_size() -> None:
    e = engine()
    unet(e).fails = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    with pytest.raises(OutOfMemory, match=r"^out of memory on cpu at 128×128: CUDA out of memory"):
        e.generate(GenerateRequest("", seed=1, steps=1))


def test_the_depth_is_the_estimators_and_may_be_cancelled_there() -> None:
    e = engine()
    cancel = CancelToken()
    result = e.generate(GenerateRequest("", seed=1, steps=1), cancel=cancel)
    assert cast(Estimator, e.estimator).cancels == [cancel]
    assert (int(result.depth[0, 0]), float(result.depth_float[0, 0])) == (7, 0.25)


def test_each_phase_is_timed() -> None:
    e = engine()
    unet(e).pause_s, vqvae(e).pause_s, cast(Estimator, e.estimator).pause_s = 0.02, 0.04, 0.06
    t = e.generate(GenerateRequest("", seed=1, steps=1)).timings
    assert 0 <= t.text_encoding_s < 60 and 0.02 <= t.denoising_s < 60
    assert 0.04 <= t.decoding_s < 60 and 0.06 <= t.depth_s < 60


def test_the_latents_are_decoded_in_the_autoencoders_dtype() -> None:
    e = engine()
    vqvae(e).dtype = torch.float64
    e.generate(GenerateRequest("", seed=1, steps=1))
    assert vqvae(e).decoded[0].dtype == torch.float64
