"""The operator page in a real browser: Debian's Chromium driven by Playwright (tests/browser.py),
against a real bridge on the tiny model. WebGL renders on SwiftShader, so the viewer's pixels are
real renders of the shared displacement shader."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bridge.output.images import read_depth16
from bridge.serve.server import Bridge
from tests.browser import chromium_path, launch, missing_reason
from tests.engines import SlowSteps

ROOT = Path(__file__).resolve().parents[1]
Start = Callable[..., Bridge]
OpenPage = Callable[..., Any]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if chromium_path() is None:
        if sys.platform.startswith("linux"):
            pytest.fail(missing_reason())  # CI must run these: ./dev installs Chromium
        pytest.skip(missing_reason())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[OpenPage]:
    """``open_page(bridge)``: the bridge's page in a fresh browser profile, connected; page errors fail the test."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_(
        bridge: Bridge, width: int = 1024, height: int = 768, online: bool = True, allow: str = "@", **options: Any
    ) -> Any:
        """``allow``: console errors containing it are expected (the browser logs each refused request)."""
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and allow not in m.text and errors.append(m.text))
        page.goto(f"http://127.0.0.1:{bridge.http_port}/")
        if online:
            page.wait_for_selector("#lamp.online", timeout=15000)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, f"the page reported errors: {errors}"


def _canvas(page: Any) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.locator("#viewer").screenshot())).convert("RGB"), dtype=np.int16)


def _drawn(page: Any, job_id: str, timeout: float = 30.0) -> None:
    page.wait_for_function("id => window.ldm3d.drawn.some(d => d.job_id === id)", arg=job_id, timeout=timeout * 1000)


def _set(page: Any, selector: str, value: Any) -> None:
    page.eval_on_selector(selector, "(e, v) => { e.value = v; e.dispatchEvent(new Event('input')); }", str(value))


def _generate(page: Any, prompt: str, steps: int, width: int = 256, height: int = 128) -> None:
    page.fill("#prompt", prompt)
    _set(page, "#steps", steps)
    page.fill("#width", str(width))
    page.fill("#height", str(height))
    page.click("#go")


def _pano(start_bridge: Start) -> Bridge:
    """A bridge serving tiny-pano at 256×128, with its page."""
    return start_bridge(model="tiny-pano", http=True, width=256, height=128)


def _subscribed(client_for: Any, bridge: Bridge) -> Any:
    """An OSC client of ``bridge`` that hears every event (TouchDesigner's view of the dome)."""
    osc = client_for(bridge)
    osc.subscribe_self()
    return osc


def _job(osc: Any, prompt: str) -> str:
    """A finished job from an OSC client (the client subscribed), its id."""
    osc.send("/ldm3d/generate", prompt, "steps", 2)
    return str(osc.wait_for(["/ldm3d/ready"], 60)[-1].args[0])


