"""The Ray workers' own rules, fast: ``FakeRay`` stands in for Ray itself (no cluster, no actor process).

``FakeRay`` is a small object with the calls ``RaySlot``, ``RayEngine`` and ``RayObjects`` make
(``remote``, ``get``, ``wait``, ``kill``, ``cluster_resources``), handed to them in place of the
``ray`` module; ``FakeActor`` answers as :class:`ldm3d_engine.host.EngineHost` would, its job's
events given by the test. Ray's own exception classes are the real ones (``ray.exceptions``).
The same code against real Ray actors, a real cluster and real faults stays in
``tests/test_ray_workers.py``."""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, cast

import numpy as np
import pytest
from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError, RayError, RayTaskError

from bridge.contract.engine_api import EngineFailure, EngineLost
from bridge.workers import ray_workers
from bridge.workers.ray_workers import (
    LOOPBACK_ONLY,
    RayCluster,
    RayEngine,
    RayObjects,
    RaySlot,
    RayUnavailable,
    _cause,
    _first_line,
    import_ray,
    ray_slots,
)
from ldm3d_engine import GenerateRequest, InvalidRequest
from ldm3d_engine.errors import Cancelled, OutOfMemory, UnsafeContent
from ldm3d_engine.object_types import ObjectLimits, ObjectRequest
from ldm3d_engine.presets import get_preset
from ldm3d_engine.types import CancelToken, DepthRequest, Img2ImgRequest, Previews, UpscaleRequest


class Call:
    """One remote method of an actor: ``remote(...)`` records its arguments and returns ``answer(...)``."""

    def __init__(self, answer: Callable[..., Any]) -> None:
        self.answer = answer
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.answer(*args, **kwargs)


class Events:
    """A job's event stream (a Ray generator): each ``next`` gives the next event, or raises what it is."""

    def __init__(self, events: list[Any], ready_after: int = 0) -> None:
        self.events = list(events)
        self.not_ready = ready_after  # polls before the first event is there

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if not self.events:
            raise StopIteration
        return self.events.pop(0)


PRESET = dataclasses.replace(get_preset("tiny"), native_scheduler="ddim")  # as a loaded engine's
UPSCALER = dataclasses.replace(get_preset("tiny-sr"), native_scheduler="ddim")
INFO = {"host": "node-a", "pid": 42, "gpus": [0], "engine": {
    "model_id": "tiny", "identity": "tiny@1", "preset": PRESET, "depth_model": "tiny-dpt"}}  # fmt: skip


class FakeActor:
    def __init__(self, describe: Any = None, events: list[Any] | None = None, ready_after: int = 0) -> None:
        self.events = Events(events or [], ready_after)
        self.describe = Call(lambda: INFO if describe is None else describe)
        self.ping = Call(lambda: "pong")
        self.run = Call(lambda *a, **k: self.events)
        self.cancel = Call(lambda key: None)
        self.free_memory = Call(lambda role: None)


class FakeRay:
    """Stands in for the ``ray`` module: ``get`` returns a value, or raises it when it is an exception."""

    def __init__(self, *actors: FakeActor) -> None:
        self.actors = list(actors)
        self.options: list[dict[str, Any]] = []
        self.made_with: list[tuple[Any, ...]] = []
        self.killed: list[tuple[Any, bool]] = []
        self.kill_raises: BaseException | None = None
        self.timeouts: list[float | None] = []
        self.waits: list[float | None] = []

    def get(self, ref: Any, timeout: float | None = None) -> Any:
        self.timeouts.append(timeout)
        if isinstance(ref, BaseException):
            raise ref
        return ref

    def wait(self, refs: list[Events], timeout: float | None = None) -> tuple[list[Events], list[Events]]:
        self.waits.append(timeout)
        events = refs[0]
        if events.not_ready > 0:
            events.not_ready -= 1
            return [], refs
        return refs, []

    def remote(self, cls: type) -> Any:
        ray = self

        class Options:
            def options(self, **kwargs: Any) -> Any:
                ray.options.append(kwargs)
                return self

            def remote(self, *args: Any) -> FakeActor:
                ray.made_with.append(args)
                return ray.actors.pop(0)

        return Options()

    def kill(self, actor: Any, no_restart: bool) -> None:
        if self.kill_raises is not None:
            raise self.kill_raises
        self.killed.append((actor, no_restart))

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}


LIMITS = ObjectLimits(
    steps=16, max_steps=64, guidance=3.0, guidance_range=(1.0, 20.0), resolution=64, max_resolution=128
)


