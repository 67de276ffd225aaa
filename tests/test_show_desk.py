"""The show desk without a bridge: a real scene library and texture writer in a temporary folder,
and small fakes handed in for the rest (the notifier records what the dome and the clients are
sent, the queue keeps the jobs, the test plays the worker and moves the clock by hand).

Which cue a freshly loaded show stands on, which world a failed cue shows, when a cue's duration
starts counting, one job for a cue asked for twice while it renders, a live cue pushing
pre-generation aside, GO/back/goto/standby/pause, and a restart recalling the place. Fast (no
model, no sockets): these tests are in the mutation selection (``bridge/serve/shows.py``,
``scenes.py``, ``worlds.py``)."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from bridge.contract.engine_api import EngineLike
from bridge.contract.morphs import MorphRequest
from bridge.errors import LibraryBusy, NoShow, UnknownCue
from bridge.notify.notifier import Notifier
from bridge.output.writer import MORPHS_FOLDER, JobFiles, TextureWriter
from bridge.serve.scenes import scene_request
from bridge.serve.shows import SAVE_ELAPSED_S, ShowDesk
from bridge.settings import BridgeSettings
from bridge.show.builtin import BUILTIN_ID, builtin_result
from bridge.show.library import SceneLibrary
from bridge.workers.jobs import Address, Job
from tests.show_states import FOUR_CUES, HandClock

CLIENT: Address = ("127.0.0.1", 9000)

SHOW = f'name = "Harbour"\n{FOUR_CUES}'

#: No fallback, three plain cues.
PLAIN = """\
name = "Plain"

[[cue]]
number = "a"
prompt = "a desert"
seed = 1
steps = 1

[[cue]]
number = "b"
prompt = "a forest"
seed = 2
steps = 1

[[cue]]
number = "c"
prompt = "a glacier"
seed = 3
steps = 1
"""


class Heard:
    """The notifier: every message, as (to whom, address, arguments)."""

    def __init__(self) -> None:
        self.sent: list[tuple[Address | None, str, tuple[Any, ...]]] = []
        self.lists: list[tuple[Address | None, list[Any], Any, int | None, str]] = []

    def notify(self, sender: Address | None, address: str, *args: Any, bound: int | None = None) -> None:
        self.sent.append((sender, address, args))

    def broadcast(self, address: str, *args: Any) -> None:
        self.sent.append((None, address, args))

    def reply_list(self, sender: Address | None, items: Any, end: Any, bound: int | None, noun: str) -> None:
        self.lists.append((sender, list(items), end, bound, noun))

    def of(self, address: str) -> list[tuple[Any, ...]]:
        return [args for _, a, args in self.sent if a == address]

    def addresses(self) -> list[str]:
        return [a for _, a, _ in self.sent]


class Engine:
    def __init__(self, identity: str = "model-1") -> None:
        self.identity = identity


class BusyLibrary(SceneLibrary):
    """A scene library another process may hold: ``busy`` makes every call say so; ``broken`` (a
    full disk…) makes reading the show's state fail otherwise."""

    busy = False
    broken = False

    def save_state(self, *, wait: bool = True, **values: Any) -> None:
        if self.busy:
            raise LibraryBusy("the scene library is locked by another process")
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        super().save_state(wait=wait, **values)

    def flush(self) -> int:
        if self.busy:
            raise LibraryBusy("the scene library is locked by another process")
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return super().flush()

    def scene_id(self, key: str) -> str | None:
        if self.busy:
            raise LibraryBusy("the scene library is locked by another process")
        return super().scene_id(key)

    def rendered(self, keys: Any) -> set[str]:
        if self.busy:
            raise LibraryBusy("the scene library is locked by another process")
        return super().rendered(keys)

    def load_state(self) -> dict[str, Any]:
        if self.busy:
            raise LibraryBusy("the scene library is locked by another process")
        if self.broken:
            raise sqlite3.OperationalError("disk I/O error")
        return super().load_state()


class Stage:
    """A show desk on a temporary output folder; the test is its worker and its clock."""

    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        self.shows = root / "shows"
        self.shows.mkdir(exist_ok=True)
        self.out = root / "out"
        self.out.mkdir(exist_ok=True)
        self.settings = BridgeSettings(model="tiny", input_dirs=(str(self.shows),), output=str(self.out), **settings)
        self.writer = TextureWriter(self.out)
        self.library = BusyLibrary(self.writer.root)
        self.heard = Heard()
        self.jobs: list[Job] = []
        self.engine: Engine | None = Engine()
        self.idle = True
        self.clock = HandClock()
        self.display: dict[str, float | int] = {}
        self.scenes_made = 0
        self.desk = self.new_desk()

    def new_desk(self) -> ShowDesk:
        """A desk as a (re)started bridge makes it, on the same folder."""
        return ShowDesk(
            self.settings,
            self.library,
            self.writer,
            cast(Notifier, self.heard),
            self.jobs.append,
            engine=lambda: cast(EngineLike, self.engine),
            idle=lambda: self.idle,
            display=self.display,
            clock=self.clock,
        )

    def write(self, text: str, name: str = "show.toml") -> str:
        (self.shows / name).write_text(text)
        return name

    def load(self, text: str = SHOW, fire: bool = True, name: str = "show.toml") -> None:
        self.desk.load(self.write(text, name), CLIENT, fire)

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.desk.tick(self.clock())

    def state(self) -> tuple[Any, ...]:
        return self.desk.state_args()

    def key(self, number: str) -> str:
        show = self.desk.show
        assert show is not None
        cue = show.cue(number)
        assert cue is not None
        return self.desk.scenes.key(cue)

    def scene(self, key: str, with_object: bool = False, job_id: str | None = None) -> JobFiles:
        """A scene written and recorded as the worker's writer thread does it (named by its job)."""
        self.scenes_made += 1
        job_id = job_id or f"20261207-120000-000-{self.scenes_made:04d}"

        def inside(staging: Path) -> None:
            if with_object:
                (staging / "object").mkdir()
                (staging / "object" / "mesh.glb").write_bytes(b"glb")
                (staging / "object" / "mesh.obj").write_bytes(b"obj")

        files = self.writer.write_scene(job_id, builtin_result(8, 4), {"scene_key": key}, inside)
        self.library.add(key, files.job_id, "")
        self.desk.scene_added(key)
        return files

    def made(self, *numbers: str, with_object: bool = False) -> list[JobFiles]:
        """Those cues' scenes are in the library already."""
        return [self.scene(self.key(n), with_object) for n in numbers]

    def finish(self, job: Job, address: str = "/ldm3d/ready", with_object: bool = False, lock: bool = False) -> None:
        """The worker ends ``job``: a scene written and announced, or another final address
        (``lock``: another process takes the library between the two)."""
        if address == "/ldm3d/ready":
            assert job.scene_key is not None
            files = self.scene(job.scene_key, with_object, job.id)
            self.heard.notify(job.sender, "/ldm3d/ready", *files.ready_args())
        if lock:
            self.library.busy = True
        assert job.on_done is not None
        job.on_done(address)

    def worlds(self) -> list[str]:
        """The ids of the worlds sent to the dome, in order."""
        return [str(args[0]) for args in self.heard.of("/ldm3d/ready")]


@pytest.fixture
def stage(tmp_path: Path) -> Iterator[Stage]:
    made = Stage(tmp_path)
    yield made
    made.library.close()


@pytest.fixture
def make_stage(tmp_path: Path) -> Iterator[Callable[..., Stage]]:
    made: list[Stage] = []

    def make(**settings: Any) -> Stage:
        made.append(Stage(tmp_path, **settings))
        return made[-1]

    yield make
    for each in made:
        each.library.close()


