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
    from .object_types import ObjectEngineLike

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


def load_object_engine(settings: EngineSettings, model: str) -> ObjectEngineLike:
    """Load text → 3D object model ``model`` on ``settings.device`` (docs/objects.md): ``ln3diff``,
    ``tiny-ln3diff`` or an LN3Diff ``.safetensors`` file or folder; ``shap-e``, ``tiny-shap-e`` or a
    folder whose ``model_index.json`` names ``ShapEPipeline``. ``settings.model`` (the world model)
    plays no part; the cache, offline and tiny-folder settings do. One load at a time, as for
    :func:`load_engine`."""
    from pathlib import Path

    if model not in OBJECT_MODELS and not Path(model).exists():
        raise UnknownModel(
            f"unknown object model {model!r}: not one of {', '.join(OBJECT_MODELS)}, and not a file or folder on "
            "this machine"
        )
    with _LOADING:
        if _is_shap_e(model):
            from .objects.shap_e import load_shap_e

            return load_shap_e(model, settings)
        from .objects.ln3diff import load_ln3diff

        return load_ln3diff(model, settings)


#: The object models by name, and which kind each is.
OBJECT_MODELS = {"ln3diff": "ln3diff", "tiny-ln3diff": "ln3diff", "shap-e": "shap-e", "tiny-shap-e": "shap-e"}


def _is_shap_e(model: str) -> bool:
    """A Shap-E name, or a folder whose ``model_index.json`` says ShapEPipeline (read, never guessed from its name)."""
    import json
    from pathlib import Path

    if model in OBJECT_MODELS:
        return OBJECT_MODELS[model] == "shap-e"
    index = Path(model) / "model_index.json"
    try:
        return bool(json.loads(index.read_text(encoding="utf-8")).get("_class_name") == "ShapEPipeline")
    except (OSError, ValueError, AttributeError):
        return False