def fake(ray: FakeRay) -> ModuleType:
    return cast(ModuleType, ray)


def build() -> None:
    pass


def slot(ray: FakeRay, index: int = 0, gpus: float = 1.0) -> RaySlot:
    return RaySlot(fake(ray), index, build, None, gpus, 5.0)


# -- the slot ---------------------------------------------------------------------------------------


def test_a_new_actor_is_placed_restartable_threaded_with_its_resources_and_says_where() -> None:
    actor = FakeActor()
    ray = FakeRay(actor)
    s = RaySlot(fake(ray), 3, build, None, 0.5, 5.0)
    assert s.where == "ray worker 3"
    # Whether it will hold an object model is known before any actor exists (the bridge checks it when made).
    assert not s.holds_objects and RaySlot(fake(ray), 4, build, None, 0.5, 5.0, build).holds_objects
    engine, upscaler = s.open()
    assert ray.options == [
        {"max_restarts": -1, "max_task_retries": 0, "max_concurrency": 4, "num_gpus": 0.5, "num_cpus": 1}
    ]
    assert ray.made_with == [(build, None, None)] and ray.timeouts == [5.0]
    assert s.where == "ray worker 3 on node-a (pid 42, GPU [0])"
    assert (engine.model_id, engine.identity, upscaler, s.open_objects()) == ("tiny", "tiny@1", None, None)


def test_a_cpu_actor_names_no_gpu_and_an_upscaler_and_object_model_come_with_it() -> None:
    limits = LIMITS
    info = {**INFO, "gpus": [], "upscaler": {**INFO["engine"], "model_id": "ldm3d-sr"},  # type: ignore[dict-item]
            "objects": {"model_id": "shap-e", "licence": "MIT", "limits": limits}}  # fmt: skip
    s = slot(FakeRay(FakeActor(describe=info)), gpus=0)
    _, upscaler = s.open()
    objects = s.open_objects()
    assert s.where == "ray worker 0 on node-a (pid 42)"
    assert upscaler is not None and upscaler.model_id == "ldm3d-sr"
    assert objects is not None and (objects.model_id, objects.licence, objects.limits) == ("shap-e", "MIT", limits)


def test_a_closed_slot_does_not_open() -> None:
    s = slot(FakeRay(FakeActor()))
    s.close()
    with pytest.raises(EngineLost, match=r"^ray worker 0 is closed$") as lost:
        s.open()
    assert lost.value.started is False


def test_after_a_loss_the_same_actor_is_used_when_ray_restarted_it() -> None:
    first = FakeActor()
    ray = FakeRay(first, FakeActor())
    s = slot(ray)
    s.open()
    s.open()
    assert s.actor is first and len(ray.actors) == 1 and ray.timeouts == [5.0, 5.0]


def test_an_actor_gone_for_good_is_replaced(caplog: pytest.LogCaptureFixture) -> None:
    gone = FakeActor(describe=ActorDiedError())
    ray = FakeRay(gone, FakeActor())
    s = slot(ray)
    s.actor = ray.actors.pop(0)
    with caplog.at_level(logging.WARNING, logger="bridge.workers.ray_workers"):
        s.open()
    assert s.actor is not gone and ray.actors == []
    assert caplog.records[0].getMessage() == (
        "ray worker 0 is gone for good (The actor died unexpectedly before finishing this task.); starting a new actor"
    )


def closing(s: RaySlot, error: Exception) -> Callable[[], Exception]:
    """An answer to ``describe`` that comes as ``s`` is closed (the bridge stopping meanwhile)."""

    def answer() -> Exception:
        s.close()
        return error

    return answer


def test_an_actor_gone_for_good_while_the_slot_closed_is_not_replaced() -> None:
    ray = FakeRay(FakeActor())
    s = slot(ray)
    s.actor = FakeActor()
    s.actor.describe = Call(closing(s, ActorDiedError()))
    with pytest.raises(EngineLost, match="is closed"):
        s.open()
    assert len(ray.actors) == 1


def test_an_actor_not_back_yet_is_waited_for() -> None:
    ray = FakeRay()
    s = slot(ray)
    s.actor = FakeActor(describe=RayError("restarting\nmore"))
    with pytest.raises(EngineLost, match=r"^ray worker 0 is not back yet: restarting$") as lost:
        s.open()
    assert lost.value.started is False and s.actor is not None


