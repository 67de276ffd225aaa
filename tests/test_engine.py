"""The engine on the built-in tiny models: what a caller of Engine.generate sees."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ldm3d_engine import (
    Cancelled,
    CancelToken,
    DeviceNotAvailable,
    EngineSettings,
    GenerateRequest,
    InvalidRequest,
    ModelNotAvailable,
    OutOfMemory,
    UnknownModel,
    load_engine,
)
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.types import UpscaleRequest

Loader = Callable[[str], Engine]
SMALL = {"width": 64, "height": 64, "steps": 3}


def test_result_has_rgb_and_true_16_bit_depth(load_tiny: Loader) -> None:
    r = load_tiny("tiny").generate(GenerateRequest("a red house", seed=7, width=128, height=96, steps=3))
    assert r.rgb.shape == (96, 128, 3) and r.rgb.dtype == np.uint8
    assert r.depth.shape == (96, 128) and r.depth.dtype == np.uint16
    assert r.depth_float.dtype == np.float32 and 0.0 <= r.depth_float.min() <= r.depth_float.max() <= 1.0
    assert len(np.unique(r.depth)) > 256
    assert np.abs(r.depth.astype(np.float64) / 65535 - r.depth_float).max() <= 0.5 / 65535 + 1e-7
    assert r.seed == 7 and r.model_id == "builtin:tiny" and r.depth_layout == "rgbd4"
    assert r.timings.denoising_s > 0 and r.timings.decoding_s > 0 and r.timings.text_encoding_s > 0


def test_six_channel_model_decodes_16_bit_depth_from_byte_channels(load_tiny: Loader) -> None:
    r = load_tiny("tiny-6c").generate(GenerateRequest("a cave", seed=3, width=128, height=128, steps=3))
    assert r.depth_layout == "rgbd6" and r.depth.dtype == np.uint16
    assert len(np.unique(r.depth)) > 256
    # low bytes are used, i.e. the depth was not truncated to 8 bits
    assert len(np.unique(r.depth & 0xFF)) > 200


def _clearly_different(a: np.ndarray, b: np.ndarray) -> bool:
    """A visible change, not a stray pixel: over 15 % of the values move by more than 8 levels (a changed
    negative prompt or guidance moves about 27 % on the tiny model, another seed about 67 %)."""
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return bool((diff > 8).mean() > 0.15)


def test_same_seed_same_pixels_and_other_seed_other_pixels(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    a = engine.generate(GenerateRequest("dunes", seed=11, **SMALL))
    b = engine.generate(GenerateRequest("dunes", seed=11, **SMALL))
    c = engine.generate(GenerateRequest("dunes", seed=12, **SMALL))
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth, b.depth)
    assert _clearly_different(a.rgb, c.rgb)


def test_random_seed_is_reported_and_reproduces(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    a = engine.generate(GenerateRequest("dunes", seed=-1, **SMALL))
    assert 0 <= a.seed < 2**31
    b = engine.generate(GenerateRequest("dunes", seed=a.seed, **SMALL))
    assert np.array_equal(a.depth, b.depth)


def test_negative_prompt_and_guidance_change_the_picture(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    base = engine.generate(GenerateRequest("dunes", seed=5, **SMALL))
    neg = engine.generate(GenerateRequest("dunes", negative_prompt="water", seed=5, **SMALL))
    low = engine.generate(GenerateRequest("dunes", seed=5, guidance=1.0, **SMALL))
    assert _clearly_different(base.rgb, neg.rgb)
    assert _clearly_different(base.rgb, low.rgb)


@pytest.mark.parametrize("scheduler", ["ddim", "pndm", "dpm", "unipc", "euler_a", "euler"])
def test_every_scheduler_runs_and_reports_its_steps(load_tiny: Loader, scheduler: str) -> None:
    seen: list[tuple[int, int]] = []
    r = load_tiny("tiny").generate(
        GenerateRequest("dunes", seed=5, scheduler=scheduler, width=64, height=64, steps=4),
        on_step=lambda step, total: seen.append((step, total)),
    )
    # Progress counts the job's steps, also for PNDM, whose 4 steps take 5 UNet passes.
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert r.request.scheduler == scheduler and len(np.unique(r.depth)) > 256


@pytest.mark.parametrize(("model", "native"), [("tiny", "pndm"), ("tiny-pano", "ddim"), ("tiny-sr", "pndm")])
def test_the_default_scheduler_is_the_one_the_model_folder_names(load_tiny: Loader, model: str, native: str) -> None:
    engine = load_tiny(model)
    assert engine.preset.scheduler == "model" and engine.preset.native_scheduler == native
    if engine.preset.task == "text":
        r = engine.generate(GenerateRequest("dunes", seed=5, width=64, height=64, steps=3))
        same = engine.generate(GenerateRequest("dunes", seed=5, width=64, height=64, steps=3, scheduler=native))
        assert r.request.scheduler == native and np.array_equal(r.rgb, same.rgb)
        assert engine.generate(GenerateRequest("dunes", sampling="live", **SMALL)).request.scheduler == "dpm"
    else:
        assert engine.resolve_upscale(UpscaleRequest(), (16, 16)).scheduler == native


def test_a_folder_whose_scheduler_we_do_not_run_is_refused_at_load(tiny_dir: Path, tmp_path: Path) -> None:
    load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))  # built
    folder = tmp_path / "lms-model"
    shutil.copytree(next(tiny_dir.glob("tiny-v*")), folder)
    config = folder / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "LMSDiscreteScheduler"}))
    with pytest.raises(UnknownModel, match=r"names 'LMSDiscreteScheduler', which this engine does not run; it runs"):
        load_engine(EngineSettings(model=str(folder)))


def test_schedulers_give_different_pictures(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    pics = [engine.generate(GenerateRequest("dunes", seed=5, scheduler=s, **SMALL)).rgb for s in ("ddim", "euler_a")]
    assert _clearly_different(pics[0], pics[1])


def test_cancel_stops_within_one_step_and_engine_stays_usable(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    token = CancelToken()
    steps: list[int] = []

    def on_step(step: int, total: int) -> None:
        steps.append(step)
        if step == 2:
            token.cancel()

    request = GenerateRequest("dunes", seed=9, width=64, height=64, steps=10)
    with pytest.raises(Cancelled) as info:
        engine.generate(request, on_step=on_step, cancel=token)
    assert steps == [1, 2] and info.value.step == 2 and info.value.total == 10
    after = engine.generate(request)
    fresh = load_tiny("tiny").generate(request)
    assert np.array_equal(after.rgb, fresh.rgb)


def test_pano_prompt_gets_the_convention_once(load_tiny: Loader) -> None:
    engine = load_tiny("tiny-pano")
    r = engine.generate(GenerateRequest("a canyon", seed=1, width=128, height=64, steps=2))
    assert r.prompt_used == "360 view of a canyon" and r.request.seamless is True
    r = engine.generate(GenerateRequest("A 360 View of a canyon", seed=1, width=128, height=64, steps=2))
    assert r.prompt_used == "A 360 View of a canyon"
    assert load_tiny("tiny").generate(GenerateRequest("a canyon", **SMALL)).prompt_used == "a canyon"


def test_defaults_come_from_the_preset(load_tiny: Loader) -> None:
    req = load_tiny("tiny-pano").resolve(GenerateRequest("x"))
    assert (req.width, req.height, req.guidance, req.scheduler, req.seamless) == (1024, 512, 7.0, "ddim", True)


def test_long_prompt_is_truncated_and_says_so(load_tiny: Loader) -> None:
    engine = load_tiny("tiny")
    long = "a very long prompt about mountains " * 10
    r = engine.generate(GenerateRequest(long, negative_prompt="short", **SMALL))
    assert r.prompt_truncated is True and r.negative_truncated is False
    assert engine.generate(GenerateRequest("short", **SMALL)).prompt_truncated is False
    # prompt_used is what the model saw: the longest beginning, cut between words, that fits 77 tokens
    seen, words = r.prompt_used, long.split(" ")
    kept = len(seen.split(" "))
    assert seen == " ".join(words[:kept]) and 0 < kept < len(words)

    def tokens(text: str) -> int:
        return len(engine.tokenizer(text, truncation=False).input_ids)

    assert tokens(seen) <= 77 < tokens(" ".join(words[: kept + 1]))


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"width": 100}, "width", "multiple of 8"),
        ({"height": 4096}, "height", "from 64 to 1024"),
        ({"width": 32}, "width", "from 64"),
        ({"steps": 0}, "steps", "1..150"),
        ({"steps": 151}, "steps", "1..150"),
        ({"guidance": 30.5}, "guidance", "0.0..30.0"),
        ({"guidance": float("nan")}, "guidance", "out of range"),
        ({"guidance": -1.0}, "guidance", "out of range"),
        ({"scheduler": "plms"}, "scheduler", "model, ddim, pndm, dpm, unipc, euler_a, euler"),
        ({"seed": 2**31}, "seed", "-1 for a random seed"),
        ({"seed": -2}, "seed", "0..2147483647"),
    ],
)
def test_bad_requests_are_refused_with_a_teaching_message(
    load_tiny: Loader, fields: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        load_tiny("tiny").generate(GenerateRequest("x", **fields))  # type: ignore[arg-type]
    assert info.value.field == field


def test_empty_prompt_is_refused(load_tiny: Loader) -> None:
    with pytest.raises(InvalidRequest, match="prompt is empty"):
        load_tiny("tiny").generate(GenerateRequest("   "))


def test_missing_device_names_what_is_available(tiny_dir: Path) -> None:
    with pytest.raises(DeviceNotAvailable, match=r"'cuda:3' is not available on this machine; available: cpu"):
        load_engine(EngineSettings(model="tiny", device="cuda:3", tiny_dir=str(tiny_dir)))
    with pytest.raises(DeviceNotAvailable, match="unknown device 'gpu'"):
        load_engine(EngineSettings(model="tiny", device="gpu", tiny_dir=str(tiny_dir)))
    with pytest.raises(DeviceNotAvailable, match="dtype 'float16' is not supported on cpu"):
        load_engine(EngineSettings(model="tiny", device="cpu", dtype="float16", tiny_dir=str(tiny_dir)))


def test_model_missing_offline_names_id_cache_and_remedy(tmp_path: Path) -> None:
    with pytest.raises(ModelNotAvailable) as info:
        load_engine(EngineSettings(model="ldm3d-pano", cache_dir=str(tmp_path), offline=True))
    message = str(info.value)
    assert "Intel/ldm3d-pano" in message and str(tmp_path) in message and "hf download" in message
    assert info.value.model_id == "Intel/ldm3d-pano"


def test_unknown_model_and_bad_folder_are_explained(tmp_path: Path) -> None:
    with pytest.raises(UnknownModel, match=r"not a preset .*ldm3d-pano"):
        load_engine(EngineSettings(model="ldm3d-panorama"))
    (tmp_path / "unet").mkdir()
    with pytest.raises(UnknownModel, match="missing vae/, text_encoder/, tokenizer/, scheduler/"):
        load_engine(EngineSettings(model=str(tmp_path)))


def test_local_folder_loads_with_and_without_a_preset(load_tiny: Loader) -> None:
    folder = load_tiny("tiny-pano").location.folder
    plain = load_engine(EngineSettings(model=str(folder)))
    assert plain.preset.name == "folder" and plain.model_id == str(folder)
    assert (plain.preset.width, plain.preset.height) == (512, 512)  # UNet sample_size 64 × 8
    assert plain.generate(GenerateRequest("a canyon", **SMALL)).prompt_used == "a canyon"
    as_pano = load_engine(EngineSettings(model=str(folder), preset="tiny-pano"))
    assert as_pano.generate(GenerateRequest("a canyon", **SMALL)).prompt_used == "360 view of a canyon"


def test_tiny_models_are_built_once_and_reused(tiny_dir: Path, load_tiny: Loader) -> None:
    folder = load_tiny("tiny").location.folder
    stamp = (folder / "unet" / "config.json").stat().st_mtime_ns
    again = load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))
    assert again.location.folder == folder
    assert (folder / "unet" / "config.json").stat().st_mtime_ns == stamp
    assert not [p for p in tiny_dir.iterdir() if p.name.startswith(".")]  # no half-built leftovers


def test_a_real_allocation_failure_is_reported_as_out_of_memory_and_the_engine_goes_on(load_tiny: Loader) -> None:
    """torch's own CPU allocator failing mid-job (no fake exception): the engine says OutOfMemory, which the
    bridge reports as ``out_of_memory``, and the next job runs."""
    import torch

    engine = load_tiny("tiny")

    def allocate_too_much(step: int, total: int) -> None:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte: DefaultCPUAllocator refuses it

    with pytest.raises(OutOfMemory, match="out of memory on cpu at 64×64"):
        engine.generate(GenerateRequest("dunes", seed=5, width=64, height=64, steps=2), on_step=allocate_too_much)
    assert engine.generate(GenerateRequest("dunes", seed=5, width=64, height=64, steps=2)).rgb.shape == (64, 64, 3)
