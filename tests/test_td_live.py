"""The TouchDesigner extension's live side in the stand-in (tests/td_standin.py): a world shown while it
forms (``/ldm3d/preview``) and a morph played as a chain of crossfades (``/ldm3d/morph/frame``), with the
messages sent over real UDP to the built network's OSC In DAT (a scripted bridge with files written here,
and a real tiny bridge), on the stand-in's clock (``td.frame(seconds)``), which the tests move.

Never run inside TouchDesigner: what the stand-in cannot tell is listed in td_project/README.md."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.osc.client import OscClient
from bridge.serve.server import Bridge
from tests.engines import slow_tiny
from tests.td_standin import StandIn, uniforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "td_project" / "python"))

from ldm3d_td_live import Forming, MorphFrames  # noqa: E402 - the TouchDesigner side's own folder
from ldm3d_td_logic import LoadBack, SetCross, Shown, WorldSwitcher  # noqa: E402

J1, J2, J3 = "20261122-100000-000-0001", "20261122-100005-000-0002", "20261122-100009-000-0003"
M = "20261122-100010-000-0004"  # a morph from J1
FRAME = 1 / 60


# -- the network, fed by a scripted bridge over UDP -------------------------------------------------------


@pytest.fixture
def td() -> Iterator[StandIn]:
    standin = StandIn(ROOT)
    yield standin
    standin.close()


def _free_port() -> int:
    with OscClient("127.0.0.1", 9) as probe:
        return probe.port


def _build(td: StandIn, **values: Any) -> tuple[Any, OscClient]:
    """The network with CUSTOM defaults changed (the bridge at port 9: nothing answers), and a client that
    sends to its OSC In DAT as the bridge would."""
    listen = _free_port()
    values = {"Bridgeport": 9, "Listenport": listen, **values}

    def edit(namespace: dict[str, Any]) -> None:
        namespace["CUSTOM"] = [(page, n, k, values.get(n, d)) for page, n, k, d in namespace["CUSTOM"]]

    comp = td.run_builder(edits=[edit])
    td.frame()  # the OSC In DAT listens from its first cook
    return comp, OscClient("127.0.0.1", listen)


def _run_until(td: StandIn, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        td.frame(FRAME)
        time.sleep(0.001)


def _send(td: StandIn, bridge: OscClient, address: str, *args: Any) -> None:
    """Send as the bridge, then run frames until the OSC In DAT has it."""
    count = len(td.received)
    bridge.send(address, *args)
    _run_until(td, lambda: len(td.received) > count)


def _frames(td: StandIn, seconds: float) -> None:
    for _ in range(round(seconds / FRAME)):
        td.frame(FRAME)


def _picture(folder: Path, colour: tuple[int, int, int], depth: int, size: tuple[int, int] = (16, 8)) -> Path:
    """rgb.png and a 16-bit depth.png in ``folder``, replaced atomically as the bridge does."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((size[1], size[0], 3), np.uint8)
    rgb[:] = colour
    for name, image in (
        ("rgb.png", Image.fromarray(rgb, "RGB")),
        ("depth.png", Image.fromarray(np.full(size[::-1], depth, np.uint16))),
    ):
        image.save(folder / f".{name}.tmp", format="PNG")
        os.replace(folder / f".{name}.tmp", folder / name)
    return folder


def _paths(folder: Path) -> tuple[str, str]:
    return str(folder / "rgb.png"), str(folder / "depth.png")


def _forming(comp: Any) -> float:
    return float(comp.op("world_mat").par.vec3valuex.eval())


def _colour(top: Any) -> tuple[int, ...]:
    assert top.image is not None, f"{top.name} shows nothing"
    return tuple(top.image.getpixel((0, 0)))


def test_the_network_binds_the_preview_tops_and_the_forming_uniform(td: StandIn) -> None:
    comp, _ = _build(td)
    bound = uniforms(comp.op("world_mat"))
    assert bound["sPreviewRgb"] is comp.op("rgb_preview") and bound["sPreviewDepth"] is comp.op("depth_preview")
    assert bound["sRgb"] is comp.op("cross_rgb") and bound["uForming"] == 0.0
    assert (comp.par.Showpreviews.eval(), comp.par.Previewmix.eval(), comp.par.Previewfade.eval()) == (True, 0.8, 0.5)
    assert comp.op("rgb_preview").par.reloadpulse.isPulse


