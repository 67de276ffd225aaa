"""The geometry between an equirect picture and the perspective views cut from it.

A :class:`View` is a pinhole camera at the sphere's centre (its yaw, pitch and field of view).
:func:`render_view` samples the picture a view sees; :func:`footprint` says where a view lands on
an equirect grid: for each equirect pixel it sees, the point of the view to sample, the blending
weight, and ``cos θ``, the cosine between that pixel's ray and the view's optical axis (what turns
the view's planar depth into range: :mod:`ldm3d_engine.depth.equirect`).

Footprints are computed on the box of rows and columns a view can reach (found from the view's
border, so a view costs what it covers, not the whole grid), in float32, and sampled with
``grid_sample``; the boxes are cached per size. :func:`project_back` is the same maths on any
set of directions (the reference the tests hold the boxes to). Pure tensor maths: no model here.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Each view's field of view. With views 45° apart around the horizon, 110° leaves every
#: neighbour pair a wide overlap, and the polar views reach down to 35° of latitude, below where
#: the horizon ring stops seeing (about 53° between two views), so every direction is covered.
FOV_DEG = 110.0
#: Points sampled along each edge of a view to find its box on the equirect grid.
_EDGE_SAMPLES = 512


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

    @property
    def half(self) -> float:
        """tan(fov / 2): the view's image plane spans ±half at unit distance along its axis."""
        return math.tan(math.radians(self.fov) / 2)


@dataclass(frozen=True)
class Footprint:
    """Where a view lands on an equirect grid: the box ``rows`` × ``cols`` (columns may wrap
    around 0°/360°), and for each box pixel the point of the view to sample (``grid``, in
    ``grid_sample``'s −1..1 coordinates), the blending weight (0 where the view does not see it,
    falling smoothly to 0 toward the view's border) and cos θ (pixel ray · the view's axis)."""

    rows: slice
    cols: torch.Tensor
    grid: torch.Tensor
    weight: torch.Tensor
    cos: torch.Tensor

    def sample(self, view_image: torch.Tensor) -> torch.Tensor:
        """``view_image`` (size×size) at each box pixel (bilinear; clamped at the view's border)."""
        return _sample_view(view_image, self.grid)


def latitudes(height: int) -> torch.Tensor:
    """The latitude of each equirect row's centre, radians, +π/2 at the top (float64)."""
    return math.pi / 2 - (torch.arange(height, dtype=torch.float64) + 0.5) / height * math.pi


def longitudes(width: int) -> torch.Tensor:
    """The longitude of each equirect column's centre, radians, column 0 just after -π (float64)."""
    return (torch.arange(width, dtype=torch.float64) + 0.5) / width * 2 * math.pi - math.pi


def sphere_directions(width: int, height: int) -> torch.Tensor:
    """Unit direction of every equirect pixel's centre, height×width×3 (column 0 at -180°)."""
    lat, lon = torch.meshgrid(latitudes(height), longitudes(width), indexing="ij")
    return torch.stack([torch.cos(lat) * torch.sin(lon), torch.sin(lat), torch.cos(lat) * torch.cos(lon)], -1)


