"""Travel between worlds over OSC on the real bridge: ``/ldm3d/morph``, its frames on disk and the
messages a client follows, with the tiny model (random weights: the frames are noise, the blend is real)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.osc.client import FINAL, OscClient
from bridge.osc.codec import Message
from bridge.serve.server import Bridge
from tests.engines import slow_tiny

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]


def run_job(client: OscClient, *message: object, timeout: float = 60.0) -> tuple[str, list[Message], Message]:
    """Send a job, then every message of it up to its end: (its id, those messages, the end)."""
    client.send(*message)  # type: ignore[arg-type]
    answer = client.wait_for(["/ldm3d/accepted", "/ldm3d/error"], 10)[-1]
    if answer.address == "/ldm3d/error":
        return "", [], answer
    job_id = str(answer.args[0])
    seen: list[Message] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = client.receive(deadline - time.monotonic())
        if message is not None and message.args and message.args[0] == job_id:
            seen.append(message)
            if message.address in FINAL:
                return job_id, seen, message
    raise TimeoutError(f"job {job_id} did not end: {seen}")


def pixels(path: object) -> np.ndarray:
    return np.asarray(Image.open(str(path)))


def world(client: OscClient, prompt: str, seed: int, *options: object) -> Message:
    _, _, ready = run_job(client, "/ldm3d/generate", prompt, "seed", seed, "steps", 4, *options)
    assert ready.address == "/ldm3d/ready", ready
    return ready


@pytest.fixture
def bridge(start_bridge: Start) -> Bridge:
    return start_bridge(progress_hz=1000.0)


def test_a_morph_runs_from_one_world_to_the_other_frame_by_frame(bridge: Bridge, client_for: ClientFor) -> None:
    client = client_for(bridge)
    a, b = world(client, "a desert", 1), world(client, "a forest", 2, "guidance", 3.0)
    morph_id, seen, end = run_job(client, "/ldm3d/morph", a.args[0], b.args[0], "frames", 4, "seconds", 3.0)
    assert end.address == "/ldm3d/ready", end
    frames = [m for m in seen if m.address == "/ldm3d/morph/frame"]
    assert [m.args[1:4] for m in frames] == [(0, 4, 3.0), (1, 4, 3.0), (2, 4, 3.0), (3, 4, 3.0)]
    assert seen.index(frames[-1]) < seen.index(end)
    progress = [m.args[1:3] for m in seen if m.address == "/ldm3d/progress"]
    assert progress[-1] == (16, 16)  # every step of every frame
    # the ends are the two worlds; the frames between are neither
    np.testing.assert_array_equal(pixels(frames[0].args[4]), pixels(a.args[1]))
    np.testing.assert_array_equal(pixels(frames[0].args[5]), pixels(a.args[2]))
    np.testing.assert_array_equal(pixels(frames[3].args[4]), pixels(b.args[1]))
    np.testing.assert_array_equal(pixels(end.args[1]), pixels(b.args[1]))  # the job's world: where it arrives
    for middle in frames[1:3]:
        for other in (a, b):
            assert np.abs(pixels(middle.args[4]).astype(int) - pixels(other.args[1])).mean() > 3
    # the manifest a client can follow, and the morph's meta.json
    manifest = json.loads((Path(bridge.settings.output).resolve() / "morphs" / morph_id / "morph.json").read_text())
    assert manifest["complete"] and [f["index"] for f in manifest["written"]] == [0, 1, 2, 3]
    assert manifest["frame_seconds"] == pytest.approx(1.0) and manifest["from"] == a.args[0]
    assert [f["t"] for f in manifest["written"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    meta = json.loads(Path(str(end.args[3])).read_text())
    assert meta["morph"]["to"] == b.args[0] and meta["morph"]["frames"] == 4
    assert meta["morph"]["sequence"].endswith(f"morphs/{morph_id}/morph.json")


def test_a_morph_to_a_prompt_arrives_at_that_prompts_world(bridge: Bridge, client_for: ClientFor) -> None:
    client = client_for(bridge)
    a = world(client, "a desert", 1)
    _, _, end = run_job(client, "/ldm3d/morph", a.args[0], "a frozen lake", "frames", 2, "seed", 77)
    assert end.address == "/ldm3d/ready" and end.args[6] == 77
    direct = world(client, "a frozen lake", 77)
    np.testing.assert_array_equal(pixels(end.args[1]), pixels(direct.args[1]))
    np.testing.assert_array_equal(pixels(end.args[2]), pixels(direct.args[2]))


def _outputs(bridge: Bridge) -> set[str]:
    root = Path(bridge.settings.output)
    return {p.name for p in root.iterdir()} | {f"morphs/{p.name}" for p in (root / "morphs").glob("*")}


def test_bad_morphs_get_a_clear_error_and_write_nothing(start_bridge: Start, client_for: ClientFor) -> None:
    bridge = start_bridge(progress_hz=1000.0, input_dirs=())
    client = client_for(bridge)
    a = world(client, "a desert", 1)
    wide = world(client, "a plain", 2, "width", 128)
    other_model = Path(str(a.args[3])).parent.with_name("20261207-000000-000-beef")
    shutil.copytree(Path(str(a.args[3])).parent, other_model)
    meta = json.loads((other_model / "meta.json").read_text())
    (other_model / "meta.json").write_text(
        json.dumps({**meta, "model": "Intel/ldm3d-pano", "job_id": other_model.name})
    )
    before = _outputs(bridge)
    cases = [
        (("20261207-000000-000-0000", "x"), "unknown_job", "no finished job 20261207-000000-000-0000"),
        ((a.args[0], "a sea", "frames", 0), "bad_arguments", "a morph of 0 frames: allowed 2..240"),
        ((a.args[0], "a sea", "frames", 10000), "bad_arguments", "a morph of 10000 frames"),
        ((a.args[0], "a sea", "seconds", 0.0), "bad_arguments", "lasting 0 s"),
        ((a.args[0], wide.args[0]), "bad_arguments", "same width: the first has 64, the second 128"),
        ((a.args[0], other_model.name), "wrong_model", "by 'builtin:tiny' and job 20261207-000000-000-beef by"),
        ((other_model.name, "a sea"), "wrong_model", "this bridge runs 'builtin:tiny'"),
        ((a.args[0], wide.args[0], "seed", 3), "bad_arguments", "option 'seed' is for a prompt's world"),
        ((a.args[0],), "bad_arguments", "needs the id of a finished job and a second job id or a prompt"),
        ((a.args[0], "  "), "bad_arguments", "the second world is empty"),
    ]
    for args, code, words in cases:
        client.send("/ldm3d/morph", *args)
        answers = client.wait_for(["/ldm3d/error"], 10)
        error = answers[-1]
        assert error.args[1] == code and words in str(error.args[2]), (args, error)
        assert [m.address for m in answers] == ["/ldm3d/error"]  # refused at once, never queued
    assert client.receive(0.3) is None  # nothing was accepted
    assert _outputs(bridge) == before


def test_a_cancelled_morph_removes_its_frames_and_says_no_more(
    start_bridge: Start, tiny_dir: Path, client_for: ClientFor
) -> None:
    bridge = start_bridge(engine_factory=lambda: slow_tiny(str(tiny_dir), 0.03), progress_hz=1000.0)
    client = client_for(bridge)
    a = world(client, "a desert", 1)
    client.send("/ldm3d/morph", a.args[0], "a forest", "frames", 30)
    job_id = str(client.wait_for(["/ldm3d/accepted"], 10)[-1].args[0])
    client.wait_for(["/ldm3d/morph/frame"], 30, job_id=job_id)
    sequence = Path(bridge.settings.output).resolve() / "morphs" / job_id
    assert (sequence / "0000" / "meta.json").is_file()
    client.send("/ldm3d/cancel", job_id)
    client.wait_for(["/ldm3d/cancelled"], 30, job_id=job_id)
    time.sleep(0.3)
    late = []
    while (message := client.receive(0.2)) is not None:
        late.append(message)
    assert not [m for m in late if m.address == "/ldm3d/morph/frame"], late
    assert not sequence.exists() and not (sequence.parent.parent / job_id).exists()


def test_a_frame_still_waiting_when_its_morph_ends_is_not_announced(tmp_path: Path, load_tiny: object) -> None:
    """The writer thread may still hold a frame when the morph is cancelled: it is not announced after
    the morph's end, and the Discard behind it removes the frames."""
    import socket

    from bridge.contract.morphs import MorphRequest
    from bridge.notify.notifier import Notifier
    from bridge.output.writer import TextureWriter
    from bridge.workers.jobs import Job
    from bridge.workers.writes import Discard, Frame, Writes
    from ldm3d_engine.types import GenerateRequest

    engine = load_tiny("tiny")  # type: ignore[operator]
    first, second = GenerateRequest("a", seed=1, steps=2, width=64, height=64), GenerateRequest("b", seed=2, steps=2)
    result = engine.generate(first)
    writer = TextureWriter(tmp_path / "out")
    writer.prepare()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    notifier = Notifier(sock)
    heard: list[str] = []
    notifier.observers.append(lambda address, args: heard.append(address))
    writes = Writes(writer, notifier, lambda key, files: None)
    writes.thread.start()
    try:
        request = MorphRequest(first, second, 3, 2.0, "20261207-000000-000-aaaa", None, ("builtin:tiny", None))
        live, ended = Job("20261207-000000-000-0001", request, None), Job("20261207-000000-000-0002", request, None)
        writes.put(Frame(live, 0, result, []))
        assert ended.claim_outcome()  # cancelled while its frame waited
        writes.put(Frame(ended, 0, result, []))
        writes.put(Discard(ended))
    finally:
        writes.close()
        sock.close()
        writer.close()
    assert heard == ["/ldm3d/morph/frame"]  # the live morph's only
    assert (writer.root / "morphs" / live.id / "0000" / "meta.json").is_file()
    assert not (writer.root / "morphs" / ended.id).exists()


