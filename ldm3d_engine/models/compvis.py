"""RGB-only latent diffusion models as RGBD sources: the CompVis LDM family.

``CompVis/ldm-celebahq-256`` (unconditional: a ``UNet2DModel`` on a VQ autoencoder's latents,
DDIM) and ``CompVis/ldm-text2im-large-256`` (LDM-BERT text conditioning, a KL autoencoder, DDIM)
make RGB pictures only. This engine runs them with our own loop (:mod:`ldm3d_engine.sampling.denoise`,
the same one the LDM3D engine uses) and passes each picture through the depth estimator, so the
bridge serves them over the same contract: request in, RGB + 16-bit depth out.

The loop is diffusers' ``LDMPipeline`` / ``LDMTextToImagePipeline`` (parity tested on the tiny
stand-ins), with two differences that are ours on purpose: DDIM's eta noise is drawn from the
job's seeded generator (those pipelines draw it from torch's global generator, so a seed does not
repeat a picture with eta > 0), and the starting noise is scaled by the scheduler's
``init_noise_sigma`` so that schedulers other than DDIM start right (for DDIM it is 1).
``LDMPipeline`` itself is deprecated upstream (``pipelines/deprecated``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..backends.devices import Placement
from ..depth.estimator import DepthEstimator
from ..errors import InvalidRequest
from ..presets import FOLDER_DEFAULTS
from ..sampling.denoise import Guidance, denoise
from ..sampling.preview import (
    FIT_PICTURES,
    FIT_SIDE,
    FloatArray,
    PreviewMap,
    fit_preview_map,
    preview_sender,
    synthetic_pictures,
)
from ..sampling.prompts import PromptEncoder
from ..sampling.schedulers import make_scheduler, native_scheduler
from ..sampling.seamless import wrap_width
from ..types import (
    CancelToken,
    GenerateRequest,
    Img2ImgRequest,
    OnStep,
    Previews,
    ResolvedRequest,
    RGBDResult,
    Timings,
    UpscaleRequest,
)
from ..validation import resolve_text
from .base import EngineBase
from .loading import ModelLocation


class RGBLatentEngine(EngineBase):
    """One CompVis LDM and a depth estimator on one device. Runs are serialised by a lock."""

    estimator: DepthEstimator  # always: its pictures' depth comes from it

    def __init__(
        self,
        *,
        unet: Any,
        vqvae: Any,
        scheduler_config: dict[str, Any],
        estimator: DepthEstimator,
        placement: Placement,
        location: ModelLocation,
        tokenizer: Any = None,
        bert: Any = None,
    ) -> None:
        self.unet = unet
        self.vqvae = vqvae
        self.bert = bert
        self.scheduler_config = scheduler_config
        self.estimator = estimator
        self.placement = placement
        self.location = location
        self.conditional = bert is not None
        self.vae_scale = 2 ** (len(vqvae.config.block_out_channels) - 1)
        preset = location.preset
        if preset.conditional != self.conditional:
            raise InvalidRequest(
                "model",
                f"preset {preset.name!r} is for {'text-conditioned' if preset.conditional else 'unconditional'} "
                f"models; {location.model_id!r} is {'text-conditioned' if self.conditional else 'unconditional'}",
            )
        if preset.name == FOLDER_DEFAULTS.name:  # a folder without a preset: its native size
            side = int(unet.config.sample_size) * self.vae_scale
            preset = dataclasses.replace(
                preset, width=side, height=side, min_size=side, max_width=side, max_height=side
            )
        self.preset = dataclasses.replace(
            preset,
            native_scheduler=native_scheduler(scheduler_config, location.model_id),
            wrap_multiple=self.vae_scale * 2 ** (len(unet.config.down_block_types) - 1),
        )
        self._lock = threading.Lock()
        self._preview_map: PreviewMap | None = None
        self._identity: str | None = None
        self._prompts = (
            PromptEncoder(tokenizer, bert, placement.device, placement.dtype, lambda _m: contextlib.nullcontext())
            if bert is not None
            else None
        )

    @property
    def identity(self) -> str:
        """The model, its configs and the depth estimator's, the preset and the engine version, hashed."""
        if self._identity is None:
            self._identity = self.hashed_identity(
                {
                    "model": self.model_id,
                    "unet": dict(self.unet.config),
                    "vqvae": dict(self.vqvae.config),
                    "bert": self.bert.config.to_dict() if self.bert is not None else None,
                    "scheduler": self.scheduler_config,
                    "depth": [self.estimator.model_id, self.estimator.model.config.to_dict()],
                }
            )
        return self._identity

    # -- jobs ------------------------------------------------------------------

    def generate(
        self,
        request: GenerateRequest,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """Text (or nothing, for an unconditional model) → RGB, then its depth estimated. ``previews``:
        RGB only (the depth is estimated from the finished picture; a preview's depth is flat)."""
        req = self.resolve(request)
        if self.conditional and req.guidance < 1.0:  # LDMTextToImagePipeline would guide; we say no
            raise InvalidRequest("guidance", f"guidance {req.guidance} is below 1; use 1 (no guidance) or more")
        with (
            self._lock,
            torch.inference_mode(),
            self.out_of_memory_named(req),
            wrap_width([self.unet, self.vqvae], req.seamless),
        ):
            return self.checked(self._generate(req, on_step, cancel, previews))

    def img2img(
        self,
        request: Img2ImgRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16] | None = None,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        resolve_text(self.preset, request, source=(rgb.shape[1], rgb.shape[0]))  # refuses: this model makes RGB only
        raise AssertionError(f"validation let img2img through for the RGB-only {self.preset.name}")

    def upscale(
        self,
        request: UpscaleRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        raise InvalidRequest("model", f"{self.model_id} is not an upscaler; use --upscale-model ldm3d-sr")

    def generate_between(
        self,
        first: GenerateRequest,
        second: GenerateRequest,
        t: float,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        raise InvalidRequest("model", f"{self.model_id} makes RGB only; morphs run on the LDM3D models")

    def preview_map(self) -> PreviewMap:
        """The latents → RGB preview map, fitted against the autoencoder the first time it is needed
        (under the lock, in inference mode); the depth of its previews is flat."""
        if self._preview_map is None:
            side = FIT_SIDE
            scaling = float(self.vqvae.config.scaling_factor)

            def encode(rgb: FloatArray, depth: FloatArray) -> torch.Tensor:
                x = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(self.placement.device, self.vqvae.dtype)
                x = torch.nn.functional.interpolate(x * 2 - 1, size=(side, side), mode="bilinear")
                out = self.vqvae.encode(x)
                latent: torch.Tensor = out.latent_dist.mean if hasattr(out, "latent_dist") else out.latents
                return latent * scaling

            def decode(latent: torch.Tensor) -> FloatArray:
                decoded = self.vqvae.decode(latent.to(self.vqvae.dtype) / scaling).sample[0].float()
                rgb = (decoded / 2 + 0.5).clamp(0, 1).permute(1, 2, 0)
                return np.asarray(torch.cat([rgb, torch.full_like(rgb[..., :1], 0.5)], -1).cpu().numpy(), np.float32)

            pictures = synthetic_pictures(FIT_PICTURES, side, side)
            self._preview_map = fit_preview_map(encode, decode, pictures, has_depth=False)
        return self._preview_map

    # -- internals ---------------------------------------------------------------

    def initial_latents(self, req: ResolvedRequest) -> torch.Tensor:
        """The seeded starting noise (unscaled), drawn as the reference pipelines draw it."""
        device = self.placement.runtime.noise_device(self.placement.device)
        generator = torch.Generator(device=device).manual_seed(req.seed)
        shape = (1, int(self.unet.config.in_channels), req.height // self.vae_scale, req.width // self.vae_scale)
        dtype = self.placement.dtype if self.conditional else torch.float32  # LDMPipeline draws fp32
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return noise.to(self.placement.device, self.placement.dtype)

    def _generate(
        self, req: ResolvedRequest, on_step: OnStep | None, cancel: CancelToken | None, previews: Previews | None
    ) -> RGBDResult:
        t0 = time.perf_counter()
        embeddings, seen, negative_seen = None, None, None
        if self._prompts is not None:
            cond, seen = self._prompts.encode(req.prompt)
            embeddings = cond
            if req.guidance > 1.0:  # the negative prompt ("" as LDMTextToImagePipeline's) for guidance
                uncond, negative_seen = self._prompts.encode(req.negative_prompt)
                embeddings = torch.cat([uncond, cond])
        t1 = time.perf_counter()
        scheduler = make_scheduler(req.scheduler, self.scheduler_config)
        scheduler.set_timesteps(req.steps, device=self.placement.device)
        latents = self.initial_latents(req) * scheduler.init_noise_sigma
        generator = torch.Generator(device=self.placement.runtime.noise_device(self.placement.device))
        generator.manual_seed(req.seed + 1)
        guidance = Guidance(embeddings, req.guidance)  # guided (a batch of 2) above 1, as the pipeline
        latents = denoise(
            self.unet, scheduler, scheduler.timesteps, latents, guidance, generator,
            after_step=self.placement.runtime.after_step, on_step=on_step, cancel=cancel,
            steps=req.steps, eta=self.preset.eta,
            on_clean=None if previews is None else preview_sender(self.preview_map(), previews),
            clean_due=(lambda done, total: False) if previews is None else previews.due,
        )  # fmt: skip
        t2 = time.perf_counter()
        decoded = self.vqvae.decode(latents.to(self.vqvae.dtype) / self.vqvae.config.scaling_factor).sample
        image = (decoded[0].float() / 2 + 0.5).clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        rgb = np.round(image * 255).astype(np.uint8)
        t3 = time.perf_counter()
        estimated = self.estimator.estimate(rgb, equirect=req.seamless, cancel=cancel)
        t4 = time.perf_counter()
        return estimated.stamp(
            RGBDResult(
                rgb=rgb,
                depth=estimated.depth,
                depth_float=estimated.depth_float,
                request=req,
                prompt_used=(req.prompt if seen is None else seen) if self.conditional else "",
                prompt_truncated=seen is not None,
                negative_truncated=negative_seen is not None,
                model_id=self.model_id,
                preset=self.preset.name,
                device=self.device,
                dtype=self.dtype,
                depth_layout="estimated",
                timings=Timings(t1 - t0, t2 - t1, t3 - t2, t4 - t3),
                prompt_ignored=not self.conditional,
            )
        )