@pytest.mark.parametrize("end", ["/ldm3d/ready", "/ldm3d/cancelled", "/ldm3d/error"])
def test_a_world_forms_on_the_sphere_and_the_forming_look_ends_with_its_job(
    td: StandIn, tmp_path: Path, end: str
) -> None:
    comp, bridge = _build(td, Crossfade=0.5, Previewfade=0.2)
    slot = _picture(tmp_path / "out" / "previews" / "0", (200, 0, 0), 30000)
    rgb_top, depth_top = comp.op("rgb_preview"), comp.op("depth_preview")

    _send(td, bridge, "/ldm3d/preview", J1, 3, 12, *_paths(slot))
    assert (rgb_top.par.file.eval(), depth_top.par.file.eval()) == _paths(slot)
    assert rgb_top.par.reloadpulse.pulses == depth_top.par.reloadpulse.pulses == 1
    td.frame(FRAME)  # the TOPs read the slot at this cook: the extension sees it read at the next frame
    assert _forming(comp) == 0.0 and rgb_top.isFullyPreRead  # never a preview the TOPs have not read
    _frames(td, 0.25)
    assert _forming(comp) == pytest.approx(0.8) and _colour(rgb_top) == (200, 0, 0)  # Previewmix, after Previewfade

    # The slot keeps its name: the next preview is read only because the TOPs are pulsed (R14).
    _picture(slot, (0, 0, 200), 40000)
    _send(td, bridge, "/ldm3d/preview", J1, 6, 12, *_paths(slot))
    assert rgb_top.par.reloadpulse.pulses == depth_top.par.reloadpulse.pulses == 2
    _frames(td, 0.1)
    assert _colour(rgb_top) == (0, 0, 200) and depth_top.image is not None and depth_top.image.getpixel((0, 0)) == 40000
    assert _forming(comp) == pytest.approx(0.8)  # still forming between pictures

    world = _picture(tmp_path / "out" / J1, (0, 150, 0), 20000)
    args = {"/ldm3d/ready": (J1, *_paths(world), "", 16, 8, 1), "/ldm3d/cancelled": (J1,)}
    _send(td, bridge, end, *args.get(end, (J1, "internal", "it broke")))
    _frames(td, 0.25)
    assert 0.0 < _forming(comp) < 0.8  # fading out over Crossfade (0.5 s)
    _frames(td, 0.4)
    assert _forming(comp) == 0.0 and comp.ext.Ldm3dExt.forming.job is None
    shown = comp.op("cross_rgb").par.cross.eval()
    assert shown == (1.0 if end == "/ldm3d/ready" else 0.0)  # a ready's world crossfades in; the others leave all


def test_previews_are_ignored_while_showpreviews_is_off(td: StandIn, tmp_path: Path) -> None:
    comp, bridge = _build(td, Crossfade=0.0, Previewfade=0.0, Showpreviews=False)
    slot = _picture(tmp_path / "previews" / "0", (200, 0, 0), 30000)
    _send(td, bridge, "/ldm3d/preview", J1, 3, 12, *_paths(slot))
    _frames(td, 0.1)
    assert comp.op("rgb_preview").par.file.eval() == "" and comp.op("rgb_preview").par.reloadpulse.pulses == 0
    assert _forming(comp) == 0.0
    comp.par.Showpreviews.val = True  # on again: the next preview shows
    _send(td, bridge, "/ldm3d/preview", J1, 6, 12, *_paths(slot))
    _frames(td, 0.1)
    assert _forming(comp) == pytest.approx(0.8)
    comp.par.Showpreviews.val = False  # off while a world forms: the forming look ends at once
    td.frame(FRAME)
    assert _forming(comp) == 0.0


