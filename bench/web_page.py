"""The operator page: its weight, and the time from /ldm3d/ready to the new world drawn in the browser.

    .venv/bin/python bench/web_page.py [--size 1024x512] [--worlds 4] [--recalls 12]

A real bridge on loopback (with an engine that answers at once: diffusion is not what is
measured) holds ``--worlds`` finished worlds of ``--size``; Debian's Chromium (Playwright,
SwiftShader WebGL, tests/browser.py) opens the page. Each world is recalled over OSC once
with the browser's cache empty (its textures are fetched), then ``--recalls`` more times in
turn (content-addressed URLs: the browser's cache answers). For each recall: from the moment
the bridge sends ``/ldm3d/ready`` (the event's ``t``) to the first frame drawn with the new
world's textures (the crossfade starts there; it lasts 1 s by design), and, as the baseline
of the same run, to the moment the page's code got the event (the transport alone).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bridge_latency import InstantEngine, scene
from bridge.osc.client import OscClient
from bridge.output.job_ids import new_job_id
from bridge.serve.server import Bridge
from bridge.settings import BridgeSettings
from ldm3d_engine.types import RGBDResult
from tests.browser import launch


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _world(base: RGBDResult, shift: int) -> RGBDResult:
    """Another world (other pixels, so other texture URLs): the panorama turned by ``shift`` columns."""
    return replace(base, rgb=np.roll(base.rgb, shift, 1), depth=np.roll(base.depth, shift, 1))


def bridge_with_worlds(out: str, worlds: list[RGBDResult], **settings: Any) -> tuple[Bridge, list[str]]:
    """A started bridge on loopback, HTTP on, whose engine answers at once, holding ``worlds`` as
    finished jobs (oldest first; their ids returned). Stop it when done."""
    values: dict[str, Any] = {"model": "tiny", "host": "127.0.0.1", "port": 0, "output": out, "zeroconf": False,
                              "warmup": False, "http": True, **settings}  # fmt: skip
    bridge = Bridge(BridgeSettings(**values).check(), lambda: InstantEngine(worlds[0]))  # type: ignore[arg-type, return-value]
    bridge.start()
    bridge.pool.ready.wait(30)
    ids = [new_job_id() for _ in worlds]
    for job_id, world in zip(ids, worlds, strict=True):
        bridge.writer.write(job_id, world)
    return bridge, ids


def _recall(osc: OscClient, page: Any, job_id: str) -> tuple[float, float]:
    """(ready → drawn, ready → event in the page's code), in ms."""
    count = page.evaluate("window.ldm3d.drawn.length")
    osc.send("/ldm3d/recall", job_id)
    page.wait_for_function(
        "([id, n]) => window.ldm3d.drawn.length > n && window.ldm3d.drawn.at(-1).job_id === id",
        arg=[job_id, count],
        timeout=30000,
    )
    drawn = page.evaluate("window.ldm3d.drawn.at(-1)")
    arrived = page.evaluate("id => window.ldm3d.arrived.filter(a => a.address === '/ldm3d/ready').at(-1)", job_id)
    return drawn["at"] - drawn["sentAt"] * 1000, arrived["at"] - arrived["t"] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="1024x512", help="the worlds' width×height (default 1024x512)")
    parser.add_argument("--worlds", type=int, default=4, help="worlds (all but the first shown recalled uncached)")
    parser.add_argument("--recalls", type=int, default=12, help="recalls from the browser's cache (default 12)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    from playwright.sync_api import sync_playwright

    base = scene(width, height)
    with tempfile.TemporaryDirectory() as tmp:
        worlds = [_world(base, 1 + n * width // max(1, args.worlds)) for n in range(args.worlds)]
        bridge, ids = bridge_with_worlds(tmp, worlds, heartbeat_s=2.0, format="png")
        osc = OscClient(*bridge.address)
        playwright = sync_playwright().start()
        browser = launch(playwright)
        try:
            page = browser.new_context(viewport={"width": 1180, "height": 820}).new_page()
            page.goto(f"http://127.0.0.1:{bridge.http_port}/")
            page.wait_for_selector("#lamp.online", timeout=20000)
            page.wait_for_function(f"window.ldm3d.drawn.some(d => d.job_id === '{ids[-1]}')", timeout=30000)
            world = page.evaluate("window.ldm3d.viewer.world")
            entries = page.evaluate(
                "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
                ".map(e => ({name: e.name, transfer: e.transferSize, decoded: e.decodedBodySize}))"
            )
            first = [_recall(osc, page, job_id) for job_id in ids[:-1]]  # the last one is on screen already
            cached = [_recall(osc, page, ids[n % len(ids)]) for n in range(args.recalls)]
        finally:
            browser.close()
            playwright.stop()
            osc.close()
            bridge.stop()
    page_files = [e for e in entries if "/t/" not in e["name"]]
    textures = {e["name"].rsplit("/t/", 1)[-1]: e for e in entries if "/t/" in e["name"]}
    kib = 1024
    print(f"operator page on {width}×{height} worlds (Chromium {browser.version}, SwiftShader WebGL)")
    print(f"  page weight: {sum(e['transfer'] for e in page_files) / kib:.0f} KiB transferred (gzip), "
          f"{sum(e['decoded'] for e in page_files) / kib:.0f} KiB decoded, {len(page_files)} files")  # fmt: skip
    for kind, label in (("rgb", "RGB (JPEG)"), ("depth", "depth (raw uint16, gzip)"), ("thumb", "thumbnail (JPEG)")):
        e = textures.get(world[kind].rsplit("/t/", 1)[-1])
        if e is not None:
            sizes = f"{e['transfer'] / kib:.0f} KiB transferred, {e['decoded'] / kib:.0f} KiB decoded"
            print(f"  a world's {label}: {sizes}")
    transport = [t for _, t in first + cached]
    base_ms = statistics.median(transport)
    for label, runs in (("first view (textures fetched)", first), ("again (browser cache)", cached)):
        drawn = [d for d, _ in runs]
        print(f"  ready → drawn, {label}: p50 {statistics.median(drawn):.0f} ms, p99 {_pct(drawn, 0.99):.0f} ms "
              f"({len(drawn)} recalls; {statistics.median(drawn) / max(base_ms, 0.5):.0f}× the transport)")  # fmt: skip
    print(f"  baseline, ready → event in the page's code: p50 {base_ms:.1f} ms, p99 {_pct(transport, 0.99):.1f} ms")
    print(f"  (measured {time.strftime('%Y-%m-%d')}; Date.now() has 1 ms resolution)")


if __name__ == "__main__":
    main()
