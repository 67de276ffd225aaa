"""LN3Diff text → 3D object, as an :class:`~ldm3d_engine.object_types.ObjectEngineLike`.

One job: the prompt through CLIP ViT-L/14 (last hidden state, 77 tokens), the EDM Euler sampler
(:mod:`.edm`) over a 3·4×32×32 latent with the DiT (:mod:`.dit`), the latent → triplane decoder
(:mod:`.triplane_decoder`), the triplane's density on a grid (:mod:`.renderer`), marching cubes and
vertex colours (:mod:`.meshing`). The licence is on the engine and on every result.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import torch

from ..backends.devices import Placement, is_out_of_memory, resolve_placement
from ..errors import Cancelled, DeviceNotAvailable, OutOfMemory, UnknownModel
from ..object_types import (
    MeshResult,
    ObjectEngineLike,
    ObjectLimits,
    ObjectRequest,
    ObjectTimings,
    ResolvedObjectRequest,
    resolve_object,
)
from ..sampling.prompts import PromptEncoder
from ..types import CancelToken, EngineSettings, OnStep
from .edm import Schedule, sample
from .keymap import load_official
from .ln3diff_config import LN3DiffConfig
from .loading import LN3DiffFiles, locate
from .meshing import marching_cubes_module, mesh_from_field
from .network import LN3DiffNetwork

logger = logging.getLogger(__name__)

GUIDANCE_RANGE = (0.0, 30.0)
MIN_RESOLUTION = 16


def limits_of(cfg: LN3DiffConfig) -> ObjectLimits:
    """What LN3Diff allows: steps up to its training timesteps, guidance 0..30, the grid 16..max."""
    return ObjectLimits(
        cfg.default_steps,
        cfg.num_timesteps,
        cfg.default_guidance,
        GUIDANCE_RANGE,
        cfg.default_resolution,
        cfg.max_resolution,
        MIN_RESOLUTION,
    )


class LN3DiffEngine:
    """Runs one object job at a time (a lock); load with :func:`load_ln3diff`."""

    def __init__(self, network: LN3DiffNetwork, prompts: PromptEncoder, placement: Placement, files: LN3DiffFiles):
        self._network = network
        self._prompts = prompts
        self._placement = placement
        self._files = files
        self._cfg = network.cfg
        self._schedule = Schedule(network.cfg.num_timesteps, network.cfg.linear_start, network.cfg.linear_end)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._files.model_id

    @property
    def licence(self) -> str:
        return self._files.licence

    @property
    def config(self) -> LN3DiffConfig:
        return self._cfg

    @property
    def limits(self) -> ObjectLimits:
        return limits_of(self._cfg)

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
                if is_out_of_memory(exc):
                    raise OutOfMemory(f"{self._placement.label} ran out of memory making an object: {exc}") from exc
                raise

    def _generate(self, req: ResolvedObjectRequest, on_step: OnStep | None, cancel: CancelToken | None) -> MeshResult:
        device, dtype = self._placement.device, self._placement.dtype
        started = time.perf_counter()
        cond, _cut = self._prompts.encode(req.prompt)
        text_s = time.perf_counter() - started

        def before(i: int) -> None:
            if cancel is not None and cancel.cancelled:
                raise Cancelled(i, req.steps)

        def after(i: int) -> None:
            if on_step is not None:
                on_step(i + 1, req.steps)
            before(i + 1)

        started = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(req.seed)
        noise = torch.randn((1, *self._network.latent_shape()), generator=generator).to(device)

        def network(x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
            eps: torch.Tensor = self._network.denoiser(x.to(dtype), t, text.to(dtype))
            return eps

        latent = sample(network, noise, cond, req.steps, req.guidance, self._schedule, before, after)
        denoise_s = time.perf_counter() - started

        started = time.perf_counter()
        field = self._network.field(latent.to(dtype))
        decode_s = time.perf_counter() - started

        started = time.perf_counter()
        density = field.density_grid(req.resolution + 1, check=lambda: before(req.steps)).cpu().numpy()
        vertices, faces, colours = mesh_from_field(
            density,
            self._cfg.mesh_threshold,
            self._cfg.bbox,
            lambda points: field.colours(torch.from_numpy(points)).cpu().numpy(),
        )
        mesh_s = time.perf_counter() - started
        if len(vertices) == 0:
            logger.warning("object %r (seed %d): the density never reaches the surface threshold", req.prompt, req.seed)
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


def load_ln3diff(model: str, settings: EngineSettings) -> LN3DiffEngine:
    """Object model ``model`` (``ln3diff``, ``tiny-ln3diff``, a file or a folder) on ``settings.device``."""
    from safetensors.torch import load_file
    from transformers import CLIPTextModel, CLIPTokenizer

    kind = settings.device.partition(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise DeviceNotAvailable(f"LN3Diff runs on cpu, cuda or mps, not {settings.device!r} (yet)")
    placement = resolve_placement(settings.device, settings.dtype)
    marching_cubes_module()  # missing PyMCubes fails now, not after a job's sampling
    if settings.threads and placement.device.type == "cpu":
        torch.set_num_threads(settings.threads)
    files = locate(model, settings)
    logger.info("loading %s (%s) on %s; licence: %s", model, files.model_id, placement.label, files.licence)
    with torch.device("meta"):
        network = LN3DiffNetwork(files.config)
    load_official(network, load_file(str(files.weights)), str(files.weights), assign=True)
    network = network.to(placement.device, placement.dtype).eval()
    tokenizer = CLIPTokenizer.from_pretrained(str(files.tokenizer))
    text_encoder = CLIPTextModel.from_pretrained(str(files.text_encoder)).to(placement.device, placement.dtype).eval()
    if text_encoder.config.hidden_size != files.config.text_dim:
        raise UnknownModel(
            f"the text encoder in {files.text_encoder} is {text_encoder.config.hidden_size} wide; "
            f"{files.model_id} expects {files.config.text_dim}"
        )
    prompts = PromptEncoder(
        tokenizer, text_encoder, placement.device, placement.dtype, lambda _m: contextlib.nullcontext()
    )
    return LN3DiffEngine(network, prompts, placement, files)


def _is_an_object_engine(engine: LN3DiffEngine) -> ObjectEngineLike:
    """Never called: mypy checks here that the engine keeps the bridge's object contract."""
    return engine
