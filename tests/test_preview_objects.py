"""Text → 3D objects in the world: drawn by the headless preview (Mesa's OpenGL through EGL) at their
placement, exported with the world as one .glb, and our own mesh.glb read back (read_glb)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from bridge.cli.main import main
from bridge.cli.world_objects import find_object, load_object
from bridge.output.meshes import BadGlb, ObjectFiles, ObjectWriter, glb_bytes, read_glb
from bridge.output.writer import TextureWriter
from bridge.placement import Placement, transform_points
from bridge.render.objects import ObjectError, draw_objects
from bridge.render.preview import Camera, SphereRenderer
from tests.test_object_files import fake_mesh
from tests.test_td_shaders import _validator

moderngl = pytest.importorskip("moderngl")
pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[1]
GREY = 90
SIZE = (64, 64)  # fov 90 and a square view: one unit of tan(angle) is half the width

#: A unit cube centred on the origin (largest extent 1, the object frame), triangles outward.
CUBE = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
QUADS = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3))
CUBE_FACES = np.array([t for a, b, c, d in QUADS for t in ((a, b, c), (a, c, d))], np.int32)


def _output(tmp_path: Path) -> tuple[Path, ObjectWriter]:
    """An output folder with one world job (grey, depth 0.5: the sphere of radius 1) and an object writer."""
    writer = TextureWriter(tmp_path / "out")
    writer.prepare()
    job = writer.root / "20261207-000000-000-0001"
    job.mkdir()
    Image.fromarray(np.full((64, 128, 3), GREY, np.uint8)).save(job / "rgb.png")
    Image.fromarray(np.full((64, 128), 32768, np.uint16)).save(job / "depth.png")
    return job, ObjectWriter(writer)


def _cube(objects: ObjectWriter, placement: Placement, job_id: str = "20261207-000001-000-0001") -> ObjectFiles:
    red = np.tile(np.array([[255, 0, 0]], np.uint8), (len(CUBE), 1))
    return objects.write(
        job_id, dataclasses.replace(fake_mesh(), vertices=CUBE, faces=CUBE_FACES, colors=red), None, placement
    )


def _render(folders: list[Path], camera: Camera) -> npt.NDArray[np.uint8]:
    renderer = SphereRenderer(np.full((64, 128, 3), GREY, np.uint8), np.full((64, 128), 32768, np.uint16))
    try:
        draw_objects(renderer, [load_object(folder) for folder in folders])
        return renderer.render(camera, SIZE)
    finally:
        renderer.release()


def _red(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    red: npt.NDArray[np.bool_] = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)
    return red


def test_read_glb_is_the_inverse_of_glb_bytes(tmp_path: Path) -> None:
    mesh = fake_mesh()
    path = tmp_path / "mesh.glb"
    path.write_bytes(glb_bytes(mesh.vertices, mesh.faces, mesh.colors))
    vertices, faces, colors = read_glb(path)
    np.testing.assert_array_equal(vertices, mesh.vertices)
    np.testing.assert_array_equal(faces, mesh.faces)
    np.testing.assert_array_equal(colors, mesh.colors)
    assert vertices.dtype == np.float32 and faces.dtype == np.uint32 and colors.dtype == np.uint8
    assert glb_bytes(vertices, faces, colors) == path.read_bytes()
    empty = tmp_path / "empty.glb"
    empty.write_bytes(glb_bytes(np.zeros((0, 3)), np.zeros((0, 3), np.int32), np.zeros((0, 3))))
    assert [a.shape for a in read_glb(empty)] == [(0, 3), (0, 3), (0, 3)]


def test_read_glb_names_the_file_when_it_is_not_our_layout(tmp_path: Path) -> None:
    good = glb_bytes(CUBE, CUBE_FACES, np.zeros((8, 3), np.uint8))
    cases = {
        "short": (b"glTF", "too short"),
        "magic": (b"GLTF" + good[4:], "no glTF magic"),
        "version": (good[:4] + (1).to_bytes(4, "little") + good[8:], "version 1"),
        "cut": (good[:-8], "its header says"),
        "json": (good.replace(b'"COLOR_0"', b'"COLOR_9"'), "does not describe one mesh"),
    }
    for name, (data, why) in cases.items():
        path = tmp_path / f"{name}.glb"
        path.write_bytes(data)
        with pytest.raises(BadGlb, match=why) as caught:
            read_glb(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value), name


def test_the_object_shaders_pass_the_reference_compiler(tmp_path: Path) -> None:
    glsl = ROOT / "bridge/render/glsl"
    done = subprocess.run(
        [_validator(), "-l", str(glsl / "object.vert"), str(glsl / "object.frag")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_red_cube_ahead_is_in_the_forward_view_unlit_and_not_behind(tmp_path: Path) -> None:
    _, objects = _output(tmp_path)
    cube = _cube(objects, Placement(yaw=0, distance=0.5, size=0.25))
    ahead = _render([cube.folder], Camera(yaw=0, fov=90))
    assert _red(ahead)[28:36, 28:36].all()  # exactly the vertex colour: unlit, as the sphere's texture is
    assert (ahead[0, 0] == GREY).all()  # the world around it
    behind = _render([cube.folder], Camera(yaw=180, fov=90))
    assert not _red(behind).any() and (behind == GREY).all()


def test_a_cube_at_yaw_90_is_in_the_view_looking_right(tmp_path: Path) -> None:
    _, objects = _output(tmp_path)
    cube = _cube(objects, Placement(yaw=90, distance=0.5, size=0.25))
    assert _red(_render([cube.folder], Camera(yaw=90)))[28:36, 28:36].all()
    assert not _red(_render([cube.folder], Camera(yaw=0))).any()
    assert not _red(_render([cube.folder], Camera(yaw=-90))).any()


@pytest.mark.parametrize("size", [0.1, 0.25, 0.4])
def test_the_cube_apparent_width_follows_its_size(tmp_path: Path, size: float) -> None:
    """Facing the viewer, its front face is ``size`` wide at ``distance - size / 2``."""
    _, objects = _output(tmp_path)
    distance = 0.6
    cube = _cube(objects, Placement(yaw=0, distance=distance, size=size))
    red = _red(_render([cube.folder], Camera(yaw=0, fov=90)))
    width = int(red.any(axis=0).sum())
    expected = SIZE[0] * (size / 2) / (distance - size / 2)
    assert abs(width - expected) <= 1.5, (width, expected)


def test_the_world_in_front_hides_an_object_behind_it(tmp_path: Path) -> None:
    """Depth tested in the same pass: at depth 1 the sphere's radius is 0.5; a cube at 0.8 is behind it."""
    _, objects = _output(tmp_path)
    cube = _cube(objects, Placement(yaw=0, distance=0.8, size=0.25))
    renderer = SphereRenderer(np.full((64, 128, 3), GREY, np.uint8), np.full((64, 128), 65535, np.uint16))
    try:
        draw_objects(renderer, [load_object(cube.folder)])
        assert not _red(renderer.render(Camera(yaw=0), SIZE)).any()
    finally:
        renderer.release()
    # on the plain sphere (radius 1) the same cube stands inside the world and is seen
    assert _red(_render([cube.folder], Camera(yaw=0))).any()


