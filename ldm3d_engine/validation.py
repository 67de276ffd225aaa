"""Requests → resolved requests: each preset's defaults filled in, every field checked.

Pure Python: no torch. Messages name the offending value and what is allowed.
"""

from __future__ import annotations

import secrets
from typing import Any

from .errors import InvalidRequest
from .presets import EQUIRECT_VIEWS, LIVE_SCHEDULER, SAMPLINGS, SCHEDULERS, Preset
from .types import SEED_MAX, DepthRequest, GenerateRequest, Img2ImgRequest, ResolvedRequest, UpscaleRequest

STEPS_RANGE = (1, 150)
GUIDANCE_RANGE = (0.0, 30.0)
MAX_NOISE_LEVEL = 350
#: LDM3D-SR's scales when no width/height is given (the default: ×4, the factor it was trained for).
UPSCALE_SCALES = (2, 4)
UPSCALE_FACTOR = 4


def _task(preset: Preset, task: str) -> None:
    if preset.task == task:
        return
    if task == "upscale":
        raise InvalidRequest("model", f"model {preset.name!r} does not upscale; upscaling needs ldm3d-sr (or tiny-sr)")
    raise InvalidRequest(
        "model", f"model {preset.name!r} is an upscaler, not a text→RGBD model; use ldm3d, ldm3d-4c or ldm3d-pano"
    )


def _resolve(
    preset: Preset, request: GenerateRequest | UpscaleRequest, width: int, height: int, **mode: Any
) -> ResolvedRequest:
    """The checks every kind of request shares, then the resolved request (``mode``: its own fields)."""
    if preset.conditional and not request.prompt.strip():  # an unconditional model takes none
        raise InvalidRequest("prompt", "the prompt is empty; say what the world should show")
    sampling = request.sampling or "quality"
    if sampling not in SAMPLINGS:
        raise InvalidRequest("sampling", f"unknown sampling {sampling!r}; use {' or '.join(SAMPLINGS)}")
    live = sampling == "live"
    steps = (preset.live_steps if live else preset.steps) if request.steps is None else request.steps
    most = max(STEPS_RANGE[1], preset.steps)  # a model card's own count may be more (ldm-celebahq: 200)
    if not STEPS_RANGE[0] <= steps <= most:
        raise InvalidRequest("steps", f"steps {steps} is out of range; allowed {STEPS_RANGE[0]}..{most}")
    guidance = preset.guidance if request.guidance is None else float(request.guidance)
    if not (GUIDANCE_RANGE[0] <= guidance <= GUIDANCE_RANGE[1]):  # also refuses NaN
        raise InvalidRequest(
            "guidance", f"guidance {guidance} is out of range; allowed {GUIDANCE_RANGE[0]}..{GUIDANCE_RANGE[1]}"
        )
    scheduler = request.scheduler or (LIVE_SCHEDULER if live else preset.scheduler)
    if scheduler not in SCHEDULERS:
        raise InvalidRequest("scheduler", f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}")
    if scheduler == "model":
        if preset.native_scheduler is None:
            raise InvalidRequest("scheduler", "the model's own scheduler is known once the model is loaded")
        scheduler = preset.native_scheduler
    seed = secrets.randbelow(SEED_MAX + 1) if request.seed == -1 else request.seed
    if not 0 <= seed <= SEED_MAX:
        raise InvalidRequest("seed", f"seed {seed} is out of range; use 0..{SEED_MAX}, or -1 for a random seed")
    seamless = preset.seamless if request.seamless is None else request.seamless
    if seamless:
        _wrap_size(preset, width, height)
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
        sampling=sampling,
        **mode,
    )


def _size(preset: Preset, width: int, height: int, what: str = "") -> None:
    for field, value, limit in (("width", width, preset.max_width), ("height", height, preset.max_height)):
        if value % 8 or not preset.min_size <= value <= limit:
            raise InvalidRequest(
                field,
                f"{what}{field} {value} is not allowed for {preset.name}: use a multiple of 8 from {preset.min_size} "
                f"to {limit} (native {preset.width}×{preset.height})",
            )


def _wrap_size(preset: Preset, width: int, height: int) -> None:
    """Seamless wrap is exact only when every UNet downsampling halves a whole number of latent
    columns: sizes must be multiples of ``preset.wrap_multiple`` (64 for Intel's UNets)."""
    m = preset.wrap_multiple
    for field, value, limit in (("width", width, preset.max_width), ("height", height, preset.max_height)):
        if value % m:
            below, above = value // m * m, (value // m + 1) * m
            nearest = " or ".join(str(v) for v in (below, above) if preset.min_size <= v <= limit)
            raise InvalidRequest(
                field,
                f"{field} {value} cannot wrap seamlessly on {preset.name}: a 360° panorama's width and height "
                f"must be multiples of {m} for its left and right edges to meet exactly; nearest: {nearest}",
            )