def test_only_the_newest_job_forming_is_followed(td: StandIn, tmp_path: Path) -> None:
    """Two workers: the extension follows the newest job whose world is not yet here; an older job's
    previews are ignored (its world would be stale when it arrived), and so is a job already on screen."""
    comp, bridge = _build(td, Crossfade=0.0, Previewfade=0.0)
    ext, top = comp.ext.Ldm3dExt, comp.op("rgb_preview")
    slot0 = _picture(tmp_path / "out" / "previews" / "0", (200, 0, 0), 30000)
    slot1 = _picture(tmp_path / "out" / "previews" / "1", (0, 0, 200), 30000)

    _send(td, bridge, "/ldm3d/preview", J2, 3, 12, *_paths(slot0))
    _send(td, bridge, "/ldm3d/preview", J1, 3, 12, *_paths(slot1))  # older, on the other worker
    assert ext.forming.job == J2 and top.par.file.eval() == _paths(slot0)[0] and top.par.reloadpulse.pulses == 1
    _send(td, bridge, "/ldm3d/preview", J3, 3, 12, *_paths(slot1))  # newer: followed from now on
    assert ext.forming.job == J3 and top.par.file.eval() == _paths(slot1)[0]
    _send(td, bridge, "/ldm3d/cancelled", J2)  # not the job followed
    _frames(td, 0.1)
    assert _forming(comp) == pytest.approx(0.8) and _colour(top) == (0, 0, 200)

    world = _picture(tmp_path / "out" / J3, (0, 150, 0), 20000)
    _send(td, bridge, "/ldm3d/ready", J3, *_paths(world), "", 16, 8, 1)
    _run_until(td, lambda: ext.switcher.shown == J3)
    pulses = top.par.reloadpulse.pulses
    _send(td, bridge, "/ldm3d/preview", J3, 9, 12, *_paths(slot1))  # its world is here: stale
    _send(td, bridge, "/ldm3d/preview", J2, 9, 12, *_paths(slot0))
    assert top.par.reloadpulse.pulses == pulses and ext.forming.job is None and _forming(comp) == 0.0
    # J2 ran (its previews were heard) and ended after the newer J3: its world is stale
    late = _picture(tmp_path / "out" / J2, (90, 90, 0), 20000)
    _send(td, bridge, "/ldm3d/ready", J2, *_paths(late), "", 16, 8, 1)
    _frames(td, 0.2)
    assert ext.switcher.shown == J3 and ext.switcher.loading is None


def _morph_on_disk(out: Path, frames: int, seconds: float, world: Path) -> list[Path]:
    """J1's world, then morph M from J1 as the bridge writes it: frames in morphs/M/NNNN, the manifest,
    and M's own folder ``world`` (its last frame); frame 0 is J1's world again."""
    colours = [(10 + 60 * i, 100, 250 - 60 * i) for i in range(frames)]
    folders = [_picture(out / "morphs" / M / f"{i:04d}", colours[i], 10000 * (i + 1)) for i in range(frames)]
    _picture(out / J1, colours[0], 10000)
    _picture(world, colours[-1], 10000 * frames)
    written = [
        {"index": i, "t": i / (frames - 1), "rgb": _paths(f)[0], "depth": _paths(f)[1]} for i, f in enumerate(folders)
    ]
    manifest = {"morph_id": M, "from": J1, "to": "a forest", "to_seed": 7, "frames": frames, "seconds": seconds}
    manifest |= {"frame_seconds": seconds / (frames - 1), "complete": True, "written": written}
    (out / "morphs" / M / "morph.json").write_text(json.dumps(manifest))
    return folders


@pytest.mark.parametrize("home", ["", "scenes"])  # a job's folder, or a show's scene (a morph cue)
def test_a_morph_plays_frame_by_frame_every_frame_seconds_and_ends_on_its_world(
    td: StandIn, tmp_path: Path, home: str
) -> None:
    out = tmp_path / "out"
    world = out / home / M
    folders = _morph_on_disk(out, frames=4, seconds=0.75, world=world)  # a step every 0.25 s
    comp, bridge = _build(td, Crossfade=0.1)
    ext = comp.ext.Ldm3dExt
    _send(td, bridge, "/ldm3d/ready", J1, *_paths(out / J1), "", 16, 8, 1)
    _run_until(td, lambda: ext.switcher.shown == J1 and ext.switcher.fading is None)

    for index in (0, 1, 3):  # frame 2's announcement is lost: the manifest has it
        _send(td, bridge, "/ldm3d/morph/frame", M, index, 4, 0.75, *_paths(folders[index]))
    assert ext.switcher.shown == J1  # nothing plays before the morph arrives
    _send(td, bridge, "/ldm3d/ready", M, *_paths(world), "", 16, 8, 7)
    front = comp.op(f"rgb_{ext.switcher.front}")
    settled = [(td.absTime.seconds, str(front.par.file.eval()), _colour(front))]  # J1, on screen
    while ext.switcher.chain or ext.switcher.loading or ext.switcher.fading:
        assert td.absTime.seconds < 60, "the morph never ended"
        td.frame(FRAME)
        front = comp.op(f"rgb_{ext.switcher.front}")
        if ext.switcher.fading is None and settled[-1][1] != front.par.file.eval():
            settled.append((td.absTime.seconds, str(front.par.file.eval()), _colour(front)))
    settled = settled[1:]
    files = [file for _, file, _ in settled]
    # J1 was on screen: frame 0 (the same world) is skipped; the last step is the morph's own world.
    assert files == [_paths(folders[1])[0], _paths(folders[2])[0], _paths(world)[0]]
    assert [colour for *_, colour in settled] == [_colour_of(folders[1]), _colour_of(folders[2]), _colour_of(world)]
    steps = np.diff([at for at, *_ in settled])
    assert np.all(np.abs(steps - 0.25) <= FRAME + 1e-9), steps  # one step every frame_seconds, on the clock
    assert ext.switcher.shown == M and comp.op("cross_depth").par.cross.eval() == comp.op("cross_rgb").par.cross.eval()


