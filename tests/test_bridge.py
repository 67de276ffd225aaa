"""The bridge as clients see it: real UDP on loopback, real files, the tiny engine."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.output.lock import LOCK_NAME
from bridge.serve.server import Bridge
from ldm3d_engine import GenerateRequest
from ldm3d_engine.models.ldm3d import Engine

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
READY_OR_ERROR = ("/ldm3d/ready", "/ldm3d/error")


def addresses(messages: list[Message]) -> list[str]:
    return [m.address for m in messages]


def test_generate_accepted_progress_ready_with_complete_files(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    client.send("/ldm3d/generate", "a glacier", "seed", 5, "steps", 4, "width", 96, "height", 64)
    seen = client.wait_for(READY_OR_ERROR, timeout=60)
    accepted, *news, ready = seen
    assert accepted.address == "/ldm3d/accepted" and accepted.args[1] == 1
    job_id = accepted.args[0]
    assert {m.address for m in news} == {"/ldm3d/progress", "/ldm3d/progress/fraction"}  # nothing else
    assert [m.args for m in news if m.address == "/ldm3d/progress"][-1] == (job_id, 4, 4)
    assert [m.args for m in news if m.address == "/ldm3d/progress/fraction"][-1] == (1.0,)
    assert ready.address == "/ldm3d/ready"
    _, rgb_path, depth_path, meta_path, width, height, seed = ready.args
    assert ready.args[0] == job_id and (width, height, seed) == (96, 64, 5)
    for path in (rgb_path, depth_path, meta_path):
        assert Path(str(path)).is_absolute() and Path(str(path)).is_file()
    rgb = Image.open(str(rgb_path))
    assert rgb.mode == "RGB" and rgb.size == (96, 64)
    depth = Image.open(str(depth_path))
    assert depth.mode == "I;16" and depth.size == (96, 64)
    depth_values = np.array(depth)
    assert depth_values.dtype == np.uint16 and len(np.unique(depth_values)) > 256
    meta = json.loads(Path(str(meta_path)).read_text())
    assert meta["prompt"] == "a glacier" and meta["seed"] == 5 and meta["steps"] == 4
    assert meta["depth"]["file"].startswith("16-bit") and "nearer" in meta["depth"]["meaning"]
    assert set(meta["timings"]) == {"text_encoding_s", "denoising_s", "decoding_s", "safety_s", "writing_s"}
    assert meta["safety_check"] == "passed"  # the tiny model ships a checker, as Intel's folders do
    latest = json.loads((bridge.writer.root / "latest.json").read_text())
    assert latest["job_id"] == job_id and latest["depth"] == depth_path


def test_stage_parameters_and_go(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    client.send("/ldm3d/go")
    assert client.wait_for(["/ldm3d/error"], 5)[-1].args[1:2] == ("bad_arguments",)
    for address, *args in (
        ("/ldm3d/prompt", "a reef"),
        ("/ldm3d/seed", 9.0),
        ("/ldm3d/steps", 3.2),
        ("/ldm3d/size", 80, 64),
        ("/ldm3d/negative", "fog"),
    ):
        client.send(address, *args)  # type: ignore[arg-type]
        assert client.wait_for(["/ldm3d/stage"], 5)[-1].args[0] == address.rsplit("/", 1)[1]
    client.send("/ldm3d/go", 1.0)
    ready = client.wait_for(READY_OR_ERROR, 60)[-1]
    assert ready.address == "/ldm3d/ready" and ready.args[4:] == (80, 64, 9)
    meta = json.loads(Path(str(ready.args[3])).read_text())
    assert (meta["steps"], meta["negative"], meta["prompt"]) == (3, "fog", "a reef")


def test_trigger_zero_does_nothing(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    client.send("/ldm3d/prompt", "a reef")
    client.wait_for(["/ldm3d/stage"], 5)
    client.wait_for(["/ldm3d/prompt"], 5)  # the change, echoed on its own address
    client.send("/ldm3d/go", 0)
    client.send("/ldm3d/go", 0.0)
    assert client.receive(0.5) is None
    assert bridge.writer.job_ids() == []


def test_floats_are_accepted_for_ints(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    client.send("/ldm3d/generate", "a reef", "steps", 2.6, "width", 64.2, "height", 63.9, "seed", 7.0)
    ready = client.wait_for(READY_OR_ERROR, 60)[-1]
    assert ready.address == "/ldm3d/ready" and ready.args[4:] == (64, 64, 7)
    assert json.loads(Path(str(ready.args[3])).read_text())["steps"] == 3


def test_subscribers_get_job_notifications_until_they_unsubscribe(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    sender = client_for(bridge)
    # 127.0.0.2 is another host as far as the bridge can tell.
    watcher = OscClient(*bridge.address, listen_host="127.0.0.2")
    local_watcher = OscClient(*bridge.address, listen_host="127.0.0.1")
    try:
        for w in (watcher, local_watcher):
            w.send("/ldm3d/subscribe", w.port)
            assert addresses(w.wait_for(["/ldm3d/state"], 5)) == ["/ldm3d/subscribed", "/ldm3d/state"]
            w.wait_for(["/ldm3d/display/strength"], 5)  # the rest of the greeting: how the world is shown
        sender.send("/ldm3d/generate", "a reef", "steps", 2)
        job_id = sender.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
        got = watcher.wait_for(["/ldm3d/ready"], 60, job_id=job_id)
        assert "/ldm3d/accepted" not in addresses(got)  # a reply: not for another host
        assert addresses(got)[:2] == ["/ldm3d/busy", "/ldm3d/progress"]  # news: for every subscriber
        local = local_watcher.wait_for(["/ldm3d/ready"], 60, job_id=job_id)
        # a subscriber on the sender's host gets replies too (the lamp may light before the reply goes out)
        assert "/ldm3d/accepted" in addresses(local)
    finally:
        local_watcher.close()
    sender.wait_for(["/ldm3d/ready"], 60)
    watcher.send("/ldm3d/unsubscribe", watcher.port)
    watcher.wait_for(["/ldm3d/unsubscribed"], 5)
    sender.send("/ldm3d/generate", "a reef", "steps", 2)
    sender.wait_for(["/ldm3d/ready"], 60)
    assert watcher.receive(0.5) is None
    watcher.close()


def test_heartbeat_reaches_subscribers(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(heartbeat_s=0.1)
    client = client_for(bridge)
    client.send("/ldm3d/subscribe", client.port)
    states: list[Message] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(states) < 4:
        m = client.receive(0.5)
        if m is not None and m.address == "/ldm3d/state":
            states.append(m)
    assert len(states) >= 4 and states[-1].args == ("idle", 0, "", "tiny", bridge.boot_id, 1, 1)


def _start_long_job(client: OscClient, steps: int = 150) -> str:
    client.send("/ldm3d/generate", "a long one", "steps", steps, "width", 256, "height", 256)
    job_id = str(client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0])
    client.wait_for(["/ldm3d/progress"], 30)
    return job_id


def test_cancel_running_and_queued_jobs(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    running = _start_long_job(client)
    client.send("/ldm3d/generate", "queued", "steps", 2)
    queued = client.wait_for(["/ldm3d/accepted"], 5)[-1]
    assert queued.args[1] == 1
    client.send("/ldm3d/cancel", queued.args[0])
    assert client.wait_for(["/ldm3d/cancelled"], 5)[-1].args == (queued.args[0],)
    client.send("/ldm3d/cancel")
    assert client.wait_for(["/ldm3d/cancelled"], 10)[-1].args == (running,)
    client.send("/ldm3d/cancel", running)
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "unknown_job"
    assert bridge.writer.job_ids() == []  # neither job left files
    client.send("/ldm3d/generate", "after", "steps", 2)  # the worker survived
    assert client.wait_for(READY_OR_ERROR, 60)[-1].address == "/ldm3d/ready"


def test_stop_while_the_model_loads_cancels_what_was_just_sent(
    start_bridge: Start, client_for: ClientFor, load_tiny: Callable[[str], Engine]
) -> None:
    """STOP means "stop what I just started", also before any job runs: the newest waiting job of the
    button's host, else of anyone; with nothing at all, a clear error."""
    loading = threading.Event()

    def slow_load() -> Engine:
        loading.wait(30)
        return load_tiny("tiny")

    bridge = start_bridge(engine_factory=slow_load, wait_ready=False)
    tablet, desk = client_for(bridge), OscClient(*bridge.address, listen_host="127.0.0.2")
    tablet.send("/ldm3d/cancel", 1)
    assert tablet.wait_for(["/ldm3d/error"], 5)[-1].args[1:] == (
        "unknown_job",
        "nothing is running or waiting; /ldm3d/cancel <job id> names a job",
    )
    desk.send("/ldm3d/generate", "the desk's", "steps", 2)
    theirs = desk.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
    for name in ("mine", "mine again"):
        tablet.send("/ldm3d/generate", name, "steps", 2)
    mine = [tablet.wait_for(["/ldm3d/accepted"], 5)[-1].args[0] for _ in range(2)]
    desk.send("/ldm3d/generate", "the desk's newest", "steps", 2)
    newest = desk.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
    tablet.send("/ldm3d/cancel", 1)  # a STOP button, while the model still loads
    assert tablet.wait_for(["/ldm3d/cancelled"], 5)[-1].args == (mine[1],)  # its own newest, named
    loading.set()
    with desk:
        ended = [desk.wait_for(READY_OR_ERROR, 60)[-1] for _ in range(2)]
    assert [(m.address, m.args[0]) for m in ended] == [("/ldm3d/ready", theirs), ("/ldm3d/ready", newest)]


