"""Shap-E's mesh (diffusers' ``MeshDecoderOutput``) → the object's frame, winding and sRGB colours.

Facts (diffusers 0.42 ``pipelines/shap_e``): ``decode_to_mesh`` samples the signed distance on a
``grid_size``³ grid over the renderer's volume [−1, 1]³ (x, y, z), pads it with −1 (outside) and runs
marching cubes with the table in the weights; vertices are in those coordinates. Shap-E is ``+Z``
up: diffusers' pan cameras (``camera.py`` ``create_pan_cameras``) orbit about z, their image ``y``
is ``cross(z, x)``, pointing down along −z, and the first camera looks along +y (it sees the
object's −y side). The texture head's output (a sigmoid, sRGB as trained against sRGB renders) is
converted to linear light (``_convert_srgb_to_linear``) before it is put in ``vertex_channels``,
as Shap-E's STF renderer does before lighting.

Here: −90° about x ((x, y, z) → (x, z, −y): +Z up becomes +Y up, the side the first camera sees
faces +Z, the same turn LN3Diff's export makes), the bounding box centred on the origin and its
largest side scaled to 1; the triangles wound counter-clockwise seen from outside whatever the
table's own convention (the signed volume of the closed mesh decides: the −1 border closes every
surface); the colours turned back to sRGB (the exact inverse of diffusers' conversion) and rounded
to bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: Shap-E's +Z up → the object frame's +Y up: −90° about x.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def to_object_frame(vertices: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Turned to +Y up, the bounding box centred on the origin, its largest side 1."""
    if len(vertices) == 0:
        return np.zeros((0, 3), np.float32)
    turned = np.asarray(vertices, np.float64).reshape(-1, 3) @ Z_UP_TO_Y_UP.T
    low, high = turned.min(axis=0), turned.max(axis=0)
    extent = float((high - low).max())
    centred = turned - (low + high) / 2.0
    placed: npt.NDArray[np.float32] = (centred / extent if extent > 0 else centred).astype(np.float32)
    return placed


def signed_volume(vertices: npt.NDArray[np.floating], faces: npt.NDArray[np.integer]) -> float:
    """The volume a closed mesh encloses, positive when its triangles wind counter-clockwise seen from outside."""
    if len(faces) == 0:
        return 0.0
    a, b, c = (np.asarray(vertices, np.float64)[faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def outward(vertices: npt.NDArray[np.floating], faces: npt.NDArray[np.integer]) -> npt.NDArray[np.int32]:
    """``faces`` (M×3), reversed where the closed mesh winds inward."""
    faces = np.asarray(faces, np.int32).reshape(-1, 3)
    return np.ascontiguousarray(faces[:, ::-1]) if signed_volume(vertices, faces) < 0 else faces


def linear_to_srgb8(linear: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Linear light in [0, 1] → sRGB bytes (IEC 61966-2-1, the inverse of diffusers' sRGB → linear)."""
    u = np.clip(np.asarray(linear, np.float64), 0.0, 1.0)
    srgb = np.where(u <= 0.0031308, u * 12.92, 1.055 * np.power(u, 1.0 / 2.4) - 0.055)
    return np.round(np.clip(srgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def empty_mesh() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """No surface: the three arrays, empty."""
    return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros((0, 3), np.uint8)


def object_mesh(
    vertices: npt.NDArray[np.floating], faces: npt.NDArray[np.integer], channels: dict[str, npt.NDArray[np.floating]]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """Shap-E's vertices, faces and ``vertex_channels`` (``R``, ``G``, ``B``: linear) → the
    :class:`~ldm3d_engine.object_types.MeshResult` arrays."""
    placed = to_object_frame(vertices)
    linear = np.stack([np.asarray(channels[c], np.float64).reshape(-1) for c in "RGB"], axis=1)
    return placed, outward(placed, faces), linear_to_srgb8(linear)
