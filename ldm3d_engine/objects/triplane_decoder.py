"""Latent → triplane: the latent's 3 planes → tokens → a DiT decoder → the conv upsampler.

Facts (NIRVANALAN/LN3Diff; lines in docs/objects.md):

- tokens: ``PatchEmbedTriplane`` (``vit/vit_triplane.py``): one conv with ``groups=3`` over the whole
  3·C-channel latent, 3·D output channels, kernel = stride = 2; its output is read as B×D×3×h×w
  (channel ``d·3 + n`` is feature d of plane n) and flattened plane-major to B×3hw×D;
- the decoder (``dit/dit_decoder.py`` DiT2, ``DiT2-L/2``): the tokens are not its input but its
  per-token condition: the sequence starts from a learned position table (3·16² × D, in the
  checkpoint) and each block is adaLN-modulated token by token by them; even blocks attend within
  each plane, odd blocks across all three; no final norm or projection (the ditDecoder class
  deletes the U-ViT skips, ``forward_vit_decoder`` is ``vit_decoder(x)``);
- after it (…withSD_D ``vit_decode_postprocess``): tokens → B·3×D×16×16 → the conv upsampler →
  B×(3·32)×128×128, plane-major (``'(b n) c h w -> b (n c) h w'``).
"""

from __future__ import annotations

import torch
from torch import nn

from .conv_decoder import ConvUpsampler
from .layers import AdaLNBlock, sincos_2d
from .ln3diff_config import LN3DiffConfig


class TriplaneDecoder(nn.Module):
    def __init__(self, cfg: LN3DiffConfig) -> None:
        super().__init__()
        d, p = cfg.decoder_hidden, cfg.decoder_patch
        if cfg.latent_size % p:
            raise ValueError(f"latent size {cfg.latent_size} is not a multiple of the decoder patch {p}")
        self.cfg = cfg
        self.token_embed = nn.Conv2d(3 * cfg.latent_channels, 3 * d, kernel_size=p, stride=p, groups=3)
        side = cfg.decoder_tokens_side
        # Learned upstream (initialised from this sine table); the checkpoint's values replace it.
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(d, 3 * side, side)).unsqueeze(0))
        self.blocks = nn.ModuleList(AdaLNBlock(d, cfg.decoder_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth))
        self.upsampler = ConvUpsampler(cfg)

    def tokens(self, latent: torch.Tensor) -> torch.Tensor:
        """B×3C×H×W → B×3hw×D (the grouped conv's channels read as D×3, as upstream reads them)."""
        x: torch.Tensor = self.token_embed(latent)
        b, _, h, w = x.shape
        return x.reshape(b, -1, 3, h, w).flatten(2).transpose(1, 2)

    def transformer(self, cond: torch.Tensor) -> torch.Tensor:
        b, n, d = cond.shape
        x = self.pos_embed.to(cond.dtype).expand(b, -1, -1)
        per_plane = cond.reshape(b * 3, n // 3, d)
        for index, block in enumerate(self.blocks):
            within = index % 2 == 0  # even blocks: each plane apart; odd blocks: all three planes
            x = block(x.reshape(b * 3, n // 3, d), per_plane) if within else block(x.reshape(b, n, d), cond)
        return x.reshape(b, n, d)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """B×3C×H×W (the sampled latent, already multiplied by the scaling divider) → B×3×F×S×S."""
        x = self.transformer(self.tokens(latent))
        b, _, d = x.shape
        side = self.cfg.decoder_tokens_side
        planes = x.reshape(b, 3, side, side, d).permute(0, 1, 4, 2, 3).reshape(b * 3, d, side, side)
        features: torch.Tensor = self.upsampler(planes)  # (b n) F S S
        return features.reshape(b, 3, *features.shape[1:])
