"""``ldm3d-bridge preview`` on the live folders: a worker's preview slot (``previews/<worker>``: rgb.png and
a 16-bit depth.png at the latent size, 1/8 of the world) and a morph's frame (``morphs/<id>/NNNN``: rgb
and depth in the job's format), written with the bridge's own encoders, rendered by Mesa (tests/test_preview.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from bridge.cli.main import main
from bridge.output.formats import FORMATS, encode_png

pytest.importorskip("moderngl")
MORPH = "20261122-100010-000-0004"


def _halves(width: int, height: int) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """Left half red, right half blue (the panorama's middle, straight ahead, is where they meet: the view
    at yaw -90 sees red, at yaw 90 blue); depth 0.5 (on the sphere)."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (220, 0, 0)
    rgb[:, width // 2 :] = (0, 0, 220)
    return rgb, np.full((height, width), 32768, np.uint16)


def _looks(out: Path, yaw: float, folder: Path) -> npt.NDArray[np.uint8]:
    assert main(["-q", "preview", str(folder), "--out", str(out), "--size", "64x48", "--yaw", str(yaw)]) == 0
    image = np.asarray(Image.open(out))
    assert image.shape == (48, 64, 3)
    magenta = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 255)
    assert not magenta.any(), "the sphere has a gap"
    return image


@pytest.mark.parametrize("size", [(8, 8), (128, 64)])  # the tiny model's 64×64 world; a 1024×512 one
def test_preview_renders_a_worker_preview_slot(tmp_path: Path, size: tuple[int, int]) -> None:
    slot = tmp_path / "out" / "previews" / "0"
    slot.mkdir(parents=True)
    rgb, depth = _halves(*size)
    (slot / "rgb.png").write_bytes(encode_png(rgb))  # as bridge/workers/previews.py writes the slot
    (slot / "depth.png").write_bytes(encode_png(depth))
    (slot / ".ldm3d-rgb.png.4242.tmp").write_bytes(b"half a picture")  # a preview being replaced
    left, right = _looks(tmp_path / "l.png", -90, slot), _looks(tmp_path / "r.png", 90, slot)
    assert left[24, 32, 0] > 150 > left[24, 32, 2] and right[24, 32, 2] > 150 > right[24, 32, 0]


def test_preview_renders_a_morph_frame(tmp_path: Path) -> None:
    frame = tmp_path / "out" / "morphs" / MORPH / "0003"
    frame.mkdir(parents=True)
    tiff = FORMATS["tiff"]  # a morph's frames are in its job's format (TIFF by default)
    rgb, depth = _halves(64, 64)
    (frame / "rgb.tif").write_bytes(tiff.encode_rgb(rgb))
    (frame / "depth.tif").write_bytes(tiff.encode_depth(depth))
    (frame / "meta.json").write_text(json.dumps({"morph_id": MORPH, "frame": 3, "t": 0.6}))
    left = _looks(tmp_path / "l.png", -90, frame)
    assert left[24, 32, 0] > 150 > left[24, 32, 2]


def test_an_empty_slot_says_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slot = tmp_path / "previews" / "1"  # a worker that has sent no preview yet
    slot.mkdir(parents=True)
    assert main(["-q", "preview", str(slot), "--out", str(tmp_path / "x.png")]) == 1
    assert "rgb.tif (or .png) does not exist" in capsys.readouterr().err
