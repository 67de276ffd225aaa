"""Cue settings checked against the model, without loading it.

Each cue's request goes through the engine's own checks (:mod:`ldm3d_engine.validation`, pure
Python) with the model's preset, as the engine will run it: sizes (multiples of 8 in the preset's
range), seamless sizes (the wrap multiple), steps, guidance, scheduler and sampling, a model that
cannot make worlds at all; and for ``upscale = true``, that there is an upscale model and that it
takes the picture (its output, 4× the cue's size, within the upscaler's limits); for ``object``, that
there is an object model (its own limits are met when the scene renders). Torch-free.

Two things are only known once the weights are loaded; before that they are taken so that nothing
the engine accepts is refused here:

- what the ``model`` scheduler stands for (the folder's own scheduler, which any loaded model has);
- the wrap multiple of a seamless size: known for the presets in :data:`WRAP_MULTIPLES`; for a
  local folder or another preset, only the multiple of 8 every size needs is checked.

:meth:`CueLimits.of_engines` takes both from loaded engines: exactly what they refuse.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from bridge.show.cues import Cue, Mistake, Show, ShowReading
from ldm3d_engine.errors import InvalidRequest
from ldm3d_engine.presets import FOLDER_DEFAULTS, NATIVE_SCHEDULERS, PRESETS, Preset, get_preset
from ldm3d_engine.types import ResolvedRequest, UpscaleRequest
from ldm3d_engine.validation import check_morph, resolve_text, resolve_upscale

#: The wrap multiple (8 · 2^the UNet's downsamplings) of the presets whose UNet is known: Intel's
#: LDM3D UNets halve three times; the tiny models' once (a test loads them and compares).
WRAP_MULTIPLES = {
    **dict.fromkeys(("ldm3d", "ldm3d-4c", "ldm3d-pano"), 64),
    **dict.fromkeys(("tiny", "tiny-6c", "tiny-pano", "tiny-sr", "tiny-ldm", "tiny-ldm-text"), 16),
}
#: Request fields a cue may set that the checks can leave unset to look for a cue's next mistake.
_UNSETTABLE = ("width", "height", "steps", "guidance", "scheduler", "sampling")
_SCALE_HINT = " (ask for scale 2 or a width and height)"


class ModelSettings(Protocol):
    """What names the models (:class:`~bridge.settings.BridgeSettings` has it)."""

    @property
    def model(self) -> str: ...
    @property
    def preset(self) -> str | None: ...
    @property
    def upscale_model(self) -> str | None: ...
    @property
    def object_model(self) -> str | None: ...


class EngineWithPreset(Protocol):
    @property
    def preset(self) -> Preset: ...


@dataclass(frozen=True)
class CueLimits:
    """What a model allows a cue: its preset as the engine checks requests with it, and the upscaler's."""

    preset: Preset
    #: The upscale model's preset (``upscale = true``); None: the bridge has no upscale model.
    upscaler: Preset | None = None
    #: True: from loaded engines (their own scheduler and wrap multiple); False: from the presets.
    loaded: bool = False
    #: The object model a cue's ``object`` needs (None: the bridge has none, such a cue is a mistake).
    object_model: str | None = None

    @classmethod
    def of_engines(
        cls, engine: EngineWithPreset, upscaler: EngineWithPreset | None = None, object_model: str | None = None
    ) -> CueLimits:
        """The limits of loaded engines (``pregen`` checks again with them once they are loaded)."""
        return cls(engine.preset, None if upscaler is None else upscaler.preset, True, object_model)


def cue_limits(settings: ModelSettings) -> CueLimits:
    """The limits of the model ``settings`` names (``model``, ``preset``, ``upscale_model``), without
    loading it. A name that is not a preset is a folder run with ``preset``'s conventions (or the
    folder defaults), as the engine loads it; the upscaler is loaded with the same ``preset``.
    :class:`~ldm3d_engine.errors.UnknownModel` for a ``preset`` that does not exist."""
    upscaler = _preset(settings.upscale_model, settings.preset) if settings.upscale_model else None
    return CueLimits(_preset(settings.model, settings.preset), upscaler, object_model=settings.object_model)


