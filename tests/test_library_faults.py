"""A scene library that is damaged or locked never takes a show, or live prompts, down (issue #30).

Damaged (not a database, a malformed image, a table of another shape): moved aside at start-up
and rebuilt from the scene folders. Locked by another process (an ``sqlite3`` shell, a backup): no
call waits more than :data:`bridge.show.library.WAIT_S` on the threads that answer pings and
pages, a show command that cannot do without the library answers ``library_busy``, the show's
clock logs it once per 10 s, and a scene rendered meanwhile is shown (its row follows).

Library-level tests first (no model), then real bridges (the tiny model) over UDP on loopback;
``tests/test_show_control.py`` has the hand-moved show clock used here."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

import bridge.show.library as library_module
from bridge.errors import LibraryBusy
from bridge.osc.client import OscClient
from bridge.osc.codec import Message
from bridge.serve.server import Bridge
from bridge.show.library import WAIT_S, SceneLibrary
from tests.show_states import HandClock, shown, state_where

Start = Callable[..., Bridge]
ClientFor = Callable[[Bridge], OscClient]

pytestmark = pytest.mark.timeout(180)  # each test takes seconds: a hang fails fast

SHOW = """\
name = "Faults"
loop = true
fallback = "0"

[[cue]]
number = "0"
prompt = "a quiet harbour"
seed = 1
steps = 1
duration = 5
continue = "follow"

[[cue]]
number = "1"
prompt = "a reef"
seed = 2
steps = 1
duration = 5
continue = "follow"

[[cue]]
number = "2"
prompt = "a kelp forest"
seed = 3
steps = 1
duration = 5
continue = "follow"
"""


@pytest.fixture
def show_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "shows"
    folder.mkdir()
    (folder / "faults.toml").write_text(SHOW)
    return folder


@pytest.fixture
def holder() -> Iterator[Callable[[Path, bool], sqlite3.Connection]]:
    """``holder(db, reads_too)``: another connection holding ``BEGIN EXCLUSIVE`` on ``db`` (as another
    process would); with ``reads_too`` in exclusive locking mode, so that readers wait too (it must
    come first: a WAL database someone has open only blocks writers). Closed at teardown."""
    held: list[sqlite3.Connection] = []

    def hold(db: Path, reads_too: bool = False) -> sqlite3.Connection:
        other = sqlite3.connect(db, isolation_level=None, timeout=0, check_same_thread=False)
        held.append(other)
        if reads_too:
            other.execute("PRAGMA locking_mode=EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        return other

    yield hold
    for other in held:
        other.close()


def _scene_folder(library: SceneLibrary, scene_id: str, key: object) -> Path:
    """A complete scene folder as the writer leaves it (``key``: its meta.json's scene_key)."""
    folder = library.folder / scene_id
    folder.mkdir(parents=True)
    Image.new("RGB", (16, 8)).save(folder / "rgb.tif")
    Image.fromarray(np.zeros((8, 16), np.uint16)).save(folder / "depth.tif")
    (folder / "meta.json").write_text(json.dumps({"scene_key": key, "width": 16, "height": 8}))
    return folder


def _aside(root: Path) -> list[Path]:
    return sorted(root.glob("scenes.sqlite.corrupt-*"))


def _moved_aside_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "moved aside" in r.getMessage()]


# -- a damaged library ---------------------------------------------------------------------


def _garbage(db: Path) -> None:
    db.write_bytes(b"these are not the bytes of a database\n" * 200)


