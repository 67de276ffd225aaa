"""The worker pool's own rules, fast: no bridge, no model, no worker thread running a job.

The pool is built on small engine slots the test hands in (``Slot``: it never loads anything); the
test sets each worker's state the way its thread would, and drives the pool's monitor check with a
clock of its own. What the pool says goes through ``Heard``, a notifier that records instead of
sending. The same rules with real workers over real UDP: ``tests/test_pool.py`` and
``tests/test_pool_grace.py`` (bridge tests)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from bridge.contract.engine_api import EngineLike, EngineLost
from bridge.errors import EngineDown
from bridge.notify.limits import Counters
from bridge.notify.notifier import Notifier
from bridge.osc.codec import Arg
from bridge.output.writer import TextureWriter
from bridge.settings import BridgeSettings
from bridge.workers.jobs import Address, Job, JobQueue
from bridge.workers.pool import WorkerPool
from bridge.workers.worker import Worker
from ldm3d_engine import GenerateRequest
from ldm3d_engine.presets import get_preset
from ldm3d_engine.types import ResolvedRequest, RGBDResult, Timings
from ldm3d_engine.validation import resolve_text

FINAL = ("/ldm3d/ready", "/ldm3d/error", "/ldm3d/cancelled")


class Slot:
    """An engine slot that never loads: ``open`` waits until the slot is closed, then says it is lost."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.opened = threading.Event()
        self.closed = threading.Event()

    def open(self) -> tuple[EngineLike, EngineLike | None]:
        self.opened.set()
        self.closed.wait(10)
        raise EngineLost("closed", started=False)

    def alive(self) -> bool:
        return True

    def kill(self) -> bool:
        return False

    def close(self) -> None:
        self.closed.set()


