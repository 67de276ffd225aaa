"""The operator page's viewer while a world forms and once it has formed, and with an object placed in
the world, for docs/web.md (run by hand; needs Chromium, as ./dev installs).

    .venv/bin/python tools/live_screenshots.py [forming | object]     # both when not told

The tiny models' previews are noise, so the picture is made from bench/make_doc_images.py's synthetic
scene: a bridge holds it as a finished world, and a preview of it is handed to the page hub through the
preview desk's observer (the hub's ``preview``), as the desk hands a real one over: the scene at 1/8 of
its size (a preview's size, the latent's), box-filtered. It stands in for a real model's preview (the
cheap decoder's is blurrier); the page shows it exactly as it shows one. Written to
docs/images/view-forming.png: the viewer with the forming preview (left), then with the world (right).

The tiny object model's meshes are noise too, so the object is a synthetic crate (a cube, each face its
own colour, written by the bridge's own GLB writer) put into the bridge's ``objects/`` folder as an
object job leaves it; a page that connects is offered the newest object and places it (docs/web.md,
"Objects"). Written to docs/images/view-object.png: the world of the first picture with the crate
standing between its pillars (yaw 35°, pitch -5°, distance 0.5, size 0.12, turned 25°).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bridge_latency import scene as bench_scene
from bench.make_doc_images import scene
from bench.web_page import bridge_with_worlds
from bridge.output.formats import encode_png
from bridge.output.job_ids import new_job_id
from bridge.output.meshes import glb_bytes
from bridge.placement import Placement
from tests.browser import launch

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "view-forming.png"
OBJECT_OUT = OUT.with_name("view-object.png")
#: A preview is at the latent's size: 1/8 of the world's.
SCALE = 8
#: Where the crate of view-object.png stands: between two pillars, in front of them.
CRATE = Placement(yaw=35.0, pitch=-5.0, distance=0.5, size=0.12, turn=25.0)
#: The crate's faces: +X, -X, +Y, -Y, +Z (its front), -Z.
FACES = [(200, 70, 40), (150, 50, 30), (235, 190, 90), (90, 40, 20), (220, 110, 50), (170, 80, 35)]


def preview_of(rgb: np.ndarray, depth: np.ndarray) -> tuple[bytes, bytes]:
    """The world at 1/8 of its size (box filter), as the preview desk's PNGs: 8-bit RGB, 16-bit depth."""
    h, w = rgb.shape[0] // SCALE, rgb.shape[1] // SCALE
    small_rgb = rgb[: h * SCALE, : w * SCALE].reshape(h, SCALE, w, SCALE, 3).mean((1, 3)).round().astype(np.uint8)
    small_depth = depth[: h * SCALE, : w * SCALE].reshape(h, SCALE, w, SCALE).mean((1, 3)).round().astype(np.uint16)
    return encode_png(small_rgb), encode_png(small_depth)


