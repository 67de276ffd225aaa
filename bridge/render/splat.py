"""Export a job's world as 3D Gaussian splats: one splat per pixel at its displaced position. Pure NumPy.

Each splat sits where ``bridge/render/glsl/ldm3d_displace.glsl`` puts the sphere at that
pixel's centre (``ldm3dDirection``, ``ldm3dRadius``; the sphere's radius is 1), so a splat world
lines up with ``export-mesh`` and TouchDesigner's sphere: +Y up, −Z the panorama's middle,
u = (column + ½) / W, v = 1 − (row + ½) / H (row 0 is the image's top). No pixel centre lies
on the seam (u = 0 or 1) or on a pole, so no splat is duplicated there.

A splat is a flat Gaussian facing the centre: its first axis along the parallel (east), its
second along the meridian (north), its third, thin, along the view ray. Its standard deviations
are ``FOOTPRINT_SIGMA`` × the pixel's footprint at its distance (width r·cos(lat)·Δlon, height
r·Δlat). Rows toward the poles are thinned: where cos(lat) < ½ only every 2^k-th pixel of the
row is kept (2^k ≤ 1/cos(lat), so a splat is at least half as wide as at the equator, never a
sliver), keeping at least ``MIN_ROW`` a row: about 22 % fewer splats, all of them near the poles.

Formats (``FORMATS``):

* ``ply``: the 3DGS layout of graphdeco-inria's ``save_ply`` with SH degree 0 (no ``f_rest_*``):
  x y z nx ny nz f_dc_0..2 opacity scale_0..2 rot_0..3, float32, binary little-endian;
  colour as ``(c − 0.5) / SH_C0``, opacity as a logit, scales as logs, rotation (w, x, y, z);
* ``splat``: antimatter15/splat's 32 bytes a splat: position 3×f32, linear scale 3×f32,
  RGBA 4×u8, rotation (w, x, y, z) 4×u8 as q·128 + 128.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bridge.render.preview import PreviewError, load_job_textures

logger = logging.getLogger(__name__)

#: The degree-0 spherical harmonic, 1 / (2√π): colour = 0.5 + SH_C0 · f_dc.
SH_C0 = 0.28209479177387814
#: Every splat's opacity (stored as its logit in the .ply): near-opaque.
OPACITY = 0.995
#: A splat's standard deviation as a share of its pixel's footprint: 0.6 leaves no hole between
#: neighbours (≥ 94 % cover midway between four) and blurs little.
FOOTPRINT_SIGMA = 0.6
#: The third axis (along the view ray) as a share of the smaller of the other two.
THICKNESS = 0.1
#: No scale below this (the sphere's radius is 1): never a zero or a NaN log.
MIN_SCALE = 1e-6
#: The smallest number of splats a thinned row keeps.
MIN_ROW = 3
PLY_PROPERTIES = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip
FORMATS = {".ply": "ply", ".splat": "splat"}
SPLAT_RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])


class SplatError(PreviewError):
    """A splat export was asked for something it cannot do; the message names the value."""


@dataclass(frozen=True)
class Splats:
    positions: npt.NDArray[np.float32]  # N × 3
    colors: npt.NDArray[np.uint8]  # N × 3, the pixels' RGB
    scales: npt.NDArray[np.float32]  # N × 3, standard deviations (linear): east, north, along the ray
    rotations: npt.NDArray[np.float32]  # N × 4, unit quaternions (w, x, y, z)

    def __len__(self) -> int:
        return len(self.positions)


def splat_format(out: Path, fmt: str | None = None) -> str:
    """``ply`` or ``splat``: ``fmt`` if given, else from the suffix of ``out``."""
    if fmt is not None:
        if fmt not in FORMATS.values():
            raise SplatError(f"--format {fmt}: unknown splat format; use ply or splat")
        return fmt
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise SplatError(f"{out.name}: unknown splat format {suffix or '(no suffix)'}; use .ply or .splat, or --format")
    return FORMATS[suffix]


def _row_strides(latitudes: npt.NDArray[np.float64], step: int, width: int) -> npt.NDArray[np.int64]:
    """Every row's column stride: ``step`` × 2^k, 2^k ≤ 1/cos(lat), keeping ≥ MIN_ROW splats a row."""
    k = np.floor(np.log2(1.0 / np.maximum(np.cos(latitudes), 1e-12)))
    k_max = math.floor(math.log2(max(1.0, width / (MIN_ROW * step))))
    return (step * 2 ** np.clip(k, 0, k_max)).astype(np.int64)


