"""The operator page's viewer shows the object placed in the world (issue 36, the page's side).

What the page is served of an object (its ``mesh.glb`` at a content-addressed ``/t/<key>.glb``, nothing
outside ``objects/``), the ``object`` its event and its hello carry, and the page itself in Debian's
Chromium (tests/browser.py) on a real bridge with tiny-ln3diff: the object in the viewer's scene with the
matrix of :meth:`Placement.matrix`, a newer object replacing it, a page opened later showing it, the
Objects switch, and the pixels where it stands."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.contract.engine_api import LocalSlot
from bridge.errors import BadArguments, UnknownJob
from bridge.osc.client import OscClient
from bridge.placement import Placement
from bridge.serve.server import Bridge
from bridge.web.objects import ObjectFolders
from bridge.web.textures import TextureStore
from ldm3d_engine.object_types import ObjectEngineLike
from tests import test_object_jobs, test_web_page
from tests.test_web_live import RawPage

browser, open_page, tiny_objects = test_web_page.browser, test_web_page.open_page, test_object_jobs.tiny_objects
Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
OpenPage = Callable[..., Any]

pytestmark = pytest.mark.timeout(120)

#: The viewer's base radius (BASE_RADIUS of bridge/web/static/viewer.js).
RADIUS = 10.0
#: A fast object job (well under a second on the CPU).
FAST = ("steps", 2, "resolution", 16)
FIRST = Placement(yaw=20.0, pitch=10.0, distance=0.6, size=0.3, turn=45.0)
SECOND = Placement(yaw=-35.0, pitch=-5.0, distance=0.45, size=0.2, turn=-80.0)


@pytest.fixture
def object_page_bridge(start_bridge: Start, load_tiny: Callable[[str], Any], tiny_objects: ObjectEngineLike) -> Bridge:
    """A bridge with tiny-ln3diff beside the world model, and its page."""
    slot = LocalSlot(lambda: load_tiny("tiny"), where="cpu 0", objects=lambda: tiny_objects)
    return start_bridge(slots=[slot], object_model="tiny-ln3diff", http=True)


def _object(client: OscClient, placement: Placement, seed: int = 1) -> str:
    """An object job at ``placement``, waited for; its id."""
    p = placement
    client.send(
        "/ldm3d/object", "a red lantern", "seed", seed, *FAST, "yaw", p.yaw, "pitch", p.pitch,
        "distance", p.distance, "size", p.size, "turn", p.turn,
    )  # fmt: skip
    accepted = client.wait_for(["/ldm3d/accepted", "/ldm3d/error"], 10)[-1]
    assert accepted.address == "/ldm3d/accepted", accepted
    job_id = str(accepted.args[0])
    end = client.wait_for(["/ldm3d/object/ready", "/ldm3d/error"], 60)[-1]
    assert end.address == "/ldm3d/object/ready" and end.args[0] == job_id, end
    return job_id


def _get(bridge: Bridge, path: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{bridge.http_port}{path}", timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


# -- what the page is served ------------------------------------------------------------------------


def test_the_glb_url_serves_the_file_as_it_is_and_the_event_and_hello_carry_it(
    object_page_bridge: Bridge, client_for: ClientFor
) -> None:
    bridge = object_page_bridge
    assert bridge.http_port is not None
    client = client_for(bridge)
    client.subscribe_self()
    raw = RawPage(bridge.http_port)
    try:
        raw.wait(lambda: any(m["type"] == "hello" for m in raw.messages))
        assert raw.messages[0]["object"] is None  # no object yet
        job_id = _object(client, FIRST)
        raw.wait(lambda: raw.of(job_id, "/ldm3d/object/ready"))
        event = raw.of(job_id, "/ldm3d/object/ready")[0]
    finally:
        raw.close()
    thing = event["object"]
    assert thing["job_id"] == job_id and thing["prompt"] == "a red lantern" and thing["seed"] == 1
    assert thing["placement"] == pytest.approx(FIRST.as_dict())
    assert thing["glb"].startswith("/t/") and thing["glb"].endswith(".glb")
    status, body, headers = _get(bridge, thing["glb"])
    glb = Path(bridge.settings.output).resolve() / "objects" / job_id / "mesh.glb"
    assert status == 200 and body == glb.read_bytes() and body[:4] == b"glTF"
    assert headers["Content-Type"] == "model/gltf-binary"
    assert "immutable" in headers["Cache-Control"]
    # the same key as another kind, a made-up key, a path: nothing
    key = thing["glb"][3:-4]
    for path in (f"/t/{key}.jpg", f"/t/{key}.u16", "/t/" + "0" * 32 + ".glb", "/t/..%2Fobjects%2Fx.glb"):
        assert _get(bridge, path)[0] == 404, path
    # a page that connects later is told of the newest object in its hello
    late = RawPage(bridge.http_port)
    try:
        late.wait(lambda: any(m["type"] == "hello" for m in late.messages))
        hello = next(m for m in late.messages if m["type"] == "hello")
    finally:
        late.close()
    assert hello["object"] == thing
    # announced again elsewhere (a cue moved it, its scene unchanged): a later page sees it where it was announced
    _, obj, glb_path = (str(a) for a in client_args(bridge, job_id))
    bridge.notifier.broadcast("/ldm3d/object/ready", job_id, obj, glb_path, 90.0, 0.0, 0.5, 0.25, 0.0)
    moved = RawPage(bridge.http_port)
    try:
        moved.wait(
            lambda: any(m["type"] == "hello" and m["object"]["placement"]["yaw"] == 90.0 for m in moved.messages)
        )
    finally:
        moved.close()


def test_only_an_object_id_under_objects_is_offered(tmp_path: Path) -> None:
    """No id that is not a job id, no link out of ``objects/``; the newest is the newest with a GLB."""
    objects = tmp_path / "out" / "objects"
    older, newer, empty = "20261207-101500-000-0001", "20261207-101501-000-0002", "20261207-101502-000-0003"
    for job_id in (older, newer):
        (objects / job_id).mkdir(parents=True)
        (objects / job_id / "mesh.glb").write_bytes(b"glTF" + job_id.encode())
        (objects / job_id / "meta.json").write_text(json.dumps({"prompt": job_id, "placement": {"yaw": 5.0}}))
    (objects / empty).mkdir()  # being written, or pruned: no GLB
    outside = tmp_path / "secret.glb"
    outside.write_bytes(b"not for the page")
    escape = "20261207-101503-000-0004"
    (objects / escape).mkdir()
    os.symlink(outside, objects / escape / "mesh.glb")
    textures = TextureStore()
    folders = ObjectFolders(tmp_path / "out", textures)
    offered = folders.offer(newer)
    assert offered["placement"] == Placement(yaw=5.0).as_dict() and offered["prompt"] == newer
    assert textures.get(offered["glb"][3:]) == (b"glTF" + newer.encode(), "model/gltf-binary")
    for bad in ("../secret", "20261207-101500-000-0001/../../x", "", "mesh.glb"):
        with pytest.raises(BadArguments, match="is not an object id"):
            folders.offer(bad)
    with pytest.raises(UnknownJob, match=f"no object {escape}"):
        folders.offer(escape)
    with pytest.raises(UnknownJob):
        folders.offer(empty)
    assert folders.newest() == newer  # not the link out, not the folder without a GLB
    assert folders.offer_newest() == offered
    assert folders.offer_ready((escape, "a.obj", "a.glb", 0.0, 0.0, 0.5, 0.25, 0.0)) is None
    # a show's scene holds its cue's object in object/; a link out of the scenes folder is refused too
    scene, loose = "20261207-101504-000-0005", "20261207-101505-000-0006"
    (tmp_path / "out" / "scenes" / scene / "object").mkdir(parents=True)
    (tmp_path / "out" / "scenes" / scene / "object" / "mesh.glb").write_bytes(b"glTF scene")
    (tmp_path / "out" / "scenes" / loose).mkdir()
    os.symlink(tmp_path, tmp_path / "out" / "scenes" / loose / "object")
    (tmp_path / "mesh.glb").write_bytes(b"glTF outside")
    assert textures.get(folders.offer(scene)["glb"][3:]) == (b"glTF scene", "model/gltf-binary")
    with pytest.raises(UnknownJob):
        folders.offer(loose)
    assert folders.newest() == newer  # a scene's object is no object job
    ready = folders.offer_ready((older, "a.obj", "a.glb", 10.0, -20.0, 0.7, 0.5, 30.0))
    assert ready is not None and ready["placement"] == Placement(10.0, -20.0, 0.7, 0.5, 30.0).as_dict()


# -- the page's viewer ----------------------------------------------------------------------------------

#: The object meshes in the viewer's scene: job id and world matrix (column-major, three.js's order).
SCENE = """() => window.ldm3d.viewer.scene.children.filter((o) => o.userData.object)
  .map((o) => ({job_id: o.userData.job_id, matrix: Array.from(o.matrixWorld.elements), visible: o.visible}))"""


def _shown(page: Any, job_id: str) -> None:
    page.wait_for_function("id => window.ldm3d.objectShown.some((o) => o.job_id === id)", arg=job_id, timeout=30000)


def _matrix(entry: dict[str, Any]) -> np.ndarray:
    return np.array(entry["matrix"]).reshape(4, 4).T  # three.js stores columns


def _settled(page: Any) -> np.ndarray:
    """The viewer's own pixels (the WebGL canvas, without the labels and buttons over it), once drawn."""
    page.wait_for_timeout(300)  # the next animation frames
    url = page.evaluate("() => document.getElementById('viewer').toDataURL('image/png')")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image, dtype=np.int16)


