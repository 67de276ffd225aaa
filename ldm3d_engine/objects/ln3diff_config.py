"""LN3Diff's architecture and sampling defaults, as numbers: the real model's and ``tiny-ln3diff``'s.

Every real value was read in ``NIRVANALAN/LN3Diff`` (the file and line of each are in docs/objects.md):
the text-to-3D shell script ``sample_obajverse_t23d_dit.sh``, the sampler's YAML
``sgm/configs/txt2img-clipl-compat.yaml``, the DiT (``dit/dit_trilatent.py``), the decoder
(``vit/vit_triplane.py``, ``dit/dit_decoder.py``) and the mesh export (``nsr/train_util_diffusion.py``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The licence, stated wherever the model is named (LICENSE of NIRVANALAN/LN3Diff and of yslan/LN3Diff).
LICENCE = "S-Lab License 1.0 (non-commercial use only; NTU S-Lab, LN3Diff)"
TINY_LICENCE = (
    "Apache-2.0 (tiny-ln3diff: random weights built by this project; LN3Diff's own are S-Lab, non-commercial)"
)

#: Where the official weights are: the Hugging Face repository and the file in it (the text-to-3D DiT
#: and the triplane decoder, jointly, 4.1 GB; the repository holds 27 GB of other checkpoints).
HUB_ID = "yslan/LN3Diff"
WEIGHTS_FILE = "checkpoints/objaverse/objaverse-dit/t23d/model_joint_denoise_rec_model3910000.safetensors"
#: The text encoder sgm's FrozenCLIPEmbedder loads (its own repository; not in LN3Diff's file).
CLIP_ID = "openai/clip-vit-large-patch14"
#: A local folder's weights (any LN3Diff checkpoint renamed) and sizes (absent: the real model's).
LOCAL_WEIGHTS = "ln3diff.safetensors"
CONFIG_FILE = "ln3diff_config.json"


@dataclass(frozen=True)
class LN3DiffConfig:
    """Sizes of every part. Defaults: the released Objaverse text-to-3D model."""

    # The diffusion latent: 3 planes of ``latent_channels`` at ``latent_size``², stacked as 3·C channels
    # ("b (c n) h w": channel c·3 + plane n).
    latent_channels: int = 4
    latent_size: int = 32
    # The denoiser: DiT-L/2 with a cross-attention to the text after each self-attention.
    dit_hidden: int = 1024
    dit_depth: int = 24
    dit_heads: int = 16
    dit_patch: int = 2
    mlp_ratio: int = 4
    #: Head size of the text cross-attention (ldm's MemoryEfficientCrossAttention default: 64).
    cross_head_dim: int = 64
    #: Width of the text encoder's tokens (CLIP ViT-L/14: 768) and the tokens per prompt.
    text_dim: int = 768
    text_tokens: int = 77
    # The decoder: latent → tokens (grouped conv, patch ``decoder_patch``) → DiT2-L/2 → conv upsampler.
    decoder_hidden: int = 1024
    decoder_depth: int = 24
    decoder_heads: int = 16
    decoder_patch: int = 2
    # The convolutional "super-resolution" decoder (ldm's VAE Decoder layout), per plane.
    sr_channels: int = 32
    sr_channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    sr_res_blocks: int = 1
    sr_norm_groups: int = 32
    #: Feature channels per triplane plane (the conv decoder's ``out_ch``; the OSG MLP's input).
    triplane_channels: int = 32
    # The OSG MLP: features → hidden (softplus) → density + RGB.
    osg_hidden: int = 64
    # Where the object lives: coordinates are scaled by 2 / box_warp before sampling the planes; the
    # density grid spans [-bbox, bbox]³.
    box_warp: float = 0.9
    bbox: float = 0.45
    #: The sampled latent is multiplied by this before decoding.
    scaling_divider: float = 0.96806
    # The noise schedule (legacy DDPM discretisation) and the sampler's defaults.
    num_timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012
    default_steps: int = 250
    default_guidance: float = 6.5
    #: Marching-cubes grid: cells along each axis (191 cells = upstream's 192³ grid points) and the
    #: density threshold of the surface.
    default_resolution: int = 191
    max_resolution: int = 384
    mesh_threshold: float = 10.0

    @property
    def plane_tokens(self) -> int:
        return (self.latent_size // self.dit_patch) ** 2

    @property
    def decoder_tokens_side(self) -> int:
        return self.latent_size // self.decoder_patch

    @property
    def triplane_size(self) -> int:
        """Side of each triplane plane: the decoder's tokens, upsampled once per extra level."""
        return self.decoder_tokens_side << (len(self.sr_channel_mult) - 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LN3DiffConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LN3Diff config fields {unknown}; known: {sorted(known)}")
        values = dict(data)
        if "sr_channel_mult" in values:
            values["sr_channel_mult"] = tuple(values["sr_channel_mult"])
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path) -> LN3DiffConfig:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path} does not hold an object of LN3Diff config fields")
        return cls.from_dict(data)


REAL = LN3DiffConfig()

#: ``tiny-ln3diff``: the same architecture at toy sizes, so every stage runs in seconds on a CPU. Random
#: weights make no object: the density is noise, so its surface is taken at 0 rather than at 10.
TINY = LN3DiffConfig(
    latent_size=8,
    dit_hidden=32,
    dit_depth=2,
    dit_heads=2,
    cross_head_dim=16,
    text_dim=32,
    decoder_hidden=32,
    decoder_depth=2,
    decoder_heads=2,
    sr_channels=8,
    sr_channel_mult=(1, 2),
    sr_norm_groups=4,
    triplane_channels=8,
    osg_hidden=16,
    default_steps=4,
    default_resolution=24,
    max_resolution=64,
    mesh_threshold=0.0,
)
