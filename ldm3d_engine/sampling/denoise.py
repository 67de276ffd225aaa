"""The classifier-free guided denoising loop: latents in, latents out.

Knows the UNet and the scheduler, nothing of prompts, images or devices. Guidance runs
as one batched UNet call per step (unconditional and conditional halves together).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import Cancelled
from ..types import CancelToken, OnStep
from .preview import predicted_clean

#: Told x₀ (the clean latents the UNet predicts) after the steps a caller wants previews of:
#: (steps done, steps in all, x₀).
OnClean = Callable[[int, int, torch.Tensor], None]


@dataclass(frozen=True)
class Guidance:
    """What conditions the UNet at every step."""

    embeddings: torch.Tensor | None  # [uncond, cond] when guided, else [cond]; None: an unconditional UNet
    scale: float  # > 1 means classifier-free guidance (as diffusers: <= 1 is the prompt alone)
    condition: torch.Tensor | None = None  # LDM3D-SR: the low-resolution latent, concatenated on channels
    class_labels: torch.Tensor | None = None  # LDM3D-SR: the noise level

    @property
    def batch(self) -> int:
        return 2 if self.scale > 1.0 and self.embeddings is not None else 1


def denoise(
    unet: Any,
    scheduler: Any,
    timesteps: torch.Tensor,
    latents: torch.Tensor,
    guidance: Guidance,
    generator: torch.Generator,
    *,
    after_step: Callable[[], None] = lambda: None,
    on_step: OnStep | None = None,
    cancel: CancelToken | None = None,
    steps: int | None = None,
    eta: float = 0.0,
    on_clean: OnClean | None = None,
    clean_due: Callable[[int, int], bool] = lambda done, total: False,
) -> torch.Tensor:
    """Run ``timesteps`` of ``scheduler`` from ``latents``. ``generator`` draws the step noise of
    ancestral samplers (and of DDIM with ``eta`` > 0). Raises :class:`Cancelled` within one step of ``cancel.cancel()``.

    Progress counts the job's ``steps`` (None: one per timestep), not UNet passes: PNDM without
    its Runge-Kutta warm-up runs ``steps + 1`` passes (its first timestep twice), so its first
    pass reports nothing, as diffusers' progress bar does.

    ``on_clean`` gets x₀ after each completed step ``clean_due(done, total)`` asks for (after
    ``on_step``): the previews of a world as it forms. It costs nothing on the other steps."""
    batch = guidance.batch
    condition = None if guidance.condition is None else torch.cat([guidance.condition] * batch)
    labels = None if guidance.class_labels is None else guidance.class_labels.repeat(batch)
    step_kwargs = _step_kwargs(scheduler, generator, eta)
    passes = len(timesteps)
    total = passes if steps is None else steps
    order = int(getattr(scheduler, "order", 1))
    done = 0
    for i, t in enumerate(timesteps):
        if cancel is not None and cancel.cancelled:
            raise Cancelled(done, total)
        model_in = scheduler.scale_model_input(torch.cat([latents] * batch), t)
        if condition is not None:
            model_in = torch.cat([model_in, condition], dim=1)
        if guidance.embeddings is None:  # an unconditional UNet2DModel (CompVis LDM)
            noise = unet(model_in, t, class_labels=labels, return_dict=False)[0]
        else:
            noise = unet(
                model_in, t, encoder_hidden_states=guidance.embeddings, class_labels=labels, return_dict=False
            )[0]
        if batch == 2:
            noise_uncond, noise_cond = noise.chunk(2)
            noise = noise_uncond + guidance.scale * (noise_cond - noise_uncond)
        now = max(0, total - (passes - i - 1) // order)  # steps completed after this pass
        clean = None
        if on_clean is not None and now > done and clean_due(now, total):  # before step() moves the index
            clean = predicted_clean(scheduler, noise, latents, t)
        latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
        after_step()
        if now > done:
            done = now
            if on_step is not None:
                on_step(done, total)
            if clean is not None and on_clean is not None:
                on_clean(done, total, clean)
    if cancel is not None and cancel.cancelled:
        raise Cancelled(total, total)
    return latents


def _step_kwargs(scheduler: Any, generator: torch.Generator, eta: float) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs
