"""The EDM Euler sampler LN3Diff's text-to-3D model runs, with classifier-free guidance.

Facts (NIRVANALAN/LN3Diff ``sgm/configs/txt2img-clipl-compat.yaml`` — the one ``sgm_legacy`` loads,
``nsr/lsgm/sgm_DiffusionEngine.py`` — and ``sgm/modules/diffusionmodules/``; lines in docs/objects.md):

- discretisation ``LegacyDDPMDiscretization``: β from √0.00085 to √0.012 linearly, squared, over
  1000 steps; ᾱ = ∏(1 − β); for n < 1000 steps the timesteps are
  ``linspace(999, 0, n, endpoint=False)`` truncated to int, ascending; σ = √((1 − ᾱ)/ᾱ) at those
  timesteps, highest first, then a final 0 (``do_append_zero``);
- the noise starts as N(0, 1)·√(1 + σ₀²);
- the denoiser (``DiscreteDenoiser`` + ``EpsScaling``): the network sees ``x/√(σ² + 1)`` and the
  timestep whose σ is nearest to σ (its index 0…999), predicts ε, and D(x) = x − σ·ε;
- guidance (``VanillaCFG``, scale 6.5): D = D_u + s·(D_c − D_u), the unconditional pass with the
  text embedding set to zeros (``force_uc_zero_embeddings``);
- each step (``EulerEDMSampler``, no churn): d = (x − D)/σ, x ← x + (σ_next − σ)·d.

The shell script's ``--pred_type v`` is not read on this path: the scaling comes from the YAML
(EpsScaling), so the network's output is ε.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

#: ε-network: (scaled input, timestep indices, text tokens) → ε.
EpsNetwork = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Schedule:
    num_timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012

    def alphas_cumprod(self) -> npt.NDArray[np.float64]:
        betas = np.linspace(self.linear_start**0.5, self.linear_end**0.5, self.num_timesteps, dtype=np.float64) ** 2
        return np.cumprod(1.0 - betas).astype(np.float64)

    def train_sigmas(self) -> npt.NDArray[np.float64]:
        """σ of every training timestep 0…T−1, ascending (the denoiser's table)."""
        ac = self.alphas_cumprod()
        return np.sqrt((1.0 - ac) / ac)

    def timesteps(self, steps: int) -> npt.NDArray[np.int64]:
        """The timesteps a ``steps``-step run visits, ascending."""
        if not 1 <= steps <= self.num_timesteps:
            raise ValueError(f"steps {steps} out of range 1…{self.num_timesteps}")
        if steps == self.num_timesteps:
            return np.arange(steps, dtype=np.int64)
        spaced = np.linspace(self.num_timesteps - 1, 0, steps, endpoint=False).astype(np.int64)
        return spaced[::-1].copy()

    def sigmas(self, steps: int) -> npt.NDArray[np.float64]:
        """The run's σ: ``steps`` values, highest first, then 0."""
        sig = self.train_sigmas()[self.timesteps(steps)][::-1]
        return np.append(sig, 0.0)

    def timestep_of(self, sigma: float) -> int:
        """The training timestep whose σ is nearest (``sigma_to_idx``)."""
        return int(np.abs(self.train_sigmas() - sigma).argmin())


def eps_scalings(sigma: float) -> tuple[float, float, float]:
    """EpsScaling: (c_skip, c_out, c_in) for D(x) = c_skip·x + c_out·ε(c_in·x)."""
    return 1.0, -sigma, 1.0 / (sigma**2 + 1.0) ** 0.5


def guided_denoise(
    network: EpsNetwork, x: torch.Tensor, sigma: float, timestep: int, cond: torch.Tensor, guidance: float
) -> torch.Tensor:
    """D(x) with classifier-free guidance: one batched pass of [unconditional (zeros), conditional]."""
    c_skip, c_out, c_in = eps_scalings(sigma)
    batch = torch.cat([x, x]) * c_in
    t = torch.full((batch.shape[0],), timestep, dtype=torch.long, device=x.device)
    text = torch.cat([torch.zeros_like(cond), cond])
    eps = network(batch, t, text).to(x.dtype)
    denoised = c_skip * torch.cat([x, x]) + c_out * eps
    uncond, conditional = denoised.chunk(2)
    return uncond + guidance * (conditional - uncond)


def euler_step(x: torch.Tensor, denoised: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
    """x + (σ_next − σ)·(x − D)/σ."""
    return x + (sigma_next - sigma) * (x - denoised) / sigma


def sample(
    network: EpsNetwork,
    noise: torch.Tensor,
    cond: torch.Tensor,
    steps: int,
    guidance: float,
    schedule: Schedule,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """N(0, 1) ``noise`` → a clean latent. ``before_step(i)``/``after_step(i)`` run around step i
    (0-based; progress and cancellation)."""
    sigmas = schedule.sigmas(steps)
    x = noise.float() * float(np.sqrt(1.0 + sigmas[0] ** 2))
    for i in range(steps):
        if before_step is not None:
            before_step(i)
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = guided_denoise(network, x, sigma, schedule.timestep_of(sigma), cond, guidance)
        x = euler_step(x, denoised.float(), sigma, sigma_next)
        if after_step is not None:
            after_step(i)
    return x
