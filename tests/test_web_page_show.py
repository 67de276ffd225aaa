"""The operator page's show panel in Debian's Chromium (tests/browser.py) against a real bridge on the
tiny model, with a cue file in its input folder: load without firing, GO, a standby set from the cue
list, the pre-wait, pause and resume, and the countdown counted by the page between the bridge's pushes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from bridge.serve.server import Bridge
from tests import test_web_page

# The page tests' fixtures: one Chromium for this module, a fresh browser profile per page.
browser, open_page = test_web_page.browser, test_web_page.open_page

Start = Callable[..., Bridge]
OpenPage = Callable[..., Any]
# Each test ends well within this (a bridge and a page take ~3 s; every wait below has its own timeout).
pytestmark = pytest.mark.timeout(120)
WAIT_MS = 15000

SHOW = """name = "Reef"
fallback = "0"
[[cue]]
number = "0"
name = "Harbour"
prompt = "a harbour"
seed = 1
steps = 2
duration = 40
[[cue]]
number = "1"
name = "Reef"
prompt = "a reef"
seed = 2
steps = 2
[[cue]]
number = "2"
name = "Kelp"
prompt = "a kelp forest"
seed = 3
steps = 2
prewait = 2
[[cue]]
number = "3"
name = "Deep sea at night, glowing jellyfish drifting past the dome's camera"
prompt = "the deep sea"
seed = 4
steps = 2
"""


@pytest.fixture
def show_bridge(start_bridge: Start, tmp_path: Path) -> Bridge:
    """A bridge on the tiny model (its page served) with ``reef.toml`` in its input folder."""
    shows = tmp_path / "shows"
    shows.mkdir()
    (shows / "reef.toml").write_text(SHOW)
    return start_bridge(http=True, input_dirs=(str(shows),))


def _load(page: Any, fire: bool) -> None:
    page.fill("#show-file", "reef.toml")
    page.click("#show-load-fire" if fire else "#show-load-quiet")
    page.wait_for_selector('#cues li[data-cue="3"]', timeout=WAIT_MS)


def _seconds(page: Any) -> int:
    """The countdown as the operator reads it: ``"27 s left"`` → 27."""
    text = page.inner_text("#countdown")
    match = re.fullmatch(r"(\d+) s left", text)
    assert match, f"no countdown: {text!r}"
    return int(match.group(1))


def _counts_below(page: Any, seconds: int, why: str) -> None:
    """Wait (up to 10 s) for the countdown to read less than ``seconds``: the page redraws it 5 times a
    second, and a loaded machine runs its timers late, so no fixed wait is long enough everywhere."""
    try:
        page.wait_for_function(
            """(n) => { const m = /^(\\d+) s left$/.exec(document.getElementById('countdown').innerText);
                        return m !== null && Number(m[1]) < n; }""",
            arg=seconds,
            timeout=10000,
        )
    except PlaywrightTimeout:
        raise AssertionError(f"{why}: still {page.inner_text('#countdown')!r} after 10 s") from None


def test_load_without_firing_then_go_fires_the_standby(show_bridge: Bridge, open_page: OpenPage) -> None:
    page = open_page(show_bridge, width=390, height=844, has_touch=True, is_mobile=True)
    # No show: the cue list is hidden, the load controls are there.
    assert page.locator("#show-desk").is_hidden()
    assert page.locator("#show-file").is_visible() and page.locator("#show-load-quiet").is_visible()
    expect(page.locator("#show-none")).to_have_text("no show loaded")
    _load(page, fire=False)
    # Nothing fired: no current cue, the fallback stands by, GO names it, no countdown.
    expect(page.locator("#cue-current")).to_have_text("no cue fired yet")
    expect(page.locator("#cue-standby")).to_have_text("0 Harbour")
    expect(page.locator("#cue-go")).to_have_text("GO ▶ 0")
    expect(page.locator("#show-running")).to_have_text("running")
    assert page.locator("#cues li.current").count() == 0
    assert page.locator('#cues li.standby[data-cue="0"]').count() == 1
    assert page.inner_text("#countdown") == ""
    assert show_bridge.shows.current is None  # the dome keeps its world
    # Finger-sized at phone size, every target of the panel.
    small = page.evaluate(
        """() => [...document.querySelectorAll('#show button, #show input')]
             .filter(e => e.offsetParent !== null)
             .map(e => [e.id || e.className || e.textContent, e.getBoundingClientRect()])
             .filter(([, r]) => r.height < 43.5 || r.width < 43.5)
             .map(([name, r]) => `${name} ${Math.round(r.width)}×${Math.round(r.height)}`)"""
    )
    assert small == [], f"targets under 44 px: {small}"
    # A long cue name is cut short (…), never pushing the panel past the screen's edge.
    assert page.evaluate("document.querySelector('main').scrollWidth") <= 390
    assert page.locator("#show").bounding_box()["width"] <= 390
    # GO fires the standby: it renders (or was rendered as the fallback) and comes back shown.
    page.click("#cue-go")
    expect(page.locator("#cue-state")).to_have_text("shown", timeout=WAIT_MS)
    expect(page.locator("#cue-current")).to_have_text("0 Harbour")
    expect(page.locator("#cue-standby")).to_have_text("1 Reef")
    expect(page.locator("#cue-go")).to_have_text("GO ▶ 1")
    assert page.locator('#cues li.current[data-cue="0"]').count() == 1
    assert re.fullmatch(r"\d+ s left", page.inner_text("#countdown"))
    # Pre-generate renders every cue not rendered yet (in idle time): all four marked ●.
    page.click("#show-pregen")
    expect(page.locator("#show-state")).to_have_text(re.compile(r"^4/4 rendered"), timeout=60000)
    assert page.locator("#cues .mark").all_inner_texts() == ["●"] * 4


def test_a_cue_tapped_in_the_list_stands_by_and_go_fires_it_after_its_prewait(
    show_bridge: Bridge, open_page: OpenPage
) -> None:
    page = open_page(show_bridge)
    _load(page, fire=True)
    expect(page.locator("#cue-state")).to_have_text("shown", timeout=WAIT_MS)
    expect(page.locator("#cue-go")).to_have_text("GO ▶ 1")
    page.click('#cues li[data-cue="2"] .name')  # a tap on the cue: it stands by, nothing fires
    page.wait_for_selector('#cues li.standby[data-cue="2"]', timeout=WAIT_MS)
    expect(page.locator("#cue-go")).to_have_text("GO ▶ 2")
    expect(page.locator("#cue-standby")).to_have_text("2 Kelp")
    assert page.locator("#cues li.standby").count() == 1
    expect(page.locator("#cue-current")).to_have_text("0 Harbour")  # the dome still shows cue 0
    assert show_bridge.shows.current == 0
    # The standby row is marked apart from the current one (its colour and its word).
    style = "e => { const s = getComputedStyle(e); return [s.borderLeftColor, s.backgroundColor]; }"
    standby_style = page.eval_on_selector('#cues li[data-cue="2"]', style)
    current_style = page.eval_on_selector('#cues li[data-cue="0"]', style)
    plain_style = page.eval_on_selector('#cues li[data-cue="3"]', style)
    assert standby_style != current_style and standby_style != plain_style and current_style != plain_style
    assert page.inner_text('#cues li[data-cue="2"] .tag').lower() == "next"
    assert page.inner_text('#cues li[data-cue="0"] .tag').lower() == "now"
    page.click("#cue-go")
    expect(page.locator("#cue-state")).to_have_text("pre-wait", timeout=WAIT_MS)
    expect(page.locator("#countdown")).to_have_text(re.compile(r"pre-wait [12] s"))
    expect(page.locator("#cue-current")).to_have_text("2 Kelp")
    expect(page.locator("#cue-state")).to_have_text("shown", timeout=WAIT_MS)  # fired after its pre-wait
    expect(page.locator("#cue-go")).to_have_text("GO ▶ 3")
    assert page.inner_text("#countdown") == ""  # cue 2 has no duration: no countdown


def test_pause_freezes_the_countdown_resume_goes_on_and_the_page_counts_between_pushes(
    show_bridge: Bridge, open_page: OpenPage
) -> None:
    page = open_page(show_bridge)
    _load(page, fire=True)
    expect(page.locator("#cue-state")).to_have_text("shown", timeout=WAIT_MS)
    expect(page.locator("#countdown")).to_have_text(re.compile(r"\d+ s left"))
    first = _seconds(page)
    # A countdown going down is no change the bridge pushes (the page counts it); and a push for another
    # reason does not redraw the lists, so no button is replaced between a finger's touch and its release.
    page.evaluate(
        """() => { window.redrawn = []; window.pushes = 0;
             for (const id of ['queue', 'cues'])
               new MutationObserver(() => window.redrawn.push(id))
                 .observe(document.getElementById(id), {childList: true});
             const handle = window.ldm3d.ws.onmessage;
             window.ldm3d.ws.onmessage = (e) => {
               if (JSON.parse(e.data).type === 'status') window.pushes++;
               return handle(e); }; }"""
    )
    _counts_below(page, first, "the countdown does not go down while the show runs")
    assert page.evaluate("window.pushes") == 0, "the status was pushed for a countdown that only went down"
    assert page.evaluate("window.redrawn") == [], "a list was redrawn for nothing"
    # Deaf to the bridge for a moment (no push handled): the page counts by itself.
    page.evaluate("() => { window.ldm3d.deaf = window.ldm3d.ws.onmessage; window.ldm3d.ws.onmessage = () => {}; }")
    deaf = _seconds(page)
    _counts_below(page, deaf, "between pushes the countdown stands still")
    page.evaluate("() => { window.ldm3d.ws.onmessage = window.ldm3d.deaf; }")
    # Pause: "paused", the button offers Resume, and the countdown stands still.
    page.click("#show-pause")
    expect(page.locator("#show-running")).to_have_text("paused", timeout=WAIT_MS)
    expect(page.locator("#show-pause")).to_have_text("▶ Resume")
    paused = _seconds(page)
    page.wait_for_timeout(1300)
    assert _seconds(page) == paused, "the countdown goes on while paused"
    assert not show_bridge.shows.running
    # Resume goes on from where it stood.
    page.click("#show-pause")
    expect(page.locator("#show-running")).to_have_text("running", timeout=WAIT_MS)
    expect(page.locator("#show-pause")).to_have_text("❚❚ Pause")
    assert _seconds(page) in (paused, paused - 1)  # from where it stood, not its whole duration again
    _counts_below(page, paused, "the countdown does not go on after Resume")
