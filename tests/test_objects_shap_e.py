"""Shap-E text → 3D in the engine (ldm3d_engine/objects/shap_e.py): ``tiny-shap-e`` end to end on the
CPU, against diffusers' own ``ShapEPipeline`` on the same weights and seed, its marching-cubes table
on an analytic sphere, the object's frame and colours, progress, cancel, refused requests and the
offline error. Nothing here has Shap-E's real weights (docs/objects.md, "Shap-E")."""

from __future__ import annotations

import functools
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm3d_engine.errors import Cancelled, InvalidRequest, ModelNotAvailable, OutOfMemory, UnknownModel
from ldm3d_engine.object_types import MeshResult, ObjectRequest
from ldm3d_engine.objects import shap_e_mesh
from ldm3d_engine.objects.shap_e import TINY, ShapEEngine, load_shap_e
from ldm3d_engine.objects.shap_e_files import LICENCE
from ldm3d_engine.types import CancelToken, EngineSettings


@pytest.fixture(scope="module")
def engine(tiny_dir: Path) -> ShapEEngine:
    return load_shap_e("tiny-shap-e", EngineSettings(device="cpu", tiny_dir=str(tiny_dir)))


def _edges_twice(faces: np.ndarray) -> bool:
    """A closed surface: every edge is shared by exactly two triangles, once in each direction."""
    directed = Counter((int(a), int(b)) for f in faces for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])))
    return all(count == 1 and directed.get((b, a)) == 1 for (a, b), count in directed.items())


def test_tiny_shap_e_makes_a_closed_coloured_mesh_in_the_object_frame(engine: ShapEEngine) -> None:
    result = engine.generate_object(ObjectRequest("a red lantern", seed=3))
    assert isinstance(result, MeshResult)
    assert (result.request.steps, result.request.guidance, result.request.resolution) == (8, 15.0, 24)
    v, f, c = result.vertices, result.faces, result.colors
    assert len(v) > 0 and v.dtype == np.float32 and v.shape[1] == 3
    assert f.dtype == np.int32 and f.shape[1] == 3 and f.min() >= 0 and f.max() < len(v)
    assert c.dtype == np.uint8 and c.shape == v.shape and c.std() > 0
    low, high = v.min(axis=0), v.max(axis=0)
    assert np.allclose((low + high) / 2, 0.0, atol=1e-6) and (high - low).max() == pytest.approx(1.0, abs=1e-6)
    assert _edges_twice(f), "the −1 border closes every surface"
    assert shap_e_mesh.signed_volume(v, f) > 0, "counter-clockwise seen from outside"
    assert result.model_id == "builtin:tiny-shap-e" and "MIT" in result.licence and "MIT" in engine.licence
    assert result.device == "cpu" and result.dtype == "float32" and result.timings.total_s > 0
    assert min(result.timings.text_encoding_s, result.timings.denoising_s, result.timings.meshing_s) > 0
    assert LICENCE.startswith("MIT")


def test_the_same_seed_makes_the_same_mesh_and_another_seed_another(engine: ShapEEngine) -> None:
    first, again, other = (engine.generate_object(ObjectRequest("a chair", seed=s, steps=3)) for s in (7, 7, 8))
    assert np.array_equal(first.vertices, again.vertices) and np.array_equal(first.faces, again.faces)
    assert np.array_equal(first.colors, again.colors)
    assert first.vertices.shape != other.vertices.shape or not np.array_equal(first.vertices, other.vertices)
    assert engine.generate_object(ObjectRequest("a chair", steps=1)).seed >= 0  # -1: a random seed, reported


