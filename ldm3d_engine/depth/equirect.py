"""Depth of a 360° (equirectangular) image from a depth model that sees perspective pictures.

A depth model such as DPT was trained on ordinary photographs, and DPT itself only takes square
inputs. Fed a whole equirect image, it sees the poles stretched across the top and bottom rows
and the two ends of the picture as unrelated borders: a seam at 0°/360°. So the sphere is cut
into overlapping perspective views (:data:`VIEWS`: a ring of 8 around the horizon and one at
each pole, each 110° wide), each view's depth is estimated on its own, and the views are put
back on the sphere:

1. Each view's relative depth has its own scale and shift (a depth model's output is only
   defined up to both). They are made to agree where views overlap: one least-squares fit of a
   scale and a shift per view over every overlapping pair (the first view is the reference).
2. Every equirect pixel is the weighted mean of the views that see it; a view's weight falls to
   zero at its border, so no view's edge shows.

Because the blend is computed per direction on the sphere, the first and last columns of the
result are neighbours like any others: there is no seam. Pure tensor maths: no model here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..presets import EQUIRECT_VIEWS as VIEWS

#: Each view's field of view. With views 45° apart around the horizon, 110° leaves every
#: neighbour pair a wide overlap, and the polar views reach down to 35° of latitude, below where
#: the horizon ring stops seeing (about 53° between two views), so every direction is covered.
FOV_DEG = 110.0
#: The equirect grid (width, height) the views' scales and shifts are fitted on (2 numbers per view).
ALIGN_GRID = (512, 256)
#: The widest the views are rendered from and blended at; larger pictures get the result resized.
BLEND_WIDTH = 2048


@dataclass(frozen=True)
class View:
    yaw: float
    pitch: float
    fov: float = FOV_DEG

    def basis(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Forward, right and up unit vectors (x right, y up, z forward at yaw 0, pitch 0)."""
        psi, theta = math.radians(self.yaw), math.radians(self.pitch)
        f64 = torch.float64
        forward = torch.tensor(
            [math.cos(theta) * math.sin(psi), math.sin(theta), math.cos(theta) * math.cos(psi)], dtype=f64
        )
        right = torch.tensor([math.cos(psi), 0.0, -math.sin(psi)], dtype=f64)
        up = torch.tensor(
            [-math.sin(theta) * math.sin(psi), math.cos(theta), -math.sin(theta) * math.cos(psi)], dtype=f64
        )
        return forward, right, up


def sphere_directions(width: int, height: int) -> torch.Tensor:
    """Unit direction of every equirect pixel's centre, height×width×3 (column 0 at -180°)."""
    lon = (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 * math.pi - math.pi
    lat = math.pi / 2 - (torch.arange(height, dtype=torch.float64) + 0.5) / height * math.pi
    lat, lon = torch.meshgrid(lat, lon, indexing="ij")
    return torch.stack([torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)], -1)


