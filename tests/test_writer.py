"""The shared-folder contract on a real filesystem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.errors import FolderInUse, OutputParentMissing, WriteFailed
from bridge.output.job_ids import new_job_id
from bridge.output.lock import LOCK_NAME
from bridge.output.writer import TextureWriter
from ldm3d_engine.types import ResolvedRequest, RGBDResult, Timings


def fake_result(width: int = 32, height: int = 16, seed: int = 3) -> RGBDResult:
    """A result as the engine returns it (arrays are what matter to the writer)."""
    rng = np.random.default_rng(seed)
    depth_float = rng.random((height, width), dtype=np.float32)
    req = ResolvedRequest("p", "n", seed, 2, 7.0, width, height, "ddim", True)
    return RGBDResult(
        rgb=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        depth=np.rint(depth_float * 65535).astype(np.uint16),
        depth_float=depth_float,
        request=req,
        prompt_used="360 view of p",
        prompt_truncated=False,
        negative_truncated=False,
        model_id="builtin:tiny-pano",
        preset="tiny-pano",
        device="cpu",
        dtype="float32",
        depth_layout="rgbd4",
        timings=Timings(0.1, 0.2, 0.3),
    )


def test_files_round_trip_with_16_bit_depth_and_optional_formats(tmp_path: Path) -> None:
    pytest.importorskip("OpenEXR")
    import OpenEXR

    writer = TextureWriter(tmp_path, jpeg=True, exr=True)
    writer.prepare()
    result = fake_result()
    files = writer.write(new_job_id(), result)
    assert np.array_equal(np.array(Image.open(files.rgb)), result.rgb)
    assert np.array_equal(np.array(Image.open(files.depth)), result.depth)
    assert Image.open(files.folder / "rgb.jpg").size == (32, 16)
    with OpenEXR.File(str(files.folder / "depth.exr")) as exr:
        assert np.array_equal(exr.channels()["Z"].pixels, result.depth_float)
    meta = json.loads(files.meta.read_text())
    assert meta["files"]["depth_exr"] == str(files.folder / "depth.exr")
    assert meta["depth"]["exr"] == "float32 0..1, 1 = nearest"
    assert meta["prompt_used"] == "360 view of p" and meta["seamless"] is True
    assert meta["depth"]["min"] == pytest.approx(float(result.depth_float.min()))


def test_prepare_removes_only_its_own_leftovers(tmp_path: Path) -> None:
    """Clean-up after a crash touches only names the bridge itself creates (issue 12, point 10)."""
    (tmp_path / ".staging-20261122-000000-000-0001").mkdir()
    (tmp_path / ".staging-deleted-20261122-000000-000-0002").mkdir()
    (tmp_path / ".ldm3d-latest.json.123.tmp").write_text("{")
    others = ["keep-me.txt", ".notes.tmp", ".latest.json.123.tmp", ".staging-photos"]
    (tmp_path / "keep-me.txt").write_text("mine")
    (tmp_path / ".notes.tmp").write_text("someone else's hidden file")
    (tmp_path / ".latest.json.123.tmp").write_text("not our name")
    (tmp_path / ".staging-photos").mkdir()
    writer = TextureWriter(tmp_path)
    writer.prepare()
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, LOCK_NAME])


def test_a_second_writer_on_the_same_folder_is_refused_by_name(tmp_path: Path) -> None:
    """Two bridges on one folder: the second refuses to start, naming the first (issue 12, point 10)."""
    first = TextureWriter(tmp_path)
    first.prepare()
    staging = tmp_path / ".staging-20261122-000000-000-0003"
    staging.mkdir()  # the first bridge is writing a job
    with pytest.raises(FolderInUse, match=rf"in use by another bridge \(pid {os.getpid()} on "):
        TextureWriter(tmp_path).prepare()
    assert staging.is_dir()  # the refused bridge cleaned nothing up
    first.close()
    second = TextureWriter(tmp_path)
    second.prepare()  # free again once the first has let go
    second.close()


def test_a_failed_write_leaves_no_files_and_latest_untouched(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path)
    writer.prepare()
    first = writer.write(new_job_id(), fake_result())
    latest_before = (tmp_path / "latest.json").read_bytes()
    job_id = new_job_id()
    (tmp_path / job_id).write_text("a file where the job folder must go")  # the final rename fails
    with pytest.raises(WriteFailed, match=f"could not write job {job_id}"):
        writer.write(job_id, fake_result())
    assert (tmp_path / "latest.json").read_bytes() == latest_before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [LOCK_NAME]
    assert writer.find(first.job_id) == first


def test_find_refuses_paths_and_unknown_ids(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path)
    writer.prepare()
    assert writer.find("../etc") is None
    assert writer.find("20200101-000000-000-0000") is None


def test_job_ids_sort_by_time() -> None:
    ids = [new_job_id(1_800_000_000.0 + i * 0.001) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_a_folder_watcher_never_sees_a_half_written_job(tmp_path: Path) -> None:
    """Pins the bug "job files written straight into the job folder": TouchDesigner's folder watchers
    (and any file manager) list the output root while the bridge writes. Every job folder must hold all of
    its files the first time it is seen. Large, slowly encoded PNGs make the writing window wide."""
    import threading

    root = tmp_path / "out"
    writer = TextureWriter(root, fmt="png")
    writer.prepare()
    first_seen: dict[str, set[str]] = {}
    done = threading.Event()

    def watch() -> None:
        while True:
            last = done.is_set()  # one whole look after the last write (a busy machine may not have looked yet)
            for entry in os.scandir(root):
                if entry.is_dir() and not entry.name.startswith(".") and entry.name not in first_seen:
                    try:
                        first_seen[entry.name] = set(os.listdir(entry.path))
                    except FileNotFoundError:
                        continue
            if last:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        ids = [new_job_id() for _ in range(3)]
        for job_id in ids:
            writer.write(job_id, fake_result(1024, 512))
    finally:
        done.set()
        watcher.join(10)
        writer.close()
    assert sorted(first_seen) == sorted(ids)
    for job_id, files in first_seen.items():
        assert {"rgb.png", "depth.png", "meta.json"} <= files, (job_id, files)


def test_paths_are_announced_under_another_machines_root_with_forward_slashes(tmp_path: Path) -> None:
    from bridge.output.writer import announce_path

    assert announce_path("Z:\\ldm3d-out\\", Path("job/rgb.tif")) == "Z:/ldm3d-out/job/rgb.tif"
    assert announce_path("//gpu-node/ldm3d-out", Path("job/meta.json")) == "//gpu-node/ldm3d-out/job/meta.json"
    assert announce_path("Z:/SHOWX//", Path("job/rgb.tif")) == "Z:/SHOWX/job/rgb.tif"  # only slashes are trimmed
    writer = TextureWriter(tmp_path / "out", announce_root="Z:/shows")
    writer.prepare()
    job_id = new_job_id()
    files = writer.write(job_id, fake_result(seed=9))
    assert files.ready_args() == (
        job_id,
        f"Z:/shows/{job_id}/rgb.tif",
        f"Z:/shows/{job_id}/depth.tif",
        f"Z:/shows/{job_id}/meta.json",
        32,
        16,
        9,
    )
    plain = TextureWriter(tmp_path / "plain")
    plain.prepare()
    local = plain.write(job_id, fake_result())
    assert local.ready_args()[1:4] == (str(local.rgb), str(local.depth), str(local.meta))
    writer.close()
    plain.close()


def test_latest_and_find_describe_the_newest_job(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path)
    assert writer.latest() is None and writer.job_ids() == []  # nothing written yet, folder not even made
    writer.prepare()
    first = writer.write(new_job_id(), fake_result(seed=1))
    second = writer.write(new_job_id(), fake_result(seed=2))
    latest = writer.latest()
    assert latest is not None and latest["job_id"] == second.job_id and latest["seed"] == 2
    assert latest["rgb"] == str(second.rgb) and latest["depth"] == str(second.depth)
    assert writer.find(first.job_id) == first and writer.find(second.job_id) == second
    (tmp_path / "latest.json").write_text("{ not json")
    assert writer.latest() is None  # a damaged file reads as none, it does not crash the bridge
    (tmp_path / first.job_id / "meta.json").write_text("{")
    assert writer.find(first.job_id) is None
    writer.close()


def test_old_jobs_are_pruned_but_never_the_newest_or_the_latest(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path, keep=3)
    writer.prepare()
    ids = [new_job_id(1_800_000_000.0 + i) for i in range(5)]
    for job_id in ids:
        writer.write(job_id, fake_result())
    assert writer.job_ids() == ids[2:]  # the 3 newest
    older = new_job_id(1_700_000_000.0)  # a job id older than every other (a clock set back)
    writer.write(older, fake_result())
    assert writer.job_ids() == [older, *ids[2:]]  # the job just written (latest.json's) is never pruned
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]  # nothing half-deleted left
    with pytest.raises(ValueError, match="keep must be at least 1 job, got 0"):
        TextureWriter(tmp_path, keep=0)
    writer.close()


def test_meta_json_and_latest_json_say_everything_about_a_job(tmp_path: Path) -> None:
    """The two JSON files a client reads, field by field (docs/osc.md, "Shared folder")."""
    import dataclasses
    from datetime import datetime

    from ldm3d_engine.types import Timings

    writer = TextureWriter(tmp_path, jpeg=True)
    writer.prepare()
    base = fake_result(width=32, height=16, seed=3)
    req = dataclasses.replace(base.request, mode="img2img", strength=0.6, sampling="fast")
    result = dataclasses.replace(
        base,
        request=req,
        depth_source="flat",
        peak_memory_mb=812.5,
        prompt_truncated=True,
        timings=Timings(0.12345678, 1.23456789, 0.55555555),
    )
    job_id = new_job_id()
    files = writer.write(job_id, result, meta_extra={"source_job": "x"})
    meta = json.loads(files.meta.read_text())
    created = datetime.fromisoformat(meta.pop("created"))
    assert created.tzinfo is not None and created.microsecond % 1000 == 0  # UTC, milliseconds
    writing_s = meta["timings"].pop("writing_s")
    assert 0 < writing_s < 2 and writing_s == round(writing_s, 4)  # seconds, to 0.1 ms
    versions = meta.pop("versions")
    assert set(versions) == {"ldm3d-bridge", "torch", "diffusers", "transformers"} and all(versions.values())
    depth = meta.pop("depth")
    assert depth == {
        "meaning": "relative inverse depth (disparity) from DPT as learned by LDM3D: larger = nearer",
        "file": "16-bit grayscale, 65535 = nearest, 0 = farthest",
        "exr": None,
        "layout": "rgbd4",
        "min": pytest.approx(float(result.depth_float.min())),
        "max": pytest.approx(float(result.depth_float.max())),
    }
    folder = str(tmp_path / job_id)
    assert meta == {
        "job_id": job_id,
        "prompt": "p",
        "prompt_used": "360 view of p",
        "prompt_truncated": True,
        "negative": "n",
        "negative_truncated": False,
        "seed": 3,
        "model": "builtin:tiny-pano",
        "preset": "tiny-pano",
        "steps": 2,
        "guidance": 7.0,
        "scheduler": "ddim",
        "sampling": "fast",
        "width": 32,
        "height": 16,
        "seamless": True,
        "mode": "img2img",
        "strength": 0.6,
        "depth_source": "flat",
        "peak_gpu_memory_mb": 812.5,
        "device": "cpu",
        "dtype": "float32",
        "safety_check": "no checker",  # a result made without the engine (RGBDResult's default)
        "timings": {"text_encoding_s": 0.1235, "denoising_s": 1.2346, "decoding_s": 0.5556},
        "files": {
            "rgb": f"{folder}/rgb.tif",
            "depth": f"{folder}/depth.tif",
            "rgb_jpeg": f"{folder}/rgb.jpg",
            "meta": f"{folder}/meta.json",
        },
        "format": "tiff",
        "source_job": "x",
    }
    assert json.loads((tmp_path / "latest.json").read_text()) == {
        "job_id": job_id,
        "folder": folder,
        "rgb": f"{folder}/rgb.tif",
        "depth": f"{folder}/depth.tif",
        "rgb_jpeg": f"{folder}/rgb.jpg",
        "meta": f"{folder}/meta.json",
        "width": 32,
        "height": 16,
        "seed": 3,
    }
    upscale_req = dataclasses.replace(base.request, mode="upscale", noise_level=20)
    upscaled = writer.write(new_job_id(), dataclasses.replace(base, request=upscale_req))
    upscale_meta = json.loads(upscaled.meta.read_text())
    assert upscale_meta["mode"] == "upscale" and upscale_meta["noise_level"] == 20
    plain = writer.write(new_job_id(), fake_result())  # text-to-RGBD: no strength, noise level or depth source
    plain_meta = json.loads(plain.meta.read_text())
    assert not {"strength", "noise_level", "depth_source", "peak_gpu_memory_mb"} & set(plain_meta)
    assert plain_meta["mode"] == "text"
    writer.close()


def test_a_write_that_fails_says_where_and_what_to_check(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path)
    writer.prepare()
    job_id = new_job_id()
    (tmp_path / job_id).write_text("in the way")
    with pytest.raises(WriteFailed) as caught:
        writer.write(job_id, fake_result())
    text = str(caught.value)
    assert text.startswith(f"could not write job {job_id} into {tmp_path.resolve()}: ")
    assert "[Errno" not in text  # the system's words (strerror), not Python's exception text
    assert text.endswith("(is the output folder writable, is the disk full?)")
    writer.close()


def test_json_files_are_indented_for_people_and_a_job_can_have_its_own_format(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path, announce_root="//nas/out")
    writer.prepare()
    job_id = new_job_id()
    files = writer.write(job_id, fake_result(), fmt="png")
    assert files.rgb.name == "rgb.png" and files.depth.name == "depth.png"
    assert np.array_equal(np.array(Image.open(files.depth)), fake_result().depth)
    assert (tmp_path / "latest.json").read_text().startswith('{\n  "job_id": ')
    assert files.meta.read_text().startswith('{\n  "job_id": ')
    found = writer.find(job_id)
    assert found is not None and found.ready_args()[1] == f"//nas/out/{job_id}/rgb.png"
    assert json.loads(files.meta.read_text())["files"]["depth"] == f"//nas/out/{job_id}/depth.png"
    writer.close()


def test_writer_defaults_nested_roots_and_what_counts_as_a_job(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "a" / "b" / "out"
    with pytest.raises(OutputParentMissing) as caught:
        TextureWriter(root).prepare()  # a missing parent: refused, nothing made
    assert str(caught.value) == (
        f"output folder {root}: {root.parent} does not exist (a typo?); create it first or choose another --output"
    )
    assert not (tmp_path / "a").exists()
    (tmp_path / "a" / "b").mkdir(parents=True)
    writer = TextureWriter(root)  # only the folder itself is made, and the log says so
    assert (writer.format.name, writer.jpeg, writer.exr, writer.keep) == ("tiff", False, False, 200)
    caplog.set_level("INFO", logger="bridge.output.writer")
    writer.prepare()
    assert caplog.messages == [f"created the output folder {root}"]
    (root / "photos").mkdir()  # not a job id
    (root / new_job_id()).write_text("a file named like a job")  # not a folder
    job = writer.write(new_job_id(), fake_result())
    assert writer.job_ids() == [job.job_id]
    writer.close()
    assert TextureWriter(tmp_path / "one", keep=1).keep == 1


def test_exr_without_its_package_is_refused_with_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "OpenEXR", None)  # as if the [exr] extra were not installed
    with pytest.raises(ValueError) as caught:
        TextureWriter(Path("/nonexistent"), exr=True)
    assert str(caught.value) == "depth.exr needs the OpenEXR package: pip install 'ldm3d-bridge[exr]'"


def test_pruning_goes_on_past_the_newest_and_past_a_job_it_cannot_remove(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    first = TextureWriter(tmp_path, keep=3)
    first.prepare()
    x, y, z = (new_job_id(1_800_000_000.0 + i) for i in range(3))
    for job_id in (x, y, z):
        first.write(job_id, fake_result())
    first.close()
    again = TextureWriter(tmp_path, keep=1)  # the bridge restarted with a smaller keep
    again.prepare()
    blocker = tmp_path / f".staging-deleted-{x}"  # renaming x away fails: that name is a full folder
    blocker.mkdir()
    (blocker / "x").write_text("x")
    caplog.set_level(logging.WARNING, logger="bridge.output.writer")
    older = new_job_id(1_700_000_000.0)  # sorts first, and is the job just written
    again.write(older, fake_result())
    assert again.job_ids() == [older, x, z]  # y removed although x could not be and older came first
    (record,) = caplog.records
    assert record.getMessage().startswith(f"could not remove old job {x}: ")
    assert not record.getMessage().endswith("None")  # the system's reason
    again.close()
