"""The CUDA fast path on a real NVIDIA GPU. CI has none, so these skip there; run `./dev test`
on a GPU machine to run them (docs/performance.md). Each compares the GPU engine with the CPU
engine on the same tiny weights and the same starting noise (CUDA and CPU generators draw
different noise from one seed, so the noise is drawn once, on the CPU, and handed to both)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from ldm3d_engine import EngineSettings, GenerateRequest, load_engine
from ldm3d_engine.models.ldm3d import Engine
from ldm3d_engine.types import RGBDResult

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU; CI has none")

REQUEST = GenerateRequest("a cave", seed=3, steps=4, width=256, height=128)


def on_cuda(tiny_dir: Path, **settings: object) -> Engine:
    return load_engine(EngineSettings(model="tiny-pano", device="cuda", tiny_dir=str(tiny_dir), **settings))  # type: ignore[arg-type]


def same_noise(engine: Engine, reference: Engine, request: GenerateRequest = REQUEST) -> tuple[RGBDResult, RGBDResult]:
    req = reference.resolve(request)
    noise = reference.initial_latents(req)
    return engine.generate_from_latents(engine.resolve(request), noise), reference.generate_from_latents(req, noise)


def test_fp16_engine_matches_the_cpu_and_reports_peak_memory(
    tiny_dir: Path, load_tiny: Callable[[str], Engine]
) -> None:
    engine = on_cuda(tiny_dir)
    assert engine.dtype == "float16" and next(engine.unet.parameters()).dtype == torch.float16
    assert next(engine.vae.parameters()).dtype == torch.float32  # force_upcast: no NaNs from an fp16 VAE
    gpu, cpu = same_noise(engine, load_tiny("tiny-pano"))
    assert gpu.device == "cuda:0" and gpu.depth.dtype == np.uint16 and gpu.rgb.shape == (128, 256, 3)
    assert np.abs(gpu.depth_float - cpu.depth_float).mean() < 0.02
    assert gpu.peak_memory_mb is not None and gpu.peak_memory_mb > 0


def test_bf16_engine_runs_with_a_bf16_vae(tiny_dir: Path, load_tiny: Callable[[str], Engine]) -> None:
    engine = on_cuda(tiny_dir, dtype="bfloat16")
    assert next(engine.vae.parameters()).dtype == torch.bfloat16
    gpu, cpu = same_noise(engine, load_tiny("tiny-pano"))
    assert np.abs(gpu.depth_float - cpu.depth_float).mean() < 0.03


def test_model_offload_gives_the_same_pictures_and_leaves_the_gpu_between_jobs(tiny_dir: Path) -> None:
    resident, offloaded = on_cuda(tiny_dir), on_cuda(tiny_dir, offload="model")
    a, b = same_noise(offloaded, resident)
    assert np.abs(a.depth_float - b.depth_float).mean() < 1e-3  # the same kernels, up to cuDNN's choices
    for module in (offloaded.unet, offloaded.vae, offloaded.text_encoder):
        assert next(module.parameters()).device.type == "cpu"


def test_vae_tiling_decodes_2048_wide_outputs_within_less_memory(tiny_dir: Path) -> None:
    request = GenerateRequest("a cave", seed=3, steps=1, width=2048, height=1024, seamless=False)
    tiled, plain = same_noise(on_cuda(tiny_dir, vae_tiling=True), on_cuda(tiny_dir), request)
    assert tiled.rgb.shape == (1024, 2048, 3) and np.abs(tiled.depth_float - plain.depth_float).mean() < 0.05
    assert tiled.peak_memory_mb is not None and plain.peak_memory_mb is not None
    assert tiled.peak_memory_mb < plain.peak_memory_mb


def test_compiled_engine_matches_eager_in_both_seamless_settings(tiny_dir: Path) -> None:
    compiled, eager = on_cuda(tiny_dir, compile=True), on_cuda(tiny_dir)
    for seamless in (True, False, True):
        request = GenerateRequest("a cave", seed=3, steps=3, width=256, height=128, seamless=seamless)
        a, b = same_noise(compiled, eager, request)
        assert np.abs(a.depth_float - b.depth_float).mean() < 0.01
