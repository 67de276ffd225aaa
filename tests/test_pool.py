"""The worker pool in one process: two CPU "devices" (two engines), over real UDP and real files.

``serve --device cuda:0,cuda:1`` builds exactly this (one LocalSlot per device); the tiny engines'
steps sleep a little (``tests/engines.py``) as a GPU's would, without holding the CPU."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge.contract.engine_api import EngineLike, EngineLost, LocalSlot
from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.serve.server import Bridge
from ldm3d_engine import GenerateRequest, ModelNotAvailable

from .engines import slow_tiny

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
FINAL = ("/ldm3d/ready", "/ldm3d/error", "/ldm3d/cancelled")


def two_devices(tiny_dir: Path, step_s: float = 0.05) -> list[LocalSlot]:
    return [LocalSlot(lambda: slow_tiny(str(tiny_dir), step_s), where=f"cpu:{n}") for n in (0, 1)]


def wait_alive(bridge: Bridge, n: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while bridge.pool.alive != n and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bridge.pool.alive == n, [w.state for w in bridge.pool.workers]


def finals(client: OscClient, ids: set[str], timeout: float, seen: list[Message] | None = None) -> dict[str, Message]:
    """The final message of each job in ``ids`` (among ``seen`` first, then as they come)."""
    ended: dict[str, Message] = {}
    earlier = list(seen or [])
    deadline = time.monotonic() + timeout
    while set(ended) != ids:
        message = earlier.pop(0) if earlier else client.receive(max(0.0, deadline - time.monotonic()))
        if message is None:
            raise TimeoutError(f"jobs {sorted(ids - set(ended))} did not end within {timeout} s")
        if message.address in FINAL and message.args and message.args[0] in ids:
            ended[str(message.args[0])] = message
    return ended


def accepted(client: OscClient, n: int, seen: list[Message] | None = None) -> list[str]:
    """The ids of the next ``n`` accepted jobs (every message on the way is added to ``seen``)."""
    ids = []
    for _ in range(n):
        messages = client.wait_for(["/ldm3d/accepted"], 5)
        if seen is not None:
            seen.extend(messages)
        ids.append(str(messages[-1].args[0]))
    return ids


def workers(client: OscClient) -> list[tuple[object, ...]]:
    client.send("/ldm3d/workers")
    replies = []
    while len(replies) < 2:
        replies.append(client.wait_for(["/ldm3d/worker"], 2)[-1].args)
    return sorted(replies)


def test_two_devices_run_two_jobs_at_once_and_each_says_where(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    bridge = start_bridge(slots=two_devices(tiny_dir))
    wait_alive(bridge, 2)
    client = client_for(bridge)
    client.send("/ldm3d/status")
    assert client.wait_for(["/ldm3d/state"], 2)[-1].args[5:] == (2, 2)  # alive, total
    client.send("/ldm3d/generate", "world 0", "steps", 30)
    first = accepted(client, 1)
    client.wait_for(["/ldm3d/progress"], 30)
    assert sorted(str(w[2]) for w in workers(client)) == ["busy", "idle"]
    client.send("/ldm3d/status")  # the pool's word: one worker runs a job, so the pool is busy
    assert client.wait_for(["/ldm3d/state"], 2)[-1].args[0] == "busy"
    client.send("/ldm3d/generate", "world 1", "steps", 30)
    ids = [*first, *accepted(client, 1)]
    deadline = time.monotonic() + 10
    busy: list[tuple[object, ...]] = []
    while len(busy) < 2 and time.monotonic() < deadline:
        busy = [w for w in workers(client) if w[2] == "busy"]
    assert sorted(str(w[3]) for w in busy) == sorted(ids)  # both jobs run at the same time
    assert {w[1] for w in busy} == {"cpu:0", "cpu:1"}
    ended = finals(client, set(ids), 60)
    assert all(m.address == "/ldm3d/ready" for m in ended.values())
    places = {json.loads((Path(m.args[1]).parent / "meta.json").read_text())["worker"] for m in ended.values()}
    assert places == {"cpu:0", "cpu:1"}


def test_a_worker_that_cannot_load_leaves_the_other_working(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    def missing() -> EngineLike:
        raise ModelNotAvailable("x", "/cache", "model 'x' is not in the local cache")

    good = LocalSlot(lambda: slow_tiny(str(tiny_dir), 0.0), where="cpu:0")
    bridge = start_bridge(slots=[good, LocalSlot(missing, where="cpu:1")])
    client = client_for(bridge)
    deadline = time.monotonic() + 5
    while bridge.pool.workers[1].state != "failed" and time.monotonic() < deadline:
        time.sleep(0.02)
    client.send("/ldm3d/status")
    state = client.wait_for(["/ldm3d/state"], 2)[-1].args
    assert state[0] == "idle" and state[5:] == (1, 2)
    assert [w[2] for w in workers(client)] == ["idle", "failed"]
    client.send("/ldm3d/generate", "still made", "steps", 2)
    assert client.wait_for(FINAL, 30)[-1].address == "/ldm3d/ready"
    assert bridge.failed is None


class Remote:
    """A stand-in for an engine elsewhere (hardware we lack: a Ray actor is tested in test_ray_workers):
    ``lose()`` makes its running and next calls raise EngineLost, and ``open`` wait for ``back``."""

    def __init__(self, tiny_dir: Path, where: str) -> None:
        self.tiny_dir = tiny_dir
        self._where = where
        self.lost = threading.Event()
        self.back = threading.Event()
        self.back.set()

    @property
    def where(self) -> str:
        return self._where

    def open(self) -> tuple[EngineLike, None]:
        assert self.back.wait(30)
        self.lost.clear()
        engine = slow_tiny(str(self.tiny_dir), 0.05)
        real_generate = engine.generate

        def generate(
            request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
        ) -> object:
            if self.lost.is_set():
                raise EngineLost("the node is gone", started=False)

            def step(s: int, t: int) -> None:
                if self.lost.is_set():
                    raise EngineLost("the node is gone", started=True)
                on_step(s, t)  # type: ignore[operator]

            return real_generate(request, on_step=step, cancel=cancel, previews=previews)  # type: ignore[arg-type]

        engine.generate = generate  # type: ignore[method-assign]
        return engine, None

    def lose(self) -> None:
        self.back.clear()
        self.lost.set()

    def alive(self) -> bool:
        return not self.lost.is_set()

    def kill(self) -> bool:
        return False

    def close(self) -> None:
        self.back.set()


def test_with_every_worker_lost_jobs_are_refused_until_one_is_back(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    remotes = [Remote(tiny_dir, f"node {n}") for n in (0, 1)]
    # No grace: refused at once (with one, jobs wait for a worker to come back: test_pool_grace.py)
    bridge = start_bridge(slots=remotes, heartbeat_s=0.2, worker_grace_s=0.0)
    wait_alive(bridge, 2)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "interrupted", "steps", 40)
    job = accepted(client, 1)[0]
    client.wait_for(["/ldm3d/progress"], 10)
    for remote in remotes:
        remote.lose()
    error = client.wait_for(["/ldm3d/error"], 10, job_id=job)[-1]
    assert error.args[1] == "engine_failed" and "lost during the job" in error.args[2]
    deadline = time.monotonic() + 5
    while bridge.pool.alive and time.monotonic() < deadline:  # the idle one finds out at its next check
        time.sleep(0.05)
    client.send("/ldm3d/status")
    state = client.wait_for(["/ldm3d/state"], 2)[-1].args
    assert state[0] == "restarting" and state[5:] == (0, 2)
    client.send("/ldm3d/generate", "nobody to run it", "steps", 2)
    refused = client.wait_for(["/ldm3d/error", "/ldm3d/accepted"], 2)[-1]
    assert refused.address == "/ldm3d/error" and refused.args[1] == "engine_failed"
    assert "no worker is alive" in refused.args[2]
    remotes[1].back.set()  # one node comes back
    deadline = time.monotonic() + 30
    while bridge.pool.alive < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.send("/ldm3d/generate", "after", "steps", 2)
    assert client.wait_for(FINAL, 30)[-1].address == "/ldm3d/ready"
    client.send("/ldm3d/stats")
    stats = client.wait_for(["/ldm3d/stats"], 2)[-1].args
    counts = dict(zip(stats[::2], stats[1::2], strict=True))
    assert counts["workers_lost"] == 2
    started = time.monotonic()
    bridge.stop()  # the worker still waiting for its node stops waiting
    assert time.monotonic() - started < 5.0


def test_a_job_lost_before_it_began_runs_on_the_other_worker(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor
) -> None:
    remotes = [Remote(tiny_dir, f"node {n}") for n in (0, 1)]
    bridge = start_bridge(slots=remotes, heartbeat_s=30.0)  # no health check gets there first
    wait_alive(bridge, 2)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "long", "steps", 60)
    first = accepted(client, 1)[0]
    client.wait_for(["/ldm3d/progress"], 10)
    runner = next(w for w in bridge.pool.workers if w.running is not None)
    idle = remotes[1 - runner.index]
    idle.lose()  # the idle worker's node is gone, and nobody noticed yet
    client.send("/ldm3d/generate", "second", "steps", 2)
    second = accepted(client, 1)[0]
    ended = finals(client, {first, second}, 60)
    assert ended[second].address == "/ldm3d/ready"  # put back, then made by the other worker
    meta = json.loads((Path(ended[second].args[1]).parent / "meta.json").read_text())
    assert meta["worker"] == runner.slot.where
    client.send("/ldm3d/stats")
    stats = client.wait_for(["/ldm3d/stats"], 2)[-1].args
    assert dict(zip(stats[::2], stats[1::2], strict=True))["jobs_retried"] == 1
    idle.back.set()


def test_a_lost_job_is_put_back_once_only(tiny_dir: Path, start_bridge: Start, client_for: ClientFor) -> None:
    """Two of three nodes gone unnoticed: a job is lost on the first before it began, put back, lost
    again on the second, and then ends (``engine_failed``) rather than going round the nodes."""
    remotes = [Remote(tiny_dir, f"node {n}") for n in range(3)]
    bridge = start_bridge(slots=remotes, heartbeat_s=30.0)  # no health check gets there first
    wait_alive(bridge, 3)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "long", "steps", 60)
    first = accepted(client, 1)[0]
    client.wait_for(["/ldm3d/progress"], 10)
    runner = next(w for w in bridge.pool.workers if w.running is not None)
    for remote in remotes:
        if remote is not remotes[runner.index]:
            remote.lose()
    client.send("/ldm3d/generate", "unlucky", "steps", 2)
    second = accepted(client, 1)[0]
    ended = finals(client, {first, second}, 60)
    assert ended[second].address == "/ldm3d/error" and ended[second].args[1] == "engine_failed", ended[second]
    assert ended[first].address == "/ldm3d/ready"
    client.send("/ldm3d/stats")
    stats = client.wait_for(["/ldm3d/stats"], 2)[-1].args
    assert dict(zip(stats[::2], stats[1::2], strict=True))["jobs_retried"] == 1
    for remote in remotes:
        remote.back.set()


@pytest.mark.parametrize("mode", ["fifo", "latest-wins"])
def test_queue_modes_hold_with_two_workers(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor, mode: str
) -> None:
    bridge = start_bridge(slots=two_devices(tiny_dir, 0.05), queue_mode=mode)
    wait_alive(bridge, 2)
    client = client_for(bridge)
    # Each busy job runs before the next job comes: latest-wins replaces a job still waiting (on a loaded
    # machine "busy 1" once arrived before a worker had taken "busy 0", and replaced it).
    busy: list[str] = []
    for n in range(2):
        client.send("/ldm3d/generate", f"busy {n}", "steps", 80)  # 4 s: both run at once
        busy += accepted(client, 1)
        deadline = time.monotonic() + 60  # a loaded machine is slower, not a reason to go on
        while len(bridge.pool.running) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(bridge.pool.running) == n + 1, f"busy {n} did not start: {bridge.pool.worker_args()}"
    for n in range(3):
        client.send("/ldm3d/generate", f"waiting {n}", "steps", 2)
    seen: list[Message] = []
    waiting = accepted(client, 3, seen)
    ended = finals(client, {*busy, *waiting}, 60, seen)
    outcomes = [ended[job].address for job in waiting]
    if mode == "fifo":
        assert outcomes == ["/ldm3d/ready"] * 3
    else:  # the newest waiting job replaces the older ones; the two running ones finish
        assert outcomes == ["/ldm3d/cancelled", "/ldm3d/cancelled", "/ldm3d/ready"]
    assert [ended[job].address for job in busy] == ["/ldm3d/ready"] * 2


def test_pregeneration_uses_every_idle_worker_and_a_live_job_takes_a_pregeneration_place(
    tiny_dir: Path, start_bridge: Start, client_for: ClientFor, tmp_path: Path
) -> None:
    shows = tmp_path / "shows"
    shows.mkdir()
    cues = "".join(f'\n[[cue]]\nnumber = "{n}"\nprompt = "scene {n}"\nseed = {n}\nsteps = 12\n' for n in range(6))
    (shows / "six.toml").write_text('name = "Six"\nfallback = "0"\n' + cues)
    bridge = start_bridge(slots=two_devices(tiny_dir, 0.1), input_dirs=(str(shows),))
    wait_alive(bridge, 2)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "six.toml")
    client.wait_for(["/ldm3d/ready"], 60)  # its first cue, rendered live
    client.send("/ldm3d/show/pregen")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and [j.quiet for j in bridge.pool.running] != [True, True]:
        time.sleep(0.02)
    assert [j.quiet for j in bridge.pool.running] == [True, True]  # two scenes at once, one per worker
    client.send("/ldm3d/generate", "live", "steps", 2)
    live = accepted(client, 1)[0]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and live not in [j.id for j in bridge.pool.running]:
        time.sleep(0.01)
    running = bridge.pool.running
    assert live in [j.id for j in running] and [j.quiet for j in running].count(True) == 1  # the other goes on
    assert client.wait_for(FINAL, 30, job_id=live)[-1].address == "/ldm3d/ready"
    progress = client.wait_for(["/ldm3d/show/progress"], 60)[-1].args
    while progress[0] != progress[1]:
        progress = client.wait_for(["/ldm3d/show/progress"], 60)[-1].args
    assert progress == (6, 6)


def test_serve_with_a_device_list_runs_a_worker_per_device(tmp_path: Path) -> None:
    """The real `serve --device cpu,mps`: one worker per device; this machine has no mps, so that worker
    is out with the engine's own message and the cpu one serves (state idle, 1 of 2 alive)."""
    from .served import serve_tiny

    proc, port = serve_tiny(tmp_path / "out", "--device", "cpu,mps", "--no-http")
    try:
        with OscClient("127.0.0.1", port) as client:
            deadline = time.monotonic() + 60
            state: tuple[object, ...] = ()
            while time.monotonic() < deadline:
                client.send("/ldm3d/status")
                state = client.wait_for(["/ldm3d/state"], 5)[-1].args
                if state[5:] == (1, 2) and state[0] == "idle":
                    break
                time.sleep(0.1)
            assert state[0] == "idle" and state[5:] == (1, 2)
            assert [(w[1], w[2]) for w in workers(client)] == [("cpu", "idle"), ("mps", "failed")]
            client.send("/ldm3d/generate", "on the cpu", "steps", 2, "width", 64, "height", 64)
            ready = client.wait_for(FINAL, 60)[-1]
            assert ready.address == "/ldm3d/ready"
            assert json.loads((Path(str(ready.args[1])).parent / "meta.json").read_text())["worker"] == "cpu"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