def resolve_text(preset: Preset, request: GenerateRequest, source: tuple[int, int] | None = None) -> ResolvedRequest:
    """Text→RGBD, or image-to-image when ``request`` is an Img2ImgRequest (``source`` = input width, height)."""
    _task(preset, "text")
    if isinstance(request, Img2ImgRequest) and preset.family != "ldm3d":
        raise InvalidRequest(
            "model", f"{preset.name} makes RGB only and has no RGBD image-to-image; use an LDM3D model for img2img"
        )
    default_w, default_h = source if source is not None else (preset.width, preset.height)
    width = default_w if request.width is None else request.width
    height = default_h if request.height is None else request.height
    _size(preset, width, height)
    if not isinstance(request, Img2ImgRequest):
        return _resolve(preset, request, width, height, mode="text")
    strength = float(request.strength)
    if not 0.0 <= strength <= 1.0:
        raise InvalidRequest("strength", f"strength {strength} is out of range; allowed 0..1 (0 keeps the input)")
    return _resolve(preset, request, width, height, mode="img2img", strength=strength)


def resolve_upscale(preset: Preset, request: UpscaleRequest, source: tuple[int, int]) -> ResolvedRequest:
    """LDM3D-SR: the output is ``width``×``height`` when given (both, any size the model allows, as
    the reference's ``target_res``), else ``scale`` (2 or 4, default 4) × the source (width, height)."""
    _task(preset, "upscale")
    if not 0 <= request.noise_level <= MAX_NOISE_LEVEL:
        raise InvalidRequest(
            "noise_level", f"noise level {request.noise_level} is out of range; allowed 0..{MAX_NOISE_LEVEL}"
        )
    sized = (request.width is not None, request.height is not None)
    if any(sized):
        if not all(sized):
            raise InvalidRequest("width" if sized[1] else "height", "give the output's width and height together")
        if request.scale is not None:
            raise InvalidRequest("scale", "give either scale or width and height, not both")
        width, height = int(request.width or 0), int(request.height or 0)
        what = f"the output of a {source[0]}×{source[1]} source: "
    else:
        scale = UPSCALE_FACTOR if request.scale is None else request.scale
        if scale not in UPSCALE_SCALES:
            raise InvalidRequest(
                "scale",
                f"scale {scale} is not allowed; use {' or '.join(map(str, UPSCALE_SCALES))}, or width and height",
            )
        width, height = (scale * s for s in source)
        what = f"the ×{scale} output of a {source[0]}×{source[1]} source (ask for scale 2 or a width and height): "
    _size(preset, width, height, what=what)
    return _resolve(preset, request, width, height, mode="upscale", noise_level=request.noise_level)


#: The sides a depth job takes: the smallest, and the largest (an 8K equirect photo is 8192×4096).
DEPTH_SIDES = (16, 8192)


def resolve_depth(preset: Preset, request: DepthRequest, size: tuple[int, int]) -> ResolvedRequest:
    """Check a depth job of a ``size`` (width, height) picture; ``equirect`` defaults to the preset's
    ``seamless``. Its steps are the pictures the depth model sees (one, or the 360° views)."""
    width, height = size
    low, high = DEPTH_SIDES
    for name, value in (("width", width), ("height", height)):
        if not low <= value <= high:
            raise InvalidRequest(name, f"the image's {name} {value} is outside {low}..{high}")
    equirect = preset.seamless if request.equirect is None else request.equirect
    if equirect and width != 2 * height:
        raise InvalidRequest(
            "equirect",
            f"a 360° (equirectangular) image is twice as wide as high; this one is {width}×{height} "
            "(an ordinary picture: leave equirect off)",
        )
    steps = len(EQUIRECT_VIEWS) if equirect else 1
    return ResolvedRequest(
        prompt="", negative_prompt="", seed=0, steps=steps, guidance=0.0, width=width, height=height,
        scheduler="", seamless=equirect, mode="depth",
    )  # fmt: skip


#: What two worlds of a morph must share (the frames between them run one sampler over one noise shape).
MORPH_SHARED = ("width", "height", "steps", "scheduler", "sampling", "seamless", "mode")


def check_morph(first: ResolvedRequest, second: ResolvedRequest, t: float) -> None:
    """InvalidRequest unless a morph can run between the two resolved requests at ``t`` (0..1)."""
    if not 0.0 <= t <= 1.0:
        raise InvalidRequest("t", f"a morph frame's position must be in 0..1, got {t!r}")
    for name in MORPH_SHARED:
        a, b = getattr(first, name), getattr(second, name)
        if a != b:
            raise InvalidRequest(
                name, f"the two worlds of a morph must have the same {name}: the first has {a!r}, the second {b!r}"
            )
