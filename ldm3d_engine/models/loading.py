"""Finding a model's files: presets, the Hugging Face cache, local folders.

Resolution is explicit and reported: a preset's hub id is looked up in the
local cache first; it is downloaded only when the settings allow it. A folder
path is used as it is and must be in diffusers layout.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotAvailable, UnknownModel
from ..presets import DEPTH_MODELS, FOLDER_DEFAULTS, PRESETS, Preset, get_preset
from ..types import EngineSettings

logger = logging.getLogger(__name__)

REQUIRED = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: The CompVis latent diffusion layouts, by the pipeline class their ``model_index.json`` names.
LDM_REQUIRED: dict[str, tuple[str, ...]] = {
    "LDMPipeline": ("unet", "vqvae", "scheduler"),
    "LDMTextToImagePipeline": ("bert", "tokenizer", "unet", "vqvae", "scheduler"),
}
#: What a snapshot needs; skips the safety checker, ONNX, CKPT and other extras.
ALLOW_PATTERNS = [
    "model_index.json",
    *(f"{part}/*.json" for part in (*REQUIRED, "vqvae", "bert")),
    "tokenizer/*.txt",
    "*/diffusion_pytorch_model.safetensors",
    "*/diffusion_pytorch_model.bin",
    "text_encoder/model.safetensors",
    "text_encoder/pytorch_model.bin",
    "bert/model.safetensors",
    "bert/pytorch_model.bin",
    "low_res_scheduler/*.json",
]
#: A DPT folder (transformers' layout).
DEPTH_PATTERNS = ["config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin"]


@dataclass(frozen=True)
class ModelLocation:
    folder: Path
    #: What the user would call it: the hub id, the folder, or ``builtin:tiny``.
    model_id: str
    preset: Preset
    #: The pipeline class the folder's ``model_index.json`` names (``LDMPipeline``…; "" when it names none).
    pipeline: str = ""


def _pipeline_class(folder: Path) -> str:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(index.get("_class_name", "")) if isinstance(index, dict) else ""


def _check_layout(folder: Path, model_id: str, preset: Preset | None) -> str:
    """Check the folder has what its kind needs; return the pipeline class it names."""
    pipeline = _pipeline_class(folder)
    family = "ldm" if pipeline in LDM_REQUIRED else "ldm3d"
    required = LDM_REQUIRED.get(pipeline, REQUIRED)
    missing = [part for part in required if not (folder / part).is_dir()]
    if missing:
        kind = f"{pipeline} (CompVis LDM)" if family == "ldm" else "diffusers LDM3D"
        raise UnknownModel(
            f"{model_id!r} is not a complete {kind} folder: missing {', '.join(m + '/' for m in missing)} "
            f"(expected {', '.join(p + '/' for p in required)})"
        )
    if preset is not None and preset.family != family:
        raise UnknownModel(
            f"{model_id!r} is a {'CompVis LDM' if family == 'ldm' else 'LDM3D'} folder (model_index.json: "
            f"{pipeline or 'no pipeline class'}), but preset {preset.name!r} is for "
            f"{'CompVis LDM' if preset.family == 'ldm' else 'LDM3D'} models"
        )
    return pipeline


def _hub_folder(
    repo_id: str, settings: EngineSettings, patterns: list[str] = ALLOW_PATTERNS, flag: str = "--model"
) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = settings.cache_dir or constants.HF_HUB_CACHE
    offline = settings.offline or constants.HF_HUB_OFFLINE
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=patterns, local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise ModelNotAvailable(
                repo_id,
                str(cache),
                f"model {repo_id!r} is not in the local cache {cache} and downloads are off; fetch it once "
                f"on a connected machine with `hf download {repo_id}` (same HF_HOME), or download the "
                f"folder and pass its path as {flag}"
                + (" (or with --preset for its conventions)" if flag == "--model" else ""),
            ) from None
    logger.info("downloading %s into %s", repo_id, cache)
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=patterns))
    except OSError as exc:  # network errors from the hub client derive from OSError
        raise ModelNotAvailable(
            repo_id,
            str(cache),
            f"could not download {repo_id!r} into {cache}: {exc}; check the network, or pass a local folder as {flag}",
        ) from exc


def _built_in(source: str, settings: EngineSettings) -> Path:
    """The folder of an offline model (``builtin:NAME``), built on first use. The builders are
    imported here, not at module level: a show with a real model never loads them."""
    from ..offline.configs import default_tiny_dir
    from ..offline.tiny import ensure_tiny

    root = Path(settings.tiny_dir) if settings.tiny_dir else default_tiny_dir()
    return ensure_tiny(source.removeprefix("builtin:"), root)


def locate(settings: EngineSettings) -> ModelLocation:
    """Where the model named by ``settings`` lies on disk (building or fetching it if allowed)."""
    name = settings.model
    if name in PRESETS:
        preset = get_preset(name)
        folder = _built_in(preset.source, settings) if preset.builtin else _hub_folder(preset.source, settings)
        pipeline = _check_layout(folder, preset.source, preset)
        return ModelLocation(folder, preset.source, preset, pipeline)
    path = Path(os.path.expanduser(name))
    if not path.is_dir():
        raise UnknownModel(
            f"unknown model {name!r}: not a preset ({', '.join(PRESETS)}) and not a folder on this machine"
        )
    given = get_preset(settings.preset) if settings.preset else None
    pipeline = _check_layout(path, name, given)
    if given is not None:
        preset = given
    elif pipeline in LDM_REQUIRED:  # the folder says what it is: an RGB-only CompVis LDM
        preset = dataclasses.replace(
            FOLDER_DEFAULTS, family="ldm", conditional=pipeline != "LDMPipeline", depth_model="dpt-large", guidance=1.0
        )
    else:
        preset = FOLDER_DEFAULTS
    return ModelLocation(path.resolve(), str(path.resolve()), preset, pipeline)


def locate_depth_model(name: str, settings: EngineSettings) -> tuple[Path, str]:
    """The folder of depth estimator ``name`` (a :data:`DEPTH_MODELS` name or a local folder) and
    what to call it; built (tiny) or fetched (when allowed) like the main model."""
    if name in DEPTH_MODELS:
        source = DEPTH_MODELS[name]
        if source.startswith("builtin:"):
            return _built_in(source, settings), source
        return _hub_folder(source, settings, DEPTH_PATTERNS, "--depth-model"), source
    path = Path(os.path.expanduser(name))
    if not path.is_dir():
        raise UnknownModel(
            f"unknown depth model {name!r}: not one of {', '.join(DEPTH_MODELS)} and not a folder on this machine"
        )
    missing = [f for f in ("config.json", "preprocessor_config.json") if not (path / f).is_file()]
    if missing:
        raise UnknownModel(
            f"{name!r} is not a DPT folder in transformers' layout: missing {', '.join(missing)} "
            "(expected config.json, preprocessor_config.json and the weights)"
        )
    return path.resolve(), str(path.resolve())
