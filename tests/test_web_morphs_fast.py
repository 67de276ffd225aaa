"""A morph's frames for the operator page, without a bridge (issue 33: in the mutation selection).

:class:`bridge.web.morphs.MorphFolders` over a morph written here, and its two routes served by
aiohttp's test server on the loopback."""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge.errors import BadArguments, UnknownJob
from bridge.web import morphs
from bridge.web.morphs import MorphFolders
from bridge.web.textures import TextureStore

MORPH = "20261207-101500-000-0001"
MANIFEST = {
    "morph_id": MORPH,
    "from": "20261207-101400-000-0001",
    "to": "20261207-101401-000-0002",
    "to_seed": 9,
    "frames": 3,
    "seconds": 2.0,
    "frame_seconds": 1.0,
    "complete": False,
}


def _frame(root: Path, index: int, meta: object = None, ext: str = ".png") -> Path:
    folder = root / "morphs" / MORPH / f"{index:04d}"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps(meta or {"width": 64, "height": 32, "seed": 1}))
    (folder / f"rgb{ext}").write_bytes(b"rgb %d" % index)
    (folder / f"depth{ext}").write_bytes(b"depth %d" % index)
    return folder


def _manifest(root: Path, written: object, **extra: object) -> None:
    (root / "morphs" / MORPH).mkdir(parents=True, exist_ok=True)
    (root / "morphs" / MORPH / "morph.json").write_text(json.dumps({**MANIFEST, **extra, "written": written}))


def _urls(textures: TextureStore, folder: Path, ext: str = ".png") -> dict[str, str]:
    rgb, depth = folder / f"rgb{ext}", folder / f"depth{ext}"
    return {"rgb": textures.url(rgb, "rgb"), "thumb": textures.url(rgb, "thumb"), "depth": textures.url(depth, "depth")}


def test_a_morph_is_offered_with_every_written_frame_and_its_urls(tmp_path: Path) -> None:
    textures = TextureStore()
    first, second = _frame(tmp_path, 0), _frame(tmp_path, 1, ext=".tif")
    _manifest(tmp_path, [{"index": 0, "t": 0}, {"index": 1, "t": 0.5}, "not a frame"], extra_key=1)
    folders = MorphFolders(tmp_path, textures)
    assert folders.offer(MORPH) == {
        **MANIFEST,
        "written": [
            {"morph_id": MORPH, "index": 0, "t": 0, "width": 64, "height": 32, **_urls(textures, first)},
            {"morph_id": MORPH, "index": 1, "t": 0.5, "width": 64, "height": 32, **_urls(textures, second, ".tif")},
        ],
    }
    assert folders.has(MORPH)


def test_a_frame_is_offered_by_its_number_as_text_or_int(tmp_path: Path) -> None:
    textures = TextureStore()
    _frame(tmp_path, 0)
    folder = _frame(tmp_path, 12, {"width": 8, "height": 4, "seed": 1})
    _manifest(tmp_path, [{"index": 0, "t": 0}, {"index": 12, "t": "late"}])
    folders = MorphFolders(tmp_path, textures)
    expected = {"morph_id": MORPH, "index": 12, "t": None, "width": 8, "height": 4, **_urls(textures, folder)}
    assert folders.offer_frame(MORPH, "0012") == folders.offer_frame(MORPH, 12) == expected


@pytest.mark.parametrize("index", ["", "12345", "-1", "1.0", "x", "1\n", "٣"])
def test_a_frame_number_that_is_not_one_to_four_digits_is_refused(tmp_path: Path, index: str) -> None:
    with pytest.raises(BadArguments) as caught:
        MorphFolders(tmp_path, TextureStore()).offer_frame(MORPH, index)
    assert str(caught.value) == f"frame {index!r} is not a frame number (0, 1, 2 …)"


def test_a_frame_the_manifest_does_not_list_is_unknown_naming_those_it_does(tmp_path: Path) -> None:
    _frame(tmp_path, 0)
    _frame(tmp_path, 1)
    _manifest(tmp_path, [{"index": 0}, {"index": 1}, "x"])
    with pytest.raises(UnknownJob) as caught:
        MorphFolders(tmp_path, TextureStore()).offer_frame(MORPH, 2)
    assert str(caught.value) == f"morph {MORPH} has no frame 2 (written: 0, 1)"
    _manifest(tmp_path, [])
    with pytest.raises(UnknownJob, match=r"\(written: none yet\)\Z"):
        MorphFolders(tmp_path, TextureStore()).offer_frame(MORPH, 0)


def test_a_listed_frame_whose_folder_does_not_read_is_unknown(tmp_path: Path) -> None:
    _frame(tmp_path, 0, {"width": 0, "height": 32, "seed": 1})  # damaged
    _manifest(tmp_path, [{"index": 0}, {"index": 1}])  # 1: pruned
    folders = MorphFolders(tmp_path, TextureStore())
    for index in (0, 1):
        with pytest.raises(UnknownJob, match=f"has no frame {index} "):
            folders.offer_frame(MORPH, index)
    assert folders.offer(MORPH)["written"] == []


@pytest.mark.parametrize("index", [True, -1, 10000, 1.0, "1", None])
def test_a_manifest_entry_whose_index_is_not_a_frame_number_is_left_out(tmp_path: Path, index: object) -> None:
    _frame(tmp_path, 1)
    _manifest(tmp_path, [{"index": index}])
    assert MorphFolders(tmp_path, TextureStore()).offer(MORPH)["written"] == []


