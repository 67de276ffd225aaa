"""The speed features a user can see: sampling presets, VAE tiling, offload checks, writing
overlapped with the next job. (Their speed is measured by bench/engine_speed.py, not here.)"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bridge.osc.client import OscClient
from bridge.output.writer import JobFiles, TextureWriter
from bridge.serve.server import Bridge
from ldm3d_engine import DeviceNotAvailable, EngineSettings, GenerateRequest, InvalidRequest, load_engine
from ldm3d_engine.backends.devices import Placement
from ldm3d_engine.models.build import assemble_engine
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.models.loading import ModelLocation
from ldm3d_engine.presets import get_preset

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


def test_live_and_quality_sampling(load_tiny: Callable[[str], Engine]) -> None:
    engine = load_tiny("tiny-pano")
    quality = engine.resolve(GenerateRequest("x"))
    live = engine.resolve(GenerateRequest("x", sampling="live"))
    assert (quality.scheduler, quality.steps, quality.sampling) == ("ddim", 10, "quality")
    assert (live.scheduler, live.steps, live.sampling) == ("dpm", 20, "live")
    mixed = engine.resolve(GenerateRequest("x", sampling="live", steps=8, scheduler="unipc"))
    assert (mixed.scheduler, mixed.steps) == ("unipc", 8)  # explicit settings win
    with pytest.raises(InvalidRequest, match="unknown sampling 'fast'; use quality or live"):
        engine.resolve(GenerateRequest("x", sampling="fast"))


def test_server_default_sampling_and_per_job_choice(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge(sampling="live"))
    client.send("/ldm3d/generate", "a reef")
    meta = json.loads(Path(str(client.wait_for(["/ldm3d/ready"], 60)[-1].args[3])).read_text())
    assert (meta["sampling"], meta["scheduler"], meta["steps"]) == ("live", "dpm", 20)
    client.send("/ldm3d/generate", "a reef", "sampling", "quality")
    meta = json.loads(Path(str(client.wait_for(["/ldm3d/ready"], 60)[-1].args[3])).read_text())
    assert (meta["sampling"], meta["scheduler"], meta["steps"]) == (
        "quality",
        "pndm",
        20,
    )  # tiny ships PNDM, as Intel/ldm3d
    assert "peak_gpu_memory_mb" not in meta  # reported on CUDA only


def test_vae_tiling_decodes_wide_outputs_and_stays_off_for_seamless(tiny_dir: Path) -> None:
    tiled = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir), vae_tiling=True))
    plain = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir)))
    request = GenerateRequest("x", seed=2, steps=1, width=1024, height=512, seamless=False)
    a, b = tiled.generate(request), plain.generate(request)
    assert tiled.vae.use_tiling is True
    assert a.rgb.shape == (512, 1024, 3) and np.abs(a.depth_float - b.depth_float).mean() < 0.05
    tiled.generate(GenerateRequest("x", seed=2, steps=1, width=256, height=128))  # a seamless pano
    assert tiled.vae.use_tiling is False


def half_precision_engine(folder: Path, dtype: torch.dtype) -> Engine:
    """The modules of a tiny model in fp32 (as the benchmark builds them), assembled for a
    half-precision placement. The CPU stands in for a GPU here: resolve_placement allows fp16
    on CUDA only, but the casting and upcasting under test do not depend on the device (except the
    VAE of bf16, which stays fp32 on the CPU: checked for both below)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return assemble_engine(
        CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), model_max_length=77),
        CLIPTextModel.from_pretrained(str(folder / "text_encoder")),
        UNet2DConditionModel.from_pretrained(str(folder / "unet")),
        AutoencoderKL.from_pretrained(str(folder / "vae")),
        json.loads((folder / "scheduler" / "scheduler_config.json").read_text()),
        placement=Placement(torch.device("cpu"), dtype),
        location=ModelLocation(folder, "tiny-pano", get_preset("tiny-pano")),
        settings=EngineSettings(),
    )


# bf16 has fp32's range, so a GPU keeps the VAE in bf16; the CPU keeps it in fp32 (depth's 16 bits)
@pytest.mark.parametrize(("dtype", "vae_dtype"), [(torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_half_precision_casts_the_models_and_keeps_an_fp16_vae_in_fp32(
    load_tiny: Callable[[str], Engine], dtype: torch.dtype, vae_dtype: torch.dtype
) -> None:
    from ldm3d_engine.models.build import vae_dtype as vae_dtype_on

    assert vae_dtype_on(torch.bfloat16, {"force_upcast": True}, "cuda") == torch.bfloat16
    assert vae_dtype_on(torch.float16, {"force_upcast": True}, "cuda") == torch.float32
    reference = load_tiny("tiny-pano")
    engine = half_precision_engine(reference.location.folder, dtype)
    assert engine.vae.config.force_upcast  # diffusers' default, as in configs that predate the key
    assert next(engine.unet.parameters()).dtype == dtype and next(engine.text_encoder.parameters()).dtype == dtype
    assert next(engine.vae.parameters()).dtype == vae_dtype
    request = GenerateRequest("a cave", seed=4, steps=2, width=128, height=64)
    half, full = engine.generate(request), reference.generate(request)
    assert half.dtype == str(dtype).removeprefix("torch.")
    assert half.depth.shape == (64, 128) and np.abs(half.depth_float - full.depth_float).mean() < 0.02


def test_offload_needs_a_gpu(tiny_dir: Path) -> None:
    with pytest.raises(DeviceNotAvailable, match="offload 'model' moves models to a GPU and back; cpu is not one"):
        load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir), offload="model"))