def test_an_actor_no_node_takes_is_stopped_and_the_message_says_what_it_needs() -> None:
    actor = FakeActor(describe=GetTimeoutError("timed out"))
    ray = FakeRay(actor)
    s = slot(ray, gpus=2)
    with pytest.raises(EngineFailure) as failed:
        s.open()
    assert str(failed.value) == (
        "no Ray node took ray worker 0 within 5 s (it needs 2 GPU; the cluster has {'CPU': 2.0}): add a node, "
        "use fewer --ray-workers, or raise worker_start_timeout_s"
    )
    assert ray.killed == [(actor, True)] and s.actor is None


def test_an_actor_that_cannot_load_its_model_says_why() -> None:
    died = RayActorError(error_msg="Traceback\n  File x\nldm3d_engine.errors.ModelNotAvailable: no weights in /models")
    ray = FakeRay(FakeActor(describe=died))
    s = slot(ray)
    with pytest.raises(EngineFailure, match=r"^ray worker 0 could not load the model: no weights in /models$"):
        s.open()
    assert s.actor is None


def test_an_actor_that_failed_to_start_because_the_slot_closed_is_lost_not_failed() -> None:
    s = slot(FakeRay())
    died = RayActorError(error_msg="killed")
    actor = FakeActor()
    actor.describe = Call(closing(s, died))
    cast(FakeRay, s._ray).actors.append(actor)
    with pytest.raises(EngineLost, match="is closed"):
        s.open()


def test_an_actor_that_cannot_be_started_is_tried_again() -> None:
    ray = FakeRay(FakeActor(describe=ConnectionError("refused")))
    with pytest.raises(EngineLost, match=r"^ray worker 0 could not be started: refused$") as lost:
        slot(ray).open()
    assert lost.value.started is False


def test_alive_asks_the_actor_and_kill_restarts_it() -> None:
    ray = FakeRay(FakeActor())
    s = slot(ray)
    assert (s.alive(), s.kill()) == (False, False)
    s.open()
    assert s.alive() and ray.timeouts[-1] == 10.0
    assert s.kill() and ray.killed == [(s.actor, False)]
    s.actor.ping = Call(lambda: RayActorError())
    with pytest.raises(RayActorError):
        s.alive()


def test_close_stops_the_actor_for_good_and_logs_when_it_cannot(caplog: pytest.LogCaptureFixture) -> None:
    ray = FakeRay(FakeActor())
    s = slot(ray)
    s.open()
    actor = s.actor
    s.close()
    assert ray.killed == [(actor, True)] and s.actor is None
    s.actor = FakeActor()
    ray.kill_raises = ValueError("no such actor")
    with caplog.at_level(logging.WARNING, logger="bridge.workers.ray_workers"):
        s.close()
    assert caplog.records[0].getMessage() == "could not stop ray worker 0 on node-a (pid 42, GPU [0]): no such actor"
    assert s.actor is None


def build_upscaler() -> None:
    pass


def build_objects() -> None:
    pass


def test_ray_slots_makes_one_slot_per_worker_each_with_what_its_actor_loads() -> None:
    ray = FakeRay(FakeActor())
    cluster = cast(RayCluster, type("Cluster", (), {"ray": fake(ray)})())
    slots = ray_slots(cluster, 3, build, build_upscaler, 0.25, 7.0, build_objects)
    assert [s.where for s in slots] == ["ray worker 0", "ray worker 1", "ray worker 2"]
    slots[1].open()
    assert ray.made_with == [(build, build_upscaler, build_objects)] and ray.timeouts == [7.0]
    assert ray.options[0]["num_gpus"] == 0.25 and slots[1].where.startswith("ray worker 1 on node-a")


# -- a job's stream -----------------------------------------------------------------------------------


def engine(*events: Any, ready_after: int = 0) -> tuple[RayEngine, FakeActor, FakeRay]:
    actor = FakeActor(events=list(events), ready_after=ready_after)
    ray = FakeRay()
    return RayEngine(fake(ray), actor, "engine", cast(dict[str, Any], INFO["engine"])), actor, ray


def test_a_job_streams_its_steps_then_its_result() -> None:
    e, actor, ray = engine(("started",), ("step", 1, 2), ("step", 2, 2), ("result", "the world"), ready_after=2)
    steps: list[tuple[int, int]] = []
    request = GenerateRequest("a sea")
    assert cast(Any, e.generate(request, on_step=lambda s, t: steps.append((s, t)))) == "the world"
    assert steps == [(1, 2), (2, 2)]
    (key, role, method, sent), kwargs = actor.run.calls[0]
    assert (role, method, sent, kwargs) == ("engine", "generate", request, {"preview_every": 0})
    assert len(key) == 16 and ray.waits == [0.05] * 6


