"""Hardening II (issue 12): inputs that used to end in ``internal_error``, refusals that came only
after ``/ldm3d/accepted``, throttled tracebacks, shutdown that keeps its promise, threads that die,
and one bridge per output folder. Real bridges on loopback UDP, real files."""

from __future__ import annotations

import logging
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.errors import FolderInUse
from bridge.osc.client import OscClient
from bridge.osc.codec import encode_message
from bridge.output.lock import FolderLock
from bridge.serve.server import Bridge
from ldm3d_engine import Cancelled, GenerateRequest
from ldm3d_engine.models.ldm3d import Engine

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
READY_OR_ERROR = ("/ldm3d/ready", "/ldm3d/error")


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width``×``height`` (a decompression bomb's header), and no pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(data + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB").save(folder / "photo.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L").save(folder / "depth-8bit.png")
    _png_header_only(folder / "bomb.png", 100_000, 100_000)
    return folder


@pytest.mark.parametrize(
    ("address", "args", "code", "says"),
    [
        ("/ldm3d/seed", (1e30,), "bad_arguments", "out of range"),
        ("/ldm3d/size", (1e20, 1e20), "bad_arguments", "out of range"),
        ("/ldm3d/steps", (2**40,), "bad_arguments", "1099511627776 is out of range; whole numbers here go from"),
        ("/ldm3d/generate", ("p", "seed", 10**11), "bad_arguments", "seed' 100000000000 is out of range"),
        ("/ldm3d/img2img", ("a" * 300 + ".png", "p"), "bad_arguments", "too long"),
        ("/ldm3d/img2img", ("d/" * 2500 + "x.png", "p"), "bad_arguments", "too long"),
        ("/ldm3d/img2img", ("bomb.png", "p"), "bad_arguments", "images up to"),
        ("/ldm3d/img2img", ("photo.png", "p", "depth", "depth-8bit.png"), "bad_arguments", "not a 16-bit depth map"),
        ("/ldm3d/recall", ("20261122-031502-123-0007\n",), "bad_arguments", "is not a job id"),
    ],
)
def test_odd_values_get_a_clear_error_before_any_job(
    start_bridge: Start,
    client_for: ClientFor,
    inputs: Path,
    address: str,
    args: tuple[object, ...],
    code: str,
    says: str,
) -> None:
    bridge = start_bridge(input_dirs=(str(inputs),))
    client = client_for(bridge)
    client.subscribe_self()
    client.send(address, *args)  # type: ignore[arg-type]
    seen = client.wait_for(["/ldm3d/error"], 10)
    assert seen[-1].args[1] == code and says in str(seen[-1].args[2]), seen[-1]
    assert "/ldm3d/accepted" not in [m.address for m in seen]  # refused before it was queued
    assert "internal_error" not in bridge.counters.snapshot()


def test_a_huge_float_is_echoed_not_an_internal_error(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    client.send_raw(encode_message("/ldm3d/guidance", 1e300))  # sent as a double
    assert client.wait_for(["/ldm3d/stage"], 5)[-1].args == ("guidance", 1e300)
    client.send("/ldm3d/prompt", "x")
    client.send("/ldm3d/go")
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "bad_arguments" and "guidance" in str(error.args[2])
    assert "internal_error" not in bridge.counters.snapshot()


def test_an_upscale_too_large_for_the_model_is_refused_before_it_is_accepted(
    start_bridge: Start, client_for: ClientFor
) -> None:
    client = client_for(start_bridge(upscale_model="tiny-sr"))
    client.send("/ldm3d/generate", "a reef", "steps", 1, "width", 320, "height", 320)
    source = client.wait_for(READY_OR_ERROR, 60)[-1]
    assert source.address == "/ldm3d/ready"
    client.send("/ldm3d/upscale", source.args[0], "steps", 1)  # ×4 = 1280 > tiny-sr's 1024
    seen = client.wait_for(["/ldm3d/error"], 10)
    assert seen[-1].args[1] == "bad_arguments" and "/ldm3d/accepted" not in [m.address for m in seen]


class Broken:
    """An engine whose request check fails with a bug (not an EngineError): an internal error."""

    model_id = "broken"

    def resolve(self, request: GenerateRequest) -> object:
        raise RuntimeError("a bug in the engine's checks")


def test_tracebacks_are_logged_once_per_kind_per_interval(
    start_bridge: Start, client_for: ClientFor, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = start_bridge(engine_factory=Broken)
    client = client_for(bridge)
    client.subscribe_self()
    with caplog.at_level(logging.WARNING, logger="bridge"):
        for _ in range(200):
            client.send("/ldm3d/generate", "x")
        errors = []
        deadline = time.monotonic() + 10
        while len(errors) < 200 and time.monotonic() < deadline:
            message = client.receive(1)
            if message is not None and message.address == "/ldm3d/error":
                errors.append(message)
    assert len(errors) == 200 and all(e.args[1] == "internal_error" for e in errors)
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1  # was one per message: 6.7 MB of log in 3 s


# -- shutdown, dead threads, the folder lock --------------------------------------------


class UntilCancelled:
    """An engine whose job runs until it is cancelled (a job longer than anyone waits)."""

    def __init__(self, real: Engine) -> None:
        self.real = real
        self.model_id = real.model_id
        self.identity = real.identity  # the bridge's contract (EngineLike): the scene library keys on it
        self.started = threading.Event()

    def resolve(self, request: GenerateRequest) -> object:
        return self.real.resolve(request)

    def generate(
        self, request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
    ) -> object:
        self.started.set()
        while not cancel.cancelled:  # type: ignore[attr-defined]
            time.sleep(0.01)
        raise Cancelled(1, 1)


def test_finish_on_shutdown_keeps_enforcing_the_job_timeout_and_ends_the_job(
    load_tiny: Callable[[str], Engine], start_bridge: Start, client_for: ClientFor
) -> None:
    """A job longer than the shutdown wait (today: the process aborted and the client heard nothing):
    the monitor still times it out, the client gets its final message, stop() returns cleanly."""
    engine = UntilCancelled(load_tiny("tiny"))
    bridge = start_bridge(engine_factory=lambda: engine, on_shutdown="finish", job_timeout_s=1.0, stuck_grace_s=5.0)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "forever", "steps", 1)
    job = client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
    assert engine.started.wait(5)
    started = time.monotonic()
    assert bridge.stop() is True  # the worker ended
    assert 0.8 < time.monotonic() - started < 5.0
    final = client.wait_for(["/ldm3d/error", "/ldm3d/ready", "/ldm3d/cancelled"], 2, job_id=job)[-1]
    assert final.address == "/ldm3d/error" and final.args[1] == "timeout"


def test_a_timed_out_job_ends_in_timeout_even_when_the_engine_stops_at_once(
    load_tiny: Callable[[str], Engine], start_bridge: Start, client_for: ClientFor
) -> None:
    """The monitor cancels a job past its timeout; an engine that stops at once made the worker end
    the job first, as ``cancelled`` (seen on a loaded machine). The monitor is held up right after
    the cancel here (a log handler that sleeps): the client must still hear ``timeout``."""
    import logging

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "timeout; cancelling it" in record.getMessage():
                time.sleep(0.5)  # the monitor's thread, preempted between the cancel and what follows

    engine = UntilCancelled(load_tiny("tiny"))
    bridge = start_bridge(engine_factory=lambda: engine, job_timeout_s=1.0)
    handler, worker_log = Slow(), logging.getLogger("bridge.workers.worker")
    worker_log.addHandler(handler)
    try:
        client = client_for(bridge)
        client.send("/ldm3d/generate", "forever", "steps", 1)
        job = client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
        final = client.wait_for(["/ldm3d/error", "/ldm3d/ready", "/ldm3d/cancelled"], 10, job_id=job)[-1]
        assert (final.address, final.args[1:2]) == ("/ldm3d/error", ("timeout",))
    finally:
        worker_log.removeHandler(handler)


class Dies:
    """An engine that takes its thread down (something no ``except Exception`` catches), ``times`` times."""

    model_id = "dies"

    def __init__(self, real: Engine, deaths: list[int]) -> None:
        self.real = real
        self.identity = real.identity  # the bridge's contract (EngineLike): the scene library keys on it
        self.deaths = deaths  # shared by every engine the factory makes: how many deaths are left

    def resolve(self, request: GenerateRequest) -> object:
        return self.real.resolve(request)

    def generate(
        self, request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
    ) -> object:
        if self.deaths[0] > 0:
            self.deaths[0] -= 1
            raise SystemExit("the engine pulled the thread down")
        return self.real.generate(request, on_step=on_step, cancel=cancel, previews=previews)  # type: ignore[arg-type]


def test_a_worker_thread_that_dies_is_replaced_and_its_job_fails(
    load_tiny: Callable[[str], Engine], start_bridge: Start, client_for: ClientFor
) -> None:
    """Once the process stayed up with a dead worker and jobs queued forever; then the bridge said failed;
    now the job that took the thread down ends in engine_failed, a new thread loads the engine again, and
    the next job is made."""
    deaths = [1]
    bridge = start_bridge(engine_factory=lambda: Dies(load_tiny("tiny"), deaths))
    client = client_for(bridge)
    client.send("/ldm3d/generate", "x", "steps", 1)
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "engine_failed" and "died" in error.args[2]
    deadline = time.monotonic() + 10
    while not bridge.pool.alive and time.monotonic() < deadline:  # meanwhile jobs wait (worker_grace_s)
        time.sleep(0.02)
    client.send("/ldm3d/generate", "after", "steps", 1)
    assert client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 30)[-1].address == "/ldm3d/ready"
    assert bridge.failed is None


def test_a_worker_whose_thread_keeps_dying_makes_the_bridge_report_failed(
    load_tiny: Callable[[str], Engine], start_bridge: Start, client_for: ClientFor
) -> None:
    """Three deaths in a row, no job made in between: the worker is given up, and with no other worker
    the bridge says failed (`serve` exits 1 for its supervisor: test_serve_exit_status_tells_a_supervisor)."""
    bridge = start_bridge(engine_factory=lambda: Dies(load_tiny("tiny"), [99]))
    client = client_for(bridge)
    for n in range(3):
        deadline = time.monotonic() + 5
        while not bridge.pool.alive and time.monotonic() < deadline:  # the new thread has its engine
            time.sleep(0.02)
        client.send("/ldm3d/generate", f"x{n}", "steps", 1)
        assert client.wait_for(["/ldm3d/error"], 5)[-1].args[1] == "engine_failed"
    deadline = time.monotonic() + 5
    while bridge.failed is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert bridge.failed is not None and "died 3 times" in bridge.failed
    client.send("/ldm3d/status")
    assert client.wait_for(["/ldm3d/state"], 2)[-1].args[0] == "failed"


def test_a_second_bridge_on_the_same_folder_refuses_to_start(start_bridge: Start, tmp_path: Path) -> None:
    first = start_bridge()
    with pytest.raises(FolderInUse, match="in use by another bridge"):
        start_bridge(output=str(first.writer.root))
    assert first.failed is None  # the first one goes on


def _serve(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--no-zeroconf"]
    env = {**os.environ, "LDM3D_BRIDGE_WARMUP": "false"}
    return subprocess.run(
        [*command, "--output", str(out), *extra], capture_output=True, text=True, env=env, timeout=120
    )


_STUCK_SERVE = """
import sys, threading
import ldm3d_engine
from bridge.cli.main import main

real_load = ldm3d_engine.load_engine


class StuckEngine:
    # A stand-in for a driver call that never returns (a hung GPU): generate ignores cancel forever.
    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, *args, **kwargs):
        threading.Event().wait()


ldm3d_engine.load_engine = lambda settings: StuckEngine(real_load(settings))
sys.exit(main(sys.argv[1:]))
"""


def test_serve_exits_1_when_the_engine_is_stuck(tmp_path: Path) -> None:
    """Pins the bug "a stuck engine exits 0": systemd's Restart=on-failure must see 1, with one line why."""
    with OscClient("127.0.0.1", 9) as probe:
        port = probe.port
    config = tmp_path / "bridge.toml"
    config.write_text("[bridge]\njob_timeout_s = 0.5\nstuck_grace_s = 0.5\n")
    command = [sys.executable, "-c", _STUCK_SERVE, "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--no-zeroconf", "--model", "tiny", "--output", str(tmp_path / "out"), "--config", str(config)]
    env = {**os.environ, "LDM3D_BRIDGE_WARMUP": "false"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        with OscClient("127.0.0.1", port) as client:
            deadline = time.monotonic() + 90
            while True:  # until the model is loaded and the bridge answers
                assert time.monotonic() < deadline and proc.poll() is None, "the bridge did not start"
                client.send("/ldm3d/status")
                state = client.receive(0.5)
                if state is not None and state.address == "/ldm3d/state" and state.args[0] == "idle":
                    break
            client.send("/ldm3d/generate", "a hang", "steps", 1, "width", 64, "height", 64)
            _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("ldm3d-bridge: error: the bridge cannot go on:") and "stuck" in last


def test_serve_exit_status_tells_a_supervisor(tmp_path: Path) -> None:
    """What systemd's Restart=on-failure sees: 1 when the bridge cannot go on, with one line saying why."""
    failed = _serve(tmp_path / "out", "--model", str(tmp_path / "no-such-model"))
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("ldm3d-bridge: error: the bridge cannot go on:")
    holder = FolderLock(tmp_path / "out")  # another bridge holds the folder
    holder.acquire()
    try:
        refused = _serve(tmp_path / "out", "--model", "tiny")
    finally:
        holder.release()
    assert refused.returncode == 1
    assert f"in use by another bridge (pid {os.getpid()} on" in refused.stderr.strip().splitlines()[-1]