def test_the_morph_command_writes_the_same_frames_and_refuses_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli.main import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    common = ["--model", "tiny", "--output", str(out)]

    def generate(prompt: str, seed: int, *more: str) -> Path:
        size = ["--width", "64", "--height", "64", "--steps", "3", "--seed", str(seed)]
        assert main(["-q", "generate", prompt, *size, *more, *common]) == 0
        return Path(capsys.readouterr().out.strip())

    a, b = generate("a desert", 1), generate("a forest", 2)
    assert main(["-q", "morph", a.name, str(b), "--frames", "3", "--seconds", "2", *common]) == 0
    captured = capsys.readouterr()
    morph = Path(captured.out.strip())
    assert "9/9" in captured.err  # one bar over every step of every frame (3 × 3)
    manifest = json.loads((out / "morphs" / morph.name / "morph.json").read_text())
    assert manifest["complete"] and manifest["frame_seconds"] == 1.0 and len(manifest["written"]) == 3
    np.testing.assert_array_equal(pixels(manifest["written"][0]["rgb"]), pixels(a / "rgb.tif"))
    np.testing.assert_array_equal(pixels(morph / "rgb.tif"), pixels(b / "rgb.tif"))
    wide = generate("a plain", 3, "--width", "128")
    before = sorted(p.name for p in [*out.iterdir(), *(out / "morphs").iterdir()])
    for args, words in [
        ([a.name, wide.name], "same width: the first has 64, the second 128"),
        ([a.name, "a sea", "--frames", "1"], "a morph of 1 frames: allowed 2..240"),
        (["20261207-000000-000-0000", "a sea"], "no finished job 20261207-000000-000-0000"),
    ]:
        assert main(["-q", "morph", *args, *common]) == 1
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in [*out.iterdir(), *(out / "morphs").iterdir()]) == before


