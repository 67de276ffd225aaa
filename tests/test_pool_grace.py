"""No worker alive: queued jobs wait ``worker_grace_s`` for one to come back (issue #29).

Real bridges over real UDP, with one worker each: a stand-in for a remote engine that is lost and comes
back when told (``Remote``, as a Ray actor would), or an engine in this process that takes its worker's
thread down (``Dying``: the pool starts a new thread, which loads the engine again)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge.contract.engine_api import EngineLike
from bridge.errors import EngineDown
from bridge.notify.limits import Counters
from bridge.notify.notifier import Notifier
from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.output.writer import TextureWriter
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from bridge.workers.jobs import Job, JobQueue
from bridge.workers.pool import WorkerPool
from ldm3d_engine import GenerateRequest

from .engines import slow_tiny
from .test_pool import FINAL, Remote, accepted, finals, wait_alive

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


class Dying:
    """An engine in this process whose job "die" takes the worker's thread down (SystemExit, which no
    ``except Exception`` catches) once ``release`` is set. The new thread's load then waits for ``back``
    (``reopen="wait"``), or takes that thread down too (``reopen="die"``: given up after three deaths)."""

    where = "this process"

    def __init__(self, tiny_dir: Path, reopen: str) -> None:
        self.tiny_dir = tiny_dir
        self.reopen = reopen
        self.opened = 0
        self.release = threading.Event()
        self.back = threading.Event()

    def open(self) -> tuple[EngineLike, None]:
        self.opened += 1
        if self.opened > 1:
            if self.reopen == "die":
                raise SystemExit("the load pulled the thread down")
            assert self.back.wait(30)
        engine = slow_tiny(str(self.tiny_dir), 0.0)
        real_generate = engine.generate

        def generate(request: GenerateRequest, on_step: Any = None, cancel: Any = None, previews: Any = None) -> Any:
            if "die" in request.prompt:
                assert self.release.wait(30)
                raise SystemExit("the engine pulled the thread down")
            return real_generate(request, on_step=on_step, cancel=cancel, previews=previews)

        engine.generate = generate  # type: ignore[method-assign]
        return engine, None

    def alive(self) -> bool:
        return True

    def kill(self) -> bool:
        return False

    def close(self) -> None:  # a bridge stopping: nothing waits any longer
        self.release.set()
        self.back.set()


def lose_with_a_job_queued(bridge: Bridge, client: OscClient, remote: Remote) -> tuple[str, list[Message]]:
    """The only worker runs a job and another waits; then its engine is lost: the running job ends in
    engine_failed, as it always did. Returns the waiting job's id and what came meanwhile."""
    wait_alive(bridge, 1)
    seen: list[Message] = []
    client.send("/ldm3d/generate", "interrupted", "steps", 40)
    running = accepted(client, 1, seen)[0]
    client.send("/ldm3d/generate", "waiting", "steps", 2)
    waiting = accepted(client, 1, seen)[0]
    seen += client.wait_for(["/ldm3d/progress"], 10, job_id=running)
    remote.lose()
    error = finals(client, {running}, 10, seen)[running]
    assert error.address == "/ldm3d/error" and error.args[1] == "engine_failed"
    assert "lost during the job" in str(error.args[2])
    wait_alive(bridge, 0, 5)
    return waiting, seen


def die_with_a_job_queued(client: OscClient, dying: Dying) -> tuple[str, str, list[Message]]:
    """A job that kills the worker's thread, and one queued behind it; then the thread dies. Returns
    both ids and what came meanwhile."""
    seen: list[Message] = []
    client.send("/ldm3d/generate", "die", "steps", 2)
    dies = accepted(client, 1, seen)[0]
    client.send("/ldm3d/generate", "waiting", "steps", 2)
    waiting = accepted(client, 1, seen)[0]
    dying.release.set()
    return dies, waiting, seen


