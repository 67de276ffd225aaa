"""The TouchDesigner object slot in the stand-in (tests/td_standin.py): the newest ``/ldm3d/object/ready``
points the File In SOP at its OBJ and places the Geometry COMP as bridge/placement.py does,
over real UDP (a scripted bridge, and a real one with tiny-ln3diff). Never run inside TouchDesigner:
what the stand-in cannot tell is listed in td_project/README.md."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge.contract.engine_api import LocalSlot
from bridge.osc.client import OscClient
from bridge.placement import Placement, placement_of_meta
from bridge.serve.server import Bridge
from ldm3d_engine.object_types import ObjectEngineLike
from tests.td_standin import TYPES, StandIn, drawn_by, xform_matrix

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "td_project" / "python"))

from ldm3d_td_objects import ROTATE_ORDER, TRANSFORM_ORDER, object_transform, parse_object_ready  # noqa: E402

pytestmark = pytest.mark.timeout(120)

J1, J2, J3 = "20261207-100000-000-0001", "20261207-100005-000-0002", "20261207-100009-000-0003"
FRAME = 1 / 60
RENDERS = ("render_mono", "render_left", "render_right", "render_dome", "render_cube")


@pytest.fixture
def td() -> Iterator[StandIn]:
    standin = StandIn(ROOT)
    yield standin
    standin.close()


def _free_port() -> int:
    with OscClient("127.0.0.1", 9) as probe:
        return probe.port


def _build(td: StandIn, **values: Any) -> tuple[Any, OscClient]:
    """The network with CUSTOM defaults changed (the bridge at port 9 unless given: nothing answers), and a
    client that sends to its OSC In DAT as the bridge would."""
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
    """Send as the bridge, run frames until the OSC In DAT has it, then one more (the SOP cooks)."""
    count = len(td.received)
    bridge.send(address, *args)
    _run_until(td, lambda: len(td.received) > count)
    td.frame(FRAME)


def _obj(path: Path, points: int) -> Path:
    """A small OBJ as the bridge writes it (``v x y z r g b``, 1-based faces)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {i * 0.1:.3f} {i * 0.05:.3f} {-i * 0.02:.3f} 0.8 0.2 0.1" for i in range(points)]
    lines += [f"f {i} {i + 1} {i + 2}" for i in range(1, points - 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _ready(job: str, obj: Path, placement: Placement) -> tuple[Any, ...]:
    return (job, str(obj), str(obj.with_suffix(".glb")), *placement.args())


def _slot(comp: Any) -> tuple[str, list[float], int]:
    """What the slot shows: the File In SOP's file, the Geometry COMP's matrix (flattened), its reads."""
    mesh = comp.op("object/mesh")
    return str(mesh.par.file.eval()), [round(float(v), 9) for v in xform_matrix(comp.op("object")).ravel()], mesh.reads


# -- the transform, without the network --------------------------------------------------------------------

PLACEMENTS = [
    Placement(),
    Placement(yaw=-30.0, distance=0.7),
    Placement(yaw=135.0, pitch=25.0, distance=1.2, size=0.5, turn=40.0),
    Placement(yaw=-300.0, pitch=-80.0, distance=0.05, size=2.0, turn=-360.0),
    Placement(yaw=90.0, pitch=90.0, distance=1.5, size=0.01, turn=15.0),
]


@pytest.mark.parametrize("placement", PLACEMENTS, ids=lambda p: f"y{p.yaw:g}p{p.pitch:g}t{p.turn:g}")
@pytest.mark.parametrize("base_radius", [1.0, 10.0])
def test_the_geometry_comps_transform_is_the_placements_matrix(
    td: StandIn, placement: Placement, base_radius: float
) -> None:
    """object_transform's Xform parameters, read back through the COMP Xform page's rules (R17: Transform
    Order srt = T * R * S, Rotate Order xyz = Rz * Ry * Rx, Uniform Scale), give Placement.matrix."""
    comp = td.project.create(TYPES["geometryCOMP"], "object")
    comp.par.xord, comp.par.rord = TRANSFORM_ORDER, ROTATE_ORDER
    p = placement
    for name, value in object_transform(p.yaw, p.pitch, p.distance, p.size, p.turn, base_radius).items():
        setattr(comp.par, name, value)
    assert np.allclose(xform_matrix(comp), placement.matrix(base_radius), atol=1e-9)
    # and where its front (+Z) points: at the viewer, turned by `turn` to the object's left
    front = xform_matrix(comp)[:3, :3] @ [0.0, 0.0, 1.0]
    toward_viewer = -placement.position(1.0) / np.linalg.norm(placement.position(1.0))
    horizontal = np.array([toward_viewer[0], 0.0, toward_viewer[2]])
    if np.linalg.norm(horizontal) > 1e-6 and placement.turn % 360 == 0:
        assert np.allclose(front / np.linalg.norm(front), horizontal / np.linalg.norm(horizontal), atol=1e-9)


@pytest.mark.parametrize(
    "args",
    [
        (J1, "a.obj", "a.glb", 0.0, 0.0, math.nan, 0.25, 0.0),
        (J1, "a.obj", "a.glb", 0.0, math.inf, 0.5, 0.25, 0.0),
        (J1, "a.obj", "a.glb", 0.0, 0.0, 0.5, None, 0.0),
        (J1, "a.obj", None, 0.0, 0.0, 0.5, 0.25, 0.0),
    ],
)
def test_an_object_ready_the_slot_cannot_use_is_none(args: tuple[Any, ...]) -> None:
    assert parse_object_ready(args) is None
    ready = parse_object_ready((J1, "a.obj", "a.glb", -30, 0.0, 0.5, 0.25, 10, "later"))  # ints, and an extra
    assert ready is not None and (ready.yaw, ready.turn, ready.obj) == (-30.0, 10.0, "a.obj")


# -- the network -------------------------------------------------------------------------------------------


def test_the_network_draws_the_object_slot_beside_the_world(td: StandIn) -> None:
    comp, _ = _build(td)
    assert not [line for line in td.printed if "lacks" in line], td.printed
    geometry, mesh, mat = comp.op("object"), comp.op("object/mesh"), comp.op("object_mat")
    assert (geometry.type, mesh.type, mat.type) == ("geometryCOMP", "fileinSOP", "constantMAT")
    assert (geometry.par.xord.eval(), geometry.par.rord.eval()) == ("srt", "xyz")
    assert geometry.par.material.eval() == "object_mat" and mat.par.applypointcolor.eval()
    assert mesh.par.file.eval() == "" and mesh.par.refreshpulse.isPulse
    for name in RENDERS:
        assert "object/mesh" in drawn_by(comp.op(name)), name
    # unlit like the sphere, and dimmed with it by Blackout (the GLSL MAT's uBrightness)
    assert [mat.par.colorr.eval(), mat.par.colorg.eval(), mat.par.colorb.eval()] == [1.0, 1.0, 1.0]
    comp.op("world_mat").par.vec2valuex.val = 0.25
    assert [mat.par.colorr.eval(), mat.par.colorg.eval(), mat.par.colorb.eval()] == [0.25, 0.25, 0.25]
    comp.par.Showobjects.val = False
    for name in RENDERS:
        assert drawn_by(comp.op(name)) == ["world/grid"], name


def test_the_newest_object_is_read_and_placed_and_malformed_messages_change_nothing(
    td: StandIn, tmp_path: Path
) -> None:
    comp, bridge = _build(td, Crossfade=0.0)
    ext, mesh = comp.ext.Ldm3dExt, comp.op("object/mesh")
    first = _obj(tmp_path / "objects" / J2 / "mesh.obj", 5)
    placement = Placement(yaw=-30.0, pitch=10.0, distance=0.7, size=0.3, turn=20.0)
    _send(td, bridge, "/ldm3d/object/ready", *_ready(J2, first, placement))
    assert mesh.par.file.eval() == str(first) and mesh.geometry is not None and len(mesh.geometry.points) == 5
    assert np.allclose(xform_matrix(comp.op("object")), placement.matrix(10.0))  # Baseradius 10
    before = _slot(comp)

    malformed: list[tuple[Any, ...]] = [
        (),
        (J3,),
        _ready(J3, first, placement)[:7],  # the turn is missing
        (J3, str(first), str(first), "-30", 0.0, 0.7, 0.25, 0.0),  # a number as text
        (J3, str(first), str(first), -30.0, 0.0, True, 0.25, 0.0),  # a boolean for the distance
        (J3, "", str(first), -30.0, 0.0, 0.7, 0.25, 0.0),  # no OBJ path
        (3, str(first), str(first), -30.0, 0.0, 0.7, 0.25, 0.0),  # an id that is not text
    ]
    for args in malformed:
        _send(td, bridge, "/ldm3d/object/ready", *args)
        assert _slot(comp) == before, args
    assert ext.objects.ignored == len(malformed) and ext.objects.shown is not None and ext.objects.shown.job == J2

    # A world and a bridge restart leave it where it is.
    _send(td, bridge, "/ldm3d/ready", J3, str(tmp_path / "rgb.png"), str(tmp_path / "depth.png"), "", 16, 8, 1)
    for boot in ("boot-a", "boot-b"):  # the bridge restarted: the extension subscribes again
        _send(td, bridge, "/ldm3d/state", "idle", 0, "", "ldm3d-pano", boot)
    assert _slot(comp) == before
    # An object with an older id (a cue's scene, rendered yesterday) announced now is shown: the last wins.
    older = _obj(tmp_path / "objects" / J1 / "mesh.obj", 4)
    _send(td, bridge, "/ldm3d/object/ready", *_ready(J1, older, Placement()))
    assert mesh.par.file.eval() == str(older) and np.allclose(xform_matrix(comp.op("object")), Placement().matrix(10.0))
    _send(td, bridge, "/ldm3d/object/ready", *_ready(J2, first, placement))  # back to the first
    assert _slot(comp)[:2] == before[:2] and mesh.reads == 3

    # The same object announced again after its file changed on disk under the same name: read again only
    # because of the Refresh Pulse (R15).
    _obj(first, 7)
    _send(td, bridge, "/ldm3d/object/ready", *_ready(J2, first, placement))
    assert mesh.reads == 4 and mesh.geometry is not None and len(mesh.geometry.points) == 7

    # Baseradius changes: the object keeps its place in the world.
    comp.par.Baseradius.val = 4.0
    td.frame(FRAME)
    assert np.allclose(xform_matrix(comp.op("object")), placement.matrix(4.0))

    # A newer object replaces it; /ldm3d/object/clear empties the slot.
    newer = _obj(tmp_path / "objects" / J3 / "mesh.obj", 6)
    _send(td, bridge, "/ldm3d/object/ready", *_ready(J3, newer, Placement(yaw=45.0)))
    assert mesh.par.file.eval() == str(newer) and np.allclose(
        xform_matrix(comp.op("object")), Placement(yaw=45.0).matrix(4.0)
    )
    _send(td, bridge, "/ldm3d/object/clear")
    assert mesh.par.file.eval() == "" and mesh.geometry is None and ext.objects.shown is None


# -- with a real bridge ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_objects(tiny_dir: Path) -> ObjectEngineLike:
    """tiny-ln3diff on the CPU, loaded once for this module."""
    from ldm3d_engine import EngineSettings, load_object_engine

    return load_object_engine(EngineSettings(device="cpu", tiny_dir=str(tiny_dir)), "tiny-ln3diff")


def test_a_real_bridges_object_lands_in_the_slot_where_its_placement_says(
    td: StandIn, start_bridge: Callable[..., Bridge], load_tiny: Callable[[str], Any], tiny_objects: ObjectEngineLike
) -> None:
    slot = LocalSlot(lambda: load_tiny("tiny"), where="cpu 0", objects=lambda: tiny_objects)
    bridge = start_bridge(slots=[slot], object_model="tiny-ln3diff", progress_hz=1000.0)
    comp, _ = _build(td, Bridgeport=bridge.address[1])
    ext, mesh = comp.ext.Ldm3dExt, comp.op("object/mesh")
    _run_until(td, lambda: ext.keeper.next_at > td.absTime.seconds + 1, timeout=30)  # subscribed

    ext.Object("a red lantern", "seed", 7, "steps", 2, "resolution", 16, "yaw", -30, "distance", 0.7, "turn", 20)
    _run_until(td, lambda: ext.objects.shown is not None and mesh.geometry is not None, timeout=60)
    shown = ext.objects.shown
    assert shown is not None
    folder = Path(bridge.settings.output).resolve() / "objects" / shown.job
    assert Path(mesh.par.file.eval()) == folder / "mesh.obj" and Path(shown.glb) == folder / "mesh.glb"
    meta = json.loads((folder / "meta.json").read_text())
    assert mesh.geometry is not None and len(mesh.geometry.points) == meta["vertices"]
    assert mesh.geometry.faces == meta["faces"]
    placement = placement_of_meta(meta)
    assert (placement.yaw, round(placement.distance, 6), placement.turn) == (-30.0, 0.7, 20.0)
    assert np.allclose(xform_matrix(comp.op("object")), placement.matrix(10.0), atol=1e-6)
    centre = xform_matrix(comp.op("object"))[:3, 3]
    assert math.isclose(float(np.linalg.norm(centre)), 7.0, rel_tol=1e-6)  # 0.7 × Baseradius from the viewer
