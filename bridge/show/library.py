"""The scene library: which cue parameters have been rendered, and where.

A SQLite database (``scenes.sqlite`` in the output root; WAL, ``synchronous=FULL``) maps a
scene key (:meth:`Cue.scene_key`: the parameters, the model and the engine version) to a scene
folder under ``scenes/``, written by :meth:`TextureWriter.write_scene` the same atomic way as a
job (staging folder, then one rename). The row is added after the rename, so a crash between
the two leaves a complete folder without a row: :meth:`SceneLibrary.check` adopts it at the
next start. A row whose folder is missing or incomplete is dropped there, and the next
pre-generation renders it again. The library never holds a half scene.

The same database keeps the loaded show's state (file, current cue, running), so a restart
resumes it. Thread-safe: one connection, one lock. The database is created with the first
scene or show state, so a bridge that never runs a show leaves no trace of it.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError
from bridge.output.formats import texture
from bridge.output.images import image_size
from bridge.output.writer import SCENES_FOLDER, STAGING_PREFIX

logger = logging.getLogger(__name__)

DATABASE = "scenes.sqlite"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS scenes (key TEXT PRIMARY KEY, scene_id TEXT NOT NULL, cue TEXT NOT NULL, "
    "created TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


def identity_of(settings: Any) -> str:
    """What a remembered model identity belongs to: the settings the engine is built from that pick
    the model (``model``, ``preset``); a changed revision in the cache is seen once it loads."""
    return json.dumps([settings.model, settings.preset])


class SceneLibrary:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / SCENES_FOLDER
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        """The database, opened (and created) on first use; call with the lock held."""
        if self._connection is None:
            db = sqlite3.connect(self.root / DATABASE, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            for statement in _SCHEMA:
                db.execute(statement)
            self._connection = db
        return self._connection

    @property
    def exists(self) -> bool:
        return self._connection is not None or (self.root / DATABASE).exists()

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # -- scenes ------------------------------------------------------------

    def scene_id(self, key: str) -> str | None:
        if not self.exists:
            return None
        with self._lock:
            row = self._db.execute("SELECT scene_id FROM scenes WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def rendered(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` that have a scene."""
        wanted = list(dict.fromkeys(keys))
        if not self.exists:
            return set()
        with self._lock:
            found = {
                str(row[0])
                for start in range(0, len(wanted), 500)
                for row in self._db.execute(
                    f"SELECT key FROM scenes WHERE key IN ({','.join('?' * len(wanted[start : start + 500]))})",
                    wanted[start : start + 500],
                )
            }
        return found

    def add(self, key: str, scene_id: str, cue: str) -> None:
        """Record a scene whose folder is complete (written and renamed into ``scenes/``)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO scenes VALUES (?, ?, ?, ?)",
                (key, scene_id, cue, datetime.now(UTC).isoformat(timespec="seconds")),
            )

    def __len__(self) -> int:
        if not self.exists:
            return 0
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM scenes").fetchone()[0])

    def check(self) -> tuple[int, int]:
        """At start: drop rows whose folder is missing or incomplete, adopt complete folders a crash
        left without a row, remove staging leftovers. Returns (dropped, adopted)."""
        dropped = adopted = 0
        if not self.exists and not self.folder.is_dir():
            return 0, 0
        with self._lock:
            rows = self._db.execute("SELECT key, scene_id FROM scenes").fetchall()
        known = {str(scene_id) for _, scene_id in rows}
        for key, scene_id in rows:
            if _complete(self.folder / scene_id) != key:
                logger.warning("scene %s (%s…) is missing or incomplete; it will be rendered again", scene_id, key[:12])
                with self._lock, self._db:
                    self._db.execute("DELETE FROM scenes WHERE key = ?", (key,))
                shutil.rmtree(self.folder / scene_id, ignore_errors=True)
                dropped += 1
        if self.folder.is_dir():
            for entry in sorted(self.folder.iterdir()):
                if entry.name.startswith(STAGING_PREFIX):
                    shutil.rmtree(entry, ignore_errors=True)
                elif entry.is_dir() and entry.name not in known:
                    key = _complete(entry)
                    if key is not None and self.scene_id(key) is None:
                        self.add(key, entry.name, "")
                        adopted += 1
                    else:
                        shutil.rmtree(entry, ignore_errors=True)
        return dropped, adopted

    # -- the show's state ---------------------------------------------------

    def save_state(self, **values: Any) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO state VALUES (?, ?)", [(k, json.dumps(v)) for k, v in values.items()]
            )

    def remembered_identity(self, settings: Any) -> str | None:
        """The model identity the show desk last made scenes with under these settings, or None."""
        state = self.load_state()
        identity = state.get("identity")
        return identity if isinstance(identity, str) and state.get("identity_of") == identity_of(settings) else None

    def load_state(self) -> dict[str, Any]:
        if not self.exists:
            return {}
        with self._lock:
            rows = self._db.execute("SELECT name, value FROM state").fetchall()
        return {str(name): json.loads(value) for name, value in rows}


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
