"""An engine in a process of its own, driven by calls: the body of a Ray actor.

:class:`EngineHost` holds one engine (and, when asked, an upscaler and an object model beside it) and runs one job
at a time as a generator of plain tuples, so that a caller in another process sees the job's
steps as they happen and can cancel it between two of them:

==================================  =========================================
``("started",)``                    the job has begun (before any work)
``("step", step, total)``           a denoising step is done
``("preview", Preview)``            the world as it forms (when asked: ``preview_every``)
``("result", RGBDResult)``          the end: the arrays and what made them (an object: a MeshResult)
``("cancelled", step, total)``      the end: cancelled (:class:`Cancelled`)
``("invalid", field, message)``     the end: :class:`InvalidRequest`
``("oom", message)``                the end: :class:`OutOfMemory`
``("unsafe", message)``             the end: :class:`UnsafeContent` (the picture dropped)
``("failed", message)``             the end: any other error, by type and text
==================================  =========================================

Errors travel as tuples rather than pickled exceptions: an exception with its own constructor
arguments (``Cancelled(step, total)``) does not survive pickling. Nothing here imports Ray or
knows of OSC or files; ``bridge.workers.ray_workers`` wraps this class with ``ray.remote``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from queue import Queue
from typing import Any

from .errors import Cancelled, InvalidRequest, OutOfMemory, UnsafeContent
from .types import CancelToken, Previews

#: The engines a host may hold.
ROLES = ("engine", "upscaler", "objects")
#: The engine methods a job may call, and how many arrays each takes after the request.
METHODS = {"generate": 0, "img2img": 2, "upscale": 2, "estimate_depth": 1, "generate_between": 0, "generate_object": 0}
#: The methods that send previews (``preview_every`` > 0).
PREVIEWING = ("generate", "img2img", "upscale", "generate_between")


class EngineHost:
    def __init__(
        self,
        build: Callable[[], Any],
        build_upscaler: Callable[[], Any] | None = None,
        build_objects: Callable[[], Any] | None = None,
    ) -> None:
        """Load the engines now (in the actor's process, on its device): ``build()`` returns an
        :class:`~ldm3d_engine.models.ldm3d.Engine` (or a stand-in with the same methods);
        ``build_objects()`` an object model (:class:`~ldm3d_engine.object_types.ObjectEngineLike`)."""
        self._engines: dict[str, Any] = {"engine": build()}
        if build_upscaler is not None:
            self._engines["upscaler"] = build_upscaler()
        if build_objects is not None:
            self._engines["objects"] = build_objects()
        self._cancels: dict[str, CancelToken] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        """What the caller needs to check requests itself (each engine's model, identity and
        preset) and to say where the engines run."""
        engines: dict[str, Any] = {
            role: {
                "model_id": e.model_id,
                "identity": e.identity,
                "preset": getattr(e, "preset", None),
                "depth_model": getattr(e, "depth_model", None),
            }
            for role, e in self._engines.items()
            if role != "objects"
        }
        if "objects" in self._engines:
            objects = self._engines["objects"]
            engines["objects"] = {"model_id": objects.model_id, "licence": objects.licence, "limits": objects.limits}
        engine = self._engines["engine"]
        return {
            **engines,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "device": str(getattr(engine, "device", "")),
            "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        }

    def ping(self) -> int:
        return os.getpid()

    def cancel(self, key: str) -> bool:
        """Cancel job ``key`` (it ends within one step); False when no such job runs."""
        with self._lock:
            token = self._cancels.get(key)
        if token is None:
            return False
        token.cancel()
        return True

    def free_memory(self, role: str) -> None:
        self._engines[role].free_memory()

    def run(
        self, key: str, role: str, method: str, request: Any, *arrays: Any, preview_every: int = 0
    ) -> Iterator[tuple[Any, ...]]:
        """Run one job on engine ``role`` (see the module's table for what is yielded). ``generate_between``
        takes its (first, second, t) as ``request``; ``preview_every`` > 0 asks for previews."""
        if role not in self._engines or METHODS.get(method) != len(arrays):
            yield ("failed", f"ValueError: no {method!r} with {len(arrays)} arrays on the {role!r} engine here")
            return
        engine = self._engines[role]
        token = CancelToken()
        with self._lock:
            self._cancels[key] = token
        events: Queue[tuple[Any, ...]] = Queue()

        def work() -> None:
            try:
                call = getattr(engine, method)
                head = tuple(request) if method == "generate_between" else (request,)
                extra: dict[str, Any] = {}
                if preview_every > 0 and method in PREVIEWING:
                    extra["previews"] = Previews(preview_every, lambda p: events.put(("preview", p)))
                on_step = lambda s, t: events.put(("step", s, t))  # noqa: E731
                result = call(*head, *arrays, on_step=on_step, cancel=token, **extra)
                events.put(("result", result))
            except Cancelled as exc:
                events.put(("cancelled", exc.step, exc.total))
            except InvalidRequest as exc:
                events.put(("invalid", exc.field, str(exc)))
            except OutOfMemory as exc:
                events.put(("oom", str(exc)))
            except UnsafeContent as exc:
                events.put(("unsafe", str(exc)))
            except Exception as exc:  # noqa: BLE001 - every failure travels back as a message
                events.put(("failed", f"{type(exc).__name__}: {exc}"))

        yield ("started",)
        thread = threading.Thread(target=work, name=f"ldm3d-host-{key}", daemon=True)
        thread.start()
        try:
            while True:
                event = events.get()
                yield event
                if event[0] not in ("step", "preview"):
                    return
        finally:
            token.cancel()  # a caller that went away stops the job too
            with self._lock:
                self._cancels.pop(key, None)