def pixel_splats(
    rgb: npt.NDArray[np.uint8],
    depth: npt.NDArray[np.uint16],
    *,
    strength: float = 1.0,
    step: int = 1,
    base_radius: float = 1.0,
) -> Splats:
    """The splats of an equirectangular RGB and its 16-bit relative inverse depth (65535 = nearest)."""
    height, width = rgb.shape[:2]
    if step < 1:
        raise SplatError(f"--step {step}: must be 1 or more")
    if step > min(height, width):
        raise SplatError(f"--step {step}: larger than the {width}×{height} image")
    rows = np.arange(step // 2, height, step)
    row_lat = (0.5 - (rows + 0.5) / height) * math.pi
    strides = np.zeros(height, np.int64)
    strides[rows] = _row_strides(row_lat, step, width)
    keep = np.zeros((height, width), bool)
    columns = np.arange(width)
    keep[rows] = columns[None, :] % strides[rows, None] == strides[rows, None] // 2
    i, j = np.nonzero(keep)  # row-major: top row first, west to east
    lon = ((j + 0.5) / width - 0.5) * 2.0 * math.pi
    lat = (0.5 - (i + 0.5) / height) * math.pi
    # The depth map may differ in size from the RGB (the shader samples it by uv): nearest texel.
    di = ((i + 0.5) * depth.shape[0] / height).astype(np.int64)
    dj = ((j + 0.5) * depth.shape[1] / width).astype(np.int64)
    d = depth[di, dj].astype(np.float64) / 65535.0
    radius = base_radius * np.maximum(0.05, 1.0 - strength * (d - 0.5))
    cos_lat = np.cos(lat)
    direction = np.stack([cos_lat * np.sin(lon), np.sin(lat), -cos_lat * np.cos(lon)], axis=1)
    east = strides[i] * (2.0 * math.pi / width) * radius * cos_lat
    north = step * (math.pi / height) * radius
    east_north = np.stack([east, north], axis=1) * FOOTPRINT_SIGMA
    thin = THICKNESS * east_north.min(axis=1, keepdims=True)
    scales = np.maximum(np.concatenate([east_north, thin], axis=1), MIN_SCALE * base_radius)
    # The rotation whose columns are east, north and the inward ray: Ry(−lon) · Rx(lat).
    ca, sa = np.cos(lon / 2), np.sin(lon / 2)
    cb, sb = np.cos(lat / 2), np.sin(lat / 2)
    rotations = np.stack([ca * cb, ca * sb, -sa * cb, sa * sb], axis=1)
    return Splats(
        positions=(direction * radius[:, None]).astype(np.float32),
        colors=np.ascontiguousarray(rgb[i, j, :3]),
        scales=scales.astype(np.float32),
        rotations=rotations.astype(np.float32),
    )


def ply_bytes(splats: Splats) -> bytes:
    """A binary little-endian PLY in the 3DGS layout (SH degree 0)."""
    n = len(splats)
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment ldm3d-bridge export-splat: an RGBD world as 3D Gaussians, SH degree 0",
        f"element vertex {n}",
        *(f"property float {name}" for name in PLY_PROPERTIES),
        "end_header",
    ]
    logit = math.log(OPACITY / (1.0 - OPACITY))
    body = np.empty((n, len(PLY_PROPERTIES)), "<f4")
    body[:, 0:3] = splats.positions
    body[:, 3:6] = 0.0
    body[:, 6:9] = (splats.colors.astype(np.float64) / 255.0 - 0.5) / SH_C0
    body[:, 9] = logit
    body[:, 10:13] = np.log(splats.scales.astype(np.float64))
    body[:, 13:17] = splats.rotations
    return ("\n".join(header) + "\n").encode("ascii") + body.tobytes()


def splat_bytes(splats: Splats) -> bytes:
    """antimatter15/splat's format: 32 bytes a splat, no header."""
    records = np.empty(len(splats), SPLAT_RECORD)
    records["position"] = splats.positions
    records["scale"] = splats.scales
    records["rgba"][:, :3] = splats.colors
    records["rgba"][:, 3] = round(OPACITY * 255)
    q = splats.rotations / np.linalg.norm(splats.rotations, axis=1, keepdims=True)
    records["rotation"] = np.clip(np.round(q * 128.0 + 128.0), 0, 255).astype(np.uint8)
    return records.tobytes()


def _write_atomically(out: Path, data: bytes) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def export_splat(
    job_dir: Path, out: Path, *, fmt: str | None = None, step: int = 1, strength: float = 1.0
) -> tuple[int, str]:
    """Write the world of ``job_dir`` to ``out`` as splats; return (splats, format). Nothing is
    written at ``out`` unless the whole file is."""
    kind = splat_format(out, fmt)
    started = time.perf_counter()
    rgb, depth = load_job_textures(job_dir)
    splats = pixel_splats(rgb, depth, strength=strength, step=step)
    _write_atomically(out, ply_bytes(splats) if kind == "ply" else splat_bytes(splats))
    logger.info(
        "%s: %d splats from %d×%d (step %d), %s, %.2f s",
        out,
        len(splats),
        rgb.shape[1],
        rgb.shape[0],
        step,
        kind,
        time.perf_counter() - started,
    )
    return len(splats), kind