def test_preview_cli_draws_objects_by_id_and_by_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job, objects = _output(tmp_path)
    left = _cube(objects, Placement(yaw=-30, distance=0.5, size=0.2), "20261207-000001-000-0001")
    right = _cube(objects, Placement(yaw=30, distance=0.5, size=0.2), "20261207-000002-000-0001")
    out = tmp_path / "view.png"
    argv = ["-q", "preview", str(job), "--out", str(out), "--size", "96x64"]
    assert main([*argv, "--object", left.job_id, "--object", str(right.folder)]) == 0
    red = _red(np.asarray(Image.open(out)))
    columns = np.nonzero(red.any(axis=0))[0]
    assert columns.min() < 40 and columns.max() > 56 and not red[:, 46:50].any()  # one on each side of the middle
    assert main([*argv, "--stereo", "--object", left.job_id]) == 0  # each eye sees it
    pair = _red(np.asarray(Image.open(out)))
    assert pair[:, :96].any() and pair[:, 96:].any()
    # a preview slot (<output>/previews/0) finds the output's objects/ too
    slot = job.parent / "previews" / "0"
    slot.mkdir(parents=True)
    for name in ("rgb.png", "depth.png"):
        (slot / name).write_bytes((job / name).read_bytes())
    assert find_object(left.job_id, slot) == left.folder
    capsys.readouterr()


