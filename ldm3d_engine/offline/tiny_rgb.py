"""Built-in offline stand-ins for the RGB-only latent diffusion models and for DPT.

``tiny-ldm`` has the layout of ``CompVis/ldm-celebahq-256`` (an unconditional ``UNet2DModel``,
a ``VQModel``, DDIM), ``tiny-ldm-text`` that of ``CompVis/ldm-text2im-large-256`` (LDM-BERT and
a BERT word-piece tokenizer, a conditional UNet, a KL autoencoder, DDIM), ``tiny-dpt`` that of
``Intel/dpt-large`` (``DPTForDepthEstimation`` with its image processor, 64×64 instead of 384×384).
Random weights from a fixed seed, autoencoders with 4 blocks (latents 1/8 of the picture, as in
the real LDM3D models); saved once and loaded by the same code as the real models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from .configs import TINY_TEXT_UNET

SEED = 20261123
#: DDIM with the linear-ish schedule of the CompVis LDMs (the tiny models' own; ids say which).
DDIM_LDM = {
    "_class_name": "DDIMScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "epsilon",
}
WORDS = ("a", "the", "of", "in", "at", "and", "red", "blue", "green", "forest", "sea", "sky", "city", "night",
         "dawn", "face", "house", "mountain", "river", "painting", "photo", "view")  # fmt: skip


def _autoencoder_blocks() -> dict[str, object]:
    return {
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (8, 16, 32, 32),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "sample_size": 128,
    }


def _widen_decoder(decoder: torch.nn.Module) -> None:
    """Random weights decode to a nearly flat picture; widen the output, as trained weights' would be."""
    with torch.no_grad():
        decoder.conv_out.weight.mul_(8.0)  # type: ignore[union-attr, operator]


def _scheduler(folder: Path) -> None:
    (folder / "scheduler").mkdir(parents=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(DDIM_LDM), encoding="utf-8")


def build_ldm(name: str, folder: Path) -> None:
    """``tiny-ldm``: unconditional, VQ autoencoder (3 latent channels, as ldm-celebahq-256)."""
    from diffusers import UNet2DModel, VQModel

    torch.manual_seed(SEED)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
    )
    vqvae = VQModel(in_channels=3, out_channels=3, latent_channels=3, num_vq_embeddings=64, **_autoencoder_blocks())
    _widen_decoder(vqvae.decoder)
    unet.save_pretrained(folder / "unet")
    vqvae.save_pretrained(folder / "vqvae")
    _scheduler(folder)
    index = {
        "_class_name": "LDMPipeline",
        "_ldm3d_bridge_tiny": name,
        "unet": ["diffusers", "UNet2DModel"],
        "vqvae": ["diffusers", "VQModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")


def write_wordpiece(folder: Path) -> int:
    """A small BERT word-piece vocabulary (special tokens, a few words, letters); its size."""
    folder.mkdir(parents=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *(f"##{c}" for c in letters)]
    tokens = list(dict.fromkeys(tokens))
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 77}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return len(tokens)


def build_ldm_text(name: str, folder: Path) -> None:
    """``tiny-ldm-text``: LDM-BERT + a conditional UNet + a KL autoencoder, as ldm-text2im-large-256."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertConfig, LDMBertModel

    vocab_size = write_wordpiece(folder / "tokenizer")
    torch.manual_seed(SEED)
    bert = LDMBertModel(
        LDMBertConfig(
            vocab_size=vocab_size,
            max_position_embeddings=77,
            encoder_layers=2,
            encoder_ffn_dim=64,
            encoder_attention_heads=2,
            head_dim=16,
            d_model=32,
            pad_token_id=0,
        )
    )
    unet = UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, **TINY_TEXT_UNET)
    vqvae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, **_autoencoder_blocks())
    _widen_decoder(vqvae.decoder)
    bert.save_pretrained(folder / "bert")
    unet.save_pretrained(folder / "unet")
    vqvae.save_pretrained(folder / "vqvae")
    _scheduler(folder)
    index = {
        "_class_name": "LDMTextToImagePipeline",
        "_ldm3d_bridge_tiny": name,
        "bert": ["latent_diffusion", "LDMBertModel"],
        "tokenizer": ["transformers", "BertTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vqvae": ["diffusers", "AutoencoderKL"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    (folder / "model_index.json").write_text(json.dumps(index), encoding="utf-8")


def build_dpt(name: str, folder: Path) -> None:
    """``tiny-dpt``: the dpt-large architecture (plain ViT backbone), 64×64 pictures."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessorPil

    torch.manual_seed(SEED)
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=64,
        patch_size=16,
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        head_hidden_size=8,
    )
    model = DPTForDepthEstimation(config)
    # With transformers' initialisation (std 0.02 through a dozen layers) a random DPT answers ~1e-9
    # everywhere; He-initialised convolutions give depth of order 1 that varies across the picture,
    # as a trained model's does (so that tests comparing numbers compare something).
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.uniform_(module.bias, -0.1, 0.1)
    processor = DPTImageProcessorPil(
        size={"height": 64, "width": 64},
        keep_aspect_ratio=False,
        resample=2,  # bilinear, as Intel/dpt-large's preprocessor_config.json says
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


#: name → (builder, the file whose presence says the build is complete).
BUILDERS: dict[str, tuple[Callable[[str, Path], None], str]] = {
    "tiny-ldm": (build_ldm, "model_index.json"),
    "tiny-ldm-text": (build_ldm_text, "model_index.json"),
    "tiny-dpt": (build_dpt, "config.json"),
}
