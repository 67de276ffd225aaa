"""Previews of a world while it forms: the clean latent the sampler predicts at a step (x₀), mapped
to a small RGB + depth picture without the VAE.

The map is linear, one latent pixel → one preview pixel: ``rgbd = W·z + b`` (a 4×C matrix and a
bias), fitted by least squares against the model's own VAE: a few synthetic pictures (smooth colour
fields with edges, and a smooth depth) are encoded, the latents decoded again, and each latent pixel
paired with the mean of the 8×8 block it decodes to. Encoding real pictures keeps the latents the
fit sees in the range the sampler's x₀ lives in (random latents decode to texture the VAE never
makes). Applying it is one small matrix product per preview; the fit costs a few encodes and
decodes once per loaded model (:meth:`~ldm3d_engine.models.ldm3d.Engine.preview_map`).

How close a preview is to the real decode of the same x₀ is measured by
``bench/engine_speed.py`` (PSNR, printed per job) and stated in docs/performance.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..types import Preview, Previews

FloatArray = npt.NDArray[np.float32]

#: The map is fitted on this many synthetic pictures of this size.
FIT_PICTURES = 4
FIT_SIDE = 128

#: Schedulers whose latents are x₀ + σ·ε (the Karras/"k-diffusion" form); the others keep the
#: variance-preserving form √ᾱ·x₀ + √(1-ᾱ)·ε.
SIGMA_FORM = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler")


def predicted_clean(scheduler: Any, model_output: torch.Tensor, sample: torch.Tensor, t: Any) -> torch.Tensor:
    """x₀ as the UNet's output at timestep ``t`` predicts it, for ``sample`` (the latents before this
    step's ``scheduler.step``; for sigma-form schedulers after ``scale_model_input`` set the step index).
    The UNet predicts ε, v or x₀ itself, as the scheduler's ``prediction_type`` says."""
    kind = str(scheduler.config.get("prediction_type", "epsilon"))
    if kind == "sample":
        return model_output
    x = sample.float()
    out = model_output.float()
    if any(cls.__name__ in SIGMA_FORM for cls in type(scheduler).__mro__):
        index = scheduler.step_index
        if index is None:
            index = scheduler.index_for_timestep(t)
        sigma = float(scheduler.sigmas[index])
        # x = x₀ + σ·ε; the UNet's input was x / √(σ² + 1)
        weights = {"epsilon": (1.0, -sigma), "v_prediction": (1 / (sigma**2 + 1), -sigma / (sigma**2 + 1) ** 0.5)}
    else:
        alpha = float(scheduler.alphas_cumprod[int(t)])
        # x = √ᾱ·x₀ + √(1-ᾱ)·ε;  v = √ᾱ·ε - √(1-ᾱ)·x₀
        weights = {
            "epsilon": (1 / alpha**0.5, -(((1 - alpha) / alpha) ** 0.5)),
            "v_prediction": (alpha**0.5, -((1 - alpha) ** 0.5)),
        }
    if kind in weights:
        on_sample, on_output = weights[kind]
        clean: torch.Tensor = torch.add(x * on_sample, out, alpha=on_output)
        return clean
    raise ValueError(f"prediction_type {kind!r} is not one a preview can undo (epsilon, v_prediction or sample)")


@dataclass(frozen=True)
class PreviewMap:
    """``weights``: (C + 1) × 4, latent channels then the bias → red, green, blue, depth (0..1)."""

    weights: FloatArray
    #: The fit's own PSNR (dB) on the pictures it was fitted on, RGB and depth together.
    fit_psnr: float
    #: False for a model that makes no depth (its previews' depth is flat 0.5).
    has_depth: bool = True

    def __call__(self, latents: torch.Tensor) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
        """One 1×C×h×w latent (scaled, as the sampler holds it) → h×w×3 RGB and h×w 16-bit depth."""
        z = latents[0].detach().to("cpu", torch.float32)
        w = torch.from_numpy(self.weights)
        out = torch.einsum("chw,co->hwo", z, w[:-1]).add_(w[-1]).clamp_(0.0, 1.0).numpy()
        rgb = np.round(out[..., :3] * 255.0).astype(np.uint8)
        if not self.has_depth:
            return rgb, np.full(rgb.shape[:2], 32768, np.uint16)
        return rgb, np.round(out[..., 3] * 65535.0).astype(np.uint16)


