"""Objects for the operator page: an object's ``mesh.glb`` at a content-addressed URL, and where it stands.

An object job (``/ldm3d/object``) writes ``objects/<job id>/`` in the output folder with ``mesh.glb`` and
``meta.json`` (:mod:`bridge.output.meshes`) and ends in ``/ldm3d/object/ready``; a show's cue with an object
holds it in its scene, ``scenes/<scene id>/object/``, and announces it the same way after its world
(``/ldm3d/object/clear`` when a world without one follows). The page's event for ``/ldm3d/object/ready``
carries ``"object"``: what :meth:`ObjectFolders.offer` gives; a page's hello carries the object on the dome
the same way (the one last announced, none after a clear; before either since start-up, the newest in
``objects/``), so a page that connects later shows it too (the world holds one object, as TouchDesigner's
slot does)::

    {"job_id": "20261207-101500-000-0001", "glb": "/t/<key>.glb", "prompt": "a red lantern", "seed": 7,
     "vertices": 812, "faces": 1620, "created": "…",
     "placement": {"yaw": -30.0, "pitch": 0.0, "distance": 0.7, "size": 0.25, "turn": 0.0}}

The GLB is served as it is (``model/gltf-binary``, immutable) by the texture store
(:class:`~bridge.web.textures.TextureStore`, kind ``glb``). Nothing an event or a request names reaches a
path unchecked (the path in the event's arguments is never used): the id must be a job id
(:data:`JOB_ID_RE`; scenes are named by job ids too), the file is built from it, and, resolved (links
followed), must lie inside ``<output>/objects/`` (or, for a scene's, ``<output>/scenes/``); anything else
is offered nothing. Reads files: call off the event loop.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bridge.errors import BadArguments, UnknownJob
from bridge.osc.codec import Arg
from bridge.output.job_ids import JOB_ID_RE
from bridge.output.meshes import OBJECTS_FOLDER, SCENE_OBJECT_FOLDER
from bridge.output.writer import SCENES_FOLDER
from bridge.placement import PLACEMENT_RANGES, Placement, placement_from, placement_of_meta
from bridge.web.textures import TextureStore

logger = logging.getLogger(__name__)

#: An object's mesh in its folder, the one file of it the page is served.
GLB = "mesh.glb"
#: What the page gets of ``meta.json`` besides the placement.
META_KEYS = ("prompt", "seed", "vertices", "faces", "created")


class ObjectFolders:
    """The objects of one output folder, as the page sees them. Thread-safe (reads only)."""

    def __init__(self, output: Path, textures: TextureStore) -> None:
        self.root = Path(output).resolve() / OBJECTS_FOLDER
        self.scenes = Path(output).resolve() / SCENES_FOLDER
        self._textures = textures

    def glb(self, job_id: str) -> Path:
        """The ``mesh.glb`` of object job ``job_id`` (else of the object in scene ``job_id``), resolved;
        BadArguments for an id that is not a job id, UnknownJob when there is no such file inside the
        objects folder (the scenes folder): never made, pruned, or a link out of it."""
        if not JOB_ID_RE.match(job_id):
            raise BadArguments(f"{job_id!r} is not an object id (a job id such as 20261207-101500-000-0001)")
        for root, folder in (
            (self.root, self.root / job_id),
            (self.scenes, self.scenes / job_id / SCENE_OBJECT_FOLDER),
        ):
            path = (folder / GLB).resolve()
            if path.is_relative_to(root) and path.is_file():
                return path
        raise UnknownJob(f"no object {job_id} in {self.root} or {self.scenes} (never made, or pruned)")

    def offer(self, job_id: str, placement: Placement | None = None) -> dict[str, Any]:
        """The object for the page: its GLB's URL, its placement (``placement``, else its meta.json's) and a
        few facts from its meta.json. BadArguments, UnknownJob as :meth:`glb`."""
        path = self.glb(job_id)
        meta = _meta(path.parent)
        url = self._textures.url(path, "glb")
        where = placement or placement_of_meta(meta)
        return {"job_id": job_id, "glb": url, **{k: meta.get(k) for k in META_KEYS}, "placement": where.as_dict()}

    def offer_ready(self, args: tuple[Arg, ...]) -> dict[str, Any] | None:
        """The object of ``/ldm3d/object/ready``'s arguments (id, obj, glb, yaw, pitch, distance, size, turn),
        placed where the event says; None when it cannot be offered (logged)."""
        job_id = str(args[0]) if args else ""
        try:
            return self.offer(job_id, _placement(args[3:]))
        except (BadArguments, UnknownJob, OSError) as exc:
            logger.warning("object %r not offered to the pages: %s", job_id, exc)
            return None

    def newest(self) -> str | None:
        """The id of the newest object job whose GLB :meth:`glb` would serve (ids sort by time), or None."""
        try:
            ids = sorted((e.name for e in self.root.iterdir() if JOB_ID_RE.match(e.name)), reverse=True)
        except OSError:
            return None
        for job_id in ids:
            try:
                if self.glb(job_id).is_relative_to(self.root):
                    return job_id
            except UnknownJob:
                continue
        return None

    def offer_newest(self) -> dict[str, Any] | None:
        """The newest object in ``objects/`` for a page's hello before any object was announced or
        cleared since start-up (the hub keeps the one last announced after that); None when there is none."""
        chosen = self.newest()
        if chosen is None:
            return None
        try:
            return self.offer(chosen)
        except (BadArguments, UnknownJob, OSError) as exc:  # pruned meanwhile
            logger.debug("object %s not offered to a new page: %s", chosen, exc)
            return None


def _placement(values: tuple[Arg, ...]) -> Placement | None:
    """The placement of ``/ldm3d/object/ready``'s last five arguments; None when they are not one."""
    if len(values) != len(PLACEMENT_RANGES):
        return None
    try:
        return placement_from(dict(zip(PLACEMENT_RANGES, values, strict=True)))
    except BadArguments:
        return None


def _meta(folder: Path) -> dict[str, Any]:
    """An object's meta.json, or {} when it does not read as a JSON object."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}