def _colour_of(folder: Path) -> tuple[int, ...]:
    with Image.open(folder / "rgb.png") as image:
        pixel = image.getpixel((0, 0))
    assert isinstance(pixel, tuple)
    return pixel


# -- the decisions, without the network -------------------------------------------------------------------


def test_the_morph_chain_keeps_its_clock_and_the_newest_world_cuts_it_short() -> None:
    s = WorldSwitcher(crossfade_s=1.0)
    assert s.on_morph(M, [("r1", "d1"), ("r2", "d2"), ("r3", "d3")], 0.5) == [LoadBack("B", "r1", "d1")]
    assert s.on_loaded("B", "rgb", "r1", 10.0) == [] and s.on_loaded("B", "depth", "d1", 10.0) == [SetCross(0.0)]
    assert s.tick(10.5) == [SetCross(1.0), Shown(M, "B"), LoadBack("A", "r2", "d2")]
    s.on_loaded("A", "rgb", "r2", 10.625)
    assert s.on_loaded("A", "depth", "d2", 10.625) == [SetCross(1.0)]
    assert s.tick(10.8125) == [SetCross(0.5)]  # read 0.125 s late: it fades over the 0.375 s left
    assert s.tick(11.0)[1:] == [Shown(M, "A"), LoadBack("B", "r3", "d3")]
    s.on_loaded("B", "rgb", "r3", 12.0)
    s.on_loaded("B", "depth", "d3", 12.0)  # read after its time: a whole step, the clock moves on
    assert s.tick(12.25) == [SetCross(0.5)]
    assert s.tick(12.5) == [SetCross(1.0), Shown(M, "B")] and s.shown == M and not s.chain
    # A newer world during a morph: the step on screen finishes, then the world, not the rest of the chain.
    later, newest, late = "20261122-100020-000-0005", "20261122-100030-000-0006", "20261122-100025-000-0007"
    for job in (later, newest, late):
        s.on_running(job)  # live jobs: their progress was heard
    s.on_morph(later, [("a", "a"), ("b", "b"), ("c", "c")], 1.0)
    s.on_loaded("A", "rgb", "a", 20.0)
    s.on_loaded("A", "depth", "a", 20.0)
    assert s.on_ready(newest, "w", "w") == [] and s.chain == []
    assert s.tick(21.0)[-1] == LoadBack("B", "w", "w")
    assert s.on_morph(late, [("x", "x"), ("y", "y")], 1.0) == []  # a live morph that ended after a newer world


def test_hold_pauses_a_morph_and_release_goes_on_with_the_next_step() -> None:
    s = WorldSwitcher(crossfade_s=0.0)
    s.on_morph(M, [("r1", "d1"), ("r2", "d2")], 1.0)
    s.on_loaded("B", "rgb", "r1", 0.0)
    s.on_loaded("B", "depth", "d1", 0.0)
    s.set_hold(True)
    assert s.tick(1.0) == [SetCross(1.0), Shown(M, "B")]  # the step on screen ends; the next one waits
    assert s.set_hold(False) == [LoadBack("A", "r2", "d2")]
    s.on_loaded("A", "rgb", "r2", 50.0)
    s.on_loaded("A", "depth", "d2", 50.0)
    assert s.tick(50.5) == [SetCross(0.5)]  # a whole step after the pause, not a cut


