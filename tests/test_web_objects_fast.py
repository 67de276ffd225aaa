"""What the operator page is offered of an object, without a bridge (issue 33: in the mutation selection).

Drives :class:`bridge.web.objects.ObjectFolders` over a few folders written here."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from bridge.errors import BadArguments, UnknownJob
from bridge.placement import Placement
from bridge.web.objects import ObjectFolders
from bridge.web.textures import TextureStore

OLDER, NEWER, NEWEST = "20261207-101500-000-0001", "20261207-101501-000-0002", "20261207-101502-000-0003"
META = {"prompt": "a red lantern", "seed": 7, "vertices": 812, "faces": 1620, "created": "2026-12-07T10:15:00"}


def _object(folder: Path, meta: object = None, glb: bytes = b"glTF") -> Path:
    folder.mkdir(parents=True)
    (folder / "mesh.glb").write_bytes(glb)
    if meta is not None:
        (folder / "meta.json").write_text(meta if isinstance(meta, str) else json.dumps(meta), encoding="utf-8")
    return folder


def test_an_object_is_offered_with_its_url_facts_and_recorded_placement(tmp_path: Path) -> None:
    textures = TextureStore()
    _object(tmp_path / "objects" / OLDER, {**META, "placement": {"yaw": 30.0, "size": 0.5}, "other": 1})
    offered = ObjectFolders(tmp_path, textures).offer(OLDER)
    assert offered == {
        "job_id": OLDER,
        "glb": textures.url(tmp_path / "objects" / OLDER / "mesh.glb", "glb"),
        **META,
        "placement": {"yaw": 30.0, "pitch": 0.0, "distance": 0.5, "size": 0.5, "turn": 0.0},
    }


def test_a_placement_handed_in_is_the_one_offered(tmp_path: Path) -> None:
    _object(tmp_path / "objects" / OLDER, {"placement": {"yaw": 30.0}})
    offered = ObjectFolders(tmp_path, TextureStore()).offer(OLDER, Placement(yaw=-10.0))
    assert offered["placement"] == Placement(yaw=-10.0).as_dict()


@pytest.mark.parametrize("meta", [None, "{not json", "[1, 2]", "[" * 100_000, '"é"'])
def test_a_meta_that_does_not_read_as_an_object_offers_no_facts(tmp_path: Path, meta: str | None) -> None:
    _object(tmp_path / "objects" / OLDER, meta)
    offered = ObjectFolders(tmp_path, TextureStore()).offer(OLDER)
    assert {k: offered[k] for k in (*META, "placement")} == {**dict.fromkeys(META), "placement": Placement().as_dict()}


def test_a_meta_in_utf8_is_read_as_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "objects" / OLDER
    _object(folder)
    (folder / "meta.json").write_bytes(json.dumps({"prompt": "a café"}, ensure_ascii=False).encode("utf-8"))
    assert ObjectFolders(tmp_path, TextureStore()).offer(OLDER)["prompt"] == "a café"


@pytest.mark.parametrize("bad", ["../secret", f"{OLDER}/../x", "", "mesh.glb", f"{OLDER}\n"])
def test_an_id_that_is_not_a_job_id_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(BadArguments) as caught:
        ObjectFolders(tmp_path, TextureStore()).glb(bad)
    assert str(caught.value) == f"{bad!r} is not an object id (a job id such as 20261207-101500-000-0001)"


def test_a_missing_object_is_unknown_naming_both_folders(tmp_path: Path) -> None:
    folders = ObjectFolders(tmp_path, TextureStore())
    with pytest.raises(UnknownJob) as caught:
        folders.glb(OLDER)
    root = tmp_path.resolve()
    assert str(caught.value) == f"no object {OLDER} in {root / 'objects'} or {root / 'scenes'} (never made, or pruned)"


def test_the_glb_is_the_object_jobs_else_the_scenes(tmp_path: Path) -> None:
    _object(tmp_path / "objects" / OLDER)
    _object(tmp_path / "scenes" / OLDER / "object")
    _object(tmp_path / "scenes" / NEWER / "object")
    folders = ObjectFolders(tmp_path, TextureStore())
    root = tmp_path.resolve()
    assert [folders.glb(OLDER), folders.glb(NEWER)] == [
        root / "objects" / OLDER / "mesh.glb",
        root / "scenes" / NEWER / "object" / "mesh.glb",
    ]


def test_a_link_out_of_either_folder_or_a_folder_named_mesh_glb_is_unknown(tmp_path: Path) -> None:
    (tmp_path / "mesh.glb").write_bytes(b"secret")
    (tmp_path / "objects" / OLDER).mkdir(parents=True)
    os.symlink(tmp_path / "mesh.glb", tmp_path / "objects" / OLDER / "mesh.glb")
    (tmp_path / "scenes" / NEWER).mkdir(parents=True)
    os.symlink(tmp_path, tmp_path / "scenes" / NEWER / "object")
    (tmp_path / "objects" / NEWEST / "mesh.glb").mkdir(parents=True)
    folders = ObjectFolders(tmp_path, TextureStore())
    for job_id in (OLDER, NEWER, NEWEST):
        with pytest.raises(UnknownJob):
            folders.glb(job_id)


def test_a_link_between_objects_inside_the_folder_is_served(tmp_path: Path) -> None:
    _object(tmp_path / "objects" / OLDER)
    (tmp_path / "objects" / NEWER).mkdir()
    os.symlink(tmp_path / "objects" / OLDER / "mesh.glb", tmp_path / "objects" / NEWER / "mesh.glb")
    assert ObjectFolders(tmp_path, TextureStore()).glb(NEWER) == (tmp_path / "objects" / OLDER / "mesh.glb").resolve()


def test_the_ready_event_places_its_object_where_its_arguments_say(tmp_path: Path) -> None:
    _object(tmp_path / "objects" / OLDER, {"placement": {"yaw": 30.0}})
    folders = ObjectFolders(tmp_path, TextureStore())
    ready = folders.offer_ready((OLDER, "a.obj", "a.glb", 10.0, -20.0, 0.7, 0.5, 30.0))
    assert ready is not None and ready["placement"] == Placement(10.0, -20.0, 0.7, 0.5, 30.0).as_dict()


@pytest.mark.parametrize(
    "tail",
    [(), (10.0, -20.0, 0.7, 0.5), (10.0, -20.0, 0.7, 0.5, 30.0, 1.0), (10.0, -20.0, 9.0, 0.5, 30.0), ("a", 0, 0, 0, 0)],
)
def test_a_ready_event_without_a_placement_places_it_as_recorded(tmp_path: Path, tail: tuple[object, ...]) -> None:
    _object(tmp_path / "objects" / OLDER, {"placement": {"yaw": 30.0}})
    ready = ObjectFolders(tmp_path, TextureStore()).offer_ready((OLDER, "a.obj", "a.glb", *tail))  # type: ignore[arg-type]
    assert ready is not None and ready["placement"] == Placement(yaw=30.0).as_dict()


def test_a_ready_event_of_nothing_offered_is_none_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folders = ObjectFolders(tmp_path, TextureStore())
    with caplog.at_level(logging.WARNING, logger="bridge.web.objects"):
        assert [folders.offer_ready(()), folders.offer_ready((OLDER,))] == [None, None]
    assert (
        caplog.messages[0]
        == "object '' not offered to the pages: '' is not an object id (a job id such as 20261207-101500-000-0001)"
    )
    assert caplog.messages[1].startswith(f"object '{OLDER}' not offered to the pages: no object {OLDER} in ")


def test_the_newest_object_job_with_a_glb_is_the_newest(tmp_path: Path) -> None:
    _object(tmp_path / "objects" / OLDER)
    _object(tmp_path / "objects" / NEWER)
    (tmp_path / "objects" / NEWEST).mkdir()  # being written: no GLB yet
    (tmp_path / "objects" / "99999999-999999-999-zzzz-not-an-id").mkdir()
    folders = ObjectFolders(tmp_path, TextureStore())
    assert folders.newest() == NEWER
    offered = folders.offer_newest()
    assert offered is not None and offered["job_id"] == NEWER


def test_a_scenes_object_is_not_the_newest_object_job(tmp_path: Path) -> None:
    _object(tmp_path / "objects" / OLDER)
    (tmp_path / "objects" / NEWER).mkdir()
    _object(tmp_path / "scenes" / NEWER / "object")
    assert ObjectFolders(tmp_path, TextureStore()).newest() == OLDER


def test_without_objects_there_is_none_to_offer(tmp_path: Path) -> None:
    folders = ObjectFolders(tmp_path, TextureStore())
    assert (folders.newest(), folders.offer_newest()) == (None, None)
    (tmp_path / "objects").mkdir()
    (tmp_path / "objects" / NEWER).mkdir()
    assert (folders.newest(), folders.offer_newest()) == (None, None)


class _Unreadable(TextureStore):
    def url(self, path: Path, kind: str) -> str:
        raise PermissionError(f"cannot read {path.name}")


def test_the_newest_that_cannot_be_read_is_none_for_a_new_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _object(tmp_path / "objects" / OLDER)
    with caplog.at_level(logging.DEBUG, logger="bridge.web.objects"):
        assert ObjectFolders(tmp_path, _Unreadable()).offer_newest() is None
    assert caplog.messages == [f"object {OLDER} not offered to a new page: cannot read mesh.glb"]
