"""Finding LN3Diff's files: the hub file, the Hugging Face cache, a local file or folder, offline.

The weights are one file of ``yslan/LN3Diff`` (:data:`WEIGHTS_FILE`, 4.1 GB); only that file is
fetched, never the 27 GB repository. The text encoder is ``openai/clip-vit-large-patch14``
(config, tokenizer, weights). As for the world models: the cache is looked in first; a download
happens only when the settings allow it; offline, a missing file raises ModelNotAvailable naming
the file and the ``hf download`` command that fetches it.

A model name is ``ln3diff``, ``tiny-ln3diff`` (built here on first use), a ``.safetensors`` file
(LN3Diff's, under any name), or a folder holding one of: the hub's layout (:data:`WEIGHTS_FILE`
inside it) or ``ln3diff.safetensors``; a folder may also hold ``text_encoder/`` + ``tokenizer/``
(else CLIP comes from the cache) and ``ln3diff_config.json`` (else the real sizes).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelNotAvailable, UnknownModel
from ..types import EngineSettings
from .ln3diff_config import (
    CLIP_ID,
    CONFIG_FILE,
    HUB_ID,
    LICENCE,
    LOCAL_WEIGHTS,
    REAL,
    TINY_LICENCE,
    WEIGHTS_FILE,
    LN3DiffConfig,
)

logger = logging.getLogger(__name__)

OBJECT_MODELS = ("ln3diff", "tiny-ln3diff")
CLIP_PATTERNS = [
    "config.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "model.safetensors",
]


@dataclass(frozen=True)
class LN3DiffFiles:
    weights: Path
    #: A folder with the CLIP text encoder (``config.json`` + weights) and its tokenizer.
    text_encoder: Path
    tokenizer: Path
    config: LN3DiffConfig
    #: What the user would call it: ``yslan/LN3Diff``, ``builtin:tiny-ln3diff`` or the path.
    model_id: str
    licence: str


def _cache_and_offline(settings: EngineSettings) -> tuple[str, bool]:
    from huggingface_hub import constants

    return str(settings.cache_dir or constants.HF_HUB_CACHE), bool(settings.offline or constants.HF_HUB_OFFLINE)


def hub_weights(settings: EngineSettings, repo_id: str = HUB_ID, filename: str = WEIGHTS_FILE) -> Path:
    """The weights file from the cache, or downloaded when allowed."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache, offline = _cache_and_offline(settings)
    command = f"hf download {repo_id} {filename}"
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache, local_files_only=True))
    except LocalEntryNotFoundError:
        if offline:
            raise ModelNotAvailable(
                repo_id,
                cache,
                f"LN3Diff's weights {filename} (from {repo_id}, 4.1 GB) are not in the local cache {cache} and "
                f"downloads are off; fetch that file once on a connected machine with `{command}` (same HF_HOME), "
                "or pass the downloaded .safetensors file as the object model",
            ) from None
    logger.info("downloading %s from %s into %s (4.1 GB)", filename, repo_id, cache)
    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache))
    except OSError as exc:
        raise ModelNotAvailable(
            repo_id, cache, f"could not download {filename} from {repo_id}: {exc}; try `{command}`"
        ) from exc


def hub_clip(settings: EngineSettings, repo_id: str = CLIP_ID) -> Path:
    """The CLIP text encoder's folder (snapshot of the files it needs)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache, offline = _cache_and_offline(settings)
    include = " ".join(f'"{p}"' for p in CLIP_PATTERNS)
    command = f"hf download {repo_id} --include {include}"
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=CLIP_PATTERNS, local_files_only=True))
        if (folder / "model.safetensors").is_file():
            return folder
    except LocalEntryNotFoundError:
        pass
    if offline:
        raise ModelNotAvailable(
            repo_id,
            cache,
            f"LN3Diff's text encoder {repo_id} is not in the local cache {cache} and downloads are off; fetch it "
            f"once with `{command}` (same HF_HOME)",
        )
    logger.info("downloading %s into %s", repo_id, cache)
    try:
        return Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=CLIP_PATTERNS))
    except OSError as exc:
        raise ModelNotAvailable(repo_id, cache, f"could not download {repo_id}: {exc}; try `{command}`") from exc


def _folder_weights(folder: Path) -> Path:
    for candidate in (folder / LOCAL_WEIGHTS, folder / WEIGHTS_FILE):
        if candidate.is_file():
            return candidate
    raise UnknownModel(
        f"{str(folder)!r} holds no LN3Diff weights: expected {LOCAL_WEIGHTS} or {WEIGHTS_FILE} inside it"
    )


def locate(model: str, settings: EngineSettings) -> LN3DiffFiles:
    """The files of object model ``model`` (see the module's doc)."""
    if model == "ln3diff":
        weights = hub_weights(settings)  # the big one first: offline, its error is the one to read
        clip = hub_clip(settings)
        return LN3DiffFiles(weights, clip, clip, REAL, HUB_ID, LICENCE)
    if model == "tiny-ln3diff":
        from .tiny import ensure_tiny_ln3diff

        folder = ensure_tiny_ln3diff(settings.tiny_dir)
        return _from_folder(folder, "builtin:tiny-ln3diff", settings, TINY_LICENCE)
    path = Path(os.path.expanduser(model))
    if path.is_file() and path.suffix == ".safetensors":
        clip = hub_clip(settings)
        return LN3DiffFiles(path.resolve(), clip, clip, REAL, str(path.resolve()), LICENCE)
    if path.is_dir():
        return _from_folder(path.resolve(), str(path.resolve()), settings, LICENCE)
    raise UnknownModel(
        f"unknown object model {model!r}: not one of {', '.join(OBJECT_MODELS)}, not a .safetensors file and not "
        "a folder on this machine"
    )


def _from_folder(folder: Path, model_id: str, settings: EngineSettings, licence: str) -> LN3DiffFiles:
    weights = _folder_weights(folder)
    config_file = folder / CONFIG_FILE
    try:
        config = LN3DiffConfig.from_file(config_file) if config_file.is_file() else REAL
    except ValueError as exc:
        raise UnknownModel(f"{config_file} is not an LN3Diff config: {exc}") from exc
    if (folder / "text_encoder" / "config.json").is_file():
        return LN3DiffFiles(weights, folder / "text_encoder", folder / "tokenizer", config, model_id, licence)
    clip = hub_clip(settings)
    return LN3DiffFiles(weights, clip, clip, config, model_id, licence)
