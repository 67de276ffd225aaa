"""The ranges of the stage values for the model a bridge runs: what a fader may span.

Read from the model's preset (torch-free, known before the model loads) and the
engine's request checks, so ``/ldm3d/steps/norm 0.5`` means the middle of what
the model accepts, and the OSCQuery tree's ``RANGE`` says the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldm3d_engine.presets import FOLDER_DEFAULTS, PRESETS, SAMPLINGS, SCHEDULERS
from ldm3d_engine.types import SEED_MAX
from ldm3d_engine.validation import GUIDANCE_RANGE, STEPS_RANGE

#: Stage values that also take a 0..1 fader on ``<address>/norm``.
NORMALISED = ("steps", "guidance", "strength")


@dataclass(frozen=True)
class Ranges:
    steps: tuple[int, int] = STEPS_RANGE
    guidance: tuple[float, float] = GUIDANCE_RANGE
    strength: tuple[float, float] = (0.0, 1.0)
    seed: tuple[int, int] = (-1, SEED_MAX)
    width: tuple[int, int] = (64, 1024)
    height: tuple[int, int] = (64, 1024)
    schedulers: tuple[str, ...] = SCHEDULERS
    samplings: tuple[str, ...] = SAMPLINGS
    #: What a job gets when the stage leaves a value unset (the model's defaults).
    defaults: tuple[tuple[str, int | float | str], ...] = (
        ("steps", 50),
        ("guidance", 7.5),
        ("strength", 0.6),
        ("width", 512),
        ("height", 512),
        ("scheduler", "ddim"),
        ("sampling", "quality"),
    )

    def default(self, name: str) -> int | float | str:
        return dict(self.defaults)[name]

    def from_norm(self, name: str, fraction: float) -> int | float:
        """A 0..1 fader position (clipped) → the value of ``name`` it stands for (steps are whole)."""
        low, high = getattr(self, name)
        value = float(low + min(1.0, max(0.0, fraction)) * (high - low))
        return round(value) if name == "steps" else round(value, 4)

    def to_norm(self, name: str, value: float) -> float:
        """The fader position of ``value`` (0..1, clipped)."""
        low, high = getattr(self, name)
        return round(min(1.0, max(0.0, float(value - low) / float(high - low))), 4)


def ranges_for(
    model: str,
    preset: str | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    sampling: str = "quality",
) -> Ranges:
    """The ranges and defaults of ``model`` (a preset name, or a folder run with ``preset`` conventions);
    ``width``, ``height`` and ``sampling``: the server's defaults where it sets them."""
    p = PRESETS.get(preset or model, FOLDER_DEFAULTS)
    defaults = (
        ("steps", p.live_steps if sampling == "live" else p.steps),
        ("guidance", p.guidance),
        ("strength", 0.6),
        ("width", width or p.width),
        ("height", height or p.height),
        ("scheduler", "dpm" if sampling == "live" else p.scheduler),
        ("sampling", sampling),
    )
    return Ranges(width=(p.min_size, p.max_width), height=(p.min_size, p.max_height), defaults=defaults)