# -- loading -----------------------------------------------------------------------


def test_a_loaded_show_stands_on_its_fallback_cue_and_renders_it_live(stage: Stage) -> None:
    stage.load()
    assert stage.state()[:4] == ("Harbour", "0", "rendering", "1")
    (job,) = stage.jobs
    assert (job.sender, job.quiet, job.request.prompt) == (CLIENT, False, "a quiet harbour")  # type: ignore[union-attr]


def test_a_show_without_a_fallback_starts_at_its_first_cue(stage: Stage) -> None:
    stage.load(PLAIN)
    assert stage.state()[1:4] == ("a", "rendering", "b")


def test_loading_without_firing_stands_its_first_cue_by_and_leaves_the_dome_alone(stage: Stage) -> None:
    stage.load(fire=False)
    assert stage.state()[:4] == ("Harbour", "", "", "0") and stage.state()[9] == -1.0
    assert stage.worlds() == [] and stage.library.load_state()["standby"] == "0"
    assert stage.heard.of("/ldm3d/show/state")[-1][3] == "0"
    assert {to for to, _, _ in stage.heard.sent} == {CLIENT}


def test_an_unrendered_fallback_is_rendered_quietly_and_the_operator_told(stage: Stage) -> None:
    stage.load(fire=False)
    (warning,) = stage.heard.of("/ldm3d/warning")
    assert warning[:2] == ("", "fallback_not_rendered") and "fallback cue 0 of 'Harbour'" in warning[2]
    (job,) = stage.jobs
    assert job.quiet and job.scene_key == stage.key("0")


def test_a_rendered_fallback_is_not_rendered_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0])
    stage.load(fire=False, name="again.toml")
    assert len(stage.jobs) == 1 and len(stage.heard.of("/ldm3d/warning")) == 1


def test_a_rendered_cue_shows_at_once_without_a_job(stage: Stage) -> None:
    stage.load(fire=False)
    (scene,) = stage.made("0")
    stage.jobs.clear()
    stage.desk.go(CLIENT)
    assert stage.worlds() == [scene.job_id] and stage.jobs == []
    assert stage.state()[2:4] == ("shown", "1")
    assert stage.heard.sent[-2][0] == CLIENT  # the world, to who asked


def test_loading_before_the_model_waits_for_it_then_fires(stage: Stage) -> None:
    stage.engine = None
    stage.load()
    assert stage.state()[1:3] == ("0", "rendering") and stage.jobs == []
    assert stage.worlds() == [BUILTIN_ID]  # a brand-new dome is not left black meanwhile
    stage.tick()
    assert stage.jobs == []
    stage.engine = Engine()
    stage.tick()
    (job,) = stage.jobs
    assert job.sender == CLIENT and not job.quiet


# -- when a duration starts --------------------------------------------------------


def test_a_rendered_cue_counts_its_duration_from_when_it_shows(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    assert stage.state()[9] == 100.0
    stage.clock.advance(30.04)
    assert stage.state()[9] == 70.0


def test_a_rendering_cue_counts_its_duration_from_when_its_scene_arrives(stage: Stage) -> None:
    stage.load()
    stage.desk.cue("1", CLIENT)
    job = stage.jobs[-1]
    stage.tick(50)
    assert stage.state()[1:3] == ("1", "rendering") and stage.state()[9] == -1.0
    stage.finish(job)
    assert stage.state()[2] == "shown" and stage.state()[9] == 100.0


def test_a_failed_cue_counts_its_duration_from_its_failure_and_follows_on(stage: Stage) -> None:
    stage.load()
    stage.finish(stage.jobs[0])
    stage.desk.cue("1", CLIENT)
    stage.tick(50)
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.state()[2] == "failed" and stage.state()[9] == 100.0
    stage.tick(99)
    assert stage.state()[1] == "1"
    stage.tick(1)
    assert stage.state()[1:3] == ("2", "prewait")


def test_auto_follow_fires_the_standby_when_the_duration_is_up(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1", "3")
    stage.desk.cue("1", CLIENT)
    stage.desk.set_standby("3", CLIENT)
    stage.tick(99.9)
    assert stage.state()[1] == "1"
    stage.tick(0.1)
    assert stage.state()[1:3] == ("3", "shown")


def test_a_cue_that_does_not_follow_stays_when_its_time_is_up(stage: Stage) -> None:
    stage.load(SHOW.replace('continue = "follow"\n', ""), fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.tick(500)
    assert stage.state()[1:3] == ("1", "shown")


def test_auto_follow_on_the_last_cue_stops_there(stage: Stage) -> None:
    text = PLAIN.replace("seed = 3\n", 'seed = 3\nduration = 5\ncontinue = "follow"\n')
    stage.load(text, fire=False)
    stage.made("c")
    stage.desk.cue("c", CLIENT)
    stage.tick(10)
    assert stage.state()[1:4] == ("c", "shown", "")


def test_a_running_countdown_is_saved_every_few_seconds(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.tick(SAVE_ELAPSED_S - 1)
    assert stage.library.load_state()["elapsed"] == 0.0
    stage.tick(1)
    assert stage.library.load_state()["elapsed"] == SAVE_ELAPSED_S


# -- asked twice, and pre-generation -------------------------------------------------


def test_a_cue_asked_for_twice_while_it_renders_is_one_job(stage: Stage) -> None:
    stage.load()
    stage.desk.cue("3", CLIENT)
    stage.desk.cue("3", CLIENT)
    assert [j.scene_key for j in stage.jobs] == [stage.key("0"), stage.key("3")]


def test_a_cue_asked_for_again_after_its_job_ended_renders_again(stage: Stage) -> None:
    stage.load()
    stage.desk.cue("3", CLIENT)
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    stage.desk.cue("3", CLIENT)
    assert [j.scene_key for j in stage.jobs].count(stage.key("3")) == 2


def test_pregeneration_renders_the_fallback_first_then_each_missing_scene_in_idle_time(stage: Stage) -> None:
    stage.load(PLAIN.replace('name = "Plain"', 'name = "Plain"\nfallback = "b"'), fire=False)
    stage.finish(stage.jobs[0])  # the fallback, made quietly
    stage.desk.pregen(CLIENT)
    stage.tick()
    assert [j.request.prompt for j in stage.jobs[1:]] == ["a desert"]  # type: ignore[union-attr]
    stage.idle = False
    stage.tick()
    assert len(stage.jobs) == 2  # no idle worker: nothing more
    stage.finish(stage.jobs[1])
    assert stage.heard.of("/ldm3d/show/progress")[-1] == (2, 3)
    stage.idle = True
    stage.tick()
    assert stage.jobs[2].quiet and stage.jobs[2].request.prompt == "a glacier"  # type: ignore[union-attr]
    stage.tick()
    assert len(stage.jobs) == 3  # each scene once


def test_pregeneration_starts_with_a_missing_fallback(stage: Stage) -> None:
    stage.load(PLAIN.replace('name = "Plain"', 'name = "Plain"\nfallback = "c"'), fire=False)
    stage.finish(stage.jobs[0], "/ldm3d/error")  # the fallback failed once: pre-generation tries it again, first
    stage.tick()
    stage.desk.pregen(CLIENT)
    stage.tick()
    assert [j.request.prompt for j in stage.jobs] == ["a glacier", "a glacier"]  # type: ignore[union-attr]


def test_a_cue_that_needs_a_render_pushes_pregeneration_aside(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0])
    stage.desk.pregen(CLIENT)
    stage.tick()
    background = stage.jobs[-1]
    stage.idle = False  # the worker renders it
    stage.desk.cue("3", CLIENT)
    assert background.cancel.cancelled and not stage.jobs[-1].quiet


def test_a_live_cue_with_an_idle_worker_leaves_pregeneration_alone(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0])
    stage.desk.pregen(CLIENT)
    stage.tick()
    background = stage.jobs[-1]
    stage.desk.cue("3", CLIENT)
    assert not background.cancel.cancelled


def test_a_cue_whose_scene_pregeneration_is_making_is_made_live(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0])
    stage.desk.pregen(CLIENT)
    stage.tick()
    background = stage.jobs[-1]
    assert background.scene_key == stage.key("1")
    stage.desk.cue("1", CLIENT)
    live = stage.jobs[-1]
    assert background.cancel.cancelled and live.scene_key == stage.key("1") and not live.quiet
    stage.finish(background, "/ldm3d/cancelled")
    stage.tick()  # pre-generation goes on with the next, not this one (it renders live)
    assert stage.jobs[-1].scene_key == stage.key("2")


def test_yielding_steps_the_newest_pregeneration_job_aside(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0])
    stage.desk.pregen(CLIENT)
    stage.tick()
    stage.tick()
    stage.desk.yield_to_live()
    assert [j.cancel.cancelled for j in stage.jobs[1:]] == [False, True]
    stage.desk.yield_to_live()
    assert [j.cancel.cancelled for j in stage.jobs[1:]] == [True, True]


