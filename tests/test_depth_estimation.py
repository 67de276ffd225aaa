"""Depth estimation (DPT) in the engine: transformers' post-processing matched, our depth convention,
the 360° views (coverage, projection, no seam), img2img and depth jobs, loading errors.

The DPT here is ``tiny-dpt`` (the dpt-large architecture, random weights, built offline): its
depth means nothing, so what is checked is the machinery around it; the 360° geometry (planar
depth to range, the alignment, the blend) is checked in ``test_depth_geometry.py`` with a
stand-in estimator whose true answer is known."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ldm3d_engine import DepthRequest, EngineSettings, GenerateRequest, InvalidRequest, ModelNotAvailable, load_engine
from ldm3d_engine.depth.equirect import View, project_back, render_view, sphere_directions
from ldm3d_engine.depth.estimator import to_depth16
from ldm3d_engine.errors import Cancelled
from ldm3d_engine.models.loading import locate_depth_model
from ldm3d_engine.presets import EQUIRECT_VIEWS as VIEWS
from ldm3d_engine.types import CancelToken, Img2ImgRequest


@pytest.fixture(scope="module")
def pano(tiny_dir: Path) -> Iterator[Any]:
    yield load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir), depth_model="tiny-dpt"))


@pytest.fixture(scope="module")
def pano_rgb(pano: Any) -> np.ndarray:
    return pano.generate(GenerateRequest("a sea", seed=1, steps=2, width=512, height=256)).rgb  # type: ignore[no-any-return]


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_post_processing_matches_transformers(pano: Any) -> None:
    """Our resize of DPT's output to the picture's size is transformers' post_process_depth_estimation."""
    estimator = pano.estimator
    rgb = np.random.default_rng(3).integers(0, 256, (45, 101, 3), dtype=np.uint8)  # not square, odd sizes
    ours = estimator.raw_depth(rgb)
    inputs = estimator.processor(images=rgb, return_tensors="pt")
    with torch.inference_mode():
        outputs = estimator.model(**inputs)
    theirs = estimator.processor.post_process_depth_estimation(outputs, target_sizes=[(45, 101)])[0]["predicted_depth"]
    assert ours.shape == (45, 101)
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_the_image_processor_is_the_one_auto_image_processor_gives(pano: Any) -> None:
    """Pre-processing as a transformers user gets it on this installation: ``AutoImageProcessor``'s
    choice (the torchvision backend where torchvision is installed, else the Pillow one)."""
    from transformers import AutoImageProcessor

    folder = pano.estimator.model.config._name_or_path
    assert type(pano.estimator.processor) is type(AutoImageProcessor.from_pretrained(folder))


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision: both backends")
def test_the_torchvision_processor_is_used_where_installed_and_the_pillow_one_is_close(pano: Any) -> None:
    """Both backends where both are installed: the engine takes torchvision's, as AutoImageProcessor
    does; the two resize a little differently (up to about 1 % of the depth range)."""
    from transformers import AutoImageProcessor

    folder = pano.estimator.model.config._name_or_path
    torchvision = AutoImageProcessor.from_pretrained(folder, backend="torchvision")
    pillow = AutoImageProcessor.from_pretrained(folder, backend="pil")
    assert type(pano.estimator.processor) is type(torchvision) and type(pillow) is not type(torchvision)
    rgb = np.random.default_rng(5).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    ours = pano.estimator.raw_depth(rgb)
    pano.estimator.processor = pillow
    try:
        other = pano.estimator.raw_depth(rgb)
    finally:
        pano.estimator.processor = torchvision
    spread = float(ours.max() - ours.min())
    print(f"Pillow vs torchvision pre-processing: {float((ours - other).abs().max()) / spread:.2%} of the range")
    assert float((ours - other).abs().max()) <= 0.03 * spread


def test_depth_convention_nearest_is_65535() -> None:
    raw = np.array([[0.5, 2.0], [1.25, 3.5]])  # DPT: relative inverse depth, larger = nearer
    unit, sixteen = to_depth16(raw)
    assert sixteen[1, 1] == 65535 and sixteen[0, 0] == 0
    assert unit[1, 0] == pytest.approx((1.25 - 0.5) / 3.0)
    assert (to_depth16(np.full((3, 3), 7.0))[1] == 32768).all()  # a flat answer stays on the sphere


def test_the_views_cover_the_whole_sphere() -> None:
    """Every direction is seen by a view, and every view shares a wide band with others (where its
    scale and shift are fitted): each of the ring's views with both neighbours and the poles."""
    directions = sphere_directions(512, 256)
    weights = [project_back(torch.zeros(8, 8), View(yaw, pitch), directions)[1] for yaw, pitch in VIEWS]
    assert all((w >= 0).all() for w in weights)
    seen = sum((w > 0).long() for w in weights)
    assert int(seen.min()) >= 1  # type: ignore[call-overload]
    for i, wi in enumerate(weights):
        shared = sum(int(((wi > 0) & (wj > 0)).sum()) for j, wj in enumerate(weights) if j != i)
        assert shared > 0.5 * int((wi > 0).sum())


