"""Density grid → triangle mesh with vertex colours, in the object's frame.

Facts (NIRVANALAN/LN3Diff ``nsr/train_util_diffusion.py`` ``render_video_given_triplane``; lines in
docs/objects.md): ``mcubes.marching_cubes(sigma, 10)`` on the 192³ grid; vertices mapped from grid
indices to ``v/(size − 1)·2 − 1`` and times 0.45 (the sampling cube); colours queried at those points,
``clip(0, 1)·255`` cast to uint8; then rotated by −90° about x (``rotation_matrix_x(-90)``:
(x, y, z) → (x, z, −y)) before the OBJ is written.

Here the rotated cube [−0.45, 0.45]³ is then scaled to [−0.5, 0.5]³ (the object's largest possible
extent is 1, as :class:`~ldm3d_engine.object_types.MeshResult` promises). Marching cubes is
PyMCubes (``mcubes``, the implementation upstream calls), from the ``[objects]`` extra; its
triangles wind counter-clockwise seen from the side of lower density (outside), which a rotation and
a positive scale keep.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import numpy.typing as npt

from ..errors import BackendFailed

INSTALL_HINT = "pip install 'ldm3d-bridge[objects]' (or: pip install PyMCubes)"

#: Upstream's export rotation: −90° about x.
ROTATE_X_MINUS_90 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

ColourField = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


def marching_cubes_module() -> ModuleType:
    """PyMCubes, imported now; BackendFailed with the install command when it is missing."""
    try:
        import mcubes  # type: ignore[import-untyped]
    except ImportError as exc:
        raise BackendFailed(
            f"the object models' meshing needs PyMCubes, which is not installed: {INSTALL_HINT}"
        ) from exc
    module: ModuleType = mcubes
    return module


def grid_surface(
    density: npt.NDArray[np.float32], threshold: float, half_extent: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """The ``threshold`` surface of a size³ density grid sampled on [−half_extent, half_extent]³
    (axes x, y, z): vertices in those coordinates (N×3) and triangles (M×3). No surface: empty arrays."""
    if density.ndim != 3 or len(set(density.shape)) != 1 or density.shape[0] < 2:
        raise ValueError(f"a density grid is size³ with size ≥ 2, not {density.shape}")
    mcubes = marching_cubes_module()
    vertices, faces = mcubes.marching_cubes(np.ascontiguousarray(density, dtype=np.float64), float(threshold))
    size = density.shape[0]
    points = (np.asarray(vertices, dtype=np.float64) / (size - 1) * 2.0 - 1.0) * half_extent
    return points.astype(np.float32).reshape(-1, 3), np.asarray(faces, dtype=np.int32).reshape(-1, 3)


def colours_to_srgb8(colours: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    """Upstream's conversion: clip to [0, 1], times 255, truncated."""
    return (np.clip(colours, 0.0, 1.0) * 255).astype(np.uint8)


def to_object_frame(points: npt.NDArray[np.float32], half_extent: float) -> npt.NDArray[np.float32]:
    """Upstream's −90° turn about x, then the sampling cube scaled to [−0.5, 0.5]³."""
    turned: npt.NDArray[np.float64] = points.astype(np.float64) @ ROTATE_X_MINUS_90.T
    return (turned * (0.5 / half_extent)).astype(np.float32)


def mesh_from_field(
    density: npt.NDArray[np.float32], threshold: float, half_extent: float, colour_at: ColourField
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """Surface, colours read at its vertices (before the turn, in the field's own coordinates), and
    the vertices in the object's frame."""
    points, faces = grid_surface(density, threshold, half_extent)
    if len(points) == 0:
        return points, faces, np.zeros((0, 3), np.uint8)
    colours = colours_to_srgb8(colour_at(points))
    return to_object_frame(points, half_extent), faces, colours
