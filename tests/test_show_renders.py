"""A cue that needs its scene rendered while the show runs: asked for twice, it is rendered once;
and it goes before pre-generation, whose running job steps aside for it.

A real bridge (the tiny model, slowed to a known time per step) over real UDP on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.serve.server import Bridge
from tests.engines import slow_tiny
from tests.show_states import drain, state_where

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]
STEP_S = 0.1
#: The fallback takes this many steps: long enough that a cue asked for meanwhile finds it running.
LONG = 60

SHOW = f"""\
name = "Renders"
fallback = "0"

[[cue]]
number = "0"
prompt = "a quiet harbour"
seed = 1
steps = {LONG}

[[cue]]
number = "1"
prompt = "a reef"
seed = 2
steps = 2
"""


def _loaded(start_bridge: Start, client_for: ClientFor, tmp_path: Path, tiny_dir: Path) -> tuple[Bridge, OscClient]:
    """A bridge whose show is loaded without firing: the fallback renders quietly, nothing is shown."""
    (tmp_path / "renders.toml").write_text(SHOW)
    bridge = start_bridge(input_dirs=(str(tmp_path),), engine_factory=lambda: slow_tiny(str(tiny_dir), STEP_S))
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "renders.toml", 0)
    state_where(client, lambda s: s[0] == "Renders")
    deadline = time.monotonic() + 30
    while not any(job.quiet for job in bridge.pool.running) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(job.quiet for job in bridge.pool.running), "the fallback is not being rendered"
    return bridge, client


def _prompt(ready: Message) -> str:
    return str(json.loads(Path(str(ready.args[3])).read_text())["prompt"])


def test_a_cue_asked_for_twice_while_it_renders_is_rendered_once(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path, tiny_dir: Path
) -> None:
    bridge, client = _loaded(start_bridge, client_for, tmp_path, tiny_dir)
    client.send("/ldm3d/cue", "1")
    client.send("/ldm3d/cue", "1")  # a second press while its scene renders
    seen = client.wait_for(["/ldm3d/ready"], 60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(not j.quiet for j in [*bridge.pool.running, *bridge.queue.snapshot()]):
        seen += drain(client, 0.05)  # until no live job is queued or running (a second one would be)
    seen += drain(client, 0.5)
    reefs = [m for m in seen if m.address == "/ldm3d/ready" and _prompt(m) == "a reef"]
    assert len(reefs) == 1, [m.args[0] for m in reefs]
    assert [c["rendered"] for c in bridge.shows.cues()][1] is True


def test_a_cue_that_needs_a_render_goes_before_the_pregeneration_job_running(
    start_bridge: Start, client_for: ClientFor, tmp_path: Path, tiny_dir: Path
) -> None:
    """The fallback's quiet job has ~6 s left when cue 1 is asked for: it steps aside (cancelled, tried
    again afterwards), so cue 1's world goes out while the fallback is still not rendered."""
    bridge, client = _loaded(start_bridge, client_for, tmp_path, tiny_dir)
    client.send("/ldm3d/cue", "1")
    state_where(client, lambda s: s[1:3] == ("1", "shown"))
    assert [c["rendered"] for c in bridge.shows.cues()] == [False, True]
    # made afterwards: however long its job takes on a loaded machine, while it is queued or running
    # (a hang is pytest-timeout's); red if no quiet job is pending for 30 s and it is still not made
    given_up = time.monotonic() + 30
    while not bridge.shows.cues()[0]["rendered"] and time.monotonic() < given_up:
        if any(job.quiet for job in [*bridge.pool.running, *bridge.queue.snapshot()]):
            given_up = time.monotonic() + 30
        time.sleep(0.1)
    assert bridge.shows.cues()[0]["rendered"]
