"""Depth of a 360° (equirectangular) image from a depth model that sees perspective pictures.

A depth model such as DPT was trained on ordinary photographs, and DPT itself only takes square
inputs. Fed a whole equirect image, it sees the poles stretched across the top and bottom rows
and the two ends of the picture as unrelated borders: a seam at 0°/360°. So the sphere is cut
into overlapping perspective views (:data:`VIEWS`: a ring of 8 around the horizon and one at
each pole, each 110° wide), each view's depth is estimated on its own, and the views are put
back on the sphere.

**Planar depth and range.** A view's answer is relative inverse *planar* depth: ``p = a/z + b``,
with ``z`` the distance along the view's optical axis and ``a > 0``, ``b`` unknown (the model's
affine ambiguity). What the sphere needs is inverse *range*, ``1/r``, the distance from the centre
along each pixel's ray: ``z = r·cos θ``, θ the angle between the ray and the view's axis, so
``1/r = cos θ / z = cos θ · (s·p + t)`` with ``s = 1/a``, ``t = −b/a``. Taking a view's answer
for inverse range (this module until issue 32) bulges flat walls: 12 % off, median, on a box room
(``tests/test_depth_geometry.py``). And the scale and shift must undo the model's affine on the
planar value, *before* cos θ: fitting them after it (a scale and shift of ``cos θ · p``) leaves
``b·cos θ``, a term that varies across the view, which no shift removes. So:

1. Each view's ``s`` and ``t`` are fitted together (one linear least-squares over every pair of
   overlapping views, weighted by both views' blending weights) so that the views' ``1/r`` agree
   where they overlap. Since cos θ differs between two views at the same direction, the overlaps
   fix each view's shift, not only the differences of shifts: the result is ``1/r`` up to one
   global scale (held by the mean inverse range over the sphere being 1).
2. Every equirect pixel is the weighted mean of the views that see it; a view's weight falls to
   zero with a zero slope at its border (a feather), so no view's edge shows as a step or crease.

Because the blend is computed per direction on the sphere, the first and last columns of the
result are neighbours like any others: there is no seam. Pure tensor maths: no model here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..presets import EQUIRECT_VIEWS as VIEWS
from .sphere import (
    FOV_DEG,
    Footprint,
    View,
    footprint,
    project_back,
    render_view,
    render_views,
    resize_wrapped,
    sphere_directions,
)

__all__ = ["FOV_DEG", "VIEWS", "View", "align", "equirect_depth", "project_back", "render_view", "sphere_directions"]

logger = logging.getLogger(__name__)

#: The equirect grid (width, height) the views' scales and shifts are fitted on (2 numbers per view).
ALIGN_GRID = (512, 256)
#: The widest the views are rendered from and blended at; larger pictures get the result resized.
BLEND_WIDTH = 2048


def align(
    depths: Sequence[torch.Tensor], prints: Sequence[Footprint], grid: tuple[int, int]
) -> list[tuple[float, float]]:
    """Per view, the scale ``s`` and shift ``t`` of its planar inverse depth (size×size) such that
    ``cos θ · (s·p + t)``, its inverse range, agrees with the other views where they overlap.

    Least squares over every overlapping pair (i, j) and pixel: ``w_i·w_j·(a_i − a_j)²`` with
    ``a = cos θ · (s·p + t)``, under the one constraint that the weighted mean of ``a`` over the
    sphere is 1 (the global scale, which nothing else fixes). The sum over pairs is
    ``Σ_i S·w_i·a_i² − (Σ_i w_i·a_i)²`` per pixel (``S = Σ_i w_i``): a 2n×2n quadratic form built
    in one pass, solved with the constraint (a Lagrange multiplier). A view whose planar
    depth is constant (a wall square to its axis) gets its scale near 0 and its depth from its
    shift, as it should. Nothing forces a scale positive: views that do not look like one scene
    (a model with random weights) get whatever agrees best."""
    width, height = grid
    n = len(depths)
    weight = torch.zeros(height, width, n, dtype=torch.float64)
    features = torch.zeros(height, width, n, 2, dtype=torch.float64)  # (cos θ · p, cos θ) per pixel and view
    for k, (depth, fp) in enumerate(zip(depths, prints, strict=True)):
        weight[fp.rows, fp.cols, k] = fp.weight.double()
        features[fp.rows, fp.cols, k, 0] = (fp.cos * fp.sample(depth)).double()
        features[fp.rows, fp.cols, k, 1] = fp.cos.double()
    weight, features = weight.reshape(-1, n), features.reshape(-1, n, 2)
    total = weight.sum(1)
    weighted = (weight[..., None] * features).reshape(-1, 2 * n)  # pixels × (view, feature)
    quadratic = -(weighted.T @ weighted)
    for k in range(n):
        u = features[:, k]
        quadratic[2 * k : 2 * k + 2, 2 * k : 2 * k + 2] += u.T @ (u * (total * weight[:, k])[:, None])
    kkt = torch.zeros(2 * n + 1, 2 * n + 1, dtype=torch.float64)
    kkt[: 2 * n, : 2 * n] = quadratic
    mean = weighted.sum(0)  # Σ_px w·a, linear in (s, t) of each view
    kkt[2 * n, : 2 * n] = kkt[: 2 * n, 2 * n] = mean / float(total.sum())
    rhs = torch.zeros(2 * n + 1, dtype=torch.float64)
    rhs[2 * n] = 1.0
    solution = np.linalg.lstsq(kkt.numpy(), rhs.numpy(), rcond=None)[0]
    fits = [(float(solution[2 * k]), float(solution[2 * k + 1])) for k in range(n)]
    logger.debug("360° depth: each view's scale and shift %s", fits)
    return fits


@functools.lru_cache(maxsize=4)
def _align_prints(views: tuple[View, ...]) -> list[Footprint]:
    """The views' footprints on the fitting grid (cached: about 5 MB for the ten views)."""
    return [footprint(view, *ALIGN_GRID) for view in views]


