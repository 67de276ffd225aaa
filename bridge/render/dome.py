"""Dome masters and cube maps from the reference renderer, as TouchDesigner's Render TOP makes them.

A cube map is six 90° views from one eye (``+x -x +y -y +z -z``: right, left, up, down, behind,
ahead; the panorama's middle is ahead, −Z). A dome master is an angular (equidistant) fisheye
resampled from it: the distance from the image centre is proportional to the angle from the
camera's direction, the rim is ``fov / 2`` away, and outside the circle is black. Pointed at the
zenith (pitch 90°) it is a planetarium's dome master, with the panorama's middle at the bottom
of the image; TouchDesigner's ``render_dome`` (Render TOP, Fish-Eye mode, camera ``cam_dome``)
makes the same view, so ``ldm3d-bridge preview --fisheye 180`` shows what the dome will show.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from bridge.render.preview import Camera, SphereRenderer

#: The cube's faces as cameras (yaw, pitch): each face's forward, right and up come from Camera.
FACES: dict[str, tuple[float, float]] = {
    "+x": (90.0, 0.0),
    "-x": (-90.0, 0.0),
    "+y": (0.0, 90.0),
    "-y": (0.0, -90.0),
    "+z": (180.0, 0.0),
    "-z": (0.0, 0.0),
}

Basis = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def basis(camera: Camera) -> Basis:
    """(forward, right, up) of a camera: the image's centre, its right edge and its top edge."""
    forward, right = camera.direction(), camera.right()
    return forward, right, np.cross(right, forward)


def render_cube(
    renderer: SphereRenderer, eye: tuple[float, float, float], face_size: int
) -> dict[str, npt.NDArray[np.uint8]]:
    """The six faces, each ``face_size`` square, seen from ``eye``."""
    return {
        name: renderer.render(Camera(eye, yaw, pitch, 90.0), (face_size, face_size))
        for name, (yaw, pitch) in FACES.items()
    }


def fisheye_directions(
    camera: Camera, size: tuple[int, int], fov: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """For each pixel of a ``size`` (W, H) image: its view direction (H×W×3) and whether it lies inside
    the fisheye circle (its diameter is the image's shorter side)."""
    width, height = size
    radius = min(width, height) / 2
    cols = (np.arange(width) + 0.5 - width / 2) / radius
    rows = (height / 2 - np.arange(height) - 0.5) / radius
    x, y = np.meshgrid(cols, rows)
    r = np.hypot(x, y)
    theta = r * np.radians(fov) / 2  # equidistant: angle grows linearly with the distance from the centre
    phi = np.arctan2(y, x)
    forward, right, up = basis(camera)
    sin_t = np.sin(theta)[..., None]
    directions = (
        np.cos(theta)[..., None] * forward
        + sin_t * np.cos(phi)[..., None] * right
        + sin_t * np.sin(phi)[..., None] * up
    )
    return directions, r <= 1.0


def sample_cube(faces: dict[str, npt.NDArray[np.uint8]], directions: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Bilinear lookup of ``directions`` (…×3) in a cube map made by :func:`render_cube`."""
    size = next(iter(faces.values())).shape[0]
    out = np.zeros((*directions.shape[:-1], 3), np.float64)
    cameras = {name: basis(Camera(yaw=yaw, pitch=pitch)) for name, (yaw, pitch) in FACES.items()}
    # The face a direction falls on is the one whose forward it is closest to.
    names = list(cameras)
    facing = np.stack([directions @ cameras[name][0] for name in names], -1)
    chosen = np.argmax(facing, -1)
    for index, name in enumerate(names):
        mask = chosen == index
        if not mask.any():
            continue
        forward, right, up = cameras[name]
        d = directions[mask]
        depth = d @ forward
        col = ((d @ right) / depth + 1) / 2 * size - 0.5
        row = (1 - (d @ up) / depth) / 2 * size - 0.5
        out[mask] = _bilinear(faces[name].astype(np.float64), row, col)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _bilinear(
    image: npt.NDArray[np.float64], row: npt.NDArray[np.float64], col: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    size = image.shape[0]
    row, col = np.clip(row, 0, size - 1), np.clip(col, 0, size - 1)
    r0, c0 = np.minimum(np.floor(row).astype(int), size - 2), np.minimum(np.floor(col).astype(int), size - 2)
    fr, fc = (row - r0)[..., None], (col - c0)[..., None]
    top = image[r0, c0] * (1 - fc) + image[r0, c0 + 1] * fc
    bottom = image[r0 + 1, c0] * (1 - fc) + image[r0 + 1, c0 + 1] * fc
    result: npt.NDArray[np.float64] = top * (1 - fr) + bottom * fr
    return result


def render_fisheye(
    renderer: SphereRenderer, camera: Camera, size: tuple[int, int], fov: float = 180.0
) -> npt.NDArray[np.uint8]:
    """An angular fisheye (a dome master when ``camera.pitch`` is 90) of ``fov`` degrees, H×W×3."""
    if not 1.0 <= fov <= 360.0:
        raise ValueError(f"fisheye fov {fov}: use 1..360 degrees")
    face = max(64, min(2048, int(min(size) * 0.75)))  # about one cube texel per fisheye pixel at the rim
    faces = render_cube(renderer, camera.eye, face)
    directions, inside = fisheye_directions(camera, size, fov)
    image = sample_cube(faces, directions)
    image[~inside] = 0  # a dome master is black outside its circle
    return image