def _field(directions: torch.Tensor) -> torch.Tensor:
    """A smooth function on the sphere (a known 'depth')."""
    x, y, z = directions.unbind(-1)
    return 0.5 + 0.3 * y + 0.2 * x * z + 0.1 * torch.sin(3 * x)


def test_a_view_projects_back_onto_the_sphere() -> None:
    directions = sphere_directions(512, 256)
    equirect = _field(directions)[None]
    view = View(135.0, 20.0)
    picture = render_view(equirect, view, 128)[0]
    values, weight = project_back(picture, view, directions)
    inside = weight > 0.05
    assert inside.sum() > 5000
    assert (values[inside] - equirect[0][inside]).abs().max() < 0.01


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_a_360_picture_has_no_seam_where_a_whole_picture_estimate_has_one(pano: Any, pano_rgb: np.ndarray) -> None:
    """The real tiny DPT on a real tiny-pano world: column 0 and column W-1 are neighbours on the
    sphere; the blend keeps them as close as any two neighbouring columns, the whole-picture estimate
    (the two ends seen as unrelated borders) does not."""

    def seam_ratio(depth: np.ndarray) -> float:
        seam = np.abs(depth[:, 0] - depth[:, -1]).mean()
        return float(seam / np.abs(np.diff(depth, axis=1)).mean())

    blended = pano.estimate_depth(DepthRequest(equirect=True), pano_rgb)
    whole = pano.estimate_depth(DepthRequest(equirect=False), pano_rgb)
    assert seam_ratio(blended.depth_float) < 1.5
    assert seam_ratio(whole.depth_float) > 3
    assert (blended.depth_source, blended.depth_model) == ("dpt", "builtin:tiny-dpt")
    assert (blended.depth_method, whole.depth_method) == ("10 perspective views blended", "whole picture")
    assert (blended.rgb == pano_rgb).all()  # the picture is kept as it is
    assert blended.depth.dtype == np.uint16 and blended.depth.shape == (256, 512)
    assert blended.depth.max() == 65535 and blended.depth.min() == 0


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_a_depth_job_reports_progress_per_view_and_cancels_between_views(pano: Any, pano_rgb: np.ndarray) -> None:
    steps: list[tuple[int, int]] = []
    pano.estimate_depth(DepthRequest(), pano_rgb, on_step=lambda s, t: steps.append((s, t)))  # pano: equirect
    assert steps == [(n, len(VIEWS)) for n in range(1, len(VIEWS) + 1)]
    token = CancelToken()

    def cancel_at_3(step: int, total: int) -> None:
        if step == 3:
            token.cancel()

    with pytest.raises(Cancelled) as caught:
        pano.estimate_depth(DepthRequest(), pano_rgb, on_step=cancel_at_3, cancel=token)
    assert caught.value.step == 3


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_a_depth_job_refuses_a_360_picture_of_the_wrong_shape(pano: Any) -> None:
    with pytest.raises(InvalidRequest, match="twice as wide as high; this one is 300×200"):
        pano.estimate_depth(DepthRequest(equirect=True), np.zeros((200, 300, 3), np.uint8))


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_img2img_without_a_depth_map_estimates_it(pano: Any, pano_rgb: np.ndarray) -> None:
    request = Img2ImgRequest("a sea", seed=2, steps=2, strength=0.5)
    estimated = pano.img2img(request, pano_rgb)
    assert (estimated.depth_source, estimated.depth_method) == ("dpt", "10 perspective views blended")
    assert estimated.timings.depth_s > 0
    flat = pano.img2img(Img2ImgRequest("a sea", seed=2, steps=2, strength=0.5, flat_depth=True), pano_rgb)
    assert flat.depth_source == "flat 0.5 (no depth map was given)"
    assert not np.array_equal(estimated.depth, flat.depth)  # the estimate went into the model


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_without_an_estimator_img2img_stays_flat_and_depth_jobs_are_refused(tiny_dir: Path) -> None:
    engine = load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))
    rgb = np.zeros((64, 64, 3), np.uint8)
    assert engine.img2img(Img2ImgRequest("x", steps=1, strength=0.5), rgb).depth_source.startswith("flat 0.5")
    with pytest.raises(InvalidRequest, match="needs a depth estimator: start with --depth-model dpt-large"):
        engine.estimate_depth(DepthRequest(), rgb)


def test_a_depth_model_missing_offline_says_how_to_get_it(tmp_path: Path) -> None:
    settings = EngineSettings(offline=True, cache_dir=str(tmp_path))
    with pytest.raises(
        ModelNotAvailable, match=r"'Intel/dpt-large' is not in the local cache .*hf download Intel/dpt-large"
    ):
        locate_depth_model("dpt-large", settings)
    (tmp_path / "mine").mkdir()
    with pytest.raises(Exception, match=r"not a DPT folder in transformers' layout: missing config.json"):
        locate_depth_model(str(tmp_path / "mine"), settings)
    with pytest.raises(
        Exception, match="unknown depth model 'dpt-enormous': not one of dpt-large, dpt-hybrid, tiny-dpt"
    ):
        locate_depth_model("dpt-enormous", settings)