def _wrong_table(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE scenes (id INTEGER PRIMARY KEY, path TEXT)")
        other.execute("INSERT INTO scenes (path) VALUES ('somewhere')")
    other.close()


def _malformed(db: Path) -> None:
    """Pages in the middle of the file overwritten: the header reads, the b-trees do not."""
    with db.open("r+b") as file:
        file.seek(4096 * 3)
        file.write(b"\xa5" * 4096 * 4)


@pytest.mark.parametrize("damage", [_garbage, _wrong_table, _malformed])
def test_a_damaged_library_is_moved_aside_and_rebuilt_from_the_scene_folders(
    tmp_path: Path, damage: Callable[[Path], None], caplog: pytest.LogCaptureFixture
) -> None:
    library = SceneLibrary(tmp_path)
    keys = [f"{i:064x}" for i in range(3)]
    for i, key in enumerate(keys):
        _scene_folder(library, f"20261122-100000-000-000{i}", key)
        library.add(key, f"20261122-100000-000-000{i}", str(i))
    library.save_state(show="/shows/a.toml", cue="2", running=True)
    library.close()
    db = tmp_path / "scenes.sqlite"
    with sqlite3.connect(db) as filler:  # pages enough to damage in the middle (their folders are gone)
        filler.executemany("INSERT INTO scenes VALUES (?, ?, '', '')", [(f"{i:064x}", str(i)) for i in range(3, 1500)])
    filler.close()
    damage(db)
    damaged = db.read_bytes()
    (tmp_path / "scenes.sqlite-wal").write_bytes(b"a stale log")  # moved aside with it
    library = SceneLibrary(tmp_path)
    try:
        with caplog.at_level(logging.WARNING, logger="bridge.show.library"):
            assert library.check() == (0, 3)  # every complete folder adopted
        assert library.rendered(keys) == set(keys) and len(library) == 3
        assert library.load_state() == {}  # the show's saved place is lost: it starts again
    finally:
        library.close()
    aside = _aside(tmp_path)
    assert aside[0].read_bytes() == damaged  # as it was found (its -wal and -shm beside it, if still there)
    assert all(p.name in (f"{aside[0].name}-wal", f"{aside[0].name}-shm") for p in aside[1:])
    assert not (tmp_path / "scenes.sqlite-wal").exists()  # the stale log went with it (or was read and ended)
    lines = _moved_aside_lines(caplog)
    assert len(lines) == 1 and str(db) in lines[0] and str(aside[0]) in lines[0] and "\n" not in lines[0]


def test_a_locked_library_is_not_taken_for_a_damaged_one(
    tmp_path: Path, holder: Callable[[Path, bool], sqlite3.Connection]
) -> None:
    library = SceneLibrary(tmp_path)
    library.save_state(show="/shows/a.toml")
    library.close()
    holder(tmp_path / "scenes.sqlite", True)
    started = time.monotonic()
    with pytest.raises(LibraryBusy, match=r"locked by another process \(.*scenes\.sqlite\); try again"):
        SceneLibrary(tmp_path).check(wait_s=0.3)
    assert time.monotonic() - started < 2.0
    assert (tmp_path / "scenes.sqlite").exists() and not _aside(tmp_path)


# -- a locked library -------------------------------------------------------------------------


def test_a_locked_library_answers_within_its_wait_and_keeps_a_new_scene_pending(
    tmp_path: Path, holder: Callable[[Path, bool], sqlite3.Connection]
) -> None:
    library = SceneLibrary(tmp_path)
    try:
        library.add("a" * 64, "20261122-100000-000-0001", "1")
        other = holder(tmp_path / "scenes.sqlite", False)  # writers wait, readers do not (WAL)
        assert library.scene_id("a" * 64) == "20261122-100000-000-0001"
        started = time.monotonic()
        with pytest.raises(LibraryBusy, match="the scene library is locked by another process"):
            library.save_state(cue="1")
        assert library.add("b" * 64, "20261122-100000-000-0002", "2") is False  # pending
        assert WAIT_S * 0.8 <= (time.monotonic() - started) / 2 < 1.0  # each call waited its quarter second
        assert library.scene_id("b" * 64) == "20261122-100000-000-0002"  # known at once
        assert library.rendered(["a" * 64, "b" * 64, "c" * 64]) == {"a" * 64, "b" * 64} and len(library) == 2
        with pytest.raises(LibraryBusy):
            library.flush()
        other.execute("ROLLBACK")
        assert library.flush() == 1 and library.pending == 0
        with sqlite3.connect(tmp_path / "scenes.sqlite") as check:
            assert check.execute("SELECT scene_id FROM scenes WHERE key = ?", ("b" * 64,)).fetchone() == (
                "20261122-100000-000-0002",
            )
        check.close()
    finally:
        library.close()


def test_readers_wait_a_quarter_second_at_most_for_a_library_held_before_them(
    tmp_path: Path, holder: Callable[[Path, bool], sqlite3.Connection]
) -> None:
    library = SceneLibrary(tmp_path)
    library.add("a" * 64, "20261122-100000-000-0001", "1")
    library.close()
    holder(tmp_path / "scenes.sqlite", True)
    library = SceneLibrary(tmp_path)
    try:
        for call in (lambda: library.scene_id("a" * 64), lambda: library.rendered(["a" * 64]), library.load_state):
            started = time.monotonic()
            with pytest.raises(LibraryBusy):
                call()
            assert time.monotonic() - started < 1.0
    finally:
        library.close()


# -- real bridges --------------------------------------------------------------------------------


def _pong_within(client: OscClient, seconds: float) -> float:
    """Ping the bridge (behind whatever it handles now): how long the pong took."""
    started = time.monotonic()
    client.send("/ldm3d/ping")
    client.wait_for(["/ldm3d/pong"], seconds)
    return time.monotonic() - started


def _recalled(client: OscClient, number: str) -> tuple[Message, float]:
    """``/ldm3d/cue number`` of a rendered cue: its /ldm3d/ready (no job was queued) and how long it took."""
    started = time.monotonic()
    client.send("/ldm3d/cue", number)
    seen = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 5)
    assert seen[-1].address == "/ldm3d/ready", seen[-1]
    assert not any(m.address == "/ldm3d/accepted" for m in seen), "a job was queued for a rendered cue"
    return seen[-1], time.monotonic() - started


