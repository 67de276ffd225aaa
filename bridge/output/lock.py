"""One bridge per output folder: a lock file holding the owner's pid, host and start time.

The lock is an OS file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows)
on ``<output>/.ldm3d-bridge.lock``, so it is released when its process ends, even by
``kill -9``; the file's text only names the owner for the message a second bridge
prints. Without the lock, a second bridge's start-up clean-up would delete the
first one's staging folder mid-write.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

from bridge.errors import FolderInUse

LOCK_NAME = ".ldm3d-bridge.lock"


def _try_lock(f: IO[bytes]) -> bool:
    try:
        if sys.platform == "win32":
            import msvcrt

            f.seek(0)
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class FolderLock:
    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        """Hold the folder, or raise FolderInUse naming the bridge that holds it."""
        f = open(self.path, "a+b")  # noqa: SIM115 - held open for the bridge's lifetime
        if not _try_lock(f):
            f.seek(0)
            owner = f.read(512).decode("utf-8", "replace").strip()
            f.close()
            try:
                who = json.loads(owner)
                named = f"pid {who['pid']} on {who['host']}, started {who['started']}"
            except (ValueError, KeyError, TypeError):
                named = "another process"
            raise FolderInUse(
                f"the output folder {self.path.parent} is in use by another bridge ({named}); "
                "give each bridge its own --output"
            )
        owner_text = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        f.seek(0)
        f.truncate()
        f.write(json.dumps(owner_text).encode("utf-8"))
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the OS lock
            self._file = None
