"""Text → 3D object: the request, the mesh that comes back, and what every object model offers.

Pure Python and NumPy (no torch): the bridge may import it without a model. The object models
(LN3Diff, Shap-E, their tiny offline stand-ins) live in :mod:`ldm3d_engine.objects`, each behind
:class:`ObjectEngineLike`; a world model and an object model are loaded and run apart, as the
upscaler is beside the world model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from .types import CancelToken, OnStep


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

    def resolve_object(self, request: ObjectRequest) -> ResolvedObjectRequest:
        """Defaults filled in, every field checked: InvalidRequest names the one that is wrong."""
        ...

    def generate_object(
        self, request: ObjectRequest, on_step: OnStep | None = None, cancel: CancelToken | None = None
    ) -> MeshResult:
        """Text → mesh. Cancelled within one step of ``cancel.cancel()``; OutOfMemory when the device is full."""
        ...
