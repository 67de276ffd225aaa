"""What conditions a world (its prompts' embeddings), and the blend between two worlds of a morph.

A morph frame at ``t`` (0 = the first world, 1 = the second) starts from the spherical
interpolation of the two worlds' starting noise and is conditioned on the spherical interpolation
of their text embeddings (each token's vector on its own), with the same scheduler and steps. Slerp
keeps the noise's norm (a linear blend of two Gaussian draws is too faint in the middle and
denoises to grey). At exactly 0 and 1 the blend is the world itself, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Conditioning:
    """A request's prompts as the UNet sees them, and what the model saw of their texts."""

    cond: torch.Tensor  # 1×77×width
    uncond: torch.Tensor  # the negative prompt's; used when guidance > 1
    prompt_used: str
    prompt_truncated: bool
    negative_truncated: bool


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dim: int | None = None) -> torch.Tensor:
    """Spherical interpolation from ``a`` (t = 0) to ``b`` (t = 1): over the whole tensor as one
    vector (``dim`` None), or along ``dim`` (each vector on its own). Nearly parallel vectors blend
    linearly (the sphere is flat there)."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    x, y = a.double(), b.double()
    if dim is None:
        x, y = x.reshape(1, -1), y.reshape(1, -1)
        axis = 1
    else:
        axis = dim
    nx, ny = x.norm(dim=axis, keepdim=True), y.norm(dim=axis, keepdim=True)
    cos = ((x * y).sum(dim=axis, keepdim=True) / (nx * ny).clamp_min(1e-12)).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    linear = sin.abs() < 1e-6
    wa = torch.where(linear, torch.full_like(sin, 1.0 - t), torch.sin((1.0 - t) * theta) / sin.where(~linear, 1.0))
    wb = torch.where(linear, torch.full_like(sin, t), torch.sin(t * theta) / sin.where(~linear, 1.0))
    out = wa * x + wb * y
    return out.reshape(a.shape).to(a.dtype)


def blend(a: Conditioning, b: Conditioning, t: float) -> Conditioning:
    """The conditioning of a morph frame at ``t``: each token's embedding slerped."""
    if t <= 0.0:
        return a
    if t >= 1.0:
        return b
    return Conditioning(
        cond=slerp(a.cond, b.cond, t, dim=-1),
        uncond=slerp(a.uncond, b.uncond, t, dim=-1),
        prompt_used=f"{a.prompt_used} → {b.prompt_used} ({t:.3f})",
        prompt_truncated=a.prompt_truncated or b.prompt_truncated,
        negative_truncated=a.negative_truncated or b.negative_truncated,
    )
