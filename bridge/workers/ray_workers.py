"""Workers on a Ray cluster: each worker's engine lives in a Ray actor, one GPU each (or CPU).

The bridge's process is the Ray driver. It keeps the queue, the writer and every client; an
actor (:class:`ldm3d_engine.host.EngineHost` under ``ray.remote``) loads the model (and the
upscaler and object model, when the bridge has them) on its node, runs one job at a time and
streams it back as a Ray generator: ``started``, each step, then the result's arrays (never
files: the shared folder is on the bridge's machine). A
cancel is a second call into the same actor (a threaded actor), so it lands within a step.

Faults: an actor that dies is restarted by Ray (``max_restarts=-1``; tasks are never retried
by Ray, the bridge decides); one that is gone for good is replaced by a new actor. A cluster
that cannot be reached makes every call fail, each worker keeps trying to come back, and the
bridge goes on answering OSC meanwhile (state ``restarting``).

Ray is imported only here, and only when ``--ray`` is set (the ``[ray]`` extra).

Longer than our ~350-line rule on purpose: everything that knows of Ray (the slot, the actor's
handle, placement and restarts) is here, so Ray is imported in this one module only.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from bridge.contract.engine_api import EngineFailure, EngineLike, EngineLost
from bridge.errors import BridgeError
from ldm3d_engine.errors import Cancelled, EngineError, InvalidRequest, OutOfMemory, UnsafeContent
from ldm3d_engine.object_types import MeshResult, ObjectLimits, ObjectRequest, ResolvedObjectRequest, resolve_object
from ldm3d_engine.types import (
    CancelToken,
    DepthRequest,
    GenerateRequest,
    Img2ImgRequest,
    OnStep,
    Previews,
    ResolvedRequest,
    RGBDResult,
    UpscaleRequest,
)
from ldm3d_engine.validation import resolve_depth, resolve_text, resolve_upscale

logger = logging.getLogger(__name__)

#: Ray's switch for clusters; "0" keeps every Ray process of this machine on 127.0.0.1.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: How often a waiting call looks at its job's cancel token.
POLL_S = 0.05
#: How long a health check or a small call may take before the actor counts as gone.
CALL_TIMEOUT_S = 10.0


class RayUnavailable(BridgeError):
    """Ray is not installed, or the cluster cannot be reached."""


def import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RayUnavailable(
            "--ray needs Ray: pip install 'ldm3d-bridge[ray]' (the same version on the bridge's machine "
            "and on every node)"
        ) from None
    return ray


class RayCluster:
    """The bridge's connection to Ray: ``local`` (a Ray of this process's own, on loopback), ``auto``
    (the cluster this machine belongs to: ``ray start --head`` here), ``head:6379`` (the cluster
    whose head that is) or ``ray://head:10001`` (Ray Client).

    If Ray is already initialised in this process (an application embedding the bridge, the
    tests), that connection is used and left open."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._owned = False
        if address == "local" and "ray" not in sys.modules:
            # A Ray of our own stays on loopback: Ray reads this (its "no clusters" switch, on by
            # default on macOS and Windows) when imported, and then gives every process 127.0.0.1.
            os.environ.setdefault(LOOPBACK_ONLY, "0")
        self.ray = import_ray()

    def connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            logger.info("using the Ray connection this process already has")
            return
        kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
        if self.address == "local":
            kwargs["include_dashboard"] = False
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            hint = " (start one with `ray start --head`, or use --ray local)" if self.address == "auto" else ""
            raise RayUnavailable(f"cannot reach the Ray cluster at {self.address!r}: {exc}{hint}") from None
        self._owned = True
        logger.info("connected to Ray (%s): %s", self.address, ray.cluster_resources())

    def close(self) -> None:
        """Stop a Ray of our own. A connection to a cluster is left open: ``ray.shutdown()`` (and
        Ray's exit handler) after the cluster went away end the process with status 1, so
        ``serve`` leaves with ``os._exit`` once the bridge has stopped."""
        if self._owned and self.address == "local":
            self.ray.shutdown()
        self._owned = False


