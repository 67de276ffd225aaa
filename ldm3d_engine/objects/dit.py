"""The denoiser: a DiT over the rolled-out triplane latent, conditioned on the timestep (adaLN-Zero)
and on the CLIP tokens (cross-attention in every block).

Facts (NIRVANALAN/LN3Diff ``dit/dit_trilatent.py`` DiT_TriLatent.forward, ``dit/dit_models_xformers.py``
DiT, TextCondDiTBlock, FinalLayer, CaptionEmbedder, TimestepEmbedder; docs/objects.md has the lines):

- the latent is B×(C·3)×H×W with channel ``c·3 + n`` for plane n; each plane is patch-embedded by the
  same conv and the three token sets are concatenated (plane-major) into one sequence of 3·(H/p)²;
- a fixed 2-D sine table over (plane, token) is added (``init_PE_3D_aware``; it is in the checkpoint);
- the CLIP tokens go through an MLP (768 → D → D, tanh GELU) before the cross-attentions;
- every block attends over all three planes at once (the within-plane branch is disabled upstream);
- the timestep (the discrete index 0…999) is embedded with 256 sine features and a 2-layer MLP;
- the final layer is adaLN (shift, scale) + LayerNorm + linear to p²·C, un-patchified back per plane.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AdaLN, AdaLNBlock, CrossAttention, Mlp, modulate, plain_norm, sincos_2d, timestep_embedding
from .ln3diff_config import LN3DiffConfig

#: Sine features of the timestep (DiT's ``frequency_embedding_size``).
TIME_FEATURES = 256


class TimeEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(TIME_FEATURES, dim)
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(timestep_embedding(t, TIME_FEATURES))))  # type: ignore[no-any-return]


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = plain_norm(dim)
        self.ada_ln = AdaLN(dim, 2)
        self.linear = nn.Linear(dim, out)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada_ln(c)
        return self.linear(modulate(self.norm(x), shift, scale))  # type: ignore[no-any-return]


class TriplaneDiT(nn.Module):
    """ε-prediction network: (noisy latent, timestep index, CLIP tokens) → ε, same shape as the latent."""

    def __init__(self, cfg: LN3DiffConfig) -> None:
        super().__init__()
        d, p, ch = cfg.dit_hidden, cfg.dit_patch, cfg.latent_channels
        if cfg.latent_size % p:
            raise ValueError(f"latent size {cfg.latent_size} is not a multiple of the patch {p}")
        self.cfg = cfg
        self.patch_embed = nn.Conv2d(ch, d, kernel_size=p, stride=p)
        self.time_embed = TimeEmbed(d)
        self.text_proj = Mlp(cfg.text_dim, d, d)
        table = sincos_2d(d, 3, cfg.plane_tokens)
        self.register_buffer("pos_embed", torch.from_numpy(table).unsqueeze(0), persistent=True)
        self.blocks = nn.ModuleList(
            AdaLNBlock(d, cfg.dit_heads, cfg.mlp_ratio, CrossAttention(d, cfg.dit_heads, cfg.cross_head_dim, d))
            for _ in range(cfg.dit_depth)
        )
        self.final = FinalLayer(d, p * p * ch)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """x: B×3C×H×W, t: B timestep indices, text: B×77×text_dim."""
        b, _, h, w = x.shape
        ch, p = self.cfg.latent_channels, self.cfg.dit_patch
        planes = x.reshape(b, ch, 3, h, w).transpose(1, 2).reshape(b * 3, ch, h, w)  # b (c n) h w → (b n) c h w
        tokens = self.patch_embed(planes).flatten(2).transpose(1, 2)  # (b n) l d
        tokens = tokens.reshape(b, -1, tokens.shape[-1]) + self.pos_embed.to(tokens.dtype)  # b (n l) d
        c = self.time_embed(t).to(tokens.dtype)
        context = self.text_proj(text.to(tokens.dtype))
        for block in self.blocks:
            tokens = block(tokens, c, context)
        out: torch.Tensor = self.final(tokens, c)  # b (n l) p·p·C
        gh, gw = h // p, w // p
        out = out.reshape(b * 3, gh, gw, p, p, ch).permute(0, 5, 1, 3, 2, 4).reshape(b * 3, ch, h, w)
        return out.reshape(b, 3, ch, h, w).transpose(1, 2).reshape(b, ch * 3, h, w).float()  # (b n) c → b (c n)
