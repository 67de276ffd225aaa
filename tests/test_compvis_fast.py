"""The CompVis engine's own rules, fast: its loop around stand-in parts, no model built or loaded.

``RGBLatentEngine`` is handed a UNet that predicts no noise and records what it is given, an
autoencoder whose ``decode`` records the latents and returns a picture of the test's choosing, and a
depth estimator that returns a fixed estimate. Under Euler a UNet that predicts no noise leaves the
latents where they start, so the decoded latents are the starting noise × ``init_noise_sigma``.
The real tiny models against diffusers' own pipelines: ``tests/test_rgb_ldm.py`` (a few seconds each)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler  # imported once by the test module, not in each test

from ldm3d_engine import GenerateRequest, InvalidRequest
from ldm3d_engine.backends.devices import Placement
from ldm3d_engine.depth.estimator import EstimatedDepth
from ldm3d_engine.models.compvis import RGBLatentEngine
from ldm3d_engine.models.loading import ModelLocation
from ldm3d_engine.offline.tiny_rgb import DDIM_LDM
from ldm3d_engine.presets import FOLDER_DEFAULTS, get_preset
from ldm3d_engine.sampling.schedulers import make_scheduler
from ldm3d_engine.types import CancelToken, Img2ImgRequest, UpscaleRequest

SIDE = 128  # the tiny-ldm preset's pictures: latents of 16 × 16


class Config(dict[str, Any]):
    """A model config read both ways, as diffusers' FrozenDict."""

    def __getattr__(self, name: str) -> Any:
        return self[name]

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class Unet:
    """Predicts no noise; records every input."""

    def __init__(self, in_channels: int = 3) -> None:
        self.config = Config(in_channels=in_channels, sample_size=16, down_block_types=("Down", "AttnDown"))
        self.inputs: list[torch.Tensor] = []
        self.conditions: list[torch.Tensor | None] = []

    def __call__(
        self, x: torch.Tensor, t: Any, class_labels: Any = None, return_dict: bool = False,
        encoder_hidden_states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor]:  # fmt: skip
        self.inputs.append(x.clone())
        self.conditions.append(encoder_hidden_states)
        return (torch.zeros_like(x),)

    def modules(self) -> list[torch.nn.Module]:  # no convolutions to wrap for a seamless picture
        return []


class Autoencoder:
    """Four blocks (latents 1/8 of the picture); ``decode`` records its latents and returns ``picture``."""

    dtype = torch.float32

    def __init__(self, picture: torch.Tensor) -> None:
        self.config = Config(block_out_channels=(8, 16, 32, 32), scaling_factor=0.5)
        self.picture = picture
        self.decoded: list[torch.Tensor] = []

    def decode(self, latents: torch.Tensor) -> SimpleNamespace:
        self.decoded.append(latents.clone())
        return SimpleNamespace(sample=self.picture)

    def modules(self) -> list[torch.nn.Module]:
        return []


class Estimator:
    model_id = "stand-in-dpt"
    model = SimpleNamespace(config=Config(layers=1))

    def __init__(self) -> None:
        self.equirect: list[bool] = []

    def estimate(self, rgb: np.ndarray, *, equirect: bool, cancel: Any = None) -> EstimatedDepth:
        self.equirect.append(equirect)
        h, w = rgb.shape[:2]
        return EstimatedDepth(np.zeros((h, w), np.float32), np.zeros((h, w), np.uint16), self.model_id, "whole picture")


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
    dtype: torch.dtype = torch.float32, scheduler: dict[str, Any] | None = None,
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
    e.generate(GenerateRequest("a sea", seed=1, steps=1, guidance=3.0, negative_prompt="fog"))
    assert prompts.texts == ["a sea", "fog"]
    condition = unet(e).conditions[0]
    assert condition is not None and condition[:, 0, 0].tolist() == [2.0, 1.0]  # [uncond, cond]


def test_a_cut_prompt_is_said_with_what_the_model_saw() -> None:
    e = text_engine(Prompts(cut="a sea of"))
    result = e.generate(GenerateRequest("a sea of " * 40, seed=1, steps=1, guidance=3.0))
    assert (result.prompt_used, result.prompt_truncated, result.negative_truncated) == ("a sea of", True, True)


def test_a_text_model_refuses_guidance_below_one() -> None:
    e = text_engine(Prompts())
    with pytest.raises(InvalidRequest, match=r"guidance 0.5 is below 1; use 1 \(no guidance\) or more"):
        e.generate(GenerateRequest("a sea", guidance=0.5))
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


def test_the_eta_noise_comes_from_the_seed() -> None:
    """DDIM with eta > 0 draws step noise: from the job's seed, so a seed repeats its picture."""
    e = text_engine(Prompts())
    first = e.generate(GenerateRequest("a sea", seed=3, steps=3, guidance=1.0))
    again = e.generate(GenerateRequest("a sea", seed=3, steps=3, guidance=1.0))
    decoded = vqvae(e).decoded
    assert e.preset.eta > 0 and first.request.seed == again.request.seed
    torch.testing.assert_close(decoded[0], decoded[1])


def test_a_folder_without_a_preset_runs_at_its_native_size() -> None:
    e = engine(preset="", bert=SimpleNamespace(config=Config()), in_channels=4)
    assert (e.vae_scale, e.preset.width, e.preset.height, e.preset.min_size) == (8, 128, 128, 128)
    assert (e.preset.max_width, e.preset.max_height) == (128, 128)


def test_a_preset_keeps_its_size_and_the_wrap_multiple_is_the_whole_downsampling() -> None:
    e = engine("tiny-ldm-text", bert=SimpleNamespace(config=Config()), in_channels=4)
    assert (e.preset.max_width, e.preset.wrap_multiple, e.preset.native_scheduler) == (256, 16, "ddim")


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
    assert message in str(refused.value)


def test_a_scheduler_the_engine_does_not_run_is_refused() -> None:
    with pytest.raises(Exception, match="names 'LMSDiscreteScheduler'"):
        engine(scheduler={**DDIM_LDM, "_class_name": "LMSDiscreteScheduler"})


def test_img2img_upscale_and_morphs_are_refused() -> None:
    e = engine()
    rgb = np.zeros((SIDE, SIDE, 3), np.uint8)
    with pytest.raises(InvalidRequest):
        e.img2img(Img2ImgRequest("a sea"), rgb)
    with pytest.raises(InvalidRequest, match="builtin:tiny-ldm is not an upscaler; use --upscale-model ldm3d-sr"):
        e.upscale(UpscaleRequest(), rgb, np.zeros((SIDE, SIDE), np.uint16))
    with pytest.raises(InvalidRequest, match="builtin:tiny-ldm makes RGB only; morphs run on the LDM3D models"):
        e.generate_between(GenerateRequest("a"), GenerateRequest("b"), 0.5)


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


def test_the_preview_map_is_fitted_once_against_the_autoencoder() -> None:
    """Previews: a map from latents to RGB fitted by encoding and decoding pictures (the depth flat)."""

    class Encoding(Autoencoder):
        def __init__(self) -> None:
            super().__init__(grey())
            self.encoded = 0

        def encode(self, x: torch.Tensor) -> SimpleNamespace:
            self.encoded += 1
            return SimpleNamespace(latents=torch.nn.functional.avg_pool2d(x, 8))

        def decode(self, latents: torch.Tensor) -> SimpleNamespace:
            return SimpleNamespace(sample=torch.nn.functional.interpolate(latents, scale_factor=8.0))

    e = engine()
    e.vqvae = Encoding()
    first = e.preview_map()
    assert e.preview_map() is first and cast(Encoding, e.vqvae).encoded > 0
