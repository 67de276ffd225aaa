"""Shows: cue files, the scene library, pre-generation (killed with SIGKILL and resumed), and the
cue commands over real UDP on a bridge running the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.cli.main import main
from bridge.errors import BadShow
from bridge.osc.client import OscClient
from bridge.serve.server import Bridge
from bridge.show.cues import cue_number
from bridge.show.library import SceneLibrary
from bridge.show.reading import load_show, parse_show
from ldm3d_engine.errors import InvalidRequest
from ldm3d_engine.types import GenerateRequest
from tests.show_states import state_where
from tests.waits import until_final

ROOT = Path(__file__).resolve().parent.parent
Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]

SHOW = """\
name = "Test loop"
loop = true
fallback = "0"

[[cue]]
number = "0"
name = "Fallback"
prompt = "a quiet harbour"
seed = 1
steps = 1

[[cue]]
number = 1
name = "Reef"
prompt = "a reef"
seed = 2
steps = 1
duration = 0.5
continue = "follow"

[[cue]]
number = "2.5"
name = "Kelp"
prompt = "a kelp forest"
seed = 3
steps = 1
duration = 0.5
continue = "follow"
"""


# -- cue files -------------------------------------------------------------------


def test_a_cue_file_reads_into_cues_with_string_numbers() -> None:
    show = parse_show(SHOW, "show.toml")
    assert (show.name, show.loop, show.fallback) == ("Test loop", True, "0")
    assert [c.number for c in show.cues] == ["0", "1", "2.5"]
    reef = show.cues[1]
    assert (reef.name, reef.duration, reef.follow) == ("Reef", 0.5, True)
    assert reef.request().prompt == "a reef" and reef.request().seed == 2 and reef.request().steps == 1
    assert show.index("2.5") == 2 and show.cue("9") is None
    assert cue_number(3.0) == "3" and cue_number(2.5) == "2.5" and cue_number(" intro ") == "intro"
    assert load_show(ROOT / "examples" / "museum-loop.toml").fallback == "harbour"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (SHOW.replace("seed = 2\n", ""), r"show\.toml:12: cue 2 has no seed \(a scene must be reproducible\)"),
        (
            SHOW.replace("steps = 1\nduration = 0.5", "stpes = 1\nduration = 0.5", 1),
            r"show\.toml:17: unknown cue key 'stpes'",
        ),
        (SHOW.replace("seed = 3", 'seed = "3"'), r"show\.toml:25: seed must be an integer, got '3'"),
        (SHOW.replace("seed = 1\n", "seed = true\n"), r"show\.toml:9: seed must be an integer, got True"),
        (
            SHOW.replace("duration = 0.5\ncontinue", "continue", 1),
            r"show\.toml:18: continue = \"follow\" needs a duration",
        ),
        (
            SHOW.replace('number = "2.5"', 'number = "1"'),
            r"show\.toml:22: cue number '1' is used twice \(cues 2 and 3\)",
        ),
        (SHOW.replace('fallback = "0"', 'fallback = "7"'), r"show\.toml:3: fallback '7' is not a cue of this show"),
        (SHOW.replace('continue = "follow"', 'continue = "auto"', 1), r"show\.toml:19: continue 'auto' is unknown"),
        (
            SHOW.replace("steps = 1\n", "steps = 500\n", 1),
            r"show\.toml:10: steps 500 is out of range; allowed 1\.\.150",
        ),
        (
            SHOW.replace('prompt = "a reef"', 'prompt = "a reef"\nscheduler = "plms"'),
            r"show\.toml:16: scheduler 'plms' is unknown",
        ),
        (SHOW.replace('name = "Test loop"', 'name = "Test loop'), r"show\.toml: not valid TOML: .*line 1"),
        (SHOW.split("[[cue]]")[0], r"show\.toml: the show has no cues; add \[\[cue\]\] tables"),
        (SHOW.replace("loop = true", "loop = true\ncolour = 1"), r"show\.toml:3: unknown show key 'colour'"),
    ],
)
def test_every_mistake_is_named_with_its_line(text: str, message: str) -> None:
    with pytest.raises(BadShow, match=message):
        parse_show(text, "show.toml")


FULL_CUE = """\
name = "x"
[[cue]]
number = "1"
prompt = "a reef"
seed = 2
steps = 30
guidance = 7
negative = "fog"
width = 1024
height = 512
sampling = "live"
scheduler = "dpm"
seamless = true
upscale = false
"""


def test_a_cue_becomes_the_request_it_describes() -> None:
    cue = parse_show(FULL_CUE).cues[0]
    assert cue.request() == GenerateRequest(
        "a reef", negative_prompt="fog", seed=2, steps=30, guidance=7.0, width=1024, height=512,
        scheduler="dpm", seamless=True, sampling="live",
    )  # fmt: skip
    assert isinstance(cue.request().guidance, float) and not cue.upscale
    bare = parse_show(SHOW).cues[0].request()
    assert (bare.negative_prompt, bare.guidance, bare.width, bare.scheduler, bare.seamless) == (
        "",
        None,
        None,
        None,
        None,
    )


def test_the_scene_keys_canonical_form_is_pinned() -> None:
    """Every library on disk is keyed this way: a change here would render every show again."""
    cue = parse_show(FULL_CUE).cues[0]
    assert cue.scene_key("tiny@abc") == "a84254e4d508588feb41fce26d6acaddc800414dca2a8e265209100053791f2d"
    reordered = parse_show(
        FULL_CUE.replace("steps = 30\n", "").replace("upscale = false\n", "upscale = false\nsteps = 30\n")
    )
    assert reordered.cues[0].scene_key("tiny@abc") == cue.scene_key("tiny@abc")


def _one_cue(*lines: str, show: str = 'name = "s"') -> str:
    """A show (line 1: its keys) whose one cue starts on line 3 with ``lines`` from line 4 on."""
    return f"{show}\n\n[[cue]]\n" + "".join(f"{line}\n" for line in lines)


BASE = ('number = "1"', 'prompt = "p"', "seed = 1")  # lines 4, 5, 6; a line added is line 7


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ((*BASE[:2], "seed = -1"), "show.toml:6: seed -1 is out of range; use 0..2147483647"),
        ((*BASE[:2], "seed = 2147483648"), "show.toml:6: seed 2147483648 is out of range; use 0..2147483647"),
        ((*BASE, "width = 60"), "show.toml:7: width 60 must be a multiple of 8 from 64 to 4096"),
        ((*BASE, "width = 56"), "show.toml:7: width 56 must be a multiple of 8 from 64 to 4096"),
        ((*BASE, "height = 4104"), "show.toml:7: height 4104 must be a multiple of 8 from 64 to 4096"),
        ((*BASE, "steps = 0"), "show.toml:7: steps 0 is out of range; allowed 1..150"),
        ((*BASE, "steps = 151"), "show.toml:7: steps 151 is out of range; allowed 1..150"),
        ((*BASE, "guidance = -0.5"), "show.toml:7: guidance -0.5 is out of range; allowed 0..30"),
        ((*BASE, "guidance = 30.5"), "show.toml:7: guidance 30.5 is out of range; allowed 0..30"),
        ((*BASE, 'sampling = "fast"'), "show.toml:7: sampling 'fast' is unknown; use quality or live"),
        ((*BASE, "duration = 0.4"), "show.toml:7: duration 0.4 is out of range; allowed 0.5..86400 seconds"),
        ((*BASE, "duration = 86401"), "show.toml:7: duration 86401 is out of range; allowed 0.5..86400 seconds"),
        ((*BASE, "duration = nan"), "show.toml:7: duration nan is out of range; allowed 0.5..86400 seconds"),
        (('number = "a b"', *BASE[1:]), "show.toml:4: cue number 'a b': use up to 64 letters, digits, '.', '-' or '_'"),
        ((f'number = "{"x" * 65}"', *BASE[1:]), "use up to 64 letters, digits"),
        ((BASE[0], 'prompt = "  "', BASE[2]), "show.toml:5: the prompt is empty; say what the world should show"),
        ((*BASE, "name = 3"), "show.toml:7: name must be a string, got 3"),
        ((*BASE, "steps = 1.5"), "show.toml:7: steps must be an integer, got 1.5"),
        ((*BASE, 'guidance = "x"'), "show.toml:7: guidance must be an integer or a number, got 'x'"),
        ((*BASE, "seamless = 1"), "show.toml:7: seamless must be true or false, got 1"),
        ((*BASE, "upscale = 1"), "show.toml:7: upscale must be true or false, got 1"),
        (("number = true", *BASE[1:]), "show.toml:4: number must be a string or an integer or a number, got True"),
        (BASE[1:], "show.toml:3: cue 1 has no number"),
        ((BASE[0], BASE[2]), "show.toml:3: cue 1 has no prompt"),
    ],
)
def test_every_cue_rule_names_the_value_and_its_line(lines: tuple[str, ...], message: str) -> None:
    with pytest.raises(BadShow) as info:
        parse_show(_one_cue(*lines), "show.toml")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("show", "message"),
    [
        ("loop = true", 'show.toml: the show needs a name: name = "…"'),
        ('name = "  "', "show.toml:1: the show needs a name"),
        ('name = "s"\nloop = 1', "show.toml:2: loop must be true or false, got 1"),
        ('name = "s"\nfallback = true', "show.toml:2: fallback must name a cue, got True"),
        ('name = "s"\ncue = 5', "show.toml: the show has no cues; add [[cue]] tables"),
    ],
)
def test_every_show_rule_names_the_value_and_its_line(show: str, message: str) -> None:
    text = show if "cue = 5" in show else _one_cue(*BASE, show=show)
    with pytest.raises(BadShow) as info:
        parse_show(text, "show.toml")
    assert message in str(info.value)


def test_the_limits_themselves_are_allowed() -> None:
    edges = ("seed = 2147483647", "width = 4096", "height = 64", "steps = 150", "guidance = 30", "duration = 86400")
    cue = parse_show(_one_cue(*BASE[:2], *edges, 'continue = "follow"')).cues[0]
    assert cue.params["seed"] == 2**31 - 1 and cue.duration == 86400.0 and cue.follow and cue.name == "1"
    low = parse_show(_one_cue(BASE[0], BASE[1], "seed = 0", "steps = 1", "guidance = 0", "duration = 0.5")).cues[0]
    assert low.params["seed"] == 0 and low.duration == 0.5 and not low.follow
    assert parse_show(_one_cue(f'number = "{"x" * 64}"', *BASE[1:])).cues[0].number == "x" * 64
    numbered = parse_show(_one_cue("number = 3", *BASE[1:], show='name = "s"\nfallback = 3'))
    assert numbered.fallback == "3" and numbered.cue("3") is not None
    many = "".join(f'\n[[cue]]\nnumber = "{i}"\nprompt = "p"\nseed = 1\n' for i in range(1001))
    with pytest.raises(BadShow, match="1001 cues; a show has at most 1000"):
        parse_show(f'name = "s"\n{many}', "show.toml")


def test_a_cue_table_must_be_a_table() -> None:
    with pytest.raises(BadShow, match=r"a cue is a \[\[cue\]\] table"):
        parse_show('name = "s"\ncue = [1]', "show.toml")


def test_a_scene_key_follows_the_generation_parameters_and_the_model_only() -> None:
    show = parse_show(SHOW)
    reef = show.cues[1]
    renamed = parse_show(
        SHOW.replace('name = "Reef"', 'name = "Coral"').replace("duration = 0.5", "duration = 9", 1)
    ).cues[1]
    reseeded = parse_show(SHOW.replace("seed = 2", "seed = 22")).cues[1]
    assert reef.scene_key("tiny@1") == renamed.scene_key("tiny@1")  # name and timing are not the picture
    assert reef.scene_key("tiny@1") != reseeded.scene_key("tiny@1")
    assert reef.scene_key("tiny@1") != reef.scene_key("tiny@2")  # another model or engine version


def test_show_check_validates_without_a_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-q", "show", "check", str(ROOT / "examples" / "museum-loop.toml")]) == 0
    assert "show 'Six Seas', 6 cues (6 auto-follow), loop on, fallback harbour: ok" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text(SHOW.replace("seed = 3\n", ""))
    assert main(["-q", "show", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}:21: cue 3 has no seed" in err


# -- the library -----------------------------------------------------------------


def _scene_folder(library: SceneLibrary, scene_id: str, key: str, depth: str = "ok") -> Path:
    """A scene folder as the writer leaves it; ``depth``: "ok", "empty" (cut to 0 bytes) or "garbage"."""
    folder = library.folder / scene_id
    folder.mkdir(parents=True)
    Image.new("RGB", (16, 8)).save(folder / "rgb.tif")
    Image.fromarray(np.zeros((8, 16), np.uint16)).save(folder / "depth.tif")
    if depth != "ok":
        (folder / "depth.tif").write_bytes(b"" if depth == "empty" else b"not a tiff at all")
    (folder / "meta.json").write_text(json.dumps({"scene_key": key, "width": 16, "height": 8}))
    return folder


def test_the_library_drops_broken_scenes_and_adopts_complete_orphans(tmp_path: Path) -> None:
    library = SceneLibrary(tmp_path)
    try:
        _scene_folder(library, "20261122-100000-000-0001", "a" * 64)
        library.add("a" * 64, "20261122-100000-000-0001", "1")
        library.add("b" * 64, "20261122-100000-000-0002", "2")  # its folder is gone
        _scene_folder(library, "20261122-100000-000-0003", "c" * 64)  # written, then killed before the row
        _scene_folder(library, "20261122-100000-000-0004", "d" * 64, depth="empty")  # an empty texture
        _scene_folder(library, "20261122-100000-000-0006", "e" * 64)
        library.add("e" * 64, "20261122-100000-000-0006", "5")
        (library.folder / "20261122-100000-000-0006" / "depth.tif").write_bytes(b"damaged")  # corrupt since
        (library.folder / ".staging-20261122-100000-000-0005").mkdir()
        assert library.check() == (2, 1)
        assert library.rendered(k * 64 for k in "abcde") == {"a" * 64, "c" * 64}
        assert sorted(p.name for p in library.folder.iterdir()) == [
            "20261122-100000-000-0001",
            "20261122-100000-000-0003",
        ]
        library.save_state(show="/shows/a.toml", cue="2.5", running=False)
    finally:
        library.close()
    reopened = SceneLibrary(tmp_path)
    try:
        assert len(reopened) == 2 and reopened.load_state() == {"show": "/shows/a.toml", "cue": "2.5", "running": False}
    finally:
        reopened.close()


def test_a_row_pointing_at_another_scenes_folder_is_dropped_and_that_scene_kept(tmp_path: Path) -> None:
    """A row whose folder holds another scene (a copied folder, a hand-edited database): the row goes,
    the folder stays with the scene it holds, found by that scene's key (adopted when it had no row)."""
    library = SceneLibrary(tmp_path)
    try:
        _scene_folder(library, "20261122-100000-000-0001", "a" * 64)
        library.add("a" * 64, "20261122-100000-000-0001", "1")
        library.add("b" * 64, "20261122-100000-000-0001", "2")  # b's row, a's folder
        _scene_folder(library, "20261122-100000-000-0002", "c" * 64)
        library.add("d" * 64, "20261122-100000-000-0002", "4")  # d's row, the folder of c (no row of its own)
        assert library.check() == (2, 1)
        assert library.scene_id("b" * 64) is None and library.scene_id("d" * 64) is None  # rendered again
        assert library.scene_id("a" * 64) == "20261122-100000-000-0001"
        assert library.scene_id("c" * 64) == "20261122-100000-000-0002"
        assert len(list(library.folder.iterdir())) == 2
    finally:
        library.close()