@pytest.mark.parametrize("guidance", [12.0, 1.0])
def test_the_engine_matches_diffusers_shap_e_pipeline_on_the_same_weights(engine: ShapEEngine, guidance: float) -> None:
    from diffusers import ShapEPipeline

    pipe = ShapEPipeline.from_pretrained(str(engine._files.folder))
    pipe.set_progress_bar_config(disable=True)
    # __call__ leaves decode_to_mesh at its default grid (128 points, resolution 127: many seconds on
    # a busy CPU); the same method at 25 points keeps the test fast and changes nothing else
    pipe.shap_e_renderer.decode_to_mesh = functools.partial(pipe.shap_e_renderer.decode_to_mesh, grid_size=25)
    theirs = pipe(
        "a blue teapot",
        num_inference_steps=3,
        guidance_scale=guidance,  # 1: diffusers runs the prompt alone, without guidance
        generator=torch.Generator("cpu").manual_seed(11),
        output_type="mesh",
    ).images[0]
    ours = engine.generate_object(ObjectRequest("a blue teapot", seed=11, steps=3, guidance=guidance, resolution=24))
    channels = {name: value.numpy() for name, value in theirs.vertex_channels.items()}
    vertices, faces, colours = shap_e_mesh.object_mesh(theirs.verts.numpy(), theirs.faces.numpy(), channels)
    assert len(vertices) > 100
    assert ours.vertices.shape == vertices.shape and np.array_equal(ours.faces, faces)
    assert np.abs(ours.vertices - vertices).max() < 1e-5
    assert np.abs(ours.colors.astype(int) - colours.astype(int)).max() <= 1


def test_running_out_of_memory_is_out_of_memory_naming_the_device(
    engine: ShapEEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine._renderer, "decode_to_mesh", full)
    with pytest.raises(OutOfMemory, match=r"out of memory on cpu making an object at resolution 20"):
        engine.generate_object(ObjectRequest("a vase", seed=1, steps=1, resolution=20))
    monkeypatch.undo()
    assert len(engine.generate_object(ObjectRequest("a vase", seed=1, steps=1)).vertices) > 0  # the lock is free


def test_progress_counts_steps_not_heun_evaluations(engine: ShapEEngine) -> None:
    seen: list[tuple[int, int]] = []
    calls = []
    handle = engine._prior.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    try:
        engine.generate_object(ObjectRequest("a boot", seed=1, steps=4), on_step=lambda d, n: seen.append((d, n)))
    finally:
        handle.remove()
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert len(calls) == 2 * 4 - 1  # Heun: two evaluations a step, one on the last


def test_cancel_stops_within_one_step_and_during_meshing(engine: ShapEEngine) -> None:
    token, calls = CancelToken(), []

    def on_step(done: int, total: int) -> None:
        if done == 2:
            token.cancel()

    handle = engine._prior.register_forward_pre_hook(lambda _m, _a: calls.append(1))
    try:
        with pytest.raises(Cancelled) as raised:
            engine.generate_object(ObjectRequest("a lamp", seed=1, steps=6), on_step=on_step, cancel=token)
    finally:
        handle.remove()
    assert (raised.value.step, raised.value.total) == (2, 6) and len(calls) == 4  # no evaluation after
    with pytest.raises(Cancelled) as before:
        engine.generate_object(ObjectRequest("a lamp", seed=1), cancel=token)  # already cancelled
    assert before.value.step == 0

    meshing = CancelToken()
    handle = engine._renderer.mlp.register_forward_hook(lambda _m, _a, _o: meshing.cancel())
    try:
        with pytest.raises(Cancelled) as late:
            engine.generate_object(ObjectRequest("a lamp", seed=1, steps=2), cancel=meshing)
    finally:
        handle.remove()
    assert (late.value.step, late.value.total) == (2, 2)


