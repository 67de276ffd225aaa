"""The object slot of the TouchDesigner extension, in plain Python (no TouchDesigner imports), tested
outside TouchDesigner: which object shows, and where.

``/ldm3d/object/ready <job> <obj path> <glb path> <yaw> <pitch> <distance> <size> <turn>`` from the
bridge: the object last announced is shown in the world (one slot), whatever its id (a show's cue
announces its scene's object, as old as its render, each time it fires); a message with too few
arguments or arguments of the wrong type is ignored. Worlds, cues, morphs
and bridge restarts leave the object where it is; ``/ldm3d/object/clear`` (or ``ClearObject()`` on the
component) empties the slot.

Where it stands (bridge/placement.py, the same frame as the sphere: the viewer at the origin,
+Y up, yaw 0 / pitch 0 along -Z): the object's own mesh (centred, largest extent about 1, its front
toward +Z) is scaled by ``size`` × the sphere's base radius, turned about +Y by ``turn - yaw`` degrees
(its front toward the viewer, then ``turn`` more) and moved ``distance`` × the base radius toward
``yaw``/``pitch``. On the Geometry COMP that is Transform Order "Scale Rotate Translate" (``srt``:
T * R * S * P), Rotate Y = ``turn - yaw``, Uniform Scale = ``size`` × Baseradius, Translate the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: The Geometry COMP's Xform page menus the transform below assumes (Derivative's "COMP Xform Page").
TRANSFORM_ORDER = "srt"  # Scale Rotate Translate: T * R * S * position
ROTATE_ORDER = "xyz"  # only ry is ever set, so any order gives the same matrix


@dataclass(frozen=True)
class ObjectReady:
    """One ``/ldm3d/object/ready``: the job, its meshes, and where it stands."""

    job: str
    obj: str
    glb: str
    yaw: float
    pitch: float
    distance: float
    size: float
    turn: float


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def parse_object_ready(args: list[Any] | tuple[Any, ...]) -> ObjectReady | None:
    """The message's arguments as an :class:`ObjectReady`, or None when they are not what the bridge
    sends (fewer than eight, an id or path that is not a non-empty string, a placement value that is
    not a finite number). Arguments after the eighth are left for later versions."""
    if len(args) < 8:
        return None
    job, obj, glb = args[0], args[1], args[2]
    if not all(isinstance(text, str) and text for text in (job, obj, glb)):
        return None
    numbers = [_number(value) for value in args[3:8]]
    if any(number is None for number in numbers):
        return None
    yaw, pitch, distance, size, turn = (float(n) for n in numbers if n is not None)
    return ObjectReady(str(job), str(obj), str(glb), yaw, pitch, distance, size, turn)


def object_transform(
    yaw: float, pitch: float, distance: float, size: float, turn: float, base_radius: float
) -> dict[str, float]:
    """The Geometry COMP's Xform parameters (with :data:`TRANSFORM_ORDER` and :data:`ROTATE_ORDER`)
    that place an object as ``Placement.matrix(base_radius)`` does."""
    y, p = math.radians(yaw), math.radians(pitch)
    reach = distance * base_radius
    return {
        "tx": math.cos(p) * math.sin(y) * reach,
        "ty": math.sin(p) * reach,
        "tz": -math.cos(p) * math.cos(y) * reach,
        "rx": 0.0,
        "ry": turn - yaw,
        "rz": 0.0,
        "scale": size * base_radius,
    }


class ObjectSlot:
    """The one object shown: the last announced, until another or a clear."""

    def __init__(self) -> None:
        self.shown: ObjectReady | None = None
        self.ignored = 0  # messages that were not an object/ready the slot could use

    def on_ready(self, ready: ObjectReady | None) -> bool:
        """True when ``ready`` is to be shown: point the slot at its mesh and place it."""
        if ready is None:
            self.ignored += 1
            return False
        # The last announced wins, whatever its id: the bridge announces an object job once, when it is
        # made, and a cue's object each time the cue fires (its scene's id is as old as its render).
        self.shown = ready
        return True

    def clear(self) -> None:
        self.shown = None

    def transform(self, base_radius: float) -> dict[str, float] | None:
        shown = self.shown
        if shown is None:
            return None
        return object_transform(shown.yaw, shown.pitch, shown.distance, shown.size, shown.turn, base_radius)