class RaySlot:
    """One worker's actor. See :class:`bridge.contract.engine_api.EngineSlot`."""

    def __init__(
        self,
        ray: ModuleType,
        index: int,
        build: Callable[[], Any],
        build_upscaler: Callable[[], Any] | None,
        gpus: float,
        start_timeout_s: float,
        build_objects: Callable[[], Any] | None = None,
    ) -> None:
        self._ray = ray
        self.index = index
        self._build = build
        self._build_upscaler = build_upscaler
        self._build_objects = build_objects
        self._objects: RayObjects | None = None
        self._gpus = gpus
        self._start_timeout_s = start_timeout_s
        self.actor: Any = None
        self._place = ""
        self._closed = False

    @property
    def where(self) -> str:
        return f"ray worker {self.index}{self._place}"

    @property
    def holds_objects(self) -> bool:
        return self._build_objects is not None

    def open(self) -> tuple[EngineLike, EngineLike | None]:
        ray = self._ray
        from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, RayError

        info = None
        if self._closed:
            raise EngineLost(f"{self.where} is closed", started=False)
        if self.actor is not None:  # after a loss: Ray restarts the actor, or it is gone for good
            try:
                info = ray.get(self.actor.describe.remote(), timeout=self._start_timeout_s)
            except ActorDiedError as exc:
                if self._closed:
                    raise EngineLost(f"{self.where} is closed", started=False) from None
                logger.warning("%s is gone for good (%s); starting a new actor", self.where, _first_line(exc))
                self.actor = None
            except (RayError, ConnectionError) as exc:
                raise EngineLost(f"{self.where} is not back yet: {_first_line(exc)}", started=False) from None
        if self.actor is None:
            self.actor = self._new_actor()
            try:
                info = ray.get(self.actor.describe.remote(), timeout=self._start_timeout_s)
            except GetTimeoutError:
                self._drop_actor()  # not placed (or still loading): it stops waiting for a node
                raise EngineFailure(
                    f"no Ray node took {self.where} within {self._start_timeout_s:g} s (it needs "
                    f"{self._gpus:g} GPU; the cluster has {ray.cluster_resources()}): add a node, use fewer "
                    "--ray-workers, or raise worker_start_timeout_s"
                ) from None
            except RayActorError as exc:
                self.actor = None
                if self._closed:
                    raise EngineLost(f"{self.where} is closed", started=False) from None
                raise EngineFailure(f"{self.where} could not load the model: {_cause(exc)}") from None
            except (RayError, ConnectionError) as exc:
                raise EngineLost(f"{self.where} could not be started: {_first_line(exc)}", started=False) from None
        assert info is not None
        gpus = f", GPU {info['gpus']}" if info.get("gpus") else ""
        self._place = f" on {info['host']} (pid {info['pid']}{gpus})"
        engine = RayEngine(ray, self.actor, "engine", info["engine"])
        upscaler = RayEngine(ray, self.actor, "upscaler", info["upscaler"]) if "upscaler" in info else None
        self._objects = RayObjects(ray, self.actor, info["objects"]) if "objects" in info else None
        return engine, upscaler

    def open_objects(self) -> RayObjects | None:
        """The object model the actor loaded beside its engine (after :meth:`open`), or None."""
        return self._objects

    def _new_actor(self) -> Any:
        from ldm3d_engine.host import EngineHost

        remote = self._ray.remote(EngineHost)
        resources: dict[str, float] = {"num_gpus": self._gpus, "num_cpus": 1}
        # Threaded: a cancel or a health check gets in while a job runs. Ray restarts a dead actor
        # (loading its model again); it never runs a task twice on its own.
        return remote.options(max_restarts=-1, max_task_retries=0, max_concurrency=4, **resources).remote(
            self._build, self._build_upscaler, self._build_objects
        )

    def alive(self) -> bool:
        if self.actor is None:
            return False
        self._ray.get(self.actor.ping.remote(), timeout=CALL_TIMEOUT_S)
        return True

    def kill(self) -> bool:
        if self.actor is None:
            return False
        self._ray.kill(self.actor, no_restart=False)  # Ray starts it again; the worker waits for it
        return True

    def close(self) -> None:
        """Stop the actor for good (a worker waiting in :meth:`open` stops waiting)."""
        self._closed = True
        self._drop_actor()

    def _drop_actor(self) -> None:
        if self.actor is not None:
            from ray.exceptions import RayError

            try:
                self._ray.kill(self.actor, no_restart=True)
            except (RayError, ConnectionError, ValueError) as exc:
                logger.warning("could not stop %s: %s", self.where, _first_line(exc))
            self.actor = None