def _plane(
    z: torch.Tensor, across: torch.Tensor, upward: torch.Tensor, half: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """From a ray's components along a view's axis, right and up: its ``grid_sample`` point
    (…×2) and its weight ((1 − x²)²(1 − y²)² inside the view: 0 with a zero slope at the border,
    so a view's edge leaves no crease; 0 outside and behind)."""
    ahead = z > 1e-6
    scale = torch.where(ahead, z * half, torch.ones_like(z)).reciprocal_()
    grid = torch.stack([across * scale, -upward * scale], -1).clamp_(-1, 1)  # rows run downward in a picture
    falloff = (1 - grid * grid).prod(-1)  # (1 − x²)(1 − y²): 0 at the border and outside (clamped)
    weight = torch.where(ahead, falloff * falloff, torch.zeros_like(falloff))
    return grid, weight


def _sample_view(view_image: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    image = view_image.to(torch.float32)[None, None]
    points = grid.to(torch.float32).reshape(1, 1, -1, 2)
    sampled = F.grid_sample(image, points, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.reshape(grid.shape[:-1])


def project_back(view_image: torch.Tensor, view: View, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``view_image`` (size×size) seen from each direction of ``directions`` (…×3): the sampled
    values and each one's blending weight (0 where the view does not see that direction, falling
    to 0 toward the view's border)."""
    forward, right, up = (v.to(directions.dtype) for v in view.basis())
    grid, weight = _plane(directions @ forward, directions @ right, directions @ up, view.half)
    return _sample_view(view_image, grid), weight


def render_view(equirect: torch.Tensor, view: View, size: int) -> torch.Tensor:
    """The perspective picture (C×size×size) a camera at the sphere's centre sees through ``view``
    (bilinear; the equirect's columns wrap around, its rows clamp)."""
    return render_views(equirect, [view], size)[0]


def render_views(equirect: torch.Tensor, views: list[View], size: int) -> list[torch.Tensor]:
    """:func:`render_view` for each of ``views``, the picture's wrapped margin added once."""
    _, h, w = equirect.shape
    # one wrapped column on each side: the seam's neighbours are read across it
    padded = torch.cat([equirect[:, :, -1:], equirect, equirect[:, :, :1]], dim=2).to(torch.float32)[None]
    pictures = []
    for view in views:
        out = F.grid_sample(
            padded, _view_grid(view, size, w, h), mode="bilinear", padding_mode="border", align_corners=False
        )[0]
        pictures.append(out.to(equirect.dtype) if equirect.is_floating_point() else out)
    return pictures


@functools.lru_cache(maxsize=48)
def _view_grid(view: View, size: int, width: int, height: int) -> torch.Tensor:
    """Where each pixel of ``view`` (size×size) reads a width×height equirect picture padded with one
    wrapped column each side, in ``grid_sample``'s coordinates (1×size×size×2, cached: 1.2 MB at 384)."""
    forward, right, up = view.basis()
    steps = ((torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1) * view.half
    yy, xx = torch.meshgrid(-steps, steps, indexing="ij")
    rays = forward + xx[..., None] * right + yy[..., None] * up
    lon = torch.atan2(rays[..., 0], rays[..., 2])
    lat = torch.atan2(rays[..., 1], rays[..., [0, 2]].norm(dim=-1))
    # the padded picture's pixel centres sit at −0.5 … w − 0.5 + 1 (align_corners=False)
    gx = ((lon + math.pi) / (2 * math.pi) * width + 1) / (width + 2) * 2 - 1
    gy = (math.pi / 2 - lat) / math.pi * 2 - 1
    return torch.stack([gx, gy], -1).to(torch.float32)[None]


@functools.lru_cache(maxsize=64)
def _box(view: View, width: int, height: int) -> tuple[slice, torch.Tensor]:
    """The rows and columns of a width×height equirect grid that ``view`` can see: from the
    latitudes and longitudes along its four edges (a pole inside the view: every column), a pixel
    of margin around."""
    forward, right, up = view.basis()
    t = torch.linspace(-1.0, 1.0, _EDGE_SAMPLES, dtype=torch.float64)
    one = torch.ones_like(t)
    a = torch.cat([t, t, one, -one]) * view.half
    b = torch.cat([one, -one, t, t]) * view.half
    rays = forward + a[:, None] * right + b[:, None] * up
    lat = torch.atan2(rays[:, 1], rays[:, [0, 2]].norm(dim=-1))
    lat_high, lat_low = float(lat.max()), float(lat.min())
    poles = []
    for sign in (1.0, -1.0):
        pole = torch.tensor([0.0, sign, 0.0], dtype=torch.float64)
        z = float(pole @ forward)
        inside = z > 1e-9 and abs(float(pole @ right)) / z < view.half and abs(float(pole @ up)) / z < view.half
        poles.append(inside)
    if poles[0]:
        lat_high = math.pi / 2
    if poles[1]:
        lat_low = -math.pi / 2
    r0 = max(0, math.floor((math.pi / 2 - lat_high) / math.pi * height - 0.5) - 1)
    r1 = min(height, math.ceil((math.pi / 2 - lat_low) / math.pi * height - 0.5) + 2)
    pixel = 2 * math.pi / width
    if any(poles) or lat_high > math.pi / 2 - 2 * math.pi / height or lat_low < -math.pi / 2 + 2 * math.pi / height:
        return slice(r0, r1), torch.arange(width)
    yaw = math.atan2(float(forward[0]), float(forward[2]))
    relative = torch.remainder(torch.atan2(rays[:, 0], rays[:, 2]) - yaw + math.pi, 2 * math.pi) - math.pi
    low, high = float(relative.min()) - 2 * pixel, float(relative.max()) + 2 * pixel
    centres = torch.remainder(longitudes(width) - yaw + math.pi, 2 * math.pi) - math.pi
    return slice(r0, r1), torch.nonzero((centres >= low) & (centres <= high)).flatten()


def footprint(view: View, width: int, height: int) -> Footprint:
    """Where ``view`` lands on a width×height equirect grid (see :class:`Footprint`)."""
    rows, cols = _box(view, width, height)
    lat = latitudes(height)[rows]
    lon = longitudes(width)[cols]
    cos_lat, sin_lat = torch.cos(lat).float()[:, None], torch.sin(lat).float()[:, None]
    cos_lon, sin_lon = torch.cos(lon).float()[None], torch.sin(lon).float()[None]

    def along(v: torch.Tensor) -> torch.Tensor:  # direction · v, separably: no H×W×3 directions
        return cos_lat * (float(v[0]) * sin_lon + float(v[2]) * cos_lon) + float(v[1]) * sin_lat

    forward, right, up = view.basis()
    z = along(forward)
    grid, weight = _plane(z, along(right), along(up), view.half)
    return Footprint(rows, cols, grid, weight, z)


def resize_wrapped(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a C×H×W equirect image, its columns wrapping around (no border at 0°/360°);
    antialiased when shrinking. The wrapped margin is a whole number of pixels on both sides of
    the resize whenever the sizes allow it (so nothing shifts); else the shift is under a pixel."""
    _, _, w = image.shape
    unit = w // math.gcd(w, width)  # the smallest margin that scales to a whole number of pixels
    pad = unit * max(1, math.ceil(2 / unit)) if unit <= max(2, w // 8) else 2
    out_pad = round(pad * width / w)
    padded = torch.cat([image[:, :, -pad:], image, image[:, :, :pad]], dim=2)
    resized = F.interpolate(
        padded[None], size=(height, width + 2 * out_pad), mode="bilinear", align_corners=False, antialias=True
    )[0]
    return resized[:, :, out_pad : out_pad + width]
