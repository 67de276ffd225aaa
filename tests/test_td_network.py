"""The TouchDesigner network the builder makes, run in the stand-in (tests/td_standin.py): it must show
the world by the documented rules, and its extension must switch worlds sent by a real bridge over UDP.

Negative controls rebuild the network with the mistakes of the first builder (the grid beside the
Geometry COMP, its default torus left in, the GLSL MAT's sequences not grown): the stand-in shows each."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.osc.client import OscClient
from tests.td_standin import StandIn, drawn_by, uniforms

ROOT = Path(__file__).resolve().parents[1]
RENDERS = ("render_mono", "render_left", "render_right", "render_dome", "render_cube")


@pytest.fixture
def td() -> Iterator[StandIn]:
    standin = StandIn(ROOT)
    yield standin
    standin.close()


def _custom(**values: Any) -> Callable[[dict[str, Any]], None]:
    """An edit of the builder's CUSTOM table (new defaults), as a user would make it."""

    def edit(namespace: dict[str, Any]) -> None:
        namespace["CUSTOM"] = [(page, n, k, values.get(n, d)) for page, n, k, d in namespace["CUSTOM"]]

    return edit


def _free_port() -> int:
    with OscClient("127.0.0.1", 9) as probe:  # bound to a free port, closed again
        return probe.port


def _silent_bridge() -> Callable[[dict[str, Any]], None]:
    return _custom(Bridgeport=9, Listenport=_free_port())  # port 9 (discard): the subscribe goes nowhere


def test_the_network_shows_the_grid_with_the_world_material(td: StandIn) -> None:
    comp = td.run_builder(edits=[_silent_bridge()])
    assert not [line for line in td.printed if "lacks" in line or "older" in line], td.printed
    for name in RENDERS:
        # not the default torus, not nothing; and the object slot (tests/test_td_objects.py)
        assert drawn_by(comp.op(name)) == ["world/grid", "object/mesh"], name
    grid = comp.op("world/grid")
    assert (grid.par.rows.eval(), grid.par.cols.eval(), grid.par.orient.eval()) == (257, 513, "xy")
    bound = uniforms(comp.op("world_mat"))
    assert bound["sRgb"] is comp.op("cross_rgb") and bound["sDepth"] is comp.op("cross_depth")
    assert (bound["uBaseRadius"], bound["uStrength"], bound["uBrightness"]) == (10.0, 1.0, 1.0)
    assert comp.op("world").par.material.eval() == "world_mat"
    assert comp.op("render_dome").par.rendermode.eval() == "fisheye180"
    assert comp.op("cam_dome").par.rx.eval() == 90.0  # zenith at the centre, like preview --fisheye 180
    assert comp.op("render_cube").par.rendermode.eval() == "cubemap"
    assert comp.op("cam_left").par.tx.eval() == pytest.approx(-0.032)
    # The flat view sits at the centre unless Eyeoffset steps it back (a fraction of the radius);
    # the cube map stays at the centre.
    assert comp.op("cam_mono").par.tz.eval() == 0.0
    comp.par.Eyeoffset.val = 0.4
    assert comp.op("cam_mono").par.tz.eval() == pytest.approx(4.0)
    assert comp.op(comp.op("render_cube").par.camera.eval()).par.tz.eval() == 0.0
    assert comp.op("oscin").par.port.eval() == comp.par.Listenport.eval()
    for dat in ("oscin_callbacks", "ldm3d_displace", "ldm3d_vertex", "ldm3d_pixel", "ldm3d_ext"):
        assert Path(comp.op(dat).par.file.eval()).is_file() and comp.op(dat).par.syncfile.eval()
    assert any("built with outputs flat, stereo, dome, cube" in line for line in td.printed)


def test_outputs_are_chosen_in_the_table(td: StandIn) -> None:
    comp = td.run_builder(edits=[_silent_bridge()], outputs=("flat", "dome"))
    names = {child.name for child in comp.children}
    assert {"render_mono", "render_dome", "cam_dome"} <= names
    assert not names & {"render_left", "render_right", "cam_left", "render_cube", "cam_cube"}


