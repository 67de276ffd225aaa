"""Samplers by name, each built from the model's own scheduler config."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    UniPCMultistepScheduler,
)

from .errors import InvalidRequest
from .presets import SCHEDULERS


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A fresh scheduler (they keep per-run state) for one job."""
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(config)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    raise InvalidRequest("scheduler", f"unknown scheduler {name!r}; use one of {', '.join(SCHEDULERS)}")
