"""Show control as an operator used to QLab expects it, and shows that never stop: standby and GO,
pre-wait, fade, goto, pause/resume with the remaining time (also across a restart), a reload that
keeps its place, loading without firing, shows before the model, the fallback always there, and
an unattended loop that goes on past every kind of failure.

Real bridges (the tiny model) over real UDP on loopback. Where time matters the show desk runs on
a clock the test moves by hand (``show_clock``): hours of a show pass in no time, and a loaded
machine is slower, never red."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.errors import WriteFailed
from bridge.osc.client import OscClient
from bridge.serve.server import Bridge
from bridge.show.builtin import BUILTIN_ID
from ldm3d_engine.errors import OutOfMemory
from tests.show_states import FOUR_CUES, HandClock, asked, drain, shown, state_where

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]

CONTROL = f'name = "Control"\n{FOUR_CUES}'


@pytest.fixture
def show_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shows"
    folder.mkdir()
    (folder / "control.toml").write_text(CONTROL)
    return folder


def _on_cue_0(start_bridge: Start, client_for: ClientFor, show_dir: Path, **settings: Any) -> tuple[Bridge, OscClient]:
    """A bridge running control.toml, its fallback cue "0" on screen, and a subscribed client."""
    bridge = start_bridge(input_dirs=(str(show_dir),), **settings)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "control.toml")
    shown(client, "0")
    return bridge, client


def test_standby_go_goto_prewait_and_fade(start_bridge: Start, client_for: ClientFor, show_dir: Path) -> None:
    clock = HandClock()
    bridge = start_bridge(input_dirs=(str(show_dir),), show_clock=clock)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "control.toml", 0)  # load without firing
    seen = client.wait_for(["/ldm3d/warning"], 10)
    assert seen[-1].args[1] == "fallback_not_rendered" and "cue 0" in str(seen[-1].args[2])
    state = next(m.args for m in seen if m.address == "/ldm3d/show/state")
    assert state[:4] == ("Control", "", "", "0") and state[9] == -1.0  # nothing fired, "0" stands by
    deadline = time.monotonic() + 60
    while not bridge.shows.cues()[0]["rendered"] and time.monotonic() < deadline:  # the fallback, made quietly
        seen += drain(client, 0.1)
    assert not any(m.address == "/ldm3d/ready" for m in seen)  # the dome was left alone
    client.send("/ldm3d/cue/go")
    fallback = client.wait_for(["/ldm3d/ready"], 10)[-1]  # the scene made quietly, now fired
    assert "harbour" in Path(str(fallback.args[3])).read_text()
    assert shown(client, "0")[3] == "1"  # after "0", "1" stands by
    client.send("/ldm3d/cue/standby", 3)
    assert state_where(client, lambda s: s[3] == "3")[1] == "0"  # moved, not fired
    client.send("/ldm3d/cue/go")
    assert shown(client, "3")[3] == ""  # the last cue, no loop: nothing stands by
    client.send("/ldm3d/cue/go")
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    assert error.args[1] == "unknown_cue" and "nothing stands by" in str(error.args[2])
    client.send("/ldm3d/cue", "2")  # a pre-wait of 10 s: nothing goes out until the clock has moved
    waiting = state_where(client, lambda s: s[1] == "2")
    assert waiting[2:4] == ("prewait", "1") and waiting[9] == 10.0  # and its goto stands by
    assert not any(m.address in ("/ldm3d/ready", "/ldm3d/accepted") for m in drain(client, 0.5))
    clock.advance(10)
    seen = client.wait_for(["/ldm3d/ready"], 60)
    fades = [i for i, m in enumerate(seen) if m.address == "/ldm3d/display/fade"]
    assert fades and seen[fades[0]].args == (5.0,) and fades[0] < len(seen) - 1  # the cue's fade, before its world
    assert bridge.display["fade"] == 5.0
    assert shown(client, "2")[3] == "1"
    client.send("/ldm3d/cue/back")
    assert state_where(client, lambda s: s[1] != "2")[1] == "1"


def test_pause_freezes_the_countdown_resume_goes_on_start_begins_again(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    clock = HandClock()
    _, client = _on_cue_0(start_bridge, client_for, show_dir, show_clock=clock)
    client.send("/ldm3d/cue", "1")
    shown(client, "1")
    assert asked(client)[9] == 100.0  # its duration counts from when its world went out
    clock.advance(30)
    assert asked(client)[9] == 70.0
    client.send("/ldm3d/show/pause")
    state_where(client, lambda s: s[7] == 0)
    clock.advance(500)  # paused: nothing moves
    assert asked(client)[1:3] == ("1", "shown") and asked(client)[9] == 70.0
    client.send("/ldm3d/show/resume")
    state_where(client, lambda s: s[7] == 1)
    clock.advance(69)
    time.sleep(0.3)  # three ticks of the monitor
    assert asked(client)[1] == "1" and asked(client)[9] == 1.0
    clock.advance(2)  # the rest of its 100 s: it follows to "2", which waits its pre-wait
    assert state_where(client, lambda s: s[1] == "2")[2:4] == ("prewait", "1")
    client.send("/ldm3d/cue", "1")
    shown(client, "1")
    clock.advance(40)
    client.send("/ldm3d/show/stop")
    state_where(client, lambda s: s[7] == 0)
    client.send("/ldm3d/show/start")  # start, unlike resume, gives the cue its whole duration again
    assert state_where(client, lambda s: s[7] == 1)[9] == 100.0


def test_a_restart_recalls_before_the_model_and_finishes_the_remaining_time(
    start_bridge: Start, client_for: ClientFor, show_dir: Path, load_tiny: Callable[[str], Any]
) -> None:
    clock = HandClock()
    first, client = _on_cue_0(start_bridge, client_for, show_dir, show_clock=clock)
    client.send("/ldm3d/cue", "1")
    first_world = client.wait_for(["/ldm3d/ready"], 60)[-1]
    shown(client, "1")
    clock.advance(40)
    assert asked(client)[9] == 60.0
    assert first.stop()

    loading = threading.Event()

    def slow_load() -> Any:
        loading.wait(60)
        return load_tiny("tiny")

    later = HandClock(start=5.0)  # another process: its own clock
    drain(client, 0.2)
    second = start_bridge(input_dirs=(str(show_dir),), show_clock=later, engine_factory=slow_load, wait_ready=False)
    client.target = second.address
    try:
        again = client.wait_for(["/ldm3d/ready"], 30)[-1]  # the model is still loading
        assert again.args[1:4] == first_world.args[1:4] and second.pool.engine is None
        assert asked(client)[1:3] == ("1", "shown") and asked(client)[9] == 60.0  # what was left of it
        client.send("/ldm3d/cue", "0")  # rendered: recalled at once, no model needed
        assert client.wait_for(["/ldm3d/ready"], 10)[-1].args[1] != first_world.args[1]
        client.send("/ldm3d/cue", "3")  # not rendered: it waits for the model, and says so
        assert state_where(client, lambda s: s[1] == "3")[2] == "rendering"
    finally:
        loading.set()
    made = client.wait_for(["/ldm3d/ready"], 60)[-1]
    assert "sunken" in Path(str(made.args[3])).read_text()
    client.send("/ldm3d/cue", "1")
    shown(client, "1")
    later.advance(99)
    time.sleep(0.3)
    assert asked(client)[1] == "1"
    later.advance(2)
    assert state_where(client, lambda s: s[1] == "2")[2] == "prewait"


def test_a_brand_new_install_shows_the_built_in_world_until_its_first_scene(
    start_bridge: Start, client_for: ClientFor, show_dir: Path, load_tiny: Callable[[str], Any]
) -> None:
    loading = threading.Event()

    def slow_load() -> Any:
        loading.wait(60)
        return load_tiny("tiny")

    bridge = start_bridge(input_dirs=(str(show_dir),), engine_factory=slow_load, wait_ready=False)
    client = client_for(bridge)
    client.subscribe_self()
    try:
        client.send("/ldm3d/show/load", "control.toml")  # before the model: accepted, not "not ready"
        builtin = client.wait_for(["/ldm3d/ready"], 10)[-1]
        assert builtin.args[0] == BUILTIN_ID
        assert state_where(client, lambda s: s[1] == "0")[2] == "rendering"
    finally:
        loading.set()
    rgb = np.asarray(Image.open(str(builtin.args[1])))
    depth = np.asarray(Image.open(str(builtin.args[2])))
    assert rgb[0].mean() > rgb[-1].mean() + 100 and np.ptp(rgb[:, :, 0], axis=1).max() == 0  # light over dark
    assert depth.min() == depth.max()  # flat: an undisplaced sphere
    ready = client.wait_for(["/ldm3d/ready"], 60)[-1]
    assert ready.args[0] != BUILTIN_ID and "harbour" in Path(str(ready.args[3])).read_text()
    assert shown(client, "0")


def test_loading_an_edited_cue_file_keeps_the_place(start_bridge: Start, client_for: ClientFor, show_dir: Path) -> None:
    _, client = _on_cue_0(start_bridge, client_for, show_dir)
    client.send("/ldm3d/cue", "3")
    shown(client, "3")
    client.send("/ldm3d/cue/standby", "1")
    state_where(client, lambda s: s[3] == "1")
    file = show_dir / "control.toml"
    file.write_text(CONTROL.replace("a kelp forest", "a kelp forest at night"))  # another cue changed
    drain(client, 0.2)
    client.send("/ldm3d/show/load", "control.toml")
    seen = drain(client, 1.0)
    states = [m.args for m in seen if m.address == "/ldm3d/show/state"]
    assert states and states[-1][1:4] == ("3", "shown", "1")  # same cue, same standby
    assert not any(m.address == "/ldm3d/ready" for m in seen)  # the dome was not touched
    file.write_text(CONTROL.replace("a sunken ship", "a sunken ship in fog"))  # the current cue changed
    client.send("/ldm3d/show/load", "control.toml")
    assert state_where(client, lambda s: s[1] == "3")[2] == "rendering"
    assert "fog" in Path(str(client.wait_for(["/ldm3d/ready"], 60)[-1].args[3])).read_text()


LOOP = """\
name = "Faults"
loop = true
fallback = "0"