@pytest.mark.parametrize(
    ("request_", "field", "value"),
    [
        (ObjectRequest("a cup", steps=0), "steps", "0"),
        (ObjectRequest("a cup", steps=1001), "steps", "1001"),
        (ObjectRequest("a cup", guidance=0.5), "guidance", "0.5"),
        (ObjectRequest("a cup", guidance=31.0), "guidance", "31.0"),
        (ObjectRequest("a cup", guidance=float("nan")), "guidance", "nan"),
        (ObjectRequest("a cup", resolution=TINY.max_resolution + 1), "resolution", str(TINY.max_resolution + 1)),
        (ObjectRequest("a cup", resolution=15), "resolution", "15"),
        (ObjectRequest(""), "prompt", "empty"),
        (ObjectRequest("  "), "prompt", "empty"),
        (ObjectRequest("a cup", seed=2**31), "seed", str(2**31)),
        (ObjectRequest("a cup", seed=-2), "seed", "-2"),
    ],
)
def test_a_bad_request_names_its_field(engine: ShapEEngine, request_: ObjectRequest, field: str, value: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        engine.generate_object(request_)
    assert raised.value.field == field and field in str(raised.value) and value in str(raised.value)


def test_offline_shap_e_without_the_cache_names_the_id_and_the_command(tmp_path: Path) -> None:
    settings = EngineSettings(device="cpu", cache_dir=str(tmp_path / "empty-hf-cache"), offline=True)
    with pytest.raises(ModelNotAvailable) as raised:
        load_shap_e("shap-e", settings)
    message = str(raised.value)
    assert raised.value.model_id == "openai/shap-e" and "`hf download openai/shap-e`" in message
    assert "downloads are off" in message and str(tmp_path / "empty-hf-cache") in message


def test_unknown_names_and_incomplete_folders_are_refused(tmp_path: Path) -> None:
    settings = EngineSettings(device="cpu", offline=True)
    with pytest.raises(UnknownModel, match=r"not one of shap-e, tiny-shap-e"):
        load_shap_e("shap-f", settings)
    (tmp_path / "prior").mkdir()
    with pytest.raises(UnknownModel, match=r"missing model_index\.json, text_encoder/"):
        load_shap_e(str(tmp_path), settings)


def test_the_tiny_marching_cubes_table_meshes_an_analytic_sphere() -> None:
    from diffusers.pipelines.shap_e.renderer import MeshDecoder

    from ldm3d_engine.offline.tiny_objects import marching_cubes_table

    decoder = MeshDecoder()
    cases, masks = marching_cubes_table()
    decoder.cases.copy_(cases)
    decoder.masks.copy_(masks)
    size, radius = 33, 0.6
    axis = torch.linspace(-1, 1, size)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    field = radius - torch.sqrt(x * x + y * y + z * z)  # positive inside, as Shap-E's signed distance
    mesh = decoder(field, torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([2.0, 2.0, 2.0]))
    vertices, faces = mesh.verts.numpy(), mesh.faces.numpy()
    assert np.abs(np.linalg.norm(vertices, axis=1) - radius).max() < 0.25 * 2 / (size - 1)
    assert _edges_twice(faces)
    assert shap_e_mesh.signed_volume(vertices, faces) == pytest.approx(4 / 3 * math.pi * radius**3, rel=0.03)


def test_the_object_frame_turns_z_up_to_y_up_and_colours_go_back_to_srgb() -> None:
    vertices = np.array([[0.0, 0.0, 0.9], [0.2, -0.4, -0.1], [-0.2, 0.4, -0.1], [0.0, 0.0, -0.1]])
    placed = shap_e_mesh.to_object_frame(vertices)
    assert np.argmax(placed[:, 1]) == 0, "Shap-E's top (+Z) is the object's top (+Y)"
    assert placed[1, 2] == pytest.approx(0.4) and placed[2, 2] == pytest.approx(-0.4)  # −Y → +Z
    assert (placed.max(axis=0) - placed.min(axis=0)).max() == pytest.approx(1.0)
    srgb = torch.linspace(0, 1, 256)
    linear = torch.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)  # diffusers' conversion
    assert np.array_equal(shap_e_mesh.linear_to_srgb8(linear.numpy()), np.arange(256, dtype=np.uint8))
    cube = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], np.float64)
    outside = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])  # fmt: skip
    assert shap_e_mesh.signed_volume(cube, outside) == pytest.approx(1.0)
    assert np.array_equal(shap_e_mesh.outward(cube, outside), outside)
    inward = outside[:, ::-1]
    assert shap_e_mesh.signed_volume(cube, inward) == pytest.approx(-1.0)
    assert shap_e_mesh.signed_volume(cube, shap_e_mesh.outward(cube, inward)) == pytest.approx(1.0)
