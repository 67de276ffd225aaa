"""Text → 3D objects in the world: found, read and drawn by the headless preview (and exported by
``export-mesh``, :mod:`bridge.render.mesh`).

An object is a folder ``<output>/objects/<job id>/`` as :class:`bridge.output.meshes.ObjectWriter`
writes it: ``mesh.glb`` (read back by :func:`bridge.output.meshes.read_glb`) and ``meta.json``,
whose ``placement`` says where it stands (:func:`bridge.contract.placement.placement_of_meta`).
It is drawn with ``Placement.matrix(base_radius)``, the renderer's sphere base radius, in the
same pass as the sphere: depth-tested, unlit vertex colour (``glsl/object.vert``/``object.frag``),
as the sphere is unlit texture.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.contract.placement import Placement, placement_of_meta
from bridge.output.meshes import OBJECTS_FOLDER, BadGlb, read_glb
from bridge.render.preview import PreviewError, glsl_source

logger = logging.getLogger(__name__)

#: How many folders above a job's folder are searched for ``objects/<id>``: ``<output>/<job id>``,
#: ``<output>/previews/<slot>`` and ``<output>/morphs/<morph id>/<frame>``.
_SEARCH_DEPTH = 3


class ObjectError(PreviewError):
    """An object named for the preview or the export is missing or unreadable; the message names it."""


@dataclass(frozen=True)
class WorldObject:
    """One object's mesh (its own frame) and where it stands."""

    name: str  # the folder's name: the object's job id
    folder: Path
    vertices: npt.NDArray[np.float32]  # N×3
    faces: npt.NDArray[np.uint32]  # M×3
    colors: npt.NDArray[np.uint8]  # N×3, sRGB
    placement: Placement


def find_object(value: str, job_dir: Path) -> Path:
    """The folder of the object ``value`` names: a folder path, or an object job id looked up in
    ``objects/`` of the output folder the job lies in."""
    path = Path(value)
    if path.is_dir():
        return path
    if "/" in value or "\\" in value or value in ("", ".", ".."):
        raise ObjectError(f"object {value}: no such folder (give an object's folder or its job id)")
    roots = list(job_dir.resolve().parents)[:_SEARCH_DEPTH]
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


class ObjectDrawer:
    """The objects' buffers and program in one renderer's GL context; drawn after the sphere."""

    def __init__(self, ctx: Any, objects: Iterable[WorldObject], base_radius: float) -> None:
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=glsl_source("object.vert"), fragment_shader=glsl_source("object.frag"))
        self._draws: list[tuple[Any, npt.NDArray[np.float32], list[Any]]] = []
        for obj in objects:
            if not len(obj.faces):
                logger.warning("object %s has no triangles; nothing to draw", obj.name)
                continue
            vertices = np.concatenate([obj.vertices, obj.colors.astype(np.float32) / 255.0], axis=1)
            vbo = ctx.buffer(np.ascontiguousarray(vertices, dtype=np.float32).tobytes())
            ibo = ctx.buffer(np.ascontiguousarray(obj.faces, dtype=np.uint32).tobytes())
            vao = ctx.vertex_array(self.program, [(vbo, "3f 3f", "in_position", "in_color")], ibo, index_element_size=4)
            model = obj.placement.matrix(base_radius).astype(np.float32)
            self._draws.append((vao, model, [vao, vbo, ibo]))

    def draw(self, view_proj: npt.NDArray[np.float32]) -> None:
        """Draw every object with ``view_proj`` (row-major, as :meth:`Camera.view_proj` gives it) into
        the current framebuffer; the caller has depth testing on."""
        import moderngl

        if not self._draws:
            return
        self.program["uViewProj"].write(np.ascontiguousarray(view_proj.T).tobytes())
        for vao, model, _ in self._draws:
            self.program["uModel"].write(np.ascontiguousarray(model.T).tobytes())
            vao.render(moderngl.TRIANGLES)

    def release(self) -> None:
        for _, _, resources in self._draws:
            for resource in resources:
                resource.release()
        self._draws = []
        self.program.release()