[[cue]]
number = "0"
prompt = "a quiet harbour"
seed = 1
steps = 1
duration = 5
continue = "follow"

[[cue]]
number = "1"
prompt = "a doomed world"
seed = 2
steps = 1
duration = 5
continue = "follow"

[[cue]]
number = "2"
prompt = "a reef"
seed = 3
steps = 1
duration = 5
continue = "follow"
"""


def _doomed(request: Any) -> bool:
    return "doomed" in str(getattr(request, "prompt", ""))


def _out_of_memory(bridge: Bridge, patch: pytest.MonkeyPatch) -> str:
    """Stand-in for a GPU out of memory (none here): the engine raises it for the doomed cue."""
    engine = bridge.pool.engine
    real = engine.generate  # type: ignore[union-attr]

    def generate(request: Any, *args: Any, **kwargs: Any) -> Any:
        if _doomed(request):
            raise OutOfMemory("CUDA out of memory (a stand-in)")
        return real(request, *args, **kwargs)

    patch.setattr(engine, "generate", generate)  # the engine is shared by the tests: put back after
    return "out_of_memory"


def _disk_full(bridge: Bridge, patch: pytest.MonkeyPatch) -> str:
    """Stand-in for a full disk: writing the doomed cue's scene fails as ENOSPC would."""
    real = bridge.writer.write_scene

    def write_scene(scene_id: str, result: Any, meta_extra: Any = None, inside: Any = None) -> Any:
        if _doomed(result.request):
            raise WriteFailed(f"could not write job {scene_id}: No space left on device (a stand-in)")
        return real(scene_id, result, meta_extra, inside)

    patch.setattr(bridge.writer, "write_scene", write_scene)
    return "write_failed"


