"""Depth estimation through the bridge, over real UDP: /ldm3d/depth (a picture or a 360° photo
becomes a world), img2img without a depth map, the CompVis LDMs served as RGBD sources, and the
command line's ``depth``. The depth model is tiny-dpt (random weights, built offline)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.osc.client import OscClient
from bridge.output.images import read_depth16, read_rgb
from bridge.serve.server import Bridge

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
READY_OR_ERROR = ("/ldm3d/ready", "/ldm3d/error")


@pytest.fixture(scope="module")
def load_with_dpt(tiny_dir: Path) -> Callable[[str], Any]:
    from ldm3d_engine import EngineSettings, load_engine

    @functools.cache
    def load(model: str) -> Any:
        return load_engine(EngineSettings(model=model, tiny_dir=str(tiny_dir), depth_model="tiny-dpt"))

    return load


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (128, 256, 3), dtype=np.uint8), "RGB").save(folder / "dome.png")
    Image.fromarray(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), "RGB").save(folder / "photo.jpg", quality=95)
    return folder


def _meta(ready: Any) -> dict[str, Any]:
    assert ready.address == "/ldm3d/ready", ready.args
    return json.loads(Path(str(ready.args[3])).read_text())  # type: ignore[no-any-return]


def test_a_360_photo_becomes_a_world(
    start_bridge: Start, client_for: ClientFor, load_with_dpt: Callable[[str], Any], pictures: Path
) -> None:
    bridge = start_bridge(
        model="tiny-pano", engine_factory=lambda: load_with_dpt("tiny-pano"), input_dirs=(str(pictures),)
    )
    client = client_for(bridge)
    client.send("/ldm3d/depth", "dome.png")
    seen = client.wait_for(READY_OR_ERROR, 60)
    ready = seen[-1]
    assert ready.args[4:6] == (256, 128)
    assert [m.address for m in seen].count("/ldm3d/progress") >= 1  # views counted as steps
    meta = _meta(ready)
    assert meta["mode"] == "depth" and meta["seamless"] is True
    assert (meta["depth_source"], meta["depth_model"]) == ("dpt", "builtin:tiny-dpt")
    assert meta["depth_method"] == "10 perspective views blended"
    assert meta["input_image"] == str(pictures / "dome.png")
    assert np.array_equal(read_rgb(Path(str(ready.args[1]))), np.asarray(Image.open(pictures / "dome.png")))
    depth = read_depth16(Path(str(ready.args[2])))
    assert depth.dtype == np.uint16 and depth.shape == (128, 256) and depth.max() == 65535
    # An ordinary picture on the same (panorama) bridge: said so, or refused with the reason.
    client.send("/ldm3d/depth", "photo.jpg", "equirect", 0)
    meta = _meta(client.wait_for(READY_OR_ERROR, 60)[-1])
    assert meta["depth_method"] == "whole picture" and (meta["width"], meta["height"]) == (90, 60)
    client.send("/ldm3d/depth", "photo.jpg")
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert error.args[1] == "bad_arguments" and "twice as wide as high; this one is 90×60" in str(error.args[2])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ((), "bad_arguments", "/ldm3d/depth needs an image path"),
        (("../x.png",), "bad_arguments", "'..' is not allowed"),
        (("missing.png",), "bad_arguments", "not a file"),
        (("photo.jpg", "equirect", "maybe"), "bad_arguments", "equirect"),
    ],
)
def test_depth_refusals(
    start_bridge: Start,
    client_for: ClientFor,
    load_with_dpt: Callable[[str], Any],
    pictures: Path,
    args: tuple[object, ...],
    code: str,
    message: str,
) -> None:
    bridge = start_bridge(engine_factory=lambda: load_with_dpt("tiny"), input_dirs=(str(pictures),))
    client = client_for(bridge)
    client.send("/ldm3d/depth", *args)  # type: ignore[arg-type]
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert error.args[1] == code and message in str(error.args[2])


def test_depth_is_off_without_an_estimator(start_bridge: Start, client_for: ClientFor, pictures: Path) -> None:
    client = client_for(start_bridge(input_dirs=(str(pictures),)))  # plain tiny: no --depth-model
    client.send("/ldm3d/depth", "photo.jpg")
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert error.args[1] == "not_supported" and "--depth-model dpt-large" in str(error.args[2])


def test_img2img_without_a_depth_map_gets_an_estimate(
    start_bridge: Start, client_for: ClientFor, load_with_dpt: Callable[[str], Any], pictures: Path
) -> None:
    bridge = start_bridge(engine_factory=lambda: load_with_dpt("tiny"), input_dirs=(str(pictures),))
    client = client_for(bridge)
    client.send("/ldm3d/img2img", "photo.jpg", "a cave", "steps", 2, "width", 96, "height", 64)
    meta = _meta(client.wait_for(READY_OR_ERROR, 60)[-1])
    assert (meta["depth_source"], meta["depth_method"]) == ("dpt", "whole picture")
    assert meta["timings"]["depth_s"] > 0
    client.send("/ldm3d/img2img", "photo.jpg", "a cave", "steps", 2, "width", 96, "height", 64, "flat_depth", 1)
    meta = _meta(client.wait_for(READY_OR_ERROR, 60)[-1])
    assert meta["depth_source"] == "flat 0.5 (no depth map was given)" and "depth_model" not in meta


def test_compvis_ldms_serve_rgbd_worlds(
    start_bridge: Start, client_for: ClientFor, tiny_dir: Path, pictures: Path
) -> None:
    from ldm3d_engine import EngineSettings, load_engine

    text = start_bridge(
        model="tiny-ldm-text",
        engine_factory=lambda: load_engine(EngineSettings(model="tiny-ldm-text", tiny_dir=str(tiny_dir))),
        width=128,
        height=128,
        input_dirs=(str(pictures),),
    )
    client = client_for(text)
    client.send("/ldm3d/generate", "a red forest", "steps", 3)
    ready = client.wait_for(READY_OR_ERROR, 60)[-1]
    meta = _meta(ready)
    assert meta["model"] == "builtin:tiny-ldm-text" and meta["depth_source"] == "dpt"
    assert "prompt_ignored" not in meta and meta["prompt_used"] == "a red forest"
    assert read_depth16(Path(str(ready.args[2]))).max() == 65535
    client.send("/ldm3d/img2img", "photo.jpg", "a cave", "steps", 2)
    error = client.wait_for(["/ldm3d/error"], 30)[-1]
    assert error.args[1] == "bad_arguments" and "makes RGB only" in str(error.args[2])
    text.stop()

    faces = start_bridge(
        model="tiny-ldm",
        engine_factory=lambda: load_engine(EngineSettings(model="tiny-ldm", tiny_dir=str(tiny_dir))),
        width=128,
        height=128,
    )
    client = client_for(faces)
    client.send("/ldm3d/generate", "anything at all", "steps", 2)
    meta = _meta(client.wait_for(READY_OR_ERROR, 60)[-1])
    assert meta["prompt_ignored"] is True and meta["prompt"] == "anything at all" and meta["prompt_used"] == ""


def test_the_command_line_depth(pictures: Path, tmp_path: Path, tiny_dir: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tiny_dir.parent / "xdg"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300, env=env)
    command = [sys.executable, "-m", "bridge.cli", "depth", str(pictures / "dome.png"), "--equirect", "on"]
    out = run([*command, "--depth-model", "tiny-dpt", "--output", str(tmp_path / "out")])
    assert out.returncode == 0, out.stderr
    folder = Path(out.stdout.strip().splitlines()[-1])
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["depth_method"] == "10 perspective views blended" and meta["depth_model"] == "builtin:tiny-dpt"
    missing = run([*command, "--output", str(tmp_path / "out"), "--offline"])  # dpt-large: not on this machine
    assert missing.returncode != 0
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .startswith("ldm3d-bridge: error: model 'Intel/dpt-large' is not in the local cache")
    )
    assert "--depth-model" in missing.stderr


def test_serve_with_a_depth_model(tmp_path: Path, tiny_dir: Path, pictures: Path) -> None:
    """The real ``serve --model tiny-pano --depth-model tiny-dpt``: a 360° photo made a world."""
    from ldm3d_engine import EngineSettings, load_engine

    from .served import serve_tiny

    built = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir), depth_model="tiny-dpt"))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ldm3d-bridge").symlink_to(built.location.folder.parent, target_is_directory=True)
    extra = ("--model", "tiny-pano", "--depth-model", "tiny-dpt", "--input-dir", str(pictures), "--no-http")
    proc, port = serve_tiny(tmp_path / "out", *extra, cache=cache)
    try:
        with OscClient("127.0.0.1", port) as client:
            client.subscribe_self(timeout=60)  # confirmed: /ldm3d/ready comes back in full
            for _ in range(120):  # until the model (and its estimator) is loaded
                client.send("/ldm3d/status")
                if client.wait_for(["/ldm3d/state"], 5)[-1].args[0] == "idle":
                    break
            client.send("/ldm3d/depth", "dome.png")
            meta = _meta(client.wait_for(READY_OR_ERROR, 120)[-1])
            assert meta["depth_method"] == "10 perspective views blended" and meta["seamless"] is True
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
