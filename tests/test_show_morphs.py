"""Cues that arrive by morphing (``morph = true``): read and checked from the cue file, rendered
into the scene library with their frames (live, in pre-generation and by ``pregen``), and played
again, frame by frame, every time the cue fires."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bridge.cli.main import main
from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from bridge.show.checks import check_cues, cue_limits
from bridge.show.reading import parse_show, read

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]

SHOW = """\
name = "Travel"

[[cue]]
number = "1"
prompt = "a desert at noon"
seed = 1
steps = 3
width = 64
height = 64

[[cue]]
number = "2"
prompt = "a forest at dusk"
seed = 2
steps = 3
width = 64
height = 64
morph = true
morph_frames = 3
fade = 2.5
"""


def _mistakes(text: str) -> list[str]:
    return [m.text for m in read(text, "s.toml").found]


def test_a_morph_cue_arrives_from_the_cue_before_it() -> None:
    show = parse_show(SHOW)
    first, second = show.cues
    assert second.morph_from == first and second.morph_frames == 3 and first.morph_from is None
    # its scene is the morph: another cue before it (or other frames) is another scene
    other = parse_show(SHOW.replace("a desert at noon", "a desert at night"))
    assert other.cues[1].scene_key("m") != second.scene_key("m")
    assert parse_show(SHOW.replace("morph_frames = 3", "morph_frames = 4")).cues[1].scene_key("m") != second.scene_key(
        "m"
    )
    # the fade is when it plays, not what it is
    assert parse_show(SHOW.replace("fade = 2.5", "fade = 6")).cues[1].scene_key("m") == second.scene_key("m")
    plain = parse_show(SHOW.replace("morph = true\nmorph_frames = 3\n", "")).cues[1]
    assert plain.scene_key("m") != second.scene_key("m")


FIRST = 'prompt = "a desert at noon"\nseed = 1\nsteps = 3\nwidth = 64\nheight = 64\n'
MORPH_MISTAKES = [
    (
        SHOW.replace(FIRST, 'prompt = "a desert"\nseed = 1\nmorph = true\n', 1),
        "s.toml:7: morph = true needs a cue before",
    ),
    (SHOW.replace("seed = 1\n", "seed = -4\n"), "s.toml:18: morph = true: the cue before it (cue 1 in the file) has"),
    (SHOW.replace("morph_frames = 3", "morph_frames = 1"), "s.toml:19: morph_frames 1 is out of range; allowed 2..240"),
    (SHOW.replace("morph = true\n", ""), "s.toml:18: morph_frames is for a cue with morph = true"),
    (SHOW.replace("morph = true\n", "morph = true\nupscale = true\n"), "s.toml:18: morph = true and upscale = true"),
    (SHOW.replace("seed = 1\n", "seed = 1\nupscale = true\n"), "s.toml:19: morph = true and upscale = true"),
]


@pytest.mark.parametrize(("text", "message"), MORPH_MISTAKES)
def test_a_morph_cue_with_a_mistake_is_named_with_its_line(text: str, message: str) -> None:
    assert any(m.startswith(message) for m in _mistakes(text)), _mistakes(text)


def test_a_morph_between_cues_the_model_cannot_blend_is_a_mistake_of_the_morph() -> None:
    show = parse_show(
        SHOW.replace("steps = 3\nwidth = 64\nheight = 64\nmorph", "steps = 4\nwidth = 64\nheight = 64\nmorph")
    )
    found = [m.text for m in check_cues(show, cue_limits(BridgeSettings(model="tiny")))]
    assert found == [
        "<show>:18: morph = true from cue 1: the two worlds of a morph must have the same steps: the first has 3, "
        "the second 4"
    ]
    assert not check_cues(parse_show(SHOW), cue_limits(BridgeSettings(model="tiny")))


def _frames(messages: list[Message], scene: str) -> list[Message]:
    return [m for m in messages if m.address == "/ldm3d/morph/frame" and m.args[0] == scene]


def test_a_morph_cue_renders_its_frames_into_the_library_and_plays_them_each_time(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path
) -> None:
    shows = tmp_path / "shows"
    shows.mkdir()
    (shows / "travel.toml").write_text(SHOW)
    bridge = start_bridge(input_dirs=(str(shows),), progress_hz=1000.0)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "travel.toml")
    first = client.wait_for(["/ldm3d/ready"], 60)[-1]  # cue 1 (no fallback: the first cue fires)
    client.send("/ldm3d/cue", "2")  # rendered live: its frames as they are made
    live = client.wait_for(["/ldm3d/ready"], 60)
    scene = str(live[-1].args[0])
    frames = _frames(live, scene)
    assert [m.args[1:4] for m in frames] == [(0, 3, 2.5), (1, 3, 2.5), (2, 3, 2.5)]
    assert Path(str(frames[0].args[4])).parent.parent.name == scene  # morphs/<scene id>/0000/
    np.testing.assert_array_equal(
        np.asarray(Image.open(str(frames[0].args[4]))), np.asarray(Image.open(str(first.args[1])))
    )
    meta = json.loads(Path(str(live[-1].args[3])).read_text())
    assert meta["scene_key"] and meta["morph"]["from"] == "cue 1" and meta["morph"]["frames"] == 3
    # fired again: from the library at once, its frames played again, then the world
    client.send("/ldm3d/cue", "1")
    client.wait_for(["/ldm3d/ready"], 10)
    client.send("/ldm3d/cue", "2")
    again = client.wait_for(["/ldm3d/ready"], 10)
    assert not any(m.address == "/ldm3d/accepted" for m in again)
    replayed = _frames(again, scene)
    assert [m.args[1:] for m in replayed] == [m.args[1:] for m in frames]
    assert again[-1].args[1] == live[-1].args[1]
    # a new fade is when the same scene plays: its frames over the new seconds, nothing rendered again
    (shows / "slower.toml").write_text(SHOW.replace("fade = 2.5", "fade = 6"))
    client.send("/ldm3d/show/load", "slower.toml", 0)
    client.wait_for(["/ldm3d/show/state"], 10)
    client.send("/ldm3d/cue", "2")
    slower = client.wait_for(["/ldm3d/ready"], 10)
    assert [m.args[1:4] for m in _frames(slower, scene)] == [(0, 3, 6.0), (1, 3, 6.0), (2, 3, 6.0)]
    assert not any(m.address == "/ldm3d/accepted" for m in slower)


def test_pregen_renders_a_morph_cues_frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    show = tmp_path / "travel.toml"
    show.write_text(SHOW)
    out = tmp_path / "out"
    assert main(["-q", "pregen", str(show), "--model", "tiny", "--output", str(out)]) == 0
    scenes = [p for p in (out / "scenes").iterdir() if (p / "meta.json").is_file()]
    morph = next(p for p in scenes if "morph" in json.loads((p / "meta.json").read_text()))
    manifest = json.loads((out / "morphs" / morph.name / "morph.json").read_text())
    assert manifest["complete"] and [f["index"] for f in manifest["written"]] == [0, 1, 2]
    assert manifest["seconds"] == 2.5 and manifest["from"] == "cue 1"