def test_pregeneration_goes_on_past_a_failure_and_reports_it_at_the_end(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.desk.pregen(CLIENT)
    stage.tick()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    stage.tick()
    stage.finish(stage.jobs[-1])
    stage.tick()
    stage.finish(stage.jobs[-1])
    assert [j.request.prompt for j in stage.jobs] == ["a desert", "a forest", "a glacier"]  # type: ignore[union-attr]
    assert stage.heard.of("/ldm3d/warning") == []
    stage.tick()
    (warning,) = stage.heard.of("/ldm3d/warning")
    assert warning[:2] == ("", "scenes_failed") and "cues a could not" in warning[2]
    assert stage.desk.scenes.pregen_on is False
    stage.tick()
    assert len(stage.jobs) == 3 and len(stage.heard.of("/ldm3d/warning")) == 1


def test_pregeneration_that_made_everything_ends_quietly(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.desk.pregen(CLIENT)
    for _ in range(3):
        stage.tick()
        stage.finish(stage.jobs[-1])
    stage.tick()
    assert stage.desk.scenes.pregen_on is False and stage.heard.of("/ldm3d/warning") == []
    assert stage.state()[4:6] == (3, 3)


def test_a_fallback_that_stepped_aside_is_queued_again_in_idle_time(stage: Stage) -> None:
    stage.load(fire=False)
    fallback = stage.jobs[0]
    stage.finish(fallback, "/ldm3d/cancelled")  # a live job took its worker
    stage.idle = False
    stage.tick()
    assert len(stage.jobs) == 1
    stage.idle = True
    stage.tick()
    assert len(stage.jobs) == 2 and stage.jobs[1].scene_key == fallback.scene_key and stage.jobs[1].quiet


def test_a_fallback_that_failed_is_not_queued_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0], "/ldm3d/error")
    stage.tick()
    stage.tick()
    assert len(stage.jobs) == 1


# -- which world a failed cue shows ----------------------------------------------------


def test_a_failed_cue_shows_the_fallback(stage: Stage) -> None:
    stage.load()
    stage.finish(stage.jobs[0])
    fallback = stage.worlds()[-1]
    stage.desk.cue("3", CLIENT)
    stage.heard.sent.clear()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.worlds() == [fallback] and stage.state()[1:3] == ("3", "failed")


def test_a_failed_cue_without_a_fallback_keeps_the_world_on_screen(stage: Stage) -> None:
    stage.load(PLAIN)
    stage.finish(stage.jobs[0])
    stage.desk.cue("b", CLIENT)
    stage.heard.sent.clear()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.worlds() == [] and stage.state()[2] == "failed"


def test_a_first_cue_failing_on_a_new_dome_shows_the_built_in_world(stage: Stage) -> None:
    stage.load(PLAIN)
    stage.finish(stage.jobs[0], "/ldm3d/error")
    assert stage.worlds() == [BUILTIN_ID]


def test_a_first_cue_failing_after_a_restart_shows_the_newest_job_when_no_world_was_saved(stage: Stage) -> None:
    job = stage.writer.write("20261207-110000-000-0001", builtin_result(8, 4))
    stage.load(PLAIN)
    stage.finish(stage.jobs[0], "/ldm3d/error")
    assert stage.worlds() == [job.job_id]