def test_forming_follows_the_newest_job_and_fades() -> None:
    f = Forming()
    assert f.on_preview(J2, "r", "d", newest_world="", enabled=True)
    assert not f.on_preview(J1, "r", "d", newest_world="", enabled=True)  # older than the one followed
    assert not f.on_preview(J3, "r", "d", newest_world=J3, enabled=True)  # its world is already here
    assert not f.on_preview(J3, "r", "d", newest_world="", enabled=False)
    assert f.tick(True, 0.5, 1.0, 0.0) == 0.0  # nothing read yet
    f.loaded()
    assert f.tick(True, 0.5, 1.0, 0.25) == 0.5 and f.tick(True, 0.5, 1.0, 1.0) == 1.0
    f.on_end(J1, ready=True)  # an older world: J2 still forms
    assert f.job == J2
    f.on_end(J3, ready=False)  # a newer job cancelled: J2 still forms
    assert f.job == J2
    f.on_end(J3, ready=True)  # a newer world: J2's would be stale
    assert f.job is None and f.tick(True, 0.5, 1.0, 1.5) == 0.5


def test_morph_frames_fill_gaps_from_the_manifest_and_skip_the_world_on_screen() -> None:
    m = MorphFrames(keep=2)
    m.on_frame(M, 1, 3, 2.0, "r1", "d1")
    assert m.arrive(M, "R", "D", None, shown=None) == _plan([("r1", "d1"), ("R", "D")], 1.0)
    manifest = {
        "from": J1,
        "frames": 3,
        "seconds": 2.0,
        "frame_seconds": 1.0,
        "written": [{"index": 0, "rgb": "r0", "depth": "d0"}],
    }
    assert m.arrive(M, "R", "D", manifest, shown=J2) == _plan([("r0", "d0"), ("R", "D")], 1.0)
    assert m.arrive(M, "R", "D", manifest, shown=J1) == _plan([("R", "D")], 1.0)
    m.on_frame(M, 0, 3, 4.0, "r0", "d0")  # a show plays a morph cue over the cue's fade: 4 s
    assert m.a_frame(M) == "r0"
    assert m.arrive(M, "R", "D", manifest, shown=J2) == _plan([("r0", "d0"), ("R", "D")], 2.0)
    assert m.arrive(J3, "R", "D", None, shown=None) is None  # no frames known: an ordinary world
    for morph in (J1, J2, J3):
        m.on_frame(morph, 0, 2, 1.0, "r", "d")
    assert not m.has(J1) and m.has(J2) and m.has(J3)  # only the newest few are kept
    m.drop(J3)
    assert not m.has(J3)


def _plan(frames: list[tuple[str, str]], step_s: float) -> Any:
    from ldm3d_td_live import MorphPlan

    return MorphPlan(frames, step_s)


# -- the GLSL MAT's forming mix, rendered by Mesa ---------------------------------------------------------