def _standardised(depth: torch.Tensor) -> torch.Tensor:
    """``depth`` with mean 0 and standard deviation 1, so the views' fits are comparable numbers; a
    view with no spread (a wall square to its axis: constant planar depth) is all 0 (its shift
    carries it). NaN or ±inf pixels (a model overflowing) count as the view's mean."""
    values = depth.double()
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        values = torch.where(finite, values, values[finite].mean() if bool(finite.any()) else 0.0)
    centred = values - values.mean()
    spread = float(centred.std()) if centred.numel() > 1 else 0.0
    if spread <= 1e-6 * float(values.abs().max()):
        return torch.zeros_like(centred, dtype=torch.float32)
    return (centred / spread).float()


def equirect_depth(
    rgb: torch.Tensor,
    estimate: Callable[[torch.Tensor], torch.Tensor],
    size: int,
    views: tuple[tuple[float, float], ...] = VIEWS,
    after_view: Callable[[int, int], None] | None = None,
    blend_width: int = BLEND_WIDTH,
) -> torch.Tensor:
    """Relative inverse range (H×W, float32, unnormalised: one unknown scale) of the equirect
    ``rgb`` (3×H×W, 0..1), from ``estimate`` (a size×size picture, 3×size×size → the same-size
    relative inverse planar depth, as DPT gives) run on each view. ``after_view(done, total)`` is
    told after each view (progress, and a place to cancel).

    Memory stays bounded whatever the picture's size (an 8K photo is 8192×4096): the views are
    rendered from the picture shrunk to at most ``blend_width`` wide (a view's pixels are coarser
    than that anyway), their scales and shifts are fitted on a 512×256 grid, the blend is made at
    most ``blend_width`` wide, one view's box at a time, and resized to the picture's size."""
    _, h, w = rgb.shape
    work_w = min(w, blend_width)
    work_h = max(1, round(h * work_w / w))
    source = rgb.float() if work_w == w else resize_wrapped(rgb.float(), work_h, work_w)
    view_list = [View(yaw, pitch) for yaw, pitch in views]
    depths = []
    for n, picture in enumerate(render_views(source, view_list, size)):
        depth = estimate(picture.to(rgb.dtype))
        depths.append(_standardised(depth))
        if after_view is not None:
            after_view(n + 1, len(view_list))
    fits = align(depths, _align_prints(tuple(view_list)), ALIGN_GRID)
    total = torch.zeros(work_h, work_w)
    weight_sum = torch.zeros(work_h, work_w)
    for (scale, shift), depth, view in zip(fits, depths, view_list, strict=True):
        fp = footprint(view, work_w, work_h)
        inverse_range = fp.cos * (scale * fp.sample(depth) + shift)
        total[fp.rows].index_add_(1, fp.cols, fp.weight * inverse_range)
        weight_sum[fp.rows].index_add_(1, fp.cols, fp.weight)
    blended = total / weight_sum.clamp_min(1e-12)
    if (work_h, work_w) == (h, w):
        return blended
    return resize_wrapped(blended[None], h, w)[0]