def test_the_viewer_holds_the_newest_object_placed_as_placement_matrix(
    object_page_bridge: Bridge, client_for: ClientFor, open_page: OpenPage
) -> None:
    bridge = object_page_bridge
    client = client_for(bridge)
    client.subscribe_self()
    page = open_page(bridge)
    assert page.evaluate(SCENE) == [] and page.is_hidden("#objects-toggle")
    first = _object(client, FIRST)
    _shown(page, first)
    [entry] = page.evaluate(SCENE)
    assert entry["job_id"] == first
    np.testing.assert_allclose(_matrix(entry), FIRST.matrix(RADIUS), atol=1e-5)
    second = _object(client, SECOND, seed=2)
    _shown(page, second)
    [entry] = page.evaluate(SCENE)  # one object: the newer replaced the older
    assert entry["job_id"] == second
    np.testing.assert_allclose(_matrix(entry), SECOND.matrix(RADIUS), atol=1e-5)
    assert page.evaluate("window.ldm3d.objects.disposed") == [first]  # its geometry freed
    # a page opened now shows the newest object at once (its hello)
    late = open_page(bridge)
    _shown(late, second)
    [entry] = late.evaluate(SCENE)
    assert entry["job_id"] == second
    np.testing.assert_allclose(_matrix(entry), SECOND.matrix(RADIUS), atol=1e-5)


