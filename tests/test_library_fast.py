"""The scene library's start-up check and saved identity, without a bridge (in the mutation selection).

Edges the library-level tests of ``test_shows.py`` and ``test_library_faults.py`` leave open: a second
damaged library in the same second, its ``-wal``/``-shm`` kept open by another program, a file SQLite
cannot open at all, a library that only saved a show, a folder whose key is not a string, the warning
of a dropped scene, and the model identity a show desk remembers."""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import pytest

from bridge.errors import LibraryBusy
from bridge.show.library import SceneLibrary, _busy, _damage, identity_of
from tests.test_library_faults import _scene_folder

E = TypeVar("E", bound=sqlite3.DatabaseError)

GARBAGE = b"these are not the bytes of a database\n" * 200


def test_a_show_desk_remembers_the_model_identity_only_for_the_settings_it_was_made_with(tmp_path: Path) -> None:
    tiny, other = SimpleNamespace(model="tiny", preset="fast"), SimpleNamespace(model="tiny", preset="full")
    with contextlib.closing(SceneLibrary(tmp_path)) as library:
        assert library.remembered_identity(tiny) is None  # nothing saved yet
        library.save_state(identity="tiny@1234", identity_of=identity_of(tiny))
        assert (library.remembered_identity(tiny), library.remembered_identity(other)) == ("tiny@1234", None)
        library.save_state(identity=["tiny@1234"])  # not a string: another program's value
        assert library.remembered_identity(tiny) is None


def test_a_second_damaged_library_in_the_same_second_is_moved_aside_beside_the_first_with_its_log(
    tmp_path: Path,
) -> None:
    """Another program (a ``sqlite3`` shell) has the damaged file open: its ``-wal`` and ``-shm`` go with it."""
    db = tmp_path / "scenes.sqlite"
    db.write_bytes(GARBAGE)
    (tmp_path / "scenes.sqlite-wal").write_bytes(b"a stale log")
    (tmp_path / "scenes.sqlite-shm").write_bytes(b"a stale index")
    now = datetime.now(UTC)
    earlier = {  # a library moved aside in this second (and the next two, should the test cross one)
        tmp_path / f"scenes.sqlite.corrupt-{(now + timedelta(seconds=s)).strftime('%Y%m%dT%H%M%SZ')}" for s in range(3)
    }
    for path in earlier:
        path.write_bytes(b"the first damaged library")
    shell = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError):
        shell.execute("PRAGMA quick_check").fetchall()
    with contextlib.closing(shell), contextlib.closing(SceneLibrary(tmp_path)) as library:
        assert library.check() == (0, 0)
    aside = sorted(p.name for p in set(tmp_path.glob("scenes.sqlite.corrupt-*")) - earlier)
    assert len(aside) == 3 and re.fullmatch(r"scenes\.sqlite\.corrupt-\d{8}T\d{6}Z-2", aside[0]), aside
    assert aside[1:] == [f"{aside[0]}-shm", f"{aside[0]}-wal"]  # the -shm is the shell's index by now
    assert [(tmp_path / name).read_bytes() for name in (aside[0], aside[2])] == [GARBAGE, b"a stale log"]


def test_a_library_sqlite_cannot_open_is_not_taken_for_a_damaged_one(tmp_path: Path) -> None:
    (tmp_path / "scenes.sqlite").mkdir()  # a folder where the database should be: "unable to open"
    with (
        contextlib.closing(SceneLibrary(tmp_path)) as library,
        pytest.raises(sqlite3.OperationalError, match="unable to open"),
    ):
        library.check()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes.sqlite"]  # nothing moved aside


def test_a_library_that_only_saved_a_show_checks_clean(tmp_path: Path) -> None:
    library = SceneLibrary(tmp_path)
    library.save_state(show="/shows/a.toml", cue="3")
    library.close()
    reopened = SceneLibrary(tmp_path)
    try:
        assert reopened.check() == (0, 0) and reopened.load_state() == {"show": "/shows/a.toml", "cue": "3"}
    finally:
        reopened.close()


def test_a_folder_whose_scene_key_is_not_a_string_is_not_adopted(tmp_path: Path) -> None:
    with contextlib.closing(SceneLibrary(tmp_path)) as library:
        _scene_folder(library, "20261122-100000-000-0001", 42)
        _scene_folder(library, "20261122-100000-000-0002", None)
        assert library.check() == (0, 0) and len(library) == 0
        assert list(library.folder.iterdir()) == []


