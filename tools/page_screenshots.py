"""Screenshots of the operator page for the README and docs/web.md (run by hand; needs Chromium, as ./dev installs).

    .venv/bin/python tools/page_screenshots.py

A real bridge on loopback holds three worlds made from bench/make_doc_images.py's synthetic
scene (the tiny model's pictures are noise); Chromium (tests/browser.py) shows the page on a
tablet in landscape (1180×820), a phone in portrait (390×844) and a desktop (1440×900), written
to docs/images/page-tablet.png, page-phone.png and page-desktop.png; then the viewer alone at two
eye positions, the centre and Orbit (docs/images/view-centre.png, view-orbit.png); then, from a
bridge serving the visitor page with moderation, the visitor page on a phone with a prompt sent
(docs/images/visit-phone.png) and the operator page's visitors panel (page-visitors.png); then the
show panel on a phone with examples/museum-loop.toml loaded, pre-generated, cue 3 standing by
(docs/images/page-show.png).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bridge_latency import scene as bench_scene
from bench.make_doc_images import scene
from bench.web_page import bridge_with_worlds
from tests.browser import launch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images"
PROMPTS = ("a desert of coloured pillars", "pillars at noon, long shadows", "four pillars under a pale sky")


def main() -> None:
    from playwright.sync_api import sync_playwright

    rgb, depth = scene()
    base = bench_scene(rgb.shape[1], rgb.shape[0])
    with tempfile.TemporaryDirectory() as tmp:
        worlds = []
        for n, prompt in enumerate(PROMPTS):
            turned = np.roll(rgb, n * 200, 1), np.roll(depth, n * 200, 1)
            request = replace(base.request, prompt=prompt, seed=1000 + n)
            worlds.append(replace(base, rgb=turned[0], depth=turned[1], request=request))
        shows = Path(tmp) / "shows"
        shows.mkdir()
        shutil.copy(ROOT / "examples" / "museum-loop.toml", shows)
        bridge, _ = bridge_with_worlds(tmp, worlds, model="ldm3d-pano", input_dirs=(str(shows),))
        playwright = sync_playwright().start()
        browser = launch(playwright)
        try:
            sizes = (
                ("page-tablet", (1180, 820), False),
                ("page-phone", (390, 844), True),
                ("page-desktop", (1440, 900), False),
            )
            for name, size, mobile in sizes:
                context = browser.new_context(viewport={"width": size[0], "height": size[1]}, has_touch=True,
                                              is_mobile=mobile)  # fmt: skip
                page = context.new_page()
                page.goto(f"http://127.0.0.1:{bridge.http_port}/")
                page.wait_for_selector("#lamp.online", timeout=20000)
                page.wait_for_function("window.ldm3d.drawn.length > 0", timeout=30000)
                page.fill("#prompt", "a harbour at dusk, lanterns on the water")
                # turned toward two pillars, looking a little down (as an operator would, dragging)
                page.evaluate("v => { Object.assign(window.ldm3d.viewer, v); window.ldm3d.viewer.dirty = true; }",
                              {"yaw": -1.75, "pitch": -0.12})  # fmt: skip
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT / f"{name}.png"))
                if name == "page-desktop":
                    _eye_positions(page)
                context.close()
                print(f"wrote {OUT / name}.png")
            _show(browser, bridge)
            _visitors(browser, tmp)
        finally:
            browser.close()
            playwright.stop()
            bridge.stop()


def _visitors(browser: Any, tmp: str) -> None:
    """The visitor page with a prompt waiting for approval, and the operator's panel showing it."""
    from bridge.serve.server import Bridge
    from bridge.settings import BridgeSettings
    from ldm3d_engine import EngineSettings, load_engine

    settings = BridgeSettings(model="tiny", host="127.0.0.1", port=0, output=str(Path(tmp) / "visitors"),
                              zeroconf=False, warmup=False, visitors=True, moderate=True).check()  # fmt: skip
    bridge = Bridge(settings, lambda: load_engine(EngineSettings(model="tiny", tiny_dir=str(Path(tmp) / "tiny"))))
    bridge.start()
    try:
        url = f"http://127.0.0.1:{bridge.http_port}"
        phone = browser.new_context(viewport={"width": 390, "height": 700}, device_scale_factor=2).new_page()
        phone.goto(url + "/visit")
        phone.fill("#prompt", "a lighthouse on a cliff at night")
        phone.click("#send")
        phone.wait_for_selector("#status:has-text('Waiting')")
        phone.screenshot(path=str(OUT / "visit-phone.png"))
        operator = browser.new_context(viewport={"width": 1180, "height": 820}).new_page()
        operator.goto(url + "/")
        operator.wait_for_selector("#waiting li[data-ticket]", timeout=20000)
        operator.locator("#visitors").screenshot(path=str(OUT / "page-visitors.png"))
        print(f"wrote {OUT / 'visit-phone.png'} and page-visitors.png")
    finally:
        bridge.stop()


def _show(browser: Any, bridge: Any) -> None:
    """The show panel on a phone: a cue file loaded from the page, every cue rendered, one standing by."""
    page = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True).new_page()
    page.goto(f"http://127.0.0.1:{bridge.http_port}/")
    page.wait_for_selector("#lamp.online", timeout=20000)
    page.fill("#show-file", "museum-loop.toml")
    page.click("#show-load-fire")
    page.wait_for_selector("#cue-state.shown", timeout=30000)
    page.click("#show-pregen")
    page.wait_for_function("document.querySelectorAll('#cues .mark').length > 0 && "
                           "[...document.querySelectorAll('#cues .mark')].every(m => m.textContent === '●')",
                           timeout=60000)  # fmt: skip
    page.click('#cues li[data-cue="3"] .name')
    page.wait_for_selector('#cues li.standby[data-cue="3"]')
    page.wait_for_timeout(2500)  # the countdown has gone down a little
    page.evaluate("document.getElementById('errors').replaceChildren()")  # the notes of pre-generation's jobs
    page.evaluate("document.getElementById('show').scrollIntoView({block: 'end'})")  # clear of the header
    box = page.locator("#show").bounding_box()  # with a margin above its heading
    page.screenshot(
        path=str(OUT / "page-show.png"), clip={"x": 0, "y": box["y"] - 14, "width": 390, "height": box["height"] + 26}
    )
    page.context.close()
    print(f"wrote {OUT / 'page-show.png'}")


def _eye_positions(page: Any) -> None:
    """The viewer from its centre, then with Orbit on (the eye stepped back half the radius)."""
    page.evaluate("v => { Object.assign(window.ldm3d.viewer, v); window.ldm3d.viewer.dirty = true; }",
                  {"yaw": -2.2, "pitch": -0.1})  # fmt: skip
    page.wait_for_timeout(500)
    page.locator("#view").screenshot(path=str(OUT / "view-centre.png"))
    page.click("#orbit")
    page.wait_for_timeout(500)
    page.locator("#view").screenshot(path=str(OUT / "view-orbit.png"))
    print(f"wrote {OUT / 'view-centre.png'} and view-orbit.png")


if __name__ == "__main__":
    main()