def _unwritable_library(bridge: Bridge, patch: pytest.MonkeyPatch) -> str:
    """The scene library's database cannot take the doomed cue's row (an I/O error). A library that
    another process has *locked* is no failure: the scene is shown and its row added once the
    library is free (tests/test_library_faults.py)."""
    library = bridge.shows.library
    real = library.add

    def add(key: str, scene_id: str, cue: str) -> bool:
        files = bridge.writer.find(scene_id)
        if files is not None and "doomed" in files.meta.read_text():
            raise sqlite3.OperationalError("disk I/O error")
        return real(key, scene_id, cue)

    patch.setattr(library, "add", add)
    return "write_failed"


def _refused_setting(bridge: Bridge, patch: pytest.MonkeyPatch) -> str:
    """A setting the model refuses at render time (the cue file's checks cannot know every one)."""
    from ldm3d_engine.errors import InvalidRequest

    engine = bridge.pool.engine
    real = engine.generate  # type: ignore[union-attr]

    def generate(request: Any, *args: Any, **kwargs: Any) -> Any:
        if _doomed(request):
            raise InvalidRequest("steps", "steps 1 is not allowed with this scheduler (a stand-in)")
        return real(request, *args, **kwargs)

    patch.setattr(engine, "generate", generate)  # the engine is shared by the tests: put back after
    return "bad_arguments"


