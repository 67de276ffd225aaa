"""Cues that place a text → 3D object in their world (``object = "…"``): read and checked from the
cue file, rendered with the world into the scene (``object/`` in its folder), and announced after
the world each time the cue fires; a cue without one clears it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trimesh

from bridge.cli.main import main
from bridge.contract.engine_api import LocalSlot
from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.placement import Placement
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from bridge.show.checks import check_cues, cue_limits
from bridge.show.reading import parse_show, read
from ldm3d_engine.object_types import ObjectEngineLike

ClientFor = Callable[[Bridge], OscClient]
pytestmark = pytest.mark.timeout(180)

SHOW = """\
name = "Lanterns"

[[cue]]
number = "1"
prompt = "a harbour at night"
seed = 1
steps = 2
width = 64
height = 64
object = "a red lantern"
object_steps = 2
object_resolution = 16
object_yaw = 30
object_distance = 0.6

[[cue]]
number = "2"
prompt = "a forest at dusk"
seed = 2
steps = 2
width = 64
height = 64
"""


def _mistakes(text: str) -> list[str]:
    return [m.text for m in read(text, "s.toml").found]


def test_a_cue_object_is_read_with_its_placement_and_only_what_it_is_makes_a_new_scene() -> None:
    cue = parse_show(SHOW).cues[0]
    assert cue.object is not None
    assert (cue.object.prompt, cue.object.seed, cue.object.steps, cue.object.resolution) == ("a red lantern", 1, 2, 16)
    assert cue.object.placement == Placement(yaw=30.0, distance=0.6)
    key = cue.scene_key("m", "tiny-ln3diff")

    def key_of(text: str, model: str = "tiny-ln3diff") -> str:
        return parse_show(text).cues[0].scene_key("m", model)

    assert key_of(SHOW.replace("a red lantern", "a blue lantern")) != key
    assert key_of(SHOW.replace("object_steps = 2\n", "object_steps = 2\nobject_seed = 9\n")) != key
    assert key_of(SHOW, "tiny-shap-e") != key  # another object model makes another object
    assert key_of(SHOW.replace("object_yaw = 30", "object_yaw = -90")) == key  # moving it renders nothing
    assert parse_show(SHOW).cues[1].object is None


OBJECT_MISTAKES = [
    (SHOW.replace('object = "a red lantern"\n', ""), "s.toml:10: object_steps is for a cue with an object"),
    (SHOW.replace("object_distance = 0.6", "object_distance = 4"), "s.toml:14: object_distance 4 is out of range"),
    (SHOW.replace("object_yaw = 30", 'object_yaw = "left"'), "s.toml:13: object_yaw must be"),
    (SHOW.replace('"a red lantern"', '"  "'), "s.toml:10: the object's prompt is empty"),
    (SHOW.replace("object_steps = 2\n", "object_seed = -1\nobject_steps = 2\n"), "s.toml:11: object_seed -1 is out"),
    (SHOW.replace("object_steps = 2\n", "object_seed = 2147483648\nobject_steps = 2\n"), "s.toml:11: object_seed 21"),
    (SHOW.replace("object_steps = 2", "object_steps = 0"), "s.toml:11: object_steps 0 is out of range; it must be"),
    (SHOW.replace("object_resolution = 16", "object_resolution = 0"), "s.toml:12: object_resolution 0 is out of"),
    (SHOW.replace("seed = 2\n", "seed = 2\nmorph = true\nobject = 'a cup'\n"), "s.toml:20: morph = true and object"),
]


@pytest.mark.parametrize(("text", "message"), OBJECT_MISTAKES)
def test_a_cue_object_with_a_mistake_is_named_with_its_line(text: str, message: str) -> None:
    assert any(m.startswith(message) for m in _mistakes(text)), _mistakes(text)


def test_a_cue_object_on_a_bridge_without_an_object_model_is_a_mistake_of_that_cue() -> None:
    show = parse_show(SHOW)
    found = [m.text for m in check_cues(show, cue_limits(BridgeSettings(model="tiny")))]
    assert found == ["<show>:10: object needs an object model: give --object-model shap-e (tiny-shap-e offline)"]
    assert not check_cues(show, cue_limits(BridgeSettings(model="tiny", object_model="tiny-ln3diff")))


@pytest.fixture(scope="module")
def tiny_objects(tiny_dir: Path) -> ObjectEngineLike:
    from ldm3d_engine import EngineSettings, load_object_engine

    return load_object_engine(EngineSettings(device="cpu", tiny_dir=str(tiny_dir)), "tiny-ln3diff")


def _after(messages: list[Message], address: str) -> list[Message]:
    return [m for m in messages if m.address == address]


@pytest.fixture
def show_client(
    start_bridge: Callable[..., Bridge],
    load_tiny: Callable[[str], Any],
    tiny_objects: ObjectEngineLike,
    client_for: ClientFor,
    tmp_path: Path,
) -> Callable[..., OscClient]:
    """``show_client(cue file text, engine=None)``: a subscribed client of a bridge with tiny-ln3diff
    (and the tiny model, or ``engine()``) that loaded it."""

    def start(text: str, engine: Callable[[], Any] | None = None) -> OscClient:
        shows = tmp_path / "shows"
        shows.mkdir()
        (shows / "show.toml").write_text(text)
        slot = LocalSlot(engine or (lambda: load_tiny("tiny")), where="cpu 0", objects=lambda: tiny_objects)
        bridge = start_bridge(slots=[slot], object_model="tiny-ln3diff", input_dirs=(str(shows),), progress_hz=1000.0)
        client = client_for(bridge)
        client.subscribe_self()
        client.send("/ldm3d/show/load", "show.toml")
        return client

    return start


@pytest.mark.bridge  # starts a bridge with the tiny models: not in the mutation runs
def test_a_cue_object_is_rendered_into_its_scene_and_follows_its_world_each_time_it_fires(
    show_client: Callable[..., OscClient],
) -> None:
    client = show_client(SHOW)  # no fallback: cue 1 fires, rendered live
    live = client.wait_for(["/ldm3d/object/ready"], 120)
    world = _after(live, "/ldm3d/ready")[-1]
    scene = str(world.args[0])
    placed = live[-1]
    folder = Path(str(world.args[3])).parent
    assert placed.args[:3] == (scene, str(folder / "object" / "mesh.obj"), str(folder / "object" / "mesh.glb"))
    assert placed.args[3:] == pytest.approx((30.0, 0.0, 0.6, 0.25, 0.0))
    assert folder.parent.name == "scenes"
    meta = json.loads((folder / "object" / "meta.json").read_text())
    assert (meta["prompt"], meta["seed"], meta["placement"]["yaw"]) == ("a red lantern", 1, 30.0)
    mesh = trimesh.load(folder / "object" / "mesh.glb", process=False, force="mesh")
    assert len(mesh.faces) == meta["faces"] > 0
    # a cue without an object: its world, then the object is taken off the dome
    client.send("/ldm3d/cue", "2")
    second = client.wait_for(["/ldm3d/object/clear"], 120)
    assert _after(second, "/ldm3d/ready") and second[-1].args == ()
    # fired again: from the library, nothing rendered; the world, then its object at the cue's place
    client.send("/ldm3d/cue", "1")
    again = client.wait_for(["/ldm3d/object/ready"], 20)
    assert not _after(again, "/ldm3d/accepted")
    assert [m.address for m in again if m.address.startswith(("/ldm3d/ready", "/ldm3d/object"))] == [
        "/ldm3d/ready",
        "/ldm3d/object/ready",
    ]
    assert again[-1].args == placed.args


FALLBACK_SHOW = (
    SHOW.replace('name = "Lanterns"\n', 'name = "Lanterns"\nfallback = "1"\n')
    + """
