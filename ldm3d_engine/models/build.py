"""Loading an engine: check the device, find the model's files, load the modules, and put them on
their device with the fast path the settings ask for."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..backends.devices import Placement, resolve_placement
from ..depth.estimator import DepthEstimator, load_estimator
from ..errors import DeviceNotAvailable, UnknownModel
from ..presets import FOLDER_DEFAULTS
from ..sampling.prompts import MAX_TOKENS
from ..sampling.seamless import variant as seamless_variant
from ..types import EngineSettings
from .base import DepthOnly, EngineBase
from .compvis import RGBLatentEngine
from .ldm3d import Engine
from .loading import ModelLocation, locate, locate_depth_model, locate_safety_checker

logger = logging.getLogger(__name__)

#: What was said about an unchecked model, once per process (several workers load the same model).
_WARNED: set[tuple[str, str]] = set()
E = TypeVar("E", bound=EngineBase)

#: Where the UNet's attention gets one fused Q/K/V projection (not yet tried under HPU graphs).
FUSED_QKV_DEVICES = ("cuda", "cpu")


def vae_dtype(dtype: torch.dtype, vae_config: Mapping[str, Any], device_type: str = "cuda") -> torch.dtype:
    """The VAE's dtype: fp16 VAEs overflow into NaNs, so one whose config asks for it
    (``force_upcast``; diffusers' default, True, where a config predates the key) stays in fp32
    when the rest of the model runs in fp16. bf16 has fp32's range and needs none on a GPU; on the
    CPU the VAE stays fp32 (its decode is a small part of a job there, and depth keeps its 16 bits)."""
    if dtype == torch.float16 and vae_config.get("force_upcast", True):
        return torch.float32
    if dtype == torch.bfloat16 and device_type == "cpu":
        return torch.float32
    return dtype


def load_engine(settings: EngineSettings) -> Engine | RGBLatentEngine:
    """Check the device, find the model (building, or fetching when allowed), load it there, with
    the depth estimator beside it when one is asked for (or the model needs one)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    placement = resolve_placement(settings.device, settings.dtype, settings.ov_cache, settings.ov_weights)
    cuda = placement.device.type == "cuda"
    if placement.runtime.name == "openvino" and (settings.compile or settings.vae_tiling):
        raise DeviceNotAvailable(
            "compile and vae_tiling are torch's; on OpenVINO the parts are compiled by OpenVINO, whole"
        )
    if settings.offload not in ("none", "model"):
        raise DeviceNotAvailable(f"offload {settings.offload!r} is unknown; use none or model")
    offload = settings.offload == "model"
    if offload and not cuda:
        raise DeviceNotAvailable(f"offload 'model' moves models to a GPU and back; {placement.device} is not one")
    location = locate(settings)
    folder = location.folder
    if location.preset.family == "ldm":
        if offload or settings.compile:
            raise DeviceNotAvailable("offload and compile are for LDM3D models; the CompVis LDMs run without them")
        if placement.device.type == "hpu":  # no HPU graphs or Gaudi autocast path was written for them
            raise DeviceNotAvailable("the CompVis LDMs run on cpu, cuda or mps here; Gaudi serves the LDM3D models")
        safety = find_safety_checker(location, settings, location.model_id)
        depth_model = settings.depth_model or location.preset.depth_model or "dpt-large"
        rgb_estimator = load_depth_estimator(depth_model, settings, placement)
        rgb_engine = load_rgb_engine(location, placement, rgb_estimator, threads=settings.threads)
        return attach_safety(rgb_engine, safety, settings, placement)
    safety = find_safety_checker(location, settings, location.model_id)
    estimator = load_depth_estimator(settings.depth_model, settings, placement) if settings.depth_model else None
    logger.info("loading %s from %s onto %s (%s)", location.model_id, folder, placement.label, placement.dtype_name)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), model_max_length=MAX_TOKENS)
        text_encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), dtype=placement.dtype)
        unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=placement.dtype)
        vae_config = AutoencoderKL.load_config(str(folder / "vae"))
        vae = AutoencoderKL.from_pretrained(
            str(folder / "vae"), torch_dtype=vae_dtype(placement.dtype, vae_config, placement.device.type)
        )
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise UnknownModel(f"could not load {location.model_id!r} from {folder}: {exc}") from exc
    engine = assemble_engine(
        tokenizer, text_encoder, unet, vae, scheduler_config, placement=placement, location=location, settings=settings
    )
    engine.estimator = estimator
    return attach_safety(engine, safety, settings, placement, on_cpu=offload)


def find_safety_checker(location: ModelLocation | None, settings: EngineSettings, name: str) -> tuple[Path, str] | None:
    """The safety checker the settings ask for (the model's own, or ``safety_model``), found before
    any weights load, so a missing one fails the start at once; None (said once) when there is none
    or the check is off. ``location`` None: a depth estimator on its own (only a checker by name)."""
    if not settings.safety:
        _warn_once(
            name,
            "off",
            "the image safety checker is off (safety = off): nothing stops a harmful picture of %s reaching the "
            "screen. The LDM3D model cards' licence (CreativeML OpenRAIL-M) forbids using the models to make "
            "harmful content; keep the check on wherever the public can see the output or type the prompts",
        )
        return None
    if location is None:
        given = ModelLocation(Path(), name, FOLDER_DEFAULTS)
        found = locate_safety_checker(given, settings) if settings.safety_model else None
    else:
        found = locate_safety_checker(location, settings)
    if found is None:
        _warn_once(
            name,
            "none",
            "%s has no image safety checker: its pictures are not checked; give one with --safety-model "
            "(e.g. CompVis/stable-diffusion-safety-checker or a folder) where the public can see the output",
        )
    return found