def test_queue_full_is_refused(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge(queue_size=2))
    _start_long_job(client)
    for _ in range(2):
        client.send("/ldm3d/generate", "waits", "steps", 2)
        client.wait_for(["/ldm3d/accepted"], 5)
    client.send("/ldm3d/generate", "one too many", "steps", 2)
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[:2] == ("", "queue_full") and "2 jobs waiting" in str(error.args[2])
    client.send("/ldm3d/cancel")


def test_latest_wins_replaces_waiting_jobs(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge(queue_mode="latest-wins"))
    running = _start_long_job(client)
    client.send("/ldm3d/generate", "first idea", "steps", 2)
    first = client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
    client.send("/ldm3d/generate", "second idea", "steps", 2)
    seen = client.wait_for(["/ldm3d/accepted"], 5)
    assert Message("/ldm3d/cancelled", (first,)) in seen
    second = seen[-1].args[0]
    client.send("/ldm3d/cancel", running)
    ready = client.wait_for(["/ldm3d/ready"], 60)[-1]
    assert ready.args[0] == second


def test_latest_wins_keeps_one_job_waiting_however_many_arrive(start_bridge: Start, client_for: ClientFor) -> None:
    """Pins the bug "latest-wins never drops anything": with the line that clears the waiting jobs
    disabled, positions grew 1, 2, 3 … and the queue without bound during a live show."""
    bridge = start_bridge(queue_mode="latest-wins", queue_size=50, client_jobs_per_s=100.0, client_jobs_burst=100)
    client = client_for(bridge)
    running = _start_long_job(client)
    accepted, seen = [], []
    for n in range(20):
        client.send("/ldm3d/generate", f"idea {n}", "steps", 2)
        seen += client.wait_for(["/ldm3d/accepted"], 5)
        accepted.append(seen[-1])
    assert [m.args[1] for m in accepted] == [1] * 20  # each newest runs next
    client.send("/ldm3d/status")
    seen += client.wait_for(["/ldm3d/state"], 5)
    assert seen[-1].args[0] == "busy" and seen[-1].args[1] == 1  # one waiting, not twenty
    client.send("/ldm3d/cancel", running)
    seen += client.wait_for(["/ldm3d/ready"], 60)
    assert seen[-1].args[0] == accepted[-1].args[0]
    cancelled = {m.args[0] for m in seen if m.address == "/ldm3d/cancelled"}
    assert {m.args[0] for m in accepted[:-1]} <= cancelled


