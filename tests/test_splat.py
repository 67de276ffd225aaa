"""export-splat: an RGBD world as 3D Gaussian splats, read back with plyfile (a PLY reader we did not
write) and with NumPy from antimatter15/splat's documented 32-byte layout, then rendered."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import plyfile
import pytest
from PIL import Image

from bridge.cli.main import main

H, W = 32, 64
SH_C0 = 0.28209479177387814  # 1 / (2√π), as in graphdeco-inria's utils/sh_utils.py
LAYOUT = (
    "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
    "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
)  # fmt: skip
SPLAT = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
BLOB = math.radians(25)  # the near blob's angular radius, around the panorama's middle (−Z)


def pixel_angles() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Longitude and latitude of every pixel centre (row 0 is the top, column W/2 is straight ahead)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    return (u / W - 0.5) * 2 * np.pi, (0.5 - v / H) * np.pi


def scene() -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """Smooth colours (wrapping at the seam); depth: a far ramp (east and north nearer) and a near blob ahead."""
    lon, lat = pixel_angles()
    r = 0.5 + 0.35 * np.sin(lon + 0.3) * np.cos(lat)
    g = 0.5 + 0.35 * np.sin(lat * 1.5)
    b = 0.5 + 0.3 * np.cos(2 * lon) * np.cos(lat)
    rgb = (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)
    ahead = np.arccos(np.clip(np.cos(lat) * np.cos(lon), -1, 1))  # angle from −Z
    depth = np.where(ahead < BLOB, 0.95, 0.15 + 0.2 * (lon + np.pi) / (2 * np.pi) + 0.08 * (lat / np.pi + 0.5))
    return rgb, (depth * 65535).round().astype(np.uint16)


def job_dir(tmp_path: Path, depth_image: Image.Image | None = None) -> Path:
    rgb, depth = scene()
    job = tmp_path / "20261122-000000-000-0001"
    job.mkdir()
    Image.fromarray(rgb, "RGB").save(job / "rgb.png")
    (depth_image or Image.fromarray(depth)).save(job / "depth.png")
    return job


def read_ply(path: Path) -> tuple[plyfile.PlyElement, dict[str, npt.NDArray[np.float64]]]:
    ply = plyfile.PlyData.read(str(path))
    assert not ply.text and ply.byte_order == "<"  # binary_little_endian
    vertex = ply["vertex"]
    return vertex, {name: np.asarray(vertex[name], np.float64) for name in LAYOUT}


def export(tmp_path: Path, *args: str, name: str = "world.ply") -> tuple[Path, dict[str, npt.NDArray[np.float64]]]:
    out = tmp_path / "out" / name
    assert main(["-q", "export-splat", str(job_dir(tmp_path)), "--out", str(out), *args]) == 0
    return out, (read_ply(out)[1] if out.suffix == ".ply" else {})


def rotations(v: dict[str, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    """N × 3 × 3 from rot_0..3 = (w, x, y, z); columns are the splat's axes in the world."""
    q = np.stack([v[f"rot_{k}"] for k in range(4)], 1)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], 1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], 1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1),
        ],
        1,
    )


