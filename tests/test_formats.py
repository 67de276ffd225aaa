"""Texture formats (issue 19): every format round-trips exactly (RGB bytes, 16-bit depth values), is
read back by two independent readers (Pillow and OpenCV), and is written atomically; a job may ask
for its own format over OSC."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bridge.errors import WriteFailed
from bridge.osc.client import OscClient
from bridge.output.formats import FORMATS, check_format, encode_jpeg, texture
from bridge.output.job_ids import new_job_id
from bridge.output.writer import TextureWriter
from bridge.serve.server import Bridge
from bridge.settings import FORMAT_NAMES, BridgeSettings, SettingsError
from ldm3d_engine.types import RGBDResult

from .test_writer import fake_result

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
EXTENSION = {"tiff": ".tif", "png": ".png", "png-fast": ".png"}


def result(width: int = 96, height: int = 48) -> RGBDResult:
    """Every byte value in RGB and the full 16-bit range in depth, so a lossy step cannot hide."""
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = rng.integers(0, 65536, (height, width), dtype=np.uint16)
    depth[0, :2] = (0, 65535)
    return replace(fake_result(width, height), rgb=rgb, depth=depth, depth_float=depth.astype(np.float32) / 65535)


def test_the_settings_and_the_encoders_know_the_same_formats() -> None:
    assert tuple(FORMATS) == FORMAT_NAMES
    with pytest.raises(SettingsError, match="setting format='bmp': use tiff, png-fast, png"):
        BridgeSettings(format="bmp").check()


def _saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_each_encoder_uses_the_settings_it_was_chosen_for() -> None:
    """Each format as measured in bench/bridge_latency.py: PNG at zlib level 1 (Pillow's default is 6,
    3-6x slower), libspng storing without compression, the JPEG preview at quality 92."""
    rng = np.random.default_rng(1)
    rgb = (rng.integers(0, 4, (64, 96, 3)) * 60).astype(np.uint8)  # compressible, not trivially
    image = Image.fromarray(rgb, "RGB")
    assert FORMATS["png"].encode_rgb(rgb) == _saved(image, "PNG", compress_level=1)
    assert encode_jpeg(rgb) == _saved(image, "JPEG", quality=92)
    flat = np.zeros((64, 96, 3), np.uint8)
    assert len(FORMATS["png-fast"].encode_rgb(flat)) > flat.nbytes  # stored, not deflated


def test_a_format_the_bridge_does_not_have_is_named_with_those_it_has(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"^unknown format 'webp'; use tiff, png-fast, png$"):
        check_format("webp")
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # the [fastpng] extra not installed
    with pytest.raises(ValueError, match=r"^format png-fast needs libspng .*pip install 'ldm3d-bridge\[fastpng\]'$"):
        check_format("png-fast")
    assert check_format("png") is FORMATS["png"]


def test_a_texture_not_written_yet_is_looked_for_as_tiff(tmp_path: Path) -> None:
    assert texture(tmp_path, "depth") == tmp_path / "depth.tif"
    (tmp_path / "depth.png").write_bytes(b"")
    assert texture(tmp_path, "depth") == tmp_path / "depth.png"


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_round_trips_exactly_for_two_readers(tmp_path: Path, fmt: str) -> None:
    expected = result()
    writer = TextureWriter(tmp_path, fmt=fmt)
    writer.prepare()
    try:
        files = writer.write(new_job_id(), expected)
    finally:
        writer.close()
    assert files.rgb.name == f"rgb{EXTENSION[fmt]}" and files.depth.name == f"depth{EXTENSION[fmt]}"
    meta = json.loads(files.meta.read_text())
    assert meta["format"] == fmt and meta["files"]["rgb"] == str(files.rgb)
    # Pillow
    with Image.open(files.rgb) as rgb, Image.open(files.depth) as depth:
        assert rgb.mode == "RGB" and depth.mode.startswith("I;16")
        assert np.array_equal(np.asarray(rgb), expected.rgb)
        assert np.array_equal(np.asarray(depth).astype(np.uint16), expected.depth)
    # OpenCV (its own libpng/libtiff): BGR order, and 16 bits kept with IMREAD_UNCHANGED
    bgr = cv2.imread(str(files.rgb), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(bgr[..., ::-1], expected.rgb)
    depth16 = cv2.imread(str(files.depth), cv2.IMREAD_UNCHANGED)
    assert depth16.dtype == np.uint16 and np.array_equal(depth16, expected.depth)
    assert texture(files.folder, "rgb") == files.rgb and writer.find(files.job_id) == files


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_is_written_atomically(tmp_path: Path, fmt: str) -> None:
    writer = TextureWriter(tmp_path, fmt=fmt)
    writer.prepare()
    job_id = new_job_id()
    (tmp_path / job_id).write_text("a file where the job folder must go")  # the final rename fails
    with pytest.raises(WriteFailed):
        writer.write(job_id, result())
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([job_id, ".ldm3d-bridge.lock"])  # nothing else


def test_a_job_asks_for_its_own_format_over_osc(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()  # the default: tiff
    client = client_for(bridge)
    client.send("/ldm3d/generate", "a reef", "steps", 1)
    tif = client.wait_for(["/ldm3d/ready"], 60)[-1]
    client.send("/ldm3d/generate", "a reef", "steps", 1, "format", "png")
    png = client.wait_for(["/ldm3d/ready"], 60)[-1]
    assert str(tif.args[1]).endswith("rgb.tif") and str(tif.args[2]).endswith("depth.tif")
    assert str(png.args[1]).endswith("rgb.png") and str(png.args[2]).endswith("depth.png")
    latest = json.loads((bridge.writer.root / "latest.json").read_text())
    assert latest["rgb"] == png.args[1]
    client.send("/ldm3d/recall", tif.args[0])  # an earlier job, in its own format
    assert client.wait_for(["/ldm3d/ready"], 5)[-1].args == tif.args
    client.send("/ldm3d/generate", "a reef", "format", "bmp")
    seen = client.wait_for(["/ldm3d/error"], 5)
    assert seen[-1].args[1] == "bad_arguments" and "use tiff, png-fast, png" in str(seen[-1].args[2])
    assert "/ldm3d/accepted" not in [m.address for m in seen]
