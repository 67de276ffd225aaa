"""The Gaudi (HPU) backend against a stand-in for Intel's Gaudi software (tests/fake_habana.py).

We have no Gaudi hardware and never ran this backend on one. The stand-in is not Gaudi: the loop
runs on the CPU with the HPU hooks attached, and the stand-in records what they call. What these
tests prove: Habana's software is imported only for ``hpu`` and its absence is explained with what
to install; the environment Habana's core sees at its import (the bf16/fp32 autocast op lists of
Habana/stable-diffusion-2, lazy mode); float32 weights under bfloat16 autocast, bf16 SDPA reductions
allowed, no channels-last; the model's own scheduler (PNDM for ``ldm3d``) run as DDIM with linspace
timesteps made on the CPU; the call order of graph capture and replay, one graph per input shape
and seamless state, bounded; ``mark_step`` inside the UNet's capture after its time projection and
never after a step; and, because the stand-in's graphs re-run the ops their capture recorded, that
a replay computes from each step's own inputs (the pictures equal those of the same hooks without
graphs). Not proven: anything numeric on Gaudi (how Habana's autocast applies the lists, bf16
results), speed, memory, whether a real HPUGraph captures these ops."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ldm3d_engine import DeviceNotAvailable, EngineSettings, GenerateRequest, load_engine
from ldm3d_engine.backends.devices import Placement, resolve_placement
from ldm3d_engine.backends.gaudi import HpuRuntime
from ldm3d_engine.backends.gaudi_graphs import HpuGraphUNet
from ldm3d_engine.backends.gaudi_precision import BF16_OPS, FP32_OPS
from ldm3d_engine.models.build import assemble_engine
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.models.loading import locate
from ldm3d_engine.sampling.schedulers import make_scheduler
from tests.fake_habana import ENV, FakeHabana

SDP_SWITCH = "_set_math_sdp_allow_fp16_bf16_reduction"


@pytest.fixture(autouse=True)
def _process_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[bool]]:
    """What the backend changes process-wide (Habana's variables, the SDPA switch, the list files'
    folder) restored after each test; the list yields the SDPA switch's settings."""
    saved = {name: os.environ.get(name) for name in ENV}
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    sdp: list[bool] = []
    monkeypatch.setattr(torch._C, SDP_SWITCH, sdp.append, raising=False)
    yield sdp
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_habana_is_not_imported_for_other_devices(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ldm3d_engine.backends.gaudi", raising=False)
    load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))
    assert "ldm3d_engine.backends.gaudi" not in sys.modules and "habana_frameworks" not in sys.modules


def test_missing_gaudi_software_is_explained_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "habana_frameworks", None)  # import fails as on a machine without it
    with pytest.raises(DeviceNotAvailable) as info:
        resolve_placement("hpu", None)
    message = str(info.value)
    assert "habana_frameworks.torch comes with Intel Gaudi software" in message
    assert "Gaudi PyTorch container" in message and 'pip install -c constraints.txt -e ".[gaudi]"' in message
    assert "optimum-habana is not needed" in message
    assert all(name not in os.environ for name in ENV)  # nothing set for a device that is not there


def test_gaudi_software_without_a_device() -> None:
    with FakeHabana(available=False).installed(), pytest.raises(DeviceNotAvailable, match="sees no Gaudi device"):
        resolve_placement("hpu", None)


def test_the_op_lists_and_lazy_mode_are_declared_before_habanas_core_is_imported(_process_state: list[bool]) -> None:
    with FakeHabana().installed() as fake:
        placement = resolve_placement("hpu", None)
    seen = fake.env_at_core_import
    assert seen is not None and seen["PT_HPU_LAZY_MODE"] == "1"
    lower, fp32 = seen["PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST"], seen["PT_HPU_AUTOCAST_FP32_OPS_LIST"]
    assert lower and fp32
    assert Path(lower).read_text(encoding="utf-8").split() == list(BF16_OPS)
    assert Path(fp32).read_text(encoding="utf-8").split() == list(FP32_OPS)
    assert {"conv2d", "linear", "group_norm", "layer_norm", "silu"} <= set(BF16_OPS)  # Habana/stable-diffusion-2's
    assert {"exp", "log", "rsqrt", "pow.Tensor_Scalar"} <= set(FP32_OPS) and not {"mul", "softmax"} & set(BF16_OPS)
    # optimum-habana's practice: float32 weights, the job under bfloat16 autocast, noise from the CPU, sdp_on_bf16.
    assert placement.device.type == "hpu" and placement.dtype == torch.float32
    assert isinstance(placement.runtime, HpuRuntime) and placement.runtime.autocast_dtype == torch.bfloat16
    assert placement.dtype_name == "bfloat16 autocast (float32 weights)"
    assert placement.runtime.noise_device(placement.device) == torch.device("cpu")
    assert _process_state == [True] and placement.runtime.channels_last is False