def _bilinear(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, wrap: bool) -> torch.Tensor:
    """Sample ``image`` (C×H×W) at pixel coordinates (x, y) (pixel centres at integers);
    columns wrap around when ``wrap`` (an equirect image), rows and unwrapped columns clamp."""
    _, h, w = image.shape
    x0f, y0f = torch.floor(x), torch.floor(y)
    fx, fy = (x - x0f).to(image.dtype), (y - y0f).to(image.dtype)
    x0, y0 = x0f.long(), y0f.long()
    x1, y1 = x0 + 1, y0 + 1
    if wrap:
        x0, x1 = x0 % w, x1 % w
    else:
        x0, x1 = x0.clamp(0, w - 1), x1.clamp(0, w - 1)
    y0, y1 = y0.clamp(0, h - 1), y1.clamp(0, h - 1)
    top = image[:, y0, x0] * (1 - fx) + image[:, y0, x1] * fx
    bottom = image[:, y1, x0] * (1 - fx) + image[:, y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def render_view(equirect: torch.Tensor, view: View, size: int) -> torch.Tensor:
    """The perspective picture (C×size×size) a camera at the sphere's centre sees through ``view``."""
    _, h, w = equirect.shape
    forward, right, up = view.basis()
    half = math.tan(math.radians(view.fov) / 2)
    steps = ((torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1) * half
    yy, xx = torch.meshgrid(-steps, steps, indexing="ij")
    rays = forward + xx[..., None] * right + yy[..., None] * up
    rays = rays / rays.norm(dim=-1, keepdim=True)
    lon = torch.atan2(rays[..., 0], rays[..., 2])
    lat = torch.asin(rays[..., 1].clamp(-1, 1))
    px = (lon + math.pi) / (2 * math.pi) * w - 0.5
    py = (math.pi / 2 - lat) / math.pi * h - 0.5
    return _bilinear(equirect, px, py, wrap=True)


def project_back(view_image: torch.Tensor, view: View, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``view_image`` (size×size) seen from each direction of ``directions`` (H×W×3): the sampled
    values and each one's blending weight (0 where the view does not see that direction, falling
    to 0 toward the view's border)."""
    size = view_image.shape[-1]
    forward, right, up = view.basis()
    z = directions @ forward
    half = math.tan(math.radians(view.fov) / 2)
    safe_z = torch.where(z > 1e-6, z, torch.ones_like(z))
    x = (directions @ right) / safe_z / half
    y = (directions @ up) / safe_z / half
    seen = (z > 1e-6) & (x.abs() < 1) & (y.abs() < 1)
    weight = torch.where(seen, (1 - x.abs()) * (1 - y.abs()), torch.zeros_like(x))
    px = (x.clamp(-1, 1) + 1) / 2 * size - 0.5
    py = (1 - y.clamp(-1, 1)) / 2 * size - 0.5
    values = _bilinear(view_image[None].double(), px, py, wrap=False)[0]
    return values, weight


def align(values: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> list[tuple[float, float]]:
    """A scale and a shift per view so that the views agree where they overlap (least squares over
    every overlapping pair, weighted by both views' weights; view 0 keeps scale 1, shift 0). A view
    whose fit comes out non-positive or undefined keeps 1, 0."""
    n = len(values)
    rows: list[np.ndarray] = []
    sampled = [(v.reshape(-1).numpy(), w.reshape(-1).numpy()) for v, w in zip(values, weights, strict=True)]
    for i in range(n):
        for j in range(i + 1, n):
            vi, wi = sampled[i]
            vj, wj = sampled[j]
            both = (wi > 0) & (wj > 0)
            if not both.any():
                continue
            s = np.sqrt(wi[both] * wj[both])
            block = np.zeros((int(both.sum()), 2 * n))
            block[:, 2 * i], block[:, 2 * i + 1] = s * vi[both], s
            block[:, 2 * j], block[:, 2 * j + 1] = -s * vj[both], -s
            rows.append(block)
    if not rows:
        return [(1.0, 0.0)] * n
    total = sum(len(r) for r in rows)
    anchor = np.zeros((2, 2 * n))
    anchor[0, 0] = anchor[1, 1] = math.sqrt(total)  # view 0: scale 1, shift 0, held firmly
    a = np.concatenate([*rows, anchor])
    b = np.zeros(len(a))
    b[-2] = math.sqrt(total)
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    fits = []
    for k in range(n):
        scale, shift = float(solution[2 * k]), float(solution[2 * k + 1])
        fits.append((scale, shift) if math.isfinite(scale) and math.isfinite(shift) and scale > 0 else (1.0, 0.0))
    return fits


def _resize_wrapped(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a C×H×W equirect image, its columns wrapping around (no border at 0°/360°);
    antialiased when shrinking. The wrapped margin is a whole number of pixels on both sides of
    the resize whenever the sizes allow it (so nothing shifts); else the shift is under a pixel."""
    _, _, w = image.shape
    unit = w // math.gcd(w, width)  # the smallest margin that scales to a whole number of pixels
    pad = unit * max(1, math.ceil(2 / unit)) if unit <= max(2, w // 8) else 2
    out_pad = round(pad * width / w)
    padded = torch.cat([image[:, :, -pad:], image, image[:, :, :pad]], dim=2)
    resized = torch.nn.functional.interpolate(
        padded[None], size=(height, width + 2 * out_pad), mode="bilinear", align_corners=False, antialias=True
    )[0]
    return resized[:, :, out_pad : out_pad + width]


def equirect_depth(
    rgb: torch.Tensor,
    estimate: Callable[[torch.Tensor], torch.Tensor],
    size: int,
    views: tuple[tuple[float, float], ...] = VIEWS,
    after_view: Callable[[int, int], None] | None = None,
    blend_width: int = BLEND_WIDTH,
) -> torch.Tensor:
    """Relative inverse depth (H×W, float64, unnormalised) of the equirect ``rgb`` (3×H×W, 0..1),
    from ``estimate`` (a size×size picture, 3×size×size → the same-size depth) run on each view.
    ``after_view(done, total)`` is told after each view (progress, and a place to cancel).

    Memory stays bounded whatever the picture's size (an 8K photo is 8192×4096): the views are
    rendered from the picture shrunk to at most ``blend_width`` wide (a view's pixels are coarser
    than that anyway), their scales and shifts are fitted on a 512×256 grid, the blend is made at
    most ``blend_width`` wide, one view at a time, and resized to the picture's size."""
    _, h, w = rgb.shape
    work_w = min(w, blend_width)
    work_h = max(1, round(h * work_w / w))
    source = (rgb if work_w == w else _resize_wrapped(rgb.float(), work_h, work_w)).double()
    depths = []
    for n, (yaw, pitch) in enumerate(views):
        view = View(yaw, pitch)
        depth = estimate(render_view(source, view, size).to(rgb.dtype)).double()
        depths.append((depth - depth.mean()) / (depth.std() + 1e-12))  # comparable before the fit
        if after_view is not None:
            after_view(n + 1, len(views))
    coarse = sphere_directions(*ALIGN_GRID)
    fits = align(*zip(*(project_back(d, View(*v), coarse) for d, v in zip(depths, views, strict=True)), strict=True))
    directions = sphere_directions(work_w, work_h)
    total = torch.zeros(work_h, work_w, dtype=torch.float64)
    weight_sum = torch.zeros(work_h, work_w, dtype=torch.float64)
    for (scale, shift), depth, v in zip(fits, depths, views, strict=True):
        value, weight = project_back(depth, View(*v), directions)
        total += weight * (scale * value + shift)
        weight_sum += weight
    blended = total / weight_sum.clamp_min(1e-12)
    if (work_h, work_w) == (h, w):
        return blended
    return _resize_wrapped(blended[None], h, w)[0]
