"""The scene library: which cue parameters have been rendered, and where.

A SQLite database (``scenes.sqlite`` in the output root; WAL, ``synchronous=FULL``) maps a
scene key (:meth:`Cue.scene_key`: the parameters, the model and the engine version) to a scene
folder under ``scenes/``, written by :meth:`TextureWriter.write_scene` the same atomic way as a
job (staging folder, then one rename). The row is added after the rename, so a crash between
the two leaves a complete folder without a row: :meth:`SceneLibrary.check` adopts it at the
next start. A row whose folder is missing or incomplete is dropped there, and the next
pre-generation renders it again. The library never holds a half scene. The folders are the
truth: a database SQLite reads as damaged (not a database, a malformed image, tables of another
shape) is moved aside at that check (``scenes.sqlite.corrupt-<UTC time>``) and rebuilt from them.

The same database keeps the loaded show's state (file, current cue, running), so a restart
resumes it. The database is created with the first scene or show state, so a bridge that never
runs a show leaves no trace of it.

Thread-safe: each thread has its own connection, so no thread ever waits for another's call (in
WAL mode readers never wait for a writer). The show desk calls the library on the OSC intake
thread and the HTTP loop: a library another process holds (a ``sqlite3`` shell, a backup) makes
a call wait at most :data:`WAIT_S`, then raise :class:`LibraryBusy` (``library_busy``). A scene
row that cannot be added then is kept **pending**: the scene is known at once (its lookups
answer from memory) and its row is written by :meth:`SceneLibrary.flush` (the show desk's clock)
once the library is free, or adopted from its folder at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError, LibraryBusy
from bridge.output.formats import texture
from bridge.output.images import image_size
from bridge.output.writer import SCENES_FOLDER, STAGING_PREFIX

logger = logging.getLogger(__name__)

DATABASE = "scenes.sqlite"
# The lines that hand SQLite a statement are marked "pragma: no mutate": mutmut's mutants of them only
# change the case of SQL keywords (SQLite ignores it) or break the call outright (an error every test
# meets); docs/testing.md.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scenes (key TEXT PRIMARY KEY, scene_id TEXT NOT NULL, cue TEXT NOT NULL, "
    "created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
#: The columns each table must have (checked at start: a table of another shape is a damaged library).
_COLUMNS = {"scenes": ("key", "scene_id", "cue", "created"), "state": ("name", "value")}
#: How long a call waits for a library another process holds (SQLite's busy timeout). The show
#: desk's commands run on the OSC intake thread and the HTTP loop, which answer pings and pages
#: meanwhile: a quarter second, well above a commit of ours (milliseconds) and far below a
#: client's patience. Past it: :class:`LibraryBusy`.
WAIT_S = 0.25
#: The start-up check (:meth:`SceneLibrary.check`) waits longer: nobody waits on the bridge yet.
START_WAIT_S = 5.0
#: SQLite result codes that say something about the machine, not the file: never "damaged".
_NOT_DAMAGE = {
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_READONLY, sqlite3.SQLITE_FULL, sqlite3.SQLITE_PERM, sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_AUTH, sqlite3.SQLITE_NOLFS,
}  # fmt: skip


def identity_of(settings: Any) -> str:
    """What a remembered model identity belongs to: the settings the engine is built from that pick
    the model (``model``, ``preset``); a changed revision in the cache is seen once it loads."""
    return json.dumps([settings.model, settings.preset])


class _Damaged(sqlite3.DatabaseError):
    """The database opens but is not ours: a table of another shape, a failed integrity check."""


class SceneLibrary:
    def __init__(self, root: Path, wait_s: float = WAIT_S) -> None:
        self.root = Path(root)
        self.folder = self.root / SCENES_FOLDER
        self.path = self.root / DATABASE
        self.wait_s = wait_s
        #: Guards the list of connections and the pending rows (never held during an SQL call).
        self._lock = threading.Lock()
        #: Serializes writing scene rows (the writer thread's add, the clock's flush): never a hot thread.
        self._rows = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        #: Bumped by close(): a thread's connection from before is not used again.
        self._generation = 0
        self._created = False
        #: Scene rows a locked library could not take yet: key → (scene id, cue, created).
        self._pending: dict[str, tuple[str, str, str]] = {}

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection, opened (and the database created) on its first use."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and self._local.generation == self._generation:
            return db
        db = self._connect(self.wait_s)
        with self._lock:
            self._connections.append(db)
            self._created = True
        self._local.db, self._local.generation = db, self._generation
        return db

    def _connect(self, wait_s: float, verify: bool = False) -> sqlite3.Connection:
        """A connection (WAL, ``synchronous=FULL``, the tables made); ``verify``: first checked
        read-only (:func:`_verify`), so that a damaged file is moved aside as it was found."""
        db = sqlite3.connect(self.path, timeout=wait_s, check_same_thread=False, isolation_level=None)
        try:
            if verify:
                _verify(db)
            db.execute("PRAGMA journal_mode=WAL")  # pragma: no mutate
            db.execute("PRAGMA synchronous=FULL")  # pragma: no mutate
            for statement in _SCHEMA:
                db.execute(statement)
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """SQLite's "database is locked" becomes :class:`LibraryBusy`."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise LibraryBusy(f"the scene library is locked by another process ({self.path}); try again") from exc
            raise

    @property
    def exists(self) -> bool:
        return self._created or self.path.exists()

    @property
    def pending(self) -> int:
        """Scene rows waiting for a locked library."""
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        """Write the pending rows if the library takes them now (else the next start adopts their
        folders), then close every thread's connection."""
        if self.pending:
            try:
                self.flush()
            except (LibraryBusy, sqlite3.Error) as exc:
                logger.warning("%d scenes are not in the library (%s); the next start adopts them", self.pending, exc)
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for db in connections:
            db.close()

    # -- scenes ------------------------------------------------------------

    def scene_id(self, key: str) -> str | None:
        with self._lock:
            pending = self._pending.get(key)
        if pending is not None:
            return pending[0]
        if not self.exists:
            return None
        with self._answering():
            row = self._db.execute("SELECT scene_id FROM scenes WHERE key = ?", (key,)).fetchone()  # pragma: no mutate
        return None if row is None else str(row[0])

    def rendered(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` that have a scene."""
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            found = {key for key in wanted if key in self._pending}
        if not self.exists:
            return found
        with self._answering():
            found |= {
                str(row[0])
                for start in range(0, len(wanted), 500)
                for row in self._db.execute(
                    f"SELECT key FROM scenes WHERE key IN ({','.join('?' * len(wanted[start : start + 500]))})",
                    wanted[start : start + 500],
                )
            }
        return found

    def add(self, key: str, scene_id: str, cue: str) -> bool:
        """Record a scene whose folder is complete (written and renamed into ``scenes/``). True when
        its row is written; False when the library is locked: the row is pending (the scene is
        known already) and written by :meth:`flush`."""
        row = (scene_id, cue, datetime.now(UTC).isoformat(timespec="seconds"))
        with self._lock:
            self._pending[key] = row
        try:
            self.flush()
        except LibraryBusy:
            return False
        except BaseException:  # not a lock (a full disk…): the scene is not known, as before
            with self._lock:
                if self._pending.get(key) == row:
                    del self._pending[key]
            raise
        return True

    def flush(self) -> int:
        """Write the pending scene rows (LibraryBusy while the library is still locked: they stay
        pending); how many were written."""
        with self._rows:
            with self._lock:
                rows = dict(self._pending)
            if not rows:
                return 0
            with self._answering():
                _write(
                    self._db, "INSERT OR REPLACE INTO scenes VALUES (?, ?, ?, ?)", [(k, *r) for k, r in rows.items()]
                )
            with self._lock:
                for key, row in rows.items():
                    if self._pending.get(key) == row:
                        del self._pending[key]
        return len(rows)

    def __len__(self) -> int:
        with self._lock:
            pending = list(self._pending)
        if not self.exists:
            return len(pending)
        with self._answering():
            db = self._db
            count = int(db.execute("SELECT COUNT(*) FROM scenes").fetchone()[0])  # pragma: no mutate
            return count + sum(
                1 for k in pending if not db.execute("SELECT 1 FROM scenes WHERE key = ?", (k,)).fetchone()
            )

    def check(self, wait_s: float | None = None) -> tuple[int, int]:
        """At start: drop rows whose folder is missing or incomplete, adopt complete folders a crash
        left without a row, remove staging leftovers. Returns (dropped, adopted).

        A database SQLite reads as damaged is moved aside (``scenes.sqlite.corrupt-<UTC time>``, its
        ``-wal`` and ``-shm`` with it), one warning names both, and a new one is built from the scene
        folders (the show's saved place is lost). Waits up to ``wait_s`` (:data:`START_WAIT_S`) for a
        library another process holds, then LibraryBusy."""
        if not self.exists and not self.folder.is_dir():
            return 0, 0
        wait_s = START_WAIT_S if wait_s is None else wait_s
        with self._answering():
            try:
                return self._check(wait_s)
            except sqlite3.DatabaseError as exc:
                if not _damage(exc):
                    raise
                aside = self._move_aside()
                reason = " ".join(str(exc).split())
                logger.warning(
                    "the scene library %s is damaged (%s): moved aside to %s; a new one is built from the scene "
                    "folders (the show's saved place is lost)", self.path, reason, aside,
                )  # fmt: skip
                return self._check(wait_s)

    def _check(self, wait_s: float) -> tuple[int, int]:
        db = self._connect(wait_s, verify=True)
        self._created = True
        try:
            rows = [(str(key), str(scene_id)) for key, scene_id in db.execute("SELECT key, scene_id FROM scenes")]
            dropped, known = 0, set()
            for key, scene_id in rows:
                found = _complete(self.folder / scene_id)
                if found == key:
                    known.add(scene_id)
                    continue
                logger.warning("scene %s (%s…) is missing or incomplete; it will be rendered again", scene_id,
                               key[:12])  # fmt: skip
                db.execute("DELETE FROM scenes WHERE key = ?", (key,))  # pragma: no mutate
                dropped += 1
                if found is None:  # a folder of another scene is that scene's: kept, or adopted below
                    shutil.rmtree(self.folder / scene_id, ignore_errors=True)
            return dropped, self._adopt(db, known)
        finally:
            db.close()

    def _adopt(self, db: sqlite3.Connection, known: set[str]) -> int:
        """Rows for the complete folders without one (a twin of a known scene is removed); staging
        leftovers removed. How many were adopted."""
        adopted = 0
        for entry in sorted(self.folder.iterdir()) if self.folder.is_dir() else []:
            if entry.name.startswith(STAGING_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.is_dir() and entry.name not in known:
                key = _complete(entry)
                if key is not None and not db.execute("SELECT 1 FROM scenes WHERE key = ?", (key,)).fetchone():
                    created = datetime.now(UTC).isoformat(timespec="seconds")
                    db.execute("INSERT INTO scenes VALUES (?, ?, ?, ?)", (key, entry.name, "", created))
                    adopted += 1
                else:
                    shutil.rmtree(entry, ignore_errors=True)
        return adopted

    def _move_aside(self) -> Path:
        """The damaged database (and its ``-wal``, ``-shm``) renamed ``scenes.sqlite.corrupt-<UTC time>``."""
        self.close()
        self._created = False
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = self.root / f"{DATABASE}.corrupt-{stamp}"
        n = 1
        while aside.exists():
            n += 1
            aside = self.root / f"{DATABASE}.corrupt-{stamp}-{n}"
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            companion = self.root / f"{DATABASE}{suffix}"
            if companion.exists():
                os.replace(companion, f"{aside}{suffix}")
        return aside

    # -- the show's state ---------------------------------------------------

    def save_state(self, *, wait: bool = True, **values: Any) -> None:
        """Save the show's state. ``wait`` False: LibraryBusy at once when another process holds the
        library (the show desk's commands run on the hot threads and keep it to save later)."""
        rows = [(k, json.dumps(v)) for k, v in values.items()]
        db = self._db
        with self._answering():
            if wait:
                _write(db, "INSERT OR REPLACE INTO state VALUES (?, ?)", rows)  # pragma: no mutate
                return
            db.execute("PRAGMA busy_timeout = 0")  # pragma: no mutate
            try:
                _write(db, "INSERT OR REPLACE INTO state VALUES (?, ?)", rows)  # pragma: no mutate
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(self.wait_s * 1000)}")

    def remembered_identity(self, settings: Any) -> str | None:
        """The model identity the show desk last made scenes with under these settings, or None."""
        state = self.load_state()
        identity = state.get("identity")
        return identity if isinstance(identity, str) and state.get("identity_of") == identity_of(settings) else None

    def load_state(self) -> dict[str, Any]:
        if not self.exists:
            return {}
        with self._answering():
            rows = self._db.execute("SELECT name, value FROM state").fetchall()  # pragma: no mutate
        state: dict[str, Any] = {}
        for name, value in rows:
            try:
                state[str(name)] = json.loads(value)
            except (TypeError, ValueError):
                logger.warning("the scene library's saved %r does not read; left out", name)
        return state


def _verify(db: sqlite3.Connection) -> None:
    """_Damaged unless SQLite's integrity check passes and each table there has our columns."""
    problems = [str(row[0]) for row in db.execute("PRAGMA quick_check")]  # pragma: no mutate
    if problems != ["ok"]:
        raise _Damaged("; ".join(problems[:3]))
    for table, columns in _COLUMNS.items():
        found = tuple(str(row[1]) for row in db.execute(f"PRAGMA table_info({table})"))
        if found and found != columns:
            raise _Damaged(f"its {table} table has the columns {', '.join(found)}, not {', '.join(columns)}")


def _write(db: sqlite3.Connection, statement: str, rows: list[tuple[Any, ...]]) -> None:
    """``rows`` through ``statement`` in one transaction (one commit, one sync)."""
    db.execute("BEGIN IMMEDIATE")  # pragma: no mutate
    try:
        db.executemany(statement, rows)
        db.execute("COMMIT")  # pragma: no mutate
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Another connection holds the database (SQLITE_BUSY, SQLITE_LOCKED and their extended codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "is locked" in str(exc) or "busy" in str(exc)  # raised by hand (a test's stand-in)


def _damage(exc: sqlite3.DatabaseError) -> bool:
    """The error says the file is not a library of ours (rather than a full disk, a locked file…)."""
    if isinstance(exc, sqlite3.OperationalError) and _busy(exc):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or code & 0xFF not in _NOT_DAMAGE


def _complete(folder: Path) -> str | None:
    """The scene key of a complete scene folder, else None: its meta.json reads, and both textures
    are there with a header that decodes to the size meta.json gives."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        size = (int(meta["width"]), int(meta["height"]))
        for kind in ("rgb", "depth"):
            if image_size(texture(folder, kind)) != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, BridgeError):
        return None
    key = meta.get("scene_key")
    return key if isinstance(key, str) else None