def test_float32_on_gaudi_declares_no_lists_and_runs_without_autocast(_process_state: list[bool]) -> None:
    with FakeHabana().installed() as fake:
        full = resolve_placement("hpu", "float32")
        with pytest.raises(DeviceNotAvailable, match="dtype 'float16' is not supported on hpu"):
            resolve_placement("hpu", "float16")
    assert full.dtype == torch.float32 and full.runtime.autocast_dtype is None and full.dtype_name == "float32"
    assert fake.env_at_core_import == {**dict.fromkeys(ENV), "PT_HPU_LAZY_MODE": "1"} and _process_state == []


def test_lists_the_user_chose_are_kept_and_a_core_imported_too_early_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST", "/mine/lower.txt")
    monkeypatch.setenv("PT_HPU_AUTOCAST_FP32_OPS_LIST", "/mine/fp32.txt")
    monkeypatch.setenv("PT_HPU_LAZY_MODE", "1")
    with FakeHabana().installed() as fake:
        resolve_placement("hpu", None)
    assert fake.env_at_core_import == {
        "PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST": "/mine/lower.txt",
        "PT_HPU_AUTOCAST_FP32_OPS_LIST": "/mine/fp32.txt",
        "PT_HPU_LAZY_MODE": "1",
    }
    monkeypatch.delenv("PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST")
    monkeypatch.delenv("PT_HPU_AUTOCAST_FP32_OPS_LIST")
    with FakeHabana().installed() as late, caplog.at_level(logging.WARNING):
        late.import_core_now()
        resolve_placement("hpu", None)
    assert "imported before the bridge could declare its autocast op lists" in caplog.text
    assert "PT_HPU_AUTOCAST_LOWER_PRECISION_OPS_LIST" not in os.environ


