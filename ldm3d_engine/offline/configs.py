"""Configuration shared by the offline builders (:mod:`.tiny` and :mod:`.tiny_rgb`), in one place
that both import, so neither imports the other for it. Torch-free: ``env`` reads the build folder
from here without loading a model library."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def default_tiny_dir() -> Path:
    """Where the offline models are built: ``$XDG_CACHE_HOME/ldm3d-bridge`` (default ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ldm3d-bridge"


#: The text-conditioned UNet of every tiny model (sizes and channels are each model's own).
TINY_TEXT_UNET: dict[str, Any] = {
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
