"""Previews over OSC on the real bridge: what a client sees while a world forms (``/ldm3d/preview``
and the preview slot in the output folder), over real UDP on loopback, with the tiny model slowed
down per step (so a job lasts long enough to be watched)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.osc.client import FINAL, OscClient
from bridge.osc.codec import Message
from bridge.serve.server import Bridge
from bridge.workers.jobs import Job
from bridge.workers.previews import PreviewDesk
from ldm3d_engine.types import GenerateRequest, Preview
from tests.engines import slow_tiny

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


def follow(client: OscClient, timeout: float = 60.0) -> tuple[str, list[Message], Message]:
    """The job id of the next ``/ldm3d/accepted``, every message of that job up to its end, and the end."""
    job_id = str(client.wait_for(["/ldm3d/accepted"], 10)[-1].args[0])
    seen: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = client.receive(deadline - time.monotonic())
        if message is None:
            break
        if message.args and message.args[0] == job_id:
            seen.append(message)
            if message.address in FINAL:
                return job_id, seen, message
    raise TimeoutError(f"job {job_id} did not end; saw {seen}")


@pytest.fixture
def slow_bridge(start_bridge: Start, tiny_dir: Path) -> Bridge:
    # 40 ms a step: a 12-step job lasts half a second, time for previews at up to 1000 a second
    return start_bridge(engine_factory=lambda: slow_tiny(str(tiny_dir), 0.04), progress_hz=1000.0)


def test_previews_arrive_in_order_name_the_slot_and_stop_at_the_world(
    slow_bridge: Bridge, client_for: ClientFor
) -> None:
    client = client_for(slow_bridge)
    client.send("/ldm3d/generate", "a glacier", "steps", 12, "preview_every", 3, "seed", 5)
    job_id, seen, end = follow(client)
    assert end.address == "/ldm3d/ready"
    previews = [m for m in seen if m.address == "/ldm3d/preview"]
    assert [m.args[1:3] for m in previews] == [(3, 12), (6, 12), (9, 12)]  # in order; none at 12: the world
    assert seen.index(previews[-1]) < seen.index(end)
    slot = Path(slow_bridge.settings.output).resolve() / "previews" / "0"
    assert previews[-1].args[3:] == (str(slot / "rgb.png"), str(slot / "depth.png"))
    rgb, depth = Image.open(slot / "rgb.png"), Image.open(slot / "depth.png")
    assert rgb.mode == "RGB" and rgb.size == (8, 8)  # the 64×64 world's latent size
    assert depth.mode in ("I;16", "I") and depth.size == (8, 8)
    # the finished world is the real decode, as without previews
    client.send("/ldm3d/generate", "a glacier", "steps", 12, "preview_every", 0, "seed", 5)
    _, plain, plain_end = follow(client)
    assert not [m for m in plain if m.address == "/ldm3d/preview"]
    a = np.asarray(Image.open(str(end.args[1])))
    b = np.asarray(Image.open(str(plain_end.args[1])))
    np.testing.assert_array_equal(a, b)
    assert job_id in str(end.args[1])


def test_the_server_default_applies_and_a_job_can_turn_it_off(
    start_bridge: Start, tiny_dir: Path, client_for: ClientFor
) -> None:
    bridge = start_bridge(engine_factory=lambda: slow_tiny(str(tiny_dir), 0.02), progress_hz=1000.0, preview_every=4)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "dunes", "steps", 9)
    _, seen, end = follow(client)
    assert end.address == "/ldm3d/ready"
    assert [m.args[1] for m in seen if m.address == "/ldm3d/preview"] == [4, 8]


def test_previews_never_come_faster_than_progress(start_bridge: Start, tiny_dir: Path, client_for: ClientFor) -> None:
    bridge = start_bridge(engine_factory=lambda: slow_tiny(str(tiny_dir), 0.02), progress_hz=10.0)
    client = client_for(bridge)
    client.send("/ldm3d/generate", "dunes", "steps", 30, "preview_every", 1)
    _, seen, _ = follow(client)
    times = [m for m in seen if m.address == "/ldm3d/preview"]
    progress = [m for m in seen if m.address == "/ldm3d/progress"]
    assert 2 <= len(times) <= len(progress) < 29  # 30 steps in ~0.6 s at 10 a second


def test_a_cancelled_job_sends_no_preview_after_its_end(slow_bridge: Bridge, client_for: ClientFor) -> None:
    client = client_for(slow_bridge)
    client.send("/ldm3d/generate", "a storm", "steps", 40, "preview_every", 1)
    job_id = str(client.wait_for(["/ldm3d/preview"], 20)[-1].args[0])
    client.send("/ldm3d/cancel", job_id)
    client.wait_for(["/ldm3d/cancelled"], 20, job_id=job_id)
    late = []
    deadline = time.monotonic() + 0.5
    while (message := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
        late.append(message)
    assert not [m for m in late if m.address == "/ldm3d/preview"], late


@pytest.mark.parametrize("value", [-1, 151])
def test_a_bad_preview_every_is_refused_and_nothing_is_written(
    slow_bridge: Bridge, client_for: ClientFor, value: int
) -> None:
    client = client_for(slow_bridge)
    client.send("/ldm3d/generate", "a storm", "preview_every", value)
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert (
        error.args[1] == "bad_arguments" and "preview_every" in str(error.args[2]) and str(value) in str(error.args[2])
    )
    out = Path(slow_bridge.settings.output)
    assert not [p for p in out.iterdir() if p.name not in (".ldm3d-bridge.lock", "previews")]


def test_a_slow_reader_drops_previews_and_gets_the_newest(tmp_path: Path) -> None:
    """The desk keeps one preview per worker: while it is busy delivering one (a slow disk, a slow
    page), newer ones replace each other and the newest is delivered next; the engine never waits."""
    from bridge.notify.notifier import Notifier
    from bridge.output.writer import TextureWriter

    writer = TextureWriter(tmp_path / "out")
    writer.prepare()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    notifier = Notifier(sock)
    desk = PreviewDesk(writer, notifier, default_every=1, max_hz=1e6)
    release = threading.Event()
    delivered: list[int] = []

    def slow_page(job_id: str, step: int, total: int, rgb: bytes, depth: bytes) -> None:
        delivered.append(step)
        release.wait(10)

    desk.observers.append(slow_page)
    desk.start()
    try:
        job = Job("20261207-000000-000-abcd", GenerateRequest("x"), None)
        previews = desk.previews_for(job, 0)
        assert previews is not None
        frame = np.zeros((4, 8, 3), np.uint8), np.zeros((4, 8), np.uint16)
        t0 = time.monotonic()
        previews.send(Preview(1, 20, *frame))
        while not delivered:
            time.sleep(0.01)
        for step in range(2, 20):
            previews.send(Preview(step, 20, *frame))
        assert time.monotonic() - t0 < 5  # the sender never waited for the page
        release.set()
        deadline = time.monotonic() + 10
        while len(delivered) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert delivered == [1, 19] and desk.dropped == 17
        assert (writer.root / "previews" / "0" / "rgb.png").is_file()
    finally:
        release.set()
        desk.close()
        sock.close()
        writer.close()


def test_a_preview_waiting_when_its_job_ends_is_dropped(tmp_path: Path) -> None:
    """A preview still in the mailbox when its job's final message is claimed is neither written over
    the slot nor announced; and nothing sent through ``unless_ended`` can follow the final message."""
    from bridge.notify.notifier import Notifier
    from bridge.output.writer import TextureWriter

    writer = TextureWriter(tmp_path / "out")
    writer.prepare()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    desk = PreviewDesk(writer, Notifier(sock), default_every=1, max_hz=1e6)
    release = threading.Event()
    delivered: list[tuple[str, int]] = []

    def slow_page(job_id: str, step: int, total: int, rgb: bytes, depth: bytes) -> None:
        delivered.append((job_id, step))
        release.wait(10)

    desk.observers.append(slow_page)
    desk.start()
    try:
        busy = Job("20261207-000000-000-aaaa", GenerateRequest("x"), None)
        ending = Job("20261207-000000-000-bbbb", GenerateRequest("y"), None)
        first, second = desk.previews_for(busy, 0), desk.previews_for(ending, 1)
        assert first is not None and second is not None
        first.send(Preview(1, 9, np.zeros((4, 8, 3), np.uint8), np.zeros((4, 8), np.uint16)))
        while not delivered:
            time.sleep(0.01)
        second.send(Preview(1, 9, np.full((4, 8, 3), 200, np.uint8), np.zeros((4, 8), np.uint16)))
        assert ending.claim_outcome()  # its /ldm3d/ready goes out now
        release.set()
        first.send(Preview(2, 9, np.zeros((4, 8, 3), np.uint8), np.zeros((4, 8), np.uint16)))  # after it
        deadline = time.monotonic() + 10
        while len(delivered) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert delivered == [(busy.id, 1), (busy.id, 2)]
        assert not (writer.root / "previews" / "1").exists()
    finally:
        release.set()
        desk.close()
        sock.close()
        writer.close()
    called: list[int] = []
    assert not ending.unless_ended(lambda: called.append(1)) and not called
    running = Job("20261207-000000-000-cccc", GenerateRequest("z"), None)
    assert running.unless_ended(lambda: called.append(2)) and called == [2]