def none_ends(client: OscClient, ids: set[str], seconds: float, seen: list[Message]) -> None:
    """For ``seconds``, no job of ``ids`` ends (every message is added to ``seen``)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        message = client.receive(left)
        if message is not None:
            seen.append(message)
    ended = [m for m in seen if m.address in FINAL and m.args and m.args[0] in ids]
    assert not ended, ended


def submit(client: OscClient, prompt: str) -> Message:
    """Send a job: its /ldm3d/accepted, or the /ldm3d/error that refused it."""
    client.send("/ldm3d/generate", prompt, "steps", 2)
    return client.wait_for(["/ldm3d/accepted", "/ldm3d/error"], 5)[-1]


def test_a_queued_job_waits_for_a_lost_engine_and_runs_when_it_is_back(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    remote = Remote(tiny_dir, "node 0")
    bridge = start_bridge(slots=[remote], heartbeat_s=0.2, worker_grace_s=30.0)
    client = client_for(bridge)
    waiting, seen = lose_with_a_job_queued(bridge, client, remote)
    sent_meanwhile = submit(client, "sent while none is alive")
    assert sent_meanwhile.address == "/ldm3d/accepted"  # within the grace: queued, not refused
    later = str(sent_meanwhile.args[0])
    none_ends(client, {waiting, later}, 1.5, seen)
    assert bridge.pool.state == "restarting" and len(bridge.queue) == 2
    remote.back.set()  # the node is back
    ended = finals(client, {waiting, later}, 30, seen)
    assert [ended[job].address for job in (waiting, later)] == ["/ldm3d/ready", "/ldm3d/ready"]


def test_a_queued_job_waits_for_a_new_worker_thread_and_runs_on_it(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    dying = Dying(tiny_dir, reopen="wait")
    bridge = start_bridge(slots=[dying], worker_grace_s=30.0)
    client = client_for(bridge)
    try:
        dies, waiting, seen = die_with_a_job_queued(client, dying)
        error = finals(client, {dies}, 10, seen)[dies]
        assert error.args[1] == "engine_failed" and "died" in str(error.args[2])
        deadline = time.monotonic() + 5
        while dying.opened < 2 and time.monotonic() < deadline:  # the new thread loads the engine again
            time.sleep(0.02)
        assert dying.opened == 2 and bridge.pool.state == "restarting"
        none_ends(client, {waiting}, 1.0, seen)
        dying.back.set()  # its load ends
        assert finals(client, {waiting}, 30, seen)[waiting].address == "/ldm3d/ready"
    finally:
        dying.close()


def test_with_no_worker_back_queued_jobs_end_after_the_grace_and_new_ones_are_refused(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.workers.pool")
    remote = Remote(tiny_dir, "node 0")
    bridge = start_bridge(slots=[remote], heartbeat_s=0.2, worker_grace_s=1.0)
    client = client_for(bridge)
    waiting, seen = lose_with_a_job_queued(bridge, client, remote)
    down_at = time.monotonic()  # after the pool went down: the grace began no later than this
    sent_meanwhile = submit(client, "sent within the grace")
    assert sent_meanwhile.address == "/ldm3d/accepted"
    later = str(sent_meanwhile.args[0])
    ended = finals(client, {waiting, later}, 10, seen)
    waited = time.monotonic() - down_at
    assert waited >= 0.8, f"ended {waited:.2f} s after the pool went down; the grace is 1 s"
    for job in (waiting, later):
        assert ended[job].address == "/ldm3d/error" and ended[job].args[1] == "engine_failed"
        assert "none came back within 1 s (worker_grace_s)" in str(ended[job].args[2])
    refused = submit(client, "sent after the grace")
    assert refused.address == "/ldm3d/error" and refused.args[1] == "engine_failed"
    assert "no worker is alive" in str(refused.args[2]) and "within 1 s" in str(refused.args[2])
    time.sleep(0.5)  # a few more monitor ticks: each log line stays one
    messages = [r.getMessage() for r in caplog.records if r.name == "bridge.workers.pool"]
    assert sum("queued jobs wait up to 1 s for one to come back" in m for m in messages) == 1, messages
    assert sum("no worker came back within 1 s" in m for m in messages) == 1, messages


def test_with_no_grace_queued_jobs_end_at_once_and_new_ones_are_refused(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    remote = Remote(tiny_dir, "node 0")
    bridge = start_bridge(slots=[remote], heartbeat_s=0.2, worker_grace_s=0.0)
    client = client_for(bridge)
    waiting, seen = lose_with_a_job_queued(bridge, client, remote)
    error = finals(client, {waiting}, 2, seen)[waiting]
    assert error.address == "/ldm3d/error" and error.args[1] == "engine_failed"
    assert "no worker is alive" in str(error.args[2]) and "worker_grace_s" not in str(error.args[2])
    refused = submit(client, "nobody to run it")
    assert refused.address == "/ldm3d/error" and refused.args[1] == "engine_failed"


def test_a_pool_that_failed_for_good_ends_its_queued_jobs_at_once_whatever_the_grace(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    """The worker's thread dies, and each new one dies loading the engine: with the third death it is
    given up, and nobody can run the waiting job, however long the grace."""
    dying = Dying(tiny_dir, reopen="die")
    bridge = start_bridge(slots=[dying], worker_grace_s=60.0)
    client = client_for(bridge)
    try:
        dies, waiting, seen = die_with_a_job_queued(client, dying)
        ended = finals(client, {dies, waiting}, 10, seen)
        assert ended[dies].args[1] == "engine_failed" and "died" in str(ended[dies].args[2])
        assert ended[waiting].address == "/ldm3d/error" and ended[waiting].args[1] == "engine_failed"
        assert "died 3 times" in str(ended[waiting].args[2])
        assert bridge.pool.state == "failed"
    finally:
        dying.close()


def test_the_grace_runs_on_the_monitors_clock_and_starts_again_after_a_worker_was_back(tmp_path: Path) -> None:
    """The pool alone (its worker never started), its monitor's check driven with a clock of the test's."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        queue = JobQueue()
        slot = Remote(tmp_path, "node 0")
        settings = BridgeSettings(worker_grace_s=5.0)
        pool = WorkerPool([slot], queue, TextureWriter(tmp_path / "out"), Notifier(sock), settings, Counters())
        worker = pool.workers[0]
        worker.state = "idle"
        pool._worker_ready(worker)  # what its thread does once its engine is loaded
        ends: list[str] = []
        queue.put(Job("waits", GenerateRequest("a world"), None, quiet=True, on_done=ends.append))

        worker.state = "restarting"  # its engine is lost
        pool.check(100.0)  # the grace begins
        pool.check(104.9)
        pool.refuse_if_down()  # within the grace: a new job would be queued
        worker.state = "idle"  # back…
        pool.check(105.0)
        worker.state = "restarting"  # … and lost again: a new grace, from now
        pool.check(106.0)
        pool.check(110.9)
        assert ends == [] and len(queue) == 1
        pool.refuse_if_down()
        pool.check(111.0)
        assert ends == ["/ldm3d/error"] and len(queue) == 0
        with pytest.raises(EngineDown, match="none came back within 5 s"):
            pool.refuse_if_down()