def _gaudi_engine(
    fake: FakeHabana, tiny_dir: Path, model: str = "tiny-pano", graphs: bool = True, autocast: torch.dtype | None = None
) -> Engine:
    """``model`` assembled by the real build path for an HPU placement whose device is the CPU ("cpu"
    stands in for the HPU; the stand-in's core and hpu modules for Habana's). ``graphs`` False: the
    same hooks, the UNet called directly (the reference for the replayed pictures). ``autocast``: as
    ``--dtype float32`` (None, the default here: bfloat16 on a CPU without it is slow) or bfloat16."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    settings = EngineSettings(model=model, tiny_dir=str(tiny_dir))
    location = locate(settings)
    folder = location.folder
    core, hpu = fake.modules()
    runtime = (HpuRuntime if graphs else _NoGraphs)(core, hpu, device_type="cpu", autocast_dtype=autocast)
    return assemble_engine(
        CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
        CLIPTextModel.from_pretrained(str(folder / "text_encoder")),
        UNet2DConditionModel.from_pretrained(str(folder / "unet")),
        AutoencoderKL.from_pretrained(str(folder / "vae")),
        json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8")),
        placement=Placement(torch.device("cpu"), torch.float32, runtime),
        location=location,
        settings=settings,
    )


class _NoGraphs(HpuRuntime):
    def prepare(self, module: Any, part: str, variant: Callable[[Any], str] | None = None) -> Any:
        return module


CAPTURE = ["side_stream", "capture_begin", "capture_end"]
REPLAY = ["replay", "synchronize"]


def test_the_unet_is_captured_once_per_shape_and_seamless_state_and_replayed_with_each_steps_inputs(
    tiny_dir: Path,
) -> None:
    with FakeHabana().installed() as fake:
        engine = _gaudi_engine(fake, tiny_dir)
        unet = engine.unet
        assert isinstance(unet, HpuGraphUNet)
        conv = unet.conv_in.weight
        assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)  # no channels-last
        steps: list[tuple[int, int]] = []
        flat = GenerateRequest("a canyon", seed=1, steps=3, width=128, height=64, seamless=False)
        first = engine.generate(flat, on_step=lambda s, t: steps.append((s, t)))
        assert steps == [(1, 3), (2, 3), (3, 3)]
        # One capture on a side stream, then a replay per further step with a wait on the default stream;
        # no mark_step after a step (graphs are on).
        assert fake.calls == [*CAPTURE, *REPLAY * 2]
        fake.calls.clear()
        engine.generate(dataclasses.replace(flat, steps=2))
        assert fake.calls == REPLAY * 2  # the same shapes: replayed only
        fake.calls.clear()
        engine.generate(GenerateRequest("a canyon", seed=1, steps=1, width=128, height=64, seamless=True))
        engine.generate(GenerateRequest("a canyon", seed=1, steps=1, width=64, height=64, seamless=False))
        engine.generate(dataclasses.replace(flat, steps=1))
        assert fake.calls == [*CAPTURE, *CAPTURE, *REPLAY]
        assert [key[0] for key in unet.keys] == ["wrap", "flat", "flat"]  # least recently used first
        assert [key[1][0] for key in unet.keys] == [(2, 4, 8, 16), (2, 4, 8, 8), (2, 4, 8, 16)]
        assert len(np.unique(first.depth)) > 256

        # The stand-in's replays re-run what the capture recorded on the graph's inputs: the pictures equal
        # those of the same hooks calling the UNet directly only if every step's inputs reached the graph.
        reference = _gaudi_engine(FakeHabana(), tiny_dir, graphs=False).generate(flat)
        assert np.array_equal(first.rgb, reference.rgb) and np.array_equal(first.depth, reference.depth)


@pytest.mark.parametrize("autocast", [torch.bfloat16, None])
def test_mark_step_runs_inside_the_unets_capture_after_its_time_projection_under_autocast_only(
    tiny_dir: Path, autocast: torch.dtype | None
) -> None:
    from diffusers import UNet2DConditionModel

    folder = locate(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir))).folder
    with FakeHabana().installed() as fake:
        core, hpu = fake.modules()
        runtime = HpuRuntime(core, hpu, device_type="cpu", autocast_dtype=autocast)
        module = UNet2DConditionModel.from_pretrained(str(folder / "unet"))
        module.time_proj.register_forward_hook(lambda *_: fake.calls.append("time_proj"))
        module.time_embedding.register_forward_hook(lambda *_: fake.calls.append("time_embedding"))
        unet = runtime.prepare(module, "unet")
        texts = torch.zeros(1, 77, int(unet.config.cross_attention_dim))
        with torch.inference_mode(), runtime.autocast():
            for t in (10, 20):
                unet(torch.zeros(1, 4, 8, 8), torch.tensor(t), encoder_hidden_states=texts)
    # optimum-habana's patched UNet forward (applied with autocast or bf16 only): mark_step between the time
    # projection and the time embedding; under graphs it runs while capturing, never on a replay.
    marks = ["mark_step"] if autocast is not None else []
    assert fake.calls == [
        "side_stream", "capture_begin", "time_proj", *marks, "time_embedding", "capture_end", *REPLAY,
    ]  # fmt: skip


def test_on_gaudi_the_models_pndm_runs_as_ddim_with_linspace_timesteps_made_on_the_cpu(tiny_dir: Path) -> None:
    from diffusers import DDIMScheduler, PNDMScheduler

    with FakeHabana().installed() as fake:
        engine = _gaudi_engine(fake, tiny_dir, model="tiny")  # the ldm3d stand-in: its folder names PNDM
    assert engine.scheduler_config["_class_name"] == "PNDMScheduler"
    assert engine.preset.native_scheduler == "ddim"
    req = engine.resolve(GenerateRequest("a room", seed=3, steps=10, width=64, height=64))
    assert req.scheduler == "ddim"
    scheduler = engine._scheduler(req)
    assert isinstance(scheduler, DDIMScheduler) and scheduler.config.timestep_spacing == "linspace"
    assert scheduler.timesteps.device.type == "cpu"
    config = {k: v for k, v in engine.scheduler_config.items() if not k.startswith("_")}
    expected = DDIMScheduler.from_config({**config, "clip_sample": False}, timestep_spacing="linspace")
    expected.set_timesteps(10)
    linspace = [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert scheduler.timesteps.tolist() == expected.timesteps.tolist() == linspace
    # A job that names another scheduler still gets it, its timesteps on the CPU too.
    named = engine._scheduler(engine.resolve(GenerateRequest("a room", steps=10, scheduler="pndm")))
    assert isinstance(named, PNDMScheduler) and named.timesteps.device.type == "cpu"
    # ("meta" stands in for the HPU the engine would pass: the timesteps are made on the CPU all the same.)
    hpu = engine.placement.runtime.scheduler("ddim", engine.scheduler_config, 10, torch.device("meta"), make_scheduler)
    assert hpu.timesteps.device.type == "cpu"


def test_the_graph_cache_keeps_the_most_recent_graphs_and_owns_its_tensors() -> None:
    class Double(torch.nn.Module):
        def forward(self, sample: torch.Tensor, t: torch.Tensor, **_: Any) -> tuple[torch.Tensor]:
            return (sample * 2 + t,)

    with FakeHabana().installed() as fake:
        _, hpu = fake.modules()
        unet = HpuGraphUNet(Double(), hpu, variant=None, limit=2)
        for width in (1, 2, 3, 2):
            unet(torch.ones(1, width), torch.tensor(0.0))
        assert [key[1][0] for key in unet.keys] == [(1, 3), (1, 2)]  # width 1 dropped, 2 used last
        texts = torch.ones(1, 3)
        first = unet(torch.ones(1, 3), torch.tensor(1.0), encoder_hidden_states=texts)[0]  # captured
        out = unet(torch.full((1, 3), 2.0), torch.tensor(1.0), encoder_hidden_states=texts)[0]  # replayed
        again = unet(torch.full((1, 3), 5.0), torch.tensor(0.0), encoder_hidden_states=torch.zeros(1, 3))[0]
    assert first.tolist() == [[3.0] * 3] and out.tolist() == [[5.0] * 3]  # copies: the next replay left them
    assert again.tolist() == [[10.0] * 3]
    assert texts.tolist() == [[1.0, 1.0, 1.0]]  # the caller's tensor was never the graph's input
