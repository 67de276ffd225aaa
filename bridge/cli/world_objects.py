"""Objects named on the command line (``preview``/``export-mesh --object``): found, read and placed.

An object is a folder ``<output>/objects/<job id>/`` as :class:`bridge.output.meshes.ObjectWriter`
writes it: ``mesh.glb`` (read back by :func:`bridge.output.meshes.read_glb`) and ``meta.json``, whose
``placement`` says where it stands (:func:`bridge.placement.placement_of_meta`). A missing
or unreadable one is :class:`bridge.render.objects.ObjectError` naming it (one line, exit status 1).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bridge.output.meshes import OBJECTS_FOLDER, BadGlb, read_glb
from bridge.placement import placement_of_meta
from bridge.render.objects import ObjectError, WorldObject

logger = logging.getLogger(__name__)

#: How many folders above a job's folder are searched for ``objects/<id>``: ``<output>/<job id>``,
#: ``<output>/previews/<slot>`` and ``<output>/morphs/<morph id>/<frame>``.
SEARCH_DEPTH = 3


def find_object(value: str, job_dir: Path) -> Path:
    """The folder of the object ``value`` names: a folder path, or an object job id looked up in
    ``objects/`` of the output folder the job lies in."""
    path = Path(value)
    if path.is_dir():
        return path
    if "/" in value or "\\" in value or value in ("", ".", ".."):
        raise ObjectError(f"object {value}: no such folder (give an object's folder or its job id)")
    roots = list(job_dir.resolve().parents)[:SEARCH_DEPTH]
    for root in roots:
        candidate = root / OBJECTS_FOLDER / value
        if candidate.is_dir():
            return candidate
    looked = ", ".join(str(root / OBJECTS_FOLDER) for root in roots)
    raise ObjectError(f"object {value}: no such folder, and no object of that id in {looked}")


def load_object(folder: Path) -> WorldObject:
    """An object folder's mesh and placement (ObjectError naming the file that is missing or bad)."""
    glb, meta_path = folder / "mesh.glb", folder / "meta.json"
    if not glb.is_file():
        raise ObjectError(f"{glb} does not exist; give an object's folder (objects/<job id>/ with mesh.glb)")
    try:
        meta: Any = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ObjectError(f"{meta_path} does not exist; it holds the object's placement") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ObjectError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise ObjectError(f"{meta_path}: not a JSON object")
    try:
        vertices, faces, colors = read_glb(glb)
    except BadGlb as exc:
        raise ObjectError(str(exc)) from None
    except OSError as exc:
        raise ObjectError(f"{glb}: unreadable ({exc.strerror or exc})") from None
    placement = placement_of_meta(meta)
    logger.debug("object %s: %d vertices, %d faces, at %s", folder.name, len(vertices), len(faces), placement)
    return WorldObject(folder.name, folder, vertices, faces, colors, placement)


def load_objects(values: Iterable[str], job_dir: Path) -> list[WorldObject]:
    """Each named object (a folder or a job id, see :func:`find_object`), read."""
    return [load_object(find_object(value, job_dir)) for value in values]
