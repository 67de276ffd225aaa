"""The OpenVINO backend on this machine's CPU (``openvino:CPU``): every preset against the torch
engine on the same tiny weights and seeds, the seam of a panorama, bf16, the converted-model cache,
and what a user is told when something is missing. OpenVINO's GPU and NPU devices are not on CI's
machines: their tests skip, saying so.

Tolerances: in f32 OpenVINO computes what torch computes up to float rounding, so RGB is within one
level and depth within 1e-3 (a 6-channel model's depth is rebuilt from two rounded bytes: one
high-byte step, 257/65535, where a value sits on a rounding boundary). In bf16 the tiny random
weights amplify rounding: the mean depth difference is bounded as for bf16 on CUDA (0.03).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ldm3d_engine import (
    BackendFailed,
    DepthRequest,
    DeviceNotAvailable,
    EngineSettings,
    GenerateRequest,
    load_engine,
)
from ldm3d_engine.backends import devices
from ldm3d_engine.types import Img2ImgRequest, UpscaleRequest

ov = pytest.importorskip("openvino", reason="the [openvino] extra is not installed")

REQUEST = GenerateRequest("a desert at dusk", seed=5, width=256, height=128, steps=3)
K = 4  # latent columns to roll (a multiple of 2 per UNet downsampling: the tiny UNet downsamples once)


@pytest.fixture(scope="module")
def ov_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ov-cache")


@pytest.fixture(scope="module")
def on_openvino(tiny_dir: Path, ov_cache: Path) -> Callable[..., Any]:
    engines: dict[tuple[str, str, str | None], Any] = {}

    def load(model: str, dtype: str = "float32", depth_model: str | None = None) -> Any:
        key = (model, dtype, depth_model)
        if key not in engines:
            settings = EngineSettings(
                model=model, device="openvino:CPU", dtype=dtype, tiny_dir=str(tiny_dir),
                ov_cache=str(ov_cache), depth_model=depth_model,
            )  # fmt: skip
            engines[key] = load_engine(settings)
        return engines[key]

    return load


def close(a: Any, b: Any, depth_max: float = 1e-3) -> None:
    assert a.rgb.shape == b.rgb.shape
    assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).max() <= 1
    assert np.abs(a.depth_float - b.depth_float).max() <= depth_max


@pytest.mark.parametrize(
    ("model", "seamless", "depth_max"),
    [("tiny", False, 1e-3), ("tiny-pano", True, 1e-3), ("tiny-6c", True, 257 / 65535)],  # flat, wrapped, 6 channels
)
def test_text_to_rgbd_on_openvino_gives_the_torch_engines_pictures(
    load_tiny: Callable[[str], Any], on_openvino: Callable[..., Any], model: str, seamless: bool, depth_max: float
) -> None:
    request = GenerateRequest(REQUEST.prompt, seed=5, width=256, height=128, steps=3, seamless=seamless)
    got = on_openvino(model).generate(request)
    close(got, load_tiny(model).generate(request), depth_max)
    assert got.device == "openvino:CPU"
    assert got.dtype == "float32 (OpenVINO CPU; VAE and depth float32)"


def test_the_seam_of_a_panorama_stays_exact_on_openvino(on_openvino: Callable[..., Any]) -> None:
    """Rolling the starting latents by K columns rolls the world by 8·K pixels: the circular padding
    survived conversion (without it the edges differ by far more; test_seamless shows)."""
    engine = on_openvino("tiny-pano")
    req = engine.resolve(GenerateRequest("a desert", seed=21, width=256, height=128, steps=4, seamless=True))
    latents = engine.initial_latents(req)
    a = engine.generate_from_latents(req, latents)
    b = engine.generate_from_latents(req, torch.roll(latents, shifts=K, dims=3))
    assert np.abs(np.roll(a.depth_float, 8 * K, axis=1) - b.depth_float).max() <= 1e-4
    assert np.abs(np.roll(a.rgb, 8 * K, axis=1).astype(int) - b.rgb.astype(int)).max() <= 1
    flat = dict(req.__dict__, seamless=False)
    c = engine.generate_from_latents(type(req)(**flat), latents)
    d = engine.generate_from_latents(type(req)(**flat), torch.roll(latents, shifts=K, dims=3))
    assert np.abs(np.roll(c.depth_float, 8 * K, axis=1) - d.depth_float).max() > 0.05  # flat: a wall at the edge


def test_img2img_and_upscale_on_openvino_match_torch(
    load_tiny: Callable[[str], Any], on_openvino: Callable[..., Any]
) -> None:
    source = load_tiny("tiny").generate(GenerateRequest("a reef", seed=2, width=128, height=64, steps=2))
    request = Img2ImgRequest("a desert", seed=4, steps=4, strength=0.6, width=128, height=64)
    close(
        on_openvino("tiny").img2img(request, source.rgb, source.depth),
        load_tiny("tiny").img2img(request, source.rgb, source.depth),
    )
    upscale = UpscaleRequest(seed=3, steps=3)
    close(
        on_openvino("tiny-sr").upscale(upscale, source.rgb, source.depth),
        load_tiny("tiny-sr").upscale(upscale, source.rgb, source.depth),
    )


@pytest.mark.parametrize("model", ["tiny-ldm", "tiny-ldm-text"])
def test_the_compvis_models_on_openvino_match_torch(
    tiny_dir: Path, on_openvino: Callable[..., Any], model: str
) -> None:
    request = GenerateRequest("a forest", seed=7, steps=3)
    reference = load_engine(EngineSettings(model=model, device="cpu", tiny_dir=str(tiny_dir)))
    got, want = on_openvino(model).generate(request), reference.generate(request)
    assert np.abs(got.rgb.astype(int) - want.rgb.astype(int)).max() <= 1
    # depth is DPT's estimate of the RGB, min–max normalised: a level of RGB moves it a little
    assert np.abs(got.depth_float - want.depth_float).mean() < 2e-3


def test_depth_estimation_of_a_360_picture_on_openvino_matches_torch(
    tiny_dir: Path, on_openvino: Callable[..., Any]
) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (128, 256, 3), dtype=np.uint8)
    engine = on_openvino("tiny-pano", depth_model="tiny-dpt")
    reference = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir), depth_model="tiny-dpt"))
    got = engine.estimate_depth(DepthRequest(equirect=True), rgb)
    want = reference.estimate_depth(DepthRequest(equirect=True), rgb)
    assert got.depth_model == "builtin:tiny-dpt" and got.device == "openvino:CPU"
    assert np.abs(got.depth_float - want.depth_float).max() <= 1e-3


def test_bf16_on_openvino_stays_close_and_says_so(
    load_tiny: Callable[[str], Any], on_openvino: Callable[..., Any]
) -> None:
    got = on_openvino("tiny-pano", "bfloat16").generate(REQUEST)
    want = load_tiny("tiny-pano").generate(REQUEST)
    assert got.dtype == "bfloat16 (OpenVINO CPU; VAE and depth float32)"
    assert np.abs(got.depth_float - want.depth_float).mean() < 0.03
    assert not np.array_equal(got.rgb, want.rgb)  # it did run in bf16


def test_the_second_start_reads_converted_models_from_the_cache(
    tiny_dir: Path, ov_cache: Path, on_openvino: Callable[..., Any], caplog: Any
) -> None:
    """The module's first ``tiny`` engine converted into ``ov_cache`` (in whichever test asked first); a
    second start on the same cache converts nothing and draws the same pixels."""
    request = GenerateRequest("a cave", seed=1, width=128, height=64, steps=2)
    first = on_openvino("tiny").generate(request)
    settings = EngineSettings(model="tiny", device="openvino:CPU", dtype="float32", tiny_dir=str(tiny_dir),
                              ov_cache=str(ov_cache))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ldm3d_engine.backends.openvino"):
        second = load_engine(settings).generate(request)
    assert "converted the" not in caplog.text and "unet on OpenVINO CPU (f32): converted model from the cache" in (
        caplog.text
    )
    assert np.array_equal(first.rgb, second.rgb) and np.array_equal(first.depth, second.depth)


def test_what_a_killed_conversion_leaves_is_never_read_and_is_cleared(
    tiny_dir: Path, ov_cache: Path, on_openvino: Callable[..., Any], tmp_path: Path
) -> None:
    """A conversion writes into ``.<key>.<pid>.<thread>.tmp`` and renames it; a kill leaves that folder
    (here: made by hand, as a kill midway through saving would leave it, with a dead pid), beside the
    models that were converted whole (the module's, copied)."""
    on_openvino("tiny")  # its parts converted into the module's cache
    cache = tmp_path / "cache"
    shutil.copytree(ov_cache, cache, ignore=shutil.ignore_patterns("compiled"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = cache / f".unet-forward-half.{int(dead.stdout)}.1.tmp"
    left.mkdir()
    (left / "model.xml").write_text("<net half written", encoding="utf-8")
    settings = EngineSettings(model="tiny", device="openvino:CPU", dtype="float32", tiny_dir=str(tiny_dir),
                              ov_cache=str(cache))  # fmt: skip
    result = load_engine(settings).generate(GenerateRequest("a cave", seed=1, width=128, height=64, steps=2))
    assert result.rgb.shape == (64, 128, 3)
    assert not left.exists()
    assert all((folder / "model.xml").is_file() for folder in cache.iterdir() if folder.name != "compiled")


def test_other_weights_with_the_same_config_are_converted_again(tiny_dir: Path) -> None:
    from ldm3d_engine.backends.openvino_parts import fingerprint

    engine = load_engine(EngineSettings(model="tiny", device="cpu", tiny_dir=str(tiny_dir)))
    before = fingerprint(engine.unet, "unet")
    with torch.no_grad():
        engine.unet.conv_out.weight[0, 0, 0, 0] += 0.5
    assert fingerprint(engine.unet, "unet") != before


def test_int8_unet_weights_on_openvino(
    tiny_dir: Path, tmp_path: Path, load_tiny: Callable[[str], Any], on_openvino: Callable[..., Any]
) -> None:
    settings = EngineSettings(model="tiny-pano", device="openvino:CPU", dtype="float32", ov_weights="int8",
                              tiny_dir=str(tiny_dir), ov_cache=str(tmp_path))  # fmt: skip
    got = load_engine(settings).generate(REQUEST)
    want = load_tiny("tiny-pano").generate(REQUEST)
    assert got.dtype == "float32 (OpenVINO CPU; UNet weights int8; VAE and depth float32)"
    plain = on_openvino("tiny-pano").generate(REQUEST)  # the same device and precision, weights as loaded
    assert np.abs(got.rgb.astype(int) - plain.rgb.astype(int)).max() > 1  # compressed: not the same weights
    assert np.abs(got.depth_float - want.depth_float).mean() < 0.03
    assert [p.name.split("-")[0] for p in tmp_path.iterdir() if p.name.endswith("-int8")] == ["unet"]


def test_int8_weights_are_for_openvino_only() -> None:
    with pytest.raises(DeviceNotAvailable, match=r"ov_weights 'int8' compresses OpenVINO's UNet; 'cpu' is not"):
        devices.resolve_placement("cpu", None, None, "int8")
    out = subprocess.run(
        [sys.executable, "-m", "bridge.cli", "serve", "--ov-weights", "int8", "--port", "0", "--no-zeroconf"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode != 0
    assert "ov_weights" in out.stderr and "it needs device openvino:NAME" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_bf16_on_the_cpu_with_torch(tiny_dir: Path, load_tiny: Callable[[str], Any]) -> None:
    if devices.cpu_bf16() is None:
        pytest.skip("this CPU has no native bfloat16 (amx_bf16/avx512_bf16); the refusal is tested below")
    engine = load_engine(EngineSettings(model="tiny-pano", device="cpu", dtype="bfloat16", tiny_dir=str(tiny_dir)))
    assert next(engine.unet.parameters()).dtype == torch.bfloat16
    assert next(engine.vae.parameters()).dtype == torch.float32  # depth keeps its 16 bits
    reference = load_tiny("tiny-pano")
    req = reference.resolve(REQUEST)
    noise = reference.initial_latents(req)  # fp32 noise for both: the same starting point
    got, want = (
        engine.generate_from_latents(engine.resolve(REQUEST), noise),
        reference.generate_from_latents(req, noise),
    )
    assert got.dtype == "bfloat16" and got.depth.dtype == np.uint16
    assert np.abs(got.depth_float - want.depth_float).mean() < 0.03


def test_bf16_on_a_cpu_without_it_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_bf16", lambda: None)
    with pytest.raises(DeviceNotAvailable, match=r"needs native bfloat16 instructions .* --device openvino:CPU"):
        devices.resolve_placement("cpu", "bfloat16")


def test_a_device_openvino_does_not_list_is_refused_with_the_list() -> None:
    with pytest.raises(DeviceNotAvailable, match=r"OpenVINO has no device 'NPU7' here; it lists openvino:CPU"):
        devices.resolve_placement("openvino:NPU7", None)


def test_a_dtype_the_device_does_not_run_natively_is_refused(tmp_path: Path) -> None:
    if "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU runs float16 natively")
    with pytest.raises(DeviceNotAvailable, match=r"dtype 'float16' is not native on openvino:CPU; it runs .*float32"):
        devices.resolve_placement("openvino:CPU", "float16", str(tmp_path))


def test_torch_only_options_are_refused_on_openvino(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DeviceNotAvailable, match="compile and vae_tiling are torch's"):
        load_engine(EngineSettings(model="tiny", device="openvino:CPU", tiny_dir=str(tiny_dir), compile=True,
                                   ov_cache=str(tmp_path)))  # fmt: skip


def test_a_conversion_that_fails_names_the_part(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("aten::frobnicate is not supported")

    monkeypatch.setattr(ov, "convert_model", refuse)
    engine = load_engine(EngineSettings(model="tiny", device="openvino:CPU", tiny_dir=str(tiny_dir),
                                        ov_cache=str(tmp_path)))  # fmt: skip
    with pytest.raises(BackendFailed, match=r"OpenVINO could not convert the text_encoder: RuntimeError: aten::frob"):
        engine.generate(GenerateRequest("a cave", width=128, height=64, steps=1))
    assert [p.name for p in tmp_path.iterdir() if p.name != "compiled"] == []  # nothing half-written


def test_without_the_extra_the_message_names_it() -> None:
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from ldm3d_engine.backends.devices import resolve_placement\n"
        "try:\n    resolve_placement('openvino:CPU', None)\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("DeviceNotAvailable device 'openvino:CPU' needs the OpenVINO runtime: install this project "
                          "with the [openvino] extra")  # fmt: skip


@pytest.mark.parametrize("name", ["GPU", "NPU"])
def test_intel_gpu_and_npu(name: str, tiny_dir: Path, tmp_path: Path, load_tiny: Callable[[str], Any]) -> None:
    if name not in ov.Core().available_devices:
        pytest.skip(f"OpenVINO lists no {name} here (CI's machines have none); run on an Intel GPU/NPU machine")
    engine = load_engine(EngineSettings(model="tiny-pano", device=f"openvino:{name}", dtype="float32",
                                        tiny_dir=str(tiny_dir), ov_cache=str(tmp_path)))  # fmt: skip
    got = engine.generate(REQUEST)
    assert np.abs(got.depth_float - load_tiny("tiny-pano").generate(REQUEST).depth_float).mean() < 0.03


def test_serve_on_openvino_converts_both_seamless_settings_while_warming_up(tiny_dir: Path, tmp_path: Path) -> None:
    """The real ``serve --device openvino:CPU`` over UDP: the warm-up converts the UNet for both seamless
    settings (a conversion mid-show would hold a job for seconds, minutes with a real UNet), so the
    jobs that follow convert nothing; the job's meta.json names the device and its precision."""
    from bridge.osc.client import OscClient
    from ldm3d_engine.backends.openvino import device_dtypes

    from .served import serve_tiny

    fastest = device_dtypes(ov.Core(), "CPU")[0]  # no --dtype: the fastest the device runs natively
    built = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir)))
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "ldm3d-bridge").symlink_to(built.location.folder.parent, target_is_directory=True)
    converted = tmp_path / "openvino"
    extra = ("--model", "tiny-pano", "--device", "openvino:CPU", "--ov-cache", str(converted), "--no-http")
    proc, port = serve_tiny(tmp_path / "out", *extra, cache=cache, env={"LDM3D_BRIDGE_WARMUP": "true"})
    try:
        with OscClient("127.0.0.1", port) as client:
            client.subscribe_self(timeout=60)
            deadline = time.monotonic() + 300  # the model loads, then the warm-up converts (about 25 s here)
            while True:
                client.send("/ldm3d/status")
                state = client.wait_for(["/ldm3d/state"], 5)[-1].args[0]
                if state == "idle" or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert state == "idle"
            unets = sorted(p.name.split("-")[3] for p in converted.iterdir() if p.name.startswith("unet-"))
            assert unets == ["flat", "wrap"]
            before = set(converted.iterdir())
            for seamless in (1, 0):
                client.send("/ldm3d/generate", "a glacier", "seamless", seamless, "steps", 2)
                ready = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 120)[-1]
                assert ready.address == "/ldm3d/ready", ready.args
                meta = json.loads(Path(str(ready.args[3])).read_text())
                assert meta["device"] == "openvino:CPU" and meta["dtype"].startswith(f"{fastest} (OpenVINO CPU")
            assert set(converted.iterdir()) == before
    finally:
        proc.terminate()
        assert proc.wait(30) == 0