@pytest.mark.parametrize("fault", [_refused_setting, _out_of_memory, _disk_full, _unwritable_library])
def test_an_unattended_loop_goes_on_past_every_kind_of_failure(
    start_bridge: Start,
    client_for: ClientFor,
    show_dir: Path,
    fault: Callable[[Bridge, pytest.MonkeyPatch], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    head, *cues = LOOP.split("\n[[cue]]\n")  # the fallback "0" last: not the first cue, which a mix-up would give
    (show_dir / "faults.toml").write_text(head + "".join(f"\n[[cue]]\n{cue}" for cue in [*cues[1:], cues[0]]))
    clock = HandClock()
    bridge = start_bridge(input_dirs=(str(show_dir),), show_clock=clock)
    code = fault(bridge, monkeypatch)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "faults.toml")
    fallback = client.wait_for(["/ldm3d/ready"], 60)[-1]
    shown(client, "0")
    clock.advance(5)
    error = client.wait_for(["/ldm3d/error"], 60)[-1]
    assert error.args[1] == code
    again = client.wait_for(["/ldm3d/ready"], 10)[-1]  # the fallback, at once
    assert again.args[1] == fallback.args[1]
    state = state_where(client, lambda s: s[1:3] == ("1", "failed"))
    assert state[7] == 1 and state[9] == 5.0  # still running; its duration counts from the failure
    clock.advance(5)
    assert state_where(client, lambda s: s[1] == "2")[2] in ("rendering", "shown")  # and on it goes
    shown(client, "2")


def test_pregeneration_goes_on_past_a_failing_cue_and_reports_it(
    start_bridge: Start, client_for: ClientFor, show_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (show_dir / "faults.toml").write_text(LOOP.replace('fallback = "0"\n', ""))
    bridge = start_bridge(input_dirs=(str(show_dir),))
    _out_of_memory(bridge, monkeypatch)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "faults.toml", 0)
    state_where(client, lambda s: s[3] == "0")
    client.send("/ldm3d/show/pregen")
    warning = client.wait_for(["/ldm3d/warning"], 120)[-1]
    assert warning.args[1] == "scenes_failed" and "cues 1 " in str(warning.args[2])
    assert [cue["rendered"] for cue in bridge.shows.cues()] == [True, False, True]  # the others were made


def test_show_check_reports_the_serving_bridges_library_and_an_unrendered_fallback(
    start_bridge: Start, client_for: ClientFor, show_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bridge.cli.main import main

    bridge, _ = _on_cue_0(start_bridge, client_for, show_dir)
    assert bridge.stop()
    file, out = show_dir / "control.toml", bridge.writer.root
    assert main(["-q", "show", "check", str(file), "--model", "tiny", "--output", str(out)]) == 0
    printed = capsys.readouterr()
    assert "1 of 4 scenes rendered in" in printed.out and "warning" not in printed.err
    file.write_text(CONTROL.replace("a quiet harbour", "a quiet harbour at dawn"))  # the fallback changed
    assert main(["-q", "show", "check", str(file), "--model", "tiny", "--output", str(out)]) == 0  # a warning only
    printed = capsys.readouterr()
    assert "0 of 4 scenes rendered" in printed.out and "warning: the fallback cue 0 is not rendered" in printed.err
    assert main(["-q", "show", "check", str(file), "--model", "tiny", "--output", str(tmp_path / "new")]) == 0
    assert "has no scene made with tiny yet" in capsys.readouterr().err