def test_the_first_builders_mistakes_show_in_the_standin(td: StandIn) -> None:
    def grid_beside_world(namespace: dict[str, Any]) -> None:
        namespace["NODES"] = [(*row[:4], "", row[5]) if row[0] == "grid" else row for row in namespace["NODES"]]

    def keep_default_children(namespace: dict[str, Any]) -> None:
        namespace["CLEAR_DEFAULT_CHILDREN"] = set()

    def no_sequences(namespace: dict[str, Any]) -> None:
        namespace["SEQUENCES"] = []

    comp = td.run_builder(edits=[_silent_bridge(), grid_beside_world, keep_default_children, no_sequences])
    drawn = drawn_by(comp.op("render_mono"))
    assert drawn[0] == "world/torus1" and "world/grid" not in drawn  # the torus renders, with the world's UVs
    assert comp.op("grid").parent is comp  # drawn by nobody
    assert "sDepth" not in uniforms(comp.op("world_mat"))  # the depth sampler is never bound
    lacking = " ".join(td.printed)
    assert "world_mat.par.sampler1name" in lacking and "world_mat.par.vec1name" in lacking


def test_a_menu_entry_the_build_lacks_is_reported(td: StandIn) -> None:
    def typo(namespace: dict[str, Any]) -> None:
        namespace["PARAMS"] = [(t, p, "fisheye" if v == "fisheye180" else v) for t, p, v in namespace["PARAMS"]]

    comp = td.run_builder(edits=[_silent_bridge(), typo])
    assert any("render_dome.par.rendermode has no menu entry 'fisheye'" in line for line in td.printed), td.printed
    assert comp.op("render_dome").par.rendermode.eval() == "render2d"


def test_an_old_touchdesigner_is_told_so_in_the_textport(tmp_path: Path) -> None:
    td = StandIn(ROOT, version="2022", build="33910")
    try:
        td.run_builder(edits=[_silent_bridge()])
    finally:
        td.close()
    assert any("TouchDesigner 2022.33910 is older than 2023.11000" in line for line in td.printed), td.printed


def _shows_only_loaded_textures(comp: Any) -> bool:
    """What the audience sees: any part of a buffer on screen has both of its files fully read."""
    cross = comp.op("cross_rgb").par.cross.eval()
    for buffer, visible in (("A", cross < 1.0), ("B", cross > 0.0)):
        tops = [comp.op(f"{kind}_{buffer}") for kind in ("rgb", "depth")]
        if visible and any(top.par.file.eval() and not top.isFullyPreRead for top in tops):
            return False
    return True


def _run_until(td: StandIn, condition: Callable[[], bool], timeout: float = 30.0) -> None:
    comp = td.project.op("ldm3d")
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        td.frame()
        assert _shows_only_loaded_textures(comp), "a half-loaded world is on screen"
        time.sleep(0.002)


def test_worlds_from_a_real_bridge_cross_fade_in_and_black_out(
    td: StandIn, start_bridge: Callable[..., Any], client_for: Callable[..., OscClient]
) -> None:
    td.load_frames = 4  # a file takes a few frames to read, as a large texture would
    bridge = start_bridge(heartbeat_s=0.5)
    port = bridge.address[1]
    comp = td.run_builder(edits=[_custom(Bridgeport=port, Listenport=_free_port(), Crossfade=0.25)])
    ext = comp.ext.Ldm3dExt
    _run_until(td, lambda: ext.keeper.next_at > td.absTime.seconds + 1)  # /ldm3d/subscribed came back
    cross = comp.op("cross_rgb").par.cross

    ext.Generate("a harbour at dusk", "steps", 1, "seed", 3)
    _run_until(td, lambda: cross.eval() == 1.0)  # A was on screen: the world loaded into B, then faded in
    rgb_b, depth_b = comp.op("rgb_B"), comp.op("depth_B")
    job_dir = Path(rgb_b.par.file.eval()).parent
    assert job_dir.parent == Path(bridge.settings.output).resolve()
    assert rgb_b.isFullyPreRead and depth_b.image is not None and depth_b.image.mode.startswith("I")
    assert comp.op("cross_depth").par.cross.eval() == 1.0 and ext.switcher.shown == job_dir.name

    ext.Generate("the same harbour at dawn", "steps", 1, "seed", 4)
    _run_until(td, lambda: cross.eval() == 0.0)  # the next world loads into A
    assert Path(comp.op("rgb_A").par.file.eval()).parent.name > job_dir.name
    # The third goes into B again, whose TOPs still report the first world as fully read until they cook.
    ext.Generate("the harbour at noon", "steps", 1, "seed", 5)
    _run_until(td, lambda: cross.eval() == 1.0)
    assert Path(rgb_b.par.file.eval()).parent.name > job_dir.name

    tablet = client_for(bridge)
    brightness = comp.op("world_mat").par.vec2valuex
    tablet.send("/ldm3d/display/blackout", 1)
    _run_until(td, lambda: brightness.eval() == 0.0)  # relayed by the bridge, faded by the extension
    assert comp.par.Blackout.eval() == 1
    tablet.send("/ldm3d/display/blackout", 0)
    _run_until(td, lambda: brightness.eval() == 1.0)
    _run_until(td, lambda: "idle" in comp.op("status").text)  # the heartbeat's /ldm3d/state, shown


