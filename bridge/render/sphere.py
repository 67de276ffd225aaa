"""The UV sphere grid shared by the preview renderer and the mesh export. Pure NumPy.

Vertices carry only texture coordinates (OpenGL convention: v = 0 is the image's
bottom row); positions are computed from them and the depth by
``bridge/render/glsl/ldm3d_displace.glsl``. The seam column is duplicated (u = 0 and
u = 1 are separate vertices at the same place) so the texture does not smear
across it; pole rows are kept whole so every row has the same vertex count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class SphereGrid:
    columns: int
    rows: int
    uv: npt.NDArray[np.float32]  # ((columns + 1) · (rows + 1)) × 2
    triangles: npt.NDArray[np.uint32]  # (columns · rows · 2) × 3, counter-clockwise seen from inside


def sphere_grid(columns: int = 256, rows: int = 128) -> SphereGrid:
    if columns < 3 or rows < 2:
        raise ValueError(f"a sphere needs at least 3 columns and 2 rows, got {columns}×{rows}")
    u = np.linspace(0.0, 1.0, columns + 1, dtype=np.float32)
    v = np.linspace(0.0, 1.0, rows + 1, dtype=np.float32)
    uu, vv = np.meshgrid(u, v)
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1).astype(np.float32)
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    a = (r * (columns + 1) + c).ravel()
    b, d = a + 1, a + columns + 1
    e = d + 1
    triangles = np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.uint32)
    return SphereGrid(columns, rows, uv, triangles)