def test_each_job_kind_sends_its_arrays() -> None:
    rgb, depth = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint16)
    calls: list[tuple[Any, ...]] = []
    runs: tuple[Callable[[RayEngine], Any], ...] = (
        lambda e: e.generate_between(GenerateRequest("a"), GenerateRequest("b"), 0.5),
        lambda e: e.img2img(Img2ImgRequest("a"), rgb, depth),
        lambda e: e.upscale(UpscaleRequest(), rgb, depth),
        lambda e: e.estimate_depth(DepthRequest(), rgb),
    )
    for run in runs:
        e, actor, _ = engine(("result", 1))
        assert run(e) == 1
        calls.append(actor.run.calls[0][0][2:])
    assert [c[0] for c in calls] == ["generate_between", "img2img", "upscale", "estimate_depth"]
    assert calls[0][1] == (GenerateRequest("a"), GenerateRequest("b"), 0.5)
    assert [len(c) for c in calls] == [2, 4, 4, 3]
    assert calls[1][2] is rgb and calls[1][3] is depth and calls[3][2] is rgb


REQUEST: Any = GenerateRequest("the job's own request")
RGB: Any = np.zeros((2, 2, 3), np.uint8)
DEPTH: Any = np.zeros((2, 2), np.uint16)
JOBS: dict[str, Callable[[RayEngine, Any, Any, Any], Any]] = {
    "generate": lambda e, o, c, p: e.generate(REQUEST, o, c, p),
    "generate_between": lambda e, o, c, p: e.generate_between(REQUEST, REQUEST, 0.5, o, c, p),
    "img2img": lambda e, o, c, p: e.img2img(REQUEST, RGB, None, o, c, p),
    "upscale": lambda e, o, c, p: e.upscale(REQUEST, RGB, DEPTH, o, c, p),
    "estimate_depth": lambda e, o, c, p: e.estimate_depth(REQUEST, RGB, o, c),
    "generate_object": lambda e, o, c, p: RayObjects(
        e._ray, e._actor, {"model_id": "shap-e", "licence": "MIT", "limits": LIMITS}
    ).generate_object(REQUEST, o, c),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(JOBS))
def test_every_job_kind_sends_its_request_and_hears_its_steps_previews_and_cancel(kind: str) -> None:
    cancel = CancelToken()
    cancel.cancel()
    e, actor, _ = engine(("preview", "p1"), ("step", 1, 2), ("result", "done"), ready_after=1)
    steps: list[tuple[int, int]] = []
    sent: list[Any] = []
    assert JOBS[kind](e, lambda s, t: steps.append((s, t)), cancel, Previews(2, sent.append)) == "done"
    (key, _, method, request, *_), kwargs = actor.run.calls[0]
    assert method == kind and (request is REQUEST or request == (REQUEST, REQUEST, 0.5))
    assert steps == [(1, 2)] and actor.cancel.calls == [((key,), {})]
    takes_previews = kind not in ("estimate_depth", "generate_object")
    assert (sent, kwargs) == ((["p1"], {"preview_every": 2}) if takes_previews else ([], {"preview_every": 0}))


def test_previews_are_asked_for_and_passed_on() -> None:
    sent: list[Any] = []
    e, actor, _ = engine(("preview", "p1"), ("step", 1, 1), ("result", "w"))
    e.generate(GenerateRequest("a"), previews=Previews(3, sent.append))
    assert sent == ["p1"] and actor.run.calls[0][1] == {"preview_every": 3}


def test_events_without_a_listener_are_passed_over() -> None:
    e, _, _ = engine(("preview", "p1"), ("step", 1, 1), ("result", "w"))
    assert cast(Any, e.generate(GenerateRequest("a"))) == "w"


def test_a_cancel_is_asked_once_of_the_actor_with_the_jobs_key() -> None:
    cancel = CancelToken()
    cancel.cancel()
    e, actor, _ = engine(("started",), ("step", 1, 4), ("cancelled", 1, 4), ready_after=2)
    with pytest.raises(Cancelled) as cancelled:
        e.generate(GenerateRequest("a"), cancel=cancel)
    assert (cancelled.value.step, cancelled.value.total) == (1, 4)
    assert actor.cancel.calls == [((actor.run.calls[0][0][0],), {})]


