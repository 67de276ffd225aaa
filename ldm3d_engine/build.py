"""Loading an engine: check the device, find the model's files, load the modules, and put them on
their device with the fast path the settings ask for."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any

import torch

from .devices import Placement, resolve_placement
from .engine import Engine
from .errors import DeviceNotAvailable, UnknownModel
from .loading import ModelLocation, locate
from .prompts import MAX_TOKENS
from .types import EngineSettings

logger = logging.getLogger(__name__)

#: Where the UNet's attention gets one fused Q/K/V projection (not yet tried under HPU graphs).
FUSED_QKV_DEVICES = ("cuda", "cpu")


def vae_dtype(dtype: torch.dtype, vae_config: Mapping[str, Any]) -> torch.dtype:
    """The VAE's dtype: fp16 VAEs overflow into NaNs, so one whose config asks for it
    (``force_upcast``; diffusers' default, True, where a config predates the key) stays in fp32
    when the rest of the model runs in fp16. bf16 has fp32's range and needs none."""
    if dtype == torch.float16 and vae_config.get("force_upcast", True):
        return torch.float32
    return dtype


def load_engine(settings: EngineSettings) -> Engine:
    """Check the device, find the model (building, or fetching when allowed), load it there."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    placement = resolve_placement(settings.device, settings.dtype)
    cuda = placement.device.type == "cuda"
    if settings.offload not in ("none", "model"):
        raise DeviceNotAvailable(f"offload {settings.offload!r} is unknown; use none or model")
    offload = settings.offload == "model"
    if offload and not cuda:
        raise DeviceNotAvailable(f"offload 'model' moves models to a GPU and back; {placement.device} is not one")
    location = locate(settings)
    folder = location.folder
    logger.info("loading %s from %s onto %s (%s)", location.model_id, folder, placement.device, placement.dtype_name)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), model_max_length=MAX_TOKENS)
        text_encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), dtype=placement.dtype)
        unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=placement.dtype)
        vae_config = AutoencoderKL.load_config(str(folder / "vae"))
        vae = AutoencoderKL.from_pretrained(str(folder / "vae"), torch_dtype=vae_dtype(placement.dtype, vae_config))
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise UnknownModel(f"could not load {location.model_id!r} from {folder}: {exc}") from exc
    return assemble_engine(
        tokenizer, text_encoder, unet, vae, scheduler_config, placement=placement, location=location, settings=settings
    )


def assemble_engine(
    tokenizer: Any,
    text_encoder: Any,
    unet: Any,
    vae: Any,
    scheduler_config: dict[str, Any],
    *,
    placement: Placement,
    location: ModelLocation,
    settings: EngineSettings,
) -> Engine:
    """Put loaded modules on their device with the fast path the settings ask for (also used by
    bench/engine_speed.py on modules built from configs)."""
    offload = settings.offload == "model"  # load_engine refused it off CUDA before loading any weights
    if placement.device.type == "cpu":
        torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    home = torch.device("cpu") if offload else placement.device
    for module, dtype in (
        (text_encoder, placement.dtype),
        (unet, placement.dtype),
        (vae, vae_dtype(placement.dtype, vae.config)),
    ):
        if module.dtype != dtype:  # modules built from configs (the benchmark) arrive in fp32
            module.to(dtype=dtype)
        module.to(home).eval().requires_grad_(False)
    # Convolutions run fastest with channels-last tensors on CUDA and with oneDNN on the CPU.
    unet.to(memory_format=torch.channels_last)
    vae.to(memory_format=torch.channels_last)
    if placement.device.type == "cuda":
        # A show runs at one size: let cuDNN time its convolution algorithms once per shape and keep
        # the fastest (a process-wide switch; the warm-up pays for the default size).
        torch.backends.cudnn.benchmark = True
    if placement.device.type in FUSED_QKV_DEVICES:
        unet.fuse_qkv_projections()  # one matmul for Q, K and V in every attention
    unet = placement.runtime.prepare_unet(unet)
    if settings.compile:
        unet = torch.compile(unet, fullgraph=False)
    return Engine(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        scheduler_config=scheduler_config,
        placement=placement,
        location=location,
        offload=offload,
        vae_tiling=settings.vae_tiling,
    )