class Heard(Notifier):
    """A notifier that records what it would send (sender or None for a broadcast, address, args)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self.heard: list[tuple[Address | None, str, tuple[Arg, ...]]] = []

    def notify(self, sender: Address | None, address: str, *args: Arg, bound: int | None = None) -> None:
        self.heard.append((sender, address, args))

    def broadcast(self, address: str, *args: Arg) -> None:
        self.heard.append((None, address, args))

    def event(self, targets: Iterable[Address | None], address: str, *args: Arg) -> None:
        self.heard.append((next(iter(targets), None), address, args))

    def finals(self, ids: set[str], timeout: float = 10.0) -> dict[str, tuple[str, tuple[Arg, ...]]]:
        """The final message of each job in ``ids``, as they come (from worker threads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ended = {
                str(args[0]): (address, args) for _, address, args in list(self.heard)
                if address in FINAL and args and args[0] in ids
            }  # fmt: skip
            if set(ended) == ids:
                return ended
            time.sleep(0.01)
        raise TimeoutError(f"not all of {sorted(ids)} ended: {self.heard}")


@pytest.fixture
def heard() -> Iterator[Heard]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield Heard(sock)


class Pool:
    """A pool on ``n`` slots, its queue and what it said; ``firsts`` counts its on_first_ready calls."""

    def __init__(self, tmp_path: Path, heard: Heard, n: int, grace_s: float = 5.0) -> None:
        self.slots = [Slot(f"node {i}") for i in range(n)]
        self.queue = JobQueue()
        self.heard = heard
        self.firsts: list[int] = []
        self.pool = WorkerPool(
            self.slots, self.queue, TextureWriter(tmp_path / "out"), heard,
            BridgeSettings(worker_grace_s=grace_s), Counters(), on_first_ready=lambda: self.firsts.append(1),
        )  # fmt: skip
        self.workers = self.pool.workers
        self.ends: list[str] = []

    def ready(self, *indices: int) -> None:
        """These workers loaded their engine (what their thread does)."""
        for i in indices:
            self.workers[i].state = "idle"
            self.pool._worker_ready(self.workers[i])

    def states(self, *states: str) -> None:
        for worker, state in zip(self.workers, states, strict=True):
            worker.state = state

    def wait(self, name: str, sender: Address | None = ("127.0.0.1", 9000), quiet: bool = False) -> Job:
        job = Job(name, GenerateRequest("a world"), sender, quiet=quiet, on_done=self.ends.append)
        self.queue.put(job)
        return job


def test_a_pool_needs_a_slot(tmp_path: Path, heard: Heard) -> None:
    with pytest.raises(ValueError) as refused:
        WorkerPool([], JobQueue(), TextureWriter(tmp_path), heard, BridgeSettings(), Counters())
    assert str(refused.value) == "a worker pool needs at least one engine slot"


@pytest.mark.parametrize(
    ("states", "word"),
    [
        (("idle", "busy", "restarting"), "busy"),
        (("restarting", "idle", "loading"), "idle"),
        (("failed", "restarting", "idle"), "idle"),
        (("restarting", "restarting", "failed"), "restarting"),
    ],
)
def test_the_state_word_with_three_workers(tmp_path: Path, heard: Heard, states: tuple[str, ...], word: str) -> None:
    p = Pool(tmp_path, heard, 3)
    p.ready(0)
    p.states(*states)
    assert p.pool.state == word


def test_before_any_worker_was_ready_the_pool_is_loading_or_warming(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.states("loading", "restarting")
    assert p.pool.state == "loading"
    p.states("loading", "warming")
    assert p.pool.state == "warming"


def test_alive_counts_idle_and_busy_workers_of_all(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 3)
    p.states("busy", "restarting", "idle")
    assert (p.pool.alive, p.pool.total, p.pool.idle_workers) == (2, 3, 1)


def test_the_pool_fails_only_when_every_worker_failed_and_says_why_for_each(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.workers[0].failed, p.workers[0].state = "no weights", "failed"
    assert (p.pool.failed, p.pool.state) == (None, "loading")
    p.workers[1].failed, p.workers[1].state = "out of memory", "failed"
    assert p.pool.failed == "worker 0 (node 0): no weights; worker 1 (node 1): out of memory"
    assert p.pool.state == "failed"


def test_one_worker_failed_is_its_own_reason(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    p.workers[0].failed = "no weights"
    assert p.pool.failed == "no weights"


def test_down_is_every_worker_ready_once_and_none_alive(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.states("restarting", "restarting")
    assert not p.pool.down  # never ready: loading, not down
    p.ready(1)
    p.states("restarting", "restarting")
    assert p.pool.down
    p.states("restarting", "busy")
    assert not p.pool.down


def test_running_jobs_earliest_first_without_those_past_their_timeout(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 3)
    jobs = [Job(name, GenerateRequest("a world"), None) for name in ("a", "b", "c")]
    for worker, job, started in zip(p.workers, jobs, (30.0, 10.0, 20.0), strict=True):
        worker.running, worker.started_at = job, started
    jobs[2].timed_out = True
    assert [job.id for job in p.pool.running] == ["b", "a"]


def test_worker_args_say_where_each_runs_its_state_and_its_job(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.states("busy", "idle")
    p.workers[0].running = Job("j1", GenerateRequest("a world"), None)
    assert p.pool.worker_args() == [(0, "node 0", "busy", "j1"), (1, "node 1", "idle", "")]


def test_the_engine_upscaler_and_objects_are_those_of_a_worker_that_has_them(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    assert (p.pool.engine, p.pool.upscaler, p.pool.objects) == (None, None, None)
    engine, upscaler, objects = object(), object(), object()
    p.workers[1].engine = cast(Any, engine)
    p.workers[1].upscaler = cast(Any, upscaler)
    p.workers[1].objects = cast(Any, objects)
    assert (p.pool.engine, p.pool.upscaler, p.pool.objects) == (engine, upscaler, objects)


def test_threads_are_those_started(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    assert p.pool.threads == []
    p.pool.writes.thread.start()
    try:
        assert p.pool.threads == [p.pool.writes.thread]
    finally:
        p.pool.writes.close()


def test_with_no_grace_a_lost_pool_refuses_jobs_and_names_its_workers(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2, grace_s=0.0)
    p.ready(0, 1)
    p.pool.refuse_if_down()  # alive: accepted
    p.states("restarting", "restarting")
    with pytest.raises(EngineDown) as refused:
        p.pool.refuse_if_down()
    assert str(refused.value) == (
        "no worker is alive (2 restarting: worker 0 (node 0), worker 1 (node 1)); try again when /ldm3d/state says idle"
    )


def test_with_no_grace_queued_jobs_end_at_the_first_check(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2, grace_s=0.0)
    p.ready(0, 1)
    job = p.wait("waits")
    p.states("restarting", "restarting")
    p.pool.check(100.0)
    assert heard.heard == [
        (job.sender, "/ldm3d/error", ("waits", "engine_failed", "no worker is alive (2 restarting)"))
    ]
    assert p.ends == ["/ldm3d/error"] and job.cancel.cancelled


def test_queued_jobs_wait_out_the_grace_then_end(
    tmp_path: Path, heard: Heard, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pool(tmp_path, heard, 1, grace_s=0.5)
    p.ready(0)
    p.wait("waits")
    p.states("restarting")
    with caplog.at_level(logging.WARNING, logger="bridge.workers.pool"):
        p.pool.check(100.0)
        p.pool.check(100.49)
        p.pool.refuse_if_down()  # within the grace: queued
        assert (p.ends, len(p.queue)) == ([], 1)
        p.pool.check(100.5)
    assert p.ends == ["/ldm3d/error"]
    assert heard.heard[-1][2] == (
        "waits", "engine_failed", "no worker is alive (1 restarting) and none came back within 0.5 s (worker_grace_s)"
    )  # fmt: skip
    assert [r.getMessage() for r in caplog.records] == [
        "no worker is alive; queued jobs wait up to 0.5 s for one to come back",
        "no worker came back within 0.5 s (worker_grace_s); queued jobs end with engine_failed, "
        "and jobs are refused until one is back",
    ]
    later = p.wait("later")  # queued by someone who did not ask first: ended at the next check, without a new grace
    p.pool.check(100.6)
    assert later.ended and p.ends == ["/ldm3d/error", "/ldm3d/error"]
    with pytest.raises(EngineDown, match=r"\(1 restarting: worker 0 \(node 0\)\) and none came back within 0.5 s"):
        p.pool.refuse_if_down()


def test_a_worker_back_starts_a_new_grace_the_next_time(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1, grace_s=5.0)
    p.ready(0)
    p.states("restarting")
    p.pool.check(100.0)
    p.pool.check(106.0)  # the grace is over
    with pytest.raises(EngineDown):
        p.pool.refuse_if_down()
    p.states("idle")
    p.pool.check(107.0)
    p.states("restarting")
    p.pool.refuse_if_down()  # a new grace
    p.wait("waits")
    p.pool.check(108.0)
    p.pool.check(112.9)
    assert p.ends == []
    p.pool.check(113.0)
    assert p.ends == ["/ldm3d/error"]


def test_a_worker_ready_again_ends_the_grace(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1, grace_s=5.0)
    p.ready(0)
    p.states("restarting")
    p.pool.check(100.0)
    p.pool.check(106.0)
    p.ready(0)  # its thread brought it back (before the monitor looked)
    p.states("restarting")
    p.pool.refuse_if_down()
    p.wait("waits")
    p.pool.check(107.0)
    assert p.ends == []


def test_a_log_line_when_no_worker_is_alive_and_there_is_no_grace(
    tmp_path: Path, heard: Heard, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pool(tmp_path, heard, 1, grace_s=0.0)
    p.ready(0)
    p.states("restarting")
    with caplog.at_level(logging.WARNING, logger="bridge.workers.pool"):
        p.pool.check(1.0)
        p.pool.check(2.0)
    assert [r.getMessage() for r in caplog.records] == ["no worker is alive; jobs are refused until one is back"]


def test_a_pool_that_never_loaded_ends_its_queued_jobs_with_model_failed(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2, grace_s=60.0)
    p.wait("waits")
    p.workers[0].failed, p.workers[0].state = "no weights", "failed"
    p.pool._worker_ready(p.workers[0])
    assert (p.ends, p.pool.ready.is_set()) == ([], False)  # the other one may still load
    p.workers[1].failed, p.workers[1].state = "no memory", "failed"
    p.pool._worker_ready(p.workers[1])
    assert heard.heard == [
        (("127.0.0.1", 9000), "/ldm3d/error",
         ("waits", "model_failed", "worker 0 (node 0): no weights; worker 1 (node 1): no memory")),
    ]  # fmt: skip
    assert p.pool.ready.is_set() and p.firsts == []


def test_a_pool_that_failed_after_it_ran_ends_its_jobs_with_engine_failed_whatever_the_grace(
    tmp_path: Path, heard: Heard
) -> None:
    p = Pool(tmp_path, heard, 1, grace_s=60.0)
    p.ready(0)
    p.pool.ready.clear()
    p.wait("waits")
    p.workers[0].failed, p.workers[0].state = "stuck", "failed"
    p.pool.check(1.0)
    assert heard.heard == [(("127.0.0.1", 9000), "/ldm3d/error", ("waits", "engine_failed", "stuck"))]
    assert p.pool.ready.is_set()


def test_the_first_ready_worker_is_announced_once(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.ready(0)
    assert p.pool.ready.is_set() and p.firsts == [1]
    p.ready(1)
    p.ready(0)
    assert p.firsts == [1]


def test_the_object_models_licence_is_logged_once(
    tmp_path: Path, heard: Heard, caplog: pytest.LogCaptureFixture
) -> None:
    class Objects:
        model_id = "shap-e"
        licence = "MIT"

    p = Pool(tmp_path, heard, 2)
    for worker in p.workers:
        worker.objects = cast(Any, Objects())
    with caplog.at_level(logging.INFO, logger="bridge.workers.pool"):
        p.ready(0, 1)
    assert [r.getMessage() for r in caplog.records] == ["object model shap-e loaded; its licence: MIT"]


def test_quiet_and_already_ended_jobs_are_not_told_again(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1, grace_s=0.0)
    p.ready(0)
    quiet = p.wait("pre", quiet=True)
    told = p.wait("told")
    ended = p.wait("ended")
    assert ended.claim_outcome()  # its final message went out already
    p.states("restarting")
    p.pool.check(1.0)
    assert [h[2][0] for h in heard.heard] == ["told"]
    assert p.ends == ["/ldm3d/error", "/ldm3d/error"] and quiet.cancel.cancelled and ended.cancel.cancelled
    assert told.ended


def test_the_busy_lamp_after_a_job_is_on_while_any_worker_is_busy(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.states("idle", "busy")
    p.pool._job_ended()
    p.states("idle", "restarting")
    p.pool._job_ended()
    assert heard.heard == [(None, "/ldm3d/busy", (1,)), (None, "/ldm3d/busy", (0,))]


def test_a_worker_whose_thread_died_gets_a_new_thread(
    tmp_path: Path, heard: Heard, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pool(tmp_path, heard, 1)
    worker = p.workers[0]
    worker.died, worker.deaths = "SystemExit: gone", 2
    old = worker.thread
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.workers.pool"):
            p.pool.check(1.0)
        assert [r.getMessage() for r in caplog.records] == ["worker 0 (node 0): starting a new thread"]
        assert p.slots[0].opened.wait(5)  # the new thread loads the engine again
        assert worker.thread is not old and worker.died is None and worker.failed is None
    finally:
        p.pool.shutdown(cancel_running=False)
        worker.thread.join(5)


def test_a_worker_whose_thread_died_three_times_is_given_up(
    tmp_path: Path, heard: Heard, caplog: pytest.LogCaptureFixture
) -> None:
    p = Pool(tmp_path, heard, 2)
    worker = p.workers[1]
    worker.died, worker.deaths = "SystemExit: gone", 3
    with caplog.at_level(logging.ERROR, logger="bridge.workers.pool"):
        p.pool.check(1.0)
    assert (worker.state, p.slots[1].opened.is_set()) == ("failed", False) and worker.died is None
    assert worker.failed == "its thread died 3 times in a row (last: SystemExit: gone)"
    assert caplog.records[0].getMessage() == f"worker 1 (node 1) is given up: {worker.failed}"


def test_a_worker_whose_thread_still_runs_is_not_restarted(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    worker = p.workers[0]
    worker.died, worker.deaths = "SystemExit: gone", 3
    worker.thread = threading.Thread(target=p.slots[0].closed.wait, args=(5,))
    worker.thread.start()
    try:
        p.pool.check(1.0)
        assert (worker.failed, worker.died) == (None, "SystemExit: gone")
    finally:
        p.slots[0].close()
        worker.thread.join(5)


def test_the_monitor_times_out_running_jobs(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    p.ready(0)
    job = Job("long", GenerateRequest("a world"), None, on_done=p.ends.append)
    worker = p.workers[0]
    worker.running, worker.state, worker.started_at = job, "busy", 0.0
    p.pool.check(601.0)
    assert p.ends == ["/ldm3d/error"] and job.timed_out


def test_shutdown_cancels_waiting_and_running_jobs_and_stops_workers_waiting_for_an_engine(
    tmp_path: Path, heard: Heard
) -> None:
    p = Pool(tmp_path, heard, 5)
    p.states("idle", "loading", "warming", "restarting", "busy")
    running = Job("runs", GenerateRequest("a world"), None)
    p.workers[4].running = running
    p.wait("waits")
    p.pool.shutdown(cancel_running=True)
    assert heard.heard == [(("127.0.0.1", 9000), "/ldm3d/cancelled", ("waits",))] and p.ends == ["/ldm3d/cancelled"]
    assert [s.closed.is_set() for s in p.slots] == [False, True, True, True, False]
    assert running.cancel.cancelled
    assert p.queue.take(timeout=5) is None  # closed: a worker taking jobs stops at once


def test_shutdown_leaves_running_jobs_unless_asked(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    p.states("busy")
    running = Job("runs", GenerateRequest("a world"), None)
    p.workers[0].running = running
    p.pool.shutdown(cancel_running=False)
    assert not running.cancel.cancelled


@contextlib.contextmanager
def stuck(worker: Worker) -> Iterator[threading.Event]:
    """``worker``'s thread runs until the event yielded is set (at the latest when the block ends)."""
    release = threading.Event()
    worker.thread = threading.Thread(target=release.wait, args=(10,), daemon=True)
    worker.thread.start()
    try:
        yield release
    finally:
        release.set()
        worker.thread.join(5)


def test_join_closes_the_slots_of_the_workers_that_ended_and_says_when_one_is_stuck(
    tmp_path: Path, heard: Heard
) -> None:
    p = Pool(tmp_path, heard, 2)
    with stuck(p.workers[0]):
        assert p.pool.join(deadline=0.0, give_up=lambda: False) is False
        assert [s.closed.is_set() for s in p.slots] == [False, True]


def test_join_waits_for_a_worker_until_it_ends(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    with stuck(p.workers[0]) as release:
        threading.Timer(0.3, release.set).start()
        assert p.pool.join(deadline=float("inf"), give_up=lambda: False) is True
        assert p.slots[0].closed.is_set()


def test_join_stops_waiting_for_a_stuck_worker_at_its_deadline(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    with stuck(p.workers[0]):
        t0 = time.monotonic()
        assert p.pool.join(deadline=t0 + 0.2, give_up=lambda: False) is False
        assert time.monotonic() - t0 < 1.0  # it looks again every 0.1 s


def test_join_stops_waiting_when_told_to_give_up(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 1)
    with stuck(p.workers[0]):
        assert p.pool.join(deadline=float("inf"), give_up=lambda: True) is False


def test_start_starts_the_writer_the_previews_and_every_worker(tmp_path: Path, heard: Heard) -> None:
    p = Pool(tmp_path, heard, 2)
    p.pool.start()
    try:
        assert all(s.opened.wait(5) for s in p.slots)
        assert len(p.pool.threads) == 2
    finally:
        p.pool.shutdown(cancel_running=False)
        assert p.pool.join(deadline=float("inf"), give_up=lambda: False)


# -- real worker threads on stand-in engines -------------------------------------------------------


class Engine:
    """A stand-in engine (no model): a 64×64 grey world per job, made at once. A prompt with "lose"
    makes it raise EngineLost before the job began, ``lose_count`` times in all (any engine)."""

    model_id = "stand-in"
    identity = "stand-in@0"
    depth_model = None
    losses = 0

    def __init__(self, lose_count: int) -> None:
        self.lose_count = lose_count

    def resolve(self, request: GenerateRequest) -> ResolvedRequest:
        return resolve_text(dataclasses.replace(get_preset("tiny"), native_scheduler="ddim"), request)

    def free_memory(self) -> None:
        pass

    def generate(self, request: GenerateRequest, on_step: Any = None, cancel: Any = None, previews: Any = None) -> Any:
        if "lose" in request.prompt and Engine.losses < self.lose_count:
            Engine.losses += 1
            raise EngineLost("the node is gone", started=False)
        req = self.resolve(request)
        if on_step is not None:
            on_step(req.steps, req.steps)
        side = 64
        return RGBDResult(
            rgb=np.full((side, side, 3), 128, np.uint8), depth=np.zeros((side, side), np.uint16),
            depth_float=np.zeros((side, side), np.float32), request=req, prompt_used=request.prompt,
            prompt_truncated=False, negative_truncated=False, model_id=self.model_id, preset="tiny", device="cpu",
            dtype="float32", depth_layout="packed", timings=Timings(0.0, 0.0, 0.0),
        )  # fmt: skip


class EngineSlot:
    def __init__(self, where: str, lose_count: int) -> None:
        self.where = where
        self.lose_count = lose_count
        self.closed = False

    def open(self) -> tuple[EngineLike, EngineLike | None]:
        return cast(EngineLike, Engine(self.lose_count)), None

    def alive(self) -> bool:
        return True

    def kill(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def running(tmp_path: Path, heard: Heard) -> Iterator[Callable[[int, int], tuple[WorkerPool, JobQueue, Counters]]]:
    """``running(workers, losses)``: a started pool of stand-in engines, stopped after the test."""
    pools: list[WorkerPool] = []

    def start(n: int, lose_count: int) -> tuple[WorkerPool, JobQueue, Counters]:
        Engine.losses = 0
        queue, counters = JobQueue(), Counters()
        slots = [EngineSlot(f"node {i}", lose_count) for i in range(n)]
        settings = BridgeSettings(warmup=False, heartbeat_s=30.0)
        pool = WorkerPool(slots, queue, TextureWriter(tmp_path / "out"), heard, settings, counters)
        pools.append(pool)
        pool.start()
        assert pool.ready.wait(10)
        deadline = time.monotonic() + 10
        while pool.alive < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return pool, queue, counters

    yield start
    for pool in pools:
        pool.shutdown(cancel_running=True)
        assert pool.join(time.monotonic() + 10, lambda: False)


SENDER = ("127.0.0.1", 9000)


def test_workers_run_jobs_and_their_worlds_are_written_and_announced(
    running: Callable[[int, int], tuple[WorkerPool, JobQueue, Counters]], heard: Heard, tmp_path: Path
) -> None:
    pool, queue, _ = running(2, 0)
    assert pool.state == "idle" and pool.alive == 2
    for name in ("a", "b", "c"):
        queue.put(Job(name, GenerateRequest(f"world {name}", steps=2), SENDER))
    ended = heard.finals({"a", "b", "c"})
    assert [ended[name][0] for name in ("a", "b", "c")] == ["/ldm3d/ready"] * 3
    assert (None, "/ldm3d/busy", (0,)) in heard.heard  # the lamp, off once the pool was idle
    assert (SENDER, "/ldm3d/progress", ("a", 2, 2)) in heard.heard
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name in "abc") == ["a", "b", "c"]


def test_a_lost_job_runs_again_once_on_the_next_worker(
    running: Callable[[int, int], tuple[WorkerPool, JobQueue, Counters]], heard: Heard
) -> None:
    _, queue, counters = running(2, 1)
    queue.put(Job("j", GenerateRequest("lose me", steps=2), SENDER))
    assert heard.finals({"j"})["j"][0] == "/ldm3d/ready"
    assert counters.snapshot().get("jobs_retried") == 1 and counters.snapshot().get("workers_lost") == 1


def test_a_job_lost_twice_ends_in_engine_failed(
    running: Callable[[int, int], tuple[WorkerPool, JobQueue, Counters]], heard: Heard
) -> None:
    _, queue, counters = running(2, 2)
    queue.put(Job("j", GenerateRequest("lose me", steps=2), SENDER))
    address, args = heard.finals({"j"})["j"]
    assert (address, args[1]) == ("/ldm3d/error", "engine_failed")
    assert "was lost during the job: the node is gone" in str(args[2])
    assert counters.snapshot().get("jobs_retried") == 1