@pytest.mark.parametrize(
    ("event", "error", "message"),
    [
        (("invalid", "steps", "too many"), InvalidRequest, "too many"),
        (("oom", "out of memory at 1024"), OutOfMemory, "out of memory at 1024"),
        (("unsafe", "flagged"), UnsafeContent, "flagged"),
        (("error", "the engine broke"), EngineFailure, "the engine broke"),
    ],
)
def test_a_jobs_end_is_the_engines_error(event: tuple[Any, ...], error: type[Exception], message: str) -> None:
    e, _, _ = engine(("started",), event)
    with pytest.raises(error, match=message) as raised:
        e.generate(GenerateRequest("a"))
    if isinstance(raised.value, InvalidRequest):
        assert raised.value.field == "steps"


@pytest.mark.parametrize(("events", "started"), [([], False), ([("started",)], True)])
def test_a_stream_that_ends_without_a_result_is_a_lost_engine(events: list[Any], started: bool) -> None:
    e, _, _ = engine(*events)
    with pytest.raises(EngineLost, match=r"^the actor ended the job without a result$") as lost:
        e.generate(GenerateRequest("a"))
    assert lost.value.started is started


@pytest.mark.parametrize(
    ("raised", "error", "message", "started"),
    [
        (RayActorError(error_msg="died\nat line 2"), EngineLost, "its actor died: died", True),
        (RayTaskError("run", "Traceback\nValueError: x", ValueError("x")), EngineFailure,  # type: ignore[no-untyped-call]
         "the actor failed: Traceback", None),
        (RayError("no answer"), EngineLost, "the cluster did not answer: no answer", True),
        (ConnectionError("reset"), EngineLost, "the cluster did not answer: reset", True),
    ],
)  # fmt: skip
def test_ray_failures_during_a_job(
    raised: Exception, error: type[Exception], message: str, started: bool | None
) -> None:
    e, _, _ = engine(("started",), raised)
    with pytest.raises(error) as failed:
        e.generate(GenerateRequest("a"))
    assert str(failed.value) == message
    if started is not None:
        assert cast(EngineLost, failed.value).started is started


def test_a_failure_before_the_job_began_says_so() -> None:
    e, _, _ = engine(RayActorError(error_msg="died"))
    with pytest.raises(EngineLost) as lost:
        e.generate(GenerateRequest("a"))
    assert lost.value.started is False


def test_requests_are_checked_with_the_actors_preset_before_anything_travels() -> None:
    e, actor, ray = engine()
    assert e.resolve(GenerateRequest("a")).width == PRESET.width
    with pytest.raises(InvalidRequest, match="does not upscale"):  # the actor's engine is no upscaler
        e.resolve_upscale(UpscaleRequest(), (64, 64))
    sr = RayEngine(fake(ray), actor, "upscaler", {**INFO["engine"], "preset": UPSCALER})  # type: ignore[dict-item]
    resolved = sr.resolve_upscale(UpscaleRequest(seed=5), (64, 48))
    assert (resolved.width, resolved.height, resolved.seed) == (256, 192, 5)
    assert e.resolve_depth(DepthRequest(), (64, 48)).width == 64
    assert e.depth_model == "tiny-dpt"
    e.free_memory()
    assert actor.free_memory.calls == [(("engine",), {})] and ray.timeouts == [10.0]


def test_an_object_job_streams_on_the_actors_object_model() -> None:
    actor = FakeActor(events=[("started",), ("step", 1, 1), ("result", "mesh")])
    limits = LIMITS
    objects = RayObjects(fake(FakeRay()), actor, {"model_id": "shap-e", "licence": "MIT", "limits": limits})
    request = ObjectRequest("a chair")
    assert objects.resolve_object(request).prompt == "a chair"
    assert cast(Any, objects.generate_object(request)) == "mesh"
    assert actor.run.calls[0][0][1:] == ("objects", "generate_object", request)


# -- what Ray's errors say ------------------------------------------------------------------------------