def test_a_library_that_was_never_used_leaves_no_trace(tmp_path: Path) -> None:
    library = SceneLibrary(tmp_path)
    try:
        assert library.check() == (0, 0) and len(library) == 0 and library.load_state() == {}
        assert library.scene_id("a" * 64) is None and library.rendered(["a" * 64]) == set()
        assert list(tmp_path.iterdir()) == []  # no database, no scenes folder
    finally:
        library.close()


def test_scenes_survive_a_lost_database(tmp_path: Path) -> None:
    library = SceneLibrary(tmp_path)
    _scene_folder(library, "20261122-100000-000-0001", "a" * 64)
    _scene_folder(library, "20261122-100000-000-0002", "b" * 64)
    _scene_folder(library, "20261122-100000-000-0003", "a" * 64)  # the same scene rendered twice
    try:
        assert library.check() == (0, 2)  # the folders are the truth; the rows are rebuilt
        assert library.scene_id("a" * 64) == "20261122-100000-000-0001"
        assert library.scene_id("b" * 64) == "20261122-100000-000-0002"
        assert not (library.folder / "20261122-100000-000-0003").exists()  # the twin is removed
    finally:
        library.close()


def test_the_library_answers_for_a_thousand_scenes_at_once(tmp_path: Path) -> None:
    library = SceneLibrary(tmp_path)
    try:
        keys = [f"{i:064x}" for i in range(1200)]
        for i in (0, 499, 500, 501, 1000, 1199):
            library.add(keys[i], f"20261122-100000-000-{i:04d}", str(i))
        assert library.rendered(keys) == {keys[i] for i in (0, 499, 500, 501, 1000, 1199)}
        assert len(library) == 6
    finally:
        library.close()