class SlowWriter(TextureWriter):
    """A disk that takes 0.8 s per job, to see writing overlap the next job's denoising."""

    def write(
        self, job_id: str, result: Any, meta_extra: dict[str, Any] | None = None, fmt: str | None = None
    ) -> JobFiles:
        time.sleep(0.8)
        return super().write(job_id, result, meta_extra, fmt)


def test_writing_overlaps_the_next_job_and_ready_keeps_job_order(
    load_tiny: Callable[[str], Engine], tmp_path: Path
) -> None:
    from bridge.settings import BridgeSettings

    settings = BridgeSettings(
        model="tiny", host="127.0.0.1", port=0, output=str(tmp_path), zeroconf=False, warmup=False, width=64, height=64
    )
    bridge = Bridge(settings, lambda: load_tiny("tiny"), writer=SlowWriter(tmp_path))  # type: ignore[arg-type,return-value]
    bridge.start()
    try:
        bridge.pool.ready.wait(30)
        with OscClient(*bridge.address) as client:
            ids = []
            for _ in range(2):
                client.send("/ldm3d/generate", "x", "steps", 3)
                ids.append(client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0])
            seen = client.wait_for(["/ldm3d/ready"], 60, job_id=ids[1])
        order = [(m.address, m.args[0]) for m in seen if m.address in ("/ldm3d/progress", "/ldm3d/ready")]
        first_ready = order.index(("/ldm3d/ready", ids[0]))
        assert ("/ldm3d/progress", ids[1]) in order[:first_ready]  # job 2 denoised while job 1 was written
        assert [a for a in order if a[0] == "/ldm3d/ready"] == [("/ldm3d/ready", ids[0]), ("/ldm3d/ready", ids[1])]
    finally:
        bridge.stop()
    assert not [t for t in threading.enumerate() if t.name.startswith("ldm3d-")]


@pytest.mark.parametrize(("compile_unet", "warmups"), [(False, [None]), (True, [True, False])])
def test_a_compiled_engine_is_warmed_up_for_both_seamless_settings(
    load_tiny: Callable[[str], Engine], tmp_path: Path, compile_unet: bool, warmups: list[bool | None]
) -> None:
    """torch.compile compiles once per seamless setting; with --compile the warm-up pays for both,
    so a flat job in a show of panoramas does not stall on a compilation. (The engine here is the
    tiny one, uncompiled, recording what the warm-up asks of it: compiling on the CPU takes a minute.)"""
    from bridge.settings import BridgeSettings

    engine = load_tiny("tiny-pano")
    asked: list[GenerateRequest] = []

    class Recording:
        model_id = engine.model_id
        resolve = staticmethod(engine.resolve)

        @staticmethod
        def generate(request: GenerateRequest, on_step: Any = None, cancel: Any = None, previews: Any = None) -> Any:
            asked.append(request)
            return engine.generate(request, on_step=on_step, cancel=cancel, previews=previews)

    settings = BridgeSettings(
        model="tiny-pano", host="127.0.0.1", port=0, output=str(tmp_path), zeroconf=False, compile=compile_unet
    )
    bridge = Bridge(settings, Recording)  # type: ignore[arg-type]
    bridge.start()
    try:
        assert bridge.pool.ready.wait(60) and bridge.pool.state == "idle"
    finally:
        bridge.stop()
    assert [r.seamless for r in asked] == warmups and all(r.prompt == "warm-up" for r in asked)


def test_repeated_prompts_cost_no_text_encoder_pass(tiny_dir: Path) -> None:
    engine = load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))
    passes: list[int] = []
    engine.text_encoder.register_forward_hook(lambda *_: passes.append(1))
    first = engine.generate(GenerateRequest("a reef", seed=1, steps=1))  # the prompt and the empty negative
    again = engine.generate(GenerateRequest("a reef", seed=1, steps=1))  # both kept
    engine.generate(GenerateRequest("a cave", seed=1, steps=1))  # a new prompt: one pass
    assert len(passes) == 3
    assert np.array_equal(first.rgb, again.rgb) and np.array_equal(first.depth, again.depth)
    long = " ".join(["a very long prompt"] * 40)
    assert engine.generate(GenerateRequest(long, seed=1, steps=1)).prompt_truncated
    assert engine.generate(GenerateRequest(long, seed=1, steps=1)).prompt_truncated  # kept with its flag