def test_export_mesh_writes_the_world_and_a_node_per_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trimesh = pytest.importorskip("trimesh")
    job, objects = _output(tmp_path)
    placements = [Placement(yaw=40, pitch=10, distance=0.7, size=0.3, turn=25), Placement(yaw=-120, size=0.1)]
    cubes = [_cube(objects, p, f"20261207-00000{i}-000-0001") for i, p in enumerate(placements)]
    out = tmp_path / "scene.glb"
    argv = ["-q", "export-mesh", str(job), "--out", str(out), "--columns", "32", "--rows", "16"]
    assert main([*argv, "--object", cubes[0].job_id, "--object", str(cubes[1].folder)]) == 0
    assert "(577 vertices, 1048 triangles)" in capsys.readouterr().out  # 33·17 + 2·8, 32·16·2 + 2·12
    scene = trimesh.load(out)
    assert sorted(scene.graph.nodes_geometry) == sorted(["world-sphere", *(f"object-{c.job_id}" for c in cubes)])
    transform, geometry = scene.graph["world-sphere"]
    world = scene.geometry[geometry]
    np.testing.assert_allclose(transform, np.identity(4))
    radius = np.linalg.norm(world.vertices, axis=1)
    np.testing.assert_allclose(radius, 1.0, atol=1e-3)  # depth 0.5 everywhere: the base radius itself
    for cube, placement in zip(cubes, placements, strict=True):
        transform, geometry = scene.graph[f"object-{cube.job_id}"]
        mesh = scene.geometry[geometry]
        placed = transform_points(mesh.vertices, transform)
        # the placement is scaled by the exported sphere's base radius, 1 (the radius measured above)
        np.testing.assert_allclose(placed, transform_points(CUBE, placement.matrix(float(radius.mean()))), atol=1e-3)
        np.testing.assert_allclose(placed, transform_points(CUBE, placement.matrix(1.0)), atol=1e-5)
        np.testing.assert_array_equal(mesh.faces, CUBE_FACES)
        assert (mesh.visual.vertex_colors[:, :3] == (255, 0, 0)).all()


def test_bad_objects_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job, objects = _output(tmp_path)
    cube = _cube(objects, Placement())
    preview = ["-q", "preview", str(job), "--out", str(tmp_path / "v.png"), "--size", "32x32"]
    export = ["-q", "export-mesh", str(job), "--columns", "8", "--rows", "4"]

    def fails(argv: list[str], *words: str) -> None:
        capsys.readouterr()
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ldm3d-bridge: error: "), err
        assert all(word in err for word in words), err

    fails([*preview, "--object", "20991231-000000-000-0001"], "object 20991231-000000-000-0001", "objects")
    fails([*preview, "--object", str(tmp_path / "nowhere")], "nowhere: no such folder")
    fails([*export, "--out", str(tmp_path / "w.obj"), "--object", cube.job_id], "w.obj", "objects need .glb")
    fails([*export, "--out", str(tmp_path / "w.ply"), "--object", cube.job_id], "objects need .glb")
    assert not (tmp_path / "w.obj").exists() and not (tmp_path / "w.ply").exists()
    cube.glb.write_bytes(cube.glb.read_bytes()[:100])
    fails([*preview, "--object", cube.job_id], str(cube.glb), "not a mesh.glb")
    fails([*export, "--out", str(tmp_path / "w.glb"), "--object", cube.job_id], str(cube.glb))
    cube.glb.unlink()
    fails([*preview, "--object", str(cube.folder)], "mesh.glb does not exist")
    meta = json.loads(cube.meta.read_text())
    assert meta["placement"]["size"] == Placement().size  # what it was drawn with above
    with pytest.raises(ObjectError, match="no such folder"):
        find_object("a/b", job)