def crate() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A unit cube centred on the origin, each face its own colour (4 vertices a face): vertices, faces, colours."""
    vertices: list[np.ndarray] = []
    faces: list[tuple[int, int, int]] = []
    colors: list[tuple[int, int, int]] = []
    for axis in range(3):
        for sign, color in zip((1.0, -1.0), FACES[2 * axis : 2 * axis + 2], strict=True):
            u, v = np.eye(3)[(axis + 1) % 3] * 0.5, np.eye(3)[(axis + 2) % 3] * 0.5 * sign
            centre = np.eye(3)[axis] * 0.5 * sign
            base = len(vertices)
            vertices += [centre - u - v, centre + u - v, centre + u + v, centre - u + v]
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
            colors += [color] * 4
    return np.array(vertices, np.float32), np.array(faces, np.uint32), np.array(colors, np.uint8)


def object_main() -> None:
    """docs/images/view-object.png: the synthetic world with the crate placed in it."""
    from playwright.sync_api import sync_playwright

    rgb, depth = scene()
    base = bench_scene(rgb.shape[1], rgb.shape[0])
    world = replace(base, rgb=rgb, depth=depth, request=replace(base.request, prompt="a desert of coloured pillars"))
    with tempfile.TemporaryDirectory() as tmp:
        bridge, _ = bridge_with_worlds(tmp, [world], model="ldm3d-pano")
        job_id = new_job_id()
        folder = Path(tmp) / "objects" / job_id
        folder.mkdir(parents=True)
        (folder / "mesh.glb").write_bytes(glb_bytes(*crate()))
        meta = {"kind": "object", "job_id": job_id, "prompt": "a wooden crate", "placement": CRATE.as_dict()}
        (folder / "meta.json").write_text(json.dumps(meta))
        playwright = sync_playwright().start()
        browser = launch(playwright)
        try:
            page = browser.new_context(viewport={"width": 1180, "height": 820}).new_page()
            page.goto(f"http://127.0.0.1:{bridge.http_port}/")
            page.wait_for_selector("#lamp.online", timeout=20000)
            page.wait_for_function("window.ldm3d.drawn.length > 0", timeout=30000)
            page.wait_for_function("id => window.ldm3d.objectShown.some((o) => o.job_id === id)", arg=job_id)
            page.evaluate(
                "v => { Object.assign(window.ldm3d.viewer, v); window.ldm3d.viewer.dirty = true; }",
                {"yaw": -0.61, "pitch": -0.12},
            )  # the crate's yaw, seen from the centre
            page.wait_for_timeout(1500)
            shot = page.locator("#view").screenshot()
        finally:
            browser.close()
            playwright.stop()
            bridge.stop()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    image = image.resize((image.width * 3 // 5, image.height * 3 // 5), Image.Resampling.LANCZOS)
    image.save(OBJECT_OUT, optimize=True)
    print(f"wrote {OBJECT_OUT}")


def main() -> None:
    from playwright.sync_api import sync_playwright

    rgb, depth = scene()
    base = bench_scene(rgb.shape[1], rgb.shape[0])
    world = replace(base, rgb=rgb, depth=depth, request=replace(base.request, prompt="a desert of coloured pillars"))
    with tempfile.TemporaryDirectory() as tmp:
        bridge, _ = bridge_with_worlds(tmp, [world], model="ldm3d-pano")
        playwright = sync_playwright().start()
        browser = launch(playwright)
        try:
            page = browser.new_context(viewport={"width": 1180, "height": 820}).new_page()
            page.goto(f"http://127.0.0.1:{bridge.http_port}/")
            page.wait_for_selector("#lamp.online", timeout=20000)
            page.wait_for_function("window.ldm3d.drawn.length > 0", timeout=30000)
            page.evaluate("v => { Object.assign(window.ldm3d.viewer, v); window.ldm3d.viewer.dirty = true; }",
                          {"yaw": -1.75, "pitch": -0.12})  # fmt: skip
            page.wait_for_timeout(1500)
            formed = page.locator("#view").screenshot()
            assert bridge._web is not None and bridge._web._page is not None
            bridge._web._page.preview("20261207-120000-000-0001", 12, 50, *preview_of(rgb, depth))
            page.wait_for_selector("#view[data-forming]", timeout=10000)
            page.wait_for_timeout(1000)
            forming = page.locator("#view").screenshot()
        finally:
            browser.close()
            playwright.stop()
            bridge.stop()
    left, right = (Image.open(io.BytesIO(shot)).convert("RGB") for shot in (forming, formed))
    both = Image.new("RGB", (left.width + right.width + 12, max(left.height, right.height)), (17, 20, 24))
    both.paste(left, (0, 0))
    both.paste(right, (left.width + 12, 0))
    both = both.resize((both.width * 3 // 5, both.height * 3 // 5), Image.Resampling.LANCZOS)
    both.save(OUT, optimize=True)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    which = sys.argv[1:] or ["forming", "object"]
    if "forming" in which:
        main()
    if "object" in which:
        object_main()