def _wait_idle(bridge: Bridge, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (bridge.pool.state != "idle" or len(bridge.queue)) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_go_moves_the_progress_bar_and_a_new_world_appears_in_the_viewer(
    start_bridge: Start, open_page: OpenPage
) -> None:
    bridge = _pano(start_bridge)
    page = open_page(bridge)
    page.wait_for_timeout(300)
    before = _canvas(page)
    _generate(page, "a quiet harbour", steps=60)
    widths: set[str] = set()
    deadline = time.monotonic() + 60
    while len({w for w in widths if w not in ("0%", "100%", "")}) < 2 and time.monotonic() < deadline:
        widths.add(page.eval_on_selector("#bar", "e => e.style.width"))
        page.wait_for_timeout(50)
    assert len({w for w in widths if w not in ("0%", "100%", "")}) >= 2, f"the bar did not move: {widths}"
    page.wait_for_function("window.ldm3d.drawn.length > 0", timeout=60000)
    job_id = page.evaluate("window.ldm3d.drawn.at(-1).job_id")
    assert bridge.writer.find(job_id) is not None
    page.wait_for_timeout(1500)  # past the crossfade
    after = _canvas(page)
    assert after.std() > 20, "the viewer is blank"
    assert np.abs(after - before).mean() > 10, "the viewer did not change"
    assert "a quiet harbour" in page.inner_text("#world-label")
    assert page.locator(f'#history .card[data-job="{job_id}"]').count() == 1


def test_cancel_a_queued_job_and_the_running_one_from_the_page(start_bridge: Start, open_page: OpenPage) -> None:
    bridge = _pano(start_bridge)
    page = open_page(bridge)
    _generate(page, "the long one", steps=150)
    page.wait_for_selector("#queue li.running")
    _generate(page, "the waiting one", steps=10)
    waiting = page.locator("#queue li:not(.running)")
    waiting.wait_for()
    assert "the waiting one" in waiting.inner_text()
    waiting.locator("button").click()
    page.wait_for_selector("#queue li:not(.running)", state="detached")
    page.wait_for_selector("#errors li:has-text('was cancelled')")
    page.click("#cancel")  # the running job
    page.wait_for_selector("#queue li.running", state="detached", timeout=15000)
    _wait_idle(bridge)
    assert bridge.writer.job_ids() == []  # neither job was written
    assert page.locator("#errors li:has-text('was cancelled')").count() == 2


def test_a_history_card_is_looked_at_here_and_put_live_only_by_a_second_tap(
    start_bridge: Start, open_page: OpenPage, client_for: Any
) -> None:
    bridge = _pano(start_bridge)
    osc = _subscribed(client_for, bridge)
    ids = [_job(osc, "first world"), _job(osc, "second world")]
    page = open_page(bridge, has_touch=True)
    _drawn(page, ids[1])  # the world on screen when the page opened
    assert page.locator("#history .card").count() == 2
    assert page.locator("#history .card.on-screen").get_attribute("data-job") == ids[1]
    # A tap on the picture: only this page's viewer, nothing sent to the dome
    page.tap(f'#history .card[data-job="{ids[0]}"] img')
    page.wait_for_selector("#world-label:has-text('preview, not on the dome')")
    page.wait_for_function("id => window.ldm3d.viewer.world && window.ldm3d.viewer.world.job_id === id", arg=ids[0])
    live = page.locator(f'#history .card[data-job="{ids[0]}"] .live')
    live.tap()  # the first tap only arms it
    assert live.inner_text() == "Tap again: on the dome"
    with pytest.raises(TimeoutError):
        osc.wait_for(["/ldm3d/ready"], 1.0)
    live.tap()
    ready = osc.wait_for(["/ldm3d/ready"], 10)[-1]
    assert ready.args[0] == ids[0]  # TouchDesigner is told too: it is on the dome
    page.wait_for_selector(f'#history .card.on-screen[data-job="{ids[0]}"]')
    page.wait_for_selector("#world-label:has-text('on screen')")


def test_the_bar_is_empty_while_nothing_runs_after_a_job_and_after_a_recall(
    start_bridge: Start, open_page: OpenPage, client_for: Any
) -> None:
    bridge = _pano(start_bridge)
    osc = _subscribed(client_for, bridge)
    first = _job(osc, "first world")
    page = open_page(bridge)
    _generate(page, "a second world", steps=4)
    page.wait_for_selector("#errors li:has-text('runs next')")  # not "number 1 in the queue"
    second = osc.wait_for(["/ldm3d/ready"], 60)[-1].args[0]  # the page's job (the first world is on screen)
    _drawn(page, str(second))
    page.wait_for_function("document.querySelector('#bar').style.width === '0%'", timeout=5000)  # it ended
    osc.send("/ldm3d/recall", first)  # on the dome again: no job ran
    _drawn(page, first)
    page.wait_for_timeout(300)
    assert page.eval_on_selector("#bar", "e => e.style.width") == "0%"


def test_the_page_reconnects_by_itself_after_a_restart(start_bridge: Start, open_page: OpenPage) -> None:
    bridge = start_bridge(http=True, heartbeat_s=0.5)
    port = bridge.http_port
    page = open_page(bridge)
    boot = page.evaluate("window.ldm3d.boot")
    bridge.stop()
    page.wait_for_selector("#lamp:not(.online)", timeout=10000)
    restarted = start_bridge(http=True, heartbeat_s=0.5, http_port=port)  # the page's address again
    assert restarted.http_port == port
    page.wait_for_selector("#lamp.online", timeout=15000)
    assert page.evaluate("window.ldm3d.boot") == restarted.boot_id != boot
    page.wait_for_selector("#errors li:has-text('the bridge restarted')")


def test_the_lamp_goes_out_after_three_missed_heartbeats(start_bridge: Start, open_page: OpenPage) -> None:
    bridge = start_bridge(http=True, heartbeat_s=0.5)
    page = open_page(bridge)
    bridge._stop_monitor.set()  # the heartbeat stops; the connection stays open
    started = time.monotonic()
    page.wait_for_selector("#lamp:not(.online)", timeout=10000)
    assert time.monotonic() - started >= 1.0  # not at the first missed beat


def test_with_a_token_the_page_asks_once_and_remembers(start_bridge: Start, open_page: OpenPage) -> None:
    bridge = start_bridge(http=True, token="s3cret")
    page = open_page(bridge, online=False, allow="401 (Unauthorized)")
    page.wait_for_selector("#token-dialog[open]", timeout=15000)
    page.fill("#token", "s3cret")
    page.click("#token-dialog button")
    page.wait_for_selector("#lamp.online", timeout=15000)
    page.reload()
    page.wait_for_selector("#lamp.online", timeout=15000)
    assert not page.locator("#token-dialog[open]").count()


def test_the_viewer_compiles_the_shared_displacement_and_gets_depth_exactly(
    start_bridge: Start, open_page: OpenPage, client_for: Any, browser: Any
) -> None:
    bridge = _pano(start_bridge)
    osc = _subscribed(client_for, bridge)
    job_id = _job(osc, "depth")
    record = """
      window.shaderSources = [];
      const original = WebGL2RenderingContext.prototype.shaderSource;
      WebGL2RenderingContext.prototype.shaderSource = function (shader, source) {
        window.shaderSources.push(source); return original.call(this, shader, source);
      };"""
    context = browser.new_context()
    try:
        context.add_init_script(record)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{bridge.http_port}/")
        _drawn(page, job_id)
        sources = page.evaluate("window.shaderSources")
        shared = (ROOT / "bridge/render/glsl/ldm3d_displace.glsl").read_text()
        vertex = [s for s in sources if "ldm3dDisplace(uv, uDepthB" in s]
        assert vertex and shared in vertex[0], "the viewer must compile the shared ldm3d_displace.glsl as it is"
        url = page.evaluate("window.ldm3d.viewer.world.depth")
        floats = page.evaluate(
            """async ([url, w, h]) => {
                 const m = await import('/ui/viewer.js');
                 const buffer = await (await fetch(url)).arrayBuffer();
                 return Array.from(m.depthFloats(buffer, w, h));
               }""",
            [url, 256, 128],
        )
    finally:
        context.close()
    files = bridge.writer.find(job_id)
    assert files is not None
    expected = (read_depth16(files.depth)[::-1].astype(np.float64) / 65535).astype(np.float32)  # bottom row first
    assert np.array_equal(np.asarray(floats, np.float32).reshape(128, 256), expected)
    assert len(np.unique(read_depth16(files.depth))) > 256  # more levels than 8 bits could carry


TARGETS = "button, input, select, textarea"


@pytest.mark.parametrize(
    ("width", "height", "side_by_side"), [(1180, 820, True), (820, 1180, False), (390, 844, False)]
)
def test_tablet_and_phone_layouts_have_finger_sized_targets(
    start_bridge: Start, open_page: OpenPage, client_for: Any, width: int, height: int, side_by_side: bool
) -> None:
    bridge = _pano(start_bridge)
    osc = _subscribed(client_for, bridge)
    job_id = _job(osc, "a world for the history")
    page = open_page(bridge, width=width, height=height, has_touch=True, is_mobile=not side_by_side)
    _drawn(page, job_id)
    view, panel = (page.locator(s).bounding_box() for s in ("#view", "#panel"))
    if side_by_side:
        assert view["x"] + view["width"] <= panel["x"] + 1 and view["height"] > 0.8 * (height - 60)
    else:
        assert view["y"] + view["height"] <= panel["y"] + 1 and view["width"] >= width - 2
    small = page.evaluate(
        """selector => [...document.querySelectorAll(selector)]
             .filter(e => e.offsetParent !== null && !e.closest('dialog'))
             .map(e => [e.id || e.className || e.tagName, e.getBoundingClientRect()])
             .filter(([, r]) => r.height < 43.5 || r.width < 43.5)
             .map(([name, r]) => `${name} ${Math.round(r.width)}×${Math.round(r.height)}`)""",
        TARGETS,
    )
    assert small == [], f"targets under 44 px: {small}"  # a finger's size, in the dark
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing sticks out sideways


def test_the_cue_list_shows_rendered_marks_and_go(
    start_bridge: Start, open_page: OpenPage, load_tiny: Callable[[str], Any], tmp_path: Path
) -> None:
    # Loading the show shows cue 1, which renders it: its steps are slowed (0.5 s each) so that it is
    # still rendering when the list first appears (on CI the tiny model could finish first).
    shows = tmp_path / "shows"
    shows.mkdir()
    (shows / "two.toml").write_text(
        'name = "Two"\n[[cue]]\nnumber = "1"\nname = "Sea"\nprompt = "a sea"\nseed = 1\nsteps = 2\n'
        '[[cue]]\nnumber = "2"\nname = "Sky"\nprompt = "a sky"\nseed = 2\nsteps = 2\n'
    )
    bridge = start_bridge(http=True, input_dirs=(str(shows),), engine_factory=lambda: SlowSteps(load_tiny("tiny"), 0.5))
    page = open_page(bridge)
    assert page.locator("#show-desk").is_hidden()  # no show: only the load controls
    page.evaluate("window.ldm3d.ws.send(JSON.stringify({id: 1, address: '/ldm3d/show/load', args: ['two.toml']}))")
    page.wait_for_selector('#cues li[data-cue="2"]', timeout=10000)
    assert page.inner_text("#show-name") == "Two"
    assert page.locator("#cues .mark").all_inner_texts() == ["○", "○"]
    page.click('#cues li[data-cue="1"] button.fire')
    page.wait_for_selector('#cues li.current[data-cue="1"]')
    page.wait_for_function("document.querySelector('#cues li[data-cue=\"1\"] .mark').textContent === '●'")
    page.click("#cue-go")
    page.wait_for_selector('#cues li.current[data-cue="2"]')
    page.wait_for_selector("#cue-go:disabled")  # the last cue: nothing stands by
    assert page.inner_text("#cue-standby") == "nothing stands by"
    # Show GO does not look like Generate, and a note (Back past the first cue) does not move it.
    style = "e => getComputedStyle(e).backgroundColor"
    assert page.eval_on_selector("#cue-go", style) != page.eval_on_selector("#go", style)
    _wait_idle(bridge)  # cue 2's render done, and the page's queue empty again: nothing else moves GO
    page.wait_for_selector("#queue li.muted")
    before = page.locator("#cue-go").bounding_box()
    page.click("#cue-back")
    page.wait_for_selector('#cues li.current[data-cue="1"]')
    page.wait_for_timeout(1100)  # a second Back within 1 s would be taken for a double tap
    page.click("#cue-back")
    page.wait_for_selector("#errors li:has-text('unknown_cue')")
    assert page.locator("#cue-go").bounding_box() == before
    page.click("#errors li")  # a tap dismisses a note
    page.wait_for_selector("#errors li", state="detached")


def _view(page: Any, strength: float) -> np.ndarray:
    _set(page, "#strength", strength)
    page.wait_for_timeout(150)
    return _canvas(page)


def test_orbit_shows_the_depth_that_the_centre_hides_and_reset_comes_back(
    start_bridge: Start, open_page: OpenPage, client_for: Any
) -> None:
    bridge = _pano(start_bridge)
    osc = _subscribed(client_for, bridge)
    job_id = _job(osc, "a world with depth")
    page = open_page(bridge)
    _drawn(page, job_id)
    page.wait_for_timeout(1200)  # past the crossfade
    assert page.locator("#view-controls .local").is_visible()  # labelled: this device only
    # From the centre the displacement runs along the line of sight: the depth slider shows nothing.
    centre = np.abs(_view(page, 1.0) - _view(page, 0.0)).mean()
    page.click("#orbit")
    assert page.get_attribute("#orbit", "aria-pressed") == "true"
    orbit = np.abs(_view(page, 1.0) - _view(page, 0.0)).mean()
    assert orbit > 3 and orbit > 5 * centre, (centre, orbit)
    # The keys step the eye in and out once the view has the focus; Reset is the centre again.
    page.click("#viewer")
    before = page.evaluate("window.ldm3d.viewer.orbit")
    page.keyboard.press("-")
    assert page.evaluate("window.ldm3d.viewer.orbit") < before
    page.click("#reset-view")
    assert page.get_attribute("#orbit", "aria-pressed") == "false"
    page.wait_for_timeout(150)
    assert page.evaluate("window.ldm3d.viewer.camera.position.length()") == 0
    # The inset is the world's depth map (near = white), top row first as in the file, each of its
    # pixels the depth texel under it.
    inset = np.asarray(
        page.evaluate(
            """() => { const c = document.querySelector('#depth-inset');
                       return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data); }"""
        ),
        np.float64,
    ).reshape(64, 128, 4)[..., 0]
    files = bridge.writer.find(job_id)
    assert files is not None
    depth = read_depth16(files.depth).astype(np.float64)
    rows, columns = (np.arange(64) * 128) // 64, (np.arange(128) * 256) // 128
    expected = np.round(255 * depth[np.ix_(rows, columns)] / 65535)
    assert np.abs(inset - expected).max() <= 1


def test_empty_hints_on_a_fresh_bridge_go_when_a_world_arrives(start_bridge: Start, open_page: OpenPage) -> None:
    bridge = _pano(start_bridge)
    page = open_page(bridge)
    assert page.locator("#empty-hint").is_visible() and page.locator("#history-hint").is_visible()
    assert page.locator("#depth-box").is_hidden()
    _generate(page, "the first world", steps=2)
    page.wait_for_function("window.ldm3d.drawn.length > 0", timeout=60000)
    assert page.locator("#empty-hint").is_hidden() and page.locator("#history-hint").is_hidden()
    assert page.locator("#depth-box").is_visible()


def test_a_double_tapped_generate_sends_one_job(
    start_bridge: Start, open_page: OpenPage, load_tiny: Callable[[str], Any]
) -> None:
    bridge = start_bridge(model="tiny-pano", http=True, width=256, height=128,
                          engine_factory=lambda: SlowSteps(load_tiny("tiny-pano"), 0.2))  # fmt: skip
    page = open_page(bridge, has_touch=True)
    _generate(page, "one world", steps=30)
    page.tap("#go")  # within the second: the same request, sent once
    page.wait_for_selector("#errors li:has-text('runs next')")
    page.wait_for_timeout(1200)
    assert page.locator("#errors li:has-text('accepted')").count() == 1
    page.tap("#go")  # a second later it is a new request
    page.wait_for_function("document.querySelectorAll('#errors li.info code').length >= 2")
    assert page.locator("#errors li:has-text('accepted')").count() == 2
    page.click("#queue li:not(.running) button")
    page.click("#cancel")
    _wait_idle(bridge)


def test_cancel_says_cancelling_at_once_and_a_job_shows_its_estimate_and_its_decode(
    start_bridge: Start, open_page: OpenPage, load_tiny: Callable[[str], Any]
) -> None:
    bridge = start_bridge(model="tiny-pano", http=True, width=256, height=128,
                          engine_factory=lambda: SlowSteps(load_tiny("tiny-pano"), 0.2))  # fmt: skip
    page = open_page(bridge)
    page.evaluate(
        """window.texts = [];
           const text = document.querySelector('#progress-text');
           new MutationObserver(() => window.texts.push(text.textContent))
             .observe(text, {childList: true, characterData: true, subtree: true});"""
    )
    _generate(page, "a measured world", steps=6)
    page.wait_for_function("window.ldm3d.drawn.length > 0", timeout=60000)
    texts = page.evaluate("window.texts")
    assert any("left" in t and "step" in t for t in texts), texts  # its own pace, once two steps are in
    assert any("decoding and writing" in t for t in texts), texts
    page.evaluate("window.texts.length = 0")
    _generate(page, "a world to stop", steps=150)
    page.wait_for_selector("#queue li.running")
    page.wait_for_function("document.querySelector('#progress-text').textContent.includes('about')", timeout=10000)
    first = next(t for t in page.evaluate("window.texts") if " step " in t)
    assert "left" in first, first  # before a pace of its own: the last job's pace gives the estimate
    page.click("#cancel")
    assert "cancelling" in page.inner_text("#progress-text")  # at once, before the bridge answers
    assert page.is_disabled("#cancel")
    page.wait_for_selector("#errors li:has-text('was cancelled')", timeout=15000)
    page.wait_for_function("!document.querySelector('#cancel').disabled")
    assert page.inner_text("#cancel") == "Cancel"
