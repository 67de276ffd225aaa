"""The transformer parts both LN3Diff transformers share: attention, the MLP, adaLN modulation, and
the fixed sine tables (positions, timesteps).

Facts (NIRVANALAN/LN3Diff, docs/objects.md): self-attention is timm's layout with a bias on the
fused qkv projection (``vit/vision_transformer.py`` Attention, ``qkv_bias=True`` in
``dit/dit_models_xformers.py`` DiTBlock); the text cross-attention is ldm's (queries, keys and values
without bias, 64-wide heads, ``ldm/modules/attention.py`` MemoryEfficientCrossAttention); the MLP is
xformers' FusedMLP (two linear layers, tanh-approximated GELU in its Triton kernel); LayerNorms have
no affine parameters (eps 1e-6); modulation is ``x·(1 + scale) + shift``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x·(1 + scale) + shift`` (shift and scale broadcast over the tokens when 2-D)."""
    if shift.ndim == 2:
        shift, scale = shift.unsqueeze(1), scale.unsqueeze(1)
    return x * (1 + scale) + shift


def plain_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm without weight or bias (DiT's norm1, norm2, norm_final)."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))  # type: ignore[no-any-return]


class CrossAttention(nn.Module):
    """Tokens attend to the text; keys and values from ``context`` (its width: ``context_dim``)."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.to_q(x)), heads(self.to_k(context)), heads(self.to_v(context)))
        return self.to_out(out.transpose(1, 2).reshape(b, x.shape[1], -1))  # type: ignore[no-any-return]


class Mlp(nn.Module):
    """fc1 → GELU (tanh approximation) → fc2."""

    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))  # type: ignore[no-any-return]


class AdaLN(nn.Module):
    """SiLU → linear → ``parts`` chunks of the width (DiT's ``adaLN_modulation``)."""

    def __init__(self, dim: int, parts: int) -> None:
        super().__init__()
        self.parts = parts
        self.linear = nn.Linear(dim, parts * dim)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.linear(F.silu(c)).chunk(self.parts, dim=-1))


def sincos_1d(dim: int, positions: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """MAE's 1-D table: ``[sin(p·ω), cos(p·ω)]`` with ω = 10000^(−i/(dim/2))."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    out = np.outer(positions.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim: int, rows: int, cols: int) -> npt.NDArray[np.float32]:
    """MAE's 2-D table for a rows×cols grid, row-major: the first half of each vector encodes the
    column, the second half the row (``get_2d_sincos_pos_embed`` with a (rows, cols) grid)."""
    if dim % 4:
        raise ValueError(f"a 2-D sine table needs a width divisible by 4, not {dim}")
    col, row = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    table = np.concatenate([sincos_1d(dim // 2, col), sincos_1d(dim // 2, row)], axis=1)
    return table.astype(np.float32)


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """DiT's timestep features: ``[cos(t·f), sin(t·f)]`` with f = exp(−ln(max_period)·i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class AdaLNBlock(nn.Module):
    """adaLN-Zero transformer block: gated self-attention, an optional (ungated) text cross-attention,
    gated MLP. ``c`` is per sample (B×D, the denoiser's timestep) or per token (B×N×D, the decoder's
    latent tokens)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, cross: CrossAttention | None = None) -> None:
        super().__init__()
        self.norm1 = plain_norm(dim)
        self.attn = SelfAttention(dim, heads)
        self.cross_attn = cross
        self.norm2 = plain_norm(dim)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.ada_ln = AdaLN(dim, 6)

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        parts: tuple[torch.Tensor, ...] = self.ada_ln(c)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = parts
        if gate_msa.ndim == 2:
            gate_msa, gate_mlp = gate_msa.unsqueeze(1), gate_mlp.unsqueeze(1)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("this block attends to the text: pass its tokens as context")
            x = x + self.cross_attn(x, context)
        mlp: torch.Tensor = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x + gate_mlp * mlp
