"""The depth-displaced sphere rendered for real with Mesa's OpenGL through EGL, and exported as meshes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from bridge.cli.main import main
from bridge.render.dome import render_cube, render_fisheye, sample_cube
from bridge.render.preview import Camera, SphereRenderer, glsl_source
from bridge.render.sphere import sphere_grid

moderngl = pytest.importorskip("moderngl")
ROOT = Path(__file__).resolve().parents[1]
H, W = 256, 512


def equirect_test_image() -> npt.NDArray[np.uint8]:
    """Smooth colour ramps plus a grid of lines: easy to compare, hard to fake."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    r = 0.5 + 0.5 * np.sin(u / W * 2 * np.pi * 3)
    g = v / (H - 1)
    b = ((u // 32 + v // 32) % 2) * 0.6 + 0.2
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def reference_view(rgb: npt.NDArray[np.uint8], camera: Camera, size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """A plain equirectangular → perspective projection from the centre, in NumPy (bilinear)."""
    width, height = size
    f = 1 / math.tan(math.radians(camera.fov) / 2)
    xs = ((np.arange(width) + 0.5) / width * 2 - 1) * width / height
    ys = 1 - (np.arange(height) + 0.5) / height * 2
    x, y = np.meshgrid(xs, ys)
    forward, right = camera.direction(), camera.right()
    up = np.cross(right, forward)
    d = forward * f + right * x[..., None] + up * y[..., None]
    return equirect_lookup(rgb, d / np.linalg.norm(d, axis=-1, keepdims=True))


def equirect_lookup(rgb: npt.NDArray[np.uint8], d: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The panorama's colour (bilinear) in each unit direction of ``d`` (…×3); the middle is ahead (−Z)."""
    lon = np.arctan2(d[..., 0], -d[..., 2])
    lat = np.arcsin(np.clip(d[..., 1], -1, 1))
    px = (lon / (2 * np.pi) + 0.5) * W - 0.5
    py = (0.5 - lat / np.pi) * H - 0.5
    x0, y0 = np.floor(px).astype(int), np.clip(np.floor(py).astype(int), 0, H - 2)
    fx, fy = (px - x0)[..., None], np.clip(py - y0, 0, 1)[..., None]
    img = rgb.astype(np.float64)
    a, b = img[y0, x0 % W], img[y0, (x0 + 1) % W]
    c, e = img[y0 + 1, x0 % W], img[y0 + 1, (x0 + 1) % W]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + e * fx) * fy


def test_the_shaders_compile_under_mesa() -> None:
    renderer = SphereRenderer(equirect_test_image(), np.full((H, W), 32768, np.uint16))
    info = renderer.ctx.info
    assert renderer.ctx.version_code >= 330, info["GL_VERSION"]  # the OpenGL 3.3 core the shaders are written for
    assert isinstance(info["GL_RENDERER"], str) and info["GL_RENDERER"].strip()  # llvmpipe here, a GPU elsewhere
    renderer.release()


def test_touchdesigner_shaders_compile_with_stubs_of_its_built_ins() -> None:
    """TouchDesigner adds #version, its attributes and TD* functions; stand-ins let Mesa compile the rest."""
    ctx = moderngl.create_standalone_context(require=330, backend="egl")
    include = glsl_source("ldm3d_displace.glsl")
    vertex = (ROOT / "td_project/glsl/ldm3d_vertex.glsl").read_text().replace("#include <ldm3d_displace>", include)
    pixel = (ROOT / "td_project/glsl/ldm3d_pixel.glsl").read_text()
    vertex_prelude = (
        "#version 330 core\nin vec3 P;\nin vec3 uv[1];\nuniform mat4 uTDMats;\n"
        "vec4 TDDeform(vec3 p) { return vec4(p, 1.0); }\nvec4 TDWorldToProj(vec4 p) { return uTDMats * p; }\n"
    )
    pixel_prelude = (
        "#version 330 core\n#define TD_NUM_COLOR_BUFFERS 1\nvoid TDCheckDiscard() {}\n"
        "vec4 TDOutputSwizzle(vec4 c) { return c; }\n"
    )
    program = ctx.program(vertex_shader=vertex_prelude + vertex, fragment_shader=pixel_prelude + pixel)
    assert {"sDepth", "uBaseRadius", "uStrength", "sRgb"} <= set(program)
    ctx.release()


def test_constant_depth_from_the_centre_is_a_plain_panorama_view() -> None:
    rgb = equirect_test_image()
    renderer = SphereRenderer(rgb, np.full((H, W), 32768, np.uint16), grid=sphere_grid(512, 256))
    try:
        for camera in (Camera(yaw=0, fov=90), Camera(yaw=135, pitch=20, fov=70), Camera(yaw=-60, pitch=-45)):
            got = renderer.render(camera, (320, 240)).astype(np.float64)
            expected = reference_view(rgb, camera, (320, 240))
            error = np.abs(got - expected)
            assert error.mean() < 3.0, (camera, error.mean())
            assert np.percentile(error, 99) < 40, camera
    finally:
        renderer.release()


def _blob_scene(near: bool) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """Grey world with a red blob straight ahead-right (yaw 30°); the blob is near (depth 1) or on the sphere."""
    v, u = np.mgrid[0:H, 0:W]
    lon = (u + 0.5) / W * 360 - 180
    lat = 90 - (v + 0.5) / H * 180
    blob = (lon - 30) ** 2 + lat**2 < 12**2
    rgb = np.full((H, W, 3), 90, np.uint8)
    rgb[blob] = (255, 0, 0)
    depth = np.full((H, W), 32768, np.uint16)
    if near:
        depth[blob] = 65535
    return rgb, depth


def _red_centroid(image: npt.NDArray[np.uint8]) -> float:
    red = (image[..., 0] > 200) & (image[..., 1] < 60)
    assert red.sum() > 50, "the blob is not in view"
    return float(np.nonzero(red)[1].mean())


def _shift(near: bool) -> tuple[float, float]:
    """(change of the blob's position from the centre caused by depth, its shift after a step right)."""
    rgb, depth = _blob_scene(near)
    centre = Camera(yaw=30, fov=60)
    step = 0.2
    moved = Camera(eye=(step * math.cos(math.radians(30)), 0.0, step * math.sin(math.radians(30))), yaw=30, fov=60)
    renderer = SphereRenderer(rgb, depth, grid=sphere_grid(512, 256))
    flat = SphereRenderer(rgb, np.full((H, W), 32768, np.uint16))
    try:
        seen = _red_centroid(renderer.render(centre, (400, 300)))
        from_centre = abs(seen - _red_centroid(flat.render(centre, (400, 300))))
        return from_centre, seen - _red_centroid(renderer.render(moved, (400, 300)))
    finally:
        renderer.release()
        flat.release()


def test_parallax_moves_a_near_blob_only_when_the_eye_moves() -> None:
    near_centre, near_shift = _shift(near=True)
    far_centre, far_shift = _shift(near=False)
    assert near_centre < 0.5 and far_centre < 0.5  # from the centre only directions matter: depth changes nothing
    # On the sphere (radius 1) a point straight ahead moves f·d/r pixels after a step d to the right.
    expected = 150 / math.tan(math.radians(30)) * 0.2 / 1.0
    assert abs(far_shift - expected) < 0.05 * expected, (far_shift, expected)
    # Pulled to radius 0.5 by depth 1, the blob moves much further: parallax.
    assert near_shift > 1.5 * far_shift, (near_shift, far_shift)


def test_the_seam_column_has_no_gap() -> None:
    rng = np.random.default_rng(3)
    depth = (rng.random((H, W)) * 65535).astype(np.uint16)  # the two edges differ wildly
    renderer = SphereRenderer(equirect_test_image(), depth, strength=1.5)
    try:
        for pitch in (-60, 0, 60):
            image = renderer.render(Camera(yaw=180, pitch=pitch, fov=100), (400, 400))
            magenta = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 255)
            assert magenta.sum() == 0, f"{magenta.sum()} background pixels show through at pitch {pitch}"
        for pitch in (-90, 90):  # the poles close too
            image = renderer.render(Camera(yaw=0, pitch=pitch, fov=100), (200, 200))
            assert not ((image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 255)).any()
    finally:
        renderer.release()


def _job_dir(tmp_path: Path, depth: npt.NDArray[np.uint16] | None = None) -> Path:
    job = tmp_path / "20261122-000000-000-0001"
    job.mkdir()
    Image.fromarray(equirect_test_image(), "RGB").save(job / "rgb.png")
    u = np.mgrid[0:H, 0:W][1]
    Image.fromarray(depth if depth is not None else (u * 65535 // (W - 1)).astype(np.uint16)).save(job / "depth.png")
    return job


@pytest.mark.parametrize("suffix", [".glb", ".obj", ".ply"])
def test_exported_mesh_has_the_grid_and_radii_following_depth(tmp_path: Path, suffix: str) -> None:
    trimesh = pytest.importorskip("trimesh")
    job = _job_dir(tmp_path)
    out = tmp_path / f"world{suffix}"
    assert main(["-q", "export-mesh", str(job), "--out", str(out), "--columns", "64", "--rows", "32"]) == 0
    mesh = trimesh.load(out, process=False, force="mesh")
    assert len(mesh.vertices) == 65 * 33 and len(mesh.faces) == 64 * 32 * 2
    grid = sphere_grid(64, 32)
    radii = np.linalg.norm(mesh.vertices, axis=1)
    # Away from the poles and the seam (where the wrapping sampler averages the ramp's two ends),
    # the depth map is a ramp in u: depth = u.
    inner = (grid.uv[:, 1] > 0) & (grid.uv[:, 1] < 1) & (grid.uv[:, 0] > 0) & (grid.uv[:, 0] < 1)
    depth = grid.uv[inner, 0]
    assert np.abs(radii[inner] - (1.0 - (depth - 0.5))).max() < 0.01
    if suffix == ".obj":
        assert (tmp_path / "world.mtl").is_file() and list(tmp_path.glob("*.png"))


def test_preview_cli_mono_and_stereo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _job_dir(tmp_path, np.full((H, W), 32768, np.uint16))
    out = tmp_path / "view.png"
    assert main(["-q", "preview", str(job), "--out", str(out), "--size", "160x120", "--yaw", "90"]) == 0
    assert Image.open(out).size == (160, 120)
    assert main(["-q", "preview", str(job), "--out", str(out), "--size", "160x120", "--stereo"]) == 0
    pair = np.asarray(Image.open(out))
    assert pair.shape == (120, 320, 3) and not np.array_equal(pair[:, :160], pair[:, 160:])
    capsys.readouterr()
    assert main(["-q", "preview", str(tmp_path), "--out", str(out)]) == 1
    assert "rgb.tif (or .png) does not exist" in capsys.readouterr().err
    assert main(["-q", "preview", str(job), "--out", str(out), "--size", "big"]) == 2


def _angular_fisheye(camera: Camera, size: tuple[int, int], fov: float) -> tuple[npt.NDArray[np.float64], ...]:
    """Each pixel's direction in an equidistant fisheye (Paul Bourke's dome master), written out here."""
    width, height = size
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x, y = (u + 0.5 - width / 2) / (height / 2), (height / 2 - v - 0.5) / (height / 2)
    theta, phi = np.hypot(x, y) * math.radians(fov) / 2, np.arctan2(y, x)
    forward, right = camera.direction(), camera.right()
    up = np.cross(right, forward)
    d = np.cos(theta)[..., None] * forward + np.sin(theta)[..., None] * (
        np.cos(phi)[..., None] * right + np.sin(phi)[..., None] * up
    )
    return d, np.hypot(x, y) <= 1


def test_a_dome_master_from_the_centre_is_the_panorama_in_an_angular_fisheye() -> None:
    """Constant depth, eye at the centre: every pixel of the fisheye shows the panorama's colour in that
    pixel's direction (angle from the centre ∝ distance), and outside the circle is black."""
    rgb = equirect_test_image()
    renderer = SphereRenderer(rgb, np.full((H, W), 32768, np.uint16), grid=sphere_grid(512, 256))
    try:
        for camera, fov in ((Camera(pitch=90), 180.0), (Camera(yaw=40, pitch=10), 200.0)):
            got = render_fisheye(renderer, camera, (240, 200), fov)
            directions, inside = _angular_fisheye(camera, (240, 200), fov)
            expected = equirect_lookup(rgb, directions)
            error = np.abs(got.astype(np.float64) - expected)[inside]
            assert error.mean() < 4.0, (camera, error.mean())
            assert np.percentile(error, 99) < 60, camera
            assert not got[~inside].any() and (~inside).sum() > 0.2 * inside.size  # black corners and sides
    finally:
        renderer.release()


def test_the_dome_master_has_the_zenith_at_the_centre_and_the_panorama_middle_at_the_bottom() -> None:
    rgb, depth = _blob_scene(near=False)  # red blob at yaw 30°, on the horizon
    rgb[:8] = (0, 0, 255)  # the zenith rows are blue
    renderer = SphereRenderer(rgb, depth, grid=sphere_grid(512, 256))
    try:
        dome = render_fisheye(renderer, Camera(pitch=90), (201, 201), 180.0)
        faces = render_cube(renderer, (0.0, 0.0, 0.0), 64)
    finally:
        renderer.release()
    assert tuple(dome[100, 100]) == (0, 0, 255)
    rows, cols = np.nonzero((dome[..., 0] > 200) & (dome[..., 1] < 60))
    # On the horizon: at the rim. Ahead is down, right is right: yaw 30° sits 30° right of straight down.
    angle = math.degrees(math.atan2(cols.mean() - 100, rows.mean() - 100))
    assert abs(angle - 30) < 5 and abs(math.hypot(cols.mean() - 100, rows.mean() - 100) - 100) < 8
    assert sorted(faces) == ["+x", "+y", "+z", "-x", "-y", "-z"]
    ahead = sample_cube(faces, np.array([[0.0, 0.0, -1.0]]))  # grey ahead, blue up
    assert tuple(sample_cube(faces, np.array([[0.0, 1.0, 0.0]]))[0]) == (0, 0, 255) and ahead[0, 2] < 200


def test_preview_cli_fisheye(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = _job_dir(tmp_path, np.full((H, W), 32768, np.uint16))
    out = tmp_path / "dome.png"
    assert main(["-q", "preview", str(job), "--out", str(out), "--size", "128x128", "--fisheye", "180"]) == 0
    dome = np.asarray(Image.open(out))
    assert dome.shape == (128, 128, 3) and not dome[0, 0].any() and dome[64, 64].any()
    # The default pitch with --fisheye is 90 (a dome master): the centre looks straight up.
    up = Camera(pitch=90)
    centre = equirect_lookup(equirect_test_image(), up.direction()[None, :])[0]
    assert np.abs(dome[60:68, 60:68].mean((0, 1)) - centre).max() < 25
    capsys.readouterr()
    assert main(["-q", "preview", str(job), "--out", str(out), "--fisheye", "400"]) == 2
    assert "--fisheye 400: use 1..360 degrees" in capsys.readouterr().err
    assert main(["-q", "preview", str(job), "--out", str(out), "--fisheye", "180", "--stereo"]) == 2


def test_demo_docs_images_are_current(tmp_path: Path) -> None:
    """The pictures in docs/ are what bench/make_doc_images.py renders from this code."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_doc_images", ROOT / "bench" / "make_doc_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    names = ("scene-rgb.png", "scene-depth.png", "preview-centre.png", "preview-parallax.png", "preview-dome.png")
    for name in names:
        committed = ROOT / "docs" / "images" / name
        assert committed.is_file(), f"run bench/make_doc_images.py to create {name}"
        fresh = np.asarray(Image.open(tmp_path / name)).astype(np.float64)
        old = np.asarray(Image.open(committed)).astype(np.float64)
        assert fresh.shape == old.shape and np.abs(fresh - old).mean() < 1.0, (
            f"{name} is stale: run bench/make_doc_images.py"
        )
    meta = json.loads((ROOT / "docs" / "images" / "scene.json").read_text())
    assert meta["made_by"] == "bench/make_doc_images.py"