def test_a_bridge_whose_conversion_fails_serves_nothing_and_says_which_part(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm-up converts; a part OpenVINO cannot take fails the worker's start, so a job gets
    ``model_failed`` naming the part, instead of a bridge running on half a backend."""
    from bridge.osc.client import OscClient
    from bridge.serve.server import Bridge
    from bridge.settings import BridgeSettings

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("aten::frobnicate is not supported")

    monkeypatch.setattr(ov, "convert_model", refuse)
    settings = EngineSettings(model="tiny", device="openvino:CPU", tiny_dir=str(tiny_dir), ov_cache=str(tmp_path / "c"))
    values: dict[str, Any] = {"model": "tiny", "device": "openvino:CPU", "host": "127.0.0.1", "port": 0,
                              "output": str(tmp_path / "out"), "zeroconf": False, "http": False}  # fmt: skip
    bridge = Bridge(BridgeSettings(**values), lambda: load_engine(settings))
    bridge.start()
    try:
        with OscClient(*bridge.address) as client:
            client.send("/ldm3d/generate", "a world that cannot be drawn")
            error = client.wait_for(["/ldm3d/error"], 120)[-1]
            assert error.args[1] == "model_failed", error.args
            assert "OpenVINO could not convert the text_encoder: RuntimeError: aten::frobnicate" in str(error.args[2])
    finally:
        bridge.stop()
