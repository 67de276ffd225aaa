"""Text → 3D objects drawn in the world by the headless preview (and exported by ``export-mesh``,
:mod:`bridge.render.mesh`).

An object here is plain data: its mesh in its own frame (vertices, triangles, sRGB vertex
colours) and its :class:`bridge.placement.Placement` (the command line reads both from an object's
folder, ``bridge/cli/world_objects.py``).
It is drawn with that matrix at the renderer's sphere base radius, in the same pass as the sphere:
depth-tested, unlit vertex colour (``glsl/object.vert``/``object.frag``), as the sphere is unlit
texture.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.placement import Placement
from bridge.render.preview import PreviewError, SphereRenderer, glsl_source

logger = logging.getLogger(__name__)


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


def draw_objects(renderer: SphereRenderer, objects: Iterable[WorldObject]) -> None:
    """Draw these objects in every later view of ``renderer`` (all its views: flat, stereo, fisheye),
    each at its placement scaled by the renderer's base radius."""
    with renderer.ctx:
        renderer.add_layer(ObjectDrawer(renderer.ctx, objects, renderer.base_radius))
