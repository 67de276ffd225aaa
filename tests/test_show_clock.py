"""The cue countdown alone (pure, a clock of plain numbers): what the show state's "seconds left"
and auto-follow are made of."""

from __future__ import annotations

from bridge.show.clock import CueClock


def test_a_countdown_runs_pauses_resumes_and_runs_out() -> None:
    clock = CueClock()
    assert clock.remaining(0.0) is None and not clock.due(1e9)  # no countdown: never due
    clock.start(100.0, 10.0, running=True)
    assert clock.remaining(40.0) == 70.0 and not clock.due(109.9)
    clock.pause(40.0)
    assert clock.remaining(500.0) == 70.0  # frozen
    clock.pause(600.0)  # pausing twice changes nothing
    clock.resume(1000.0)
    clock.resume(1005.0)  # nor does resuming twice
    assert clock.elapsed(1069.0) == 99.0 and not clock.due(1069.0)
    assert clock.due(1070.0) and clock.remaining(2000.0) == 0.0  # never below zero


def test_a_countdown_can_start_paused_part_gone_or_again() -> None:
    clock = CueClock()
    clock.start(60.0, 5.0, running=False, elapsed=40.0)  # a restart: 40 s of it were shown before
    assert clock.remaining(500.0) == 20.0
    clock.resume(500.0)
    assert clock.remaining(510.0) == 10.0
    clock.restart(510.0)  # /ldm3d/show/start: the whole duration again
    assert clock.remaining(520.0) == 50.0
    clock.start(60.0, 0.0, running=True, elapsed=-3.0)  # a bad saved value counts as none
    assert clock.remaining(0.0) == 60.0
    assert clock.elapsed(-1.0) == 0.0  # a clock that went back does not add time
    clock.clear()
    assert clock.remaining(0.0) is None and clock.length is None


def test_pauses_add_up_to_the_second() -> None:
    clock = CueClock()
    assert clock.elapsed(50.0) == 0.0  # never started: nothing gone (what a save writes)
    clock.start(10.0, 0.0, running=True)
    clock.pause(0.25)  # a quarter of a second shown
    clock.resume(1.0)
    clock.pause(1.5)  # and half a second more: the pauses add up
    assert clock.elapsed(9.0) == 0.75
    clock.clear()
    assert clock.elapsed(9.0) == 0.0
