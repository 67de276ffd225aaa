"""LN3Diff text → 3D in the engine (ldm3d_engine/objects): every stage of ``tiny-ln3diff`` on the CPU,
the sampler's maths against hand-computed values, marching cubes on an analytic sphere, the strict
key map, the offline errors and the licence. Nothing here has LN3Diff's real weights (docs/objects.md)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm3d_engine import EngineSettings, load_object_engine
from ldm3d_engine.errors import BackendFailed, Cancelled, InvalidRequest, ModelNotAvailable, UnknownModel
from ldm3d_engine.object_types import MeshResult, ObjectRequest
from ldm3d_engine.objects import edm, keymap, meshing
from ldm3d_engine.objects.ln3diff import LN3DiffEngine
from ldm3d_engine.objects.ln3diff_config import LICENCE, REAL, TINY, WEIGHTS_FILE
from ldm3d_engine.objects.network import LN3DiffNetwork
from ldm3d_engine.types import CancelToken


@pytest.fixture(scope="module")
def engine(tiny_dir: Path) -> LN3DiffEngine:
    return load_object_engine(EngineSettings(device="cpu", tiny_dir=str(tiny_dir)), "tiny-ln3diff")


def test_every_stage_has_the_shapes_of_the_architecture(engine: LN3DiffEngine) -> None:
    net = engine._network
    latent = torch.randn(1, *net.latent_shape())
    assert latent.shape == (1, 12, TINY.latent_size, TINY.latent_size)  # 3 planes × 4 channels, rolled out
    with torch.inference_mode():
        eps = net.denoiser(torch.cat([latent, latent]), torch.tensor([0, 999]), torch.zeros(2, 77, TINY.text_dim))
        assert eps.shape == (2, *latent.shape[1:])
        tokens = net.decoder.tokens(latent)
        assert tokens.shape == (1, 3 * TINY.decoder_tokens_side**2, TINY.decoder_hidden)
        field = net.field(latent)
        side = TINY.triplane_size
        assert field.planes.shape == (3, TINY.triplane_channels, side, side) and side == 2 * TINY.decoder_tokens_side
        density, colours = field.query(torch.zeros(5, 3))
        assert density.shape == (5,) and colours.shape == (5, 3)
        assert field.density_grid(9).shape == (9, 9, 9)
    result = engine.generate_object(ObjectRequest("a red lantern", seed=3, resolution=20))
    assert isinstance(result, MeshResult)
    assert len(result.vertices) > 0, "the tiny model's density crosses its threshold somewhere"
    assert result.vertices.dtype == np.float32 and result.vertices.shape[1] == 3
    assert result.faces.dtype == np.int32 and result.faces.shape[1] == 3 and result.faces.max() < len(result.vertices)
    assert result.colors.dtype == np.uint8 and result.colors.shape == result.vertices.shape
    assert np.abs(result.vertices).max() <= 0.5 + 1e-6  # the sampling cube, scaled to [-0.5, 0.5]³
    assert (result.request.steps, result.request.guidance, result.request.resolution) == (4, 6.5, 20)
    assert result.device == "cpu" and result.dtype == "float32" and result.timings.total_s > 0


def test_the_same_seed_makes_the_same_mesh_and_another_seed_another(engine: LN3DiffEngine) -> None:
    first, again, other = (engine.generate_object(ObjectRequest("a chair", seed=s)) for s in (7, 7, 8))
    assert np.array_equal(first.vertices, again.vertices) and np.array_equal(first.colors, again.colors)
    assert np.array_equal(first.faces, again.faces)
    assert first.vertices.shape != other.vertices.shape or not np.array_equal(first.vertices, other.vertices)
    assert engine.generate_object(ObjectRequest("a chair")).seed >= 0  # -1: a random seed, reported


def _alphas_cumprod_by_hand() -> list[float]:
    start, end = math.sqrt(0.00085), math.sqrt(0.012)
    product, out = 1.0, []
    for i in range(1000):
        product *= 1.0 - (start + (end - start) * i / 999) ** 2
        out.append(product)
    return out


def test_the_sigmas_are_the_legacy_ddpm_discretisation() -> None:
    schedule = edm.Schedule()
    acs = _alphas_cumprod_by_hand()
    # linspace(999, 0, 4, endpoint=False) = 999, 749.25, 499.5, 249.75 → ints, ascending
    assert schedule.timesteps(4).tolist() == [249, 499, 749, 999]
    by_hand = [math.sqrt((1 - acs[t]) / acs[t]) for t in (999, 749, 499, 249)] + [0.0]
    assert schedule.sigmas(4) == pytest.approx(by_hand, rel=1e-9)
    assert schedule.sigmas(4)[:4] == pytest.approx([14.614641, 4.081729, 1.612886, 0.693205], rel=1e-6)
    assert schedule.train_sigmas()[0] == pytest.approx(0.0291672, rel=1e-5)  # SD's σ_min
    assert [schedule.timestep_of(s) for s in schedule.sigmas(4)[:4]] == [999, 749, 499, 249]
    assert len(schedule.sigmas(250)) == 251 and schedule.timesteps(1000).tolist() == list(range(1000))
    assert edm.eps_scalings(2.0) == pytest.approx((1.0, -2.0, 1 / math.sqrt(5)))


def test_one_guided_euler_step_by_hand() -> None:
    seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def network(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        seen.append((x.clone(), t.clone(), text.clone()))
        conditional = text.flatten(1).abs().sum(1) > 0  # the unconditional pass has zeros for text
        return torch.where(conditional[:, None, None, None], torch.full_like(x, 0.5), torch.full_like(x, 0.1))

    x, cond = torch.ones(1, 1, 1, 1), torch.ones(1, 3, 2)
    sigma, sigma_next, guidance = 2.0, 1.5, 6.5
    denoised = edm.guided_denoise(network, x, sigma, 7, cond, guidance)
    d_u, d_c = 1.0 - 2.0 * 0.1, 1.0 - 2.0 * 0.5  # D = x − σ·ε
    assert denoised.item() == pytest.approx(d_u + 6.5 * (d_c - d_u))  # 0.8 + 6.5·(0 − 0.8) = −4.4
    inputs, timesteps, texts = seen[0]
    assert inputs.flatten().tolist() == pytest.approx([1 / math.sqrt(5)] * 2)  # x / √(σ² + 1), both passes
    assert timesteps.tolist() == [7, 7] and texts[0].abs().sum() == 0 and torch.equal(texts[1], cond[0])
    step = edm.euler_step(x, denoised, sigma, sigma_next)
    assert step.item() == pytest.approx(1.0 + (1.5 - 2.0) * (1.0 - -4.4) / 2.0)  # = −0.35
    # a whole 1-step run: the noise scaled by √(1 + σ₀²), then one step to σ = 0 lands on D
    schedule = edm.Schedule()
    sigma0 = float(schedule.sigmas(1)[0])
    out = edm.sample(network, torch.ones(1, 1, 1, 1), cond, 1, 1.0, schedule)
    assert out.item() == pytest.approx(math.sqrt(1 + sigma0**2) - sigma0 * 0.5, rel=1e-6)


def _sphere(size: int, radius: float, half: float) -> np.ndarray:
    axis = np.linspace(-half, half, size)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    return (10.0 + 40.0 * (radius - np.sqrt(x * x + y * y + z * z))).astype(np.float32)  # 10 on the sphere


def test_marching_cubes_finds_an_analytic_sphere_with_its_colours() -> None:
    size, radius, half = 49, 0.3, 0.45
    cell = 2 * half / (size - 1)
    points, faces = meshing.grid_surface(_sphere(size, radius, half), 10.0, half)
    radii = np.linalg.norm(points, axis=1)
    assert np.abs(radii - radius).max() < 0.25 * cell  # linear interpolation on a smooth field
    area_in_cells = 4 * math.pi * radius**2 / cell**2
    assert 0.5 * area_in_cells < len(points) < 3 * area_in_cells
    a, b, c = points[faces[:, 0]], points[faces[:, 1]], points[faces[:, 2]]
    outward = np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3)
    assert (outward > 0).all(), "counter-clockwise seen from outside"

    def colour_field(p: np.ndarray) -> np.ndarray:
        return (p / (2 * half) + 0.5).astype(np.float32)  # x, y, z → r, g, b

    vertices, faces2, colours = meshing.mesh_from_field(_sphere(size, radius, half), 10.0, half, colour_field)
    assert np.array_equal(faces2, faces)
    assert np.array_equal(colours, (np.clip(colour_field(points), 0, 1) * 255).astype(np.uint8))
    # the object's frame: (x, y, z) → (x, z, −y), the cube [−0.45, 0.45]³ → [−0.5, 0.5]³
    assert np.allclose(vertices, np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1) / 0.9, atol=1e-6)
    assert np.allclose(np.linalg.norm(vertices, axis=1).mean(), radius / 0.9, atol=0.01)
    empty = meshing.mesh_from_field(np.zeros((5, 5, 5), np.float32), 10.0, half, colour_field)
    assert [len(part) for part in empty] == [0, 0, 0]


def test_missing_marching_cubes_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "mcubes", None)
    with pytest.raises(BackendFailed, match=r"PyMCubes.*pip install 'ldm3d-bridge\[objects\]'"):
        meshing.marching_cubes_module()


def test_cancel_stops_within_one_step(engine: LN3DiffEngine) -> None:
    token, steps_seen = CancelToken(), []

    def on_step(done: int, total: int) -> None:
        steps_seen.append(done)
        if done == 2:
            token.cancel()

    with pytest.raises(Cancelled) as raised:
        engine.generate_object(ObjectRequest("a lamp", seed=1, steps=10), on_step=on_step, cancel=token)
    assert (raised.value.step, raised.value.total) == (2, 10) and steps_seen == [1, 2]
    with pytest.raises(Cancelled) as before:
        engine.generate_object(ObjectRequest("a lamp", seed=1), cancel=token)  # already cancelled
    assert before.value.step == 0


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ObjectRequest("a cup", steps=0), "steps"),
        (ObjectRequest("a cup", steps=1001), "steps"),
        (ObjectRequest("a cup", resolution=TINY.max_resolution + 1), "resolution"),
        (ObjectRequest("a cup", resolution=8), "resolution"),
        (ObjectRequest("   "), "prompt"),
        (ObjectRequest("a cup", guidance=float("nan")), "guidance"),
        (ObjectRequest("a cup", seed=2**31), "seed"),
    ],
)
def test_a_bad_request_names_its_field(engine: LN3DiffEngine, request_: ObjectRequest, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        engine.generate_object(request_)
    assert raised.value.field == field and field in str(raised.value)


def test_the_key_map_loads_official_names_strictly() -> None:
    torch.manual_seed(0)
    source = LN3DiffNetwork(TINY)
    official = keymap.to_official(source.state_dict())
    assert {"ddpm_model.blocks.1.mlp.mlp.1.bias", "ddpm_model.blocks.0.cross_attn.to_out.0.weight",
            "rec_model.decoder.vit_decoder.blocks.1.adaLN_modulation.1.weight",
            "rec_model.decoder.superresolution.conv_sr.up.0.block.0.nin_shortcut.weight",
            "rec_model.decoder.superresolution.conv_sr.up.1.upsample.conv.weight",
            "rec_model.decoder.triplane_decoder.decoder.net.2.bias"} <= set(official)  # fmt: skip
    target = LN3DiffNetwork(TINY)
    keymap.load_official(target, {**official, "ddpm_model.ema_latent_std": torch.ones(1)}, "renamed")  # ignored
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )

    missing = dict(official)
    del missing["ddpm_model.blocks.1.attn.qkv.bias"]
    with pytest.raises(UnknownModel, match=r"missing keys ddpm_model\.blocks\.1\.attn\.qkv\.bias"):
        keymap.load_official(LN3DiffNetwork(TINY), missing, "one missing")
    with pytest.raises(UnknownModel, match=r"unexpected keys ddpm_model\.blocks\.0\.attn\.q_norm\.weight"):
        keymap.load_official(
            LN3DiffNetwork(TINY), {**official, "ddpm_model.blocks.0.attn.q_norm.weight": torch.ones(2)}, "x"
        )
    wrong = {**official, "ddpm_model.pos_embed": torch.zeros(1, 3, 32)}
    with pytest.raises(UnknownModel, match=r"shapes that differ: ddpm_model\.pos_embed"):
        keymap.load_official(LN3DiffNetwork(TINY), wrong, "wrong shape")


def test_the_real_architecture_has_the_official_layout() -> None:
    """The released model's sizes, built on the meta device (no memory): every parameter has an
    official name, DiT-L/2 in both transformers, and ~1 G parameters, as the 4.1 GB file holds."""
    with torch.device("meta"):
        network = LN3DiffNetwork(REAL)
    official = keymap.to_official(network.state_dict())
    shapes = {k: tuple(v.shape) for k, v in official.items()}
    assert shapes["ddpm_model.pos_embed"] == (1, 768, 1024)  # 3 planes × 16² tokens
    assert shapes["ddpm_model.x_embedder.proj.weight"] == (1024, 4, 2, 2)
    assert shapes["ddpm_model.clip_text_proj.y_proj.fc1.weight"] == (1024, 768)
    assert shapes["ddpm_model.blocks.23.cross_attn.to_k.weight"] == (1024, 1024)
    assert shapes["ddpm_model.final_layer.linear.weight"] == (16, 1024)
    assert shapes["rec_model.decoder.superresolution.ldm_upsample.proj.weight"] == (3072, 4, 2, 2)
    assert shapes["rec_model.decoder.vit_decoder.pos_embed"] == (1, 768, 1024)
    assert shapes["rec_model.decoder.superresolution.conv_sr.conv_in.weight"] == (128, 1024, 3, 3)
    assert shapes["rec_model.decoder.superresolution.conv_sr.conv_out.weight"] == (32, 32, 3, 3)
    assert shapes["rec_model.decoder.triplane_decoder.decoder.net.0.weight"] == (64, 32)
    assert REAL.triplane_size == 128
    assert 0.9e9 < sum(math.prod(s) for s in shapes.values()) < 1.1e9


def test_offline_without_the_weights_names_the_file_and_the_command(tmp_path: Path) -> None:
    settings = EngineSettings(device="cpu", offline=True, cache_dir=str(tmp_path / "hub"))
    with pytest.raises(ModelNotAvailable) as raised:
        load_object_engine(settings, "ln3diff")
    text = str(raised.value)
    assert WEIGHTS_FILE in text and f"`hf download yslan/LN3Diff {WEIGHTS_FILE}`" in text
    assert raised.value.model_id == "yslan/LN3Diff"
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(ModelNotAvailable, match=r"openai/clip-vit-large-patch14.*`hf download openai/clip"):
        load_object_engine(settings, str(weights))  # a local file: its text encoder still comes from the cache
    with pytest.raises(UnknownModel, match="unknown object model 'shap-e-xl'"):
        load_object_engine(settings, "shap-e-xl")


def test_the_licence_is_on_the_engine_and_every_result(engine: LN3DiffEngine) -> None:
    assert "S-Lab License 1.0" in LICENCE and "non-commercial" in LICENCE
    result = engine.generate_object(ObjectRequest("a vase", seed=1, steps=1))
    assert result.licence == engine.licence and "Apache-2.0" in engine.licence and "S-Lab" in engine.licence
    assert result.model_id == "builtin:tiny-ln3diff"