def test_the_object_changes_the_pixels_where_it_stands_and_the_switch_hides_it(
    object_page_bridge: Bridge, client_for: ClientFor, open_page: OpenPage
) -> None:
    bridge = object_page_bridge
    client = client_for(bridge)
    client.subscribe_self()
    page = open_page(bridge, width=800, height=600)
    before = _settled(page)
    ahead = Placement(distance=0.5, size=0.4)  # straight ahead: the middle of the view
    job_id = _object(client, ahead)
    _shown(page, job_id)
    after = _settled(page)
    height, width = after.shape[:2]
    middle = (slice(height // 2 - 20, height // 2 + 20), slice(width // 2 - 20, width // 2 + 20))
    changed = np.abs(after - before).sum(axis=2) > 24
    assert changed[middle].mean() > 0.3, "the object does not show where it stands"
    corner = (slice(0, 40), slice(0, 40))
    assert changed[corner].mean() < 0.05, "the object shows where it does not stand"
    page.click("#objects-toggle")
    assert page.get_attribute("#objects-toggle", "aria-pressed") == "false"
    hidden = _settled(page)
    assert (np.abs(hidden - before).sum(axis=2) > 24)[middle].mean() < 0.05, "the switch did not hide it"
    assert page.evaluate(SCENE)[0]["visible"] is False
    page.reload()  # the switch is remembered on this device
    page.wait_for_selector("#lamp.online", timeout=15000)
    _shown(page, job_id)
    assert page.get_attribute("#objects-toggle", "aria-pressed") == "false"
    assert page.evaluate(SCENE)[0]["visible"] is False


def test_an_object_that_cannot_be_loaded_is_a_note_not_a_broken_page(
    object_page_bridge: Bridge, client_for: ClientFor, open_page: OpenPage
) -> None:
    bridge = object_page_bridge
    client = client_for(bridge)
    client.subscribe_self()
    page = open_page(bridge, allow="404")
    page.route("**/t/*.glb", lambda route: route.fulfill(status=404, body="gone"))
    job_id = _object(client, FIRST)
    page.wait_for_selector("#errors li code:text('object')", timeout=30000)
    assert f"cannot show object {job_id}: HTTP 404" in page.inner_text("#errors")
    assert page.evaluate(SCENE) == [] and page.is_visible("#lamp.online")
    page.unroute("**/t/*.glb")
    started = time.monotonic()
    second = _object(client, SECOND, seed=2)  # the next one shows
    _shown(page, second)
    assert time.monotonic() - started < 30


def _cube(color: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit cube (largest extent 1, centred) of one colour: vertices, faces, colours."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float32)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))], np.uint32)
    return corners, faces, np.tile(np.array(color, np.uint8), (8, 1))


def test_an_object_on_disk_is_shown_to_a_new_page_unlit_in_its_own_colours(
    start_bridge: Start, open_page: OpenPage
) -> None:
    """The newest object in ``objects/`` (a bridge restarted since it was made) is in a new page's hello;
    unlit, each pixel of it is its vertex colour's bytes, as the sphere shows its RGB's."""
    from bridge.output.job_ids import new_job_id
    from bridge.output.meshes import glb_bytes

    bridge = start_bridge(http=True)
    job_id = new_job_id()
    folder = Path(bridge.settings.output).resolve() / "objects" / job_id
    folder.mkdir(parents=True)
    (folder / "mesh.glb").write_bytes(glb_bytes(*_cube((200, 60, 30))))
    placement = Placement(yaw=0.0, distance=0.5, size=0.3, turn=30.0)
    (folder / "meta.json").write_text(json.dumps({"kind": "object", "placement": placement.as_dict()}))
    page = open_page(bridge, width=640, height=480)
    _shown(page, job_id)
    [entry] = page.evaluate(SCENE)
    np.testing.assert_allclose(_matrix(entry), placement.matrix(RADIUS), atol=1e-5)
    shot = _settled(page)
    y, x = shot.shape[0] // 2, shot.shape[1] // 2
    middle = shot[y - 8 : y + 8, x - 8 : x + 8].reshape(-1, 3)
    assert np.abs(middle - np.array([200, 60, 30])).max() <= 2, middle[:3]


def test_a_cues_object_in_its_scene_is_shown_and_a_clear_takes_it_away(
    start_bridge: Start, open_page: OpenPage
) -> None:
    """A show's cue announces the object in its scene (``scenes/<id>/object/``) after its world, and
    ``/ldm3d/object/clear`` after a world without one: the page follows, and a page opened after the
    clear shows no object (not the newest in ``objects/``)."""
    from bridge.output.job_ids import new_job_id
    from bridge.output.meshes import glb_bytes

    bridge = start_bridge(http=True)
    output = Path(bridge.settings.output).resolve()
    job, scene = new_job_id(), new_job_id()
    (output / "objects" / job).mkdir(parents=True)
    (output / "objects" / job / "mesh.glb").write_bytes(glb_bytes(*_cube((40, 200, 60))))
    (output / "scenes" / scene / "object").mkdir(parents=True)
    (output / "scenes" / scene / "object" / "mesh.glb").write_bytes(glb_bytes(*_cube((30, 60, 220))))
    page = open_page(bridge)
    _shown(page, job)  # the newest object job on disk, before anything was announced
    assert bridge._web is not None
    where = Placement(yaw=-10.0, pitch=5.0, distance=0.8, size=0.5, turn=90.0)
    glb = f"{output}/scenes/{scene}/object/mesh.glb"
    bridge._web.publish("/ldm3d/object/ready", (scene, glb[:-3] + "obj", glb, *where.args()))
    _shown(page, scene)
    [entry] = page.evaluate(SCENE)
    assert entry["job_id"] == scene
    np.testing.assert_allclose(_matrix(entry), where.matrix(RADIUS), atol=1e-5)
    bridge._web.publish("/ldm3d/object/clear", ())
    page.wait_for_function(f"() => ({SCENE})().length === 0", timeout=10000)
    late = open_page(bridge)
    assert late.evaluate("window.ldm3d.hello.object") is None
    assert late.evaluate(SCENE) == []


def client_args(bridge: Bridge, job_id: str) -> tuple[str, str, str]:
    folder = Path(bridge.settings.output).resolve() / "objects" / job_id
    return job_id, str(folder / "mesh.obj"), str(folder / "mesh.glb")