def positions(v: dict[str, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    return np.stack([v["x"], v["y"], v["z"]], 1)


def colours(v: dict[str, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    return 0.5 + SH_C0 * np.stack([v["f_dc_0"], v["f_dc_1"], v["f_dc_2"]], 1)


def equirect_pixel(p: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Fractional (row, column) of each point's direction seen from the centre."""
    lon = np.arctan2(p[:, 0], -p[:, 2])
    lat = np.arcsin(np.clip(p[:, 1] / np.linalg.norm(p, axis=1), -1, 1))
    return (0.5 - lat / np.pi) * H, (lon / (2 * np.pi) + 0.5) * W


def test_the_ply_is_the_3dgs_layout_and_from_the_centre_is_the_panorama(tmp_path: Path) -> None:
    out, v = export(tmp_path)
    vertex, _ = read_ply(out)
    assert tuple(p.name for p in vertex.properties) == LAYOUT
    assert all(p.val_dtype in ("f4", "float32") for p in vertex.properties)
    rgb, depth = scene()
    p = positions(v)
    # Nearest wins: each splat's centre projected to the equirect, the nearest one kept per pixel.
    row, col = equirect_pixel(p)
    i, j = np.floor(row).astype(int), np.floor(col).astype(int) % W
    assert np.abs(row - i - 0.5).max() < 1e-3 and np.abs(col - np.floor(col) - 0.5).max() < 1e-3  # pixel centres
    distance = np.linalg.norm(p, axis=1)
    order = np.argsort(-distance)  # far first: the nearest is written last
    winner = np.full((H, W), -1)
    winner[i[order], j[order]] = order
    seen = winner >= 0
    assert seen.sum() == vertex.count  # one splat a pixel, never two
    assert seen.sum(axis=1).min() >= 3 and seen[H // 6 : H - H // 6].all()  # only rows past ±60° are thinned
    shown = colours(v)[winner[seen]]
    assert np.abs(shown - rgb[seen] / 255.0).max() < 1e-3
    expected = np.maximum(0.05, 1.0 - (depth[seen] / 65535.0 - 0.5))
    assert np.abs(distance[winner[seen]] - expected).max() < 1e-5
    # Each splat faces the centre: its thin third axis is the view ray; its first axis is horizontal.
    axes = rotations(v)
    assert np.allclose(np.einsum("nk,nk->n", axes[:, :, 2], -p / distance[:, None]), 1.0, atol=1e-5)
    assert np.abs(axes[:, 1, 0]).max() < 1e-5
    assert (v["scale_2"] < np.minimum(v["scale_0"], v["scale_1"])).all()
    assert np.allclose(1 / (1 + np.exp(-v["opacity"])), 0.995, atol=1e-4)
    assert not np.any([v["nx"], v["ny"], v["nz"]])


def test_splats_sit_where_the_shader_puts_the_sphere(tmp_path: Path) -> None:
    """The same positions as ldm3d_displace.glsl (run by Mesa) at the pixel centres: lines up with
    export-mesh and TouchDesigner's sphere."""
    pytest.importorskip("moderngl")
    from bridge.render.preview import SphereRenderer
    from bridge.render.sphere import SphereGrid

    _, v = export(tmp_path, "--strength", "0.8")
    p = positions(v)
    row, col = equirect_pixel(p)
    uv = np.stack([col / W, 1.0 - row / H], 1).astype(np.float32)
    rgb, depth = scene()
    grid = SphereGrid(W, H, uv, np.zeros((1, 3), np.uint32))  # positions() draws no triangle
    renderer = SphereRenderer(rgb, depth, strength=0.8, grid=grid)
    try:
        shader = renderer.positions()
    finally:
        renderer.release()
    assert np.abs(shader - p).max() < 1e-4


def render(v: dict[str, npt.NDArray[np.float64]], rays: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], ...]:
    """Colour and coverage of each unit ray from the centre: every splat cut by the ray as a
    flat Gaussian in its own plane, composited front to back."""
    p, axes = positions(v), rotations(v)
    sigma = np.exp(np.stack([v["scale_0"], v["scale_1"]], 1))
    alpha0 = 1 / (1 + np.exp(-v["opacity"]))
    c = colours(v)
    out_colour, out_cover = [], []
    for chunk in np.array_split(rays, max(1, len(rays) // 256)):
        n = axes[:, :, 2]
        t = (p * n).sum(1)[None, :] / (chunk @ n.T)  # where the ray meets each splat's plane
        hit = chunk[:, None, :] * t[..., None] - p[None]
        a = np.einsum("rnk,nk->rn", hit, axes[:, :, 0]) / sigma[:, 0]
        b = np.einsum("rnk,nk->rn", hit, axes[:, :, 1]) / sigma[:, 1]
        alpha = np.where(t > 0, alpha0 * np.exp(-0.5 * (a * a + b * b)), 0.0)
        order = np.argsort(np.where(alpha > 1e-4, t, np.inf), axis=1)
        alpha = np.take_along_axis(alpha, order, 1)
        through = np.cumprod(np.concatenate([np.ones((len(chunk), 1)), 1 - alpha[:, :-1]], 1), 1)
        weight = alpha * through
        out_colour.append(np.einsum("rn,rnk->rk", weight, c[order]))
        out_cover.append(weight.sum(1))
    return np.concatenate(out_colour), np.concatenate(out_cover)


def test_a_render_from_the_centre_has_no_holes_at_the_seam_or_the_poles(tmp_path: Path) -> None:
    _, v = export(tmp_path)
    # Rays through the pixel corners (midway between four splats: the worst place for a hole), the
    # seam's column of corners included, and the two poles.
    y, x = np.mgrid[0 : H + 1, 0:W].astype(np.float64)
    lon, lat = (x / W - 0.5) * 2 * np.pi, (0.5 - y / H) * np.pi
    rays = np.stack([np.cos(lat) * np.sin(lon), np.sin(lat), -np.cos(lat) * np.cos(lon)], -1).reshape(-1, 3)
    rays = np.concatenate([rays[W:-W], [[0, 1, 0], [0, -1, 0]]])
    colour, cover = render(v, rays)
    assert cover.min() > 0.9, f"a hole: cover {cover.min():.3f}"
    # Seen through its splats, the colour is the mean of the four pixels around each corner (poles included).
    rgb = scene()[0].astype(np.float64) / 255.0
    around = (rgb + np.roll(rgb, 1, 1) + np.roll(rgb, 1, 0) + np.roll(np.roll(rgb, 1, 0), 1, 1))[1:] / 4
    shown = (colour / cover[:, None])[: (H - 1) * W].reshape(H - 1, W, 3)
    assert np.abs(shown - around).max() < 0.04


def test_off_centre_near_splats_move_more_than_far_ones(tmp_path: Path) -> None:
    _, v = export(tmp_path)
    p = positions(v)
    eye = np.array([0.0, 0.0, -0.3])  # toward the near blob
    distance = np.linalg.norm(p, axis=1)
    from_eye = p - eye
    off_axis = np.arccos(np.clip(-p[:, 2] / distance, -1, 1))
    moved = np.arccos(np.clip((p * from_eye).sum(1) / (distance * np.linalg.norm(from_eye, axis=1)), -1, 1))
    near, far = distance < 0.6, distance > 1.1
    assert near.sum() > 20 and far.sum() > 1000
    # The blob's rim slides over the background just outside it: real parallax, not a rotation.
    rim = near & (off_axis > BLOB - math.radians(8))
    ring = far & (off_axis > BLOB) & (off_axis < BLOB + math.radians(8))
    assert rim.sum() > 5 and ring.sum() > 5
    assert moved[rim].min() > 1.5 * moved[ring].max()
    # Everywhere, the shift per sin(off-axis angle) goes as 1 / distance.
    side = off_axis > math.radians(5)
    per = moved[side] / np.sin(off_axis[side])
    assert np.median(per[near[side]]) > 1.8 * np.median(per[far[side]])


@pytest.mark.parametrize("step", ["1", "3"])
def test_no_duplicate_at_the_seam_and_every_scale_finite(tmp_path: Path, step: str) -> None:
    _, v = export(tmp_path, "--step", step)
    p = positions(v)
    assert len(np.unique(np.round(p, 5), axis=0)) == len(p)
    lon = np.arctan2(p[:, 0], -p[:, 2])
    assert np.abs(lon).max() < np.pi - 1e-4  # nothing on the seam itself
    scales = np.stack([v[f"scale_{k}"] for k in range(3)], 1)
    assert np.isfinite(scales).all() and (np.exp(scales) > 0).all()
    assert np.isfinite(np.stack([v[name] for name in LAYOUT], 1)).all()
    if step == "1":  # the pole rows, thinned: widths no smaller than half their heights (never slivers)
        assert (v["scale_0"] - v["scale_1"]).min() > math.log(0.5)


def test_the_splat_file_is_the_32_byte_layout_and_agrees_with_the_ply(tmp_path: Path) -> None:
    _, v = export(tmp_path, "--step", "2")
    out = tmp_path / "out" / "world.splat"
    job = tmp_path / "20261122-000000-000-0001"
    assert main(["-q", "export-splat", str(job), "--out", str(out), "--step", "2"]) == 0
    data = out.read_bytes()
    assert len(data) % 32 == 0
    records = np.frombuffer(data, SPLAT)
    assert len(records) == len(v["x"])
    assert np.array_equal(records["position"], positions(v).astype(np.float32))
    assert np.allclose(records["scale"], np.exp(np.stack([v[f"scale_{k}"] for k in range(3)], 1)), rtol=1e-5)
    assert np.abs(records["rgba"][:, :3] - colours(v) * 255).max() < 0.51
    assert (records["rgba"][:, 3] >= 250).all()
    q = np.stack([v[f"rot_{k}"] for k in range(4)], 1)
    assert np.abs((records["rotation"].astype(np.float64) - 128) / 128 - q).max() <= 1 / 128 + 1e-6
    # --format overrides the suffix.
    other = tmp_path / "out" / "world.bin"
    assert main(["-q", "export-splat", str(job), "--out", str(other), "--step", "2", "--format", "splat"]) == 0
    assert other.read_bytes() == data


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = job_dir(tmp_path)
    (tmp_path / "eight-bit").mkdir()
    bad_depth = job_dir(tmp_path / "eight-bit", Image.fromarray(np.zeros((H, W), np.uint8), "L"))
    out_dir = tmp_path / "out"
    cases = [
        ([str(tmp_path / "missing"), "--out", str(out_dir / "w.ply")], "does not exist"),
        ([str(job), "--out", str(out_dir / "w.obj")], "w.obj: unknown splat format .obj"),
        ([str(job), "--out", str(out_dir / "w.ply"), "--format", "xyz"], "--format xyz"),
        ([str(bad_depth), "--out", str(out_dir / "w.ply")], "is not a 16-bit depth map"),
        ([str(job), "--out", str(out_dir / "w.ply"), "--step", "0"], "--step 0"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["-q", "export-splat", *args]) == 1, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ldm3d-bridge: error: ") and message in err, err
        assert not out_dir.exists() or not any(out_dir.iterdir()), list(out_dir.iterdir())