def test_a_missing_cue_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadShow, match=r"nowhere\.toml: cannot read the cue file"):
        load_show(tmp_path / "nowhere.toml")


# -- pre-generation from the command line ------------------------------------------


def _pregen(show: Path, out: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bridge.cli", "-q", "pregen", str(show), "--model", "tiny", "--output", str(out)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.bridge  # a process with a tiny model: not in the mutation runs
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_pregen_killed_mid_run_resumes_with_only_what_is_missing(tmp_path: Path) -> None:
    cues = "".join(
        f'\n[[cue]]\nnumber = "{i}"\nprompt = "world {i}"\nseed = {i}\nsteps = 12\nwidth = 128\nheight = 128\n'
        for i in range(6)
    )
    show = tmp_path / "show.toml"
    again = '\n[[cue]]\nnumber = "again"\nprompt = "world 0"\nseed = 0\nsteps = 12\nwidth = 128\nheight = 128\n'
    show.write_text(f'name = "Overnight"\n{cues}{again}')  # "again" shares cue 0's scene
    out = tmp_path / "out"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    first = _pregen(show, out, env)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # kill it as soon as two scenes are in, mid-way through the third
            if (out / "scenes.sqlite").exists() and _rows(out) >= 2:
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(10)
    before = _rows(out)
    assert 2 <= before < 6, before
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "scenes").iterdir() if not p.name.startswith(".")}
    second = _pregen(show, out, env)
    stdout, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert f"Overnight: 6 scenes in the library ({6 - len(kept)} rendered now)" in stdout  # "again" shares cue 0's
    assert "scenes 6/6" in stderr
    library = SceneLibrary(out)
    try:
        assert len(library) == 6 and library.check() == (0, 0)
    finally:
        library.close()
    folders = {p.name: p.stat().st_mtime_ns for p in (out / "scenes").iterdir()}
    assert all(folders.get(name) == mtime for name, mtime in kept.items())  # nothing rendered twice
    assert len(folders) == 6 and not any(name.startswith(".") for name in folders)
    third = _pregen(show, out, env)
    assert "(0 rendered now)" in third.communicate(timeout=300)[0]


