"""An object job's folder: mesh.obj and mesh.glb written by our code, read back by trimesh."""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import trimesh

from bridge.errors import WriteFailed
from bridge.output.job_ids import new_job_id
from bridge.output.meshes import ObjectWriter, glb_bytes
from bridge.output.writer import TextureWriter
from bridge.placement import Placement
from ldm3d_engine.object_types import MeshResult, ObjectTimings, ResolvedObjectRequest
from tests.test_writer import fake_result

pytestmark = pytest.mark.timeout(60)

#: A tetrahedron: four corners, four outward-facing triangles, one colour per corner.
CORNERS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32) - 0.25
FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 128, 250]], np.uint8)


def fake_mesh(seed: int = 5) -> MeshResult:
    return MeshResult(
        vertices=CORNERS,
        faces=FACES,
        colors=COLOURS,
        request=ResolvedObjectRequest("a red lantern", seed, 3, 6.5, 16),
        model_id="builtin:tiny-ln3diff",
        device="cpu",
        dtype="float32",
        timings=ObjectTimings(0.1, 0.2, 0.3, 0.4),
        licence="S-Lab License 1.0 (non-commercial)",
    )


def _writers(tmp_path: Path, keep: int = 200, announce: str | None = None) -> tuple[TextureWriter, ObjectWriter]:
    tw = TextureWriter(tmp_path / "out", keep=keep, announce_root=announce)
    tw.prepare()
    return tw, ObjectWriter(tw)


def test_obj_and_glb_read_back_by_trimesh_with_vertex_colours(tmp_path: Path) -> None:
    _, ow = _writers(tmp_path)
    files = ow.write(new_job_id(), fake_mesh())
    assert files.folder == ow.root / files.job_id and sorted(p.name for p in files.folder.iterdir()) == [
        "mesh.glb",
        "mesh.obj",
        "meta.json",
    ]
    obj = trimesh.load(files.obj, process=False, force="mesh")
    assert obj.vertices.shape == (4, 3) and obj.faces.shape == (4, 3)
    np.testing.assert_allclose(obj.vertices, CORNERS, atol=1e-6)
    np.testing.assert_array_equal(obj.faces, FACES)
    np.testing.assert_array_equal(obj.visual.vertex_colors[:, :3], COLOURS)
    glb = trimesh.load(files.glb, process=False, force="mesh")
    np.testing.assert_allclose(glb.vertices, CORNERS, atol=1e-6)
    np.testing.assert_array_equal(glb.faces, FACES)
    np.testing.assert_array_equal(glb.visual.vertex_colors[:, :3], COLOURS)
    assert glb.is_watertight and glb.volume > 0  # outward-facing: the winding survived


def test_glb_bytes_are_a_glb_2_with_aligned_json_and_bin_chunks() -> None:
    data = glb_bytes(CORNERS, FACES, COLOURS)
    magic, version, total = struct.unpack_from("<III", data, 0)
    assert (magic, version, total) == (0x46546C67, 2, len(data))
    json_len, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == 0x4E4F534A and json_len % 4 == 0
    gltf = json.loads(data[20 : 20 + json_len])
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert bin_type == 0x004E4942 and bin_len % 4 == 0 and 28 + json_len + bin_len == len(data)
    assert gltf["asset"]["version"] == "2.0" and gltf["buffers"][0]["byteLength"] == bin_len
    position = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert position["min"] == pytest.approx(CORNERS.min(0)) and position["max"] == pytest.approx(CORNERS.max(0))
    assert all(v["byteOffset"] % 4 == 0 for v in gltf["bufferViews"])


def test_meta_says_what_made_the_object_and_objects_stay_out_of_the_world_jobs(tmp_path: Path) -> None:
    tw, ow = _writers(tmp_path, announce="Z:\\ldm3d-out")
    world = tw.write(new_job_id(), fake_result())
    files = ow.write(new_job_id(), fake_mesh(seed=42), {"client": "tablet"})
    meta = json.loads(files.meta.read_text())
    assert meta["kind"] == "object" and meta["prompt"] == "a red lantern" and meta["seed"] == 42
    assert (meta["steps"], meta["guidance"], meta["resolution"]) == (3, 6.5, 16)
    assert meta["model"] == "builtin:tiny-ln3diff" and meta["licence"].startswith("S-Lab")
    assert (meta["vertices"], meta["faces"], meta["client"]) == (4, 4, "tablet")
    assert set(meta["timings"]) >= {"denoising_s", "meshing_s", "writing_s"} and "ldm3d-bridge" in meta["versions"]
    assert files.ready_args() == (
        files.job_id,
        f"Z:/ldm3d-out/objects/{files.job_id}/mesh.obj",
        f"Z:/ldm3d-out/objects/{files.job_id}/mesh.glb",
        *Placement().args(),  # the defaults: nothing said where it stands
    )
    assert meta["placement"] == Placement().as_dict()
    assert tw.job_ids() == [world.job_id] and tw.find(files.job_id) is None
    assert json.loads((tw.root / "latest.json").read_text())["job_id"] == world.job_id


def test_old_objects_are_pruned_to_keep_and_a_failed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, ow = _writers(tmp_path, keep=2)
    ids = [ow.write(new_job_id(), fake_mesh()).job_id for _ in range(4)]
    assert ow.job_ids() == ids[2:]
    (ow.root / ".staging-20260101-000000-000-0000").mkdir()
    ow.prepare()
    assert sorted(p.name for p in ow.root.iterdir()) == ids[2:]

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("bridge.output.meshes.os.replace", full)
    with pytest.raises(WriteFailed, match=r"could not write object .* into .*objects: No space left"):
        ow.write(new_job_id(), fake_mesh())
    assert sorted(p.name for p in ow.root.iterdir()) == ids[2:]  # no staging folder left
