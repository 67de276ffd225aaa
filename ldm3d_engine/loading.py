"""Finding a model's files: presets, the Hugging Face cache, local folders.

Resolution is explicit and reported: a preset's hub id is looked up in the
local cache first; it is downloaded only when the settings allow it. A folder
path is used as it is and must be in diffusers layout.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelNotAvailable, UnknownModel
from .presets import FOLDER_DEFAULTS, PRESETS, Preset, get_preset
from .tiny import default_tiny_dir, ensure_tiny
from .types import EngineSettings

logger = logging.getLogger(__name__)

REQUIRED = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: What a snapshot needs; skips the safety checker, ONNX, CKPT and other extras.
ALLOW_PATTERNS = [
    "model_index.json",
    *(f"{part}/*.json" for part in REQUIRED),
    "tokenizer/*.txt",
    "*/diffusion_pytorch_model.safetensors",
    "*/diffusion_pytorch_model.bin",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "low_res_scheduler/*.json",
]


@dataclass(frozen=True)
class ModelLocation:
    folder: Path
    #: What the user would call it: the hub id, the folder, or ``builtin:tiny``.
    model_id: str
    preset: Preset


def _check_layout(folder: Path, model_id: str) -> None:
    missing = [part for part in REQUIRED if not (folder / part).is_dir()]
    if missing:
        raise UnknownModel(
            f"{model_id!r} is not a diffusers LDM3D folder: missing {', '.join(m + '/' for m in missing)} "
            f"(expected {', '.join(p + '/' for p in REQUIRED)})"
        )


def _hub_folder(repo_id: str, settings: EngineSettings) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = settings.cache_dir or constants.HF_HUB_CACHE
    offline = settings.offline or constants.HF_HUB_OFFLINE
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=ALLOW_PATTERNS, local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise ModelNotAvailable(
                repo_id,
                str(cache),
                f"model {repo_id!r} is not in the local cache {cache} and downloads are off; fetch it once "
                f"on a connected machine with `hf download {repo_id}` (same HF_HOME), or download the "
                "folder and pass its path as --model (or with --preset for its conventions)",
            ) from None
    logger.info("downloading %s into %s", repo_id, cache)
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=ALLOW_PATTERNS))
    except OSError as exc:  # network errors from the hub client derive from OSError
        raise ModelNotAvailable(
            repo_id,
            str(cache),
            f"could not download {repo_id!r} into {cache}: {exc}; check the network, or pass a local folder as --model",
        ) from exc


def locate(settings: EngineSettings) -> ModelLocation:
    """Where the model named by ``settings`` lies on disk (building or fetching it if allowed)."""
    name = settings.model
    if name in PRESETS:
        preset = get_preset(name)
        if preset.builtin:
            root = Path(settings.tiny_dir) if settings.tiny_dir else default_tiny_dir()
            folder = ensure_tiny(preset.source.removeprefix("builtin:"), root)
        else:
            folder = _hub_folder(preset.source, settings)
        _check_layout(folder, preset.source)
        return ModelLocation(folder, preset.source, preset)
    path = Path(os.path.expanduser(name))
    if not path.is_dir():
        raise UnknownModel(
            f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}) and not a folder on this machine"
        )
    _check_layout(path, name)
    preset = get_preset(settings.preset) if settings.preset else FOLDER_DEFAULTS
    return ModelLocation(path.resolve(), str(path.resolve()), preset)