def test_unknown_address_wrong_types_and_bad_values_get_errors(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    cases = [
        (("/ldm3d/explode",), "unknown_address"),
        (("/ldm3d/generate", 42), "bad_arguments"),
        (("/ldm3d/generate", "p", "steps", "ten"), "bad_arguments"),
        (("/ldm3d/generate", "p", "width", 100), "bad_arguments"),
        (("/ldm3d/generate", "p", "model", "ldm3d-pano"), "wrong_model"),
        (("/ldm3d/recall", "20200101-000000-000-0000"), "unknown_job"),
        (("/ldm3d/upscale", "20200101-000000-000-0000"), "not_supported"),
    ]
    for message, code in cases:
        client.send(*message)  # type: ignore[arg-type]
        error = client.wait_for(["/ldm3d/error"], 5)[-1]
        assert error.args[0] == "" and error.args[1] == code, (message, error)
        assert len(str(error.args[2])) > 20
    client.send("/ldm3d/generate", "p", "width", 100)
    assert "multiple of 8" in str(client.wait_for(["/ldm3d/error"], 5)[-1].args[2])
    client.send_raw(b"\x00garbage")
    assert client.wait_for(["/ldm3d/error"], 5)[-1].args[1] == "malformed_packet"
    client.send("/ldm3d/ping")
    assert client.wait_for(["/ldm3d/pong"], 5)[-1].args == ("0.1.0",)


def test_datagrams_over_8_kib_are_read_whole(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    prompt = "a very long description of a cathedral " * 500  # ~20 KB
    client.send("/ldm3d/generate", prompt, "steps", 2)
    ready = client.wait_for(READY_OR_ERROR, 60)[-1]
    meta = json.loads(Path(str(ready.args[3])).read_text())
    assert meta["prompt"] == prompt and meta["prompt_truncated"] is True


def test_a_prompt_cut_to_77_tokens_is_reported_to_its_sender(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    prompt = "a long walk through a forest of glass trees under a violet sky " * 4
    client.send("/ldm3d/generate", prompt, "steps", 2)
    seen = client.wait_for(READY_OR_ERROR, 60)
    warning = next(m for m in seen if m.address == "/ldm3d/warning")
    assert seen.index(warning) < len(seen) - 1  # before its /ldm3d/ready
    meta = json.loads(Path(str(seen[-1].args[3])).read_text())
    assert warning.args[:2] == (seen[-1].args[0], "prompt_truncated")
    assert f"the model saw: {meta['prompt_used']!r}" in str(warning.args[2])
    assert prompt.startswith(meta["prompt_used"]) and len(meta["prompt_used"]) < len(prompt)
    client.send("/ldm3d/generate", "a short one", "steps", 2)
    assert "/ldm3d/warning" not in [m.address for m in client.wait_for(READY_OR_ERROR, 60)]


def test_status_and_recall(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge()
    client = client_for(bridge)
    client.send("/ldm3d/status")
    assert client.wait_for(["/ldm3d/state"], 5)[-1].args == ("idle", 0, "", "tiny", bridge.boot_id, 1, 1)
    client.send("/ldm3d/generate", "a reef", "steps", 2)
    ready = client.wait_for(["/ldm3d/ready"], 60)[-1]
    client.send("/ldm3d/recall", ready.args[0])
    assert client.wait_for(["/ldm3d/ready"], 5)[-1] == ready  # after a restart too: test_hardening


def _unstarted(factory: Callable[[], object], tmp_path: Path, **overrides: object) -> Bridge:
    """A bridge whose model loads slowly or fails: started here, not by the fixture, which waits for the model."""
    from bridge.settings import BridgeSettings

    values: dict[str, object] = {
        "model": "tiny",
        "host": "127.0.0.1",
        "port": 0,
        "output": str(tmp_path / "out"),
        "zeroconf": False,
        "width": 64,
        "height": 64,
    }
    values.update(overrides)
    bridge = Bridge(BridgeSettings(**values), factory)  # type: ignore[arg-type]
    bridge.start()
    return bridge


def test_states_loading_warming_idle_and_jobs_sent_while_loading(
    load_tiny: Callable[[str], Engine], tmp_path: Path
) -> None:
    loading, warming = threading.Event(), threading.Event()
    engine = load_tiny("tiny")
    real_generate = engine.generate

    class Gated:
        model_id = engine.model_id
        resolve = staticmethod(engine.resolve)

        @staticmethod
        def generate(
            request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
        ) -> object:
            if request.prompt == "warm-up":
                warming.wait(10)
            return real_generate(request, on_step=on_step, cancel=cancel, previews=previews)  # type: ignore[arg-type]

    def slow_load() -> object:
        loading.wait(10)
        return Gated()

    bridge = _unstarted(slow_load, tmp_path, warmup=True)
    try:
        with OscClient(*bridge.address) as client:
            client.send("/ldm3d/status")
            assert client.wait_for(["/ldm3d/state"], 5)[-1].args[0] == "loading"
            client.send("/ldm3d/generate", "early", "steps", 2)
            assert client.wait_for(["/ldm3d/accepted"], 5)[-1].args[1] == 1
            loading.set()
            time.sleep(0.3)
            client.send("/ldm3d/status")
            assert client.wait_for(["/ldm3d/state"], 5)[-1].args[:2] == ("warming", 1)
            warming.set()
            assert client.wait_for(READY_OR_ERROR, 60)[-1].address == "/ldm3d/ready"
            client.send("/ldm3d/status")
            assert client.wait_for(["/ldm3d/state"], 5)[-1].args[0] == "idle"
    finally:
        bridge.stop()


def test_model_that_cannot_load_fails_queued_jobs(tmp_path: Path) -> None:
    gate = threading.Event()

    def broken() -> Engine:
        gate.wait(10)
        raise RuntimeError("weights are corrupt")

    bridge = _unstarted(broken, tmp_path)
    try:
        with OscClient(*bridge.address) as client:
            client.send("/ldm3d/generate", "doomed")
            job_id = client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
            gate.set()
            error = client.wait_for(["/ldm3d/error"], 10)[-1]
            assert error.args[:2] == (job_id, "model_failed") and "weights are corrupt" in str(error.args[2])
    finally:
        bridge.stop()


class RaisingEngine:
    """A fake engine for failures we cannot cause on a real one at will."""

    def __init__(self, real: Engine) -> None:
        self.real = real
        self.model_id = real.model_id
        self.identity = real.identity  # the bridge's contract (EngineLike): the scene library keys on it
        self.fail_next = True

    def resolve(self, request: GenerateRequest) -> object:
        return self.real.resolve(request)

    def generate(
        self, request: GenerateRequest, on_step: object = None, cancel: object = None, previews: object = None
    ) -> object:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.real.generate(request, on_step=on_step, cancel=cancel, previews=previews)  # type: ignore[arg-type]


def test_engine_failure_is_reported_and_the_next_job_runs(
    load_tiny: Callable[[str], Engine], start_bridge: Start, client_for: ClientFor
) -> None:
    fake = RaisingEngine(load_tiny("tiny"))
    client = client_for(start_bridge(engine_factory=lambda: fake))
    client.send("/ldm3d/generate", "first", "steps", 2)
    error = client.wait_for(READY_OR_ERROR, 30)[-1]
    assert error.args[1] == "engine_failed" and "illegal memory access" in str(error.args[2])
    client.send("/ldm3d/generate", "second", "steps", 2)
    assert client.wait_for(READY_OR_ERROR, 30)[-1].address == "/ldm3d/ready"


def test_retention_keeps_the_newest_jobs(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(keep_jobs=2)
    client = client_for(bridge)
    ids = []
    for _ in range(4):
        client.send("/ldm3d/generate", "a reef", "steps", 1)
        ids.append(client.wait_for(["/ldm3d/ready"], 60)[-1].args[0])
    assert bridge.writer.job_ids() == ids[-2:]
    hidden = [p.name for p in bridge.writer.root.iterdir() if p.name.startswith(".")]
    assert hidden == [LOCK_NAME]  # no staging or temporary leftovers: only the folder's lock
