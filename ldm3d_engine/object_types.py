"""Text → 3D object: the request, the mesh that comes back, and what every object model offers.

Pure Python and NumPy (no torch): the bridge may import it without a model. The object models
(LN3Diff, Shap-E, their tiny offline stand-ins) live in :mod:`ldm3d_engine.objects`, each behind
:class:`ObjectEngineLike`; a world model and an object model are loaded and run apart, as the
upscaler is beside the world model.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .errors import InvalidRequest
from .types import SEED_MAX, CancelToken, OnStep


@dataclass(frozen=True)
class ObjectRequest:
    """One text → 3D object job. ``None`` means "the model's default"."""

    prompt: str
    #: -1 picks a random seed; the seed used is in the result.
    seed: int = -1
    steps: int | None = None
    guidance: float | None = None
    #: Marching-cubes grid: cells along each axis of the object's bounding cube (None: the model's).
    resolution: int | None = None


@dataclass(frozen=True)
class ObjectLimits:
    """What an object model allows and what it does unasked: enough to check a request anywhere
    (the bridge checks it before the queue, a Ray handle without the model): :func:`resolve_object`."""

    steps: int
    max_steps: int
    guidance: float
    guidance_range: tuple[float, float]
    resolution: int
    max_resolution: int
    min_resolution: int = 16
    #: Said after the guidance range in its message (Shap-E: `` (1: none)``).
    guidance_note: str = ""


def resolve_object(limits: ObjectLimits, request: ObjectRequest) -> ResolvedObjectRequest:
    """Defaults filled in and every field checked (InvalidRequest names the field); -1 draws a seed."""
    if not request.prompt.strip():
        raise InvalidRequest("prompt", "the prompt is empty; say what the object should be")
    steps = limits.steps if request.steps is None else request.steps
    if not 1 <= steps <= limits.max_steps:
        raise InvalidRequest("steps", f"steps {steps} is out of range; allowed 1..{limits.max_steps}")
    guidance = limits.guidance if request.guidance is None else float(request.guidance)
    low, high = limits.guidance_range
    if not low <= guidance <= high:  # also refuses NaN
        raise InvalidRequest(
            "guidance", f"guidance {guidance} is out of range; allowed {low}..{high}{limits.guidance_note}"
        )
    resolution = limits.resolution if request.resolution is None else request.resolution
    if not limits.min_resolution <= resolution <= limits.max_resolution:
        raise InvalidRequest(
            "resolution",
            f"resolution {resolution} is out of range; allowed {limits.min_resolution}..{limits.max_resolution}",
        )
    seed = secrets.randbelow(SEED_MAX + 1) if request.seed == -1 else request.seed
    if not 0 <= seed <= SEED_MAX:
        raise InvalidRequest("seed", f"seed {seed} is out of range; use 0..{SEED_MAX}, or -1 for a random seed")
    return ResolvedObjectRequest(request.prompt, seed, steps, guidance, resolution)


@dataclass(frozen=True)
class ResolvedObjectRequest:
    prompt: str
    seed: int
    steps: int
    guidance: float
    resolution: int


@dataclass(frozen=True)
class ObjectTimings:
    text_encoding_s: float
    denoising_s: float
    #: Latent → the model's 3D field (triplane, implicit function…).
    decoding_s: float
    #: The field sampled on the grid and marching cubes.
    meshing_s: float

    @property
    def total_s(self) -> float:
        return self.text_encoding_s + self.denoising_s + self.decoding_s + self.meshing_s


@dataclass(frozen=True)
class MeshResult:
    """A triangle mesh with vertex colours, in the object's own frame: centred on the origin, its
    largest extent about 1, ``+Y`` up, its front toward ``+Z`` as in glTF (the side the model's
    first view sees; which way a real object faces was never seen). Placed in a world, that side
    is turned toward the viewer."""

    vertices: npt.NDArray[np.float32]  # N×3
    faces: npt.NDArray[np.int32]  # M×3, counter-clockwise seen from outside
    colors: npt.NDArray[np.uint8]  # N×3, sRGB
    request: ResolvedObjectRequest
    model_id: str
    device: str
    dtype: str
    timings: ObjectTimings
    #: The model's licence, as it is stated wherever the model is named (``S-Lab License 1.0``…).
    licence: str

    @property
    def seed(self) -> int:
        return self.request.seed


class ObjectEngineLike(Protocol):
    """What the bridge needs of an object model (the engine is handed in, as a world engine is)."""

    @property
    def model_id(self) -> str: ...

    @property
    def licence(self) -> str: ...

    @property
    def limits(self) -> ObjectLimits:
        """What the model allows (checked by :func:`resolve_object`, here or in another process)."""
        ...

    def resolve_object(self, request: ObjectRequest) -> ResolvedObjectRequest:
        """Defaults filled in, every field checked: InvalidRequest names the one that is wrong."""
        ...

    def generate_object(
        self, request: ObjectRequest, on_step: OnStep | None = None, cancel: CancelToken | None = None
    ) -> MeshResult:
        """Text → mesh. Cancelled within one step of ``cancel.cancel()``; OutOfMemory when the device is full."""
        ...