def test_the_forming_mix_in_the_shaders_blends_colour_and_depth() -> None:
    """The TouchDesigner shaders with stand-ins for its built-ins, drawn by Mesa from the sphere's centre:
    uForming 0 is the world alone, 1 the preview alone, 0.5 halfway; the depth moves the sphere."""
    moderngl = pytest.importorskip("moderngl")
    from bridge.render.preview import Camera, glsl_source
    from bridge.render.sphere import sphere_grid

    ctx = moderngl.create_standalone_context(require=330, backend="egl")
    vertex = (ROOT / "td_project/glsl/ldm3d_vertex.glsl").read_text()
    vertex = vertex.replace("#include <ldm3d_displace>", glsl_source("ldm3d_displace.glsl"))
    program = ctx.program(
        vertex_shader="#version 330 core\nin vec3 P;\nuniform mat4 uTDMats;\n"
        "vec4 TDDeform(vec3 p) { return vec4(p, 1.0); }\nvec4 TDWorldToProj(vec4 p) { return uTDMats * p; }\n" + vertex,
        fragment_shader="#version 330 core\n#define TD_NUM_COLOR_BUFFERS 1\nvoid TDCheckDiscard() {}\n"
        "vec4 TDOutputSwizzle(vec4 c) { return c; }\n" + (ROOT / "td_project/glsl/ldm3d_pixel.glsl").read_text(),
    )
    grid = sphere_grid(64, 32)
    points = np.concatenate([grid.uv - 0.5, np.zeros((len(grid.uv), 1), np.float32)], axis=1).astype(np.float32)
    vao = ctx.vertex_array(program, [(ctx.buffer(points.tobytes()), "3f", "P")], ctx.buffer(grid.triangles.tobytes()))
    textures = {
        "sRgb": ctx.texture((4, 2), 3, bytes([200, 0, 0] * 8)),
        "sDepth": ctx.texture((4, 2), 1, np.full(8, 32768, np.uint16).tobytes(), dtype="nu2"),
        "sPreviewRgb": ctx.texture((4, 2), 3, bytes([0, 0, 200] * 8)),
        "sPreviewDepth": ctx.texture((4, 2), 1, np.full(8, 65535, np.uint16).tobytes(), dtype="nu2"),
    }
    for unit, (name, texture) in enumerate(textures.items()):
        texture.use(unit)
        program[name] = unit
    program["uBaseRadius"], program["uStrength"], program["uBrightness"] = 1.0, 1.0, 1.0
    program["uTDMats"].write(Camera(eye=(0.0, 0.0, 0.9), fov=90).view_proj(1.0).T.tobytes())
    fbo = ctx.simple_framebuffer((32, 32))
    fbo.use()
    seen = {}
    for forming in (0.0, 0.5, 1.0):
        program["uForming"] = forming
        fbo.clear(0.0, 0.0, 0.0, 1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        vao.render(moderngl.TRIANGLES)
        image = np.frombuffer(fbo.read(components=3), np.uint8).reshape(32, 32, 3)
        seen[forming] = (tuple(int(c) for c in image[16, 16]), int((image.sum(axis=2) > 0).sum()))
    ctx.release()
    assert seen[0.0][0] == (200, 0, 0) and seen[1.0][0] == (0, 0, 200)
    assert all(abs(a - b) <= 2 for a, b in zip(seen[0.5][0], (100, 0, 100), strict=True))
    # The eye sits at 0.9: the world (radius 1) surrounds it; the preview's depth 1 pulls the sphere to
    # radius 0.5, behind the eye: what fills the view changes with the depth mix.
    assert seen[0.0][1] == 32 * 32 and seen[1.0][1] < seen[0.0][1]


# -- with a real bridge ----------------------------------------------------------------------------------


def test_a_real_bridge_forms_a_world_then_morphs_to_a_prompts_world(
    td: StandIn, start_bridge: Callable[..., Bridge], tiny_dir: Path
) -> None:
    bridge = start_bridge(engine_factory=lambda: slow_tiny(str(tiny_dir), 0.04), progress_hz=1000.0)
    comp, _ = _build(td, Bridgeport=bridge.address[1], Crossfade=0.05, Previewfade=0.0)
    ext = comp.ext.Ldm3dExt
    _run_until(td, lambda: ext.keeper.next_at > td.absTime.seconds + 1, timeout=30)  # subscribed
    output = Path(bridge.settings.output).resolve()

    formed: list[float] = []

    def world_shown() -> bool:
        formed.append(_forming(comp))
        return bool(ext.switcher.shown) and ext.switcher.fading is None and _forming(comp) == 0.0

    ext.Generate("a harbour at dusk", "steps", 6, "preview_every", 2, "seed", 3)
    _run_until(td, world_shown, timeout=60)
    assert max(formed) == pytest.approx(0.8)  # the world was seen forming, then the forming look ended
    assert Path(comp.op("rgb_preview").par.file.eval()) == output / "previews" / "0" / "rgb.png"
    first = ext.switcher.shown
    ext.Morph(first, "the harbour at dawn", "frames", 3, "seconds", 0.2, "seed", 4)  # to a prompt's world
    fronts: list[str] = []

    def arrived() -> bool:
        file = str(comp.op(f"rgb_{ext.switcher.front}").par.file.eval())
        if ext.switcher.fading is None and (not fronts or fronts[-1] != file):
            fronts.append(file)
        s = ext.switcher
        return s.shown != first and not s.chain and s.loading is None and s.fading is None

    _run_until(td, arrived, timeout=60)
    morph = ext.switcher.shown
    assert [Path(f).relative_to(output).as_posix() for f in fronts] == [
        f"{first}/rgb.tif",
        f"morphs/{morph}/0001/rgb.tif",  # frame 0 is the world on screen: skipped
        f"{morph}/rgb.tif",  # the world it arrives at
    ]