@pytest.mark.parametrize("damage", [_garbage, _wrong_table])
def test_serve_starts_on_a_damaged_library_and_recalls_the_scenes_of_its_folders(
    start_bridge: Start,
    client_for: ClientFor,
    show_dir: Path,
    damage: Callable[[Path], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(first)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "faults.toml")  # the fallback "0" is rendered and shown
    made = {"0": client.wait_for(["/ldm3d/ready"], 60)[-1].args[1]}
    client.send("/ldm3d/cue", "1")
    made["1"] = client.wait_for(["/ldm3d/ready"], 60)[-1].args[1]
    assert first.stop()
    db = first.writer.root / "scenes.sqlite"
    damage(db)
    damaged = db.read_bytes()
    with caplog.at_level(logging.WARNING, logger="bridge.show.library"):
        second = start_bridge(input_dirs=(str(show_dir),))  # before: a traceback, and serve exited 1
    client.target = second.address
    assert _pong_within(client, 5) < 5
    time.sleep(0.3)  # the show desk's clock has looked for a saved show
    client.send("/ldm3d/show/state")
    assert state_where(client, lambda s: True, 5)[0] == ""  # its place was lost with the library: no show
    client.send("/ldm3d/show/load", "faults.toml", 0)
    state_where(client, lambda s: s[3] == "0", 10)
    for number in ("1", "0"):  # recalled from the adopted folders, without a job
        ready, _ = _recalled(client, number)
        assert ready.args[1] == made[number]
    aside = _aside(second.writer.root)
    assert len(aside) == 1 and aside[0].read_bytes() == damaged
    lines = _moved_aside_lines(caplog)
    assert len(lines) == 1 and str(db) in lines[0] and str(aside[0]) in lines[0]


def test_a_locked_library_stalls_no_thread_and_the_loop_shows_the_scenes_made_meanwhile(
    start_bridge: Start,
    client_for: ClientFor,
    show_dir: Path,
    holder: Callable[[Path, bool], sqlite3.Connection],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = HandClock()
    bridge = start_bridge(input_dirs=(str(show_dir),), show_clock=clock, http=True, http_port=0)
    client = client_for(bridge)
    client.subscribe_self()
    client.send("/ldm3d/show/load", "faults.toml")
    client.wait_for(["/ldm3d/ready"], 60)
    shown(client, "0")
    db = bridge.writer.root / "scenes.sqlite"
    caplog.set_level(logging.WARNING)
    other = holder(db, False)  # another process holds the library (SQLite would wait 5 s for it)
    locked_at = time.monotonic()
    made: dict[str, object] = {}
    for number in ("1", "2"):  # the loop goes on: each new scene is written, shown, its row pending
        clock.advance(5)
        seen = client.wait_for(["/ldm3d/ready", "/ldm3d/error"], 60)
        assert seen[-1].address == "/ldm3d/ready", seen[-1]  # before: write_failed, the fallback shown
        made[number] = seen[-1].args[0]  # the job's id is its scene's
        shown(client, number)
    assert bridge.shows.library.pending == 2
    # a show command on the intake thread, a ping behind it, the page meanwhile: none waits 5 s
    ready, took = _recalled(client, "1")  # from memory while its row is pending
    assert ready.args[0] == made["1"] and took < 1.5
    client.send("/ldm3d/cue", "0")
    assert _pong_within(client, 3) < 1.5  # before: 5 s behind the show's state being saved
    for _ in range(8):  # GO pressed again and again: each waited 0.25 s to save the place, a ping behind all
        client.send("/ldm3d/cue", "0")
    assert _pong_within(client, 5) < 1.0
    started = time.monotonic()
    client.send("/ldm3d/cue", "2")  # the intake holds the show desk while it saves the state…
    answer = requests.get(f"http://127.0.0.1:{bridge.http_port}/ldm3d/show/state", timeout=10).json()
    assert time.monotonic() - started < 1.5 and answer["VALUE"][0] == "Faults"  # …and the page still answers
    client.wait_for(["/ldm3d/ready"], 5)
    time.sleep(1.0)  # the clock meets the lock at every tick (two rows pending)
    locked_for = time.monotonic() - locked_at
    other.execute("ROLLBACK")  # free again: the next tick writes the pending rows
    deadline = time.monotonic() + 10
    while bridge.shows.library.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    with sqlite3.connect(db) as check:
        rows = {r[0] for r in check.execute("SELECT scene_id FROM scenes")}
    check.close()
    assert {made["1"], made["2"]} <= rows
    assert bridge.shows.library.load_state()["cue"] == "2"  # the place, saved once the library was free
    clock_lines = [r for r in caplog.records if r.name == "bridge.serve.shows" and "locked" in r.getMessage()]
    assert 1 <= len(clock_lines) <= 1 + locked_for // 10  # once per 10 s, though every tick met the lock


def test_a_library_locked_before_the_start_answers_library_busy_and_the_show_goes_on_once_free(
    start_bridge: Start,
    client_for: ClientFor,
    show_dir: Path,
    tmp_path: Path,
    holder: Callable[[Path, bool], sqlite3.Connection],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    out = tmp_path / "out"  # start_bridge's output folder
    out.mkdir()
    saved = SceneLibrary(out)
    saved.save_state(show=str(show_dir / "faults.toml"), cue="1", running=True)  # a show to resume
    saved.close()
    other = holder(out / "scenes.sqlite", True)  # readers wait too
    monkeypatch.setattr(library_module, "START_WAIT_S", 0.3)
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    bridge = start_bridge(input_dirs=(str(show_dir),), http=True, http_port=0)  # before: 5 s, then a traceback
    assert time.monotonic() - started < 30
    client = client_for(bridge)
    client.subscribe_self()
    assert _pong_within(client, 3) < 1.5
    time.sleep(1.0)  # the show desk's clock meets the lock at every tick
    client.send("/ldm3d/cue", "1")
    assert client.wait_for(["/ldm3d/error"], 5)[-1].args[1] == "no_show"  # not resumed yet
    client.send("/ldm3d/show/load", "faults.toml")
    started = time.monotonic()
    error = client.wait_for(["/ldm3d/error"], 5)[-1]
    assert error.args[1] == "library_busy" and time.monotonic() - started < 2.0
    assert "the scene library is locked by another process" in str(error.args[2]) and "try again" in str(error.args[2])
    assert _pong_within(client, 3) < 1.5
    started = time.monotonic()
    answer = requests.get(f"http://127.0.0.1:{bridge.http_port}/ldm3d/show/state", timeout=10).json()
    assert time.monotonic() - started < 1.5
    assert answer["VALUE"][:4] == ["Faults", "", "", "0"]  # loaded, nothing fired: its first cue stands by
    assert len([r for r in caplog.records if "show's clock" in r.getMessage()]) == 1
    other.close()  # free: GO fires the standby
    client.send("/ldm3d/cue/go")
    assert state_where(client, lambda s: s[1] == "0")[2] in ("rendering", "shown")
    client.wait_for(["/ldm3d/ready"], 60)


def test_a_saved_show_locked_at_the_start_resumes_once_the_library_is_free(
    start_bridge: Start,
    client_for: ClientFor,
    show_dir: Path,
    tmp_path: Path,
    holder: Callable[[Path, bool], sqlite3.Connection],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    saved = SceneLibrary(out)
    saved.save_state(show=str(show_dir / "faults.toml"), cue="1", running=True)
    saved.close()
    other = holder(out / "scenes.sqlite", True)
    monkeypatch.setattr(library_module, "START_WAIT_S", 0.3)
    bridge = start_bridge(input_dirs=(str(show_dir),))
    client = client_for(bridge)
    client.subscribe_self()
    time.sleep(0.8)  # a few ticks meet the lock
    other.close()
    state = state_where(client, lambda s: s[0] == "Faults", 10)  # the next tick resumes it
    assert state[1] == "1"