def test_a_dropped_scene_is_logged_with_its_id_and_the_start_of_its_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with contextlib.closing(SceneLibrary(tmp_path)) as library:
        library.add("0123456789abcdef" * 4, "20261122-100000-000-0001", "1")  # its folder was never written
        with caplog.at_level(logging.WARNING, logger="bridge.show.library"):
            assert library.check() == (1, 0)
    assert [r.getMessage() for r in caplog.records] == [
        "scene 20261122-100000-000-0001 (0123456789ab…) is missing or incomplete; it will be rendered again"
    ]


def test_a_library_of_another_shape_is_named_with_its_columns_where_it_was_moved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "scenes.sqlite"
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE scenes (id INTEGER PRIMARY KEY, path TEXT)")
    other.close()
    with (
        contextlib.closing(SceneLibrary(tmp_path)) as library,
        caplog.at_level(logging.WARNING, logger="bridge.show.library"),
    ):
        assert library.check() == (0, 0)
    (aside,) = tmp_path.glob("scenes.sqlite.corrupt-*")
    assert [r.getMessage() for r in caplog.records] == [
        f"the scene library {db} is damaged (its scenes table has the columns id, path, not key, scene_id, cue, "
        f"created): moved aside to {aside}; a new one is built from the scene folders (the show's saved place is lost)"
    ]


