"""Where an object stands in the world: yaw, pitch, distance, size and turn. Pure (NumPy only).

The world is the displaced sphere of ``bridge/render/glsl/ldm3d_displace.glsl``: the viewer at
the origin, +Y up, yaw 0 / pitch 0 straight ahead (-Z, the middle of the panorama), yaw growing
to the viewer's right, pitch upward. An object's mesh comes in its own frame (centred on the
origin, largest extent about 1, +Y up, its front toward +Z as in glTF: docs/objects.md). Placed, it is

* scaled by ``size`` × the sphere's base radius (its largest extent, in the world),
* turned about its own vertical axis so that its front faces the viewer, then by ``turn``
  degrees more (positive turns it to its left, counter-clockwise seen from above),
* moved ``distance`` × the base radius from the viewer, toward ``yaw``/``pitch``.

Distances and sizes are fractions of the base radius, so the same placement fits a
TouchDesigner sphere of radius 10 and the reference renderer's radius 1. The matrix is
the one every renderer uses (the headless preview, ``export-mesh``, the page's viewer and
TouchDesigner's Geometry COMP compute the same numbers; docs/objects.md gives them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.errors import BadArguments

#: option → (lowest, highest) allowed; the defaults are :class:`Placement`'s.
PLACEMENT_RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-360.0, 360.0),
    "pitch": (-90.0, 90.0),
    "distance": (0.05, 1.5),  # the sphere reaches 1.5 × its base radius at strength 1, depth 0
    "size": (0.01, 2.0),
    "turn": (-360.0, 360.0),
}


@dataclass(frozen=True)
class Placement:
    """An object's place in the world (degrees, and fractions of the sphere's base radius)."""

    yaw: float = 0.0
    pitch: float = 0.0
    distance: float = 0.5
    size: float = 0.25
    turn: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def args(self) -> list[float]:
        """The OSC arguments, in the order of ``/ldm3d/object/ready`` (yaw pitch distance size turn)."""
        return [self.yaw, self.pitch, self.distance, self.size, self.turn]

    def position(self, base_radius: float = 1.0) -> npt.NDArray[np.float64]:
        """The object's centre in the world."""
        yaw, pitch = math.radians(self.yaw), math.radians(self.pitch)
        direction = np.array([math.cos(pitch) * math.sin(yaw), math.sin(pitch), -math.cos(pitch) * math.cos(yaw)])
        return direction * self.distance * base_radius

    def rotation_y(self) -> float:
        """Degrees about +Y (right-handed: counter-clockwise seen from above) that turn the object's
        front (its own +Z) toward the viewer, plus ``turn``."""
        return self.turn - self.yaw

    def matrix(self, base_radius: float = 1.0) -> npt.NDArray[np.float64]:
        """4×4 column-vector matrix (``world = M @ [x, y, z, 1]``): scale, turn about +Y, move."""
        angle = math.radians(self.rotation_y())
        c, s = math.cos(angle), math.sin(angle)
        scale = self.size * base_radius
        m = np.identity(4)
        m[:3, :3] = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]) * scale
        m[:3, 3] = self.position(base_radius)
        return m


#: Where an object stands when its request says nothing.
DEFAULT_PLACEMENT = Placement()


def placement_from(values: dict[str, Any], base: Placement | None = None) -> Placement:
    """A placement from option values (missing ones from ``base``, else the defaults); BadArguments
    names the value that is out of range."""
    fields = (base or Placement()).as_dict()
    for key, (low, high) in PLACEMENT_RANGES.items():
        if key not in values or values[key] is None:
            continue
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BadArguments(f"object {key} must be a finite number, got {value!r}")
        if not low <= value <= high:
            raise BadArguments(f"object {key} {value:g} is out of range; allowed {low:g}..{high:g}")
        fields[key] = float(value)
    return Placement(**fields)


def placement_of_meta(meta: dict[str, Any]) -> Placement:
    """The placement an object's ``meta.json`` records (the defaults for objects written before it did)."""
    recorded = meta.get("placement")
    if not isinstance(recorded, dict):
        return Placement()
    try:
        return placement_from(recorded)
    except BadArguments:
        return Placement()


def transform_points(points: npt.NDArray[Any], matrix: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """N×3 points through a 4×4 matrix (as :meth:`Placement.matrix` gives)."""
    p = np.asarray(points, dtype=np.float64)
    return (p @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)
