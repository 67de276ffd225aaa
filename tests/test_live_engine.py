"""A world as it forms (previews) and between two worlds (morph frames), on the engine's own API,
with the built-in tiny models (random weights: the pictures are noise, the machinery is real)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from ldm3d_engine import Cancelled, CancelToken, GenerateRequest, InvalidRequest
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.sampling.blend import slerp
from ldm3d_engine.sampling.preview import PreviewMap, fit_preview_map, predicted_clean, synthetic_pictures
from ldm3d_engine.sampling.schedulers import make_scheduler
from ldm3d_engine.types import Preview, Previews

Loader = Callable[[str], Engine]
SMALL = {"width": 128, "height": 64, "steps": 8}


def collect(every: int) -> tuple[Previews, list[Preview]]:
    seen: list[Preview] = []
    return Previews(every, seen.append), seen


# -- x₀: what the sampler predicts the clean world to be -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "prediction"),
    [("ddim", "epsilon"), ("ddim", "v_prediction"), ("euler", "epsilon"), ("euler_a", "v_prediction")],
)
def test_the_clean_prediction_is_the_schedulers_own(name: str, prediction: str) -> None:
    """Where a scheduler says what it predicts (DDIM and the Euler ones return pred_original_sample),
    ours is the same, for ε- and v-predicting models."""
    config = {
        "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "clip_sample": False, "prediction_type": prediction,
    }  # fmt: skip
    scheduler = make_scheduler(name, config)
    scheduler.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 8, 8, generator=g) * scheduler.init_noise_sigma
    output = torch.randn(1, 4, 8, 8, generator=g)
    for t in scheduler.timesteps[:4]:
        scheduler.scale_model_input(sample, t)  # (sets the step index of sigma schedulers)
        ours = predicted_clean(scheduler, output, sample, t)
        theirs = scheduler.step(output, t, sample, generator=g).pred_original_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
        sample = torch.randn(1, 4, 8, 8, generator=g)  # (any sample will do at the next t)


# -- previews -------------------------------------------------------------------------------------------


def test_previews_arrive_in_order_every_n_steps_and_stop_before_the_world(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    steps: list[tuple[str, int]] = []
    previews = Previews(3, lambda p: steps.append(("preview", p.step)))
    engine.generate(
        GenerateRequest("dunes", seed=1, **SMALL), on_step=lambda d, t: steps.append(("step", d)), previews=previews
    )
    assert [s for kind, s in steps if kind == "preview"] == [3, 6]  # not at 8: that is the world itself
    # each preview comes after the progress of its own step
    assert steps.index(("preview", 3)) == steps.index(("step", 3)) + 1


def test_a_preview_is_small_rgb_and_16_bit_depth_and_leaves_the_world_as_it_was(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    request = GenerateRequest("a lake", seed=4, **SMALL)
    previews, seen = collect(2)
    with_previews = engine.generate(request, previews=previews)
    without = engine.generate(request)
    np.testing.assert_array_equal(with_previews.rgb, without.rgb)
    np.testing.assert_array_equal(with_previews.depth, without.depth)
    assert [p.step for p in seen] == [2, 4, 6] and all(p.total == 8 for p in seen)
    first = seen[0]
    assert first.rgb.shape == (8, 16, 3) and first.rgb.dtype == np.uint8  # the latent resolution: 1/8
    assert first.depth.shape == (8, 16) and first.depth.dtype == np.uint16
    # a depth map, not the flat stand-in (x₀ of random weights is ~8× a real latent's range: much saturates)
    assert len(np.unique(seen[-1].depth)) > 3 and not (seen[-1].depth == 32768).all()
    assert not np.array_equal(seen[0].rgb, seen[-1].rgb)  # the world moves as it forms


def test_the_fit_finds_a_decoder_that_is_linear_per_latent_pixel() -> None:
    """A stand-in VAE whose decoder is a known 4×4 map + bias per latent pixel, blurred inside each 8×8
    block (what a real VAE does to first order): the fit recovers the map, and a latent it never saw
    decodes to its preview within rounding. (The tiny models' random VAEs are not near-linear, so on
    them only the machinery is tested; bench/engine_speed.py measures the map against the real decode.)"""
    true = np.array([[0.2, 0.1, 0.0, 0.3], [-0.1, 0.3, 0.1, 0.0], [0.0, -0.2, 0.25, 0.1], [0.1, 0.0, -0.1, 0.2]])
    bias = np.array([0.5, 0.45, 0.5, 0.4])
    projection = 0.3 * torch.randn(4, 4, generator=torch.Generator().manual_seed(1))  # (nothing clips)

    def encode(rgb: np.ndarray, depth: np.ndarray) -> torch.Tensor:
        x = np.concatenate([rgb, depth[..., None]], axis=-1)
        pooled = x.reshape(8, 8, 8, 8, 4).mean(axis=(1, 3))
        return torch.einsum("hwc,cd->dhw", torch.from_numpy(pooled).float(), projection)[None]

    def decode(latent: torch.Tensor) -> np.ndarray:
        z = latent[0].permute(1, 2, 0).numpy()
        small = np.clip(z @ true + bias, 0, 1)
        block = np.repeat(np.repeat(small, 8, axis=0), 8, axis=1)
        ripple = 0.02 * np.sin(np.arange(64) * np.pi / 4)[None, :, None]  # detail that averages out per block
        return (block + ripple).astype(np.float32)

    fitted = fit_preview_map(encode, decode, synthetic_pictures(4, 64, 64))
    np.testing.assert_allclose(fitted.weights[:4], true, atol=0.02)
    np.testing.assert_allclose(fitted.weights[4], bias, atol=0.02)
    rgb, depth = synthetic_pictures(1, 64, 64, seed=99)[0]
    latent = encode(rgb, depth)
    preview_rgb, preview_depth = fitted(latent)
    expected = decode(latent).reshape(8, 8, 8, 8, 4).mean(axis=(1, 3))
    assert np.abs(preview_rgb / 255 - expected[..., :3]).max() < 0.01
    assert np.abs(preview_depth / 65535 - expected[..., 3]).max() < 0.01
    assert fitted.fit_psnr > 35


def test_the_preview_map_is_fitted_once_per_model(load_tiny: Loader) -> None:
    engine = load_tiny("tiny-6c")
    previews, seen = collect(4)
    engine.generate(GenerateRequest("a cave", seed=2, **SMALL), previews=previews)
    first = engine.preview_map()
    engine.generate(GenerateRequest("a cave", seed=3, **SMALL), previews=previews)
    assert engine.preview_map() is first and isinstance(first, PreviewMap)
    assert first.weights.shape == (5, 4) and first.has_depth  # 4 latent channels + bias → r, g, b, depth
    assert len(seen) == 2 and seen[0].depth.dtype == np.uint16


def test_a_cancelled_job_sends_no_more_previews(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    cancel = CancelToken()
    seen: list[int] = []

    def send(p: Preview) -> None:
        seen.append(p.step)
        cancel.cancel()

    with pytest.raises(Cancelled):
        engine.generate(GenerateRequest("x", seed=1, **SMALL), cancel=cancel, previews=Previews(1, send))
    assert seen == [1]


def test_previews_every_zero_steps_is_refused() -> None:
    with pytest.raises(ValueError, match="every 0 steps"):
        Previews(0, lambda p: None)


def test_img2img_and_upscale_send_previews_too(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    world = engine.generate(GenerateRequest("hills", seed=5, width=64, height=64, steps=4))
    from ldm3d_engine.types import Img2ImgRequest, UpscaleRequest

    previews, seen = collect(1)
    engine.img2img(Img2ImgRequest("hills", seed=5, steps=8, strength=0.5), world.rgb, world.depth, previews=previews)
    assert [p.step for p in seen] == [1, 2, 3]  # 4 steps run of 8
    seen.clear()
    load_tiny("tiny-sr").upscale(
        UpscaleRequest(steps=3, seed=1), world.rgb[:32, :32], world.depth[:32, :32], previews=previews
    )
    assert [p.step for p in seen] == [1, 2] and seen[0].rgb.shape == (16, 16, 3)


# -- morph frames ----------------------------------------------------------------------------------------


def test_slerp_keeps_the_ends_exactly_and_the_norm_between() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 4, 16, 16, generator=g)
    assert slerp(a, b, 0.0) is a and slerp(a, b, 1.0) is b
    middle = slerp(a, b, 0.5)
    assert abs(float(middle.norm()) - float(a.norm())) / float(a.norm()) < 0.05  # a linear blend loses ~30 %
    assert float((0.5 * a + 0.5 * b).norm()) < 0.8 * float(a.norm())
    rows = slerp(a, b, 0.3, dim=-1)
    torch.testing.assert_close(rows[0, 0, 0], slerp(a[0, 0, 0], b[0, 0, 0], 0.3))


def test_a_morphs_ends_are_the_two_worlds_and_its_middle_is_neither(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    first = GenerateRequest("a desert", seed=1, **SMALL)
    second = GenerateRequest("a forest", seed=2, guidance=5.0, **SMALL)
    a, b = engine.generate(first), engine.generate(second)
    start = engine.generate_between(first, second, 0.0)
    end = engine.generate_between(first, second, 1.0)
    np.testing.assert_array_equal(start.rgb, a.rgb)
    np.testing.assert_array_equal(start.depth, a.depth)
    np.testing.assert_array_equal(end.rgb, b.rgb)
    np.testing.assert_array_equal(end.depth, b.depth)
    middle = engine.generate_between(first, second, 0.5)
    for world in (a, b):
        assert np.abs(middle.rgb.astype(int) - world.rgb.astype(int)).mean() > 4
    near_start = engine.generate_between(first, second, 0.05)
    # a small step moves the world a little: nearer to the first world than the middle is
    assert np.abs(near_start.rgb.astype(int) - a.rgb).mean() < np.abs(middle.rgb.astype(int) - a.rgb).mean()


@pytest.mark.parametrize(
    ("change", "field"),
    [({"width": 64}, "width"), ({"steps": 4}, "steps"), ({"scheduler": "euler"}, "scheduler")],
)
def test_a_morph_between_worlds_that_differ_is_refused(
    load_tiny: Loader, change: dict[str, object], field: str
) -> None:
    engine = load_tiny("tiny")
    first = GenerateRequest("a desert", seed=1, **SMALL)
    second = GenerateRequest("a forest", seed=2, **{**SMALL, **change})  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match=f"same {field}: the first has"):
        engine.generate_between(first, second, 0.5)
    with pytest.raises(InvalidRequest, match=r"in 0\.\.1"):
        engine.generate_between(first, first, 1.5)


@pytest.mark.parametrize("model", ["tiny-ldm", "tiny-ldm-text"])
def test_an_rgb_only_model_previews_rgb_with_flat_depth_and_refuses_to_morph(load_tiny: Loader, model: str) -> None:
    """The CompVis LDMs make RGB; their depth is estimated from the finished picture, so a preview's is flat."""
    engine = load_tiny(model)
    previews, seen = collect(1)
    request = GenerateRequest("a face", seed=3, steps=3)
    world = engine.generate(request, previews=previews)
    assert [p.step for p in seen] == [1, 2]
    assert seen[0].rgb.shape == (world.height // 8, world.width // 8, 3)
    assert (seen[0].depth == 32768).all() and not engine.preview_map().has_depth
    np.testing.assert_array_equal(engine.generate(request).rgb, world.rgb)
    with pytest.raises(InvalidRequest, match="morphs run on the LDM3D models"):
        engine.generate_between(request, request, 0.5)


def test_an_engine_host_streams_previews_and_morph_frames(tiny_dir: object) -> None:
    """The body of a Ray actor: previews travel as events between the steps; a morph frame is a call too."""
    from ldm3d_engine import EngineSettings, load_engine
    from ldm3d_engine.host import EngineHost

    host = EngineHost(lambda: load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir))))
    events = list(host.run("k", "engine", "generate", GenerateRequest("dunes", seed=1, **SMALL), preview_every=4))
    kinds = [e[0] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "result"
    previews = [e[1] for e in events if e[0] == "preview"]
    assert [p.step for p in previews] == [4] and kinds.index("preview") == kinds.index("step") + 4
    first, second = GenerateRequest("a", seed=1, **SMALL), GenerateRequest("b", seed=2, **SMALL)
    frame = list(host.run("m", "engine", "generate_between", (first, second, 0.0)))[-1]
    direct = list(host.run("g", "engine", "generate", first))[-1]
    assert frame[0] == "result" and np.array_equal(frame[1].rgb, direct[1].rgb)
