"""Finding Shap-E's folder: the hub id, the Hugging Face cache, a local folder, offline.

``shap-e`` is ``openai/shap-e`` in diffusers' layout (``model_index.json`` naming ``ShapEPipeline``,
``prior/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``shap_e_renderer/``); only those
parts are fetched (:data:`PATTERNS`), never the repository's extras. As for the world models: the
cache is looked in first, a download happens only when the settings allow it, and offline a missing
model raises ModelNotAvailable naming the id and the ``hf download`` command. ``tiny-shap-e`` is
built here on first use (:mod:`ldm3d_engine.offline.tiny_objects`); any other name is a folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotAvailable, UnknownModel
from ..types import EngineSettings

logger = logging.getLogger(__name__)

HUB_ID = "openai/shap-e"
LICENCE = "MIT (OpenAI Shap-E; commercial use allowed)"
TINY_LICENCE = "MIT (tiny-shap-e: Shap-E's layout with random weights, built offline)"
NAMES = ("shap-e", "tiny-shap-e")
PARTS = ("prior", "text_encoder", "tokenizer", "scheduler", "shap_e_renderer")
PATTERNS = [
    "model_index.json",
    *(f"{part}/*.json" for part in PARTS),
    "tokenizer/*.txt",
    "prior/diffusion_pytorch_model.safetensors",
    "shap_e_renderer/diffusion_pytorch_model.safetensors",
    "text_encoder/model.safetensors",
    # the older weights' names too, as the world models' patterns list them (a repository with both sends both)
    "prior/diffusion_pytorch_model.bin",
    "shap_e_renderer/diffusion_pytorch_model.bin",
    "text_encoder/pytorch_model.bin",
]


@dataclass(frozen=True)
class ShapEFiles:
    folder: Path
    #: What the user would call it: ``openai/shap-e``, ``builtin:tiny-shap-e`` or the folder.
    model_id: str
    licence: str
    tiny: bool


def hub_folder(settings: EngineSettings, repo_id: str = HUB_ID) -> Path:
    """The snapshot of ``repo_id`` in the cache, or downloaded when allowed."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = str(settings.cache_dir or constants.HF_HUB_CACHE)
    offline = bool(settings.offline or constants.HF_HUB_OFFLINE)
    command = f"hf download {repo_id}"
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=PATTERNS, local_files_only=True))
        if not missing_parts(folder):
            return folder
    except LocalEntryNotFoundError:
        pass
    if offline:
        raise ModelNotAvailable(
            repo_id,
            cache,
            f"Shap-E ({repo_id}) is not in the local cache {cache} and downloads are off; fetch it once on a "
            f"connected machine with `{command}` (same HF_HOME), or download the folder and pass its path "
            "as the object model",
        )
    logger.info("downloading %s into %s", repo_id, cache)
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=PATTERNS))
    except OSError as exc:  # the hub client's network errors derive from OSError
        raise ModelNotAvailable(repo_id, cache, f"could not download {repo_id}: {exc}; try `{command}`") from exc


def missing_parts(folder: Path) -> list[str]:
    """What a ShapEPipeline folder lacks (``model_index.json`` and each part's folder)."""
    missing = [] if (folder / "model_index.json").is_file() else ["model_index.json"]
    return missing + [f"{part}/" for part in PARTS if not (folder / part).is_dir()]


def check_folder(folder: Path, model_id: str) -> None:
    missing = missing_parts(folder)
    if missing:
        raise UnknownModel(
            f"{model_id!r} is not a complete Shap-E folder in diffusers' layout: missing {', '.join(missing)} "
            f"(expected model_index.json and {', '.join(p + '/' for p in PARTS)})"
        )
    try:
        named = json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError, AttributeError):
        named = None
    if named != "ShapEPipeline":
        raise UnknownModel(f"{model_id!r}: its model_index.json names {named!r}, not ShapEPipeline (text → 3D)")


def locate(model: str, settings: EngineSettings) -> ShapEFiles:
    """The folder of object model ``model``: ``shap-e``, ``tiny-shap-e`` or a local folder."""
    if model == "shap-e":
        folder = hub_folder(settings)
        check_folder(folder, HUB_ID)
        return ShapEFiles(folder, HUB_ID, LICENCE, tiny=False)
    if model == "tiny-shap-e":
        from ..offline.configs import default_tiny_dir
        from ..offline.tiny_objects import ensure_tiny_shap_e

        folder = ensure_tiny_shap_e(Path(settings.tiny_dir) if settings.tiny_dir else default_tiny_dir())
        check_folder(folder, "builtin:tiny-shap-e")
        return ShapEFiles(folder, "builtin:tiny-shap-e", TINY_LICENCE, tiny=True)
    path = Path(os.path.expanduser(model))
    if not path.is_dir():
        raise UnknownModel(
            f"unknown object model {model!r}: not one of {', '.join(NAMES)} and not a folder on this machine"
        )
    check_folder(path, model)
    return ShapEFiles(path.resolve(), str(path.resolve()), LICENCE, tiny=False)
