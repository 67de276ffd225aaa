"""The TouchDesigner side's decisions, without TouchDesigner."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "td_project" / "python"))

from ldm3d_td_logic import (
    BridgeWatch,
    Dimmer,
    LoadBack,
    SetCross,
    Shown,
    SubscriptionKeeper,
    WorldSwitcher,
    version_problem,
)

J1, J2, J3 = "20261122-100000-000-0001", "20261122-100005-000-0002", "20261122-100009-000-0003"


def test_swaps_only_when_both_textures_are_loaded() -> None:
    s = WorldSwitcher(crossfade_s=2.0)
    assert s.on_ready(J1, "/o/1/rgb.png", "/o/1/depth.png") == [LoadBack("B", "/o/1/rgb.png", "/o/1/depth.png")]
    assert s.on_loaded("B", "rgb", "/o/1/rgb.png", now=10.0) == []
    assert s.front == "A"  # nothing changes on screen with one texture
    actions = s.on_loaded("B", "depth", "/o/1/depth.png", now=10.0)
    assert actions == [SetCross(0.0)]
    assert s.tick(11.0) == [SetCross(0.5)]
    assert s.tick(12.5) == [SetCross(1.0), Shown(J1, "B")]
    assert s.front == "B" and s.shown == J1
    # the next world loads into A and fades back toward 0
    assert s.on_ready(J2, "/o/2/rgb.png", "/o/2/depth.png") == [LoadBack("A", "/o/2/rgb.png", "/o/2/depth.png")]
    s.on_loaded("A", "depth", "/o/2/depth.png", 20.0)
    assert s.on_loaded("A", "rgb", "/o/2/rgb.png", 20.0) == [SetCross(1.0)]
    assert s.tick(22.0) == [SetCross(0.0), Shown(J2, "A")]


def test_a_stale_ready_is_ignored() -> None:
    s = WorldSwitcher(crossfade_s=0.0)
    for job in (J1, J2, J3):
        s.on_running(job)  # their progress was heard: live jobs (two workers)
    s.on_ready(J2, "r2", "d2")
    assert s.on_ready(J1, "r1", "d1") == []  # a live job that finished after a newer one: stale
    s.on_loaded("B", "rgb", "r2", 0.0)
    s.on_loaded("B", "depth", "d2", 0.0)
    assert s.shown == J2
    assert s.on_ready(J2, "r2", "d2") == []  # the world on screen, again
    assert s.on_ready(J3, "r3", "d3") == [LoadBack("A", "r3", "d3")]


def test_a_world_sent_on_purpose_is_shown_however_old_its_id() -> None:
    """A show's cue, its fallback or a recall names a world made earlier (a scene's id is as old as its
    render): it is not a late live job, and the dome shows it."""
    s = WorldSwitcher(crossfade_s=0.0)
    s.on_running(J3)
    s.on_ready(J3, "r3", "d3")
    s.on_loaded("B", "rgb", "r3", 0.0)
    s.on_loaded("B", "depth", "d3", 0.0)
    assert s.on_ready(J1, "r1", "d1") == [LoadBack("A", "r1", "d1")]  # cue 1 of a loop, fired again
    assert s.on_ready(J1, "r1", "d1") == []  # the same world while it loads
    s.on_loaded("A", "rgb", "r1", 1.0)
    s.on_loaded("A", "depth", "d1", 1.0)
    assert s.shown == J1 and s.on_ready(J1, "r1", "d1") == []  # the same world, on screen
    assert s.on_ready(J3, "r3", "d3") == [LoadBack("B", "r3", "d3")]  # /ldm3d/recall of the newer one


def test_late_loads_of_unwanted_files_change_nothing() -> None:
    s = WorldSwitcher()
    s.on_ready(J1, "r1", "d1")
    assert s.on_loaded("B", "rgb", "some-older.png", 0.0) == []
    assert s.on_loaded("A", "rgb", "r1", 0.0) == []  # wrong buffer
    assert s.loading is not None and s.loading.loaded == set()


def test_a_ready_during_a_fade_waits_then_loads_into_the_new_back_buffer() -> None:
    s = WorldSwitcher(crossfade_s=1.0)
    s.on_ready(J1, "r1", "d1")
    s.on_loaded("B", "rgb", "r1", 0.0)
    s.on_loaded("B", "depth", "d1", 0.0)
    assert s.on_ready(J2, "r2", "d2") == []  # B is fading in; A is still on screen
    assert s.on_ready(J3, "r3", "d3") == []  # only the newest waiting world is kept
    assert s.tick(1.0) == [SetCross(1.0), Shown(J1, "B"), LoadBack("A", "r3", "d3")]


def test_state_and_error_texts() -> None:
    s = WorldSwitcher()
    assert s.on_state("busy", 2, J1, "ldm3d-pano") == f"busy · ldm3d-pano · queue 2, running {J1}"
    assert s.on_state("idle", 0, "", "ldm3d-pano", (1, 1)) == "idle · ldm3d-pano · queue 0"
    assert s.on_state("busy", 0, J1, "ldm3d-pano", (3, 4)).endswith(f"running {J1} · workers 3/4")
    assert s.on_state("restarting", 0, "", "ldm3d-pano", (0, 1)).endswith("queue 0 · workers 0/1")
    assert s.on_error("", "queue_full", "the queue is full") == "queue_full: the queue is full"
    assert s.on_error(J1, "timeout", "too long") == f"timeout: too long (job {J1})"


def test_the_subscription_is_renewed_at_half_its_lease_and_retried_until_answered() -> None:
    k = SubscriptionKeeper(retry_s=5.0)
    assert k.due(0.0)  # at once
    k.sent(0.0)
    assert not k.due(4.9) and k.due(5.0)  # no answer yet: again after 5 s
    k.sent(5.0)
    k.on_subscribed(3600.0, now=5.1)
    assert not k.due(1804.0) and k.due(1805.1)  # then at half of a one-hour lease
    k.on_subscribed(2.0, now=0.0)
    assert not k.due(4.0)  # never faster than the retry period


def test_a_reinitialised_switcher_reads_the_visible_buffer_from_the_cross() -> None:
    """Re-init with B on screen (cross at 1): the next world must load into A, and fade toward A."""
    s = WorldSwitcher(crossfade_s=1.0, cross=1.0)
    assert s.front == "B"
    assert s.on_ready(J1, "/o/1/rgb.tif", "/o/1/depth.tif") == [LoadBack("A", "/o/1/rgb.tif", "/o/1/depth.tif")]
    s.on_loaded("A", "rgb", "/o/1/rgb.tif", 0.0)
    assert s.on_loaded("A", "depth", "/o/1/depth.tif", 0.0) == [SetCross(1.0)]  # starts where the cross is
    assert s.tick(1.0) == [SetCross(0.0), Shown(J1, "A")]


def test_the_crossfade_time_is_read_at_each_switch() -> None:
    s = WorldSwitcher(crossfade_s=2.0)
    s.on_ready(J1, "r1", "d1")
    s.on_loaded("B", "rgb", "r1", 0.0)
    s.on_loaded("B", "depth", "d1", 0.0, crossfade_s=4.0)  # changed on the panel since start-up
    assert s.tick(2.0) == [SetCross(0.5)]


def test_hold_keeps_the_world_and_loads_the_newest_on_release() -> None:
    s = WorldSwitcher(crossfade_s=0.0)
    assert s.set_hold(True) == []
    assert s.on_ready(J1, "r1", "d1") == [] and s.on_ready(J2, "r2", "d2") == []
    assert s.front == "A" and s.loading is None  # nothing changes on screen
    assert s.set_hold(False) == [LoadBack("B", "r2", "d2")]  # the newest, not the first


def test_the_watch_resubscribes_after_a_restart_or_a_silence() -> None:
    w = BridgeWatch(period_s=2.0)
    assert w.on_state("aaaa", 0.0) is False and w.on_state("aaaa", 2.0) is False
    assert w.tick(7.9) is False and w.tick(8.1) is True and w.online is False  # three beats missed
    assert w.tick(9.0) is False  # once, not every frame
    assert w.on_state("bbbb", 10.0) is True  # a new boot id: the bridge restarted
    k = SubscriptionKeeper(retry_s=5.0)
    k.on_subscribed(3600.0, 0.0)
    k.now(10.0)
    assert k.due(10.0)


def test_blackout_fades_the_brightness_over_the_crossfade_time_and_back() -> None:
    d = Dimmer()
    assert d.tick(False, 2.0, 100.0) == 1.0
    assert d.tick(True, 2.0, 100.0) == 1.0  # nothing has passed yet
    assert d.tick(True, 2.0, 101.0) == 0.5
    assert d.tick(True, 2.0, 103.0) == 0.0  # never below 0
    assert d.tick(False, 2.0, 103.5) == 0.25
    assert d.tick(False, 0.0, 103.6) == 1.0  # no fade time: at once
    assert d.tick(True, 2.0, 103.0) == 1.0  # a clock that went back moves nothing


def test_touchdesigner_version_check() -> None:
    assert version_problem("2023", "11880") is None
    assert version_problem("2025", "10230") is None
    old = version_problem("2022", "35320")
    assert old is not None and "2022.35320 is older than 2023.11000" in old
    unreadable = version_problem("2023", "beta")
    assert unreadable is not None and "cannot read" in unreadable