def test_a_morph_past_its_timeout_ends_timeout_and_removes_its_frames(
    start_bridge: Start, tiny_dir: Path, client_for: ClientFor
) -> None:
    """A morph's limit is ``job_timeout_s`` × its frames (each frame a world): frames go on past
    ``job_timeout_s``; past the morph's own limit the job ends ``timeout`` and its frames are removed."""
    first = start_bridge(progress_hz=1000.0)
    _, _, a = run_job(client_for(first), "/ldm3d/generate", "a desert", "seed", 1, "steps", 2)
    first.stop()
    # the same folder, a model slowed to 0.1 s a step: a frame of 2 steps takes about 0.25 s
    bridge = start_bridge(engine_factory=lambda: slow_tiny(str(tiny_dir), 0.1), progress_hz=1000.0, job_timeout_s=0.15)
    client = client_for(bridge)
    morph_id, seen, end = run_job(client, "/ldm3d/morph", a.args[0], "a forest", "frames", 12, timeout=30)
    frames = _frames_of(seen)
    assert end.address == "/ldm3d/error" and end.args[1] == "timeout", end
    assert 0.25 * len(frames) > 0.15 and len(frames) < 11  # past one world's limit, short of twelve frames
    time.sleep(0.5)  # the writer thread removes them after any frame it still held
    assert not (Path(bridge.settings.output).resolve() / "morphs" / morph_id).exists()


def _frames_of(messages: list[Message]) -> list[Message]:
    return [m for m in messages if m.address == "/ldm3d/morph/frame"]
