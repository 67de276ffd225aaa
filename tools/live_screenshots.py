"""The operator page's viewer while a world forms and once it has formed, for docs/web.md (run by hand;
needs Chromium, as ./dev installs).

    .venv/bin/python tools/live_screenshots.py

The tiny models' previews are noise, so the picture is made from bench/make_doc_images.py's synthetic
scene: a bridge holds it as a finished world, and a preview of it is handed to the page hub through the
preview desk's observer (the hub's ``preview``), as the desk hands a real one over: the scene at 1/8 of
its size (a preview's size, the latent's), box-filtered. It stands in for a real model's preview (the
cheap decoder's is blurrier); the page shows it exactly as it shows one. Written to
docs/images/view-forming.png: the viewer with the forming preview (left), then with the world (right).
"""

from __future__ import annotations

import io
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
from tests.browser import launch

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "view-forming.png"
#: A preview is at the latent's size: 1/8 of the world's.
SCALE = 8


def preview_of(rgb: np.ndarray, depth: np.ndarray) -> tuple[bytes, bytes]:
    """The world at 1/8 of its size (box filter), as the preview desk's PNGs: 8-bit RGB, 16-bit depth."""
    h, w = rgb.shape[0] // SCALE, rgb.shape[1] // SCALE
    small_rgb = rgb[: h * SCALE, : w * SCALE].reshape(h, SCALE, w, SCALE, 3).mean((1, 3)).round().astype(np.uint8)
    small_depth = depth[: h * SCALE, : w * SCALE].reshape(h, SCALE, w, SCALE).mean((1, 3)).round().astype(np.uint16)
    return encode_png(small_rgb), encode_png(small_depth)


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
    main()