def _preset(model: str, preset: str | None) -> Preset:
    if model in PRESETS:
        p = dataclasses.replace(PRESETS[model], wrap_multiple=WRAP_MULTIPLES.get(model, PRESETS[model].wrap_multiple))
    else:  # a folder: its own UNet sets the wrap multiple, unknown here
        p = get_preset(preset) if preset else FOLDER_DEFAULTS
    # "model" stands for the folder's own scheduler: one of NATIVE_SCHEDULERS once loaded (any is accepted)
    return p if p.native_scheduler else dataclasses.replace(p, native_scheduler=NATIVE_SCHEDULERS[0])


def check_cues(show: Show, limits: CueLimits) -> tuple[Mistake, ...]:
    """Every mistake of every cue of ``show`` against ``limits``, each a ``file:line: message``."""
    return tuple(
        Mistake(line, f"{show.source}:{line}: {message}" if line else f"{show.source}: {message}", cue.number)
        for cue in show.cues
        for line, message in _cue_mistakes(cue, limits)
    )


def with_limits(reading: ShowReading, limits: CueLimits) -> ShowReading:
    """``reading`` with each of its cues also checked against the model's ``limits``."""
    show = reading.show or Show("", reading.cues, source=reading.source)
    return ShowReading(reading.source, reading.show, reading.cues, (*reading.found, *check_cues(show, limits)))


def cue_mistakes(show: Show, limits: CueLimits) -> dict[str, tuple[str, ...]]:
    """Cue number → its mistakes against ``limits`` (only cues with some)."""
    by_cue: dict[str, tuple[str, ...]] = {}
    for m in check_cues(show, limits):
        assert m.cue is not None
        by_cue[m.cue] = (*by_cue.get(m.cue, ()), m.text)
    return by_cue


def _cue_mistakes(cue: Cue, limits: CueLimits) -> Iterator[tuple[int, str]]:
    request = cue.request()
    resolved: ResolvedRequest | None = None  # the cue's picture as the engine makes it; None: refused
    for attempt in range(len(_UNSETTABLE) + 1):  # each round unsets one field the cue set, or ends
        try:
            checked = resolve_text(limits.preset, request)
            resolved = checked if attempt == 0 else None
            break
        except InvalidRequest as exc:
            key = exc.field if exc.field in cue.params else None
            if key is None and exc.field in ("width", "height") and "seamless" in cue.params:
                key = "seamless"  # the model's own size does not wrap
            yield cue.line(key), str(exc)
            if exc.field not in _UNSETTABLE or getattr(request, exc.field) is None:
                break
            unset: dict[str, Any] = {exc.field: None}
            request = dataclasses.replace(request, **unset)
    if cue.morph_from is not None and resolved is not None:
        try:  # its mistakes are the cue's own, listed there
            before = resolve_text(limits.preset, cue.morph_from.request())
        except InvalidRequest:
            before = None
        if before is not None:
            try:
                check_morph(before, resolved, 0.0)
            except InvalidRequest as exc:
                yield cue.line("morph"), f"morph = true from cue {cue.morph_from.number}: {exc}"
    if cue.object is not None and limits.object_model is None:
        yield cue.line("object"), "object needs an object model: give --object-model shap-e (tiny-shap-e offline)"
    if not cue.upscale:
        return
    if limits.upscaler is None:
        yield cue.line("upscale"), "upscale = true needs an upscale model: give --upscale-model ldm3d-sr"
        return
    if resolved is None:  # the picture itself is refused: its upscale cannot be known
        return
    sr = UpscaleRequest(seed=resolved.seed, seamless=resolved.seamless, sampling=cue.params.get("sampling"))
    try:  # as bridge.contract.requests.generate_then_upscale runs it: ×4 of the picture made
        resolve_upscale(limits.upscaler, sr, (resolved.width, resolved.height))
    except InvalidRequest as exc:
        yield cue.line("upscale"), f"upscale = true: {str(exc).replace(_SCALE_HINT, '')}"