@pytest.mark.bridge  # loads the tiny models: not in the mutation runs
def test_pregen_renders_upscaled_cues_and_needs_the_upscaler_for_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    show = tmp_path / "sr.toml"
    show.write_text(_one_cue(*BASE, "steps = 1", "width = 64", "height = 64", "upscale = true"))
    out = tmp_path / "out"
    assert main(["-q", "pregen", str(show), "--model", "tiny", "--output", str(out)]) == 1  # its one cue skipped
    err = capsys.readouterr().err
    assert f"{show}:10: upscale = true needs an upscale model: give --upscale-model ldm3d-sr" in err
    assert not (out / "scenes").exists()
    config = tmp_path / "bridge.toml"  # the serving bridge's settings: the same model, upscaler and folder
    config.write_text(f'[bridge]\nmodel = "tiny"\nupscale_model = "tiny-sr"\noutput = "{out}"\n')
    assert main(["-q", "pregen", str(show), "--config", str(config)]) == 0
    assert "s: 1 scenes in the library (1 rendered now)" in capsys.readouterr().out
    (scene,) = (out / "scenes").iterdir()
    meta = json.loads((scene / "meta.json").read_text())
    assert (meta["mode"], meta["width"], meta["height"], meta["cue"]) == ("upscale", 256, 256, "1")


