"""ldm3d_engine: LDM3D text → RGB + 16-bit depth. Knows nothing of OSC or files.

One way to run it::

    engine = load_engine(EngineSettings(model="ldm3d-pano", device="cuda"))
    result = engine.generate(GenerateRequest("a forest at dawn"), on_step=print)

Importing this package does not import torch; :func:`load_engine` does.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .errors import (
    BackendFailed,
    Cancelled,
    DeviceNotAvailable,
    EngineError,
    InvalidRequest,
    ModelNotAvailable,
    OutOfMemory,
    UnknownModel,
    UnsafeContent,
)
from .presets import PRESETS, SCHEDULERS, Preset, get_preset
from .types import (
    CancelToken,
    DepthRequest,
    EngineSettings,
    GenerateRequest,
    ResolvedRequest,
    RGBDResult,
    Timings,
)
from .version import VERSION

if TYPE_CHECKING:
    from .models.base import DepthOnly
    from .models.compvis import RGBLatentEngine
    from .models.ldm3d import Engine
    from .objects.ln3diff import LN3DiffEngine

__version__ = VERSION

__all__ = [
    "PRESETS",
    "SCHEDULERS",
    "BackendFailed",
    "CancelToken",
    "Cancelled",
    "DepthRequest",
    "DeviceNotAvailable",
    "Engine",
    "EngineError",
    "EngineSettings",
    "GenerateRequest",
    "InvalidRequest",
    "ModelNotAvailable",
    "OutOfMemory",
    "Preset",
    "RGBDResult",
    "ResolvedRequest",
    "Timings",
    "UnknownModel",
    "UnsafeContent",
    "get_preset",
    "load_depth_only",
    "load_engine",
    "load_object_engine",
]


#: One load at a time in a process. diffusers' lazy imports are not thread-safe (two threads got
#: "cannot import name 'AutoencoderKL' from 'diffusers'"), and loading patches torch process-wide
#: for a while (modules created on the "meta" device): a load beside another one was left with
#: that patch for good ("Cannot copy out of meta tensor") and every later load failed.
_LOADING = threading.Lock()


def load_engine(settings: EngineSettings) -> Engine | RGBLatentEngine:
    """Load the model named by ``settings`` onto its device (an LDM3D :class:`Engine`, or an
    ``RGBLatentEngine`` for a CompVis LDM, whose depth is estimated). See :mod:`ldm3d_engine.models.build`.

    Safe from several threads (an engine per device): loads take turns; the engines then run
    side by side."""
    with _LOADING:
        from .models.build import load_engine as _load

        return _load(settings)


def load_depth_only(settings: EngineSettings) -> DepthOnly:
    """Only the depth estimator named by ``settings.depth_model``, for depth jobs (no diffusion model)."""
    with _LOADING:
        from .models.build import load_depth_only as _load

        return _load(settings)


def load_object_engine(settings: EngineSettings, model: str) -> LN3DiffEngine:
    """Load text → 3D object model ``model`` (``ln3diff``, ``tiny-ln3diff``, an LN3Diff
    ``.safetensors`` file or folder; docs/objects.md) on ``settings.device``; ``settings.model``
    (the world model) plays no part, the cache, offline and tiny-folder settings do. One load at a
    time, as for :func:`load_engine`."""
    with _LOADING:
        from .objects.ln3diff import load_ln3diff

        return load_ln3diff(model, settings)
