"""What previews cost a job, and how close a preview is to the real decode: rows for engine_speed.py.

For one engine and size: the same ``live`` (and ``quality``) job with and without previews (every
``preview_every`` steps, the server's default 5, or every step of a job shorter than that), the
preview PNGs encoded on the engine's thread (the bridge encodes them on its preview thread: this is
the upper bound), the extra time as a share of the job; the fit of the preview map (once per model);
and the PSNR of every preview against the model's own VAE decode of the same x₀, shrunk to the
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
    sent: list[Preview] = []

    def send(preview: Preview) -> None:
        encode_png(preview.rgb), encode_png(preview.depth)  # what the bridge's preview thread does
        sent.append(preview)

    plain, with_previews = [], []
    for take in range(repeats):
        request = GenerateRequest(
            f"a forest, preview take {take}", seed=1, width=width, height=height, sampling=sampling
        )
        engine.generate(request)  # warm (the prompt's embeddings kept, as in a show)
        t1 = time.perf_counter()
        engine.generate(request)
        t2 = time.perf_counter()
        sent.clear()
        engine.generate(request, previews=Previews(every, send))
        t3 = time.perf_counter()
        plain.append(t2 - t1)
        with_previews.append(t3 - t2)
    base, extra = statistics.median(plain), statistics.median(with_previews) - statistics.median(plain)
    shape = f"{sent[0].rgb.shape[1]}×{sent[0].rgb.shape[0]}" if sent else "none"
    lines = [
        f"   previews ({sampling}, every {every} of {steps} steps: {len(sent)} of {shape}): "
        f"{1000 * extra / max(1, len(sent)):+.1f} ms each, {100 * extra / base:+.1f}% of the job's {base:.2f} s "
        f"(median of {repeats}); preview map fitted once in {fit_s:.2f} s"
    ]
    lines.append("   " + fidelity(engine, fitted, size, sampling))
    return lines


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