def test_a_frozen_component_runs_without_the_checkout(tmp_path: Path) -> None:
    """freeze(): every synced Text DAT keeps its text and forgets this machine's file (R13), so a .tox
    saved from it runs on a show machine that has no checkout."""
    checkout = tmp_path / "checkout"
    for part in ("td_project", "bridge/render/glsl"):
        shutil.copytree(ROOT / part, checkout / part)
    standin = StandIn(checkout)
    try:
        comp = standin.run_builder(edits=[_silent_bridge()])
        synced = [d for d in comp.children if d.family == "DAT" and getattr(d.par, "syncfile", None) is not None]
        texts = {dat.name: dat.text for dat in synced}
        assert {"ldm3d_ext", "ldm3d_td_logic", "ldm3d_vertex", "ldm3d_displace"} <= set(texts)
        namespace = standin.globals()
        exec(compile((checkout / "td_project/build_network.py").read_text(), "build_network.py", "exec"), namespace)
        namespace["freeze"](comp)
        shutil.rmtree(checkout)  # the show machine: no checkout
        for name, text in texts.items():
            dat = comp.op(name)
            assert (dat.par.syncfile.eval(), dat.par.file.eval(), dat.text) == (False, "", text), name
        for node in standin.all_ops():
            node._module = None  # a fresh start: every module from the text the component holds
        comp.initializeExtensions()
        assert comp.ext.Ldm3dExt.Generate is not None
        assert comp.op("ldm3d_td_logic").module.WorldSwitcher is not None
        assert any("save /project1/ldm3d as a .tox" in line for line in standin.printed)
    finally:
        standin.close()


def test_a_loops_cue_fired_again_reaches_the_dome(
    td: StandIn, start_bridge: Callable[..., Any], client_for: Callable[..., OscClient], tmp_path: Path
) -> None:
    """A show's cues recalled from the library carry their scenes' ids, older than the world on screen
    once the loop has gone round: the extension shows them (a world sent on purpose), as a recall."""
    shows = tmp_path / "shows"
    shows.mkdir()
    cue = '[[cue]]\nnumber = "{n}"\nprompt = "a harbour, take {n}"\nseed = {n}\nsteps = 1\nwidth = 64\nheight = 64\n'
    (shows / "loop.toml").write_text('name = "Loop"\n\n' + "\n".join(cue.format(n=n) for n in (1, 2)))
    bridge = start_bridge(heartbeat_s=0.5, input_dirs=(str(shows),))
    comp = td.run_builder(edits=[_custom(Bridgeport=bridge.address[1], Listenport=_free_port(), Crossfade=0.0)])
    ext = comp.ext.Ldm3dExt
    _run_until(td, lambda: ext.keeper.next_at > td.absTime.seconds + 1)
    operator = client_for(bridge)
    operator.send("/ldm3d/show/load", "loop.toml")  # cue 1 fires (rendered live)
    _run_until(td, lambda: ext.switcher.shown is not None)
    first = ext.switcher.shown
    operator.send("/ldm3d/cue", "2")
    _run_until(td, lambda: ext.switcher.shown not in (None, first))
    second = ext.switcher.shown
    assert second is not None and first is not None and second > first
    operator.send("/ldm3d/cue", "1")  # from the library: the older scene, on purpose
    _run_until(td, lambda: ext.switcher.shown == first)
    front = "A" if comp.op("cross_rgb").par.cross.eval() == 0.0 else "B"
    assert Path(comp.op(f"rgb_{front}").par.file.eval()).parent.name == first
