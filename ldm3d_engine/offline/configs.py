"""Configuration shared by the offline builders (:mod:`.tiny` and :mod:`.tiny_rgb`), in one place
that both import, so neither imports the other for it."""

from __future__ import annotations

from typing import Any

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
