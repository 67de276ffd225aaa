"""What previews cost a job, and how close a preview is to the real decode: rows for engine_speed.py.

For one engine and size, ``live`` (and ``quality``) jobs with previews every ``preview_every`` steps
(the server's default 5, or every step of a job shorter than that). The extra work a preview adds
is timed where it happens, not as the difference of two job times (which a busy machine's noise
swamps): x₀ from the UNet's output, the linear map, and the two PNGs (encoded here on the engine's
thread; the bridge encodes them on its preview thread, so this is the upper bound); times the
previews a job has, as a share of the job. Then the fit of the preview map (once per model), and
the PSNR of every preview against the model's own VAE decode of the same x₀, shrunk to the
preview's size (RGB and depth apart).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bridge.output.formats import encode_png
from ldm3d_engine.sampling.preview import PreviewMap, psnr
from ldm3d_engine.types import GenerateRequest, Preview, Previews

DEFAULT_EVERY = 5  # BridgeSettings.preview_every's default


@dataclass(frozen=True)
class _Recording(PreviewMap):
    """The engine's map, keeping every latent it is shown (for the PSNR against the real decode)."""

    seen: tuple[list[torch.Tensor], ...] = ([],)

    def __call__(self, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        self.seen[0].append(latents.detach().clone())
        return super().__call__(latents)


def preview_rows(engine: Any, size: tuple[int, int], sampling: str, repeats: int) -> list[str]:
    """Lines to print: the cost of previews on ``sampling`` jobs at ``size``, and their fidelity."""
    width, height = size
    t0 = time.perf_counter()
    with torch.inference_mode():
        fitted = engine.preview_map()
    fit_s = time.perf_counter() - t0
    steps = engine.resolve(GenerateRequest("x", width=width, height=height, sampling=sampling)).steps
    every = min(DEFAULT_EVERY, max(1, steps - 1))
    timing = _Timed(fitted.weights, fitted.fit_psnr, fitted.has_depth, ([],))
    sent: list[Preview] = []
    send_s: list[float] = []

    def send(preview: Preview) -> None:
        t = time.perf_counter()
        encode_png(preview.rgb), encode_png(preview.depth)  # what the bridge's preview thread does
        send_s.append(time.perf_counter() - t)
        sent.append(preview)

    jobs = []
    engine._preview_map = timing
    try:
        for take in range(repeats):
            prompt = f"a forest, preview take {take}"
            request = GenerateRequest(prompt, seed=1, width=width, height=height, sampling=sampling)
            t1 = time.perf_counter()
            engine.generate(request, previews=Previews(every, send))
            jobs.append(time.perf_counter() - t1)
    finally:
        engine._preview_map = fitted
    x0_s = _clean_s(engine, size)
    per_preview = x0_s + statistics.median(timing.seen[0]) + statistics.median(send_s)
    count = len(sent) // repeats
    job_s = statistics.median(jobs)
    shape = f"{sent[0].rgb.shape[1]}×{sent[0].rgb.shape[0]}" if sent else "none"
    return [
        f"   previews ({sampling}, every {every} of {steps} steps: {count} of {shape} a job): "
        f"{1000 * per_preview:.2f} ms each (x₀ {1000 * x0_s:.2f}, map {1000 * statistics.median(timing.seen[0]):.2f}, "
        f"PNGs {1000 * statistics.median(send_s):.2f}) = {100 * count * per_preview / job_s:.2f}% of the job's "
        f"{job_s:.2f} s; the preview map fitted once in {fit_s:.2f} s",
        "   " + fidelity(engine, fitted, size, sampling),
    ]


def _clean_s(engine: Any, size: tuple[int, int]) -> float:
    """Seconds to compute x₀ from the UNet's output once, at ``size`` (the loop's only extra step)."""
    from ldm3d_engine.sampling.preview import predicted_clean

    scheduler = engine._scheduler(engine.resolve(GenerateRequest("x", width=size[0], height=size[1])))
    shape = (1, 4, size[1] // 8, size[0] // 8)
    sample, output = torch.randn(shape), torch.randn(shape)
    t = scheduler.timesteps[0]
    scheduler.scale_model_input(sample, t)
    t0 = time.perf_counter()
    for _ in range(20):
        predicted_clean(scheduler, output, sample, t)
    return (time.perf_counter() - t0) / 20


@dataclass(frozen=True)
class _Timed(PreviewMap):
    """The engine's map, timing each call (seconds in ``seen[0]``)."""

    seen: tuple[list[float], ...] = ([],)

    def __call__(self, latents: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        t0 = time.perf_counter()
        out = super().__call__(latents)
        self.seen[0].append(time.perf_counter() - t0)
        return out


def fidelity(engine: Any, fitted: PreviewMap, size: tuple[int, int], sampling: str) -> str:
    """PSNR of each preview against the real decode of the same x₀ (mean over one job's previews)."""
    width, height = size
    recording = _Recording(fitted.weights, fitted.fit_psnr, fitted.has_depth, ([],))
    engine._preview_map = recording
    try:
        request = GenerateRequest("a forest at dawn", seed=2, width=width, height=height, sampling=sampling)
        engine.generate(request, previews=Previews(1, lambda preview: None))
    finally:
        engine._preview_map = fitted
    rgb_db, depth_db = [], []
    with torch.inference_mode():
        _, decode = engine.vae_codec(8)
        for latent in recording.seen[0]:
            real = decode(latent)
            h, w = latent.shape[2:]
            fy, fx = real.shape[0] // h, real.shape[1] // w
            real = real[: h * fy, : w * fx].reshape(h, fy, w, fx, 4).mean(axis=(1, 3))
            rgb, depth = fitted(latent)
            rgb_db.append(psnr(float(np.mean((rgb / 255.0 - real[..., :3]) ** 2))))
            depth_db.append(psnr(float(np.mean((depth / 65535.0 - real[..., 3]) ** 2))))
    return (
        f"preview vs the VAE's decode of the same x₀ ({len(rgb_db)} steps, shrunk to the preview's size): "
        f"PSNR RGB {statistics.mean(rgb_db):.1f} dB, depth {statistics.mean(depth_db):.1f} dB "
        f"(the map's own fit: {fitted.fit_psnr:.1f} dB)"
    )