def test_a_library_failing_sqlites_integrity_check_is_named_with_its_first_three_problems(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rows that break the schema (NULLs in NOT NULL columns, as a disk or another program may leave
    them): SQLite's quick_check answers with rows, not an exception; the first three are named."""
    db = tmp_path / "scenes.sqlite"
    with sqlite3.connect(db) as other:
        other.execute("CREATE TABLE scenes (key TEXT PRIMARY KEY, scene_id TEXT, cue TEXT, created TEXT)")
        other.executemany("INSERT INTO scenes VALUES (?, NULL, NULL, NULL)", [("a",), ("b",)])
        other.execute("PRAGMA writable_schema=ON")
        other.execute(
            "UPDATE sqlite_master SET sql = ? WHERE name = 'scenes'",
            (
                "CREATE TABLE scenes (key TEXT PRIMARY KEY, scene_id TEXT NOT NULL, cue TEXT NOT NULL, "
                "created TEXT NOT NULL)",
            ),
        )
    other.close()
    with (
        contextlib.closing(SceneLibrary(tmp_path)) as library,
        caplog.at_level(logging.WARNING, logger="bridge.show.library"),
    ):
        assert library.check() == (0, 0)
    (aside,) = tmp_path.glob("scenes.sqlite.corrupt-*")
    problems = "NULL value in scenes.scene_id; NULL value in scenes.cue; NULL value in scenes.created"
    assert [r.getMessage() for r in caplog.records] == [
        f"the scene library {db} is damaged ({problems}): moved aside to {aside}; a new one is built from the "
        "scene folders (the show's saved place is lost)"
    ]


def test_a_saved_value_another_program_wrote_is_left_out_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with contextlib.closing(SceneLibrary(tmp_path)) as library:
        library.save_state(show="/shows/a.toml")
        with sqlite3.connect(tmp_path / "scenes.sqlite") as other:
            other.execute("INSERT INTO state VALUES ('cue', 'not json')")
        other.close()
        with caplog.at_level(logging.WARNING, logger="bridge.show.library"):
            assert library.load_state() == {"show": "/shows/a.toml"}
    assert [r.getMessage() for r in caplog.records] == ["the scene library's saved 'cue' does not read; left out"]


def _error(kind: type[E], text: str, code: int | None = None) -> E:
    exc = kind(text)
    if code is not None:
        exc.sqlite_errorcode = code  # as SQLite sets it on its own errors
    return exc


def test_a_busy_library_is_told_apart_from_a_damaged_one_by_its_code_then_by_its_words() -> None:
    """``library_busy`` (try again) or "damaged" (moved aside): SQLite's extended codes are read by their low
    byte; an error without a code (raised by hand) by its words."""
    busy_recovery, ioerr_read, corrupt_vtab = sqlite3.SQLITE_BUSY | 1 << 8, sqlite3.SQLITE_IOERR | 1 << 8, 267
    assert [
        _busy(_error(sqlite3.OperationalError, "held by a backup", busy_recovery)),
        _busy(_error(sqlite3.OperationalError, "database is locked", sqlite3.SQLITE_CORRUPT)),
        _busy(_error(sqlite3.OperationalError, "database is locked")),
        _busy(_error(sqlite3.OperationalError, "the database is busy")),
        _busy(_error(sqlite3.OperationalError, "no such table: scenes")),
    ] == [True, False, True, True, False]
    assert [
        _damage(_error(sqlite3.OperationalError, "held by a backup", busy_recovery)),
        _damage(_error(sqlite3.OperationalError, "disk I/O error", ioerr_read)),
        _damage(_error(sqlite3.DatabaseError, "database disk image is malformed", corrupt_vtab)),
        _damage(_error(sqlite3.DatabaseError, "its scenes table has the columns id, path")),
        _damage(_error(sqlite3.OperationalError, "database disk image is malformed", sqlite3.SQLITE_CORRUPT)),
        _damage(_error(sqlite3.OperationalError, "database is locked")),
    ] == [False, False, True, True, True, False]


def test_a_show_state_saved_without_waiting_fails_at_once_and_the_next_call_waits_again(tmp_path: Path) -> None:
    with contextlib.closing(SceneLibrary(tmp_path, wait_s=0.5)) as library:
        library.save_state(wait=False, cue="1")
        assert library.load_state() == {"cue": "1"}
        other = sqlite3.connect(tmp_path / "scenes.sqlite", isolation_level=None, timeout=0)
        other.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(LibraryBusy):
            library.save_state(wait=False, cue="2")
        at_once = time.monotonic() - started
        with pytest.raises(LibraryBusy):
            library.save_state(cue="3")
        waited = time.monotonic() - started - at_once
        other.execute("ROLLBACK")
        other.close()
        assert at_once < 0.25 and waited >= 0.4, (at_once, waited)
        assert library.load_state() == {"cue": "1"}


def test_a_scene_row_that_cannot_be_written_is_not_known_and_the_library_goes_on(tmp_path: Path) -> None:
    with contextlib.closing(SceneLibrary(tmp_path)) as library:
        assert library.flush() == 0  # nothing pending
        with pytest.raises(sqlite3.IntegrityError):
            library.add("a" * 64, "20261122-100000-000-0001", None)  # type: ignore[arg-type]  # a NOT NULL column
        assert library.scene_id("a" * 64) is None and library.pending == 0
        assert library.add("b" * 64, "20261122-100000-000-0002", "2") is True
        assert library.rendered(["a" * 64, "b" * 64]) == {"b" * 64}


def test_rows_left_pending_at_close_are_named_and_a_library_closed_twice_opens_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    library = SceneLibrary(tmp_path)
    library.add("a" * 64, "20261122-100000-000-0001", "1")
    other = sqlite3.connect(tmp_path / "scenes.sqlite", isolation_level=None, timeout=0)
    other.execute("BEGIN EXCLUSIVE")
    assert library.add("b" * 64, "20261122-100000-000-0002", "2") is False
    with caplog.at_level(logging.WARNING, logger="bridge.show.library"):
        library.close()
    other.execute("ROLLBACK")
    other.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"1 scenes are not in the library (the scene library is locked by another process "
        f"({tmp_path / 'scenes.sqlite'}); try again); the next start adopts them"
    ]
    for _ in range(2):  # each close lets this thread's connection go; the next call opens one again
        assert library.scene_id("a" * 64) == "20261122-100000-000-0001"
        library.close()


def test_connections_other_threads_opened_are_closed_by_whoever_closes_the_library(tmp_path: Path) -> None:
    library = SceneLibrary(tmp_path)
    library.add("a" * 64, "20261122-100000-000-0001", "1")
    seen: list[str | None] = []
    reader = threading.Thread(target=lambda: seen.append(library.scene_id("a" * 64)))
    reader.start()
    reader.join(10)
    library.close()  # on this thread: the reader's connection too
    assert seen == ["20261122-100000-000-0001"] and library.pending == 0