[[cue]]
number = "3"
prompt = "a cave"
seed = 3
steps = 2
width = 64
height = 64
object = "a crystal"
object_resolution = 100000
"""
)


@pytest.mark.bridge  # starts a bridge with the tiny models: not in the mutation runs
def test_a_failed_cue_shows_the_fallback_with_the_fallbacks_object(show_client: Callable[..., OscClient]) -> None:
    client = show_client(FALLBACK_SHOW)  # the fallback, cue 1, is rendered and shown first
    first = client.wait_for(["/ldm3d/object/ready"], 120)[-1]
    client.send("/ldm3d/cue", "2")  # no object: cleared
    client.wait_for(["/ldm3d/object/clear"], 120)
    client.send("/ldm3d/cue", "3")  # its object cannot be made (the grid is too fine): the fallback instead
    shown = client.wait_for(["/ldm3d/object/ready"], 120)
    assert any(m.address == "/ldm3d/error" for m in shown)
    assert shown[-1].args == first.args  # the fallback's world, then its object where its cue says


@pytest.mark.bridge  # starts a bridge with the tiny models: not in the mutation runs
def test_pregen_renders_a_cues_object_and_the_bridge_fires_it_from_the_library(
    show_client: Callable[..., OscClient],
    tiny_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tiny_dir / "xdg"))  # the tiny models built once a session
    show = tmp_path / "lanterns.toml"
    show.write_text(SHOW)
    out = tmp_path / "out"  # the folder the bridge below serves
    pregen = ["-q", "pregen", str(show), "--model", "tiny", "--output", str(out)]
    assert main(pregen) == 1  # without an object model: the object cue is a mistake, the other rendered
    assert "object needs an object model: give --object-model" in capsys.readouterr().err
    assert main([*pregen, "--object-model", "tiny-ln3diff"]) == 0
    assert "2 scenes in the library (1 rendered now)" in capsys.readouterr().out
    (inner,) = (out / "scenes").glob("*/object")
    assert json.loads((inner / "meta.json").read_text())["placement"]["yaw"] == 30.0
    from bridge.cli.jobs import engine_settings
    from bridge.settings import load_settings
    from ldm3d_engine import load_engine

    serving = engine_settings(load_settings({"model": "tiny"}))  # the model as serve loads it, as pregen did
    client = show_client(SHOW, lambda: load_engine(serving))  # the same keys: from the library, nothing rendered
    fired = client.wait_for(["/ldm3d/object/ready"], 60)
    assert not _after(fired, "/ldm3d/accepted")
    assert Path(str(fired[-1].args[2])) == inner / "mesh.glb"


@pytest.mark.parametrize("seed", [0, 2**31 - 1])
def test_an_object_seed_at_either_end_of_its_range_is_read(seed: int) -> None:
    cue = parse_show(SHOW.replace("object_steps = 2\n", f"object_seed = {seed}\nobject_steps = 2\n")).cues[0]
    assert cue.object is not None and cue.object.seed == seed


@pytest.mark.parametrize("line", ["object_steps = 1", "object_pitch = -90", "object_pitch = 90", "object_size = 2"])
def test_object_values_at_the_ends_of_their_ranges_are_no_mistake(line: str) -> None:
    assert not _mistakes(SHOW.replace("object_steps = 2", line)), line
