"""Text → 3D object jobs end to end with tiny-ln3diff: ``ldm3d-bridge object`` (and, over OSC,
``/ldm3d/object``); the files read back by trimesh."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trimesh

from bridge.cli.main import main
from bridge.contract.engine_api import LocalSlot
from bridge.osc.client import FINAL, OscClient
from bridge.osc.codec import Arg, Message
from bridge.serve.server import Bridge
from bridge.workers.jobs import Job
from ldm3d_engine.object_types import ObjectEngineLike, ObjectRequest
from tests.waits import until_final

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]

pytestmark = pytest.mark.timeout(120)

#: Small enough that a job takes well under a second on the CPU.
FAST = ["--steps", "2", "--resolution", "16"]


@pytest.fixture(autouse=True)
def _tiny_cache(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds tiny-ln3diff under $XDG_CACHE_HOME: once per run, in the session's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_dir / "xdg"))


def test_object_writes_an_object_folder_prints_it_and_says_the_licence_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["-q", "object", "a red lantern", "--object-model", "tiny-ln3diff", "--seed", "3", *FAST]
    assert main([*argv, "--output", str(out)]) == 0
    captured = capsys.readouterr()
    folder = Path(captured.out.strip())
    assert folder.parent == (out / "objects").resolve()
    meta = json.loads((folder / "meta.json").read_text())
    assert (meta["kind"], meta["prompt"], meta["seed"], meta["steps"], meta["resolution"]) == (
        "object",
        "a red lantern",
        3,
        2,
        16,
    )
    assert meta["model"] == "builtin:tiny-ln3diff" and meta["vertices"] > 0 and meta["faces"] > 0
    assert captured.err.count("licence: ") == 1 and meta["licence"] in captured.err
    assert "2/2" in captured.err  # the progress bar
    mesh = trimesh.load(folder / "mesh.glb", process=False, force="mesh")
    assert (len(mesh.vertices), len(mesh.faces)) == (meta["vertices"], meta["faces"])
    assert not (out / "latest.json").exists()  # an object is no world


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--object-model", "tiny-ln3diff", "--steps", "0"], "ldm3d-bridge: error: steps 0 is out of range"),
        (["--object-model", "tiny-ln3diff", "--resolution", "100000"], "ldm3d-bridge: error: resolution 100000"),
        (["--object-model", "ln3diff", "--offline"], "`hf download yslan/LN3Diff "),
        (["--object-model", "shap-e-xl"], "ldm3d-bridge: error: unknown object model 'shap-e-xl'"),
        (["--object-model", "tiny-ln3diff", "--device", "cuda:0,cuda:1"], "a list of devices is for serve"),
    ],
)
def test_a_bad_object_request_or_a_missing_model_is_one_line_and_status_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    assert main(["-q", "object", "a cup", *argv, "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert says in last and last.startswith("ldm3d-bridge: error: ")
    assert not (tmp_path / "out" / "objects").exists()


# -- over OSC ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_objects(tiny_dir: Path) -> ObjectEngineLike:
    """tiny-ln3diff on the CPU, loaded once for every bridge of this module."""
    from ldm3d_engine import EngineSettings, load_object_engine

    return load_object_engine(EngineSettings(device="cpu", tiny_dir=str(tiny_dir)), "tiny-ln3diff")


@pytest.fixture
def object_bridge(
    start_bridge: Start, load_tiny: Callable[[str], Any], tiny_objects: ObjectEngineLike
) -> Callable[..., Bridge]:
    """``object_bridge(workers=1, **settings)``: a bridge with tiny-ln3diff beside the world model."""

    def start(workers: int = 1, **overrides: object) -> Bridge:
        slots = [
            LocalSlot(lambda: load_tiny("tiny"), where=f"cpu {i}", objects=lambda: tiny_objects) for i in range(workers)
        ]
        return start_bridge(slots=slots, object_model="tiny-ln3diff", progress_hz=1000.0, **overrides)

    return start


def _started(client: OscClient, *message: object) -> str:
    client.send(*message)  # type: ignore[arg-type]
    answer = client.wait_for(["/ldm3d/accepted", "/ldm3d/error"], 10)[-1]
    assert answer.address == "/ldm3d/accepted", answer
    return str(answer.args[0])


def test_an_object_job_over_osc_ends_in_object_ready_with_files_trimesh_reads(
    object_bridge: Callable[..., Bridge],
    client_for: ClientFor,
    caplog: pytest.LogCaptureFixture,
    tiny_objects: ObjectEngineLike,
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.workers.pool")
    bridge = object_bridge(workers=2, announce_root="Z:\\share")
    deadline = time.monotonic() + 60
    while bridge.pool.alive < 2 and time.monotonic() < deadline:  # the second worker loads after the first
        time.sleep(0.05)
    assert bridge.pool.alive == 2
    client = client_for(bridge)
    job_id = _started(
        client, "/ldm3d/object", "a red lantern", "seed", 7, "steps", 2, "resolution", 16, "yaw", -30, "distance", 0.7
    )
    seen: list[Message] = []
    while not seen or seen[-1].address not in FINAL:
        message = client.receive(60)
        assert message is not None, f"job {job_id} did not end: {seen}"
        if message.args and message.args[0] == job_id:
            seen.append(message)
    end = seen[-1]
    assert end.address == "/ldm3d/object/ready", end
    assert [m.args[1:] for m in seen if m.address == "/ldm3d/progress"][-1] == (2, 2)
    files = (job_id, f"Z:/share/objects/{job_id}/mesh.obj", f"Z:/share/objects/{job_id}/mesh.glb")
    # then where it stands: yaw, pitch, distance, size, turn (what it was not told: the defaults)
    assert end.args[:3] == files and end.args[3:] == pytest.approx((-30.0, 0.0, 0.7, 0.25, 0.0))
    folder = Path(bridge.settings.output).resolve() / "objects" / job_id
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["placement"] == {"yaw": -30.0, "pitch": 0.0, "distance": pytest.approx(0.7), "size": 0.25, "turn": 0.0}
    assert (meta["kind"], meta["prompt"], meta["seed"], meta["steps"], meta["resolution"]) == (
        "object",
        "a red lantern",
        7,
        2,
        16,
    )
    mesh = trimesh.load(folder / "mesh.obj", process=False, force="mesh")
    assert (len(mesh.vertices), len(mesh.faces)) == (meta["vertices"], meta["faces"]) and meta["faces"] > 0
    # an object is no world: no latest.json, and /ldm3d/recall does not know it
    assert bridge.writer.latest() is None
    client.send("/ldm3d/recall", job_id)
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert error.args[1] == "unknown_job"
    licences = [r.getMessage() for r in caplog.records if "licence" in r.getMessage()]
    assert len(licences) == 1 and tiny_objects.licence in licences[0]  # once, for two workers


@pytest.mark.parametrize(
    ("options", "code", "says"),
    [
        (("steps", 0), "bad_arguments", "steps 0 is out of range"),
        (("resolution", 100000), "bad_arguments", "resolution 100000"),
        (("seed", -2), "bad_arguments", "seed -2"),
        (("width", 64), "bad_arguments", "unknown option 'width'"),
        (("distance", 3), "bad_arguments", "object distance 3 is out of range; allowed 0.05..1.5"),
        (("pitch", -91.5), "bad_arguments", "object pitch -91.5 is out of range"),
    ],
)
def test_a_bad_object_request_is_refused_before_the_queue_naming_the_field(
    object_bridge: Callable[..., Bridge], client_for: ClientFor, options: tuple[Arg, ...], code: str, says: str
) -> None:
    client = client_for(object_bridge())
    client.send("/ldm3d/object", "a cup", *options)
    error = client.wait_for(["/ldm3d/error", "/ldm3d/accepted"], 10)[-1]
    assert error.address == "/ldm3d/error" and error.args[:2] == ("", code) and says in str(error.args[2])


def test_without_an_object_model_object_is_not_supported(start_bridge: Start, client_for: ClientFor) -> None:
    client = client_for(start_bridge())
    client.send("/ldm3d/object", "a cup")
    error = client.wait_for(["/ldm3d/error", "/ldm3d/accepted"], 10)[-1]
    assert error.args[:2] == ("", "not_supported") and "--object-model" in str(error.args[2])


def test_an_object_job_is_cancelled_as_any_job(object_bridge: Callable[..., Bridge], client_for: ClientFor) -> None:
    bridge = object_bridge()
    client = client_for(bridge)
    job_id = _started(client, "/ldm3d/object", "a slow cup", "steps", 1000, "resolution", 16)
    client.wait_for(["/ldm3d/progress"], 30, job_id=job_id)
    client.send("/ldm3d/cancel", job_id)
    assert until_final(client, job_id).address == "/ldm3d/cancelled"
    assert not (Path(bridge.settings.output) / "objects" / job_id).exists()


def test_an_object_job_past_its_timeout_ends_in_timeout(
    object_bridge: Callable[..., Bridge], client_for: ClientFor
) -> None:
    client = client_for(object_bridge(job_timeout_s=0.5))
    job_id = _started(client, "/ldm3d/object", "a slow cup", "steps", 1000, "resolution", 16)
    end = until_final(client, job_id)
    assert end.address == "/ldm3d/error" and end.args[1] == "timeout", end


def test_object_jobs_share_the_rate_limit_and_the_page_lists_them_as_objects(
    object_bridge: Callable[..., Bridge], client_for: ClientFor
) -> None:
    from bridge.serve.pages import _job

    bridge = object_bridge(client_jobs_burst=1, client_jobs_per_s=0.01)
    client = client_for(bridge)
    job_id = _started(client, "/ldm3d/object", "a cup", "steps", 2, "resolution", 16)
    client.send("/ldm3d/object", "a second cup")
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert error.args[:2] == ("", "rate_limited")
    assert until_final(client, job_id).address == "/ldm3d/object/ready"
    job = Job("20261207-000000-000-0001", ObjectRequest("a lamp"), None)
    assert _job(job) == {"id": job.id, "prompt": "a lamp", "kind": "object", "background": False}


def test_send_wait_follows_an_object_job_to_object_ready(
    object_bridge: Callable[..., Bridge], capsys: pytest.CaptureFixture[str]
) -> None:
    bridge = object_bridge()
    port = bridge.address[1]
    argv = ["send", "/ldm3d/object", "a cup", "steps", "2", "resolution", "16", "--port", str(port), "--wait"]
    assert main([*argv, "--timeout", "60"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("/ldm3d/accepted ") and lines[-1].startswith("/ldm3d/object/ready ")


def test_oscquery_names_the_object_command_and_its_end() -> None:
    from bridge.contract.ranges import ranges_for
    from bridge.web.oscquery import READ, WRITE, namespace

    nodes = namespace(ranges_for("tiny-pano"))
    command, end = nodes["/ldm3d/object"], nodes["/ldm3d/object/ready"]
    assert (command.type, command.access) == ("s", WRITE)
    assert (end.type, end.access, end.default) == ("sssfffff", READ, ("", "", "", 0.0, 0.0, 0.5, 0.25, 0.0))
    assert "/ldm3d/object/ready" in FINAL


class _Counting:
    """The tiny object model, counting what it is asked (the warm-up's request)."""

    def __init__(self, inner: ObjectEngineLike) -> None:
        self.inner = inner
        self.asked: list[ObjectRequest] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate_object(self, request: ObjectRequest, **kwargs: Any) -> Any:
        self.asked.append(request)
        return self.inner.generate_object(request, **kwargs)


def test_a_worker_warms_its_object_model_up_with_one_small_object_before_it_is_ready(
    start_bridge: Start, load_tiny: Callable[[str], Any], tiny_objects: ObjectEngineLike
) -> None:
    counting = _Counting(tiny_objects)
    slot = LocalSlot(lambda: load_tiny("tiny"), where="cpu 0", objects=lambda: counting)  # type: ignore[arg-type, return-value]
    bridge = start_bridge(slots=[slot], object_model="tiny-ln3diff", warmup=True, warmup_steps=1)
    assert bridge.pool.alive == 1
    assert [(r.prompt, r.steps, r.resolution) for r in counting.asked] == [("warm-up", 1, 16)]


def test_a_bridge_with_an_object_model_and_a_slot_without_one_is_refused_at_construction(tmp_path: Path) -> None:
    """An embedder's bridge: ``object_model`` set, but a slot that loads none would take /ldm3d/object and
    answer not_supported on that worker only. It is refused before anything starts, naming the slot."""
    from bridge.settings import BridgeSettings

    def never() -> Any:
        raise AssertionError("nothing is loaded before the refusal")

    settings = BridgeSettings(object_model="tiny-ln3diff", output=str(tmp_path / "out"))
    refused = r"^settings.object_model is 'tiny-ln3diff', but these slots load no object model: cpu \("
    with pytest.raises(ValueError, match=refused):
        Bridge(settings, engine_factory=never)
    slots = [LocalSlot(never, where="cuda:0", objects=never), LocalSlot(never, where="cuda:1")]
    with pytest.raises(ValueError, match=r"load no object model: cuda:1 \(give each one"):
        Bridge(settings, slots=slots)
    assert not (tmp_path / "out").exists()  # nothing written
