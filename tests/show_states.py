"""What the show tests share: a clock the test moves by hand for the show desk, and the ways a
client waits for or asks the bridge's ``/ldm3d/show/state``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bridge.osc.client import OscClient
from bridge.osc.codec import Message

State = tuple[object, ...]

#: Four cues after a show's name: the fallback "0", "1" for 100 s then on, "2" after a 10 s pre-wait with
#: a 5 s fade and a goto "1", the last "3" (the show desk's and the show control's tests).
FOUR_CUES = """\
fallback = "0"

[[cue]]
number = "0"
prompt = "a quiet harbour"
seed = 1
steps = 1

[[cue]]
number = "1"
prompt = "a reef"
seed = 2
steps = 1
duration = 100
continue = "follow"

[[cue]]
number = "2"
prompt = "a kelp forest"
seed = 3
steps = 1
prewait = 10
fade = 5
goto = "1"

[[cue]]
number = "3"
prompt = "a sunken ship"
seed = 4
steps = 1
"""


class HandClock:
    """The show desk's clock, moved by the test (the bridge's monitor reads it ten times a second)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def state_where(client: OscClient, wanted: Callable[[State], bool], timeout: float = 60) -> State:
    """The next /ldm3d/show/state that ``wanted`` accepts (earlier ones may still be on their way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.wait_for(["/ldm3d/show/state"], max(0.1, deadline - time.monotonic()))[-1].args
        if wanted(state):
            return state
    raise TimeoutError("no such /ldm3d/show/state")


def shown(client: OscClient, number: str) -> State:
    """The state once cue ``number`` is on screen."""
    return state_where(client, lambda s: s[1:3] == (number, "shown"))


def asked(client: OscClient) -> State:
    """The state, asked for now (its countdown as it stands)."""
    client.send("/ldm3d/show/state")
    return client.wait_for(["/ldm3d/show/state"], 10)[-1].args


def drain(client: OscClient, seconds: float) -> list[Message]:
    """Every message that arrives within ``seconds``."""
    seen: list[Message] = []
    deadline = time.monotonic() + seconds
    while (message := client.receive(max(0.0, deadline - time.monotonic()))) is not None:
        seen.append(message)
    return seen