def test_the_first_line_of_an_error_at_most_300_characters_or_its_type() -> None:
    assert _first_line(ValueError("  one\ntwo ")) == "one"
    assert _first_line(ValueError("x" * 400)) == "x" * 300
    assert _first_line(ValueError("")) == "ValueError"


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("Traceback\n  File a\nldm3d_engine.errors.InvalidRequest: steps: too many\n", "steps: too many"),
        ("Traceback\nldm3d_engine.errors.EngineError: broken", "broken"),
        ("Traceback\nbuiltins.ValueError: bad value\nsomething after", "ValueError: bad value"),
        ("Traceback\ntorch.OutOfMemoryError: CUDA out of memory", "OutOfMemoryError: CUDA out of memory"),
        ("no traceback here\nsecond", "no traceback here"),
    ],
)
def test_the_cause_of_an_actors_failure(text: str, cause: str) -> None:
    assert _cause(RuntimeError(text)) == cause


def test_a_long_cause_is_cut_at_500_characters() -> None:
    assert _cause(RuntimeError("ldm3d_engine.errors.EngineError: " + "x" * 600)) == "x" * 500
    assert _cause(RuntimeError("ValueError: " + "x" * 600)) == ("ValueError: " + "x" * 600)[:500]


# -- the cluster connection ------------------------------------------------------------------------------


class FakeRayModule:
    def __init__(self, initialized: bool = False, fails: Exception | None = None) -> None:
        self.initialized = initialized
        self.fails = fails
        self.inits: list[dict[str, Any]] = []
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        if self.fails is not None:
            raise self.fails
        self.inits.append(kwargs)

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 2.0}

    def shutdown(self) -> None:
        self.shutdowns += 1


def cluster(address: str, ray: FakeRayModule) -> RayCluster:
    c = RayCluster(address)
    c.ray = cast(ModuleType, ray)
    return c


def test_a_ray_of_our_own_is_started_without_a_dashboard_and_stopped_on_close(caplog: pytest.LogCaptureFixture) -> None:
    ray = FakeRayModule()
    c = cluster("local", ray)
    with caplog.at_level(logging.INFO, logger="bridge.workers.ray_workers"):
        c.connect()
    assert caplog.records[-1].getMessage() == "connected to Ray (local): {'CPU': 2.0}"
    assert ray.inits == [{"logging_level": logging.WARNING, "include_dashboard": False}]
    c.close()
    c.close()
    assert ray.shutdowns == 1


def test_a_cluster_is_joined_at_its_address_and_left_open() -> None:
    ray = FakeRayModule()
    c = cluster("head:6379", ray)
    c.connect()
    c.close()
    assert ray.inits == [{"logging_level": logging.WARNING, "address": "head:6379"}] and ray.shutdowns == 0


def test_a_connection_this_process_has_is_used_and_left_open(caplog: pytest.LogCaptureFixture) -> None:
    ray = FakeRayModule(initialized=True)
    c = cluster("local", ray)
    with caplog.at_level(logging.INFO, logger="bridge.workers.ray_workers"):
        c.connect()
    c.close()
    assert (ray.inits, ray.shutdowns) == ([], 0)
    assert caplog.records[0].getMessage() == "using the Ray connection this process already has"


@pytest.mark.parametrize(
    ("address", "hint"), [("auto", " (start one with `ray start --head`, or use --ray local)"), ("head:1", "")]
)
def test_a_cluster_that_cannot_be_reached(address: str, hint: str) -> None:
    c = cluster(address, FakeRayModule(fails=ConnectionError("refused")))
    with pytest.raises(RayUnavailable) as unavailable:
        c.connect()
    assert str(unavailable.value) == f"cannot reach the Ray cluster at {address!r}: refused{hint}"


def test_a_ray_of_our_own_stays_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOPBACK_ONLY, raising=False)
    monkeypatch.delitem(sys.modules, "ray")
    monkeypatch.setattr(ray_workers, "import_ray", lambda: cast(ModuleType, FakeRayModule()))
    RayCluster("head:6379")
    assert LOOPBACK_ONLY not in __import__("os").environ
    c = RayCluster("local")
    assert __import__("os").environ[LOOPBACK_ONLY] == "0" and isinstance(c.ray, FakeRayModule)


def test_a_ray_already_imported_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOOPBACK_ONLY, raising=False)
    monkeypatch.setattr(ray_workers, "import_ray", lambda: cast(ModuleType, FakeRayModule()))
    assert "ray" in sys.modules  # this test module imported it
    RayCluster("local")
    assert LOOPBACK_ONLY not in __import__("os").environ


def test_without_ray_the_bridge_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailable) as unavailable:
        import_ray()
    assert str(unavailable.value) == (
        "--ray needs Ray: pip install 'ldm3d-bridge[ray]' (the same version on the bridge's machine and on every node)"
    )
