"""Samplers by name, each built from the model's own scheduler config.

A model folder's ``scheduler/scheduler_config.json`` names the sampler the model is meant to
be run with (``_class_name``): ``Intel/ldm3d`` and ``Intel/ldm3d-sr`` ship PNDM, ``Intel/ldm3d-pano``
DDIM. :func:`native_scheduler` turns that class into our name, so the ``quality`` sampling runs
the model's own sampler with its own settings (``skip_prk_steps``, ``steps_offset``…), as
``from_pretrained`` would. The other names are the same noise schedule sampled another way.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest, UnknownModel
from ..presets import NATIVE_SCHEDULERS

#: diffusers' scheduler class → our name for it.
CLASS_NAMES = {
    "DDIMScheduler": "ddim",
    "PNDMScheduler": "pndm",
    "DPMSolverMultistepScheduler": "dpm",
    "UniPCMultistepScheduler": "unipc",
    "EulerAncestralDiscreteScheduler": "euler_a",
    "EulerDiscreteScheduler": "euler",
}


def native_scheduler(config: dict[str, Any], model_id: str = "the model") -> str:
    """Our name for the scheduler a model folder's config names; UnknownModel when we do not run it."""
    class_name = str(config.get("_class_name", ""))
    try:
        return CLASS_NAMES[class_name]
    except KeyError:
        raise UnknownModel(
            f"{model_id}'s scheduler_config.json names {class_name or 'no class'!r}, which this engine does not "
            f"run; it runs {', '.join(CLASS_NAMES)}"
        ) from None


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A fresh scheduler (they keep per-run state) for one job, from the model's own config."""
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        PNDMScheduler,
        UniPCMultistepScheduler,
    )

    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    own = CLASS_NAMES.get(str(base_config.get("_class_name", ""))) == name
    if name == "ddim":
        if own:  # the folder's own DDIM: its config as it is, diffusers' defaults for what it leaves out
            return DDIMScheduler.from_config(config)
        # DDIM in place of another sampler: latent diffusion must not clip its x0 estimate to [-1, 1],
        # which DDIM does by default. Intel's PNDM configs say clip_sample false; one without the key
        # (PNDM has no use for it) would otherwise make DDIM clip.
        return DDIMScheduler.from_config({"clip_sample": False, **config})
    if name == "pndm":
        if own:
            return PNDMScheduler.from_config(config)
        # PNDM in place of another sampler: no Runge-Kutta warm-up, as Intel's own PNDM configs say and as
        # CompVis's PLMS sampler ran. diffusers' default (skip_prk_steps false) makes 13 passes of 4 steps
        # and fails in set_timesteps under 4 steps, so a job of 1 to 3 steps would end engine_failed.
        return PNDMScheduler.from_config({"skip_prk_steps": True, **config})
    if name == "dpm":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)
    if name == "unipc":
        return UniPCMultistepScheduler.from_config(config)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    raise InvalidRequest("scheduler", f"unknown scheduler {name!r}; use one of {', '.join(NATIVE_SCHEDULERS)}")