def attach_safety(
    engine: E, found: tuple[Path, str] | None, settings: EngineSettings, placement: Placement, on_cpu: bool = False
) -> E:
    """Give ``engine`` the checker :func:`find_safety_checker` found (on the CPU with ``on_cpu``), or
    say in its results why there is none."""
    from ..safety.checker import load_checker

    if found is None:
        engine.safety_status = "no checker" if settings.safety else "off"
        return engine
    engine.safety = load_checker(found[0], found[1], placement, on_cpu=on_cpu)
    return engine


def _warn_once(model: str, kind: str, message: str) -> None:
    if (model, kind) not in _WARNED:
        _WARNED.add((model, kind))
        logger.warning(message, model)


def load_depth_estimator(name: str, settings: EngineSettings, placement: Placement) -> DepthEstimator:
    """A DPT model (``dpt-large``, ``dpt-hybrid``, ``tiny-dpt`` or a folder) on the engine's device."""
    folder, model_id = locate_depth_model(name, settings)
    try:
        return load_estimator(str(folder), placement, model_id)
    except (OSError, ValueError) as exc:
        raise UnknownModel(f"could not load the depth model {model_id!r} from {folder}: {exc}") from exc


def load_depth_only(settings: EngineSettings) -> DepthOnly:
    """Only the depth estimator ``settings.depth_model`` on the settings' device (no diffusion model)."""
    if not settings.depth_model:
        raise UnknownModel("no depth model named: give one (dpt-large, dpt-hybrid, tiny-dpt or a folder)")
    placement = resolve_placement(settings.device, settings.dtype, settings.ov_cache, settings.ov_weights)
    safety = find_safety_checker(None, settings, settings.depth_model)
    depth_only = DepthOnly(load_depth_estimator(settings.depth_model, settings, placement))
    return attach_safety(depth_only, safety, settings, placement)


def load_rgb_engine(
    location: ModelLocation, placement: Placement, estimator: DepthEstimator, threads: int | None = None
) -> RGBLatentEngine:
    """A CompVis LDM: the classes its ``model_index.json`` names (``vqvae`` is a VQModel or an
    AutoencoderKL), then on the device."""
    import diffusers

    folder = location.folder
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    logger.info("loading %s from %s onto %s (%s)", location.model_id, folder, placement.label, placement.dtype_name)

    def diffusers_class(part: str, allowed: tuple[str, ...]) -> Any:
        name = index.get(part, [None, None])[1]
        if name not in allowed:
            raise UnknownModel(f"{location.model_id!r}: its {part} is {name!r}; expected one of {', '.join(allowed)}")
        return getattr(diffusers, name)

    try:
        unet_class = diffusers_class("unet", ("UNet2DModel", "UNet2DConditionModel"))
        vqvae_class = diffusers_class("vqvae", ("VQModel", "AutoencoderKL"))
        unet = unet_class.from_pretrained(str(folder / "unet"), torch_dtype=placement.dtype)
        vqvae_config = vqvae_class.load_config(str(folder / "vqvae"))  # fp16 autoencoders upcast, as LDM3D's VAE
        vqvae = vqvae_class.from_pretrained(
            str(folder / "vqvae"), torch_dtype=vae_dtype(placement.dtype, vqvae_config, placement.device.type)
        )
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
        tokenizer = bert = None
        if location.pipeline == "LDMTextToImagePipeline":
            from diffusers.pipelines.latent_diffusion.pipeline_latent_diffusion import LDMBertModel
            from transformers import BertTokenizer

            tokenizer = BertTokenizer.from_pretrained(str(folder / "tokenizer"), model_max_length=MAX_TOKENS)
            bert = LDMBertModel.from_pretrained(str(folder / "bert"), dtype=placement.dtype)
    except (OSError, ValueError) as exc:
        raise UnknownModel(f"could not load {location.model_id!r} from {folder}: {exc}") from exc
    if placement.device.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
    for module in (unet, vqvae, bert):
        if module is not None:
            module.to(placement.device).eval().requires_grad_(False)
    runtime = placement.runtime
    unet, vqvae = runtime.prepare(unet, "unet", seamless_variant), runtime.prepare(vqvae, "vqvae", seamless_variant)
    bert = runtime.prepare(bert, "bert") if bert is not None else None
    return RGBLatentEngine(
        unet=unet,
        vqvae=vqvae,
        scheduler_config=scheduler_config,
        estimator=estimator,
        placement=placement,
        location=location,
        tokenizer=tokenizer,
        bert=bert,
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
        (vae, vae_dtype(placement.dtype, vae.config, placement.device.type)),
    ):
        if module.dtype != dtype:  # modules built from configs (the benchmark) arrive in fp32
            module.to(dtype=dtype)
        module.to(home).eval().requires_grad_(False)
    # Convolutions run fastest with channels-last tensors on CUDA and with oneDNN on the CPU (not on Gaudi).
    if placement.runtime.channels_last:
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    if placement.device.type == "cuda":
        # A show runs at one size: let cuDNN time its convolution algorithms once per shape and keep
        # the fastest (a process-wide switch; the warm-up pays for the default size).
        torch.backends.cudnn.benchmark = True
    if placement.device.type in FUSED_QKV_DEVICES:
        unet.fuse_qkv_projections()  # one matmul for Q, K and V in every attention
    runtime = placement.runtime  # Gaudi: the UNet in an HPU graph; OpenVINO: stand-ins running compiled parts
    text_encoder = runtime.prepare(text_encoder, "text_encoder")
    unet, vae = runtime.prepare(unet, "unet", seamless_variant), runtime.prepare(vae, "vae", seamless_variant)
    if settings.compile:  # (refused on OpenVINO at load)
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
