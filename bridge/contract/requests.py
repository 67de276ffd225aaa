"""OSC options → engine requests, checked as far as the bridge can before a job is queued.

Pure apart from reading an input image's header and looking up an earlier job on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.contract.engine_api import EngineLike
from bridge.contract.paths import resolve_input_path
from bridge.errors import BadArguments, NotSupported, UnknownJob, WrongModel
from bridge.output.images import check_depth16, image_size
from bridge.output.writer import TextureWriter
from bridge.placement import Placement, placement_from
from bridge.settings import BridgeSettings
from ldm3d_engine.errors import EngineError
from ldm3d_engine.object_types import ObjectEngineLike, ObjectRequest
from ldm3d_engine.types import (
    UPSCALE_PROMPT,
    CancelToken,
    DepthRequest,
    GenerateRequest,
    Img2ImgRequest,
    Previews,
    RGBDResult,
    UpscaleRequest,
)
from ldm3d_engine.validation import MAX_NOISE_LEVEL

Inputs = dict[str, str]


def text_request(
    settings: BridgeSettings, prompt: str, options: dict[str, Any], engine: EngineLike | None
) -> GenerateRequest:
    """A text → RGBD request; refused now if the loaded ``engine`` would refuse it."""
    model = options.get("model")
    if model is not None and model != settings.model:
        raise WrongModel(
            f"this bridge runs {settings.model!r}, not {model!r}; start a bridge with --model {model} "
            "(on another port) or leave the model option out"
        )
    request = GenerateRequest(
        prompt=prompt,
        negative_prompt=options.get("negative", ""),
        seed=options.get("seed", -1),
        steps=options.get("steps"),
        guidance=options.get("guidance"),
        width=options.get("width", settings.width),
        height=options.get("height", settings.height),
        scheduler=options.get("scheduler"),
        seamless=options.get("seamless"),
        sampling=options.get("sampling", settings.sampling),
    )
    if engine is not None:  # loaded: refuse bad requests now rather than after the queue
        try:
            engine.resolve(request)
        except EngineError as exc:  # InvalidRequest, or a model that cannot run this kind of job
            raise BadArguments(str(exc)) from None
    return request


def img2img_request(
    settings: BridgeSettings, image: str, prompt: str, options: dict[str, Any], engine: EngineLike | None
) -> tuple[Img2ImgRequest, Inputs]:
    """An image-to-image request and its input files, which must lie inside ``settings.input_dirs``."""
    folders = [Path(d) for d in settings.input_dirs]
    if not folders:
        raise NotSupported("/ldm3d/img2img is off: start the bridge with input_dirs (the folders it may read)")
    inputs = {"image": str(resolve_input_path(image, folders))}
    if "depth" in options:
        inputs["depth_map"] = str(resolve_input_path(options["depth"], folders))
        check_depth16(Path(inputs["depth_map"]))
    strength = options.get("strength", 0.6)
    if not 0.0 <= strength <= 1.0:
        raise BadArguments(f"strength {strength} is out of range; allowed 0..1 (0 keeps the input)")
    width, height = image_size(Path(inputs["image"]))
    text_options = {k: v for k, v in options.items() if k not in ("strength", "depth", "flat_depth")}
    base = text_request(settings, prompt, {"width": width, "height": height, **text_options}, None)
    flat = bool(options.get("flat_depth", False))
    request = Img2ImgRequest(**{**base.__dict__, "strength": strength, "flat_depth": flat})
    if engine is not None:  # loaded: refuse bad requests now rather than after the queue
        try:
            engine.resolve(request)
        except EngineError as exc:
            raise BadArguments(str(exc)) from None
    return request, inputs


def depth_request(
    settings: BridgeSettings, image: str, options: dict[str, Any], engine: EngineLike | None
) -> tuple[DepthRequest, Inputs]:
    """A depth job (a picture kept, its depth estimated) and its input, inside ``settings.input_dirs``."""
    folders = [Path(d) for d in settings.input_dirs]
    if not folders:
        raise NotSupported("/ldm3d/depth is off: start the bridge with input_dirs (the folders it may read)")
    if engine is not None and engine.depth_model is None:
        raise NotSupported(
            f"/ldm3d/depth needs a depth estimator and {engine.model_id} has none: start the bridge with "
            "--depth-model dpt-large (or dpt-hybrid; tiny-dpt offline)"
        )
    path = resolve_input_path(image, folders)
    request = DepthRequest(equirect=options.get("equirect"))
    if engine is not None:
        try:
            engine.resolve_depth(request, image_size(path))
        except EngineError as exc:
            raise BadArguments(str(exc)) from None
    return request, {"image": str(path)}


def object_request(
    settings: BridgeSettings, prompt: str, options: dict[str, Any], objects: ObjectEngineLike | None
) -> tuple[ObjectRequest, Placement]:
    """A text → 3D object request and where the object stands in the world; refused now if the loaded
    object model would refuse it or the placement is out of range."""
    if settings.object_model is None:
        raise NotSupported(
            "/ldm3d/object is off: start the bridge with --object-model ln3diff (or tiny-ln3diff, offline)"
        )
    request = ObjectRequest(
        prompt,
        seed=options.get("seed", -1),
        steps=options.get("steps"),
        guidance=options.get("guidance"),
        resolution=options.get("resolution"),
    )
    placement = placement_from(options)
    if objects is not None:  # loaded: refuse bad requests now rather than after the queue
        try:
            objects.resolve_object(request)
        except EngineError as exc:  # InvalidRequest names the field
            raise BadArguments(str(exc)) from None
    return request, placement


def upscale_request(
    settings: BridgeSettings,
    writer: TextureWriter,
    job_id: str,
    options: dict[str, Any],
    upscaler: EngineLike | None = None,
) -> tuple[UpscaleRequest, Inputs]:
    """An LDM3D-SR request for the finished job ``job_id``; refused now if the loaded ``upscaler`` would."""
    source = writer.find(job_id)
    if source is None:
        raise UnknownJob(f"no finished job {job_id} in {writer.root} to upscale")
    level = options.get("noise_level", 20)
    if not 0 <= level <= MAX_NOISE_LEVEL:
        raise BadArguments(f"noise level {level} is out of range; allowed 0..{MAX_NOISE_LEVEL}")
    request = UpscaleRequest(
        prompt=options.get("prompt", UPSCALE_PROMPT),
        negative_prompt=options.get("negative", ""),
        seed=options.get("seed", -1),
        steps=options.get("steps"),
        guidance=options.get("guidance"),
        noise_level=level,
        scheduler=options.get("scheduler"),
        # a panorama is upscaled with the wrap it was made with, unless the request says otherwise
        seamless=options.get("seamless", source.seamless),
        sampling=options.get("sampling", settings.sampling),
        width=options.get("width"),
        height=options.get("height"),
        scale=options.get("scale"),
    )
    if upscaler is not None:  # loaded: a source too large for the upscaler is refused before the queue
        try:
            upscaler.resolve_upscale(request, (source.width, source.height))
        except EngineError as exc:
            raise BadArguments(str(exc)) from None
    return request, {"source_job": job_id, "rgb": str(source.rgb), "depth": str(source.depth)}


def generate_then_upscale(
    engine: EngineLike,
    upscaler: EngineLike,
    request: GenerateRequest,
    on_step: Callable[[int, int], None] | None = None,
    cancel: CancelToken | None = None,
    previews: Previews | None = None,
) -> RGBDResult:
    """A show cue with ``upscale = true``: the generation, then LDM3D-SR (×4) of it with the same seed,
    wrap and sampling (progress and previews of each in turn)."""
    low = engine.generate(request, on_step=on_step, cancel=cancel, previews=previews)
    sr = UpscaleRequest(seed=low.seed, seamless=low.request.seamless, sampling=request.sampling)
    return upscaler.upscale(sr, low.rgb, low.depth, on_step=on_step, cancel=cancel, previews=previews)
