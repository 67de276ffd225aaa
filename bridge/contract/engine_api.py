"""What the bridge needs from an engine, and where engines live.

``ldm3d_engine.models.ldm3d.Engine`` is an :class:`EngineLike`; so is the handle of an engine in a Ray
actor (:mod:`bridge.workers.ray_workers`); tests may hand in a small fake (for hardware we lack,
or faults). Each worker of the bridge's pool has an :class:`EngineSlot`: a :class:`LocalSlot`
(an engine on one device of this process) or a Ray slot (an engine in an actor, on any node).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ldm3d_engine.object_types import ObjectEngineLike
from ldm3d_engine.types import (
    CancelToken,
    DepthRequest,
    GenerateRequest,
    Img2ImgRequest,
    Previews,
    ResolvedRequest,
    RGBDResult,
    UpscaleRequest,
)


class EngineLike(Protocol):
    @property
    def model_id(self) -> str: ...

    @property
    def identity(self) -> str:
        """The model, its configs and the engine version, hashed (keys a show's scene library)."""
        ...

    def resolve(self, request: GenerateRequest) -> ResolvedRequest: ...

    def resolve_upscale(self, request: UpscaleRequest, source: tuple[int, int]) -> ResolvedRequest: ...

    @property
    def depth_model(self) -> str | None:
        """The depth estimator beside the model (``Intel/dpt-large``…), or None."""
        ...

    def resolve_depth(self, request: DepthRequest, size: tuple[int, int]) -> ResolvedRequest: ...

    def free_memory(self) -> None: ...

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        *,
        previews: Previews | None = None,
    ) -> RGBDResult: ...

    def generate_between(
        self,
        first: GenerateRequest,
        second: GenerateRequest,
        t: float,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        *,
        previews: Previews | None = None,
    ) -> RGBDResult:
        """A morph's frame at ``t`` (0: ``first``'s world, 1: ``second``'s)."""
        ...

    def img2img(
        self,
        request: Img2ImgRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        *,
        previews: Previews | None = None,
    ) -> RGBDResult: ...

    def upscale(
        self,
        request: UpscaleRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        *,
        previews: Previews | None = None,
    ) -> RGBDResult: ...

    def estimate_depth(
        self,
        request: DepthRequest,
        rgb: npt.NDArray[np.uint8],
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult: ...


class EngineLost(Exception):
    """The engine behind a handle went away (a Ray actor that died, a node that left the cluster).

    ``started`` tells whether the job had begun on it: a job that had not may run elsewhere."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


class EngineFailure(Exception):
    """An engine elsewhere failed on a job; the message names the error it raised there."""


class EngineSlot(Protocol):
    """Where one worker's engine lives: this process (a device) or a Ray actor.

    :meth:`open` loads it (or, after :class:`EngineLost`, gets it back: a restarted actor, a new
    one); the worker warms it up and runs jobs on what it returns: the engine and, when the bridge
    has one, the upscaler beside it."""

    @property
    def where(self) -> str:
        """For people: ``cuda:1``, ``ray worker 2 on gpu-node-3 (GPU 0)``."""
        ...

    def open(self) -> tuple[EngineLike, EngineLike | None]: ...

    def alive(self) -> bool:
        """Cheap check while idle; False sends the worker to :meth:`open` again."""
        ...

    def kill(self) -> bool:
        """Stop a stuck engine so that :meth:`open` can bring it back; False when that is impossible."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ObjectSlot(Protocol):
    """A slot that may hold a text → 3D object model beside its engine (:class:`LocalSlot`, a Ray slot)."""

    @property
    def holds_objects(self) -> bool:
        """Whether :meth:`open_objects` loads an object model (known before anything is loaded)."""
        ...

    def open_objects(self) -> ObjectEngineLike | None:
        """Load the object model (after :meth:`EngineSlot.open`, on the same device), or None: none."""
        ...


class LocalSlot:
    """An engine in this process, loaded by ``engine_factory`` (on one device) in the worker's thread;
    beside it the upscaler and the object model, when the bridge has them."""

    def __init__(
        self,
        engine_factory: Callable[[], EngineLike],
        upscaler_factory: Callable[[], EngineLike] | None = None,
        where: str = "this process",
        objects: Callable[[], ObjectEngineLike] | None = None,
    ) -> None:
        self._engine_factory = engine_factory
        self._upscaler_factory = upscaler_factory
        self._where = where
        self._objects = objects

    @property
    def where(self) -> str:
        return self._where

    @property
    def holds_objects(self) -> bool:
        return self._objects is not None

    def open(self) -> tuple[EngineLike, EngineLike | None]:
        engine = self._engine_factory()  # ldm3d_engine.load_engine lets one load run at a time
        return engine, self._upscaler_factory() if self._upscaler_factory is not None else None

    def open_objects(self) -> ObjectEngineLike | None:
        return self._objects() if self._objects is not None else None

    def alive(self) -> bool:
        return True

    def kill(self) -> bool:
        return False  # a thread stuck in a driver call cannot be stopped from Python

    def close(self) -> None:
        pass
