"""``tiny-ln3diff``: LN3Diff's architecture at toy sizes with random weights, built offline.

Built once into the offline models' folder (``EngineSettings.tiny_dir``, default
``~/.cache/ldm3d-bridge``), in a temporary folder renamed into place, like the tiny world models: a
tiny CLIP text encoder and tokenizer (``text_encoder/``, ``tokenizer/``), the sizes
(``ln3diff_config.json``) and the weights saved under the official checkpoint's key names
(``ln3diff.safetensors``), so the tiny model loads by the same strict key map as the real file. Its
meshes are noise; everything around them is real.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch

from .keymap import to_official
from .ln3diff_config import CONFIG_FILE, LOCAL_WEIGHTS, TINY
from .network import LN3DiffNetwork

logger = logging.getLogger(__name__)

#: Bump when the tiny config or the layout changes, so an old build is not reused.
BUILD_VERSION = 2
SEED = 20240710


def _ignored_extras() -> dict[str, torch.Tensor]:
    """A few of the keys the real file holds and the loader ignores, so that path runs too."""
    return {
        "ddpm_model.ema_latent_mean": torch.zeros(1, 3 * TINY.latent_channels, TINY.latent_size, TINY.latent_size),
        "ddpm_model.ema_latent_std": torch.ones(1, 3 * TINY.latent_channels, TINY.latent_size, TINY.latent_size),
        "rec_model.decoder.w_avg": torch.zeros(512),
        "rec_model.decoder.superresolution.quant_conv.weight": torch.zeros(24, 8, 1, 1),
        "rec_model.decoder.superresolution.quant_conv.bias": torch.zeros(24),
        "rec_model.encoder.conv_in.weight": torch.zeros(4, 3, 3, 3),
    }


def _calibrate(network: LN3DiffNetwork) -> None:
    """Random weights make a nearly flat density far below any threshold: widen the triplane's
    features (as a trained decoder's would vary) and centre the density on the tiny surface
    threshold, so a tiny object has a surface that moves with the seed."""
    with torch.no_grad():
        network.decoder.upsampler.conv_out.weight.mul_(8.0)
        latent = torch.randn(1, *network.latent_shape(), generator=torch.Generator().manual_seed(SEED))
        density = network.field(latent).density_grid(17)
        network.renderer.fc2.bias[0] -= float(density.median()) - TINY.mesh_threshold


def build(folder: Path) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..offline.tiny import write_tokenizer

    vocab = write_tokenizer(folder / "tokenizer")
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab,
            hidden_size=TINY.text_dim,
            intermediate_size=2 * TINY.text_dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=TINY.text_tokens,
            bos_token_id=vocab - 2,
            eos_token_id=vocab - 1,
            pad_token_id=vocab - 1,
        )
    )
    text_encoder.save_pretrained(folder / "text_encoder")
    network = LN3DiffNetwork(TINY)
    _calibrate(network)
    state = {k: v.contiguous() for k, v in to_official(network.state_dict()).items()}
    save_file({**state, **_ignored_extras()}, str(folder / LOCAL_WEIGHTS))
    (folder / CONFIG_FILE).write_text(TINY.to_json(), encoding="utf-8")


def ensure_tiny_ln3diff(tiny_dir: str | None) -> Path:
    """The folder of ``tiny-ln3diff`` under ``tiny_dir`` (None: the offline models' default), built
    on first use; a crash mid-build never leaves a half model that later loads."""
    from ..offline.configs import default_tiny_dir

    root = Path(tiny_dir) if tiny_dir else default_tiny_dir()
    folder = root / f"tiny-ln3diff-v{BUILD_VERSION}"
    if (folder / LOCAL_WEIGHTS).exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    logger.info("building the offline object model tiny-ln3diff in %s", folder)
    tmp = Path(tempfile.mkdtemp(prefix=".tiny-ln3diff-", dir=root))
    try:
        build(tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / LOCAL_WEIGHTS).exists():  # not a concurrent build that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
