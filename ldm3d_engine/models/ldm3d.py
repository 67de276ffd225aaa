"""The engine: text → RGB + 16-bit depth with our own sampling loop.

Built on diffusers' maintained parts (UNet2DConditionModel, AutoencoderKL,
schedulers) and transformers' CLIP; not on the deprecated
``StableDiffusionLDM3DPipeline``, whose post-processing is broken (see
:mod:`ldm3d_engine.depth.packing`). The loop is the standard classifier-free guided
one, so on identical weights it matches that pipeline's ``"np"`` output.

Three ways to run, one sampler: ``generate`` (text → RGBD), ``img2img`` (RGBD
image-to-image) and ``upscale`` (LDM3D-SR), all with seamless wrap, progress,
cancellation and the same result type. How each step compares with the
reference pipelines: docs/fidelity.md.

Longer than our ~350-line rule on purpose: one class, the LDM3D family. Its three ways to run
share one lock, the prompt cache, the RGBD packing for the VAE and ``_sample``; split, they would
reach into each other's private helpers across files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..backends.devices import Placement
from ..depth.estimator import DepthEstimator
from ..depth.packing import decoded_to_host, layout_for_channels, split_rgbd, to_unit, vae_input
from ..errors import InvalidRequest
from ..presets import FOLDER_DEFAULTS
from ..sampling.blend import Conditioning, blend, slerp
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
from ..validation import check_morph, resolve_text, resolve_upscale
from .base import EngineBase
from .loading import ModelLocation

logger = logging.getLogger(__name__)


class Engine(EngineBase):
    """One loaded model on one device. Runs are serialised by a lock."""

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
        offload: bool = False,
        vae_tiling: bool = False,
        estimator: DepthEstimator | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        #: Depth for pictures without one (img2img, depth jobs); None: not loaded.
        self.estimator = estimator
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
            preset = dataclasses.replace(preset, width=side, height=side)
        # What the model's folder says: its own scheduler, and how many times its UNet halves the
        # latents (the last down block keeps its size), which sets the sizes a seamless wrap allows.
        downsamplings = len(unet.config.down_block_types) - 1
        self.preset = dataclasses.replace(
            preset,  # (the backend may run it as another: Gaudi runs DDIM, as optimum-habana does)
            native_scheduler=placement.runtime.native_scheduler(native_scheduler(scheduler_config, location.model_id)),
            wrap_multiple=self.vae_scale * 2**downsamplings,
        )
        self._lock = threading.Lock()
        self._preview_map: PreviewMap | None = None
        self._identity: str | None = None
        self._seamless = False
        self._offload = offload
        self._vae_tiling = vae_tiling
        self._prompts = PromptEncoder(tokenizer, text_encoder, placement.device, placement.dtype, self._active)

    # -- description -------------------------------------------------------

    @property
    def identity(self) -> str:
        """What makes this engine's pictures what they are: the model (id, folder, every module's and
        the scheduler's config), the preset's defaults and the engine's version, hashed. A show's
        scene library keys its scenes with it, so another model or version renders them again."""
        if self._identity is None:
            text_config = self.text_encoder.config
            self._identity = self.hashed_identity(
                {
                    "model": self.model_id,
                    "folder": self.location.folder.name,
                    "unet": dict(self.unet.config),
                    "vae": dict(self.vae.config),
                    "text_encoder": text_config.to_dict() if hasattr(text_config, "to_dict") else dict(text_config),
                    "scheduler": self.scheduler_config,
                }
            )
        return self._identity

    def prompt_for_model(self, prompt: str) -> str:
        """The preset's prompt convention: pano prompts start with "360 view of" unless they say it."""
        prefix = self.preset.prompt_prefix
        if prefix and prefix.strip().lower() not in prompt.lower():
            return prefix + prompt
        return prompt

    # -- the three ways to run -------------------------------------------------

    def generate(
        self,
        request: GenerateRequest,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """Text → RGBD. Raises :class:`InvalidRequest` before any work, :class:`Cancelled`
        within one step of ``cancel.cancel()``, :class:`OutOfMemory` when the device is full.
        ``previews``: the world as it forms, every few steps (see :class:`Previews`)."""
        req = self.resolve(request)
        return self.generate_from_latents(req, self.initial_latents(req), on_step, cancel, previews)

    def img2img(
        self,
        request: Img2ImgRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16] | None = None,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        noise: torch.Tensor | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """RGBD image-to-image: encode the input with the model's own VAE packing, noise it to
        ``strength`` and denoise the remaining steps. Without ``depth``, the depth estimator's
        estimate of ``rgb`` stands in (an equirect one for a seamless request), or a flat 0.5 (the
        sphere itself) when none is loaded or ``flat_depth`` asks; ``depth_source`` says which. ``noise``
        replaces both seeded draws, the VAE sample's and the starting noise (for tests that roll it)."""
        req = resolve_text(self.preset, request, source=(rgb.shape[1], rgb.shape[0]))
        if depth is not None or self.estimator is None or request.flat_depth:
            return self._locked(req, lambda: self._img2img(req, rgb, depth, on_step, cancel, noise, previews))
        estimator = self.estimator

        def estimated() -> RGBDResult:
            t0 = time.perf_counter()  # the estimate is of the input as given (resized with the rest after)
            found = estimator.estimate(rgb, equirect=req.seamless, cancel=cancel)
            depth_s = time.perf_counter() - t0
            result = found.stamp(self._img2img(req, rgb, found.depth, on_step, cancel, noise, previews))
            return dataclasses.replace(result, timings=dataclasses.replace(result.timings, depth_s=depth_s))

        return self._locked(req, estimated)

    def upscale(
        self,
        request: UpscaleRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        noise: torch.Tensor | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """LDM3D-SR of a low-resolution RGB + 16-bit depth to the request's size (×4 by default;
        ``noise``: as in ``img2img``)."""
        if rgb.shape[:2] != depth.shape:
            raise InvalidRequest(
                "depth",
                f"the depth map is {depth.shape[1]}×{depth.shape[0]}, the image "
                f"{rgb.shape[1]}×{rgb.shape[0]}; they must match",
            )
        req = resolve_upscale(self.preset, request, source=(rgb.shape[1], rgb.shape[0]))
        return self._locked(req, lambda: self._upscale(req, rgb, depth, on_step, cancel, noise, previews))

    def initial_latents(self, req: ResolvedRequest, generator: torch.Generator | None = None) -> torch.Tensor:
        """The seeded starting noise of ``req`` (unscaled), on the engine's device; drawn from
        ``generator`` where one is running already (img2img and upscale draw the VAE sample first)."""
        generator = self._generator(req.seed) if generator is None else generator
        shape = (1, int(self.vae.config.latent_channels), req.height // self.vae_scale, req.width // self.vae_scale)
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=self.placement.dtype)
        return noise.to(self.placement.device)

    def generate_from_latents(
        self,
        req: ResolvedRequest,
        latents: torch.Tensor,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """Text → RGBD from given starting noise (``generate`` seeds it from ``req.seed``)."""

        def run() -> RGBDResult:
            scheduler = self._scheduler(req)
            start = latents.to(self.placement.device, self.placement.dtype) * scheduler.init_noise_sigma
            return self._sample(req, scheduler, scheduler.timesteps, start, on_step, cancel, previews=previews)

        return self._locked(req, run)

    def generate_between(
        self,
        first: GenerateRequest,
        second: GenerateRequest,
        t: float,
        on_step: OnStep | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """One frame of a morph: the world between ``first`` (t = 0) and ``second`` (t = 1), from the
        slerp of their starting noise and of their text embeddings (:mod:`~ldm3d_engine.sampling.blend`),
        guidance blended linearly. At 0 and 1 it is ``generate(first)`` / ``generate(second)``, bit for
        bit. Both must resolve to the same size, steps, scheduler, sampling and wrap (InvalidRequest
        names the one that differs). Ancestral samplers draw their step noise from the nearer world's seed."""
        a, b = self.resolve(first), self.resolve(second)
        check_morph(a, b, t)  # (at 0 and 1 the blends below return that world's own noise and embeddings)
        req = dataclasses.replace(a if t < 0.5 else b, guidance=a.guidance + t * (b.guidance - a.guidance))
        noise = slerp(self.initial_latents(a), self.initial_latents(b), t)

        def run() -> RGBDResult:
            cond = blend(self.conditioning(a, negative=True), self.conditioning(b, negative=True), t)
            scheduler = self._scheduler(req)
            start = noise * scheduler.init_noise_sigma
            timesteps = scheduler.timesteps
            return self._sample(req, scheduler, timesteps, start, on_step, cancel, previews=previews, conditioning=cond)

        return self._locked(req, run)

    def conditioning(self, req: ResolvedRequest, *, negative: bool = False) -> Conditioning:
        """The request's prompt (with the preset's prefix) and, when guided or ``negative``, its negative
        prompt, encoded (call under the engine's lock, in inference mode)."""
        prompt = self.prompt_for_model(req.prompt)
        cond, seen = self._prompts.encode(prompt)
        uncond, negative_seen = cond, None
        if req.guidance > 1.0 or negative:
            uncond, negative_seen = self._prompts.encode(req.negative_prompt)
        return Conditioning(cond, uncond, prompt if seen is None else seen, seen is not None, negative_seen is not None)

    def preview_map(self) -> PreviewMap:
        """The map from the sampler's latents to a small RGB + depth preview, fitted against this
        model's VAE the first time it is needed (call under the engine's lock, in inference mode;
        the bridge's warm-up asks for a preview, so a served model pays for it before its first job)."""
        if self._preview_map is None:
            t0 = time.perf_counter()
            side = FIT_SIDE
            encode, decode = self.vae_codec(side)
            self._preview_map = fit_preview_map(encode, decode, synthetic_pictures(FIT_PICTURES, side, side))
            logger.info(
                "preview map of %s fitted in %.1f s (%.1f dB on its own pictures)",
                self.model_id, time.perf_counter() - t0, self._preview_map.fit_psnr,
            )  # fmt: skip
        return self._preview_map

    def vae_codec(
        self, side: int
    ) -> tuple[Callable[[FloatArray, FloatArray], torch.Tensor], Callable[[torch.Tensor], FloatArray]]:
        """The model's own VAE as the preview map's fit sees it: ``encode(rgb, depth)`` (H×W×3 and H×W in
        [0, 1], resized to ``side``²) → the scaled latent (the posterior's mean, in the model's channel
        packing); ``decode(latent)`` → H×W×4 (RGB and depth in [0, 1]). Under the lock, in inference mode."""
        vae_dtype = next(self.vae.parameters()).dtype
        scaling = float(self.vae.config.scaling_factor)

        def encode(rgb: FloatArray, depth: FloatArray) -> torch.Tensor:
            rgb8 = np.round(rgb * 255).astype(np.uint8)
            depth16 = np.round(depth * 65535).astype(np.uint16)
            x = vae_input(rgb8, depth16, self.depth_layout, (side, side), wrap=False, resample="bicubic")
            with self._active(self.vae):
                mean: torch.Tensor = self.vae.encode(x.to(self.placement.device, vae_dtype)).latent_dist.mean
            return mean * scaling

        def decode(latent: torch.Tensor) -> FloatArray:
            with self._active(self.vae):
                decoded = self.vae.decode(latent.to(vae_dtype) / scaling, return_dict=False)[0]
            rgb, _, depth_float = split_rgbd(to_unit(decoded[0]))
            unit = torch.cat([rgb.float() / 255.0, depth_float[..., None]], dim=-1)
            return np.asarray(unit.cpu().numpy(), np.float32)

        return encode, decode

    # -- internals ---------------------------------------------------------

    def _locked(self, req: ResolvedRequest, run: Callable[[], RGBDResult]) -> RGBDResult:
        runtime = self.placement.runtime
        cuda = self.placement.device.type == "cuda"
        with self._lock, torch.inference_mode(), runtime.autocast():
            if req.seamless != self._seamless:
                runtime.unet_changed(self.unet)  # e.g. HPU graphs not keyed by the padding
                self._seamless = req.seamless
            self.vae.use_tiling = self._vae_tiling and not req.seamless
            if cuda:
                torch.cuda.reset_peak_memory_stats(self.placement.device)
            with self.out_of_memory_named(req), wrap_width([self.unet, self.vae], req.seamless):
                result = run()
            result = self.checked(result)  # before anything leaves the engine
            if cuda:
                peak = torch.cuda.max_memory_allocated(self.placement.device) / 2**20
                result = dataclasses.replace(result, peak_memory_mb=round(peak, 1))
            return result

    def _generator(self, seed: int) -> torch.Generator:
        """A generator seeded with ``seed``, where the backend draws its noise (the CPU for MPS and Gaudi)."""
        return torch.Generator(device=self.placement.runtime.noise_device(self.placement.device)).manual_seed(seed)

    def _scheduler(self, req: ResolvedRequest) -> Any:
        device = self.placement.device
        return self.placement.runtime.scheduler(req.scheduler, self.scheduler_config, req.steps, device, make_scheduler)

    @contextlib.contextmanager
    def _active(self, module: Any) -> Iterator[None]:
        """With model offload: ``module`` is on the GPU only inside the block."""
        if not self._offload:
            yield
            return
        module.to(self.placement.device)
        try:
            yield
        finally:
            module.to("cpu")

    def _sync(self) -> None:
        if self.placement.device.type == "cuda":
            torch.cuda.synchronize(self.placement.device)

    def _encode_rgbd(
        self,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        req: ResolvedRequest,
        resample: str,
        generator: torch.Generator | None,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """RGB + 16-bit depth → a latent sampled from the VAE's posterior with ``generator`` (as
        diffusers' img2img and the LDM3D-SR reference do; ``noise`` replaces the draw; no generator:
        the posterior's mean), scaled, in the model's own channel packing, at the request's size
        (see :func:`~ldm3d_engine.depth.packing.vae_input`)."""
        x = vae_input(rgb, depth, self.depth_layout, (req.width, req.height), wrap=req.seamless, resample=resample)
        vae_dtype = next(self.vae.parameters()).dtype
        with self._active(self.vae):
            posterior = self.vae.encode(x.to(self.placement.device, vae_dtype)).latent_dist
        if generator is None:
            latent: torch.Tensor = posterior.mean
        elif noise is None:
            latent = posterior.sample(generator)
        else:
            latent = posterior.mean + posterior.std * noise.to(posterior.mean)
        scaled: torch.Tensor = latent * float(self.vae.config.scaling_factor)
        return scaled.to(self.placement.dtype)

    def _img2img(
        self,
        req: ResolvedRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16] | None,
        on_step: OnStep | None,
        cancel: CancelToken | None,
        noise: torch.Tensor | None,
        previews: Previews | None,
    ) -> RGBDResult:
        t0 = time.perf_counter()
        depth_source = None
        if depth is None:
            depth = np.full(rgb.shape[:2], 32768, np.uint16)
            depth_source = "flat 0.5 (no depth map was given)"
        assert req.strength is not None
        # As diffusers' img2img: int(steps × strength) steps are run (50 × 0.75 → 37), from the
        # (steps - that)-th timestep of the full schedule, on the VAE sample noised to that timestep.
        # With no step to run (strength 0, or below 1/steps) nothing is drawn: the posterior mean,
        # decoded, is the input kept.
        steps_left = min(req.steps, int(req.steps * req.strength))
        generator = self._generator(req.seed)
        init = self._encode_rgbd(rgb, depth, req, "bicubic", None if steps_left == 0 else generator, noise)
        scheduler = self._scheduler(req)
        start = (req.steps - steps_left) * scheduler.order
        # (PNDM's schedule is one pass longer than its steps: with no step left, nothing runs.)
        timesteps = scheduler.timesteps[start:] if steps_left else scheduler.timesteps[:0]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        latents = init
        if steps_left:
            noise = self.initial_latents(req, generator) if noise is None else noise.to(init)
            latents = scheduler.add_noise(init, noise, timesteps[:1])
        result = self._sample(
            req, scheduler, timesteps, latents, on_step, cancel, extra_s=time.perf_counter() - t0, steps=steps_left,
            previews=previews,
        )  # fmt: skip
        return dataclasses.replace(result, depth_source=depth_source)

    def _upscale(
        self,
        req: ResolvedRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        on_step: OnStep | None,
        cancel: CancelToken | None,
        noise: torch.Tensor | None,
        previews: Previews | None,
    ) -> RGBDResult:
        t0 = time.perf_counter()
        # As the LDM3D-SR reference runs: the low-resolution RGBD resized (Pillow's Lanczos) to the output size,
        # a VAE sample drawn with the job's generator, then the starting noise from the same generator.
        generator = self._generator(req.seed)
        condition = self._encode_rgbd(rgb, depth, req, "lanczos", generator, noise)
        scheduler = self._scheduler(req)
        start = self.initial_latents(req, generator) if noise is None else noise.to(condition)
        latents = start * scheduler.init_noise_sigma
        assert req.noise_level is not None
        labels = torch.tensor([req.noise_level], dtype=torch.long, device=self.placement.device)
        return self._sample(
            req,
            scheduler,
            scheduler.timesteps,
            latents,
            on_step,
            cancel,
            condition=condition,
            class_labels=labels,
            extra_s=time.perf_counter() - t0,
            previews=previews,
        )

    def _sample(
        self,
        req: ResolvedRequest,
        scheduler: Any,
        timesteps: torch.Tensor,
        latents: torch.Tensor,
        on_step: OnStep | None,
        cancel: CancelToken | None,
        condition: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        extra_s: float = 0.0,
        steps: int | None = None,
        previews: Previews | None = None,
        conditioning: Conditioning | None = None,
    ) -> RGBDResult:
        """Encode the prompts, denoise (:mod:`~ldm3d_engine.sampling.denoise`), decode. ``steps``: what
        progress counts to (None: the request's steps).

        ``condition`` (upscale) is concatenated to the latents on the channel axis, and
        ``class_labels`` (the noise level) go to the UNet, as LDM3D-SR expects."""
        t0 = time.perf_counter()
        if conditioning is None:
            conditioning = self.conditioning(req)
        embeddings = conditioning.cond
        if req.guidance > 1.0:
            embeddings = torch.cat([conditioning.uncond, conditioning.cond])
        guidance = Guidance(embeddings, req.guidance, condition, class_labels)
        self._sync()
        t1 = time.perf_counter()

        # The step noise of ancestral samplers comes from a generator seeded after the start noise.
        generator = self._generator(req.seed + 1)
        with self._active(self.unet):
            latents = denoise(
                self.unet,
                scheduler,
                timesteps,
                latents,
                guidance,
                generator,
                after_step=self.placement.runtime.after_step,
                on_step=on_step,
                cancel=cancel,
                steps=req.steps if steps is None else steps,
                on_clean=None if previews is None else preview_sender(self.preview_map(), previews),
                clean_due=(lambda done, total: False) if previews is None else previews.due,
            )
        self._sync()
        t2 = time.perf_counter()

        vae_dtype = next(self.vae.parameters()).dtype
        with self._active(self.vae):
            decoded = self.vae.decode(latents.to(vae_dtype) / self.vae.config.scaling_factor, return_dict=False)[0]
        host = decoded_to_host(decoded[0])  # 8-bit RGB and 16-bit depth made on the device
        if not host.finite:
            logger.warning("the VAE produced non-finite values (dtype %s); they were clamped", self.dtype)
        t3 = time.perf_counter()
        return RGBDResult(
            rgb=host.rgb,
            depth=host.depth,
            depth_float=host.depth_float,
            request=req,
            prompt_used=conditioning.prompt_used,
            prompt_truncated=conditioning.prompt_truncated,
            negative_truncated=conditioning.negative_truncated,
            model_id=self.model_id,
            preset=self.preset.name,
            device=self.device,
            dtype=self.dtype,
            depth_layout=self.depth_layout,
            timings=Timings(t1 - t0 + extra_s, t2 - t1, t3 - t2),
        )