def synthetic_pictures(count: int, height: int, width: int, seed: int = 0) -> list[tuple[FloatArray, FloatArray]]:
    """``count`` pictures to fit on: RGB (H×W×3) and depth (H×W) in [0, 1]: a few smooth colour waves,
    a bright and a dark rectangle (edges), and a smooth depth that rises toward the bottom (a floor)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    pictures = []
    for _ in range(count):
        rgb = np.zeros((height, width, 3), np.float32)
        for channel in range(3):
            for _wave in range(3):
                fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
                rgb[..., channel] += np.sin(2 * np.pi * (fx * xx + fy * yy) + phase) / 3
        rgb = 0.5 + 0.45 * rgb / max(1e-6, float(np.abs(rgb).max()))
        for value in (rng.uniform(0.8, 1.0), rng.uniform(0.0, 0.2)):
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            rgb[top : top + height // 4, left : left + width // 4] = value * rng.uniform(0.6, 1.0, 3)
        depth = np.clip(0.2 + 0.6 * yy + 0.15 * np.sin(2 * np.pi * (xx + rng.uniform())), 0, 1)
        pictures.append((rgb.astype(np.float32), depth.astype(np.float32)))
    return pictures


def fit_preview_map(
    encode: Callable[[FloatArray, FloatArray], torch.Tensor],
    decode: Callable[[torch.Tensor], FloatArray],
    pictures: list[tuple[FloatArray, FloatArray]],
    *,
    has_depth: bool = True,
) -> PreviewMap:
    """Fit the map: ``encode(rgb, depth)`` → a 1×C×h×w latent (scaled), ``decode(latent)`` → the
    H×W×4 picture it decodes to (RGB and depth in [0, 1]), for each picture."""
    inputs, targets = [], []
    for rgb, depth in pictures:
        latent = encode(rgb, depth)
        decoded = decode(latent)
        c, h, w = latent.shape[1:]
        f_y, f_x = decoded.shape[0] // h, decoded.shape[1] // w
        pooled = decoded[: h * f_y, : w * f_x].reshape(h, f_y, w, f_x, 4).mean(axis=(1, 3))
        z = latent[0].detach().to("cpu", torch.float32).numpy().reshape(c, -1).T
        inputs.append(np.concatenate([z, np.ones((z.shape[0], 1), np.float32)], axis=1))
        targets.append(pooled.reshape(-1, 4))
    x, y = np.concatenate(inputs), np.concatenate(targets)
    if not has_depth:
        y = y.copy()
        y[:, 3] = 0.5
    weights, *_ = np.linalg.lstsq(x.astype(np.float64), y.astype(np.float64), rcond=None)
    error = float(np.mean((np.clip(x @ weights, 0, 1) - y) ** 2))
    return PreviewMap(weights.astype(np.float32), psnr(error), has_depth)


def psnr(mean_squared_error: float) -> float:
    """Peak signal-to-noise ratio (dB) of an error on [0, 1] values; 99 dB for none."""
    return 99.0 if mean_squared_error <= 1e-10 else float(-10.0 * np.log10(mean_squared_error))


def preview_sender(preview_map: PreviewMap, previews: Previews) -> Callable[[int, int, torch.Tensor], None]:
    """What the denoising loop calls with x₀ when a preview is due: the map applied, the preview sent."""

    def on_clean(done: int, total: int, clean: torch.Tensor) -> None:
        rgb, depth = preview_map(clean)
        previews.send(Preview(done, total, rgb, depth))

    return on_clean