def test_a_fallback_that_is_not_rendered_leaves_a_failure_on_the_world_it_had(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("3")
    stage.desk.cue("3", CLIENT)
    stage.desk.cue("1", CLIENT)
    stage.heard.sent.clear()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.worlds() == []


def test_a_cue_failing_again_and_again_is_skipped(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(show_skip_after=2)
    stage.load(PLAIN, fire=False)
    stage.made("a", "c")
    for times in (1, 2):
        stage.desk.cue("b", CLIENT)
        stage.finish(stage.jobs[-1], "/ldm3d/error")
        assert stage.desk.skipped() == (["b"] if times == 2 else [])
    assert stage.state()[8] == 1 and [c["skipped"] for c in stage.desk.cues()] == [False, True, False]
    stage.desk.cue("a", CLIENT)
    assert stage.state()[3] == "c"  # GO passes over it


def test_a_success_clears_a_cues_failures(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(show_skip_after=2)
    stage.load(PLAIN, fire=False)
    stage.desk.cue("b", CLIENT)
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    stage.desk.cue("b", CLIENT)
    stage.finish(stage.jobs[-1])
    stage.engine = Engine("model-2")  # its scene is to be made again
    stage.tick()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.desk.skipped() == [] and stage.state()[2] == "failed"


def test_a_job_that_ends_after_the_show_moved_on_changes_nothing(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("3", CLIENT)
    job = stage.jobs[-1]
    stage.desk.cue("1", CLIENT)
    stage.finish(job, "/ldm3d/error")
    assert stage.state()[1:3] == ("1", "shown") and stage.desk.skipped() == []


# -- GO, back, goto, standby, pause ------------------------------------------------------


def test_go_fires_the_standby_and_the_next_stands_by(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("0", "1", "3")
    stage.desk.go(CLIENT)
    assert stage.state()[1:4] == ("0", "shown", "1")
    stage.desk.go(CLIENT)
    assert stage.state()[1:4] == ("1", "shown", "2")


def test_standby_moves_without_firing(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("0", "3")
    stage.desk.go(CLIENT)
    sent = len(stage.worlds())
    stage.desk.set_standby("3", CLIENT)
    assert stage.state()[1:4] == ("0", "shown", "3") and len(stage.worlds()) == sent
    assert stage.library.load_state()["standby"] == "3"
    assert stage.heard.of("/ldm3d/show/state")[-1][3] == "3"
    stage.desk.go(CLIENT)
    assert stage.state()[1:4] == ("3", "shown", "")


def test_go_past_the_last_cue_says_nothing_stands_by(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("3")
    stage.desk.cue("3", CLIENT)
    with pytest.raises(UnknownCue, match="cue '3' is the last of 'Harbour': nothing stands by"):
        stage.desk.go(CLIENT)


def test_go_with_nothing_fired_and_nothing_standing_by_names_the_first_cue(stage: Stage) -> None:
    stage.load(fire=False)
    stage.desk.standby = None
    with pytest.raises(UnknownCue, match="cue '0' is the last"):
        stage.desk.go(CLIENT)


def test_back_fires_the_cue_before_and_not_before_the_first(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("a", "b", "c")
    stage.desk.cue("c", CLIENT)
    stage.desk.go(CLIENT, -1)
    assert stage.state()[1:4] == ("b", "shown", "c")
    stage.desk.go(CLIENT, -1)
    with pytest.raises(UnknownCue, match="cue 'a' is the first of 'Plain'"):
        stage.desk.go(CLIENT, -1)


def test_back_with_nothing_fired_is_refused(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    with pytest.raises(UnknownCue, match="cue 'a' is the first"):
        stage.desk.go(CLIENT, -1)


def test_a_goto_cue_stands_its_target_by_after_its_prewait(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("2")
    stage.desk.cue("2", CLIENT)
    assert stage.state()[1:4] == ("2", "prewait", "1") and stage.state()[9] == 10.0
    assert stage.worlds() == [] and stage.library.load_state()["cue_state"] == "prewait"
    stage.tick(9.9)
    assert stage.state()[2] == "prewait" and stage.state()[9] == 0.1
    stage.tick(0.1)
    assert stage.state()[1:4] == ("2", "shown", "1") and len(stage.worlds()) == 1
    assert stage.heard.sent[-2][0] == CLIENT  # to who fired it


def test_a_cue_fade_goes_out_before_its_world_once(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("2")
    stage.desk.cue("2", CLIENT)
    stage.tick(10)
    addresses = stage.heard.addresses()
    assert addresses.index("/ldm3d/display/fade") < addresses.index("/ldm3d/ready")
    assert stage.heard.of("/ldm3d/display/fade") == [(5.0,)] and stage.display["fade"] == 5.0
    stage.desk.cue("2", CLIENT)
    stage.tick(10)
    assert len(stage.heard.of("/ldm3d/display/fade")) == 1


def test_a_looping_show_stands_its_first_cue_by_after_its_last(stage: Stage) -> None:
    stage.load(PLAIN.replace('name = "Plain"', 'name = "Plain"\nloop = true'), fire=False)
    stage.made("c")
    stage.desk.cue("c", CLIENT)
    assert stage.state()[3] == "a" and stage.state()[6] == 1


def test_commands_without_a_show_are_refused(stage: Stage) -> None:
    commands: list[Callable[[], None]] = [
        lambda: stage.desk.go(CLIENT),
        lambda: stage.desk.cue("1", CLIENT),
        lambda: stage.desk.set_running(False, CLIENT),
        lambda: stage.desk.pregen(CLIENT),
        lambda: stage.desk.listing(CLIENT, None),
    ]
    for command in commands:
        with pytest.raises(NoShow) as refused:
            command()
        assert str(refused.value) == "no show is loaded; send /ldm3d/show/load <cue file> first"
    assert stage.state() == ("", "", "", "", 0, 0, 0, 0, 0, -1.0) and stage.desk.cues() == []


def test_an_unknown_cue_is_named_with_the_shows_cues(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    with pytest.raises(UnknownCue, match="show 'Plain' has no cue 'z'; cues: a, b, c"):
        stage.desk.cue("z", CLIENT)
    with pytest.raises(UnknownCue):
        stage.desk.set_standby("z", CLIENT)


def test_pause_freezes_the_countdown_resume_goes_on_start_begins_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.tick(30)
    stage.desk.set_running(False, CLIENT)
    assert stage.state()[7] == 0 and stage.library.load_state()["running"] is False
    stage.tick(500)
    assert stage.state()[1] == "1" and stage.state()[9] == 70.0
    stage.desk.set_running(True, CLIENT)
    assert stage.heard.of("/ldm3d/show/state")[-1][7] == 1
    stage.tick(20)
    assert stage.state()[9] == 50.0
    stage.desk.set_running(True, CLIENT, restart=True)
    assert stage.state()[9] == 100.0
    stage.tick(20)
    assert stage.state()[9] == 80.0


def test_a_cue_fired_while_paused_waits_with_its_whole_duration(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.set_running(False, CLIENT)
    stage.desk.cue("1", CLIENT)
    stage.tick(500)
    assert stage.state()[1] == "1" and stage.state()[9] == 100.0


# -- what the clients see --------------------------------------------------------------


def test_the_cue_list_says_which_cues_are_rendered(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("b")
    stage.desk.listing(CLIENT, 600)
    (sent,) = stage.heard.lists
    assert sent == (
        CLIENT,
        [("/ldm3d/cue/info", ("a", "a", 0)), ("/ldm3d/cue/info", ("b", "b", 1)), ("/ldm3d/cue/info", ("c", "c", 0))],
        ("/ldm3d/cue/end", (3,)),
        600,
        "cues",
    )


def test_the_cue_list_before_any_model_says_none_is_rendered(stage: Stage) -> None:
    stage.engine = None
    stage.load(PLAIN, fire=False)
    stage.desk.listing(CLIENT, None)
    assert [item[1][2] for item in stage.heard.lists[0][1]] == [0, 0, 0]


def test_the_state_counts_the_rendered_scenes_of_the_show(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1", "3")
    assert stage.state()[4:8] == (2, 4, 0, 1)
    stage.engine = None
    other = stage.new_desk()
    assert other.state_args()[4:6] == (0, 0)


def test_the_cue_rows_say_current_standby_and_rendered(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("a")
    stage.desk.cue("a", CLIENT)
    assert stage.desk.cues() == [
        {"number": "a", "name": "a", "rendered": True, "current": True, "standby": False, "skipped": False},
        {"number": "b", "name": "b", "rendered": False, "current": False, "standby": True, "skipped": False},
        {"number": "c", "name": "c", "rendered": False, "current": False, "standby": False, "skipped": False},
    ]


def test_the_state_and_rows_answer_while_the_library_is_locked(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("a")
    stage.desk.scenes.use()  # forget what was looked up
    stage.library.busy = True
    assert stage.state()[4:6] == (0, 3) and [c["rendered"] for c in stage.desk.cues()] == [False] * 3


# -- restarts ------------------------------------------------------------------------------


def test_a_restart_recalls_the_cue_before_the_model_with_its_remaining_time(stage: Stage) -> None:
    stage.load(fire=False)
    (scene,) = stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.desk.set_standby("3", CLIENT)
    stage.tick(40)
    stage.desk.close()
    stage.engine = None
    stage.heard.sent.clear()
    stage.desk = stage.new_desk()
    stage.tick()
    assert stage.worlds() == [scene.job_id]
    assert stage.state()[:4] == ("Harbour", "1", "shown", "3") and stage.state()[9] == 60.0
    assert stage.heard.of("/ldm3d/show/state")[0][3] == "3" and stage.state()[7] == 1
    stage.tick(10)
    assert stage.worlds() == [scene.job_id] and stage.state()[9] == 50.0  # resumed once


def test_a_restart_of_a_paused_show_stays_paused(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.desk.set_running(False, CLIENT)
    stage.desk = stage.new_desk()
    stage.tick(300)
    assert stage.state()[7] == 0 and stage.state()[9] == 100.0


def test_a_restart_during_a_prewait_waits_it_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.desk.cue("2", CLIENT)
    stage.desk.set_standby("3", CLIENT)
    stage.desk = stage.new_desk()
    stage.heard.sent.clear()
    stage.tick(3)
    assert stage.state()[1:4] == ("2", "prewait", "3") and stage.state()[9] == 10.0
    # every state told after the restart names the saved standby (not cue 2's goto, "1"), as does the file
    assert {args[3] for args in stage.heard.of("/ldm3d/show/state")} == {"3"}
    assert stage.desk.library.load_state()["standby"] == "3"


def test_a_restart_while_a_cue_rendered_shows_the_last_world_meanwhile(stage: Stage) -> None:
    stage.load(fire=False)
    (scene,) = stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.desk.cue("3", CLIENT)
    stage.desk = stage.new_desk()
    stage.heard.sent.clear()
    stage.tick()
    assert stage.worlds() == [scene.job_id] and stage.state()[1:3] == ("3", "rendering")


def test_a_restart_with_nothing_saved_starts_the_configured_show_at_its_fallback(
    make_stage: Callable[..., Stage], tmp_path: Path
) -> None:
    (tmp_path / "mine.toml").write_text(SHOW)
    stage = make_stage(show=str(tmp_path / "mine.toml"))
    stage.tick()
    assert stage.state()[:4] == ("Harbour", "0", "rendering", "1") and stage.state()[7] == 1


def test_a_restart_resumes_the_saved_show_rather_than_the_configured_one(
    make_stage: Callable[..., Stage], tmp_path: Path
) -> None:
    (tmp_path / "mine.toml").write_text(SHOW)
    stage = make_stage(show=str(tmp_path / "mine.toml"))
    stage.load(PLAIN, fire=False)
    stage.desk = stage.new_desk()
    stage.tick()
    assert stage.state()[0] == "Plain"


def test_a_restart_with_nothing_saved_and_no_show_set_stays_empty(stage: Stage) -> None:
    stage.tick()
    assert stage.desk.show is None and stage.heard.sent == []


def test_a_restart_whose_saved_show_is_gone_starts_empty(stage: Stage) -> None:
    stage.load(fire=False)
    (stage.shows / "show.toml").unlink()
    stage.desk = stage.new_desk()
    stage.tick()
    assert stage.desk.show is None


def test_a_restart_whose_saved_cue_is_gone_starts_the_show_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("3")
    stage.desk.cue("3", CLIENT)
    stage.write(SHOW.replace('number = "3"', 'number = "4"'))
    stage.desk = stage.new_desk()
    stage.tick()
    assert stage.state()[1:4] == ("0", "rendering", "1")


def test_a_load_after_a_restart_is_not_undone_by_the_saved_show(stage: Stage) -> None:
    stage.load(fire=False)
    stage.desk = stage.new_desk()
    stage.load(PLAIN, fire=False, name="plain.toml")
    stage.tick()
    assert stage.state()[0] == "Plain"


def test_a_restart_in_a_locked_library_resumes_once_it_is_free(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.desk = stage.new_desk()
    stage.library.busy = True
    stage.tick()
    assert stage.desk.show is None
    stage.library.busy = False
    stage.tick()
    assert stage.state()[1:3] == ("1", "shown")


def test_another_model_fires_the_current_cue_again_with_its_own_scene(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("b")
    stage.desk.cue("b", CLIENT)
    stage.engine = Engine("model-2")
    stage.tick()
    assert stage.state()[1:3] == ("b", "rendering") and stage.jobs[-1].scene_key == stage.key("b")
    stage.tick()
    assert len(stage.jobs) == 1  # once
    stage.finish(stage.jobs[0])
    stage.tick()
    assert len(stage.worlds()) == 2  # the first scene, then the new one (by its job): not sent again


# -- loading the same file again ---------------------------------------------------------


def test_loading_the_same_file_again_keeps_the_place_and_the_countdown(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.desk.set_standby("3", CLIENT)
    stage.tick(30)
    sent = len(stage.worlds())
    stage.load(SHOW.replace("duration = 100", "duration = 200"))
    assert stage.state()[1:4] == ("1", "shown", "3") and stage.state()[9] == 170.0
    assert len(stage.worlds()) == sent


def test_loading_the_same_file_with_the_cue_changed_fires_it_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.load(SHOW.replace('"a reef"', '"a coral reef"'))
    assert stage.state()[1:4] == ("1", "rendering", "2") and stage.jobs[-1].request.prompt == "a coral reef"  # type: ignore[union-attr]


def test_loading_the_same_file_whose_standby_went_stands_the_next_by(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.desk.set_standby("3", CLIENT)
    stage.load(SHOW.replace('number = "3"', 'number = "4"'))
    assert stage.state()[1:4] == ("1", "shown", "2")


def test_loading_the_same_file_without_the_current_cue_starts_it_again(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("3")
    stage.desk.cue("3", CLIENT)
    stage.load(SHOW.replace('number = "3"', 'number = "4"'))
    assert stage.state()[1:3] == ("0", "rendering")


# -- a locked library ----------------------------------------------------------------------


def test_a_cue_fired_into_a_locked_library_leaves_the_playhead_where_it_was(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("0")
    stage.desk.go(CLIENT)
    stage.library.busy = True
    with pytest.raises(LibraryBusy):
        stage.desk.cue("3", CLIENT)
    stage.library.busy = False
    assert stage.state()[1:4] == ("0", "shown", "1")


def test_a_show_loaded_into_a_locked_library_stands_its_first_cue_by(stage: Stage) -> None:
    stage.library.busy = True
    with pytest.raises(LibraryBusy):
        stage.load()
    assert stage.heard.of("/ldm3d/show/state")[-1][:4] == ("Harbour", "", "", "0")
    assert stage.heard.sent[-1][0] == CLIENT


def test_a_place_a_locked_library_could_not_take_is_saved_at_the_next_free_tick(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("3")
    stage.library.busy = True
    stage.desk.set_standby("3", CLIENT)
    stage.tick()
    stage.library.busy = False
    assert stage.library.load_state()["standby"] == "0"
    stage.tick()
    assert stage.library.load_state()["standby"] == "3"
    stage.desk.set_standby("2", CLIENT)
    stage.tick()
    assert stage.library.load_state()["standby"] == "2"


def test_a_reload_into_a_locked_library_keeps_the_show_as_it_was(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.library.busy = True
    with pytest.raises(LibraryBusy):
        stage.load(SHOW.replace('"a reef"', '"a coral reef"'))
    stage.library.busy = False
    assert stage.desk.show is not None and stage.desk.show.cues[1].params["prompt"] == "a reef"
    assert stage.state()[1:3] == ("1", "shown")


# -- the world's objects and morphs ---------------------------------------------------------


OBJECT_SHOW = PLAIN.replace("seed = 1\nsteps = 1\n", 'seed = 1\nsteps = 1\nobject = "a lantern"\nobject_yaw = 30\n', 1)


def test_a_cue_object_follows_its_world_and_a_world_without_one_clears_it(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(object_model="tiny-shap-e")
    stage.load(OBJECT_SHOW, fire=False)
    (scene,) = stage.made("a", with_object=True)
    stage.made("b")
    stage.desk.cue("a", CLIENT)
    (ready,) = stage.heard.of("/ldm3d/object/ready")
    assert ready[0] == scene.job_id and ready[1].endswith("mesh.obj") and ready[3] == 30.0
    assert stage.heard.addresses()[-2:] == ["/ldm3d/object/ready", "/ldm3d/show/state"]
    stage.desk.cue("b", CLIENT)
    stage.desk.cue("b", CLIENT)
    assert len(stage.heard.of("/ldm3d/object/clear")) == 1


def test_a_rendered_cue_object_is_placed_once_its_job_ends(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(object_model="tiny-shap-e")
    stage.load(OBJECT_SHOW)
    job = stage.jobs[0]
    assert job.object_after is not None and job.placement is not None and job.placement.yaw == 30.0
    stage.finish(job, with_object=True)
    assert stage.heard.of("/ldm3d/object/ready")[0][3] == 30.0


def test_a_morph_scene_plays_its_frames_before_its_world(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    (scene,) = stage.made("a")
    folder = stage.writer.root / MORPHS_FOLDER / scene.job_id
    folder.mkdir(parents=True)
    frames = [{"index": i, "t": i / 2, "rgb": f"r{i}", "depth": f"d{i}"} for i in (2, 0, 1)]
    (folder / "morph.json").write_text(json.dumps({"complete": True, "seconds": 4.0, "written": frames}))
    stage.heard.sent.clear()
    stage.desk.cue("a", CLIENT)
    played = stage.heard.of("/ldm3d/morph/frame")
    assert played == [(scene.job_id, i, 3, 4.0, f"r{i}", f"d{i}") for i in (0, 1, 2)]
    assert stage.heard.addresses().index("/ldm3d/ready") == 3


def test_a_morph_cue_renders_from_the_cue_before_over_its_fade() -> None:
    from bridge.show.reading import parse_show

    show = parse_show(PLAIN.replace("seed = 2\n", "seed = 2\nmorph = true\nfade = 6\n"))
    request = scene_request(show.cues[1])
    assert isinstance(request, MorphRequest)
    assert (request.first.prompt, request.second.prompt, request.seconds) == ("a desert", "a forest", 6.0)
    assert request.from_job == "cue a"
    assert scene_request(show.cues[0]).prompt == "a desert"  # type: ignore[union-attr]


def test_a_morphs_frames_and_a_cue_objects_place_go_to_who_fired_it(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(object_model="tiny-shap-e")
    stage.load(OBJECT_SHOW, fire=False)
    (scene,) = stage.made("a", with_object=True)
    folder = stage.writer.root / MORPHS_FOLDER / scene.job_id
    folder.mkdir(parents=True)
    frames = [{"index": 0, "t": 0, "rgb": "r", "depth": "d"}]
    (folder / "morph.json").write_text(json.dumps({"complete": True, "seconds": 4.0, "written": frames}))
    stage.heard.sent.clear()
    stage.desk.cue("a", CLIENT)
    assert [to for to, _, _ in stage.heard.sent] == [CLIENT] * 4  # frame, world, object, state


def test_a_scene_holding_an_object_shows_none_for_a_cue_without_one(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("b", with_object=True)
    stage.desk.cue("b", CLIENT)
    assert stage.heard.of("/ldm3d/object/ready") == [] and stage.state()[2] == "shown"


def test_a_failed_cue_shows_the_fallbacks_object_and_says_so(
    make_stage: Callable[..., Stage], caplog: pytest.LogCaptureFixture
) -> None:
    stage = make_stage(object_model="tiny-shap-e")
    stage.load(OBJECT_SHOW.replace('name = "Plain"', 'name = "Plain"\nfallback = "a"'))
    stage.finish(stage.jobs[0], with_object=True)
    stage.desk.cue("c", CLIENT)
    stage.heard.sent.clear()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert [args[3] for args in stage.heard.of("/ldm3d/object/ready")] == [30.0]
    assert "cue c failed; showing the fallback cue a" in caplog.messages


def test_a_failure_on_a_new_dome_names_the_world_it_shows(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    stage.load(PLAIN)
    stage.finish(stage.jobs[0], "/ldm3d/error")
    assert caplog.messages[-1] == f"cue a failed; showing world {BUILTIN_ID}"


def test_a_cue_failing_while_the_library_is_locked_shows_what_it_would_without_a_fallback(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("0")
    stage.desk.cue("3", CLIENT)
    stage.library.busy = True
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.worlds() == [BUILTIN_ID] and stage.state()[2] == "failed"


def test_a_cue_asked_for_before_the_model_waits_for_it_even_when_its_key_is_remembered(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("a")
    stage.desk.cue("a", CLIENT)
    stage.engine = None
    stage.desk = stage.new_desk()
    stage.tick()
    stage.desk.cue("b", CLIENT)
    assert stage.state()[1:3] == ("b", "rendering") and stage.jobs == []


def test_a_fallback_fired_live_is_not_reported_missing(stage: Stage) -> None:
    stage.load()
    assert stage.heard.of("/ldm3d/warning") == [] and len(stage.jobs) == 1


def test_a_live_cue_with_no_idle_worker_and_nothing_to_push_aside_is_queued(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.idle = False
    stage.desk.cue("b", CLIENT)
    assert [j.request.prompt for j in stage.jobs] == ["a forest"]  # type: ignore[union-attr]


def test_a_cue_to_be_upscaled_is_rendered_with_the_upscale_after(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(upscale_model="ldm3d-sr")
    stage.load(PLAIN.replace("seed = 2\n", "seed = 2\nupscale = true\n"))
    stage.desk.cue("b", CLIENT)
    assert [j.upscale_after for j in stage.jobs] == [False, True]


def test_pregeneration_asked_for_before_the_model_starts_once_it_is_here(stage: Stage) -> None:
    stage.engine = None
    stage.load(PLAIN, fire=False)
    stage.desk.pregen(CLIENT)
    stage.tick()
    assert stage.jobs == []
    stage.engine = Engine()
    stage.tick()
    assert [j.request.prompt for j in stage.jobs] == ["a desert"]  # type: ignore[union-attr]


def test_pregeneration_goes_on_while_the_fallback_renders_quietly(stage: Stage) -> None:
    stage.load(fire=False)
    stage.desk.pregen(CLIENT)
    stage.tick()
    assert [j.scene_key for j in stage.jobs] == [stage.key("0"), stage.key("1")]


def test_pregeneration_is_not_done_while_its_last_scene_renders_live(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("a", "b")
    stage.desk.cue("c", CLIENT)
    stage.desk.pregen(CLIENT)
    stage.tick()
    assert stage.desk.scenes.pregen_on is True and len(stage.jobs) == 1
    stage.finish(stage.jobs[0])
    stage.tick()
    assert stage.desk.scenes.pregen_on is False


def test_pregeneration_logs_each_failure_and_what_it_made(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.serve.scenes")
    stage.load(PLAIN, fire=False)
    stage.desk.pregen(CLIENT)
    for address in ("/ldm3d/error", "/ldm3d/ready", "/ldm3d/error"):
        stage.tick()
        stage.finish(stage.jobs[-1], address)
    stage.tick()
    assert caplog.messages[-3:] == [
        "pre-generation: cue c failed; going on with the others",
        "pre-generation of 'Plain' done: 1 of 3 scenes",
        "pre-generation of 'Plain': cues a, c could not be rendered",
    ]
    (warning,) = stage.heard.of("/ldm3d/warning")
    assert warning[2] == (
        "pre-generation of 'Plain' is done but cues a, c could not be rendered (their errors went to the log); "
        "showing them tries again"
    )


def test_a_quiet_fallback_without_pregeneration_reports_no_progress(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0])
    assert stage.heard.of("/ldm3d/show/progress") == []


def test_a_morph_cue_without_a_fade_morphs_over_the_default_seconds() -> None:
    from bridge.show.reading import parse_show

    show = parse_show(PLAIN.replace("seed = 2\n", "seed = 2\nmorph = true\n"))
    request = scene_request(show.cues[1])
    assert isinstance(request, MorphRequest) and request.seconds == 4.0


def test_load_fires_unless_told_not_to(stage: Stage) -> None:
    stage.desk.load(stage.write(PLAIN), CLIENT)
    assert stage.state()[1:3] == ("a", "rendering")


@pytest.mark.parametrize(
    "command",
    [
        lambda desk: desk.set_standby("3", CLIENT),
        lambda desk: desk.set_running(False, CLIENT),
        lambda desk: desk.set_running(True, CLIENT, restart=True),
        lambda desk: desk.pregen(CLIENT),
        lambda desk: desk.cue("2", CLIENT),  # its pre-wait
        lambda desk: desk.cue("1", CLIENT),  # its world
        lambda desk: desk.load("show.toml", CLIENT),  # the same file: its place kept
    ],
)
def test_what_a_command_changes_is_told_to_who_sent_it(stage: Stage, command: Callable[[ShowDesk], None]) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.heard.sent.clear()
    command(stage.desk)
    assert stage.heard.sent and {to for to, _, _ in stage.heard.sent} == {CLIENT}


def test_a_cues_fade_and_the_edited_cues_world_go_to_who_sent_them(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("2")
    stage.desk.cue("2", CLIENT)
    stage.heard.sent.clear()
    stage.tick(10)
    assert [to for to, a, _ in stage.heard.sent if a == "/ldm3d/display/fade"] == [CLIENT]
    stage.load(SHOW.replace('"a kelp forest"', '"a kelp meadow"'))  # fired again, and its fallback asked for
    assert [to for to, a, _ in stage.heard.sent[-3:]] == [CLIENT, CLIENT, CLIENT]
    assert stage.jobs[-1].sender == CLIENT


def test_a_prewait_under_a_second_is_waited(stage: Stage) -> None:
    stage.load(PLAIN.replace("seed = 2\n", "seed = 2\nprewait = 0.5\n"), fire=False)
    stage.desk.cue("b", CLIENT)
    assert stage.state()[2] == "prewait" and stage.state()[9] == 0.5


def test_a_morph_plays_over_the_cues_fade(stage: Stage) -> None:
    stage.load(PLAIN.replace("seed = 1\n", "seed = 1\nfade = 2\n"), fire=False)
    (scene,) = stage.made("a")
    folder = stage.writer.root / MORPHS_FOLDER / scene.job_id
    folder.mkdir(parents=True)
    frames = [{"index": 0, "t": 0, "rgb": "r", "depth": "d"}]
    (folder / "morph.json").write_text(json.dumps({"complete": True, "seconds": 4.0, "written": frames}))
    stage.desk.cue("a", CLIENT)
    assert stage.heard.of("/ldm3d/morph/frame") == [(scene.job_id, 0, 1, 2.0, "r", "d")]


def test_a_cue_fired_before_the_model_shows_the_rendered_fallback_meanwhile(stage: Stage) -> None:
    stage.load(fire=False)
    (fallback,) = stage.made("0")
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.engine = None
    stage.desk = stage.new_desk()
    stage.tick()
    stage.heard.sent.clear()
    stage.desk.cue("3", CLIENT)
    assert stage.worlds() == [fallback.job_id] and stage.state()[2] == "rendering"


def test_a_restart_while_a_cue_renders_shows_the_rendered_fallback(stage: Stage) -> None:
    stage.load(fire=False)
    (fallback,) = stage.made("0")
    stage.desk.cue("3", CLIENT)
    stage.desk = stage.new_desk()
    stage.heard.sent.clear()
    stage.tick()
    assert stage.worlds()[-1] == fallback.job_id


def test_the_model_coming_while_the_library_is_locked_fires_the_waiting_cue_once_it_is_free(stage: Stage) -> None:
    stage.engine = None
    stage.load(PLAIN)
    stage.engine = Engine()
    stage.library.busy = True
    stage.tick()
    assert stage.jobs == []
    stage.library.busy = False
    stage.tick()
    assert [j.sender for j in stage.jobs] == [CLIENT]


def test_a_cue_fired_once_the_model_came_is_shown_once(stage: Stage) -> None:
    stage.engine = None
    stage.load(PLAIN)
    stage.engine = Engine()
    stage.tick()
    stage.finish(stage.jobs[0])
    stage.tick()
    stage.tick()
    assert len(stage.worlds()) == 2  # the built-in world meanwhile, then the scene (its job's /ldm3d/ready)


def test_a_fallback_is_looked_for_once_the_model_is_here(stage: Stage) -> None:
    stage.engine = None
    stage.load(PLAIN.replace('name = "Plain"', 'name = "Plain"\nfallback = "c"'), fire=False)
    stage.engine = Engine()
    stage.desk.cue("a", CLIENT)
    stage.tick()
    assert [j.request.prompt for j in stage.jobs] == ["a desert", "a glacier"]  # type: ignore[union-attr]
    assert stage.heard.of("/ldm3d/warning")[0][1] == "fallback_not_rendered"


def test_a_job_that_ends_after_a_load_without_firing_changes_nothing(stage: Stage) -> None:
    stage.load()
    job = stage.jobs[0]
    stage.load(PLAIN, fire=False, name="plain.toml")
    stage.finish(job, "/ldm3d/error")
    assert stage.state()[1:4] == ("", "", "a")


def test_a_scene_whose_library_is_locked_once_written_still_shows(stage: Stage) -> None:
    stage.load(PLAIN)
    stage.finish(stage.jobs[0], lock=True)
    assert stage.state()[1:3] == ("a", "shown")


def test_a_restart_shows_the_last_world_a_live_job_made(stage: Stage) -> None:
    stage.load(PLAIN)
    stage.finish(stage.jobs[0])
    stage.desk.cue("b", CLIENT)
    stage.finish(stage.jobs[-1])
    made = stage.worlds()[-1]
    stage.desk.cue("c", CLIENT)
    stage.desk = stage.new_desk()
    stage.heard.sent.clear()
    stage.tick()
    assert stage.worlds() == [made]


def test_a_show_loaded_before_the_first_tick_after_a_restart_still_holds_the_last_world(stage: Stage) -> None:
    """The monitor ticks 0.1 s after a start: a show loaded before that replaces the saved one, but the
    world the dome last had is still what a first failing cue holds (not the folder's newest job)."""
    stage.load(PLAIN)
    stage.finish(stage.jobs[0])
    shown = stage.worlds()[-1]
    stage.writer.write("20261207-235900-000-0009", builtin_result(8, 4))  # newer, never on the dome
    stage.desk = stage.new_desk()
    stage.load(SHOW)  # before any tick
    stage.heard.sent.clear()
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert stage.worlds() == [shown]


def test_a_show_loaded_into_a_locked_library_before_the_first_tick_says_what_a_failing_cue_holds(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    stage.desk = stage.new_desk()
    stage.library.busy = True
    with pytest.raises(LibraryBusy):
        stage.load(PLAIN)
    assert "the scene library is locked: a first failing cue holds the newest job" in caplog.messages


def test_a_cue_failing_too_often_is_logged_once(
    make_stage: Callable[..., Stage], caplog: pytest.LogCaptureFixture
) -> None:
    stage = make_stage(show_skip_after=2)
    stage.load(PLAIN)
    for _ in range(3):
        stage.desk.cue("a", CLIENT)
        stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert [m for m in caplog.messages if "in a row" in m] == [
        "cue a failed 2 times in a row: GO and auto-follow skip it until the show is loaded again"
    ]


def test_loading_the_same_file_on_its_last_cue_keeps_nothing_standing_by(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("3")
    stage.desk.cue("3", CLIENT)
    stage.load()
    assert stage.state()[1:4] == ("3", "shown", "")


def test_loading_the_same_file_before_any_model_fires_it_again(stage: Stage) -> None:
    stage.engine = None
    stage.load(PLAIN)
    stage.load(PLAIN)
    assert stage.state()[1:3] == ("a", "rendering")


def test_show_loads_and_resumes_are_logged(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bridge.serve.shows")
    stage.load(PLAIN, fire=False)
    stage.desk.cue("b", CLIENT)
    stage.load(PLAIN)
    stage.desk = stage.new_desk()
    stage.tick()
    source = stage.shows / "show.toml"
    assert [r.getMessage() for r in caplog.records if r.name == "bridge.serve.shows"] == [
        f"show 'Plain' loaded from {source}: 3 cues",
        f"show 'Plain' loaded again from {source}: 3 cues; still at cue b",
        "resuming show 'Plain' at cue b",
    ]


def test_a_saved_show_that_no_longer_reads_is_logged(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    stage.load(fire=False)
    stage.write("name = 1\n")
    stage.desk = stage.new_desk()
    stage.tick()
    assert (
        caplog.messages[-1].startswith("the saved show could not be loaded again: ") and "name" in caplog.messages[-1]
    )


def test_back_passes_over_a_skipped_cue(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(show_skip_after=1)
    stage.load(PLAIN, fire=False)
    stage.made("a", "c")
    stage.desk.cue("b", CLIENT)
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    stage.desk.cue("c", CLIENT)
    stage.desk.go(CLIENT, -1)
    assert stage.state()[1] == "a"


def test_the_cue_list_after_another_model_came_names_none_rendered(stage: Stage) -> None:
    stage.load(PLAIN, fire=False)
    stage.made("a")
    stage.engine = Engine("model-2")
    stage.desk.listing(CLIENT, None)
    assert [item[1][2] for item in stage.heard.lists[0][1]] == [0, 0, 0]


def test_closing_saves_the_countdown(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.tick(3)
    stage.desk.close()
    stage.desk = stage.new_desk()
    stage.tick()
    assert stage.state()[9] == 97.0


def test_a_locked_library_is_logged_once_while_it_stays_locked(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    stage.library.busy = True
    for _ in range(3):
        stage.tick()
    assert caplog.messages == ["the show's clock retries at each tick: the scene library is locked by another process"]
    stage.library.busy = False
    stage.load(fire=False)
    stage.library.busy = True
    stage.desk.set_standby("3", CLIENT)
    assert len(caplog.messages) == 1  # the same lock: not logged again within 10 s


def test_a_library_that_fails_otherwise_is_logged_once(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    stage.library.broken = True
    for _ in range(3):
        stage.tick()
    assert caplog.messages == ["the scene library: disk I/O error"]


def test_scene_rows_a_locked_library_kept_are_written_once_it_is_free(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge.serve.shows")
    stage.load(PLAIN)
    stage.library.busy = True
    stage.finish(stage.jobs[0], lock=True)
    stage.library.busy = False
    stage.tick()
    assert stage.library.pending == 0 and caplog.messages[-1] == "the scene library is free again: 1 scenes recorded"


def test_a_failure_with_an_unrendered_fallback_names_the_world_it_shows(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    stage.load(fire=False)
    stage.desk.cue("3", CLIENT)
    stage.finish(stage.jobs[-1], "/ldm3d/error")
    assert caplog.messages[-1] == f"cue 3 failed; showing world {BUILTIN_ID}"


def test_a_library_failing_at_every_tick_is_logged_once(stage: Stage, caplog: pytest.LogCaptureFixture) -> None:
    stage.load(PLAIN)
    stage.library.busy = True
    stage.finish(stage.jobs[0])  # its row waits for the library
    stage.library.busy, stage.library.broken = False, True
    caplog.clear()
    for _ in range(3):
        stage.tick()
    assert caplog.messages == ["the scene library: disk I/O error"] and stage.library.pending == 1


def test_a_place_saved_late_is_saved_once(stage: Stage) -> None:
    stage.load(fire=False)
    stage.library.busy = True
    stage.desk.set_standby("3", CLIENT)
    stage.library.busy = False
    stage.tick()
    stage.tick()
    assert stage.library.load_state()["standby"] == "3"


def test_an_unrendered_fallback_on_reloading_is_told_to_who_loaded_it(stage: Stage) -> None:
    stage.load(fire=False)
    stage.finish(stage.jobs[0], "/ldm3d/error")
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.heard.sent.clear()
    stage.load()
    assert [to for to, a, _ in stage.heard.sent if a == "/ldm3d/warning"] == [CLIENT]


def test_a_morph_cue_renders_its_own_number_of_frames() -> None:
    from bridge.show.reading import parse_show

    show = parse_show(PLAIN.replace("seed = 2\n", "seed = 2\nmorph = true\nmorph_frames = 5\n"))
    request = scene_request(show.cues[1])
    assert isinstance(request, MorphRequest) and request.frames == 5


def test_a_cue_objects_scene_is_made_again_for_another_object_model(
    make_stage: Callable[..., Stage], tmp_path: Path
) -> None:
    first = make_stage(object_model="tiny-shap-e")
    first.load(OBJECT_SHOW, fire=False)
    first.made("a", with_object=True)
    other = Stage(tmp_path, object_model="shap-e")
    try:
        other.load(OBJECT_SHOW)
        assert other.state()[1:3] == ("a", "rendering")
    finally:
        other.library.close()


def test_scene_jobs_have_ids_of_their_own(stage: Stage) -> None:
    from bridge.output.job_ids import JOB_ID_RE

    stage.load(fire=False)
    stage.desk.cue("3", CLIENT)
    ids = [j.id for j in stage.jobs]
    assert len(set(ids)) == 2 and all(JOB_ID_RE.match(i) for i in ids)


def test_clearing_a_cues_object_is_told_to_who_fired_the_next_cue(make_stage: Callable[..., Stage]) -> None:
    stage = make_stage(object_model="tiny-shap-e")
    stage.load(OBJECT_SHOW, fire=False)
    stage.made("a", with_object=True)
    stage.made("b")
    stage.desk.cue("a", CLIENT)
    stage.desk.cue("b", CLIENT)
    assert [to for to, a, _ in stage.heard.sent if a == "/ldm3d/object/clear"] == [CLIENT]


def test_a_show_loaded_without_firing_before_the_model_renders_its_fallback_once_the_model_is_here(
    stage: Stage,
) -> None:
    """Nothing fired (the desk stands by): the fallback is still made in idle time, before any cue
    fires, so that a first failing cue has a world to show."""
    stage.engine = None
    stage.load(PLAIN.replace('name = "Plain"', 'name = "Plain"\nfallback = "c"'), fire=False)
    stage.engine = Engine()
    stage.tick()
    assert [j.request.prompt for j in stage.jobs] == ["a glacier"]  # type: ignore[union-attr]
    assert stage.state()[1:4] == ("", "", "c") and stage.heard.of("/ldm3d/warning")[0][1] == "fallback_not_rendered"


def test_the_unrendered_fallback_warning_goes_to_who_loaded_the_show(stage: Stage) -> None:
    stage.load(fire=False)
    assert [(to, args) for to, a, args in stage.heard.sent if a == "/ldm3d/warning"] == [
        (
            CLIENT,
            (
                "",
                "fallback_not_rendered",
                "the fallback cue 0 of 'Harbour' is not rendered yet; it is being rendered now (until then a "
                "failed cue keeps the world on screen)",
            ),
        )
    ]


def test_a_fallback_that_failed_is_not_tried_again_at_each_tick(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.finish(stage.jobs[0], "/ldm3d/error")
    stage.tick()
    stage.tick()
    assert len(stage.jobs) == 1 and len(stage.heard.of("/ldm3d/warning")) == 1


def test_the_saved_countdown_keeps_hundredths(stage: Stage) -> None:
    stage.load(fire=False)
    stage.made("1")
    stage.desk.cue("1", CLIENT)
    stage.tick(3.254)
    stage.desk.close()
    assert stage.library.load_state()["elapsed"] == 3.25


def test_a_place_that_cannot_be_saved_is_logged_and_the_show_goes_on(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    stage.load(fire=False)
    stage.library.busy = True
    stage.desk.set_standby("3", CLIENT)
    stage.library.busy, stage.library.broken = False, True
    stage.desk.set_standby("2", CLIENT)
    assert caplog.messages == [
        "the show's place is saved once it is free: the scene library is locked by another process",
        "could not save the show's state: disk I/O error",
    ]
    assert stage.state()[3] == "2"
