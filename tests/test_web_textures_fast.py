"""The texture store's URLs, kinds and caches, without a bridge (issue 33: in the mutation selection).

Each test writes a few tiny files and drives :class:`bridge.web.textures.TextureStore` directly."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.web.textures import TextureStore, decode_depth, derive


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _rgb(path: Path, width: int = 16, height: int = 8, value: int = 0) -> Path:
    rng = np.random.default_rng(value)
    return _png(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _key(data: bytes, kind: str) -> str:
    digest = hashlib.sha256(data).hexdigest()
    return hashlib.sha256(f"{kind}:1:{digest}".encode()).hexdigest()[:32]


def test_a_url_is_the_sha256_of_kind_version_and_content_with_the_kinds_extension(tmp_path: Path) -> None:
    a = _rgb(tmp_path / "a.png")
    glb = tmp_path / "mesh.glb"
    glb.write_bytes(b"glTF" * 300_000)  # more than one read of 1 MiB
    store = TextureStore()
    assert [store.url(a, "rgb"), store.url(a, "thumb"), store.url(a, "depth"), store.url(glb, "glb")] == [
        f"/t/{_key(a.read_bytes(), 'rgb')}.jpg",
        f"/t/{_key(a.read_bytes(), 'thumb')}.jpg",
        f"/t/{_key(a.read_bytes(), 'depth')}.u16",
        f"/t/{_key(glb.read_bytes(), 'glb')}.glb",
    ]


def test_each_kind_is_served_with_its_content_type_and_bytes(tmp_path: Path) -> None:
    rgb = _rgb(tmp_path / "rgb.png", 300, 100)
    values = (np.arange(4 * 6, dtype=np.uint16) * 2741).reshape(4, 6)
    depth = _png(tmp_path / "depth.png", values)
    glb = tmp_path / "mesh.glb"
    glb.write_bytes(b"glTF binary")
    store = TextureStore()

    def get(path: Path, kind: str) -> tuple[bytes, str]:
        found = store.get(store.url(path, kind).removeprefix("/t/"))
        assert found is not None
        return found

    data, kind = get(rgb, "rgb")
    expected = io.BytesIO()
    Image.open(rgb).convert("RGB").save(expected, format="JPEG", quality=90)
    assert (data, kind) == (expected.getvalue(), "image/jpeg")
    data, kind = get(rgb, "thumb")
    assert (Image.open(io.BytesIO(data)).size, Image.open(io.BytesIO(data)).format, kind) == (
        (256, 85),
        "JPEG",
        "image/jpeg",
    )
    data, kind = get(depth, "depth")
    assert (data, kind) == (values.astype("<u2").tobytes(), "application/octet-stream")
    assert get(glb, "glb") == (b"glTF binary", "model/gltf-binary")


def test_a_thumb_of_a_very_wide_picture_is_one_pixel_high(tmp_path: Path) -> None:
    assert Image.open(io.BytesIO(derive(_rgb(tmp_path / "wide.png", 1024, 1), "thumb"))).size == (256, 1)


def test_an_unknown_kind_is_refused_naming_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\Aunknown texture kind 'png'; kinds are rgb, thumb, depth, glb\Z"):
        derive(_rgb(tmp_path / "a.png"), "png")


def test_the_served_depth_decodes_to_height_rows_of_width() -> None:
    values = np.arange(6, dtype=np.uint16) * 10000
    decoded = decode_depth(values.astype("<u2").tobytes(), 3, 2)
    assert decoded.tolist() == [[0, 10000, 20000], [30000, 40000, 50000]]


def test_a_name_the_store_does_not_know_or_of_another_kind_is_none(tmp_path: Path) -> None:
    store = TextureStore()
    key = store.url(_rgb(tmp_path / "a.png"), "rgb").removeprefix("/t/")
    assert store.get(key) is not None
    assert [
        store.get(key.replace(".jpg", ".u16")),
        store.get(key.removesuffix(".jpg")),
        store.get("0" * 32 + ".jpg"),
    ] == [
        None,
        None,
        None,
    ]


def test_a_picture_pruned_or_damaged_before_its_first_request_is_none(tmp_path: Path) -> None:
    """(The image readers raise BadArguments for a file that is gone or does not decode: a 404, not a 500.)"""
    store = TextureStore()
    a, b = _rgb(tmp_path / "a.png"), _rgb(tmp_path / "b.png", value=1)
    keys = [store.url(a, "rgb").removeprefix("/t/"), store.url(b, "depth").removeprefix("/t/")]
    a.unlink()
    b.write_bytes(b"not a png")
    assert [store.get(key) for key in keys] == [None, None]


def test_derived_bytes_are_kept_and_the_least_recently_served_go_first(tmp_path: Path) -> None:
    files = [tmp_path / f"{n}.glb" for n in range(3)]
    for n, path in enumerate(files):
        path.write_bytes(bytes([n]) * 100)
    store = TextureStore(cache_bytes=250)
    keys = [store.url(path, "glb").removeprefix("/t/") for path in files]
    store.get(keys[0])
    store.get(keys[1])
    store.get(keys[0])  # served again: the newest
    store.get(keys[2])  # 300 bytes: the least recently served (1) goes
    for path in files:
        path.unlink()
    assert [store.get(key) is not None for key in keys] == [True, False, True]


def test_a_texture_served_twice_is_counted_once(tmp_path: Path) -> None:
    files = [tmp_path / f"{n}.glb" for n in range(2)]
    for n, path in enumerate(files):
        path.write_bytes(bytes([n]) * 100)
    store = TextureStore(cache_bytes=200)
    keys = [store.url(path, "glb").removeprefix("/t/") for path in files]
    store.get(keys[0])
    store._keep(
        keys[0].removesuffix(".glb"), (tmp_path / "0.glb").read_bytes()
    )  # a second request derived it meanwhile
    store.get(keys[1])  # 200 bytes held: both fit
    for path in files:
        path.unlink()
    assert [store.get(key) is not None for key in keys] == [True, True]


def test_bytes_larger_than_the_cache_are_not_kept_and_evict_nothing(tmp_path: Path) -> None:
    small, big = tmp_path / "small.glb", tmp_path / "big.glb"
    small.write_bytes(b"s" * 50)
    big.write_bytes(b"x" * 101)
    store = TextureStore(cache_bytes=100)
    keys = [store.url(small, "glb").removeprefix("/t/"), store.url(big, "glb").removeprefix("/t/")]
    store.get(keys[0])
    assert store.get(keys[1]) == (b"x" * 101, "model/gltf-binary")
    small.unlink()
    big.unlink()
    assert [store.get(key) for key in keys] == [(b"s" * 50, "model/gltf-binary"), None]


def test_the_store_remembers_the_newest_keys_only(tmp_path: Path) -> None:
    files = [tmp_path / f"{n}.glb" for n in range(3)]
    for n, path in enumerate(files):
        path.write_bytes(bytes([n]))
    store = TextureStore(max_keys=2)
    keys = [store.url(files[0], "glb"), store.url(files[1], "glb")]
    store.url(files[0], "glb")  # asked for again: the newest
    keys.append(store.url(files[2], "glb"))
    assert [store.get(key.removeprefix("/t/")) is not None for key in keys] == [True, False, True]


def test_a_file_is_hashed_once_while_its_size_and_time_stay(tmp_path: Path) -> None:
    a = tmp_path / "a.glb"
    a.write_bytes(b"first")
    store = TextureStore()
    first = store.url(a, "glb")
    stat = a.stat()
    a.write_bytes(b"other")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store.url(a, "glb") == first
    assert TextureStore().url(a, "glb") != first


def test_the_hashes_remembered_are_bounded_by_the_keys(tmp_path: Path) -> None:
    a, b = tmp_path / "a.glb", tmp_path / "b.glb"
    a.write_bytes(b"first")
    b.write_bytes(b"b")
    store = TextureStore(max_keys=1)
    first = store.url(a, "glb")
    stat = a.stat()
    a.write_bytes(b"other")
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    store.url(b, "glb")  # one hash remembered at most: a's is forgotten
    assert store.url(a, "glb") != first


def test_a_thumb_is_scaled_bilinearly(tmp_path: Path) -> None:
    rgb = _rgb(tmp_path / "rgb.png", 300, 100)
    expected = io.BytesIO()
    thumb = Image.open(rgb).convert("RGB").resize((256, 85), Image.Resampling.BILINEAR)
    thumb.save(expected, format="JPEG", quality=90)
    assert derive(rgb, "thumb") == expected.getvalue()


def test_bytes_as_large_as_the_cache_are_kept(tmp_path: Path) -> None:
    exact = tmp_path / "exact.glb"
    exact.write_bytes(b"x" * 100)
    store = TextureStore(cache_bytes=100)
    key = store.url(exact, "glb").removeprefix("/t/")
    store.get(key)
    exact.unlink()
    assert store.get(key) == (b"x" * 100, "model/gltf-binary")


def test_what_the_cache_holds_is_counted_after_each_eviction(tmp_path: Path) -> None:
    files = [tmp_path / f"{n}.glb" for n in range(4)]
    for n, path in enumerate(files):
        path.write_bytes(bytes([n]) * 100)
    store = TextureStore(cache_bytes=250)
    keys = [store.url(path, "glb").removeprefix("/t/") for path in files]
    for key in keys:
        store.get(key)  # 0 goes for 2, 1 for 3: two at most
    for path in files:
        path.unlink()
    assert [store.get(key) is not None for key in keys] == [False, False, True, True]
