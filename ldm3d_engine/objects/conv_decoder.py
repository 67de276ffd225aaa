"""The convolutional "super-resolution" decoder: each plane's decoder tokens (D×16×16) → triplane
features (32×128×128), in the layout of the latent-diffusion VAE decoder.

Facts (NIRVANALAN/LN3Diff ``vit/vit_triplane.py`` …withSD_D: ``conv_sr=Decoder(resolution=128,
ch=32, ch_mult=[1, 2, 2, 4], num_res_blocks=1, attn_resolutions=[], out_ch=32,
z_channels=vit_decoder.embed_dim)``; ``ldm/modules/diffusionmodules/model.py`` Decoder, ResnetBlock,
AttnBlock/MemoryEfficientAttnBlock, Upsample): conv_in, a middle of resnet → single-head attention →
resnet, then per level (coarsest first) ``num_res_blocks + 1`` resnets and a nearest ×2 upsample +
conv (all but the finest level), GroupNorm(32, eps 1e-6) → SiLU → conv_out. No timestep input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ln3diff_config import LN3DiffConfig


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__()
        self.norm1 = group_norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = group_norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))
        skip: torch.Tensor = x if self.shortcut is None else self.shortcut(x)
        return skip + h


class SpatialAttention(nn.Module):
    """One head over all positions, 1×1 convs for q, k, v and the output."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)

        def seq(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, 1, c, h * w).transpose(2, 3)

        out = F.scaled_dot_product_attention(seq(self.q(n)), seq(self.k(n)), seq(self.v(n)))
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, h, w))  # type: ignore[no-any-return]


class Level(nn.Module):
    def __init__(self, cin: int, cout: int, blocks: int, groups: int, upsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(cin if i == 0 else cout, cout, groups) for i in range(blocks))
        self.upsample = nn.Conv2d(cout, cout, 3, padding=1) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.upsample is not None:
            x = self.upsample(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class ConvUpsampler(nn.Module):
    """B×D×s×s → B×triplane_channels×(s·2^(levels−1))², s the decoder's tokens per side."""

    def __init__(self, cfg: LN3DiffConfig) -> None:
        super().__init__()
        mult, ch, groups = cfg.sr_channel_mult, cfg.sr_channels, cfg.sr_norm_groups
        top = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.decoder_hidden, top, 3, padding=1)
        self.mid_block1 = ResBlock(top, top, groups)
        self.mid_attn = SpatialAttention(top, groups)
        self.mid_block2 = ResBlock(top, top, groups)
        # levels[i] is ldm's up[i]: i = 0 is the finest; they run from the coarsest down.
        levels: list[Level] = []
        cin = top
        for i in reversed(range(len(mult))):
            cout = ch * mult[i]
            levels.insert(0, Level(cin, cout, cfg.sr_res_blocks + 1, groups, upsample=i != 0))
            cin = cout
        self.levels = nn.ModuleList(levels)
        self.norm_out = group_norm(ch * mult[0], groups)
        self.conv_out = nn.Conv2d(ch * mult[0], cfg.triplane_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid_block2(self.mid_attn(self.mid_block1(self.conv_in(z))))
        for level in reversed(self.levels):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # type: ignore[no-any-return]
