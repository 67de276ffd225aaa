"""Requests → resolved requests: each preset's defaults filled in, every field checked.

Pure Python: no torch. Messages name the offending value and what is allowed.
"""

from __future__ import annotations

import secrets
from typing import Any

from .errors import InvalidRequest
from .presets import LIVE_SCHEDULER, SAMPLINGS, SCHEDULERS, Preset
from .types import SEED_MAX, GenerateRequest, Img2ImgRequest, ResolvedRequest, UpscaleRequest

STEPS_RANGE = (1, 150)
GUIDANCE_RANGE = (0.0, 30.0)
MAX_NOISE_LEVEL = 350
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
    if not request.prompt.strip():
        raise InvalidRequest("prompt", "the prompt is empty; say what the world should show")
    sampling = request.sampling or "quality"
    if sampling not in SAMPLINGS:
        raise InvalidRequest("sampling", f"unknown sampling {sampling!r}; use {' or '.join(SAMPLINGS)}")
    live = sampling == "live"
    steps = (preset.live_steps if live else preset.steps) if request.steps is None else request.steps
    if not STEPS_RANGE[0] <= steps <= STEPS_RANGE[1]:
        raise InvalidRequest("steps", f"steps {steps} is out of range; allowed {STEPS_RANGE[0]}..{STEPS_RANGE[1]}")
    guidance = preset.guidance if request.guidance is None else float(request.guidance)
    if not (GUIDANCE_RANGE[0] <= guidance <= GUIDANCE_RANGE[1]):  # also refuses NaN
        raise InvalidRequest(
            "guidance", f"guidance {guidance} is out of range; allowed {GUIDANCE_RANGE[0]}..{GUIDANCE_RANGE[1]}"
        )
    scheduler = request.scheduler or (LIVE_SCHEDULER if live else preset.scheduler)
    if scheduler not in SCHEDULERS:
        raise InvalidRequest("scheduler", f"unknown scheduler {scheduler!r}; use one of {', '.join(SCHEDULERS)}")
    seed = secrets.randbelow(SEED_MAX + 1) if request.seed == -1 else request.seed
    if not 0 <= seed <= SEED_MAX:
        raise InvalidRequest("seed", f"seed {seed} is out of range; use 0..{SEED_MAX}, or -1 for a random seed")
    return ResolvedRequest(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        scheduler=scheduler,
        seamless=preset.seamless if request.seamless is None else request.seamless,
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


def resolve_text(preset: Preset, request: GenerateRequest, source: tuple[int, int] | None = None) -> ResolvedRequest:
    """Text→RGBD, or image-to-image when ``request`` is an Img2ImgRequest (``source`` = input width, height)."""
    _task(preset, "text")
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
    """LDM3D-SR: the output is ``UPSCALE_FACTOR`` × the source (width, height)."""
    _task(preset, "upscale")
    if not 0 <= request.noise_level <= MAX_NOISE_LEVEL:
        raise InvalidRequest(
            "noise_level", f"noise level {request.noise_level} is out of range; allowed 0..{MAX_NOISE_LEVEL}"
        )
    width, height = (UPSCALE_FACTOR * s for s in source)
    _size(preset, width, height, what=f"the ×{UPSCALE_FACTOR} output of a {source[0]}×{source[1]} source: ")
    return _resolve(preset, request, width, height, mode="upscale", noise_level=request.noise_level)
