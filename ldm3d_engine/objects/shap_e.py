"""Shap-E text → 3D object (``openai/shap-e``, MIT), as an :class:`~ldm3d_engine.object_types.ObjectEngineLike`.

diffusers' ``ShapEPipeline`` parts, loaded one by one (:mod:`.shap_e_files` finds the folder), and
the pipeline's maths run here so that every step can report and be cancelled (diffusers 0.42's
``ShapEPipeline.__call__`` has no step callback): the prompt's CLIP ``text_embeds`` normalised to
unit length and scaled by √width (the unconditional half zeros), seeded noise × the scheduler's
``init_noise_sigma``, then per timestep ``scale_model_input``, the ``PriorTransformer`` (the first
half of its output: the second is the variance), classifier-free guidance when guidance > 1 and the
Heun step; then the renderer's ``decode_to_mesh`` (latent → the MLP's weights → signed distance on
the grid → marching cubes → texture at the vertices). Heun evaluates the prior twice a step (once
on the last): progress counts steps, as diffusers' progress bar does, and a cancel is seen before
every evaluation and every query batch of the meshing.

The text encoder and the prior run at the placement's dtype; the renderer stays float32 (its
positional encoding reaches 2¹⁴ rad per unit, beyond float16's precision). The seed's noise is
drawn on the device (the CPU for mps), as the world models draw theirs: the same seed makes the
same object on the same kind of device, another on another.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ..backends.devices import Placement, is_out_of_memory, resolve_placement
from ..errors import Cancelled, DeviceNotAvailable, OutOfMemory, UnknownModel
from ..object_types import (
    MeshResult,
    ObjectLimits,
    ObjectRequest,
    ObjectTimings,
    ResolvedObjectRequest,
    resolve_object,
)
from ..types import CancelToken, EngineSettings, OnStep
from .shap_e_files import ShapEFiles, locate
from .shap_e_mesh import empty_mesh, object_mesh

logger = logging.getLogger(__name__)

MAX_STEPS = 1000
#: Guidance 1 is none (diffusers guides only above 1).
GUIDANCE_RANGE = (1.0, 30.0)
MIN_RESOLUTION = 16


@dataclass(frozen=True)
class ShapEDefaults:
    steps: int
    guidance: float
    #: Cells along each axis: the renderer samples ``resolution + 1`` points (diffusers' ``grid_size``).
    resolution: int
    max_resolution: int


#: The model card's example (64 steps, guidance 15) and diffusers' default grid (``grid_size=128``).
REAL = ShapEDefaults(steps=64, guidance=15.0, resolution=127, max_resolution=255)
TINY = ShapEDefaults(steps=8, guidance=15.0, resolution=24, max_resolution=64)


def limits_of(defaults: ShapEDefaults) -> ObjectLimits:
    """What Shap-E allows: steps 1..1000, guidance 1..30 (1: none), the grid 16..max."""
    return ObjectLimits(
        defaults.steps,
        MAX_STEPS,
        defaults.guidance,
        GUIDANCE_RANGE,
        defaults.resolution,
        defaults.max_resolution,
        MIN_RESOLUTION,
        " (1: none)",
    )


class _NoSurface(Exception):
    """The signed distance is nowhere positive: marching cubes found nothing (raised from a hook)."""


@contextlib.contextmanager
def _hooks(renderer: Any, check: Callable[[], None]) -> Iterator[list[float]]:
    """Inside ``decode_to_mesh``: the seconds its latent → weights projection took (yielded, filled
    in), ``check`` before every MLP query batch, and :class:`_NoSurface` for an empty surface."""
    spent = [0.0]
    started = [0.0]

    def start(_module: Any, _args: Any) -> None:
        started[0] = time.perf_counter()

    def stop(_module: Any, _args: Any, _out: Any) -> None:
        spent[0] += time.perf_counter() - started[0]

    def surface(_module: Any, _args: Any, out: Any) -> None:
        if len(out.verts) == 0:
            raise _NoSurface

    handles = [
        renderer.params_proj.register_forward_pre_hook(start),
        renderer.params_proj.register_forward_hook(stop),
        renderer.mlp.register_forward_pre_hook(lambda _m, _a: check()),
        renderer.mesh_decoder.register_forward_hook(surface),
    ]
    try:
        yield spent
    finally:
        for handle in handles:
            handle.remove()


class ShapEEngine:
    """Runs one object job at a time (a lock); load with :func:`load_shap_e`."""

    def __init__(self, parts: dict[str, Any], placement: Placement, files: ShapEFiles, defaults: ShapEDefaults):
        self._tokenizer = parts["tokenizer"]
        self._text_encoder = parts["text_encoder"]
        self._prior = parts["prior"]
        self._scheduler = parts["scheduler"]
        self._renderer = parts["shap_e_renderer"]
        self._placement = placement
        self._files = files
        self.defaults = defaults
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._files.model_id

    @property
    def licence(self) -> str:
        return self._files.licence

    @property
    def limits(self) -> ObjectLimits:
        return limits_of(self.defaults)

    def resolve_object(self, request: ObjectRequest) -> ResolvedObjectRequest:
        return resolve_object(self.limits, request)

    def generate_object(
        self, request: ObjectRequest, on_step: OnStep | None = None, cancel: CancelToken | None = None
    ) -> MeshResult:
        resolved = self.resolve_object(request)
        with self._lock, torch.inference_mode():
            try:
                return self._generate(resolved, on_step, cancel)
            except RuntimeError as exc:
                if not is_out_of_memory(exc):
                    raise
                gc.collect()
                if self._placement.device.type == "cuda":
                    torch.cuda.empty_cache()
                raise OutOfMemory(
                    f"out of memory on {self._placement.label} making an object at resolution {resolved.resolution}: "
                    f"{exc}"
                ) from exc

    def _encode(self, prompt: str, guided: bool) -> torch.Tensor:
        ids = self._tokenizer(
            prompt, padding="max_length", max_length=self._tokenizer.model_max_length, truncation=True
        ).input_ids
        cut = len(self._tokenizer(prompt).input_ids) - len(ids)
        if cut > 0:
            logger.warning("the prompt is %d tokens too long for CLIP; its end was cut", cut)
        embeds = self._text_encoder(torch.tensor([ids], device=self._placement.device)).text_embeds
        embeds = embeds / torch.linalg.norm(embeds, dim=-1, keepdim=True)
        if guided:
            embeds = torch.cat([torch.zeros_like(embeds), embeds])
        scaled: torch.Tensor = embeds * math.sqrt(embeds.shape[1])
        return scaled

    def _denoise(
        self, req: ResolvedObjectRequest, cond: torch.Tensor, on_step: OnStep | None, check: Callable[[int], None]
    ) -> torch.Tensor:
        device, dtype = self._placement.device, self._placement.dtype
        scheduler = self._scheduler
        scheduler.set_timesteps(req.steps, device=device)
        tokens, width = self._prior.config.num_embeddings, self._prior.config.embedding_dim
        generator = torch.Generator(self._placement.runtime.noise_device(device)).manual_seed(req.seed)
        noise = torch.randn((1, tokens * width), generator=generator, device=generator.device, dtype=dtype)
        latents: torch.Tensor = (noise.to(device) * scheduler.init_noise_sigma).reshape(1, tokens, width)
        guided = req.guidance > 1.0
        timesteps = scheduler.timesteps
        done = 0
        for i, t in enumerate(timesteps):
            check(done)
            model_input = torch.cat([latents, latents]) if guided else latents
            scaled = scheduler.scale_model_input(model_input, t)
            predicted = self._prior(scaled, timestep=t, proj_embedding=cond).predicted_image_embedding
            predicted = predicted[..., : scaled.shape[2]]  # the mean; the rest is the variance
            if guided:
                unconditional, conditional = predicted.chunk(2)
                predicted = unconditional + req.guidance * (conditional - unconditional)
            latents = scheduler.step(predicted, timestep=t, sample=latents).prev_sample
            if i == len(timesteps) - 1 or (i + 1) % scheduler.order == 0:
                done += 1
                if on_step is not None:
                    on_step(done, req.steps)
        check(done)
        return latents

    def _generate(self, req: ResolvedObjectRequest, on_step: OnStep | None, cancel: CancelToken | None) -> MeshResult:
        def check(done: int) -> None:
            if cancel is not None and cancel.cancelled:
                raise Cancelled(done, req.steps)

        started = time.perf_counter()
        cond = self._encode(req.prompt, req.guidance > 1.0)
        text_s = time.perf_counter() - started

        started = time.perf_counter()
        latents = self._denoise(req, cond, on_step, check)
        denoise_s = time.perf_counter() - started

        started = time.perf_counter()
        with _hooks(self._renderer, lambda: check(req.steps)) as decode:
            try:
                mesh = self._renderer.decode_to_mesh(
                    latents.float(), self._placement.device, grid_size=req.resolution + 1
                )
            except _NoSurface:
                mesh = None
        decode_s = decode[0]
        if mesh is None:
            logger.warning("object %r (seed %d): the signed distance is nowhere positive", req.prompt, req.seed)
            vertices, faces, colours = empty_mesh()
        else:
            channels = {name: value.cpu().numpy() for name, value in mesh.vertex_channels.items()}
            vertices, faces, colours = object_mesh(mesh.verts.cpu().numpy(), mesh.faces.cpu().numpy(), channels)
        mesh_s = time.perf_counter() - started - decode_s
        return MeshResult(
            vertices=vertices,
            faces=faces,
            colors=colours,
            request=req,
            model_id=self.model_id,
            device=self._placement.label,
            dtype=self._placement.dtype_name,
            timings=ObjectTimings(text_s, denoise_s, decode_s, mesh_s),
            licence=self.licence,
        )


def load_parts(files: ShapEFiles, placement: Placement) -> dict[str, Any]:
    """The pipeline's parts from the folder: the renderer in float32, the others at the placement's dtype."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer

    folder, device, dtype = files.folder, placement.device, placement.dtype
    config = HeunDiscreteScheduler.load_config(str(folder / "scheduler"))
    if config.get("_class_name") != "HeunDiscreteScheduler":
        raise UnknownModel(f"{files.model_id}: its scheduler is {config.get('_class_name')!r}; Shap-E's is Heun")
    renderer = ShapERenderer.from_pretrained(str(folder / "shap_e_renderer"), torch_dtype=torch.float32)
    if not bool(renderer.mesh_decoder.masks.any()):
        raise UnknownModel(f"{files.model_id}: its renderer's weights hold no marching-cubes table (mesh_decoder)")
    text_encoder = CLIPTextModelWithProjection.from_pretrained(str(folder / "text_encoder"), dtype=dtype)
    return {
        "tokenizer": CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), model_max_length=77),
        "text_encoder": text_encoder.to(device).eval(),
        "prior": PriorTransformer.from_pretrained(str(folder / "prior"), torch_dtype=dtype).to(device).eval(),
        "scheduler": HeunDiscreteScheduler.from_config(config),
        "shap_e_renderer": renderer.to(device).eval(),
    }


def load_shap_e(model: str, settings: EngineSettings) -> ShapEEngine:
    """Object model ``model`` (``shap-e``, ``tiny-shap-e`` or a ShapEPipeline folder) on ``settings.device``."""
    kind = settings.device.partition(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise DeviceNotAvailable(f"Shap-E runs on cpu, cuda or mps, not {settings.device!r} (yet)")
    placement = resolve_placement(settings.device, settings.dtype)
    if settings.threads and placement.device.type == "cpu":
        torch.set_num_threads(settings.threads)
    files = locate(model, settings)
    logger.info("loading %s (%s) on %s; licence: %s", model, files.model_id, placement.label, files.licence)
    return ShapEEngine(load_parts(files, placement), placement, files, TINY if files.tiny else REAL)