def ray_slots(
    cluster: RayCluster,
    workers: int,
    build: Callable[[], Any],
    build_upscaler: Callable[[], Any] | None,
    gpus: float,
    start_timeout_s: float,
    build_objects: Callable[[], Any] | None = None,
) -> list[RaySlot]:
    """``workers`` slots, each to hold one actor with ``gpus`` GPUs (0: a CPU actor) and, with
    ``build_objects``, an object model beside its engine."""
    return [
        RaySlot(cluster.ray, i, build, build_upscaler, gpus, start_timeout_s, build_objects) for i in range(workers)
    ]


class RayEngine:
    """An engine in a Ray actor, as the worker sees it (:class:`~bridge.contract.engine_api.EngineLike`).

    Requests are checked here, with the actor's preset, before anything travels."""

    def __init__(self, ray: ModuleType, actor: Any, role: str, info: dict[str, Any]) -> None:
        self._ray = ray
        self._actor = actor
        self._role = role
        self._model_id: str = info["model_id"]
        self._identity: str = info["identity"]
        self._preset = info["preset"]
        self._depth_model: str | None = info.get("depth_model")

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def identity(self) -> str:
        return self._identity

    def resolve(self, request: GenerateRequest) -> ResolvedRequest:
        return resolve_text(self._preset, request)

    def resolve_upscale(self, request: UpscaleRequest, source: tuple[int, int]) -> ResolvedRequest:
        return resolve_upscale(self._preset, request, source)

    @property
    def depth_model(self) -> str | None:
        return self._depth_model

    def resolve_depth(self, request: DepthRequest, size: tuple[int, int]) -> ResolvedRequest:
        return resolve_depth(self._preset, request, size)

    def free_memory(self) -> None:
        self._ray.get(self._actor.free_memory.remote(self._role), timeout=CALL_TIMEOUT_S)

    def generate(
        self,
        request: GenerateRequest,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        return self._run("generate", request, (), on_step, cancel, previews)

    def generate_between(
        self,
        first: GenerateRequest,
        second: GenerateRequest,
        t: float,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        return self._run("generate_between", (first, second, t), (), on_step, cancel, previews)

    def img2img(
        self,
        request: Img2ImgRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        return self._run("img2img", request, (rgb, depth), on_step, cancel, previews)

    def upscale(
        self,
        request: UpscaleRequest,
        rgb: npt.NDArray[np.uint8],
        depth: npt.NDArray[np.uint16],
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        return self._run("upscale", request, (rgb, depth), on_step, cancel, previews)

    def estimate_depth(
        self,
        request: DepthRequest,
        rgb: npt.NDArray[np.uint8],
        on_step: Callable[[int, int], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> RGBDResult:
        return self._run("estimate_depth", request, (rgb,), on_step, cancel)

    def _run(
        self,
        method: str,
        request: GenerateRequest | UpscaleRequest | DepthRequest | tuple[GenerateRequest, GenerateRequest, float],
        arrays: tuple[Any, ...],
        on_step: Callable[[int, int], None] | None,
        cancel: CancelToken | None,
        previews: Previews | None = None,
    ) -> RGBDResult:
        result: RGBDResult = _stream(
            self._ray, self._actor, self._role, method, request, arrays, on_step, cancel, previews
        )
        return result


class RayObjects:
    """An object model in a Ray actor, as the worker sees it
    (:class:`~ldm3d_engine.object_types.ObjectEngineLike`): requests are checked here, with the
    actor's limits, before anything travels; the mesh comes back as arrays."""

    def __init__(self, ray: ModuleType, actor: Any, info: dict[str, Any]) -> None:
        self._ray = ray
        self._actor = actor
        self._model_id: str = info["model_id"]
        self._licence: str = info["licence"]
        self._limits: ObjectLimits = info["limits"]

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def licence(self) -> str:
        return self._licence

    @property
    def limits(self) -> ObjectLimits:
        return self._limits

    def resolve_object(self, request: ObjectRequest) -> ResolvedObjectRequest:
        return resolve_object(self._limits, request)

    def generate_object(
        self, request: ObjectRequest, on_step: OnStep | None = None, cancel: CancelToken | None = None
    ) -> MeshResult:
        result: MeshResult = _stream(self._ray, self._actor, "objects", "generate_object", request, (), on_step, cancel)
        return result


def _stream(
    ray: ModuleType,
    actor: Any,
    role: str,
    method: str,
    request: Any,
    arrays: tuple[Any, ...],
    on_step: Callable[[int, int], None] | None,
    cancel: CancelToken | None,
    previews: Previews | None = None,
) -> Any:
    """Run one job in ``actor`` on its ``role`` engine: its steps and previews as they come, its
    result, or its end as our error (:mod:`ldm3d_engine.host`'s events)."""
    from ray.exceptions import RayActorError, RayError, RayTaskError

    key = secrets.token_hex(8)
    started = False
    asked = False
    try:
        every = 0 if previews is None else previews.every
        events = actor.run.remote(key, role, method, request, *arrays, preview_every=every)
        while True:
            if cancel is not None and cancel.cancelled and not asked:
                asked = True
                actor.cancel.remote(key)
            ready, _ = ray.wait([events], timeout=POLL_S)
            if not ready:
                continue
            try:
                event = ray.get(next(events))
            except StopIteration:
                raise EngineLost("the actor ended the job without a result", started=started) from None
            kind = event[0]
            if kind == "started":
                started = True
            elif kind == "step":
                if on_step is not None:
                    on_step(event[1], event[2])
            elif kind == "preview":
                if previews is not None:
                    previews.send(event[1])
            elif kind == "result":
                return event[1]
            elif kind == "cancelled":
                raise Cancelled(event[1], event[2])
            elif kind == "invalid":
                raise InvalidRequest(event[1], event[2])
            elif kind == "oom":
                raise OutOfMemory(event[1])
            elif kind == "unsafe":
                raise UnsafeContent(event[1])
            else:
                raise EngineFailure(event[1])
    except RayActorError as exc:
        raise EngineLost(f"its actor died: {_first_line(exc)}", started=started) from None
    except RayTaskError as exc:
        raise EngineFailure(f"the actor failed: {_first_line(exc)}") from None
    except (RayError, ConnectionError) as exc:
        raise EngineLost(f"the cluster did not answer: {_first_line(exc)}", started=started) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _cause(exc: BaseException) -> str:
    """The error an actor's constructor raised, out of Ray's report (which carries only its text: a
    traceback whose last ``module.Type: message`` line is the error). Our engine's errors are told
    by their message alone (it names the value and what is allowed); any other by type and message."""
    for line in reversed(str(exc).splitlines()):
        found = _RAISED.match(line.strip())
        if found:
            kind, message = found[1].rsplit(".", 1)[-1], found[2]
            return message[:500] if kind in _ENGINE_ERRORS else f"{kind}: {message}"[:500]
    return _first_line(exc)


_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Model|NotAvailable|Memory|Request)): (.+)$")
_ENGINE_ERRORS = {EngineError.__name__, *(cls.__name__ for cls in EngineError.__subclasses__())}
