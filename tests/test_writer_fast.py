"""What the writer says of a job folder it cannot use, word for word, and the versions it records.

``tests/test_bad_folders.py`` checks that each bad ``meta.json`` is skipped and logged once (a word of
each reason); here every reason is pinned whole, as ``/ldm3d/recall`` and the log show it."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from bridge.output.job_ids import new_job_id
from bridge.output.writer import TextureWriter, package_versions
from ldm3d_engine.types import Timings
from tests.test_writer import fake_result

#: A meta.json's bytes → the reason the bridge gives for not using the folder.
REASONS = {
    b"[]": "it holds a list, not an object",
    b"null": "it holds null, not an object",
    b'"a scene"': "it holds a string, not an object",
    b"42": "it holds a number, not an object",
    b"{": "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    b"[" * 100_000: "not JSON: nested too deep",
    b'{"prompt": "caf\xe9", "width": 32}': "not UTF-8: byte 15 is 0xe9",
    b'{"width": 32, "height": 16}': "no 'seed'",
    b'{"seed": 1, "height": 16}': "no 'width'",
    b'{"width": 32, "seed": 1}': "no 'height'",
    b'{"width": "32", "height": 16, "seed": 1}': "'width' is a string, not a whole number",
    b'{"width": 32, "height": true, "seed": 1}': "'height' is a boolean, not a whole number",
    b'{"width": 32, "height": 16, "seed": 1.5}': "'seed' is a number, not a whole number",
    b'{"width": 32, "height": 16, "seed": {}}': "'seed' is an object, not a whole number",
    b'{"width": 32, "height": 16, "seed": null}': "'seed' is null, not a whole number",
    b'{"width": 0, "height": 16, "seed": 1}': "'width' is 0, not a size",
    b'{"width": 32, "height": -16, "seed": 1}': "'height' is -16, not a size",
}


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[TextureWriter]:
    out = TextureWriter(tmp_path)
    out.prepare()
    yield out
    out.close()


def test_every_reason_a_folder_cannot_be_used_is_given_whole_and_logged_once(
    writer: TextureWriter, caplog: pytest.LogCaptureFixture
) -> None:
    bad = {}
    for content in REASONS:
        files = writer.write(new_job_id(), fake_result())
        files.meta.write_bytes(content)
        bad[files.job_id] = REASONS[content]
    with caplog.at_level(logging.WARNING, logger="bridge.output.writer"):
        assert {job_id: writer.unreadable(job_id) for job_id in bad} == bad
        assert [writer.find(job_id) for job_id in bad] == [None] * len(bad)
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping {writer.root / job_id / 'meta.json'}: it cannot be read ({why})" for job_id, why in bad.items()
    ]


def test_a_seed_may_be_zero_or_negative_but_a_size_may_not(writer: TextureWriter) -> None:
    files = writer.write(new_job_id(), fake_result())
    files.meta.write_text('{"width": 1, "height": 1, "seed": -7}')
    found = writer.find(files.job_id)
    assert found is not None and (found.width, found.height, found.seed) == (1, 1, -7)


def test_a_meta_json_that_is_a_folder_is_named_by_the_system_s_reason(writer: TextureWriter) -> None:
    files = writer.write(new_job_id(), fake_result())
    files.meta.unlink()
    files.meta.mkdir()
    assert writer.unreadable(files.job_id) == "Is a directory"
    assert writer.unreadable("../etc") is None and writer.find_with_meta("../etc") is None  # not a job id


def test_a_library_that_is_not_installed_is_recorded_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def version(dist: str) -> str:
        if dist == "diffusers":
            raise metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(metadata, "version", version)  # the module the writer asks
    versions = package_versions()
    assert versions["diffusers"] == "not installed" and versions["torch"] == real("torch")
    assert list(versions) == ["ldm3d-bridge", "torch", "diffusers", "transformers"]


def test_a_pruned_job_takes_its_morph_frames_with_it(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path, keep=1)
    writer.prepare()
    try:
        old, new = new_job_id(1_800_000_000.0), new_job_id(1_800_000_001.0)
        writer.write(old, fake_result())
        for job_id in (old, "20261122-100000-000-0001"):  # the pruned job's frames, and another's
            (tmp_path / "morphs" / job_id).mkdir(parents=True)
            (tmp_path / "morphs" / job_id / "frame-000").mkdir()
        writer.write(new, fake_result())
        assert writer.job_ids() == [new]
        assert sorted(p.name for p in (tmp_path / "morphs").iterdir()) == ["20261122-100000-000-0001"]
    finally:
        writer.close()


def _an_object(staging: Path) -> None:
    (staging / "mesh.obj").write_text("o")


def test_a_scene_is_written_whole_with_what_its_cue_adds_and_is_never_latest_or_pruned(tmp_path: Path) -> None:
    writer = TextureWriter(tmp_path, keep=1)
    writer.prepare()
    try:
        scene = writer.write_scene(
            "20261122-100000-000-0001",
            fake_result(seed=9),
            {"scene_key": "k" * 64},
            inside=_an_object,
        )
        assert scene.folder == tmp_path / "scenes" / "20261122-100000-000-0001"
        assert sorted(p.name for p in scene.folder.iterdir()) == ["depth.tif", "mesh.obj", "meta.json", "rgb.tif"]
        assert writer.latest() is None and writer.job_ids() == []
        for _ in range(2):
            writer.write(new_job_id(), fake_result())
        found = writer.find_with_meta("20261122-100000-000-0001")
        assert found is not None and found[0] == scene and found[1]["scene_key"] == "k" * 64
        second = writer.write_scene("20261122-100000-000-0002", fake_result(), {"scene_key": "m" * 64})
        second.meta.write_bytes(b"[]")
        assert writer.unreadable("20261122-100000-000-0002") == "it holds a list, not an object"
    finally:
        writer.close()


def test_a_latest_json_that_does_not_read_is_logged_with_its_reason(
    writer: TextureWriter, caplog: pytest.LogCaptureFixture
) -> None:
    latest = writer.root / "latest.json"
    with caplog.at_level(logging.WARNING, logger="bridge.output.writer"):
        latest.write_bytes(b"[]")
        assert writer.latest() is None
        latest.write_bytes(b"{")
        assert TextureWriter(writer.root).latest() is None  # a reader that has not logged this path yet
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping {latest}: it cannot be read (it holds a list, not an object)",
        f"skipping {latest}: it cannot be read (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1))",
    ]


def test_a_latest_json_that_cannot_be_replaced_fails_the_write_by_name(writer: TextureWriter) -> None:
    from bridge.errors import WriteFailed

    (writer.root / "latest.json").mkdir()  # a folder in its place: the rename onto it fails
    (writer.root / "latest.json" / "x").write_text("x")
    with pytest.raises(WriteFailed) as caught:
        writer.write(new_job_id(), fake_result())
    assert str(caught.value) == f"could not update {writer.root / 'latest.json'}: Is a directory"


def test_meta_json_says_where_the_depth_came_from_and_what_it_cost_only_when_it_applies(
    writer: TextureWriter,
) -> None:
    """An RGB-only model's world (depth estimated, prompt ignored, checked for safety) records each in
    meta.json; a world of a model that draws its own depth records none of them."""
    estimated = dataclasses.replace(
        fake_result(),
        depth_source="dpt",
        depth_model="Intel/dpt-large",
        depth_method="equirect-views",
        prompt_ignored=True,
        timings=Timings(0.1, 0.2, 0.3, depth_s=1.234567, safety_s=0.0456789),
    )
    meta = json.loads(writer.write(new_job_id(), estimated).meta.read_text())
    assert (meta["depth_source"], meta["depth_model"], meta["depth_method"]) == (
        "dpt",
        "Intel/dpt-large",
        "equirect-views",
    )
    assert meta["prompt_ignored"] is True
    assert (meta["timings"]["depth_s"], meta["timings"]["safety_s"]) == (1.2346, 0.0457)
    own = json.loads(writer.write(new_job_id(), fake_result()).meta.read_text())
    assert not {"depth_source", "depth_model", "depth_method", "prompt_ignored"} & own.keys()
    assert not {"depth_s", "safety_s"} & own["timings"].keys()