def test_a_frame_past_the_last_possible_number_is_left_out_even_if_its_folder_is_there(tmp_path: Path) -> None:
    _frame(tmp_path, 10000)  # (a folder "10000": not one the bridge writes)
    _manifest(tmp_path, [{"index": 10000, "t": 1}])
    assert MorphFolders(tmp_path, TextureStore()).offer(MORPH)["written"] == []


def test_the_last_possible_frame_number_is_offered(tmp_path: Path) -> None:
    _frame(tmp_path, 9999)
    _manifest(tmp_path, [{"index": 9999, "t": 1}])
    assert [f["index"] for f in MorphFolders(tmp_path, TextureStore()).offer(MORPH)["written"]] == [9999]


def test_a_frame_folder_linked_out_of_the_morphs_folder_is_left_out(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    _frame(outside, 0)
    (tmp_path / "out" / "morphs" / MORPH).mkdir(parents=True)
    os.symlink(outside / "morphs" / MORPH / "0000", tmp_path / "out" / "morphs" / MORPH / "0000")
    _manifest(tmp_path / "out", [{"index": 0}])
    assert MorphFolders(tmp_path / "out", TextureStore()).offer(MORPH)["written"] == []


@pytest.mark.parametrize("manifest", [None, "{broken", "[" * 100_000, "[]", '{"written": {}}', '{"frames": 3}'])
def test_a_morph_without_a_manifest_the_bridge_wrote_is_unknown(tmp_path: Path, manifest: str | None) -> None:
    if manifest is not None:
        (tmp_path / "morphs" / MORPH).mkdir(parents=True)
        (tmp_path / "morphs" / MORPH / "morph.json").write_text(manifest)
    with pytest.raises(UnknownJob, match=f"\\Ano morph {MORPH}"):
        MorphFolders(tmp_path, TextureStore()).manifest(MORPH)


def test_the_reasons_a_morph_is_unknown(tmp_path: Path) -> None:
    folders = MorphFolders(tmp_path, TextureStore())
    with pytest.raises(UnknownJob) as missing:
        folders.manifest(MORPH)
    (tmp_path / "morphs" / MORPH).mkdir(parents=True)
    (tmp_path / "morphs" / MORPH / "morph.json").write_text("[]")
    with pytest.raises(UnknownJob) as foreign:
        folders.manifest(MORPH)
    assert [str(missing.value), str(foreign.value)] == [
        f"no morph {MORPH} (never made, or pruned)",
        f"no morph {MORPH}: its manifest is not one the bridge wrote",
    ]


def test_a_manifest_in_utf8_is_read_as_utf8(tmp_path: Path) -> None:
    _manifest(tmp_path, [])
    path = tmp_path / "morphs" / MORPH / "morph.json"
    path.write_bytes(json.dumps({"written": [], "from": "café"}, ensure_ascii=False).encode("utf-8"))
    assert MorphFolders(tmp_path, TextureStore()).manifest(MORPH)["from"] == "café"


@pytest.mark.parametrize("bad", ["../x", f"{MORPH}/..", "", f"{MORPH}\n"])
def test_an_id_that_is_not_a_job_id_is_refused_and_is_no_morph(tmp_path: Path, bad: str) -> None:
    folders = MorphFolders(tmp_path, TextureStore())
    with pytest.raises(BadArguments) as caught:
        folders.manifest(bad)
    assert str(caught.value) == f"{bad!r} is not a morph id (a job id such as 20261207-101500-000-0001)"
    assert not folders.has(bad)


def test_a_morph_without_its_manifest_is_not_one_the_page_can_play(tmp_path: Path) -> None:
    _frame(tmp_path, 0)
    assert not MorphFolders(tmp_path, TextureStore()).has(MORPH)


async def _get(app: web.Application, path: str) -> tuple[int, str, Any]:
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        response = await client.get(path)
        return response.status, await response.text(), response.headers


def test_the_routes_answer_json_and_refuse_with_the_reason(tmp_path: Path) -> None:
    _frame(tmp_path, 0)
    _manifest(tmp_path, [{"index": 0, "t": 0}])
    textures = TextureStore()
    folders = MorphFolders(tmp_path, textures)
    app = web.Application()
    with ThreadPoolExecutor(1) as pool:
        morphs.attach(app, folders, pool)

        async def run() -> list[tuple[int, str, Any]]:
            paths = (f"/morph/{MORPH}", f"/morph/{MORPH}/0", f"/morph/{MORPH}/x", f"/morph/{MORPH}/5", "/morph/nope")
            return [await _get(app, path) for path in paths]

        whole, frame, bad, missing, nope = asyncio.run(run())
    assert (whole[0], json.loads(whole[1]), whole[2]["Cache-Control"]) == (200, folders.offer(MORPH), "no-cache")
    assert (frame[0], json.loads(frame[1])) == (200, folders.offer_frame(MORPH, 0))
    assert [bad[:2], missing[:2], nope[:2]] == [
        (400, "frame 'x' is not a frame number (0, 1, 2 …)\n"),
        (404, f"morph {MORPH} has no frame 5 (written: 0)\n"),
        (400, "'nope' is not a morph id (a job id such as 20261207-101500-000-0001)\n"),
    ]
