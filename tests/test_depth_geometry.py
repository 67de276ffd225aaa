"""The 360° depth's geometry against a room of known shape (issue 32).

An oracle stands in for DPT: for each perspective view the 360° path asks for, it returns the
view's true inverse *planar* depth (1/z along the view's axis, what DPT predicts) times a random
scale plus a random shift (DPT's unknown affine). The room is a box with the camera off its centre,
so walls, floor and ceiling meet the views at every angle, and the polar views face the ceiling and
the floor squarely (a constant planar depth: no spread at all). The blended 360° depth must be the
room's inverse *range* (1/r, distance from the camera along each pixel's ray) up to the one affine
the depth file's min–max normalisation applies."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import torch

from ldm3d_engine.depth import equirect
from ldm3d_engine.depth.equirect import View, equirect_depth, project_back, sphere_directions
from ldm3d_engine.depth.estimator import to_depth16
from ldm3d_engine.depth.sphere import Footprint, footprint
from ldm3d_engine.presets import EQUIRECT_VIEWS as VIEWS

#: The room, in its own axes: x from -3 to 5 m, y (up) from -1.4 to 1.1 m, z from -4 to 2.5 m; the
#: camera at 0, the room turned 30° about the vertical (so no wall is symmetric about the seam).
LOW = torch.tensor([-3.0, -1.4, -4.0], dtype=torch.float64)
HIGH = torch.tensor([5.0, 1.1, 2.5], dtype=torch.float64)
_TURN = torch.tensor(
    [[np.cos(np.pi / 6), 0.0, -np.sin(np.pi / 6)], [0.0, 1.0, 0.0], [np.sin(np.pi / 6), 0.0, np.cos(np.pi / 6)]],
    dtype=torch.float64,
)
WIDTH, HEIGHT, VIEW_SIZE = 512, 256, 64


def _distance(rays: torch.Tensor) -> torch.Tensor:
    """How far along each ray (…×3) the camera's ray meets the room's walls, in units of the ray."""
    rays = rays @ _TURN.T
    t = torch.where(rays > 0, HIGH / rays.clamp_min(1e-12), LOW / rays.clamp_max(-1e-12))
    return torch.where(rays.abs() < 1e-12, torch.inf, t).min(-1).values


def _true_inverse_range(width: int, height: int) -> torch.Tensor:
    return 1 / _distance(sphere_directions(width, height))


def _oracle(size: int, seed: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], list[tuple[float, float]]]:
    """DPT's stand-in: the k-th call answers for view k (the order the 360° path renders them in)
    with ``a / z + b``, ``z`` each pixel's true planar depth, ``a`` and ``b`` drawn per view."""
    rng = np.random.default_rng(seed)
    drawn: list[tuple[float, float]] = []

    def estimate(picture: torch.Tensor) -> torch.Tensor:
        assert picture.shape == (3, size, size)
        view = View(*VIEWS[len(drawn)])
        forward, right, up = view.basis()
        half = float(np.tan(np.radians(view.fov) / 2))
        steps = ((torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1) * half
        yy, xx = torch.meshgrid(-steps, steps, indexing="ij")
        rays = forward + xx[..., None] * right + yy[..., None] * up  # unit length along the axis
        scale, shift = rng.uniform(0.3, 3.0), rng.uniform(-2.0, 2.0)
        drawn.append((scale, shift))
        return (scale / _distance(rays) + shift).float()  # the distance along such a ray is z

    return estimate, drawn


def _relative_error(blended: torch.Tensor, truth: torch.Tensor) -> np.ndarray:
    """|estimate − truth| / truth per pixel, the estimate being what the depth file stores (min–max
    to 0..1) mapped back with the truth's own min and max: the one affine the file leaves open."""
    unit = torch.from_numpy(to_depth16(blended.numpy())[0]).double()
    low, high = truth.min(), truth.max()
    return ((low + unit * (high - low) - truth).abs() / truth).numpy()


def _room(seed: int = 0, blend_width: int = equirect.BLEND_WIDTH) -> torch.Tensor:
    estimate, drawn = _oracle(VIEW_SIZE, seed)
    picture = torch.rand(3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(seed))  # the oracle ignores it
    blended = equirect_depth(picture, estimate, VIEW_SIZE, blend_width=blend_width)
    assert len(drawn) == len(VIEWS) and blended.shape == (HEIGHT, WIDTH)
    return blended


@pytest.mark.parametrize("seed", [0, 1])
def test_a_box_room_comes_back_as_its_true_inverse_range(seed: int) -> None:
    """Planar inverse depth with a random affine per view → the room's inverse range: the blend is
    1/r up to one scale (no shift: the overlaps fix every view's), and the depth file, min–max of
    the blend, is the truth's min–max (what would go wrong at a view's border or in a flat wall)."""
    blended, truth = _room(seed).double(), _true_inverse_range(WIDTH, HEIGHT)
    file_error = _relative_error(blended, truth)  # the extremes sit in the room's far corner: coarser
    assert np.median(file_error) < 0.01, np.median(file_error)
    scaled = blended * torch.median(truth / blended)
    shape_error = ((scaled - truth).abs() / truth).numpy()
    assert np.median(shape_error) < 0.001, np.median(shape_error)
    assert np.percentile(shape_error, 95) < 0.01, np.percentile(shape_error, 95)
    seam = (blended[:, 0] - blended[:, -1]).abs().mean()  # 0° and 360° are neighbours like any others
    assert seam <= 1.5 * (blended[:, 1:] - blended[:, :-1]).abs().mean()


def test_taking_planar_depth_for_range_bulges_the_walls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path with cos θ taken as 1 everywhere (each view's planar answer put on the sphere as
    if it were range) is far off (33 % median error; the code before issue 32, which did that with
    another anchoring, 12 %): the room test's 1 % bound tells them apart."""
    real = footprint

    def as_range(view: View, width: int, height: int) -> Footprint:
        found = real(view, width, height)
        return dataclasses.replace(found, cos=torch.ones_like(found.cos))

    monkeypatch.setattr(equirect, "footprint", as_range)
    error = _relative_error(_room(), _true_inverse_range(WIDTH, HEIGHT))
    assert np.median(error) > 0.05, np.median(error)


def _view_borders(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where any view's footprint starts or ends: between columns x and x+1 (wrapping) and
    between rows y and y+1."""
    directions = sphere_directions(width, height)
    across = torch.zeros(height, width, dtype=torch.bool)
    down = torch.zeros(height - 1, width, dtype=torch.bool)
    for yaw, pitch in VIEWS:
        seen = project_back(torch.zeros(4, 4), View(yaw, pitch), directions)[1] > 0
        across |= seen != seen.roll(-1, 1)
        down |= seen[:-1] != seen[1:]
    return across, down


def test_view_borders_leave_no_step_and_no_crease() -> None:
    """Across every view border, the step between the two pixels is no larger than the steps just
    before and after it (give or take 0.1 % of the range: the views' pixels are coarse at the
    room's edges); and the bend there (second difference) is no sharper than anywhere else."""
    depth = torch.from_numpy(to_depth16(_room().numpy())[0]).double()
    across, down = _view_borders(WIDTH, HEIGHT)
    step = (depth.roll(-1, 1) - depth).abs()  # between columns x and x+1
    around = torch.maximum((depth - depth.roll(1, 1)).abs(), (depth.roll(-2, 1) - depth.roll(-1, 1)).abs())
    assert float((step - around)[across].max()) < 1e-3
    vertical = (depth[1:] - depth[:-1]).abs()
    before, after = torch.zeros_like(vertical), torch.zeros_like(vertical)
    before[1:], after[:-1] = vertical[:-1], vertical[1:]
    assert float((vertical - torch.maximum(before, after))[down].max()) < 1e-3
    bend = (depth.roll(-1, 1) - 2 * depth + depth.roll(1, 1)).abs()
    assert float(bend[across].mean()) < 1.5 * float(bend.mean())
    vertical_bend = (depth[2:] - 2 * depth[1:-1] + depth[:-2]).abs()
    assert float(vertical_bend[down[1:]].mean()) < 1.5 * float(vertical_bend.mean())


def test_a_picture_wider_than_the_blend_is_blended_smaller_and_resized_back() -> None:
    """Above ``blend_width`` (2048 by default: an 8K photo) the views are rendered from a shrunk copy
    and blended at that width, then resized with the columns wrapping: the same room, no seam."""
    depth = _room(blend_width=128)
    error = _relative_error(depth, _true_inverse_range(WIDTH, HEIGHT))
    assert np.median(error) < 0.01, np.median(error)
    seam = (depth[:, 0] - depth[:, -1]).abs().mean()
    assert seam <= 2 * (depth[:, 1:] - depth[:, :-1]).abs().mean()


@pytest.mark.parametrize("size", [(512, 256), (301, 150), (64, 32)])
def test_each_views_box_holds_every_pixel_it_sees(size: tuple[int, int]) -> None:
    """The blend computes a view only on its box of rows and columns: the box must hold every
    pixel the view sees, with the weights and cos θ of the whole-sphere reference."""
    width, height = size
    directions = sphere_directions(width, height)
    for view in [View(*v) for v in VIEWS] + [View(200.0, -40.0), View(-30.0, 62.0, 90.0), View(179.0, 5.0)]:
        _, reference = project_back(torch.zeros(4, 4), view, directions)
        found = footprint(view, width, height)
        boxed = torch.zeros(height, width, dtype=torch.float32)
        boxed[found.rows.start : found.rows.stop, found.cols] = found.weight
        assert torch.allclose(boxed, reference.float(), atol=1e-5), view
        inside = found.weight > 0
        cos = (directions[found.rows][:, found.cols] @ view.basis()[0]).float()
        assert torch.allclose(found.cos[inside], cos[inside], atol=1e-5)


def _room_with(change: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """The room (seed 0) with the oracle's answer for view k replaced by ``change(k, answer)``."""
    estimate, _ = _oracle(VIEW_SIZE, 0)
    calls: list[int] = []

    def changed(picture: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        return change(calls[-1], estimate(picture))

    return equirect_depth(torch.zeros(3, HEIGHT, WIDTH), changed, VIEW_SIZE)


def test_a_view_with_a_nan_and_an_infinite_pixel_still_gives_the_room() -> None:
    """A model overflowing in two pixels of one view: those count as the view's mean, so the world's
    depth file is the room's as closely as ever (a NaN anywhere, or the pixels taken as 0, far out of
    the view's range, would spoil the file's min–max for every pixel)."""

    def overflowing(k: int, answer: torch.Tensor) -> torch.Tensor:
        if k == 2:
            answer[30, 30], answer[10, 40] = float("nan"), float("inf")
        return answer

    blended = _room_with(overflowing)
    assert bool(torch.isfinite(blended).all())
    error = _relative_error(blended.double(), _true_inverse_range(WIDTH, HEIGHT))
    assert np.median(error) < 0.01, np.median(error)


@pytest.mark.parametrize("answer", [float("nan"), 0.0])
def test_a_view_answered_with_nan_or_zero_everywhere_leaves_a_finite_depth(answer: float) -> None:
    """One view all NaN (a model overflowing everywhere) or all 0 (no spread, nothing to scale by):
    the view is taken as flat, its depth from its fitted shift; no NaN reaches the world."""
    blended = _room_with(lambda k, found: torch.full_like(found, answer) if k == 2 else found)
    assert bool(torch.isfinite(blended).all())


def test_the_blend_is_inverse_range_whose_weighted_mean_is_1() -> None:
    """The one scale nothing else fixes: on the fitting grid (the room's size), the blend averaged
    with the views' summed weights is 1, whatever scale the model answered in."""
    assert (WIDTH, HEIGHT) == equirect.ALIGN_GRID
    weight = torch.zeros(HEIGHT, WIDTH, dtype=torch.float64)
    for yaw, pitch in VIEWS:
        found = footprint(View(yaw, pitch), WIDTH, HEIGHT)
        weight[found.rows.start : found.rows.stop, found.cols] += found.weight.double()
    mean = float((weight * _room().double()).sum() / weight.sum())
    assert mean == pytest.approx(1.0, abs=1e-5)


def test_progress_is_told_after_each_view() -> None:
    estimate, _ = _oracle(VIEW_SIZE, 0)
    told: list[tuple[int, int]] = []
    equirect_depth(torch.zeros(3, HEIGHT, WIDTH), estimate, VIEW_SIZE, after_view=lambda *done: told.append(done))
    assert told == [(n, len(VIEWS)) for n in range(1, len(VIEWS) + 1)]


def test_detail_finer_than_the_blend_width_is_averaged_before_the_model_sees_it() -> None:
    """A picture wider than ``blend_width`` is shrunk (antialiased) before the views are cut: pixel
    noise reaches the model at under a tenth of its spread (cut from the whole picture: about 2/3)."""
    picture = torch.rand(3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    spreads: list[float] = []

    def estimate(view: torch.Tensor) -> torch.Tensor:
        spreads.append(float(view.std()))
        return view.mean(0)

    equirect_depth(picture, estimate, VIEW_SIZE, blend_width=64)
    assert len(spreads) == len(VIEWS) and max(spreads) < 0.1 * float(picture.std()), spreads


def test_each_views_fit_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """With ``--log-level debug``, the scale and shift fitted for each view (what to read when a 360°
    depth looks wrong)."""
    prints = [footprint(View(yaw, pitch), 64, 32) for yaw, pitch in VIEWS]
    depths = [torch.rand(8, 8, generator=torch.Generator().manual_seed(k)) for k in range(len(VIEWS))]
    with caplog.at_level("DEBUG", logger="ldm3d_engine.depth.equirect"):
        fits = equirect.align(depths, prints, (64, 32))
    assert [r.getMessage() for r in caplog.records] == [f"360° depth: each view's scale and shift {fits}"]
