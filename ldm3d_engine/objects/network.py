"""All of LN3Diff's trained parts in one module, the unit the checkpoint fills: the denoiser, the
latent → triplane decoder and the OSG MLP. (The CLIP text encoder is loaded apart, from its own
repository, as upstream loads it.)"""

from __future__ import annotations

import torch
from torch import nn

from .dit import TriplaneDiT
from .ln3diff_config import LN3DiffConfig
from .renderer import OSGDecoder, TriplaneField
from .triplane_decoder import TriplaneDecoder


class LN3DiffNetwork(nn.Module):
    def __init__(self, cfg: LN3DiffConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.denoiser = TriplaneDiT(cfg)
        self.decoder = TriplaneDecoder(cfg)
        self.renderer = OSGDecoder(cfg)

    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.cfg
        return 3 * cfg.latent_channels, cfg.latent_size, cfg.latent_size

    def field(self, latent: torch.Tensor) -> TriplaneField:
        """One sampled latent (1×3C×H×W, as the sampler returns it) → its triplane field. Upstream
        multiplies the sample by ``triplane_scaling_divider`` first."""
        if latent.shape[0] != 1:
            raise ValueError(f"one object at a time, not a batch of {latent.shape[0]}")
        planes = self.decoder(latent * self.cfg.scaling_divider)
        return TriplaneField(planes[0], self.renderer, self.cfg)