def _rows(out: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(out / "scenes.sqlite", timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM scenes").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


# -- over OSC ---------------------------------------------------------------------


@pytest.fixture
def show_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shows"
    folder.mkdir()
    (folder / "loop.toml").write_text(SHOW.replace("loop = true", "loop = false"))
    (folder / "museum.toml").write_text(SHOW)
    return folder


def _state(client: OscClient, timeout: float = 30) -> tuple[object, ...]:
    return client.wait_for(["/ldm3d/show/state"], timeout)[-1].args


def test_cues_are_shown_rendered_once_and_recalled_without_the_engine(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    bridge = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/cue", "1")
    assert client.wait_for(["/ldm3d/error"], 5)[-1].args[1:2] == ("no_show",)
    client.send("/ldm3d/show/load", "loop.toml")
    state = _state(client)  # the fallback is shown first: not rendered yet, so it is being made
    assert state[:3] == ("Test loop", "0", "rendering") and state[3] == "1"
    ready = client.wait_for(["/ldm3d/ready"], 60)[-1]
    assert _state(client)[:3] == ("Test loop", "0", "shown")
    meta = json.loads(Path(str(ready.args[3])).read_text())
    assert Path(str(ready.args[1])).parent.parent.name == "scenes" and meta["scene_key"]
    client.send("/ldm3d/cue", 1.0)  # a TouchOSC button's number: cue "1"
    client.wait_for(["/ldm3d/ready"], 60)
    client.send("/ldm3d/cue/list")
    infos = [client.wait_for(["/ldm3d/cue/info"], 5)[-1].args for _ in range(3)]
    assert infos == [("0", "Fallback", 1), ("1", "Reef", 1), ("2.5", "Kelp", 0)]
    # a rendered cue comes back at once, also while a job runs, and the engine is not asked
    client.send("/ldm3d/generate", "a long one", "steps", 150, "width", 256, "height", 256)
    job_id = client.wait_for(["/ldm3d/accepted"], 5)[-1].args[0]
    client.wait_for(["/ldm3d/progress"], 30)
    client.send("/ldm3d/cue", "0")
    seen = client.wait_for(["/ldm3d/ready"], 5)
    assert seen[-1].args[1] == ready.args[1]  # the same scene files, before the running job ends
    assert not any(m.address == "/ldm3d/accepted" for m in seen)
    assert until_final(client, str(job_id)).address == "/ldm3d/ready"  # 150 steps: as long as it moves
    client.send("/ldm3d/cue/go", 0.0)  # a button's release: nothing
    client.send("/ldm3d/cue/go", 1.0)
    assert _state(client)[1] == "1"
    client.send("/ldm3d/cue/back")
    assert _state(client)[1] == "0"
    client.send("/ldm3d/cue/back")
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "unknown_cue" and "is the first of 'Test loop'" in str(error.args[2])
    client.send("/ldm3d/cue/2.5", 1.0)  # one TouchOSC button per cue: press…
    client.send("/ldm3d/cue/2.5", 0.0)  # …and release, which is ignored
    assert state_where(client, lambda s: s[1] == "2.5", timeout=30)[2] == "rendering"
    client.wait_for(["/ldm3d/ready"], 60)
    client.send("/ldm3d/cue", "9")
    assert "has no cue '9'; cues: 0, 1, 2.5" in str(client.wait_for(["/ldm3d/error"], 5)[-1].args[2])
    client.send("/ldm3d/show/load", "../outside.toml")
    assert client.wait_for(["/ldm3d/error"], 5)[-1].args[1] == "bad_arguments"


def test_a_loop_cycles_on_the_bridges_clock_and_pauses(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    bridge = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "museum.toml")
    client.wait_for(["/ldm3d/ready"], 60)  # the fallback, "0" (it does not follow: GO moves on)
    client.send("/ldm3d/cue", "1")
    order: list[object] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # 1 → 2.5 → (the loop) 0, which does not follow: it waits for GO
        args = _state(client)
        if args[2] == "shown" and (args[1] == "1" or order) and (not order or order[-1] != args[1]):
            order.append(args[1])
        if order and order[-1] == "0":
            break
    assert order == ["1", "2.5", "0"]
    client.send("/ldm3d/cue", "1")
    _state(client)
    client.send("/ldm3d/show/stop")
    state_where(client, lambda s: s[7] == 0, timeout=30)
    time.sleep(1.2)  # more than the cue's 0.5 s: stopped, it stays
    client.send("/ldm3d/show/state")
    assert _state(client)[1:3] == ("1", "shown")
    client.send("/ldm3d/show/start")
    state_where(client, lambda s: s[7] == 1, timeout=30)
    assert state_where(client, lambda s: s[1] != "1", timeout=30)[1] == "2.5"  # the loop goes on


def test_a_restart_announces_the_current_world_and_goes_on(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    first = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(first)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "museum.toml")
    client.wait_for(["/ldm3d/ready"], 60)
    client.send("/ldm3d/cue", "2.5")
    shown = client.wait_for(["/ldm3d/ready"], 60)[-1]
    client.send("/ldm3d/show/stop")
    state_where(client, lambda s: s[7] == 0, timeout=30)
    assert first.stop()
    second = start_bridge(input_dirs=(str(show_dir),))  # the same output folder, a new process would do the same
    assert second.writer.root == first.writer.root
    # nothing is sent: the restored subscriber hears the current world, and the show's state
    again = client.wait_for(["/ldm3d/ready"], 60)[-1]
    assert again.args[1:4] == shown.args[1:4]
    state = _state(client)
    assert state[:3] == ("Test loop", "2.5", "shown") and state[7] == 0
    client.target = second.address
    client.send("/ldm3d/show/start")
    state_where(client, lambda s: s[7] == 1, timeout=30)
    state_where(client, lambda s: s[1] == "0", timeout=30)  # it loops on: after 2.5, the first cue


def test_pregen_over_osc_fills_the_library_in_idle_time_and_steps_aside_for_live_jobs(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    bridge = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "loop.toml")
    client.wait_for(["/ldm3d/ready"], 60)
    client.send("/ldm3d/show/pregen")
    client.send("/ldm3d/generate", "live first", "steps", 2)
    live = client.wait_for(["/ldm3d/ready"], 60)
    assert str(live[-1].args[1]).endswith(("rgb.tif", "rgb.png"))
    assert Path(str(live[-1].args[1])).parent.parent == bridge.writer.root  # a job, not a scene
    progress = client.wait_for(["/ldm3d/show/progress"], 60)[-1].args
    while progress[0] != progress[1]:
        progress = client.wait_for(["/ldm3d/show/progress"], 60)[-1].args
    assert progress == (3, 3)
    client.send("/ldm3d/cue/list")
    assert [client.wait_for(["/ldm3d/cue/info"], 5)[-1].args[2] for _ in range(3)] == [1, 1, 1]


def test_a_cue_with_upscale_is_generated_then_upscaled_and_needs_an_upscaler(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    (show_dir / "sr.toml").write_text(
        SHOW
        + "".join(
            f'\n[[cue]]\nnumber = "{n}"\nprompt = "a reef"\nseed = {seed}\nsteps = 1\nwidth = 64\nheight = 64\n'
            "upscale = true\n"
            for n, seed in (("big", 2), ("big2", 9))
        )
    )
    bridge = start_bridge(input_dirs=(str(show_dir),), upscale_model="tiny-sr")
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "sr.toml")
    client.wait_for(["/ldm3d/ready"], 60)
    client.send("/ldm3d/cue", "big")
    ready = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)[-1]
    assert ready.address == "/ldm3d/ready" and ready.args[4:6] == (256, 256)  # ×4 of the 64×64 generation
    meta = json.loads(Path(str(ready.args[3])).read_text())
    assert meta["mode"] == "upscale" and meta["scene_key"]
    assert bridge.stop()
    plain = start_bridge(input_dirs=(str(show_dir),))  # no upscaler: its cues cannot be made, the show is refused
    client.target = plain.address
    client.send("/ldm3d/show/load", "sr.toml")
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    lines = str(error.args[2]).splitlines()
    assert error.args[1] == "bad_show" and len(lines) == 2  # both upscale cues, with their lines
    assert all("upscale = true needs an upscale model: give --upscale-model ldm3d-sr" in line for line in lines)


def test_a_pregeneration_job_cancelled_while_it_waits_still_reports_its_end(
    start_bridge: Start, show_dir: Path
) -> None:
    """The show desk waits for each pre-generation job's end before it submits the next: one pushed
    aside by a live job before the worker took it must still end, or pre-generation would stall."""
    from bridge.workers.jobs import Job
    from ldm3d_engine.types import GenerateRequest as Request

    bridge = start_bridge(input_dirs=(str(show_dir),))
    ended: list[str] = []
    job = Job("20261123-000000-000-0001", Request("x", steps=1), None, quiet=True, on_done=ended.append)
    job.cancel.cancel()
    bridge._enqueue(job)
    deadline = time.monotonic() + 10
    while not ended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ended == ["/ldm3d/cancelled"]


LOOP_WITH_A_BAD_CUE = """\
name = "Never stops"
loop = true
fallback = "0"

[[cue]]
number = "0"
prompt = "a quiet harbour"
seed = 1
steps = 1
width = 64
height = 64
duration = 0.5
continue = "follow"

[[cue]]
number = "1"
prompt = "a reef"
seed = 2
steps = 1
width = 64
height = 64
duration = 0.5
continue = "follow"

[[cue]]
number = "2"
prompt = "a world the model refuses"
seed = 3
steps = 1
width = 64
height = 64
duration = 0.5
continue = "follow"
"""


def test_an_unattended_loop_goes_on_past_a_failing_cue_and_then_skips_it(
    start_bridge: Start, client_for: ClientFor, show_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cue that fails (here: a setting the engine refuses when it renders) shows the fallback, then
    the loop moves on after the cue's duration; after show_skip_after failures in a row GO and
    auto-follow pass it by."""
    (show_dir / "bad.toml").write_text(LOOP_WITH_A_BAD_CUE)
    bridge = start_bridge(input_dirs=(str(show_dir),), show_skip_after=2)
    engine = bridge.pool.engine
    real = engine.generate  # type: ignore[union-attr]

    def generate(request: Any, *args: Any, **kwargs: Any) -> Any:  # a refusal the cue file's checks cannot see
        if "refuses" in request.prompt:
            raise InvalidRequest("scheduler", "this scheduler cannot run 1 step (a stand-in)")
        return real(request, *args, **kwargs)

    monkeypatch.setattr(engine, "generate", generate)  # the engine is shared by the tests: put back after
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "bad.toml")
    steps: list[tuple[object, object]] = []
    skipped = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = _state(client)
        if state[2] in ("shown", "failed") and (not steps or steps[-1] != state[1:3]):
            steps.append(state[1:3])
        skipped = skipped or state[8] == 1
        if skipped and steps.count(("1", "shown")) >= 4:
            break
    failed = [i for i, step in enumerate(steps) if step == ("2", "failed")]
    assert len(failed) == 2, steps  # it failed twice, and the loop went on each time…
    assert all(steps[i + 1] == ("0", "shown") for i in failed), steps  # …to the next cue (wrapping)
    after = steps[failed[-1] + 1 :]
    assert ("2", "failed") not in after and ("2", "rendering") not in after, steps  # then skipped
    assert after.count(("1", "shown")) >= 2, steps  # and the loop still runs
    client.send("/ldm3d/cue", "1")
    assert state_where(client, lambda s: s[1] == "1", timeout=30)[3] == "0"  # what comes after "1" is "0" now
    assert [cue["skipped"] for cue in bridge.shows.cues()] == [False, False, True]  # the page marks it
    client.send("/ldm3d/show/load", "bad.toml")  # loading it again forgives
    assert state_where(client, lambda s: s[1] == "0", timeout=30)[8] == 0


def test_loading_a_show_with_cues_the_model_refuses_lists_every_one(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    wide = LOOP_WITH_A_BAD_CUE.replace(
        "width = 64\nheight = 64\nduration = 0.5", "width = 4096\nheight = 64\nduration = 0.5"
    )
    (show_dir / "wide.toml").write_text(wide)
    many = SHOW + "".join(f'\n[[cue]]\nnumber = "w{n}"\nprompt = "x"\nseed = 1\nwidth = 4104\n' for n in range(12))
    (show_dir / "many.toml").write_text(many)
    bridge = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(bridge)
    client.subscribe_self()  # a confirmed client: answers in full (an unconfirmed one gets them cut short)
    client.send("/ldm3d/show/load", "wide.toml")
    error = client.wait_for(["/ldm3d/error"], 10)[-1]
    lines = str(error.args[2]).splitlines()
    assert error.args[1] == "bad_show" and len(lines) == 3, lines  # every cue: all three are 4096 wide
    assert all(":" in line and "4096" in line for line in lines)
    client.send("/ldm3d/show/load", "many.toml")
    lines = str(client.wait_for(["/ldm3d/error"], 10)[-1].args[2]).splitlines()
    assert len(lines) == 11 and lines[-1].startswith("… and 2 more: `ldm3d-bridge show check ")
    assert bridge.shows.show is None  # nothing was loaded


def test_serve_show_starts_the_show_with_the_bridge_and_a_restart_keeps_its_place(
    start_bridge: Start, client_for: ClientFor, show_dir: Path
) -> None:
    """``serve --show FILE`` (the ``show`` setting): no input_dirs and no /ldm3d/show/load needed; once
    the model is ready the fallback cue is on. After a restart the saved place wins over the file's start."""
    show = show_dir / "loop.toml"
    first = start_bridge(show=str(show))
    client = client_for(first)
    client.subscribe_self()
    client.send("/ldm3d/show/state")
    assert state_where(client, lambda s: s[2] == "shown", timeout=30)[:2] == ("Test loop", "0")
    client.send("/ldm3d/cue", "2.5")
    state_where(client, lambda s: s[1:3] == ("2.5", "shown"), timeout=30)
    assert first.stop()
    second = start_bridge(show=str(show))
    client.target = second.address
    client.send("/ldm3d/show/state")
    assert state_where(client, lambda s: s[2] == "shown", timeout=30)[:2] == ("Test loop", "2.5")


@pytest.mark.bridge  # serve loads the tiny model first (19 s): outside the mutation selection
def test_serve_show_with_a_mistake_stops_serve_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "s"\n[[cue]]\nnumber = 1\nprompt = "x"\nseed = 1\nsteps = 500\n')
    assert main(["-q", "serve", "--show", str(bad), "--port", "0", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ldm3d-bridge: error: {bad}:6: steps 500 is out of range") and "\n" not in err
