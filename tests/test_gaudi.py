"""The Gaudi (HPU) path against a fake habana_frameworks that records calls.

We have no Gaudi here: the fake stands in for Intel's Gaudi software, and the loop runs on
the CPU with the HPU hooks attached. What is checked: the import happens only for `hpu`,
the errors say what to install, the placement is bf16 on `hpu`, the UNet is wrapped in an
HPU graph once, mark_step runs after every step, progress is reported, and the graphs are
dropped when the seamless switch changes the UNet."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm3d_engine import DeviceNotAvailable, EngineSettings, GenerateRequest, InvalidRequest, load_engine
from ldm3d_engine.backends.devices import Placement, resolve_placement
from ldm3d_engine.backends.gaudi import HpuRuntime
from ldm3d_engine.models.ldm3d import Engine


class FakeHabana:
    """``clear_cache``: whether the release's HPU graph wrapper can drop captured graphs (older ones cannot)."""

    def __init__(self, available: bool = True, clear_cache: bool = True) -> None:
        self.calls: list[str] = []
        self.available = available
        self.clear_cache = clear_cache
        self.core = types.ModuleType("habana_frameworks.torch.core")
        self.core.mark_step = lambda: self.calls.append("mark_step")  # type: ignore[attr-defined]
        self.hpu = types.ModuleType("habana_frameworks.torch.hpu")
        self.hpu.is_available = lambda: self.available  # type: ignore[attr-defined]
        self.hpu.device_count = lambda: 8  # type: ignore[attr-defined]
        self.hpu.wrap_in_hpu_graph = self._wrap  # type: ignore[attr-defined]

    def _wrap(self, module: torch.nn.Module, disable_tensor_cache: bool = False) -> torch.nn.Module:
        self.calls.append(f"wrap_in_hpu_graph:{type(module).__name__}:disable_tensor_cache={disable_tensor_cache}")
        if self.clear_cache:
            module.clear_cache = lambda: self.calls.append("clear_cache")  # type: ignore[assignment]
        return module

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        root = types.ModuleType("habana_frameworks")
        torch_pkg = types.ModuleType("habana_frameworks.torch")
        for name, module in (
            ("habana_frameworks", root),
            ("habana_frameworks.torch", torch_pkg),
            ("habana_frameworks.torch.core", self.core),
            ("habana_frameworks.torch.hpu", self.hpu),
        ):
            monkeypatch.setitem(sys.modules, name, module)


def test_habana_is_not_imported_for_other_devices(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ldm3d_engine.backends.gaudi", raising=False)
    load_engine(EngineSettings(model="tiny", tiny_dir=str(tiny_dir)))
    assert "ldm3d_engine.backends.gaudi" not in sys.modules and "habana_frameworks" not in sys.modules


def test_missing_gaudi_software_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "habana_frameworks", None)  # import fails as on a machine without it
    with pytest.raises(DeviceNotAvailable, match=r"habana_frameworks\.torch comes with SynapseAI.*\[gaudi\] extra"):
        resolve_placement("hpu", None)


def test_gaudi_software_without_a_device(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeHabana(available=False).install(monkeypatch)
    with pytest.raises(DeviceNotAvailable, match="sees no Gaudi device"):
        resolve_placement("hpu", None)


def test_hpu_placement_is_fp32_weights_under_bf16_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    # optimum-habana's practice: float32 weights, the loop under bfloat16 autocast; noise from the CPU.
    FakeHabana().install(monkeypatch)
    placement = resolve_placement("hpu", None)
    assert placement.device.type == "hpu" and placement.dtype == torch.float32
    assert isinstance(placement.runtime, HpuRuntime) and placement.runtime.autocast_dtype == torch.bfloat16
    assert placement.dtype_name == "bfloat16 autocast (float32 weights)"
    assert placement.runtime.noise_device(placement.device) == torch.device("cpu")
    full = resolve_placement("hpu", "float32")
    assert full.dtype == torch.float32 and full.runtime.autocast_dtype is None and full.dtype_name == "float32"
    with pytest.raises(DeviceNotAvailable, match="dtype 'float16' is not supported on hpu"):
        resolve_placement("hpu", "float16")


def _hpu_engine(fake: FakeHabana, tiny_dir: Path) -> Engine:
    """The tiny-pano engine with the HPU hooks, on the CPU ("cpu" stands in for the device Gaudi would give)."""
    real = load_engine(EngineSettings(model="tiny-pano", tiny_dir=str(tiny_dir)))
    runtime = HpuRuntime(fake.core, fake.hpu, device_type="cpu")
    return Engine(
        tokenizer=real.tokenizer,
        text_encoder=real.text_encoder,
        unet=runtime.prepare(real.unet, "unet"),
        vae=real.vae,
        scheduler_config=real.scheduler_config,
        placement=Placement(torch.device("cpu"), torch.float32, runtime),
        location=real.location,
    )


def test_the_loop_on_hpu_hooks_marks_every_step_and_reports_progress(tiny_dir: Path) -> None:
    fake = FakeHabana()
    engine = _hpu_engine(fake, tiny_dir)
    steps: list[tuple[int, int]] = []
    result = engine.generate(
        GenerateRequest("a canyon", seed=1, steps=3, width=128, height=64), on_step=lambda s, t: steps.append((s, t))
    )
    assert steps == [(1, 3), (2, 3), (3, 3)]
    wrap = "wrap_in_hpu_graph:UNet2DConditionModel:disable_tensor_cache=True"
    assert fake.calls == [wrap, "clear_cache", *["mark_step"] * 3]
    assert result.depth.dtype == np.uint16 and len(np.unique(result.depth)) > 256
    fake.calls.clear()
    engine.generate(GenerateRequest("a canyon", seed=1, steps=2, width=128, height=64, seamless=True))
    assert fake.calls == ["mark_step"] * 2  # same padding as before: the graphs stay
    engine.generate(GenerateRequest("a canyon", seed=1, steps=2, width=128, height=64, seamless=False))
    assert fake.calls[2] == "clear_cache"


def test_a_release_without_clear_cache_refuses_to_replay_graphs_of_the_other_padding(tiny_dir: Path) -> None:
    fake = FakeHabana(clear_cache=False)
    engine = _hpu_engine(fake, tiny_dir)
    seamless = GenerateRequest("a canyon", seed=1, steps=2, width=128, height=64, seamless=True)
    first = engine.generate(seamless)  # the graphs are captured with wrapped padding
    with pytest.raises(InvalidRequest, match=r"captured with the other seamless setting.*no clear_cache") as info:
        engine.generate(GenerateRequest("a canyon", seed=1, steps=2, width=128, height=64, seamless=False))
    assert info.value.field == "seamless"
    assert np.array_equal(engine.generate(seamless).rgb, first.rgb)  # the setting the graphs hold still runs
