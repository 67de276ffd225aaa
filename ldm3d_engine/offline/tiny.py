"""The built-in offline models: real architectures, tiny sizes, random weights.

``tiny`` (4-channel VAE), ``tiny-6c`` (6-channel VAE, the original LDM3D depth
packing), ``tiny-pano`` (1024×512 native) and ``tiny-sr`` (the LDM3D-SR layout:
an 8-channel UNet with the noise level as class label) are built from configs with a
fixed seed, saved once in diffusers layout, and then loaded by the same code as
real models. Their pictures are noise; everything around them is real. The VAE
keeps 4 blocks, so latents are 1/8 of the image, as in the real models.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from .configs import TINY_TEXT_UNET
from .tiny_safety import write_safety_checker

logger = logging.getLogger(__name__)

#: Bump when a config below changes, so old builds are not reused.
BUILD_VERSION = 5
SEED = 20231122

# The SD 1.x noise schedule the LDM3D models were trained with, in the two scheduler configs Intel's
# folders ship: PNDM (Intel/ldm3d, Intel/ldm3d-sr) and DDIM (Intel/ldm3d-pano). Each tiny model ships
# the one of the model it stands in for, so the "model's own scheduler" path is exercised by both.
_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}
PNDM_CONFIG = {"_class_name": "PNDMScheduler", **_SCHEDULE, "skip_prk_steps": True, "clip_sample": False}
DDIM_CONFIG = {"_class_name": "DDIMScheduler", **_SCHEDULE, "clip_sample": False}
_SCHEDULER_CONFIGS = {"tiny": PNDM_CONFIG, "tiny-6c": PNDM_CONFIG, "tiny-sr": PNDM_CONFIG, "tiny-pano": DDIM_CONFIG}

_VAE_CHANNELS = {"tiny": 4, "tiny-6c": 6, "tiny-pano": 4, "tiny-sr": 4}


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def write_tokenizer(folder: Path) -> int:
    """Write a small CLIP BPE vocabulary (bytes plus a few merges); return its size."""
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    merges = ["t h", "th e</w>", "i n", "e r", "a n", "o n", "s t", "e n"]
    for merge in merges:
        merged = merge.replace(" ", "")
        if merged not in tokens:
            tokens.append(merged)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            }
        ),
        encoding="utf-8",
    )
    return len(vocab)


def _build(name: str, folder: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vocab_size = write_tokenizer(folder / "tokenizer")
    torch.manual_seed(SEED)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab_size - 2,
            eos_token_id=vocab_size - 1,
            pad_token_id=vocab_size - 1,
        )
    )
    upscaler = name == "tiny-sr"
    unet = UNet2DConditionModel(
        sample_size=64 if name == "tiny-pano" else 32,
        # LDM3D-SR: noisy latents + the encoded low-resolution RGBD; the noise level is a class label.
        in_channels=8 if upscaler else 4,
        out_channels=4,
        num_class_embeds=1000 if upscaler else None,
        **TINY_TEXT_UNET,
    )
    channels = _VAE_CHANNELS[name]
    vae = AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
    )
    # Random VAE weights make a nearly flat image; widen the decoder's output so
    # the noise spans the value range, as a trained decoder's output would.
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(8.0)
    text_encoder.save_pretrained(folder / "text_encoder")
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    (folder / "scheduler").mkdir()
    scheduler = _SCHEDULER_CONFIGS[name]
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler), encoding="utf-8")
    write_safety_checker(folder, SEED)  # as Intel's folders, which ship one (it flags nothing here)
    # A complete model index, so diffusers' own from_pretrained loads the folder as it loads Intel's
    # (the parity tests compare with the pipeline built that way, scheduler included).
    index = {
        "_class_name": "StableDiffusionUpscaleLDM3DPipeline" if upscaler else "StableDiffusionLDM3DPipeline",
        "_ldm3d_bridge_tiny": name,
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", scheduler["_class_name"]],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "requires_safety_checker": True,
    }
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")


def ensure_tiny(name: str, root: Path) -> Path:
    """The folder of built-in model ``name`` under ``root``, built on first use.

    Built in a temporary folder and renamed into place, so a crash mid-build
    never leaves a half model that later loads."""
    from .tiny_rgb import BUILDERS as RGB_BUILDERS

    build: Callable[[str, Path], None]
    if name in _VAE_CHANNELS:
        build = _build
        done = "model_index.json"
    elif name in RGB_BUILDERS:
        build, done = RGB_BUILDERS[name]
    else:
        raise KeyError(name)
    folder = root / f"{name}-v{BUILD_VERSION}"
    if (folder / done).exists():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    logger.info("building the offline model %s in %s", name, folder)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        build(name, tmp)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / done).exists():  # not a concurrent build that won
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
