"""The engine: text → RGB + 16-bit depth with our own sampling loop.

Built on diffusers' maintained parts (UNet2DConditionModel, AutoencoderKL,
schedulers) and transformers' CLIP; not on the deprecated
``StableDiffusionLDM3DPipeline``, whose post-processing is broken (see
:mod:`ldm3d_engine.depth`). The loop is the standard classifier-free guided
one, so on identical weights it matches that pipeline's ``"np"`` output.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .depth import layout_for_channels, split_rgbd, to_unit
from .devices import Placement, is_out_of_memory, resolve_placement
from .errors import Cancelled, InvalidRequest, OutOfMemory, UnknownModel
from .loading import ModelLocation, locate
from .presets import FOLDER_DEFAULTS, SCHEDULERS, Preset
from .schedulers import make_scheduler
from .seamless import wrap_width
from .types import SEED_MAX, CancelToken, EngineSettings, GenerateRequest, ResolvedRequest, RGBDResult, Timings

logger = logging.getLogger(__name__)

OnStep = Callable[[int, int], None]
MAX_TOKENS = 77
STEPS_RANGE = (1, 150)
GUIDANCE_RANGE = (0.0, 30.0)


class Engine:
    """One loaded model on one device. ``generate`` is serialised by a lock."""

    def __init__(
        self,
        *,
        tokenizer: Any,
        text_encoder: Any,
        unet: Any,
        vae: Any,
        scheduler_config: dict[str, Any],
        placement: Placement,
        location: ModelLocation,
    ) -> None:
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.unet = unet
        self.vae = vae
        self.scheduler_config = scheduler_config
        self.placement = placement
        self.location = location
        self.vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.depth_layout = layout_for_channels(int(vae.config.out_channels))
        preset = location.preset
        if preset is FOLDER_DEFAULTS:  # native size from the model's own config
            side = int(unet.config.sample_size) * self.vae_scale
            preset = Preset(**{**preset.__dict__, "width": side, "height": side})
        self.preset = preset
        self._lock = threading.Lock()

    # -- description -------------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.location.model_id

    @property
    def device(self) -> str:
        return str(self.placement.device)

    @property
    def dtype(self) -> str:
        return self.placement.dtype_name

    # -- validation --------------------------------------------------------

    def resolve(self, request: GenerateRequest) -> ResolvedRequest:
        """Fill the preset's defaults into ``request`` and check every field."""
        p = self.preset
        if p.task != "text":
            raise InvalidRequest(
                "model", f"model {p.name!r} is an upscaler, not a text→RGBD model; use ldm3d, ldm3d-4c or ldm3d-pano"
            )
        if not request.prompt.strip():
            raise InvalidRequest("prompt", "the prompt is empty; say what the world should show")
        steps = p.steps if request.steps is None else request.steps
        if not STEPS_RANGE[0] <= steps <= STEPS_RANGE[1]:
            raise InvalidRequest("steps", f"steps {steps} is out of range; allowed {STEPS_RANGE[0]}..{STEPS_RANGE[1]}")
        guidance = p.guidance if request.guidance is None else float(request.guidance)
        if not (GUIDANCE_RANGE[0] <= guidance <= GUIDANCE_RANGE[1]):  # also refuses NaN
            raise InvalidRequest(
                "guidance", f"guidance {guidance} is out of range; allowed {GUIDANCE_RANGE[0]}..{GUIDANCE_RANGE[1]}"
            )
        width = p.width if request.width is None else request.width
        height = p.height if request.height is None else request.height
        for field, value, limit in (("width", width, p.max_width), ("height", height, p.max_height)):
            if value % 8 or not p.min_size <= value <= limit:
                raise InvalidRequest(
                    field,
                    f"{field} {value} is not allowed for {p.name}: use a multiple of 8 from {p.min_size} to {limit} "
                    f"(native {p.width}×{p.height})",
                )
        scheduler = request.scheduler or p.scheduler
        if scheduler not in SCHEDULERS:
            raise InvalidRequest("scheduler", f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}")
        seed = request.seed
        if seed == -1:
            seed = secrets.randbelow(SEED_MAX + 1)
        if not 0 <= seed <= SEED_MAX:
            raise InvalidRequest("seed", f"seed {seed} is out of range; use 0..{SEED_MAX}, or -1 for a random seed")
        seamless = p.seamless if request.seamless is None else request.seamless
        return ResolvedRequest(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=seed,
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            scheduler=scheduler,
            seamless=seamless,
        )

    def prompt_for_model(self, prompt: str) -> str:
        """The preset's prompt convention: pano prompts start with "360 view of" unless they say it."""
        prefix = self.preset.prompt_prefix
        if prefix and prefix.strip().lower() not in prompt.lower():
            return prefix + prompt
        return prompt

    # -- generation --------------------------------------------------------

    def _encode(self, text: str) -> tuple[torch.Tensor, bool]:
        tok = self.tokenizer
        ids = tok(text, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
        truncated = len(tok(text, truncation=False, verbose=False).input_ids) > MAX_TOKENS
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = (ids != tok.pad_token_id).long().to(self.placement.device)
        out = self.text_encoder(ids.to(self.placement.device), attention_mask=mask)[0]
        return out.to(self.placement.dtype), truncated

    def _sync(self) -> None:
        if self.placement.device.type == "cuda":
            torch.cuda.synchronize(self.placement.device)

    def generate(
        self,
        request: GenerateRequest,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult:
        """Run one job. Raises :class:`InvalidRequest` before any work, :class:`Cancelled`
        within one step of ``cancel.cancel()``, :class:`OutOfMemory` when the device is full."""
        req = self.resolve(request)
        return self.generate_from_latents(req, self.initial_latents(req), on_step, cancel)

    def free_memory(self) -> None:
        """Return cached device memory to the driver (after an out-of-memory error)."""
        gc.collect()
        if self.placement.device.type == "cuda":
            torch.cuda.empty_cache()

    def initial_latents(self, req: ResolvedRequest) -> torch.Tensor:
        """The seeded starting noise of ``req`` (unscaled), on the engine's device."""
        device, dtype = self.placement.device, self.placement.dtype
        generator = torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(req.seed)
        shape = (1, int(self.unet.config.in_channels), req.height // self.vae_scale, req.width // self.vae_scale)
        return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)

    def generate_from_latents(
        self,
        req: ResolvedRequest,
        latents: torch.Tensor,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult:
        """Denoise and decode from given starting noise (``generate`` seeds it from ``req.seed``)."""
        with self._lock:
            try:
                return self._run(req, latents, on_step, cancel)
            except RuntimeError as exc:
                if is_out_of_memory(exc):
                    self.free_memory()
                    raise OutOfMemory(f"out of memory on {self.device} at {req.width}×{req.height}: {exc}") from exc
                raise

    def _run(
        self, req: ResolvedRequest, latents: torch.Tensor, on_step: OnStep | None, cancel: CancelToken | None
    ) -> RGBDResult:
        device = self.placement.device
        prompt_used = self.prompt_for_model(req.prompt)
        with torch.inference_mode(), wrap_width([self.unet, self.vae], req.seamless):
            t0 = time.perf_counter()
            cond, prompt_truncated = self._encode(prompt_used)
            do_cfg = req.guidance > 1.0  # as diffusers: guidance <= 1 means the prompt alone
            negative_truncated = False
            if do_cfg:
                uncond, negative_truncated = self._encode(req.negative_prompt)
                embeddings = torch.cat([uncond, cond])
            else:
                embeddings = cond
            self._sync()
            t1 = time.perf_counter()

            scheduler = make_scheduler(req.scheduler, self.scheduler_config)
            scheduler.set_timesteps(req.steps, device=device)
            # The step noise of ancestral samplers comes from a generator seeded after the start noise.
            generator = torch.Generator(device="cpu" if device.type == "mps" else device).manual_seed(req.seed + 1)
            latents = latents.to(device, self.placement.dtype) * scheduler.init_noise_sigma
            step_kwargs = _step_kwargs(scheduler, generator)
            timesteps = scheduler.timesteps
            total = len(timesteps)
            for i, t in enumerate(timesteps):
                if cancel is not None and cancel.cancelled:
                    raise Cancelled(i, total)
                model_in = torch.cat([latents] * 2) if do_cfg else latents
                model_in = scheduler.scale_model_input(model_in, t)
                noise = self.unet(model_in, t, encoder_hidden_states=embeddings, return_dict=False)[0]
                if do_cfg:
                    noise_uncond, noise_cond = noise.chunk(2)
                    noise = noise_uncond + req.guidance * (noise_cond - noise_uncond)
                latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
                if on_step is not None:
                    on_step(i + 1, total)
            if cancel is not None and cancel.cancelled:
                raise Cancelled(total, total)
            self._sync()
            t2 = time.perf_counter()

            vae_dtype = next(self.vae.parameters()).dtype
            decoded = self.vae.decode(latents.to(vae_dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
            image = decoded[0].permute(1, 2, 0).float().cpu().numpy()
            rgb, depth, depth_float = split_rgbd(to_unit(image))
            t3 = time.perf_counter()
        if not np.isfinite(image).all():
            logger.warning("the VAE produced non-finite values (dtype %s); they were clamped", self.dtype)
        return RGBDResult(
            rgb=rgb,
            depth=depth,
            depth_float=depth_float,
            request=req,
            prompt_used=prompt_used,
            prompt_truncated=prompt_truncated,
            negative_truncated=negative_truncated,
            model_id=self.model_id,
            preset=self.preset.name,
            device=self.device,
            dtype=self.dtype,
            depth_layout=self.depth_layout,
            timings=Timings(t1 - t0, t2 - t1, t3 - t2),
        )


def _step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    params = inspect.signature(scheduler.step).parameters
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def load_engine(settings: EngineSettings) -> Engine:
    """Check the device, find the model (building, or fetching when allowed), load it there."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    placement = resolve_placement(settings.device, settings.dtype)
    location = locate(settings)
    folder = location.folder
    logger.info("loading %s from %s onto %s (%s)", location.model_id, folder, placement.device, placement.dtype_name)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), model_max_length=MAX_TOKENS)
        text_encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), dtype=placement.dtype)
        unet = UNet2DConditionModel.from_pretrained(str(folder / "unet"), torch_dtype=placement.dtype)
        # fp16 VAEs overflow into NaNs where their config asks for fp32 (force_upcast).
        vae_config = AutoencoderKL.load_config(str(folder / "vae"))
        upcast = placement.dtype == torch.float16 and vae_config.get("force_upcast", False)
        vae_dtype = torch.float32 if upcast else placement.dtype
        vae = AutoencoderKL.from_pretrained(str(folder / "vae"), torch_dtype=vae_dtype)
        scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise UnknownModel(f"could not load {location.model_id!r} from {folder}: {exc}") from exc
    for module in (text_encoder, unet, vae):
        module.to(placement.device).eval().requires_grad_(False)
    return Engine(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        vae=vae,
        scheduler_config=scheduler_config,
        placement=placement,
        location=location,
    )
