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
#: A safety checker's files: in a pipeline folder's subfolders, or on its own (a checker's repository).
SAFETY_PATTERNS = [
    *(f"{prefix}{name}" for prefix in ("safety_checker/", "") for name in ("config.json", "model.safetensors")),
    *(f"{prefix}pytorch_model.bin" for prefix in ("safety_checker/", "")),
    "feature_extractor/preprocessor_config.json",
    "preprocessor_config.json",
]
#: What a snapshot needs (the safety checker's safetensors, or its .bin where there are none); skips
#: ONNX, CKPT and other extras.
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
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "feature_extractor/preprocessor_config.json",
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


def _model_index(folder: Path) -> dict[str, object]:
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _pipeline_class(folder: Path) -> str:
    return str(_model_index(folder).get("_class_name", ""))


def lists_safety_checker(folder: Path) -> bool:
    """Whether the folder's ``model_index.json`` names a safety checker (``[library, class]``, not nulls)."""
    entry = _model_index(folder).get("safety_checker")
    return isinstance(entry, list) and any(part is not None for part in entry)


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


def locate_safety_checker(location: ModelLocation, settings: EngineSettings) -> tuple[Path, str] | None:
    """The folder of the safety checker the settings ask for and what to call it: ``safety_model``
    (a folder or a hub id), else the model's own where its ``model_index.json`` names one; None
    when the check is off or the model has none. A model that names a checker whose files are
    missing is an error (never silently unchecked); a hub model's are fetched when allowed."""
    from ..safety.checker import checker_folders

    if not settings.safety:
        return None
    if settings.safety_model:
        name = settings.safety_model
        path = Path(os.path.expanduser(name))
        if path.is_dir():
            return path.resolve(), str(path.resolve())
        if name.count("/") != 1 or name.startswith((".", "/", "~")):
            raise UnknownModel(f"safety model {name!r} is neither a folder on this machine nor a hub id (owner/name)")
        return _safety_from_hub(name, settings, "--safety-model"), name
    folder = location.folder
    if not lists_safety_checker(folder):
        return None
    if checker_folders(folder) is None and not location.preset.builtin and location.model_id == location.preset.source:
        folder = _safety_from_hub(location.model_id, settings, "--safety-model")
    if checker_folders(folder) is None:
        raise UnknownModel(
            f"{location.model_id!r} names a safety checker in its model_index.json, but {folder} lacks "
            "safety_checker/ or feature_extractor/ (config and weights); copy them into the folder, give one with "
            "--safety-model, or turn the check off with --safety off"
        )
    return folder, location.model_id


def _safety_from_hub(repo_id: str, settings: EngineSettings, flag: str) -> Path:
    """A hub repository's safety checker files (a snapshot fetched before the checker was part of
    what the bridge fetches lacks them: fetched now when allowed)."""
    from huggingface_hub import constants, snapshot_download

    from ..safety.checker import checker_folders

    folder = _hub_folder(repo_id, settings, SAFETY_PATTERNS, flag)
    if checker_folders(folder) is not None:
        return folder
    cache = settings.cache_dir or constants.HF_HUB_CACHE
    command = f'hf download {repo_id} --include "safety_checker/*" "feature_extractor/*" "*.json"'
    if settings.offline or constants.HF_HUB_OFFLINE:
        raise ModelNotAvailable(
            repo_id,
            str(cache),
            f"the safety checker of {repo_id!r} is not in the local cache {cache} and downloads are off; "
            f"fetch it once with `{command}` (same HF_HOME), or turn the check off with --safety off",
        )
    logger.info("downloading the safety checker of %s into %s", repo_id, cache)
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=SAFETY_PATTERNS))
    except OSError as exc:
        raise ModelNotAvailable(
            repo_id, str(cache), f"could not download the safety checker of {repo_id!r}: {exc}; try `{command}`"
        ) from exc
